//! A seeded, reproducible B2B sales history with known patterns planted in it, for tests and
//! benchmarks of what reads history (the heroics report, suggestions).
//!
//! The model: a founder (`maya`) and a sales manager (`lena`), both key people, and four
//! account executives who own the deals. Each deal walks discovery → demo → proposal →
//! negotiation → legal, with steady activity (emails both ways, opens, calls, meetings,
//! notes) no more than [`Company::max_gap_days`] apart, and ends won or lost. Planted in it:
//! - **quiet after the demo**: with [`Company::quiet_after_demo`], a deal in demo goes quiet
//!   for 6–10 days and then the founder writes, with [`Company::founder_rescues`];
//! - **pricing**: with [`Company::pricing`], a pricing objection in proposal, and the sales
//!   manager calls the next day with [`Company::manager_answers`];
//! - **noise**: with [`Company::quiet_in_discovery`], a quiet stretch of 5–9 days in
//!   discovery that nobody key steps in on.

use domain::{MILLIS_PER_DAY, Timestamp};

pub use company::Rng;

/// The company's parameters.
#[derive(Debug, Clone)]
pub struct Company {
    pub seed: u64,
    pub deals: usize,
    /// About this many events per deal (at least about 20).
    pub events_per_deal: usize,
    /// The first deal starts on this day; deals start over the following `spread_days`.
    pub start: Timestamp,
    pub spread_days: i64,
    pub max_gap_days: f64,
    pub quiet_after_demo: f64,
    pub founder_rescues: f64,
    pub pricing: f64,
    pub manager_answers: f64,
    pub quiet_in_discovery: f64,
    pub win_rate: f64,
}

impl Default for Company {
    fn default() -> Self {
        Self {
            seed: 7,
            deals: 200,
            events_per_deal: 40,
            start: Timestamp::from_millis(1_767_225_600_000), // 2026-01-01
            spread_days: 300,
            max_gap_days: 3.0,
            quiet_after_demo: 0.3,
            founder_rescues: 0.85,
            pricing: 0.3,
            manager_answers: 0.7,
            quiet_in_discovery: 0.2,
            win_rate: 0.5,
        }
    }
}

/// What was planted, to check what reads the history against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planted {
    pub quiet_after_demo: u32,
    pub founder_rescues: u32,
    pub pricing: u32,
    pub manager_answers: u32,
    pub quiet_in_discovery: u32,
}

pub const FOUNDER: &str = "maya";
pub const MANAGER: &str = "lena";
const OWNERS: [&str; 4] = ["sam", "ana", "raj", "kim"];
const STAGES: [&str; 5] = ["discovery", "demo", "proposal", "negotiation", "legal"];

struct Writer {
    lines: Vec<String>,
    deal: usize,
    n: usize,
    /// The latest event's time.
    last: i64,
}

impl Writer {
    fn event(&mut self, ty: &str, at: i64, extra: &str, data: &str) {
        let deal = self.deal;
        self.lines.push(format!(
            r#"{{"type":"{ty}","source":"gen","source_id":"{deal}-{n}","occurred_at":"{at}","deal":"D-{deal}"{extra},"data":{data}}}"#,
            n = self.n,
            at = Timestamp::from_millis(at),
        ));
        self.n += 1;
        self.last = self.last.max(at);
    }

    fn by(&mut self, ty: &str, at: i64, person: &str, data: &str) {
        self.event(
            ty,
            at,
            &format!(r#","actor":{{"person":"{person}"}}"#),
            data,
        );
    }

    fn buyer(&mut self, ty: &str, at: i64, data: &str) {
        let contact = format!(r#","actor":{{"contact":"C-{}"}}"#, self.deal);
        self.event(ty, at, &contact, data);
    }

    /// Ordinary activity from `from` to `to`, `count` events about evenly spaced.
    fn activity(&mut self, rng: &mut Rng, owner: &str, from: i64, to: i64, count: usize) {
        let count = count.max(1);
        let step = (to - from) / count as i64;
        for i in 0..count as i64 {
            let at = from + i * step + rng.range(0, (step / 2).max(1));
            match rng.range(0, 6) {
                0 | 1 => {
                    self.by("email.sent", at, owner, r#"{"subject":"Next steps"}"#);
                    // Opens are not activity: they never end a quiet stretch.
                    if rng.chance(0.5) {
                        self.buyer("email.opened", at + 3_600_000, "{}");
                    }
                }
                2 => self.buyer("email.received", at, r#"{"subject":"Re: Next steps"}"#),
                3 => self.by("meeting.booked", at, owner, r#"{"title":"Follow-up"}"#),
                4 => self.by("call.logged", at, owner, "{}"),
                _ => self.by(
                    "note.added",
                    at,
                    owner,
                    r#"{"text":"Talked about the rollout plan."}"#,
                ),
            }
        }
    }
}

/// The team's `person.created` events and every deal's events, as JSON objects (wire format),
/// each deal's in occurrence order; and what was planted.
pub fn generate(company: &Company) -> (Vec<String>, Planted) {
    let mut rng = Rng::new(company.seed);
    let mut planted = Planted::default();
    let start = company.start.as_millis();
    let day = MILLIS_PER_DAY;
    let mut out = Vec::with_capacity(company.deals * (company.events_per_deal + 4) + 8);
    for (id, key) in [(FOUNDER, true), (MANAGER, true)]
        .into_iter()
        .chain(OWNERS.iter().map(|o| (*o, false)))
    {
        out.push(format!(
            r#"{{"type":"person.created","source":"gen","source_id":"person-{id}","occurred_at":"{}","person":"{id}","data":{{"name":"{id}","key_person":{key}}}}}"#,
            Timestamp::from_millis(start - day)
        ));
    }
    // Activity per stage, so a deal has about `events_per_deal` events.
    let per_stage = (company.events_per_deal.saturating_sub(6) / STAGES.len()).max(2);
    let max_gap = (company.max_gap_days * day as f64) as i64;
    for deal in 0..company.deals {
        let mut w = Writer {
            lines: Vec::new(),
            deal,
            n: 0,
            last: 0,
        };
        let owner = OWNERS[deal % OWNERS.len()];
        let amount = 1_000 * rng.range(5, 120);
        let mut at = start + rng.range(0, company.spread_days * day);
        w.event(
            "deal.created",
            at,
            "",
            &format!(
                r#"{{"name":"Deal {deal}","owner":"{owner}","stage":"discovery","amount":{amount},"currency":"USD"}}"#
            ),
        );
        let last_stage = rng.range(1, STAGES.len() as i64 + 1) as usize;
        for (i, stage) in STAGES.iter().enumerate().take(last_stage) {
            if i > 0 {
                at += rng.range(day / 4, day);
                w.event(
                    "deal.stage_changed",
                    at,
                    "",
                    &format!(r#"{{"stage":"{stage}"}}"#),
                );
            }
            // The stage's ordinary activity, its gaps under the maximum.
            let span = (per_stage as i64 * max_gap * 2 / 3).max(day);
            let half = per_stage / 2;
            match *stage {
                "discovery" if rng.chance(company.quiet_in_discovery) => {
                    w.activity(&mut rng, owner, at + day / 8, at + span / 2, half);
                    planted.quiet_in_discovery += 1;
                    at = w.last + rng.range(5 * day + day / 2, 9 * day);
                    w.by("email.sent", at, owner, r#"{"subject":"Checking in"}"#);
                    w.activity(
                        &mut rng,
                        owner,
                        at + day / 8,
                        at + span / 2,
                        per_stage - half,
                    );
                    at += span / 2;
                }
                "demo" => {
                    w.buyer("meeting.held", at + day / 8, r#"{"title":"Demo"}"#);
                    w.activity(&mut rng, owner, at + day / 4, at + span / 2, half);
                    at += span / 2;
                    if rng.chance(company.quiet_after_demo) {
                        planted.quiet_after_demo += 1;
                        // Quiet for 6-10 days since the last activity.
                        at = w.last + rng.range(6 * day + day / 8, 10 * day);
                        if rng.chance(company.founder_rescues) {
                            planted.founder_rescues += 1;
                            w.by(
                                "email.sent",
                                at,
                                FOUNDER,
                                r#"{"subject":"A customer like you"}"#,
                            );
                        } else {
                            w.by("email.sent", at, owner, r#"{"subject":"Checking in"}"#);
                        }
                    }
                    w.activity(
                        &mut rng,
                        owner,
                        at + day / 8,
                        at + span / 2,
                        per_stage - half,
                    );
                    at += span / 2;
                }
                "proposal" if rng.chance(company.pricing) => {
                    w.activity(&mut rng, owner, at + day / 8, at + span / 2, half);
                    at += span / 2;
                    planted.pricing += 1;
                    w.event(
                        "objection.raised",
                        at,
                        &format!(r#","actor":{{"contact":"C-{deal}"}}"#),
                        r#"{"kind":"pricing","text":"Too expensive for this year."}"#,
                    );
                    at += day;
                    if rng.chance(company.manager_answers) {
                        planted.manager_answers += 1;
                        w.by("call.logged", at, MANAGER, "{}");
                    } else {
                        w.by("email.sent", at, owner, r#"{"subject":"About the price"}"#);
                    }
                    w.activity(
                        &mut rng,
                        owner,
                        at + day / 8,
                        at + span / 2,
                        per_stage - half,
                    );
                    at += span / 2;
                }
                _ => {
                    w.activity(&mut rng, owner, at + day / 8, at + span, per_stage);
                    at += span;
                }
            }
        }
        at += day / 2;
        if rng.chance(company.win_rate) {
            w.event("deal.won", at, "", "{}");
        } else {
            w.event("deal.lost", at, "", r#"{"reason":"no decision"}"#);
        }
        out.append(&mut w.lines);
    }
    (out, planted)
}
