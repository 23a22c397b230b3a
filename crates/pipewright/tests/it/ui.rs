//! Issue 11 in a browser: `pipewright demo` driven in Debian's Chromium by playwright-core
//! (`tests/ui/flow.mjs`): sign in, the dashboard with the demo company, a deal and its
//! why-trace, walking a decision tree, acknowledging an exception, a forged form refused, a
//! viewer who cannot act, signing out. Issue 23 (`tests/ui/storms.mjs`): rules held by the
//! storm guard, approved and discarded from the inbox. Needs Node.js, `/usr/bin/chromium` and `npm ci` in
//! `tests/ui`; without them it says so and skips, unless `CI=true`. `UPDATE_SCREENSHOTS=1`
//! writes the screenshots in `docs/screenshots`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{db_url, stderr, stdout};

fn missing() -> Option<String> {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("Debian's chromium is not installed (/usr/bin/chromium)".into());
    }
    if !ui.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed: npm ci in {}",
            ui.display()
        ));
    }
    None
}

/// Runs the browser journey `script` (in `tests/ui`) against `pipewright demo --to
/// 2026-12-01` started with the environment `env`, with a viewer made beside it; its output.
fn journey(script: &str, env: &[(&str, &str)]) -> Option<String> {
    if let Some(why) = missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the browser tests: {why}"
        );
        eprintln!("skipping the browser tests: {why}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    // A fixed last day: the same company, with the same stalled reviews, whatever the date.
    let server = crate::demo_with(&db, &["--to", "2026-12-01"], env);
    let password = server
        .printed
        .iter()
        .find_map(|l| l.split(" with ").nth(1).and_then(|r| r.split(' ').next()))
        .expect("the demo prints a sign-in")
        .to_owned();
    // A viewer, made with the command line beside the running server.
    let mut create = crate::bin()
        .args([
            "--database",
            &db,
            "user",
            "create",
            "--email",
            "vic@acme.example",
            "--name",
            "Vic Viewer",
            "--role",
            "viewer",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"only looking, never touching\n")
        .unwrap();
    let created = create.wait_with_output().unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        stdout(&created).contains("can sign in as viewer"),
        "{}",
        stdout(&created)
    );

    let shots = std::env::var_os("UPDATE_SCREENSHOTS").map(|_| {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let mut node = Command::new("node");
    node.arg(ui.join(script))
        .current_dir(&ui)
        .env("BASE", &server.base)
        .env("EMAIL", "maya@acme.example")
        .env("PASSWORD", &password)
        .env("VIEWER", "vic@acme.example")
        .env("VIEWER_PASSWORD", "only looking, never touching");
    if let Some(d) = &shots {
        node.env("SHOTS", d);
    }
    let out = node.output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("every check passed"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
    Some(text)
}

#[test]
fn the_web_ui_in_chromium() {
    journey("flow.mjs", &[]);
}

/// Issue 23: with a storm limit of 3, the demo's first start holds the rules that would act on
/// more of its pipeline at once; an admin sees each in the inbox with what it would do,
/// approves one and discards another; a viewer sees them but cannot decide.
#[test]
fn the_storm_guard_in_chromium() {
    journey("storms.mjs", &[("PIPEWRIGHT_ENGINE__STORM_LIMIT", "3")]);
}
