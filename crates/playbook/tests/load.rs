//! Loading playbooks: the repository's examples compile; every kind of mistake is reported with
//! its file, line and column, all of them in one run.

use std::path::{Path, PathBuf};

use playbook::{
    Action, AssetChoice, Diagnostic, Engagement, Exit, Reentry, Span, StepKind, Target, Targets,
    TaskKind, Trigger, Wait, load_dir, load_dir_with, load_files,
};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks")
}

fn check(text: &str) -> Vec<Diagnostic> {
    load_files(&[(PathBuf::from("p.yaml"), text.to_owned())]).diagnostics
}

fn lines(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(ToString::to_string).collect()
}

#[test]
fn the_example_playbooks_compile() {
    let loaded = load_dir(&examples());
    assert!(
        loaded.diagnostics.is_empty(),
        "{:#?}",
        lines(&loaded.diagnostics)
    );
    let set = loaded.set.unwrap();
    assert_eq!(set.version.len(), 12);
    let founder = set
        .playbooks
        .iter()
        .find(|p| p.name == "founder-rescues")
        .unwrap();
    let rule = |id: &str| founder.rules.iter().find(|r| r.id == id).unwrap();
    assert!(
        matches!(rule("quiet-after-enthusiasm").trigger, Trigger::QuietFor(s) if s.0 == 5 * 86_400_000)
    );
    assert_eq!(
        rule("quiet-after-enthusiasm").reentry,
        Reentry::OncePerStage
    );
    assert!(rule("quiet-after-enthusiasm").condition.is_some());
    assert_eq!(
        rule("pricing-objection").actions,
        [Action::SendAsset {
            asset: AssetChoice::BestFor("pricing".into()),
            to: Target::PrimaryContact,
            use_case: Some("pricing".into()),
        }]
    );
    assert!(
        matches!(&rule("stuck-in-legal").trigger, Trigger::InStageFor { stage, .. } if stage.as_str() == "legal")
    );
    assert_eq!(rule("stuck-in-legal").covers, ["legal-stall"]);
    assert_eq!(rule("stuck-in-legal").location.line, 44);
}

#[test]
fn the_version_changes_with_the_content() {
    let text = std::fs::read_to_string(examples().join("lead-follow-up.yaml")).unwrap();
    let a = load_files(&[(PathBuf::from("a.yaml"), text.clone())])
        .set
        .unwrap()
        .version;
    let b = load_files(&[(PathBuf::from("a.yaml"), text.replace("30d", "31d"))])
        .set
        .unwrap()
        .version;
    assert_ne!(a, b);
}

const HEADER: &str = "playbook: p\nowner: o\nstages: [demo, legal]\n";

#[test]
fn yaml_syntax_and_unknown_keys_are_located() {
    let d = check("playbook: p\nowner: o\nrules: [\n");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].column), (3, 8), "{d:?}");
    assert!(d[0].message.contains("unclosed"), "{d:?}");
    let d = check("playbook: p\nowner: [o]\n");
    assert_eq!((d[0].line, d[0].column), (2, 8), "{d:?}");
    let d = check(&format!(
        "{HEADER}rules:\n  - id: r\n    why: w\n    whn: {{ quiet_for: 5d }}\n    then: []\n"
    ));
    assert_eq!((d[0].line, d[0].column), (7, 5), "{d:?}");
    assert!(d[0].message.contains("unknown field `whn`"), "{d:?}");
    let d = check(&format!(
        "{HEADER}rules:\n  - id: r\n    why: w\n    when: {{ quiet_for: 5d }}\n    then:\n      - explode: x\n"
    ));
    assert!(d[0].message.contains("unknown variant `explode`"), "{d:?}");
    assert_eq!(d[0].line, 9);
}

#[test]
fn every_mistake_in_a_file_is_reported_in_one_run() {
    let text = format!(
        "{HEADER}rules:
  - id: a
    why: w
    when: {{ quiet_for: 5 days }}
    then:
      - start_sequence: nope
  - id: a
    why: w
    when: {{ in_stage_for: {{ stage: legl, longer_than: 10d }} }}
    if: deal.stgae == 'legal' && deal.amount >
    then:
      - alert: {{ to: the-boss, text: hi }}
      - send_asset: {{ asset: missing }}
  - id: c
    why: w
    when: {{ event: objection.rased }}
    then:
      - webhook: {{ url: ftp://x }}
  - id: d
    why: w
    when: {{ event: objection.raised }}
    if: event.knd == 'pricing'
    then:
      - escalate: {{ to: role:vp-sales, reason: r, after: soon }}
"
    );
    let d = lines(&check(&text));
    let expect = [
        "p.yaml:10:9: rule id \"a\" is already used at p.yaml:5",
        "p.yaml:7:24: \"5 days\" is not a duration",
        "p.yaml:9:25: unknown sequence \"nope\"",
        "p.yaml:12:36: unknown stage \"legl\"",
        "p.yaml:13:47: condition: Syntax error",
        "p.yaml:15:22: \"the-boss\" is not a recipient",
        "p.yaml:16:30: unknown asset \"missing\"",
        "p.yaml:19:20: unknown event type \"objection.rased\"",
        "p.yaml:21:25: \"ftp://x\" is not an http(s) URL",
        "p.yaml:25:15: condition: `event` has no field `knd` (did you mean `kind`?)",
        "p.yaml:27:25: \"role:vp-sales\" is not a recipient",
        "p.yaml:27:58: \"soon\" is not a duration",
    ];
    for e in expect {
        assert!(
            d.iter().any(|l| l.starts_with(e)),
            "missing {e:?} in\n{d:#?}"
        );
    }
    assert!(
        !d.iter().any(|l| l.contains("stgae") && !l.contains("13:")),
        "{d:#?}"
    );
}

#[test]
fn a_condition_error_points_into_the_expression() {
    let text = format!(
        "{HEADER}rules:\n  - id: r\n    why: w\n    when: {{ quiet_for: 5d }}\n    if: deal.amount > 5 && deal.stgae == 'x'\n    then:\n      - alert: {{ to: deal.owner, text: hi }}\n"
    );
    let d = check(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    // The field `stgae` starts at column 33 of line 8 (the scalar starts at column 9).
    assert_eq!((d[0].line, d[0].column), (8, 33), "{d:?}");
    assert!(d[0].message.contains("did you mean `stage`"), "{d:?}");
    let quoted = text.replace(
        "if: deal.amount > 5 && deal.stgae == 'x'",
        "if: \"deal.amount > 5 && deal.stgae == 'x'\"",
    );
    assert_eq!(check(&quoted)[0].column, 34);
}

#[test]
fn rules_see_only_their_context() {
    let base = format!(
        "{HEADER}rules:\n  - id: r\n    why: w\n    when: {{ quiet_for: 5d }}\n    if: COND\n    then:\n      - alert: {{ to: deal.owner, text: hi }}\n"
    );
    // `event` exists only for event triggers; lead rules see `lead`, not `deal`.
    assert!(
        check(&base.replace("COND", "event.kind == 'x'"))[0]
            .message
            .contains("unknown name `event`")
    );
    let lead = base
        .replace("    when:", "    record: lead\n    when:")
        .replace("COND", "deal.amount > 1")
        .replace("deal.owner", "lead.owner");
    assert!(
        check(&lead)[0].message.contains("unknown name `deal`"),
        "{:?}",
        check(&lead)
    );
    assert!(
        check(&base.replace(
            "COND",
            "deal.fields.budget_confirmed == true && now > deal.created_at"
        ))
        .is_empty()
    );
}

/// Issue 23: a warning is reported with the set, which loads; only errors keep it out.
#[test]
fn warnings_are_reported_beside_a_set_that_loads() {
    let text = format!(
        "{HEADER}rules:\n  - id: r\n    why: w\n    when: {{ quiet_for: 5d }}\n    if: deal.fields.seats > 10\n    then:\n      - alert: {{ to: deal.owner, text: hi }}\n"
    );
    let loaded = load_files(&[(PathBuf::from("p.yaml"), text)]);
    assert!(loaded.set.is_some(), "{:?}", lines(&loaded.diagnostics));
    assert_eq!(loaded.errors(), 0);
    assert_eq!(
        lines(&loaded.diagnostics),
        [
            "p.yaml:8:21: warning: condition: `deal.fields.seats` is null on a deal without it, and this comparison is then false; test `has(deal.fields.seats)` to say what such a deal gets"
        ]
    );
}

/// Issue 23: two files' rules that one event triggers and that move the deal to different
/// stages conflict, reported at the later one's action with the other's place; `priority:`
/// orders them (0 unless given; a first-touch SLA's rules rank as their rule) and the set loads.
#[test]
fn conflicting_rules_are_reported_across_files_until_a_priority_orders_them() {
    let a = "playbook: a\nowner: o\nstages: [demo, legal]\nrules:\n  - id: to-demo\n    why: w\n    when: { event: meeting.held }\n    then:\n      - set_stage: demo\n";
    let b = "playbook: b\nowner: o\nrules:\n  - id: to-legal\n    why: w\n    when: { event: meeting.held }\n    then:\n      - set_stage: legal\n      - assign_owner: { team: [ana], first_touch: { within: 4h, reassign: true } }\n";
    let load = |a: &str, b: &str| {
        load_files(&[
            (PathBuf::from("a.yaml"), a.into()),
            (PathBuf::from("b.yaml"), b.into()),
        ])
    };
    let loaded = load(a, b);
    assert!(loaded.set.is_none());
    assert_eq!(
        lines(&loaded.diagnostics),
        [
            "b.yaml:8:9: conflict: rule \"to-demo\" (a.yaml:9:9) moves the deal to demo and this rule to legal, both on event meeting.held, and both can act: give the one that should win a higher `priority:`"
        ]
    );
    let ordered = load(a, &b.replace("    then:", "    priority: 1\n    then:"));
    assert!(
        ordered.diagnostics.is_empty(),
        "{:?}",
        lines(&ordered.diagnostics)
    );
    let set = ordered.set.unwrap();
    let priorities: Vec<(&str, i32)> = set
        .playbooks
        .iter()
        .flat_map(|p| &p.rules)
        .map(|r| (r.id.as_str(), r.priority))
        .collect();
    assert_eq!(
        priorities,
        [("to-demo", 0), ("to-legal", 1), ("to-legal-first-touch", 1)]
    );
    // Conditions check cannot weigh: a warning, and the set loads.
    let unsure = load(
        &a.replace("    then:", "    if: deal.amount < 2\n    then:"),
        &b.replace("    then:", "    if: deal.amount > 5\n    then:"),
    );
    assert_eq!(unsure.errors(), 0, "{:?}", lines(&unsure.diagnostics));
    assert_eq!(unsure.diagnostics.len(), 1);
    assert!(unsure.set.is_some());
}

#[test]
fn missing_folders_and_empty_folders_are_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    let d = load_dir(dir.path()).diagnostics;
    assert!(d[0].message.contains("no playbook files"), "{d:?}");
    let d = load_dir(&dir.path().join("nope")).diagnostics;
    assert!(d[0].message.contains("cannot read the folder"), "{d:?}");
}

#[test]
fn names_are_shared_across_files_and_duplicates_caught() {
    let a = "playbook: a\nowner: o\nstages: [demo]\nsequences:\n  s: { steps: [{ wait: 1d }] }\nassets:\n  x: { use_cases: [pricing] }\n";
    let b = "playbook: b\nowner: o\nrules:\n  - id: r\n    why: w\n    when: { in_stage_for: { stage: demo, longer_than: 1d } }\n    then:\n      - start_sequence: s\n      - send_asset: { use_case: pricing }\n";
    let loaded = load_files(&[
        (PathBuf::from("a.yaml"), a.into()),
        (PathBuf::from("b.yaml"), b.into()),
    ]);
    assert!(
        loaded.diagnostics.is_empty(),
        "{:?}",
        lines(&loaded.diagnostics)
    );
    let twice = load_files(&[
        (PathBuf::from("a.yaml"), a.into()),
        (PathBuf::from("c.yaml"), a.into()),
    ]);
    let d = lines(&twice.diagnostics);
    assert!(
        d.iter()
            .any(|l| l.contains("playbook \"a\" is also defined in a.yaml")),
        "{d:?}"
    );
    assert!(
        d.iter().any(|l| l.contains("asset \"x\" is defined twice")),
        "{d:?}"
    );
    assert!(twice.set.is_none());
}

#[test]
fn the_json_schema_describes_the_file_strictly() {
    let schema = playbook::json_schema();
    let text = schema.to_string();
    assert_eq!(schema["title"], "pipewright playbook");
    assert!(schema["properties"]["rules"].is_object(), "{text}");
    assert_eq!(
        schema["additionalProperties"], false,
        "unknown keys are refused"
    );
    let defs = &schema["$defs"];
    assert_eq!(defs["Rule"]["additionalProperties"], false);
    assert!(
        defs["Rule"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "why")
    );
    for action in ["start_sequence", "send_asset", "escalate", "webhook"] {
        assert!(
            text.contains(&format!("\"{action}\"")),
            "{action} missing from the schema"
        );
    }
    assert!(defs["When"]["properties"]["quiet_for"].is_object());
    assert_eq!(defs["Rule"]["properties"]["priority"]["type"][0], "integer");
}

#[test]
fn schedules_compile_and_their_errors_point_into_the_expression() {
    let base = format!(
        "{HEADER}rules:\n  - id: r\n    why: w\n    when: {{ schedule: {{ cron: \"CRON\", timezone: ZONE }} }}\n    then:\n      - alert: {{ to: deal.owner, text: hi }}\n"
    );
    let good = base
        .replace("CRON", "0 9 * * MON-FRI")
        .replace("ZONE", "America/New_York");
    let loaded = load_files(&[(PathBuf::from("p.yaml"), good)]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let rule = &loaded.set.unwrap().playbooks[0].rules[0];
    let Trigger::Schedule(s) = &rule.trigger else {
        panic!("{:?}", rule.trigger)
    };
    assert_eq!(
        (s.expression(), s.zone()),
        ("0 9 * * MON-FRI", "America/New_York")
    );
    assert_eq!(
        rule.trigger.to_string(),
        "schedule \"0 9 * * MON-FRI\" in America/New_York"
    );

    // The hour 25 is at offset 2 of the expression; the scalar's quote is at column 31.
    let d = check(&base.replace("CRON", "0 25 * * *").replace("ZONE", "UTC"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].column), (7, 34), "{d:?}");
    assert!(
        d[0].message.starts_with("cron: \"25\" is not a valid hour"),
        "{d:?}"
    );
    // An unknown zone points at the zone.
    let d = check(
        &base
            .replace("CRON", "@daily")
            .replace("ZONE", "Mars/Olympus"),
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].column, 51, "{d:?}");
    assert!(
        d[0].message.contains("unknown time zone \"Mars/Olympus\""),
        "{d:?}"
    );
}

/// The broken fixtures: every kind of mistake, each reported once with its position, all in one
/// run, against a configuration with the chat channel `sales`. `UPDATE_EXPECT=1` rewrites
/// `tests/broken/expected.txt`.
#[test]
fn the_broken_fixtures_report_every_mistake_precisely() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let targets = Targets {
        chat_channels: Some(["sales".to_owned()].into()),
    };
    let loaded = load_dir_with(&dir, &targets);
    assert!(loaded.set.is_none());
    let prefix = format!("{}/", dir.display());
    let got: String = lines(&loaded.diagnostics)
        .iter()
        .map(|l| l.replace(&prefix, "") + "\n")
        .collect();
    let path = dir.join("expected.txt");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    assert_eq!(got, std::fs::read_to_string(&path).unwrap_or_default());
}

#[test]
fn sequences_compile_with_their_steps_resolved() {
    let text = r#"playbook: p
owner: o
sequences:
  cadence:
    goal: deal.stage == "negotiation"
    exit_on: [reply, bounce]
    concurrent: true
    steps:
      - email: { template: a }
      - wait: 2d12h
      - branch: { if: no_reply, goto: call }
      - email: { variants: [a, b] }
      - wait: until tue 09:30
      - wait: until friday
      - id: call
        task: { assignee: deal.owner, title: "Call {{ deal.name }}", kind: call, due: 1d }
templates:
  a: { subject: A, text: A. }
  b: { subject: B, text: B. }
"#;
    let loaded = load_files(&[(PathBuf::from("p.yaml"), text.into())]);
    assert!(
        loaded.diagnostics.is_empty(),
        "{:?}",
        lines(&loaded.diagnostics)
    );
    let set = loaded.set.unwrap();
    let q = &set.playbooks[0].sequences[0];
    assert_eq!(q.name, "cadence");
    assert_eq!(q.record, domain::RecordKind::Deal);
    assert!(q.goal.is_some() && q.concurrent && !q.account_wide_exit);
    assert_eq!(q.exits, vec![Exit::Reply, Exit::Bounce]);
    let ids: Vec<&str> = q.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "step-1", "step-2", "step-3", "step-4", "step-5", "step-6", "call"
        ]
    );
    let kinds: Vec<&StepKind> = q.steps.iter().map(|s| &s.kind).collect();
    assert_eq!(
        kinds[0],
        &StepKind::Email {
            variants: vec!["a".into()]
        }
    );
    assert_eq!(
        kinds[1],
        &StepKind::Wait(Wait::For(Span(60 * 60 * 60 * 1000)))
    );
    assert_eq!(
        kinds[2],
        &StepKind::Branch {
            on: Engagement::NoReply,
            goto: 6
        }
    );
    assert_eq!(
        kinds[3],
        &StepKind::Email {
            variants: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(
        kinds[4],
        &StepKind::Wait(Wait::Until {
            weekday: Some(jiff::civil::Weekday::Tuesday),
            time: Some(jiff::civil::time(9, 30, 0, 0)),
        })
    );
    assert_eq!(
        kinds[5],
        &StepKind::Wait(Wait::Until {
            weekday: Some(jiff::civil::Weekday::Friday),
            time: None,
        })
    );
    assert!(matches!(
        kinds[6],
        StepKind::Task {
            assignee: playbook::Target::Owner,
            kind: TaskKind::Call,
            due: Some(Span(86_400_000)),
            ..
        }
    ));
    // Exits default to all of them.
    let plain = text.replace("    exit_on: [reply, bounce]\n", "");
    let set = load_files(&[(PathBuf::from("p.yaml"), plain)]).set.unwrap();
    assert_eq!(set.playbooks[0].sequences[0].exits, Exit::ALL.to_vec());
}

#[test]
fn a_sequence_window_takes_its_holidays_from_the_calendars() {
    let set = load_dir(&examples()).set.unwrap();
    let q = set
        .playbooks
        .iter()
        .flat_map(|p| &p.sequences)
        .find(|q| q.name == "reengage-with-proof")
        .unwrap();
    let window = q.window.as_ref().unwrap();
    assert_eq!(
        window.to_string(),
        "mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin except 5 holidays"
    );
    // Christmas Eve 2026 is a Thursday and a holiday: a step due then goes on Monday the
    // 28th (the 25th, a Friday, is one too) at 09:00 in Berlin.
    assert_eq!(
        window.next_opening("2026-12-24T10:00:00Z".parse().unwrap()),
        Some("2026-12-28T08:00:00Z".parse().unwrap())
    );
}

#[test]
fn ab_variants_are_assigned_per_contact_evenly_and_alike_every_time() {
    let text = "playbook: p\nowner: o\nsequences:\n  s:\n    steps:\n      - email: { variants: [a, b] }\n      - wait: 1d\ntemplates:\n  a: { subject: A, text: A. }\n  b: { subject: B, text: B. }\n";
    let set = load_files(&[(PathBuf::from("p.yaml"), text.into())])
        .set
        .unwrap();
    let q = &set.playbooks[0].sequences[0];
    let (email, wait) = (&q.steps[0], &q.steps[1]);
    let picks: Vec<&str> = (0..10_000)
        .map(|i| q.template_for(email, &format!("C-{i}")).unwrap())
        .collect();
    let a = picks.iter().filter(|p| **p == "a").count();
    assert!((4_700..=5_300).contains(&a), "{a} of 10,000 got variant a");
    // The same contact always gets the same variant.
    for (i, pick) in picks.iter().enumerate().take(100) {
        assert_eq!(q.template_for(email, &format!("C-{i}")), Some(*pick));
    }
    assert_eq!(q.template_for(wait, "C-1"), None);
}

/// Issue 8: a decision tree walks from its start, one answer at a time, to a recommendation;
/// answers become typed field values; a wrong answer names what the question takes.
#[test]
fn the_qualification_tree_walks_to_a_recommendation_with_typed_fields() {
    let set = load_dir(&examples()).set.unwrap();
    let tree = set.tree("qualification-call").unwrap();
    assert_eq!(
        tree.questions
            .iter()
            .map(|q| q.id.as_str())
            .collect::<Vec<_>>(),
        ["budget", "champion", "timeline", "budget_owner"],
        "in the order a walk meets them"
    );
    let answers = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(q, a)| (q.to_string(), a.to_string()))
            .collect()
    };
    // Nothing answered: the first question, with its choices.
    let walk = tree.walk(&answers(&[])).unwrap();
    assert!(!walk.complete());
    assert_eq!(walk.next.as_ref().unwrap().id, "budget");
    // Part of the way.
    let walk = tree
        .walk(&answers(&[("budget", "yes, APPROVED ")]))
        .unwrap();
    assert_eq!(walk.next.as_ref().unwrap().id, "champion");
    assert_eq!(
        walk.path[0].value,
        serde_json::json!(true),
        "a YAML boolean stays one"
    );
    // The whole way.
    let walk = tree
        .walk(&answers(&[
            ("budget", "Yes, approved"),
            ("champion", "Dana Whitfield (VP Ops)"),
            ("timeline", "This quarter"),
        ]))
        .unwrap();
    assert!(walk.complete());
    assert_eq!(
        walk.recommendation.as_deref(),
        Some("Move the deal to proposal and book the review with the champion.")
    );
    assert_eq!(
        serde_json::Value::Object(walk.fields()),
        serde_json::json!({"budget_confirmed": true, "champion": "Dana Whitfield (VP Ops)", "go_live": "this_quarter"})
    );
    // The other branch ends sooner.
    let walk = tree
        .walk(&answers(&[
            ("budget", "Being approved"),
            ("budget_owner", "CFO, on the 30th"),
        ]))
        .unwrap();
    assert!(walk.complete());
    assert_eq!(walk.fields()["budget_confirmed"], serde_json::json!(false));
    // Mistakes, named by question.
    let err = tree.walk(&answers(&[("budget", "maybe")])).unwrap_err();
    assert_eq!(err.question, "budget");
    assert_eq!(
        err.message,
        "\"maybe\" is not an answer to \"Is there budget approved for this quarter?\"; expected one of \"Yes, approved\", \"Being approved\", \"No budget\""
    );
    let err = tree
        .walk(&answers(&[("budget", "No budget"), ("champion", "Dana")]))
        .unwrap_err();
    assert_eq!(
        (err.question.as_str(), err.message.as_str()),
        ("champion", "these answers do not lead to this question")
    );
    let err = tree.walk(&answers(&[("colour", "red")])).unwrap_err();
    assert_eq!(
        err.message,
        "the tree \"qualification-call\" has no such question"
    );
    let err = tree
        .walk(&answers(&[("budget", "Yes, approved"), ("champion", "  ")]))
        .unwrap_err();
    assert_eq!(err.message, "expected an answer, not nothing");
}

#[test]
fn a_tree_input_parses_numbers_and_dates() {
    let text = r#"
playbook: p
owner: o
decision_trees:
  sizing:
    title: Sizing
    start: seats
    questions:
      seats: { ask: How many seats?, field: seats, input: number, next: start }
      start: { ask: When do they start?, field: start_date, input: date, recommend: Size the proposal. }
"#;
    let loaded = load_files(&[(PathBuf::from("p.yaml"), text.to_owned())]);
    assert!(
        loaded.diagnostics.is_empty(),
        "{:?}",
        lines(&loaded.diagnostics)
    );
    let set = loaded.set.unwrap();
    let tree = set.tree("sizing").unwrap();
    let walk = |seats: &str, date: &str| {
        tree.walk(
            &[("seats", seats), ("start", date)]
                .iter()
                .map(|(q, a)| (q.to_string(), a.to_string()))
                .collect(),
        )
    };
    let ok = walk("40", "2027-01-15").unwrap();
    assert_eq!(
        serde_json::Value::Object(ok.fields()),
        serde_json::json!({"seats": 40, "start_date": "2027-01-15"})
    );
    assert_eq!(
        walk("12.5", "2027-01-15").unwrap().fields()["seats"],
        serde_json::json!(12.5)
    );
    assert_eq!(
        walk("forty", "2027-01-15").unwrap_err().message,
        "\"forty\" is not a number"
    );
    assert_eq!(
        walk("40", "next week").unwrap_err().message,
        "\"next week\" is not a date (YYYY-MM-DD)"
    );
}

/// Issue 8: the handbook holds every rule's why (generated rules too), every gate criterion,
/// every objection script, and every decision tree's questions, answers and recommendations,
/// in Markdown and in HTML (escaped).
#[test]
fn the_handbook_holds_every_why_and_every_tree() {
    let set = load_dir(&examples()).set.unwrap();
    let md = playbook::handbook::markdown(&set);
    let html = playbook::handbook::html(&set);
    let escaped = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    };
    let mut expected: Vec<String> = Vec::new();
    for p in &set.playbooks {
        for r in &p.rules {
            expected.push(r.why.clone());
            expected.push(r.id.clone());
        }
        for g in &p.gates {
            expected.push(g.why.clone());
            expected.extend(g.criteria.iter().map(|c| c.name.clone()));
        }
        for o in &p.objections {
            expected.push(o.script.trim().replace('\n', " "));
        }
        for t in &p.trees {
            expected.push(t.title.clone());
            for q in &t.questions {
                expected.push(q.ask.clone());
                match &q.reply {
                    playbook::Reply::Choice { answers } => {
                        for a in answers {
                            expected.push(format!("“{}”", a.answer));
                            if let playbook::Outcome::Recommend(r) = &a.then {
                                expected.push(r.clone());
                            }
                        }
                    }
                    playbook::Reply::Input { then, .. } => {
                        if let playbook::Outcome::Recommend(r) = then {
                            expected.push(r.clone());
                        }
                    }
                }
            }
        }
    }
    assert!(
        expected.len() > 30,
        "the examples have rules, a gate, scripts and a tree: {}",
        expected.len()
    );
    for text in &expected {
        assert!(md.contains(text.as_str()), "markdown lacks {text:?}");
        assert!(html.contains(&escaped(text)), "html lacks {text:?}");
    }
    // The generated rules are there with their own why.
    assert!(md.contains("**gate-proposal** (qualification)"));
    // The proposal gate is under its stage, before what the system does there.
    let stage = md.find("### Stage: proposal").unwrap();
    let gate = md.find("**Before a deal may enter proposal**").unwrap();
    let next_stage = md.find("### Stage: negotiation").unwrap();
    assert!(stage < gate && gate < next_stage);
    // One page, nothing fetched from elsewhere.
    assert!(html.starts_with("<!doctype html>"));
    assert!(!html.contains("http://") && !html.contains("<script") && !html.contains("<link"));
}
