//! The `pipewright` command, run as a separate process the way people and CI run it.

mod cli;
mod crash;
mod delivery_crash;
mod multinode;
mod orphans;
mod report;
mod ui;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    // Keep the test independent of the developer's environment.
    cmd.env_remove("PIPEWRIGHT_CONFIG_FILE")
        .env_remove("PIPEWRIGHT_DATABASE__URL")
        .env("PIPEWRIGHT_LOG__LEVEL", "warn");
    cmd
}

/// `pipewright demo` on `db` with the example playbooks, on a free port, and `args` after it.
pub fn demo(db: &str, args: &[&str]) -> Server {
    demo_with(db, args, &[])
}

/// [`demo`], with more of the environment (`PIPEWRIGHT_…` settings).
pub fn demo_with(db: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = bin();
    cmd.env(
        "PIPEWRIGHT_ENGINE__PLAYBOOKS",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks"),
    )
    .envs(env.iter().copied())
    .args(["--database", db, "demo", "--listen", "127.0.0.1:0"])
    .args(args);
    Server::spawn(cmd)
}

pub fn db_url(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("pw.db").display())
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Creates a token with the CLI and returns its secret.
pub fn create_token(db: &str, role: &str) -> String {
    let out = run(&[
        "--database",
        db,
        "token",
        "create",
        "--name",
        "test",
        "--role",
        role,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    text.split_whitespace()
        .find(|w| w.starts_with("pw_"))
        .expect("a secret is printed")
        .to_owned()
}

/// A `pipewright serve` child process; killed (SIGKILL) when dropped.
#[allow(missing_debug_implementations)]
pub struct Server {
    pub child: Child,
    pub base: String,
    /// What the command printed before it started listening.
    pub printed: Vec<String>,
}

impl Server {
    pub fn start(db: &str) -> Server {
        Self::run(&["--database", db, "serve", "--listen", "127.0.0.1:0"])
    }

    /// Runs `pipewright ARGS` and waits until it prints the address it listens on.
    pub fn run(args: &[&str]) -> Server {
        let mut cmd = bin();
        cmd.args(args);
        Self::spawn(cmd)
    }

    /// Runs the command and waits until it prints the address it listens on.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let base = loop {
            let line = lines
                .next()
                .expect("the server printed its address")
                .unwrap();
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.trim().to_owned();
            }
            printed.push(line);
        };
        Server {
            child,
            base,
            printed,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small random source seeded per run.
#[derive(Debug)]
pub struct Dice(u64);

impl Default for Dice {
    fn default() -> Self {
        Self::new()
    }
}

impl Dice {
    pub fn new() -> Self {
        Self(
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                | 1,
        )
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Posts to `bases[first]` until a node acknowledges: while one is down (or restarting),
/// tries the next.
pub async fn post_until_acknowledged(
    http: &reqwest::Client,
    bases: &[String],
    first: usize,
    token: &str,
    body: String,
) {
    let mut node = first;
    loop {
        let sent = http
            .post(format!("{}/api/v1/events", bases[node % bases.len()]))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => panic!("unexpected status {}", r.status()),
            Err(_) => {
                node += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The rules of the crash tests: every note sends an email and a webhook, and so does every
/// deal in legal for more than a day. `RECEIVER` stands for the webhook's URL.
pub const CRASH_PLAYBOOK: &str = r#"playbook: crash
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

pub async fn get(http: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    loop {
        match http.get(url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => return r.json().await.unwrap(),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// RFC 3339, `days` before now, from the system clock (the server's clock is real here).
pub fn days_ago(days: i64) -> String {
    use clock::Clock;
    let now = clock::SystemClock.now().as_millis();
    domain::Timestamp::from_millis(now - days * 86_400_000).to_string()
}

/// Waits for the outbox (read through `base`) to drain, then checks that every effect in it
/// was delivered and reached the SMTP server or the receiver: after de-duplication on the
/// idempotency key none missing and none extra. `expected` emails and as many webhooks.
/// Returns a summary with the raw repeats (a crash between sending and recording).
pub async fn assert_delivered_once(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    smtp: &testkit::SmtpServer,
    receiver: &testkit::Receiver,
    expected: usize,
) -> String {
    // Wait for the outbox to drain.
    let mut drained = false;
    for _ in 0..1200 {
        let pending = get(
            http,
            &format!("{base}/api/v1/outbox?status=pending&limit=1"),
            token,
        )
        .await;
        let leased = get(
            http,
            &format!("{base}/api/v1/outbox?status=delivering&limit=1"),
            token,
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
            http,
            &format!("{base}/api/v1/outbox?limit=1000&cursor={cursor}"),
            token,
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
    assert_eq!(expected_emails.len(), expected, "one email per decision");
    assert_eq!(expected_hooks.len(), expected, "one webhook per decision");

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
    let summary = format!(
        "{} emails and {} webhooks expected; after de-duplication {} missing, {extra} extra; \
         raw duplicates: {} emails, {} webhooks",
        expected_emails.len(),
        expected_hooks.len(),
        missing_emails.len() + missing_hooks.len(),
        raw_duplicates(&emails),
        raw_duplicates(&hooks),
    );
    assert!(missing_emails.is_empty(), "{missing_emails:?}");
    assert!(missing_hooks.is_empty(), "{missing_hooks:?}");
    assert_eq!(extra, 0);
    summary
}
