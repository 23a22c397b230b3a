//! pipewright benchmarks. Run with `cargo run --release -p bench -- ingest`.
//!
//! `ingest`: the real HTTP server on loopback with a fresh SQLite database, events acknowledged
//! only after their durable commit; clients run in the same process, so they share the machine's
//! cores with the server (the figures are a floor for a server with the machine to itself).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use server::{Application, Settings};
use store::{Synchronous, TokenRole};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Server warnings and errors go to stderr, so a failed run says why.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .init();
    let which = std::env::args().nth(1).unwrap_or_else(|| "ingest".into());
    match which.as_str() {
        "ingest" => ingest().await,
        "store" => store_ingest().await,
        other => anyhow::bail!("unknown benchmark {other:?}; available: ingest, store"),
    }
}

struct Target {
    base: String,
    token: String,
    _dir: tempfile::TempDir,
}

async fn start(sync: Synchronous) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.database.url = format!("sqlite:{}", dir.path().join("bench.db").display());
    settings.database.synchronous = sync;
    let app = Application::build(&settings, Arc::new(clock::SystemClock)).await?;
    let token = server::generate_token("bench", TokenRole::Writer)?;
    app.state().store.create_token(token.stored).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    Ok(Target {
        base,
        token: token.secret,
        _dir: dir,
    })
}

/// A realistic mix: activity on 1,000 deals, each event about 300 bytes.
fn event(n: usize) -> String {
    let deal = n % 1000;
    let (ty, data) = match n % 4 {
        0 => (
            "email.sent",
            r#"{"subject":"Following up on our call","message_id":"<m@acme.example>"}"#,
        ),
        1 => (
            "email.received",
            r#"{"subject":"Re: Following up on our call"}"#,
        ),
        2 => (
            "note.added",
            r#"{"text":"Asked for a security review before the pilot."}"#,
        ),
        _ => (
            "meeting.held",
            r#"{"title":"Demo","duration_minutes":45,"attendees":["C-1"]}"#,
        ),
    };
    format!(
        r#"{{"type":"{ty}","source":"bench","source_id":"{n}","occurred_at":"2026-11-02T09:00:00Z","deal":"D-{deal}","contact":"C-{deal}","data":{data}}}"#
    )
}

struct Figures {
    events_per_sec: f64,
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Sends `requests` requests of `per_request` events from `clients` concurrent clients.
async fn load(
    target: &Target,
    clients: usize,
    requests: usize,
    per_request: usize,
) -> anyhow::Result<Figures> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, next) = (http.clone(), Arc::clone(&next));
        let (url, token) = (
            format!("{}/api/v1/events", target.base),
            target.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let r = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if r >= requests {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let body = if per_request == 1 {
                    event(r)
                } else {
                    let events: Vec<String> = (0..per_request)
                        .map(|i| event(r * per_request + i))
                        .collect();
                    format!("[{}]", events.join(","))
                };
                let sent = Instant::now();
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                anyhow::ensure!(
                    status.is_success(),
                    "status {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for t in tasks {
        latencies.extend(t.await.context("client task")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Ok(Figures {
        events_per_sec: (requests * per_request) as f64 / elapsed,
        requests_per_sec: requests as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn ingest() -> anyhow::Result<()> {
    println!(
        "HTTP ingest, acknowledged after commit; SQLite WAL; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<8} {:<7} {:>8} {:>8} {:>12} {:>10} {:>9} {:>9}",
        "sync", "shape", "clients", "per req", "events/s", "req/s", "p50 ms", "p99 ms"
    );
    let scenarios: &[(Synchronous, usize, usize, usize)] = &[
        // (synchronous, clients, requests, events per request)
        (Synchronous::Full, 1, 200, 500),
        (Synchronous::Full, 4, 400, 500),
        (Synchronous::Full, 1, 2_000, 1),
        (Synchronous::Full, 8, 10_000, 1),
        (Synchronous::Full, 32, 20_000, 1),
        (Synchronous::Full, 64, 20_000, 1),
        (Synchronous::Normal, 4, 400, 500),
        (Synchronous::Normal, 32, 20_000, 1),
    ];
    let mut batched_best: f64 = 0.0;
    let mut single_32: f64 = 0.0;
    let only = std::env::args().nth(2);
    for &(sync, clients, requests, per) in scenarios {
        let shape = if per == 1 { "single" } else { "batch" };
        if only.as_deref().is_some_and(|o| o != shape) {
            continue;
        }
        let target = start(sync).await?;
        let f = load(&target, clients, requests, per).await?;
        println!(
            "{:<8} {:<7} {:>8} {:>8} {:>12.0} {:>10.0} {:>9.2} {:>9.2}",
            format!("{sync:?}").to_lowercase(),
            shape,
            clients,
            per,
            f.events_per_sec,
            f.requests_per_sec,
            ms(f.p50),
            ms(f.p99)
        );
        if sync == Synchronous::Full {
            if per > 1 {
                batched_best = batched_best.max(f.events_per_sec);
            } else if clients == 32 {
                single_32 = f.requests_per_sec;
            }
        }
    }
    println!();
    println!(
        "batched, synchronous=full: {batched_best:.0} events/s = {:.2}x the 20,000 target",
        batched_best / 20_000.0
    );
    println!(
        "single at 32 clients, synchronous=full: {single_32:.0} req/s = {:.2}x the 5,000 target",
        single_32 / 5_000.0
    );
    Ok(())
}

/// The store alone, no HTTP: 100,000 events parsed by the wire crate and ingested in batches of
/// 500, reported every 20,000 events so the effect of a growing database shows.
async fn store_ingest() -> anyhow::Result<()> {
    let sync = if std::env::args().any(|a| a == "--normal") {
        Synchronous::Normal
    } else {
        Synchronous::Full
    };
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    let store = store::connect(&url, sync, 10_000, Arc::new(clock::SystemClock))?;
    println!("store ingest, batches of 500, synchronous={sync:?}; events touch 2 of 2,000 records");
    println!(
        "{:>14} {:>12} {:>16} {:>16}",
        "events so far", "events/s", "batch p50 ms", "batch max ms"
    );
    let (rounds, per_round, window) = (200, 500, 40);
    let mut times = Vec::new();
    let mut window_started = Instant::now();
    let all = Instant::now();
    for round in 0..rounds {
        let texts: Vec<String> = (0..per_round)
            .map(|i| event(round * per_round + i))
            .collect();
        let body = format!("[{}]", texts.join(","));
        let t = Instant::now();
        let events = wire::parse_batch(&body).map_err(|p| anyhow::anyhow!("{p:?}"))?;
        store.ingest(events).await?;
        times.push(t.elapsed());
        if times.len() == window {
            let rate = (window * per_round) as f64 / window_started.elapsed().as_secs_f64();
            times.sort();
            println!(
                "{:>14} {:>12.0} {:>16.1} {:>16.1}",
                (round + 1) * per_round,
                rate,
                ms(times[window / 2]),
                ms(times[window - 1])
            );
            times.clear();
            window_started = Instant::now();
        }
    }
    let rate = (rounds * per_round) as f64 / all.elapsed().as_secs_f64();
    println!(
        "overall: {rate:.0} events/s = {:.2}x the 20,000 target",
        rate / 20_000.0
    );
    Ok(())
}
