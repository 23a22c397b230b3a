//! Exactly-once delivery across crashes: rules send an email and a webhook for every note and
//! for every deal stuck in legal; a client streams notes while the server is SIGKILLed at
//! random moments and restarted, once in the middle of a herd of timers firing at once. At the
//! end the SMTP server and the HTTP receiver have seen every effect, and after de-duplication
//! on the idempotency key none is missing and none is extra. Raw duplicates (a crash between
//! sending and recording) are counted and printed.
//!
//! Short form in the test suite; the long form is one command:
//! `PIPEWRIGHT_CRASH_NOTES=3000 PIPEWRIGHT_CRASH_KILLS=8 cargo test --release -p pipewright --test it delivery_crash -- --nocapture`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use testkit::{Receiver, SmtpServer, free_port};

use crate::{
    CRASH_PLAYBOOK, Dice, Server, assert_delivered_once, create_token, days_ago, db_url,
    post_until_acknowledged, setting, write,
};

fn start(config: &str, port: u16) -> Server {
    let listen = format!("127.0.0.1:{port}");
    Server::run(&["--config", config, "serve", "--listen", &listen])
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
        &CRASH_PLAYBOOK.replace("RECEIVER", &receiver.url("/ok/crash")),
    );
    let db = db_url(dir.path());
    // The herd of stale deals is what the test sends on purpose: no storm guard holds it.
    let config = write(
        dir.path(),
        "pipewright.toml",
        &format!(
            "[database]\nurl = \"{db}\"\n[engine]\nplaybooks = \"{}\"\ntimer_poll_ms = 20\nreload_poll_ms = 0\nstorm_limit = 0\n\
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
    post_until_acknowledged(
        &http,
        std::slice::from_ref(&base),
        0,
        &token,
        herd_events.join("\n"),
    )
    .await;
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
    post_until_acknowledged(
        &http,
        std::slice::from_ref(&base),
        0,
        &token,
        setup.join("\n"),
    )
    .await;
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
                post_until_acknowledged(
                    &http,
                    std::slice::from_ref(&base),
                    0,
                    &token,
                    body.join("\n"),
                )
                .await;
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

    let summary = assert_delivered_once(&http, &base, &token, &smtp, &receiver, notes + herd).await;
    println!("delivery crash test: {notes} notes + a herd of {herd}, {kills} SIGKILLs: {summary}");
    drop(server);
}
