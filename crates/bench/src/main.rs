//! pipewright benchmarks: `cargo run --release -p bench -- ingest|store|rules|timers|delivery|nodes|sequences|heroics|replay|company|risk|ui|reload|preview`.
//!
//! `ingest`: the real HTTP server on loopback with a fresh SQLite database, events acknowledged
//! only after their durable commit; clients run in the same process, so they share the machine's
//! cores with the server (the figures are a floor for a server with the machine to itself).

/// mimalloc, as `pipewright` itself runs: reading the log allocates on the store's reader
/// threads and frees on the async ones, where the system allocator's per-thread arenas cost a
/// third of a report's time (BENCHMARKS.md, heroics).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use server::{Application, Settings};
use store::{Synchronous, TokenRole};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    delivery::install_crypto();
    // Server warnings and errors go to stderr, so a failed run says why.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .init();
    let which = std::env::args().nth(1).unwrap_or_else(|| "ingest".into());
    match which.as_str() {
        "ingest" => ingest().await,
        "store" => store_ingest().await,
        "rules" => rules().await,
        "timers" => timers().await,
        "delivery" => deliveries().await,
        "drain" => drain().await,
        "nodes" => nodes().await,
        "sequences" => sequences().await,
        "heroics" => heroics_report().await,
        "replay" => replay_history(),
        "company" => demo_company().await,
        "risk" => risk_scoring(),
        "ui" => ui_pages().await,
        "reload" => reload().await,
        "preview" => preview_demo().await,
        other => {
            anyhow::bail!(
                "unknown benchmark {other:?}; available: ingest, store, rules, timers, delivery, drain, nodes, sequences, heroics, replay, company, risk, ui, reload, preview"
            )
        }
    }
}

struct Target {
    /// The nodes' addresses; requests go to them in turn.
    bases: Vec<String>,
    token: String,
    /// Dropping these stops the nodes.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// Starts the server on a fresh database, with the example playbooks running or none.
async fn start(sync: Synchronous, rules: bool) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::default();
    settings.database.url = format!("sqlite:{}", dir.path().join("bench.db").display());
    settings.database.synchronous = sync;
    settings.engine.playbooks = if rules {
        examples()
    } else {
        dir.path().join("none")
    };
    start_nodes(settings, 1, dir).await
}

/// Starts `count` nodes on the database `settings` names, each listening on a port of its own.
async fn start_nodes(
    mut settings: Settings,
    count: usize,
    dir: tempfile::TempDir,
) -> anyhow::Result<Target> {
    settings.server.listen = "127.0.0.1:0".into();
    settings.engine.reload_poll_ms = 0;
    let token = server::generate_token("bench", TokenRole::Writer)?;
    let (mut bases, mut stop) = (Vec::new(), Vec::new());
    for node in 0..count {
        let app = Application::build(&settings, Arc::new(clock::SystemClock)).await?;
        if node == 0 {
            app.state().store.create_token(token.stored.clone()).await?;
        }
        bases.push(format!("http://127.0.0.1:{}", app.port()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stop.push(tx);
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
    }
    Ok(Target {
        bases,
        token: token.secret,
        _stop: stop,
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
        let urls: Vec<String> = target
            .bases
            .iter()
            .map(|b| format!("{b}/api/v1/events"))
            .collect();
        let token = target.token.clone();
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
                    .post(&urls[r % urls.len()])
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

/// The count given after the benchmark's name, or `default`.
fn count_argument(default: usize) -> anyhow::Result<usize> {
    match std::env::args().nth(2) {
        Some(a) => a
            .parse()
            .with_context(|| format!("{a:?} is not a count: give a whole number")),
        None => Ok(default),
    }
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
        "{:<8} {:<6} {:<7} {:>8} {:>8} {:>12} {:>10} {:>9} {:>9}",
        "sync", "rules", "shape", "clients", "per req", "events/s", "req/s", "p50 ms", "p99 ms"
    );
    let scenarios: &[(Synchronous, bool, usize, usize, usize)] = &[
        // (synchronous, example playbooks running, clients, requests, events per request)
        (Synchronous::Full, false, 1, 200, 500),
        (Synchronous::Full, false, 4, 400, 500),
        (Synchronous::Full, true, 1, 200, 500),
        (Synchronous::Full, false, 1, 2_000, 1),
        (Synchronous::Full, false, 8, 10_000, 1),
        (Synchronous::Full, false, 32, 20_000, 1),
        (Synchronous::Full, true, 32, 20_000, 1),
        (Synchronous::Full, false, 64, 20_000, 1),
        (Synchronous::Normal, false, 4, 400, 500),
        (Synchronous::Normal, false, 32, 20_000, 1),
    ];
    let mut batched_best: f64 = 0.0;
    let mut single_32: f64 = 0.0;
    let only = std::env::args().nth(2);
    for &(sync, rules, clients, requests, per) in scenarios {
        let shape = if per == 1 { "single" } else { "batch" };
        if only.as_deref().is_some_and(|o| o != shape) {
            continue;
        }
        let target = start(sync, rules).await?;
        let f = load(&target, clients, requests, per).await?;
        println!(
            "{:<8} {:<6} {:<7} {:>8} {:>8} {:>12.0} {:>10.0} {:>9.2} {:>9.2}",
            format!("{sync:?}").to_lowercase(),
            if rules { "on" } else { "off" },
            shape,
            clients,
            per,
            f.events_per_sec,
            f.requests_per_sec,
            ms(f.p50),
            ms(f.p99)
        );
        if sync == Synchronous::Full && !rules {
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
    let options = store::ConnectOptions {
        synchronous: sync,
        ..store::ConnectOptions::default()
    };
    let store = store::connect(&url, &options, Arc::new(clock::SystemClock))?;
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

/// Ingests events given as JSON object texts, as one batch.
async fn ingest_objects(store: &dyn store::Store, objects: &[String]) -> anyhow::Result<()> {
    let events = wire::parse_batch(&format!("[{}]", objects.join(",")))
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    store.ingest(events).await?;
    Ok(())
}

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks")
}

fn example_engine() -> anyhow::Result<Arc<engine::Engine>> {
    let loaded = playbook::load_dir(&examples());
    let set = loaded
        .set
        .ok_or_else(|| anyhow::anyhow!("example playbooks: {:?}", loaded.diagnostics))?;
    Ok(Arc::new(engine::Engine::new(Arc::new(set))))
}

/// A playbook of 50 rules over the generated history's stages, of the kinds teams write:
/// objections by kind and size, quiet stretches and long stays per stage, meetings and replies.
fn fifty_rules() -> String {
    const STAGES: [&str; 5] = ["discovery", "demo", "proposal", "negotiation", "legal"];
    const KINDS: [&str; 5] = ["pricing", "implementation", "legal", "security", "timing"];
    let mut text = String::from(
        "playbook: fifty\nowner: bench\nstages: [discovery, demo, proposal, negotiation, legal]\nrules:\n",
    );
    for i in 0..50 {
        let stage = STAGES[i % 5];
        let (when, condition) = match i % 5 {
            0 => (
                "{ event: objection.raised }".to_owned(),
                format!(
                    "event.kind == \"{}\" && deal.amount >= {}",
                    KINDS[(i / 5) % 5],
                    1_000 * i
                ),
            ),
            1 => (
                format!("{{ quiet_for: {}d }}", 3 + i % 7),
                format!("deal.stage == \"{stage}\""),
            ),
            2 => (
                format!(
                    "{{ in_stage_for: {{ stage: {stage}, longer_than: {}d }} }}",
                    10 + i
                ),
                "deal.amount > 0".to_owned(),
            ),
            3 => (
                "{ event: meeting.held }".to_owned(),
                format!(
                    "deal.meetings_held >= {} && deal.stage == \"{stage}\"",
                    i % 4 + 1
                ),
            ),
            _ => (
                "{ event: email.received }".to_owned(),
                format!(
                    "deal.stage in [\"{stage}\", \"legal\"] && deal.days_in_stage > {}",
                    i % 10
                ),
            ),
        };
        text.push_str(&format!(
            "  - id: r{i}\n    why: Rule {i}.\n    when: {when}\n    if: '{condition}'\n    reentry: once_per_stage\n    then:\n      - alert: {{ to: deal.owner, text: \"r{i}\" }}\n"
        ));
    }
    text
}

/// `replay`: the generated history (DEALS deals, ~100 events each) replayed through the pure
/// engine in virtual time — the core of a backtest — with the example playbooks and with 50
/// rules. Events are parsed and sorted first; only the replay is timed.
fn replay_history() -> anyhow::Result<()> {
    let deals = count_argument(10_000)?;
    let company = testkit::history::Company {
        deals,
        events_per_deal: 100,
        ..testkit::history::Company::default()
    };
    let (lines, _) = testkit::history::generate(&company);
    let mut events: Vec<domain::Event> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let new = wire::parse_one(line).map_err(|p| anyhow::anyhow!("{p}"))?;
            let at = new.occurred_at;
            Ok(new.stamp(domain::EventId(uuid::Uuid::from_u128(i as u128 + 1)), at))
        })
        .collect::<anyhow::Result<_>>()?;
    drop(lines);
    events.sort_by_key(|e| e.occurred_at);
    let until = events.last().map(|e| e.occurred_at).unwrap_or_default();
    println!(
        "replay: {} events over {deals} deals, target >= 1,000,000 events/s with 50 rules",
        events.len()
    );
    let fifty = playbook::load_files(&[(std::path::PathBuf::from("fifty.yaml"), fifty_rules())]);
    let fifty = fifty
        .set
        .ok_or_else(|| anyhow::anyhow!("50 rules: {:?}", fifty.diagnostics))?;
    let engines = [
        ("example playbooks", example_engine()?),
        ("50 rules", Arc::new(engine::Engine::new(Arc::new(fifty)))),
    ];
    // `--fifty`: the 50 rules only (for profiling).
    let only_fifty = std::env::args().any(|a| a == "--fifty");
    for (name, engine) in engines {
        if only_fifty && name != "50 rules" {
            continue;
        }
        let rules: usize = engine
            .playbooks()
            .playbooks
            .iter()
            .map(|p| p.rules.len())
            .sum();
        let started = Instant::now();
        let mut r = engine::replay::Replay::new(&engine);
        for e in &events {
            r.event(e);
        }
        r.advance(until);
        let took = started.elapsed().as_secs_f64();
        let stats = r.stats();
        let rate = stats.events as f64 / took;
        println!(
            "{name} ({rules} rules), one replay: {} events, {} timers fired, {} effects in {took:.2} s = {rate:.0} events/s = {:.3}x the target; RSS {:.0} MiB",
            stats.events,
            stats.timers,
            stats.effects,
            rate / 1_000_000.0,
            rss_mib()
        );
        drop(r);
        let shards = std::thread::available_parallelism().map_or(1, usize::from);
        let started = Instant::now();
        let (decided, stats) =
            engine::replay::parallel(&engine, &events, until, shards, &mut |_| {});
        let took = started.elapsed().as_secs_f64();
        let rate = stats.events as f64 / took;
        println!(
            "{name} ({rules} rules), {shards} shards (as a backtest runs): {} effects in {took:.2} s = {rate:.0} events/s = {:.3}x the target",
            decided.len(),
            rate / 1_000_000.0,
        );
    }
    Ok(())
}

/// The demo company: generating its year, loading it into a fresh SQLite store as
/// `pipewright demo` does (batches of 1,000, no playbooks yet), and a simulation's two runs.
async fn demo_company() -> anyhow::Result<()> {
    let model = company::Model::default();
    let to = domain::Timestamp::from_millis(1_796_083_200_000); // 2026-12-01
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut generate = Vec::new();
    let mut history = None;
    for _ in 0..5 {
        let started = Instant::now();
        let h = company::history(&model, to, 365);
        generate.push(started.elapsed().as_secs_f64());
        history = Some(h);
    }
    let history = history.context("no run")?;
    let text = history.ndjson();
    let events = history.lines.len();
    println!(
        "company: seed {}, 365 days: {events} events, {} leads, {} deals; founder on {:.0}% of the closed",
        model.seed,
        history.outcome.leads,
        history.outcome.deals,
        history.outcome.founder_share().unwrap_or_default() * 100.0
    );
    let generate = median(generate);
    println!("generate (median of 5): {generate:.3} s");
    let mut load = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite:{}", dir.path().join("demo.db").display());
        let store = store::connect(
            &url,
            &store::ConnectOptions::default(),
            Arc::new(clock::SystemClock),
        )?;
        let started = Instant::now();
        load_ndjson(&*store, &text).await?;
        load.push(started.elapsed().as_secs_f64());
    }
    let load = median(load);
    println!(
        "load into SQLite, synchronous=full (median of 3): {load:.3} s = {:.0} events/s",
        events as f64 / load
    );
    println!(
        "generate + load (what `pipewright demo` waits for): {:.2} s",
        generate + load
    );
    let engine = example_engine()?;
    let started = Instant::now();
    let s = company::simulate(
        &model,
        &engine,
        domain::Timestamp::from_millis(1_767_225_600_000),
        90,
        180,
    );
    println!(
        "simulate, 90 + 180 days, both runs: {:.2} s; founder {:.0}% -> {:.0}% of the closed, first follow-up median {:.1} h -> {:.1} h",
        started.elapsed().as_secs_f64(),
        s.off.founder_share().unwrap_or_default() * 100.0,
        s.on.founder_share().unwrap_or_default() * 100.0,
        s.off.first_follow_up_median_hours.unwrap_or_default(),
        s.on.first_follow_up_median_hours.unwrap_or_default(),
    );
    Ok(())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| pages * 4096.0 / 1_048_576.0)
}

/// The rules engine: condition evaluation rate in memory, event → effect committed through
/// HTTP, and a herd of timers due at the same instant.
async fn rules() -> anyhow::Result<()> {
    let engine = example_engine()?;

    // 1. The pure engine: a pricing objection on 200,000 distinct deals, each decided by the
    //    two objection rules (two CEL conditions) plus re-arming the three timed rules.
    let n = 200_000;
    let deals: Vec<domain::Record> = (0..n)
        .map(|i| {
            let key = domain::RecordKey::new(domain::RecordKind::Deal, domain::RecordId::parse(format!("D-{i}")).unwrap());
            let mut r = domain::Record::empty(&key);
            let created = wire::parse_one(&format!(
                r#"{{"type":"deal.created","source":"b","source_id":"c{i}","occurred_at":"2026-11-01T09:00:00Z","deal":"D-{i}","data":{{"stage":"proposal","amount":{i}}}}}"#
            ))
            .unwrap();
            r.apply(&created.stamp(domain::EventId(uuid::Uuid::from_u128(i as u128)), domain::Timestamp::from_millis(0)));
            r
        })
        .collect();
    let objection = wire::parse_one(r#"{"type":"objection.raised","source":"b","source_id":"o","occurred_at":"2026-11-02T09:00:00Z","deal":"D-0","data":{"kind":"pricing"}}"#)?
        .stamp(domain::EventId(uuid::Uuid::nil()), domain::Timestamp::from_millis(0));
    let started = Instant::now();
    let mut effects = 0;
    for deal in &deals {
        let mut memory = engine::Memory::new();
        effects += engine.on_event(&objection, deal, &mut memory).len();
    }
    let decide = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for deal in &deals {
        std::hint::black_box(engine.arm(deal, &engine::Memory::new(), objection.occurred_at));
    }
    let arm = started.elapsed().as_secs_f64();
    println!(
        "engine.on_event (2 CEL conditions over the deal's facts, bound once per event): {:.0} events/s = {:.0} conditions/s, {effects} effects",
        n as f64 / decide,
        2.0 * n as f64 / decide
    );
    println!(
        "engine.arm (4 time triggers, one a weekly schedule): {:.0} records/s; both per event: {:.0} events/s",
        n as f64 / arm,
        n as f64 / (decide + arm)
    );

    // 2. Event -> effect committed, through HTTP, one request at a time.
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.database.url = format!("sqlite:{}", dir.path().join("rules.db").display());
    settings.engine.playbooks = examples();
    settings.engine.reload_poll_ms = 0;
    // The dispatcher runs as in production, claiming and recording every effect; the dry run
    // only spares it an SMTP server (`bench delivery` measures sending).
    settings.delivery.dry_run = true;
    let app = Application::build(&settings, Arc::new(clock::SystemClock)).await?;
    let store = Arc::clone(&app.state().store);
    let token = server::generate_token("bench", TokenRole::Writer)?;
    store.create_token(token.stored).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let http = delivery::http_client(std::time::Duration::from_secs(60));
    let requests = 2_000;
    let mut latencies = Vec::with_capacity(requests);
    for i in 0..requests {
        let body = format!(
            r#"[{{"type":"deal.created","source":"b","source_id":"c{i}","occurred_at":"2026-11-01T09:00:00Z","deal":"D-{i}","data":{{"stage":"proposal"}}}},{{"type":"objection.raised","source":"b","source_id":"o{i}","occurred_at":"2026-11-02T09:00:00Z","deal":"D-{i}","data":{{"kind":"pricing"}}}}]"#
        );
        let t = Instant::now();
        let r = http
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&token.secret)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "status {}", r.status());
        r.bytes().await?;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    // Stage timers that came due in the past fire too; count the objection's effects only.
    let decided = store
        .effects(None, 10 * requests)
        .await?
        .iter()
        .filter(|e| e.rule == "pricing-objection")
        .count();
    anyhow::ensure!(
        decided == requests,
        "expected {requests} effects, found {decided}"
    );
    println!(
        "event -> effect committed (HTTP, synchronous=full, one client): p50 {:.2} ms, p99 {:.2} ms = {:.2}x the 5 ms p99 target",
        ms(latencies[requests / 2]),
        ms(latencies[requests * 99 / 100]),
        5.0 / ms(latencies[requests * 99 / 100])
    );

    // 3. A herd: 10,000 deals entered legal at the same instant, so 10,000 stuck-in-legal timers
    //    come due together; all must fire (two effects each) and commit.
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("herd.db").display());
    let store = store::connect(
        &url,
        &store::ConnectOptions::default(),
        Arc::new(clock::SystemClock),
    )?;
    store.set_engine(Some(Arc::clone(&engine)));
    let herd = 10_000;
    for chunk in (0..herd).collect::<Vec<_>>().chunks(1_000) {
        let text: Vec<String> = chunk
            .iter()
            .map(|i| format!(r#"{{"type":"deal.created","source":"h","source_id":"{i}","occurred_at":"2026-11-01T09:00:00Z","deal":"H-{i}","data":{{"stage":"legal"}}}}"#))
            .collect();
        ingest_objects(&*store, &text).await?;
    }
    // The quiet timers of the same deals come due earlier; fire those first.
    while store
        .fire_due_timers("2026-11-10T00:00:00Z".parse()?, 1_000)
        .await?
        .timers
        > 0
    {}
    let before = store.effects(None, 100_000).await?.len();
    let due: domain::Timestamp = "2026-11-11T09:00:00Z".parse()?;
    let rss_before = rss_mib();
    let started = Instant::now();
    let mut fired = 0;
    let mut peak = rss_before;
    loop {
        let f = store.fire_due_timers(due, 1_000).await?;
        fired += f.timers;
        peak = peak.max(rss_mib());
        if f.timers == 0 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let effects = store.effects(None, 100_000).await?.len() - before;
    anyhow::ensure!(
        fired == herd && effects == 2 * herd,
        "fired {fired}, effects {effects}"
    );
    println!(
        "herd of {herd} timers due at one instant: all fired in {secs:.2} s = {:.1}x inside the 10 s target; {effects} effects committed; RSS {rss_before:.0} MiB -> peak {peak:.0} MiB",
        10.0 / secs
    );
    Ok(())
}

/// 1,000,000 timers pending; those of the first 20,000 deals come due over the next 20 seconds
/// of real time and are fired by the server's own timer loop. Reports each one's lateness
/// (commit of its effect minus its due time) and the process's memory.
async fn timers() -> anyhow::Result<()> {
    let total = count_argument(1_000_000)?;
    let soon = 20_000.min(total);
    let dir = tempfile::tempdir()?;
    let playbook = "playbook: bench\nowner: o\nstages: [proposal]\nrules:\n  - id: stalled\n    why: A deal three weeks in proposal is stalling.\n    when: { in_stage_for: { stage: proposal, longer_than: 21d } }\n    then:\n      - alert: { to: deal.owner, text: stalled }\n";
    std::fs::create_dir(dir.path().join("playbooks"))?;
    std::fs::write(dir.path().join("playbooks/bench.yaml"), playbook)?;
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.database.url = format!("sqlite:{}", dir.path().join("timers.db").display());
    settings.engine.playbooks = dir.path().join("playbooks");
    settings.engine.reload_poll_ms = 0;
    settings.delivery.dry_run = true;
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
    let app = Application::build(&settings, Arc::clone(&clock)).await?;
    let store = Arc::clone(&app.state().store);
    // First the deals whose timers come due in 30 days, then (so loading time cannot eat into
    // the head start) deals 0..soon, whose timers come due 5..25 s after they are loaded.
    let span = 21 * 86_400_000_i64;
    let loading = Instant::now();
    let load = |range: std::ops::Range<usize>, due: Box<dyn Fn(usize) -> i64>| {
        let store = Arc::clone(&store);
        async move {
            let mut i = range.start;
            while i < range.end {
                let end = (i + 5_000).min(range.end);
                let text: Vec<String> = (i..end)
                    .map(|n| {
                        let entered = domain::Timestamp::from_millis(due(n) - span);
                        format!(r#"{{"type":"deal.created","source":"t","source_id":"{n}","occurred_at":"{entered}","deal":"T-{n}","data":{{"stage":"proposal"}}}}"#)
                    })
                    .collect();
                ingest_objects(&*store, &text).await?;
                i = end;
            }
            anyhow::Ok(())
        }
    };
    let later = clock.now().as_millis() + 30 * 86_400_000;
    load(soon..total, Box::new(move |_| later)).await?;
    let start = clock.now().as_millis() + 5_000;
    load(
        0..soon,
        Box::new(move |n| start + (n as i64 * 20_000) / soon as i64),
    )
    .await?;
    println!(
        "{total} deals with a pending timer loaded in {:.1} s; RSS {:.0} MiB",
        loading.elapsed().as_secs_f64(),
        rss_mib()
    );
    anyhow::ensure!(
        clock.now().as_millis() < start,
        "loading took longer than the 5 s head start; lateness would be wrong"
    );
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let mut peak = rss_mib();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_mib());
        if clock.now().as_millis() > start + 20_000 + 3_000 {
            break;
        }
    }
    let effects = store.effects(None, 2 * soon).await?;
    let mut lateness: Vec<i64> = effects
        .iter()
        .map(|e| e.created_at.as_millis() - e.due.as_millis())
        .collect();
    anyhow::ensure!(
        effects.len() == soon,
        "expected {soon} timers fired, got {}",
        effects.len()
    );
    lateness.sort_unstable();
    let p = |q: f64| lateness[((lateness.len() as f64 * q) as usize).min(lateness.len() - 1)];
    println!(
        "{soon} timers fired with {} pending: lateness p50 {} ms, p99 {} ms, max {} ms = {:.1}x inside the 1 s p99 target; RSS peak {peak:.0} MiB",
        total - soon,
        p(0.5),
        p(0.99),
        lateness[lateness.len() - 1],
        1000.0 / p(0.99).max(1) as f64
    );
    Ok(())
}

/// Effects delivered per second: N emails to a local SMTP server (aiosmtpd), then N webhooks
/// to a local HTTP receiver, by one dispatcher with the default batch and concurrency.
async fn deliveries() -> anyhow::Result<()> {
    let n = count_argument(5_000)?;
    let smtp = testkit::SmtpServer::start()
        .ok_or_else(|| anyhow::anyhow!("needs Debian's python3-aiosmtpd"))?;
    let receiver = testkit::Receiver::start().await;
    for (what, action) in [
        (
            "emails to the SMTP server",
            "send_email: { template: t, to: deal.owner }".to_owned(),
        ),
        (
            "webhooks to the HTTP receiver",
            format!("webhook: {{ url: \"{}\" }}", receiver.url("/ok/bench")),
        ),
    ] {
        let dir = tempfile::tempdir()?;
        let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
        let store: Arc<dyn store::Store> = Arc::new(store::SqliteStore::open(
            store::SqliteOptions::new(dir.path().join("d.db")),
            Arc::clone(&clock),
        )?);
        decide_notes(&*store, &action, n).await?;
        let mut config = delivery::Config::default();
        config.email.port = smtp.port;
        config.rate_limits.clear();
        let dispatcher = Arc::new(
            delivery::Dispatcher::new(Arc::clone(&store), clock, config, "bench".into())
                .map_err(|e| anyhow::anyhow!(e))?,
        );
        let started = Instant::now();
        let mut delivered = 0;
        while delivered < n {
            let pass = dispatcher.run_once().await?;
            anyhow::ensure!(pass.retried + pass.dead == 0, "failures: {pass:?}");
            delivered += pass.delivered;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{n} {what}: {:.2} s = {:.0} effects/s (batch {}, concurrency {}, each recorded with its attempt)",
            secs,
            n as f64 / secs,
            delivery::Config::default().batch,
            delivery::Config::default().concurrency
        );
    }
    let received = smtp.messages().len();
    anyhow::ensure!(received == n, "the SMTP server received {received} of {n}");
    Ok(())
}

/// A mixed backlog drained by the running dispatcher (`Dispatcher::run`, as `serve` runs it):
/// every note sends an email, a webhook and a chat alert, so `3 × COUNT` effects wait across
/// three channels, and 30 of them were claimed by a node that died (their lease ends 2 s after
/// the start). Once with the default limits (email 20/s, chat 1/s), once with limits off: the
/// drain rate per channel, and how late after its lease ended each orphan went out.
async fn drain() -> anyhow::Result<()> {
    let n = count_argument(2_000)?;
    let smtp = testkit::SmtpServer::start()
        .ok_or_else(|| anyhow::anyhow!("needs Debian's python3-aiosmtpd"))?;
    let receiver = testkit::Receiver::start().await;
    println!(
        "a backlog of {n} emails, {n} webhooks and {n} chat alerts (SQLite, batch {}, concurrency {} per channel), 30 orphans among them",
        delivery::Config::default().batch,
        delivery::Config::default().concurrency
    );
    for limits in [true, false] {
        let dir = tempfile::tempdir()?;
        let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
        let store: Arc<dyn store::Store> = Arc::new(store::SqliteStore::open(
            store::SqliteOptions::new(dir.path().join("d.db")),
            Arc::clone(&clock),
        )?);
        let chat = receiver.url(&format!("/ok/chat-{limits}"));
        let hook = receiver.url(&format!("/ok/hook-{limits}"));
        decide_notes(
            &*store,
            &format!(
                "send_email: {{ template: t, to: deal.owner }}\n      - webhook: {{ url: \"{hook}\" }}\n      - alert: {{ to: channel:sales, text: note }}"
            ),
            n,
        )
        .await?;
        let now = clock.now();
        let lease_ends = domain::Timestamp::from_millis(now.as_millis() + 2_000);
        let orphans = store
            .claim_effects(store::Claim {
                node: "dead".into(),
                now,
                lease_until: lease_ends,
                limit: 30,
                ..store::Claim::default()
            })
            .await?;
        let mut config = delivery::Config::default();
        config.email.port = smtp.port;
        config.chat.insert("sales".into(), chat.clone());
        if !limits {
            config.rate_limits.clear();
        }
        let rates = format!("{:?}", config.rate_limits);
        let dispatcher = Arc::new(
            delivery::Dispatcher::new(Arc::clone(&store), clock, config, "bench".into())
                .map_err(|e| anyhow::anyhow!(e))?,
        );
        let emails_before = smtp.messages().len();
        let started = Instant::now();
        let running = tokio::spawn(Arc::clone(&dispatcher).run(Duration::from_millis(250)));
        let path = |url: &str| {
            url.trim_start_matches(&format!("http://127.0.0.1:{}", receiver.port))
                .to_owned()
        };
        let (hook_path, chat_path) = (path(&hook), path(&chat));
        let mut hooks_done = None;
        let (emails, hooks, chats) = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let got = receiver.received();
            let hooks = got.iter().filter(|r| r.path == hook_path).count();
            let chats = got.iter().filter(|r| r.path == chat_path).count();
            let emails = smtp.messages().len() - emails_before;
            if hooks >= n && hooks_done.is_none() {
                hooks_done = Some(started.elapsed());
            }
            // With limits on, the run ends once the unlimited channel is drained and the
            // limited ones have run 10 s; with limits off, once everything is out.
            let done = if limits {
                hooks_done.is_some() && started.elapsed() >= Duration::from_secs(10)
            } else {
                hooks >= n && chats >= n && emails >= n
            };
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "not drained in 10 minutes"
            );
            if done {
                break (emails, hooks, chats);
            }
        };
        let secs = started.elapsed().as_secs_f64();
        running.abort();
        let mut worst: std::collections::BTreeMap<String, i64> = Default::default();
        for o in &orphans {
            let (effect, _) = store
                .effect(&o.key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("orphan gone"))?;
            let late = effect
                .delivered_at
                .map_or(i64::MAX, |d| d.as_millis() - lease_ends.as_millis());
            let family = o.channel.split(':').next().unwrap_or_default().to_owned();
            let w = worst.entry(family).or_insert(i64::MIN);
            *w = (*w).max(late);
        }
        let hooks_secs = hooks_done.map_or(f64::NAN, |d| d.as_secs_f64());
        println!(
            "{}: webhooks {n} in {hooks_secs:.2} s = {:.0}/s; in {secs:.1} s: emails {emails} = {:.1}/s, chat {chats} = {:.1}/s; all channels {:.0} effects/s",
            if limits {
                format!("default limits {rates}")
            } else {
                "limits off".to_owned()
            },
            n as f64 / hooks_secs,
            emails as f64 / secs,
            chats as f64 / secs,
            (emails + hooks + chats) as f64 / secs,
        );
        let late: Vec<String> = worst
            .iter()
            .map(|(c, ms)| {
                if *ms == i64::MAX {
                    format!("{c}: not yet")
                } else {
                    format!("{c}: {ms} ms")
                }
            })
            .collect();
        println!(
            "  orphans ({} claimed by the dead node), worst lateness after their lease ended: {}",
            orphans.len(),
            late.join(", ")
        );
    }
    Ok(())
}

/// Runs a playbook whose one rule does `action` for every note, and ingests 100 deals and `n`
/// notes on them: `n` effects wait in the outbox.
async fn decide_notes(store: &dyn store::Store, action: &str, n: usize) -> anyhow::Result<()> {
    let playbook = format!(
        "playbook: b\nowner: o\ntemplates:\n  t: {{ subject: \"{{{{ deal.name }}}}\", text: \"About {{{{ deal.name }}}}.\" }}\nrules:\n  - id: r\n    why: Every note is sent on.\n    when: {{ event: note.added }}\n    then:\n      - {action}\n"
    );
    let loaded = playbook::load_files(&[(std::path::PathBuf::from("b.yaml"), playbook)]);
    let set = loaded
        .set
        .ok_or_else(|| anyhow::anyhow!("{:?}", loaded.diagnostics))?;
    store.set_engine(Some(Arc::new(engine::Engine::new(Arc::new(set)))));
    let mut events = Vec::new();
    for d in 0..100 {
        events.push(wire::parse_one(&format!(
            r#"{{"type":"deal.created","source":"b","source_id":"d{d}","occurred_at":"2026-11-01T09:00:00Z","deal":"D-{d}","data":{{"name":"Deal {d}","owner":"o{d}@acme.example"}}}}"#
        ))?);
    }
    for i in 0..n {
        events.push(wire::parse_one(&format!(
            r#"{{"type":"note.added","source":"b","source_id":"n{i}","occurred_at":"2026-11-02T09:00:00Z","deal":"D-{}","data":{{"text":"x"}}}}"#,
            i % 100
        ))?);
    }
    for chunk in events.chunks(1000) {
        store.ingest(chunk.to_vec()).await?;
    }
    Ok(())
}

/// Where a `nodes` configuration keeps its data: a SQLite file, or a PostgreSQL schema of its
/// own (dropped afterwards).
fn bench_database(
    postgres: bool,
    dir: &tempfile::TempDir,
) -> anyhow::Result<(String, Option<testkit::postgres::TestDatabase>)> {
    if postgres {
        let db = testkit::postgres::TestDatabase::create().ok_or_else(|| {
            anyhow::anyhow!(
                "needs PostgreSQL at {} (PIPEWRIGHT_TEST_POSTGRES)",
                testkit::postgres::server_url()
            )
        })?;
        Ok((db.url(), Some(db)))
    } else {
        Ok((
            format!("sqlite:{}", dir.path().join("nodes.db").display()),
            None,
        ))
    }
}

/// Ingest and delivery throughput with 1, 2 and 3 nodes on one PostgreSQL database, beside one
/// node on SQLite. Every node runs in this process with its own store (its own writer,
/// connections and dispatcher), as it would in its own; all share this machine's cores.
async fn nodes() -> anyhow::Result<()> {
    let effects = count_argument(5_000)?;
    println!(
        "nodes on one database, example playbooks running (dry run), {} cores; requests go to the nodes in turn",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<10} {:>5} {:>16} {:>14} {:>10} {:>18}",
        "database", "nodes", "batched events/s", "single req/s", "p99 ms", "webhooks/s"
    );
    let receiver = testkit::Receiver::start().await;
    let mut baseline: Option<(f64, f64, f64)> = None;
    for (postgres, count) in [(false, 1), (true, 1), (true, 2), (true, 3)] {
        // Ingest through HTTP: 4 clients sending 500 events a request, then 32 sending one.
        let dir = tempfile::tempdir()?;
        let (url, database) = bench_database(postgres, &dir)?;
        let mut settings = Settings::default();
        settings.database.url = url.clone();
        settings.engine.playbooks = examples();
        settings.delivery.dry_run = true;
        let target = start_nodes(settings, count, dir).await?;
        let batched = load(&target, 4, 200, 500).await?;
        let single = load(&target, 32, 10_000, 1).await?;
        drop(target);
        drop(database);

        // Delivery: `effects` webhooks decided beforehand, then every node's dispatcher drains
        // the outbox together; each effect claimed by one node under its lease.
        let dir = tempfile::tempdir()?;
        let (url, database) = bench_database(postgres, &dir)?;
        let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
        let options = store::ConnectOptions::default();
        let first = store::connect(&url, &options, Arc::clone(&clock))?;
        let action = format!("webhook: {{ url: \"{}\" }}", receiver.url("/ok/nodes"));
        decide_notes(&*first, &action, effects).await?;
        let mut config = delivery::Config::default();
        config.rate_limits.clear();
        let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for node in 0..count {
            let store = if node == 0 {
                Arc::clone(&first)
            } else {
                store::connect(&url, &options, Arc::clone(&clock))?
            };
            let dispatcher = Arc::new(
                delivery::Dispatcher::new(
                    store,
                    Arc::clone(&clock),
                    config.clone(),
                    format!("bench-{node}"),
                )
                .map_err(|e| anyhow::anyhow!(e))?,
            );
            let delivered = Arc::clone(&delivered);
            tasks.push(tokio::spawn(async move {
                while delivered.load(std::sync::atomic::Ordering::SeqCst) < effects {
                    let pass = dispatcher.run_once().await?;
                    anyhow::ensure!(pass.retried + pass.dead == 0, "failures: {pass:?}");
                    delivered.fetch_add(pass.delivered, std::sync::atomic::Ordering::SeqCst);
                    if pass.delivered == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let webhooks = effects as f64 / started.elapsed().as_secs_f64();
        drop(first);
        drop(database);

        let name = if postgres { "postgres" } else { "sqlite" };
        let ratio = |v: f64, base: f64| format!("{v:.0} ({:.2}x)", v / base);
        let (b, s1, w) =
            *baseline.get_or_insert((batched.events_per_sec, single.requests_per_sec, webhooks));
        println!(
            "{:<10} {:>5} {:>16} {:>14} {:>10.2} {:>18}",
            name,
            count,
            ratio(batched.events_per_sec, b),
            ratio(single.requests_per_sec, s1),
            ms(single.p99),
            ratio(webhooks, w)
        );
    }
    println!("(ratios are to one SQLite node; single-event p99 at 32 clients)");
    let received = receiver.received().len();
    anyhow::ensure!(
        received >= 4 * effects,
        "the receiver saw {received} of {} webhooks",
        4 * effects
    );
    Ok(())
}

const CADENCE: &str = r#"playbook: bench
owner: o
stages: [proposal]
sending:
  per_contact: { max: 3, per: 7d }
  per_sender: { per_hour: 100, per_day: 400 }
rules:
  - id: start
    why: Every new deal gets the cadence.
    when: { event: deal.created }
    then:
      - start_sequence: cadence
sequences:
  cadence:
    window: { days: mon-fri, hours: "09:00-17:00", timezone: Europe/Berlin }
    steps:
      - email: { template: a }
      - wait: 2d
      - email: { variants: [b, c] }
      - wait: 3d
      - task: { assignee: deal.owner, title: Call, kind: call }
      - wait: 4d
      - email: { template: d }
      - wait: 1w
      - email: { template: e }
templates:
  a: { subject: "A {{ deal.name }}", text: a }
  b: { subject: B, text: b }
  c: { subject: C, text: c }
  d: { subject: D, text: d }
  e: { subject: E, text: e }
"#;

/// Sequences: N deals (100,000 by default), each enrolled in a five-step cadence with a send
/// window, advanced through a simulated month in 15-minute ticks (what the timer loop does,
/// driven with a manual clock), on SQLite with full durability. Prints the enrolment rate, the
/// steps run per second of advancing, and memory.
async fn sequences() -> anyhow::Result<()> {
    let total = count_argument(100_000)?;
    let dir = tempfile::tempdir()?;
    // Monday 2 November 2026, 06:00 UTC (07:00 in Berlin, before the window opens).
    let start: domain::Timestamp = "2026-11-02T06:00:00Z".parse()?;
    let clock = clock::ManualClock::new(start);
    let url = format!("sqlite:{}", dir.path().join("sequences.db").display());
    let store = store::connect(
        &url,
        &store::ConnectOptions::default(),
        Arc::new(clock.clone()),
    )?;
    let loaded = playbook::load_files(&[("bench.yaml".into(), CADENCE.to_owned())]);
    let set = loaded
        .set
        .ok_or_else(|| anyhow::anyhow!("{:?}", loaded.diagnostics))?;
    store.set_engine(Some(Arc::new(engine::Engine::new(Arc::new(set)))));

    let enrolling = Instant::now();
    let mut n = 0;
    while n < total {
        let end = (n + 2_500).min(total);
        let mut text = Vec::with_capacity(2 * (end - n));
        for i in n..end {
            text.push(format!(r#"{{"type":"contact.created","source":"b","source_id":"c{i}","occurred_at":"2026-11-01T09:00:00Z","contact":"C-{i}","data":{{"email":"c{i}@example.com"}}}}"#));
            text.push(format!(r#"{{"type":"deal.created","source":"b","source_id":"d{i}","occurred_at":"2026-11-01T10:00:00Z","deal":"D-{i}","data":{{"name":"D-{i}","stage":"proposal","owner":"o-{}","contacts":["C-{i}"]}}}}"#, i % 1_000));
        }
        ingest_objects(&*store, &text).await?;
        n = end;
    }
    let enrolled = enrolling.elapsed();
    let active = store
        .enrolments(&store::EnrolmentQuery {
            status: Some("active".into()),
            limit: 1,
            ..Default::default()
        })
        .await?;
    anyhow::ensure!(!active.is_empty(), "no enrolment started");
    println!(
        "{total} deals enrolled (contact, deal, rule, enrolment) in {:.1} s = {:.0} enrolments/s; RSS {:.0} MiB",
        enrolled.as_secs_f64(),
        total as f64 / enrolled.as_secs_f64(),
        rss_mib()
    );

    let mut sum = store::Advanced::default();
    let mut advancing = Duration::ZERO;
    let mut peak = rss_mib();
    let mut busiest = (0usize, Duration::ZERO);
    let month = 30 * 86_400_000_i64;
    let mut t = start.as_millis();
    while t <= start.as_millis() + month {
        let now = domain::Timestamp::from_millis(t);
        clock.set(now);
        let tick = Instant::now();
        let mut ran = 0;
        loop {
            let pass = store.advance_enrolments(now, 1_000).await?;
            sum.enrolments += pass.enrolments;
            sum.emails += pass.emails;
            sum.tasks += pass.tasks;
            sum.held += pass.held;
            sum.ended += pass.ended;
            ran += pass.enrolments;
            if pass.enrolments < 1_000 {
                break;
            }
        }
        let took = tick.elapsed();
        advancing += took;
        if ran > busiest.0 {
            busiest = (ran, took);
        }
        peak = peak.max(rss_mib());
        t += 15 * 60_000;
    }
    let steps = sum.emails + sum.tasks;
    println!(
        "a simulated month in 15-minute ticks: {} enrolment advances, {} emails, {} tasks, {} held by the etiquette, {} completed",
        sum.enrolments, sum.emails, sum.tasks, sum.held, sum.ended
    );
    println!(
        "advancing took {:.1} s = {:.0} steps (effects) per second; busiest tick {} enrolments in {:.1} s; RSS peak {peak:.0} MiB; database {:.0} MiB",
        advancing.as_secs_f64(),
        steps as f64 / advancing.as_secs_f64(),
        busiest.0,
        busiest.1.as_secs_f64(),
        std::fs::metadata(dir.path().join("sequences.db"))?.len() as f64 / 1_048_576.0
    );
    anyhow::ensure!(
        sum.ended == total,
        "expected every enrolment to complete within the month, {} did",
        sum.ended
    );
    Ok(())
}

/// The heroics report on a generated company: `heroics [DEALS]` (default 10,000 deals of about
/// 100 events each, about 1,000,000 events in all), loaded into SQLite through the store, then the
/// report read and computed from the database five times after a warm-up.
async fn heroics_report() -> anyhow::Result<()> {
    let deals = count_argument(10_000)?;
    let company = testkit::history::Company {
        deals,
        events_per_deal: 141,
        ..testkit::history::Company::default()
    };
    let generating = Instant::now();
    let (lines, planted) = testkit::history::generate(&company);
    println!(
        "generated {deals} deals, {} events in {:.1} s; planted {planted:?}",
        lines.len(),
        generating.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("heroics.db");
    let url = format!("sqlite:{}", path.display());
    let store = store::connect(
        &url,
        &store::ConnectOptions::default(),
        Arc::new(clock::SystemClock),
    )?;
    // The example playbooks run as the history arrives (a pricing objection fires its rule);
    // the report reads their firings beside the history.
    let engine = example_engine()?;
    store.set_engine(Some(Arc::clone(&engine)));
    let loading = Instant::now();
    for chunk in lines.chunks(1_000) {
        ingest_objects(&*store, chunk).await?;
    }
    let now: domain::Timestamp = "2027-01-01T00:00:00Z".parse()?;
    let loaded = loading.elapsed().as_secs_f64();
    println!(
        "loaded through the store with the example playbooks in {loaded:.1} s = {:.0} events/s; database {:.0} MiB",
        lines.len() as f64 / loaded,
        std::fs::metadata(&path)?.len() as f64 / 1_048_576.0
    );
    drop(lines);
    let running = Some(Arc::clone(engine.playbooks()));
    let params = server::heroics::HeroicsParams::default();
    println!(
        "{:>5} {:>10} {:>12} {:>10} {:>10} {:>14} {:>8}",
        "run", "read s", "automation s", "report s", "total s", "interventions", "firings"
    );
    let mut totals = Vec::new();
    // Run 0 warms up: right after the load the checkpointer is still copying its WAL into
    // the database file, on the core a reader would use. It is shown, not counted.
    for run in 0..=5 {
        let (counts, options) = params.options(now).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Instant::now();
        let history = server::heroics::history(&*store, counts, options.to).await?;
        let read = t.elapsed();
        let automation =
            server::heroics::automation(&*store, running.clone(), &history.people).await?;
        let automated = t.elapsed();
        let report = heroics::report(&history, &options, &automation);
        let total = t.elapsed();
        println!(
            "{run:>5} {:>10.2} {:>12.2} {:>10.2} {:>10.2} {:>14} {:>8}",
            read.as_secs_f64(),
            (automated - read).as_secs_f64(),
            (total - automated).as_secs_f64(),
            total.as_secs_f64(),
            report.summary.interventions,
            automation.firings.len()
        );
        if run > 0 {
            totals.push(total.as_secs_f64());
        }
    }
    totals.sort_by(f64::total_cmp);
    println!(
        "report on {deals} deals: median of 5 {:.2} s = {:.2}x the 2 s target; RSS {:.0} MiB",
        totals[2],
        totals[2] / 2.0,
        rss_mib()
    );
    Ok(())
}

/// Scoring open deals for risk: a year of the demo company learned from (time it takes), then
/// 1,000,000 open deals — the demo's deals as they stood every five days while open, repeated —
/// scored with the fitted and the rule-based weights on one thread and on two.
fn risk_scoring() -> anyhow::Result<()> {
    use domain::{DealStatus, EventId, Record, RecordKey, RecordKind};
    const DEALS: usize = 1_000_000;
    let to = domain::Timestamp::from_millis(1_796_083_200_000); // 2026-12-01
    let history = company::history(&company::Model::default(), to, 365);
    let parsed = wire::parse_ndjson(&history.ndjson()).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let mut by_deal: std::collections::BTreeMap<String, Vec<domain::Event>> = Default::default();
    for (i, new) in parsed.into_iter().enumerate() {
        let Some(deal) = new.refs.deal.clone() else {
            continue;
        };
        let at = new.occurred_at;
        let event = new.stamp(EventId(uuid::Uuid::from_u128(i as u128 + 1)), at);
        by_deal
            .entry(deal.as_str().to_owned())
            .or_default()
            .push(event);
    }
    let histories: Vec<risk::DealHistory> = by_deal
        .into_iter()
        .map(|(id, mut events)| {
            events.sort_by_key(|e| e.occurred_at);
            let key = RecordKey::new(
                RecordKind::Deal,
                domain::RecordId::parse(id).expect("an id"),
            );
            risk::DealHistory { key, events }
        })
        .collect();
    let engine = example_engine()?;
    let base = engine.risk().clone();
    let started = Instant::now();
    let learned = risk::learn(&base, &histories);
    let learn = started.elapsed().as_secs_f64();
    let fitted = base.with_learned(learned.clone());
    let rules = base.with_learned(risk::Learned {
        fitted: None,
        ..learned
    });
    println!(
        "learn from {} deals' histories ({} events): {learn:.3} s; {}",
        histories.len(),
        history.lines.len(),
        fitted.scoring()
    );
    // Open deals as they stood, every five days of their life.
    let mut shapes: Vec<(domain::Deal, domain::Timestamp)> = Vec::new();
    for h in &histories {
        if h.events.is_empty() {
            continue;
        }
        let mut record = Record::empty(&h.key);
        let mut next = 0;
        let mut at = h.events[0].occurred_at.as_millis() + 5 * domain::MILLIS_PER_DAY;
        while at <= to.as_millis() {
            let t = domain::Timestamp::from_millis(at);
            while next < h.events.len() && h.events[next].occurred_at <= t {
                record.apply(&h.events[next]);
                next += 1;
            }
            match &record {
                Record::Deal(d) if d.status == DealStatus::Open => shapes.push((d.clone(), t)),
                _ => break,
            }
            at += 5 * domain::MILLIS_PER_DAY;
        }
    }
    let deals: Vec<(domain::Deal, domain::Timestamp)> = (0..DEALS)
        .map(|i| shapes[i % shapes.len()].clone())
        .collect();
    let warned = deals
        .iter()
        .filter(|(d, at)| fitted.signs(d, *at).warnings != 0)
        .count();
    println!(
        "{DEALS} open deals from {} shapes; {:.0}% show a warning",
        shapes.len(),
        100.0 * warned as f64 / DEALS as f64
    );
    let score_all = |model: &risk::Model, threads: usize| -> (f64, f64) {
        let chunk = DEALS.div_ceil(threads);
        let mut runs = Vec::new();
        let mut total = 0.0;
        for _ in 0..5 {
            let started = Instant::now();
            total = std::thread::scope(|s| {
                let handles: Vec<_> = deals
                    .chunks(chunk)
                    .map(|part| {
                        s.spawn(move || part.iter().map(|(d, at)| model.score(d, *at)).sum::<f64>())
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
            });
            runs.push(started.elapsed().as_secs_f64());
        }
        runs.sort_by(f64::total_cmp);
        (runs[2], total)
    };
    let mut one = 0.0;
    for (name, model) in [("fitted", &fitted), ("rule-based", &rules)] {
        for threads in [1, 2] {
            let (secs, total) = score_all(model, threads);
            if threads == 1 && name == "fitted" {
                one = secs;
            }
            println!(
                "score {DEALS} deals, {name}, {threads} thread(s) (median of 5): {secs:.3} s = {:.2} M deals/s; mean score {:.3}{}",
                DEALS as f64 / secs / 1e6,
                total / DEALS as f64,
                if threads == 2 && name == "fitted" {
                    format!(
                        "; {:.2}x one thread; target 2 s: {:.1}x under",
                        one / secs,
                        2.0 / secs
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    // With the reasons in words, as a deal page or the ranked pipeline asks for them.
    let started = Instant::now();
    let n = 100_000;
    let reasons: usize = deals[..n]
        .iter()
        .map(|(d, at)| fitted.assess(d, *at).warnings.len())
        .sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "assess {n} deals with sentences, 1 thread: {secs:.3} s = {:.0} deals/s ({reasons} warnings)",
        n as f64 / secs
    );
    Ok(())
}

/// Parses NDJSON and ingests it in batches of 1,000, as `pipewright import` does.
async fn load_ndjson(store: &dyn store::Store, text: &str) -> anyhow::Result<()> {
    let parsed = wire::parse_ndjson(text).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let mut parsed = parsed.into_iter();
    loop {
        let batch: Vec<domain::NewEvent> = parsed.by_ref().take(1000).collect();
        if batch.is_empty() {
            return Ok(());
        }
        store.ingest(batch).await?;
    }
}

/// The web UI's pages with the demo company loaded (a year, seed 7) and the example playbooks
/// on, as `pipewright demo` serves them: each page requested 50 times by a signed-in manager,
/// one request at a time, timed from request to last byte on the loopback (the server's
/// rendering, the store's reads and the round trip).
async fn ui_pages() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("ui.db").display());
    let to = clock::Clock::now(&clock::SystemClock);
    let history = company::history(&company::Model::default(), to, 365);
    {
        let store = store::connect(
            &url,
            &store::ConnectOptions::default(),
            Arc::new(clock::SystemClock),
        )?;
        load_ndjson(&*store, &history.ndjson()).await?;
    }
    let mut settings = Settings::default();
    settings.database.url = url;
    settings.engine.playbooks = examples();
    settings.server.listen = "127.0.0.1:0".into();
    settings.delivery.dry_run = true;
    let app = Application::build(&settings, Arc::new(clock::SystemClock)).await?;
    let store = Arc::clone(&app.state().store);
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    // Let the timers, deliveries and the first learning settle, as a demo does at start.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    store
        .create_user(
            store::NewUser {
                id: "omar@acme.example".into(),
                name: "Omar Haddad".into(),
                role: store::UserRole::Manager,
                password_hash: server::web::auth::hash_password("bench password")
                    .map_err(|e| anyhow::anyhow!(e))?,
            },
            true,
        )
        .await?;
    let secret = server::web::auth::random()?;
    let expires = domain::Timestamp::from_millis(to.as_millis() + 3_600_000);
    store
        .create_session(
            &server::hash_token(&secret),
            "omar@acme.example",
            "csrf",
            expires,
        )
        .await?;
    let http = reqwest::Client::new();
    let cookie = format!("pw_session={secret}");
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).header("cookie", &cookie);
        async move {
            let started = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            anyhow::ensure!(status.is_success(), "{status}");
            Ok::<_, anyhow::Error>((started.elapsed().as_secs_f64() * 1000.0, body.len()))
        }
    };
    // A deal at risk, for its page.
    let html = http
        .get(format!("{base}/pipeline"))
        .header("cookie", &cookie)
        .send()
        .await?
        .text()
        .await?;
    let deal = html
        .split("href=\"/deals/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("D-1001")
        .to_owned();
    println!(
        "ui: the demo company ({} events) with the example playbooks; each page 50 times, one at a time",
        history.lines.len()
    );
    let mut worst: f64 = 0.0;
    for path in [
        "/".to_owned(),
        "/pipeline".to_owned(),
        format!("/deals/{deal}"),
        "/inbox?all=1".to_owned(),
        "/playbooks".to_owned(),
        "/outbox".to_owned(),
        "/handbook".to_owned(),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..50 {
            let (ms, n) = get(path.clone()).await?;
            times.push(ms);
            bytes = n;
        }
        times.sort_by(f64::total_cmp);
        let (p50, p95, max) = (times[25], times[47], times[49]);
        worst = worst.max(p95);
        println!(
            "{path:<20} p50 {p50:>6.1} ms  p95 {p95:>6.1} ms  max {max:>6.1} ms  ({} KiB)",
            bytes / 1024
        );
    }
    println!(
        "slowest page at p95: {worst:.1} ms; target 100 ms: {:.1}x under",
        100.0 / worst
    );
    Ok(())
}

/// Issue 23: a reload that only rewords the 2,000-rule set on a pipeline of `N` deals (100,000
/// by default) — forecast and storm guard, the arming walk over every record, the timer pass —
/// and the effects it adds (0).
async fn reload() -> anyhow::Result<()> {
    let deals = count_argument(100_000)?;
    let (rules, timed_every) = (2_000, 100);
    let dir = tempfile::tempdir()?;
    let now = domain::Timestamp::from_millis(1_795_000_000_000);
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::ManualClock::new(now));
    let store = store::connect(
        &format!("sqlite:{}", dir.path().join("reload.db").display()),
        &store::ConnectOptions::default(),
        Arc::clone(&clock),
    )?;
    let engine = |suffix: &str| -> anyhow::Result<Arc<engine::Engine>> {
        // Without routing rules: each routing decision counts its team's open deals and recent
        // assignments, which grows with the pipeline and is not what this measures.
        let text = testkit::rules::generated(rules, timed_every, false, suffix);
        let loaded = playbook::load_files(&[(std::path::PathBuf::from("g.yaml"), text)]);
        let set = loaded
            .set
            .ok_or_else(|| anyhow::anyhow!("{:?}", loaded.diagnostics))?;
        Ok(Arc::new(engine::Engine::new(Arc::new(set))))
    };
    let first = engine("")?;
    store.set_engine(Some(Arc::clone(&first)));
    let loading = Instant::now();
    let stages = testkit::rules::STAGES;
    let mut d = 0;
    while d < deals {
        let end = (d + 5_000).min(deals);
        let text: Vec<String> = (d..end)
            .map(|n| {
                let day = n % 28;
                format!(
                    r#"{{"type":"deal.created","source":"t","source_id":"{n}","occurred_at":"{}","deal":"R-{n}","data":{{"stage":"{}","owner":"sam@acme.example","amount":{}}}}}"#,
                    domain::Timestamp::from_millis(now.as_millis() - (day as i64 + 1) * 86_400_000),
                    stages[n % stages.len()],
                    (n % 50) * 1_000
                )
            })
            .collect();
        ingest_objects(&*store, &text).await?;
        d = end;
    }
    let fire_all = || {
        let store = Arc::clone(&store);
        async move {
            let mut fired = 0;
            loop {
                let pass = store.fire_due_timers(now, 5_000).await?;
                fired += pass.timers;
                if pass.timers == 0 {
                    return anyhow::Ok(fired);
                }
            }
        }
    };
    let ingested = loading.elapsed();
    let fired = fire_all().await?;
    let before = count_effects(&*store).await?;
    println!(
        "{deals} deals under {rules} rules ({} on a time trigger) ingested in {:.1} s; then {fired} timers came due in {:.1} s, {before} effects",
        rules / timed_every,
        ingested.as_secs_f64(),
        (loading.elapsed() - ingested).as_secs_f64()
    );

    // The same rules, reworded: what a reload does on the server, step by step.
    let second = engine(" (reworded)")?;
    let guard = server::storms::GuardSettings::of(&server::Settings::default().engine);
    let started = Instant::now();
    let preview = server::storms::guard_change(&*store, Some(&first), &second, guard, now).await?;
    let forecast = started.elapsed();
    store.set_engine(Some(second));
    let walking = Instant::now();
    let armed = store.arm_all(now, 1_000).await?;
    let walk = walking.elapsed();
    let firing = Instant::now();
    let refired = fire_all().await?;
    let fire = firing.elapsed();
    let total = started.elapsed();
    let after = count_effects(&*store).await?;
    let forecast_words = if preview.rules.is_empty() {
        "no rule is new or reaches further, so no record was read".to_owned()
    } else {
        format!("{} records read", preview.records)
    };
    println!(
        "reload of the reworded set: guard's forecast {:.2} s ({forecast_words}), arming walk over {armed} records {:.2} s, timer pass {:.2} s ({refired} timers due); total {:.2} s",
        forecast.as_secs_f64(),
        walk.as_secs_f64(),
        fire.as_secs_f64(),
        total.as_secs_f64()
    );
    println!("effects added by the reload: {}", after - before);
    anyhow::ensure!(after == before, "a reworded reload added effects");
    Ok(())
}

/// Every effect in the outbox, counted page by page.
async fn count_effects(store: &dyn store::Store) -> anyhow::Result<usize> {
    let (mut n, mut after) = (0, None);
    loop {
        let page = store
            .outbox(&store::OutboxQuery {
                after,
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        n += page.len();
        match page.last() {
            Some(last) if page.len() == 10_000 => after = Some(last.seq),
            _ => return Ok(n),
        }
    }
}

/// Issue 23: `pipewright preview` on the demo company: the example playbooks against
/// themselves with one rule made new, over the company's year ending today.
async fn preview_demo() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("preview.db").display());
    let to = clock::Clock::now(&clock::SystemClock);
    let history = company::history(&company::Model::default(), to, 365);
    let store = store::connect(
        &url,
        &store::ConnectOptions::default(),
        Arc::new(clock::SystemClock),
    )?;
    load_ndjson(&*store, &history.ndjson()).await?;
    let running = example_engine()?;
    store.set_engine(Some(Arc::clone(&running)));
    let armed = store.arm_all(to, 1_000).await?;
    let loaded = playbook::load_dir(&examples());
    let mut set = loaded
        .set
        .ok_or_else(|| anyhow::anyhow!("{:?}", loaded.diagnostics))?;
    if let Some(rule) = set.playbooks.first_mut().and_then(|p| p.rules.first_mut()) {
        rule.id.push_str("-new");
    }
    let candidate = engine::Engine::new(Arc::new(set));
    let guard = server::storms::GuardSettings::of(&server::Settings::default().engine);
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..20 {
        let started = Instant::now();
        last = Some(server::storms::preview(&*store, Some(&running), &candidate, guard, to).await?);
        times.push(started.elapsed());
    }
    times.sort();
    let preview = last.expect("ran");
    println!(
        "preview of the example playbooks (one rule new) on the demo company ({} deals and leads, {armed} armed, {} rules, {} days ahead): median {:.1} ms, slowest {:.1} ms of 20",
        preview.records,
        preview.rules.len(),
        preview.days,
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    Ok(())
}
