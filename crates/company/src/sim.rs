//! The simulation: the company's days one after another, every lead and deal a small state
//! machine driven by the model's chances, and — once the playbooks are switched on — the
//! engine reading the same events and the people reacting to what it decides.
//!
//! Two kinds of randomness, kept apart so that two runs with the same seed differ only where
//! the playbooks made them differ: each lead's and deal's *fate* (will it go quiet, which
//! objection, how likely each outcome) is drawn when it is created, from a stream of its own;
//! the day-to-day *noise* (which touch, at what minute) comes from another stream per record.
//! Arrivals come from a stream of their own too, so both runs see the same leads arrive.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use domain::{MILLIS_PER_DAY, RecordKind, Timestamp};
use engine::{Effect, Engine, replay::Replay};
use playbook::Action;
use serde_json::{Map, Value, json};

use crate::model::Model;
use crate::rng::Rng;
use crate::team::{self, AES, FOUNDER, MANAGER, SDRS, TEAM};

const HOUR: i64 = 3_600_000;
const DAY: i64 = MILLIS_PER_DAY;
const STAGES: [&str; 5] = ["discovery", "demo", "proposal", "negotiation", "legal"];
const DEMO: usize = 1;
const PROPOSAL: usize = 2;
const NEGOTIATION: usize = 3;
const LEGAL: usize = 4;

// What a stream of randomness is for (see `Rng::stream`).
const ARRIVALS: u64 = 1;
const LEAD_FATE: u64 = 2;
const LEAD_NOISE: u64 = 3;
const DEAL_FATE: u64 = 4;
const DEAL_NOISE: u64 = 5;
const REFERRAL: u64 = 6;

/// The day (since the Unix epoch) a moment falls on.
fn day_of(at: i64) -> i64 {
    at.div_euclid(DAY)
}

/// Monday to Friday (1970-01-01 was a Thursday).
fn working(day: i64) -> bool {
    (day + 3).rem_euclid(7) < 5
}

/// The next working moment at or after `at`: outside 08:00–17:00 UTC or on a weekend, the
/// next morning at 08:00 plus the minutes it was past.
fn in_hours(at: i64) -> i64 {
    let mut day = day_of(at);
    let mut into = at - day * DAY;
    if into >= 17 * HOUR {
        day += 1;
        into = 8 * HOUR + (into - 17 * HOUR) % HOUR;
    } else if into < 8 * HOUR {
        into = 8 * HOUR + into % HOUR;
    }
    while !working(day) {
        day += 1;
    }
    day * DAY + into
}

/// A moment in the working hours of `day`.
fn during(rng: &mut Rng, day: i64) -> i64 {
    day * DAY + 8 * HOUR + rng.range(0, 9 * HOUR)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Won,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pricing,
    Implementation,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Pricing => "pricing",
            Kind::Implementation => "implementation",
        }
    }
}

/// What is decided about a deal when it is created.
#[derive(Debug)]
struct DealFate {
    stage_len: [i64; 5],
    u_lost: [f64; 5],
    quiet: bool,
    quiet_day: i64,
    u_alone: f64,
    alone_day: i64,
    u_notice: f64,
    notice_day: i64,
    u_rescue: f64,
    u_sequence: f64,
    sequence_days: i64,
    objections: Vec<(Kind, usize, i64)>,
    u_founder: f64,
    founder_day: i64,
    u_loss: f64,
    u_owner: f64,
    u_view: f64,
    stall: bool,
    stall_len: i64,
    /// Only the champion takes part.
    single: bool,
    u_chase: f64,
    chase_day: i64,
    u_unstick: f64,
    u_stall_loss: f64,
    executive: bool,
}

impl DealFate {
    fn draw(m: &Model, rng: &mut Rng, amount: i64) -> Self {
        let typical = [
            m.discovery_days,
            m.demo_days,
            m.proposal_days,
            m.negotiation_days,
            m.legal_days,
        ];
        let mut stage_len = [0; 5];
        for (len, typical) in stage_len.iter_mut().zip(typical) {
            *len = ((0.6 + rng.unit()) * typical).round().max(2.0) as i64;
        }
        let mut u_lost = [0.0; 5];
        for u in &mut u_lost {
            *u = rng.unit();
        }
        let quiet = rng.chance(m.p_quiet_after_demo);
        let quiet_day = rng.range(1, 4);
        let u_alone = rng.unit();
        let alone_day = rng.range(7, 26);
        let u_notice = rng.unit();
        let notice_day = rng.range(7, 13);
        let u_rescue = rng.unit();
        let u_sequence = rng.unit();
        let sequence_days = rng.range(1, 5);
        let mut objections = Vec::new();
        if rng.chance(m.p_implementation) {
            let stage = if rng.chance(0.5) { DEMO } else { PROPOSAL };
            objections.push((Kind::Implementation, stage, rng.range(1, 4)));
        }
        if rng.chance(m.p_pricing) {
            let stage = if rng.chance(0.6) {
                PROPOSAL
            } else {
                NEGOTIATION
            };
            let day = rng.range(5, 8);
            objections.push((Kind::Pricing, stage, day));
        }
        Self {
            stage_len,
            u_lost,
            quiet,
            quiet_day,
            u_alone,
            alone_day,
            u_notice,
            notice_day,
            u_rescue,
            u_sequence,
            sequence_days,
            objections,
            u_founder: rng.unit(),
            founder_day: rng.range(1, 4),
            u_loss: rng.unit(),
            u_owner: rng.unit(),
            u_view: rng.unit(),
            stall: rng.chance(m.p_legal_stall),
            stall_len: ((0.5 + 1.5 * rng.unit()) * m.legal_stall_days).round() as i64,
            u_chase: rng.unit(),
            chase_day: rng.range(14, 19),
            u_unstick: rng.unit(),
            u_stall_loss: rng.unit(),
            executive: amount >= 60_000 && rng.chance(m.p_executive_sponsor),
            single: rng.chance(m.p_single_threaded),
        }
    }
}

#[derive(Debug)]
enum Hold {
    None,
    /// Quiet after the demo since `since` (a day).
    Quiet {
        since: i64,
        sequence: bool,
        founder_decided: bool,
        back_on: Option<i64>,
    },
    /// Legal review sitting since `since`, until `until` unless chased. `system`: the
    /// playbooks alerted someone about it, so the manager no longer chases of her own accord.
    Stall {
        since: i64,
        until: i64,
        chased: bool,
        system: bool,
        escalated_on: Option<i64>,
    },
}

#[derive(Debug)]
struct Objection {
    kind: Kind,
    raised: i64,
    asset: bool,
    owner_call: bool,
    /// Whether the founder stepped in, once that is decided.
    founder: Option<bool>,
}

#[derive(Debug)]
pub(crate) struct Deal {
    pub(crate) id: String,
    account: String,
    name: String,
    owner: usize,
    pub(crate) amount: i64,
    /// Contacts: id and role in the buying group.
    contacts: Vec<(String, &'static str)>,
    pub(crate) created: i64,
    stage: usize,
    entered: i64,
    stage_len: i64,
    pub(crate) status: Status,
    pub(crate) closed_at: Option<i64>,
    pub(crate) won_amount: i64,
    noise: Rng,
    fate: DealFate,
    hold: Hold,
    objection: Option<Objection>,
    raised: usize,
    quiet_done: bool,
    stall_done: bool,
    executive_done: bool,
    discounted: bool,
    /// The day the close date falls on.
    close_day: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeadStatus {
    New,
    Working,
    Quiet,
    Converted,
    Disqualified,
}

impl LeadStatus {
    fn as_str(self) -> &'static str {
        match self {
            LeadStatus::New => "new",
            LeadStatus::Working => "working",
            LeadStatus::Quiet => "working",
            LeadStatus::Converted => "converted",
            LeadStatus::Disqualified => "disqualified",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Lead {
    pub(crate) id: String,
    index: u64,
    name: String,
    company: String,
    pub(crate) inbound: bool,
    pub(crate) created: i64,
    owner: Option<usize>,
    pub(crate) first_touch: Option<i64>,
    status: LeadStatus,
    noise: Rng,
    u_pickup: f64,
    u_convert: f64,
    u_quiet: f64,
    u_cadence: f64,
    cadence: bool,
}

/// Something to do at a moment: write an event, or wake a lead.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Line(String),
    Wake(usize, Wake),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    /// Taken from the shared queue (or handed out on Monday) if nobody owns it yet.
    Pickup {
        by: usize,
    },
    FirstTouch,
    Reply,
    Convert,
    Disqualify,
}

/// The simulation's whole state.
pub(crate) struct Sim<'e> {
    m: Model,
    replay: Option<Replay<'e>>,
    /// Effects decided before this moment are not acted on: the playbooks were off.
    acts_from: i64,
    start: i64,
    end: i64,
    arrivals: Rng,
    queue: BinaryHeap<Reverse<(i64, u64, Due)>>,
    seq: u64,
    pub(crate) lines: Vec<(i64, String)>,
    /// The same events, parsed.
    pub(crate) events: Vec<domain::Event>,
    pub(crate) deals: Vec<Deal>,
    pub(crate) leads: Vec<Lead>,
    deal_at: HashMap<String, usize>,
    lead_at: HashMap<String, usize>,
    next_account: u32,
    next_contact: u32,
    referrals: u64,
    ae_turn: usize,
    sdr_turn: usize,
    route_turn: usize,
    seen: usize,
    pub(crate) effects_acted: usize,
}

impl<'e> Sim<'e> {
    /// A company whose days run from `start` to `end` (milliseconds); with an engine, its
    /// effects decided from `acts_from` on are acted on.
    pub(crate) fn new(
        m: &Model,
        engine: Option<&'e Engine>,
        start: i64,
        end: i64,
        acts_from: i64,
    ) -> Self {
        let mut sim = Self {
            m: m.clone(),
            replay: engine.map(Replay::new),
            acts_from,
            start,
            end,
            arrivals: Rng::stream(m.seed, ARRIVALS, 0),
            queue: BinaryHeap::new(),
            seq: 0,
            lines: Vec::new(),
            events: Vec::new(),
            deals: Vec::new(),
            leads: Vec::new(),
            deal_at: HashMap::new(),
            lead_at: HashMap::new(),
            next_account: 101,
            next_contact: 201,
            referrals: 0,
            ae_turn: 0,
            sdr_turn: 0,
            route_turn: 0,
            seen: 0,
            effects_acted: 0,
        };
        let before = start - 30 * DAY;
        for (i, member) in TEAM.iter().enumerate() {
            let mut data = json!({
                "name": member.name,
                "email": member.id,
                "roles": [member.role],
                "key_person": member.key,
                "timezone": member.timezone,
            });
            if i != FOUNDER && i != MANAGER {
                data["manager"] = json!(TEAM[MANAGER].id);
            }
            if i == MANAGER {
                data["manager"] = json!(TEAM[FOUNDER].id);
            }
            sim.emit(
                before,
                "person.created",
                &[("person", member.id)],
                None,
                data,
            );
        }
        sim
    }

    /// Runs every day from the start to the end.
    pub(crate) fn run(&mut self) {
        let first = day_of(self.start);
        let last = day_of(self.end - 1);
        for day in first..=last {
            self.arrive(day);
            for i in 0..self.deals.len() {
                if self.deals[i].status == Status::Open {
                    self.step_deal(i, day);
                }
            }
            self.drain((day + 1) * DAY);
        }
    }

    /// The open deals quiet since their demo, newest first.
    pub(crate) fn quiet_deals(&self) -> Vec<String> {
        self.deals
            .iter()
            .rev()
            .filter(|d| d.status == Status::Open && matches!(d.hold, Hold::Quiet { .. }))
            .map(|d| d.id.clone())
            .collect()
    }

    fn push(&mut self, at: i64, due: Due) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, due)));
    }

    /// Writes an event at `at`, in time order with the rest.
    fn emit(
        &mut self,
        at: i64,
        ty: &str,
        refs: &[(&str, &str)],
        actor: Option<(&str, &str)>,
        data: Value,
    ) {
        self.seq += 1;
        let mut o = Map::new();
        o.insert("type".into(), json!(ty));
        o.insert("source".into(), json!("demo"));
        o.insert("source_id".into(), json!(format!("e{}", self.seq)));
        o.insert(
            "occurred_at".into(),
            json!(Timestamp::from_millis(at).to_string()),
        );
        for (k, v) in refs {
            o.insert((*k).into(), json!(v));
        }
        if let Some((k, v)) = actor {
            o.insert("actor".into(), json!({ k: v }));
        }
        if !data.as_object().is_some_and(Map::is_empty) {
            o.insert("data".into(), data);
        }
        let line = Value::Object(o).to_string();
        self.push(at, Due::Line(line));
    }

    /// Writes what is due before `until`, feeding the engine and acting on what it decides.
    fn drain(&mut self, until: i64) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            let at = *at;
            if at >= until || at >= self.end {
                break;
            }
            let Some(Reverse((at, _, due))) = self.queue.pop() else {
                break;
            };
            match due {
                Due::Line(line) => {
                    // Parsed once: for the engine, and for measuring the run.
                    let new = wire::parse_one(&line).expect("the model writes valid events");
                    let id = domain::EventId(stable_id(self.lines.len() as u64));
                    let event = new.stamp(id, Timestamp::from_millis(at));
                    if let Some(replay) = &mut self.replay {
                        replay.event(&event);
                    }
                    self.lines.push((at, line));
                    self.events.push(event);
                }
                Due::Wake(lead, wake) => self.wake(lead, wake, at),
            }
            self.react();
        }
        if let Some(replay) = &mut self.replay {
            replay.advance(Timestamp::from_millis(until.min(self.end) - 1));
        }
        self.react();
    }

    /// Acts on the effects the engine decided since the last look.
    fn react(&mut self) {
        let Some(replay) = &self.replay else { return };
        let new: Vec<(i64, Effect)> = replay
            .decided()
            .skip(self.seen)
            .map(|(t, e)| (t.as_millis(), e.clone()))
            .collect();
        self.seen += new.len();
        for (at, effect) in new {
            // Shadow effects are only recorded; overruled ones lost to another write.
            if at < self.acts_from || effect.shadow || effect.overruled.is_some() {
                continue;
            }
            self.effects_acted += 1;
            match effect.record.kind {
                RecordKind::Deal => {
                    if let Some(&i) = self.deal_at.get(effect.record.id.as_str()) {
                        self.deal_effect(i, &effect, at);
                    }
                }
                RecordKind::Lead => {
                    if let Some(&i) = self.lead_at.get(effect.record.id.as_str()) {
                        self.lead_effect(i, &effect, at);
                    }
                }
                _ => {}
            }
        }
    }

    // ---- arrivals ----

    fn arrive(&mut self, day: i64) {
        if !working(day) {
            return;
        }
        let per_day = |per_week: f64| per_week / 5.0;
        let inbound = self
            .arrivals
            .poisson(per_day(self.m.inbound_leads_per_week));
        let outbound = self
            .arrivals
            .poisson(per_day(self.m.outbound_leads_per_week));
        let referrals = self
            .arrivals
            .poisson(per_day(self.m.referral_deals_per_week));
        for i in 0..inbound + outbound {
            let at = during(&mut self.arrivals, day);
            let origin = if i >= inbound {
                "outbound list"
            } else if self.arrivals.chance(0.65) {
                "inbound form"
            } else {
                "webinar"
            };
            self.new_lead(at, origin);
        }
        for _ in 0..referrals {
            let at = during(&mut self.arrivals, day);
            self.referrals += 1;
            let fate = Rng::stream(self.m.seed, REFERRAL, self.referrals);
            self.new_deal(
                at,
                None,
                fate,
                Rng::stream(self.m.seed, DEAL_NOISE, self.referrals),
            );
        }
    }

    fn new_lead(&mut self, at: i64, origin: &'static str) {
        let index = self.leads.len() as u64;
        let mut fate = Rng::stream(self.m.seed, LEAD_FATE, index);
        let noise = Rng::stream(self.m.seed, LEAD_NOISE, index);
        let first = fate.pick(&team::FIRST);
        let last = fate.pick(&team::LAST);
        let company = format!(
            "{}{}",
            fate.pick(&team::COMPANY_A),
            fate.pick(&team::COMPANY_B)
        );
        let lead = Lead {
            id: format!("L-{}", 2001 + index),
            index,
            name: format!("{first} {last}"),
            company,
            inbound: origin != "outbound list",
            created: at,
            owner: None,
            first_touch: None,
            status: LeadStatus::New,
            noise,
            u_pickup: fate.unit(),
            u_convert: fate.unit(),
            u_quiet: fate.unit(),
            u_cadence: fate.unit(),
            cadence: false,
        };
        let id = lead.id.clone();
        let email = format!(
            "{}.{}@{}.example",
            first.to_lowercase(),
            last.to_lowercase(),
            lead.company.to_lowercase()
        );
        let mut data = json!({
            "name": lead.name,
            "company": lead.company,
            "email": email,
            "origin": origin,
            "status": "new",
        });
        let i = self.leads.len();
        self.lead_at.insert(id.clone(), i);
        let inbound = lead.inbound;
        self.leads.push(lead);
        if inbound {
            self.emit(at, "lead.created", &[("lead", &id)], None, data);
            if origin == "inbound form" {
                let form = json!({ "form": "demo-request" });
                self.emit(at, "form.submitted", &[("lead", &id)], None, form);
            }
            // Without routing: someone takes it from the shared queue, or it waits for Monday.
            let lead = &mut self.leads[i];
            let (when, by) = if lead.u_pickup < self.m.p_queue_pickup {
                let wait = (lead.noise.exp(self.m.queue_hours) * HOUR as f64) as i64;
                (in_hours(at + wait), SDRS[self.sdr_turn % SDRS.len()])
            } else {
                let mut day = day_of(at) + 1;
                while (day + 3).rem_euclid(7) != 0 {
                    day += 1;
                }
                (day * DAY + 9 * HOUR, MANAGER)
            };
            self.sdr_turn += 1;
            self.push(when, Due::Wake(i, Wake::Pickup { by }));
        } else {
            let sdr = SDRS[self.sdr_turn % SDRS.len()];
            self.sdr_turn += 1;
            self.leads[i].owner = Some(sdr);
            data["owner"] = json!(TEAM[sdr].id);
            self.emit(at, "lead.created", &[("lead", &id)], None, data);
            let wait = self.leads[i].noise.range(HOUR, 2 * DAY);
            self.push(in_hours(at + wait), Due::Wake(i, Wake::FirstTouch));
        }
    }

    fn wake(&mut self, i: usize, wake: Wake, at: i64) {
        let m = self.m.clone();
        let id = self.leads[i].id.clone();
        let lead_ref = [("lead", id.as_str())];
        match wake {
            Wake::Pickup { by } => {
                if self.leads[i].owner.is_some() {
                    return;
                }
                // Handed out by the manager, or taken by an SDR.
                let sdr = if by == MANAGER {
                    SDRS[self.leads[i].index as usize % SDRS.len()]
                } else {
                    by
                };
                self.leads[i].owner = Some(sdr);
                let data = json!({ "owner": TEAM[sdr].id });
                self.emit(
                    at,
                    "lead.updated",
                    &lead_ref,
                    Some(("person", TEAM[by].id)),
                    data,
                );
                let wait = if by == MANAGER {
                    self.leads[i].noise.range(HOUR / 2, 4 * HOUR)
                } else {
                    self.leads[i].noise.range(5 * 60_000, HOUR / 2)
                };
                self.push(at + wait, Due::Wake(i, Wake::FirstTouch));
            }
            Wake::FirstTouch => {
                let lead = &mut self.leads[i];
                if lead.first_touch.is_some() || lead.status != LeadStatus::New {
                    return;
                }
                let Some(owner) = lead.owner else { return };
                lead.first_touch = Some(at);
                lead.status = LeadStatus::Working;
                let waited = (at - lead.created) as f64 / HOUR as f64;
                let p = m.p_lead_converts * 0.5f64.powf(waited / m.lead_halflife_hours);
                let converts = lead.u_convert < p;
                let quiet = !converts && lead.u_quiet < m.p_lead_goes_quiet;
                let subject = format!("Your enquiry at {}", lead.company);
                let next = if converts {
                    Some((Wake::Reply, lead.noise.range(DAY / 4, 3 * DAY)))
                } else if quiet {
                    lead.status = LeadStatus::Quiet;
                    Some((Wake::Disqualify, lead.noise.range(28 * DAY, 35 * DAY)))
                } else {
                    Some((Wake::Disqualify, lead.noise.range(2 * DAY, 6 * DAY)))
                };
                let data = json!({ "subject": subject });
                self.emit(
                    at,
                    "email.sent",
                    &lead_ref,
                    Some(("person", TEAM[owner].id)),
                    data,
                );
                let update = json!({ "status": "working" });
                self.emit(at + 60_000, "lead.updated", &lead_ref, None, update);
                if let Some((wake, after)) = next {
                    self.push(in_hours(at + after), Due::Wake(i, wake));
                }
            }
            Wake::Reply => {
                let lead = &mut self.leads[i];
                if matches!(
                    lead.status,
                    LeadStatus::Converted | LeadStatus::Disqualified
                ) {
                    return;
                }
                let quiet = lead.status == LeadStatus::Quiet;
                lead.status = LeadStatus::Working;
                let after = lead.noise.range(2 * DAY, 8 * DAY);
                let owner = lead.owner.unwrap_or(SDRS[0]);
                let subject = format!("Re: Your enquiry at {}", lead.company);
                self.emit(
                    at,
                    "email.received",
                    &lead_ref,
                    None,
                    json!({ "subject": subject }),
                );
                let call = at + self.leads[i].noise.range(DAY, 2 * DAY);
                let data = json!({ "direction": "outbound", "duration_minutes": 25 });
                self.emit(
                    in_hours(call),
                    "call.logged",
                    &lead_ref,
                    Some(("person", TEAM[owner].id)),
                    data,
                );
                // A lead the cadence brought back converts as often as one touched at once.
                let next = if !quiet || self.leads[i].u_convert < m.p_lead_converts {
                    Wake::Convert
                } else {
                    Wake::Disqualify
                };
                self.push(in_hours(call + after), Due::Wake(i, next));
            }
            Wake::Convert => {
                if matches!(
                    self.leads[i].status,
                    LeadStatus::Converted | LeadStatus::Disqualified
                ) {
                    return;
                }
                self.leads[i].status = LeadStatus::Converted;
                let data = json!({ "status": LeadStatus::Converted.as_str() });
                self.emit(at, "lead.updated", &lead_ref, None, data);
                let index = self.leads[i].index;
                let fate = Rng::stream(m.seed, DEAL_FATE, index);
                let noise = Rng::stream(m.seed, DEAL_NOISE, 1 << 32 | index);
                self.new_deal(at + 60_000, Some(i), fate, noise);
            }
            Wake::Disqualify => {
                let lead = &mut self.leads[i];
                if matches!(
                    lead.status,
                    LeadStatus::Converted | LeadStatus::Disqualified
                ) {
                    return;
                }
                lead.status = LeadStatus::Disqualified;
                let owner = lead.owner.unwrap_or(SDRS[0]);
                let data = json!({ "status": LeadStatus::Disqualified.as_str() });
                self.emit(
                    at,
                    "lead.updated",
                    &lead_ref,
                    Some(("person", TEAM[owner].id)),
                    data,
                );
            }
        }
    }

    fn lead_effect(&mut self, i: usize, effect: &Effect, at: i64) {
        let id = self.leads[i].id.clone();
        match &effect.action {
            Action::AssignOwner { team, .. } => {
                let lead = &self.leads[i];
                if lead.first_touch.is_some() || lead.status != LeadStatus::New {
                    return;
                }
                // The store's router chooses among those who can take it; the model takes the
                // team in turn, passing over the owner who missed the first touch.
                let members: Vec<usize> = team
                    .iter()
                    .filter_map(|p| team::index(p.as_str()))
                    .filter(|&p| Some(p) != lead.owner)
                    .collect();
                if members.is_empty() {
                    return;
                }
                let chosen = members[self.route_turn % members.len()];
                self.route_turn += 1;
                let mut data = json!({
                    "owner": TEAM[chosen].id,
                    "rule": effect.rule,
                    "strategy": "round_robin",
                });
                if let Some(previous) = lead.owner {
                    data["previous"] = json!(TEAM[previous].id);
                }
                self.leads[i].owner = Some(chosen);
                self.emit(at, "owner.assigned", &[("lead", &id)], None, data);
                let wait = (self.leads[i].noise.exp(self.m.routed_hours) * HOUR as f64) as i64;
                self.push(
                    in_hours(at + wait.max(5 * 60_000)),
                    Due::Wake(i, Wake::FirstTouch),
                );
            }
            Action::StartSequence { .. } => {
                let lead = &mut self.leads[i];
                if lead.status != LeadStatus::Quiet || lead.cadence {
                    return;
                }
                lead.cadence = true;
                if lead.u_cadence < self.m.p_lead_cadence_revives {
                    let after = lead.noise.range(2 * DAY, 6 * DAY);
                    self.push(in_hours(at + after), Due::Wake(i, Wake::Reply));
                }
            }
            _ => {}
        }
    }

    // ---- deals ----

    fn new_deal(&mut self, at: i64, lead: Option<usize>, mut fate: Rng, noise: Rng) {
        let index = self.deals.len();
        let id = format!("D-{}", 1001 + index);
        let owner = AES[self.ae_turn % AES.len()];
        self.ae_turn += 1;
        let size = fate.unit();
        let amount = 1_000 * (8.0 + 150.0 * size * size * size).round() as i64;
        let deal_fate = DealFate::draw(&self.m, &mut fate, amount);
        let (company, contact_name) = match lead {
            Some(l) => (self.leads[l].company.clone(), self.leads[l].name.clone()),
            None => (
                format!(
                    "{}{}",
                    fate.pick(&team::COMPANY_A),
                    fate.pick(&team::COMPANY_B)
                ),
                format!("{} {}", fate.pick(&team::FIRST), fate.pick(&team::LAST)),
            ),
        };
        let account = format!("A-{}", self.next_account);
        self.next_account += 1;
        let employees = 20 + (size * 3000.0) as i64;
        let segment = match employees {
            ..200 => "smb",
            200..1000 => "mid-market",
            _ => "enterprise",
        };
        let industry = *fate.pick(&team::INDUSTRIES);
        self.emit(
            at,
            "account.created",
            &[("account", &account)],
            None,
            json!({ "name": company, "industry": industry, "employees": employees, "segment": segment }),
        );
        let mut contacts = Vec::new();
        let buyers = [
            ("champion", contact_name),
            ("economic_buyer", {
                format!("{} {}", fate.pick(&team::FIRST), fate.pick(&team::LAST))
            }),
        ];
        for (role, name) in buyers {
            let contact = self.contact(at, &account, &company, role, &name);
            contacts.push((contact, role));
        }
        let name = format!(
            "{company} {}",
            fate.pick(&["rollout", "pilot", "platform", "analytics", "expansion"])
        );
        let close = Timestamp::from_millis(at + 75 * DAY).to_string();
        let mut refs = vec![("deal", id.clone()), ("account", account.clone())];
        if let Some(l) = lead {
            refs.push(("lead", self.leads[l].id.clone()));
        }
        let refs: Vec<(&str, &str)> = refs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let data = json!({
            "name": name,
            "stage": STAGES[0],
            "owner": TEAM[owner].id,
            "amount": amount,
            "currency": "EUR",
            "close_date": &close[..10],
            "contacts": contacts.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            "roles": contacts.iter().map(|(c, r)| (c.clone(), json!(r))).collect::<serde_json::Map<_, _>>(),
        });
        self.emit(at, "deal.created", &refs, None, data);
        let created_day = day_of(at);
        let stage_len = deal_fate.stage_len[0];
        self.deal_at.insert(id.clone(), index);
        self.deals.push(Deal {
            id,
            account,
            name,
            owner,
            amount,
            contacts,
            created: at,
            stage: 0,
            entered: created_day,
            stage_len,
            status: Status::Open,
            closed_at: None,
            won_amount: 0,
            noise,
            fate: deal_fate,
            hold: Hold::None,
            objection: None,
            raised: 0,
            quiet_done: false,
            stall_done: false,
            executive_done: false,
            discounted: false,
            close_day: day_of(at + 75 * DAY),
        });
        // The discovery call, booked by the buyer.
        let d = &mut self.deals[index];
        let held = in_hours(at + d.noise.range(DAY, 3 * DAY));
        let (deal, champion, owner) = (d.id.clone(), d.contacts[0].0.clone(), TEAM[d.owner].id);
        let refs = [("deal", deal.as_str())];
        self.emit(
            at + 30 * 60_000,
            "meeting.booked",
            &refs,
            Some(("contact", &champion)),
            json!({ "title": "Discovery call", "scheduled_for": Timestamp::from_millis(held).to_string() }),
        );
        self.emit(
            held,
            "meeting.held",
            &refs,
            Some(("person", owner)),
            json!({ "title": "Discovery call", "duration_minutes": 40, "attendees": [champion] }),
        );
    }

    fn contact(&mut self, at: i64, account: &str, company: &str, role: &str, name: &str) -> String {
        let id = format!("C-{}", self.next_contact);
        self.next_contact += 1;
        let title = team::TITLES
            .iter()
            .find(|(r, _)| *r == role)
            .map_or("Manager", |(_, t)| *t);
        let email = format!(
            "{}@{}.example",
            name.to_lowercase().replace(' ', "."),
            company.to_lowercase()
        );
        self.emit(
            at,
            "contact.created",
            &[("contact", &id), ("account", account)],
            None,
            json!({ "name": name, "email": email, "title": title, "role": role, "timezone": "Europe/Berlin" }),
        );
        id
    }

    fn close(&mut self, i: usize, day: i64, won: bool, reason: &str) {
        let d = &mut self.deals[i];
        // At the end of the day, after its other touches.
        let at = day * DAY + 17 * HOUR + d.noise.range(0, HOUR / 2);
        d.status = if won { Status::Won } else { Status::Lost };
        d.closed_at = Some(at);
        let id = d.id.clone();
        let refs = [("deal", id.as_str())];
        if won {
            let amount = if d.discounted {
                (d.amount as f64 * (1.0 - self.m.founder_discount)).round() as i64
            } else {
                d.amount
            };
            d.won_amount = amount;
            self.emit(
                at,
                "deal.won",
                &refs,
                None,
                json!({ "amount": amount, "reason": reason }),
            );
        } else {
            self.emit(at, "deal.lost", &refs, None, json!({ "reason": reason }));
        }
    }

    /// A key person's touch on a deal: an email or a call, written down as an intervention
    /// with the model's chance.
    fn key_touch(&mut self, i: usize, day: i64, who: usize, reason: &str, what: &str) {
        let m = &self.m;
        let logged = self.deals[i].noise.chance(m.p_logged);
        let d = &mut self.deals[i];
        let at = during(&mut d.noise, day);
        let id = d.id.clone();
        let contact = d.contacts[0].0.clone();
        let refs = [("deal", id.as_str()), ("contact", contact.as_str())];
        let person = Some(("person", TEAM[who].id));
        if d.noise.chance(0.5) {
            self.emit(at, "email.sent", &refs, person, json!({ "subject": what }));
        } else {
            let data = json!({ "direction": "outbound", "duration_minutes": 30, "outcome": what });
            self.emit(at, "call.logged", &refs, person, data);
        }
        if logged {
            let data = json!({ "person": TEAM[who].id, "reason": reason, "note": what });
            self.emit(
                at + 10 * 60_000,
                "intervention.logged",
                &refs[..1],
                person,
                data,
            );
        }
    }

    /// The owner moves the deal's close date `days` past the later of today and the current
    /// one.
    fn push_close_date(&mut self, i: usize, day: i64, days: i64) {
        let d = &mut self.deals[i];
        d.close_day = d.close_day.max(day) + days;
        let at = during(&mut d.noise, day);
        let (id, owner) = (d.id.clone(), TEAM[d.owner].id);
        let date = Timestamp::from_millis(d.close_day * DAY).to_string();
        self.emit(
            at,
            "deal.updated",
            &[("deal", &id)],
            Some(("person", owner)),
            json!({ "close_date": &date[..10] }),
        );
    }

    /// The champion's email on `day`.
    fn champion_writes(&mut self, i: usize, day: i64, subject: &str) {
        let d = &mut self.deals[i];
        let at = during(&mut d.noise, day);
        let (id, contact) = (d.id.clone(), d.contacts[0].0.clone());
        let refs = [("deal", id.as_str()), ("contact", contact.as_str())];
        let actor = Some(("contact", contact.as_str()));
        self.emit(
            at,
            "email.received",
            &refs,
            actor,
            json!({ "subject": subject }),
        );
    }

    /// An ordinary touch: the owner's email or call, the buyer's reply, a meeting, a note;
    /// on a deal that is `fading`, only the owner's emails and calls nobody picks up.
    fn activity(&mut self, i: usize, day: i64, fading: bool) {
        let d = &mut self.deals[i];
        let at = during(&mut d.noise, day);
        let id = d.id.clone();
        let reachable: Vec<&(String, &str)> = d
            .contacts
            .iter()
            .filter(|(_, role)| !d.fate.single || *role != "economic_buyer")
            .collect();
        let contact = reachable[d.noise.range(0, reachable.len() as i64) as usize]
            .0
            .clone();
        let owner = TEAM[d.owner].id;
        let refs = [("deal", id.as_str()), ("contact", contact.as_str())];
        let stage = STAGES[d.stage];
        if fading {
            if d.noise.chance(0.6) {
                let subject = format!("Checking in on the {stage}");
                self.emit(
                    at,
                    "email.sent",
                    &refs,
                    Some(("person", owner)),
                    json!({ "subject": subject }),
                );
            } else {
                let data = json!({ "direction": "outbound", "outcome": "no_answer" });
                self.emit(at, "call.logged", &refs, Some(("person", owner)), data);
            }
            return;
        }
        match d.noise.range(0, 10) {
            0..3 => {
                let subject = format!("Next steps for the {stage}");
                self.emit(
                    at,
                    "email.sent",
                    &refs,
                    Some(("person", owner)),
                    json!({ "subject": subject }),
                );
                if self.deals[i].noise.chance(0.6) {
                    self.emit(
                        at + 2 * HOUR,
                        "email.opened",
                        &refs,
                        Some(("contact", &contact)),
                        json!({}),
                    );
                }
            }
            3..6 => {
                let subject = format!("Re: Next steps for the {stage}");
                self.emit(
                    at,
                    "email.received",
                    &refs,
                    Some(("contact", &contact)),
                    json!({ "subject": subject }),
                );
            }
            6 => {
                let data = json!({ "title": format!("{stage} follow-up"), "duration_minutes": 30, "attendees": [contact] });
                self.emit(at, "meeting.held", &refs, Some(("person", owner)), data);
            }
            7 | 8 => {
                let data = json!({ "direction": "outbound", "duration_minutes": 15 });
                self.emit(at, "call.logged", &refs, Some(("person", owner)), data);
            }
            _ => {
                let data = json!({ "text": format!("Agreed the {stage} plan with the buyer.") });
                self.emit(at, "note.added", &refs[..1], Some(("person", owner)), data);
            }
        }
    }

    fn step_deal(&mut self, i: usize, day: i64) {
        let m = self.m.clone();
        let on_weekday = working(day);
        match self.deals[i].hold {
            Hold::Quiet {
                since,
                sequence,
                founder_decided,
                back_on,
            } => {
                let d = &mut self.deals[i];
                let q = day - since;
                let mut back = back_on;
                if back.is_none() && d.fate.u_alone < m.p_revives_alone && q == d.fate.alone_day {
                    back = Some(day);
                }
                if back.is_none() && !founder_decided && q >= d.fate.notice_day && on_weekday {
                    let p = if sequence {
                        m.p_founder_after_sequence
                    } else {
                        m.p_founder_notices_quiet
                    };
                    if let Hold::Quiet {
                        founder_decided, ..
                    } = &mut d.hold
                    {
                        *founder_decided = true;
                    }
                    if d.fate.u_notice < p {
                        let revives = d.fate.u_rescue < m.p_founder_revives;
                        let after = d.noise.range(1, 4);
                        self.key_touch(i, day, FOUNDER, "went-quiet", "A customer like you");
                        if revives {
                            back = Some(day + after);
                        }
                    }
                }
                let d = &mut self.deals[i];
                if let Hold::Quiet { back_on, .. } = &mut d.hold {
                    *back_on = back;
                }
                if back == Some(day) {
                    d.hold = Hold::None;
                    // Back in the conversation: a few more days in the stage.
                    d.stage_len = day - d.entered + d.noise.range(3, 7);
                    self.champion_writes(i, day, "Re: Sorry for the silence");
                } else if q >= m.dark_after_days as i64 {
                    self.close(i, day, false, "went dark");
                }
                return;
            }
            Hold::Stall {
                since,
                until,
                chased,
                system,
                escalated_on,
            } => {
                let d = &mut self.deals[i];
                let mut until = until;
                let in_legal = day - since;
                if !system && !chased && in_legal >= d.fate.chase_day && on_weekday {
                    if let Hold::Stall { chased, .. } = &mut d.hold {
                        *chased = true;
                    }
                    if d.fate.u_chase < m.p_manager_chases {
                        if d.fate.u_unstick < m.p_chase_unsticks {
                            until = until.min(day + d.noise.range(2, 6));
                        }
                        self.key_touch(i, day, MANAGER, "legal-stall", "Where legal review stands");
                    }
                }
                if let Some(on) = escalated_on
                    && day >= on
                    && on_weekday
                {
                    // The exception reached the manager, who resolves it by chasing.
                    let d = &mut self.deals[i];
                    if let Hold::Stall { escalated_on, .. } = &mut d.hold {
                        *escalated_on = None;
                    }
                    if d.fate.u_chase < m.p_manager_chases.max(m.p_owner_acts) {
                        if d.fate.u_unstick < m.p_chase_unsticks {
                            until = until.min(day + d.noise.range(2, 6));
                        }
                        self.key_touch(i, day, MANAGER, "legal-stall", "Escalated: legal review");
                    }
                }
                let d = &mut self.deals[i];
                if let Hold::Stall { until: u, .. } = &mut d.hold {
                    *u = until;
                }
                if day >= until {
                    let ran_its_course = until - since >= d.fate.stall_len;
                    d.hold = Hold::None;
                    d.stall_done = true;
                    d.stage_len = day - d.entered + d.noise.range(2, 5);
                    if ran_its_course && d.fate.u_stall_loss < m.p_loss_stall {
                        self.close(i, day, false, "legal review stalled");
                    }
                } else if in_legal == 21 {
                    self.push_close_date(i, day, 21);
                } else if on_weekday && d.noise.chance(0.35) {
                    let at = during(&mut d.noise, day);
                    let legal = d.contacts.last().map(|c| c.0.clone()).unwrap_or_default();
                    let (id, owner) = (d.id.clone(), TEAM[d.owner].id);
                    let refs = [("deal", id.as_str()), ("contact", legal.as_str())];
                    let data = json!({ "subject": "Checking on the review" });
                    self.emit(at, "email.sent", &refs, Some(("person", owner)), data);
                }
                return;
            }
            Hold::None => {}
        }
        let in_stage = day - self.deals[i].entered;
        // An open objection: who answers it, and whether the deal survives it.
        if let Some(o) = &self.deals[i].objection {
            let days = day - o.raised;
            let (kind, covered, founder) = (o.kind, o.asset || o.owner_call, o.founder);
            let d = &self.deals[i];
            if founder.is_none() && days >= d.fate.founder_day && on_weekday {
                let p = if covered {
                    m.p_founder_answers_covered
                } else {
                    m.p_founder_answers
                };
                let answers = d.fate.u_founder < p;
                if let Some(o) = &mut self.deals[i].objection {
                    o.founder = Some(answers);
                }
                if answers {
                    let (reason, what) = match kind {
                        Kind::Pricing => ("pricing", "Walked the CFO through the ROI"),
                        Kind::Implementation => (
                            "implementation-concern",
                            "Introduced a customer who is live",
                        ),
                    };
                    self.deals[i].discounted |= kind == Kind::Pricing;
                    self.key_touch(i, day, FOUNDER, reason, what);
                }
            }
            if days >= 4 {
                let Some(o) = self.deals[i].objection.take() else {
                    return;
                };
                let loss = if o.founder == Some(true) {
                    m.p_loss_founder
                } else if o.asset && o.owner_call {
                    m.p_loss_asset_and_owner
                } else if o.asset || o.owner_call {
                    m.p_loss_asset
                } else {
                    m.p_loss_unanswered
                };
                if self.deals[i].fate.u_loss < loss {
                    let reason = match o.kind {
                        Kind::Pricing => "price",
                        Kind::Implementation => "implementation risk",
                    };
                    self.close(i, day + 2, false, reason);
                    return;
                }
                // The buyer accepted the answer: the owner marks the objection resolved.
                let d = &mut self.deals[i];
                let at = during(&mut d.noise, day);
                let (id, owner) = (d.id.clone(), TEAM[d.owner].id);
                self.emit(
                    at,
                    "objection.resolved",
                    &[("deal", &id)],
                    Some(("person", owner)),
                    json!({ "kind": o.kind.as_str() }),
                );
            }
        }
        let d = &mut self.deals[i];
        let stage = d.stage;
        // A planned objection comes up.
        if d.objection.is_none()
            && let Some(&(kind, _, _)) = d
                .fate
                .objections
                .get(d.raised)
                .filter(|(_, s, day)| *s == stage && *day == in_stage)
        {
            d.raised += 1;
            d.objection = Some(Objection {
                kind,
                raised: day,
                asset: false,
                owner_call: false,
                founder: None,
            });
            let at = during(&mut d.noise, day);
            let contact = if kind == Kind::Pricing && !d.fate.single {
                d.contacts[1].0.clone()
            } else {
                d.contacts[0].0.clone()
            };
            let id = d.id.clone();
            let text = match kind {
                Kind::Pricing => "This is more than we budgeted for this year.",
                Kind::Implementation => "We worry about how long the rollout will take us.",
            };
            let data = json!({ "kind": kind.as_str(), "text": text });
            self.emit(
                at,
                "objection.raised",
                &[("deal", &id)],
                Some(("contact", &contact)),
                data,
            );
            return;
        }
        // Skip objections planned for a stage the deal has left.
        while d
            .fate
            .objections
            .get(d.raised)
            .is_some_and(|(_, s, day)| *s < stage || (*s == stage && *day < in_stage))
        {
            d.raised += 1;
        }
        // Quiet after the demo's enthusiasm.
        if stage == DEMO && d.fate.quiet && !d.quiet_done && in_stage == d.fate.quiet_day {
            d.quiet_done = true;
            self.champion_writes(i, day, "Re: Demo - great session, we will be in touch!");
            self.deals[i].hold = Hold::Quiet {
                since: day,
                sequence: false,
                founder_decided: false,
                back_on: None,
            };
            return;
        }
        // The founder as executive sponsor of a large deal.
        if stage == NEGOTIATION
            && d.fate.executive
            && !d.executive_done
            && in_stage >= 2
            && on_weekday
        {
            d.executive_done = true;
            let at = during(&mut d.noise, day);
            let id = d.id.clone();
            let contact = d.contacts[1].0.clone();
            let logged = d.noise.chance(m.p_logged);
            let data = json!({ "title": "Executive alignment", "duration_minutes": 45, "attendees": [contact] });
            self.emit(
                at,
                "meeting.held",
                &[("deal", &id)],
                Some(("person", TEAM[FOUNDER].id)),
                data,
            );
            if logged {
                let data = json!({ "person": TEAM[FOUNDER].id, "reason": "executive-sponsor" });
                self.emit(
                    at + 60_000,
                    "intervention.logged",
                    &[("deal", &id)],
                    Some(("person", TEAM[FOUNDER].id)),
                    data,
                );
            }
            return;
        }
        let lost = [
            m.p_lost_discovery,
            m.p_lost_demo,
            m.p_lost_proposal,
            m.p_lost_negotiation,
            m.p_lost_legal,
        ];
        let d = &self.deals[i];
        let factor = if d.fate.single && stage >= PROPOSAL {
            m.single_threaded_loss
        } else {
            1.0
        };
        let doomed = d.fate.u_lost[stage] < lost[stage] * factor;
        // A deal that will be lost here fades first: the buyer stops answering.
        let fading = doomed && in_stage as f64 >= d.stage_len as f64 * (1.0 - m.fading_share);
        if on_weekday && self.deals[i].noise.chance(m.p_activity) {
            self.activity(i, day, fading);
        }
        let d = &self.deals[i];
        if in_stage < d.stage_len || d.objection.is_some() || !on_weekday {
            return;
        }
        if doomed {
            let reason = [
                "no fit",
                "no budget",
                "chose a competitor",
                "timing",
                "terms",
            ][stage];
            self.close(i, day, false, reason);
            return;
        }
        if stage == LEGAL {
            self.close(i, day, true, "signed");
            return;
        }
        self.advance(i, day);
    }

    fn advance(&mut self, i: usize, day: i64) {
        let d = &mut self.deals[i];
        let next = d.stage + 1;
        let at = during(&mut d.noise, day);
        let id = d.id.clone();
        let refs = [("deal", id.as_str())];
        if next == PROPOSAL {
            // The qualification the proposal gate asks for, before the move.
            let champion = d.contacts[0].0.clone();
            let data = json!({ "fields": { "budget_confirmed": true, "champion": champion } });
            self.emit(at - 30 * 60_000, "deal.updated", &refs, None, data);
        }
        self.emit(
            at,
            "deal.stage_changed",
            &refs,
            None,
            json!({ "stage": STAGES[next] }),
        );
        let d = &mut self.deals[i];
        d.stage = next;
        d.entered = day;
        d.stage_len = d.fate.stage_len[next];
        match next {
            DEMO => {
                let held = in_hours(at + d.noise.range(HOUR, DAY));
                let owner = TEAM[d.owner].id;
                let attendees: Vec<String> = d
                    .contacts
                    .iter()
                    .filter(|(_, role)| !d.fate.single || *role != "economic_buyer")
                    .map(|c| c.0.clone())
                    .collect();
                let data =
                    json!({ "title": "Demo", "duration_minutes": 60, "attendees": attendees });
                self.emit(held, "meeting.held", &refs, Some(("person", owner)), data);
            }
            LEGAL => {
                let (account, name) = (d.account.clone(), d.name.clone());
                let company = name.split(' ').next().unwrap_or("buyer").to_owned();
                let counsel = format!(
                    "{} {}",
                    d.noise.pick(&team::FIRST),
                    d.noise.pick(&team::LAST)
                );
                let contact = self.contact(at + 60_000, &account, &company, "legal", &counsel);
                let d = &mut self.deals[i];
                d.contacts.push((contact, "legal"));
                let contacts: Vec<&str> = d.contacts.iter().map(|c| c.0.as_str()).collect();
                let data = json!({ "contacts": contacts });
                self.emit(at + 2 * 60_000, "deal.updated", &refs, None, data);
                let d = &mut self.deals[i];
                if d.fate.stall && !d.stall_done {
                    d.hold = Hold::Stall {
                        since: day,
                        until: day + d.fate.stall_len,
                        chased: false,
                        system: false,
                        escalated_on: None,
                    };
                    // Legal will take a while: the owner moves the close date out.
                    self.push_close_date(i, day, 21);
                }
            }
            _ => {}
        }
    }

    fn deal_effect(&mut self, i: usize, effect: &Effect, at: i64) {
        let m = self.m.clone();
        let day = day_of(at);
        let d = &mut self.deals[i];
        if d.status != Status::Open {
            return;
        }
        match &effect.action {
            Action::StartSequence { .. } | Action::SendEmail { .. } => {
                if let Hold::Quiet {
                    since,
                    sequence,
                    back_on,
                    ..
                } = &mut d.hold
                    && !*sequence
                {
                    *sequence = true;
                    if back_on.is_none() && d.fate.u_sequence < m.p_sequence_revives {
                        *back_on = Some((day + d.fate.sequence_days).max(*since + 1));
                    }
                }
            }
            Action::SendAsset { .. } => {
                let viewed = d.fate.u_view < m.p_asset_viewed;
                if let Some(o) = &mut d.objection {
                    o.asset = true;
                }
                if viewed {
                    let when = in_hours(at + d.noise.range(2 * HOUR, 20 * HOUR));
                    let (id, contact) = (d.id.clone(), d.contacts[0].0.clone());
                    let asset = match &effect.action {
                        Action::SendAsset {
                            asset: playbook::AssetChoice::Named(a),
                            ..
                        } => a.clone(),
                        _ => "asset".to_owned(),
                    };
                    let data = json!({ "asset": asset, "seconds": 180 });
                    self.emit(
                        when,
                        "content.viewed",
                        &[("deal", &id)],
                        Some(("contact", &contact)),
                        data,
                    );
                }
            }
            Action::Task { .. } | Action::Alert { .. } => {
                if d.fate.u_owner >= m.p_owner_acts {
                    return;
                }
                let when = in_hours(at + d.noise.range(2 * HOUR, DAY));
                let (id, owner) = (d.id.clone(), TEAM[d.owner].id);
                let contact = d.contacts.last().map(|c| c.0.clone()).unwrap_or_default();
                let mut acted = false;
                if let Some(o) = &mut d.objection {
                    o.owner_call = true;
                    acted = true;
                }
                if let Hold::Stall {
                    until,
                    chased,
                    system,
                    ..
                } = &mut d.hold
                    && !*chased
                {
                    *chased = true;
                    *system = true;
                    acted = true;
                    if d.fate.u_unstick < m.p_chase_unsticks {
                        *until = (*until).min(day_of(when) + d.noise.range(2, 6));
                    }
                }
                if acted {
                    let data = json!({ "direction": "outbound", "duration_minutes": 20, "outcome": "followed up" });
                    self.emit(
                        when,
                        "call.logged",
                        &[("deal", &id), ("contact", &contact)],
                        Some(("person", owner)),
                        data,
                    );
                }
            }
            Action::Escalate { .. } => {
                let due = day_of(effect.due.as_millis().max(at));
                if let Hold::Stall {
                    escalated_on,
                    system,
                    ..
                } = &mut d.hold
                {
                    *escalated_on = Some(due + 1);
                    *system = true;
                }
            }
            _ => {}
        }
    }
}

/// A stable event id for the `n`th event of a run, so that two runs agree.
fn stable_id(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x7069_7065_7772_6967, n)
}
