//! The fitted score: logistic regression over the warnings, by Newton's method on the samples
//! grouped by which warnings they show (there are at most 2^9 such groups).

use serde::{Deserialize, Serialize};

use crate::KINDS;

/// One moment of one closed deal: the warnings it showed then and how it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Warnings present, as [`crate::Model::present`] gives them.
    pub bits: u16,
    pub lost: bool,
    /// How much it counts: each deal's snapshots share one unit, so long deals do not
    /// outweigh short ones.
    pub weight: f64,
}

/// Weights fitted to a company's closed deals: `P(lost) = σ(bias + Σ weight of each warning
/// present)`; weights are log-odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    pub bias: f64,
    pub weights: [f64; KINDS],
    pub deals: usize,
    pub snapshots: usize,
    pub won: usize,
    pub lost: usize,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Fitted {
    pub fn probability(&self, bits: u16) -> f64 {
        let mut z = self.bias;
        for (i, w) in self.weights.iter().enumerate() {
            if bits & (1 << i) != 0 {
                z += w;
            }
        }
        sigmoid(z)
    }
}

/// The L2 penalty on the weights (not the bias): keeps a warning seen on a handful of deals
/// from taking an extreme weight.
const RIDGE: f64 = 1.0;

/// Fits the weights to samples; `deals`, `won` and `lost` are recorded for the report.
pub fn fit(samples: &[Sample], deals: usize, won: usize, lost: usize) -> Fitted {
    const P: usize = KINDS + 1;
    // Grouped: (bits) → (weight of lost, weight of won).
    let mut groups = vec![(0.0f64, 0.0f64); 1 << KINDS];
    for s in samples {
        let g = &mut groups[usize::from(s.bits) & ((1 << KINDS) - 1)];
        if s.lost {
            g.0 += s.weight;
        } else {
            g.1 += s.weight;
        }
    }
    let total: f64 = groups.iter().map(|(a, b)| a + b).sum();
    let lost_share: f64 = groups.iter().map(|(a, _)| a).sum::<f64>() / total.max(f64::MIN_POSITIVE);
    // Each group's features: the bias, then one per warning.
    let features = |bits: usize| -> [f64; P] {
        let mut x = [0.0; P];
        x[0] = 1.0;
        for (i, slot) in x[1..].iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                *slot = 1.0;
            }
        }
        x
    };
    let share = lost_share.clamp(1e-6, 1.0 - 1e-6);
    let mut beta = [0.0f64; P];
    beta[0] = (share / (1.0 - share)).ln();
    for _ in 0..100 {
        let mut grad = [0.0f64; P];
        let mut hess = [[0.0f64; P]; P];
        for (bits, (lost, won)) in groups.iter().enumerate() {
            let n = lost + won;
            if n == 0.0 {
                continue;
            }
            let x = features(bits);
            let z: f64 = x.iter().zip(&beta).map(|(x, b)| x * b).sum();
            let p = sigmoid(z);
            for (j, xj) in x.iter().enumerate() {
                grad[j] += (lost - n * p) * xj;
                for (h, xk) in hess[j].iter_mut().zip(&x) {
                    *h += n * p * (1.0 - p) * xj * xk;
                }
            }
        }
        for j in 1..P {
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
    weights.copy_from_slice(&beta[1..]);
    Fitted {
        bias: beta[0],
        weights,
        deals,
        snapshots: samples.len(),
        won,
        lost,
    }
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting; `None` if singular.
fn solve<const P: usize>(mut a: [[f64; P]; P], mut b: [f64; P]) -> Option<[f64; P]> {
    for col in 0..P {
        let pivot = (col..P).max_by(|i, j| a[*i][col].abs().total_cmp(&a[*j][col].abs()))?;
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
    let mut x = [0.0; P];
    for row in (0..P).rev() {
        let s: f64 = (row + 1..P).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// The ROC AUC of scores against outcomes (`true`: the positive class, lost): the chance that
/// a positive scores above a negative, ties counting half. `None` without both classes.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = v.iter().filter(|(_, p)| *p).count() as f64;
    let negatives = v.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Mann–Whitney U from average ranks.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let rank = (i + j + 1) as f64 / 2.0;
        rank_sum += rank * v[i..j].iter().filter(|(_, p)| *p).count() as f64;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half_and_orders() {
        assert_eq!(auc(&[(0.1, false), (0.9, true)]), Some(1.0));
        assert_eq!(auc(&[(0.9, false), (0.1, true)]), Some(0.0));
        assert_eq!(auc(&[(0.5, false), (0.5, true)]), Some(0.5));
        assert_eq!(auc(&[(0.5, true)]), None);
    }

    #[test]
    fn the_fit_recovers_known_weights() {
        // Warning 0 raises the log-odds by 2, warning 1 by nothing; the base is -1.
        let mut samples = Vec::new();
        for bits in 0u16..4 {
            let z = -1.0 + if bits & 1 != 0 { 2.0 } else { 0.0 };
            let p = sigmoid(z);
            let n = 10_000.0;
            samples.push(Sample {
                bits,
                lost: true,
                weight: n * p,
            });
            samples.push(Sample {
                bits,
                lost: false,
                weight: n * (1.0 - p),
            });
        }
        let f = fit(&samples, 0, 0, 0);
        assert!((f.bias + 1.0).abs() < 0.01, "{f:?}");
        assert!((f.weights[0] - 2.0).abs() < 0.01, "{f:?}");
        assert!(f.weights[1].abs() < 0.01, "{f:?}");
    }
}
