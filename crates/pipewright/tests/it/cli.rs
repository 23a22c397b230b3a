use crate::{create_token, db_url, run, stderr, stdout, write};

const GOOD: &str = r#"{"type":"deal.created","source":"crm","source_id":"1","occurred_at":"2026-11-01T09:00:00Z","deal":"D-1","data":{"stage":"discovery"}}"#;

#[test]
fn ndjson_import_skips_bad_lines_reports_them_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let text = format!(
        "{GOOD}\n{}\nnot json at all\n\n{}\n",
        GOOD.replace(r#""source_id":"1""#, r#""source_id":"2""#)
            .replace("discovery", "demo"),
        GOOD.replace(r#""source_id":"1""#, r#""source_id":"3""#)
            .replace("deal.created", "deal.vanished"),
    );
    let file = write(dir.path(), "events.ndjson", &text);
    let out = run(&["--database", &db, "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("imported 2, duplicates 0, rejected 2"),
        "{summary}"
    );
    assert!(summary.contains("line 3, column 2"), "{summary}");
    assert!(
        summary.contains("line 5") && summary.contains("unknown_event_type"),
        "{summary}"
    );
    let again = run(&["--database", &db, "import", file.to_str().unwrap()]);
    assert!(
        stdout(&again).contains("imported 0, duplicates 2, rejected 2"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn csv_import_maps_columns_and_names_bad_cells() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let csv = "\
type,source,source_id,occurred_at,deal,stage,amount,kind
deal.created,crm,1,2026-11-01T09:00:00Z,D-1,discovery,12000,
objection.raised,crm,2,2026-11-02T09:00:00Z,D-1,,,pricing
objection.raised,crm,3,2026-11-02T09:00:00Z,D-1,,,vibes
deal.created,crm,4,2026-11-01T09:00:00Z,D-2,discovery,a lot,
deal.created,crm,5,2026-11-01T09:00:00Z,,discovery,,
";
    let file = write(dir.path(), "events.csv", csv);
    let out = run(&["--database", &db, "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("imported 2, duplicates 0, rejected 3"),
        "{summary}"
    );
    assert!(summary.contains("line 4: kind:"), "{summary}");
    assert!(summary.contains("line 5: amount:"), "{summary}");
    assert!(summary.contains("line 6: deal:"), "{summary}");
}

#[test]
fn tokens_are_created_listed_and_revoked_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let secret = create_token(&db, "writer");
    assert_eq!(secret.len(), 67);
    let list = run(&["--database", &db, "token", "list"]);
    let text = stdout(&list);
    assert!(text.contains("writer") && !text.contains(&secret), "{text}");
    let id = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let revoke = run(&["--database", &db, "token", "revoke", &id]);
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    let list = stdout(&run(&["--database", &db, "token", "list"]));
    assert!(!list.lines().nth(1).unwrap().contains(" - "), "{list}");
    let missing = run(&["--database", &db, "token", "revoke", "tok_nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("tok_nope not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn configuration_layers_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let default = run(&["config", "default"]);
    assert!(stdout(&default).contains("[database]"));
    let from_file = dir.path().join("from-file.db");
    let config = write(
        dir.path(),
        "pw.toml",
        &format!("[database]\nurl = \"sqlite:{}\"\n", from_file.display()),
    );
    let out = run(&["--config", config.to_str().unwrap(), "token", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(from_file.exists());
    let from_env = dir.path().join("from-env.db");
    let out = crate::bin()
        .args(["--config", config.to_str().unwrap(), "token", "list"])
        .env(
            "PIPEWRIGHT_DATABASE__URL",
            format!("sqlite:{}", from_env.display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(from_env.exists(), "the environment overrides the file");
    let bad = write(dir.path(), "bad.toml", "[database]\nurll = \"x\"\n");
    let out = run(&["--config", bad.to_str().unwrap(), "token", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("urll"), "{}", stderr(&out));
}

/// The README's first command: the demo company's history is loaded, the example playbooks
/// switched on in dry run act on the pipeline as it stands, a token is printed and the API
/// served; a second start serves the same database as it is.
#[tokio::test]
async fn demo_serves_the_demo_company_with_the_playbooks_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let demo = || crate::demo(&db, &["--days", "150"]);
    let first = demo();
    let printed = first.printed.join("\n");
    assert!(printed.contains("Demo company loaded into"), "{printed}");
    assert!(printed.contains("the founder stepped in on"), "{printed}");
    assert!(
        printed.contains("are on, delivering in dry run"),
        "{printed}"
    );
    let token = first
        .printed
        .iter()
        .find_map(|l| l.strip_prefix("Admin token for this demo: "))
        .unwrap()
        .to_owned();
    let http = delivery::http_client(std::time::Duration::from_secs(60));
    let get = |path: String| {
        let request = http
            .get(format!("{}{path}", first.base))
            .bearer_auth(&token);
        async move {
            let response = request.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let heroics = get("/api/v1/reports/heroics".into()).await;
    let people = heroics["people"].as_array().unwrap();
    assert!(
        people.iter().any(|p| p["person"] == "maya@acme.example"),
        "{heroics}"
    );
    // The open pipeline's due timers fire once serving starts: the outbox fills with what
    // the playbooks decide now, for records still open, and nothing for the closed past.
    let mut items = Vec::new();
    for _ in 0..300 {
        items = get("/api/v1/outbox?limit=500".into()).await["items"]
            .as_array()
            .unwrap()
            .clone();
        if !items.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!items.is_empty(), "the playbooks decided nothing");
    for item in items
        .iter()
        .filter(|i| i["record"]["kind"] == "deal")
        .take(10)
    {
        let id = item["record"]["id"].as_str().unwrap();
        let deal = get(format!("/api/v1/deals/{id}")).await;
        assert_eq!(deal["record"]["status"], "open", "{item}");
    }
    drop(first);
    let again = demo();
    assert!(
        again.printed[0].contains("already holds events"),
        "{:?}",
        again.printed
    );
}

/// The demo company's history is a file like any other: imported whole, every line valid;
/// the same seed and day write the same file.
#[test]
fn the_demo_company_is_written_imported_and_backtested() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let args = [
        "company",
        "--days",
        "90",
        "--to",
        "2026-06-01",
        "--seed",
        "3",
    ];
    let written = run(&args);
    assert!(written.status.success(), "{}", stderr(&written));
    let text = stdout(&written);
    assert_eq!(text, stdout(&run(&args)), "the same company twice");
    let lines = text.lines().count();
    assert!(lines > 1_000, "{lines} events");
    let file = crate::write(dir.path(), "company.ndjson", &text);
    let imported = run(&["--database", &db, "import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    assert!(
        stdout(&imported).contains(&format!("imported {lines}, duplicates 0, rejected 0")),
        "{}",
        stdout(&imported)
    );
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
    let backtest = run(&[
        "backtest",
        "--playbooks",
        examples,
        "--events",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(backtest.status.success(), "{}", stderr(&backtest));
    let report: serde_json::Value = serde_json::from_str(&stdout(&backtest)).unwrap();
    let fired = |rule: &str| {
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == rule)
            .map_or(0, |r| r["fired"].as_u64().unwrap())
    };
    for rule in [
        "quiet-after-enthusiasm",
        "pricing-objection",
        "implementation-concern",
    ] {
        assert!(fired(rule) > 0, "{rule} never fired: {report}");
    }
    let none = run(&["company", "--days", "0"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(
        stderr(&none).contains("--days: expected a number of days of 1 or more, got 0"),
        "{}",
        stderr(&none)
    );
    let bad = run(&["company", "--set", "p_pricing=2"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("p_pricing: a chance is between 0 and 1, got 2"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn simulate_compares_the_playbooks_off_and_on_and_prints_its_assumptions() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
    let args = [
        "simulate",
        "--playbooks",
        examples,
        "--days",
        "120",
        "--warmup",
        "60",
    ];
    let table = run(&args);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    for words in [
        "Founder stepped in, of the closed",
        "First follow-up of inbound leads, median",
        "Deals stalled",
        "Revenue won in the window",
        "Assumptions: the model's parameters, not facts",
        "p_sequence_revives",
    ] {
        assert!(text.contains(words), "no {words:?} in {text}");
    }
    assert_eq!(text, stdout(&run(&args)), "the same seed, the same result");
    let json = run(&[
        &args[..],
        &["--format", "json", "--set", "p_sequence_revives=0.9"],
    ]
    .concat());
    assert!(json.status.success(), "{}", stderr(&json));
    let s: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(s["model"]["p_sequence_revives"], 0.9);
    let (off, on) = (&s["off"], &s["on"]);
    let share = |o: &serde_json::Value| {
        o["founder_deals"].as_f64().unwrap() / o["closed"].as_f64().unwrap()
    };
    assert!(share(on) < share(off), "{off} {on}");
    let unknown = run(&["simulate", "--playbooks", examples, "--set", "p_luck=1"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("unknown parameter \"p_luck\""),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn check_passes_the_examples_and_lists_every_problem_of_a_broken_folder() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
    let out = run(&["check", examples]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("4 playbooks, 12 rules, no problems"),
        "{}",
        stdout(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "playbook: a\nowner: o\nrules:\n  - id: r\n    why: w\n    when: { quiet_for: soon }\n    then:\n      - start_sequence: nope\n",
    );
    write(dir.path(), "b.yaml", "playbook: b\nowner: o\nrulez: []\n");
    let out = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let text = stdout(&out);
    assert!(
        text.contains("a.yaml:6:24: \"soon\" is not a duration"),
        "{text}"
    );
    assert!(
        text.contains("a.yaml:8:25: unknown sequence \"nope\""),
        "{text}"
    );
    assert!(text.contains("b.yaml:3:1: unknown field `rulez`"), "{text}");
    assert!(text.ends_with("3 problems\n"), "{text}");
}

/// Issue 23: warnings are printed and do not fail `check`; a chat channel is held to the
/// configuration given with `--config` (the defaults, without one, configure none).
#[test]
fn check_prints_warnings_and_holds_chat_channels_to_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    write(
        &playbooks,
        "a.yaml",
        "playbook: a\nowner: o\nrules:\n  - id: big-wins\n    why: Big wins are announced.\n    when: { event: deal.won }\n    if: deal.fields.seats > 10\n    then:\n      - alert: { to: channel:wins, text: won }\n",
    );
    let folder = playbooks.to_str().unwrap();
    let out = run(&["check", folder]);
    assert_eq!(out.status.code(), Some(4));
    let text = stdout(&out);
    assert!(
        text.contains(
            "a.yaml:7:21: warning: condition: `deal.fields.seats` is null on a deal without it"
        ),
        "{text}"
    );
    assert!(
        text.contains("a.yaml:9:22: no chat channel \"wins\" is configured: give its incoming-webhook URL as delivery.chat.wins in the configuration (configured: none)"),
        "{text}"
    );
    assert!(text.ends_with("1 problem, 1 warning\n"), "{text}");

    let config = write(
        dir.path(),
        "pw.toml",
        "[delivery.chat]\nwins = \"https://hooks.example/wins\"\n",
    );
    let out = run(&["--config", config.to_str().unwrap(), "check", folder]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("1 playbooks, 1 rules, no problems, 1 warning (version"),
        "{text}"
    );
}

/// `import --run-rules` runs the playbooks like the API does (the configured folder, when none
/// are published), and `explain` says what each rule did and will do.
#[test]
fn import_runs_the_rules_and_explain_tells_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let playbooks = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
    let events = "\
{\"type\":\"deal.created\",\"source\":\"crm\",\"source_id\":\"1\",\"occurred_at\":\"2026-11-01T09:00:00Z\",\"deal\":\"D-1\",\"data\":{\"stage\":\"legal\",\"owner\":\"sam@acme.example\"}}
{\"type\":\"objection.raised\",\"source\":\"crm\",\"source_id\":\"2\",\"occurred_at\":\"2026-11-02T09:00:00Z\",\"deal\":\"D-1\",\"data\":{\"kind\":\"pricing\"}}
";
    let file = write(dir.path(), "e.ndjson", events);
    let with_playbooks = |args: &[&str]| {
        crate::bin()
            .args(args)
            .env("PIPEWRIGHT_ENGINE__PLAYBOOKS", playbooks)
            .output()
            .unwrap()
    };
    let out = with_playbooks(&[
        "--database",
        &db,
        "import",
        "--run-rules",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("The events ran through the running playbooks"),
        "{}",
        stdout(&out)
    );
    let out = with_playbooks(&["--database", &db, "explain", "deal", "D-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("pricing-objection (founder-rescues) — fired 1 time(s), last at 2026-11-02T09:00:00.000Z"), "{text}");
    assert!(text.contains("stuck-in-legal (founder-rescues) — fires at 2026-11-11T09:00:00.000Z if nothing changes"), "{text}");
    assert!(text.contains("effect pricing-objection"), "{text}");
    // The outbox from the command line: the decided email waits for a dispatcher.
    let out = with_playbooks(&["--database", &db, "outbox", "list", "--status", "pending"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.contains("pricing-objection"))
        .expect("listed");
    assert!(
        line.contains("pending") && line.contains("email") && line.contains("deal:D-1"),
        "{text}"
    );
    let key = line.split_whitespace().next().unwrap();
    let out = with_playbooks(&["--database", &db, "outbox", "cancel", key]);
    assert!(
        out.status.success() && stdout(&out).contains("cancelled"),
        "{}",
        stderr(&out)
    );
    let out = with_playbooks(&["--database", &db, "outbox", "cancel", key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only a pending or dead one can become cancelled"),
        "{}",
        stderr(&out)
    );
}

/// `refold` rebuilds derived state from the log: a record whose stored state was damaged is
/// corrected, the others are left alone.
#[test]
fn refold_rebuilds_damaged_state_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let events = "\
{\"type\":\"deal.created\",\"source\":\"crm\",\"source_id\":\"1\",\"occurred_at\":\"2026-11-01T09:00:00Z\",\"deal\":\"D-1\",\"data\":{\"stage\":\"legal\",\"owner\":\"sam@acme.example\"}}
{\"type\":\"note.added\",\"source\":\"crm\",\"source_id\":\"2\",\"occurred_at\":\"2026-11-02T09:00:00Z\",\"deal\":\"D-1\",\"data\":{\"text\":\"x\"}}
";
    let file = write(dir.path(), "e.ndjson", events);
    let out = run(&["--database", &db, "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--database", &db, "refold"]);
    assert_eq!(
        stdout(&out),
        "examined 1 records; corrected 0\n",
        "{}",
        stderr(&out)
    );
    // Damage the stored state (as the group-commit bug fixed in this version could have).
    let damaged = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE records SET state='{\\\"kind\\\":\\\"deal\\\",\\\"id\\\":\\\"D-1\\\",\\\"status\\\":\\\"open\\\"}', stage=NULL\"); c.commit()",
            dir.path().join("pw.db").to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(damaged.success());
    let out = run(&["--database", &db, "refold"]);
    assert_eq!(
        stdout(&out),
        "examined 1 records; corrected 1\n",
        "{}",
        stderr(&out)
    );
    let out = run(&["--database", &db, "refold"]);
    assert_eq!(stdout(&out), "examined 1 records; corrected 0\n");
}

#[test]
fn migrate_applies_the_schema_once_and_names_a_bad_url() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let first = run(&["--database", &db, "migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first).trim(),
        "schema at version 14 (was 0); applied 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14"
    );
    let again = run(&["--database", &db, "migrate"]);
    assert_eq!(
        stdout(&again).trim(),
        "schema at version 14; nothing to apply"
    );

    let bad = run(&["--database", "mysql://db/x", "migrate"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("database URL scheme \"mysql\" is not supported"),
        "{}",
        stderr(&bad)
    );
    let down = run(&["--database", "postgres://nobody@127.0.0.1:1/x", "migrate"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("Connection refused"),
        "{}",
        stderr(&down)
    );
}

#[test]
fn sequences_pauses_and_the_suppression_list_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let seq = |args: &[&str]| {
        let mut all = vec!["--database", db.as_str(), "sequences"];
        all.extend_from_slice(args);
        run(&all)
    };
    let added = seq(&["suppress", "@Umbrella.example", "--note", "legal asked"]);
    assert!(added.status.success(), "{}", stderr(&added));
    assert_eq!(
        stdout(&added),
        "suppressed @umbrella.example (do_not_contact)\n"
    );
    let bad = seq(&["suppress", "nobody"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("neither an email address nor a domain"),
        "{}",
        stderr(&bad)
    );
    let list = stdout(&seq(&["suppressions"]));
    assert!(list.starts_with("@umbrella.example"), "{list}");
    assert!(list.trim_end().ends_with("legal asked"), "{list}");
    assert_eq!(
        stdout(&seq(&["unsuppress", "@umbrella.example"])),
        "removed @umbrella.example\n"
    );
    assert_eq!(
        seq(&["unsuppress", "@umbrella.example"]).status.code(),
        Some(1)
    );
    assert_eq!(
        stdout(&seq(&["pause", "--owner", "sam@acme.example"])),
        "paused owner:sam@acme.example: 0 enrolments\n"
    );
    assert_eq!(
        stdout(&seq(&["resume", "--owner", "sam@acme.example"])),
        "resumed owner:sam@acme.example: 0 enrolments\n"
    );
    assert!(stdout(&seq(&["enrolments"])).starts_with("ID "));
    assert!(stdout(&seq(&["results", "reengage-with-proof"])).starts_with("STEP "));
}

/// An import with --run-rules passes through the stages' gates like the API: a refused move is
/// recorded and the deal stays.
#[test]
fn an_imported_move_is_refused_by_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    write(
        &playbooks,
        "q.yaml",
        "playbook: q\nowner: omar@acme.example\nstages: [demo, proposal]\ngates:\n  - stage: proposal\n    why: Budget first.\n    require:\n      - { name: budget confirmed, if: deal.fields.budget_confirmed == true }\n",
    );
    let events = "\
{\"type\":\"deal.created\",\"source\":\"crm\",\"source_id\":\"1\",\"occurred_at\":\"2026-11-01T09:00:00Z\",\"deal\":\"D-1\",\"data\":{\"stage\":\"demo\"}}
{\"type\":\"deal.stage_changed\",\"source\":\"crm\",\"source_id\":\"2\",\"occurred_at\":\"2026-11-02T09:00:00Z\",\"deal\":\"D-1\",\"data\":{\"stage\":\"proposal\"}}
";
    let file = write(dir.path(), "e.ndjson", events);
    let out = crate::bin()
        .args([
            "--database",
            &db,
            "import",
            "--run-rules",
            file.to_str().unwrap(),
        ])
        .env("PIPEWRIGHT_ENGINE__PLAYBOOKS", &playbooks)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("imported 2"), "{}", stdout(&out));
    let store = store::connect(
        &db,
        &store::ConnectOptions::default(),
        std::sync::Arc::new(clock::SystemClock),
    )
    .unwrap();
    let key = domain::RecordKey::new(
        domain::RecordKind::Deal,
        domain::RecordId::parse("D-1").unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (record, timeline) = runtime.block_on(async {
        (
            store.record(&key).await.unwrap().unwrap().record,
            store.timeline(&key, 10).await.unwrap(),
        )
    });
    assert_eq!(record.stage().map(|s| s.as_str()), Some("demo"));
    assert_eq!(timeline[1].event_type().as_str(), "gate.blocked");
    // `explain` says what the gate still needs.
    let out = crate::bin()
        .args(["--database", &db, "explain", "deal", "D-1"])
        .env("PIPEWRIGHT_ENGINE__PLAYBOOKS", &playbooks)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("gate on proposal (q) — would refuse"),
        "{text}"
    );
    assert!(
        text.contains("NOT met: budget confirmed  (deal.fields.budget_confirmed == true)"),
        "{text}"
    );
}

/// Issue 23: the monitor's alarms from the command line — listed in words, acknowledged,
/// resolved saying how, with a wrong kind named.
#[test]
fn alarms_are_listed_acknowledged_and_resolved_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let path = dir.path().join("pw.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let id = runtime.block_on(async {
        use store::Store as _;
        let clock = std::sync::Arc::new(clock::SystemClock);
        let store = store::SqliteStore::open(store::SqliteOptions::new(&path), clock).unwrap();
        let silent = store::NewAlarm {
            subject: "stuck-in-legal".into(),
            title: "stuck-in-legal used to fire about every 3 days and has not fired for 16 days"
                .into(),
            detail: serde_json::json!({}),
        };
        let sync = store::AlarmSync::new(
            store::AlarmKind::RuleSilent,
            vec![silent],
            "the rule fired again",
        );
        let synced = store
            .sync_alarms(vec![sync], "2026-11-20T12:00:00Z".parse().unwrap())
            .await
            .unwrap();
        synced.opened[0].id.clone()
    });
    let list = run(&["--database", &db, "alarms", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert_eq!(
        stdout(&list),
        format!(
            "{id}  open          stuck-in-legal used to fire about every 3 days and has not fired for 16 days\n    a rule stopped firing · raised 2026-11-20 12:00 UTC\n"
        )
    );
    let ack = run(&["--database", &db, "alarms", "ack", &id, "--by", "omar"]);
    assert!(ack.status.success(), "{}", stderr(&ack));
    assert!(
        stdout(&ack).contains("acknowledged by omar"),
        "{}",
        stdout(&ack)
    );
    let resolve = run(&[
        "--database",
        &db,
        "alarms",
        "resolve",
        &id,
        "--by",
        "omar",
        "--resolution",
        "legal pauses over the holidays",
    ]);
    assert!(resolve.status.success(), "{}", stderr(&resolve));
    assert!(
        stdout(&resolve).contains(": legal pauses over the holidays"),
        "{}",
        stdout(&resolve)
    );
    let none = run(&["--database", &db, "alarms", "list"]);
    assert_eq!(stdout(&none), "no alarms (unresolved)\n");
    let all = run(&["--database", &db, "alarms", "list", "--status", "all"]);
    assert!(
        stdout(&all).contains("resolved by omar"),
        "{}",
        stdout(&all)
    );
    let again = run(&["--database", &db, "alarms", "ack", &id, "--by", "omar"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("resolved already"),
        "{}",
        stderr(&again)
    );
    let bad = run(&["--database", &db, "alarms", "list", "--kind", "rule"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("--kind: expected one of rule_silent, channel_failing"),
        "{}",
        stderr(&bad)
    );
}

/// Issue 8: the exceptions inbox from the command line — a person's list, one item with its
/// history, acknowledging and resolving (a resolution on a deal is the resolver's
/// intervention), with the flags' mistakes named.
#[test]
fn exceptions_are_listed_shown_acknowledged_and_resolved_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let path = dir.path().join("pw.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let id = runtime.block_on(async {
        use store::Store as _;
        let clock = std::sync::Arc::new(clock::SystemClock);
        let store = store::SqliteStore::open(store::SqliteOptions::new(&path), clock).unwrap();
        let rule = "playbook: p\nowner: o\nrules:\n  - id: stuck\n    why: Legal stalls silently.\n    when: { event: note.added }\n    then:\n      - escalate: { to: person:omar, reason: legal-stall }\n";
        let set = playbook::load_files(&[("p.yaml".into(), rule.into())]).set.unwrap();
        store.set_engine(Some(std::sync::Arc::new(store::Engine::new(std::sync::Arc::new(set)))));
        let events = [
            r#"{"type":"person.created","source":"crm","source_id":"p1","occurred_at":"2026-10-01T00:00:00Z","person":"omar","data":{"name":"Omar"}}"#,
            r#"{"type":"deal.created","source":"crm","source_id":"d1","occurred_at":"2026-11-01T09:00:00Z","deal":"D-1","data":{"name":"Globex","stage":"legal","owner":"sam"}}"#,
            r#"{"type":"note.added","source":"crm","source_id":"n1","occurred_at":"2026-11-12T09:00:00Z","deal":"D-1","data":{"text":"still in legal"}}"#,
        ];
        let events = events.iter().map(|e| wire::parse_one(e).unwrap()).collect();
        store.ingest(events).await.unwrap();
        // What the dispatcher does with the escalation (its own tests cover rendering).
        let now: domain::Timestamp = "2026-11-12T09:00:00Z".parse().unwrap();
        let claimed = store
            .claim_effects(store::Claim {
                node: "test".into(),
                now,
                lease_until: domain::Timestamp::from_millis(now.as_millis() + 60_000),
                limit: 10,
                ..store::Claim::default()
            })
            .await
            .unwrap();
        let effect = &claimed[0];
        let finished = store
            .finish_delivery(store::Finish {
                key: effect.key.clone(),
                node: "test".into(),
                started_at: now,
                finished_at: now,
                outcome: store::Outcome::Delivered,
                detail: None,
                rendered: None,
                task: None,
                exception: Some(store::NewException {
                    id: effect.key.clone(),
                    record: effect.record.clone(),
                    playbook: effect.playbook.clone(),
                    rule: effect.rule.clone(),
                    version: effect.version.clone(),
                    reason: "legal-stall".into(),
                    title: "Globex: legal-stall".into(),
                    context: serde_json::json!({"trace": effect.trace}),
                    chain: vec!["omar".into()],
                    sla_ms: 86_400_000,
                    raised_at: now,
                }),
            })
            .await
            .unwrap();
        assert!(finished);
        effect.key.clone()
    });
    let list = run(&[
        "--database",
        &db,
        "exceptions",
        "list",
        "--assignee",
        "omar",
    ]);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(
        text.contains(&id) && text.contains("open") && text.contains("Globex: legal-stall"),
        "{text}"
    );
    let bad = run(&[
        "--database",
        &db,
        "exceptions",
        "list",
        "--status",
        "snoozed",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("--status: expected one of open, acknowledged, resolved, unresolved"),
        "{}",
        stderr(&bad)
    );

    let ack = run(&["--database", &db, "exceptions", "ack", &id, "--by", "omar"]);
    assert!(ack.status.success(), "{}", stderr(&ack));
    assert!(stdout(&ack).contains("acknowledged"));
    let again = run(&["--database", &db, "exceptions", "ack", &id, "--by", "omar"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already acknowledged by omar"),
        "{}",
        stderr(&again)
    );
    let missing = run(&[
        "--database",
        &db,
        "exceptions",
        "resolve",
        &id,
        "--by",
        "omar",
    ]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "clap names the missing --resolution"
    );
    let done = run(&[
        "--database",
        &db,
        "exceptions",
        "resolve",
        &id,
        "--by",
        "omar",
        "--resolution",
        "their counsel signs Friday",
    ]);
    assert!(done.status.success(), "{}", stderr(&done));
    let show = run(&["--database", &db, "exceptions", "show", &id]);
    let text = stdout(&show);
    assert!(
        text.contains("resolution: their counsel signs Friday"),
        "{text}"
    );
    assert!(
        text.contains("raised") && text.contains("acknowledged") && text.contains("resolved"),
        "{text}"
    );
    // The resolution is omar's intervention on D-1.
    let report = run(&[
        "--database",
        &db,
        "report",
        "heroics",
        "--format",
        "csv",
        "--section",
        "interventions",
    ]);
    assert!(report.status.success(), "{}", stderr(&report));
    let csv = stdout(&report);
    assert!(
        csv.lines()
            .any(|l| l.contains("D-1") && l.contains("omar") && l.contains("legal-stall")),
        "{csv}"
    );
    // Nothing left in omar's inbox.
    let list = run(&[
        "--database",
        &db,
        "exceptions",
        "list",
        "--assignee",
        "omar",
    ]);
    assert_eq!(stdout(&list), "");
}

/// Issue 8: a decision tree walked from the command line, questions asked on standard input
/// (a choice by number or by its words), the answers written to the deal; a walk that stops
/// early writes nothing; the handbook comes out as Markdown or HTML.
#[test]
fn a_tree_is_walked_on_the_command_line_and_the_handbook_printed() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let playbooks = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
    let deal = r#"{"type":"deal.created","source":"crm","source_id":"1","occurred_at":"2026-11-01T09:00:00Z","deal":"D-1","data":{"stage":"demo","owner":"sam"}}"#;
    let file = write(dir.path(), "e.ndjson", deal);
    let cli = |args: &[&str], stdin: &str| {
        let mut child = crate::bin()
            .args(args)
            .env("PIPEWRIGHT_ENGINE__PLAYBOOKS", playbooks)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = cli(&["--database", &db, "import", file.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));

    let list = cli(&["--database", &db, "tree", "list"], "");
    assert!(
        stdout(&list).contains("qualification-call [demo]: Qualification call"),
        "{}",
        stdout(&list)
    );

    // Stopped after the first answer: nothing is written.
    let walk = [
        "--database",
        &db,
        "tree",
        "walk",
        "qualification-call",
        "--deal",
        "D-1",
        "--by",
        "sam",
    ];
    let stopped = cli(&walk, "1\n");
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        stderr(&stopped).contains("the walk stopped at \"champion\""),
        "{}",
        stderr(&stopped)
    );
    // A wrong answer is named.
    let wrong = cli(&walk, "maybe\n");
    assert!(
        stderr(&wrong).contains("budget: \"maybe\" is not an answer"),
        "{}",
        stderr(&wrong)
    );
    // One answer by flag, the rest typed: the champion in words, the timeline by number.
    let mut args = walk.to_vec();
    args.extend(["--answer", "budget=Yes, approved"]);
    let done = cli(&args, "Dana Whitfield\n2\n");
    assert!(done.status.success(), "{}", stderr(&done));
    let text = stdout(&done);
    assert!(
        text.contains("Who will champion this internally?"),
        "the question was asked: {text}"
    );
    assert!(
        text.contains("Recommendation: Propose now, and agree the decision date in writing."),
        "{text}"
    );
    assert!(text.contains(r#"Wrote to D-1: {"budget_confirmed":true,"champion":"Dana Whitfield","go_live":"next_quarter"}"#), "{text}");
    let explain = cli(&["--database", &db, "explain", "deal", "D-1"], "");
    let text = stdout(&explain);
    assert!(
        text.contains("gate on proposal (qualification) — would pass"),
        "{text}"
    );

    let md = cli(&["handbook", playbooks], "");
    assert!(md.status.success(), "{}", stderr(&md));
    assert!(stdout(&md).starts_with("# Handbook"));
    let html = cli(&["handbook", playbooks, "--format", "html"], "");
    assert!(stdout(&html).starts_with("<!doctype html>"));
    let bad = cli(&["handbook", playbooks, "--format", "pdf"], "");
    assert_eq!(bad.status.code(), Some(2));
}

/// Issue 9: a backtest of the example playbooks on a small hand-written company's events from a file,
/// the same report every time, as a table, JSON or CSV; mistakes named by flag.
#[test]
fn a_backtest_of_a_file_gives_the_same_report_every_time() {
    let playbooks = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/small-company.ndjson"
    );
    let args = [
        "backtest",
        "--playbooks",
        playbooks,
        "--events",
        sample,
        "--format",
        "json",
    ];
    let first = run(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    let again = run(&args);
    assert_eq!(first.stdout, again.stdout, "byte-identical");
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["events"], 63);
    let rule = |id: &str| {
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == id)
            .unwrap()
            .clone()
    };
    // The sample's pricing objection on D-1001, answered by maya two days later, who won it.
    let pricing = rule("pricing-objection");
    assert_eq!(pricing["records"], serde_json::json!(["deal:D-1001"]));
    assert_eq!(
        (
            pricing["deals"]["won"].clone(),
            pricing["preempted"].clone()
        ),
        (1.into(), 1.into())
    );
    // The legal stall on D-1003 fired before omar stepped in for it.
    assert_eq!(rule("stuck-in-legal")["preempted"], 1);
    let table = run(&["backtest", "--playbooks", playbooks, "--events", sample]);
    assert!(
        stdout(&table).contains("63 events replayed"),
        "{}",
        stdout(&table)
    );
    let csv = run(&[
        "backtest",
        "--playbooks",
        playbooks,
        "--events",
        sample,
        "--format",
        "csv",
    ]);
    assert!(stdout(&csv).starts_with("playbook,rule,fired,records,"));
    // The check before merging a change: the stuck-in-legal rule now waits 20 days.
    let changed = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(playbooks).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "stage: legal, longer_than: 10d",
            "stage: legal, longer_than: 20d",
        );
        std::fs::write(changed.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let diff = run(&[
        "backtest",
        "--playbooks",
        playbooks,
        "--compare",
        changed.path().to_str().unwrap(),
        "--events",
        sample,
        "--to",
        "2026-11-06",
    ]);
    assert!(diff.status.success(), "{}", stderr(&diff));
    let text = stdout(&diff);
    let line = text
        .lines()
        .find(|l| l.starts_with("stuck-in-legal"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("-deal:D-1003"),
        "D-1003 has been in legal since 20 Oct: {text}"
    );
    let bad = run(&[
        "backtest",
        "--playbooks",
        playbooks,
        "--events",
        sample,
        "--within",
        "soon",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("--within: expected a length"),
        "{}",
        stderr(&bad)
    );
    let dir = tempfile::tempdir().unwrap();
    let broken = write(dir.path(), "e.ndjson", "{\"type\":\"deal.created\"}\n");
    let bad = run(&[
        "backtest",
        "--playbooks",
        playbooks,
        "--events",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("line 1"), "{}", stderr(&bad));
}

/// Issue 10 from the command line, on a year of the demo company: the open deals at risk with
/// their reasons, the model, and the evaluation on a time split, where weights fitted to the
/// company's own deals beat the rule-based ones.
#[test]
fn the_demo_company_risk_is_ranked_explained_and_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let written = run(&["company", "--days", "365", "--to", "2026-12-01"]);
    assert!(written.status.success(), "{}", stderr(&written));
    let file = crate::write(dir.path(), "company.ndjson", &stdout(&written));
    let imported = run(&["--database", &db, "import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../playbooks");
    let risk = |args: &[&str]| {
        crate::bin()
            .args(["--database", &db, "risk"])
            .args(args)
            .env("PIPEWRIGHT_ENGINE__PLAYBOOKS", examples)
            .output()
            .unwrap()
    };

    let out = risk(&["evaluate", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let auc = |i: usize| e["models"][i]["auc"].as_f64().unwrap();
    assert_eq!(e["models"][0]["name"], "rule-based");
    assert_eq!(e["models"][1]["name"], "fitted");
    assert!(
        auc(1) > auc(0) + 0.1,
        "fitted {} against rule-based {}",
        auc(1),
        auc(0)
    );
    let train = e["train"]["deals"].as_u64().unwrap();
    let test = e["test"]["deals"].as_u64().unwrap();
    assert!(train > 100 && test > 40, "{train} and {test} deals");
    // Older deals learn, newer ones judge.
    assert!(
        e["train"]["until"].as_str() <= e["test"]["from"].as_str(),
        "{e}"
    );
    let table = stdout(&risk(&["evaluate"]));
    for line in [
        "Learned from the",
        "ROC AUC",
        "Precision / recall at other thresholds",
        "stalled",
    ] {
        assert!(table.contains(line), "{line:?} in {table}");
    }

    let model = stdout(&risk(&["model"]));
    assert!(
        model.contains("Scoring: weights fitted by logistic regression on"),
        "{model}"
    );
    assert!(
        model.contains("Late stages: proposal, negotiation, legal."),
        "{model}"
    );
    assert!(model.contains("default/legal"), "{model}");

    let out = risk(&["deals", "--limit", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deals = stdout(&out);
    assert!(deals.starts_with("Scored at "), "{deals}");
    let out = risk(&["deals", "--limit", "5", "--all", "--format", "json"]);
    let ranked: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ranked = ranked.as_array().unwrap();
    assert_eq!(ranked.len(), 5);
    let value = |d: &serde_json::Value| d["value_at_risk"].as_f64().unwrap();
    assert!(
        ranked.windows(2).all(|w| value(&w[0]) >= value(&w[1])),
        "{ranked:?}"
    );
    assert!(
        ranked
            .iter()
            .any(|d| !d["warnings"].as_array().unwrap().is_empty())
    );

    let bad = risk(&["evaluate", "--split", "1.5"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad)
            .contains("--split: expected the share of closed deals to learn from, between 0 and 1"),
        "{}",
        stderr(&bad)
    );
}

/// Issue 23: into a database whose playbooks run, an import is history — no rule acts on its
/// events — and says so; the rules then wait on the pipeline as it stands, each watched by the
/// storm guard, and one that would act on more records at once than its limit is held.
#[test]
fn an_import_into_running_playbooks_is_history_and_the_guard_holds_the_rush() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    write(
        &playbooks,
        "p.yaml",
        "playbook: p\nowner: omar@acme.example\nrules:\n  - id: quiet\n    why: Quiet deals need a nudge.\n    when: { quiet_for: 1d }\n    then:\n      - alert: { to: deal.owner, text: quiet }\n  - id: welcome\n    why: New deals get a task.\n    when: { event: deal.created }\n    then:\n      - task: { assignee: deal.owner, title: Say hello }\n",
    );
    let with_playbooks = |args: &[&str]| {
        let mut cmd = crate::bin();
        cmd.args(["--database", &db])
            .args(args)
            .env("PIPEWRIGHT_ENGINE__PLAYBOOKS", &playbooks)
            .env("PIPEWRIGHT_ENGINE__STORM_LIMIT", "2");
        cmd
    };
    // A server ran these playbooks: they are published in the database.
    drop(crate::Server::spawn(with_playbooks(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
    ])));
    let events: String = (0..5)
        .map(|d| {
            format!(
                "{{\"type\":\"deal.created\",\"source\":\"crm\",\"source_id\":\"{d}\",\"occurred_at\":\"2026-11-01T09:00:00Z\",\"deal\":\"D-{d}\",\"data\":{{\"owner\":\"sam@acme.example\"}}}}\n"
            )
        })
        .collect();
    let file = write(dir.path(), "e.ndjson", &events);
    let out = with_playbooks(&["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("imported 5"), "{text}");
    assert!(
        text.contains("The events are history: no rule acted on them"),
        "{text}"
    );
    assert!(text.contains("wait on 5 deals and leads"), "{text}");
    assert!(
        text.contains("quiet on 5 (held for approval: over its limit of 2 within an hour)"),
        "{text}"
    );
    // No rule acted: the outbox is empty; the quiet rule's storm holds, the welcome rule is
    // only watched.
    let out = with_playbooks(&["outbox", "list"]).output().unwrap();
    assert!(!stdout(&out).contains("welcome"), "{}", stdout(&out));
    let out = with_playbooks(&["storms", "list", "--status", "holding"])
        .output()
        .unwrap();
    let holding = stdout(&out);
    assert_eq!(holding.lines().count(), 1, "{holding}");
    assert!(
        holding.contains("quiet") && holding.contains("records were imported"),
        "{holding}"
    );
    let id = holding.split_whitespace().next().unwrap();
    let out = with_playbooks(&["storms", "discard", id, "--by", "omar@acme.example"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("discarded by omar@acme.example"),
        "{}",
        stdout(&out)
    );
}

/// Issue 24: the documented way to stop the rules on purpose, and to start them again.
#[test]
fn rules_are_switched_off_and_on_by_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    assert!(run(&["--database", &db, "migrate"]).status.success());
    let status = run(&["--database", &db, "rules", "status"]);
    assert_eq!(stdout(&status), "rules: on\n", "{}", stderr(&status));
    let off = run(&[
        "--database",
        &db,
        "rules",
        "off",
        "--by",
        "maya@acme.example",
        "--reason",
        "moving CRM",
    ]);
    assert!(off.status.success(), "{}", stderr(&off));
    let status = stdout(&run(&["--database", &db, "rules", "status"]));
    assert!(
        status.starts_with("rules: switched off by maya@acme.example at ")
            && status.ends_with(" UTC: moving CRM\n"),
        "{status}"
    );
    let on = run(&[
        "--database",
        &db,
        "rules",
        "on",
        "--by",
        "omar@acme.example",
    ]);
    assert!(
        stdout(&on).starts_with("rules: on, switched back on by omar@acme.example at "),
        "{}",
        stderr(&on)
    );
}
