//! The fitted score: logistic regression over the warnings and the deal's stage, by Newton's
//! method on the samples grouped by what they show (at most 2^9 warning sets per stage).
//!
//! The stage is there because warnings are not spread evenly: a deal in legal review shows
//! "stalled" more often than one in discovery, yet deals that reach legal are mostly won. Each
//! stage gets a baseline of its own, and a warning's weight is what it adds in any stage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::KINDS;

/// What a deal shows at a moment: its warnings, as a bit set over [`crate::Kind::ALL`], and
/// its stage, by position among the declared stages (`None`: another stage or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signs {
    pub warnings: u16,
    pub stage: Option<u8>,
}

/// One moment of one closed deal: what it showed then and how it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub signs: Signs,
    pub lost: bool,
    /// How much it counts: each deal's snapshots share one unit, so long deals do not
    /// outweigh short ones.
    pub weight: f64,
}

/// Weights fitted to a company's closed deals: `P(lost) = σ(bias + stage's baseline + Σ
/// weight of each warning present)`; weights are log-odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    pub bias: f64,
    pub weights: [f64; KINDS],
    /// Each declared stage's baseline, added to the bias (the first stage's is 0), in the
    /// order of the stages the model was fitted with.
    pub stages: Vec<(String, f64)>,
    pub deals: usize,
    pub snapshots: usize,
    pub won: usize,
    pub lost: usize,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Fitted {
    /// The log-odds of a deal in no stage or the first with no warning, plus its stage's.
    pub fn baseline(&self, stage: Option<u8>) -> f64 {
        self.bias
            + stage
                .and_then(|s| self.stages.get(usize::from(s)))
                .map_or(0.0, |(_, w)| *w)
    }

    pub fn probability(&self, signs: Signs) -> f64 {
        let mut z = self.baseline(signs.stage);
        for (i, w) in self.weights.iter().enumerate() {
            if signs.warnings & (1 << i) != 0 {
                z += w;
            }
        }
        sigmoid(z)
    }
}

/// The L2 penalty on the weights (not the bias): keeps a warning seen on a handful of deals
/// from taking an extreme weight.
const RIDGE: f64 = 1.0;

/// Fits the weights to samples whose stages are positions in `stages`; `deals`, `won` and
/// `lost` are recorded for the report.
pub fn fit(samples: &[Sample], stages: &[String], deals: usize, won: usize, lost: usize) -> Fitted {
    // Parameters: the bias, one per warning, one per stage after the first.
    let extra = stages.len().saturating_sub(1);
    let p = 1 + KINDS + extra;
    // Grouped: what the samples show → (weight of lost, weight of won).
    let mut groups: BTreeMap<Signs, (f64, f64)> = BTreeMap::new();
    for s in samples {
        let g = groups.entry(s.signs).or_default();
        if s.lost {
            g.0 += s.weight;
        } else {
            g.1 += s.weight;
        }
    }
    let features = |signs: &Signs| -> Vec<f64> {
        let mut x = vec![0.0; p];
        x[0] = 1.0;
        for i in 0..KINDS {
            if signs.warnings & (1 << i) != 0 {
                x[1 + i] = 1.0;
            }
        }
        if let Some(st) = signs.stage.map(usize::from)
            && st >= 1
            && st <= extra
        {
            x[KINDS + st] = 1.0;
        }
        x
    };
    let total: f64 = groups.values().map(|(a, b)| a + b).sum();
    let lost_share = groups.values().map(|(a, _)| a).sum::<f64>() / total.max(f64::MIN_POSITIVE);
    let share = lost_share.clamp(1e-6, 1.0 - 1e-6);
    let mut beta = vec![0.0f64; p];
    beta[0] = (share / (1.0 - share)).ln();
    let rows: Vec<(Vec<f64>, f64, f64)> = groups
        .iter()
        .map(|(signs, (lost, won))| (features(signs), *lost, lost + won))
        .collect();
    for _ in 0..100 {
        let mut grad = vec![0.0f64; p];
        let mut hess = vec![vec![0.0f64; p]; p];
        for (x, lost, n) in &rows {
            let z: f64 = x.iter().zip(&beta).map(|(x, b)| x * b).sum();
            let q = sigmoid(z);
            for (j, xj) in x.iter().enumerate() {
                if *xj == 0.0 {
                    continue;
                }
                grad[j] += (lost - n * q) * xj;
                for (h, xk) in hess[j].iter_mut().zip(x) {
                    *h += n * q * (1.0 - q) * xj * xk;
                }
            }
        }
        for j in 1..p {
            grad[j] -= RIDGE * beta[j];
            hess[j][j] += RIDGE;
        }
        let Some(step) = solve(hess, grad) else { break };
        let mut moved = 0.0f64;
        for (b, d) in beta.iter_mut().zip(&step) {
            *b += d;
            moved = moved.max(d.abs());
        }
        if moved < 1e-9 {
            break;
        }
    }
    let mut weights = [0.0; KINDS];
    weights.copy_from_slice(&beta[1..=KINDS]);
    let stage_weights = stages
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), if i == 0 { 0.0 } else { beta[KINDS + i] }))
        .collect();
    Fitted {
        bias: beta[0],
        weights,
        stages: stage_weights,
        deals,
        snapshots: samples.len(),
        won,
        lost,
    }
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting; `None` if singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|i, j| a[*i][col].abs().total_cmp(&a[*j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (r, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *r -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// The ROC AUC of weighted scores against outcomes (`true`: the positive class, lost): the
/// chance that a positive scores above a negative, ties counting half, each score counting
/// its weight. `None` without both classes.
pub fn auc(scored: &[(f64, bool, f64)]) -> Option<f64> {
    let mut v: Vec<(f64, bool, f64)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives: f64 = v.iter().filter(|s| s.1).map(|s| s.2).sum();
    let negatives: f64 = v.iter().filter(|s| !s.1).map(|s| s.2).sum();
    if positives <= 0.0 || negatives <= 0.0 {
        return None;
    }
    // Walk up the scores: each positive beats the negatives below it, and half of its ties.
    let (mut below, mut won) = (0.0, 0.0);
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < v.len() && v[j].0 == v[i].0 {
            if v[j].1 {
                pos += v[j].2;
            } else {
                neg += v[j].2;
            }
            j += 1;
        }
        won += pos * (below + neg / 2.0);
        below += neg;
        i = j;
    }
    Some(won / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half_and_orders() {
        assert_eq!(auc(&[(0.1, false, 1.0), (0.9, true, 1.0)]), Some(1.0));
        assert_eq!(auc(&[(0.9, false, 1.0), (0.1, true, 1.0)]), Some(0.0));
        assert_eq!(auc(&[(0.5, false, 1.0), (0.5, true, 1.0)]), Some(0.5));
        assert_eq!(auc(&[(0.5, true, 1.0)]), None);
        // One positive above two negatives and below one: 2 of 3 pairs.
        let three = [
            (0.1, false, 1.0),
            (0.2, false, 1.0),
            (0.5, true, 1.0),
            (0.9, false, 1.0),
        ];
        assert!((auc(&three).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // Weights count as repeats.
        let weighted = [(0.1, false, 2.0), (0.5, true, 1.0), (0.9, false, 1.0)];
        assert!((auc(&weighted).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_fit_recovers_known_weights() {
        // Warning 0 raises the log-odds by 2, warning 1 by nothing, the second stage by 1; the
        // base is -1.
        let mut samples = Vec::new();
        for warnings in 0u16..4 {
            for stage in [Some(0), Some(1), None] {
                let z = -1.0
                    + if warnings & 1 != 0 { 2.0 } else { 0.0 }
                    + if stage == Some(1) { 1.0 } else { 0.0 };
                let p = sigmoid(z);
                let n = 10_000.0;
                let signs = Signs { warnings, stage };
                samples.push(Sample {
                    signs,
                    lost: true,
                    weight: n * p,
                });
                samples.push(Sample {
                    signs,
                    lost: false,
                    weight: n * (1.0 - p),
                });
            }
        }
        let f = fit(&samples, &["a".into(), "b".into()], 0, 0, 0);
        assert!((f.bias + 1.0).abs() < 0.01, "{f:?}");
        assert!((f.weights[0] - 2.0).abs() < 0.01, "{f:?}");
        assert!(f.weights[1].abs() < 0.01, "{f:?}");
        assert_eq!(f.stages[0], ("a".to_owned(), 0.0));
        assert!((f.stages[1].1 - 1.0).abs() < 0.01, "{f:?}");
        let warned = Signs {
            warnings: 1,
            stage: Some(1),
        };
        assert!((f.probability(warned) - sigmoid(2.0)).abs() < 0.01);
    }
}
