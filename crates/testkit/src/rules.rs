//! A large generated rule set, as a team that has encoded years of judgment might run: every
//! kind of trigger (quiet stretches, time in a stage, events, routing with a first-touch SLA)
//! and every kind of action the engine decides without a receiver (alerts, tasks,
//! escalations, owner changes), ordered where they conflict. What reload tests and benchmarks
//! run `n` rules of.

use std::fmt::Write as _;

/// Rule `rN` routes new deals (with a first-touch SLA) when N % 200 is this.
pub const ROUTED: usize = 5;

/// The stages the generated rules read, in pipeline order.
pub const STAGES: [&str; 5] = ["discovery", "demo", "proposal", "negotiation", "legal"];

/// A playbook of `n` rules, one in `timed_every` on a time trigger (quiet stretches, time in a
/// stage, escalations) and the others on events (objections, notes, and — with `routing`, one
/// in 200, `rN` for N % 200 = [`ROUTED`] unless timed — new deals routed with a first-touch
/// SLA); `why_suffix` is written into every rule's `why`, so that changing it
/// changes the set's version and nothing the rules decide.
pub fn generated(n: usize, timed_every: usize, routing: bool, why_suffix: &str) -> String {
    let mut out = String::new();
    let stages = STAGES.join(", ");
    let _ = write!(
        out,
        "playbook: generated\nowner: revops@acme.example\nstages: [{stages}]\nrules:\n"
    );
    for i in 0..n {
        let stage = STAGES[i % STAGES.len()];
        let days = i % 20 + 1;
        let _ = writeln!(out, "  - id: r{i}");
        let _ = writeln!(out, "    why: Generated rule {i}{why_suffix}.");
        // Routing is rare in a real set: one rule in 200 routes new deals.
        let kind = if i % timed_every.max(1) == 0 {
            [0, 1, 3][(i / timed_every.max(1)) % 3]
        } else if routing && i % 200 == ROUTED {
            5
        } else {
            [2, 4][(i / timed_every.max(1)) % 2]
        };
        match kind {
            0 => {
                let _ = write!(
                    out,
                    "    when: {{ quiet_for: {days}d }}\n    if: deal.stage == \"{stage}\"\n    then:\n      - alert: {{ to: deal.owner, text: \"quiet {i}\" }}\n"
                );
            }
            1 => {
                let _ = write!(
                    out,
                    "    when: {{ in_stage_for: {{ stage: {stage}, longer_than: {days}d }} }}\n    reentry: once_per_stage\n    then:\n      - task: {{ assignee: deal.owner, title: \"Move it on ({i})\" }}\n"
                );
            }
            2 => {
                let kind = ["pricing", "implementation", "legal", "security"][i % 4];
                let _ = write!(
                    out,
                    "    when: {{ event: objection.raised }}\n    if: event.kind == \"{kind}\"\n    then:\n      - alert: {{ to: deal.owner, text: \"{kind} objection ({i})\" }}\n"
                );
            }
            3 => {
                // No re-entry: each quiet stretch is an instance of its own.
                let _ = write!(
                    out,
                    "    when: {{ quiet_for: {days}d }}\n    if: deal.amount >= {}\n    then:\n      - escalate: {{ to: role:manager, reason: went-quiet }}\n",
                    (i % 7) * 10_000
                );
            }
            4 => {
                let _ = write!(
                    out,
                    "    when: {{ event: note.added }}\n    if: deal.stage == \"{stage}\"\n    then:\n      - task: {{ assignee: deal.owner, title: \"Read the note ({i})\", due: 1d }}\n"
                );
            }
            _ => {
                // Routing with a first-touch SLA: the built-in first-touch rules come with it.
                // Several route a new deal of one stage, so each has its own priority: the
                // highest routes it, the others are overruled (issue 23).
                let _ = write!(
                    out,
                    "    when: {{ event: deal.created }}\n    if: deal.stage == \"{stage}\"\n    priority: {i}\n    then:\n      - assign_owner: {{ team: [ana@acme.example, ben@acme.example], first_touch: {{ within: {days}h, escalate: role:manager }} }}\n"
                );
            }
        }
    }
    out
}
