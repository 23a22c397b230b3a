//! `pipewright report heroics` and `pipewright suggest` on an imported history: what the
//! command reads from the database, range by range, is the history itself.

use domain::{EventId, Timestamp};
use heroics::{Automation, History, Options, Settings};
use testkit::history::{Company, generate};

use crate::{db_url, run, stderr, stdout, write};

#[test]
fn the_report_from_the_database_is_the_report_of_the_history_and_suggestions_load() {
    let company = Company {
        deals: 400,
        events_per_deal: 30,
        ..Company::default()
    };
    let (lines, planted) = generate(&company);
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let file = write(dir.path(), "history.ndjson", &lines.join("\n"));
    let import = run(&["--database", &db, "import", file.to_str().unwrap()]);
    assert!(import.status.success(), "{}", stderr(&import));

    // The same history folded in memory: every deal's events in order, nothing fired.
    let to = "2027-06-01T00:00:00Z";
    let until: Timestamp = to.parse().unwrap();
    let events: Vec<domain::Event> = lines
        .iter()
        .map(|l| {
            let new = wire::parse_one(l).unwrap();
            let at = new.occurred_at;
            new.stamp(EventId(Default::default()), at)
        })
        .collect();
    let history = History::from_events(&events, Settings::default(), until);
    let expected = heroics::report(&history, &Options::new(until), &Automation::default());
    assert!(expected.summary.interventions > 0);

    // `report heroics --to …` followed by `more` flags.
    let report = |more: &[&str]| {
        let mut args = vec!["--database", db.as_str(), "report", "heroics", "--to", to];
        args.extend_from_slice(more);
        run(&args)
    };
    let out = report(&["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // Both through the same text and parser, so shares compare to the last digit printed.
    let want: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
    for (section, value) in want.as_object().unwrap() {
        assert_eq!(&got[section], value, "{section}");
    }
    assert_eq!(
        got.as_object().unwrap().len(),
        want.as_object().unwrap().len()
    );

    // The table names the numbers; the CSV is one row per intervention.
    let table = stdout(&report(&[]));
    assert!(table.contains("went-quiet"), "{table}");
    let csv = stdout(&report(&["--format", "csv", "--section", "interventions"]));
    assert_eq!(
        csv.lines().count(),
        expected.interventions.len() + 1,
        "{csv}"
    );

    // The founder's rescues of quiet demos come back as a rule that loads.
    let out = run(&["--database", &db, "suggest", "--to", to]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = stdout(&out);
    let loaded = playbook::load_files(&[("suggested.yaml".into(), yaml.clone())]);
    let set = loaded
        .set
        .unwrap_or_else(|| panic!("{:?}\n{yaml}", loaded.diagnostics));
    let quiet = set.playbooks[0]
        .rules
        .iter()
        .find(|r| r.covers == ["went-quiet"] && r.trigger.to_string() == "quiet for 6d")
        .unwrap_or_else(|| panic!("no quiet-after-demo rule in\n{yaml}"));
    assert_eq!(
        quiet.condition.as_ref().unwrap().source,
        r#"deal.stage == "demo""#
    );
    let support = format!("# support: {} of", planted.founder_rescues);
    assert!(
        yaml.contains(&support),
        "{support} for {planted:?} in\n{yaml}"
    );
}

#[test]
fn a_bad_flag_is_named_and_nothing_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    for (args, flag) in [
        (&["report", "heroics", "--from", "last week"][..], "--from:"),
        (
            &["report", "heroics", "--merge-within", "2 days"],
            "--merge-within:",
        ),
        (&["report", "heroics", "--format", "xml"], "--format:"),
        (
            &["report", "heroics", "--format", "csv", "--section", "all"],
            "--section:",
        ),
        (&["suggest", "--format", "csv"], "--format:"),
        (&["suggest", "--person", " "], "--person:"),
    ] {
        let mut argv = vec!["--database", db.as_str()];
        argv.extend_from_slice(args);
        let out = run(&argv);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}
