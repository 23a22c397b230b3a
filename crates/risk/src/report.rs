//! `pipewright risk evaluate`: how well the warnings and the score foresaw the deals that
//! were lost, judged on newer deals than the ones learned from.

use std::fmt::Write as _;

use serde::Serialize;

use domain::{Record, Timestamp};

use crate::learn::snapshots;
use crate::{DAY, DealHistory, Kind, Model, Scoring, auc, learn};

/// Which deals a part of the split holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Part {
    pub deals: usize,
    pub won: usize,
    pub lost: usize,
    /// The first and last close in it.
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Deal-level results at the threshold: a deal is flagged when, on any day while it was open,
/// it showed a warning that raises its score and its score reached the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub flagged: usize,
    pub lost_flagged: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Days from the first flag to the loss, over the lost deals flagged: the median and the
    /// quartiles.
    pub lead_days_median: Option<f64>,
    pub lead_days_p25: Option<f64>,
    pub lead_days_p75: Option<f64>,
}

/// One way of scoring, judged on the newer deals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelScore {
    pub name: String,
    pub scoring: Scoring,
    /// ROC AUC of the daily scores of open deals against how they ended, each deal's days
    /// weighing as one deal.
    pub auc: Option<f64>,
    /// At the settings' threshold.
    pub outcome: Outcome,
    /// Precision and recall at other thresholds, to choose one by: `(threshold, outcome)`.
    pub thresholds: Vec<(f64, Outcome)>,
}

/// The thresholds the evaluation also judges the scores at.
const SWEEP: [f64; 8] = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// One warning, judged on the newer deals: a deal counts as flagged by it if it showed the
/// warning on any day while open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarningScore {
    pub kind: Kind,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub threshold: f64,
    /// The share of deals learned from (the older ones).
    pub split: f64,
    pub train: Part,
    pub test: Part,
    /// Scored days of the test deals.
    pub snapshots: usize,
    pub models: Vec<ModelScore>,
    pub warnings: Vec<WarningScore>,
    /// What the live system scores with, learned from every closed deal.
    pub live: Scoring,
}

/// One test deal under one model: its close, whether it was lost, and its daily scores as
/// they count for flagging (no warning that raises it: never).
type Scored = (Timestamp, bool, Vec<(Timestamp, f64)>);

fn part(histories: &[(Timestamp, bool, &DealHistory)]) -> Part {
    Part {
        deals: histories.len(),
        won: histories.iter().filter(|h| !h.1).count(),
        lost: histories.iter().filter(|h| h.1).count(),
        from: histories.first().map(|h| h.0),
        until: histories.last().map(|h| h.0),
    }
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// Deal-level results from, per deal, the first moment it was flagged (if ever), its close
/// and whether it was lost.
fn outcome(deals: &[(Option<Timestamp>, Timestamp, bool)]) -> Outcome {
    let flagged = deals.iter().filter(|d| d.0.is_some()).count();
    let lost = deals.iter().filter(|d| d.2).count();
    let mut leads: Vec<f64> = deals
        .iter()
        .filter(|d| d.2)
        .filter_map(|(first, closed, _)| {
            first.map(|f| (closed.as_millis() - f.as_millis()) as f64 / DAY as f64)
        })
        .collect();
    leads.sort_by(f64::total_cmp);
    let lost_flagged = leads.len();
    Outcome {
        flagged,
        lost_flagged,
        precision: (flagged > 0).then(|| lost_flagged as f64 / flagged as f64),
        recall: (lost > 0).then(|| lost_flagged as f64 / lost as f64),
        lead_days_median: quantile(&leads, 0.5),
        lead_days_p25: quantile(&leads, 0.25),
        lead_days_p75: quantile(&leads, 0.75),
    }
}

/// Evaluates on the closed deals among `histories`: learns from the oldest `split` of them
/// (by close), and judges the rule-based and the fitted score, and each warning, on the rest,
/// scoring each test deal once a day while it was open.
pub fn evaluate(base: &Model, histories: &[DealHistory], split: f64) -> Evaluation {
    let mut ended: Vec<(Timestamp, bool, &DealHistory)> = histories
        .iter()
        .filter_map(|h| {
            let d = h.deal()?;
            let lost = match d.status {
                domain::DealStatus::Won => false,
                domain::DealStatus::Lost => true,
                domain::DealStatus::Open => return None,
            };
            Some((d.closed_at?, lost, h))
        })
        .collect();
    ended.sort_by_key(|e| (e.0, e.2.key.id.as_str().to_owned()));
    let cut = ((ended.len() as f64) * split.clamp(0.0, 1.0)).round() as usize;
    let (train, test) = ended.split_at(cut.min(ended.len()));
    let train_histories: Vec<DealHistory> = train.iter().map(|t| t.2.clone()).collect();
    let learned = learn(base, &train_histories);
    let rules = base.with_learned(crate::Learned {
        fitted: None,
        ..learned.clone()
    });
    let fitted = learned.fitted.is_some().then(|| base.with_learned(learned));
    let mut models: Vec<(&str, &Model)> = vec![("rule-based", &rules)];
    if let Some(f) = &fitted {
        models.push(("fitted", f));
    }
    let threshold = base.settings.threshold;
    let mut scored: Vec<Vec<(f64, bool, f64)>> = vec![Vec::new(); models.len()];
    let mut days: Vec<Vec<Scored>> = vec![Vec::new(); models.len()];
    // Scores of days with no warning never flag a deal (see `Model::at_risk`).
    let flaggable = |model: &Model, signs: &crate::Signs, score: f64| {
        if model.raising(signs.warnings) {
            score
        } else {
            f64::NEG_INFINITY
        }
    };
    let mut first_warning: Vec<Vec<(Option<Timestamp>, Timestamp, bool)>> =
        vec![Vec::new(); Kind::ALL.len()];
    let mut snapshots_seen = 0;
    for (closed, lost, h) in test {
        let mut record = Record::empty(&h.key);
        // Warnings are the same for both models (only the weights differ).
        let Some((snaps, _)) = snapshots(&mut record, &h.events, DAY, |deal, at| {
            rules.signs(deal, at)
        }) else {
            continue;
        };
        snapshots_seen += snaps.len();
        if snaps.is_empty() {
            continue;
        }
        let weight = 1.0 / snaps.len() as f64;
        for (m, (_, model)) in models.iter().enumerate() {
            let scores: Vec<(Timestamp, f64, f64)> = snaps
                .iter()
                .map(|(at, signs)| {
                    let score = model.score_of(*signs);
                    (*at, score, flaggable(model, signs, score))
                })
                .collect();
            scored[m].extend(scores.iter().map(|(_, s, _)| (*s, *lost, weight)));
            days[m].push((
                *closed,
                *lost,
                scores.iter().map(|(at, _, f)| (*at, *f)).collect(),
            ));
        }
        for (k, firsts) in first_warning.iter_mut().enumerate() {
            let first = snaps
                .iter()
                .find(|(_, signs)| signs.warnings & (1 << k) != 0)
                .map(|(at, _)| *at);
            firsts.push((first, *closed, *lost));
        }
    }
    let all_learned = learn(base, histories);
    Evaluation {
        threshold,
        split,
        train: part(train),
        test: part(test),
        snapshots: snapshots_seen,
        models: models
            .iter()
            .enumerate()
            .map(|(m, (name, model))| {
                let at = |t: f64| {
                    let firsts: Vec<_> = days[m]
                        .iter()
                        .map(|(closed, lost, scores)| {
                            let first = scores.iter().find(|(_, s)| *s >= t).map(|(at, _)| *at);
                            (first, *closed, *lost)
                        })
                        .collect();
                    outcome(&firsts)
                };
                ModelScore {
                    name: (*name).to_owned(),
                    scoring: model.scoring(),
                    auc: auc(&scored[m]),
                    outcome: at(threshold),
                    thresholds: SWEEP.iter().map(|t| (*t, at(*t))).collect(),
                }
            })
            .collect(),
        warnings: Kind::ALL
            .iter()
            .enumerate()
            .filter(|(_, k)| base.settings.is_on(**k))
            .map(|(k, kind)| WarningScore {
                kind: *kind,
                outcome: outcome(&first_warning[k]),
            })
            .collect(),
        live: base.with_learned(all_learned).scoring(),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn days(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn range(o: &Outcome) -> String {
    match (o.lead_days_p25, o.lead_days_p75) {
        (Some(a), Some(b)) => format!("{a:.1}-{b:.1}"),
        _ => "-".into(),
    }
}

impl Evaluation {
    /// The evaluation as a text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let when = |t: Option<Timestamp>| t.map_or("-".into(), |t| t.date_utc().to_string());
        let _ = writeln!(
            out,
            "Learned from the {} oldest closed deals ({} won, {} lost; closed {} to {}).",
            self.train.deals,
            self.train.won,
            self.train.lost,
            when(self.train.from),
            when(self.train.until)
        );
        let _ = writeln!(
            out,
            "Judged on the {} newer ones ({} won, {} lost; closed {} to {}), each scored daily while open ({} scores).",
            self.test.deals,
            self.test.won,
            self.test.lost,
            when(self.test.from),
            when(self.test.until),
            self.snapshots
        );
        let _ = writeln!(
            out,
            "{:.0}% of them were lost. A deal is flagged when, on a day before it closed, it showed a warning that raises its score and the score reached {:.2}; lead time is from the first flag to the loss.\n",
            100.0 * self.test.lost as f64 / self.test.deals.max(1) as f64,
            self.threshold
        );
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:>8} {:>10} {:>7} {:>11} {:>11}",
            "score", "ROC AUC", "flagged", "precision", "recall", "lead (med)", "lead (IQR)"
        );
        for m in &self.models {
            let o = &m.outcome;
            let _ = writeln!(
                out,
                "{:<24} {:>7} {:>8} {:>10} {:>7} {:>11} {:>11}",
                m.name,
                m.auc.map_or("-".into(), |a| format!("{a:.3}")),
                o.flagged,
                pct(o.precision),
                pct(o.recall),
                days(o.lead_days_median),
                range(o)
            );
        }
        let _ = writeln!(out, "\nPrecision / recall at other thresholds:");
        let _ = write!(out, "{:<24}", "threshold");
        for t in SWEEP {
            let _ = write!(out, " {t:>9.1}");
        }
        let _ = writeln!(out);
        for m in &self.models {
            let _ = write!(out, "{:<24}", m.name);
            for (_, o) in &m.thresholds {
                let _ = write!(
                    out,
                    " {:>9}",
                    format!(
                        "{}/{}",
                        pct(o.precision).trim_end_matches('%'),
                        pct(o.recall)
                    )
                );
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:>8} {:>10} {:>7} {:>11} {:>11}",
            "warning", "", "flagged", "precision", "recall", "lead (med)", "lead (IQR)"
        );
        for w in &self.warnings {
            let o = &w.outcome;
            let _ = writeln!(
                out,
                "{:<24} {:>7} {:>8} {:>10} {:>7} {:>11} {:>11}",
                w.kind.as_str(),
                "",
                o.flagged,
                pct(o.precision),
                pct(o.recall),
                days(o.lead_days_median),
                range(o)
            );
        }
        for m in &self.models {
            let _ = writeln!(out, "\n{}: {}", m.name, m.scoring);
        }
        let _ = writeln!(out, "The live score uses {}.", self.live);
        out
    }
}
