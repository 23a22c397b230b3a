//! Issue 9's foundation: replaying the stored log through the engine in virtual time decides
//! exactly what the live server decided on the same events — the same effects, with the same
//! idempotency keys, rules, records and actions — with the example playbooks (event rules,
//! quiet and in-stage timers, the Monday schedule, a gate's alerts, routing) running.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{copy_examples, event, spawn_with_playbooks};

/// A few weeks of a small pipeline, as (time, type, refs, data).
fn history() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        (
            "2026-11-02T09:00:00Z",
            "deal.created",
            r#""deal":"D-1""#,
            r#"{"name":"Globex","stage":"demo","owner":"sam@acme.example","contacts":["C-1"],"amount":48000}"#,
        ),
        (
            "2026-11-02T10:00:00Z",
            "meeting.held",
            r#""deal":"D-1""#,
            r#"{"title":"Demo"}"#,
        ),
        (
            "2026-11-03T09:00:00Z",
            "deal.created",
            r#""deal":"D-2""#,
            r#"{"name":"Initech","stage":"legal","owner":"lena@acme.example"}"#,
        ),
        (
            "2026-11-04T09:00:00Z",
            "deal.stage_changed",
            r#""deal":"D-1""#,
            r#"{"stage":"proposal"}"#,
        ),
        (
            "2026-11-05T09:00:00Z",
            "deal.created",
            r#""deal":"D-3""#,
            r#"{"name":"Hooli","stage":"negotiation","owner":"sam@acme.example"}"#,
        ),
        (
            "2026-11-06T11:00:00Z",
            "lead.created",
            r#""lead":"L-1""#,
            r#"{"name":"Pepper","origin":"inbound form","email":"pepper@stark.example"}"#,
        ),
        (
            "2026-11-06T12:00:00Z",
            "lead.created",
            r#""lead":"L-2""#,
            r#"{"name":"Dana","origin":"outbound list","owner":"tim@acme.example"}"#,
        ),
        (
            "2026-11-09T14:00:00Z",
            "objection.raised",
            r#""deal":"D-3","actor":{"contact":"C-3"}"#,
            r#"{"kind":"pricing"}"#,
        ),
        (
            "2026-11-10T09:00:00Z",
            "objection.raised",
            r#""deal":"D-1","actor":{"contact":"C-1"}"#,
            r#"{"kind":"implementation"}"#,
        ),
        (
            "2026-11-12T09:00:00Z",
            "note.added",
            r#""deal":"D-3""#,
            r#"{"text":"waiting on procurement"}"#,
        ),
        (
            "2026-11-24T09:00:00Z",
            "email.received",
            r#""deal":"D-1","actor":{"contact":"C-1"}"#,
            r#"{"subject":"Re: rollout"}"#,
        ),
    ]
}

/// Sorted (key, rule, record, action) of effects, `assign_owner`'s choice left out (routing
/// decides it in the store, not in the engine).
fn normal(
    key: &str,
    rule: &str,
    record: &str,
    mut action: Value,
) -> (String, String, String, String) {
    if let Some(a) = action.as_object_mut() {
        a.remove("chosen");
        a.remove("chosen_by");
        a.remove("why");
    }
    (
        key.to_owned(),
        rule.to_owned(),
        record.to_owned(),
        action.to_string(),
    )
}

#[tokio::test]
async fn replaying_the_log_decides_what_the_live_server_decided() {
    let playbooks = tempfile::tempdir().unwrap();
    copy_examples(playbooks.path());
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    // The live run: each event sent at its own time, the timer loop running every hour.
    let mut clock: domain::Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
    app.clock.set(clock);
    let end: domain::Timestamp = "2026-12-08T00:00:00Z".parse().unwrap();
    let hour = 3_600_000;
    let mut pending = history().into_iter().enumerate().peekable();
    while clock < end {
        while let Some((i, (at, ty, refs, data))) = pending.peek().cloned() {
            let at: domain::Timestamp = at.parse().unwrap();
            if at > clock {
                break;
            }
            app.clock.set(at);
            app.send(&[event(ty, &format!("e{i}"), &at.to_string(), refs, data)])
                .await;
            pending.next();
        }
        app.clock.set(clock);
        app.store.fire_due_timers(clock, 1000).await.unwrap();
        clock = domain::Timestamp::from_millis(clock.as_millis() + hour);
    }
    let live: BTreeSet<_> = app
        .store
        .outbox(&store::OutboxQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        // What the rules decided (not sequence steps, not the inbox telling its holders).
        .filter(|e| !e.rule.starts_with("sequence:"))
        .filter(|e| {
            !e.trace["trigger"]
                .as_str()
                .unwrap_or_default()
                .starts_with("exception ")
        })
        .map(|e| normal(&e.key, &e.rule, &e.record.to_string(), e.action.clone()))
        .collect();

    // The replay: the stored log, in occurrence order, through the same playbooks.
    let mut log: Vec<(i64, domain::Event)> = app.store.events_after(0, 100_000).await.unwrap();
    log.sort_by_key(|(seq, e)| (e.occurred_at, *seq));
    let engine = app.store.engine().unwrap();
    let effects = engine::replay::replay(&engine, log.iter().map(|(_, e)| e), clock);
    let replayed: BTreeSet<_> = effects
        .iter()
        .map(|e| {
            normal(
                &e.key,
                &e.rule,
                &e.record.to_string(),
                serde_json::to_value(&e.action).unwrap(),
            )
        })
        .collect();
    assert_eq!(replayed.len(), effects.len(), "no effect decided twice");

    let rules: BTreeSet<&str> = live.iter().map(|(_, r, _, _)| r.as_str()).collect();
    for rule in [
        "quiet-after-enthusiasm",
        "implementation-concern",
        "pricing-objection",
        "stuck-in-legal",
        "monday-untouched-late-stage",
        "route-inbound",
        "quiet-lead",
        "gate-proposal",
    ] {
        assert!(rules.contains(rule), "{rule} fired live: {rules:?}");
    }
    let only_live: Vec<_> = live.difference(&replayed).collect();
    let only_replay: Vec<_> = replayed.difference(&live).collect();
    assert!(
        only_live.is_empty() && only_replay.is_empty(),
        "live only: {only_live:#?}\nreplay only: {only_replay:#?}"
    );
    // Byte-identical when run again.
    let again = engine::replay::replay(&engine, log.iter().map(|(_, e)| e), clock);
    assert_eq!(again, effects);
}
