//! Issue 3 over HTTP: playbooks loaded by the server decide effects that the deal page shows,
//! time triggers fire from durable timers, and a broken edit keeps the last good playbooks.

use crate::{copy_examples, event, spawn_app_with, spawn_with_playbooks};

#[tokio::test]
async fn rules_decide_effects_shown_on_the_deal_with_their_why() {
    let playbooks = tempfile::tempdir().unwrap();
    copy_examples(playbooks.path());
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let d = r#""deal":"D-1""#;
    let created = event(
        "deal.created",
        "1",
        "2026-11-18T09:00:00Z",
        d,
        r#"{"stage":"demo","owner":"sam@acme.example","contacts":["C-1"]}"#,
    );
    let met = event("meeting.held", "2", "2026-11-18T10:00:00Z", d, "{}");
    let pricing = event(
        "objection.raised",
        "3",
        "2026-11-18T11:00:00Z",
        d,
        r#"{"kind":"pricing"}"#,
    );
    let (status, _) = app
        .post(
            &app.writer,
            "application/json",
            format!("[{created},{met},{pricing}]"),
        )
        .await;
    assert_eq!(status, 200);
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    let effects = deal["effects"].as_array().unwrap();
    assert_eq!(effects.len(), 1, "{deal}");
    assert_eq!(effects[0]["rule"], "pricing-objection");
    assert_eq!(effects[0]["action"]["asset"]["named"], "roi-calculator");
    assert!(
        effects[0]["trace"]["why"]
            .as_str()
            .unwrap()
            .starts_with("A pricing objection")
    );
    let timers = deal["timers"].as_array().unwrap();
    let quiet = timers
        .iter()
        .find(|t| t["rule"] == "quiet-after-enthusiasm")
        .expect("quiet timer armed");
    assert_eq!(quiet["due"], "2026-11-23T11:00:00.000Z");

    // Explain: every deal rule, what it did and what it will do.
    let (status, explained) = app.get(&app.reader, "/api/v1/deals/D-1/explain").await;
    assert_eq!(status, 200, "{explained}");
    let rule = |id: &str| {
        explained["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        rule("pricing-objection")["summary"],
        "fired 1 time(s), last at 2026-11-18T11:00:00.000Z"
    );
    assert_eq!(
        rule("quiet-after-enthusiasm")["summary"],
        "fires at 2026-11-23T11:00:00.000Z if nothing changes"
    );
    assert_eq!(rule("quiet-after-enthusiasm")["condition_now"], "true");
    assert_eq!(rule("quiet-after-enthusiasm")["saw"]["deal.stage"], "demo");
    assert_eq!(
        rule("stuck-in-legal")["summary"],
        "not armed: the record is not open in stage legal"
    );
    assert!(
        rule("implementation-concern")["summary"]
            .as_str()
            .unwrap()
            .contains("waits for the event objection.raised")
    );

    // Five quiet days later the re-engagement sequence starts, once.
    app.clock.set("2026-11-23T11:00:01Z".parse().unwrap());
    let fired = app
        .store
        .fire_due_timers("2026-11-23T11:00:01Z".parse().unwrap(), 100)
        .await
        .unwrap();
    assert_eq!(fired.effects, 1);
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    let effects = deal["effects"].as_array().unwrap();
    assert_eq!(effects.len(), 2);
    assert_eq!(
        effects[1]["action"],
        serde_json::json!({"kind": "start_sequence", "sequence": "reengage-with-proof"})
    );
    assert_eq!(effects[1]["trace"]["saw"]["deal.meetings_held"], 1);
    assert!(
        deal["timers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["rule"] != "quiet-after-enthusiasm")
    );
}

#[tokio::test]
async fn a_broken_edit_keeps_the_last_good_playbooks_running() {
    let playbooks = tempfile::tempdir().unwrap();
    copy_examples(playbooks.path());
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let (status, before) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_eq!(status, 200);
    let version = before["version"].as_str().unwrap().to_owned();
    assert_eq!(before["playbooks"].as_array().unwrap().len(), 4);
    assert!(before["diagnostics"].as_array().unwrap().is_empty());

    let file = playbooks.path().join("founder-rescues.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("quiet_for: 5d", "quiet_for: five days")).unwrap();
    app.server_state().reload_playbooks(playbooks.path()).await;
    let (_, after) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_eq!(
        after["version"],
        version.as_str(),
        "the last good version keeps running"
    );
    let problems = after["diagnostics"].as_array().unwrap();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("\"five days\" is not a duration"),
        "{problems:?}"
    );
    // The running rules still act.
    let d = r#""deal":"D-9""#;
    let body = format!(
        "[{},{}]",
        event(
            "deal.created",
            "1",
            "2026-11-18T09:00:00Z",
            d,
            r#"{"stage":"proposal"}"#
        ),
        event(
            "objection.raised",
            "2",
            "2026-11-18T10:00:00Z",
            d,
            r#"{"kind":"pricing"}"#
        )
    );
    app.post(&app.writer, "application/json", body).await;
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-9").await;
    assert_eq!(deal["effects"].as_array().unwrap().len(), 1);
    // Fixing the file loads the new version.
    std::fs::write(&file, text.replace("quiet_for: 5d", "quiet_for: 6d")).unwrap();
    app.server_state().reload_playbooks(playbooks.path()).await;
    let (_, fixed) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_ne!(fixed["version"], version.as_str());
    assert!(fixed["diagnostics"].as_array().unwrap().is_empty());
}

/// Issue 23: the server holds its folder's actions to its configuration, as `pipewright check`
/// does: an alert to a chat channel with no incoming webhook keeps the folder from running and
/// is reported; configured, the same folder runs.
#[tokio::test]
async fn a_chat_channel_the_configuration_lacks_keeps_the_folder_from_running() {
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(
        playbooks.path().join("wins.yaml"),
        "playbook: wins\nowner: o\nrules:\n  - id: announce\n    why: A win is announced.\n    when: { event: deal.won }\n    then:\n      - alert: { to: channel:wins, text: won }\n",
    )
    .unwrap();
    let app = spawn_with_playbooks(playbooks.path(), 3_600_000).await;
    let (_, status) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_eq!(status["version"], serde_json::Value::Null, "{status}");
    let problems = status["diagnostics"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].as_str().unwrap().ends_with(
            "wins.yaml:8:22: no chat channel \"wins\" is configured: give its incoming-webhook URL as delivery.chat.wins in the configuration (configured: none)"
        ),
        "{problems:?}"
    );

    let dir = playbooks.path().to_owned();
    let configured = spawn_app_with(move |s| {
        s.engine.playbooks = dir;
        s.engine.reload_poll_ms = 0;
        s.delivery.poll_ms = 3_600_000;
        s.delivery
            .chat
            .insert("wins".into(), "https://hooks.example/wins".into());
    })
    .await;
    let (_, status) = configured
        .get(&configured.reader, "/api/v1/playbooks")
        .await;
    assert!(status["version"].is_string(), "{status}");
    assert!(status["diagnostics"].as_array().unwrap().is_empty());
}

/// Deals that were already open when the playbooks arrived wait on the new rules' timers
/// without any new event: the timer loop walks every record after a (re)load.
#[tokio::test]
async fn records_untouched_since_a_reload_are_armed_by_the_timer_loop() {
    let playbooks = tempfile::tempdir().unwrap();
    let app = spawn_with_playbooks(playbooks.path(), 10).await;
    let created = event(
        "deal.created",
        "1",
        "2026-11-18T09:00:00Z",
        r#""deal":"D-1""#,
        r#"{"stage":"legal","owner":"sam@acme.example"}"#,
    );
    let (status, _) = app.post(&app.writer, "application/json", created).await;
    assert_eq!(status, 201);
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    assert!(deal["timers"].as_array().unwrap().is_empty(), "{deal}");

    copy_examples(playbooks.path());
    app.server_state().reload_playbooks(playbooks.path()).await;
    // The walk runs in the background; wait (bounded) for its result, not for a time.
    let mut timers = Vec::new();
    for _ in 0..500 {
        let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
        timers = deal["timers"].as_array().unwrap().clone();
        if !timers.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let legal = timers
        .iter()
        .find(|t| t["rule"] == "stuck-in-legal")
        .unwrap_or_else(|| panic!("{timers:?}"));
    assert_eq!(legal["due"], "2026-11-28T09:00:00.000Z");
}

/// Nodes on one database run the newest published playbooks, whatever their own folders hold:
/// an edit on one node reaches a node started later with the old files, and a node with no
/// folder; a folder with a version never published (a deployment) is published at start.
#[tokio::test]
async fn nodes_run_the_newest_published_playbooks() {
    let dir = tempfile::tempdir().unwrap();
    let folder = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        copy_examples(&path);
        path
    };
    let node = |playbooks: std::path::PathBuf| {
        let mut settings = server::Settings::default();
        settings.server.listen = "127.0.0.1:0".into();
        settings.database.url = format!("sqlite:{}", dir.path().join("pw.db").display());
        settings.engine.playbooks = playbooks;
        settings.engine.reload_poll_ms = 0;
        async move {
            let clock = clock::ManualClock::new("2026-11-20T12:00:00Z".parse().unwrap());
            server::Application::build(&settings, std::sync::Arc::new(clock))
                .await
                .unwrap()
        }
    };
    let status = |app: &server::Application| app.state().playbooks.read().unwrap().clone();

    let (a_files, b_files) = (folder("a"), folder("b"));
    let a = node(a_files.clone()).await;
    let v1 = status(&a).version.unwrap();
    assert!(status(&a).origin.unwrap().starts_with("folder"));

    // An edit on node A: loaded and published.
    let file = a_files.join("founder-rescues.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("why:", "why: (edited)", 1)).unwrap();
    a.state().reload_playbooks(&a_files).await;
    let v2 = status(&a).version.unwrap();
    assert_ne!(v1, v2);

    // Node B starts with the old files (v1, published before): it runs v2.
    let b = node(b_files).await;
    assert_eq!(status(&b).version.as_ref(), Some(&v2));
    assert!(status(&b).origin.unwrap().starts_with("published by"));
    // Node C has no folder: it runs v2 too.
    let c = node(dir.path().join("none")).await;
    assert_eq!(status(&c).version.as_ref(), Some(&v2));

    // Node D is deployed with files never published: they are published, and run.
    let d_files = folder("d");
    let file = d_files.join("lead-follow-up.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("why:", "why: (v3)", 1)).unwrap();
    let d = node(d_files).await;
    let v3 = status(&d).version.unwrap();
    assert!(v3 != v1 && v3 != v2);
    assert_eq!(
        d.state()
            .store
            .latest_playbooks()
            .await
            .unwrap()
            .unwrap()
            .version,
        v3
    );
}
