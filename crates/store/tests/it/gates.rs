//! Qualification gates in the transaction that stores a move: a refused move leaves the deal
//! where it was and is recorded as `gate.blocked`, whatever sent it; an override needs a
//! permitted role and a reason, and is recorded with what it overrode.

use domain::{EventBody, Record, RecordId, RecordKey, RecordKind};
use store::{Ingested, OutboxQuery, Store};

use crate::{Backend, ev};

const PLAYBOOK: &str = r#"
playbook: qualification
owner: omar@acme.example
stages: [discovery, demo, proposal]
gates:
  - stage: proposal
    why: A proposal without budget, champion and a second stakeholder stalls in review.
    require:
      - { name: budget confirmed, if: deal.fields.budget_confirmed == true }
      - { name: champion named, if: has(deal.fields.champion) }
      - { name: two stakeholders, if: size(deal.contacts) >= 2 }
    override: [manager, founder]
    notify: [deal.owner]
"#;

fn key(id: &str) -> RecordKey {
    RecordKey::new(RecordKind::Deal, RecordId::parse(id).unwrap())
}

async fn stage(store: &dyn Store, id: &str) -> Option<String> {
    match store.record(&key(id)).await.unwrap().unwrap().record {
        Record::Deal(d) => d.stage.map(|s| s.as_str().to_owned()),
        other => panic!("not a deal: {other:?}"),
    }
}

/// The deal's `gate.blocked` events, oldest first.
async fn blocked(store: &dyn Store, id: &str) -> Vec<(domain::Event, domain::GateBlocked)> {
    let mut out: Vec<_> = store
        .timeline(&key(id), 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match &e.body {
            EventBody::GateBlocked(g) => Some((e.clone(), g.clone())),
            _ => None,
        })
        .collect();
    out.sort_by_key(|(e, _)| e.occurred_at);
    out
}

const D: &str = r#""deal":"D-1""#;

async fn gated_store(backend: Backend) -> crate::Harness {
    let h = backend.open();
    h.store
        .set_engine(Some(crate::conformance::engine_from(PLAYBOOK)));
    h.store
        .ingest(vec![ev(
            "deal.created",
            "c",
            "2026-11-02T09:00:00Z",
            D,
            r#"{"stage":"demo","owner":"sam@acme.example","contacts":["C-1"]}"#,
        )])
        .await
        .unwrap();
    h
}

pub async fn a_refused_move_leaves_the_deal_and_is_recorded_whatever_sent_it(backend: Backend) {
    let h = gated_store(backend).await;
    let store = &*h.store;

    // A stage change (the API, an import): refused in its place.
    let move_ = ev(
        "deal.stage_changed",
        "m1",
        "2026-11-03T09:00:00Z",
        D,
        r#"{"stage":"proposal"}"#,
    );
    let results = store.ingest(vec![move_.clone()]).await.unwrap();
    assert!(
        matches!(results[..], [Ingested::Stored { .. }]),
        "{results:?}"
    );
    assert_eq!(stage(store, "D-1").await.as_deref(), Some("demo"));
    let b = blocked(store, "D-1").await;
    assert_eq!(b.len(), 1);
    let (event, gate) = &b[0];
    assert_eq!(
        (event.source.as_str(), event.source_id.as_str()),
        ("test", "m1")
    );
    assert_eq!(gate.stage.as_str(), "proposal");
    assert_eq!(gate.from.as_ref().map(|s| s.as_str()), Some("demo"));
    assert_eq!(gate.gate, "qualification");
    assert_eq!(
        gate.unmet,
        ["budget confirmed", "champion named", "two stakeholders"]
    );
    assert_eq!(gate.attempted, "deal.stage_changed");
    // Sent again, it is the same event: still refused, nothing new.
    let again = store.ingest(vec![move_]).await.unwrap();
    assert!(
        matches!(again[..], [Ingested::Duplicate { .. }]),
        "{again:?}"
    );
    assert_eq!(blocked(store, "D-1").await.len(), 1);

    // The owner hears of it, with the unmet criteria.
    let effects = store
        .outbox(&OutboxQuery {
            limit: 10,
            ..OutboxQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(effects[0].rule, "gate-proposal");
    assert_eq!(effects[0].action["kind"], "alert");

    // An update carrying a stage (a CRM sync, an automation's internal event): its other
    // fields stand, its stage is refused beside it.
    let results = store
        .ingest(vec![ev(
            "deal.updated",
            "u1",
            "2026-11-04T09:00:00Z",
            D,
            r#"{"stage":"proposal","amount":5000,"fields":{"budget_confirmed":true}}"#,
        )])
        .await
        .unwrap();
    assert_eq!(results.len(), 1, "one result per event sent: {results:?}");
    let Record::Deal(d) = store.record(&key("D-1")).await.unwrap().unwrap().record else {
        panic!()
    };
    assert_eq!(d.stage.as_ref().map(|s| s.as_str()), Some("demo"));
    assert_eq!(d.amount.map(|m| m.major()), Some(5000.0));
    assert_eq!(d.blocked_moves.len(), 2);
    let b = blocked(store, "D-1").await;
    let (event, gate) = &b[1];
    assert_eq!(
        (event.source.as_str(), event.source_id.as_str()),
        ("pipewright", "gate:test:u1")
    );
    assert_eq!(gate.unmet, ["champion named", "two stakeholders"]);
    assert_eq!(gate.attempted, "deal.updated");

    // Criteria met in the same batch as the move: the gate sees them in order.
    let results = store
        .ingest(vec![
            ev(
                "deal.updated",
                "u2",
                "2026-11-05T09:00:00Z",
                D,
                r#"{"contacts":["C-1","C-2"],"fields":{"champion":"Ann"}}"#,
            ),
            ev(
                "deal.stage_changed",
                "m2",
                "2026-11-05T10:00:00Z",
                D,
                r#"{"stage":"proposal"}"#,
            ),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(stage(store, "D-1").await.as_deref(), Some("proposal"));
    assert_eq!(blocked(store, "D-1").await.len(), 2);
    // From a restart the log folds to the same place.
    let reopened = (h.reopen)();
    assert_eq!(stage(&*reopened, "D-1").await.as_deref(), Some("proposal"));
}

/// A move to proposal, overridden by `by` for `reason`.
async fn over(store: &dyn Store, id: &str, at: &str, by: &str, reason: &str) {
    // The sender's own `unmet` is not believed: the store records what the gate found.
    let data = format!(
        r#"{{"stage":"proposal","override":{{"by":"{by}","reason":"{reason}","unmet":["nothing"]}}}}"#
    );
    store
        .ingest(vec![ev("deal.stage_changed", id, at, D, &data)])
        .await
        .unwrap();
}

pub async fn an_override_needs_a_permitted_role_and_a_reason_and_is_recorded(backend: Backend) {
    let h = gated_store(backend).await;
    let store = &*h.store;
    store
        .ingest(vec![
            ev(
                "person.created",
                "p1",
                "2026-11-01T09:00:00Z",
                r#""person":"omar@acme.example""#,
                r#"{"name":"Omar","roles":["manager"]}"#,
            ),
            ev(
                "person.created",
                "p2",
                "2026-11-01T09:00:00Z",
                r#""person":"sam@acme.example""#,
                r#"{"name":"Sam","roles":["ae"]}"#,
            ),
        ])
        .await
        .unwrap();
    over(
        store,
        "o1",
        "2026-11-03T09:00:00Z",
        "sam@acme.example",
        "the CEO asked",
    )
    .await;
    over(
        store,
        "o2",
        "2026-11-03T10:00:00Z",
        "omar@acme.example",
        " ",
    )
    .await;
    assert_eq!(stage(store, "D-1").await.as_deref(), Some("demo"));
    let b = blocked(store, "D-1").await;
    assert_eq!(b.len(), 2);
    assert_eq!(
        b[0].1.refused.as_deref(),
        Some(
            "sam@acme.example may not override the gate on proposal: it takes one of the roles manager, founder"
        )
    );
    assert_eq!(
        b[0].1.gate_override.as_ref().map(|o| o.reason.as_str()),
        Some("the CEO asked")
    );
    assert_eq!(
        b[0].1.gate_override.as_ref().map(|o| o.unmet.len()),
        Some(0)
    );
    assert_eq!(
        b[1].1.refused.as_deref(),
        Some("an override needs a reason")
    );

    over(
        store,
        "o3",
        "2026-11-03T11:00:00Z",
        "omar@acme.example",
        "signed letter of intent",
    )
    .await;
    assert_eq!(stage(store, "D-1").await.as_deref(), Some("proposal"));
    // The audit: the move carries who, why and what was unmet.
    let timeline = store.timeline(&key("D-1"), 100).await.unwrap();
    let moved = timeline
        .iter()
        .find_map(|e| match &e.body {
            EventBody::DealStageChanged(c) if e.source_id == "o3" => c.gate_override.clone(),
            _ => None,
        })
        .expect("the override is stored");
    assert_eq!(moved.by.as_str(), "omar@acme.example");
    assert_eq!(moved.reason, "signed letter of intent");
    assert_eq!(
        moved.unmet,
        ["budget confirmed", "champion named", "two stakeholders"]
    );
}

suite!(
    a_refused_move_leaves_the_deal_and_is_recorded_whatever_sent_it,
    an_override_needs_a_permitted_role_and_a_reason_and_is_recorded,
);
