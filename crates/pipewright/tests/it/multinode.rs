//! Three `pipewright serve` nodes on one PostgreSQL database. Three clients stream notes and
//! stage changes, each to its own node, so the events of one deal arrive at different nodes
//! interleaved, the stage changes out of occurrence order; a herd of timers comes due at once on all three
//! nodes; one node is SIGKILLed mid-run and stays down (the others take over its leases).
//! At the end: every event is in the log once, every deal's state is the fold of its events
//! in occurrence order (its stage history, and `pipewright refold` corrects nothing), every
//! timer fired and none is left, every effect reached the SMTP server and the receiver once
//! after de-duplication, and an edit to one node's playbook folder reaches the other surviving
//! node through the database.
//!
//! Larger: `PIPEWRIGHT_MULTINODE_NOTES=3000 PIPEWRIGHT_MULTINODE_HERD=1000 cargo test --release
//! -p pipewright --test it multinode -- --nocapture`

use std::sync::Arc;
use std::time::Duration;

use testkit::postgres::TestDatabase;
use testkit::{Receiver, SmtpServer, free_port};

use crate::{
    CRASH_PLAYBOOK, Dice, Server, assert_delivered_once, create_token, days_ago, get,
    post_until_acknowledged, run, setting, stderr, stdout, write,
};

const DEALS: usize = 20;
const STAGES: [&str; 3] = ["discovery", "proposal", "negotiation"];

/// The events of the stream. Note `i` goes to deal `D-{i % DEALS}`; all notes of a deal
/// share one occurrence time, so they are applied in arrival order and only the record locks
/// keep two nodes from overwriting each other's note counts. Every fourth `i` also changes the
/// stage of deal `S-{i % DEALS}` at a second of its own: those arrive out of order and must end
/// up in occurrence order.
fn stream_event(i: usize) -> Vec<String> {
    let deal = i % DEALS;
    let mut events = vec![format!(
        r#"{{"type":"note.added","source":"nodes","source_id":"n{i}","occurred_at":"2026-11-02T09:00:00Z","deal":"D-{deal}","data":{{"text":"{i}"}}}}"#
    )];
    if i.is_multiple_of(4) {
        let at = domain::Timestamp::from_millis(1_793_955_600_000 + i as i64 * 1000);
        events.push(format!(
            r#"{{"type":"deal.stage_changed","source":"nodes","source_id":"s{i}","occurred_at":"{at}","deal":"S-{deal}","data":{{"stage":"{}"}}}}"#,
            STAGES[(i / 4) % STAGES.len()]
        ));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_database_through_a_sigkill() {
    let Some(database) = TestDatabase::create() else {
        return;
    };
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let notes = setting("PIPEWRIGHT_MULTINODE_NOTES", 600);
    let herd = setting("PIPEWRIGHT_MULTINODE_HERD", 300);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Each node has a playbook folder of its own, with the same files, as if deployed to three
    // machines.
    let playbook = CRASH_PLAYBOOK.replace("RECEIVER", &receiver.url("/ok/nodes"));
    let folders: Vec<_> = (0..3)
        .map(|n| {
            let folder = dir.path().join(format!("playbooks-{n}"));
            std::fs::create_dir_all(&folder).unwrap();
            write(&folder, "nodes.yaml", &playbook);
            folder
        })
        .collect();
    let db = database.url();

    // The schema is created once, before any node starts; a second run has nothing to do.
    let migrated = run(&["--database", &db, "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(
        stdout(&migrated).contains("applied 1, 2"),
        "{}",
        stdout(&migrated)
    );
    let again = run(&["--database", &db, "migrate"]);
    assert!(
        stdout(&again).contains("nothing to apply"),
        "{}",
        stdout(&again)
    );

    let token = create_token(&db, "writer");
    let mut nodes: Vec<Server> = folders
        .iter()
        .enumerate()
        .map(|(n, folder)| {
            // The herd is what the test sends on purpose: no storm guard holds it.
            let config = write(
                dir.path(),
                &format!("node-{n}.toml"),
                &format!(
                    "[database]\nurl = \"{db}\"\nread_connections = 2\n\
                     [engine]\nplaybooks = \"{}\"\ntimer_poll_ms = 20\nreload_poll_ms = 200\nstorm_limit = 0\n\
                     [delivery]\npoll_ms = 20\nlease_ms = 1500\nbackoff_base_ms = 200\nbatch = 50\n\
                     [delivery.rate_limits]\nemail = 1000000.0\n[delivery.email]\nport = {}\n[delivery.webhooks]\nsecret = \"s\"\n",
                    folder.display(),
                    smtp.port
                ),
            );
            let listen = format!("127.0.0.1:{}", free_port());
            Server::run(&["--config", config.to_str().unwrap(), "serve", "--listen", &listen])
        })
        .collect();
    let bases: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.base.clone()).collect());
    let http = delivery::http_client(Duration::from_secs(10));
    let mut dice = Dice::new();

    // The deals, then the herd: deals that entered legal two days ago, their timers all due
    // at once on every node.
    let setup: Vec<String> = (0..DEALS)
        .flat_map(|d| ["D", "S"].map(|k| format!(
            r#"{{"type":"deal.created","source":"nodes","source_id":"{k}{d}","occurred_at":"2026-11-01T09:00:00Z","deal":"{k}-{d}","data":{{"name":"Deal {d}","stage":"proposal","owner":"a{d}@acme.example"}}}}"#
        )))
        .collect();
    post_until_acknowledged(&http, &bases, 0, &token, setup.join("\n")).await;
    let now = days_ago(2);
    for (part, chunk) in (0..herd).collect::<Vec<_>>().chunks(100).enumerate() {
        let events: Vec<String> = chunk
            .iter()
            .map(|i| format!(
                r#"{{"type":"deal.created","source":"nodes","source_id":"h{i}","occurred_at":"{now}","deal":"H-{i}","data":{{"name":"Herd {i}","stage":"legal","owner":"o{i}@acme.example"}}}}"#
            ))
            .collect();
        post_until_acknowledged(&http, &bases, part, &token, events.join("\n")).await;
    }

    // Three clients, one per node; chunk c of the stream goes to client c % 3, so a deal's
    // events reach all three nodes, in no particular order.
    let chunks: Vec<Vec<usize>> = (0..notes)
        .collect::<Vec<_>>()
        .chunks(5)
        .map(<[usize]>::to_vec)
        .collect();
    let chunks = Arc::new(chunks);
    let clients: Vec<_> = (0..3)
        .map(|client| {
            let (http, bases, token, chunks) = (
                http.clone(),
                Arc::clone(&bases),
                token.clone(),
                Arc::clone(&chunks),
            );
            tokio::spawn(async move {
                for chunk in chunks.iter().skip(client).step_by(3) {
                    let body: Vec<String> = chunk.iter().flat_map(|&i| stream_event(i)).collect();
                    post_until_acknowledged(&http, &bases, client, &token, body.join("\n")).await;
                }
            })
        })
        .collect();

    // Node 0 dies while the herd's timers fire and the stream flows; it does not come back.
    tokio::time::sleep(Duration::from_millis(100 + dice.below(300))).await;
    nodes[0].child.kill().unwrap();
    nodes[0].child.wait().unwrap();
    for client in clients {
        client.await.unwrap();
    }

    let live = &bases[1];
    let summary = assert_delivered_once(&http, live, &token, &smtp, &receiver, notes + herd).await;
    println!(
        "multi-node test: 3 nodes, node 0 SIGKILLed; {notes} notes + a herd of {herd}: {summary}"
    );

    // Every event once.
    let stage_changes = notes.div_ceil(4);
    let events = database.query_i64("SELECT count(*) FROM events") as usize;
    assert_eq!(events, 2 * DEALS + herd + notes + stage_changes);
    // Every timer of the herd fired (none left), its decision (an email and a webhook) made
    // once.
    assert_eq!(
        database.query_i64("SELECT count(*) FROM timers WHERE rule = 'stuck-in-legal'"),
        0
    );
    assert_eq!(
        database.query_i64("SELECT count(*) FROM effects WHERE rule = 'stuck-in-legal'") as usize,
        2 * herd
    );

    // Each deal holds each of its notes once, and its stage history is in occurrence order.
    for deal in 0..DEALS {
        let state = get(&http, &format!("{live}/api/v1/deals/D-{deal}"), &token).await;
        let notes_of_deal = (deal..notes).step_by(DEALS).count() as u64;
        assert_eq!(
            state["record"]["engagement"]["notes"], notes_of_deal,
            "notes of D-{deal}"
        );
        let state = get(&http, &format!("{live}/api/v1/deals/S-{deal}"), &token).await;
        let history: Vec<&str> = state["record"]["stage_history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["stage"].as_str().unwrap())
            .collect();
        let mut expected = vec!["proposal"];
        for i in (deal..notes).step_by(DEALS).filter(|i| i.is_multiple_of(4)) {
            let stage = STAGES[(i / 4) % STAGES.len()];
            if expected.last() != Some(&stage) {
                expected.push(stage);
            }
        }
        assert_eq!(history, expected, "stage history of S-{deal}");
    }
    // And the stored state of every record is the fold of its events.
    let refold = run(&["--database", &db, "refold"]);
    assert!(refold.status.success(), "{}", stderr(&refold));
    assert!(
        stdout(&refold).contains("corrected 0"),
        "{}",
        stdout(&refold)
    );

    // An edit to one node's folder reaches the other surviving node, whose files are unchanged:
    // through the database, where the edited node publishes it.
    let version = |status: &serde_json::Value| status["version"].as_str().unwrap().to_owned();
    let before = version(&get(&http, &format!("{live}/api/v1/playbooks"), &token).await);
    write(
        &folders[1],
        "nodes.yaml",
        &playbook.replace(
            "Legal stalls are flagged at once.",
            "Legal stalls are flagged.",
        ),
    );
    for base in &bases[1..] {
        let mut reloaded = false;
        for _ in 0..100 {
            let now = version(&get(&http, &format!("{base}/api/v1/playbooks"), &token).await);
            if now != before {
                reloaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(reloaded, "node {base} did not load the new playbooks");
    }
    let status = get(&http, &format!("{}/api/v1/playbooks", bases[2]), &token).await;
    assert!(
        status["origin"]
            .as_str()
            .unwrap()
            .starts_with("published by"),
        "{status}"
    );
    drop(nodes);
}
