//! Issue 8, routing end to end: a lead is assigned, the assignment is recorded in the log with
//! why, and a first-touch SLA the owner misses reassigns it (passing over the owner who missed
//! it), then escalates when the next owner misses it too — timed by the manual clock.

use store::{OutboxQuery, Store};

use crate::{TestApp, event, spawn_with_playbooks};

const PLAYBOOK: &str = r#"
playbook: inbound
owner: omar@acme.example
rules:
  - id: route-inbound
    why: Inbound leads go round the SDRs who can call them today.
    record: lead
    when: { event: lead.created }
    then:
      - assign_owner:
          team: [ana@acme.example, ben@acme.example]
          first_touch: { within: 4h, reassign: true, escalate: role:manager }
"#;

async fn deliver(app: &TestApp) {
    let dispatcher = app.server_state().dispatcher.clone().unwrap();
    dispatcher.run_once().await.unwrap();
}

/// Advances the clock to `at` and fires what is due, then delivers.
async fn at(app: &TestApp, when: &str) {
    let now: domain::Timestamp = when.parse().unwrap();
    app.clock.set(now);
    app.store.fire_due_timers(now, 100).await.unwrap();
    deliver(app).await;
}

/// The lead's `owner.assigned` events: (owner, previous, rule, why).
async fn assignments(app: &TestApp, lead: &str) -> Vec<(String, Option<String>, String, String)> {
    let (status, body) = app.get(&app.reader, &format!("/api/v1/leads/{lead}")).await;
    assert_eq!(status, 200, "{body}");
    body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "owner.assigned")
        .map(|e| {
            let d = &e["data"];
            (
                d["owner"].as_str().unwrap().to_owned(),
                d["previous"].as_str().map(str::to_owned),
                d["rule"].as_str().unwrap().to_owned(),
                d["why"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn escalations(store: &dyn Store) -> Vec<serde_json::Value> {
    store
        .outbox(&OutboxQuery {
            limit: 100,
            ..OutboxQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action["kind"] == "escalate")
        .map(|e| serde_json::json!({"record": e.record.id.as_str(), "rule": e.rule, "action": e.action}))
        .collect()
}

#[tokio::test]
async fn a_missed_first_touch_reassigns_then_escalates() {
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("inbound.yaml"), PLAYBOOK).unwrap();
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let person = |id: &str, data: &str| {
        event(
            "person.created",
            &format!("p-{id}"),
            "2026-11-01T00:00:00Z",
            &format!(r#""person":"{id}@acme.example""#),
            data,
        )
    };
    app.send(&[
        person("ana", r#"{"name":"Ana","email":"ana@acme.example"}"#),
        person("ben", r#"{"name":"Ben","email":"ben@acme.example"}"#),
        person(
            "omar",
            r#"{"name":"Omar","email":"omar@acme.example","roles":["manager"]}"#,
        ),
    ])
    .await;
    // 12:00: two inbound leads, one for each SDR.
    app.send(&[
        event(
            "lead.created",
            "l1",
            "2026-11-20T12:00:00Z",
            r#""lead":"L-1""#,
            r#"{"name":"Initech"}"#,
        ),
        event(
            "lead.created",
            "l2",
            "2026-11-20T12:00:00Z",
            r#""lead":"L-2""#,
            r#"{"name":"Hooli"}"#,
        ),
    ])
    .await;
    deliver(&app).await;
    let l1 = assignments(&app, "L-1").await;
    assert_eq!(l1.len(), 1);
    assert_eq!(
        (l1[0].0.as_str(), l1[0].2.as_str(), l1[0].3.as_str()),
        (
            "ana@acme.example",
            "route-inbound",
            "round robin: ana@acme.example (turn 1 of 2)"
        )
    );
    assert_eq!(assignments(&app, "L-2").await[0].0, "ben@acme.example");

    // 13:00: ben calls his lead; ana does nothing with hers.
    app.send(&[event(
        "call.logged",
        "c1",
        "2026-11-20T13:00:00Z",
        r#""lead":"L-2","actor":{"person":"ben@acme.example"}"#,
        r#"{"direction":"outbound"}"#,
    )])
    .await;

    // 15:59: nothing is due yet.
    at(&app, "2026-11-20T15:59:00Z").await;
    assert_eq!(assignments(&app, "L-1").await.len(), 1);

    // 16:00: ana missed her first touch; the lead goes to ben, ana passed over.
    at(&app, "2026-11-20T16:00:00Z").await;
    let l1 = assignments(&app, "L-1").await;
    assert_eq!(l1.len(), 2, "{l1:?}");
    assert_eq!(l1[1].0, "ben@acme.example");
    assert_eq!(l1[1].1.as_deref(), Some("ana@acme.example"));
    assert_eq!(l1[1].2, "route-inbound-first-touch");
    assert!(
        l1[1]
            .3
            .ends_with("passed over ana@acme.example (the current owner)"),
        "{}",
        l1[1].3
    );
    // ben touched his own lead in time: it stays his, nothing escalates.
    assert_eq!(assignments(&app, "L-2").await.len(), 1);
    assert!(escalations(&*app.store).await.is_empty());

    // 20:00: ben did not touch the reassigned lead either: the manager hears of it.
    at(&app, "2026-11-20T20:00:00Z").await;
    let escalated = escalations(&*app.store).await;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert_eq!(escalated[0]["record"], "L-1");
    assert_eq!(escalated[0]["rule"], "route-inbound-first-touch-escalate");
    assert_eq!(escalated[0]["action"]["reason"], "slow-first-touch");
    // The lead itself stays with ben: escalating is not reassigning.
    assert_eq!(assignments(&app, "L-1").await.len(), 2);

    // The explain view names the SLA rules and says why they no longer wait.
    let (status, explain) = app.get(&app.reader, "/api/v1/leads/L-2/explain").await;
    assert_eq!(status, 200);
    let rules = explain["rules"].as_array().unwrap();
    let sla = rules
        .iter()
        .find(|r| r["rule"] == "route-inbound-first-touch")
        .unwrap();
    assert_eq!(
        sla["summary"],
        "not armed: no assignment is waiting for its first touch"
    );
}
