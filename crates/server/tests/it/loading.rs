//! Issue 24, part 5: playbooks loaded safely. The folder's problems are reported after a
//! restart as before it, an empty or missing folder is a problem while the last good set keeps
//! running, the rules are switched off and on on purpose, and a file still being written is
//! never published.

use std::path::Path;

use crate::{copy_examples, event, spawn_with_playbooks_on};

/// A server on the database at `db` running the playbooks in `dir`.
async fn node(dir: &Path, db: &Path, reload_poll_ms: u64) -> crate::TestApp {
    let db = format!("sqlite:{}", db.display());
    spawn_with_playbooks_on(dir, 3_600_000, move |s| {
        s.database.url = db;
        s.engine.reload_poll_ms = reload_poll_ms;
    })
    .await
}

/// A pricing objection on a new deal: the running rules answer it with the ROI calculator.
async fn pricing_objection(app: &crate::TestApp, deal: &str) -> usize {
    let d = format!(r#""deal":"{deal}""#);
    app.send(&[
        event(
            "deal.created",
            &format!("{deal}-1"),
            "2026-11-18T09:00:00Z",
            &d,
            r#"{"stage":"proposal"}"#,
        ),
        event(
            "objection.raised",
            &format!("{deal}-2"),
            "2026-11-18T10:00:00Z",
            &d,
            r#"{"kind":"pricing"}"#,
        ),
    ])
    .await;
    let (_, deal) = app.get(&app.reader, &format!("/api/v1/deals/{deal}")).await;
    deal["effects"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_restart_with_a_broken_folder_reports_its_problems_beside_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    copy_examples(&playbooks);
    let db = dir.path().join("pw.db");
    let first = node(&playbooks, &db, 0).await;
    let (_, before) = first.get(&first.reader, "/api/v1/playbooks").await;
    let version = before["version"].as_str().unwrap().to_owned();
    assert_eq!(before["problems"], 0);

    // Broken while the server was down; it starts again on the same database.
    let file = playbooks.join("founder-rescues.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("quiet_for: 5d", "quiet_for: five days")).unwrap();
    let restarted = node(&playbooks, &db, 0).await;
    let (_, after) = restarted.get(&restarted.reader, "/api/v1/playbooks").await;
    assert_eq!(after["version"], version.as_str(), "the last good set runs");
    let problems = after["diagnostics"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{after}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("\"five days\" is not a duration"),
        "{problems:?}"
    );
    assert_eq!(after["problems"], 1, "what the gauge is set to");
    let origin = after["origin"].as_str().unwrap();
    assert!(
        origin.starts_with(&format!(
            "the playbook folder {} has a problem; the last good set keeps running: published by ",
            playbooks.display()
        )),
        "{origin}"
    );
    assert!(
        origin
            .contains("on this machine (an earlier run, not this process) at 2026-11-20 12:00 UTC"),
        "{origin}"
    );
    assert_eq!(
        pricing_objection(&restarted, "D-1").await,
        1,
        "the rules act"
    );
}

#[tokio::test]
async fn an_empty_or_missing_folder_is_reported_and_the_last_good_set_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    copy_examples(&playbooks);
    let db = dir.path().join("pw.db");
    let app = node(&playbooks, &db, 0).await;
    let (_, before) = app.get(&app.reader, "/api/v1/playbooks").await;
    let version = before["version"].as_str().unwrap().to_owned();

    // Emptied: reported, and the rules keep running.
    for entry in std::fs::read_dir(&playbooks).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    app.server_state().reload_playbooks(&playbooks).await;
    let (_, empty) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_eq!(empty["version"], version.as_str());
    assert_eq!(empty["problems"], 1);
    assert!(
        empty["diagnostics"][0]
            .as_str()
            .unwrap()
            .ends_with("no playbook files (*.yaml) in this folder"),
        "{empty}"
    );
    assert!(
        empty["origin"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "the playbook folder {} holds no playbook files; the last good set keeps running: folder ",
                playbooks.display()
            )),
        "{empty}"
    );
    assert_eq!(pricing_objection(&app, "D-1").await, 1);

    // Missing, and so at a restart: reported too.
    std::fs::remove_dir(&playbooks).unwrap();
    app.server_state().reload_playbooks(&playbooks).await;
    let restarted = node(&playbooks, &db, 0).await;
    for app in [&app, &restarted] {
        let (_, missing) = app.get(&app.reader, "/api/v1/playbooks").await;
        assert_eq!(missing["version"], version.as_str());
        assert_eq!(missing["problems"], 1);
        assert!(
            missing["origin"]
                .as_str()
                .unwrap()
                .starts_with("the playbook folder")
                && missing["origin"]
                    .as_str()
                    .unwrap()
                    .contains("does not exist or cannot be read; the last good set keeps running"),
            "{missing}"
        );
    }
    assert_eq!(pricing_objection(&restarted, "D-2").await, 1);
}

/// POSTs `/api/v1/rules/{action}` as the admin.
async fn switch(app: &crate::TestApp, action: &str, body: &str) -> serde_json::Value {
    let r = app
        .http
        .post(app.url(&format!("/api/v1/rules/{action}")))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// The rules switched off on purpose decide nothing — on events, on timers — and switched back
/// on, the timers that came due meanwhile fire once, watched by the storm guard, while those
/// of records that events reached meanwhile are re-armed first.
#[tokio::test]
async fn the_rules_switched_off_decide_nothing_and_switched_on_catch_up_once() {
    let playbooks = tempfile::tempdir().unwrap();
    copy_examples(playbooks.path());
    let dir = tempfile::tempdir().unwrap();
    let app = node(playbooks.path(), &dir.path().join("pw.db"), 0).await;
    let legal = r#""deal":"D-1""#;
    let demo = r#""deal":"D-2""#;
    app.send(&[
        event(
            "deal.created",
            "1",
            "2026-11-18T09:00:00Z",
            legal,
            r#"{"stage":"legal","owner":"sam@acme.example"}"#,
        ),
        event(
            "deal.created",
            "2",
            "2026-11-18T09:00:00Z",
            demo,
            r#"{"stage":"demo","owner":"sam@acme.example"}"#,
        ),
        event("meeting.held", "3", "2026-11-18T10:00:00Z", demo, "{}"),
    ])
    .await;

    let off = switch(
        &app,
        "off",
        r#"{"by":"maya@acme.example","reason":"moving CRM"}"#,
    )
    .await;
    assert_eq!(off["on"], false);
    assert_eq!(
        off["words"],
        "switched off by maya@acme.example at 2026-11-20 12:00 UTC: moving CRM"
    );
    let (_, status) = app.get(&app.reader, "/api/v1/playbooks").await;
    assert_eq!(status["rules"]["on"], false, "{status}");

    // Off: an objection decides nothing, and neither does a timer that comes due.
    app.send(&[
        event(
            "objection.raised",
            "4",
            "2026-11-21T10:00:00Z",
            legal,
            r#"{"kind":"pricing"}"#,
        ),
        // Activity on the demo deal: its quiet stretch starts again.
        event("meeting.held", "5", "2026-11-21T10:00:00Z", demo, "{}"),
    ])
    .await;
    let later: domain::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    app.clock.set(later);
    let fired = app.store.fire_due_timers(later, 100).await.unwrap();
    assert_eq!((fired.timers, fired.effects), (0, 0));
    assert_eq!(app.store.arm_all(later, 100).await.unwrap(), 0);
    assert!(app.store.effects(None, 100).await.unwrap().is_empty());

    // On again: every rule is watched by the storm guard first.
    let on = switch(&app, "on", r#"{"by":"maya@acme.example"}"#).await;
    assert_eq!(on["on"], true);
    assert_eq!(
        on["words"],
        "on, switched back on by maya@acme.example at 2026-11-24 12:00 UTC"
    );
    let storms = app
        .store
        .storms(
            &store::StormQuery {
                status: None,
                limit: 100,
            },
            later,
        )
        .await
        .unwrap();
    let watched: Vec<_> = storms
        .iter()
        .filter(|s| s.reason == store::StormReason::SwitchedOn)
        .collect();
    assert_eq!(watched.len(), 12, "every rule: {storms:?}");
    assert!(watched.iter().all(|s| s.status == "watching"));
    // The walk after switching on re-arms the demo deal from its new activity: its old timer
    // (due on the 23rd) does not fire.
    app.store.arm_all(later, 100).await.unwrap();
    app.store.fire_due_timers(later, 100).await.unwrap();
    assert!(app.store.effects(None, 100).await.unwrap().is_empty());
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-2").await;
    let quiet = deal["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rule"] == "quiet-after-enthusiasm")
        .cloned()
        .unwrap_or_else(|| panic!("{deal}"));
    assert_eq!(quiet["due"], "2026-11-26T10:00:00.000Z");

    // Past both: each timer fires once. The objection made while off stays unanswered.
    let end: domain::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
    app.clock.set(end);
    app.store.fire_due_timers(end, 100).await.unwrap();
    app.store.fire_due_timers(end, 100).await.unwrap();
    let rules: Vec<String> = app
        .store
        .effects(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.rule)
        .collect();
    assert!(rules.contains(&"stuck-in-legal".to_owned()), "{rules:?}");
    assert!(
        rules.contains(&"quiet-after-enthusiasm".to_owned()),
        "{rules:?}"
    );
    assert!(
        !rules.contains(&"pricing-objection".to_owned()),
        "{rules:?}"
    );
    let once = rules.len();
    app.store.fire_due_timers(end, 100).await.unwrap();
    assert_eq!(app.store.effects(None, 100).await.unwrap().len(), once);
}

/// A file written in two halves, the first valid on its own, is never published: the watcher
/// reads a change only once the folder has looked the same for a second of the server's clock.
#[tokio::test]
async fn a_half_written_file_is_never_published() {
    let playbooks = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rule = |id: &str| {
        format!(
            "  - id: {id}\n    why: A pricing objection is a value question.\n    when: {{ event: objection.raised }}\n    then:\n      - alert: {{ to: deal.owner, text: pricing }}\n"
        )
    };
    let half = format!("playbook: p\nowner: o\nrules:\n{}", rule("first"));
    let full = format!("{half}{}", rule("second"));
    let version = |text: &str| {
        playbook::load_files(&[(playbooks.path().join("p.yaml"), text.to_owned())])
            .set
            .expect("it compiles")
            .version
    };
    let (v_half, v_full) = (version(&half), version(&full));
    let app = node(playbooks.path(), &dir.path().join("pw.db"), 10).await;
    let running = || async {
        let (_, status) = app.get(&app.reader, "/api/v1/playbooks").await;
        status["version"].as_str().map(str::to_owned)
    };

    let file = playbooks.path().join("p.yaml");
    std::fs::write(&file, &half).unwrap();
    // The watcher polls many times while the half is there; the clock moves less than a second.
    for _ in 0..20 {
        app.clock.advance(std::time::Duration::from_millis(40));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        assert_ne!(running().await.as_deref(), Some(v_half.as_str()));
    }
    std::fs::write(&file, &full).unwrap();
    let mut loaded = None;
    for _ in 0..500 {
        app.clock.advance(std::time::Duration::from_millis(200));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        loaded = running().await;
        assert_ne!(loaded.as_deref(), Some(v_half.as_str()), "the half ran");
        if loaded.is_some() {
            break;
        }
    }
    assert_eq!(loaded, Some(v_full));
    assert!(!app.store.playbooks_published(&v_half).await.unwrap());
}
