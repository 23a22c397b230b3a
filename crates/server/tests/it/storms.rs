//! Issue 23: blast radius before it happens, through the server. 10,000 deals in the pipeline
//! and a new quiet rule calling a real webhook receiver: the reload's forecast opens a storm
//! that holds every effect, so nothing reaches the receiver; the storm is one item to approve,
//! with what the rule would do; approved, every effect reaches the receiver once.

use std::collections::HashSet;

use crate::{event, spawn_with_playbooks};

const DEALS: usize = 10_000;

const RUNNING: &str = r#"
playbook: notes
owner: maya@acme.example
rules:
  - id: note
    why: A note is read by the owner.
    when: { event: note.added }
    then:
      - alert: { to: deal.owner, text: "noted" }
"#;

fn quiet(url: &str) -> String {
    format!(
        r#"
playbook: quiet
owner: maya@acme.example
rules:
  - id: quiet-deals
    why: Five quiet days and the CRM should hear of it.
    when: {{ quiet_for: 5d }}
    then:
      - webhook: {{ url: "{url}" }}
"#
    )
}

#[tokio::test]
async fn a_new_rule_on_ten_thousand_deals_waits_for_approval_then_acts_once() {
    let receiver = testkit::Receiver::start().await;
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("notes.yaml"), RUNNING).unwrap();
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;

    // The pipeline: 10,000 deals created three weeks ago, quiet since.
    for chunk in (0..DEALS).collect::<Vec<_>>().chunks(2_000) {
        let events: Vec<String> = chunk
            .iter()
            .map(|d| {
                event(
                    "deal.created",
                    &format!("c{d}"),
                    "2026-11-01T09:00:00Z",
                    &format!(r#""deal":"D-{d}""#),
                    r#"{"stage":"demo","owner":"sam@acme.example"}"#,
                )
            })
            .collect();
        app.send(&events).await;
    }

    // The new rule arrives: its forecast says 10,000 deals at once, past the limit of 100.
    std::fs::write(
        playbooks.path().join("quiet.yaml"),
        quiet(&receiver.url("/ok/crm")),
    )
    .unwrap();
    app.server_state().reload_playbooks(playbooks.path()).await;
    let (_, status) = app.get(&app.reader, "/api/v1/playbooks").await;
    let preview = &status["preview"]["rules"];
    let rule = preview
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "quiet-deals")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(rule["change"], "new");
    assert_eq!(rule["forecast"]["now"], DEALS);
    assert_eq!(rule["would_hold"], true);

    // The timer loop's work: every deal armed, every due timer fired — all held.
    let now = clock::Clock::now(&app.clock);
    app.store.arm_all(now, 1_000).await.unwrap();
    while app.store.fire_due_timers(now, 1_000).await.unwrap().timers > 0 {}
    let dispatcher = app.server_state().dispatcher.clone().unwrap();
    dispatcher.run_once().await.unwrap();
    assert!(
        receiver.received().is_empty(),
        "nothing leaves before approval"
    );

    // One storm to decide (the first set's rule is merely watched), with what the rule would do.
    let (_, open) = app.get(&app.reader, "/api/v1/storms?status=holding").await;
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let storm = &open[0];
    assert_eq!(storm["rule"], "quiet-deals");
    assert_eq!(storm["status"], "holding");
    assert_eq!(storm["held"], DEALS);
    assert_eq!(storm["owner"], "maya@acme.example");
    assert_eq!(storm["preview"]["now"], DEALS);
    let id = storm["id"].as_str().unwrap();
    let (_, detail) = app.get(&app.reader, &format!("/api/v1/storms/{id}")).await;
    assert_eq!(detail["held_effects"].as_array().unwrap().len(), 20);

    // A reader may not decide; an admin approves.
    let decide = |token: String, verb: &'static str| {
        let url = app.url(&format!("/api/v1/storms/{id}/{verb}"));
        let http = app.http.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"by": "maya@acme.example", "note": "expected"}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(decide(app.reader.clone(), "approve").await.0, 403);
    let (status, approved) = decide(app.admin.clone(), "approve").await;
    assert_eq!(
        (status, approved["status"].as_str()),
        (200, Some("approved"))
    );
    assert_eq!(decide(app.admin.clone(), "approve").await.0, 409);

    // Every effect goes out, once.
    while dispatcher.run_once().await.unwrap().claimed > 0 {}
    let received = receiver.received();
    let keys: HashSet<&str> = received
        .iter()
        .map(|r| r.header("idempotency-key").unwrap())
        .collect();
    assert_eq!(received.len(), DEALS);
    assert_eq!(keys.len(), DEALS);
    let (_, left) = app.get(&app.reader, "/api/v1/outbox?status=held").await;
    assert!(left["items"].as_array().unwrap().is_empty(), "{left}");
}
