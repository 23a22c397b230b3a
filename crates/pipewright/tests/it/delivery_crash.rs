//! Exactly-once delivery across crashes: rules send an email and a webhook for every note and
//! for every deal stuck in legal; a client streams notes while the server is SIGKILLed at
//! random moments and restarted, once in the middle of a herd of timers firing at once. At the
//! end the SMTP server and the HTTP receiver have seen every effect, and after de-duplication
//! on the idempotency key none is missing and none is extra. Raw duplicates (a crash between
//! sending and recording) are counted and printed.
//!
//! Short form in the test suite; the long form is one command:
//! `PIPEWRIGHT_CRASH_NOTES=3000 PIPEWRIGHT_CRASH_KILLS=8 cargo test --release -p pipewright --test it delivery_crash -- --nocapture`

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use testkit::{Receiver, SmtpServer, free_port};

use crate::{Server, create_token, db_url, write};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small random source seeded per run.
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        Self(
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                | 1,
        )
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const PLAYBOOK: &str = r#"playbook: crash
owner: o
stages: [proposal, legal]
templates:
  ping:
    subject: "{{ deal.name }}"
    text: "About {{ deal.name }}."
rules:
  - id: on-note
    why: Every note is mailed to the owner and sent to the CRM.
    when: { event: note.added }
    then:
      - send_email: { template: ping, to: deal.owner }
      - webhook: { url: "RECEIVER" }
  - id: stuck-in-legal
    why: Legal stalls are flagged at once.
    when: { in_stage_for: { stage: legal, longer_than: 1d } }
    then:
      - send_email: { template: ping, to: deal.owner }
      - webhook: { url: "RECEIVER" }
"#;

fn start(config: &str, port: u16) -> Server {
    let listen = format!("127.0.0.1:{port}");
    Server::run(&["--config", config, "serve", "--listen", &listen])
}

/// Posts until the server acknowledges (it may be down or restarting).
async fn post_until_acknowledged(http: &reqwest::Client, base: &str, token: &str, body: String) {
    loop {
        let sent = http
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => panic!("unexpected status {}", r.status()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    loop {
        match http.get(url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => return r.json().await.unwrap(),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_effect_reaches_its_receiver_once_across_sigkills() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let notes = setting("PIPEWRIGHT_CRASH_NOTES", 400);
    let kills = setting("PIPEWRIGHT_CRASH_KILLS", 3);
    let herd = setting("PIPEWRIGHT_CRASH_HERD", 300);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    write(
        &playbooks,
        "crash.yaml",
        &PLAYBOOK.replace("RECEIVER", &receiver.url("/ok/crash")),
    );
    let db = db_url(dir.path());
    let config = write(
        dir.path(),
        "pipewright.toml",
        &format!(
            "[database]\nurl = \"{db}\"\n[engine]\nplaybooks = \"{}\"\ntimer_poll_ms = 20\nreload_poll_ms = 0\n\
             [delivery]\npoll_ms = 20\nlease_ms = 1500\nbackoff_base_ms = 200\nbatch = 50\n\
             [delivery.rate_limits]\nemail = 1000000.0\n[delivery.email]\nport = {}\n[delivery.webhooks]\nsecret = \"s\"\n",
            playbooks.display(),
            smtp.port
        ),
    );
    let config = config.to_str().unwrap().to_owned();
    let token = create_token(&db, "writer");
    let port = free_port();
    let mut server = start(&config, port);
    let base = server.base.clone();
    let http = delivery::http_client(Duration::from_secs(10));
    let mut dice = Dice::new();

    // The herd: deals that entered legal two days ago, whose timers are all due at once.
    let now = days_ago(2);
    let herd_events: Vec<String> = (0..herd)
        .map(|i| format!(
            r#"{{"type":"deal.created","source":"crash","source_id":"h{i}","occurred_at":"{now}","deal":"H-{i}","data":{{"name":"Herd {i}","stage":"legal","owner":"o{i}@acme.example"}}}}"#
        ))
        .collect();
    post_until_acknowledged(&http, &base, &token, herd_events.join("\n")).await;
    // Kill while the herd's timers fire and their effects go out.
    tokio::time::sleep(Duration::from_millis(50 + dice.below(150))).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    server = start(&config, port);

    // The stream: notes on 20 deals, ten per request, while the server is killed and restarted.
    let setup: Vec<String> = (0..20)
        .map(|d| format!(
            r#"{{"type":"deal.created","source":"crash","source_id":"d{d}","occurred_at":"2026-11-01T09:00:00Z","deal":"D-{d}","data":{{"name":"Deal {d}","stage":"proposal","owner":"a{d}@acme.example"}}}}"#
        ))
        .collect();
    post_until_acknowledged(&http, &base, &token, setup.join("\n")).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let streamer = {
        let (http, base, token, sent) =
            (http.clone(), base.clone(), token.clone(), Arc::clone(&sent));
        tokio::spawn(async move {
            for chunk in (0..notes).collect::<Vec<_>>().chunks(10) {
                let body: Vec<String> = chunk
                    .iter()
                    .map(|i| format!(
                        r#"{{"type":"note.added","source":"crash","source_id":"n{i}","occurred_at":"2026-11-02T09:00:00Z","deal":"D-{}","data":{{"text":"{i}"}}}}"#,
                        i % 20
                    ))
                    .collect();
                post_until_acknowledged(&http, &base, &token, body.join("\n")).await;
                sent.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        })
    };
    for _ in 1..kills {
        tokio::time::sleep(Duration::from_millis(100 + dice.below(400))).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        server = start(&config, port);
    }
    streamer.await.unwrap();

    // Wait for the outbox to drain.
    let mut drained = false;
    for _ in 0..1200 {
        let pending = get(
            &http,
            &format!("{base}/api/v1/outbox?status=pending&limit=1"),
            &token,
        )
        .await;
        let leased = get(
            &http,
            &format!("{base}/api/v1/outbox?status=delivering&limit=1"),
            &token,
        )
        .await;
        if pending["items"].as_array().unwrap().is_empty()
            && leased["items"].as_array().unwrap().is_empty()
        {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "the outbox did not drain");

    // Every effect in the outbox, by channel.
    let mut expected_emails = HashSet::new();
    let mut expected_hooks = HashSet::new();
    let mut cursor = 0;
    loop {
        let page = get(
            &http,
            &format!("{base}/api/v1/outbox?limit=1000&cursor={cursor}"),
            &token,
        )
        .await;
        let items = page["items"].as_array().unwrap();
        for e in items {
            assert_eq!(e["status"], "delivered", "{e}");
            let key = e["key"].as_str().unwrap().to_owned();
            if e["channel"] == "email" {
                expected_emails.insert(key);
            } else {
                expected_hooks.insert(key);
            }
        }
        match page["next"].as_i64() {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(
        expected_emails.len(),
        notes + herd,
        "one email per note and per herd deal"
    );
    assert_eq!(expected_hooks.len(), notes + herd);

    let mut emails: HashMap<String, usize> = HashMap::new();
    for m in smtp.messages() {
        *emails
            .entry(m["effect"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let mut hooks: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *hooks
            .entry(r.header("idempotency-key").unwrap().to_owned())
            .or_default() += 1;
    }
    let missing_emails: Vec<_> = expected_emails
        .iter()
        .filter(|k| !emails.contains_key(*k))
        .collect();
    let missing_hooks: Vec<_> = expected_hooks
        .iter()
        .filter(|k| !hooks.contains_key(*k))
        .collect();
    let extra = emails
        .keys()
        .filter(|k| !expected_emails.contains(*k))
        .count()
        + hooks
            .keys()
            .filter(|k| !expected_hooks.contains(*k))
            .count();
    let raw_duplicates =
        |seen: &HashMap<String, usize>| seen.values().map(|n| n - 1).sum::<usize>();
    println!(
        "delivery crash test: {} notes + a herd of {herd}, {kills} SIGKILLs: {} emails and {} webhooks expected; \
         after de-duplication {} missing, {extra} extra; raw duplicates: {} emails, {} webhooks",
        notes,
        expected_emails.len(),
        expected_hooks.len(),
        missing_emails.len() + missing_hooks.len(),
        raw_duplicates(&emails),
        raw_duplicates(&hooks),
    );
    assert!(missing_emails.is_empty(), "{missing_emails:?}");
    assert!(missing_hooks.is_empty(), "{missing_hooks:?}");
    assert_eq!(extra, 0);
    drop(server);
}

/// RFC 3339, `days` before now, from the system clock (the server's clock is real here).
fn days_ago(days: i64) -> String {
    use clock::Clock;
    let now = clock::SystemClock.now().as_millis();
    domain::Timestamp::from_millis(now - days * 86_400_000).to_string()
}
