//! Interventions in a hand-built history, where every one is known in advance: touches merged
//! within the window, a key person on their own deal, people who are not key, each inference
//! rule, and a logged reason taking over an inferred one.

use domain::{Event, EventId, Timestamp};
use heroics::{Settings, detect};

fn event(ty: &str, id: &str, at: &str, refs: &str, data: &str) -> Event {
    let text = format!(
        r#"{{"type":"{ty}","source":"t","source_id":"{id}","occurred_at":"{at}",{refs},"data":{data}}}"#
    );
    let new = wire::parse_one(&text).unwrap_or_else(|p| panic!("{text}: {p}"));
    new.stamp(EventId(Default::default()), at.parse().unwrap())
}

fn person(id: &str, key: bool) -> Event {
    event(
        "person.created",
        id,
        "2026-09-01T00:00:00Z",
        &format!(r#""person":"{id}""#),
        &format!(r#"{{"key_person":{key}}}"#),
    )
}

/// A deal created on 1 October with its owner and stage.
fn deal(id: &str, owner: &str, stage: &str) -> Event {
    event(
        "deal.created",
        id,
        "2026-10-01T09:00:00Z",
        &format!(r#""deal":"{id}""#),
        &format!(r#"{{"owner":"{owner}","stage":"{stage}"}}"#),
    )
}

/// A touch: `ty` on `deal` by `by`.
fn by(ty: &str, id: &str, at: &str, deal: &str, who: &str) -> Event {
    let data = match ty {
        "note.added" => r#"{"text":"x"}"#,
        _ => "{}",
    };
    event(
        ty,
        id,
        at,
        &format!(r#""deal":"{deal}","actor":{{"person":"{who}"}}"#),
        data,
    )
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn every_intervention_of_a_known_history() {
    let history = vec![
        person("maya", true), // the founder
        person("lena", true), // the sales manager
        person("sam", false), // an account executive
        deal("D-1", "sam", "discovery"),
        deal("D-2", "maya", "demo"),
        deal("D-3", "sam", "legal"),
        by("email.sent", "e1", "2026-10-02T09:00:00Z", "D-1", "sam"),
        // Seven quiet days, then the founder writes, and calls the next day: one intervention.
        by("email.sent", "e2", "2026-10-09T09:00:00Z", "D-1", "maya"),
        by("call.logged", "c1", "2026-10-10T09:00:00Z", "D-1", "maya"),
        // Four days after her call: a new one, and nothing explains it.
        by("note.added", "n1", "2026-10-14T09:00:00Z", "D-1", "maya"),
        // A pricing objection, and the sales manager calls the day after.
        event(
            "objection.raised",
            "o1",
            "2026-10-15T09:00:00Z",
            r#""deal":"D-1","actor":{"contact":"C-1"}"#,
            r#"{"kind":"pricing"}"#,
        ),
        by("call.logged", "c2", "2026-10-16T09:00:00Z", "D-1", "lena"),
        // The founder on her own deal, and an account executive on any: not interventions.
        by("email.sent", "e3", "2026-10-20T09:00:00Z", "D-2", "maya"),
        by("call.logged", "c3", "2026-10-20T09:00:00Z", "D-3", "sam"),
        // 19 days in legal: the manager steps in; the next day she logs why, and her reason
        // takes over from the inferred one.
        by(
            "meeting.booked",
            "m1",
            "2026-10-20T10:00:00Z",
            "D-3",
            "lena",
        ),
        event(
            "intervention.logged",
            "i1",
            "2026-10-21T09:00:00Z",
            r#""deal":"D-3""#,
            r#"{"person":"lena","reason":"security-review"}"#,
        ),
        // A logged intervention on its own.
        event(
            "intervention.logged",
            "i2",
            "2026-10-30T09:00:00Z",
            r#""deal":"D-1""#,
            r#"{"person":"maya","reason":"pricing"}"#,
        ),
    ];
    let found = detect(&history, Settings::default());
    let summary: Vec<(&str, &str, u32, &str, &str)> = found
        .iter()
        .map(|i| {
            (
                i.deal.as_str(),
                i.person.as_str(),
                i.touches,
                i.reason.as_str(),
                i.because.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "D-1",
                "maya",
                2,
                "went-quiet",
                "no activity for 7 days before"
            ),
            ("D-1", "maya", 1, "unknown", "no rule matched"),
            (
                "D-1",
                "lena",
                1,
                "pricing",
                "objection (pricing) raised 1 day before"
            ),
            ("D-3", "lena", 2, "security-review", "logged"),
            ("D-1", "maya", 1, "pricing", "logged"),
        ]
    );
    let first = &found[0];
    assert_eq!(
        (first.first_at, first.last_at),
        (ts("2026-10-09T09:00:00Z"), ts("2026-10-10T09:00:00Z"))
    );
    assert_eq!(
        (
            first.stage.as_ref().unwrap().as_str(),
            first.owner.as_ref().unwrap().as_str()
        ),
        ("discovery", "sam")
    );
}

#[test]
fn a_long_stay_in_legal_is_a_legal_stall_and_the_window_is_a_setting() {
    let history = vec![
        person("lena", true),
        deal("D-1", "sam", "legal"),
        by("email.sent", "a", "2026-10-17T09:00:00Z", "D-1", "sam"),
        by("call.logged", "b", "2026-10-19T09:00:00Z", "D-1", "lena"),
        by("call.logged", "c", "2026-10-22T09:00:00Z", "D-1", "lena"),
    ];
    let found = detect(&history, Settings::default());
    let reasons: Vec<(&str, &str)> = found
        .iter()
        .map(|i| (i.reason.as_str(), i.because.as_str()))
        .collect();
    // The second call is three days after the first: a second intervention by default.
    assert_eq!(
        reasons,
        [
            ("legal-stall", "in legal for 18 days"),
            ("legal-stall", "in legal for 21 days")
        ]
    );
    let wide = Settings {
        merge_within: 3 * domain::MILLIS_PER_DAY,
        ..Settings::default()
    };
    let merged = detect(&history, wide);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].touches, 2);
}

/// A refused move the deal has not made since is a reason (`blocked-gate`); a key person
/// overriding the gate steps in for that reason; a gate that was later passed is no reason.
#[test]
fn a_refused_move_and_a_gate_override_are_blocked_gate_interventions() {
    let blocked = |id: &str, at: &str, deal: &str| {
        event(
            "gate.blocked",
            id,
            at,
            &format!(r#""deal":"{deal}""#),
            r#"{"stage":"proposal","from":"demo","gate":"q","unmet":["budget confirmed"],"attempted":"deal.stage_changed"}"#,
        )
    };
    let events = vec![
        person("maya", true),
        person("omar", true),
        person("sam", false),
        // G-1: refused on 10-02; maya writes on 10-03 (not quiet, not stuck).
        deal("G-1", "sam", "demo"),
        blocked("b1", "2026-10-02T09:00:00Z", "G-1"),
        by("email.sent", "g1", "2026-10-03T09:00:00Z", "G-1", "maya"),
        // G-2: omar overrides the gate on 10-04.
        deal("G-2", "sam", "demo"),
        blocked("b2", "2026-10-02T09:00:00Z", "G-2"),
        event(
            "deal.stage_changed",
            "o2",
            "2026-10-04T09:00:00Z",
            r#""deal":"G-2""#,
            r#"{"stage":"proposal","override":{"by":"omar","reason":"letter of intent","unmet":["budget confirmed"]}}"#,
        ),
        // G-3: refused, then qualified and moved; maya writes after: no gate reason left.
        deal("G-3", "sam", "demo"),
        blocked("b3", "2026-10-02T09:00:00Z", "G-3"),
        event(
            "deal.stage_changed",
            "m3",
            "2026-10-02T12:00:00Z",
            r#""deal":"G-3""#,
            r#"{"stage":"proposal"}"#,
        ),
        by("email.sent", "g3", "2026-10-03T09:00:00Z", "G-3", "maya"),
    ];
    let found = detect(&events, Settings::default());
    let got: Vec<(&str, &str, &str, &str)> = found
        .iter()
        .map(|i| {
            (
                i.deal.as_str(),
                i.person.as_str(),
                i.reason.as_str(),
                i.because.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "G-1",
                "maya",
                "blocked-gate",
                "a gate refused a move 1 day before"
            ),
            ("G-3", "maya", "unknown", "no rule matched"),
            ("G-2", "omar", "blocked-gate", "overrode the stage's gate"),
        ]
    );
}
