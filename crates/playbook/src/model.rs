//! Compiled playbooks: validated, with every reference resolved.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use domain::{EventType, RecordId, RecordKind, Role, Stage};

use crate::{Condition, Schedule};

/// How long each person in an escalation chain has to acknowledge an exception, unless the
/// playbook says otherwise.
pub const DEFAULT_ESCALATION_SLA: Span = Span(86_400_000);

/// A length of time written in a playbook (`5d`, `12h`, `1w2d`), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Span(pub i64);

impl std::fmt::Display for Span {
    /// In the largest whole unit: `5d`, `36h`, `90m`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minutes = self.0 / 60_000;
        match minutes {
            m if m % (24 * 60) == 0 => write!(f, "{}d", m / (24 * 60)),
            m if m % 60 == 0 => write!(f, "{}h", m / 60),
            m => write!(f, "{m}m"),
        }
    }
}

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

/// Every playbook of a folder, loaded together.
#[derive(Debug, Clone)]
pub struct PlaybookSet {
    pub playbooks: Vec<Playbook>,
    /// A content hash of all files: recorded with every effect so it names the rules that
    /// decided it.
    pub version: String,
    /// The sending etiquette (see [`Sending`]).
    pub sending: Sending,
    /// How deals at risk are recognised (`risk:`; defaults without it).
    pub risk: risk::Settings,
}

impl PlaybookSet {
    /// Every stage the playbooks declare, in the order they declare them.
    pub fn stages(&self) -> Vec<Stage> {
        let mut out: Vec<Stage> = Vec::new();
        for p in &self.playbooks {
            for s in &p.stages {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }
}

/// A stage's entry criteria (see `raw::Gate`). Its alerts are the rule `gate-STAGE` of the
/// same playbook, triggered by `gate.blocked`.
#[derive(Debug, Clone)]
pub struct Gate {
    pub stage: Stage,
    pub why: String,
    pub criteria: Vec<Criterion>,
    /// Roles that may override it, with a reason.
    pub override_roles: Vec<Role>,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Criterion {
    pub name: String,
    pub condition: Condition,
}

impl PlaybookSet {
    /// The gate on `stage`, with the playbook that declares it (one per stage in a set).
    pub fn gate(&self, stage: &Stage) -> Option<(&Playbook, &Gate)> {
        self.playbooks
            .iter()
            .find_map(|p| p.gates.iter().find(|g| &g.stage == stage).map(|g| (p, g)))
    }

    /// The decision tree named `name`.
    pub fn tree(&self, name: &str) -> Option<&DecisionTree> {
        self.playbooks
            .iter()
            .find_map(|p| p.trees.iter().find(|t| t.name == name))
    }

    /// The sequence named `name`, with the playbook that declares it.
    pub fn sequence(&self, name: &str) -> Option<(&Playbook, &Sequence)> {
        self.playbooks
            .iter()
            .find_map(|p| p.sequences.iter().find(|s| s.name == name).map(|s| (p, s)))
    }
}

/// Limits every automated email to a contact follows, from a playbook's `sending:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sending {
    /// At most this many automated emails to one contact within the span.
    pub per_contact: Option<(u32, Span)>,
    /// At most this many from one sender (the record's owner) per hour.
    pub per_sender_hour: Option<u32>,
    /// … and per day (24 hours).
    pub per_sender_day: Option<u32>,
    /// How long after a contact's enrolment ends before another sequence may start.
    pub cool_off: Option<Span>,
}

impl Default for Sending {
    /// Three emails per contact per week, 50 per sender per hour and 200 per day, no cool-off:
    /// what a team gets without a `sending:` block.
    fn default() -> Self {
        Self {
            per_contact: Some((3, Span(7 * 86_400_000))),
            per_sender_hour: Some(50),
            per_sender_day: Some(200),
            cool_off: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub owner: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub stages: Vec<Stage>,
    pub rules: Vec<Rule>,
    pub gates: Vec<Gate>,
    pub assets: Vec<Asset>,
    pub sequences: Vec<Sequence>,
    pub templates: Vec<Template>,
    pub trees: Vec<DecisionTree>,
    pub objections: Vec<ObjectionScript>,
}

/// What people say to one kind of objection, and the assets that answer it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectionScript {
    pub kind: domain::ObjectionKind,
    pub script: String,
    pub assets: Vec<String>,
}

/// A decision tree (see `raw::DecisionTree`), its references checked: every `next` names a
/// question of the tree, no question leads back to one before it, and every path ends in a
/// recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionTree {
    pub name: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    pub start: String,
    /// In the order a walk meets them first.
    pub questions: Vec<Question>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Question {
    pub id: String,
    pub ask: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The deal field its answer is written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Choice { answers: Vec<Answer> },
    Input { input: InputKind, then: Outcome },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub answer: String,
    /// What the question's field is set to.
    pub value: serde_json::Value,
    pub then: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The id of the next question.
    Next(String),
    Recommend(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Text,
    Number,
    Date,
}

/// One question answered on a walk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answered {
    pub question: String,
    pub ask: String,
    pub answer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub value: serde_json::Value,
}

/// Where a walk got to with the answers given: the questions answered in order, then either
/// the recommendation (complete) or the next question to ask.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Walk {
    pub path: Vec<Answered>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<Question>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<String>,
}

impl Walk {
    pub fn complete(&self) -> bool {
        self.recommendation.is_some()
    }

    /// The fields the answers set, by name.
    pub fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        self.path
            .iter()
            .filter_map(|a| a.field.clone().map(|f| (f, a.value.clone())))
            .collect()
    }
}

/// An answer a walk cannot take, with the question it was for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{question}: {message}")]
pub struct WalkError {
    pub question: String,
    pub message: String,
}

impl DecisionTree {
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }

    /// Walks the tree from its start with `answers` (question id → the answer's label, or the
    /// typed value for an input), as far as they go.
    ///
    /// # Errors
    /// An answer that is not one of the question's (with the ones it has), an input that is
    /// not a number or a date, an answer to a question the walk does not reach.
    pub fn walk(
        &self,
        answers: &std::collections::BTreeMap<String, String>,
    ) -> Result<Walk, WalkError> {
        let mut walk = Walk {
            path: Vec::new(),
            next: None,
            recommendation: None,
        };
        let mut at = self.start.as_str();
        // Checked acyclic at load; the bound only guards a hand-built tree.
        for _ in 0..=self.questions.len() {
            let Some(q) = self.question(at) else {
                break;
            };
            let Some(given) = answers.get(&q.id) else {
                walk.next = Some(q.clone());
                break;
            };
            let err = |message: String| WalkError {
                question: q.id.clone(),
                message,
            };
            let (answer, value, then) = match &q.reply {
                Reply::Choice { answers: choices } => {
                    let chosen = choices
                        .iter()
                        .find(|a| a.answer.trim().eq_ignore_ascii_case(given.trim()))
                        .ok_or_else(|| {
                            let labels: Vec<String> =
                                choices.iter().map(|a| format!("{:?}", a.answer)).collect();
                            err(format!(
                                "{given:?} is not an answer to \"{}\"; expected one of {}",
                                q.ask,
                                labels.join(", ")
                            ))
                        })?;
                    (chosen.answer.clone(), chosen.value.clone(), &chosen.then)
                }
                Reply::Input { input, then } => {
                    let text = given.trim();
                    let value = match input {
                        InputKind::Text if text.is_empty() => {
                            return Err(err("expected an answer, not nothing".into()));
                        }
                        InputKind::Text => serde_json::Value::from(text),
                        InputKind::Number => text
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite())
                            .and_then(serde_json::Number::from_f64)
                            .map(|n| match n.as_f64() {
                                Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => {
                                    serde_json::Value::from(f as i64)
                                }
                                _ => serde_json::Value::Number(n),
                            })
                            .ok_or_else(|| err(format!("{given:?} is not a number")))?,
                        InputKind::Date => text
                            .parse::<jiff::civil::Date>()
                            .map(|d| serde_json::Value::from(d.to_string()))
                            .map_err(|_| err(format!("{given:?} is not a date (YYYY-MM-DD)")))?,
                    };
                    (text.to_owned(), value, then)
                }
            };
            walk.path.push(Answered {
                question: q.id.clone(),
                ask: q.ask.clone(),
                answer,
                field: q.field.clone(),
                value,
            });
            match then {
                Outcome::Next(next) => at = next,
                Outcome::Recommend(text) => {
                    walk.recommendation = Some(text.clone());
                    break;
                }
            }
        }
        if let Some(stray) = answers
            .keys()
            .find(|id| !walk.path.iter().any(|a| &a.question == *id))
        {
            return Err(WalkError {
                question: stray.clone(),
                message: match self.question(stray) {
                    Some(_) => "these answers do not lead to this question".into(),
                    None => format!("the tree {:?} has no such question", self.name),
                },
            });
        }
        Ok(walk)
    }
}

/// A multi-step cadence (see `raw::Sequence`), its references resolved.
#[derive(Debug, Clone)]
pub struct Sequence {
    pub name: String,
    pub record: RecordKind,
    pub steps: Vec<Step>,
    pub goal: Option<Condition>,
    /// What ends an enrolment early.
    pub exits: Vec<Exit>,
    pub account_wide_exit: bool,
    pub concurrent: bool,
    /// When its steps may go out; any time when `None`.
    pub window: Option<crate::SendWindow>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step's id: as written, or `step-N` (1-based) when none was given.
    pub id: String,
    pub kind: StepKind,
}

impl Sequence {
    /// The template an email step sends to `contact`: with variants (an A/B test) always the
    /// same one for the same contact, sequence and step — a hash of the three picks it, so
    /// contacts spread evenly and a replay or another node picks alike. `None` for a step
    /// that is not an email.
    pub fn template_for<'a>(&self, step: &'a Step, contact: &str) -> Option<&'a str> {
        let StepKind::Email { variants } = &step.kind else {
            return None;
        };
        let hash = domain::stable_hash(&[&self.name, &step.id, contact]);
        variants
            .get((hash % variants.len().max(1) as u64) as usize)
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// An email from one of these templates (more than one: an A/B test).
    Email {
        variants: Vec<String>,
    },
    Task {
        assignee: Target,
        title: String,
        kind: TaskKind,
        due: Option<Span>,
    },
    Wait(Wait),
    /// When the engagement holds, continue at step `goto` (an index into `steps`, always a
    /// later one); otherwise at the next step.
    Branch {
        on: Engagement,
        goto: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Call,
    Linkedin,
    ManualEmail,
    Other,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Call => "call",
            TaskKind::Linkedin => "linkedin",
            TaskKind::ManualEmail => "manual_email",
            TaskKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    For(Span),
    /// Until the next time it is this weekday (any day when `None`) at this time of day
    /// (the start of the day when `None`), in the contact's time zone.
    Until {
        weekday: Option<jiff::civil::Weekday>,
        time: Option<jiff::civil::Time>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engagement {
    Opened,
    Clicked,
    Replied,
    NoReply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Reply,
    Meeting,
    StageChange,
    Unsubscribe,
    Bounce,
}

impl Exit {
    pub const ALL: [Exit; 5] = [
        Exit::Reply,
        Exit::Meeting,
        Exit::StageChange,
        Exit::Unsubscribe,
        Exit::Bounce,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Exit::Reply => "reply",
            Exit::Meeting => "meeting",
            Exit::StageChange => "stage_change",
            Exit::Unsubscribe => "unsubscribe",
            Exit::Bounce => "bounce",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    /// The judgment the rule encodes, in one plain sentence.
    pub why: String,
    /// Intervention reasons this rule is meant to take off key people's plates.
    pub covers: Vec<String>,
    pub record: RecordKind,
    pub trigger: Trigger,
    pub condition: Option<Condition>,
    pub actions: Vec<Action>,
    /// Where each of `actions` was written.
    pub action_locations: Vec<Location>,
    pub reentry: Reentry,
    /// Evaluated and recorded, never delivered.
    pub shadow: bool,
    /// Its own storm limit; `None`: the configured one.
    pub storm_limit: Option<StormLimit>,
    /// Which of two rules wins when one input has both write different values to the same
    /// target ([`Action::writes`]): the higher; on a tie, the rule declared first.
    pub priority: i32,
    pub location: Location,
}

/// How many records a rule may act on at once (within an hour) while it is watched — new,
/// changed, or after an import — before its effects are held for a person's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StormLimit {
    Records(u32),
    /// Never held.
    Off,
}

#[derive(Debug, Clone)]
pub enum Trigger {
    /// An event of this type concerning the record.
    Event(EventType),
    /// No activity on the record for this long; activity pushes it back.
    QuietFor(Span),
    /// In this stage for longer than this; leaving the stage cancels it.
    InStageFor { stage: Stage, longer_than: Span },
    /// At a date field plus an offset (negative: before); moves when the field changes.
    DateField { field: String, offset: Span },
    /// On a cron schedule, for every open record of the rule's kind.
    Schedule(Schedule),
    /// The owner has not touched the record this long after it was assigned to them.
    Untouched(Span),
    /// A risk warning appears on the deal.
    Warning(risk::Kind),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Event(t) => write!(f, "event {t}"),
            Trigger::QuietFor(s) => write!(f, "quiet for {s}"),
            Trigger::InStageFor { stage, longer_than } => {
                write!(f, "in {stage} for longer than {longer_than}")
            }
            Trigger::DateField { field, offset } => {
                let side = if offset.0 < 0 { "before" } else { "after" };
                write!(f, "{} {side} {field}", Span(offset.0.abs()))
            }
            Trigger::Schedule(s) => write!(f, "schedule {s}"),
            Trigger::Untouched(s) => write!(f, "untouched for {s} after assignment"),
            Trigger::Warning(k) => write!(f, "warning {k}"),
        }
    }
}

/// How often a rule may fire for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reentry {
    /// Each trigger instance may fire (the default).
    EachTrigger,
    OncePerRecord,
    OncePerStage,
    AtMostEvery(Span),
}

/// Who an action is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The record's owner.
    Owner,
    /// The owner's manager (the `manager` of the owner's person record).
    OwnerManager,
    /// The deal's primary contact (its first contact).
    PrimaryContact,
    /// One contact (or lead) by id: the one a sequence enrolled.
    Contact(RecordId),
    Person(RecordId),
    Role(Role),
    Channel(String),
}

impl Target {
    /// Whether a message to it reaches a buyer — a contact, or a lead (its own contact) — not
    /// the team: such a message carries nothing internal, such as `link` (issue 23).
    pub fn is_buyer(&self) -> bool {
        matches!(self, Target::PrimaryContact | Target::Contact(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetChoice {
    Named(String),
    BestFor(String),
}

/// Stored in the outbox as `{"kind": "alert", …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    StartSequence {
        sequence: String,
    },
    StopSequence {
        sequence: String,
    },
    SendAsset {
        asset: AssetChoice,
        to: Target,
        /// The use case the playbook asked for (`send_asset: {use_case: …}`), kept once the
        /// engine has chosen the asset: what asset effectiveness is measured by.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        use_case: Option<String>,
    },
    SendEmail {
        template: String,
        to: Target,
    },
    Alert {
        to: Target,
        text: String,
    },
    Task {
        assignee: Target,
        title: String,
        due: Option<Span>,
        /// What kind of work (a sequence's call or LinkedIn step); a plain task when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskKind>,
    },
    /// One member of the team, chosen by the route's strategy when the decision commits
    /// (in the order decisions commit), recorded in `chosen` with `why`.
    AssignOwner {
        team: Vec<RecordId>,
        #[serde(default, skip_serializing_if = "Route::is_default")]
        route: Route,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chosen: Option<RecordId>,
        /// What chose: the route's strategy, or `fallback`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chosen_by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    SetField {
        field: String,
        value: String,
    },
    SetStage {
        stage: Stage,
    },
    /// An exception for a human (see `raw::Escalate`): `to`, then each of `then` in turn
    /// when the one holding it has not acknowledged it within `sla`.
    Escalate {
        to: Target,
        reason: String,
        after: Option<Span>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<Target>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sla: Option<Span>,
    },
    Webhook {
        url: String,
    },
}

/// What an action writes on its record, for telling conflicting actions apart: an owner, a
/// stage or one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Written<'a> {
    Owner,
    Stage,
    Field(&'a str),
}

impl Action {
    /// The target this action writes and the value it writes there; `None` for the value of
    /// an `assign_owner`, whose owner routing picks when the effect commits — two of them
    /// never agree in advance (a rotation gives each the next member). `None` for an action
    /// that writes nothing on the record.
    pub fn writes(&self) -> Option<(Written<'_>, Option<&str>)> {
        match self {
            Action::AssignOwner { .. } => Some((Written::Owner, None)),
            Action::SetStage { stage } => Some((Written::Stage, Some(stage.as_str()))),
            Action::SetField { field, value } => {
                Some((Written::Field(field.as_str()), Some(value.as_str())))
            }
            _ => None,
        }
    }

    /// Whether this action and `other` write different values to the same target: only one of
    /// them can land.
    pub fn conflicts_with(&self, other: &Action) -> bool {
        match (self.writes(), other.writes()) {
            (Some((a, x)), Some((b, y))) => a == b && (x.is_none() || x != y),
            _ => false,
        }
    }

    /// What it writes, in words: `moves the deal to legal`, `sets tier to "gold"`, `assigns
    /// the owner`.
    pub fn what_it_writes(&self) -> Option<String> {
        Some(match self.writes()? {
            (Written::Owner, _) => "assigns the owner".to_owned(),
            (Written::Stage, Some(stage)) => format!("moves the deal to {stage}"),
            (Written::Field(field), Some(value)) => format!("sets {field} to {value:?}"),
            _ => return None,
        })
    }

    /// Its kind as the outbox stores it (`{"kind": "alert", …}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::StartSequence { .. } => "start_sequence",
            Action::StopSequence { .. } => "stop_sequence",
            Action::SendAsset { .. } => "send_asset",
            Action::SendEmail { .. } => "send_email",
            Action::Alert { .. } => "alert",
            Action::Task { .. } => "task",
            Action::AssignOwner { .. } => "assign_owner",
            Action::SetField { .. } => "set_field",
            Action::SetStage { .. } => "set_stage",
            Action::Escalate { .. } => "escalate",
            Action::Webhook { .. } => "webhook",
        }
    }

    /// Where the action is delivered, as the outbox names it: the unit of rate limits and
    /// circuit breakers. `email`, `task` (tasks and escalations), `internal` (a change to
    /// pipewright's own records), `sequence` (for the sequence engine), `chat:NAME`,
    /// `webhook:HOST`.
    pub fn channel(&self) -> String {
        match self {
            Action::SendEmail { .. } | Action::SendAsset { .. } => "email".into(),
            Action::Alert {
                to: Target::Channel(name),
                ..
            } => format!("chat:{name}"),
            Action::Alert { .. } => "email".into(),
            Action::Task { .. } | Action::Escalate { .. } => "task".into(),
            Action::AssignOwner { .. } | Action::SetField { .. } | Action::SetStage { .. } => {
                "internal".into()
            }
            Action::StartSequence { .. } | Action::StopSequence { .. } => "sequence".into(),
            Action::Webhook { url } => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                format!("webhook:{host}")
            }
        }
    }
}

/// How `assign_owner` picks a member (see `raw::AssignOwner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(default)]
    pub strategy: Strategy,
    /// Each member's weight, in team order (empty: all 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
    #[serde(default)]
    pub busy: Busy,
    /// The window `recent_assignments` counts.
    #[serde(default = "Route::default_recent")]
    pub recent: Span,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<RecordId>,
    /// A reassignment: the current owner is passed over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reassign: bool,
}

impl Route {
    fn default_recent() -> Span {
        Span(7 * 86_400_000)
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for Route {
    fn default() -> Self {
        Self {
            strategy: Strategy::RoundRobin,
            weights: Vec::new(),
            busy: Busy::OpenDeals,
            recent: Self::default_recent(),
            fallback: None,
            reassign: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    Weighted,
    LeastBusy,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::RoundRobin,
        Strategy::Weighted,
        Strategy::LeastBusy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Weighted => "weighted",
            Strategy::LeastBusy => "least_busy",
        }
    }
}

/// What `least_busy` compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Busy {
    /// Open deals owned now.
    #[default]
    OpenDeals,
    /// Assignments by routing within the route's `recent` window.
    RecentAssignments,
}

/// An email template: subject, plain text and optionally HTML, each a minijinja template over
/// the record, its contact, its owner and the asset library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl Template {
    /// Whether it reads `link`, the record's page in pipewright's web UI: only the team can
    /// open it, so `check` refuses such a template in email to buyers.
    pub fn reads_link(&self) -> bool {
        [Some(&self.subject), Some(&self.text), self.html.as_ref()]
            .into_iter()
            .flatten()
            .any(|part| crate::load::values_read(part).contains(LINK))
    }
}

/// The value messages read for the record's page in the web UI (`{{ link }}`).
pub const LINK: &str = "link";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub name: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub file: Option<String>,
    pub use_cases: Vec<String>,
    pub stages: Vec<Stage>,
    pub industries: Vec<String>,
}
