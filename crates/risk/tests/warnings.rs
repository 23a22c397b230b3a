//! Every warning on hand-built deals, with a manual clock: when it appears (with time alone
//! where time makes it), what it says, and what makes it go.

use std::time::Duration;

use clock::{Clock, ManualClock};
use domain::{Deal, DealStatus, EventId, Record, RecordKey, RecordKind, Stage, Timestamp};
use risk::{Kind, Learned, Model, Settings, StageStat};

const DAY: i64 = domain::MILLIS_PER_DAY;
/// 2026-03-02T09:00:00Z, a Monday.
const START: i64 = 1_772_442_000_000;

fn at(day: f64) -> Timestamp {
    Timestamp::from_millis(START + (day * DAY as f64) as i64)
}

/// A deal built from events, as a client sends them, applied in order.
struct Built {
    record: Record,
    n: u128,
}

impl Built {
    fn new() -> Self {
        let mut b = Self {
            record: Record::empty(&RecordKey::new(
                RecordKind::Deal,
                domain::RecordId::parse("D-1").unwrap(),
            )),
            n: 0,
        };
        b.add(
            0.0,
            "deal.created",
            None,
            r#"{"name":"Globex","stage":"discovery","amount":20000,"close_date":"2026-04-15","contacts":["C-1"],"roles":{"C-1":"champion","C-2":"economic_buyer"}}"#,
        );
        b
    }

    fn add(&mut self, day: f64, ty: &str, actor: Option<&str>, data: &str) -> &mut Self {
        self.n += 1;
        let actor = actor.map_or(String::new(), |a| format!(r#","actor":{a}"#));
        let text = format!(
            r#"{{"type":"{ty}","source":"t","source_id":"{}","occurred_at":"{}","deal":"D-1"{actor},"data":{data}}}"#,
            self.n,
            at(day)
        );
        let new = wire::parse_one(&text).unwrap_or_else(|p| panic!("{text}: {p:?}"));
        let when = new.occurred_at;
        self.record
            .apply(&new.stamp(EventId(uuid::Uuid::from_u128(self.n)), when));
        self
    }

    fn deal(&self) -> &Deal {
        match &self.record {
            Record::Deal(d) => d,
            _ => unreachable!(),
        }
    }
}

fn clock_at(day: f64) -> ManualClock {
    ManualClock::new(at(day))
}

fn advance(clock: &ManualClock, days: f64) {
    clock.advance(Duration::from_secs_f64(days * 86_400.0));
}

/// Only the one warning under test, so each test sees only its own.
fn only(kind: Kind) -> Model {
    let settings = Settings {
        off: Kind::ALL.iter().copied().filter(|k| *k != kind).collect(),
        ..Settings::default()
    };
    let stages = ["discovery", "demo", "proposal", "negotiation"].map(|s| Stage::parse(s).unwrap());
    Model::new(settings, &stages, Learned::default())
}

fn says(model: &Model, deal: &Deal, clock: &ManualClock) -> Vec<String> {
    model
        .warnings(deal, clock.now())
        .into_iter()
        .map(|w| format!("{}: {}", w.kind, w.says))
        .collect()
}

#[test]
fn no_activity_appears_after_the_threshold_with_no_event_and_activity_clears_it() {
    let model = only(Kind::NoActivity);
    let mut b = Built::new();
    let clock = clock_at(13.9);
    assert!(says(&model, b.deal(), &clock).is_empty());
    advance(&clock, 0.2);
    assert_eq!(
        says(&model, b.deal(), &clock),
        ["no_activity: No activity for 14 days (warns after 14 days)."]
    );
    assert_eq!(model.warnings(b.deal(), clock.now())[0].since, at(14.0));
    // A note is activity: the clock starts again from it.
    b.add(
        14.1,
        "note.added",
        None,
        r#"{"text":"Called, left a message"}"#,
    );
    assert!(says(&model, b.deal(), &clock).is_empty());
    assert_eq!(
        model.window(Kind::NoActivity, b.deal(), clock.now()),
        Some((at(14.1), at(28.1)))
    );
    // An open is not activity (privacy proxies open mail).
    b.add(20.0, "email.opened", None, "{}");
    advance(&clock, 14.0);
    assert_eq!(says(&model, b.deal(), &clock).len(), 1);
}

#[test]
fn ghosted_needs_enough_unanswered_messages_old_enough_and_a_reply_clears_it() {
    let model = only(Kind::Ghosted);
    let mut b = Built::new();
    b.add(1.0, "email.sent", None, r#"{"subject":"Next steps"}"#);
    let clock = clock_at(10.0);
    assert!(
        says(&model, b.deal(), &clock).is_empty(),
        "one message is not ghosting"
    );
    b.add(3.0, "email.sent", None, r#"{"subject":"Following up"}"#);
    // Two unanswered, the first 5 days old on day 6.
    assert_eq!(
        model
            .window(Kind::Ghosted, b.deal(), clock.now())
            .map(|w| w.1),
        Some(at(6.0))
    );
    let early = clock_at(5.9);
    assert!(says(&model, b.deal(), &early).is_empty());
    assert_eq!(
        says(&model, b.deal(), &clock),
        ["ghosted: 2 of our messages in a row unanswered, the first 9 days ago."]
    );
    // An automatic reply is no answer; a human one is.
    b.add(
        10.0,
        "email.received",
        Some(r#"{"contact":"C-1"}"#),
        r#"{"subject":"Out of office","auto_reply":true}"#,
    );
    assert_eq!(says(&model, b.deal(), &clock).len(), 1);
    b.add(
        10.0,
        "email.received",
        Some(r#"{"contact":"C-1"}"#),
        r#"{"subject":"Re: Following up"}"#,
    );
    assert!(says(&model, b.deal(), &clock).is_empty());
    // A call that reached no one counts as unanswered; one that did is a conversation.
    b.add(
        11.0,
        "call.logged",
        None,
        r#"{"direction":"outbound","outcome":"no_answer"}"#,
    );
    b.add(12.0, "email.sent", None, r#"{"subject":"Tried to call"}"#);
    advance(&clock, 6.5);
    assert_eq!(says(&model, b.deal(), &clock).len(), 1);
    b.add(
        16.0,
        "call.logged",
        None,
        r#"{"direction":"outbound","outcome":"connected"}"#,
    );
    assert!(says(&model, b.deal(), &clock).is_empty());
}

#[test]
fn the_close_date_is_overdue_the_day_after_it_and_pushed_from_the_second_push() {
    let overdue = only(Kind::CloseDateOverdue);
    let pushed = only(Kind::CloseDatePushed);
    let mut b = Built::new();
    // The close date is 2026-04-15: overdue from the 16th, 00:00 UTC.
    let clock = ManualClock::new("2026-04-15T23:59:00Z".parse().unwrap());
    assert!(says(&overdue, b.deal(), &clock).is_empty());
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(
        says(&overdue, b.deal(), &clock),
        ["close_date_overdue: The close date 2026-04-15 passed 1 day ago."]
    );
    clock.advance(Duration::from_secs(3 * 24 * 3600));
    assert_eq!(
        says(&overdue, b.deal(), &clock),
        ["close_date_overdue: The close date 2026-04-15 passed 4 days ago."]
    );
    // Moving it later clears the overdue warning and counts a push.
    b.add(10.0, "deal.updated", None, r#"{"close_date":"2026-05-15"}"#);
    assert!(says(&overdue, b.deal(), &clock).is_empty());
    assert!(
        says(&pushed, b.deal(), &clock).is_empty(),
        "one push is not a pattern"
    );
    // Earlier is not a push.
    b.add(11.0, "deal.updated", None, r#"{"close_date":"2026-05-01"}"#);
    assert!(says(&pushed, b.deal(), &clock).is_empty());
    b.add(12.0, "deal.updated", None, r#"{"close_date":"2026-06-01"}"#);
    assert_eq!(
        says(&pushed, b.deal(), &clock),
        ["close_date_pushed: The close date has been pushed back 2 times (warns at 2)."]
    );
    assert_eq!(pushed.warnings(b.deal(), clock.now())[0].since, at(12.0));
}

#[test]
fn single_threaded_appears_when_the_second_contact_goes_quiet_without_an_event() {
    let model = only(Kind::SingleThreaded);
    let mut b = Built::new();
    b.add(
        1.0,
        "meeting.held",
        None,
        r#"{"title":"Discovery call","attendees":["C-1"]}"#,
    );
    // A young deal is not judged yet.
    let clock = clock_at(13.0);
    assert!(says(&model, b.deal(), &clock).is_empty());
    advance(&clock, 1.0);
    assert_eq!(
        says(&model, b.deal(), &clock),
        ["single_threaded: Only one contact engaged in the last 30 days (warns below 2)."]
    );
    // A second contact writes: two engaged.
    b.add(
        14.0,
        "email.received",
        Some(r#"{"contact":"C-2"}"#),
        r#"{"subject":"Questions"}"#,
    );
    assert!(says(&model, b.deal(), &clock).is_empty());
    // The champion last engaged on day 1: after day 31 only C-2 is recent, with no new event.
    assert_eq!(
        model
            .window(Kind::SingleThreaded, b.deal(), clock.now())
            .map(|w| w.1),
        Some(at(31.0))
    );
    advance(&clock, 17.5);
    assert_eq!(says(&model, b.deal(), &clock).len(), 1);
}

#[test]
fn no_economic_buyer_in_a_late_stage_until_one_with_the_role_takes_part() {
    let model = only(Kind::NoEconomicBuyer);
    let mut b = Built::new();
    b.add(1.0, "meeting.held", None, r#"{"attendees":["C-1"]}"#);
    let clock = clock_at(5.0);
    assert!(
        says(&model, b.deal(), &clock).is_empty(),
        "discovery is not late"
    );
    // proposal and negotiation are the late half of the four declared stages.
    assert_eq!(
        model.late,
        ["proposal", "negotiation"].map(|s| Stage::parse(s).unwrap())
    );
    b.add(4.0, "deal.stage_changed", None, r#"{"stage":"proposal"}"#);
    assert_eq!(
        says(&model, b.deal(), &clock),
        ["no_economic_buyer: In proposal with no economic buyer or decision maker engaged."]
    );
    // Moving within the late stages keeps the same instance.
    b.add(
        4.5,
        "deal.stage_changed",
        None,
        r#"{"stage":"negotiation"}"#,
    );
    assert_eq!(model.warnings(b.deal(), clock.now())[0].since, at(4.0));
    // C-2 has the role on this deal; attending a held meeting engages them.
    b.add(
        5.0,
        "meeting.held",
        None,
        r#"{"title":"Business case review","attendees":["C-1","C-2"]}"#,
    );
    assert!(says(&model, b.deal(), &clock).is_empty());
}

#[test]
fn pricing_not_discussed_late_until_a_message_meeting_or_objection_about_it() {
    let model = only(Kind::PricingNotDiscussed);
    let mut b = Built::new();
    b.add(
        1.0,
        "email.sent",
        None,
        r#"{"subject":"Great to meet you"}"#,
    );
    b.add(3.0, "deal.stage_changed", None, r#"{"stage":"proposal"}"#);
    let clock = clock_at(3.5);
    assert_eq!(
        says(&model, b.deal(), &clock),
        ["pricing_not_discussed: In proposal and pricing has not been discussed."]
    );
    b.add(
        3.2,
        "email.sent",
        None,
        r#"{"subject":"Your quote for the pilot"}"#,
    );
    assert!(says(&model, b.deal(), &clock).is_empty());
    assert_eq!(b.deal().engagement.pricing_discussed_at, Some(at(3.2)));

    // A pricing objection is pricing discussed too.
    let mut other = Built::new();
    other.add(
        2.0,
        "objection.raised",
        Some(r#"{"contact":"C-1"}"#),
        r#"{"kind":"pricing"}"#,
    );
    other.add(3.0, "deal.stage_changed", None, r#"{"stage":"proposal"}"#);
    assert!(says(&model, other.deal(), &clock).is_empty());
}

#[test]
fn an_objection_is_unresolved_after_the_threshold_until_resolved() {
    let model = only(Kind::UnresolvedObjection);
    let mut b = Built::new();
    b.add(
        2.0,
        "objection.raised",
        Some(r#"{"contact":"C-1"}"#),
        r#"{"kind":"security","text":"SOC 2?"}"#,
    );
    let clock = clock_at(4.9);
    assert!(says(&model, b.deal(), &clock).is_empty());
    advance(&clock, 0.2);
    assert_eq!(
        says(&model, b.deal(), &clock),
        ["unresolved_objection: A security objection raised 3 days ago is unresolved."]
    );
    // Resolving another kind changes nothing; resolving this one clears it.
    b.add(5.0, "objection.resolved", None, r#"{"kind":"pricing"}"#);
    assert_eq!(says(&model, b.deal(), &clock).len(), 1);
    b.add(
        5.05,
        "objection.resolved",
        None,
        r#"{"kind":"security","text":"Report sent"}"#,
    );
    assert!(says(&model, b.deal(), &clock).is_empty());
    assert_eq!(
        b.deal().engagement.objections[0].resolved_at,
        Some(at(5.05))
    );
}

#[test]
fn a_deal_becomes_stalled_with_no_new_event_by_the_default_then_by_won_deals_percentile() {
    let model = only(Kind::Stalled);
    let mut b = Built::new();
    b.add(1.0, "deal.stage_changed", None, r#"{"stage":"proposal"}"#);
    let clock = clock_at(21.9);
    assert!(says(&model, b.deal(), &clock).is_empty());
    // Nothing arrives; the day passes.
    advance(&clock, 0.2);
    assert_eq!(
        says(&model, b.deal(), &clock),
        [
            "stalled: In proposal for 21 days; the default is 21 days until 10 won deals have been through it."
        ]
    );
    // Won deals of this pipeline spent 1..12 days in proposal: the 75th percentile is 9 days.
    let won: Vec<Deal> = (1..=12)
        .map(|days| {
            let mut w = Built::new();
            w.add(0.5, "deal.stage_changed", None, r#"{"stage":"proposal"}"#);
            w.add(0.5 + days as f64, "deal.won", None, "{}");
            w.deal().clone()
        })
        .collect();
    assert!(won.iter().all(|d| d.status == DealStatus::Won));
    let stages = risk::stage_stats(75.0, &won);
    assert_eq!(
        stages["default/proposal"],
        StageStat {
            won: 12,
            median_ms: 6 * DAY,
            threshold_ms: 9 * DAY
        }
    );
    let learned = model.with_learned(Learned {
        stages,
        ..Learned::default()
    });
    let clock = clock_at(9.9);
    assert!(says(&learned, b.deal(), &clock).is_empty());
    advance(&clock, 0.2);
    assert_eq!(
        says(&learned, b.deal(), &clock),
        [
            "stalled: In proposal for 9 days; won deals of this pipeline left it within 9 days (75th percentile of 12 won deals)."
        ]
    );
    // Moving on clears it: a new stage, a new visit.
    b.add(
        10.5,
        "deal.stage_changed",
        None,
        r#"{"stage":"negotiation"}"#,
    );
    assert!(says(&learned, b.deal(), &clock).is_empty());
}

#[test]
fn the_rule_based_score_combines_the_warnings_and_explains_them() {
    let model = Model::new(Settings::default(), &[], Learned::default());
    let mut b = Built::new();
    b.add(1.0, "email.sent", None, r#"{"subject":"Hello"}"#);
    b.add(2.0, "email.sent", None, r#"{"subject":"Hello again"}"#);
    let quiet = at(20.0);
    let a = model.assess(b.deal(), quiet);
    let kinds: Vec<Kind> = a.warnings.iter().map(|c| c.warning.kind).collect();
    // Heaviest first: ghosted 0.40, no activity 0.35, stalled 0.35 (in discovery since day 0
    // with the 21-day default: not yet), single-threaded 0.20.
    assert_eq!(
        kinds,
        [Kind::Ghosted, Kind::NoActivity, Kind::SingleThreaded]
    );
    let expected = 1.0 - (1.0 - 0.40) * (1.0 - 0.35) * (1.0 - 0.20);
    assert!((a.score - expected).abs() < 1e-12, "{}", a.score);
    assert!(a.at_risk);
    assert_eq!(model.score(b.deal(), quiet), a.score);
    assert_eq!(
        a.scoring.to_string(),
        "rule-based weights (0 closed deals; weights are fitted from 40)"
    );
    // A closed deal is at no risk.
    b.add(21.0, "deal.lost", None, r#"{"reason":"no decision"}"#);
    assert_eq!(model.score(b.deal(), at(40.0)), 0.0);
    assert!(model.warnings(b.deal(), at(40.0)).is_empty());
}
