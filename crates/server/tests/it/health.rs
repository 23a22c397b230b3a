//! Issue 24, honest health: a full disk or an unreachable database makes the node not ready,
//! naming the cause; clients get 503 with `Retry-After` (never 500), every event is either
//! acknowledged and stored or refused; and the node recovers without a restart.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::{TestApp, event, spawn_app_with};

const JSON: &str = "application/json";

/// A client that keeps no connection: a refused ingest is answered before its body is read,
/// and the server then closes the connection, which a pooled client may try to use again.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let r = http().get(app.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls `/readyz` until it answers `status`, for at most a minute; the last answer.
async fn until_ready_is(app: &TestApp, status: u16) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (now, body) = readyz(app).await;
        if now == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still answers {now} ({body}), not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A batch of notes on one deal, each with a payload of some size, and their source ids.
fn batch(n: usize, size: usize) -> (String, Vec<String>) {
    let ids: Vec<String> = (0..size).map(|i| format!("b{n}-e{i}")).collect();
    let text = "x".repeat(2_000);
    let events: Vec<String> = ids
        .iter()
        .map(|id| {
            event(
                "note.added",
                id,
                "2026-11-01T09:00:00Z",
                r#""deal":"D-1""#,
                &format!(r#"{{"text":"{text}"}}"#),
            )
        })
        .collect();
    (format!("[{}]", events.join(",")), ids)
}

/// What answered a batch: its status, `Retry-After`, and the body.
async fn post(app: &TestApp, body: &str) -> (u16, Option<String>, serde_json::Value) {
    let r = http()
        .post(app.url("/api/v1/events"))
        .bearer_auth(&app.writer)
        .header("content-type", JSON)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap_or_default())
}

/// Every event in `acknowledged` is in the log.
async fn all_stored(app: &TestApp, acknowledged: &BTreeSet<String>) {
    let stored: BTreeSet<String> = app
        .store
        .events_after(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.source_id)
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
}

struct Refused {
    body: String,
    ids: Vec<String>,
    retry: Option<String>,
    answer: serde_json::Value,
}

/// Sends batches until one is refused; the acknowledged ones' ids are added to `acknowledged`.
/// Returns the refused batch (its body and ids) and what answered it.
async fn until_refused(app: &TestApp, acknowledged: &mut BTreeSet<String>) -> Refused {
    for n in 0..2_000 {
        let (body, ids) = batch(n, 20);
        match post(app, &body).await {
            (200, _, _) => acknowledged.extend(ids),
            (503, retry, answer) => {
                return Refused {
                    body,
                    ids,
                    retry,
                    answer,
                };
            }
            (status, _, answer) => panic!("batch {n}: {status} {answer}"),
        }
    }
    panic!("no batch was refused");
}

/// A node through an outage that `begin` starts and `end` ends: not ready naming it, ingests
/// refused with 503 naming it (with `Retry-After`), then ready again without a restart, the
/// refused batch taken on retry, and every acknowledged event stored.
async fn through_an_outage(
    url: String,
    outage: store::Outage,
    retry_after: &str,
    begin: impl FnOnce(),
    end: impl FnOnce(),
) {
    let app = spawn_app_with(|s| s.database.url = url).await;
    let mut acknowledged = BTreeSet::new();
    let (body, ids) = batch(10_000, 5);
    assert_eq!(post(&app, &body).await.0, 200);
    acknowledged.extend(ids);
    assert_eq!(readyz(&app).await.0, 200);

    begin();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["message"], format!("not ready: {outage}"));
    assert_eq!(app.store.outage(), Some(outage));
    // Writes may still fit in space the database already holds; sooner or later one does not.
    let before = acknowledged.len();
    let refused = until_refused(&app, &mut acknowledged).await;
    eprintln!(
        "{} events acknowledged during the outage before a batch was refused",
        acknowledged.len() - before
    );
    let answer = &refused.answer;
    assert_eq!(refused.retry.as_deref(), Some(retry_after), "{answer}");
    assert_eq!(answer["error"]["code"], outage.as_str());
    assert_eq!(
        answer["error"]["message"],
        format!("{outage}; try again later")
    );
    assert_eq!(readyz(&app).await.0, 503);

    end();
    until_ready_is(&app, 200).await;
    let (status, _, answer) = post(&app, &refused.body).await;
    assert_eq!(status, 200, "{answer}");
    acknowledged.extend(refused.ids);
    assert_eq!(app.store.outage(), None);
    all_stored(&app, &acknowledged).await;
}

/// Issue 24: at 0 bytes free `/readyz` answered 200 and clients got `500 internal`.
#[tokio::test]
async fn a_full_disk_is_not_ready_is_refused_with_503_and_recovers_without_a_restart() {
    let Some(disk) = testkit::Tmpfs::mount(32 << 20) else {
        return;
    };
    let url = format!("sqlite:{}", disk.path().join("pw.db").display());
    let filler = std::cell::Cell::new(None);
    through_an_outage(
        url,
        store::Outage::DiskFull,
        "30",
        || filler.set(Some(disk.fill())),
        || std::fs::remove_file(filler.take().unwrap()).unwrap(),
    )
    .await;
}

/// Issue 24: a database that restarted or stopped was answered `500 internal`. On a runtime of
/// several threads: the store connects from a thread it blocks on, through the proxy's tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_refused_with_503_and_recovers_without_a_restart() {
    let Some(db) = testkit::postgres::TestDatabase::create() else {
        return;
    };
    let proxy = testkit::Proxy::start(db.address()).await;
    through_an_outage(
        db.url_through(proxy.addr()),
        store::Outage::Unreachable,
        "5",
        || proxy.cut(),
        || proxy.restore(),
    )
    .await;
}
