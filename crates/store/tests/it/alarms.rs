//! Issue 23: alarms about the automation, on both backends. A condition the monitor keeps
//! seeing is one alarm, refreshed, never a second; it resolves itself with the reason when the
//! condition clears, and a new occurrence opens a new one. People acknowledge and resolve; one
//! resolved by hand while its condition holds stays quiet until the condition clears. And what
//! the monitor reads: rules' firings by day, channels' recent attempts, dead letters; and a
//! writer that was stopped answers "closed" while reads go on.

use std::collections::BTreeMap;

use domain::Timestamp;
use store::{
    AlarmAction, AlarmKind, AlarmQuery, AlarmSync, MONITOR, NewAlarm, Outcome, Store, StoredEffect,
};

use crate::conformance::{claim, engine_from, finish};
use crate::{Backend, ev, ts};

fn silent(rule: &str, days: u32) -> NewAlarm {
    NewAlarm {
        subject: rule.into(),
        title: format!("{rule} used to fire about every 3 days and has not fired for {days} days"),
        detail: serde_json::json!({ "silent_days": days }),
    }
}

fn rules_sync(current: Vec<NewAlarm>) -> Vec<AlarmSync> {
    vec![AlarmSync::new(
        AlarmKind::RuleSilent,
        current,
        "the rule fired again",
    )]
}

async fn unresolved(store: &dyn Store) -> Vec<store::Alarm> {
    store
        .alarms(&AlarmQuery {
            status: Some("unresolved".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn every(store: &dyn Store) -> Vec<store::Alarm> {
    store
        .alarms(&AlarmQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The monitor's passes: opened once, refreshed, resolved when the condition clears, opened
/// anew when it comes back.
async fn an_alarm_is_raised_once_refreshed_and_resolved_when_its_condition_clears(
    backend: Backend,
) {
    let h = backend.open();
    let (t0, t1, t2, t3) = (
        ts("2026-11-20T12:00:00Z"),
        ts("2026-11-20T12:01:00Z"),
        ts("2026-11-20T12:02:00Z"),
        ts("2026-11-20T12:03:00Z"),
    );
    let synced = h
        .store
        .sync_alarms(rules_sync(vec![silent("stuck-in-legal", 16)]), t0)
        .await
        .unwrap();
    assert_eq!(synced.opened.len(), 1);
    let first = &synced.opened[0];
    assert_eq!(
        (first.kind, first.subject.as_str(), first.status.as_str()),
        (AlarmKind::RuleSilent, "stuck-in-legal", "open")
    );
    assert_eq!(
        synced.unresolved,
        vec![(AlarmKind::RuleSilent, "open".to_owned(), 1)]
    );

    // Seen again a minute later, worse: the same alarm, refreshed.
    let synced = h
        .store
        .sync_alarms(rules_sync(vec![silent("stuck-in-legal", 17)]), t1)
        .await
        .unwrap();
    assert!(synced.opened.is_empty() && synced.resolved.is_empty());
    let now = unresolved(&*h.store).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].id, first.id);
    assert_eq!(
        now[0].title,
        "stuck-in-legal used to fire about every 3 days and has not fired for 17 days"
    );
    assert_eq!((now[0].opened_at, now[0].updated_at), (t0, t1));
    assert_eq!(now[0].detail["silent_days"], 17);

    // A pass about another kind leaves it alone.
    h.store
        .sync_alarms(
            vec![AlarmSync::new(AlarmKind::DeadLetters, vec![], "none left")],
            t1,
        )
        .await
        .unwrap();
    assert_eq!(unresolved(&*h.store).await.len(), 1);

    // The rule fired: resolved by the monitor, saying why.
    let synced = h.store.sync_alarms(rules_sync(vec![]), t2).await.unwrap();
    assert_eq!(synced.resolved.len(), 1);
    let done = &synced.resolved[0];
    assert_eq!(
        (
            done.status.as_str(),
            done.resolved_by.as_deref(),
            done.resolution.as_deref(),
            done.resolved_at
        ),
        (
            "resolved",
            Some(MONITOR),
            Some("the rule fired again"),
            Some(t2)
        )
    );
    assert!(synced.unresolved.is_empty());
    assert!(unresolved(&*h.store).await.is_empty());

    // It stops again: a new alarm, the old one kept as history.
    let synced = h
        .store
        .sync_alarms(rules_sync(vec![silent("stuck-in-legal", 12)]), t3)
        .await
        .unwrap();
    assert_eq!(synced.opened.len(), 1);
    assert_ne!(synced.opened[0].id, first.id);
    assert_eq!(every(&*h.store).await.len(), 2);
    assert_eq!(unresolved(&*h.store).await.len(), 1);
}

/// People acknowledge and resolve; the monitor does not reopen what a person resolved while
/// the condition holds, and a precise reason or a quiet time applies where given.
async fn people_act_on_alarms_and_the_monitor_respects_it(backend: Backend) {
    let h = backend.open();
    let t0 = ts("2026-11-20T12:00:00Z");
    let synced = h
        .store
        .sync_alarms(
            rules_sync(vec![silent("stuck-in-legal", 16), silent("quiet-lead", 9)]),
            t0,
        )
        .await
        .unwrap();
    assert_eq!(synced.opened.len(), 2);
    let id = |rule: &str| {
        synced
            .opened
            .iter()
            .find(|a| a.subject == rule)
            .unwrap()
            .id
            .clone()
    };
    let legal = id("stuck-in-legal");

    let acked = h
        .store
        .act_on_alarm(
            &legal,
            AlarmAction::Acknowledge {
                by: "maya@acme.example".into(),
                note: Some("looking at the legal stage".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            acked.status.as_str(),
            acked.acknowledged_by.as_deref(),
            acked.note.as_deref()
        ),
        (
            "acknowledged",
            Some("maya@acme.example"),
            Some("looking at the legal stage")
        )
    );
    let again = h
        .store
        .act_on_alarm(
            &legal,
            AlarmAction::Acknowledge {
                by: "omar@acme.example".into(),
                note: None,
            },
        )
        .await;
    assert!(matches!(again, Err(store::Error::Conflict(_))), "{again:?}");
    let blank = h
        .store
        .act_on_alarm(
            &legal,
            AlarmAction::Resolve {
                by: "maya@acme.example".into(),
                resolution: "  ".into(),
            },
        )
        .await;
    assert!(matches!(blank, Err(store::Error::Invalid(_))), "{blank:?}");
    let missing = h
        .store
        .act_on_alarm(
            "nope",
            AlarmAction::Resolve {
                by: "maya@acme.example".into(),
                resolution: "x".into(),
            },
        )
        .await;
    assert!(matches!(missing, Err(store::Error::NotFound(_))));
    let resolved = h
        .store
        .act_on_alarm(
            &legal,
            AlarmAction::Resolve {
                by: "maya@acme.example".into(),
                resolution: "legal reviews pause over the holidays".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (resolved.status.as_str(), resolved.resolved_by.as_deref()),
        ("resolved", Some("maya@acme.example"))
    );
    let twice = h
        .store
        .act_on_alarm(
            &legal,
            AlarmAction::Resolve {
                by: "maya@acme.example".into(),
                resolution: "again".into(),
            },
        )
        .await;
    assert!(matches!(twice, Err(store::Error::Conflict(_))));

    // Still silent: the monitor leaves the person's resolution be. quiet-lead left the
    // running playbooks: resolved with that reason.
    let mut sync = AlarmSync::new(
        AlarmKind::RuleSilent,
        vec![silent("stuck-in-legal", 17)],
        "the rule fired again",
    );
    sync.cleared_because = BTreeMap::from([(
        "quiet-lead".to_owned(),
        "the rule is no longer in the running playbooks".to_owned(),
    )]);
    let t1 = ts("2026-11-20T12:01:00Z");
    let synced = h.store.sync_alarms(vec![sync], t1).await.unwrap();
    assert!(synced.opened.is_empty());
    assert_eq!(synced.resolved.len(), 1);
    assert_eq!(
        synced.resolved[0].resolution.as_deref(),
        Some("the rule is no longer in the running playbooks")
    );
    let kept = h.store.alarm(&legal).await.unwrap().unwrap();
    assert_eq!(
        (kept.status.as_str(), kept.resolved_by.as_deref()),
        ("resolved", Some("maya@acme.example"))
    );
    assert!(unresolved(&*h.store).await.is_empty());

    // It fired (the condition cleared), then stopped again: a new alarm.
    let t2 = ts("2026-11-20T12:02:00Z");
    h.store.sync_alarms(rules_sync(vec![]), t2).await.unwrap();
    let t3 = ts("2026-11-20T12:03:00Z");
    let synced = h
        .store
        .sync_alarms(rules_sync(vec![silent("stuck-in-legal", 12)]), t3)
        .await
        .unwrap();
    assert_eq!(synced.opened.len(), 1);

    // A restarted loop is a moment, not a state: its alarm resolves once it has not been
    // raised for the quiet time.
    let restarted = |current: Vec<NewAlarm>| {
        let mut s = AlarmSync::new(
            AlarmKind::LoopRestarted,
            current,
            "it has run for an hour without stopping",
        );
        s.quiet_ms = 3_600_000;
        vec![s]
    };
    let loop_alarm = NewAlarm {
        subject: "timers".into(),
        title: "The timer loop stopped and was restarted".into(),
        detail: serde_json::json!({}),
    };
    h.store
        .sync_alarms(restarted(vec![loop_alarm]), t0)
        .await
        .unwrap();
    let synced = h
        .store
        .sync_alarms(restarted(vec![]), ts("2026-11-20T12:59:59Z"))
        .await
        .unwrap();
    assert!(synced.resolved.is_empty());
    let synced = h
        .store
        .sync_alarms(restarted(vec![]), ts("2026-11-20T13:00:00Z"))
        .await
        .unwrap();
    assert_eq!(synced.resolved.len(), 1);
    let by_kind = h
        .store
        .alarms(&AlarmQuery {
            kind: Some(AlarmKind::LoopRestarted),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_kind.len(), 1);
}

const FAN_OUT: &str = "playbook: p\nowner: o\nrules:\n  - id: fan-out\n    why: Every note goes to the CRM.\n    when: { event: note.added }\n    then:\n      - webhook: { url: \"https://crm.acme.example/notes\" }\n  - id: welcome\n    why: New deals are announced.\n    when: { event: deal.created }\n    then:\n      - webhook: { url: \"https://hooks.example/deals\" }\n";

async fn claimed(store: &dyn Store, at: &str) -> Vec<StoredEffect> {
    store.claim_effects(claim("a", at, 100)).await.unwrap()
}

/// What the monitor reads: each rule's firings by day, the attempts per channel since a
/// moment, and the dead letters.
async fn the_monitor_reads_firings_attempts_and_dead_letters(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine_from(FAN_OUT)));
    // fan-out decides on three days, twice on the first; welcome once.
    for (i, day) in [
        "2026-11-02T09:00:00Z",
        "2026-11-02T15:00:00Z",
        "2026-11-05T09:00:00Z",
        "2026-11-09T09:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        h.clock.set(ts(day));
        h.store
            .ingest(vec![ev(
                "note.added",
                &format!("n{i}"),
                day,
                &format!(r#""deal":"D-{i}""#),
                r#"{"text":"x"}"#,
            )])
            .await
            .unwrap();
    }
    h.store
        .ingest(vec![ev(
            "deal.created",
            "d",
            "2026-11-09T10:00:00Z",
            r#""deal":"D-9""#,
            "{}",
        )])
        .await
        .unwrap();
    let firings = h.store.rule_firings().await.unwrap();
    let counts: Vec<(&str, u64, u64)> = firings
        .iter()
        .map(|f| (f.rule.as_str(), f.effects, f.days))
        .collect();
    assert_eq!(counts, [("fan-out", 4, 3), ("welcome", 1, 1)]);
    assert_eq!(
        (firings[0].first, firings[0].last),
        (ts("2026-11-02T09:00:00Z"), ts("2026-11-09T09:00:00Z"))
    );

    // Attempts: the CRM fails three times and succeeds once; the deals hook succeeds.
    let effects = claimed(&*h.store, "2026-11-20T12:00:00Z").await;
    assert_eq!(effects.len(), 5);
    let crm: Vec<&StoredEffect> = effects
        .iter()
        .filter(|e| e.channel == "webhook:crm.acme.example")
        .collect();
    assert_eq!(crm.len(), 4);
    let retry = Outcome::Retry {
        next_at: ts("2026-11-20T13:00:00Z"),
    };
    let mut outcomes = vec![
        (crm[0], "2026-11-20T12:00:01Z", Outcome::Delivered, "200 OK"),
        (crm[1], "2026-11-20T12:00:02Z", retry, "HTTP 503 busy"),
        (
            crm[2],
            "2026-11-20T12:00:03Z",
            Outcome::Dead,
            "HTTP 500 down",
        ),
        (
            crm[3],
            "2026-11-20T12:00:04Z",
            retry,
            "HTTP 502 bad gateway",
        ),
    ];
    let welcome = effects
        .iter()
        .find(|e| e.channel == "webhook:hooks.example")
        .unwrap();
    outcomes.push((welcome, "2026-11-20T12:00:05Z", Outcome::Delivered, "ok"));
    for (e, at, outcome, said) in outcomes {
        let mut f = finish(&e.key, "a", at, outcome);
        f.detail = Some(said.into());
        assert!(h.store.finish_delivery(f).await.unwrap());
    }
    let seen = h
        .store
        .channel_attempts(ts("2026-11-20T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let c = &seen[0];
    assert_eq!(
        (c.channel.as_str(), c.attempts, c.failures),
        ("webhook:crm.acme.example", 4, 3)
    );
    assert_eq!(
        (c.last_failure, c.last_success),
        (
            Some(ts("2026-11-20T12:00:04Z")),
            Some(ts("2026-11-20T12:00:01Z"))
        )
    );
    assert_eq!(c.last_error.as_deref(), Some("HTTP 502 bad gateway"));
    assert!(c.failing_last());
    let w = &seen[1];
    assert_eq!(
        (w.channel.as_str(), w.attempts, w.failures, w.failing_last()),
        ("webhook:hooks.example", 1, 0, false)
    );
    // Only what finished after the moment counts.
    let later = h
        .store
        .channel_attempts(ts("2026-11-20T12:00:03Z"))
        .await
        .unwrap();
    assert_eq!(
        later
            .iter()
            .map(|c| (c.channel.as_str(), c.attempts, c.failures))
            .collect::<Vec<_>>(),
        [
            ("webhook:crm.acme.example", 1, 1),
            ("webhook:hooks.example", 1, 0)
        ]
    );

    let dead = h.store.dead_letters().await.unwrap();
    assert_eq!(dead.count, 1);
    assert_eq!(
        dead.by_channel,
        [("webhook:crm.acme.example".to_owned(), 1)]
    );
    assert_eq!(dead.oldest, Some(ts("2026-11-20T12:00:03Z")));
    h.store.cancel_effect(&crm[2].key).await.unwrap();
    assert_eq!(h.store.dead_letters().await.unwrap().count, 0);
    assert_eq!(
        h.store.dead_letters().await.unwrap().oldest,
        None::<Timestamp>
    );
}

/// A stopped writer answers "closed" to every write; reads go on.
async fn a_closed_writer_refuses_writes_and_reads_go_on(backend: Backend) {
    let h = backend.open();
    h.store.ping_writer().await.unwrap();
    let note = |id: &str| {
        ev(
            "note.added",
            id,
            "2026-11-02T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"text":"x"}"#,
        )
    };
    h.store.ingest(vec![note("n1")]).await.unwrap();
    h.store.close().await.unwrap();
    assert!(matches!(
        h.store.ping_writer().await,
        Err(store::Error::Closed)
    ));
    assert!(matches!(
        h.store.ingest(vec![note("n2")]).await,
        Err(store::Error::Closed)
    ));
    h.store.ping().await.unwrap();
    assert_eq!(h.store.event_count().await.unwrap(), 1);
    h.store.close().await.unwrap();
}

suite!(
    an_alarm_is_raised_once_refreshed_and_resolved_when_its_condition_clears,
    people_act_on_alarms_and_the_monitor_respects_it,
    the_monitor_reads_firings_attempts_and_dead_letters,
    a_closed_writer_refuses_writes_and_reads_go_on,
);
