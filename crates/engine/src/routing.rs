//! Routing: which member of a team gets a record. Pure — the store gathers each member's
//! state and load in the transaction that records the decision and hands them here with the
//! team's turn, so every node and every replay choose alike from the same inputs.

use std::fmt::Write;

use domain::{Person, RecordId, Timestamp};
use playbook::{Busy, Route, Strategy};

/// One candidate as the store sees them when the decision commits.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub id: &'a RecordId,
    /// Their state, if the person is known.
    pub person: Option<&'a Person>,
    /// Open deals they own now.
    pub open_deals: u32,
    /// Records routing gave them within the route's `recent` window.
    pub recent: u32,
}

/// The choice and why, as recorded in the effect and the `owner.assigned` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub chosen: Option<RecordId>,
    /// The strategy that chose, or `fallback`.
    pub strategy: &'static str,
    pub why: String,
}

/// Why `m` cannot take the record at `now`, or `None` when they can.
fn passed_over(
    route: &Route,
    m: &Member,
    current: Option<&RecordId>,
    now: Timestamp,
) -> Option<String> {
    if route.reassign && current == Some(m.id) {
        return Some("the current owner".into());
    }
    let Some(person) = m.person else {
        return Some("not a known person".into());
    };
    if let Some(why) = person.unavailable(now) {
        return Some(why);
    }
    match person.capacity {
        Some(c) if m.open_deals >= c => Some(format!(
            "at capacity ({} open deals, capacity {c})",
            m.open_deals
        )),
        _ => None,
    }
}

/// The order of `n` members with weights `w` in a smooth weighted round-robin: each member
/// appears as often as its weight in a cycle of `sum(w)` slots, spread out rather than in runs.
fn weighted_cycle(w: &[u32]) -> Vec<usize> {
    let total: i64 = w.iter().map(|x| i64::from(*x)).sum();
    let mut current = vec![0i64; w.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, x) in current.iter_mut().zip(w) {
            *c += i64::from(*x);
        }
        let best = (0..w.len())
            .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
            .unwrap_or(0);
        current[best] -= total;
        cycle.push(best);
    }
    cycle
}

/// The members in the order the strategy tries them on this `turn` (the team's count of
/// decisions so far).
fn order(route: &Route, members: &[Member], turn: u64) -> Vec<usize> {
    let n = members.len();
    let rotation = |len: usize| (0..len).map(move |k| ((turn as usize) + k) % len);
    match route.strategy {
        Strategy::RoundRobin => rotation(n).collect(),
        Strategy::Weighted => {
            let weights: Vec<u32> = (0..n)
                .map(|i| route.weights.get(i).copied().unwrap_or(1).max(1))
                .collect();
            let cycle = weighted_cycle(&weights);
            let mut seen = vec![false; n];
            let mut out = Vec::with_capacity(n);
            for slot in rotation(cycle.len()) {
                let i = cycle[slot];
                if !seen[i] {
                    seen[i] = true;
                    out.push(i);
                }
            }
            out
        }
        Strategy::LeastBusy => {
            let mut out: Vec<usize> = rotation(n).collect();
            // Stable: among equally busy members the rotation decides, so ties take turns.
            out.sort_by_key(|i| load(route, &members[*i]));
            out
        }
    }
}

fn load(route: &Route, m: &Member) -> u32 {
    match route.busy {
        Busy::OpenDeals => m.open_deals,
        Busy::RecentAssignments => m.recent,
    }
}

fn load_words(route: &Route, n: u32) -> String {
    match route.busy {
        Busy::OpenDeals => format!("{n} open deal{}", if n == 1 { "" } else { "s" }),
        Busy::RecentAssignments => format!(
            "{n} assignment{} in {}",
            if n == 1 { "" } else { "s" },
            route.recent
        ),
    }
}

/// Picks the member of `members` (the team, in its order) who gets the record at `now`:
/// the first the strategy's order reaches who can take work (known, available, not out of
/// office, inside their working hours, under capacity, and not the current owner when
/// reassigning); the route's fallback when nobody can; nobody without one.
pub fn choose(
    route: &Route,
    members: &[Member],
    fallback: Option<&Member>,
    current: Option<&RecordId>,
    turn: u64,
    now: Timestamp,
) -> Routed {
    let mut skipped = Vec::new();
    let mut chosen = None;
    for i in order(route, members, turn) {
        let m = &members[i];
        match passed_over(route, m, current, now) {
            Some(why) => skipped.push(format!("{} ({why})", m.id)),
            None => {
                chosen = Some(i);
                break;
            }
        }
    }
    let passed = if skipped.is_empty() {
        String::new()
    } else {
        format!("; passed over {}", skipped.join(", "))
    };
    let Some(i) = chosen else {
        let nobody = format!("nobody in the team could take it{passed}");
        return match fallback {
            Some(f) => Routed {
                chosen: Some(f.id.clone()),
                strategy: "fallback",
                why: format!("{nobody}; the fallback {}", f.id),
            },
            None => Routed {
                chosen: None,
                strategy: route.strategy.as_str(),
                why: format!("{nobody}, and there is no fallback"),
            },
        };
    };
    let m = &members[i];
    let mut why = format!("{}: {}", route.strategy.as_str().replace('_', " "), m.id);
    match route.strategy {
        Strategy::RoundRobin => {
            let _ = write!(
                why,
                " (turn {} of {})",
                turn % members.len() as u64 + 1,
                members.len()
            );
        }
        Strategy::Weighted => {
            let total: u32 = (0..members.len())
                .map(|k| route.weights.get(k).copied().unwrap_or(1))
                .sum();
            let w = route.weights.get(i).copied().unwrap_or(1);
            let _ = write!(why, " (weight {w} of {total})");
        }
        Strategy::LeastBusy => {
            let others: Vec<String> = members
                .iter()
                .enumerate()
                .filter(|(k, o)| *k != i && passed_over(route, o, current, now).is_none())
                .map(|(_, o)| format!("{} {}", o.id, load(route, o)))
                .collect();
            let _ = write!(why, " ({}", load_words(route, load(route, m)));
            if !others.is_empty() {
                let _ = write!(why, "; the others: {}", others.join(", "));
            }
            why.push(')');
        }
    }
    why.push_str(&passed);
    Routed {
        chosen: Some(m.id.clone()),
        strategy: route.strategy.as_str(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weighted_cycle_gives_each_its_share_spread_out() {
        let cycle = weighted_cycle(&[3, 1, 1]);
        assert_eq!(cycle.len(), 5);
        assert_eq!(cycle.iter().filter(|i| **i == 0).count(), 3);
        // Smooth: the heavy member never takes three slots in a row.
        assert_eq!(cycle, vec![0, 1, 0, 2, 0]);
    }
}
