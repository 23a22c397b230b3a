//! Issue 23, the silent-failure monitor, through the server on the manual clock: a rule that
//! fired every few days and stopped is one alarm after its threshold (none before, still one
//! after more passes), resolved when it fires again; a channel failing against a real receiver
//! is one alarm, resolved once its deliveries succeed again, and its dead letters another; a
//! loop that panics is restarted and raised; `/readyz` names a stopped writer or a loop that is
//! not running. The inbox shows the alarms to managers, who acknowledge and resolve them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clock::Clock;
use domain::Timestamp;
use server::health::{Backoff, supervise};
use server::monitor::{Monitor, Thresholds};
use store::{Alarm, AlarmKind, AlarmQuery};

use crate::web::{client, field, get_with, post_form, sign_in, user};
use crate::{TestApp, event, spawn_app_with, spawn_with_playbooks_on};

const DAY: i64 = 86_400_000;

fn plus_days(t: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_millis(t.as_millis() + days * DAY)
}

const LEGAL: &str = r#"
playbook: legal
owner: maya@acme.example
rules:
  - id: stuck-in-legal
    why: A note from legal means the owner has to chase it.
    when: { event: note.added }
    then:
      - task: { assignee: deal.owner, title: "Chase legal" }
"#;

fn sync_playbooks(down: &str, ok: &str) -> String {
    format!(
        r#"
playbook: sync
owner: maya@acme.example
rules:
  - id: crm-notes
    why: The CRM keeps every note.
    when: {{ event: note.added }}
    then:
      - webhook: {{ url: "{down}" }}
  - id: crm-deals
    why: The CRM hears of every new deal.
    when: {{ event: deal.created }}
    then:
      - webhook: {{ url: "{ok}" }}
"#
    )
}

/// A server running `playbook`, its loops left to the test: timers, delivery and the monitor
/// pass when the test says.
async fn spawn(
    playbook: &str,
    configure: impl FnOnce(&mut server::Settings),
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), playbook).unwrap();
    let app = spawn_with_playbooks_on(dir.path(), 3_600_000, |s| {
        s.engine.monitor_ms = 0;
        configure(s);
    })
    .await;
    (app, dir)
}

fn monitor(app: &TestApp) -> Monitor {
    Monitor::new(app.server_state(), Thresholds::default())
}

async fn unresolved(app: &TestApp, kind: AlarmKind) -> Vec<Alarm> {
    app.store
        .alarms(&AlarmQuery {
            status: Some("unresolved".into()),
            kind: Some(kind),
            limit: 100,
        })
        .await
        .unwrap()
}

/// A note on a deal at the clock's time, as the CRM sends it.
async fn note(app: &TestApp, id: &str) {
    let at = app.clock.now().to_string();
    app.send(&[event(
        "note.added",
        id,
        &at,
        r#""deal":"D-1""#,
        r#"{"text":"legal has questions"}"#,
    )])
    .await;
}

/// A new deal at the clock's time.
async fn deal(app: &TestApp, id: &str) {
    let at = app.clock.now().to_string();
    app.send(&[event(
        "deal.created",
        id,
        &at,
        &format!(r#""deal":"{id}""#),
        r#"{"owner":"sam@acme.example"}"#,
    )])
    .await;
}

#[tokio::test]
async fn a_rule_that_stopped_firing_is_one_alarm_until_it_fires_again() {
    let (app, _dir) = spawn(LEGAL, |_| {}).await;
    let start = app.clock.now();
    deal(&app, "D-1").await;
    // Every three days for twelve days: five days of firing.
    for i in 0..5 {
        app.clock.set(plus_days(start, 3 * i));
        note(&app, &format!("n{i}")).await;
    }
    let last = app.clock.now();
    let m = monitor(&app);

    // Silent past four gaps (12 days): nothing before, one alarm after.
    for day in [1, 6, 11, 12] {
        let synced = m.pass(plus_days(last, day)).await.unwrap();
        assert!(synced.opened.is_empty(), "day {day}: {synced:?}");
    }
    assert!(unresolved(&app, AlarmKind::RuleSilent).await.is_empty());
    let synced = m.pass(plus_days(last, 16)).await.unwrap();
    assert_eq!(synced.opened.len(), 1, "{synced:?}");
    let alarms = unresolved(&app, AlarmKind::RuleSilent).await;
    assert_eq!(alarms.len(), 1);
    assert_eq!(
        alarms[0].title,
        "stuck-in-legal used to fire about every 3 days and has not fired for 16 days"
    );

    // More passes: still the one alarm, saying how long now.
    for day in [17, 18] {
        let synced = m.pass(plus_days(last, day)).await.unwrap();
        assert!(synced.opened.is_empty());
    }
    let alarms = unresolved(&app, AlarmKind::RuleSilent).await;
    assert_eq!(alarms.len(), 1);
    assert!(alarms[0].title.ends_with("has not fired for 18 days"));
    let (status, listed) = app
        .get(
            &app.reader,
            "/api/v1/alarms?status=unresolved&kind=rule_silent",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["subject"], "stuck-in-legal");

    // It fires again: resolved, saying why.
    app.clock.set(plus_days(last, 19));
    note(&app, "n5").await;
    let synced = m.pass(app.clock.now()).await.unwrap();
    assert_eq!(synced.resolved.len(), 1);
    assert_eq!(
        synced.resolved[0].resolution.as_deref(),
        Some("the rule fired again")
    );
    assert!(unresolved(&app, AlarmKind::RuleSilent).await.is_empty());
}

#[tokio::test]
async fn a_failing_channel_and_its_dead_letters_are_one_alarm_each_until_they_recover() {
    let receiver = testkit::Receiver::start().await;
    let playbooks = sync_playbooks(&receiver.url("/down/notes"), &receiver.url("/ok/deals"));
    // One attempt each: what fails is dead at once.
    let (app, _dir) = spawn(&playbooks, |s| s.delivery.max_attempts = 1).await;
    let dispatcher = Arc::clone(app.server_state().dispatcher.as_ref().unwrap());
    let channel = format!("webhook:127.0.0.1:{}", receiver.port);
    let m = monitor(&app);
    for i in 0..6 {
        note(&app, &format!("n{i}")).await;
    }
    assert_eq!(dispatcher.run_once().await.unwrap().dead, 6);
    let synced = m.pass(app.clock.now()).await.unwrap();
    assert_eq!(synced.opened.len(), 2, "{synced:?}");
    let failing = unresolved(&app, AlarmKind::ChannelFailing).await;
    assert_eq!(failing.len(), 1);
    assert_eq!(
        failing[0].title,
        format!(
            "{channel}: 6 of 6 deliveries failed in the last 15 minutes; paused until 2026-11-20 12:00 UTC; the last failure: gave up after 1 attempt: 500 down"
        )
    );
    let dead = unresolved(&app, AlarmKind::DeadLetters).await;
    assert_eq!(
        dead[0].title,
        format!(
            "6 effects could not be delivered (6 to {channel}); the oldest since 2026-11-20 12:00 UTC. Retry or cancel them in the outbox."
        )
    );

    // The breaker's pause ends and a new deal's delivery goes through: most of the last
    // fifteen minutes still failed, so it is still the one alarm.
    app.clock.advance(Duration::from_secs(31));
    deal(&app, "D-2").await;
    assert_eq!(dispatcher.run_once().await.unwrap().delivered, 1);
    let synced = m.pass(app.clock.now()).await.unwrap();
    assert!(
        synced.opened.is_empty() && synced.resolved.is_empty(),
        "{synced:?}"
    );
    assert_eq!(unresolved(&app, AlarmKind::ChannelFailing).await.len(), 1);

    // Fifteen minutes on, deliveries succeed: resolved. The dead letters stay until handled.
    app.clock.advance(Duration::from_secs(15 * 60));
    deal(&app, "D-3").await;
    assert_eq!(dispatcher.run_once().await.unwrap().delivered, 1);
    let synced = m.pass(app.clock.now()).await.unwrap();
    assert_eq!(synced.resolved.len(), 1, "{synced:?}");
    assert_eq!(
        synced.resolved[0].resolution.as_deref(),
        Some("deliveries to it succeed again")
    );
    assert_eq!(unresolved(&app, AlarmKind::DeadLetters).await.len(), 1);
    for e in app
        .store
        .outbox(&store::OutboxQuery {
            status: Some("dead".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
    {
        app.store.cancel_effect(&e.key).await.unwrap();
    }
    let synced = m.pass(app.clock.now()).await.unwrap();
    assert_eq!(synced.resolved.len(), 1);
    assert_eq!(synced.resolved[0].kind, AlarmKind::DeadLetters);
    assert!(synced.unresolved.is_empty());
}

#[tokio::test]
async fn a_loop_that_panics_is_restarted_and_raised_until_it_has_run_an_hour() {
    let (app, _dir) = spawn(LEGAL, |_| {}).await;
    let state = app.server_state();
    let m = monitor(&app);
    // Ready: the node's own loops run.
    assert_eq!(readyz(&app).await.0, 200);
    // A loop of the test's that panics on its first run.
    let runs = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let counted = Arc::clone(&runs);
    let task = supervise(
        Arc::clone(&state.health),
        "probe",
        Backoff {
            first: Duration::ZERO,
            max: Duration::from_secs(60),
        },
        move || {
            let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
            let tx = tx.clone();
            async move {
                let _ = tx.send(run);
                assert!(run > 1, "boom");
                std::future::pending::<()>().await;
            }
        },
    );
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, Some(2));
    let synced = m.pass(app.clock.now()).await.unwrap();
    assert_eq!(synced.opened.len(), 1, "{synced:?}");
    assert_eq!(
        synced.opened[0].title,
        "The probe loop stopped (it panicked: boom) and was restarted; 1 restart since the node started"
    );
    // Running since: the next passes raise nothing new, and after an hour it resolves.
    app.clock.advance(Duration::from_secs(60));
    assert!(m.pass(app.clock.now()).await.unwrap().opened.is_empty());
    assert_eq!(unresolved(&app, AlarmKind::LoopRestarted).await.len(), 1);
    app.clock.advance(Duration::from_secs(3600));
    let synced = m.pass(app.clock.now()).await.unwrap();
    assert_eq!(synced.resolved.len(), 1);
    assert_eq!(
        synced.resolved[0].resolution.as_deref(),
        Some("it has run for 1 hour without stopping")
    );
    task.abort();
}

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Issue 23: a dead writer used to leave `/readyz` at 200, since it only pinged a reader.
#[tokio::test]
async fn readiness_is_503_naming_a_stopped_writer() {
    let app = spawn_app_with(|_| {}).await;
    let (status, body) = readyz(&app).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    app.store.close().await.unwrap();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "not_ready");
    assert_eq!(
        body["error"]["message"],
        "not ready: the store's writer has stopped"
    );
    // Liveness is the process: it still answers.
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn readiness_is_503_naming_a_loop_that_is_not_running() {
    let app = spawn_app_with(|_| {}).await;
    assert_eq!(readyz(&app).await.0, 200);
    app.server_state().health.expect("timers", true);
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["error"]["message"],
        "not ready: the timer loop is not running"
    );
}

#[tokio::test]
async fn the_inbox_shows_the_alarms_to_managers_who_act_on_them() {
    let receiver = testkit::Receiver::start().await;
    let playbooks = sync_playbooks(&receiver.url("/down/notes"), &receiver.url("/ok/deals"));
    let (app, _dir) = spawn(&playbooks, |s| s.delivery.max_attempts = 1).await;
    let dispatcher = Arc::clone(app.server_state().dispatcher.as_ref().unwrap());
    note(&app, "n1").await;
    dispatcher.run_once().await.unwrap();
    monitor(&app).pass(app.clock.now()).await.unwrap();
    let dead = unresolved(&app, AlarmKind::DeadLetters).await;
    assert_eq!(dead.len(), 1);

    let http = client();
    user(&app, "omar@acme.example", store::UserRole::Manager).await;
    user(&app, "vic@acme.example", store::UserRole::Viewer).await;
    user(&app, "sam@acme.example", store::UserRole::Rep).await;
    let (_, omar) = sign_in(&app, &http, "omar@acme.example", "correct horse battery").await;
    let omar = omar.unwrap();
    let page = get_with(&http, &app, &omar, "/inbox")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("The automation needs attention"), "{page}");
    assert!(page.contains("1 effect could not be delivered"), "{page}");
    assert!(page.contains(&format!("/alarms/{}/acknowledge", dead[0].id)));

    // A viewer reads them; a rep does not see them; neither acts.
    let (_, vic) = sign_in(&app, &http, "vic@acme.example", "correct horse battery").await;
    let vic = vic.unwrap();
    let seen = get_with(&http, &app, &vic, "/inbox")
        .await
        .text()
        .await
        .unwrap();
    assert!(seen.contains("1 effect could not be delivered"));
    assert!(!seen.contains("/alarms/"));
    let refused = post_form(
        &http,
        &app,
        &vic,
        &format!("/alarms/{}/acknowledge", dead[0].id),
        &[("csrf", field(&seen, "csrf").as_str())],
    )
    .await;
    assert_eq!(refused.status(), 403);
    let (_, sam) = sign_in(&app, &http, "sam@acme.example", "correct horse battery").await;
    let rep = get_with(&http, &app, &sam.unwrap(), "/inbox")
        .await
        .text()
        .await
        .unwrap();
    assert!(!rep.contains("The automation needs attention"));

    // The manager acknowledges, then resolves saying how.
    let csrf = field(&page, "csrf");
    let r = post_form(
        &http,
        &app,
        &omar,
        &format!("/alarms/{}/acknowledge", dead[0].id),
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let page = get_with(&http, &app, &omar, "/inbox")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("acknowledged by omar@acme.example"), "{page}");
    let r = post_form(
        &http,
        &app,
        &omar,
        &format!("/alarms/{}/resolve", dead[0].id),
        &[
            ("csrf", csrf.as_str()),
            ("resolution", "the CRM hook moved; fixed the URL"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let resolved = app.store.alarm(&dead[0].id).await.unwrap().unwrap();
    assert_eq!(
        (resolved.status.as_str(), resolved.resolved_by.as_deref()),
        ("resolved", Some("omar@acme.example"))
    );
    let page = get_with(&http, &app, &omar, "/inbox")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("could not be delivered"));

    // The API: an admin token acts; a reader token does not.
    let (status, _) = app.get(&app.reader, "/api/v1/alarms?kind=nope").await;
    assert_eq!(status, 400);
    let r = app
        .http
        .post(app.url(&format!("/api/v1/alarms/{}/resolve", dead[0].id)))
        .bearer_auth(&app.reader)
        .body(r#"{"resolution":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .post(app.url(&format!("/api/v1/alarms/{}/resolve", dead[0].id)))
        .bearer_auth(&app.admin)
        .body(r#"{"resolution":"again"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}
