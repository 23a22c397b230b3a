//! Issue 24: an effect a SIGKILLed node was delivering goes out again within a lease and a
//! poll of the kill (plus the restart), even with a backlog of over ten times the claim's
//! batch waiting in the same channel under its rate limit. Before each channel became a queue
//! with its expired leases at its head, such an effect waited for the whole backlog (22 minutes
//! in a fault test). Runs on SQLite and PostgreSQL (when a server answers; always under
//! `CI=true`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use testkit::postgres::TestDatabase;
use testkit::{Receiver, free_port};

use crate::{Server, create_token, post_until_acknowledged, run, stderr, write};

/// How long a lease lasts in this test, and how often the dispatcher looks.
const LEASE_MS: u64 = 3_000;
const POLL_MS: u64 = 50;
/// Effects claimed at once; the backlog is over ten times this.
const BATCH: usize = 10;
/// Notes whose webhooks make the backlog (the rate limit lets 5 a second through).
const BACKLOG: usize = 15 * BATCH;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_go_out_within_a_lease_of_a_sigkill_ahead_of_the_backlog_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("pw.db").display());
    orphans_go_out_within_a_lease(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_go_out_within_a_lease_of_a_sigkill_ahead_of_the_backlog_on_postgres() {
    let Some(database) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    orphans_go_out_within_a_lease(&database.url(), dir.path()).await;
}

async fn orphans_go_out_within_a_lease(db: &str, dir: &std::path::Path) {
    let receiver = Receiver::start().await;
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    // Objections go to a receiver that takes 2 s to answer their first try: the kill finds
    // them under way. Notes go to the same host, one channel, and make the backlog.
    write(
        &playbooks,
        "orphans.yaml",
        &format!(
            "playbook: orphans\nowner: ops\nrules:\n  - id: objection-hook\n    why: Objections reach the CRM.\n    when: {{ event: objection.raised }}\n    then:\n      - webhook: {{ url: \"{}\" }}\n  - id: note-hook\n    why: Notes reach the CRM.\n    when: {{ event: note.added }}\n    then:\n      - webhook: {{ url: \"{}\" }}\n",
            receiver.url("/slow/objection"),
            receiver.url("/ok/note")
        ),
    );
    let config = write(
        dir,
        "pipewright.toml",
        &format!(
            "[database]\nurl = \"{db}\"\n[engine]\nplaybooks = \"{}\"\ntimer_poll_ms = 50\nreload_poll_ms = 0\nstorm_limit = 0\n\
             [delivery]\npoll_ms = {POLL_MS}\nlease_ms = {LEASE_MS}\nbatch = {BATCH}\n\
             [delivery.rate_limits]\nwebhook = 5.0\n[delivery.webhooks]\nsecret = \"s\"\n",
            playbooks.display()
        ),
    );
    let config = config.to_str().unwrap().to_owned();
    let migrated = run(&["--database", db, "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let token = create_token(db, "writer");
    let listen = format!("127.0.0.1:{}", free_port());
    let start = || Server::run(&["--config", &config, "serve", "--listen", &listen]);
    let mut server = start();
    let base = server.base.clone();
    let http = delivery::http_client(Duration::from_secs(10));

    // Three objections first (the oldest, so claimed at once), then the backlog of notes.
    let mut events: Vec<String> = (0..3)
        .map(|i| format!(
            r#"{{"type":"objection.raised","source":"o","source_id":"o{i}","occurred_at":"2026-11-02T09:00:00Z","deal":"D-{i}","data":{{"kind":"pricing"}}}}"#
        ))
        .collect();
    events.extend((0..BACKLOG).map(|i| format!(
        r#"{{"type":"note.added","source":"o","source_id":"n{i}","occurred_at":"2026-11-02T10:00:00Z","deal":"D-{}","data":{{"text":"{i}"}}}}"#,
        i % 7
    )));
    post_until_acknowledged(
        &http,
        std::slice::from_ref(&base),
        0,
        &token,
        events.join("\n"),
    )
    .await;

    // Kill while the objections' first tries are under way.
    let objections = |r: &testkit::Received| r.path == "/slow/objection";
    let waited = Instant::now();
    while receiver.received().iter().filter(|r| objections(r)).count() < 3 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the objections never went out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let killed = Instant::now();
    let notes_before = receiver
        .received()
        .iter()
        .filter(|r| !objections(r))
        .count();
    assert!(
        BACKLOG - notes_before >= 10 * BATCH,
        "a backlog of at least ten batches waits: {notes_before} of {BACKLOG} went out"
    );
    server = start();

    // Each objection's repeat: the same key, within a lease and a poll of the kill, with room
    // for the restart and one rate-limit interval.
    let bound = Duration::from_millis(LEASE_MS + POLL_MS + 200) + Duration::from_secs(3);
    let repeats = loop {
        let mut seen: HashMap<String, Vec<Instant>> = HashMap::new();
        for r in receiver.received().iter().filter(|r| objections(r)) {
            let key = r.header("idempotency-key").unwrap_or_default().to_owned();
            seen.entry(key).or_default().push(r.at);
        }
        if seen.len() == 3 && seen.values().all(|at| at.len() >= 2) {
            break seen;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "orphans not repeated a minute after the kill: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let worst = repeats
        .values()
        .map(|at| at[1].saturating_duration_since(killed))
        .max()
        .unwrap();
    let pending_notes = BACKLOG
        - receiver
            .received()
            .iter()
            .filter(|r| !objections(r))
            .count();
    println!(
        "orphans: 3 repeated at worst {} ms after the SIGKILL (lease {LEASE_MS} ms), {pending_notes} notes still waiting behind them",
        worst.as_millis()
    );
    assert!(
        worst <= bound,
        "an orphan went out {worst:?} after the kill; bound {bound:?}"
    );
    assert!(
        pending_notes >= BATCH,
        "the backlog was still there when the orphans went: {pending_notes}"
    );
    drop(server);
}
