//! Playbooks as code: the team's judgment written as YAML files — rules with their triggers,
//! conditions and actions, assets, sequences — compiled into validated types.
//!
//! Loading never stops at the first mistake: every problem in every file is reported as a
//! [`Diagnostic`] with file, line and column. Once compiled, a playbook cannot fail at
//! evaluation time because of its shape. This crate reads files and nothing else: no clock, no
//! database, no network.

mod condition;
mod conflicts;
mod cron;
pub mod facts;
pub mod handbook;
mod load;
mod model;
mod raw;
mod wall;
mod window;

pub use condition::{Condition, ConditionError, Scope};
pub use cron::{CronError, Schedule};
pub use facts::{DEAL_FACTS, EVENT_FACTS, Fact, LEAD_FACTS, Type, Values};
pub use load::{
    Diagnostic, Loaded, Severity, Targets, load_dir, load_dir_with, load_files, load_files_with,
    parse_span, read_dir,
};
pub use model::{
    Action, Answer, Answered, Asset, AssetChoice, Busy, Criterion, DEFAULT_ESCALATION_SLA,
    DecisionTree, Engagement, Exit, Gate, InputKind, LINK, Location, ObjectionScript, Outcome,
    Playbook, PlaybookSet, Question, Reentry, Reply, Route, Rule, Sending, Sequence, Span, Step,
    StepKind, StormLimit, Strategy, Target, TaskKind, Template, Trigger, Wait, Walk, WalkError,
    Written,
};
pub use window::SendWindow;

/// The JSON Schema of a playbook file, generated from the types the loader reads, for editors
/// to complete and validate playbooks as they are written.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(raw::File);
    schema.insert("title".into(), "pipewright playbook".into());
    schema.to_value()
}
