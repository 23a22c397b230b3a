//! What a playbook set would do to the pipeline as it stands: for every time-triggered rule,
//! the records it would act on at once and over the days ahead if nothing else happened, and
//! the busiest hour among them. Pure, like the rest of the engine: the caller hands it the
//! records with the rules' memory of them (so instances already decided stay decided) and the
//! moment; a preview, the storm guard and the CLI read the same numbers.
//!
//! Event-triggered rules act when their events arrive; a forecast lists them and says so.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use domain::{Record, RecordKey, Timestamp};
use playbook::{Rule, Trigger};

use crate::{Engine, Memory, Timer};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// Records kept per rule to show as examples.
const SAMPLE: usize = 5;
/// A schedule's occurrences followed per record within the horizon, at most.
const OCCURRENCES: usize = 500;

/// One rule's forecast.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleForecast {
    pub playbook: String,
    pub rule: String,
    pub why: String,
    /// The trigger in words.
    pub trigger: String,
    /// A time trigger: what follows is forecast. An event trigger acts as its events arrive.
    pub timed: bool,
    /// Records it would act on at once: instances already due.
    pub now: u64,
    /// Records it would act on in each day ahead (index 0: the next 24 hours after now, not
    /// counting `now`).
    pub days: Vec<u64>,
    /// The most records it would act on within one hour (the instances already due count as
    /// one hour): what the storm guard compares with its limit.
    pub busiest_hour: u64,
    /// When the busiest hour begins (the first such hour; `now` for the instances already
    /// due).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest_at: Option<Timestamp>,
    /// Effects by action kind (`alert`, `task`, …), over now and the days ahead.
    pub actions: BTreeMap<String, u64>,
    /// A few of the records it would act on at once (or first, if none at once).
    pub sample: Vec<Example>,
}

/// A record a rule would act on, with its name as people read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Example {
    pub record: RecordKey,
    pub name: String,
}

/// A forecast in the making: records are added page by page.
#[derive(Debug)]
pub struct Forecaster<'e> {
    engine: &'e Engine,
    now: Timestamp,
    horizon_days: usize,
    rules: Vec<RuleForecast>,
    /// Each timed rule's place in `rules`, by timed position; `None` for a rule not forecast.
    places: Vec<Option<usize>>,
    /// Records per (timed rule position, hour since the epoch).
    hours: HashMap<(usize, i64), u64>,
}

impl<'e> Forecaster<'e> {
    /// A forecast of `engine`'s rules from `now` over `horizon_days`.
    pub fn new(engine: &'e Engine, now: Timestamp, horizon_days: usize) -> Self {
        Self::of(engine, now, horizon_days, |_| true)
    }

    /// [`Forecaster::new`] for the rules `only` accepts: the others are not looked at.
    pub fn of(
        engine: &'e Engine,
        now: Timestamp,
        horizon_days: usize,
        only: impl Fn(&Rule) -> bool,
    ) -> Self {
        let mut rules = Vec::new();
        for (playbook, rule) in engine.rules().filter(|(_, r)| only(r)) {
            let timed = !matches!(rule.trigger, Trigger::Event(_));
            rules.push(RuleForecast {
                playbook: playbook.to_owned(),
                rule: rule.id.clone(),
                why: rule.why.clone(),
                trigger: rule.trigger.to_string(),
                timed,
                days: vec![0; horizon_days],
                ..RuleForecast::default()
            });
        }
        let place: HashMap<&str, usize> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.rule.as_str(), i))
            .collect();
        let places = (0..engine.timed_rules())
            .map(|i| place.get(engine.timed_rule(i)).copied())
            .collect();
        Self {
            engine,
            now,
            horizon_days,
            rules,
            places,
            hours: HashMap::new(),
        }
    }

    /// What the rules would do to one record, as it stands with the rules' memory of it.
    pub fn add(&mut self, record: &Record, memory: &Memory) {
        let end = self.now.as_millis() + self.horizon_days as i64 * DAY;
        let key = record.key();
        let pending: Vec<(usize, (Timestamp, Timestamp))> = self
            .engine
            .timers_of(record, memory, self.now)
            .filter(|(i, _)| self.places[*i].is_some())
            .filter_map(|(i, t)| Some((i, t?)))
            .collect();
        for (i, (anchor, due)) in pending {
            let mut memory = memory.clone();
            let mut timer = Timer {
                due,
                rule: self.engine.timed_rule(i).to_owned(),
                record: key.clone(),
                anchor,
            };
            for _ in 0..OCCURRENCES {
                if timer.due.as_millis() > end {
                    break;
                }
                let effects = self
                    .engine
                    .on_timed(i, &timer, record, &mut memory, timer.due);
                if !effects.is_empty() {
                    let at = timer.due.max(self.now);
                    self.count(i, record, at, effects.iter().map(|e| e.action.kind()));
                }
                match self.engine.follow_timed(i, &timer, record, timer.due) {
                    Some(next) => timer = next,
                    None => break,
                }
            }
        }
    }

    fn count<'a>(
        &mut self,
        i: usize,
        record: &Record,
        at: Timestamp,
        kinds: impl Iterator<Item = &'a str>,
    ) {
        let Some(place) = self.places[i] else {
            return;
        };
        let rule = &mut self.rules[place];
        let since = at.as_millis() - self.now.as_millis();
        if since == 0 {
            rule.now += 1;
        } else {
            let day = ((since - 1) / DAY) as usize;
            if let Some(d) = rule.days.get_mut(day) {
                *d += 1;
            }
        }
        for kind in kinds {
            *rule.actions.entry(kind.to_owned()).or_default() += 1;
        }
        if rule.sample.len() < SAMPLE && (since == 0 || rule.now == 0) {
            rule.sample.push(Example {
                record: record.key(),
                name: record.name().to_owned(),
            });
        }
        let hour = if since == 0 {
            i64::MIN
        } else {
            at.as_millis().div_euclid(HOUR)
        };
        let n = self.hours.entry((i, hour)).or_default();
        *n += 1;
        if *n > rule.busiest_hour {
            rule.busiest_hour = *n;
            rule.busiest_at = Some(if since == 0 {
                self.now
            } else {
                Timestamp::from_millis(hour * HOUR)
            });
        }
    }

    /// The forecast of every rule, in the order of the playbooks.
    pub fn finish(self) -> Vec<RuleForecast> {
        self.rules
    }
}

/// What a rule reaches: which trigger instances exist for it and which it acts on — its
/// record kind, trigger, condition and re-entry, not its words or actions. Rules whose reach
/// changes are watched for storms.
pub fn reach(rule: &Rule) -> String {
    let mut h = Sha256::new();
    for part in [
        rule.record.as_str().to_owned(),
        rule.trigger.to_string(),
        rule.condition
            .as_ref()
            .map(|c| c.source.clone())
            .unwrap_or_default(),
        format!("{:?}", rule.reentry),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a rule of one playbook set stands against another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// No rule of that id before.
    New,
    /// What it reaches changed (trigger, condition, re-entry or record kind).
    Reaches,
    /// Only what it does or says changed.
    Acts,
    Same,
    /// Gone from the new set.
    Removed,
}

/// Each rule of `new` (and each of `old` gone from it) with how it changed.
pub fn changes(old: Option<&Engine>, new: &Engine) -> Vec<(String, Change)> {
    let before: HashMap<&str, &Rule> = old
        .map(|e| e.rules().map(|(_, r)| (r.id.as_str(), r)).collect())
        .unwrap_or_default();
    let mut out: Vec<(String, Change)> = new
        .rules()
        .map(|(_, rule)| {
            let change = match before.get(rule.id.as_str()) {
                None => Change::New,
                Some(was) if reach(was) != reach(rule) => Change::Reaches,
                Some(was) if acts(was) != acts(rule) => Change::Acts,
                Some(_) => Change::Same,
            };
            (rule.id.clone(), change)
        })
        .collect();
    let now: std::collections::HashSet<&str> = new.rules().map(|(_, r)| r.id.as_str()).collect();
    if let Some(old) = old {
        out.extend(
            old.rules()
                .filter(|(_, r)| !now.contains(r.id.as_str()))
                .map(|(_, r)| (r.id.clone(), Change::Removed)),
        );
    }
    out
}

/// What a rule does, in a comparable form (its priority decides which of its writes land).
fn acts(rule: &Rule) -> String {
    format!(
        "{:?} {:?} {} {}",
        rule.actions, rule.storm_limit, rule.shadow, rule.priority
    )
}
