//! Extracting the judgment: recurring patterns in the interventions, proposed as rules.
//!
//! Interventions (not `after-win` or `win-back`) are grouped by reason and by the stage the
//! deal was in. For each group, three triggers are tried, each on what preceded the
//! interventions:
//! - **an objection** of one kind raised within [`Settings::objection_within`] before (the
//!   commonest kind in the group): `when: { event: objection.raised }`;
//! - **quiet** for at least N days, N the group's 10th percentile of days without activity
//!   (whole days, at least [`Settings::quiet_after`]): `when: { quiet_for: Nd }`;
//! - **in the stage** for at least N days, N likewise from days in stage (at least
//!   [`Settings::stuck_after`]): `when: { in_stage_for: … }`.
//!
//! The trigger that would have fired before the most of the group's interventions wins; its
//! **support** is that count. When the supported deals are larger than most deals seen in the
//! stage (their 10th-percentile amount is reached by at most 60% of those deals), the rule
//! also asks for `deal.amount >=` that amount. **Elsewhere** counts the times the rule would
//! have fired with no key person stepping in after (a quiet stretch, stay or objection nobody
//! key followed up): the cost of the rule in noise. A pattern needs
//! [`SuggestOptions::min_support`] interventions to be proposed.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use domain::{MILLIS_PER_DAY, ObjectionKind, RecordId, Stage};

use crate::detect::{DealRun, Intervention, Settings, days, reason_of};
use crate::report::History;

#[derive(Debug, Clone)]
pub struct SuggestOptions {
    /// Fewer interventions than this make no pattern.
    pub min_support: u32,
    /// Only this person's interventions are mined (all key people when absent).
    pub person: Option<RecordId>,
}

impl Default for SuggestOptions {
    fn default() -> Self {
        Self {
            min_support: 3,
            person: None,
        }
    }
}

/// When a suggested rule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    Objection { objection: ObjectionKind },
    QuietFor { days: i64 },
    InStageFor { days: i64 },
}

/// A candidate rule, for a human to review, edit and backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub id: String,
    pub reason: String,
    pub stage: Option<Stage>,
    pub trigger: Trigger,
    /// The smallest deal amount (major units) the rule asks for, if the pattern is about size.
    pub min_amount: Option<f64>,
    /// Past interventions the rule would have fired before, of the group's.
    pub support: u32,
    pub of: u32,
    /// Who stepped in on the supported interventions, and how often.
    pub people: BTreeMap<RecordId, u32>,
    /// Times it would have fired with no key person stepping in after.
    pub elsewhere: u32,
    pub why: String,
    /// The rule, as playbook YAML (a list item under `rules:`).
    pub yaml: String,
}

fn percentile(values: &mut [i64], p: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let i = ((values.len() - 1) as f64 * p).floor() as usize;
    Some(values[i])
}

/// `value` rounded down to two significant digits: 12,345 → 12,000.
fn round_down(value: f64) -> f64 {
    if value < 100.0 {
        return value.floor();
    }
    let scale = 10f64.powi(value.log10().floor() as i32 - 1);
    (value / scale).floor() * scale
}

fn whole_days(ms: i64) -> i64 {
    ms / MILLIS_PER_DAY
}

fn kind_name(kind: ObjectionKind) -> String {
    serde_json::to_string(&kind)
        .map(|s| s.trim_matches('"').to_owned())
        .unwrap_or_default()
}

fn amount(run: &DealRun) -> Option<f64> {
    run.deal.amount.map(|m| m.major())
}

/// Whether a trigger would have fired before an intervention.
fn fires_before(trigger: &Trigger, i: &Intervention, s: &Settings) -> bool {
    match trigger {
        Trigger::Objection { objection } => {
            i.objection == Some(*objection)
                && i.objection_ms.is_some_and(|ms| ms <= s.objection_within)
        }
        Trigger::QuietFor { days } => i.quiet_ms.is_some_and(|ms| ms >= days * MILLIS_PER_DAY),
        Trigger::InStageFor { days } => i.in_stage_ms.is_some_and(|ms| ms >= days * MILLIS_PER_DAY),
    }
}

/// The times `trigger` would have fired in `stage` on deals of at least `min_amount` with no
/// key person stepping in after.
fn elsewhere(
    history: &History,
    trigger: &Trigger,
    stage: Option<&Stage>,
    min_amount: Option<f64>,
) -> u32 {
    let mut n = 0;
    for run in &history.deals {
        if min_amount.is_some_and(|min| amount(run).is_none_or(|a| a < min)) {
            continue;
        }
        n += match trigger {
            Trigger::Objection { objection } => run
                .objections
                .iter()
                .filter(|o| {
                    o.kind == *objection && o.stage.as_ref() == stage && !o.followed_by_intervention
                })
                .count(),
            Trigger::QuietFor { days } => run
                .gaps
                .iter()
                .filter(|g| {
                    g.stage.as_ref() == stage
                        && g.ms >= days * MILLIS_PER_DAY
                        && !g.ended_by_intervention
                })
                .count(),
            Trigger::InStageFor { days } => run
                .stays
                .iter()
                .filter(|s| {
                    Some(&s.stage) == stage
                        && s.ms >= days * MILLIS_PER_DAY
                        && s.interventions_at
                            .iter()
                            .all(|at| *at < days * MILLIS_PER_DAY)
                })
                .count(),
        } as u32;
    }
    n
}

/// The candidate triggers for a group, best first.
fn triggers(group: &[&Intervention], s: &Settings) -> Vec<Trigger> {
    let mut kinds: BTreeMap<ObjectionKind, u32> = BTreeMap::new();
    for i in group {
        if let (Some(kind), Some(ms)) = (i.objection, i.objection_ms)
            && ms <= s.objection_within
        {
            *kinds.entry(kind).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    if let Some((kind, _)) = kinds
        .iter()
        .max_by_key(|(k, n)| (**n, std::cmp::Reverse(**k)))
    {
        out.push(Trigger::Objection { objection: *kind });
    }
    let mut quiet: Vec<i64> = group
        .iter()
        .filter_map(|i| i.quiet_ms)
        .filter(|ms| *ms >= s.quiet_after)
        .collect();
    if let Some(p) = percentile(&mut quiet, 0.1) {
        out.push(Trigger::QuietFor {
            days: whole_days(p).max(whole_days(s.quiet_after)).max(1),
        });
    }
    let mut stay: Vec<i64> = group
        .iter()
        .filter_map(|i| i.in_stage_ms)
        .filter(|ms| *ms >= s.stuck_after)
        .collect();
    if let Some(p) = percentile(&mut stay, 0.1) {
        out.push(Trigger::InStageFor {
            days: whole_days(p).max(whole_days(s.stuck_after)).max(1),
        });
    }
    out
}

/// Recurring patterns in `history`'s interventions, as candidate rules, most support first.
pub fn suggest(history: &History, options: &SuggestOptions) -> Vec<Suggestion> {
    let s = &history.settings;
    let runs: BTreeMap<&RecordId, &DealRun> =
        history.deals.iter().map(|d| (&d.deal.id, d)).collect();
    let mut groups: BTreeMap<(&str, Option<&Stage>), Vec<&Intervention>> = BTreeMap::new();
    for i in history.interventions() {
        if matches!(i.reason.as_str(), "after-win" | "win-back")
            || options.person.as_ref().is_some_and(|p| p != &i.person)
        {
            continue;
        }
        groups
            .entry((i.reason.as_str(), i.stage.as_ref()))
            .or_default()
            .push(i);
    }
    let mut out = Vec::new();
    for ((reason, stage), group) in groups {
        // The trigger that would have fired before the most interventions.
        let best = triggers(&group, s)
            .into_iter()
            .map(|t| {
                let covered: Vec<&Intervention> = group
                    .iter()
                    .copied()
                    .filter(|i| fires_before(&t, i, s))
                    .collect();
                (t, covered)
            })
            .max_by_key(|(_, covered)| covered.len());
        let Some((trigger, mut covered)) = best else {
            continue;
        };
        // Is it about size? The supported deals' 10th-percentile amount, if most deals seen in
        // the stage are smaller.
        let mut amounts: Vec<i64> = covered
            .iter()
            .filter_map(|i| runs.get(&i.deal).and_then(|r| amount(r)))
            .map(|a| a as i64)
            .collect();
        let min_amount = percentile(&mut amounts, 0.1)
            .map(|a| round_down(a as f64))
            .filter(|a| *a > 0.0)
            .filter(|a| {
                let in_stage: Vec<f64> = history
                    .deals
                    .iter()
                    .filter(|r| r.stays.iter().any(|st| Some(&st.stage) == stage))
                    .filter_map(amount)
                    .collect();
                let large = in_stage.iter().filter(|x| **x >= *a).count();
                !in_stage.is_empty() && (large as f64) <= 0.6 * in_stage.len() as f64
            });
        if let Some(min) = min_amount {
            covered.retain(|i| {
                runs.get(&i.deal)
                    .and_then(|r| amount(r))
                    .is_some_and(|a| a >= min)
            });
        }
        if (covered.len() as u32) < options.min_support {
            continue;
        }
        let mut people: BTreeMap<RecordId, u32> = BTreeMap::new();
        for i in &covered {
            *people.entry(i.person.clone()).or_default() += 1;
        }
        let mut suggestion = Suggestion {
            id: String::new(),
            reason: reason.to_owned(),
            stage: stage.cloned(),
            elsewhere: elsewhere(history, &trigger, stage, min_amount),
            trigger,
            min_amount,
            support: covered.len() as u32,
            of: group.len() as u32,
            people,
            why: String::new(),
            yaml: String::new(),
        };
        suggestion.why = why(history, &suggestion, &covered);
        out.push(suggestion);
    }
    out.sort_by(|a, b| b.support.cmp(&a.support).then(a.reason.cmp(&b.reason)));
    let mut taken = std::collections::BTreeSet::new();
    for s in &mut out {
        let base = match &s.stage {
            Some(stage) => format!("{}-in-{stage}", s.reason),
            None => s.reason.clone(),
        };
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let mut id = base.clone();
        let mut n = 2;
        while !taken.insert(id.clone()) {
            id = format!("{base}-{n}");
            n += 1;
        }
        s.id = id;
        s.yaml = rule_yaml(s);
    }
    out
}

/// The sentence of judgment, drafted from the pattern.
fn why(history: &History, s: &Suggestion, covered: &[&Intervention]) -> String {
    let who = match s.people.iter().max_by_key(|(_, n)| **n) {
        Some((id, n)) if *n * 2 > s.support => history
            .people
            .get(id)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| id.as_str().to_owned()),
        _ => "Key people".to_owned(),
    };
    let deals = covered
        .iter()
        .map(|i| &i.deal)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let place = s
        .stage
        .as_ref()
        .map(|st| format!(" in {st}"))
        .unwrap_or_default();
    let median = |f: fn(&Intervention) -> Option<i64>| {
        let mut v: Vec<i64> = covered.iter().filter_map(|i| f(i)).collect();
        percentile(&mut v, 0.5).map(days).unwrap_or_default()
    };
    let size = s
        .min_amount
        .map(|a| format!(" worth {a:.0} or more"))
        .unwrap_or_default();
    let (pattern, answer) = match &s.trigger {
        Trigger::Objection { objection } => (
            format!(
                "after a {} objection (median {} before)",
                kind_name(*objection),
                median(|i| i.objection_ms)
            ),
            "answer it the day it is raised, before they have to",
        ),
        Trigger::QuietFor { days: d } => (
            format!(
                "after {d} or more days without activity (median {})",
                median(|i| i.quiet_ms)
            ),
            "the owner re-engages first",
        ),
        Trigger::InStageFor { days: d } => (
            format!(
                "after {d} or more days in the stage (median {})",
                median(|i| i.in_stage_ms)
            ),
            "the owner hears first and unblocks it",
        ),
    };
    format!(
        "{who} stepped in ({}) on {deals} deals{size}{place} {pattern}; {answer}.",
        s.reason
    )
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The rule as a YAML list item, with its support as a comment.
fn rule_yaml(s: &Suggestion) -> String {
    let mut y = String::new();
    let people: Vec<String> = s.people.iter().map(|(p, n)| format!("{p} {n}")).collect();
    let _ = writeln!(
        y,
        "  # support: {} of {} {} interventions{} ({}); would also have fired {} times when no key person followed",
        s.support,
        s.of,
        s.reason,
        s.stage
            .as_ref()
            .map(|st| format!(" in {st}"))
            .unwrap_or_default(),
        people.join(", "),
        s.elsewhere
    );
    let _ = writeln!(y, "  - id: {}", s.id);
    let _ = writeln!(y, "    why: {}", quoted(&s.why));
    let _ = writeln!(y, "    covers: [{}]", quoted(&s.reason));
    let mut conditions = Vec::new();
    let title;
    match &s.trigger {
        Trigger::Objection { objection } => {
            let _ = writeln!(y, "    when: {{ event: objection.raised }}");
            conditions.push(format!("event.kind == {}", quoted(&kind_name(*objection))));
            if let Some(stage) = &s.stage {
                conditions.push(format!("deal.stage == {}", quoted(stage.as_str())));
            }
            title = format!(
                "Answer the {} objection on {{{{ deal.name }}}}",
                reason_of(*objection)
            );
        }
        Trigger::QuietFor { days } => {
            let _ = writeln!(y, "    when: {{ quiet_for: {days}d }}");
            if let Some(stage) = &s.stage {
                conditions.push(format!("deal.stage == {}", quoted(stage.as_str())));
            }
            title = "{{ deal.name }} has been quiet for {{ deal.days_since_activity }} days".into();
        }
        Trigger::InStageFor { days } => match &s.stage {
            Some(stage) => {
                let _ = writeln!(
                    y,
                    "    when: {{ in_stage_for: {{ stage: {stage}, longer_than: {days}d }} }}"
                );
                title = format!(
                    "{{{{ deal.name }}}} has been in {stage} for {{{{ deal.days_in_stage }}}} days"
                );
            }
            None => {
                let _ = writeln!(y, "    when: {{ quiet_for: {days}d }}");
                title = "{{ deal.name }} needs attention".into();
            }
        },
    }
    if let Some(min) = s.min_amount {
        conditions.push(format!("deal.amount >= {min:.1}"));
    }
    if !conditions.is_empty() {
        let _ = writeln!(y, "    if: {}", conditions.join(" && "));
    }
    if !matches!(s.trigger, Trigger::Objection { .. }) {
        let _ = writeln!(y, "    reentry: once_per_stage");
    }
    let _ = writeln!(y, "    then:");
    let _ = writeln!(
        y,
        "      - alert: {{ to: deal.owner, text: {} }}",
        quoted(&title)
    );
    y
}

/// A whole playbook file holding `suggestions`, for `pipewright check` and a human's review.
pub fn playbook_yaml(name: &str, owner: &str, suggestions: &[Suggestion]) -> String {
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Suggested by `pipewright suggest` from past interventions: review, edit, backtest, then\n# move the rules you keep into a playbook of your own."
    );
    let _ = writeln!(y, "playbook: {name}");
    let _ = writeln!(y, "owner: {owner}");
    let _ = writeln!(
        y,
        "description: Rules drafted from the patterns in which key people stepped in."
    );
    let _ = writeln!(
        y,
        "# In shadow the rules record what they would do and deliver nothing; remove the line to\n# let them act.\nshadow: true"
    );
    let stages: std::collections::BTreeSet<&str> = suggestions
        .iter()
        .filter_map(|s| s.stage.as_ref().map(|st| st.as_str()))
        .collect();
    if !stages.is_empty() {
        let list: Vec<&str> = stages.into_iter().collect();
        let _ = writeln!(y, "stages: [{}]", list.join(", "));
    }
    if suggestions.is_empty() {
        let _ = writeln!(y, "rules: []");
    } else {
        let _ = writeln!(y, "\nrules:");
        for s in suggestions {
            y.push_str(&s.yaml);
            y.push('\n');
        }
    }
    y
}
