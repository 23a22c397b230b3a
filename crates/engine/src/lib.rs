//! pipewright's rules engine: a pure function of (record state, input, now) to effects and
//! timer changes.
//!
//! Inputs are an event that has just been applied to its records, or a timer that has come due.
//! Outputs are data: [`Effect`]s (each action a rule decided, with its idempotency key and
//! why-trace) and [`TimerChange`]s. The engine never performs I/O, never reads the clock and
//! draws no random numbers, so the live server, tests and replays of history get the same
//! answer from the same inputs.

pub mod facts;
pub mod forecast;
mod native;
pub mod replay;
pub mod routing;
pub mod sequence;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use domain::{DealStatus, Event, EventType, Record, RecordKey, Role, Stage, Timestamp};
use playbook::{Action, AssetChoice, PlaybookSet, Reentry, Rule, Trigger};

pub use native::Native;

/// A rule's memory of one record: what the re-entry policies need, and which instance of its
/// time trigger was decided last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fired {
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub last_at: Option<Timestamp>,
    /// When the stage visit in which it last fired began.
    #[serde(default)]
    pub stage_entered_at: Option<Timestamp>,
    /// For a time trigger: the anchor of the latest instance that came due, whether the rule
    /// acted on it or not. That instance is decided: whatever the playbooks become, it is never
    /// armed again (see [`Engine::arm`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Timestamp>,
}

impl Fired {
    /// Whether the time-trigger instance `(anchor, due)` has been decided. Memory written
    /// before instances were recorded knows only when the rule last fired; a timer fires at
    /// its due time, so a firing at `due` is that instance.
    fn has_decided(&self, anchor: Timestamp, due: Timestamp) -> bool {
        match self.decided {
            Some(decided) => decided == anchor,
            None => self.count > 0 && self.last_at == Some(due),
        }
    }
}

/// Every rule's memory of one record, by rule id.
pub type Memory = BTreeMap<String, Fired>;

/// Why an effect exists: the rule, the trigger instance and what the condition saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub why: String,
    pub trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The facts the condition read, by name (`deal.stage`), as it saw them.
    pub saw: BTreeMap<String, serde_json::Value>,
}

/// An action a rule decided, to be written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// Deterministic: rule, record, trigger instance and action position (see
    /// [`idempotency_key`]).
    pub key: String,
    pub playbook: String,
    pub rule: String,
    pub version: String,
    pub record: RecordKey,
    pub action: Action,
    /// When it was decided: the event's time, or the time trigger's due time.
    pub at: Timestamp,
    /// When to deliver: then, or later for a delayed escalation.
    pub due: Timestamp,
    /// Recorded, never delivered.
    pub shadow: bool,
    /// Another effect of the same input writes a different value to the same owner, stage or
    /// field and wins (see [`Engine::resolve`]): why, naming the winning rule and both values.
    /// Recorded, never delivered.
    pub overruled: Option<String>,
    pub trace: Trace,
}

/// A time trigger waiting for a record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timer {
    pub due: Timestamp,
    pub rule: String,
    pub record: RecordKey,
    /// The moment the timer counts from (last activity, stage entry, the date): it names the
    /// trigger instance, so the same instance can never fire twice.
    pub anchor: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    /// Set (or move) the rule's timer for the record.
    Set(Timer),
    /// The rule no longer waits on this record.
    Cancel { rule: String, record: RecordKey },
}

/// For `explain`: what one rule has done and would do for one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleExplanation {
    pub playbook: String,
    pub rule: String,
    pub why: String,
    pub trigger: String,
    /// How often it fired for this record, and when last.
    pub fired: Fired,
    /// For a time trigger: when it fires if nothing changes (absent: not armed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// What the condition gives against the record as it is now, and the facts it read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_now: Option<String>,
    pub saw: BTreeMap<String, serde_json::Value>,
    /// One sentence: the state of this rule for this record.
    pub summary: String,
}

/// A gate as a deal stands against it (see [`Engine::explain_gates`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateExplanation {
    pub stage: String,
    pub playbook: String,
    pub why: String,
    /// Every criterion holds: a move into the stage would pass.
    pub met: bool,
    pub override_roles: Vec<String>,
    pub criteria: Vec<CriterionNow>,
}

/// One criterion now: whether it holds, its condition, the facts it read, and why it could not
/// be evaluated if it could not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriterionNow {
    pub name: String,
    pub condition: String,
    pub met: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub saw: BTreeMap<String, serde_json::Value>,
}

/// Each of a gate's criteria against the record at `now`; one that cannot be evaluated does
/// not hold.
fn assess(
    gate: &playbook::Gate,
    record: &Record,
    now: Timestamp,
    risk: &risk::Model,
) -> Vec<CriterionNow> {
    let mut seen = Seen::default();
    gate.criteria
        .iter()
        .map(|c| {
            let (result, saw) = evaluate(&c.condition, record, None, now, risk, &mut seen);
            CriterionNow {
                name: c.name.clone(),
                condition: c.condition.source.clone(),
                met: result == Ok(true),
                error: result.err(),
                saw,
            }
        })
        .collect()
}

/// A move a gate refuses (see [`Engine::check_gate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The playbook declaring the gate.
    pub playbook: String,
    pub stage: Stage,
    pub why: String,
    pub override_roles: Vec<Role>,
    pub unmet: Vec<Unmet>,
}

impl Refusal {
    pub fn unmet_names(&self) -> Vec<String> {
        self.unmet.iter().map(|u| u.name.clone()).collect()
    }
}

/// A criterion that does not hold, with the facts it read (and why it could not be evaluated,
/// if it could not).
#[derive(Debug, Clone, PartialEq)]
pub struct Unmet {
    pub name: String,
    pub error: Option<String>,
    pub saw: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy)]
struct RuleRef {
    playbook: usize,
    rule: usize,
}

/// The compiled playbooks, indexed by trigger.
#[derive(Debug, Clone)]
pub struct Engine {
    set: Arc<PlaybookSet>,
    by_event: HashMap<EventType, Vec<RuleRef>>,
    timed: Vec<RuleRef>,
    by_id: HashMap<String, RuleRef>,
    /// Each rule's condition compiled for the first look, where it compiles.
    natives: Vec<Vec<Option<Native>>>,
    /// How deals at risk are recognised: the playbooks' thresholds and what has been learned
    /// from closed deals (`deal.risk`, `warning` triggers).
    risk: Arc<risk::Model>,
    /// What a record's timers depend on (see [`Engine::arming`]).
    arming: String,
}

impl Engine {
    pub fn new(set: Arc<PlaybookSet>) -> Self {
        let mut by_event: HashMap<EventType, Vec<RuleRef>> = HashMap::new();
        let mut timed = Vec::new();
        let mut by_id = HashMap::new();
        for (p, playbook) in set.playbooks.iter().enumerate() {
            for (r, rule) in playbook.rules.iter().enumerate() {
                let at = RuleRef {
                    playbook: p,
                    rule: r,
                };
                by_id.insert(rule.id.clone(), at);
                match rule.trigger {
                    Trigger::Event(t) => by_event.entry(t).or_default().push(at),
                    _ => timed.push(at),
                }
            }
        }
        let natives = set
            .playbooks
            .iter()
            .map(|p| {
                p.rules
                    .iter()
                    .map(|r| {
                        let c = r.condition.as_ref()?;
                        Native::compile(&c.program, r.record.as_str())
                    })
                    .collect()
            })
            .collect();
        let risk = Arc::new(risk::Model::new(
            set.risk.clone(),
            &set.stages(),
            risk::Learned::default(),
        ));
        let mut engine = Self {
            arming: set.version.clone(),
            set,
            by_event,
            timed,
            by_id,
            natives,
            risk,
        };
        engine.arming = engine.arming_of();
        engine
    }

    /// The same playbooks, with risk learned from a history of closed deals (stage times of
    /// won deals, fitted weights).
    pub fn with_learned(&self, learned: risk::Learned) -> Self {
        let mut engine = Self {
            risk: Arc::new(self.risk.with_learned(learned)),
            ..self.clone()
        };
        engine.arming = engine.arming_of();
        engine
    }

    /// What a record's timers depend on: the playbook version, and — when a rule waits for a
    /// risk warning, whose timing depends on what was learned (won deals' time in stage) —
    /// what was learned too. Records armed under another value are re-armed.
    pub fn arming(&self) -> &str {
        &self.arming
    }

    fn arming_of(&self) -> String {
        let waits_for_warnings = self
            .timed
            .iter()
            .any(|at| matches!(self.rule(*at).1.trigger, Trigger::Warning(_)));
        if !waits_for_warnings {
            return self.set.version.clone();
        }
        let learned = serde_json::to_string(&self.risk.learned).unwrap_or_default();
        format!("{}+risk-{}", self.set.version, &key(&[&learned])[..12])
    }

    /// How this engine recognises deals at risk.
    pub fn risk(&self) -> &risk::Model {
        &self.risk
    }

    pub fn version(&self) -> &str {
        &self.set.version
    }

    /// The playbooks the engine runs: their assets and templates render its effects.
    pub fn playbooks(&self) -> &Arc<PlaybookSet> {
        &self.set
    }

    fn native(&self, at: RuleRef) -> Option<&Native> {
        self.natives[at.playbook][at.rule].as_ref()
    }

    fn rule(&self, at: RuleRef) -> (&str, &Rule) {
        let playbook = &self.set.playbooks[at.playbook];
        (&playbook.name, &playbook.rules[at.rule])
    }

    /// After `event` has been applied to `record` (a deal or a lead it concerns): the effects
    /// of the rules the event triggers. The caller re-arms the record's time triggers with
    /// [`Engine::arm`] once its events are applied.
    pub fn on_event(&self, event: &Event, record: &Record, memory: &mut Memory) -> Vec<Effect> {
        let now = event.occurred_at;
        let mut out = Vec::new();
        let kind = record.kind();
        let rules = self
            .by_event
            .get(&event.event_type())
            .map_or(&[][..], Vec::as_slice);
        if !rules.iter().any(|at| self.rule(*at).1.record == kind) {
            return out;
        }
        // The record's and the event's facts are made once, for every rule that reads them.
        let instance = Instance::Event(event);
        let mut seen = Seen::default();
        for at in rules {
            let (playbook, rule) = self.rule(*at);
            if rule.record != kind {
                continue;
            }
            self.decide(
                playbook,
                rule,
                self.native(*at),
                record,
                Some(event),
                memory,
                now,
                &instance,
                &mut out,
                &mut seen,
            );
        }
        self.resolve(&mut out);
        out
    }

    /// Whether `record` (a deal) may enter `stage` at `now`: `None` when the stage has no gate
    /// or every criterion holds, else the gate and the criteria that do not hold, in the
    /// order the gate lists them. A criterion that cannot be evaluated does not hold.
    pub fn check_gate(&self, record: &Record, stage: &Stage, now: Timestamp) -> Option<Refusal> {
        let (playbook, gate) = self.set.gate(stage)?;
        let unmet: Vec<Unmet> = assess(gate, record, now, &self.risk)
            .into_iter()
            .filter(|c| !c.met)
            .map(|c| Unmet {
                name: c.name,
                error: c.error,
                saw: c.saw,
            })
            .collect();
        (!unmet.is_empty()).then(|| Refusal {
            playbook: playbook.name.clone(),
            stage: stage.clone(),
            why: gate.why.clone(),
            override_roles: gate.override_roles.clone(),
            unmet,
        })
    }

    /// Every gate, and where a deal stands against each criterion now: what it needs before
    /// it may move on. Empty for records other than deals.
    pub fn explain_gates(&self, record: &Record, now: Timestamp) -> Vec<GateExplanation> {
        if record.kind() != domain::RecordKind::Deal {
            return Vec::new();
        }
        self.set
            .playbooks
            .iter()
            .flat_map(|p| p.gates.iter().map(move |g| (p, g)))
            .map(|(playbook, gate)| {
                let criteria = assess(gate, record, now, &self.risk);
                GateExplanation {
                    stage: gate.stage.as_str().to_owned(),
                    playbook: playbook.name.clone(),
                    why: gate.why.clone(),
                    met: criteria.iter().all(|c| c.met),
                    override_roles: gate
                        .override_roles
                        .iter()
                        .map(|r| r.as_str().to_owned())
                        .collect(),
                    criteria,
                }
            })
            .collect()
    }

    /// The time triggers a record should be waiting on at `now`: set or cancel, for every
    /// timed rule of its kind. Called after each event; the shell replaces stored timers with
    /// these. An instance the rules' `memory` has decided is never armed again, so playbooks
    /// reloaded, republished or changed decide nothing twice (issue 23).
    pub fn arm(&self, record: &Record, memory: &Memory, now: Timestamp) -> Vec<TimerChange> {
        let key = record.key();
        self.timers_of(record, memory, now)
            .map(|(i, expected)| {
                let rule = self.timed_rule(i).to_owned();
                match expected {
                    Some((anchor, due)) => TimerChange::Set(Timer {
                        due,
                        rule,
                        record: key.clone(),
                        anchor,
                    }),
                    None => TimerChange::Cancel {
                        rule,
                        record: key.clone(),
                    },
                }
            })
            .collect()
    }

    /// Every rule with its playbook's name, in the order of the playbooks.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &Rule)> {
        self.set
            .playbooks
            .iter()
            .flat_map(|p| p.rules.iter().map(move |r| (p.name.as_str(), r)))
    }

    /// How many timed rules there are: a record's timers can be held by their position.
    pub fn timed_rules(&self) -> usize {
        self.timed.len()
    }

    /// The id of the timed rule at position `i`.
    pub fn timed_rule(&self, i: usize) -> &str {
        &self.rule(self.timed[i]).1.id
    }

    /// [`Engine::arm`] without the allocations: for every timed rule of the record's kind, its
    /// position and where its timer should be, `(anchor, due)`, or `None` for no timer.
    pub fn timers_of<'s>(
        &'s self,
        record: &'s Record,
        memory: &'s Memory,
        now: Timestamp,
    ) -> impl Iterator<Item = (usize, Option<(Timestamp, Timestamp)>)> + 's {
        let kind = record.kind();
        self.timed
            .iter()
            .enumerate()
            .map(|(i, at)| (i, self.rule(*at).1))
            .filter(move |(_, rule)| rule.record == kind)
            .map(move |(i, rule)| (i, self.pending(rule, record, memory, now)))
    }

    /// Where a timed rule's timer should be for a record at `now`: its next instance that has
    /// not been decided.
    fn pending(
        &self,
        rule: &Rule,
        record: &Record,
        memory: &Memory,
        now: Timestamp,
    ) -> Option<(Timestamp, Timestamp)> {
        let Some(fired) = memory.get(&rule.id) else {
            return expected(rule, record, now, &self.risk);
        };
        // A schedule's occurrences come in order: the next is the first after the last decided.
        let from = match (&rule.trigger, fired.decided) {
            (Trigger::Schedule(_), Some(decided)) => now.max(decided),
            _ => now,
        };
        expected(rule, record, from, &self.risk)
            .filter(|(anchor, due)| !fired.has_decided(*anchor, *due))
    }

    /// A timer came due at `now`. A timer whose anchor no longer matches the record (activity
    /// moved it, the deal left the stage) does not fire.
    pub fn on_timer(
        &self,
        timer: &Timer,
        record: &Record,
        memory: &mut Memory,
        now: Timestamp,
    ) -> Vec<Effect> {
        match self.by_id.get(&timer.rule) {
            Some(at) => self.fire(*at, timer, record, memory, now),
            None => Vec::new(),
        }
    }

    /// A record's timers that came due at one moment, fired together as one input: each at
    /// its due time, their effects resolved against each other (see [`Engine::resolve`]).
    pub fn on_timers(&self, timers: &[Timer], record: &Record, memory: &mut Memory) -> Vec<Effect> {
        let mut out = Vec::new();
        for timer in timers {
            out.extend(self.on_timer(timer, record, memory, timer.due));
        }
        self.resolve(&mut out);
        out
    }

    /// Settles conflicts among the effects of one input (one event, or a record's timers due
    /// at one moment): where several write different values to the same owner, stage or field
    /// of a record ([`Action::conflicts_with`]), the one of the rule with the higher
    /// `priority` wins; on a tie, the rule declared first in the set (playbooks in file order,
    /// rules in their order), then the action written first. Every other effect writing a
    /// different value there is marked [`Effect::overruled`], with why; it keeps its key, so a
    /// replay decides the same. Effects writing the winner's value stand beside it, and shadow
    /// effects, which write nothing, take no part. [`Engine::on_event`] and
    /// [`Engine::on_timers`] resolve what they return; a caller that fires a record's timers
    /// one by one resolves each moment's effects with this.
    pub fn resolve(&self, effects: &mut [Effect]) {
        // Each effect's rank: higher priority first, then the rule's place, then its place in
        // the input (a rule's actions come in the order written).
        let rank = |i: usize, e: &Effect| {
            let at = self.by_id.get(&e.rule);
            let priority = at.map_or(0, |at| self.rule(*at).1.priority);
            let place = at.map_or((usize::MAX, usize::MAX), |at| (at.playbook, at.rule));
            (std::cmp::Reverse(priority), place, i)
        };
        let mut ranked: Vec<usize> = (0..effects.len())
            .filter(|i| !effects[*i].shadow && effects[*i].action.writes().is_some())
            .collect();
        if ranked.len() < 2 {
            return;
        }
        ranked.sort_by_key(|i| rank(*i, &effects[*i]));
        let mut winners: Vec<usize> = Vec::new();
        for i in ranked {
            let beaten = winners.iter().copied().find(|w| {
                effects[*w].record == effects[i].record
                    && effects[*w].action.conflicts_with(&effects[i].action)
            });
            match beaten {
                Some(w) => {
                    let why = self.overruled_why(&effects[w], &effects[i]);
                    effects[i].overruled = Some(why);
                }
                None => winners.push(i),
            }
        }
    }

    /// Why `loser` gives way to `winner`, naming the winning rule and both values.
    fn overruled_why(&self, winner: &Effect, loser: &Effect) -> String {
        let priority = |e: &Effect| {
            self.by_id
                .get(&e.rule)
                .map_or(0, |at| self.rule(*at).1.priority)
        };
        let (p, q) = (priority(winner), priority(loser));
        let by = if winner.rule == loser.rule {
            "overruled by an action written before it in the same rule".to_owned()
        } else if p != q {
            format!(
                "overruled by rule {:?} (priority {p}, above this rule's {q})",
                winner.rule
            )
        } else {
            format!(
                "overruled by rule {:?} (the same priority, {p}, and declared first)",
                winner.rule
            )
        };
        format!(
            "{by}, which {} at the same moment; this {} and is never delivered",
            winner.action.what_it_writes().unwrap_or_default(),
            loser.action.what_it_writes().unwrap_or_default()
        )
    }

    /// [`Engine::on_timer`] for the timed rule at position `i` (see [`Engine::timers_of`]).
    pub fn on_timed(
        &self,
        i: usize,
        timer: &Timer,
        record: &Record,
        memory: &mut Memory,
        now: Timestamp,
    ) -> Vec<Effect> {
        self.fire(self.timed[i], timer, record, memory, now)
    }

    fn fire(
        &self,
        at: RuleRef,
        timer: &Timer,
        record: &Record,
        memory: &mut Memory,
        now: Timestamp,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let (playbook, rule) = self.rule(at);
        let current = match &rule.trigger {
            // Any occurrence of the schedule is current while the record is open; one the
            // schedule no longer has (the playbook changed it) is not.
            Trigger::Schedule(s) => !closed(record) && s.occurs_at(timer.anchor),
            _ => {
                expected(rule, record, now, &self.risk).map(|(anchor, _)| anchor)
                    == Some(timer.anchor)
            }
        };
        if !current {
            return out;
        }
        // This instance is decided now, whether the rule acts on it or not.
        memory.entry(rule.id.clone()).or_default().decided = Some(timer.anchor);
        let instance = Instance::Timer(&rule.trigger, timer.anchor);
        self.decide(
            playbook,
            rule,
            self.native(at),
            record,
            None,
            memory,
            now,
            &instance,
            &mut out,
            &mut Seen::default(),
        );
        out
    }

    /// The timer that follows one that has just fired, if its trigger repeats: a schedule's
    /// next occurrence after both the fired one and `now` — occurrences missed while nothing
    /// ran are not made up one by one. The other triggers start a new instance only when the
    /// record changes.
    pub fn follow_up(&self, fired: &Timer, record: &Record, now: Timestamp) -> Option<Timer> {
        self.follow(*self.by_id.get(&fired.rule)?, fired, record, now)
    }

    /// [`Engine::follow_up`] for the timed rule at position `i`.
    pub fn follow_timed(
        &self,
        i: usize,
        fired: &Timer,
        record: &Record,
        now: Timestamp,
    ) -> Option<Timer> {
        self.follow(self.timed[i], fired, record, now)
    }

    fn follow(&self, at: RuleRef, fired: &Timer, record: &Record, now: Timestamp) -> Option<Timer> {
        let (_, rule) = self.rule(at);
        let Trigger::Schedule(schedule) = &rule.trigger else {
            return None;
        };
        if closed(record) {
            return None;
        }
        let due = schedule.next_after(fired.anchor.max(now))?;
        Some(Timer {
            due,
            rule: fired.rule.clone(),
            record: fired.record.clone(),
            anchor: due,
        })
    }

    /// For every rule that acts on this kind of record: has it fired, would its condition hold
    /// now and why, and — for time triggers — when it fires if nothing changes.
    pub fn explain(
        &self,
        record: &Record,
        memory: &Memory,
        now: Timestamp,
    ) -> Vec<RuleExplanation> {
        let kind = record.kind();
        let mut out = Vec::new();
        for playbook in &self.set.playbooks {
            for rule in playbook.rules.iter().filter(|r| r.record == kind) {
                let fired = memory.get(&rule.id).cloned().unwrap_or_default();
                let fires_at = self.pending(rule, record, memory, now).map(|(_, due)| due);
                let (condition_now, saw) = match &rule.condition {
                    Some(c) => {
                        let (result, saw) =
                            evaluate(c, record, None, now, &self.risk, &mut Seen::default());
                        let text = match result {
                            Ok(true) => "true".to_owned(),
                            Ok(false) => "false".to_owned(),
                            // Event fields exist only when an event arrives.
                            Err(e) if c.fields.iter().any(|(root, _)| root == "event") => {
                                format!("decided when the event arrives ({e})")
                            }
                            Err(e) => format!("cannot be evaluated: {e}"),
                        };
                        (Some(text), saw)
                    }
                    None => (None, BTreeMap::new()),
                };
                let trigger = rule.trigger.to_string();
                let summary = match (&rule.trigger, fires_at, fired.last_at) {
                    (_, _, Some(last)) if fired.count > 0 => {
                        format!("fired {} time(s), last at {last}", fired.count)
                    }
                    (Trigger::Event(t), _, _) => format!("has not fired; waits for the event {t}"),
                    (_, Some(at), _) if condition_now.as_deref() == Some("false") => {
                        format!("armed for {at}, but its condition is false now")
                    }
                    (_, Some(at), _) => format!("fires at {at} if nothing changes"),
                    (Trigger::Schedule(_), None, _) => "not armed: the record is closed".to_owned(),
                    (Trigger::InStageFor { stage, .. }, None, _) => {
                        format!("not armed: the record is not open in stage {stage}")
                    }
                    (Trigger::Untouched(_), None, _) => {
                        "not armed: no assignment is waiting for its first touch".to_owned()
                    }
                    (Trigger::Warning(k), None, _) => format!(
                        "not armed: the deal is closed, or only an event can bring the warning {k}"
                    ),
                    (_, None, _) => "not armed: the record is closed or lacks the date".to_owned(),
                };
                out.push(RuleExplanation {
                    playbook: playbook.name.clone(),
                    rule: rule.id.clone(),
                    why: rule.why.clone(),
                    trigger,
                    fired,
                    fires_at,
                    condition: rule.condition.as_ref().map(|c| c.source.clone()),
                    condition_now,
                    saw,
                    summary,
                });
            }
        }
        out
    }

    /// Evaluates one rule for one record and, when it fires, emits its effects.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        playbook: &str,
        rule: &Rule,
        native: Option<&Native>,
        record: &Record,
        event: Option<&Event>,
        memory: &mut Memory,
        now: Timestamp,
        instance: &Instance<'_>,
        out: &mut Vec<Effect>,
        seen: &mut Seen,
    ) {
        let key = record.key();
        let fired = memory.get(&rule.id).cloned().unwrap_or_default();
        let entered = stage_entered(record);
        // Re-entry: may this rule fire again for this record?
        let blocked = match rule.reentry {
            Reentry::EachTrigger => false,
            Reentry::OncePerRecord => fired.count > 0,
            Reentry::OncePerStage => fired.count > 0 && fired.stage_entered_at == entered,
            Reentry::AtMostEvery(span) => fired
                .last_at
                .is_some_and(|t| now.as_millis() - t.as_millis() < span.0),
        };
        if blocked {
            return;
        }
        let mut saw = BTreeMap::new();
        if let Some(condition) = &rule.condition {
            // The first look decides most conditions without CEL; CEL decides the rest.
            let first = native.and_then(|native| {
                let event_facts = if native.reads_event() {
                    seen.event
                        .get_or_insert_with(|| event.map(facts::event))
                        .as_ref()
                } else {
                    None
                };
                let mut look = native::Look {
                    record,
                    event: event_facts,
                    now,
                    risk: &self.risk,
                    deal_facts: None,
                };
                native.look(&mut look)
            });
            match first {
                Some(false) => return,
                Some(true) => {
                    saw = native::saw(
                        condition,
                        record,
                        seen.event.as_ref().and_then(Option::as_ref),
                        now,
                        &self.risk,
                    )
                }
                None => {
                    let (result, read) = evaluate(condition, record, event, now, &self.risk, seen);
                    saw = read;
                    match result {
                        Ok(true) => {}
                        // A condition that cannot be evaluated does not fire; `explain` shows why.
                        Ok(false) | Err(_) => return,
                    }
                }
            }
        }
        memory.insert(
            rule.id.clone(),
            Fired {
                count: fired.count + 1,
                last_at: Some(now),
                stage_entered_at: entered,
                ..fired
            },
        );
        let (instance, trigger) = (instance.key(), instance.trigger());
        let trace = Trace {
            why: rule.why.clone(),
            trigger,
            condition: rule.condition.as_ref().map(|c| c.source.clone()),
            saw,
        };
        for (index, action) in rule.actions.iter().enumerate() {
            let due = match action {
                Action::Escalate {
                    after: Some(after), ..
                } => Timestamp::from_millis(now.as_millis() + after.0),
                _ => now,
            };
            out.push(Effect {
                key: idempotency_key(&rule.id, &key, &instance, index),
                playbook: playbook.to_owned(),
                rule: rule.id.clone(),
                version: self.set.version.clone(),
                record: key.clone(),
                action: action.clone(),
                at: now,
                due,
                shadow: rule.shadow,
                overruled: None,
                trace: trace.clone(),
            });
            if let Some(effect) = out.last_mut() {
                self.choose_asset(&mut effect.action, record);
            }
        }
    }

    /// Resolves "the best asset for this use case" to a named asset: among the assets declared
    /// for the use case, one made for the deal's stage, then for its industry, then any —
    /// the first in name order on a tie, so the choice is stable.
    fn choose_asset(&self, action: &mut Action, record: &Record) {
        let Action::SendAsset { asset, .. } = action else {
            return;
        };
        let AssetChoice::BestFor(use_case) = asset else {
            return;
        };
        let stage = match record {
            Record::Deal(d) => d.stage.clone(),
            _ => None,
        };
        let mut candidates: Vec<&playbook::Asset> = self
            .set
            .playbooks
            .iter()
            .flat_map(|p| &p.assets)
            .filter(|a| a.use_cases.contains(use_case))
            .collect();
        candidates.sort_by_key(|a| {
            let for_stage = stage.as_ref().is_some_and(|s| a.stages.contains(s));
            (!for_stage, a.stages.is_empty(), a.name.clone())
        });
        if let Some(best) = candidates.first() {
            *asset = AssetChoice::Named(best.name.clone());
        }
    }
}

/// A fresh evaluation context over CEL's standard library. The library is built once: building
/// it per evaluation (what `Context::default` does) was most of the engine's time.
fn context<'v>(resolver: &'v Bound) -> cel::Context<'v, 'v> {
    static STDLIB: std::sync::OnceLock<Arc<cel::Env>> = std::sync::OnceLock::new();
    cel::Context::Root {
        functions: Default::default(),
        variables: Default::default(),
        resolver: Some(resolver),
        env: Arc::clone(STDLIB.get_or_init(|| Arc::new(cel::Env::stdlib()))),
    }
}

type Val = Box<dyn cel::common::value::Val>;

/// The variables a condition reads, converted to CEL's values once per input and lent to every
/// rule evaluated on it (binding them per evaluation cloned every map).
#[derive(Debug)]
struct Bound {
    kind: &'static str,
    record: Option<Val>,
    event: Option<Val>,
    now: Val,
}

impl cel::context::VariableResolver for Bound {
    fn resolve<'b>(&'b self, variable: &str) -> Option<cel::common::value::CowVal<'b, 'b>> {
        let value = match variable {
            "now" => Some(&self.now),
            "event" => self.event.as_ref(),
            v if v == self.kind => self.record.as_ref(),
            _ => None,
        }?;
        Some(cel::common::value::CowVal::Borrowed(&**value))
    }
}

/// Facts built for one input, shared by every rule evaluated on it: as maps (what `saw`
/// reports) and bound for CEL.
#[derive(Default)]
struct Seen {
    /// The event's facts, made once per event.
    event: Option<Option<cel::Value>>,
    /// The record's facts and their binding for CEL.
    record: Option<(Option<cel::Value>, Bound)>,
}

fn bind(value: Option<&cel::Value>) -> Option<Val> {
    value.and_then(|v| v.clone().try_into().ok())
}

/// Runs a condition against a record (and the event, if any) at `now`; returns the result and
/// the facts it read.
fn evaluate(
    condition: &playbook::Condition,
    record: &Record,
    event: Option<&Event>,
    now: Timestamp,
    risk: &risk::Model,
    seen: &mut Seen,
) -> (Result<bool, String>, BTreeMap<String, serde_json::Value>) {
    let mut saw = BTreeMap::new();
    let event_facts = seen.event.get_or_insert_with(|| event.map(facts::event));
    let (facts, bound) = seen.record.get_or_insert_with(|| {
        let facts = facts::record(record, now, Some(risk));
        let bound = Bound {
            kind: record.kind().as_str(),
            record: bind(facts.as_ref()),
            event: bind(event_facts.as_ref()),
            now: bind(Some(&cel::Value::Int(now.as_millis()))).expect("an integer binds"),
        };
        (facts, bound)
    });
    let Some(facts) = facts.as_ref() else {
        return (Err("rules read deals and leads only".into()), saw);
    };
    let context = context(bound);
    for (root, field) in &condition.fields {
        let source = if root == "event" {
            event_facts.as_ref()
        } else {
            Some(facts)
        };
        if let Some(cel::Value::Map(m)) = source {
            let value = m
                .map
                .get(&cel::objects::Key::String(Arc::new(field.clone())));
            saw.insert(
                format!("{root}.{field}"),
                value.map_or(serde_json::Value::Null, facts::to_json),
            );
        }
    }
    let result = match cel::Value::resolve(&condition.expression, &context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the condition gave {other:?}, not true or false")),
        Err(e) => Err(e.to_string()),
    };
    (result, saw)
}

/// What CEL gives for a condition over a record (and the event that triggered it) at `now`,
/// `deal.risk` by `risk`: the answer every effect is decided by.
pub fn evaluate_condition(
    condition: &playbook::Condition,
    record: &Record,
    event: Option<&Event>,
    now: Timestamp,
    risk: &risk::Model,
) -> Result<bool, String> {
    evaluate(condition, record, event, now, risk, &mut Seen::default()).0
}

/// Whether a condition (a sequence's goal) holds for a record at `now`; one that cannot be
/// evaluated does not.
pub fn holds(
    condition: &playbook::Condition,
    record: &Record,
    now: Timestamp,
    risk: &risk::Model,
) -> bool {
    matches!(
        evaluate(condition, record, None, now, risk, &mut Seen::default()).0,
        Ok(true)
    )
}

fn stage_entered(record: &Record) -> Option<Timestamp> {
    match record {
        Record::Deal(d) => d.stage_history.last().map(|v| v.entered_at),
        _ => None,
    }
}

fn closed(record: &Record) -> bool {
    match record {
        Record::Deal(d) => d.status != DealStatus::Open,
        Record::Lead(l) => matches!(l.status.as_deref(), Some("converted" | "disqualified")),
        _ => true,
    }
}

/// The (anchor, due time) a timed rule should wait on for this record at `now`, if any.
fn expected(
    rule: &Rule,
    record: &Record,
    now: Timestamp,
    risk: &risk::Model,
) -> Option<(Timestamp, Timestamp)> {
    if closed(record) {
        return None;
    }
    let plus = |t: Timestamp, ms: i64| Timestamp::from_millis(t.as_millis() + ms);
    match &rule.trigger {
        Trigger::Event(_) => None,
        Trigger::QuietFor(span) => {
            let last = match record {
                Record::Deal(d) => d.engagement.last_activity_at.or(d.created_at),
                Record::Lead(l) => l.engagement.last_activity_at.or(l.created_at),
                _ => None,
            }?;
            Some((last, plus(last, span.0)))
        }
        Trigger::InStageFor { stage, longer_than } => match record {
            Record::Deal(d) if d.stage.as_ref() == Some(stage) => {
                let entered = d.stage_history.last()?.entered_at;
                Some((entered, plus(entered, longer_than.0)))
            }
            _ => None,
        },
        Trigger::DateField { field, offset } => {
            let Record::Deal(d) = record else { return None };
            let date = if field == "close_date" {
                d.close_date?
            } else {
                let name = field.strip_prefix("fields.")?;
                d.fields.get(name)?.as_str()?.parse().ok()?
            };
            // Dates are read at midnight UTC.
            let at = date
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .ok()?
                .timestamp();
            let anchor = Timestamp::from_millis(at.as_millisecond());
            Some((anchor, plus(anchor, offset.0)))
        }
        Trigger::Schedule(schedule) => {
            let next = schedule.next_after(now)?;
            Some((next, next))
        }
        Trigger::Untouched(span) => {
            let assignment = match record {
                Record::Deal(d) => d.assignment.as_ref(),
                Record::Lead(l) => l.assignment.as_ref(),
                _ => None,
            }?;
            if assignment.first_touch_at.is_some() {
                return None;
            }
            Some((assignment.at, plus(assignment.at, span.0)))
        }
        // Due when the warning appears (at once if it is there already); the anchor names
        // this instance of it.
        Trigger::Warning(kind) => match record {
            Record::Deal(d) => risk.window(*kind, d, now),
            _ => None,
        },
    }
}

/// What triggered a decision: its part of the effect's key and its words in the trace, made
/// only for a rule that acts.
enum Instance<'a> {
    Event(&'a Event),
    Timer(&'a Trigger, Timestamp),
}

impl Instance<'_> {
    fn key(&self) -> String {
        match self {
            Instance::Event(e) => format!("event {}", e.id),
            Instance::Timer(_, anchor) => format!("timer {}", anchor.as_millis()),
        }
    }

    fn trigger(&self) -> String {
        match self {
            Instance::Event(e) => {
                format!("event {} ({}:{})", e.event_type(), e.source, e.source_id)
            }
            Instance::Timer(trigger, anchor) => describe(trigger, *anchor),
        }
    }
}

/// A trigger instance, for why-traces: the trigger and the moment it counts from.
fn describe(trigger: &Trigger, anchor: Timestamp) -> String {
    match trigger {
        Trigger::Event(_) => trigger.to_string(),
        Trigger::QuietFor(_) => format!("{trigger} since {anchor}"),
        Trigger::InStageFor { .. } => format!("{trigger} (entered {anchor})"),
        Trigger::DateField { .. } => format!("{trigger} ({anchor})"),
        Trigger::Schedule(_) => format!("{trigger} at {anchor}"),
        Trigger::Untouched(_) => format!("{trigger} at {anchor}"),
        Trigger::Warning(_) => format!("{trigger} (counted from {anchor})"),
    }
}

/// A decision's identity: the rule, the record, the trigger instance and the action's place.
/// Never the playbook version, a retry, a node or the path the cause arrived by: the same
/// decision made again has the same key, and the outbox keeps one effect per key.
fn idempotency_key(rule: &str, record: &RecordKey, instance: &str, action: usize) -> String {
    key(&[rule, &record.to_string(), instance, &action.to_string()])
}

/// An idempotency key from the parts that name a decision: 128 bits of SHA-256, in hex.
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}
