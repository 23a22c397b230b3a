//! Sequences as the store keeps them: enrolments, the sending etiquette's state (suppressions
//! and pauses) and results per variant.

use serde::Serialize;

use domain::{RecordKey, Timestamp};

/// One contact in one sequence, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrolmentInfo {
    /// The key of the `start_sequence` effect that started it.
    pub id: String,
    pub sequence: String,
    /// The playbook version it runs to the end.
    pub version: String,
    pub record: RecordKey,
    /// The contact (or lead) its emails go to.
    pub contact: RecordKey,
    /// `active`, `paused` or `ended`.
    pub status: String,
    /// Who paused it: `enrolment`, `owner:ID` or `global`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    /// When its next step runs (while active or paused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// The index of its next step.
    pub step: usize,
    pub emails_sent: u32,
    pub opened: bool,
    pub clicked: bool,
    pub replied: bool,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// `completed`, `goal`, `reply`, `meeting`, `stage_change`, `unsubscribe`, `bounce`,
    /// `account_reply`, `stopped`, `do_not_contact`, `unsubscribed`, `bounced`, `no_address`,
    /// `sequence_removed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

/// Filters for listing enrolments; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrolmentQuery {
    pub record: Option<RecordKey>,
    pub contact: Option<RecordKey>,
    pub sequence: Option<String>,
    pub status: Option<String>,
    /// At most this many, newest first (100 when 0).
    pub limit: usize,
}

/// What one pass over due enrolments did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Advanced {
    /// Enrolments whose due steps ran (or were held).
    pub enrolments: usize,
    pub emails: usize,
    pub tasks: usize,
    /// Emails held back by a frequency cap or a sender's throttle.
    pub held: usize,
    /// Enrolments that ended in this pass.
    pub ended: usize,
}

/// Whose enrolments a pause covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseScope {
    /// Every sequence of every owner.
    Global,
    /// The enrolments on records this person owns (out of office).
    Owner(String),
}

impl PauseScope {
    /// As stored: `global` or `owner:ID`.
    pub fn key(&self) -> String {
        match self {
            PauseScope::Global => "global".into(),
            PauseScope::Owner(id) => format!("owner:{id}"),
        }
    }
}

/// A change to one enrolment by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    /// Its next step runs now if it fell due meanwhile (one step, not every one missed).
    Resume,
    Stop,
}

/// An address or domain that gets no automated email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    /// A lower-case address, or `@domain` for a whole domain.
    pub address: String,
    /// `do_not_contact`, `unsubscribed` or `bounced`.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at: Timestamp,
}

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequencePause {
    /// `global` or `owner:ID`.
    pub scope: String,
    pub since: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How one variant of one email step did: of the enrolments it went to, how many replied
/// (a human reply at any time after it, while enrolled).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantResult {
    pub step: String,
    /// The template sent.
    pub variant: String,
    pub sent: u64,
    pub replied: u64,
    pub reply_rate: f64,
}
