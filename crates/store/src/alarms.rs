//! Alarms as the store holds them: what the silent-failure monitor raises about the automation
//! itself — a rule that stopped firing, a channel failing, dead letters, a storm held, a
//! background loop restarted — at most one per kind and subject while its condition lasts; and
//! the numbers the monitor reads to decide.

use std::collections::BTreeMap;

use serde::Serialize;

use domain::Timestamp;

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// A rule that used to fire regularly has not for much longer than usual.
    RuleSilent,
    /// Most deliveries to a channel failed lately.
    ChannelFailing,
    /// Effects that could not be delivered and were given up on.
    DeadLetters,
    /// A storm holds a rule's effects for a person's approval.
    StormHeld,
    /// A background loop stopped (it ended or panicked) and was restarted.
    LoopRestarted,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 5] = [
        Self::RuleSilent,
        Self::ChannelFailing,
        Self::DeadLetters,
        Self::StormHeld,
        Self::LoopRestarted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RuleSilent => "rule_silent",
            Self::ChannelFailing => "channel_failing",
            Self::DeadLetters => "dead_letters",
            Self::StormHeld => "storm_held",
            Self::LoopRestarted => "loop_restarted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A condition the monitor sees now (see [`crate::Store::sync_alarms`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlarm {
    /// What it is about within its kind: a rule id, a channel, a storm id, a loop's name.
    pub subject: String,
    /// A sentence for people.
    pub title: String,
    /// The numbers behind the sentence.
    pub detail: serde_json::Value,
}

/// Every condition of one kind the monitor sees in one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSync {
    pub kind: AlarmKind,
    /// Every condition of this kind that holds now; an alarm of the kind for a subject not
    /// among them has cleared.
    pub current: Vec<NewAlarm>,
    /// Why an alarm of this kind whose condition cleared is resolved, in words.
    pub cleared: String,
    /// A more precise reason for some subjects, where the monitor knows it.
    pub cleared_because: BTreeMap<String, String>,
    /// An alarm that is not among `current` is resolved only once it has not been raised for
    /// this long (milliseconds): for conditions seen as moments (a loop restarting) rather than
    /// as states that hold.
    pub quiet_ms: i64,
}

impl AlarmSync {
    pub fn new(kind: AlarmKind, current: Vec<NewAlarm>, cleared: impl Into<String>) -> Self {
        Self {
            kind,
            current,
            cleared: cleared.into(),
            cleared_because: BTreeMap::new(),
            quiet_ms: 0,
        }
    }
}

/// An alarm as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    pub id: String,
    pub kind: AlarmKind,
    pub subject: String,
    pub title: String,
    pub detail: serde_json::Value,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub opened_at: Timestamp,
    /// When it was last raised (its title and detail are of that moment).
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// A person, or `pipewright` when its condition cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl Alarm {
    pub fn is_resolved(&self) -> bool {
        self.status == "resolved"
    }
}

/// Who resolves an alarm whose condition cleared.
pub const MONITOR: &str = "pipewright";

/// Which alarms to list; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmQuery {
    /// `open`, `acknowledged`, `resolved`, or `unresolved` (open or acknowledged).
    pub status: Option<String>,
    pub kind: Option<AlarmKind>,
    pub limit: usize,
}

/// What a person does with an alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmAction {
    /// "I am on it": it stays in view until resolved.
    Acknowledge { by: String, note: Option<String> },
    /// Handled, saying how. While its condition still holds, the monitor leaves it resolved;
    /// once the condition has cleared, a new occurrence raises a new alarm.
    Resolve { by: String, resolution: String },
}

/// What one [`crate::Store::sync_alarms`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlarmsSynced {
    /// Alarms raised for the first time.
    pub opened: Vec<Alarm>,
    /// Alarms resolved because their condition cleared.
    pub resolved: Vec<Alarm>,
    /// Unresolved alarms after the sync: (kind, status, how many).
    pub unresolved: Vec<(AlarmKind, String, u64)>,
}

/// A rule's history in the outbox ([`crate::Store::rule_firings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleFirings {
    pub rule: String,
    /// Effects it decided (shadow ones included).
    pub effects: u64,
    /// Days (UTC) on which it decided any: how often it fires, counting a burst (a schedule
    /// acting on many records, an event with several actions) once.
    pub days: u64,
    /// When it first and last decided one.
    pub first: Timestamp,
    pub last: Timestamp,
}

/// Delivery attempts to one channel since a moment ([`crate::Store::channel_attempts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelAttempts {
    /// `email`, `webhook:HOST`, `chat:NAME`, …
    pub channel: String,
    pub attempts: u64,
    /// Attempts that failed: to be retried, or given up on.
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    /// What the receiver said to the last failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl ChannelAttempts {
    /// The channel's latest attempt failed.
    pub fn failing_last(&self) -> bool {
        match (self.last_failure, self.last_success) {
            (Some(f), Some(s)) => f > s,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Effects given up on ([`crate::Store::dead_letters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetters {
    pub count: u64,
    /// How many per channel, the most first.
    pub by_channel: Vec<(String, u64)>,
    /// When the one given up on first was last attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<Timestamp>,
}
