//! Issue 8, the exceptions inbox over HTTP: a deal stuck in legal raises an exception for the
//! owner's manager with the deal's context; unacknowledged it climbs to the founder; the
//! founder acknowledges and resolves it, which the heroics report counts as her intervention
//! with the exception's reason. Bad bodies, roles and routes get precise answers.

use clock::Clock;
use serde_json::{Value, json};

use crate::{TestApp, event, spawn_with_playbooks};

const PLAYBOOK: &str = r#"
playbook: legal
owner: omar@acme.example
stages: [legal]
rules:
  - id: stuck-in-legal
    why: Legal review stalls silently; the owner's manager hears first, the founder if it lasts.
    covers: [legal-stall]
    when: { in_stage_for: { stage: legal, longer_than: 10d } }
    then:
      - escalate: { to: deal.owner.manager, then: [role:founder], reason: legal-stall, sla: 1d }
"#;

async fn post(app: &TestApp, token: &str, path: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn inbox(app: &TestApp, who: &str) -> Vec<Value> {
    let (status, items) = app
        .get(
            &app.reader,
            &format!("/api/v1/exceptions?assignee={who}&status=unresolved"),
        )
        .await;
    assert_eq!(status, 200, "{items}");
    items.as_array().unwrap().clone()
}

#[tokio::test]
async fn an_exception_climbs_to_the_founder_who_resolves_it_and_it_counts_as_her_intervention() {
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("legal.yaml"), PLAYBOOK).unwrap();
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let person = |id: &str, data: Value| {
        event(
            "person.created",
            &format!("p-{id}"),
            "2026-10-01T00:00:00Z",
            &format!(r#""person":"{id}""#),
            &data.to_string(),
        )
    };
    app.send(&[
        person("sam", json!({"name": "Sam", "email": "sam@acme.example", "roles": ["ae"], "manager": "omar"})),
        person("omar", json!({"name": "Omar", "email": "omar@acme.example", "roles": ["manager"]})),
        person("maya", json!({"name": "Maya", "email": "maya@acme.example", "roles": ["founder"], "key_person": true})),
        event(
            "deal.created",
            "d1",
            "2026-11-02T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"name":"Globex","stage":"legal","owner":"sam","amount":48000}"#,
        ),
    ])
    .await;
    // Ten days in legal (12 November): the rule fires; delivery raises the exception.
    app.store
        .fire_due_timers(app.clock.now(), 100)
        .await
        .unwrap();
    let dispatcher = app.server_state().dispatcher.clone().unwrap();
    dispatcher.run_once().await.unwrap();

    // The owner's manager holds it, with the deal's context and why.
    let held = inbox(&app, "omar").await;
    assert_eq!(held.len(), 1, "{held:?}");
    let item = &held[0];
    let id = item["id"].as_str().unwrap().to_owned();
    assert_eq!(item["title"], "Globex: legal-stall");
    assert_eq!(item["reason"], "legal-stall");
    assert_eq!(item["chain"], json!(["omar", "maya"]));
    assert_eq!(item["status"], "open");
    assert_eq!(item["due_at"], "2026-11-21T12:00:00.000Z");
    assert_eq!(item["context"]["facts"]["stage"], "legal");
    assert_eq!(item["context"]["facts"]["days_in_stage"], 18);
    assert!(
        item["context"]["trace"]["why"]
            .as_str()
            .unwrap()
            .starts_with("Legal review stalls silently")
    );
    assert!(inbox(&app, "maya").await.is_empty());

    // Before the heroics report, the deal is waiting on nobody key: omar is not a key person.
    let (_, report) = app.get(&app.reader, "/api/v1/reports/heroics").await;
    assert!(
        report["waiting"].as_array().unwrap().is_empty(),
        "{}",
        report["waiting"]
    );

    // A day later omar has not acknowledged: it climbs to the founder.
    app.clock.set("2026-11-21T12:00:00Z".parse().unwrap());
    let pass = app
        .store
        .escalate_exceptions(app.clock.now(), 100)
        .await
        .unwrap();
    assert_eq!(pass.escalated, 1);
    assert!(inbox(&app, "omar").await.is_empty());
    assert_eq!(inbox(&app, "maya").await.len(), 1);
    // Now the deal waits on a key person.
    let (_, report) = app.get(&app.reader, "/api/v1/reports/heroics").await;
    let waiting = report["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(
        (&waiting[0]["person"], &waiting[0]["what"]),
        (&json!("maya"), &json!("exception: legal-stall"))
    );

    let act = |verb: &str| format!("/api/v1/exceptions/{id}/{verb}");
    // Reading is not acting; a body that is not JSON; a resolution without one; a verb that
    // does not exist.
    let (status, _) = post(&app, &app.reader, &act("acknowledge"), r#"{"by":"maya"}"#).await;
    assert_eq!(status, 403);
    let (status, bad) = post(&app, &app.writer, &act("acknowledge"), "{\"by\": ").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 1 column"),
        "{bad}"
    );
    let (status, bad) = post(&app, &app.writer, &act("resolve"), r#"{"by":"maya"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        bad["error"]["message"],
        "resolution: required to resolve an exception"
    );
    let (status, _) = post(&app, &app.writer, &act("snooze"), r#"{"by":"maya"}"#).await;
    assert_eq!(status, 404);
    let (status, bad) = post(
        &app,
        &app.writer,
        &act("reassign"),
        r#"{"by":"maya","to":"ghost"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["message"], "`to`: ghost is not a known person");

    // Maya takes it, then resolves it.
    app.clock.set("2026-11-21T13:00:00Z".parse().unwrap());
    let (status, acked) = post(&app, &app.writer, &act("acknowledge"), r#"{"by":"maya"}"#).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    let (status, again) = post(&app, &app.writer, &act("acknowledge"), r#"{"by":"maya"}"#).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    app.clock.set("2026-11-21T15:00:00Z".parse().unwrap());
    let (status, done) = post(
        &app,
        &app.writer,
        &act("resolve"),
        r#"{"by":"maya","resolution":"called their general counsel; signature Friday"}"#,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "resolved");

    let (status, detail) = app
        .get(&app.reader, &format!("/api/v1/exceptions/{id}"))
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["raised", "escalated", "acknowledged", "resolved"]);
    assert_eq!(
        detail["history"][1]["note"],
        "not acknowledged by omar within 1d"
    );

    // The resolution is the founder stepping in on legal-stall; nothing waits any more.
    app.clock.set("2026-11-21T15:01:00Z".parse().unwrap());
    let (_, report) = app.get(&app.reader, "/api/v1/reports/heroics").await;
    let logged: Vec<&Value> = report["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["person"] == "maya")
        .collect();
    assert_eq!(logged.len(), 1, "{}", report["interventions"]);
    assert_eq!(
        (&logged[0]["reason"], &logged[0]["because"]),
        (&json!("legal-stall"), &json!("logged"))
    );
    assert!(report["waiting"].as_array().unwrap().is_empty());
    assert!(inbox(&app, "maya").await.is_empty());
    // The inbox is in the metrics (values are the store's: see the store's tests).
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&app.reader)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pipewright_exceptions{status=\"resolved\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("pipewright_exceptions_overdue"));
    let (_, missing) = app.get(&app.reader, "/api/v1/exceptions/nope").await;
    assert_eq!(missing["error"]["code"], "not_found");
}
