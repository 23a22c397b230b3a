//! The outbox as delivery sees it: effects claimed with a lease, attempted, and finished; tasks
//! that deliveries create.

use serde::Serialize;

use domain::{RecordKey, Timestamp};

/// An effect as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEffect {
    pub key: String,
    pub seq: i64,
    pub playbook: String,
    pub rule: String,
    pub version: String,
    pub record: RecordKey,
    pub action: serde_json::Value,
    pub due: Timestamp,
    pub shadow: bool,
    /// `pending`, `delivering` (leased), `delivered`, `dry_run`, `dead`, `cancelled`,
    /// `shadow` (recorded only), `blocked` (stopped by the sending etiquette or unroutable;
    /// `last_error` says why), `held` (by the storm guard, until approved) or `overruled`
    /// (another effect of the same input wrote the same owner, stage or field and won;
    /// `last_error` names it and both values).
    pub status: String,
    /// Where it goes: `email`, `task`, `internal`, `sequence`, `chat:NAME`, `webhook:HOST`.
    pub channel: String,
    pub attempts: u32,
    /// When it may be attempted (again).
    pub next_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// The message as sent (or, in a dry run, as it would have been sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<serde_json::Value>,
    /// The receiver's answer to the delivering attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub trace: serde_json::Value,
    pub created_at: Timestamp,
    /// When a person last put it back in line after it was dead or cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried_at: Option<Timestamp>,
}

impl StoredEffect {
    /// Where its retry budget counts from: the latest of when it was due, when it was made
    /// and when a person last retried it (an effect decided late, or retried by hand, gets
    /// its whole budget).
    pub fn budget_from(&self) -> Timestamp {
        self.due
            .max(self.created_at)
            .max(self.retried_at.unwrap_or(self.due))
    }
}

/// Which effects to list; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxQuery {
    pub record: Option<RecordKey>,
    pub status: Option<String>,
    pub channel: Option<String>,
    /// Only this rule's.
    pub rule: Option<String>,
    /// Effects after this position (the previous page's last `seq`).
    pub after: Option<i64>,
    pub limit: usize,
    /// The newest first (the latest `limit`), instead of the oldest.
    pub newest_first: bool,
}

/// A claim for due effects, made by one dispatcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The claiming dispatcher; only it may finish what it claimed while the lease holds.
    pub node: String,
    pub now: Timestamp,
    pub lease_until: Timestamp,
    /// At most this many effects in all.
    pub limit: usize,
    /// Channels (exact) or families (`chat`, `webhook`, …) not to claim from at all.
    pub paused: Vec<String>,
    /// At most this many from a channel (exact name first, then its family); channels not
    /// named are limited by `each`, or else only by `limit`.
    pub budgets: Vec<(String, usize)>,
    /// At most this many from any channel `budgets` does not name.
    pub each: Option<usize>,
}

impl Claim {
    pub(crate) fn budget(&self, channel: &str) -> Option<usize> {
        let family = channel.split(':').next().unwrap_or(channel);
        let find = |name: &str| self.budgets.iter().find(|(c, _)| c == name).map(|b| b.1);
        find(channel).or_else(|| find(family)).or(self.each)
    }

    pub(crate) fn paused(&self, channel: &str) -> bool {
        let family = channel.split(':').next().unwrap_or(channel);
        self.paused.iter().any(|p| p == channel || p == family)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The receiver accepted it.
    Delivered,
    /// Rendered and captured instead of sent.
    DryRun,
    /// Failed for now; attempt again at `next_at`.
    Retry { next_at: Timestamp },
    /// Failed for good (refused permanently, or out of attempts).
    Dead,
}

impl Outcome {
    pub fn status(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::DryRun => "dry_run",
            Outcome::Retry { .. } => "pending",
            Outcome::Dead => "dead",
        }
    }
}

/// The end of one attempt, recorded with the effect's new state in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub key: String,
    pub node: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: Outcome,
    /// What the receiver said, or the error.
    pub detail: Option<String>,
    pub rendered: Option<serde_json::Value>,
    /// A task the delivery creates, written in the same transaction.
    pub task: Option<NewTask>,
    /// An exception the delivery raises, written in the same transaction.
    pub exception: Option<crate::NewException>,
}

/// One attempt at delivering an effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub attempt: u32,
    pub node: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `delivered`, `dry_run`, `retry` or `dead`; `unknown` from the claim until the attempt
    /// ends (still so after its lease, the node stopped in the middle of it).
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// The key of the effect that created it.
    pub id: String,
    /// `task` or `escalation`.
    pub kind: String,
    pub assignee: String,
    pub title: String,
    pub record: RecordKey,
    pub rule: String,
    pub due_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub id: String,
    pub kind: String,
    pub assignee: String,
    pub title: String,
    pub record: RecordKey,
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// `open` or `done`.
    pub status: String,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    pub assignee: Option<String>,
    pub status: Option<String>,
    pub limit: usize,
}

/// The outbox at a glance, for monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// How many effects are in each status.
    pub by_status: Vec<(String, u64)>,
    /// The earliest time a pending effect was due (absent: nothing pending).
    pub oldest_pending_due: Option<Timestamp>,
    /// How many exceptions are in each status (`open`, `acknowledged`, `resolved`).
    pub exceptions: Vec<(String, u64)>,
    /// Open exceptions whose last level's SLA ran out with nobody acknowledging.
    pub exceptions_overdue: u64,
}
