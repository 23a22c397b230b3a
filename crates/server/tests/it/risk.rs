//! Issue 10 over HTTP: a deal's warnings and score on its page and in the ranked pipeline, a
//! warning that appears with time alone firing its rule once, and what is learned from closed
//! deals shared by every node and moving the warnings' timers.

use std::sync::Arc;
use std::time::Duration;

use clock::Clock;

use crate::{TestApp, event, spawn_app_with};

const PLAYBOOK: &str = r#"
playbook: risk
owner: omar@acme.example
stages: [discovery, demo, proposal, negotiation]
risk:
  warnings:
    stalled: { default: 10d, min_won: 5 }
rules:
  - id: stalled-deal
    why: A deal longer in its stage than won deals usually are is stalling; its owner hears first.
    when: { warning: stalled }
    then:
      - task: { assignee: deal.owner, title: "Unstick {{ deal.name }}", due: 1d }
"#;

async fn spawn(playbooks: &std::path::Path, db: &std::path::Path) -> TestApp {
    std::fs::write(playbooks.join("risk.yaml"), PLAYBOOK).unwrap();
    let (playbooks, db) = (playbooks.to_owned(), db.to_owned());
    spawn_app_with(move |s| {
        s.engine.playbooks = playbooks;
        s.engine.timer_poll_ms = 3_600_000;
        s.engine.reload_poll_ms = 0;
        // The test learns when it says so.
        s.engine.risk_refit_ms = 0;
        s.delivery.poll_ms = 3_600_000;
        s.database.url = format!("sqlite:{}", db.display());
    })
    .await
}

fn deal_in_proposal(id: &str, at: &str) -> Vec<String> {
    let d = format!(r#""deal":"{id}""#);
    vec![event(
        "deal.created",
        &format!("{id}-1"),
        at,
        &d,
        &format!(
            r#"{{"name":"Deal {id}","stage":"proposal","owner":"sam@acme.example","amount":40000,"contacts":["C-{id}"]}}"#
        ),
    )]
}

async fn tasks(app: &TestApp) -> Vec<serde_json::Value> {
    let (_, outbox) = app.get(&app.reader, "/api/v1/outbox?limit=100").await;
    outbox["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["rule"] == "stalled-deal")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_deal_becomes_stalled_with_no_event_and_its_rule_fires_once() {
    let (playbooks, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let app = spawn(playbooks.path(), &db.path().join("pw.db")).await;
    // The clock reads 2026-11-20T12:00: the deal entered proposal that morning.
    app.send(&deal_in_proposal("D-1", "2026-11-20T09:00:00Z"))
        .await;
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    let stalled = deal["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rule"] == "stalled-deal")
        .cloned()
        .expect("the stalled warning is awaited");
    assert_eq!(stalled["due"], "2026-11-30T09:00:00.000Z");
    // Its page has its risk: the warnings present now, each in words, and the score.
    let risk = &deal["risk"];
    let kinds: Vec<&str> = risk["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["no_economic_buyer", "pricing_not_discussed"],
        "{risk}"
    );
    assert_eq!(
        risk["warnings"][0]["says"],
        "In proposal with no economic buyer or decision maker engaged."
    );
    assert_eq!(risk["scoring"]["kind"], "rules");
    let expected = 1.0 - (1.0 - 0.25) * (1.0 - 0.20);
    assert!(
        (risk["score"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{risk}"
    );

    // Nothing happens for ten days; the deal becomes stalled all the same.
    app.store
        .fire_due_timers(app.clock.now(), 100)
        .await
        .unwrap();
    assert!(tasks(&app).await.is_empty());
    app.clock.advance(Duration::from_secs(10 * 86_400));
    let fired = app
        .store
        .fire_due_timers(app.clock.now(), 100)
        .await
        .unwrap();
    assert_eq!(fired.effects, 1);
    let found = tasks(&app).await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]["trace"]["trigger"],
        "warning stalled (counted from 2026-11-20T09:00:00.000Z)"
    );
    // Activity later in the same stall re-arms the same instance: it is not decided again.
    let note = event(
        "note.added",
        "D-1-2",
        "2026-11-30T13:00:00Z",
        r#""deal":"D-1""#,
        r#"{"text":"Chased the buyer"}"#,
    );
    app.send(&[note]).await;
    app.clock.advance(Duration::from_secs(86_400));
    app.store
        .fire_due_timers(app.clock.now(), 100)
        .await
        .unwrap();
    assert_eq!(tasks(&app).await.len(), 1);

    // The pipeline needing attention: open deals by value at risk, with the reasons.
    let (status, ranked) = app.get(&app.reader, "/api/v1/risk/deals?all=true").await;
    assert_eq!(status, 200, "{ranked}");
    let first = &ranked["deals"][0];
    assert_eq!(first["id"], "D-1");
    let says: Vec<&str> = first["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["says"].as_str().unwrap())
        .collect();
    assert!(
        says.contains(&"In proposal for 11 days; the default is 10 days until 5 won deals have been through it."),
        "{says:?}"
    );
    let (status, bad) = app.get(&app.reader, "/api/v1/risk/deals?min_score=3").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_query");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("min_score is between 0 and 1"),
        "{bad}"
    );
}

#[tokio::test]
async fn what_is_learned_is_published_for_every_node_and_moves_the_warnings_timers() {
    let (playbooks, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let path = db.path().join("pw.db");
    let app = spawn(playbooks.path(), &path).await;
    // Six won deals spent two days in proposal; one open deal entered it this morning.
    let mut events = Vec::new();
    for i in 0..6 {
        let id = format!("W-{i}");
        let d = format!(r#""deal":"{id}""#);
        events.extend(deal_in_proposal(
            &id,
            &format!("2026-10-0{}T09:00:00Z", i + 1),
        ));
        events.push(event(
            "deal.won",
            &format!("{id}-2"),
            &format!("2026-10-0{}T09:00:00Z", i + 3),
            &d,
            "{}",
        ));
    }
    events.extend(deal_in_proposal("D-1", "2026-11-20T09:00:00Z"));
    app.send(&events).await;
    let due = |deal: &serde_json::Value| {
        deal["timers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["rule"] == "stalled-deal")
            .map(|t| t["due"].clone())
    };
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    assert_eq!(due(&deal).unwrap(), "2026-11-30T09:00:00.000Z");

    let store = Arc::clone(&app.store);
    server::risk::learn_once(&*store, &app.clock, "node-a", Duration::ZERO)
        .await
        .unwrap();
    let published = store.latest_risk().await.unwrap().expect("published");
    assert_eq!(published.node, "node-a");
    assert_eq!(published.learned.won, 6);
    assert_eq!(
        published.learned.stages["default/proposal"].threshold_ms,
        2 * 86_400_000
    );
    // The running engine took it; the walk re-arms the open deal by the learned time.
    let engine = store.engine().unwrap();
    assert_eq!(engine.risk().learned, published.learned);
    assert!(engine.arming().contains("+risk-"), "{}", engine.arming());
    store.arm_records(app.clock.now(), 0, 1000).await.unwrap();
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    assert_eq!(due(&deal).unwrap(), "2026-11-22T09:00:00.000Z");

    // Another node on the same database scores with it from its start.
    let other = tempfile::tempdir().unwrap();
    let node_b = spawn(other.path(), &path).await;
    let (status, model) = node_b.get(&node_b.reader, "/api/v1/risk/model").await;
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["stages"]["default/proposal"]["won"], 6, "{model}");
    assert_eq!(
        model["scoring_says"],
        "rule-based weights (6 closed deals; weights are fitted from 40)"
    );
}
