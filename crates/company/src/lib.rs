//! The demo company: a seeded, reproducible model of a small B2B sales team — a founder and a
//! sales manager (the key people), four account executives, two SDRs — and its leads,
//! accounts, contacts and deals, day by day. In its history the founder steps in on about
//! four closed deals in ten: when a deal goes quiet after an enthusiastic demo, when an
//! implementation concern or a pricing objection comes up (the article's case); the sales
//! manager chases stalled legal reviews and hands out the inbound leads nobody took.
//!
//! [`history`] writes a year of it with no playbooks, as wire-format events: what
//! `pipewright demo` loads. [`simulate`] runs the same company forward twice from the same
//! seed, with the playbooks off and on, the people in the second run reacting to what the
//! engine decides (an owner does the task they were given, a buyer answers a re-engagement
//! sequence with the model's chance), and measures both runs the same way: founder
//! involvement as the heroics report finds it, time to first follow-up, deals stalled,
//! revenue closed. The model's parameters are assumptions, listed by [`Model::assumptions`]
//! and documented in `docs/company.md`.

mod model;
mod rng;
mod sim;
pub mod team;

use serde::Serialize;

use domain::{MILLIS_PER_DAY, Timestamp};
use engine::Engine;

pub use model::{Assumption, Model};
pub use rng::Rng;
use sim::{Sim, Status};

/// Events written by a run, in occurrence order, as NDJSON lines of the wire format.
#[derive(Debug, Clone)]
pub struct History {
    pub lines: Vec<String>,
    pub from: Timestamp,
    pub to: Timestamp,
    /// How the run went, measured over all of it.
    pub outcome: Outcome,
    /// Deals still open at the end that have been quiet since their demo: the ones the
    /// re-engagement rule acts on once the playbooks are switched on.
    pub quiet: Vec<String>,
}

impl History {
    /// The events as one NDJSON text.
    pub fn ndjson(&self) -> String {
        let mut out = String::with_capacity(self.lines.iter().map(|l| l.len() + 1).sum());
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// What one run shows over a window, measured the same way for both runs of a simulation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    pub events: usize,
    /// Leads created in the window.
    pub leads: usize,
    pub inbound_leads: usize,
    /// Deals created in the window.
    pub deals: usize,
    /// Deals created in the window and closed by its end: the cohort the shares are of.
    pub closed: usize,
    pub won: usize,
    /// Of the closed cohort, those the founder stepped in on (as the heroics report finds
    /// interventions), and those either key person did.
    pub founder_deals: usize,
    pub key_person_deals: usize,
    /// Founder interventions that began in the window, on any deal.
    pub founder_interventions: usize,
    /// Hours from an inbound lead's arrival to its first touch (leads of the window that got
    /// one): median and 90th percentile.
    pub first_follow_up_median_hours: Option<f64>,
    pub first_follow_up_p90_hours: Option<f64>,
    /// Deals of the window that went 14 days or more without a touch either way.
    pub stalled: usize,
    /// Deals of the window lost after going quiet for good.
    pub went_dark: usize,
    /// Won in the window, whenever the deal began.
    pub revenue: i64,
    pub deals_won_in_window: usize,
}

impl Outcome {
    pub fn founder_share(&self) -> Option<f64> {
        share(self.founder_deals, self.closed)
    }

    pub fn key_person_share(&self) -> Option<f64> {
        share(self.key_person_deals, self.closed)
    }

    pub fn win_rate(&self) -> Option<f64> {
        share(self.won, self.closed)
    }

    pub fn stalled_share(&self) -> Option<f64> {
        share(self.stalled, self.deals)
    }
}

/// The two runs side by side, then every assumption with its value.
pub fn table(s: &Simulation) -> String {
    use std::fmt::Write;
    let day = |t: Timestamp| t.to_string()[..10].to_owned();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "The demo company (seed {}): {} days with the playbooks off in both runs, then {} days \
         compared, {} to {}.\nSecond run: playbooks {} switched on; people acted on {} of \
         their effects.\n",
        s.model.seed,
        s.warmup_days,
        s.days,
        day(s.from),
        day(s.to),
        s.playbooks_version,
        s.effects_acted,
    );
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.0}%", v * 100.0));
    let hours = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} h"));
    let points = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => match ((b - a) * 100.0).round() {
            0.0 => "0 pts".to_owned(),
            d => format!("{d:+.0} pts"),
        },
        _ => String::new(),
    };
    let money = |euros: i64| {
        let currency = domain::Currency::try_from("EUR".to_owned()).ok();
        currency.map_or_else(
            || euros.to_string(),
            |currency| {
                heroics::render::money(&domain::Money {
                    minor: euros * 100,
                    currency,
                })
            },
        )
    };
    let ratio = |a: f64, b: f64| {
        if a > 0.0 {
            format!("{:+.0}%", (b / a - 1.0) * 100.0)
        } else {
            String::new()
        }
    };
    let (off, on) = (&s.off, &s.on);
    let rows: Vec<[String; 4]> = vec![
        [
            "Deals begun in the window (closed by its end)".into(),
            format!("{} ({})", off.deals, off.closed),
            format!("{} ({})", on.deals, on.closed),
            ratio(off.deals as f64, on.deals as f64),
        ],
        [
            "Founder stepped in, of the closed".into(),
            pct(off.founder_share()),
            pct(on.founder_share()),
            points(off.founder_share(), on.founder_share()),
        ],
        [
            "A key person stepped in, of the closed".into(),
            pct(off.key_person_share()),
            pct(on.key_person_share()),
            points(off.key_person_share(), on.key_person_share()),
        ],
        [
            "Founder interventions in the window".into(),
            off.founder_interventions.to_string(),
            on.founder_interventions.to_string(),
            ratio(
                off.founder_interventions as f64,
                on.founder_interventions as f64,
            ),
        ],
        [
            "First follow-up of inbound leads, median".into(),
            hours(off.first_follow_up_median_hours),
            hours(on.first_follow_up_median_hours),
            String::new(),
        ],
        [
            "First follow-up of inbound leads, 90th pct".into(),
            hours(off.first_follow_up_p90_hours),
            hours(on.first_follow_up_p90_hours),
            String::new(),
        ],
        [
            "Deals stalled (14+ days untouched)".into(),
            format!("{} ({})", off.stalled, pct(off.stalled_share())),
            format!("{} ({})", on.stalled, pct(on.stalled_share())),
            points(off.stalled_share(), on.stalled_share()),
        ],
        [
            "Deals gone dark".into(),
            off.went_dark.to_string(),
            on.went_dark.to_string(),
            String::new(),
        ],
        [
            "Win rate, of the closed".into(),
            pct(off.win_rate()),
            pct(on.win_rate()),
            points(off.win_rate(), on.win_rate()),
        ],
        [
            "Revenue won in the window".into(),
            money(off.revenue),
            money(on.revenue),
            ratio(off.revenue as f64, on.revenue as f64),
        ],
    ];
    let _ = writeln!(out, "{:<46} {:>14} {:>14} {:>9}", "", "off", "on", "change");
    for [name, a, b, c] in rows {
        let _ = writeln!(out, "{name:<46} {a:>14} {b:>14} {c:>9}");
    }
    let _ = writeln!(
        out,
        "\nAssumptions: the model's parameters, not facts (docs/company.md; change one with \
         --set name=value):"
    );
    for a in &s.assumptions {
        let _ = writeln!(out, "  {:<28} {:>7}  {}", a.name, a.value, a.says);
    }
    out
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// `days` of the company with no playbooks, ending at `to`: what `pipewright demo` loads.
pub fn history(model: &Model, to: Timestamp, days: i64) -> History {
    let from = Timestamp::from_millis(to.as_millis() - days * MILLIS_PER_DAY);
    run(model, None, from, to, to).0
}

/// The company from `from` to `to`; with an engine, people act on the effects it decides
/// from `acts_from` on. The outcome is measured from `acts_from` to `to` (over the whole run
/// when `acts_from` is `to`). Also returns how many effects were acted on.
pub fn run(
    model: &Model,
    engine: Option<&Engine>,
    from: Timestamp,
    to: Timestamp,
    acts_from: Timestamp,
) -> (History, usize) {
    let (start, end) = (from.as_millis(), to.as_millis());
    let acts = acts_from.as_millis();
    let mut sim = Sim::new(model, engine, start, end, acts);
    sim.run();
    let measured_from = if acts < end { acts } else { start };
    let outcome = measure(&sim, measured_from, end);
    let history = History {
        quiet: sim.quiet_deals(),
        lines: sim.lines.into_iter().map(|(_, l)| l).collect(),
        from,
        to,
        outcome,
    };
    (history, sim.effects_acted)
}

/// A simulation's two runs.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    pub model: Model,
    pub assumptions: Vec<Assumption>,
    /// The days both runs share (playbooks off in both), then the days compared.
    pub warmup_days: i64,
    pub days: i64,
    pub from: Timestamp,
    pub to: Timestamp,
    pub playbooks_version: String,
    pub off: Outcome,
    pub on: Outcome,
    /// Effects the engine decided in the compared days, which people acted on.
    pub effects_acted: usize,
}

/// Runs the company for `warmup_days` and then `days` more, twice from the same seed: once
/// with no playbooks, once with `engine`'s switched on after the warm-up. The warm-up is the
/// same in both; the outcomes are measured over the compared days.
pub fn simulate(
    model: &Model,
    engine: &Engine,
    start: Timestamp,
    warmup_days: i64,
    days: i64,
) -> Simulation {
    let from = Timestamp::from_millis(start.as_millis() + warmup_days * MILLIS_PER_DAY);
    let to = Timestamp::from_millis(from.as_millis() + days * MILLIS_PER_DAY);
    let (off, _) = run(model, None, start, to, from);
    let (on, effects_acted) = run(model, Some(engine), start, to, from);
    Simulation {
        model: model.clone(),
        assumptions: model.assumptions(),
        warmup_days,
        days,
        from,
        to,
        playbooks_version: engine.version().to_owned(),
        off: off.outcome,
        on: on.outcome,
        effects_acted,
    }
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[rank])
}

/// Measures a run over `[from, to)`.
fn measure(sim: &Sim<'_>, from: i64, to: i64) -> Outcome {
    use std::collections::{HashMap, HashSet};
    let within = |t: i64| t >= from && t < to;
    let events = &sim.events;
    let interventions = heroics::detect(events, heroics::Settings::default());
    let founder = team::TEAM[team::FOUNDER].id;
    let mut by_deal: HashMap<&str, (bool, bool)> = HashMap::new();
    let mut founder_interventions = 0;
    for i in &interventions {
        let entry = by_deal.entry(i.deal.as_str()).or_default();
        if i.person.as_str() == founder {
            entry.0 = true;
            founder_interventions += usize::from(within(i.first_at.as_millis()));
        }
        entry.1 = true;
    }
    let mut out = Outcome {
        events: sim.lines.iter().filter(|(at, _)| within(*at)).count(),
        founder_interventions,
        ..Outcome::default()
    };
    for d in &sim.deals {
        if let Some(closed) = d.closed_at
            && within(closed)
            && d.status == Status::Won
        {
            out.revenue += d.won_amount;
            out.deals_won_in_window += 1;
        }
        if !within(d.created) {
            continue;
        }
        out.deals += 1;
        if d.closed_at.is_some_and(|c| c < to) {
            out.closed += 1;
            out.won += usize::from(d.status == Status::Won);
            let (f, k) = by_deal.get(d.id.as_str()).copied().unwrap_or_default();
            out.founder_deals += usize::from(f);
            out.key_person_deals += usize::from(k);
        }
    }
    let mut waits: Vec<f64> = Vec::new();
    for l in &sim.leads {
        if !within(l.created) {
            continue;
        }
        out.leads += 1;
        if l.inbound {
            out.inbound_leads += 1;
            if let Some(t) = l.first_touch.filter(|t| *t < to) {
                waits.push((t - l.created) as f64 / 3_600_000.0);
            }
        }
    }
    waits.sort_by(f64::total_cmp);
    out.first_follow_up_median_hours = percentile(&waits, 0.5);
    out.first_follow_up_p90_hours = percentile(&waits, 0.9);
    // Stalls: gaps of 14 days between touches on an open deal, begun in the window.
    let stall = 14 * MILLIS_PER_DAY;
    let mut touches: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut dark = HashSet::new();
    for e in events {
        let Some(deal) = &e.refs.deal else { continue };
        use domain::EventBody as B;
        match &e.body {
            B::EmailSent(_)
            | B::EmailReceived(_)
            | B::CallLogged(_)
            | B::MeetingHeld(_)
            | B::MeetingBooked(_)
            | B::NoteAdded(_)
            | B::DealCreated(_) => touches
                .entry(deal.as_str())
                .or_default()
                .push(e.occurred_at.as_millis()),
            B::DealLost(c) if c.reason.as_deref() == Some("went dark") => {
                dark.insert(deal.as_str());
            }
            _ => {}
        }
    }
    for d in sim.deals.iter().filter(|d| within(d.created)) {
        out.went_dark += usize::from(dark.contains(d.id.as_str()));
        let Some(times) = touches.get(d.id.as_str()) else {
            continue;
        };
        let until = d.closed_at.unwrap_or(to).min(to);
        let mut stalled = times
            .windows(2)
            .any(|w| w[1] - w[0] >= stall && w[1] <= until);
        if let Some(&last) = times.last() {
            stalled |= until - last >= stall;
        }
        out.stalled += usize::from(stalled);
    }
    out
}
