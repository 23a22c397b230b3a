//! Issue 23: exactly once across playbook versions. Random edits of a rule set (its words,
//! conditions, waits, actions, re-entry; rules added and removed), each run by the store as a
//! reload runs it (the engine replaced, every record armed again), interleaved with events and
//! time. A model says which trigger instances exist and which the rules in force acted on; the
//! outbox must hold exactly those decisions, one per instance and action — never a second one
//! for an instance already decided, whatever the edits.

use std::collections::{BTreeMap, BTreeSet};

use domain::{RecordKind, Timestamp};
use testkit::history::Rng;

use crate::conformance::{arm_all, engine_from};
use crate::{Backend, ev, ts};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const DEALS: usize = 4;

/// The rule set, as the edits leave it.
#[derive(Debug, Clone)]
struct Rules {
    /// A word of the `why` sentences: edited, it changes the version and nothing else.
    words: u32,
    /// The quiet rule: days of quiet, the stage its condition asks for (none: no condition),
    /// a second action, once per record.
    quiet_days: i64,
    quiet_stage: Option<&'static str>,
    quiet_twice: bool,
    quiet_once: bool,
    /// The proposal rule: present, and its days in the stage.
    proposal: Option<i64>,
    /// The note rule (an event trigger): present.
    note: bool,
}

impl Rules {
    fn yaml(&self) -> String {
        let w = self.words;
        let condition = match self.quiet_stage {
            Some(stage) => format!("    if: deal.stage == \"{stage}\"\n"),
            None => String::new(),
        };
        let reentry = if self.quiet_once {
            "    reentry: once_per_record\n"
        } else {
            ""
        };
        let second = if self.quiet_twice {
            "      - task: { assignee: deal.owner, title: Call them }\n"
        } else {
            ""
        };
        let mut text = format!(
            "playbook: p\nowner: o\nstages: [demo, proposal]\nrules:\n  - id: quiet\n    why: Quiet deals need a nudge ({w}).\n    when: {{ quiet_for: {}d }}\n{condition}{reentry}    then:\n      - alert: {{ to: deal.owner, text: quiet }}\n{second}",
            self.quiet_days
        );
        if let Some(days) = self.proposal {
            text.push_str(&format!(
                "  - id: proposal\n    why: Proposals go stale ({w}).\n    when: {{ in_stage_for: {{ stage: proposal, longer_than: {days}d }} }}\n    then:\n      - alert: {{ to: deal.owner, text: stale }}\n"
            ));
        }
        if self.note {
            text.push_str(&format!(
                "  - id: note\n    why: Notes are read ({w}).\n    when: {{ event: note.added }}\n    then:\n      - alert: {{ to: deal.owner, text: noted }}\n"
            ));
        }
        text
    }

    /// One random edit.
    fn edit(&mut self, rng: &mut Rng) {
        match rng.range(0, 7) {
            0 => self.words += 1,
            1 => self.quiet_days = rng.range(1, 4),
            2 => self.quiet_stage = *rng.pick(&[None, Some("demo"), Some("proposal")]),
            3 => self.quiet_twice = !self.quiet_twice,
            4 => self.quiet_once = !self.quiet_once,
            5 => {
                self.proposal = match self.proposal {
                    Some(_) => None,
                    None => Some(rng.range(1, 3)),
                }
            }
            _ => self.note = !self.note,
        }
    }
}

/// A deal as the model knows it.
#[derive(Debug, Clone)]
struct Deal {
    stage: &'static str,
    entered: Timestamp,
    /// The last activity (or the creation): what a quiet stretch counts from.
    active: Timestamp,
}

/// A decision: rule, deal, and the trigger instance (a timer's anchor, or an event's id).
type Instance = (String, usize, String);

/// Which instances exist, which were decided, and how many effects each decision made.
#[derive(Debug, Default)]
struct Model {
    deals: Vec<Deal>,
    /// Instances decided, whether or not the rule acted.
    decided: BTreeSet<Instance>,
    /// Instances the rule acted on, and how many effects it decided.
    acted: BTreeMap<Instance, usize>,
}

impl Model {
    fn acted_before(&self, rule: &str, deal: usize) -> bool {
        self.acted.keys().any(|(r, d, _)| r == rule && *d == deal)
    }

    /// Every time-trigger instance due by `now` that has not been decided is decided now, by
    /// the rules in force.
    fn fire(&mut self, rules: &Rules, now: Timestamp) {
        for d in 0..self.deals.len() {
            let deal = self.deals[d].clone();
            let quiet = deal.active.as_millis() + rules.quiet_days * DAY;
            let instance = ("quiet".to_owned(), d, deal.active.to_string());
            if quiet <= now.as_millis() && self.decided.insert(instance.clone()) {
                let holds = rules.quiet_stage.is_none_or(|s| s == deal.stage);
                let blocked = rules.quiet_once && self.acted_before("quiet", d);
                if holds && !blocked {
                    self.acted
                        .insert(instance, if rules.quiet_twice { 2 } else { 1 });
                }
            }
            if let Some(days) = rules.proposal
                && deal.stage == "proposal"
                && deal.entered.as_millis() + days * DAY <= now.as_millis()
            {
                let instance = ("proposal".to_owned(), d, deal.entered.to_string());
                if self.decided.insert(instance.clone()) {
                    self.acted.insert(instance, 1);
                }
            }
        }
    }
}

/// The instance an effect decided, read from its why-trace: a timer's anchor ends the trigger's
/// words (`quiet for 2d since T`, `in stage proposal for longer than 1d (entered T)`); an
/// event's source id is in brackets (`event note.added (test:ID)`).
fn instance_of(effect: &store::StoredEffect) -> Instance {
    let trigger = effect.trace["trigger"].as_str().unwrap();
    let deal: usize = effect.record.id.as_str()[2..].parse().unwrap();
    let instance = match trigger.strip_prefix("event ") {
        Some(rest) => rest
            .rsplit_once(':')
            .unwrap()
            .1
            .trim_end_matches(')')
            .to_owned(),
        None => {
            let last = trigger.rsplit(' ').next().unwrap().trim_end_matches(')');
            let at: Timestamp = last.parse().unwrap_or_else(|_| panic!("{trigger}"));
            at.to_string()
        }
    };
    (effect.rule.clone(), deal, instance)
}

async fn run(backend: Backend, seed: u64, steps: usize) {
    let h = backend.open();
    let mut rng = Rng::new(seed);
    let mut rules = Rules {
        words: 0,
        quiet_days: 2,
        quiet_stage: None,
        quiet_twice: false,
        quiet_once: false,
        proposal: Some(1),
        note: true,
    };
    let reload = |rules: &Rules| engine_from(&rules.yaml());
    h.store.set_engine(Some(reload(&rules)));
    let mut model = Model::default();
    let mut now = ts("2026-11-01T09:00:00Z");
    let mut events = Vec::new();
    for d in 0..DEALS {
        events.push(ev(
            "deal.created",
            &format!("c{d}"),
            &now.to_string(),
            &format!(r#""deal":"D-{d}""#),
            r#"{"stage":"demo","owner":"sam@acme.example"}"#,
        ));
        model.deals.push(Deal {
            stage: "demo",
            entered: now,
            active: now,
        });
    }
    h.store.ingest(events).await.unwrap();
    let mut next_id = 0;
    let mut store = std::sync::Arc::clone(&h.store);
    for _ in 0..steps {
        // An edit, run as a reload runs it: the new engine, then every record armed again.
        if rng.chance(0.3) {
            rules.edit(&mut rng);
            store.set_engine(Some(reload(&rules)));
            arm_all(&*store, now).await;
        }
        // A restart now and then: a new handle on the same database, the same playbooks.
        if rng.chance(0.05) {
            store = (h.reopen)();
            store.set_engine(Some(reload(&rules)));
        }
        // Time passes; what came due fires before anything happens at the new time.
        now = Timestamp::from_millis(now.as_millis() + rng.range(1, 40) * HOUR);
        while store.fire_due_timers(now, 1_000).await.unwrap().timers > 0 {}
        model.fire(&rules, now);
        // Something happens to one deal.
        let d = rng.range(0, DEALS as i64) as usize;
        let refs = format!(r#""deal":"D-{d}""#);
        next_id += 1;
        let id = format!("e{next_id}");
        let at = now.to_string();
        let event = match rng.range(0, 4) {
            0 => {
                if rules.note {
                    model.acted.insert(("note".to_owned(), d, id.clone()), 1);
                }
                model.deals[d].active = now;
                ev("note.added", &id, &at, &refs, r#"{"text":"x"}"#)
            }
            1 => {
                let stage = if model.deals[d].stage == "demo" {
                    "proposal"
                } else {
                    "demo"
                };
                model.deals[d] = Deal {
                    stage,
                    entered: now,
                    active: now,
                };
                ev(
                    "deal.stage_changed",
                    &id,
                    &at,
                    &refs,
                    &format!(r#"{{"stage":"{stage}"}}"#),
                )
            }
            // Neither activity nor a stage move: nothing the timers count from changes.
            _ => ev("email.opened", &id, &at, &refs, "{}"),
        };
        store.ingest(vec![event]).await.unwrap();
    }
    // Whatever is still waiting comes due with the rules as they are last.
    now = Timestamp::from_millis(now.as_millis() + 30 * DAY);
    while store.fire_due_timers(now, 1_000).await.unwrap().timers > 0 {}
    model.fire(&rules, now);

    let effects = store.effects(None, 100_000).await.unwrap();
    let mut seen: BTreeMap<Instance, usize> = BTreeMap::new();
    for effect in &effects {
        assert_eq!(effect.record.kind, RecordKind::Deal);
        *seen.entry(instance_of(effect)).or_default() += 1;
    }
    assert_eq!(
        seen, model.acted,
        "seed {seed}: the outbox against the model (rules at the end: {rules:?})"
    );
}

/// SQLite, many seeds; PostgreSQL, fewer (each test database is a schema of its own).
async fn reloads_never_decide_an_instance_twice(backend: Backend) {
    let seeds = match backend {
        Backend::Sqlite => 0..24,
        Backend::Postgres => 0..6,
    };
    for seed in seeds {
        run(backend, seed, 80).await;
    }
}

suite!(reloads_never_decide_an_instance_twice);
