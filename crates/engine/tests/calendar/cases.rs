//! Issue 23: the calendar edges live and replay must agree on, in one table. Each case is a
//! construct — a cron schedule, a sequence's send window, a sequence's `wait: until` — in
//! Europe/Berlin or America/New_York around one of their 2026 daylight-saving changes, with
//! every instant (UTC) at which it fires between `from` and `until`.
//!
//! Two tests read it: `crates/engine/tests/calendar.rs` (in replay: `engine::replay` for the
//! rules; the enrolment state machine stepped from due time to due time for sequences, which
//! a replay leaves to the shell) and `crates/store/tests/it/calendar.rs` (live: the store's
//! timer loop and `advance_enrolments` with a manual clock moved a quarter hour at a time, on
//! SQLite and PostgreSQL).
//!
//! Berlin: CET is UTC+1, CEST UTC+2; 2026-03-29 skips 02:00–03:00 (at 01:00 UTC), 2026-10-25
//! repeats 02:00–03:00 (00:00–01:00 UTC in CEST, 01:00–02:00 in CET). New York: EST is
//! UTC−5, EDT UTC−4; 2026-03-08 skips 02:00–03:00 (at 07:00 UTC), 2026-11-01 repeats
//! 01:00–02:00 (05:00–06:00 UTC in EDT, 06:00–07:00 in EST).

use domain::NewEvent;
use serde_json::{Value, json};

/// One row of the table.
pub struct Case {
    pub zone: &'static str,
    /// The day the zone's clocks change.
    pub change: &'static str,
    pub construct: Construct,
    /// When the deal is created (and, for a sequence, its contact enrolled).
    pub from: &'static str,
    /// The end of what is watched, included.
    pub until: &'static str,
    /// Every firing in `[from, until]`: a schedule's occurrences, a sequence's emails.
    pub expected: &'static [&'static str],
}

pub enum Construct {
    /// A rule on this schedule, in the case's zone, over one open deal.
    Cron(&'static str),
    /// A sequence of emails with these waits between them (`3d`, `until 02:30`), sent within
    /// the window if there is one, to a contact in the case's zone.
    Sequence {
        window: Option<Window>,
        waits: &'static [&'static str],
    },
}

/// A send window in the case's zone.
pub struct Window {
    pub days: &'static str,
    pub hours: &'static str,
    pub holidays: &'static [&'static str],
}

impl Case {
    /// How the case is named in a failure.
    pub fn describe(&self) -> String {
        let what = match &self.construct {
            Construct::Cron(expr) => format!("cron {expr:?}"),
            Construct::Sequence { window, waits } => {
                let window = window.as_ref().map_or(String::new(), |w| {
                    format!(" in {} {} except {:?}", w.days, w.hours, w.holidays)
                });
                format!("a sequence waiting {waits:?}{window}")
            }
        };
        format!("{what} in {} around {}", self.zone, self.change)
    }
}

/// The rule that carries a cron case, and the sequence that carries the others.
pub const RULE: &str = "tick";
pub const SEQUENCE: &str = "s";

const fn case(
    zone: &'static str,
    change: &'static str,
    construct: Construct,
    from: &'static str,
    until: &'static str,
    expected: &'static [&'static str],
) -> Case {
    Case {
        zone,
        change,
        construct,
        from,
        until,
        expected,
    }
}

const BERLIN: &str = "Europe/Berlin";
const NEW_YORK: &str = "America/New_York";
const BERLIN_SPRING: &str = "2026-03-29";
const BERLIN_AUTUMN: &str = "2026-10-25";
const NEW_YORK_SPRING: &str = "2026-03-08";
const NEW_YORK_AUTUMN: &str = "2026-11-01";

const fn every_day(hours: &'static str) -> Option<Window> {
    Some(Window {
        days: "mon-sun",
        hours,
        holidays: &[],
    })
}

const fn office(holidays: &'static [&'static str]) -> Option<Window> {
    Some(Window {
        days: "mon-fri",
        hours: "09:00-17:00",
        holidays,
    })
}

pub const CASES: &[Case] = &[
    // Berlin, spring: 02:30 happens at 03:30 CEST, once; the hourly and quarter-hourly
    // schedules run on without a hole or a double.
    case(
        BERLIN,
        BERLIN_SPRING,
        Construct::Cron("30 2 * * *"),
        "2026-03-28T00:10:00Z",
        "2026-03-30T23:45:00Z",
        &[
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-30T00:30:00Z",
        ],
    ),
    case(
        BERLIN,
        BERLIN_SPRING,
        Construct::Cron("0 * * * *"),
        "2026-03-28T22:10:00Z",
        "2026-03-29T03:00:00Z",
        &[
            "2026-03-28T23:00:00Z",
            "2026-03-29T00:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z",
            "2026-03-29T03:00:00Z",
        ],
    ),
    case(
        BERLIN,
        BERLIN_SPRING,
        Construct::Cron("*/15 2 * * *"),
        "2026-03-28T12:10:00Z",
        "2026-03-30T12:00:00Z",
        &[
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:15:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-29T01:45:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-30T00:15:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-30T00:45:00Z",
        ],
    ),
    case(
        BERLIN,
        BERLIN_SPRING,
        Construct::Cron("*/15 * * * *"),
        "2026-03-29T00:20:00Z",
        "2026-03-29T01:30:00Z",
        &[
            "2026-03-29T00:30:00Z",
            "2026-03-29T00:45:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:15:00Z",
            "2026-03-29T01:30:00Z",
        ],
    ),
    // Berlin, autumn: 02:30 happens once, in CEST; the hourly and quarter-hourly schedules
    // run through both passes of the repeated hour.
    case(
        BERLIN,
        BERLIN_AUTUMN,
        Construct::Cron("30 2 * * *"),
        "2026-10-24T00:10:00Z",
        "2026-10-26T23:45:00Z",
        &[
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ],
    ),
    case(
        BERLIN,
        BERLIN_AUTUMN,
        Construct::Cron("0 * * * *"),
        "2026-10-24T22:10:00Z",
        "2026-10-25T03:00:00Z",
        &[
            "2026-10-24T23:00:00Z",
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z",
            "2026-10-25T03:00:00Z",
        ],
    ),
    case(
        BERLIN,
        BERLIN_AUTUMN,
        Construct::Cron("*/15 2 * * *"),
        "2026-10-24T12:10:00Z",
        "2026-10-26T12:00:00Z",
        &[
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:15:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:45:00Z",
            "2026-10-26T01:00:00Z",
            "2026-10-26T01:15:00Z",
            "2026-10-26T01:30:00Z",
            "2026-10-26T01:45:00Z",
        ],
    ),
    case(
        BERLIN,
        BERLIN_AUTUMN,
        Construct::Cron("*/15 * * * *"),
        "2026-10-25T00:20:00Z",
        "2026-10-25T01:30:00Z",
        &[
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:45:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:15:00Z",
            "2026-10-25T01:30:00Z",
        ],
    ),
    // New York, spring: 02:30 EST happens at 03:30 EDT.
    case(
        NEW_YORK,
        NEW_YORK_SPRING,
        Construct::Cron("30 2 * * *"),
        "2026-03-07T00:10:00Z",
        "2026-03-09T23:45:00Z",
        &[
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-09T06:30:00Z",
        ],
    ),
    case(
        NEW_YORK,
        NEW_YORK_SPRING,
        Construct::Cron("0 * * * *"),
        "2026-03-08T04:10:00Z",
        "2026-03-08T09:00:00Z",
        &[
            "2026-03-08T05:00:00Z",
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z",
            "2026-03-08T09:00:00Z",
        ],
    ),
    case(
        NEW_YORK,
        NEW_YORK_SPRING,
        Construct::Cron("*/15 2 * * *"),
        "2026-03-07T12:10:00Z",
        "2026-03-09T12:00:00Z",
        &[
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:15:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-08T07:45:00Z",
            "2026-03-09T06:00:00Z",
            "2026-03-09T06:15:00Z",
            "2026-03-09T06:30:00Z",
            "2026-03-09T06:45:00Z",
        ],
    ),
    case(
        NEW_YORK,
        NEW_YORK_SPRING,
        Construct::Cron("*/15 * * * *"),
        "2026-03-08T06:20:00Z",
        "2026-03-08T07:30:00Z",
        &[
            "2026-03-08T06:30:00Z",
            "2026-03-08T06:45:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T07:15:00Z",
            "2026-03-08T07:30:00Z",
        ],
    ),
    // New York, autumn: 01:00–02:00 is the repeated hour.
    case(
        NEW_YORK,
        NEW_YORK_AUTUMN,
        Construct::Cron("30 1 * * *"),
        "2026-10-31T00:10:00Z",
        "2026-11-02T23:45:00Z",
        &[
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
        ],
    ),
    case(
        NEW_YORK,
        NEW_YORK_AUTUMN,
        Construct::Cron("0 * * * *"),
        "2026-11-01T03:10:00Z",
        "2026-11-01T08:00:00Z",
        &[
            "2026-11-01T04:00:00Z",
            "2026-11-01T05:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T07:00:00Z",
            "2026-11-01T08:00:00Z",
        ],
    ),
    case(
        NEW_YORK,
        NEW_YORK_AUTUMN,
        Construct::Cron("*/15 1 * * *"),
        "2026-10-31T12:10:00Z",
        "2026-11-02T12:00:00Z",
        &[
            "2026-11-01T05:00:00Z",
            "2026-11-01T05:15:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T05:45:00Z",
            "2026-11-02T06:00:00Z",
            "2026-11-02T06:15:00Z",
            "2026-11-02T06:30:00Z",
            "2026-11-02T06:45:00Z",
        ],
    ),
    case(
        NEW_YORK,
        NEW_YORK_AUTUMN,
        Construct::Cron("*/15 * * * *"),
        "2026-11-01T05:20:00Z",
        "2026-11-01T06:30:00Z",
        &[
            "2026-11-01T05:30:00Z",
            "2026-11-01T05:45:00Z",
            "2026-11-01T06:00:00Z",
            "2026-11-01T06:15:00Z",
            "2026-11-01T06:30:00Z",
        ],
    ),
    // Send windows: open while the clock shows their hours. On the skipped night a window
    // from 02:30 opens at 03:00, when the clock first shows a time inside it.
    case(
        BERLIN,
        BERLIN_SPRING,
        Construct::Sequence {
            window: every_day("02:30-04:00"),
            waits: &["1d"],
        },
        "2026-03-28T22:00:00Z",
        "2026-03-30T12:00:00Z",
        &["2026-03-29T01:00:00Z", "2026-03-30T01:00:00Z"],
    ),
    case(
        NEW_YORK,
        NEW_YORK_SPRING,
        Construct::Sequence {
            window: every_day("02:30-04:00"),
            waits: &["1d"],
        },
        "2026-03-08T05:00:00Z",
        "2026-03-09T12:00:00Z",
        &["2026-03-08T07:00:00Z", "2026-03-09T07:00:00Z"],
    ),
    // In the repeated hour a window is open both times the clock shows its hours: the step
    // after the 45-minute wait goes when the clock shows 02:00 (01:00 in New York) again.
    case(
        BERLIN,
        BERLIN_AUTUMN,
        Construct::Sequence {
            window: every_day("02:00-02:30"),
            waits: &["45m"],
        },
        "2026-10-25T00:00:00Z",
        "2026-10-25T12:00:00Z",
        &["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z"],
    ),
    case(
        NEW_YORK,
        NEW_YORK_AUTUMN,
        Construct::Sequence {
            window: every_day("01:00-01:30"),
            waits: &["45m"],
        },
        "2026-11-01T05:00:00Z",
        "2026-11-01T12:00:00Z",
        &["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z"],
    ),
    // A holiday on the Monday after the change: Friday evening's step waits for Tuesday
    // 09:00 at the new offset.
    case(
        BERLIN,
        BERLIN_AUTUMN,
        Construct::Sequence {
            window: office(&["2026-10-26"]),
            waits: &["1d"],
        },
        "2026-10-23T15:30:00Z",
        "2026-10-28T12:00:00Z",
        &["2026-10-27T08:00:00Z", "2026-10-28T08:00:00Z"],
    ),
    case(
        NEW_YORK,
        NEW_YORK_SPRING,
        Construct::Sequence {
            window: office(&["2026-03-09"]),
            waits: &["1d"],
        },
        "2026-03-06T22:00:00Z",
        "2026-03-11T18:00:00Z",
        &["2026-03-10T13:00:00Z", "2026-03-11T13:00:00Z"],
    ),
    // `wait: until` is an appointment, like a cron time: a skipped 02:30 happens at 03:30,
    // also when the wait begins at 03:10; a repeated time happens the first time.
    case(
        BERLIN,
        BERLIN_SPRING,
        Construct::Sequence {
            window: None,
            waits: &["until 02:30", "until 02:30"],
        },
        "2026-03-29T01:10:00Z",
        "2026-03-30T12:00:00Z",
        &[
            "2026-03-29T01:10:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-30T00:30:00Z",
        ],
    ),
    case(
        BERLIN,
        BERLIN_AUTUMN,
        Construct::Sequence {
            window: None,
            waits: &["until 02:30", "until 02:30"],
        },
        "2026-10-24T12:00:00Z",
        "2026-10-26T12:00:00Z",
        &[
            "2026-10-24T12:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ],
    ),
    case(
        NEW_YORK,
        NEW_YORK_SPRING,
        Construct::Sequence {
            window: None,
            waits: &["until sunday 02:30"],
        },
        "2026-03-06T12:00:00Z",
        "2026-03-09T12:00:00Z",
        &["2026-03-06T12:00:00Z", "2026-03-08T07:30:00Z"],
    ),
    case(
        NEW_YORK,
        NEW_YORK_AUTUMN,
        Construct::Sequence {
            window: None,
            waits: &["until 01:30", "until 01:30"],
        },
        "2026-10-31T12:00:00Z",
        "2026-11-02T12:00:00Z",
        &[
            "2026-10-31T12:00:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
        ],
    ),
];

/// The case's playbook, written through the JSON serializer (JSON is YAML).
pub fn playbooks(case: &Case) -> playbook::PlaybookSet {
    let file = match &case.construct {
        Construct::Cron(expr) => json!({
            "playbook": "calendar",
            "owner": "o",
            "rules": [{
                "id": RULE,
                "why": "The case's schedule.",
                "when": { "schedule": { "cron": expr, "timezone": case.zone } },
                "then": [{ "alert": { "to": "deal.owner", "text": "tick" } }],
            }],
        }),
        Construct::Sequence { window, waits } => {
            let mut steps = vec![json!({ "email": { "template": "a" } })];
            for wait in *waits {
                steps.push(json!({ "wait": wait }));
                steps.push(json!({ "email": { "template": "a" } }));
            }
            let mut sequence = json!({ "steps": steps });
            let mut file = json!({
                "playbook": "calendar",
                "owner": "o",
                // The etiquette's caps are not what these cases are about.
                "sending": {
                    "per_contact": { "max": 100, "per": "1d" },
                    "per_sender": { "per_hour": 100, "per_day": 1000 },
                },
                "rules": [{
                    "id": "enrol",
                    "why": "The case's sequence.",
                    "when": { "event": "form.submitted" },
                    "then": [{ "start_sequence": SEQUENCE }],
                }],
                "templates": { "a": { "subject": "A", "text": "a" } },
            });
            if let Some(w) = window {
                let mut window = json!({ "days": w.days, "hours": w.hours, "timezone": case.zone });
                if !w.holidays.is_empty() {
                    window["holidays"] = json!(["team"]);
                    file["calendars"] = json!({ "team": { "holidays": w.holidays } });
                }
                sequence["window"] = window;
            }
            file["sequences"] = json!({ SEQUENCE: sequence });
            file
        }
    };
    let loaded = playbook::load_files(&[("calendar.yaml".into(), file.to_string())]);
    assert!(
        loaded.diagnostics.is_empty(),
        "{}: {:?}",
        case.describe(),
        loaded.diagnostics
    );
    loaded.set.expect("a playbook without diagnostics")
}

/// What happens at `from`: the deal is created (with its contact, in the case's zone), and for
/// a sequence the form that enrols the contact is submitted.
pub fn events(case: &Case) -> Vec<NewEvent> {
    let event = |id: &str, ty: &str, refs: Value, data: Value| {
        let mut body = json!({
            "type": ty,
            "source": "calendar",
            "source_id": id,
            "occurred_at": case.from,
            "data": data,
        });
        for (k, v) in refs.as_object().expect("refs are an object") {
            body[k] = v.clone();
        }
        wire::parse_one(&body.to_string()).expect("a valid test event")
    };
    let mut events = vec![
        event(
            "contact",
            "contact.created",
            json!({ "contact": "C-1" }),
            json!({ "name": "Hank", "email": "hank@globex.example", "timezone": case.zone }),
        ),
        event(
            "deal",
            "deal.created",
            json!({ "deal": "D-1" }),
            json!({ "name": "Globex", "owner": "sam", "contacts": ["C-1"] }),
        ),
    ];
    if matches!(case.construct, Construct::Sequence { .. }) {
        events.push(event(
            "form",
            "form.submitted",
            json!({ "deal": "D-1" }),
            json!({ "form": "demo" }),
        ));
    }
    events
}

/// Every case whose firings differ from the table's, each with what `fire` gave, in words;
/// nothing when all agree. `fire` returns a case's firings in any order and beyond its span.
pub fn mismatches(run: &str, mut fire: impl FnMut(&Case) -> Vec<domain::Timestamp>) -> String {
    let mut out = String::new();
    for case in CASES {
        let (from, until) = (ts(case.from), ts(case.until));
        let mut fired = fire(case);
        fired.retain(|t| (from..=until).contains(t));
        fired.sort();
        let fired: Vec<String> = fired.iter().map(|t| t.to_jiff().to_string()).collect();
        if fired != case.expected {
            out += &format!(
                "{run}: {}\n  fired    {fired:?}\n  expected {:?}\n",
                case.describe(),
                case.expected
            );
        }
    }
    out
}

pub fn ts(s: &str) -> domain::Timestamp {
    s.parse().expect("an RFC 3339 time")
}
