//! Leading indicators: which open deals are at risk, and why.
//!
//! A [`Model`] looks at a deal as it stands at a moment and finds its [`Warning`]s — no
//! activity, ghosted, close date overdue or pushed, single-threaded, no economic buyer, pricing
//! not discussed late, an unresolved objection, stalled in stage — each with a sentence saying
//! why. It combines them into a score between 0 and 1: with rule-based weights from day one,
//! and with weights fitted to the company's own closed deals once there are enough
//! ([`learn`]). Everything here is pure: the deal and "now" are arguments, so a warning appears
//! with time alone (a deal becomes stalled without any event) and a replay sees what the live
//! system saw.

mod fit;
mod learn;
mod report;
mod warnings;

pub use fit::{Fitted, Sample, Signs, auc, fit};
pub use learn::{DealHistory, Learned, StageStat, learn, samples, stage_stats};
pub use report::{Evaluation, ModelScore, Outcome, WarningScore, evaluate};
pub use warnings::{Assessment, Contribution, MAX_CONTACTS, Warning};

use serde::{Deserialize, Serialize};

use domain::{Deal, DealStatus, Stage, Timestamp};

const DAY: i64 = domain::MILLIS_PER_DAY;

macro_rules! kinds {
    ($( $variant:ident = $name:literal, $weight:literal, $title:literal; )*) => {
        /// The warnings, each a leading indicator of a deal that will stall or be lost.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind {
            $( $variant, )*
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The warning as playbooks and facts name it (`ghosted`).
            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$variant => $name,)* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(Kind::$variant),)* _ => None }
            }

            /// Its weight in the rule-based score: the chance, on its own, that a deal showing
            /// it is in trouble.
            pub fn default_weight(self) -> f64 {
                match self { $(Kind::$variant => $weight,)* }
            }

            /// A short title, for tables.
            pub fn title(self) -> &'static str {
                match self { $(Kind::$variant => $title,)* }
            }
        }
    };
}

kinds! {
    NoActivity = "no_activity", 0.35, "No activity";
    Ghosted = "ghosted", 0.40, "Ghosted";
    CloseDateOverdue = "close_date_overdue", 0.25, "Close date overdue";
    CloseDatePushed = "close_date_pushed", 0.30, "Close date pushed";
    SingleThreaded = "single_threaded", 0.20, "Single-threaded";
    NoEconomicBuyer = "no_economic_buyer", 0.25, "No economic buyer";
    PricingNotDiscussed = "pricing_not_discussed", 0.20, "Pricing not discussed";
    UnresolvedObjection = "unresolved_objection", 0.30, "Unresolved objection";
    Stalled = "stalled", 0.35, "Stalled in stage";
}

/// How many kinds of warning there are.
pub const KINDS: usize = 9;

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thresholds of every warning and how the score is judged: a playbook's `risk:` block,
/// with these defaults for what it leaves out. Durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The score from which a deal counts as at risk (precision and recall are judged here).
    pub threshold: f64,
    /// The stages by which pricing should have been discussed and an economic buyer engaged;
    /// `None`: the second half of the stages the playbooks declare, in their order.
    pub late_stages: Option<Vec<Stage>>,
    /// Closed deals needed before weights are fitted; at least [`Settings::fit_min_each`] of
    /// them won and as many lost.
    pub fit_min_closed: usize,
    pub fit_min_each: usize,
    /// No activity of anyone's for this long.
    pub no_activity_after: i64,
    /// This many of our messages in a row without an answer …
    pub ghosted_messages: usize,
    /// … the first of them at least this old.
    pub ghosted_after: i64,
    /// This long after the close date has passed.
    pub overdue_after: i64,
    /// The close date moved later this many times.
    pub pushed_times: u32,
    /// Fewer than this many contacts engaged …
    pub single_contacts: usize,
    /// … within this long …
    pub single_within: i64,
    /// … on a deal open at least this long.
    pub single_after: i64,
    /// Buying roles that count as an economic buyer or decision maker.
    pub buyer_roles: Vec<String>,
    /// This long into the late stages without one engaged.
    pub buyer_after: i64,
    /// This long into the late stages without pricing discussed.
    pub pricing_after: i64,
    /// An objection unresolved for this long.
    pub objection_after: i64,
    /// Stalled: longer in the stage than this percentile of the won deals that went through
    /// it …
    pub stalled_percentile: f64,
    /// … once this many won deals of the pipeline have; until then the default.
    pub stalled_min_won: usize,
    pub stalled_default: i64,
    /// Warnings switched off, by kind.
    pub off: Vec<Kind>,
    /// Rule-based weights given instead of the defaults.
    pub weights: Vec<(Kind, f64)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            late_stages: None,
            fit_min_closed: 40,
            fit_min_each: 10,
            no_activity_after: 14 * DAY,
            ghosted_messages: 2,
            ghosted_after: 5 * DAY,
            overdue_after: 0,
            pushed_times: 2,
            single_contacts: 2,
            single_within: 30 * DAY,
            single_after: 14 * DAY,
            buyer_roles: vec!["economic_buyer".into(), "decision_maker".into()],
            buyer_after: 0,
            pricing_after: 0,
            objection_after: 3 * DAY,
            stalled_percentile: 75.0,
            stalled_min_won: 10,
            stalled_default: 21 * DAY,
            off: Vec::new(),
            weights: Vec::new(),
        }
    }
}

impl Settings {
    /// The rule-based weight of a warning: given, or its default.
    pub fn weight(&self, kind: Kind) -> f64 {
        self.weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(kind.default_weight(), |(_, w)| *w)
    }

    pub fn is_on(&self, kind: Kind) -> bool {
        !self.off.contains(&kind)
    }
}

/// How the score is made: what a report says it is using.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scoring {
    /// Rule-based: `1 − Π(1 − weight)` over the warnings present.
    Rules { closed: usize, needed: usize },
    /// Logistic regression fitted to closed deals.
    Fitted {
        deals: usize,
        snapshots: usize,
        won: usize,
        lost: usize,
    },
}

impl std::fmt::Display for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scoring::Rules { closed, needed } => write!(
                f,
                "rule-based weights ({closed} closed deals; weights are fitted from {needed})"
            ),
            Scoring::Fitted {
                deals,
                snapshots,
                won,
                lost,
            } => write!(
                f,
                "weights fitted by logistic regression on {deals} closed deals ({won} won, {lost} lost; {snapshots} weekly snapshots)"
            ),
        }
    }
}

/// The warnings' thresholds, the stages they read, and what has been learned: everything a
/// deal's risk depends on besides the deal and the moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub settings: Settings,
    /// The stages the playbooks declare, in order: the fitted score's stage baselines.
    pub stages: Vec<Stage>,
    /// The late stages (see [`Settings::late_stages`]).
    pub late: Vec<Stage>,
    pub learned: Learned,
}

impl Default for Model {
    fn default() -> Self {
        Self::new(Settings::default(), &[], Learned::default())
    }
}

impl Model {
    /// `stages`: the stages the playbooks declare, in their order (what the late stages default
    /// from).
    pub fn new(settings: Settings, stages: &[Stage], learned: Learned) -> Self {
        let late = match &settings.late_stages {
            Some(late) => late.clone(),
            None => stages[stages.len() / 2..].to_vec(),
        };
        Self {
            settings,
            stages: stages.to_vec(),
            late,
            learned,
        }
    }

    /// The same thresholds with what has been learned from a history.
    pub fn with_learned(&self, learned: Learned) -> Self {
        Self {
            learned,
            ..self.clone()
        }
    }

    /// What the score is made with.
    pub fn scoring(&self) -> Scoring {
        match &self.learned.fitted {
            Some(f) => Scoring::Fitted {
                deals: f.deals,
                snapshots: f.snapshots,
                won: f.won,
                lost: f.lost,
            },
            None => Scoring::Rules {
                closed: self.learned.won + self.learned.lost,
                needed: self.settings.fit_min_closed,
            },
        }
    }

    /// When warning `kind` holds for `deal` if nothing else happens: `(anchor, since)`, where
    /// `since` is the moment it appears (past or future) and `anchor` names this instance of
    /// it, so that a rule triggered by it fires once per instance. `None`: it does not hold
    /// and time alone will not make it (only an event can). Closed deals have no warnings.
    pub fn window(
        &self,
        kind: Kind,
        deal: &Deal,
        now: Timestamp,
    ) -> Option<(Timestamp, Timestamp)> {
        if deal.status != DealStatus::Open || !self.settings.is_on(kind) {
            return None;
        }
        warnings::window(self, kind, deal, now)
    }

    /// Whether warning `kind` holds for `deal` at `now`.
    pub fn holds(&self, kind: Kind, deal: &Deal, now: Timestamp) -> bool {
        self.window(kind, deal, now)
            .is_some_and(|(_, since)| since <= now)
    }

    /// What the score reads: the warnings present, as a bit set over [`Kind::ALL`], and the
    /// stage — without allocating.
    pub fn signs(&self, deal: &Deal, now: Timestamp) -> Signs {
        let mut warnings = 0;
        for (i, kind) in Kind::ALL.iter().enumerate() {
            if self.holds(*kind, deal, now) {
                warnings |= 1 << i;
            }
        }
        let stage = deal
            .stage
            .as_ref()
            .and_then(|s| self.stages.iter().position(|x| x == s))
            .and_then(|i| u8::try_from(i).ok());
        Signs { warnings, stage }
    }

    /// The score of what a deal shows (see [`Model::signs`]).
    pub fn score_of(&self, signs: Signs) -> f64 {
        let on = |i: usize| signs.warnings & (1 << i) != 0;
        match &self.learned.fitted {
            Some(f) => f.probability(signs),
            None => {
                let mut clear = 1.0;
                for (i, kind) in Kind::ALL.iter().enumerate() {
                    if on(i) {
                        clear *= 1.0 - self.settings.weight(*kind).clamp(0.0, 1.0);
                    }
                }
                1.0 - clear
            }
        }
    }

    /// The deal's risk score at `now`, between 0 and 1; 0 for a closed deal.
    pub fn score(&self, deal: &Deal, now: Timestamp) -> f64 {
        if deal.status != DealStatus::Open {
            return 0.0;
        }
        self.score_of(self.signs(deal, now))
    }

    /// The threshold, in milliseconds, after which a deal in `stage` of `pipeline` counts as
    /// stalled, and what it comes from.
    pub fn stalled_after(
        &self,
        pipeline: Option<&str>,
        stage: &Stage,
    ) -> (i64, Option<&StageStat>) {
        match self.learned.stage(pipeline, stage) {
            Some(s) if s.won >= self.settings.stalled_min_won => (s.threshold_ms, Some(s)),
            _ => (self.settings.stalled_default, None),
        }
    }
}
