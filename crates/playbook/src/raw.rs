//! The YAML shape of a playbook file, as written. Deserialised strictly (unknown keys are
//! errors) and kept close to the text: values that later checks may reject carry their
//! position (`Spanned`), so every diagnostic points at the line and column to fix.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[schemars(with = "String")]
    pub playbook: S<String>,
    #[schemars(with = "String")]
    pub owner: S<String>,
    pub description: Option<String>,
    /// The pipeline's stages, in order. Stage names used anywhere in the playbooks must be one
    /// of the stages declared by some playbook (or `closed_won` / `closed_lost`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub stages: Vec<S<String>>,
    /// Evaluate and record every rule of this playbook, but deliver nothing.
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Qualification gates: what a deal must show before it may enter a stage.
    #[serde(default)]
    pub gates: Vec<Gate>,
    #[serde(default)]
    pub assets: BTreeMap<String, Asset>,
    /// Multi-step cadences, started by a rule's `start_sequence`.
    #[serde(default)]
    pub sequences: BTreeMap<String, Sequence>,
    /// Email templates by name, for `send_email`.
    #[serde(default)]
    pub templates: BTreeMap<String, Template>,
    /// Holiday calendars by name (a team's, a country's), for send windows.
    #[serde(default)]
    pub calendars: BTreeMap<String, Calendar>,
    /// The sending etiquette every automated email to a contact follows; declared by at most
    /// one playbook of the set (defaults apply otherwise).
    pub sending: Option<Sending>,
    /// How deals at risk are recognised: each warning's threshold, the late stages, the
    /// score's threshold; declared by at most one playbook of the set (defaults apply
    /// otherwise).
    pub risk: Option<Risk>,
    /// Decision trees for calls a person makes (qualification, discovery): questions,
    /// answers, the next question or a recommendation. Walking one for a deal records the
    /// answers as the deal's fields, which gates and rules read.
    #[serde(default)]
    pub decision_trees: BTreeMap<String, DecisionTree>,
    /// What people say when a buyer raises an objection, by kind (pricing, implementation,
    /// legal, security, competitor, timing, other): the script, and the assets that answer it.
    #[serde(default)]
    pub objections: BTreeMap<String, Objection>,
}

/// A call's questions, from `start`, each leading to another question or a recommendation.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionTree {
    pub title: String,
    /// Why the call matters, in a sentence.
    pub why: Option<String>,
    /// The stage the call belongs to (the handbook lists it there).
    #[schemars(with = "Option<String>")]
    pub stage: Option<S<String>>,
    /// The first question's id.
    #[schemars(with = "String")]
    pub start: S<String>,
    pub questions: BTreeMap<String, Question>,
}

/// One question: choices under `answers`, or a typed answer (`input`) followed by `next` or
/// `recommend`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Question {
    #[schemars(with = "String")]
    pub ask: S<String>,
    /// Guidance for the person asking.
    pub help: Option<String>,
    /// The deal field the answer is written to (`budget_confirmed` → `deal.fields.budget_confirmed`).
    #[schemars(with = "Option<String>")]
    pub field: Option<S<String>>,
    #[serde(default)]
    pub answers: Vec<Answer>,
    /// `text`, `number` or `date`, instead of choices.
    #[schemars(with = "Option<String>")]
    pub input: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub next: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub recommend: Option<S<String>>,
}

/// A choice: what the person picks, the value written to the question's field (the label
/// itself when absent), and where it leads.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    #[schemars(with = "String")]
    pub answer: S<String>,
    pub value: Option<serde_json::Value>,
    #[schemars(with = "Option<String>")]
    pub next: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub recommend: Option<S<String>>,
}

/// How to answer one kind of objection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objection {
    /// What to say, for the person on the call.
    pub script: String,
    /// Assets that answer it, beside those whose `use_cases` name the kind.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub assets: Vec<S<String>>,
}

/// The risk warnings' settings (every key optional; see `docs/risk.md`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// The score from which a deal counts as at risk, between 0 and 1 (0.5).
    #[schemars(with = "Option<f64>")]
    pub threshold: Option<S<f64>>,
    /// The stages by which pricing should have been discussed and an economic buyer engaged
    /// (the second half of the declared stages).
    #[schemars(with = "Option<Vec<String>>")]
    pub late_stages: Option<Vec<S<String>>>,
    /// When weights are fitted to the company's closed deals.
    pub fit: Option<RiskFit>,
    #[serde(default)]
    pub warnings: RiskWarnings,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskFit {
    /// Closed deals needed (40) …
    pub min_closed: Option<usize>,
    /// … at least this many of them won and as many lost (10).
    pub min_each: Option<usize>,
}

/// Each warning's threshold; `off: true` switches one off, `weight` (0 to 1) sets its part in
/// the rule-based score.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskWarnings {
    pub no_activity: Option<AfterWarning>,
    pub ghosted: Option<GhostedWarning>,
    pub close_date_overdue: Option<AfterWarning>,
    pub close_date_pushed: Option<PushedWarning>,
    pub single_threaded: Option<SingleThreadedWarning>,
    pub no_economic_buyer: Option<BuyerWarning>,
    pub pricing_not_discussed: Option<AfterWarning>,
    pub unresolved_objection: Option<AfterWarning>,
    pub stalled: Option<StalledWarning>,
}

/// A warning that holds after a length of time (`after: 14d`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AfterWarning {
    #[serde(default)]
    pub off: bool,
    #[schemars(with = "Option<f64>")]
    pub weight: Option<S<f64>>,
    #[schemars(with = "Option<String>")]
    pub after: Option<S<String>>,
}

/// This many of our messages unanswered (2), the first at least `after` old (5d).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GhostedWarning {
    #[serde(default)]
    pub off: bool,
    #[schemars(with = "Option<f64>")]
    pub weight: Option<S<f64>>,
    #[schemars(with = "Option<usize>")]
    pub messages: Option<S<usize>>,
    #[schemars(with = "Option<String>")]
    pub after: Option<S<String>>,
}

/// The close date moved later this many times (2).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushedWarning {
    #[serde(default)]
    pub off: bool,
    #[schemars(with = "Option<f64>")]
    pub weight: Option<S<f64>>,
    #[schemars(with = "Option<u32>")]
    pub times: Option<S<u32>>,
}

/// Fewer than `contacts` (2) engaged `within` (30d), on a deal open `after` (14d).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SingleThreadedWarning {
    #[serde(default)]
    pub off: bool,
    #[schemars(with = "Option<f64>")]
    pub weight: Option<S<f64>>,
    #[schemars(with = "Option<usize>")]
    pub contacts: Option<S<usize>>,
    #[schemars(with = "Option<String>")]
    pub within: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub after: Option<S<String>>,
}

/// No contact with one of these buying roles on the deal (economic_buyer, decision_maker)
/// engaged, `after` (0d) into the late stages.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyerWarning {
    #[serde(default)]
    pub off: bool,
    #[schemars(with = "Option<f64>")]
    pub weight: Option<S<f64>>,
    pub roles: Option<Vec<String>>,
    #[schemars(with = "Option<String>")]
    pub after: Option<S<String>>,
}

/// Longer in the stage than `percentile` (75) of the won deals that went through it, once
/// `min_won` (10) have; `default` (21d) until then.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StalledWarning {
    #[serde(default)]
    pub off: bool,
    #[schemars(with = "Option<f64>")]
    pub weight: Option<S<f64>>,
    #[schemars(with = "Option<f64>")]
    pub percentile: Option<S<f64>>,
    pub min_won: Option<usize>,
    #[schemars(with = "Option<String>")]
    pub default: Option<S<String>>,
}

/// Limits on automated email to contacts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sending {
    /// At most `max` automated emails to one contact `per` length of time (`7d`).
    pub per_contact: Option<PerContact>,
    /// At most this many automated emails from one sender (the record's owner) per hour / day.
    pub per_sender: Option<PerSender>,
    /// How long after a contact's sequence ends before another may start (`14d`).
    #[schemars(with = "Option<String>")]
    pub cool_off: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerContact {
    pub max: u32,
    #[schemars(with = "String")]
    pub per: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerSender {
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
}

/// Days nobody should receive automated messages.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// Dates as `YYYY-MM-DD`.
    #[schemars(with = "Vec<String>")]
    pub holidays: Vec<S<String>>,
}

/// When a sequence's steps may go out: a step due outside waits for the next opening.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// `mon-fri`, `mon,wed,fri`; every day unless given.
    #[schemars(with = "Option<String>")]
    pub days: Option<S<String>>,
    /// `09:00-17:30`, local time.
    #[schemars(with = "String")]
    pub hours: S<String>,
    /// The IANA zone the hours are in.
    #[schemars(with = "String")]
    pub timezone: S<String>,
    /// Calendars whose holidays close the window.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub holidays: Vec<S<String>>,
}

/// A cadence: its steps run in order, each once the one before it is done. An enrolment ends
/// after the last step, when its goal is met, or on one of its exits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// The kind of record it runs for (`deal` unless said otherwise); only rules on that kind
    /// may start it.
    #[schemars(with = "Option<String>")]
    pub record: Option<S<String>>,
    pub steps: Vec<Step>,
    /// A condition over the record's facts, like a rule's `if`: once it is true the enrolment
    /// ends, its goal met.
    #[schemars(with = "Option<String>")]
    pub goal: Option<S<String>>,
    /// What ends an enrolment early: any of `reply`, `meeting`, `stage_change`, `unsubscribe`,
    /// `bounce`. All of them unless listed.
    #[schemars(with = "Option<Vec<String>>")]
    pub exit_on: Option<Vec<S<String>>>,
    /// A reply from anyone at the contact's account ends the enrolments of all its contacts.
    #[serde(default)]
    pub account_wide_exit: bool,
    /// May run for a contact beside another active sequence (one at a time otherwise).
    #[serde(default)]
    pub concurrent: bool,
    /// When its steps may go out; any time unless given.
    pub window: Option<Window>,
}

/// One step: exactly one of `email`, `task`, `wait` or `branch`, with an optional `id` that a
/// branch can jump to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[schemars(with = "Option<String>")]
    pub id: Option<S<String>>,
    pub email: Option<StepEmail>,
    pub task: Option<StepTask>,
    /// A pause: a length of time (`3d`), or `until` a weekday and/or time of day in the
    /// contact's time zone (`until tuesday 09:00`, `until 09:30`, `until friday`).
    #[schemars(with = "Option<String>")]
    pub wait: Option<S<String>>,
    pub branch: Option<Branch>,
}

/// An email to the enrolled contact, from one template or, for an A/B test, from one of
/// several variants (each contact always gets the same one).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepEmail {
    #[schemars(with = "Option<String>")]
    pub template: Option<S<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub variants: Vec<S<String>>,
}

/// A task for a person: a call, a LinkedIn touch, a manual email.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepTask {
    #[schemars(with = "String")]
    pub assignee: S<String>,
    #[schemars(with = "String")]
    pub title: S<String>,
    /// `call`, `linkedin`, `manual_email` or `other` (the default).
    #[schemars(with = "Option<String>")]
    pub kind: Option<S<String>>,
    /// How long the person has, from when the step comes due.
    #[schemars(with = "Option<String>")]
    pub due: Option<S<String>>,
}

/// Jumps to a later step when the contact engaged (or did not) with the sequence's emails so
/// far: `opened`, `clicked`, `replied` or `no_reply`. Otherwise the next step follows.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    #[serde(rename = "if")]
    #[schemars(with = "String")]
    pub condition: S<String>,
    #[schemars(with = "String")]
    pub goto: S<String>,
}

/// An email: `{{ deal.name }}`, `{{ contact.name }}`, `{{ owner.name }}`, the asset library
/// (`{{ assets["NAME"].url }}`) and the other facts are filled in when it is sent; a value that
/// is missing stops the send. `{{ link }}`, the record's page in pipewright's web UI, is for
/// email to the team: a template emailed to a contact cannot read it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[schemars(with = "String")]
    pub subject: S<String>,
    #[schemars(with = "String")]
    pub text: S<String>,
    #[schemars(with = "Option<String>")]
    pub html: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[schemars(with = "String")]
    pub id: S<String>,
    #[schemars(with = "String")]
    pub why: S<String>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub covers: Vec<S<String>>,
    /// The kind of record the rule acts on; deals unless said otherwise.
    #[schemars(with = "Option<String>")]
    pub record: Option<S<String>>,
    pub when: When,
    #[serde(rename = "if")]
    #[schemars(with = "Option<String>")]
    pub condition: Option<S<String>>,
    #[schemars(with = "Vec<Action>")]
    pub then: Vec<S<Action>>,
    pub reentry: Option<Reentry>,
    #[serde(default)]
    pub shadow: bool,
    /// How many records the rule may act on within an hour while it is new, changed or after
    /// an import, before its effects wait for a person's approval: a number, or `off`.
    #[schemars(with = "Option<String>")]
    pub storm_limit: Option<S<String>>,
    /// Which rule wins when this one and another, acting on the same event or time trigger,
    /// write different values to the same owner, stage or field: the higher priority (0
    /// unless given; negative numbers rank below); on a tie, the rule declared first (files
    /// in name order, rules in their order). The other's action is recorded as `overruled`.
    pub priority: Option<i32>,
}

/// A stage's entry criteria. A move into the stage from any source (the API, an import, an
/// automation) whose deal does not meet every criterion is refused: the deal stays, a
/// `gate.blocked` event records the unmet criteria, and `notify` hears of it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    #[schemars(with = "String")]
    pub stage: S<String>,
    /// Why the stage needs these, in a sentence (shown when a move is refused).
    #[schemars(with = "String")]
    pub why: S<String>,
    /// Each criterion: a name people read and a condition over the deal's facts.
    pub require: Vec<Criterion>,
    /// Roles that may move a deal past the gate with a reason (`founder`, `manager`, …).
    #[serde(default, rename = "override")]
    #[schemars(with = "Vec<String>")]
    pub override_roles: Vec<S<String>>,
    /// Who is alerted when a move is refused: `deal.owner`, `person:ID`, `role:NAME`,
    /// `channel:NAME`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub notify: Vec<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    #[schemars(with = "String")]
    pub name: S<String>,
    #[serde(rename = "if")]
    #[schemars(with = "String")]
    pub condition: S<String>,
}

/// Exactly one trigger.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[schemars(with = "Option<String>")]
    pub event: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub quiet_for: Option<S<String>>,
    pub in_stage_for: Option<InStageFor>,
    pub date_field: Option<DateField>,
    pub schedule: Option<Schedule>,
    /// The record's owner has not touched it (an email, call, meeting or note of theirs) this
    /// long after it was assigned to them (`4h`): a first-touch SLA.
    #[schemars(with = "Option<String>")]
    pub untouched_for: Option<S<String>>,
    /// A risk warning appears on the deal (`stalled`, `ghosted`, …): on an event or with time
    /// alone; once per instance of the warning.
    #[schemars(with = "Option<String>")]
    pub warning: Option<S<String>>,
}

/// A cron schedule over every open record of the rule's kind; the rule's `if` picks the ones
/// it acts on when the schedule comes round.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields — minute hour day-of-month month day-of-week — or @hourly, @daily,
    /// @weekly, @monthly, @yearly.
    #[schemars(with = "String")]
    pub cron: S<String>,
    /// The IANA time zone the schedule's wall-clock times are in; UTC unless given.
    #[schemars(with = "Option<String>")]
    pub timezone: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InStageFor {
    #[schemars(with = "String")]
    pub stage: S<String>,
    #[schemars(with = "String")]
    pub longer_than: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DateField {
    #[schemars(with = "String")]
    pub field: S<String>,
    #[schemars(with = "Option<String>")]
    pub before: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub after: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reentry {
    OncePerRecord,
    OncePerStage,
    Every(#[schemars(with = "String")] S<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    StartSequence(#[schemars(with = "String")] S<String>),
    StopSequence(#[schemars(with = "String")] S<String>),
    SendAsset(SendAsset),
    SendEmail(SendEmail),
    Alert(Alert),
    Task(Task),
    AssignOwner(Box<AssignOwner>),
    SetField(SetField),
    /// Moves the deal to a stage (through the stage's gate, like any move).
    SetStage(#[schemars(with = "String")] S<String>),
    Escalate(Escalate),
    Webhook(Webhook),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendAsset {
    #[schemars(with = "Option<String>")]
    pub asset: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub use_case: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub to: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEmail {
    #[schemars(with = "String")]
    pub template: S<String>,
    #[schemars(with = "Option<String>")]
    pub to: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    #[schemars(with = "String")]
    pub to: S<String>,
    #[schemars(with = "String")]
    pub text: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    #[schemars(with = "String")]
    pub assignee: S<String>,
    #[schemars(with = "String")]
    pub title: S<String>,
    #[schemars(with = "Option<String>")]
    pub due: Option<S<String>>,
}

/// Gives the record to one member of a team. Criteria (segment, territory, size, source) are
/// the rule's `if`; the strategy picks among the members who can take work now.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignOwner {
    /// Person ids, in rotation order.
    #[schemars(with = "Vec<String>")]
    pub team: Vec<S<String>>,
    /// `round_robin` (the default), `weighted` (by `weights`) or `least_busy` (by `busy`).
    #[schemars(with = "Option<String>")]
    pub strategy: Option<S<String>>,
    /// For `weighted`: each member's share of assignments (members not listed have 1).
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// For `least_busy`: `open_deals` (the default) or `recent_assignments`.
    #[schemars(with = "Option<String>")]
    pub busy: Option<S<String>>,
    /// How far back `recent_assignments` counts (`7d` unless given).
    #[schemars(with = "Option<String>")]
    pub recent: Option<S<String>>,
    /// Who gets it when no member can take work (out of office, outside working hours, at
    /// capacity, marked unavailable).
    #[schemars(with = "Option<String>")]
    pub fallback: Option<S<String>>,
    /// What happens when the new owner does not touch the record in time.
    pub first_touch: Option<FirstTouch>,
}

/// A first-touch SLA: the owner has `within` to touch the record; otherwise it is reassigned
/// to the next member who can take it (`reassign: true`), and/or escalated to a person.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstTouch {
    #[schemars(with = "String")]
    pub within: S<String>,
    #[serde(default)]
    pub reassign: bool,
    /// Who hears of it (after the reassigned owner missed it too, with `reassign`):
    /// `person:ID`, `role:NAME`.
    #[schemars(with = "Option<String>")]
    pub escalate: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetField {
    #[schemars(with = "String")]
    pub field: S<String>,
    #[schemars(with = "String")]
    pub value: S<String>,
}

/// Raises an exception for a human: an item in `to`'s inbox with the reason, the record's
/// context and an SLA. Unacknowledged within `sla`, it moves to the next person of `then`
/// (an escalation chain: owner, then their manager, then the founder).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    /// `deal.owner`, `deal.owner.manager`, `person:ID` or `role:NAME`.
    #[schemars(with = "String")]
    pub to: S<String>,
    /// Why, as the heroics report names reasons (`legal-stall`, `pricing`, …).
    #[schemars(with = "String")]
    pub reason: S<String>,
    /// Raise it this long after the rule fires (`3d`); at once unless given.
    #[schemars(with = "Option<String>")]
    pub after: Option<S<String>>,
    /// How long each person in the chain has to acknowledge it (`1d` unless given).
    #[schemars(with = "Option<String>")]
    pub sla: Option<S<String>>,
    /// Who it goes to next, in order, when an SLA runs out.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub then: Vec<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    #[schemars(with = "String")]
    pub url: S<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub title: Option<String>,
    #[schemars(with = "Option<String>")]
    pub url: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub file: Option<S<String>>,
    #[serde(default)]
    pub use_cases: Vec<String>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub stages: Vec<S<String>>,
    #[serde(default)]
    pub industries: Vec<String>,
}
