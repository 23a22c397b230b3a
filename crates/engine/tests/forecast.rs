//! Issue 23: what a playbook set would do on the pipeline as it stands — records acted on at
//! once, day by day ahead, the busiest hour — and which rules changed between two sets.

use std::path::PathBuf;
use std::sync::Arc;

use domain::{EventId, Record, RecordId, RecordKey, RecordKind, Timestamp};
use engine::forecast::{Change, Forecaster, changes};
use engine::{Engine, Memory};

fn engine(text: &str) -> Engine {
    let loaded = playbook::load_files(&[(PathBuf::from("p.yaml"), text.to_owned())]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    Engine::new(Arc::new(loaded.set.unwrap()))
}

const SET: &str = r#"
playbook: p
owner: o
stages: [demo, proposal]
rules:
  - id: quiet
    why: Quiet deals need a nudge.
    when: { quiet_for: 3d }
    if: deal.stage == "demo"
    then:
      - alert: { to: deal.owner, text: quiet }
      - task: { assignee: deal.owner, title: Call }
  - id: review
    why: Every morning, proposals are reviewed.
    when: { schedule: { cron: "0 9 * * *", timezone: UTC } }
    if: deal.stage == "proposal"
    then:
      - task: { assignee: deal.owner, title: Review }
  - id: noted
    why: Notes are read.
    when: { event: note.added }
    then:
      - alert: { to: deal.owner, text: noted }
"#;

/// A deal created at `at` in `stage`, quiet since.
fn deal(id: &str, at: &str, stage: &str) -> Record {
    let key = RecordKey::new(RecordKind::Deal, RecordId::parse(id.to_owned()).unwrap());
    let text = format!(
        r#"{{"type":"deal.created","source":"t","source_id":"{id}","occurred_at":"{at}","deal":"{id}","data":{{"stage":"{stage}","owner":"sam"}}}}"#
    );
    let new = wire::parse_one(&text).unwrap();
    let at = new.occurred_at;
    let mut record = Record::empty(&key);
    record.apply(&new.stamp(EventId(uuid::Uuid::nil()), at));
    record
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_forecast_counts_records_at_once_by_day_and_in_the_busiest_hour() {
    let engine = engine(SET);
    let now = ts("2026-11-20T12:00:00Z");
    let mut f = Forecaster::new(&engine, now, 7);
    // Two demo deals already quiet for days, one that turns quiet tomorrow at 10:00, and two
    // proposals reviewed every morning.
    f.add(&deal("D-1", "2026-11-10T09:00:00Z", "demo"), &Memory::new());
    f.add(&deal("D-2", "2026-11-12T09:00:00Z", "demo"), &Memory::new());
    f.add(&deal("D-3", "2026-11-18T10:00:00Z", "demo"), &Memory::new());
    f.add(
        &deal("D-4", "2026-11-01T09:00:00Z", "proposal"),
        &Memory::new(),
    );
    f.add(
        &deal("D-5", "2026-11-01T09:00:00Z", "proposal"),
        &Memory::new(),
    );
    let rules = f.finish();
    let quiet = rules.iter().find(|r| r.rule == "quiet").unwrap();
    assert_eq!(quiet.now, 2);
    assert_eq!(quiet.days, [1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(quiet.busiest_hour, 2);
    assert_eq!(quiet.actions["alert"], 3);
    assert_eq!(quiet.actions["task"], 3);
    assert_eq!(quiet.sample.len(), 2);
    // The schedule: both proposals every morning for seven days.
    let review = rules.iter().find(|r| r.rule == "review").unwrap();
    assert_eq!(review.now, 0);
    assert_eq!(review.days, [2; 7]);
    assert_eq!(review.busiest_hour, 2);
    let noted = rules.iter().find(|r| r.rule == "noted").unwrap();
    assert!(!noted.timed);
    assert_eq!((noted.now, noted.busiest_hour), (0, 0));
}

#[test]
fn an_instance_already_decided_is_not_forecast_again() {
    let engine = engine(SET);
    let now = ts("2026-11-20T12:00:00Z");
    let record = deal("D-1", "2026-11-10T09:00:00Z", "demo");
    // The quiet instance came due on the 13th and was decided then.
    let mut memory = Memory::new();
    for change in engine.arm(&record, &memory, now) {
        if let engine::TimerChange::Set(timer) = change
            && timer.rule == "quiet"
        {
            engine.on_timer(&timer, &record, &mut memory, timer.due);
        }
    }
    let mut f = Forecaster::new(&engine, now, 7);
    f.add(&record, &memory);
    let quiet = f.finish().into_iter().find(|r| r.rule == "quiet").unwrap();
    assert_eq!((quiet.now, quiet.days.iter().sum::<u64>()), (0, 0));
}

#[test]
fn changes_between_sets_say_what_reaches_further_and_what_only_acts_differently() {
    let old = engine(SET);
    let new = engine(
        &SET.replace("quiet_for: 3d", "quiet_for: 2d")
            .replace("title: Review", "title: Review it")
            .replace("Notes are read.", "Notes are always read.")
            .replace(
                "  - id: noted",
                "  - id: fresh\n    why: New.\n    when: { event: deal.created }\n    then:\n      - alert: { to: deal.owner, text: hi }\n  - id: noted",
            ),
    );
    let mut got = changes(Some(&old), &new);
    got.sort();
    assert_eq!(
        got,
        [
            ("fresh".to_owned(), Change::New),
            ("noted".to_owned(), Change::Same),
            ("quiet".to_owned(), Change::Reaches),
            ("review".to_owned(), Change::Acts),
        ]
    );
    let gone = changes(Some(&new), &old);
    assert!(gone.contains(&("fresh".to_owned(), Change::Removed)));
    // Without a set before, every rule is new.
    assert!(changes(None, &old).iter().all(|(_, c)| *c == Change::New));
}
