//! The storm guard as the store holds it: rules watched after they are new, changed, or after
//! an import; the storms that hold a rule's effects until a person approves or discards them.

use serde::Serialize;

use domain::Timestamp;

/// Why a rule is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StormReason {
    /// A rule no set had before.
    New,
    /// What the rule reaches changed: its trigger, condition, re-entry or record kind.
    Reaches,
    /// Records were imported; every rule may act on them at once.
    Import,
    /// The rules were switched back on; every rule may act at once on what came due while they
    /// were off.
    SwitchedOn,
}

impl StormReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Reaches => "reaches",
            Self::Import => "import",
            Self::SwitchedOn => "switched_on",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::New, Self::Reaches, Self::Import, Self::SwitchedOn]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// A rule to watch (see [`crate::Store::watch_rules`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewStorm {
    pub rule: String,
    pub playbook: String,
    /// Who answers for the rule: its playbook's owner.
    pub owner: String,
    /// The playbook version that made it watched.
    pub version: String,
    pub reason: StormReason,
    pub since: Timestamp,
    pub watch_until: Timestamp,
    /// How many records it may act on within an hour before its effects are held.
    pub limit: u32,
    /// Hold from the first effect: its forecast already passes the limit.
    pub holding: bool,
    /// The rule's forecast when it was opened (`engine::forecast::RuleForecast`, as JSON).
    pub preview: Option<serde_json::Value>,
}

/// A watched rule, and whether its effects are held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Storm {
    pub id: String,
    pub rule: String,
    pub playbook: String,
    pub owner: String,
    pub version: String,
    pub reason: StormReason,
    pub since: Timestamp,
    pub watch_until: Timestamp,
    pub limit: u32,
    /// `watching`, `holding`, `approved`, `discarded`, or `ended` (watched without a storm
    /// until the watch ran out).
    pub status: String,
    /// Effects held so far (while holding), released or cancelled (once decided).
    pub held: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holding_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Storm {
    /// Waiting for a person: holding effects.
    pub fn is_holding(&self) -> bool {
        self.status == "holding"
    }
}

/// What a person decides about a storm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StormDecision {
    /// The held effects go out (and are acted on) now; the rule is no longer watched.
    Approve { by: String, note: Option<String> },
    /// The held effects are cancelled, and so is every other effect of the rule decided for
    /// a moment before now that comes while it would have been watched; later ones go out.
    Discard { by: String, note: Option<String> },
}

/// Which storms to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StormQuery {
    /// `watching`, `holding`, `approved`, `discarded`, `ended`, or `open` (watching or
    /// holding); all when absent.
    pub status: Option<String>,
    pub limit: usize,
}

/// A page of deals and leads with the rules' memory of them, for forecasts.
#[derive(Debug, Clone, Default)]
pub struct RulePage {
    pub records: Vec<(domain::Record, engine::Memory)>,
    /// The cursor of the next page, when this one is full.
    pub next: Option<i64>,
}
