//! Replaying history through the engine in virtual time: events in occurrence order, and the
//! time triggers they arm firing at their due times in between, as the live server would have
//! fired them. Pure, like the rest of the engine: the same events and playbooks give the same
//! effects, in the same order, every time — what a backtest reports on.
//!
//! What the replay does as the live store does: each event is applied to the deals and leads
//! it concerns, the rules it triggers decide with the record as it is after the event, and the
//! record's timers are re-armed at the event's time; a due timer fires at its due time (before
//! any event at or after it), and a schedule re-arms for its next occurrence. What it leaves to
//! the shell: qualification gates (a stored log holds their decisions as `gate.blocked`), the
//! sequence engine (a `start_sequence` is an effect, its steps are not run), routing choices
//! (an `assign_owner` is decided without a member chosen) and delivery — the changes that
//! deliveries make to records are events in a stored log, and replayed as such.

use std::collections::{BTreeSet, HashMap};

use domain::{Event, Record, RecordKey, RecordKind, Timestamp};

use crate::{Effect, Engine, Memory, Timer, TimerChange};

/// A record as the replay holds it.
#[derive(Debug)]
struct Held {
    record: Record,
    memory: Memory,
}

/// The replay's state between inputs.
#[derive(Debug)]
pub struct Replay<'e> {
    engine: &'e Engine,
    records: HashMap<RecordKey, Held>,
    /// Pending timers in firing order: due, then rule and record (as the store orders them).
    due: BTreeSet<(Timestamp, String, &'static str, String)>,
    /// Each record's pending timers, by rule.
    armed: HashMap<RecordKey, HashMap<String, Timer>>,
    effects: Vec<Effect>,
    /// When each effect was decided (its due time may be later: a delayed escalation).
    decided: Vec<Timestamp>,
    /// The time of the latest input: the replay never goes back.
    now: Option<Timestamp>,
    events: u64,
    fired: u64,
}

/// What a replay went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub events: u64,
    /// Time triggers that came due (whether or not their rule then acted).
    pub timers: u64,
    pub effects: usize,
}

fn rules_apply(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Deal | RecordKind::Lead)
}

impl<'e> Replay<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            records: HashMap::new(),
            due: BTreeSet::new(),
            armed: HashMap::new(),
            effects: Vec::new(),
            decided: Vec::new(),
            now: None,
            events: 0,
            fired: 0,
        }
    }

    fn set(&mut self, timer: Timer) {
        // Most re-armings leave a timer where it was (the store rewrites only what moved).
        if self
            .armed
            .get(&timer.record)
            .and_then(|per| per.get(&timer.rule))
            == Some(&timer)
        {
            return;
        }
        let per = self.armed.entry(timer.record.clone()).or_default();
        if let Some(old) = per.remove(&timer.rule) {
            self.due.remove(&order(&old));
        }
        self.due.insert(order(&timer));
        per.insert(timer.rule.clone(), timer);
    }

    fn cancel(&mut self, rule: String, record: RecordKey) {
        if let Some(old) = self
            .armed
            .get_mut(&record)
            .and_then(|per| per.remove(&rule))
        {
            self.due.remove(&order(&old));
        }
    }

    fn take(&mut self, rule: &str, record: &RecordKey) -> Option<Timer> {
        self.armed.get_mut(record)?.remove(rule)
    }

    /// Fires, in order, every timer due at or before `until`.
    pub fn advance(&mut self, until: Timestamp) {
        while let Some(first) = self.due.first().cloned() {
            if first.0 > until {
                break;
            }
            self.due.remove(&first);
            let (_, rule, kind, id) = first;
            let (Some(kind), Ok(id)) = (
                RecordKind::ALL.into_iter().find(|k| k.as_str() == kind),
                domain::RecordId::parse(id),
            ) else {
                continue;
            };
            let key = RecordKey::new(kind, id);
            let Some(timer) = self.take(&rule, &key) else {
                continue;
            };
            self.fired += 1;
            let Some(held) = self.records.get_mut(&key) else {
                continue;
            };
            let decided = self
                .engine
                .on_timer(&timer, &held.record, &mut held.memory, timer.due);
            self.decided.extend(decided.iter().map(|_| timer.due));
            self.effects.extend(decided);
            if let Some(next) = self.engine.follow_up(&timer, &held.record, timer.due) {
                self.set(next);
            }
        }
        self.now = Some(self.now.map_or(until, |n| n.max(until)));
    }

    /// Applies one event, after firing what came due before it. Events must come in
    /// occurrence order; one earlier than an input before it is applied at the later time.
    pub fn event(&mut self, event: &Event) {
        let at = self
            .now
            .map_or(event.occurred_at, |n| n.max(event.occurred_at));
        self.advance(at);
        self.events += 1;
        for key in event.refs.keys() {
            if !rules_apply(key.kind) {
                continue;
            }
            let held = self.records.entry(key.clone()).or_insert_with(|| Held {
                record: Record::empty(&key),
                memory: Memory::new(),
            });
            held.record.apply(event);
            let decided = self.engine.on_event(event, &held.record, &mut held.memory);
            self.decided.extend(decided.iter().map(|_| at));
            self.effects.extend(decided);
            let changes = self.engine.arm(&held.record, at);
            for change in changes {
                match change {
                    TimerChange::Set(timer) => self.set(timer),
                    TimerChange::Cancel { rule, record } => self.cancel(rule, record),
                }
            }
        }
    }

    /// The effects decided so far, in the order they were decided.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Each effect with the moment it was decided, in order.
    pub fn decided(&self) -> impl Iterator<Item = (Timestamp, &Effect)> {
        self.decided.iter().copied().zip(&self.effects)
    }

    /// The timers still waiting, in firing order.
    pub fn waiting(&self) -> Vec<&Timer> {
        let mut all: Vec<&Timer> = self.armed.values().flat_map(|per| per.values()).collect();
        all.sort_by_key(|t| order(t));
        all
    }

    /// A record's state as the replay holds it.
    pub fn record(&self, key: &RecordKey) -> Option<&Record> {
        self.records.get(key).map(|h| &h.record)
    }

    pub fn stats(&self) -> ReplayStats {
        ReplayStats {
            events: self.events,
            timers: self.fired,
            effects: self.effects.len(),
        }
    }

    /// The effects, once the replay is done.
    pub fn into_effects(self) -> Vec<Effect> {
        self.effects
    }
}

/// A timer's place in firing order, as the store orders due timers (`ORDER BY due, rule,
/// record_kind, record_id`).
fn order(t: &Timer) -> (Timestamp, String, &'static str, String) {
    (
        t.due,
        t.rule.clone(),
        t.record.kind.as_str(),
        t.record.id.as_str().to_owned(),
    )
}

/// Replays `events` (in occurrence order) through `engine`, then fires the timers due by
/// `until`: every effect the playbooks would have decided, in order.
pub fn replay<'a>(
    engine: &Engine,
    events: impl IntoIterator<Item = &'a Event>,
    until: Timestamp,
) -> Vec<Effect> {
    let mut r = Replay::new(engine);
    for e in events {
        if e.occurred_at > until {
            break;
        }
        r.event(e);
    }
    r.advance(until);
    r.into_effects()
}
