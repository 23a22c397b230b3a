//! The YAML shape of a playbook file, as written. Deserialised strictly (unknown keys are
//! errors) and kept close to the text: values that later checks may reject carry their
//! position (`Spanned`), so every diagnostic points at the line and column to fix.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub playbook: S<String>,
    pub owner: S<String>,
    pub description: Option<String>,
    /// The pipeline's stages, in order. Stage names used anywhere in the playbooks must be one
    /// of the stages declared by some playbook (or `closed_won` / `closed_lost`).
    #[serde(default)]
    pub stages: Vec<S<String>>,
    /// Evaluate and record every rule of this playbook, but deliver nothing.
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub assets: BTreeMap<String, Asset>,
    /// Sequence names, so rules can refer to them; their steps are checked by the sequence
    /// engine.
    #[serde(default)]
    pub sequences: BTreeMap<String, serde_saphyr_value::Any>,
}

/// Accepts any YAML value (sequence bodies are validated elsewhere).
pub mod serde_saphyr_value {
    use serde::de::{self, Deserialize, Deserializer, IgnoredAny};

    #[derive(Debug)]
    pub struct Any;

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(d)
                .map(|_| Any)
                .map_err(de::Error::custom)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: S<String>,
    pub why: S<String>,
    #[serde(default)]
    pub covers: Vec<S<String>>,
    /// The kind of record the rule acts on; deals unless said otherwise.
    pub record: Option<S<String>>,
    pub when: When,
    #[serde(rename = "if")]
    pub condition: Option<S<String>>,
    pub then: Vec<Action>,
    pub reentry: Option<Reentry>,
    #[serde(default)]
    pub shadow: bool,
}

/// Exactly one trigger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub event: Option<S<String>>,
    pub quiet_for: Option<S<String>>,
    pub in_stage_for: Option<InStageFor>,
    pub date_field: Option<DateField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InStageFor {
    pub stage: S<String>,
    pub longer_than: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateField {
    pub field: S<String>,
    pub before: Option<S<String>>,
    pub after: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reentry {
    OncePerRecord,
    OncePerStage,
    Every(S<String>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    StartSequence(S<String>),
    StopSequence(S<String>),
    SendAsset(SendAsset),
    SendEmail(SendEmail),
    Alert(Alert),
    Task(Task),
    AssignOwner(AssignOwner),
    SetField(SetField),
    Escalate(Escalate),
    Webhook(Webhook),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendAsset {
    pub asset: Option<S<String>>,
    pub use_case: Option<S<String>>,
    pub to: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmail {
    pub template: S<String>,
    pub to: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    pub to: S<String>,
    pub text: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub assignee: S<String>,
    pub title: S<String>,
    pub due: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignOwner {
    pub team: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetField {
    pub field: S<String>,
    pub value: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    pub to: S<String>,
    pub reason: S<String>,
    pub after: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub title: Option<String>,
    pub url: Option<S<String>>,
    pub file: Option<S<String>>,
    #[serde(default)]
    pub use_cases: Vec<String>,
    #[serde(default)]
    pub stages: Vec<S<String>>,
    #[serde(default)]
    pub industries: Vec<String>,
}
