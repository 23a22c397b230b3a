//! A backtest on a hand-built November where every number is known:
//!
//! | deal | events | pricing fires | quiet (5d) fires |
//! |---|---|---|---|
//! | D1 (sam) | created 2 Nov, pricing objection 3 Nov, maya logs a pricing intervention 5 Nov, won 13 Nov | 3 Nov | 10 Nov (activity moved it from 7 and 8 Nov) |
//! | D2 (sam) | created 2 Nov, pricing objection 10 Nov, lost 30 Nov | 10 Nov | 7 Nov, 15 Nov |
//! | D3 (sam) | created 2 Nov, maya's note 20 Nov (a key person on a quiet deal: went-quiet) | — | 7 Nov, 25 Nov |
//!
//! pricing: 2 firings on D1 and D2 (won 1, lost 1; D3 open among the others), lead times 10
//! and 20 days (median 15, p90 20), maya's pricing intervention came 2 days after its firing:
//! pre-empted 1 of 1. quiet: 5 firings on 3 deals, weeks of 2, 9 and 23 November (2, 2, 1),
//! lead times 3 (D1) and 23 (D2) days, maya's went-quiet touch on D3 came 13 days after the
//! 7 November firing: pre-empted 1 of 1.

use std::sync::Arc;

use domain::{Event, EventId, Timestamp};

const PLAYBOOK: &str = r#"
playbook: p
owner: o
stages: [demo, proposal]
rules:
  - id: pricing
    why: A pricing objection is a value question.
    covers: [pricing]
    when: { event: objection.raised }
    if: event.kind == "pricing"
    then:
      - alert: { to: deal.owner, text: "pricing" }
  - id: quiet
    why: Quiet deals need a nudge.
    covers: [went-quiet]
    when: { quiet_for: 5d }
    then:
      - alert: { to: deal.owner, text: "quiet" }
"#;

fn history() -> Vec<Event> {
    let lines = [
        r#"{"type":"person.created","source":"t","source_id":"p1","occurred_at":"2026-10-01T09:00:00Z","person":"maya","data":{"key_person":true}}"#,
        r#"{"type":"person.created","source":"t","source_id":"p2","occurred_at":"2026-10-01T09:00:00Z","person":"sam","data":{}}"#,
        r#"{"type":"deal.created","source":"t","source_id":"1","occurred_at":"2026-11-02T09:00:00Z","deal":"D1","data":{"owner":"sam","stage":"demo"}}"#,
        r#"{"type":"deal.created","source":"t","source_id":"2","occurred_at":"2026-11-02T09:00:00Z","deal":"D2","data":{"owner":"sam","stage":"demo"}}"#,
        r#"{"type":"deal.created","source":"t","source_id":"3","occurred_at":"2026-11-02T09:00:00Z","deal":"D3","data":{"owner":"sam","stage":"demo"}}"#,
        r#"{"type":"objection.raised","source":"t","source_id":"4","occurred_at":"2026-11-03T09:00:00Z","deal":"D1","data":{"kind":"pricing"}}"#,
        r#"{"type":"intervention.logged","source":"t","source_id":"5","occurred_at":"2026-11-05T09:00:00Z","deal":"D1","data":{"person":"maya","reason":"pricing"}}"#,
        r#"{"type":"objection.raised","source":"t","source_id":"6","occurred_at":"2026-11-10T09:00:00Z","deal":"D2","data":{"kind":"pricing"}}"#,
        r#"{"type":"deal.won","source":"t","source_id":"7","occurred_at":"2026-11-13T09:00:00Z","deal":"D1","data":{}}"#,
        r#"{"type":"note.added","source":"t","source_id":"8","occurred_at":"2026-11-20T09:00:00Z","deal":"D3","actor":{"person":"maya"},"data":{"text":"checking in"}}"#,
        r#"{"type":"deal.lost","source":"t","source_id":"9","occurred_at":"2026-11-30T09:00:00Z","deal":"D2","data":{}}"#,
    ];
    let mut events: Vec<Event> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let new = wire::parse_one(l).unwrap();
            let at = new.occurred_at;
            new.stamp(EventId(uuid_of(i)), at)
        })
        .collect();
    events.sort_by_key(|e| e.occurred_at);
    events
}

fn uuid_of(i: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(i as u128 + 1)
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn options() -> backtest::Options {
    backtest::Options {
        from: None,
        to: ts("2026-12-01T00:00:00Z"),
        within: 14 * 86_400_000,
    }
}

fn set() -> Arc<playbook::PlaybookSet> {
    let loaded = playbook::load_files(&[("p.yaml".into(), PLAYBOOK.into())]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    Arc::new(loaded.set.unwrap())
}

#[test]
fn every_number_of_the_backtest_is_the_one_worked_out() {
    let report = backtest::run(set(), &history(), &options());
    assert_eq!((report.events, report.timers, report.effects), (11, 5, 7));
    let rule = |id: &str| report.rules.iter().find(|r| r.rule == id).unwrap();

    let pricing = rule("pricing");
    assert_eq!(pricing.fired, 2);
    assert_eq!(pricing.records, ["deal:D1", "deal:D2"]);
    assert_eq!(
        (pricing.deals.won, pricing.deals.lost, pricing.deals.open),
        (1, 1, 0)
    );
    assert_eq!(
        (
            pricing.other_deals.won,
            pricing.other_deals.lost,
            pricing.other_deals.open
        ),
        (0, 0, 1)
    );
    assert_eq!(
        (pricing.lead_days_median, pricing.lead_days_p90),
        (Some(15.0), Some(20.0))
    );
    assert_eq!((pricing.preempted, pricing.covered_interventions), (1, 1));
    assert_eq!(
        pricing
            .per_week
            .iter()
            .map(|(w, n)| (w.as_str(), *n))
            .collect::<Vec<_>>(),
        [("2026-11-02", 1), ("2026-11-09", 1)]
    );

    let quiet = rule("quiet");
    assert_eq!(quiet.fired, 5);
    assert_eq!(
        quiet.records,
        ["deal:D2", "deal:D3", "deal:D1"],
        "in the order first fired on"
    );
    assert_eq!(
        (quiet.deals.won, quiet.deals.lost, quiet.deals.open),
        (1, 1, 1)
    );
    assert_eq!(
        quiet
            .per_week
            .iter()
            .map(|(w, n)| (w.as_str(), *n))
            .collect::<Vec<_>>(),
        [("2026-11-02", 2), ("2026-11-09", 2), ("2026-11-23", 1)]
    );
    assert_eq!(
        (quiet.lead_days_median, quiet.lead_days_p90),
        (Some(13.0), Some(23.0))
    );
    assert_eq!((quiet.preempted, quiet.covered_interventions), (1, 1));

    // A shorter window: maya's touch on D3 came 13 days after the firing, too late to count.
    let short = backtest::run(
        set(),
        &history(),
        &backtest::Options {
            within: 7 * 86_400_000,
            ..options()
        },
    );
    let quiet = short.rules.iter().find(|r| r.rule == "quiet").unwrap();
    assert_eq!((quiet.preempted, quiet.covered_interventions), (0, 1));
    // A period from 9 November: only the firings from then on.
    let later = backtest::run(
        set(),
        &history(),
        &backtest::Options {
            from: Some(ts("2026-11-09T00:00:00Z")),
            ..options()
        },
    );
    let pricing = later.rules.iter().find(|r| r.rule == "pricing").unwrap();
    assert_eq!((pricing.fired, pricing.covered_interventions), (1, 0));
}

#[test]
fn the_same_inputs_give_a_byte_identical_report() {
    let a = serde_json::to_string(&backtest::run(set(), &history(), &options())).unwrap();
    let b = serde_json::to_string(&backtest::run(set(), &history(), &options())).unwrap();
    assert_eq!(a, b);
    // Progress is told as events are replayed, ending at all of them.
    let mut told = Vec::new();
    let with = backtest::run_with(set(), &history(), &options(), &mut |n| told.push(n));
    assert_eq!(told, [11]);
    assert_eq!(serde_json::to_string(&with).unwrap(), a);
    let report = backtest::run(set(), &history(), &options());
    let table = backtest::table(&report);
    assert!(
        table.lines().any(|l| l.starts_with("pricing")
            && l.contains("1/1/0")
            && l.contains("15.0")
            && l.contains("1/1")),
        "{table}"
    );
    let csv = backtest::csv(&report);
    assert_eq!(
        csv.lines().nth(1),
        Some("p,pricing,2,2,1,1,0,0,0,1,15.00,20.00,1,1")
    );
}

/// `--compare`: the same history under a changed playbook — the quiet rule waits 10 days
/// instead of 5 and a new rule is added — rule by rule and record by record.
#[test]
fn two_playbook_versions_are_compared_rule_by_rule_and_record_by_record() {
    let changed = PLAYBOOK.replace("quiet_for: 5d", "quiet_for: 10d").replace(
        "rules:\n",
        "rules:\n  - id: won\n    why: A win is announced.\n    when: { event: deal.won }\n    then:\n      - alert: { to: channel:wins, text: \"won\" }\n",
    );
    let loaded = playbook::load_files(&[("p.yaml".into(), changed)]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let before = backtest::run(set(), &history(), &options());
    let after = backtest::run(Arc::new(loaded.set.unwrap()), &history(), &options());
    let changes = backtest::compare(&before, &after);
    // pricing fires alike and is left out. quiet at 10 days: D1 is won before, D2 goes quiet
    // from 10 Nov to its loss on the 30th (fires on the 20th), D3 from its creation to maya's
    // note on the 20th (the 12th), then after the note (the 30th).
    assert_eq!(changes.len(), 2, "{changes:?}");
    let quiet = changes.iter().find(|c| c.rule == "quiet").unwrap();
    assert_eq!((quiet.fired_before, quiet.fired_after), (Some(5), Some(3)));
    assert_eq!(quiet.removed, ["deal:D1"]);
    assert!(quiet.added.is_empty());
    let won = changes.iter().find(|c| c.rule == "won").unwrap();
    assert_eq!((won.fired_before, won.fired_after), (None, Some(1)));
    assert_eq!(won.added, ["deal:D1"]);
    let text = backtest::compare_table(&changes);
    assert!(text.contains("-deal:D1"), "{text}");
    assert_eq!(backtest::compare(&before, &before), []);
    assert_eq!(backtest::compare_table(&[]), "no rule fires differently\n");
}

/// The replay shards a backtest runs on (one per core) decide exactly what one replay decides,
/// in the same order: the demo company's year with the example playbooks, in 1, 2 and 3
/// shards.
#[test]
fn sharded_replays_decide_what_one_replay_decides_in_its_order() {
    let to = Timestamp::from_millis(1_796_083_200_000);
    let history = company::history(&company::Model::default(), to, 365);
    let events: Vec<Event> = history
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let new = wire::parse_one(l).unwrap();
            let at = new.occurred_at;
            new.stamp(EventId(uuid::Uuid::from_u128(i as u128 + 1)), at)
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
    let engine = engine::Engine::new(Arc::new(playbook::load_dir(&dir).set.unwrap()));
    let mut one = engine::replay::Replay::new(&engine);
    for e in &events {
        one.event(e);
    }
    one.advance(to);
    let expected: Vec<(Timestamp, engine::Effect)> =
        one.decided().map(|(at, e)| (at, e.clone())).collect();
    assert!(expected.len() > 200, "{} effects", expected.len());
    let rules: std::collections::BTreeSet<&str> =
        expected.iter().map(|(_, e)| e.rule.as_str()).collect();
    assert!(rules.len() >= 5, "{rules:?}");
    for shards in [1, 2, 3] {
        let mut told = Vec::new();
        let (decided, stats) =
            engine::replay::parallel(&engine, &events, to, shards, &mut |n| told.push(n));
        assert_eq!(decided, expected, "{shards} shards");
        assert_eq!(stats.events, one.stats().events);
        assert_eq!(stats.timers, one.stats().timers, "{shards} shards");
        assert!(told.windows(2).all(|w| w[0] < w[1]) && !told.is_empty());
    }
}

/// Issue 23: an effect overruled by a higher priority's write to the same stage changed nothing
/// on the deal, so it makes no firing; the report's effect count still holds it, as the outbox
/// does.
#[test]
fn an_overruled_effect_makes_no_firing() {
    let text = r#"
playbook: p
owner: o
stages: [demo, proposal]
rules:
  - id: pricing-to-proposal
    why: A pricing objection means the proposal is being read.
    priority: 1
    when: { event: objection.raised }
    if: event.kind == "pricing"
    then:
      - set_stage: proposal
  - id: objection-back-to-demo
    why: Any objection sends the deal back to the demo.
    when: { event: objection.raised }
    then:
      - set_stage: demo
"#;
    let loaded = playbook::load_files(&[(std::path::PathBuf::from("p.yaml"), text.into())]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let report = backtest::run(Arc::new(loaded.set.unwrap()), &history(), &options());
    let fired: Vec<(&str, u32)> = report
        .rules
        .iter()
        .map(|r| (r.rule.as_str(), r.fired))
        .collect();
    assert_eq!(
        fired,
        [("pricing-to-proposal", 2), ("objection-back-to-demo", 0)]
    );
    assert_eq!(report.effects, 4);
}
