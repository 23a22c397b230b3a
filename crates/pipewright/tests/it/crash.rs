//! SIGKILL the server while clients stream events: after a restart, every event the server
//! acknowledged is stored exactly once, and derived state agrees with the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::{Server, create_token, db_url};

const CLIENTS: usize = 8;
/// The server is killed once this many events have been acknowledged.
const KILL_AFTER: usize = 1500;

fn note(client: usize, i: usize) -> (String, String) {
    let id = format!("c{client}-{i}");
    let body = format!(
        r#"{{"type":"note.added","source":"crash","source_id":"{id}","occurred_at":"2026-11-01T09:00:00Z","deal":"D-{client}","data":{{"text":"n{i}"}}}}"#
    );
    (id, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let token = create_token(&db, "writer");
    let mut server = Server::start(&db);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let enough = Arc::new(tokio::sync::Notify::new());
    let http = delivery::http_client(std::time::Duration::from_secs(60));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, base, token, acked) = (
            http.clone(),
            server.base.clone(),
            token.clone(),
            Arc::clone(&acked),
        );
        let enough = Arc::clone(&enough);
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let (id, body) = note(client, i);
                let sent = http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let mut acked = acked.lock().unwrap();
                        acked.insert(id);
                        if acked.len() == KILL_AFTER {
                            enough.notify_one();
                        }
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return i, // the server is gone
                }
            }
            unreachable!()
        }));
    }
    enough.notified().await;
    server.child.kill().unwrap(); // SIGKILL on Unix.
    server.child.wait().unwrap();
    // Each client's last request was in flight: it may or may not have been committed.
    let mut last = Vec::new();
    for c in clients {
        last.push(c.await.unwrap());
    }
    let acked = acked.lock().unwrap().clone();

    // Restart on the same database and re-send everything each client attempted.
    let server = Server::start(&db);
    let mut stored_again = HashSet::new();
    for (client, &last) in last.iter().enumerate() {
        for i in 0..=last {
            let (id, body) = note(client, i);
            let r = http
                .post(format!("{}/api/v1/events", server.base))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let json: serde_json::Value = r.json().await.unwrap();
            if json["status"] == "stored" {
                stored_again.insert(id);
            }
        }
    }
    let lost: Vec<_> = acked.intersection(&stored_again).collect();
    assert!(lost.is_empty(), "acknowledged events were lost: {lost:?}");
    assert!(
        stored_again.len() <= CLIENTS,
        "only in-flight events may be missing: {stored_again:?}"
    );

    // Each deal's derived note count equals its events in the log: nothing doubled.
    let reader = create_token(&db, "reader");
    for (client, &last) in last.iter().enumerate() {
        let deal: serde_json::Value = http
            .get(format!(
                "{}/api/v1/deals/D-{client}?timeline_limit=5000",
                server.base
            ))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let notes = deal["record"]["engagement"]["notes"].as_u64().unwrap() as usize;
        let timeline = deal["timeline"].as_array().unwrap();
        let ids: HashSet<&str> = timeline
            .iter()
            .map(|e| e["source_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), timeline.len(), "an event is stored twice");
        assert_eq!(notes, timeline.len());
        assert_eq!(
            notes,
            last + 1,
            "deal D-{client} holds each attempted event once"
        );
    }
}
