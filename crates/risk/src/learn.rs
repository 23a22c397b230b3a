//! What a company's closed deals teach: how long won deals spend in each stage, and — with
//! enough of them — the weights of the warnings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use domain::{Deal, DealStatus, Event, Record, RecordKey, Stage, Timestamp};

use crate::{DAY, Fitted, Model, Sample, fit};

/// One deal's events, in occurrence order.
#[derive(Debug, Clone)]
pub struct DealHistory {
    pub key: RecordKey,
    pub events: Vec<Event>,
}

impl DealHistory {
    /// The deal as its events leave it.
    pub fn deal(&self) -> Option<Deal> {
        match Record::fold(&self.key, &self.events) {
            Record::Deal(d) => Some(d),
            _ => None,
        }
    }
}

/// How long the won deals of a pipeline spent in one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStat {
    /// Won deals that went through the stage.
    pub won: usize,
    pub median_ms: i64,
    /// The settings' percentile: after this long a deal counts as stalled.
    pub threshold_ms: i64,
}

/// What has been learned from closed deals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    /// By `pipeline/stage` (`default/proposal` for deals without a pipeline).
    pub stages: BTreeMap<String, StageStat>,
    pub fitted: Option<Fitted>,
    pub won: usize,
    pub lost: usize,
}

fn stage_key(pipeline: Option<&str>, stage: &Stage) -> String {
    format!("{}/{}", pipeline.unwrap_or("default"), stage.as_str())
}

impl Learned {
    pub fn stage(&self, pipeline: Option<&str>, stage: &Stage) -> Option<&StageStat> {
        self.stages.get(&stage_key(pipeline, stage))
    }
}

/// The `p`-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Time in stage of won deals, by pipeline and stage: every visit they finished, counted once
/// per deal and stage (the longest, when they came back to it).
pub fn stage_stats<'a>(
    percentile_at: f64,
    won: impl IntoIterator<Item = &'a Deal>,
) -> BTreeMap<String, StageStat> {
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for deal in won {
        let mut longest: BTreeMap<String, i64> = BTreeMap::new();
        for visit in &deal.stage_history {
            let Some(left) = visit.left_at else { continue };
            let key = stage_key(deal.pipeline.as_deref(), &visit.stage);
            let spent = left.as_millis() - visit.entered_at.as_millis();
            let slot = longest.entry(key).or_default();
            *slot = (*slot).max(spent);
        }
        for (key, spent) in longest {
            times.entry(key).or_default().push(spent);
        }
    }
    times
        .into_iter()
        .map(|(key, mut v)| {
            v.sort_unstable();
            let stat = StageStat {
                won: v.len(),
                median_ms: percentile(&v, 50.0),
                threshold_ms: percentile(&v, percentile_at),
            };
            (key, stat)
        })
        .collect()
}

/// Snapshots of closed deals every `every` from their creation until they closed, each with
/// the warnings `model` finds then and how the deal ended. Returns the samples and the number
/// of deals they come from.
pub fn samples(model: &Model, histories: &[DealHistory], every: i64) -> (Vec<Sample>, usize) {
    let mut out = Vec::new();
    let mut deals = 0;
    for h in histories {
        let mut record = Record::empty(&h.key);
        let snaps = snapshots(&mut record, &h.events, every, |deal, at| {
            model.signs(deal, at)
        });
        let Some((snaps, lost)) = snaps else { continue };
        if snaps.is_empty() {
            continue;
        }
        deals += 1;
        let weight = 1.0 / snaps.len() as f64;
        out.extend(snaps.into_iter().map(|(_, signs)| Sample {
            signs,
            lost,
            weight,
        }));
    }
    (out, deals)
}

/// Folds a closed deal's events into `record`, calling `look` on the deal every `every` from
/// its creation while it is still open (strictly before it closed). `None` for a deal that has
/// not closed; else what `look` gave at each moment and whether the deal was lost.
pub(crate) fn snapshots<T>(
    record: &mut Record,
    events: &[Event],
    every: i64,
    mut look: impl FnMut(&Deal, Timestamp) -> T,
) -> Option<(Vec<(Timestamp, T)>, bool)> {
    let final_deal = match Record::fold(&record.key(), events) {
        Record::Deal(d) => d,
        _ => return None,
    };
    let closed = final_deal.closed_at?;
    let lost = match final_deal.status {
        DealStatus::Won => false,
        DealStatus::Lost => true,
        DealStatus::Open => return None,
    };
    let created = final_deal.created_at?;
    let mut out = Vec::new();
    let mut next = 0;
    let mut at = created.as_millis() + every.max(DAY / 24);
    while at < closed.as_millis() {
        let t = Timestamp::from_millis(at);
        while next < events.len() && events[next].occurred_at <= t {
            record.apply(&events[next]);
            next += 1;
        }
        if let Record::Deal(d) = &*record {
            out.push((t, look(d, t)));
        }
        at += every.max(DAY / 24);
    }
    Some((out, lost))
}

/// Learns from the closed deals among `histories`: time in stage of the won ones and, with
/// enough closed deals of both outcomes, the warnings' weights (from weekly snapshots).
pub fn learn(base: &Model, histories: &[DealHistory]) -> Learned {
    let finals: Vec<Deal> = histories.iter().filter_map(DealHistory::deal).collect();
    let won = finals
        .iter()
        .filter(|d| d.status == DealStatus::Won)
        .count();
    let lost = finals
        .iter()
        .filter(|d| d.status == DealStatus::Lost)
        .count();
    let stages = stage_stats(
        base.settings.stalled_percentile,
        finals.iter().filter(|d| d.status == DealStatus::Won),
    );
    let mut learned = Learned {
        stages,
        fitted: None,
        won,
        lost,
    };
    let s = &base.settings;
    if won + lost >= s.fit_min_closed && won >= s.fit_min_each && lost >= s.fit_min_each {
        let rules = base.with_learned(learned.clone());
        let (samples, deals) = samples(&rules, histories, 7 * DAY);
        if !samples.is_empty() {
            let stages: Vec<String> = base.stages.iter().map(|s| s.as_str().to_owned()).collect();
            learned.fitted = Some(fit(&samples, &stages, deals, won, lost));
        }
    }
    learned
}
