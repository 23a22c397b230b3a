//! Issue 8, the exceptions inbox: an escalation's delivery raises an item once; unacknowledged,
//! it climbs its chain one SLA at a time and ends overdue at the top; an acknowledgement stops
//! the climb; a reassignment gives a fresh SLA; a resolution is recorded with its reason and
//! logged as the resolver's intervention on the deal, in the same transaction.

use domain::{EventBody, Record, RecordId, RecordKey, RecordKind, Timestamp};
use store::{ExceptionAction, ExceptionQuery, NewException, Outcome, Store};

use crate::conformance::{claim, finish};
use crate::{Backend, ev, ts};

const PLAYBOOK: &str = r#"
playbook: p
owner: omar@acme.example
stages: [legal]
rules:
  - id: stuck-in-legal
    why: Legal review stalls silently.
    when: { event: note.added }
    then:
      - escalate: { to: deal.owner, then: [role:manager, role:founder], reason: legal-stall, sla: 1d }
"#;

fn deal() -> RecordKey {
    RecordKey::new(RecordKind::Deal, RecordId::parse("D-1").unwrap())
}

/// A store holding D-1 (owned by sam) and the escalation its note decided, delivered at
/// `at` with the chain sam → omar → maya, SLA one day.
async fn raised(backend: Backend, at: &str) -> (crate::Harness, String) {
    let h = backend.open();
    h.store
        .set_engine(Some(crate::conformance::engine_from(PLAYBOOK)));
    let d = r#""deal":"D-1""#;
    h.store
        .ingest(vec![
            ev(
                "person.created",
                "p1",
                "2026-11-01T00:00:00Z",
                r#""person":"sam""#,
                "{}",
            ),
            ev(
                "person.created",
                "p2",
                "2026-11-01T00:00:00Z",
                r#""person":"pia""#,
                "{}",
            ),
            ev(
                "deal.created",
                "c",
                "2026-11-02T09:00:00Z",
                d,
                r#"{"name":"Globex","stage":"legal","owner":"sam"}"#,
            ),
            ev(
                "note.added",
                "n",
                "2026-11-10T09:00:00Z",
                d,
                r#"{"text":"still in legal"}"#,
            ),
        ])
        .await
        .unwrap();
    let effect = h.store.claim_effects(claim("a", at, 10)).await.unwrap();
    assert_eq!(effect.len(), 1);
    let key = effect[0].key.clone();
    let mut f = finish(&key, "a", at, Outcome::Delivered);
    f.exception = Some(NewException {
        id: key.clone(),
        record: deal(),
        playbook: effect[0].playbook.clone(),
        rule: "stuck-in-legal".into(),
        version: effect[0].version.clone(),
        reason: "legal-stall".into(),
        title: "Globex: legal-stall".into(),
        context: serde_json::json!({"facts": {"stage": "legal"}}),
        chain: vec!["sam".into(), "omar".into(), "maya".into()],
        sla_ms: 86_400_000,
        raised_at: ts(at),
    });
    assert!(h.store.finish_delivery(f.clone()).await.unwrap());
    (h, key)
}

/// The alerts the inbox sent its holders: (to, due, text), oldest first.
async fn alerts(store: &dyn Store) -> Vec<(String, Timestamp, String)> {
    store
        .outbox(&store::OutboxQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action["kind"] == "alert")
        .map(|e| {
            (
                e.action["to"]["person"].as_str().unwrap().to_owned(),
                e.due,
                e.action["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn item(
    store: &dyn Store,
    id: &str,
) -> (
    store::ExceptionItem,
    Vec<(String, Option<String>, Timestamp)>,
) {
    let (item, history) = store.exception(id).await.unwrap().unwrap();
    let history = history
        .into_iter()
        .map(|e| (e.action, e.assignee, e.at))
        .collect();
    (item, history)
}

pub async fn an_unacknowledged_exception_climbs_its_chain_and_ends_overdue(backend: Backend) {
    let (h, id) = raised(backend, "2026-11-10T09:00:00Z").await;
    let store = &*h.store;
    let (e, _) = item(store, &id).await;
    assert_eq!(
        (e.status.as_str(), e.assignee.as_str(), e.level),
        ("open", "sam", 0)
    );
    assert_eq!(e.due_at, Some(ts("2026-11-11T09:00:00Z")));
    // The inbox of sam holds it; omar's does not yet.
    let inbox = |who: &str| ExceptionQuery {
        assignee: Some(who.into()),
        status: Some("unresolved".into()),
        limit: 10,
        ..ExceptionQuery::default()
    };
    assert_eq!(store.exceptions(&inbox("sam")).await.unwrap().len(), 1);
    assert!(store.exceptions(&inbox("omar")).await.unwrap().is_empty());

    // A minute before the SLA runs out: nothing moves.
    let pass = store
        .escalate_exceptions(ts("2026-11-11T08:59:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(pass.escalated, 0);
    // Found late (the server was down for two days): it climbs one level per pass, each due
    // one SLA after the last ran out, so the timing is that of the chain, not of the runner.
    let pass = store
        .escalate_exceptions(ts("2026-11-13T10:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!((pass.escalated, pass.overdue), (1, 0));
    let (e, _) = item(store, &id).await;
    assert_eq!((e.assignee.as_str(), e.level), ("omar", 1));
    assert_eq!(e.due_at, Some(ts("2026-11-12T09:00:00Z")));
    let pass = store
        .escalate_exceptions(ts("2026-11-13T10:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(pass.escalated, 1);
    let pass = store
        .escalate_exceptions(ts("2026-11-14T10:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!((pass.escalated, pass.overdue), (0, 1));
    let (e, history) = item(store, &id).await;
    assert_eq!((e.assignee.as_str(), e.level), ("maya", 2));
    // maya's day ran out on the 13th, one SLA after omar's.
    assert_eq!(
        (e.due_at, e.overdue_at),
        (None, Some(ts("2026-11-13T09:00:00Z")))
    );
    assert_eq!(
        history,
        vec![
            (
                "raised".into(),
                Some("sam".into()),
                ts("2026-11-10T09:00:00Z")
            ),
            (
                "escalated".into(),
                Some("omar".into()),
                ts("2026-11-11T09:00:00Z")
            ),
            (
                "escalated".into(),
                Some("maya".into()),
                ts("2026-11-12T09:00:00Z")
            ),
            (
                "overdue".into(),
                Some("maya".into()),
                ts("2026-11-13T09:00:00Z")
            ),
        ]
    );
    // Each holder was told, once, when it reached them, with why.
    let told = alerts(store).await;
    let who: Vec<(&str, Timestamp)> = told.iter().map(|(p, at, _)| (p.as_str(), *at)).collect();
    assert_eq!(
        who,
        [
            ("sam", ts("2026-11-10T09:00:00Z")),
            ("omar", ts("2026-11-11T09:00:00Z")),
            ("maya", ts("2026-11-12T09:00:00Z")),
        ]
    );
    assert_eq!(
        told[1].2,
        "{% raw %}Globex: legal-stall: an exception for you to acknowledge (not acknowledged by sam within 1d).{% endraw %}"
    );
    // Monitoring sees it open and overdue.
    let backlog = store.backlog().await.unwrap();
    assert_eq!(backlog.exceptions, [("open".to_owned(), 1)]);
    assert_eq!(backlog.exceptions_overdue, 1);
    // Nothing further happens to an overdue one.
    let pass = store
        .escalate_exceptions(ts("2026-12-01T00:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!((pass.escalated, pass.overdue), (0, 0));
    // The delivery recorded twice raises nothing new.
    assert_eq!(
        store
            .exceptions(&ExceptionQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn acknowledging_stops_the_climb_and_resolving_logs_the_intervention(backend: Backend) {
    let (h, id) = raised(backend, "2026-11-10T09:00:00Z").await;
    let store = &*h.store;
    store
        .escalate_exceptions(ts("2026-11-11T09:00:00Z"), 10)
        .await
        .unwrap();
    // omar holds it now, and acknowledges: it stays with him.
    h.clock.set(ts("2026-11-11T10:00:00Z"));
    let e = store
        .act_on_exception(
            &id,
            ExceptionAction::Acknowledge {
                by: "omar".into(),
                note: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((e.status.as_str(), e.due_at), ("acknowledged", None));
    let pass = store
        .escalate_exceptions(ts("2026-11-20T00:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(pass.escalated, 0);
    assert_eq!(item(store, &id).await.0.assignee, "omar");
    // Twice is a conflict.
    let again = store
        .act_on_exception(
            &id,
            ExceptionAction::Acknowledge {
                by: "omar".into(),
                note: None,
            },
        )
        .await;
    assert!(matches!(again, Err(store::Error::Conflict(_))), "{again:?}");
    // Reassigned to someone unknown: refused, nothing changes.
    let bad = store
        .act_on_exception(
            &id,
            ExceptionAction::Reassign {
                to: "nobody".into(),
                by: "omar".into(),
                note: None,
            },
        )
        .await;
    assert!(
        matches!(bad, Err(store::Error::Invalid(m)) if m.contains("nobody is not a known person"))
    );
    // To pia, a known person: the history says who and why.
    let e = store
        .act_on_exception(
            &id,
            ExceptionAction::Reassign {
                to: "pia".into(),
                by: "omar".into(),
                note: Some("pia knows their counsel".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(e.assignee, "pia");
    assert_eq!(
        alerts(store).await.last().unwrap().0,
        "pia",
        "the new holder is told"
    );
    // A blank resolution is refused.
    let blank = store
        .act_on_exception(
            &id,
            ExceptionAction::Resolve {
                by: "pia".into(),
                resolution: " ".into(),
                note: None,
            },
        )
        .await;
    assert!(matches!(blank, Err(store::Error::Invalid(_))), "{blank:?}");
    h.clock.set(ts("2026-11-12T15:00:00Z"));
    let e = store
        .act_on_exception(
            &id,
            ExceptionAction::Resolve {
                by: "pia".into(),
                resolution: "called their counsel; redlines back Friday".into(),
                note: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(e.status, "resolved");
    assert_eq!(e.resolved_by.as_deref(), Some("pia"));
    let (_, history) = item(store, &id).await;
    let actions: Vec<&str> = history.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "raised",
            "escalated",
            "acknowledged",
            "reassigned",
            "resolved"
        ]
    );
    // The resolution is pia's intervention on the deal, with the exception's reason.
    let Record::Deal(d) = store.record(&deal()).await.unwrap().unwrap().record else {
        panic!("a deal")
    };
    assert_eq!(d.interventions.len(), 1);
    assert_eq!(
        (
            d.interventions[0].person.as_str(),
            d.interventions[0].reason.as_str()
        ),
        ("pia", "legal-stall")
    );
    assert_eq!(d.interventions[0].at, ts("2026-11-12T15:00:00Z"));
    let logged = store.timeline(&deal(), 50).await.unwrap();
    let event = logged
        .iter()
        .find(|e| matches!(e.body, EventBody::InterventionLogged(_)))
        .unwrap();
    assert_eq!(event.source_id, format!("exception:{id}"));
    // A resolved exception takes nothing more.
    let late = store
        .act_on_exception(
            &id,
            ExceptionAction::Acknowledge {
                by: "maya".into(),
                note: None,
            },
        )
        .await;
    assert!(matches!(late, Err(store::Error::Conflict(_))), "{late:?}");
    let missing = store
        .act_on_exception(
            "nope",
            ExceptionAction::Acknowledge {
                by: "maya".into(),
                note: None,
            },
        )
        .await;
    assert!(
        matches!(missing, Err(store::Error::NotFound(_))),
        "{missing:?}"
    );
}

suite!(
    an_unacknowledged_exception_climbs_its_chain_and_ends_overdue,
    acknowledging_stops_the_climb_and_resolving_logs_the_intervention,
);
