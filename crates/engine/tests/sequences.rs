//! Enrolments in virtual time: the whole cadence, exits (and the automatic replies that are
//! not exits), send windows across daylight-saving changes and holidays, branches, goals, and
//! pause and resume without a burst. Every time is given; nothing sleeps.

use std::path::PathBuf;

mod common;

use common::deal_event;
use domain::Timestamp;
use engine::sequence::{Ended, Enrolment, Status, StepAction};
use playbook::{Exit, Sequence};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The sequence `name` of a playbook whose sequences are `sequences` (YAML under
/// `sequences:`), with templates a and b.
fn sequence(sequences: &str) -> Sequence {
    let text = format!(
        "playbook: p\nowner: o\nsequences:\n{sequences}\ncalendars:\n  xmas: {{ holidays: [2026-12-24, 2026-12-25] }}\ntemplates:\n  a: {{ subject: A, text: A. }}\n  b: {{ subject: B, text: B. }}\n"
    );
    let loaded = playbook::load_files(&[(PathBuf::from("p.yaml"), text)]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.set.unwrap().playbooks[0].sequences[0].clone()
}

fn templates(actions: &[StepAction]) -> Vec<&str> {
    actions
        .iter()
        .map(|a| match a {
            StepAction::Email { template, .. } => template.as_str(),
            StepAction::Task { .. } => "task",
        })
        .collect()
}

const CADENCE: &str = "  s:
    steps:
      - email: { template: a }
      - wait: 3d
      - email: { template: b }
      - wait: 2d
      - task: { assignee: deal.owner, title: Call, kind: call, due: 1d }
";

#[test]
fn the_whole_cadence_runs_on_time_and_completes() {
    let q = sequence(CADENCE);
    let t0 = ts("2026-11-02T10:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    assert_eq!(templates(&e.advance(&q, false, None, t0)), ["a"]);
    assert_eq!(e.due, ts("2026-11-05T10:00:00Z"));
    // Nothing before it is due.
    assert!(
        e.advance(&q, false, None, ts("2026-11-05T09:59:59Z"))
            .is_empty()
    );
    assert_eq!(
        templates(&e.advance(&q, false, None, ts("2026-11-05T10:00:00Z"))),
        ["b"]
    );
    // Late by an hour (the timer loop was busy): the next wait counts from then.
    let tasks = e.advance(&q, false, None, ts("2026-11-07T11:00:00Z"));
    assert_eq!(
        tasks,
        [StepAction::Task {
            step: "step-5".into(),
            assignee: playbook::Target::Owner,
            title: "Call".into(),
            kind: playbook::TaskKind::Call,
            due: Some(ts("2026-11-08T11:00:00Z")),
        }]
    );
    assert_eq!(
        e.status,
        Status::Ended {
            reason: Ended::Completed,
            at: ts("2026-11-07T11:00:00Z")
        }
    );
    assert_eq!(e.emails_sent, 2);
}

#[test]
fn a_reply_between_steps_stops_it_and_an_out_of_office_does_not() {
    let q = sequence(CADENCE);
    let t0 = ts("2026-11-02T10:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    e.advance(&q, false, None, t0);
    // An out-of-office reply, recognised by its header: not a reply.
    let ooo = deal_event(
        1,
        "email.received",
        "2026-11-02T10:01:00Z",
        r#"{"subject":"Re: A","headers":{"Auto-Submitted":"auto-replied"}}"#,
    );
    assert_eq!(e.on_event(&q, &ooo, ts("2026-11-02T10:01:00Z")), None);
    assert!(e.is_active() && !e.replied);
    // A person's reply ends it, and nothing more is sent.
    let reply = deal_event(
        2,
        "email.received",
        "2026-11-03T08:00:00Z",
        r#"{"subject":"Re: A"}"#,
    );
    assert_eq!(
        e.on_event(&q, &reply, ts("2026-11-03T08:00:00Z")),
        Some(Ended::Exit(Exit::Reply))
    );
    assert!(
        e.advance(&q, false, None, ts("2026-11-05T10:00:00Z"))
            .is_empty()
    );
    // A bounce is an exit of its own.
    let mut e = Enrolment::start(&q, "v1", "C-2", t0);
    e.advance(&q, false, None, t0);
    let bounce = deal_event(
        3,
        "email.received",
        "2026-11-02T10:00:30Z",
        r#"{"subject":"Undelivered Mail Returned to Sender"}"#,
    );
    assert_eq!(e.on_event(&q, &bounce, t0), Some(Ended::Exit(Exit::Bounce)));
}

#[test]
fn only_the_listed_exits_end_it_and_a_goal_does() {
    let q = sequence(&CADENCE.replace("  s:\n", "  s:\n    exit_on: [reply]\n"));
    let t0 = ts("2026-11-02T10:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    e.advance(&q, false, None, t0);
    let meeting = deal_event(1, "meeting.booked", "2026-11-03T09:00:00Z", "{}");
    assert_eq!(e.on_event(&q, &meeting, t0), None);
    assert!(e.is_active());
    // The goal holds when the next step comes due: it ends instead of sending.
    assert!(
        e.advance(&q, true, None, ts("2026-11-05T10:00:00Z"))
            .is_empty()
    );
    assert_eq!(
        e.status,
        Status::Ended {
            reason: Ended::Goal,
            at: ts("2026-11-05T10:00:00Z")
        }
    );
}

const WINDOWED: &str = "  s:
    window: { days: mon-fri, hours: \"09:00-17:00\", timezone: ZONE, holidays: [xmas] }
    steps:
      - email: { template: a }
      - wait: 1d
      - email: { template: b }
";

#[test]
fn emails_wait_for_the_send_window_across_daylight_saving_changes() {
    // Berlin falls back on Sunday 2026-10-25. Enrolled Friday 18:00 CEST: the first email goes
    // Monday 09:00 CET = 08:00 UTC, and the second a day after that, inside the window.
    let q = sequence(&WINDOWED.replace("ZONE", "Europe/Berlin"));
    let friday = ts("2026-10-23T16:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", friday);
    assert!(e.advance(&q, false, None, friday).is_empty());
    assert_eq!(e.due, ts("2026-10-26T08:00:00Z"));
    assert_eq!(templates(&e.advance(&q, false, None, e.due)), ["a"]);
    assert_eq!(e.due, ts("2026-10-27T08:00:00Z"));
    assert_eq!(templates(&e.advance(&q, false, None, e.due)), ["b"]);

    // New York springs forward on Sunday 2026-03-08: Friday 20:00 EST waits for Monday
    // 09:00 EDT = 13:00 UTC.
    let q = sequence(&WINDOWED.replace("ZONE", "America/New_York"));
    let friday = ts("2026-03-07T01:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", friday);
    assert!(e.advance(&q, false, None, friday).is_empty());
    assert_eq!(e.due, ts("2026-03-09T13:00:00Z"));
}

#[test]
fn a_holiday_moves_the_step_and_the_steps_after_it() {
    let q = sequence(&WINDOWED.replace("ZONE", "Europe/Berlin"));
    // Wednesday 23 December, 16:30 CET: the first email goes at once; the second, a day
    // later, falls on the 24th (a holiday), then the 25th: it goes Monday the 28th.
    let t0 = ts("2026-12-23T15:30:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    assert_eq!(templates(&e.advance(&q, false, None, t0)), ["a"]);
    assert!(
        e.advance(&q, false, None, ts("2026-12-24T15:30:00Z"))
            .is_empty()
    );
    assert_eq!(e.due, ts("2026-12-28T08:00:00Z"));
    assert_eq!(templates(&e.advance(&q, false, None, e.due)), ["b"]);
}

#[test]
fn a_branch_jumps_on_engagement() {
    let q = sequence(
        "  s:
    steps:
      - email: { template: a }
      - wait: 1d
      - branch: { if: opened, goto: call }
      - email: { template: b }
      - id: call
        task: { assignee: deal.owner, title: Call }
",
    );
    let t0 = ts("2026-11-02T10:00:00Z");
    let mut opened = Enrolment::start(&q, "v1", "C-1", t0);
    let mut ignored = Enrolment::start(&q, "v1", "C-2", t0);
    for e in [&mut opened, &mut ignored] {
        e.advance(&q, false, None, t0);
    }
    let open = deal_event(1, "email.opened", "2026-11-02T12:00:00Z", "{}");
    opened.on_event(&q, &open, ts("2026-11-02T12:00:00Z"));
    let next = ts("2026-11-03T10:00:00Z");
    assert_eq!(templates(&opened.advance(&q, false, None, next)), ["task"]);
    assert_eq!(
        templates(&ignored.advance(&q, false, None, next)),
        ["b", "task"]
    );
}

#[test]
fn a_resumed_enrolment_sends_one_step_not_a_burst() {
    let q = sequence(
        "  s:
    steps:
      - email: { template: a }
      - wait: 1d
      - email: { template: b }
      - wait: 1d
      - email: { template: a }
",
    );
    let t0 = ts("2026-11-02T10:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    e.advance(&q, false, None, t0);
    e.pause(ts("2026-11-02T11:00:00Z"));
    // Paused: nothing runs, however late.
    assert!(
        e.advance(&q, false, None, ts("2026-11-20T10:00:00Z"))
            .is_empty()
    );
    // Resumed ten days later: one email now, the next a day after — not both at once.
    let resumed = ts("2026-11-20T10:00:00Z");
    e.resume(resumed);
    assert_eq!(templates(&e.advance(&q, false, None, resumed)), ["b"]);
    assert_eq!(e.due, ts("2026-11-21T10:00:00Z"));
    assert!(
        e.advance(&q, false, None, ts("2026-11-20T23:00:00Z"))
            .is_empty()
    );
    assert_eq!(templates(&e.advance(&q, false, None, e.due)), ["a"]);
}

#[test]
fn waits_until_a_weekday_and_time_in_the_window_zone() {
    let q = sequence(
        "  s:
    window: { hours: \"00:00-23:59\", timezone: Europe/Berlin }
    steps:
      - email: { template: a }
      - wait: until tuesday 09:30
      - email: { template: b }
",
    );
    // Sunday 2026-11-22 12:00 Berlin → Tuesday 2026-11-24 09:30 CET = 08:30 UTC.
    let t0 = ts("2026-11-22T11:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    e.advance(&q, false, None, t0);
    assert_eq!(e.due, ts("2026-11-24T08:30:00Z"));
    // For a contact in New York, Tuesday 09:30 is theirs: 14:30 UTC.
    let mut e = Enrolment::start(&q, "v1", "C-2", t0);
    e.advance(&q, false, Some("America/New_York"), t0);
    assert_eq!(e.due, ts("2026-11-24T14:30:00Z"));
}

#[test]
fn the_window_opens_in_the_contacts_time_zone() {
    // A Berlin window, a contact in New York: enrolled Tuesday 10:00 Berlin (04:00 in New
    // York), the first email waits for 09:00 in New York = 14:00 UTC.
    let q = sequence(&WINDOWED.replace("ZONE", "Europe/Berlin"));
    let t0 = ts("2026-11-24T09:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    assert!(
        e.advance(&q, false, Some("America/New_York"), t0)
            .is_empty()
    );
    assert_eq!(e.due, ts("2026-11-24T14:00:00Z"));
    // An unknown zone falls back to the window's: Berlin is open, it goes at once.
    let mut e = Enrolment::start(&q, "v1", "C-2", t0);
    assert_eq!(
        templates(&e.advance(&q, false, Some("Mars/Olympus"), t0)),
        ["a"]
    );
}

/// The sending etiquette's answers: a hold keeps the step (it runs when the hold ends, and the
/// waits after it count from then); a refusal ends the enrolment with the reason.
#[test]
fn a_held_email_waits_and_a_refused_one_ends_the_enrolment() {
    use engine::sequence::{Refusal, Verdict};
    let q = sequence(CADENCE);
    let t0 = ts("2026-11-02T10:00:00Z");
    let mut e = Enrolment::start(&q, "v1", "C-1", t0);
    let until = ts("2026-11-03T08:00:00Z");
    let held = e.advance_with(&q, false, None, t0, &mut |_| Verdict::Hold { until });
    assert!(held.is_empty());
    assert_eq!((e.step, e.due, e.emails_sent), (0, until, 0));
    assert!(e.is_active());
    let sent = e.advance_with(&q, false, None, until, &mut |_| Verdict::Send);
    assert_eq!(templates(&sent), ["a"]);
    assert_eq!(e.due, ts("2026-11-06T08:00:00Z"));
    let refused = e.advance_with(&q, false, None, e.due, &mut |_| {
        Verdict::Refuse(Refusal::Unsubscribed)
    });
    assert!(refused.is_empty());
    assert_eq!(
        e.status,
        Status::Ended {
            reason: Ended::Refused(Refusal::Unsubscribed),
            at: ts("2026-11-06T08:00:00Z")
        }
    );
    // A hold in the past cannot make it spin: the step waits at least a moment.
    let mut f = Enrolment::start(&q, "v1", "C-2", t0);
    f.advance_with(&q, false, None, t0, &mut |_| Verdict::Hold { until: t0 });
    assert!(f.due > t0);
}
