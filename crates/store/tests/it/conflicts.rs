//! Issue 23, conflicts: effects of one input that write different values to one owner, stage
//! or field are resolved by the engine; the store writes the loser `overruled`, with why, in
//! the transaction of its cause, and never routes, acts on or hands it to a dispatcher. A
//! record's timers due at one moment fire together, so their effects are resolved too.

use domain::Timestamp;
use store::{Error, StoredEffect};

use crate::conformance::{claim, engine_from};
use crate::{Backend, Harness, ev, ts};

const RULES: &str = r#"
playbook: p
owner: o
stages: [demo, proposal, legal]
rules:
  - id: in-demo-to-proposal
    why: An objection in the demo means they weigh the price; the inside team takes it.
    when: { event: objection.raised }
    if: deal.stage == "demo"
    then:
      - set_stage: proposal
      - assign_owner: { team: [ana@acme.example] }
  - id: legal-to-legal
    why: A legal objection means the contract is being read; the closer takes it.
    priority: 5
    when: { event: objection.raised }
    if: event.kind == "legal"
    then:
      - set_stage: legal
      - assign_owner: { team: [omar@acme.example] }
  - id: renewal-day
    why: On the renewal date the account team takes over.
    when: { date_field: { field: fields.renewal_on, after: 9h } }
    then:
      - set_field: { field: attention, value: account-team }
  - id: close-day
    why: On the close date the owner chases the signature.
    when: { date_field: { field: close_date, after: 9h } }
    then:
      - set_field: { field: attention, value: owner }
"#;

async fn store(backend: Backend) -> Harness {
    let h = backend.open();
    h.store.set_engine(Some(engine_from(RULES)));
    let person = |n: &str| {
        ev(
            "person.created",
            &format!("p-{n}"),
            "2026-10-01T00:00:00Z",
            &format!(r#""person":"{n}@acme.example""#),
            r#"{"name":"x"}"#,
        )
    };
    h.store
        .ingest(vec![person("ana"), person("omar")])
        .await
        .unwrap();
    h
}

/// (rule, action kind, status, why) of a deal's effects, in the order decided.
async fn outbox(h: &Harness, deal: &str) -> Vec<(String, String, String, Option<String>)> {
    let mut effects: Vec<StoredEffect> = h.store.effects(None, 1_000).await.unwrap();
    effects.retain(|e| e.record.id.as_str() == deal);
    effects.sort_by_key(|e| e.seq);
    effects
        .into_iter()
        .map(|e| {
            let kind = e.action["kind"].as_str().unwrap_or_default().to_owned();
            (e.rule, kind, e.status, e.last_error)
        })
        .collect()
}

fn objection(id: &str, at: &str) -> domain::NewEvent {
    ev(
        "objection.raised",
        id,
        at,
        r#""deal":"D-1""#,
        r#"{"kind":"legal"}"#,
    )
}

/// The lower priority's writes are stored `overruled` with why, not routed; a dispatcher never
/// claims them, nor can they be retried; the same event again changes nothing.
async fn the_overruled_effect_is_stored_with_why_and_never_claimed(backend: Backend) {
    let h = store(backend).await;
    let created = ev(
        "deal.created",
        "d1",
        "2026-11-01T09:00:00Z",
        r#""deal":"D-1""#,
        r#"{"stage":"demo"}"#,
    );
    h.store
        .ingest(vec![created, objection("o1", "2026-11-02T09:00:00Z")])
        .await
        .unwrap();
    let got = outbox(&h, "D-1").await;
    let statuses: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(rule, kind, status, _)| (rule.as_str(), kind.as_str(), status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("in-demo-to-proposal", "set_stage", "overruled"),
            ("in-demo-to-proposal", "assign_owner", "overruled"),
            ("legal-to-legal", "set_stage", "pending"),
            ("legal-to-legal", "assign_owner", "pending"),
        ]
    );
    assert_eq!(
        got[0].3.as_deref(),
        Some(
            "overruled by rule \"legal-to-legal\" (priority 5, above this rule's 0), which moves the deal to legal at the same moment; this moves the deal to proposal and is never delivered"
        )
    );
    // The loser was not routed: no member chosen for it, and none written down.
    let effects = h.store.effects(None, 1_000).await.unwrap();
    let assigns: Vec<(&str, Option<&str>)> = effects
        .iter()
        .filter(|e| e.action["kind"] == "assign_owner")
        .map(|e| (e.status.as_str(), e.action["chosen"].as_str()))
        .collect();
    assert_eq!(
        assigns,
        [("overruled", None), ("pending", Some("omar@acme.example"))]
    );
    // A dispatcher claims the winners only.
    let claimed = h
        .store
        .claim_effects(claim("a", "2026-11-21T00:00:00Z", 100))
        .await
        .unwrap();
    let mut claimed: Vec<String> = claimed.into_iter().map(|e| e.rule).collect();
    claimed.sort();
    assert_eq!(claimed, ["legal-to-legal", "legal-to-legal"]);
    let overruled = effects
        .iter()
        .find(|e| e.status == "overruled")
        .unwrap()
        .key
        .clone();
    assert!(matches!(
        h.store.retry_effect(&overruled).await,
        Err(Error::Conflict(_))
    ));
    // Later, with the first leases run out, another claim takes them over: still not it.
    let later = h
        .store
        .claim_effects(claim("b", "2026-12-31T00:00:00Z", 100))
        .await
        .unwrap();
    assert_eq!(later.len(), 2);
    assert!(later.iter().all(|e| e.rule == "legal-to-legal"));
    // The same event again decides the same effects: nothing is added or changed.
    h.store
        .ingest(vec![objection("o1", "2026-11-02T09:00:00Z")])
        .await
        .unwrap();
    let again = outbox(&h, "D-1").await;
    assert_eq!(again.len(), 4);
    assert_eq!(again[0].2, "overruled");
}

/// Two date triggers due at one moment for a deal fire in one pass, even past the pass's
/// limit, and the rule declared first wins.
async fn a_records_timers_due_at_one_moment_are_resolved_together(backend: Backend) {
    let h = store(backend).await;
    h.store
        .ingest(vec![ev(
            "deal.created",
            "d2",
            "2026-11-01T09:00:00Z",
            r#""deal":"D-2""#,
            r#"{"stage":"demo","close_date":"2026-12-01","fields":{"renewal_on":"2026-12-01"}}"#,
        )])
        .await
        .unwrap();
    let now: Timestamp = ts("2026-12-02T00:00:00Z");
    let fired = h.store.fire_due_timers(now, 1).await.unwrap();
    assert_eq!((fired.timers, fired.effects), (2, 2));
    let got = outbox(&h, "D-2").await;
    let by_rule = |rule: &str| got.iter().find(|e| e.0 == rule).unwrap();
    assert_eq!(by_rule("renewal-day").2, "pending");
    assert_eq!(by_rule("close-day").2, "overruled");
    assert_eq!(
        by_rule("close-day").3.as_deref(),
        Some(
            "overruled by rule \"renewal-day\" (the same priority, 0, and declared first), which sets attention to \"account-team\" at the same moment; this sets attention to \"owner\" and is never delivered"
        )
    );
    assert_eq!(h.store.fire_due_timers(now, 10).await.unwrap().timers, 0);
}

suite!(
    the_overruled_effect_is_stored_with_why_and_never_claimed,
    a_records_timers_due_at_one_moment_are_resolved_together,
);
