//! Issue 8 over HTTP: a stage's gate refuses moves sent to the API and moves an automation
//! makes, records each with its unmet criteria, alerts the owner, and lets the move through
//! once the deal qualifies.

use crate::{TestApp, event, spawn_with_playbooks};

const PLAYBOOK: &str = r#"
playbook: qualification
owner: omar@acme.example
stages: [discovery, demo, proposal]
gates:
  - stage: proposal
    why: A proposal without budget and a champion stalls in review.
    require:
      - { name: budget confirmed, if: deal.fields.budget_confirmed == true }
      - { name: champion named, if: has(deal.fields.champion) }
    notify: [deal.owner]
rules:
  - id: propose-after-demo
    why: A held demo is the moment to send the proposal.
    when: { event: meeting.held }
    then:
      - set_stage: proposal
"#;

const D: &str = r#""deal":"D-1""#;

async fn deal(app: &TestApp) -> serde_json::Value {
    let (status, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    assert_eq!(status, 200, "{deal}");
    deal
}

/// Delivers what the outbox holds once: the automation's internal events are ingested.
async fn deliver(app: &TestApp) {
    let dispatcher = app.server_state().dispatcher.clone().unwrap();
    dispatcher.run_once().await.unwrap();
}

#[tokio::test]
async fn a_gate_refuses_moves_from_the_api_and_from_automation_until_the_deal_qualifies() {
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("qualification.yaml"), PLAYBOOK).unwrap();
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    app.send(&[
        event(
            "deal.created",
            "c",
            "2026-11-18T09:00:00Z",
            D,
            r#"{"name":"Globex","stage":"demo","owner":"sam@acme.example"}"#,
        ),
        // Sent to the API: refused, the deal stays in demo.
        event(
            "deal.stage_changed",
            "m1",
            "2026-11-18T10:00:00Z",
            D,
            r#"{"stage":"proposal"}"#,
        ),
    ])
    .await;
    let d = deal(&app).await;
    assert_eq!(d["record"]["stage"], "demo", "{d}");
    let blocked = &d["record"]["blocked_moves"];
    assert_eq!(blocked[0]["stage"], "proposal", "{d}");
    assert_eq!(
        blocked[0]["unmet"],
        serde_json::json!(["budget confirmed", "champion named"])
    );
    let timeline = d["timeline"].as_array().unwrap();
    let refused = timeline
        .iter()
        .find(|e| e["type"] == "gate.blocked")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(refused["data"]["attempted"], "deal.stage_changed");
    assert_eq!(refused["data"]["from"], "demo");

    // The automation moves it after the demo: refused the same way once delivered.
    app.send(&[event(
        "meeting.held",
        "demo",
        "2026-11-19T10:00:00Z",
        D,
        "{}",
    )])
    .await;
    deliver(&app).await;
    let d = deal(&app).await;
    assert_eq!(d["record"]["stage"], "demo", "{d}");
    assert_eq!(d["record"]["blocked_moves"].as_array().unwrap().len(), 2);
    let by_automation = d["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "gate.blocked")
        .find(|e| e["source"] == "pipewright")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(by_automation["data"]["attempted"], "deal.updated");

    // Each refusal alerted the owner, saying what is missing.
    let effects = d["effects"].as_array().unwrap();
    let alerts: Vec<_> = effects
        .iter()
        .filter(|e| e["rule"] == "gate-proposal")
        .collect();
    assert_eq!(alerts.len(), 2, "{effects:?}");
    assert_eq!(alerts[0]["action"]["to"], "owner");
    let key = alerts[0]["key"].as_str().unwrap();
    let (_, one) = app.get(&app.reader, &format!("/api/v1/outbox/{key}")).await;
    assert_eq!(
        one["effect"]["rendered"]["text"]
            .as_str()
            .unwrap()
            .lines()
            .next(),
        Some("Globex was kept out of proposal: budget confirmed, champion named not met yet."),
        "{one}"
    );

    // What the gate needs now, criterion by criterion.
    let (_, explained) = app.get(&app.reader, "/api/v1/deals/D-1/explain").await;
    let gate = &explained["gates"][0];
    assert_eq!(
        (&gate["stage"], &gate["met"]),
        (&serde_json::json!("proposal"), &serde_json::json!(false)),
        "{explained}"
    );
    assert_eq!(gate["criteria"][0]["name"], "budget confirmed");
    assert_eq!(gate["criteria"][0]["met"], false);
    assert_eq!(
        gate["criteria"][0]["saw"]["deal.fields"],
        serde_json::json!({})
    );

    // Qualified, the next demo's move goes through.
    app.send(&[
        event(
            "deal.updated",
            "q",
            "2026-11-19T12:00:00Z",
            D,
            r#"{"fields":{"budget_confirmed":true,"champion":"Ann"}}"#,
        ),
        event("meeting.held", "demo-2", "2026-11-19T15:00:00Z", D, "{}"),
    ])
    .await;
    deliver(&app).await;
    let d = deal(&app).await;
    assert_eq!(d["record"]["stage"], "proposal", "{d}");
    assert_eq!(d["record"]["blocked_moves"].as_array().unwrap().len(), 2);
    let (_, explained) = app.get(&app.reader, "/api/v1/deals/D-1/explain").await;
    assert_eq!(explained["gates"][0]["met"], true, "{explained}");
}
