//! Backtests: what a set of playbooks would have done on a history, before anyone switches it
//! on. The history is replayed through the pure engine in virtual time (`engine::replay`) and
//! every firing is judged against what happened to the deal: how it ended, how long after,
//! and whether a key person still stepped in for a reason the rule `covers`.
//!
//! Pure: events and playbooks in, a report out. No clock, no I/O: the same inputs give a
//! byte-identical report.
//!
//! Definitions:
//! - **A firing** is one rule deciding for one record at one moment (its effects counted once).
//!   Firings count when their moment is in [`Options::from`, `Options::to`). An effect
//!   overruled by another rule's write to the same owner, stage or field at that moment
//!   (`engine::Engine::resolve`) changed nothing on the deal, so it makes no firing; the
//!   rule's other effects at that moment still do. The report's `effects` counts every
//!   effect decided, overruled ones too, as the outbox holds them.
//! - **Deals fired on** end `won`, `lost` or are still `open` at `to`; **the other deals** are
//!   the deals of the history the rule did not fire on, for comparison.
//! - **Lead time**: from a deal's first firing to its close, in days (closed deals only):
//!   median and 90th percentile.
//! - **Pre-empted**: interventions (as the heroics report detects them) whose reason is one the
//!   rule `covers` and that began on a deal the rule had fired on within `within` before —
//!   the firing came first, so the rule would have had its chance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use domain::{DealStatus, Event, MILLIS_PER_DAY, RecordId, RecordKind, Timestamp};
use playbook::PlaybookSet;

#[derive(Debug, Clone)]
pub struct Options {
    pub from: Option<Timestamp>,
    /// The end of the history: events after it are not replayed, timers fire up to it.
    pub to: Timestamp,
    /// How long before an intervention a firing counts as having come first.
    pub within: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub won: u32,
    pub lost: u32,
    pub open: u32,
}

impl Ended {
    fn add(&mut self, status: DealStatus) {
        match status {
            DealStatus::Won => self.won += 1,
            DealStatus::Lost => self.lost += 1,
            DealStatus::Open => self.open += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleRow {
    pub playbook: String,
    pub rule: String,
    pub why: String,
    pub covers: Vec<String>,
    pub shadow: bool,
    pub fired: u32,
    /// Firings per week (the Monday the week starts on, UTC).
    pub per_week: BTreeMap<String, u32>,
    /// Every record it fired on (`deal:D-1`), in order.
    pub records: Vec<String>,
    pub deals: Ended,
    pub other_deals: Ended,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_days_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_days_p90: Option<f64>,
    /// Interventions for a reason it covers that it fired before (within `within`).
    pub preempted: u32,
    /// Interventions for a reason it covers, in all.
    pub covered_interventions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub version: String,
    pub events: u64,
    pub timers: u64,
    pub effects: usize,
    pub rules: Vec<RuleRow>,
}

fn week(at: Timestamp) -> String {
    let day = at.as_millis().div_euclid(MILLIS_PER_DAY);
    // 1970-01-01 was a Thursday: days since the Monday before it.
    let monday = day - (day + 3).rem_euclid(7);
    Timestamp::from_millis(monday * MILLIS_PER_DAY)
        .date_utc()
        .to_string()
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The 90th percentile of sorted values, by nearest rank.
fn p90(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// Backtests `set` on `events` (in occurrence order).
pub fn run(set: Arc<PlaybookSet>, events: &[Event], o: &Options) -> Report {
    run_with(set, events, o, &mut |_| {})
}

/// [`run`], telling `progress` how many events have been replayed, every 10,000 and at the end.
pub fn run_with(
    set: Arc<PlaybookSet>,
    events: &[Event],
    o: &Options,
    progress: &mut dyn FnMut(u64),
) -> Report {
    let engine = engine::Engine::new(Arc::clone(&set));
    // One replay per core, each holding its share of the records (`engine::replay::parallel`).
    let shards = std::thread::available_parallelism().map_or(1, usize::from);
    let (decided, stats) = engine::replay::parallel(
        &engine,
        events,
        Timestamp::from_millis(o.to.as_millis() - 1),
        shards,
        progress,
    );
    progress(stats.events);
    // One firing per rule, record and moment.
    let mut firings: BTreeMap<(&str, &str), BTreeSet<(Timestamp, String)>> = BTreeMap::new();
    for (at, e) in &decided {
        let at = *at;
        if o.from.is_some_and(|f| at < f) || at >= o.to || e.overruled.is_some() {
            continue;
        }
        firings
            .entry((e.playbook.as_str(), e.rule.as_str()))
            .or_default()
            .insert((at, e.record.to_string()));
    }
    let people = heroics::People::from_events(events);
    let settings = heroics::Settings::default();
    let runs: BTreeMap<RecordId, heroics::DealRun> = heroics::by_deal(events)
        .into_iter()
        .map(|(id, evs)| {
            let run = heroics::run_deal(&id, &evs, &people, &settings, o.to);
            (id, run)
        })
        .collect();
    // Each deal's record key as firings name it, built once for every rule.
    let keyed: Vec<(String, &heroics::DealRun)> = runs
        .iter()
        .map(|(id, run)| {
            (
                format!("{}:{}", RecordKind::Deal.as_str(), id.as_str()),
                run,
            )
        })
        .collect();
    let mut rows = Vec::new();
    for p in &set.playbooks {
        for r in &p.rules {
            let fired = firings
                .remove(&(p.name.as_str(), r.id.as_str()))
                .unwrap_or_default();
            let mut first: BTreeMap<&str, Timestamp> = BTreeMap::new();
            let mut per_week: BTreeMap<String, u32> = BTreeMap::new();
            let mut records = Vec::new();
            for (at, record) in &fired {
                *per_week.entry(week(*at)).or_default() += 1;
                if !first.contains_key(record.as_str()) {
                    first.insert(record.as_str(), *at);
                    records.push(record.clone());
                }
            }
            let mut deals = Ended::default();
            let mut other_deals = Ended::default();
            let mut leads = Vec::new();
            let mut preempted = 0;
            let mut covered = 0;
            for (key, run) in &keyed {
                match first.get(key.as_str()) {
                    Some(at) => {
                        deals.add(run.deal.status);
                        if let Some(closed) = run
                            .deal
                            .closed_at
                            .filter(|_| run.deal.status != DealStatus::Open)
                        {
                            leads.push(
                                (closed.as_millis() - at.as_millis()) as f64
                                    / MILLIS_PER_DAY as f64,
                            );
                        }
                    }
                    None => other_deals.add(run.deal.status),
                }
                for i in run
                    .interventions
                    .iter()
                    .filter(|i| r.covers.contains(&i.reason))
                {
                    if o.from.is_some_and(|f| i.first_at < f) || i.first_at >= o.to {
                        continue;
                    }
                    covered += 1;
                    let came_first = fired.iter().any(|(at, rec)| {
                        rec == key
                            && *at <= i.first_at
                            && i.first_at.as_millis() - at.as_millis() <= o.within
                    });
                    preempted += u32::from(came_first);
                }
            }
            leads.sort_by(f64::total_cmp);
            rows.push(RuleRow {
                playbook: p.name.clone(),
                rule: r.id.clone(),
                why: r.why.clone(),
                covers: r.covers.clone(),
                shadow: r.shadow,
                fired: fired.len() as u32,
                per_week,
                records,
                deals,
                other_deals,
                lead_days_median: median(&leads),
                lead_days_p90: p90(&leads),
                preempted,
                covered_interventions: covered,
            });
        }
    }
    Report {
        version: set.version.clone(),
        events: stats.events,
        timers: stats.timers,
        effects: stats.effects,
        rules: rows,
    }
}

/// The report as an aligned text table, a rule a line.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "playbooks {}: {} events replayed, {} timers came due, {} effects\n\n",
        report.version, report.events, report.timers, report.effects
    );
    out.push_str(&format!(
        "{:<36} {:>6} {:>7} {:>13} {:>13} {:>9} {:>10}\n",
        "rule", "fired", "records", "won/lost/open", "others w/l/o", "lead d", "pre-empted"
    ));
    for r in &report.rules {
        let ended = |e: &Ended| format!("{}/{}/{}", e.won, e.lost, e.open);
        let lead = r
            .lead_days_median
            .map_or("—".to_owned(), |d| format!("{d:.1}"));
        let pre = if r.covers.is_empty() {
            "—".to_owned()
        } else {
            format!("{}/{}", r.preempted, r.covered_interventions)
        };
        out.push_str(&format!(
            "{:<36} {:>6} {:>7} {:>13} {:>13} {:>9} {:>10}\n",
            r.rule,
            r.fired,
            r.records.len(),
            ended(&r.deals),
            ended(&r.other_deals),
            lead,
            pre
        ));
    }
    out.push_str("\nrecords: deals and leads fired on; won/lost/open: how the deals among them ended; others: the deals it did not fire on; lead d: median days from the first firing to the close; pre-empted: interventions for a reason it covers that it fired before, of all such.\n");
    out
}

/// One CSV row per rule.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "playbook,rule,fired,records,won,lost,open,others_won,others_lost,others_open,lead_days_median,lead_days_p90,preempted,covered_interventions\n",
    );
    for r in &report.rules {
        let opt = |v: Option<f64>| v.map_or(String::new(), |d| format!("{d:.2}"));
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.playbook,
            r.rule,
            r.fired,
            r.records.len(),
            r.deals.won,
            r.deals.lost,
            r.deals.open,
            r.other_deals.won,
            r.other_deals.lost,
            r.other_deals.open,
            opt(r.lead_days_median),
            opt(r.lead_days_p90),
            r.preempted,
            r.covered_interventions
        ));
    }
    out
}

/// One rule in two playbook versions, on the same history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    pub rule: String,
    /// Firings in the first version (`None`: the rule is not in it) and in the second.
    pub fired_before: Option<u32>,
    pub fired_after: Option<u32>,
    /// Records only the second version fires on, and only the first.
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// What changes between two backtests of the same history: rule by rule (by id, across
/// playbooks), the firings and the records fired on — the check to run on a playbook change
/// before merging it. Rules that fire alike on the same records are left out.
pub fn compare(before: &Report, after: &Report) -> Vec<RuleChange> {
    let by_rule = |r: &Report| -> BTreeMap<String, RuleRow> {
        r.rules
            .iter()
            .map(|row| (row.rule.clone(), row.clone()))
            .collect()
    };
    let (a, b) = (by_rule(before), by_rule(after));
    let ids: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for id in ids {
        let (x, y) = (a.get(id), b.get(id));
        let records = |row: Option<&RuleRow>| -> BTreeSet<String> {
            row.map(|r| r.records.iter().cloned().collect())
                .unwrap_or_default()
        };
        let (rx, ry) = (records(x), records(y));
        let change = RuleChange {
            rule: id.clone(),
            fired_before: x.map(|r| r.fired),
            fired_after: y.map(|r| r.fired),
            added: ry.difference(&rx).cloned().collect(),
            removed: rx.difference(&ry).cloned().collect(),
        };
        if change.fired_before != change.fired_after
            || !change.added.is_empty()
            || !change.removed.is_empty()
        {
            out.push(change);
        }
    }
    out
}

/// The changes as text, a rule a line, the records listed.
pub fn compare_table(changes: &[RuleChange]) -> String {
    if changes.is_empty() {
        return "no rule fires differently\n".into();
    }
    let n = |v: Option<u32>| v.map_or("—".to_owned(), |n| n.to_string());
    let mut out = format!("{:<36} {:>7} {:>7}  records\n", "rule", "before", "after");
    for c in changes {
        let mut records: Vec<String> = c.added.iter().map(|r| format!("+{r}")).collect();
        records.extend(c.removed.iter().map(|r| format!("-{r}")));
        out.push_str(&format!(
            "{:<36} {:>7} {:>7}  {}\n",
            c.rule,
            n(c.fired_before),
            n(c.fired_after),
            records.join(" ")
        ));
    }
    out
}

/// The changes as CSV, a rule a row, records separated by spaces.
pub fn compare_csv(changes: &[RuleChange]) -> String {
    let n = |v: Option<u32>| v.map_or(String::new(), |n| n.to_string());
    let mut out = String::from("rule,fired_before,fired_after,added,removed\n");
    for c in changes {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            c.rule,
            n(c.fired_before),
            n(c.fired_after),
            c.added.join(" "),
            c.removed.join(" ")
        ));
    }
    out
}
