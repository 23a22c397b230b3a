//! Issue 7 over HTTP: the heroics report and suggested rules read from what the server holds —
//! events sent to it, rules that fired and escalations the running playbooks raised.

use clock::Clock;

use crate::{TestApp, copy_examples, event, spawn_with_playbooks};

async fn text(app: &TestApp, path: &str) -> (u16, String, String) {
    let r = app
        .http
        .get(app.url(path))
        .bearer_auth(&app.reader)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, r.text().await.unwrap())
}

fn by(ty: &str, id: &str, at: &str, deal: &str, who: &str) -> String {
    event(
        ty,
        id,
        at,
        &format!(r#""deal":"{deal}","actor":{{"person":"{who}"}}"#),
        "{}",
    )
}

/// An event on a deal with no actor and no data.
fn on(ty: &str, id: &str, at: &str, deal: &str) -> String {
    event(ty, id, at, &format!(r#""deal":"{deal}""#), "{}")
}

fn deal(id: &str, at: &str, stage: &str, amount: i64) -> String {
    event(
        "deal.created",
        &format!("{id}-created"),
        at,
        &format!(r#""deal":"{id}""#),
        &format!(r#"{{"stage":"{stage}","owner":"sam","amount":{amount},"currency":"USD"}}"#),
    )
}

/// November 2026, the example playbooks running:
///
/// | deal | what happens                                                     | outcome |
/// |------|------------------------------------------------------------------|---------|
/// | D-1  | demo held 11-01; the quiet rule fires 11-06; maya emails 11-08    | won 11-10 |
/// | D-2  | in legal from 11-01; stuck-in-legal fires 11-11, escalates to the | open      |
/// |      | manager (maya) 11-14; nobody answers                              |           |
/// | D-3  | nobody but sam                                                    | lost 11-05 |
async fn november() -> (TestApp, tempfile::TempDir) {
    let playbooks = tempfile::tempdir().unwrap();
    copy_examples(playbooks.path());
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let person = |id: &str, key: bool, role: &str| {
        event(
            "person.created",
            &format!("p-{id}"),
            "2026-10-01T09:00:00Z",
            &format!(r#""person":"{id}""#),
            &format!(r#"{{"name":"{id}","key_person":{key},"roles":["{role}"]}}"#),
        )
    };
    app.send(&[
        person("maya", true, "manager"),
        person("sam", false, "ae"),
        deal("D-1", "2026-11-01T09:00:00Z", "demo", 10_000),
        on("meeting.held", "D-1-demo", "2026-11-01T10:00:00Z", "D-1"),
        deal("D-2", "2026-11-01T09:00:00Z", "legal", 30_000),
        deal("D-3", "2026-11-01T09:00:00Z", "proposal", 5_000),
        on("deal.lost", "D-3-lost", "2026-11-05T09:00:00Z", "D-3"),
    ])
    .await;
    // The quiet rule (due 11-06) and stuck-in-legal (due 11-11) fire, here or in the server's
    // own first pass, once either way: a sequence start, an alert and an escalation that
    // waits in the outbox for its three days.
    app.store
        .fire_due_timers(app.clock.now(), 100)
        .await
        .unwrap();
    let effects = app
        .store
        .outbox(&store::OutboxQuery {
            limit: 100,
            ..store::OutboxQuery::default()
        })
        .await
        .unwrap();
    let rules: Vec<&str> = effects.iter().map(|e| e.rule.as_str()).collect();
    assert_eq!(
        rules,
        ["quiet-after-enthusiasm", "stuck-in-legal", "stuck-in-legal"]
    );
    app.send(&[
        by(
            "email.sent",
            "D-1-maya",
            "2026-11-08T09:00:00Z",
            "D-1",
            "maya",
        ),
        on("deal.won", "D-1-won", "2026-11-10T09:00:00Z", "D-1"),
    ])
    .await;
    (app, playbooks)
}

#[tokio::test]
async fn the_report_counts_what_the_server_holds_with_what_the_playbooks_did() {
    let (app, _playbooks) = november().await;
    let (status, report) = app
        .get(&app.reader, "/api/v1/reports/heroics?from=2026-11-01")
        .await;
    assert_eq!(status, 200, "{report}");
    let summary = &report["summary"];
    assert_eq!(summary["interventions"], 1, "{report}");
    assert_eq!(summary["by_reason"]["went-quiet"], 1);
    assert_eq!(summary["closed"]["won"]["deals"], 1);
    assert_eq!(summary["closed"]["won"]["with_key_person"], 1);
    assert_eq!(summary["closed"]["won"]["share"], 1.0);
    assert_eq!(summary["closed"]["lost"]["deals"], 1);
    assert_eq!(summary["closed"]["lost"]["with_key_person"], 0);
    assert_eq!(summary["closed"]["exceptions"], 1);
    assert_eq!(summary["closed"]["exception_rate"], 0.5);
    assert_eq!(report["key_people"], serde_json::json!(["maya"]));
    assert_eq!(report["months"][0]["month"], "2026-11");

    // The intervention came after the quiet rule had fired: the rule covers the reason but
    // a human still stepped in.
    let coverage = report["coverage"].as_array().unwrap();
    let quiet = coverage
        .iter()
        .find(|c| c["reason"] == "went-quiet")
        .unwrap();
    assert_eq!(quiet["interventions"], 1);
    assert_eq!(quiet["after_rule"], 1);
    assert_eq!(quiet["uncovered"], 0);
    let rule = quiet["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "quiet-after-enthusiasm")
        .unwrap();
    assert_eq!(rule["fired"], 1, "{rule}");
    assert_eq!(rule["stepped_in_after"], 1);

    // The escalation the running playbook raised leaves D-2 waiting on the manager.
    let waiting = report["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0]["deal"], "D-2");
    assert_eq!(waiting[0]["person"], "maya");
    assert_eq!(waiting[0]["what"], "escalation: legal-stall");
    assert_eq!(waiting[0]["since"], "2026-11-14T09:00:00.000Z");
    assert_eq!(waiting[0]["age_days"], 6);

    // One person's view, and the same report as a table and as CSV.
    let (_, maya) = app
        .get(&app.reader, "/api/v1/reports/heroics?person=maya")
        .await;
    assert_eq!(maya["people"][0]["person"], "maya");
    assert_eq!(maya["people"][0]["interventions"], 1);
    let (status, kind, table) = text(&app, "/api/v1/reports/heroics?format=table").await;
    assert_eq!((status, kind.as_str()), (200, "text/plain; charset=utf-8"));
    assert!(table.contains("went-quiet"), "{table}");
    let (status, kind, csv) = text(
        &app,
        "/api/v1/reports/heroics?format=csv&section=interventions",
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[1].starts_with("D-1,maya,"), "{csv}");

    // Before 11-01 nothing had happened yet: reading stops at `to`.
    let (_, before) = app
        .get(&app.reader, "/api/v1/reports/heroics?to=2026-11-01")
        .await;
    assert_eq!(before["summary"]["interventions"], 0);
}

#[tokio::test]
async fn a_bad_parameter_is_refused_naming_it_and_a_token_is_needed() {
    let (app, _playbooks) = november().await;
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-11-10&to=2026-11-01", "from"),
        ("merge_within=2 days", "merge_within"),
        ("quiet_after=0d", "quiet_after"),
        ("person=%20", "person"),
        ("format=xml", "format"),
        ("format=csv&section=everything", "section"),
        ("colour=blue", "colour"),
    ] {
        let (status, body) = app
            .get(&app.reader, &format!("/api/v1/reports/heroics?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{query}: {body}");
    }
    let (status, body) = app.get(&app.reader, "/api/v1/suggestions?format=csv").await;
    assert_eq!(status, 400, "{body}");
    let r = app
        .http
        .get(app.url("/api/v1/reports/heroics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn suggestions_come_back_as_a_playbook_that_loads() {
    let (app, _playbooks) = november().await;
    // Two more deals the manager rescues after a demo went quiet: three in all.
    let mut more = Vec::new();
    for (n, deal_id) in ["D-4", "D-5"].iter().enumerate() {
        let day = 2 + n;
        more.push(deal(
            deal_id,
            &format!("2026-10-0{day}T09:00:00Z"),
            "demo",
            20_000,
        ));
        more.push(on(
            "meeting.held",
            &format!("{deal_id}-demo"),
            &format!("2026-10-0{day}T10:00:00Z"),
            deal_id,
        ));
        more.push(by(
            "email.sent",
            &format!("{deal_id}-maya"),
            &format!("2026-10-1{day}T09:00:00Z"),
            deal_id,
            "maya",
        ));
    }
    app.send(&more).await;

    let (status, found) = app
        .get(&app.reader, "/api/v1/suggestions?format=json")
        .await;
    assert_eq!(status, 200, "{found}");
    let found = found.as_array().unwrap();
    assert!(!found.is_empty(), "no suggestion");
    assert_eq!(found[0]["reason"], "went-quiet", "{found:?}");
    assert_eq!(found[0]["support"], 3, "{found:?}");

    let (status, kind, yaml) = text(&app, "/api/v1/suggestions").await;
    assert_eq!(status, 200, "{yaml}");
    assert_eq!(kind, "application/yaml; charset=utf-8");
    let loaded = playbook::load_files(&[("suggested.yaml".into(), yaml.clone())]);
    let set = loaded
        .set
        .unwrap_or_else(|| panic!("{:?}\n{yaml}", loaded.diagnostics));
    assert_eq!(set.playbooks.len(), 1);
    assert!(!set.playbooks[0].rules.is_empty(), "{yaml}");
    assert!(
        set.playbooks[0].rules[0]
            .covers
            .contains(&"went-quiet".to_owned())
    );
}
