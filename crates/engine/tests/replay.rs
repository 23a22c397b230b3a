//! Data-driven engine tests. Each folder under `tests/fixtures` holds a `playbook.yaml`, the
//! `events.jsonl` to replay and the `expected.txt` transcript of what the engine decided.
//! History is replayed in virtual time: due timers fire at their due time, in order, before the
//! next event; nothing sleeps. `UPDATE_EXPECT=1 cargo test -p engine` rewrites the transcripts.

mod common;

use common::deal_event;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use domain::{EventId, Record, RecordKey, RecordKind, Timestamp};
use engine::{Engine, Memory, TimerChange};

/// The transcript of a replay: each decided effect at the moment it was decided, then the
/// timers still waiting. Every idempotency key must be new.
fn transcript(r: &engine::replay::Replay<'_>) -> String {
    let mut keys = HashSet::new();
    let mut lines = Vec::new();
    for (at, e) in r.decided() {
        assert!(
            keys.insert(e.key.clone()),
            "idempotency key {} produced twice",
            e.key
        );
        let shadow = if e.shadow { " [shadow]" } else { "" };
        let overruled = e
            .overruled
            .as_ref()
            .map(|why| format!(" [{why}]"))
            .unwrap_or_default();
        let due = if e.due == at {
            String::new()
        } else {
            format!(" due {}", e.due)
        };
        let saw = if e.trace.saw.is_empty() {
            String::new()
        } else {
            format!(" saw {}", serde_json::to_string(&e.trace.saw).unwrap())
        };
        lines.push(format!(
            "{at} {} {} {:?}{due}{shadow}{overruled} — {}{saw}",
            e.record, e.rule, e.action, e.trace.trigger
        ));
    }
    lines.extend(
        r.waiting()
            .into_iter()
            .map(|t| format!("waiting: {} {} due {}", t.record, t.rule, t.due)),
    );
    lines.join("\n") + "\n"
}

/// A fixture folder's engine, events (in occurrence order) and the moment to replay until.
fn load(dir: &Path) -> (Engine, Vec<domain::Event>, Timestamp) {
    let loaded = playbook::load_dir(dir);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let engine = Engine::new(Arc::new(loaded.set.unwrap()));
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let mut events = Vec::new();
    let mut seen = HashSet::new();
    let mut until = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        if let Some(t) = line.strip_prefix("# until ") {
            until = Some(t.trim().parse::<Timestamp>().unwrap());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let new = wire::parse_one(line).unwrap_or_else(|p| panic!("line {}: {p}", i + 1));
        // The store de-duplicates by (source, source_id); so does the replay.
        if seen.insert((new.source.clone(), new.source_id.clone())) {
            let at = new.occurred_at;
            events.push(new.stamp(EventId(uuid::Uuid::from_u128(i as u128 + 1)), at));
        }
    }
    events.sort_by_key(|e| e.occurred_at);
    let until = until.expect("events.jsonl needs a `# until TIME` line");
    (engine, events, until)
}

/// Replays a fixture folder with the engine's own replay (virtual time: due timers fire at
/// their due time, in order, before the next event).
fn replay(dir: &Path) -> String {
    let (engine, events, until) = load(dir);
    let mut r = engine::replay::Replay::new(&engine);
    for event in &events {
        r.event(event);
    }
    r.advance(until);
    transcript(&r)
}

fn fixture_dirs() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

/// Shards decide what one replay decides, in its order: also timers an event arms already due
/// (a warning that appears with the event, a condition that did not hold at the due time).
#[test]
fn every_fixture_replays_alike_in_shards() {
    for dir in fixture_dirs() {
        let (engine, events, until) = load(&dir);
        let mut one = engine::replay::Replay::new(&engine);
        for e in &events {
            one.event(e);
        }
        one.advance(until);
        let expected: Vec<(Timestamp, engine::Effect)> =
            one.decided().map(|(at, e)| (at, e.clone())).collect();
        for shards in [1, 2, 3] {
            let (decided, _) =
                engine::replay::parallel(&engine, &events, until, shards, &mut |_| {});
            assert_eq!(decided, expected, "{} in {shards} shards", dir.display());
        }
    }
}

#[test]
fn fixtures() {
    let mut failures = Vec::new();
    for dir in fixture_dirs() {
        let got = replay(&dir);
        let expected_path = dir.join("expected.txt");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                dir.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn engine_for(fixture: &str) -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    Engine::new(Arc::new(playbook::load_dir(&dir).set.unwrap()))
}

/// A timer armed before newer activity is stale: it must not fire even if the shell still holds it.
#[test]
fn a_stale_timer_does_not_fire() {
    let engine = engine_for("quiet-pushed-back");
    let key = RecordKey::new(RecordKind::Deal, domain::RecordId::parse("D-1").unwrap());
    let mut deal = Record::empty(&key);
    let mut memory = Memory::new();
    let created = deal_event(
        1,
        "deal.created",
        "2026-11-01T09:00:00Z",
        r#"{"stage":"demo"}"#,
    );
    deal.apply(&created);
    assert!(engine.on_event(&created, &deal, &mut memory).is_empty());
    let armed = engine.arm(&deal, &memory, created.occurred_at);
    let [TimerChange::Set(stale)] = armed.as_slice() else {
        panic!("{armed:?}")
    };
    deal.apply(&deal_event(
        2,
        "note.added",
        "2026-11-03T09:00:00Z",
        r#"{"text":"x"}"#,
    ));
    assert!(
        engine
            .on_timer(stale, &deal, &mut memory, stale.due)
            .is_empty()
    );
    let fresh = engine.arm(&deal, &memory, stale.due);
    let [TimerChange::Set(fresh)] = fresh.as_slice() else {
        panic!()
    };
    assert_eq!(fresh.due, "2026-11-08T09:00:00Z".parse().unwrap());
    assert_eq!(
        engine.on_timer(fresh, &deal, &mut memory, fresh.due).len(),
        1
    );
}

/// The same history gives the same effects with the same idempotency keys.
#[test]
fn replays_are_deterministic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/event-triggers");
    assert_eq!(replay(&dir), replay(&dir));
    let engine = engine_for("event-triggers");
    let run = || {
        let key = RecordKey::new(RecordKind::Deal, domain::RecordId::parse("D-1").unwrap());
        let mut deal = Record::empty(&key);
        let mut memory = Memory::new();
        let mut keys = Vec::new();
        for e in [
            deal_event(
                1,
                "deal.created",
                "2026-11-01T09:00:00Z",
                r#"{"stage":"proposal"}"#,
            ),
            deal_event(
                2,
                "objection.raised",
                "2026-11-02T09:00:00Z",
                r#"{"kind":"implementation"}"#,
            ),
        ] {
            deal.apply(&e);
            keys.extend(
                engine
                    .on_event(&e, &deal, &mut memory)
                    .into_iter()
                    .map(|e| e.key),
            );
        }
        keys
    };
    let first = run();
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1]);
    assert_eq!(first, run());
}

/// A quiet deal's timer fires; opens (not activity) leave the quiet stretch as it was. The
/// instance that came due is decided, so it is not armed again: one timer, one effect
/// (issue 23).
#[test]
fn an_instance_that_fires_again_is_decided_once() {
    let yaml = r#"
playbook: p
owner: o
rules:
  - id: quiet
    why: Quiet deals need a nudge.
    when: { quiet_for: 2d }
    then:
      - alert: { to: deal.owner, text: "quiet" }
"#;
    let loaded = playbook::load_files(&[(std::path::PathBuf::from("p.yaml"), yaml.to_owned())]);
    let engine = Engine::new(Arc::new(loaded.set.expect("loads")));
    let events = [
        deal_event(
            1,
            "deal.created",
            "2026-11-02T09:00:00Z",
            r#"{"owner":"sam"}"#,
        ),
        deal_event(2, "email.opened", "2026-11-05T09:00:00Z", "{}"),
        deal_event(3, "email.opened", "2026-11-06T09:00:00Z", "{}"),
    ];
    let mut r = engine::replay::Replay::new(&engine);
    for e in &events {
        r.event(e);
    }
    r.advance(Timestamp::from_millis(1_794_700_000_000));
    let fired: Vec<&str> = r.decided().map(|(_, e)| e.key.as_str()).collect();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(r.stats().timers, 1, "the decided instance came due again");
}
