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
//!
//! What is decided for a record depends on its own events only, so [`parallel`] replays
//! shards of the records on threads of their own and merges what they decided into the order
//! one replay decides it in. A record's timers are held by timed rule position, with one lazy
//! entry per record in the queue (see [`Replay`]); conditions get the engine's first look
//! (`native.rs`) before CEL.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use domain::{Event, Record, RecordId, RecordKey, RecordKind, Timestamp};

use crate::{Effect, Engine, Memory, Timer};

/// A record as the replay holds it, with its pending timers by timed rule position:
/// `(anchor, due)`, and the key (due, rule rank) of its entry in the queue.
#[derive(Debug)]
struct Held {
    record: Record,
    memory: Memory,
    key: RecordKey,
    /// The record's id, shared by its entries in the firing order.
    id: Arc<str>,
    timers: Vec<Option<(Timestamp, Timestamp)>>,
    queued: Option<(Timestamp, u32)>,
}

/// An entry of the queue in firing order — due, then rule and record, as the store orders
/// timers (`ORDER BY due, rule, record_kind, record_id`) — and the record's position.
///
/// A record has one live entry: its earliest timer, or earlier. The queue is lazy. A timer
/// that moves later (a quiet stretch that activity restarted, the common case) leaves the
/// entry where it was; when it comes up, the record is queued again at its earliest timer
/// then. A timer that moves earlier than the entry adds one, and the older entry is dropped
/// when it comes up. So every pending timer fires at its due time, in the same order as when
/// every move is applied at once.
type Due = (Timestamp, u32, &'static str, Arc<str>, u32);

/// The replay's state between inputs.
#[derive(Debug)]
pub struct Replay<'e> {
    engine: &'e Engine,
    /// Deals' and leads' positions, by id.
    deals: HashMap<RecordId, u32, Ids>,
    leads: HashMap<RecordId, u32, Ids>,
    held: Vec<Held>,
    /// The queue of timers, earliest first.
    due: BinaryHeap<Reverse<Due>>,
    /// Reused for a record's timer changes.
    scratch: Vec<(usize, Option<(Timestamp, Timestamp)>)>,
    /// Each timed rule's rank in the order of rule ids.
    rank: Vec<u32>,
    effects: Vec<Effect>,
    /// When each effect was decided (its due time may be later: a delayed escalation).
    decided: Vec<Timestamp>,
    /// Each effect's place in the order of decisions, for merging shards.
    order: Vec<Order>,
    /// The keys of the effects decided: one decided again is not kept, as the outbox keeps one
    /// effect per key.
    keys: std::collections::HashSet<String>,
    /// With shards, the one this replay holds: `(shard, of)`.
    shard: Option<(u64, u64)>,
    /// The id in the order of an event's effects (events are ordered by their place).
    no_id: Arc<str>,
    /// The time of the latest input: the replay never goes back.
    now: Option<Timestamp>,
    /// The place of the latest event applied.
    last_seq: u64,
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

/// Hashing for the maps of record ids, which only this process reads: a multiply-rotate
/// over the id's bytes, eight at a time, instead of the default keyed SipHash, which took a
/// tenth of a replay.
#[derive(Debug, Default, Clone, Copy)]
struct Ids;

impl std::hash::BuildHasher for Ids {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Debug)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The shard a record belongs to, of `of`.
fn shard_of(kind: RecordKind, id: &RecordId, of: u64) -> u64 {
    domain::stable_hash(&[kind.as_str(), id.as_str()]) % of
}

impl<'e> Replay<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        let n = engine.timed_rules();
        let mut by_id: Vec<usize> = (0..n).collect();
        by_id.sort_by(|a, b| engine.timed_rule(*a).cmp(engine.timed_rule(*b)));
        let mut rank = vec![0; n];
        for (r, i) in by_id.into_iter().enumerate() {
            rank[i] = r as u32;
        }
        Self {
            engine,
            deals: HashMap::default(),
            leads: HashMap::default(),
            held: Vec::new(),
            due: BinaryHeap::new(),
            scratch: Vec::new(),
            rank,
            effects: Vec::new(),
            decided: Vec::new(),
            order: Vec::new(),
            keys: std::collections::HashSet::new(),
            shard: None,
            no_id: Arc::from(""),
            now: None,
            last_seq: 0,
            events: 0,
            fired: 0,
        }
    }

    fn entry(&self, h: u32, (due, rank): (Timestamp, u32)) -> Due {
        let held = &self.held[h as usize];
        (due, rank, held.key.kind.as_str(), Arc::clone(&held.id), h)
    }

    fn queue(&mut self, h: u32, at: (Timestamp, u32)) {
        self.held[h as usize].queued = Some(at);
        let entry = self.entry(h, at);
        self.due.push(Reverse(entry));
    }

    /// A record's earliest timer: its key in firing order and its timed rule.
    fn earliest(&self, h: u32) -> Option<((Timestamp, u32), usize)> {
        self.held[h as usize]
            .timers
            .iter()
            .enumerate()
            .filter_map(|(rule, t)| t.map(|(_, due)| ((due, self.rank[rule]), rule)))
            .min()
    }

    /// Sets (or, with `None`, cancels) a record's timer for one timed rule.
    fn set(&mut self, h: u32, rule: usize, timer: Option<(Timestamp, Timestamp)>) {
        let held = &mut self.held[h as usize];
        held.timers[rule] = timer;
        if let Some((_, due)) = timer {
            let at = (due, self.rank[rule]);
            if held.queued.is_none_or(|q| at < q) {
                self.queue(h, at);
            }
        }
    }

    fn timer(&self, h: u32, rule: usize) -> Option<Timer> {
        let held = &self.held[h as usize];
        let (anchor, due) = held.timers[rule]?;
        Some(Timer {
            due,
            rule: self.engine.timed_rule(rule).to_owned(),
            record: held.key.clone(),
            anchor,
        })
    }

    /// Fires, in order, every timer due at or before `until`.
    pub fn advance(&mut self, until: Timestamp) {
        while let Some(Reverse(first)) = self.due.peek() {
            if first.0 > until {
                break;
            }
            let (at, h) = ((first.0, first.1), first.4);
            self.due.pop();
            if self.held[h as usize].queued != Some(at) {
                // Left behind by an entry queued earlier since.
                continue;
            }
            self.held[h as usize].queued = None;
            let Some((earliest, rule)) = self.earliest(h) else {
                continue;
            };
            if earliest > at {
                // Its timers moved later since it was queued.
                self.queue(h, earliest);
                continue;
            }
            // The record's timers due at this moment fire together, as the store fires them:
            // one input, whose conflicting effects are resolved against each other.
            let mut rules: Vec<usize> = (0..self.held[h as usize].timers.len())
                .filter(|r| {
                    self.held[h as usize].timers[*r].is_some_and(|(_, due)| due == earliest.0)
                })
                .collect();
            rules.sort_by_key(|r| self.rank[*r]);
            let mut decided = Vec::new();
            let mut fired = Vec::with_capacity(rules.len());
            for r in rules {
                let Some(timer) = self.timer(h, r) else {
                    continue;
                };
                self.held[h as usize].timers[r] = None;
                self.fired += 1;
                let held = &mut self.held[h as usize];
                decided.extend(self.engine.on_timed(
                    r,
                    &timer,
                    &held.record,
                    &mut held.memory,
                    timer.due,
                ));
                fired.push((r, timer));
            }
            self.engine.resolve(&mut decided);
            decided.retain(|e| self.keys.insert(e.key.clone()));
            let due = earliest.0;
            let held = &self.held[h as usize];
            let (kind, id) = (held.key.kind.as_str(), &held.id);
            // Due no later than the latest input: armed by it, so decided after it.
            let late = self.now.filter(|now| due <= *now);
            let (at, phase, event, late_mark) = match late {
                Some(now) => (now, 1, self.last_seq, 1),
                None => (due, 0, 0, 0),
            };
            // The moment's effects keep together in the order of decisions, at the place of
            // its first timer.
            self.order
                .extend((0..decided.len() as u32).map(|index| Order {
                    at,
                    phase,
                    event,
                    late: late_mark,
                    due,
                    rank: self.rank[rule],
                    kind,
                    id: Arc::clone(id),
                    index,
                }));
            self.decided.extend(decided.iter().map(|_| due));
            self.effects.extend(decided);
            for (r, timer) in fired {
                let held = &self.held[h as usize];
                if let Some(next) = self.engine.follow_timed(r, &timer, &held.record, due) {
                    self.held[h as usize].timers[r] = Some((next.anchor, next.due));
                }
            }
            if let Some((next, _)) = self.earliest(h) {
                self.queue(h, next);
            }
        }
        self.now = Some(self.now.map_or(until, |n| n.max(until)));
    }

    /// The position of a record, held from its first event.
    fn hold(&mut self, kind: RecordKind, id: &RecordId) -> u32 {
        let at = if kind == RecordKind::Deal {
            &mut self.deals
        } else {
            &mut self.leads
        };
        if let Some(&h) = at.get(id) {
            return h;
        }
        let h = self.held.len() as u32;
        at.insert(id.clone(), h);
        let key = RecordKey::new(kind, id.clone());
        let n = self.engine.timed_rules();
        self.held.push(Held {
            record: Record::empty(&key),
            memory: Memory::new(),
            id: Arc::from(id.as_str()),
            key,
            timers: vec![None; n],
            queued: None,
        });
        h
    }

    /// Applies one event, after firing what came due before it. Events must come in
    /// occurrence order; one earlier than an input before it is applied at the later time.
    pub fn event(&mut self, event: &Event) {
        let seq = self.events;
        self.events += 1;
        self.apply(event, seq);
    }

    /// The event at place `seq` of the input: applied to the records this replay holds.
    fn apply(&mut self, event: &Event, seq: u64) {
        let at = self
            .now
            .map_or(event.occurred_at, |n| n.max(event.occurred_at));
        self.advance(at);
        self.last_seq = seq;
        for kind in RecordKind::ALL {
            let Some(id) = event.refs.get(kind).filter(|_| rules_apply(kind)) else {
                continue;
            };
            if let Some((shard, of)) = self.shard
                && shard_of(kind, id, of) != shard
            {
                continue;
            }
            let h = self.hold(kind, id);
            let held = &mut self.held[h as usize];
            held.record.apply(event);
            let mut decided = self.engine.on_event(event, &held.record, &mut held.memory);
            decided.retain(|e| self.keys.insert(e.key.clone()));
            // By the record's place among the event's references, then as decided.
            let first = (kind as u32) << 16;
            for index in 0..decided.len() as u32 {
                self.order.push(Order {
                    at,
                    phase: 1,
                    event: seq,
                    late: 0,
                    due: at,
                    rank: 0,
                    kind: "",
                    id: Arc::clone(&self.no_id),
                    index: first | index,
                });
            }
            self.decided.extend(decided.iter().map(|_| at));
            self.effects.extend(decided);
            let mut changes = std::mem::take(&mut self.scratch);
            changes.clear();
            let held = &self.held[h as usize];
            changes.extend(self.engine.timers_of(&held.record, &held.memory, at));
            for (rule, timer) in changes.drain(..) {
                self.set(h, rule, timer);
            }
            self.scratch = changes;
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
    pub fn waiting(&self) -> Vec<Timer> {
        let mut all: Vec<(Due, Timer)> = (0..self.held.len() as u32)
            .flat_map(|h| (0..self.engine.timed_rules()).map(move |rule| (h, rule)))
            .filter_map(|(h, rule)| {
                let timer = self.timer(h, rule)?;
                Some((self.entry(h, (timer.due, self.rank[rule])), timer))
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, t)| t).collect()
    }

    /// A record's state as the replay holds it.
    pub fn record(&self, key: &RecordKey) -> Option<&Record> {
        let at = match key.kind {
            RecordKind::Deal => &self.deals,
            RecordKind::Lead => &self.leads,
            _ => return None,
        };
        at.get(&key.id).map(|&h| &self.held[h as usize].record)
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

/// An effect's place in the order a replay decides: by time; at one moment the timers due
/// then (by rule, then record, as they fire) before the events; events in input order, their
/// effects in the order decided.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Order {
    at: Timestamp,
    phase: u8,
    /// For an event's effects, and for a timer armed already due by it: the event's place.
    event: u64,
    /// 0: the event's own effects; 1: a timer it armed already due (a condition that did not
    /// hold at the instance's due time, an instance that appeared with the event), fired
    /// after it and before the next input.
    late: u8,
    due: Timestamp,
    rank: u32,
    kind: &'static str,
    id: Arc<str>,
    index: u32,
}

/// Replays `events` (in occurrence order) through `engine` in `shards` replays on threads of
/// their own, each holding the deals and leads whose stable hash falls to it, then fires the
/// timers due by `until`. A record's history depends on its own events only, so the shards
/// decide what one replay would; their effects are merged into the order one replay decides
/// them in. `progress` is told how many events the first shard (on the calling thread) has
/// replayed, every 10,000.
pub fn parallel(
    engine: &Engine,
    events: &[Event],
    until: Timestamp,
    shards: usize,
    progress: &mut dyn FnMut(u64),
) -> (Vec<(Timestamp, Effect)>, ReplayStats) {
    type Decided = (Vec<(Order, Timestamp, Effect)>, ReplayStats);
    let of = (shards.max(1) as u64).min(64);
    let events = &events[..events.partition_point(|e| e.occurred_at <= until)];
    let run = |shard: u64, progress: &mut dyn FnMut(u64)| -> Decided {
        let mut r = Replay::new(engine);
        r.shard = Some((shard, of));
        for (n, e) in events.iter().enumerate() {
            r.apply(e, n as u64);
            if (n + 1) % 10_000 == 0 {
                progress(n as u64 + 1);
            }
        }
        r.events = events.len() as u64;
        r.advance(until);
        let stats = r.stats();
        let decided = r.order.into_iter().zip(r.decided).zip(r.effects);
        (decided.map(|((o, at), e)| (o, at, e)).collect(), stats)
    };
    // The first shard runs here, telling `progress`; the others on threads of their own.
    let results: Vec<Decided> = std::thread::scope(|s| {
        let others: Vec<_> = (1..of)
            .map(|shard| s.spawn(move || run(shard, &mut |_| {})))
            .collect();
        let mut all = vec![run(0, progress)];
        all.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("a replay shard does not panic")),
        );
        all
    });
    let mut stats = ReplayStats::default();
    let mut all = Vec::new();
    for (decided, s) in results {
        stats.events = s.events;
        stats.timers += s.timers;
        stats.effects += s.effects;
        all.extend(decided);
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    (all.into_iter().map(|(_, at, e)| (at, e)).collect(), stats)
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
