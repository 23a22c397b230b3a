//! Asset effectiveness: for each asset and the use case it was sent for, how often the deal
//! advanced (or the buyer replied) within a window after the send, beside similar deals that
//! were not sent it. Pure: the sends and the deals' histories are given.
//!
//! Definitions (also in `docs/heroics.md`):
//! - **A send** is an effect that sent the asset to a deal (`send_asset`, delivered or
//!   rendered in a dry run), at its due time. A deal counts once per asset and use case, at
//!   its first send.
//! - **Advanced** within the window: the deal entered a stage later in the pipeline's order
//!   than the one it was in at the send (a stage outside the declared order counts when it is
//!   another open stage), or was won.
//! - **Replied** within the window: a buyer's email that is not an automatic reply.
//! - **Similar deals** are the deals never sent the asset that were in the situation the
//!   asset is for: for a use case that is an objection kind (`pricing`, `implementation`,
//!   `legal`, `security`, `competitor`, `timing`), the first time they raised that objection;
//!   otherwise the first time they entered a stage the sent deals were in when it was sent.
//!   Their window starts there.
//! - Only windows that ended by the report's end count (the others are `open`), so a recent
//!   send is not judged before it had its chance.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use domain::{DealStatus, ObjectionKind, RecordId, Stage, Timestamp};

use crate::DealRun;

/// One asset sent to one deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetSend {
    pub deal: RecordId,
    pub asset: String,
    /// What the playbook sent it for, when it said (`send_asset: {use_case: …}`).
    pub use_case: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct AssetOptions {
    /// The window after a send (or a similar deal's start) in which an outcome counts.
    pub within: i64,
    /// Sends at or after `from` and before `to` count; `to` also ends the history.
    pub from: Option<Timestamp>,
    pub to: Timestamp,
    /// The pipeline's stages in order (the playbooks' `stages`).
    pub stages: Vec<String>,
}

/// Outcomes of one group: how many deals, how many of their windows have ended, and of those
/// how many advanced and how many replied.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcomes {
    pub deals: u32,
    /// Windows still running at the report's end: not judged yet.
    pub open: u32,
    pub judged: u32,
    pub advanced: u32,
    pub replied: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advanced_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replied_rate: Option<f64>,
}

impl Outcomes {
    fn add(&mut self, outcome: Option<(bool, bool)>) {
        self.deals += 1;
        match outcome {
            None => self.open += 1,
            Some((advanced, replied)) => {
                self.judged += 1;
                self.advanced += u32::from(advanced);
                self.replied += u32::from(replied);
            }
        }
    }

    fn finish(&mut self) {
        let rate = |n: u32| (self.judged > 0).then(|| f64::from(n) / f64::from(self.judged));
        self.advanced_rate = rate(self.advanced);
        self.replied_rate = rate(self.replied);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetRow {
    pub asset: String,
    /// The use case it was sent for; absent when the playbook named the asset itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_case: Option<String>,
    pub sent: Outcomes,
    /// Similar deals not sent it, as defined above.
    pub similar: Outcomes,
    /// Who the similar deals are, in words.
    pub compared_with: String,
    /// `sent` minus `similar` advance rate, when both have judged deals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advance_lift: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_lift: Option<f64>,
}

/// The stage a deal was in at `at`.
fn stage_at(run: &DealRun, at: Timestamp) -> Option<&Stage> {
    run.deal
        .stage_history
        .iter()
        .rev()
        .find(|v| v.entered_at <= at)
        .map(|v| &v.stage)
}

/// (advanced, replied) within the window from `at`, or `None` while it runs past `end`.
fn outcome(run: &DealRun, at: Timestamp, o: &AssetOptions) -> Option<(bool, bool)> {
    let until = at.as_millis() + o.within;
    if until > o.to.as_millis() {
        return None;
    }
    let inside = |t: Timestamp| t > at && t.as_millis() <= until;
    let position = |s: &Stage| o.stages.iter().position(|x| x == s.as_str());
    let from = stage_at(run, at);
    let moved_on = run.deal.stage_history.iter().any(|v| {
        inside(v.entered_at)
            && Some(&v.stage) != from
            && v.stage.as_str() != domain::LOST_STAGE
            && match (from.and_then(position), position(&v.stage)) {
                (Some(a), Some(b)) => b > a,
                _ => true,
            }
    });
    let won = run.deal.status == DealStatus::Won && run.deal.closed_at.is_some_and(inside);
    let replied = run.replies.iter().any(|t| inside(*t));
    Some((moved_on || won, replied))
}

/// Effectiveness of every asset and use case sent in the period, largest groups first.
pub fn effectiveness(deals: &[DealRun], sends: &[AssetSend], o: &AssetOptions) -> Vec<AssetRow> {
    let runs: BTreeMap<&RecordId, &DealRun> = deals.iter().map(|r| (&r.deal.id, r)).collect();
    // The first send of each asset and use case to each deal.
    let mut first: BTreeMap<(&str, Option<&str>), BTreeMap<&RecordId, Timestamp>> = BTreeMap::new();
    for s in sends {
        let in_period = o.from.is_none_or(|f| s.at >= f) && s.at < o.to;
        if !in_period || !runs.contains_key(&s.deal) {
            continue;
        }
        first
            .entry((s.asset.as_str(), s.use_case.as_deref()))
            .or_default()
            .entry(&s.deal)
            .and_modify(|t| *t = (*t).min(s.at))
            .or_insert(s.at);
    }
    // Every deal the asset ever went to, whatever the use case: none of them is "similar".
    let mut got: BTreeMap<&str, BTreeSet<&RecordId>> = BTreeMap::new();
    for s in sends {
        got.entry(s.asset.as_str()).or_default().insert(&s.deal);
    }
    let mut rows = Vec::new();
    for ((asset, use_case), sent_to) in first {
        let mut sent = Outcomes::default();
        let mut stages = BTreeSet::new();
        for (deal, at) in &sent_to {
            let run = runs[deal];
            if let Some(s) = stage_at(run, *at) {
                stages.insert(s.as_str().to_owned());
            }
            sent.add(outcome(run, *at, o));
        }
        // A use case named like an objection kind is for buyers raising that objection.
        let objection = use_case
            .and_then(ObjectionKind::parse)
            .filter(|k| *k != ObjectionKind::Other);
        let excluded = &got[asset];
        let mut similar = Outcomes::default();
        for run in deals.iter().filter(|r| !excluded.contains(&r.deal.id)) {
            let start = match objection {
                Some(kind) => run.objections.iter().find(|r| r.kind == kind).map(|r| r.at),
                None => run
                    .deal
                    .stage_history
                    .iter()
                    .find(|v| stages.contains(v.stage.as_str()))
                    .map(|v| v.entered_at),
            };
            let Some(start) = start.filter(|t| o.from.is_none_or(|f| *t >= f) && *t < o.to) else {
                continue;
            };
            similar.add(outcome(run, start, o));
        }
        sent.finish();
        similar.finish();
        let compared_with = match (objection, use_case) {
            (Some(_), Some(kind)) => {
                format!("deals that raised a {kind} objection and were not sent {asset}")
            }
            _ => format!(
                "deals that entered {} and were not sent {asset}",
                stages.iter().cloned().collect::<Vec<_>>().join(" or ")
            ),
        };
        let lift = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        rows.push(AssetRow {
            asset: asset.to_owned(),
            use_case: use_case.map(str::to_owned),
            advance_lift: lift(sent.advanced_rate, similar.advanced_rate),
            reply_lift: lift(sent.replied_rate, similar.replied_rate),
            sent,
            similar,
            compared_with,
        });
    }
    rows.sort_by(|a, b| {
        b.sent
            .deals
            .cmp(&a.sent.deals)
            .then_with(|| a.asset.cmp(&b.asset))
            .then_with(|| a.use_case.cmp(&b.use_case))
    });
    rows
}

/// The rows as an aligned text table.
pub fn table(rows: &[AssetRow], within_days: i64) -> String {
    let pct = |r: Option<f64>| r.map_or("—".to_owned(), |r| format!("{:.0}%", r * 100.0));
    let lift = |r: Option<f64>| r.map_or("—".to_owned(), |r| format!("{:+.0} pts", r * 100.0));
    let mut out = format!(
        "{:<24} {:<16} {:>5} {:>5} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9}\n",
        "asset",
        "use case",
        "sent",
        "open",
        "advanced",
        "replied",
        "similar",
        "advanced",
        "replied",
        "lift"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:<16} {:>5} {:>5} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9}\n",
            r.asset,
            r.use_case.as_deref().unwrap_or("—"),
            r.sent.deals,
            r.sent.open,
            pct(r.sent.advanced_rate),
            pct(r.sent.replied_rate),
            r.similar.judged,
            pct(r.similar.advanced_rate),
            pct(r.similar.replied_rate),
            lift(r.advance_lift),
        ));
    }
    out.push_str(&format!(
        "\nadvanced, replied: within {within_days} days of the send (of the deals whose window has ended); similar: deals in the same situation not sent the asset; lift: advanced rate, sent minus similar.\n"
    ));
    out
}
