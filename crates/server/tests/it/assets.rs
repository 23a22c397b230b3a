//! Issue 8, asset effectiveness over HTTP with the example playbooks running: a pricing
//! objection makes the pricing rule send the ROI calculator (rendered in a dry run); the deal
//! moves on within the window. Another deal raised the same objection but has no contact, so
//! nothing could be sent: it is the comparison.

use serde_json::json;

use crate::{copy_examples, event, spawn_with_playbooks_on};

#[tokio::test]
async fn the_assets_report_compares_deals_sent_an_asset_with_similar_ones() {
    let playbooks = tempfile::tempdir().unwrap();
    copy_examples(playbooks.path());
    let app =
        spawn_with_playbooks_on(playbooks.path(), 3_600_000, |s| s.delivery.dry_run = true).await;
    let qualified = r#"{"fields":{"budget_confirmed":true,"champion":"C-1"}}"#;
    app.send(&[
        event(
            "contact.created",
            "c1",
            "2026-10-01T09:00:00Z",
            r#""contact":"C-1""#,
            r#"{"name":"Ana","email":"ana@globex.example"}"#,
        ),
        event(
            "deal.created",
            "d1",
            "2026-10-01T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"name":"Globex","stage":"demo","owner":"sam","contacts":["C-1"]}"#,
        ),
        event(
            "deal.created",
            "d2",
            "2026-10-01T09:00:00Z",
            r#""deal":"D-2""#,
            r#"{"name":"Initech","stage":"demo","owner":"sam"}"#,
        ),
        event(
            "deal.updated",
            "q1",
            "2026-10-02T09:00:00Z",
            r#""deal":"D-1""#,
            qualified,
        ),
        event(
            "deal.updated",
            "q2",
            "2026-10-02T09:00:00Z",
            r#""deal":"D-2""#,
            qualified,
        ),
        event(
            "deal.stage_changed",
            "p1",
            "2026-10-03T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"stage":"proposal"}"#,
        ),
        event(
            "deal.stage_changed",
            "p2",
            "2026-10-03T09:00:00Z",
            r#""deal":"D-2""#,
            r#"{"stage":"proposal"}"#,
        ),
        event(
            "objection.raised",
            "o1",
            "2026-11-01T09:00:00Z",
            r#""deal":"D-1","actor":{"contact":"C-1"}"#,
            r#"{"kind":"pricing"}"#,
        ),
        event(
            "objection.raised",
            "o2",
            "2026-11-01T09:00:00Z",
            r#""deal":"D-2""#,
            r#"{"kind":"pricing"}"#,
        ),
        event(
            "deal.stage_changed",
            "n1",
            "2026-11-04T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"stage":"negotiation"}"#,
        ),
    ])
    .await;
    app.server_state()
        .dispatcher
        .clone()
        .unwrap()
        .run_once()
        .await
        .unwrap();
    let (status, rows) = app.get(&app.reader, "/api/v1/reports/assets").await;
    assert_eq!(status, 200, "{rows}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (&r["asset"], &r["use_case"]),
        (&json!("roi-calculator"), &json!("pricing"))
    );
    assert_eq!(
        (&r["sent"]["judged"], &r["sent"]["advanced"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        (&r["similar"]["judged"], &r["similar"]["advanced"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(r["advance_lift"], 1.0);
    // A window longer than the time since the send leaves it unjudged.
    let (_, rows) = app
        .get(&app.reader, "/api/v1/reports/assets?within=30d")
        .await;
    assert_eq!(rows[0]["sent"]["open"], 1);
    let r = app
        .http
        .get(app.url("/api/v1/reports/assets?format=table"))
        .bearer_auth(&app.reader)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("roi-calculator") && l.contains("+100 pts")),
        "{text}"
    );
    for (query, field) in [
        ("format=pdf", "format"),
        ("within=soon", "within"),
        ("from=yesterday", "from"),
    ] {
        let (status, bad) = app
            .get(&app.reader, &format!("/api/v1/reports/assets?{query}"))
            .await;
        assert_eq!(status, 400, "{query}");
        assert!(
            bad["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{bad}"
        );
    }
}
