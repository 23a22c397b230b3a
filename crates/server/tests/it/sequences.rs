//! Issue 6 end to end: the example re-engagement sequence (`playbooks/founder-rescues.yaml`)
//! runs through the real server — started by its rule's timer, its steps in the outbox in the
//! send window, rendered (dry run) with a signed one-click unsubscribe link that the public
//! endpoint honours — and the sequence API. Virtual time throughout.

use domain::Timestamp;

use crate::{TestApp, event, spawn_app_with};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

async fn app() -> TestApp {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
    let app = spawn_app_with(move |s| {
        s.engine.playbooks = examples;
        s.engine.timer_poll_ms = 3_600_000;
        s.engine.reload_poll_ms = 0;
        s.delivery.poll_ms = 3_600_000;
        s.delivery.dry_run = true;
    })
    .await;
    // Before anything is due: the server's own timer loop (its first pass runs at start) then
    // finds nothing, and the test decides when time moves.
    app.clock.set(ts("2026-11-10T10:00:00Z"));
    app
}

/// A deal in proposal whose first meeting went well, then nothing for ten days.
fn quiet_deal(deal: &str, contact: &str, email: &str) -> Vec<String> {
    vec![
        event(
            "contact.created",
            &format!("{contact}-c"),
            "2026-11-01T09:00:00Z",
            &format!(r#""contact":"{contact}","account":"A-{deal}""#),
            &format!(r#"{{"name":"{contact}","email":"{email}","timezone":"Europe/Berlin"}}"#),
        ),
        event(
            "deal.created",
            &format!("{deal}-c"),
            "2026-11-02T09:00:00Z",
            &format!(r#""deal":"{deal}","account":"A-{deal}""#),
            &format!(
                r#"{{"name":"{deal} rollout","stage":"proposal","owner":"sam@acme.example","contacts":["{contact}"]}}"#
            ),
        ),
        event(
            "meeting.held",
            &format!("{deal}-m"),
            "2026-11-10T09:00:00Z",
            &format!(r#""deal":"{deal}""#),
            r#"{"title":"Demo"}"#,
        ),
    ]
}

/// Moves time to `at`, and fires due timers and runs due steps as the server's timer loop
/// does (which may get there first: what it did is read from the outbox, not counted here).
async fn tick(app: &TestApp, at: &str) {
    app.clock.set(ts(at));
    app.store.fire_due_timers(ts(at), 1000).await.unwrap();
    app.store.advance_enrolments(ts(at), 1000).await.unwrap();
}

async fn sequence_effects(app: &TestApp, deal: &str) -> Vec<serde_json::Value> {
    let (status, page) = app
        .get(&app.reader, &format!("/api/v1/outbox?deal={deal}"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["rule"] == "sequence:reengage-with-proof")
        .cloned()
        .collect()
}

async fn enrolment(app: &TestApp, deal: &str) -> serde_json::Value {
    let (status, list) = app
        .get(&app.reader, &format!("/api/v1/enrolments?deal={deal}"))
        .await;
    assert_eq!(status, 200, "{list}");
    list[0].clone()
}

#[tokio::test]
async fn the_reengagement_sequence_runs_end_to_end() {
    let app = app().await;
    let mut events = vec![event(
        "person.created",
        "sam",
        "2026-11-01T08:00:00Z",
        r#""person":"sam@acme.example""#,
        r#"{"name":"Sam","email":"sam@acme.example","roles":["ae"]}"#,
    )];
    events.extend(quiet_deal("D-1", "C-1", "hank@globex.example"));
    events.extend(quiet_deal("D-2", "C-2", "gina@initech.example"));
    app.send(&events).await;

    // Friday 20 November, 13:00 in Berlin: the quiet-for-5-days timers are due; the rule
    // starts the sequence, whose first email is inside the window.
    tick(&app, "2026-11-20T12:00:00Z").await;
    assert_eq!(sequence_effects(&app, "D-1").await.len(), 1);
    assert_eq!(sequence_effects(&app, "D-2").await.len(), 1);
    let e = enrolment(&app, "D-1").await;
    assert_eq!(e["sequence"], "reengage-with-proof");
    assert_eq!(
        e["contact"],
        serde_json::json!({"kind": "contact", "id": "C-1"})
    );
    // Three days later is Monday 23rd, 13:00 Berlin: in the window.
    assert_eq!(e["due_at"], "2026-11-23T12:00:00.000Z");

    // Delivery (dry run): the email is rendered with the case study and the unsubscribe link.
    let dispatcher = app.server_state().dispatcher.clone().unwrap();
    dispatcher.run_once().await.unwrap();
    let first = &sequence_effects(&app, "D-2").await[0];
    assert_eq!(first["status"], "dry_run", "{first}");
    let rendered = &first["rendered"];
    assert_eq!(rendered["to"], serde_json::json!(["gina@initech.example"]));
    assert_eq!(rendered["subject"], "How a team like D-2 rollout got there");
    let link = rendered["unsubscribe"].as_str().unwrap().to_owned();
    let path = link.split_once("/unsubscribe/").unwrap().1;

    // The link opens a page with a button (a GET changes nothing); a tampered token is refused.
    let page = app
        .http
        .get(app.url(&format!("/unsubscribe/{path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form method=\"post\">")
    );
    assert_eq!(enrolment(&app, "D-2").await["status"], "active");
    let last = if path.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &path[..path.len() - 1]);
    let refused = app
        .http
        .post(app.url(&format!("/unsubscribe/{tampered}")))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);

    // The mail client's one-click POST (RFC 8058) unsubscribes Gina.
    app.clock.set(ts("2026-11-21T10:00:00Z"));
    let done = app
        .http
        .post(app.url(&format!("/unsubscribe/{path}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 200);
    let e = enrolment(&app, "D-2").await;
    assert_eq!(
        (e["status"].as_str(), e["end_reason"].as_str()),
        (Some("ended"), Some("unsubscribe"))
    );
    let (_, suppressions) = app.get(&app.reader, "/api/v1/suppressions").await;
    assert_eq!(suppressions[0]["address"], "gina@initech.example");
    assert_eq!(suppressions[0]["reason"], "unsubscribed");

    // Monday: Hank's second email (in the window); Gina gets nothing more.
    tick(&app, "2026-11-23T12:00:00Z").await;
    assert_eq!(sequence_effects(&app, "D-1").await.len(), 2);
    assert_eq!(sequence_effects(&app, "D-2").await.len(), 1);
    // Wednesday: the owner's call task, and the sequence is complete.
    tick(&app, "2026-11-25T12:00:00Z").await;
    dispatcher.run_once().await.unwrap();
    let steps = sequence_effects(&app, "D-1").await;
    let kinds: Vec<&str> = steps
        .iter()
        .map(|e| e["action"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["send_email", "send_email", "task"]);
    assert_eq!(steps[1]["action"]["template"], "proof-roi");
    let (_, tasks) = app
        .get(&app.reader, "/api/v1/tasks?assignee=sam@acme.example")
        .await;
    assert_eq!(tasks[0]["title"], "Call about D-1 rollout");
    assert_eq!(tasks[0]["kind"], "call");
    assert_eq!(enrolment(&app, "D-1").await["end_reason"], "completed");
    let (_, results) = app
        .get(&app.reader, "/api/v1/sequences/reengage-with-proof/results")
        .await;
    assert_eq!(results.as_array().unwrap().len(), 2, "{results}");
    assert_eq!(results[0]["sent"], 2);
}

#[tokio::test]
async fn sequences_are_paused_resumed_and_suppressed_over_http() {
    let app = app().await;
    let send = |path: &'static str, token: String, body: &'static str| {
        let (http, url) = (app.http.clone(), app.url(path));
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (status, paused) = send(
        "/api/v1/sequences/pause",
        app.writer.clone(),
        r#"{"owner":"sam@acme.example","note":"on leave"}"#,
    )
    .await;
    assert_eq!(
        (status, paused["scope"].as_str()),
        (200, Some("owner:sam@acme.example"))
    );
    assert_eq!(
        send("/api/v1/sequences/pause", app.reader.clone(), "{}")
            .await
            .0,
        403
    );
    let (status, bad) = send(
        "/api/v1/sequences/pause",
        app.writer.clone(),
        r#"{"owner": 3}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 1 column"),
        "{bad}"
    );
    let (_, pauses) = app.get(&app.reader, "/api/v1/sequences/pauses").await;
    assert_eq!(pauses[0]["note"], "on leave");

    app.send(&quiet_deal("D-1", "C-1", "hank@globex.example"))
        .await;
    tick(&app, "2026-11-20T12:00:00Z").await;
    assert!(sequence_effects(&app, "D-1").await.is_empty());
    let e = enrolment(&app, "D-1").await;
    assert_eq!(e["paused_by"], "owner:sam@acme.example");
    let (status, resumed) = send(
        "/api/v1/sequences/resume",
        app.writer.clone(),
        r#"{"owner":"sam@acme.example"}"#,
    )
    .await;
    assert_eq!((status, resumed["enrolments"].as_u64()), (200, Some(1)));
    tick(&app, "2026-11-20T12:00:00Z").await;
    assert_eq!(sequence_effects(&app, "D-1").await.len(), 1);

    let id = e["id"].as_str().unwrap().to_owned();
    let (status, stopped) = app
        .http
        .post(app.url(&format!("/api/v1/enrolments/{id}/stop")))
        .bearer_auth(&app.writer)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .unwrap();
    assert_eq!((status, stopped), (200, ()));
    assert_eq!(enrolment(&app, "D-1").await["end_reason"], "stopped");

    let (status, _) = send(
        "/api/v1/suppressions",
        app.writer.clone(),
        r#"{"address":"@Umbrella.example"}"#,
    )
    .await;
    assert_eq!(status, 201);
    let (status, bad) = send(
        "/api/v1/suppressions",
        app.writer.clone(),
        r#"{"address":"nobody"}"#,
    )
    .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let gone = app
        .http
        .delete(app.url("/api/v1/suppressions/@umbrella.example"))
        .bearer_auth(&app.writer)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 204);
    let (status, list) = app.get(&app.reader, "/api/v1/enrolments?status=lost").await;
    assert_eq!(
        (status, list["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
}
