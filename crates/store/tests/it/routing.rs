//! Issue 8, routing: `assign_owner` strategies decided in the transaction that adds the effect,
//! from each member's state and load as the store holds them at the decision's time —
//! out-of-office periods, working hours, capacity and availability pass a member over; a
//! fallback takes what nobody can; every choice says why.

use store::{OutboxQuery, Store};

use crate::{Backend, ev};

/// The team: ana works Berlin office hours, ben is away from 2 to 4 November, cy works any
/// time but carries at most two open deals; omar is the fallback.
fn people() -> Vec<domain::NewEvent> {
    let person = |n: &str, data: &str| {
        ev(
            "person.created",
            &format!("p-{n}"),
            "2026-10-01T00:00:00Z",
            &format!(r#""person":"{n}@acme.example""#),
            data,
        )
    };
    vec![
        person(
            "ana",
            r#"{"name":"Ana","timezone":"Europe/Berlin","working_hours":"mon-fri 09:00-17:00"}"#,
        ),
        person(
            "ben",
            r#"{"name":"Ben","out_of_office":[{"from":"2026-11-02T00:00:00Z","until":"2026-11-04T00:00:00Z","note":"conference"}]}"#,
        ),
        person("cy", r#"{"name":"Cy","capacity":2}"#),
        person("omar", r#"{"name":"Omar","roles":["manager"]}"#),
    ]
}

fn playbook(assign: &str) -> String {
    format!(
        "playbook: p\nowner: o\nrules:\n  - id: route\n    why: New leads go to whoever can call them now.\n    record: lead\n    when: {{ event: lead.created }}\n    then:\n      - assign_owner: {assign}\n"
    )
}

async fn routed_store(backend: Backend, assign: &str) -> crate::Harness {
    let h = backend.open();
    h.store
        .set_engine(Some(crate::conformance::engine_from(&playbook(assign))));
    h.store.ingest(people()).await.unwrap();
    h
}

fn lead(n: usize, at: &str) -> domain::NewEvent {
    ev(
        "lead.created",
        &format!("l{n}"),
        at,
        &format!(r#""lead":"L-{n}""#),
        r#"{"name":"x"}"#,
    )
}

/// (chosen, why, status) of every routing decision, in order.
async fn decisions(store: &dyn Store) -> Vec<(Option<String>, String, String)> {
    store
        .outbox(&OutboxQuery {
            limit: 100,
            ..OutboxQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action["kind"] == "assign_owner")
        .map(|e| {
            (
                e.action["chosen"].as_str().map(str::to_owned),
                e.action["why"].as_str().unwrap_or_default().to_owned(),
                e.status,
            )
        })
        .collect()
}

fn chosen(d: &[(Option<String>, String, String)]) -> Vec<&str> {
    d.iter()
        .map(|(c, _, _)| c.as_deref().unwrap_or("-"))
        .collect()
}

pub async fn round_robin_passes_over_whoever_cannot_take_work_now(backend: Backend) {
    let h = routed_store(
        backend,
        "{ team: [ana@acme.example, ben@acme.example, cy@acme.example], fallback: omar@acme.example }",
    )
    .await;
    // Tuesday 3 November, 10:00 UTC (11:00 in Berlin): ana works, ben is away.
    for n in 0..3 {
        h.store
            .ingest(vec![lead(n, "2026-11-03T10:00:00Z")])
            .await
            .unwrap();
    }
    // Tuesday 20:00 UTC: ana's day is over, ben is still away.
    h.store
        .ingest(vec![lead(3, "2026-11-03T20:00:00Z")])
        .await
        .unwrap();
    // Thursday 10:00 UTC: everyone is back.
    for n in 4..7 {
        h.store
            .ingest(vec![lead(n, "2026-11-05T10:00:00Z")])
            .await
            .unwrap();
    }
    let d = decisions(&*h.store).await;
    assert_eq!(
        chosen(&d),
        [
            "ana@acme.example", // turn 0: ana
            "cy@acme.example",  // turn 1: ben is away, cy
            "cy@acme.example",  // turn 2: cy
            "cy@acme.example",  // turn 3: ana after hours, ben away
            "ben@acme.example", // turn 4: ben is back
            "cy@acme.example",  // turn 5
            "ana@acme.example", // turn 6
        ]
    );
    assert_eq!(
        d[1].1,
        "round robin: cy@acme.example (turn 2 of 3); passed over ben@acme.example (out of office until 2026-11-04T00:00:00.000Z)"
    );
    assert!(
        d[3].1.contains(
            "ana@acme.example (outside working hours (mon-fri 09:00-17:00, Europe/Berlin))"
        ),
        "{}",
        d[3].1
    );
    // Nobody at all: a weekend night with cy at capacity (their leads are not deals, so
    // give cy two open deals first).
    h.store
        .ingest(
            (0..2)
                .map(|n| {
                    ev(
                        "deal.created",
                        &format!("cd{n}"),
                        "2026-11-06T09:00:00Z",
                        &format!(r#""deal":"CY-{n}""#),
                        r#"{"owner":"cy@acme.example","stage":"demo"}"#,
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    h.store
        .ingest(vec![ev(
            "person.updated",
            "ben-off",
            "2026-11-06T00:00:00Z",
            r#""person":"ben@acme.example""#,
            r#"{"available":false}"#,
        )])
        .await
        .unwrap();
    h.store
        .ingest(vec![lead(7, "2026-11-07T23:00:00Z")])
        .await
        .unwrap();
    let d = decisions(&*h.store).await;
    let last = d.last().unwrap();
    assert_eq!(last.0.as_deref(), Some("omar@acme.example"));
    assert!(
        last.1
            .starts_with("nobody in the team could take it; passed over"),
        "{}",
        last.1
    );
    assert!(last.1.contains("ben@acme.example (marked unavailable)"));
    assert!(
        last.1
            .contains("cy@acme.example (at capacity (2 open deals, capacity 2))")
    );
    assert!(last.1.ends_with("the fallback omar@acme.example"));
}

pub async fn without_a_fallback_an_unroutable_record_is_blocked_with_why(backend: Backend) {
    let h = routed_store(backend, "{ team: [ben@acme.example, ghost@acme.example] }").await;
    h.store
        .ingest(vec![lead(0, "2026-11-03T10:00:00Z")])
        .await
        .unwrap();
    let d = decisions(&*h.store).await;
    assert_eq!(d[0].0, None);
    assert_eq!(d[0].2, "blocked");
    assert_eq!(
        d[0].1,
        "nobody in the team could take it; passed over ben@acme.example (out of office until 2026-11-04T00:00:00.000Z), ghost@acme.example (not a known person), and there is no fallback"
    );
}

pub async fn weighted_gives_each_member_their_share(backend: Backend) {
    let h = routed_store(
        backend,
        "{ team: [ana@acme.example, cy@acme.example], strategy: weighted, weights: { ana@acme.example: 2 } }",
    )
    .await;
    for n in 0..6 {
        h.store
            .ingest(vec![lead(n, "2026-11-05T10:00:00Z")])
            .await
            .unwrap();
    }
    let d = decisions(&*h.store).await;
    let (a, c) = ("ana@acme.example", "cy@acme.example");
    assert_eq!(chosen(&d), [a, c, a, a, c, a]);
    assert_eq!(d[0].1, "weighted: ana@acme.example (weight 2 of 3)");
}

pub async fn least_busy_counts_open_deals_or_recent_assignments(backend: Backend) {
    // By open deals: ana has two, cy one, omar none.
    let team = "[ana@acme.example, cy@acme.example, omar@acme.example]";
    let h = routed_store(
        backend,
        &format!("{{ team: {team}, strategy: least_busy }}"),
    )
    .await;
    let mut deals = Vec::new();
    for (n, owner) in ["ana", "ana", "cy"].iter().enumerate() {
        deals.push(ev(
            "deal.created",
            &format!("d{n}"),
            "2026-11-01T09:00:00Z",
            &format!(r#""deal":"D-{n}""#),
            &format!(r#"{{"owner":"{owner}@acme.example","stage":"demo"}}"#),
        ));
    }
    // A won deal is not open: it does not count.
    deals.push(ev(
        "deal.won",
        "d0-won",
        "2026-11-02T09:00:00Z",
        r#""deal":"D-0""#,
        "{}",
    ));
    h.store.ingest(deals).await.unwrap();
    h.store
        .ingest(vec![lead(0, "2026-11-05T10:00:00Z")])
        .await
        .unwrap();
    let d = decisions(&*h.store).await;
    assert_eq!(d[0].0.as_deref(), Some("omar@acme.example"));
    assert_eq!(
        d[0].1,
        "least busy: omar@acme.example (0 open deals; the others: ana@acme.example 1, cy@acme.example 1)"
    );

    // By recent assignments: each decision counts, so three leads spread over the team,
    // ties taking turns.
    let h = routed_store(
        backend,
        &format!("{{ team: {team}, strategy: least_busy, busy: recent_assignments, recent: 1d }}"),
    )
    .await;
    for n in 0..3 {
        h.store
            .ingest(vec![lead(n, "2026-11-05T10:00:00Z")])
            .await
            .unwrap();
    }
    // A day later the window has emptied: the rotation decides again.
    h.store
        .ingest(vec![lead(3, "2026-11-06T10:30:00Z")])
        .await
        .unwrap();
    let d = decisions(&*h.store).await;
    assert_eq!(
        chosen(&d),
        [
            "ana@acme.example",
            "cy@acme.example",
            "omar@acme.example",
            "ana@acme.example"
        ]
    );
    assert_eq!(
        d[2].1,
        "least busy: omar@acme.example (0 assignments in 1d; the others: ana@acme.example 1, cy@acme.example 1)"
    );
}

/// A person marked unavailable earlier in the same request is passed over by a decision later
/// in it: routing reads members as the transaction holds them.
pub async fn routing_sees_people_as_the_transaction_holds_them(backend: Backend) {
    let h = routed_store(backend, "{ team: [cy@acme.example, ana@acme.example] }").await;
    h.store
        .ingest(vec![
            ev(
                "person.updated",
                "cy-off",
                "2026-11-05T09:59:00Z",
                r#""person":"cy@acme.example""#,
                r#"{"available":false}"#,
            ),
            lead(0, "2026-11-05T10:00:00Z"),
        ])
        .await
        .unwrap();
    let d = decisions(&*h.store).await;
    assert_eq!(chosen(&d), ["ana@acme.example"]);
    assert!(
        d[0].1
            .ends_with("passed over cy@acme.example (marked unavailable)"),
        "{}",
        d[0].1
    );
}

suite!(
    routing_sees_people_as_the_transaction_holds_them,
    round_robin_passes_over_whoever_cannot_take_work_now,
    without_a_fallback_an_unroutable_record_is_blocked_with_why,
    weighted_gives_each_member_their_share,
    least_busy_counts_open_deals_or_recent_assignments,
);
