//! The heroics report on a hand-built quarter where every number is worked out by hand below,
//! with its edge cases: touches merged within the window, a key person on their own deal, a
//! deal lost and reopened and won, a touch by a colleague who is not a key person,
//! interventions before and after a playbook's go-live, a shadow rule, a firing whose window
//! has not passed, answered and unanswered requests.

use std::collections::BTreeMap;

use domain::{Currency, Money, RecordId};
use heroics::{Automation, Covering, Firing, History, Options, Request, Settings, report};

use crate::log::{Log, ts};

fn id(s: &str) -> RecordId {
    RecordId::parse(s).unwrap()
}

fn usd(major: i64) -> Vec<Money> {
    vec![Money {
        minor: major * 100,
        currency: Currency::DEFAULT,
    }]
}

/// The quarter: September to November 2026.
///
/// | deal | owner | amount | what happens                                   | outcome          |
/// |------|-------|--------|------------------------------------------------|------------------|
/// | D1   | sam   | 10,000 | quiet 8 days; maya emails and calls next day   | won 09-20        |
/// | D2   | sam   | 20,000 | pricing objection; lena calls the next day     | lost 09-25, reopened 10-01, won 10-15 |
/// | D3   | maya  |  5,000 | maya works her own deal                        | won 09-30        |
/// | D4   | ana   |  8,000 | sam (not key) adds a note                      | lost 10-10       |
/// | D5   | sam   | 30,000 | 19 days in legal; lena books a meeting         | won 11-10        |
/// | D6   | sam   | 12,000 | the quiet rule fires 11-05; nobody steps in;    | won 11-25        |
/// |      |       |        | lena writes two days after the win             |                  |
/// | D7   | sam   | 15,000 | the quiet rule fires 11-06; maya emails 11-12   | lost 11-28       |
/// | D8   | sam   | 40,000 | 15 days in negotiation, maya emails; escalations| open             |
/// | D9   | sam   |  9,000 | maya logs security-review, emails the next day | lost 10-20       |
fn quarter() -> Log {
    let mut log = Log::default();
    log.person("maya", true)
        .person("lena", true)
        .person("sam", false)
        .person("ana", false);
    log.deal("D1", "2026-09-01", "sam", "demo", 10_000)
        .by("email.sent", "2026-09-02", "D1", "sam")
        .by("email.sent", "2026-09-10", "D1", "maya")
        .by("call.logged", "2026-09-11", "D1", "maya")
        .won("2026-09-20", "D1");
    log.deal("D2", "2026-09-01", "sam", "proposal", 20_000)
        .objection("2026-09-05", "D2", "pricing")
        .by("call.logged", "2026-09-06", "D2", "lena")
        .lost("2026-09-25", "D2")
        .stage("2026-10-01", "D2", "negotiation")
        .won("2026-10-15", "D2");
    log.deal("D3", "2026-09-01", "maya", "demo", 5_000)
        .by("email.sent", "2026-09-10", "D3", "maya")
        .won("2026-09-30", "D3");
    log.deal("D4", "2026-09-01", "ana", "legal", 8_000)
        .by("email.sent", "2026-09-02", "D4", "ana")
        .by("note.added", "2026-09-05", "D4", "sam")
        .lost("2026-10-10", "D4");
    log.deal("D5", "2026-09-01", "sam", "proposal", 30_000)
        .stage("2026-10-01", "D5", "legal")
        .by("email.sent", "2026-10-18", "D5", "sam")
        .by("meeting.booked", "2026-10-20", "D5", "lena")
        .won("2026-11-10", "D5");
    log.deal("D6", "2026-10-25", "sam", "demo", 12_000)
        .by("email.sent", "2026-10-31", "D6", "sam")
        .won("2026-11-25", "D6")
        // After the win: an intervention, but not one the win needed.
        .by("email.sent", "2026-11-27", "D6", "lena");
    log.deal("D7", "2026-10-25", "sam", "demo", 15_000)
        .by("email.sent", "2026-11-01", "D7", "sam")
        .by("email.sent", "2026-11-12", "D7", "maya")
        .lost("2026-11-28", "D7");
    log.deal("D8", "2026-11-01", "sam", "negotiation", 40_000)
        .by("email.sent", "2026-11-14", "D8", "sam")
        .by("email.sent", "2026-11-16", "D8", "maya");
    log.deal("D9", "2026-09-01", "sam", "proposal", 9_000)
        .by("email.sent", "2026-10-01", "D9", "sam")
        .logged("2026-10-05", "D9", "maya", "security-review")
        .by("email.sent", "2026-10-06", "D9", "maya")
        .lost("2026-10-20", "D9");
    log
}

fn automation() -> Automation {
    let rule = |rule: &str, covers: &str, shadow: bool| Covering {
        playbook: "founder-rescues".into(),
        rule: rule.into(),
        covers: vec![covers.into()],
        shadow,
    };
    let fired = |rule: &str, deal: &str, day: &str| Firing {
        playbook: "founder-rescues".into(),
        rule: rule.into(),
        deal: id(deal),
        at: ts(day),
    };
    let asked = |deal: &str, person: &str, day: &str, what: &str| Request {
        deal: id(deal),
        person: id(person),
        at: ts(day),
        what: what.into(),
    };
    Automation {
        rules: vec![
            rule("quiet-after-enthusiasm", "went-quiet", false),
            rule("pricing-objection", "pricing", false),
            rule("stuck-in-legal", "legal-stall", true),
        ],
        firings: vec![
            fired("pricing-objection", "D2", "2026-09-05"),
            fired("stuck-in-legal", "D5", "2026-10-11"),
            fired("quiet-after-enthusiasm", "D6", "2026-11-05"),
            fired("quiet-after-enthusiasm", "D7", "2026-11-06"),
            // Six days before the report's end: its window has not passed.
            fired("quiet-after-enthusiasm", "D8", "2026-11-25"),
        ],
        requests: vec![
            // Answered: maya emailed D8 the next day.
            asked("D8", "maya", "2026-11-15", "task: call the CFO"),
            asked("D8", "lena", "2026-11-20", "escalation: legal-stall"),
            asked("D8", "lena", "2026-11-22", "escalation: legal-stall"),
            // Not a key person; and a deal that has closed since.
            asked("D8", "sam", "2026-11-20", "task: follow up"),
            asked("D7", "lena", "2026-11-20", "escalation: went-quiet"),
        ],
    }
}

fn options() -> Options {
    let mut o = Options::new(ts("2026-12-01T00:00:00Z"));
    o.from = Some(ts("2026-09-01T00:00:00Z"));
    o.split_at = Some(ts("2026-11-01T00:00:00Z"));
    o
}

fn history(log: &Log, o: &Options) -> History {
    History::from_events(&log.events, Settings::default(), o.to)
}

#[test]
fn closed_deals_shares_exceptions_and_months() {
    let log = quarter();
    let o = options();
    let r = report(&history(&log, &o), &o, &automation());

    // Won: D1 (maya), D2 (lena, reopened after its loss), D3 (maya's own), D5 (lena), D6.
    let won = &r.summary.closed.won;
    assert_eq!((won.deals, won.with_key_person), (5, 3));
    assert_eq!(won.share, Some(0.6));
    assert_eq!(
        won.by_person,
        BTreeMap::from([(id("lena"), 2), (id("maya"), 1)])
    );
    assert_eq!(won.revenue.amounts().collect::<Vec<_>>(), usd(77_000));
    // Lost: D4 (nobody key), D7 and D9 (maya). D2's loss does not count: it was won after.
    let lost = &r.summary.closed.lost;
    assert_eq!((lost.deals, lost.with_key_person), (3, 2));
    assert_eq!(lost.by_person, BTreeMap::from([(id("maya"), 2)]));
    // Exceptions: every closed deal but D3 (its owner alone) and D6 (nobody but sam); D4
    // counts for sam's note.
    assert_eq!(r.summary.closed.exceptions, 6);
    assert_eq!(r.summary.closed.exception_rate, Some(0.75));
    assert_eq!(r.summary.interventions, 7);

    let months: Vec<_> = r
        .months
        .iter()
        .map(|m| {
            (
                m.month.as_str(),
                m.closed.won.deals,
                m.closed.won.with_key_person,
                m.closed.lost.deals,
                m.closed.lost.with_key_person,
                m.closed.exceptions,
                m.interventions,
            )
        })
        .collect();
    assert_eq!(
        months,
        [
            ("2026-09", 2, 1, 0, 0, 1, 2),
            ("2026-10", 1, 1, 2, 1, 3, 2),
            ("2026-11", 2, 1, 1, 1, 2, 3),
        ]
    );
    assert_eq!(r.months[0].closed.won.share, Some(0.5));
    assert_eq!(r.months[0].closed.lost.share, None);
    assert_eq!(
        r.months[0].closed.won.revenue.amounts().collect::<Vec<_>>(),
        usd(15_000)
    );
}

#[test]
fn interventions_by_person_reason_and_stage() {
    let log = quarter();
    let o = options();
    let r = report(&history(&log, &o), &o, &automation());

    let list: Vec<_> = r
        .interventions
        .iter()
        .map(|i| {
            (
                i.deal.as_str(),
                i.person.as_str(),
                i.touches,
                i.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        list,
        [
            ("D2", "lena", 1, "pricing"),
            ("D1", "maya", 2, "went-quiet"),
            ("D9", "maya", 2, "security-review"),
            ("D5", "lena", 1, "legal-stall"),
            ("D7", "maya", 1, "went-quiet"),
            ("D8", "maya", 1, "stalled"),
            ("D6", "lena", 1, "after-win"),
        ]
    );

    let people: Vec<_> = r
        .people
        .iter()
        .map(|p| {
            (
                p.person.as_str(),
                p.interventions,
                p.deals,
                p.won_deals,
                p.won_share,
                p.lost_deals,
            )
        })
        .collect();
    assert_eq!(
        people,
        [
            ("lena", 3, 3, 2, Some(0.4), 0),
            ("maya", 4, 4, 1, Some(0.2), 2),
        ]
    );
    assert_eq!(
        r.people[1].by_reason,
        BTreeMap::from([
            ("security-review".to_owned(), 1),
            ("stalled".to_owned(), 1),
            ("went-quiet".to_owned(), 2),
        ])
    );

    let reasons: Vec<_> = r
        .reasons
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.interventions,
                s.deals,
                s.pipeline.amounts().collect::<Vec<_>>(),
                s.won.amounts().collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("went-quiet", 2, 2, usd(25_000), usd(10_000)),
            ("after-win", 1, 1, usd(12_000), usd(12_000)),
            ("legal-stall", 1, 1, usd(30_000), usd(30_000)),
            ("pricing", 1, 1, usd(20_000), usd(20_000)),
            ("security-review", 1, 1, usd(9_000), vec![]),
            ("stalled", 1, 1, usd(40_000), vec![]),
        ]
    );
    let stages: Vec<_> = r
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.interventions, s.deals))
        .collect();
    assert_eq!(
        stages,
        [
            ("demo", 2, 2),
            ("proposal", 2, 2),
            ("closed_won", 1, 1),
            ("legal", 1, 1),
            ("negotiation", 1, 1),
        ]
    );
}

#[test]
fn waiting_coverage_and_before_after() {
    let log = quarter();
    let o = options();
    let r = report(&history(&log, &o), &o, &automation());

    // D8 waits on lena since her first unanswered escalation; maya answered hers; sam is not
    // a key person; D7 has closed.
    let waiting: Vec<_> = r
        .waiting
        .iter()
        .map(|w| {
            (
                w.deal.as_str(),
                w.person.as_str(),
                w.what.as_str(),
                w.age_days,
            )
        })
        .collect();
    assert_eq!(waiting, [("D8", "lena", "escalation: legal-stall", 10)]);
    assert_eq!(r.waiting[0].since, ts("2026-11-20"));
    assert_eq!(r.waiting[0].amount, Some(usd(40_000)[0]));

    let coverage: Vec<_> = r
        .coverage
        .iter()
        .map(|c| {
            (
                c.reason.as_str(),
                c.interventions,
                c.after_rule,
                c.uncovered,
            )
        })
        .collect();
    assert_eq!(
        coverage,
        [
            ("went-quiet", 2, 1, 1),
            ("after-win", 1, 0, 1),
            // The legal rule is in shadow: it fired, but did nothing a human saw.
            ("legal-stall", 1, 0, 1),
            ("pricing", 1, 1, 0),
            ("security-review", 1, 0, 1),
            ("stalled", 1, 0, 1),
        ]
    );
    let rules = |reason: &str| -> Vec<_> {
        r.coverage
            .iter()
            .find(|c| c.reason == reason)
            .unwrap()
            .rules
            .iter()
            .map(|x| {
                (
                    x.rule.as_str(),
                    x.shadow,
                    x.fired,
                    x.deals,
                    x.stepped_in_after,
                    x.pre_empted,
                    x.pending,
                )
            })
            .collect()
    };
    // D6: pre-empted; D7: maya still stepped in; D8: its 14 days have not passed.
    assert_eq!(
        rules("went-quiet"),
        [("quiet-after-enthusiasm", false, 3, 3, 1, 1, 1)]
    );
    assert_eq!(
        rules("pricing"),
        [("pricing-objection", false, 1, 1, 1, 0, 0)]
    );
    assert_eq!(
        rules("legal-stall"),
        [("stuck-in-legal", true, 1, 1, 1, 0, 0)]
    );
    assert!(rules("stalled").is_empty());

    let c = r.comparison.as_ref().unwrap();
    let side = |s: &heroics::Summary| {
        (
            s.closed.won.deals,
            s.closed.won.with_key_person,
            s.closed.lost.deals,
            s.closed.lost.with_key_person,
            s.closed.exceptions,
            s.interventions,
        )
    };
    assert_eq!(side(&c.before), (3, 2, 2, 1, 4, 4));
    assert_eq!(side(&c.after), (2, 1, 1, 1, 2, 3));
    assert_eq!(
        c.after.by_reason,
        BTreeMap::from([
            ("after-win".to_owned(), 1),
            ("stalled".to_owned(), 1),
            ("went-quiet".to_owned(), 1)
        ])
    );
}

#[test]
fn one_key_person_and_a_shorter_period() {
    let log = quarter();
    let mut o = options();
    o.person = Some(id("lena"));
    let r = report(&history(&log, &o), &o, &automation());
    assert_eq!(
        (
            r.summary.closed.won.with_key_person,
            r.summary.interventions
        ),
        (2, 3)
    );
    assert_eq!(r.people.len(), 1);
    assert!(r.waiting.iter().all(|w| w.person.as_str() == "lena"));

    // October only, reading nothing after it: D2 is won (10-15); D5 is still open, so lena's
    // legal meeting counts as an intervention of the month but not in a closed deal.
    let mut october = Options::new(ts("2026-11-01T00:00:00Z"));
    october.from = Some(ts("2026-10-01T00:00:00Z"));
    let r = report(&history(&log, &october), &october, &Automation::default());
    assert_eq!(
        (
            r.summary.closed.won.deals,
            r.summary.closed.lost.deals,
            r.summary.interventions
        ),
        (1, 2, 2)
    );
    assert_eq!(r.months.len(), 1);
}

#[test]
fn a_deal_lost_and_not_yet_reopened_counts_as_lost_in_its_month() {
    // Reading only up to 30 September: D2 was lost on the 25th and nothing after is read.
    let log = quarter();
    let mut september = Options::new(ts("2026-10-01T00:00:00Z"));
    september.from = Some(ts("2026-09-01T00:00:00Z"));
    let r = report(
        &history(&log, &september),
        &september,
        &Automation::default(),
    );
    let lost = &r.summary.closed.lost;
    assert_eq!((lost.deals, lost.with_key_person), (1, 1));
    assert_eq!(lost.by_person, BTreeMap::from([(id("lena"), 1)]));
}

#[test]
fn the_report_as_csv_and_as_a_table() {
    let log = quarter();
    let o = options();
    let r = report(&history(&log, &o), &o, &automation());
    assert_eq!(
        heroics::render::csv(&r, "months").unwrap(),
        "month,won,won_with_key_person,won_share,lost,lost_with_key_person,lost_share,exceptions,exception_rate,interventions\n\
         2026-09,2,1,0.5000,0,0,,1,0.5000,2\n\
         2026-10,1,1,1.0000,2,1,0.5000,3,1.0000,2\n\
         2026-11,2,1,0.5000,1,1,1.0000,2,0.6667,3\n"
    );
    let coverage = heroics::render::csv(&r, "coverage").unwrap();
    assert!(
        coverage
            .contains("went-quiet,2,1,1,founder-rescues,quiet-after-enthusiasm,false,3,3,1,1,1\n"),
        "{coverage}"
    );
    assert!(coverage.contains("stalled,1,0,1,,,,,,,,\n"), "{coverage}");
    assert_eq!(heroics::render::csv(&r, "nonsense"), None);

    let table = heroics::render::table(&r);
    for line in [
        "won 5 (3 with a key person, 60.0%), lost 3 (2, 66.7%), exceptions 75.0%",
        "D8 Corp (D8)  lena      10  40,000 USD  negotiation  escalation: legal-stall",
        "before won 3 (2 with a key person, 66.7%), lost 2 (1, 50.0%), exceptions 80.0%; interventions 4",
    ] {
        assert!(table.contains(line), "{line:?} not in\n{table}");
    }
}
