//! Issue 23: a reload never repeats an action. Through the real server (its reload path, its
//! HTTP API) on both backends: with 2,000 generated rules of every trigger kind acting on a
//! pipeline, a reload that changes only the words of the rules adds no effect, nor does one
//! that changes them back.

use std::sync::Arc;

use store::Store;

use crate::{event, spawn_with_playbooks_on};

const RULES: usize = 2_000;
const DEALS: usize = 12;

/// Arms every record for the running playbooks and fires every timer due at `now`, as the
/// server's timer loop does after a (re)load; the number of effects in the outbox afterwards.
async fn settle(store: &Arc<dyn Store>, now: domain::Timestamp) -> usize {
    store.arm_all(now, 500).await.unwrap();
    while store.fire_due_timers(now, 1_000).await.unwrap().timers > 0 {}
    store.effects(None, 1_000_000).await.unwrap().len()
}

async fn a_changed_why_adds_no_effects(database: Option<String>) {
    let playbooks = tempfile::tempdir().unwrap();
    let file = playbooks.path().join("generated.yaml");
    std::fs::write(&file, testkit::rules::generated(RULES, 2, true, "")).unwrap();
    let app = spawn_with_playbooks_on(playbooks.path(), 3_600_000, |s| {
        if let Some(url) = database {
            s.database.url = url;
        }
    })
    .await;
    let (_, loaded) = app.get(&app.reader, "/api/v1/playbooks").await;
    let first = loaded["version"].as_str().expect("loaded").to_owned();

    // A pipeline: deals in every stage, of every size, with notes, objections and routed
    // owners who have not touched them yet.
    let stages = testkit::rules::STAGES;
    let mut events = Vec::new();
    for d in 0..DEALS {
        let refs = format!(r#""deal":"D-{d}""#);
        let day = 1 + d % 10;
        events.push(event(
            "deal.created",
            &format!("c{d}"),
            &format!("2026-11-{day:02}T09:00:00Z"),
            &refs,
            &format!(
                r#"{{"stage":"{}","owner":"sam@acme.example","amount":{}}}"#,
                stages[d % stages.len()],
                d * 1_000
            ),
        ));
        events.push(event(
            "owner.assigned",
            &format!("a{d}"),
            &format!("2026-11-{day:02}T09:05:00Z"),
            &refs,
            &format!(
                r#"{{"owner":"ana@acme.example","rule":"r{}"}}"#,
                testkit::rules::ROUTED + 200 * (d % 10)
            ),
        ));
        if d % 3 == 0 {
            events.push(event(
                "note.added",
                &format!("n{d}"),
                &format!("2026-11-{:02}T10:00:00Z", day + 2),
                &refs,
                r#"{"text":"spoke to them"}"#,
            ));
        }
        if d % 4 == 0 {
            let kind = ["pricing", "implementation", "legal", "security"][d % 4];
            events.push(event(
                "objection.raised",
                &format!("o{d}"),
                &format!("2026-11-{:02}T11:00:00Z", day + 3),
                &refs,
                &format!(r#"{{"kind":"{kind}"}}"#),
            ));
        }
    }
    app.send(&events).await;

    // Three weeks on: the quiet stretches, stage stays and first-touch SLAs have come due.
    let now: domain::Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
    app.clock.set(now);
    let before = settle(&app.store, now).await;
    assert!(before > 1_000, "the rules act on the pipeline: {before}");

    // Only the words change: a new version, and nothing decided again.
    std::fs::write(
        &file,
        testkit::rules::generated(RULES, 2, true, " (reworded)"),
    )
    .unwrap();
    app.server_state().reload_playbooks(playbooks.path()).await;
    let (_, reloaded) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_ne!(reloaded["version"], first.as_str(), "the edit was loaded");
    assert_eq!(
        settle(&app.store, now).await,
        before,
        "a reworded why adds nothing"
    );

    // And back, later: still nothing.
    let later: domain::Timestamp = "2026-11-25T12:30:00Z".parse().unwrap();
    app.clock.set(later);
    std::fs::write(&file, testkit::rules::generated(RULES, 2, true, "")).unwrap();
    app.server_state().reload_playbooks(playbooks.path()).await;
    let (_, back) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_eq!(back["version"], first.as_str());
    assert_eq!(
        settle(&app.store, later).await,
        before,
        "changing it back adds nothing"
    );
}

#[tokio::test]
async fn a_changed_why_adds_no_effects_on_sqlite() {
    a_changed_why_adds_no_effects(None).await;
}

#[tokio::test]
async fn a_changed_why_adds_no_effects_on_postgres() {
    if let Some(db) = testkit::postgres::TestDatabase::create() {
        a_changed_why_adds_no_effects(Some(db.url())).await;
    }
}
