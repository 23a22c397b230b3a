//! Issue 8, decision trees over HTTP: walking the example qualification call for a deal
//! answers question by question and writes nothing until a recommendation; then its answers
//! become the deal's fields, which open the proposal gate that refused the deal before. The
//! handbook is served from the running playbooks.

use serde_json::{Value, json};

use crate::{TestApp, copy_examples, event, spawn_with_playbooks};

async fn walk(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(app.url("/api/v1/deals/D-1/trees/qualification-call"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn stage(app: &TestApp) -> Value {
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    deal["record"]["stage"].clone()
}

#[tokio::test]
async fn a_walked_tree_writes_the_fields_that_open_the_gate() {
    let playbooks = tempfile::tempdir().unwrap();
    copy_examples(playbooks.path());
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let d = r#""deal":"D-1""#;
    app.send(&[
        event(
            "deal.created",
            "c",
            "2026-11-18T09:00:00Z",
            d,
            r#"{"name":"Globex","stage":"demo","owner":"sam@acme.example"}"#,
        ),
        event(
            "deal.stage_changed",
            "m1",
            "2026-11-19T09:00:00Z",
            d,
            r#"{"stage":"proposal"}"#,
        ),
    ])
    .await;
    assert_eq!(stage(&app).await, "demo", "the gate refused the move");

    // The trees the playbooks hold.
    let (status, trees) = app.get(&app.reader, "/api/v1/trees").await;
    assert_eq!(status, 200);
    assert_eq!(trees[0]["name"], "qualification-call");
    assert_eq!(trees[0]["questions"][0]["id"], "budget");

    // Step by step: each answer gives the next question; nothing is written.
    let (status, step) = walk(&app, &app.writer, json!({"by": "sam@acme.example"})).await;
    assert_eq!(status, 200, "{step}");
    assert_eq!(
        (step["complete"].clone(), step["next"]["id"].clone()),
        (json!(false), json!("budget"))
    );
    let (_, step) = walk(
        &app,
        &app.writer,
        json!({"by": "sam@acme.example", "answers": {"budget": "Yes, approved"}}),
    )
    .await;
    assert_eq!(step["next"]["id"], "champion");
    assert_eq!(step["events"], json!([]));
    // Mistakes are named by question; readers cannot walk.
    let (status, bad) = walk(
        &app,
        &app.writer,
        json!({"by": "sam@acme.example", "answers": {"budget": "perhaps"}}),
    )
    .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_answer"))
    );
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("budget: \"perhaps\" is not an answer"),
        "{bad}"
    );
    let (status, _) = walk(&app, &app.reader, json!({"by": "sam@acme.example"})).await;
    assert_eq!(status, 403);
    let (status, bad) = walk(&app, &app.writer, json!({"answers": {}})).await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `by`"),
        "{bad}"
    );

    // The whole call: a recommendation, and the answers on the deal.
    let answers = json!({"budget": "Yes, approved", "champion": "Dana Whitfield", "timeline": "This quarter"});
    let (status, done) = walk(
        &app,
        &app.writer,
        json!({"by": "sam@acme.example", "answers": answers, "walk_id": "w1"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["complete"], true);
    assert_eq!(
        done["recommendation"],
        "Move the deal to proposal and book the review with the champion."
    );
    assert_eq!(
        done["fields"],
        json!({"budget_confirmed": true, "champion": "Dana Whitfield", "go_live": "this_quarter"})
    );
    // Sent again with the same walk id: nothing new.
    let (_, again) = walk(
        &app,
        &app.writer,
        json!({"by": "sam@acme.example", "answers": answers, "walk_id": "w1"}),
    )
    .await;
    assert_eq!(again["events"][0]["status"], "duplicate");
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    assert_eq!(deal["record"]["fields"]["budget_confirmed"], true);
    let note = deal["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "note.added")
        .unwrap();
    assert!(
        note["data"]["text"]
            .as_str()
            .unwrap()
            .contains("Is there budget approved for this quarter? Yes, approved")
    );
    assert_eq!(note["actor"]["person"], "sam@acme.example");

    // The gate now lets the same move through.
    app.send(&[event(
        "deal.stage_changed",
        "m2",
        "2026-11-20T11:00:00Z",
        d,
        r#"{"stage":"proposal"}"#,
    )])
    .await;
    assert_eq!(stage(&app).await, "proposal");

    // The handbook, from the running playbooks.
    let r = app
        .http
        .get(app.url("/api/v1/handbook"))
        .bearer_auth(&app.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Qualification call") && page.contains("Before a deal may enter proposal")
    );
    let r = app
        .http
        .get(app.url("/api/v1/handbook?format=markdown"))
        .bearer_auth(&app.reader)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().starts_with("# Handbook"));
    let (status, bad) = app.get(&app.reader, "/api/v1/handbook?format=pdf").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, _) = app
        .get(&app.reader, "/api/v1/deals/D-1/trees/qualification-call")
        .await;
    assert_eq!(status, 405, "walking is a POST");
}
