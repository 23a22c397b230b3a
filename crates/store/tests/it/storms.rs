//! Issue 23: the storm guard in the store, on both backends. A watched rule passes up to its
//! limit of records within an hour, then its effects are held; a storm opened holding holds
//! from the first effect. Approved, the held effects go out once and are acted on then (a
//! sequence enrolled, an owner routed); discarded, they are cancelled, and so is what the rule
//! decides later for moments before the discard — not what it decides for moments after.

use std::sync::Arc;

use clock::Clock;
use domain::Timestamp;
use store::{NewStorm, Store, StormDecision, StormQuery, StormReason};

use crate::conformance::engine_from;
use crate::{Backend, Harness, ev, ts};

const QUIET: &str = r#"
playbook: p
owner: maya@acme.example
rules:
  - id: nudge
    why: A quiet deal needs a nudge.
    when: { quiet_for: 1d }
    then:
      - alert: { to: deal.owner, text: "quiet" }
  - id: welcome
    why: New deals get the welcome cadence and a routed owner.
    when: { event: deal.created }
    then:
      - start_sequence: welcome
      - assign_owner: { team: [ana@acme.example, ben@acme.example] }
sequences:
  welcome:
    steps:
      - task: { assignee: deal.owner, title: "Say hello" }
"#;

/// `n` deals created at `at`, each with a contact.
async fn deals(store: &dyn Store, from: usize, n: usize, at: &str) {
    let mut events = Vec::new();
    for d in from..from + n {
        events.push(ev(
            "contact.created",
            &format!("k{d}"),
            at,
            &format!(r#""contact":"C-{d}""#),
            &format!(r#"{{"name":"C {d}","email":"c{d}@buyer.example"}}"#),
        ));
        events.push(ev(
            "deal.created",
            &format!("d{d}"),
            at,
            &format!(r#""deal":"D-{d}""#),
            &format!(r#"{{"name":"D {d}","owner":"sam","contacts":["C-{d}"]}}"#),
        ));
    }
    store.ingest(events).await.unwrap();
}

fn watch(rule: &str, since: Timestamp, limit: u32, holding: bool) -> NewStorm {
    NewStorm {
        rule: rule.into(),
        playbook: "p".into(),
        owner: "maya@acme.example".into(),
        version: "v".into(),
        reason: StormReason::New,
        since,
        watch_until: Timestamp::from_millis(since.as_millis() + 7 * 86_400_000),
        limit,
        holding,
        preview: Some(serde_json::json!({"now": 10})),
    }
}

/// Each of a rule's effects' status, in the order decided.
async fn statuses(h: &Harness, rule: &str) -> Vec<String> {
    let mut effects = h.store.effects(None, 10_000).await.unwrap();
    effects.retain(|e| e.rule == rule);
    effects.sort_by_key(|e| e.seq);
    effects.into_iter().map(|e| e.status).collect()
}

async fn open_storm(h: &Harness) -> store::Storm {
    let open = h
        .store
        .storms(
            &StormQuery {
                status: Some("open".into()),
                limit: 10,
            },
            h.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    open.into_iter().next().unwrap()
}

/// A watched rule acts on its limit of records, then holds; approved, the held ones go out
/// once and the rule flows freely after.
async fn a_watched_rule_past_its_limit_is_held_until_approved(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine_from(QUIET)));
    let start = ts("2026-11-20T12:00:00Z");
    h.store
        .watch_rules(vec![watch("nudge", start, 3, false)])
        .await
        .unwrap();
    deals(&*h.store, 0, 10, "2026-11-20T09:00:00Z").await;
    h.clock.set(ts("2026-11-21T12:00:00Z"));
    while h
        .store
        .fire_due_timers(h.clock.now(), 4)
        .await
        .unwrap()
        .timers
        > 0
    {}
    let nudges = statuses(&h, "nudge").await;
    assert_eq!(nudges.len(), 10);
    assert_eq!(
        nudges.iter().filter(|s| *s == "pending").count(),
        3,
        "{nudges:?}"
    );
    assert_eq!(
        nudges.iter().filter(|s| *s == "held").count(),
        7,
        "{nudges:?}"
    );
    let storm = open_storm(&h).await;
    assert!(storm.is_holding());
    assert_eq!((storm.rule.as_str(), storm.held), ("nudge", 7));
    // The dispatcher never sees what is held.
    let claimed = h
        .store
        .claim_effects(store::Claim {
            node: "n".into(),
            now: h.clock.now(),
            lease_until: ts("2026-11-21T13:00:00Z"),
            limit: 100,
            ..store::Claim::default()
        })
        .await
        .unwrap();
    assert_eq!(claimed.iter().filter(|e| e.rule == "nudge").count(), 3);

    let decided = h
        .store
        .decide_storm(
            &storm.id,
            StormDecision::Approve {
                by: "maya@acme.example".into(),
                note: Some("expected".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(decided.status, "approved");
    assert_eq!(decided.decided_by.as_deref(), Some("maya@acme.example"));
    let nudges = statuses(&h, "nudge").await;
    assert_eq!(
        nudges.iter().filter(|s| *s == "held").count(),
        0,
        "{nudges:?}"
    );
    // Deciding twice is refused; the rule now flows freely.
    assert!(matches!(
        h.store
            .decide_storm(
                &storm.id,
                StormDecision::Discard {
                    by: "x".into(),
                    note: None
                }
            )
            .await,
        Err(store::Error::Conflict(_))
    ));
    deals(&*h.store, 10, 5, "2026-11-21T09:00:00Z").await;
    h.clock.set(ts("2026-11-22T12:00:00Z"));
    h.store.fire_due_timers(h.clock.now(), 100).await.unwrap();
    let nudges = statuses(&h, "nudge").await;
    assert_eq!(nudges.len(), 15);
    assert!(!nudges.contains(&"held".to_owned()), "{nudges:?}");
}

/// A storm opened holding holds from the first effect, and what the store acts on itself (a
/// sequence started, an owner routed) happens only once approved.
async fn a_storm_opened_holding_acts_only_when_approved(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine_from(QUIET)));
    let start = h.clock.now();
    h.store
        .watch_rules(vec![watch("welcome", start, 100, true)])
        .await
        .unwrap();
    // Routing chooses among people the store knows.
    let people = ["ana", "ben"].map(|n| {
        ev(
            "person.created",
            &format!("p-{n}"),
            "2026-10-01T00:00:00Z",
            &format!(r#""person":"{n}@acme.example""#),
            "{}",
        )
    });
    h.store.ingest(people.to_vec()).await.unwrap();
    deals(&*h.store, 0, 2, "2026-11-20T09:00:00Z").await;
    assert_eq!(statuses(&h, "welcome").await, ["held"; 4]);
    let enrolled = |h: &Harness| {
        let store = Arc::clone(&h.store);
        async move {
            store
                .enrolments(&store::EnrolmentQuery::default())
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(enrolled(&h).await, 0, "nothing enrolled while held");
    let storm = open_storm(&h).await;
    assert_eq!(storm.preview, Some(serde_json::json!({"now": 10})));
    h.store
        .decide_storm(
            &storm.id,
            StormDecision::Approve {
                by: "maya@acme.example".into(),
                note: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(enrolled(&h).await, 2, "enrolled on approval");
    let effects = h.store.effects(None, 100).await.unwrap();
    let routed: Vec<&str> = effects
        .iter()
        .filter(|e| e.action["kind"] == "assign_owner")
        .map(|e| e.action["chosen"].as_str().unwrap_or("nobody"))
        .collect();
    assert_eq!(routed.len(), 2);
    assert!(
        routed.iter().all(|c| c.ends_with("@acme.example")),
        "{routed:?}"
    );
    let starts: Vec<String> = effects
        .iter()
        .filter(|e| e.action["kind"] == "start_sequence")
        .map(|e| e.status.clone())
        .collect();
    assert_eq!(starts, ["delivered", "delivered"]);
}

/// Discarded: the held effects are cancelled, and so is what the rule decides afterwards for a
/// moment before the discard; what it decides for later moments goes out.
async fn a_discarded_storm_cancels_its_moment_and_nothing_after(backend: Backend) {
    let h = backend.open();
    h.store.set_engine(Some(engine_from(QUIET)));
    let start = h.clock.now();
    h.store
        .watch_rules(vec![watch("nudge", start, 100, true)])
        .await
        .unwrap();
    deals(&*h.store, 0, 3, "2026-11-20T09:00:00Z").await;
    deals(&*h.store, 3, 2, "2026-11-21T09:00:00Z").await;
    // Two quiet deals come due before the discard; the others' timers have not run yet.
    h.clock.set(ts("2026-11-21T12:00:00Z"));
    h.store.fire_due_timers(h.clock.now(), 2).await.unwrap();
    let storm = open_storm(&h).await;
    h.store
        .decide_storm(
            &storm.id,
            StormDecision::Discard {
                by: "maya@acme.example".into(),
                note: Some("not for the old deals".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(statuses(&h, "nudge").await, ["cancelled", "cancelled"]);
    // The third deal's instance was due before the discard: cancelled when it fires. The two
    // deals created later come due after it: they go out.
    h.clock.set(ts("2026-11-22T12:00:00Z"));
    h.store.fire_due_timers(h.clock.now(), 100).await.unwrap();
    let nudges = statuses(&h, "nudge").await;
    assert_eq!(
        nudges,
        ["cancelled", "cancelled", "cancelled", "pending", "pending"]
    );
    let effects = h.store.effects(None, 100).await.unwrap();
    let why = effects
        .iter()
        .find(|e| e.status == "cancelled")
        .and_then(|e| e.last_error.clone())
        .unwrap();
    assert!(
        why.contains("discarded") && why.contains("maya@acme.example"),
        "{why}"
    );
}

suite!(
    a_watched_rule_past_its_limit_is_held_until_approved,
    a_storm_opened_holding_acts_only_when_approved,
    a_discarded_storm_cancels_its_moment_and_nothing_after,
);
