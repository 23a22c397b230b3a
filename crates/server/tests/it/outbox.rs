//! Issue 4 over HTTP: the outbox and tasks, with dead letters retried and cancelled by hand.

use crate::{event, spawn_with_playbooks};

const PLAYBOOK: &str = "playbook: p\nowner: o\nrules:\n  - id: fan-out\n    why: Every note goes to the CRM and becomes a task.\n    when: { event: note.added }\n    then:\n      - webhook: { url: \"http://127.0.0.1:9/hook\" }\n      - task: { assignee: deal.owner, title: Read the note }\n";

#[tokio::test]
async fn the_outbox_and_tasks_over_http() {
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("p.yaml"), PLAYBOOK).unwrap();
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let d = r#""deal":"D-1""#;
    let body = format!(
        "[{},{}]",
        event(
            "deal.created",
            "1",
            "2026-11-18T09:00:00Z",
            d,
            r#"{"owner":"sam@acme.example"}"#
        ),
        event(
            "note.added",
            "2",
            "2026-11-18T10:00:00Z",
            d,
            r#"{"text":"x"}"#
        )
    );
    assert_eq!(app.post(&app.writer, "application/json", body).await.0, 200);
    let (status, page) = app.get(&app.reader, "/api/v1/outbox").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|e| e["status"] == "pending"));
    let hook = items
        .iter()
        .find(|e| e["channel"] == "webhook:127.0.0.1:9")
        .unwrap();
    let key = hook["key"].as_str().unwrap().to_owned();
    let (status, bad) = app.get(&app.reader, "/api/v1/outbox?status=lost").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, one) = app.get(&app.reader, &format!("/api/v1/outbox/{key}")).await;
    assert_eq!(
        (status, one["effect"]["key"].as_str()),
        (200, Some(key.as_str()))
    );
    assert_eq!(app.get(&app.reader, "/api/v1/outbox/nope").await.0, 404);

    let post = |token: String, path: String| {
        let (http, url) = (app.http.clone(), app.url(&path));
        async move {
            let r = http.post(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    assert_eq!(
        post(app.reader.clone(), format!("/api/v1/outbox/{key}/cancel"))
            .await
            .0,
        403
    );
    let (status, cancelled) =
        post(app.writer.clone(), format!("/api/v1/outbox/{key}/cancel")).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, again) = post(app.writer.clone(), format!("/api/v1/outbox/{key}/cancel")).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let (status, retried) = post(app.writer.clone(), format!("/api/v1/outbox/{key}/retry")).await;
    assert_eq!((status, retried["status"].as_str()), (200, Some("pending")));

    // One delivery pass: the task is created; nothing listens on port 9, so the webhook waits.
    let dispatcher = app.server_state().dispatcher.clone().unwrap();
    let pass = dispatcher.run_once().await.unwrap();
    assert_eq!((pass.delivered, pass.retried), (1, 1), "{pass:?}");
    let (_, one) = app.get(&app.reader, &format!("/api/v1/outbox/{key}")).await;
    assert_eq!(one["attempts"][0]["outcome"], "retry");
    assert!(
        one["effect"]["last_error"]
            .as_str()
            .unwrap()
            .contains("POST failed"),
        "{one}"
    );
    let (_, tasks) = app
        .get(
            &app.reader,
            "/api/v1/tasks?assignee=sam@acme.example&status=open",
        )
        .await;
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["title"], "Read the note");
    let id = tasks[0]["id"].as_str().unwrap();
    let (status, done) = post(app.writer.clone(), format!("/api/v1/tasks/{id}/done")).await;
    assert_eq!((status, done["status"].as_str()), (200, Some("done")));
    let (_, open) = app.get(&app.reader, "/api/v1/tasks?status=open").await;
    assert!(open.as_array().unwrap().is_empty());
}
