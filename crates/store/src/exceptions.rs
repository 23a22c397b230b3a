//! The exceptions inbox as the store holds it: what the playbooks route to a human on purpose,
//! who holds it, its SLA and escalation chain, and everything that happened to it.

use serde::Serialize;

use domain::{RecordKey, Timestamp};

/// An exception an `escalate` delivery raises (see `Finish::exception`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewException {
    /// The key of the escalate effect.
    pub id: String,
    pub record: RecordKey,
    /// The playbook, rule and playbook version of the escalation: the alerts telling each
    /// holder are theirs.
    pub playbook: String,
    pub rule: String,
    pub version: String,
    pub reason: String,
    pub title: String,
    /// The record's facts and the why-trace when it was raised.
    pub context: serde_json::Value,
    /// The people it escalates through, in order; the first holds it first.
    pub chain: Vec<String>,
    /// How long each holder has to acknowledge it.
    pub sla_ms: i64,
    pub raised_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExceptionItem {
    pub id: String,
    pub record: RecordKey,
    /// The playbook, rule and playbook version of the escalation that raised it.
    pub playbook: String,
    pub rule: String,
    pub version: String,
    pub reason: String,
    pub title: String,
    pub context: serde_json::Value,
    pub chain: Vec<String>,
    /// The position in `chain` it has escalated to (0: the first).
    pub level: u32,
    /// Who holds it now.
    pub assignee: String,
    pub sla_ms: i64,
    /// When the holder's SLA runs out (absent once acknowledged or resolved, or past the last
    /// level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// When the last level's SLA ran out with nobody acknowledging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_at: Option<Timestamp>,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One entry of an exception's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExceptionEntry {
    pub at: Timestamp,
    /// `raised`, `escalated`, `overdue`, `acknowledged`, `reassigned` or `resolved`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Who holds it after this entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Which exceptions to list; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionQuery {
    pub assignee: Option<String>,
    /// `open`, `acknowledged`, `resolved`, or `unresolved` (open or acknowledged).
    pub status: Option<String>,
    pub record: Option<RecordKey>,
    pub limit: usize,
}

/// What a person does with an exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionAction {
    /// "I have it": the escalation stops with them.
    Acknowledge { by: String, note: Option<String> },
    /// Handled, with the resolution in words. On a deal, the resolver's part is logged as an
    /// `intervention.logged` with the exception's reason, in the same transaction.
    Resolve {
        by: String,
        resolution: String,
        note: Option<String>,
    },
    /// Given to another person, who gets a fresh SLA while it is open.
    Reassign {
        to: String,
        by: String,
        note: Option<String>,
    },
}

/// What one pass over due exceptions did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Escalated {
    /// Moved to the next person of their chain.
    pub escalated: usize,
    /// Ran out at the last level.
    pub overdue: usize,
}
