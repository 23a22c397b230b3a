//! The heroics report: who steps in, where, why, how often, whether it is getting better, and
//! which interventions the playbooks already cover. The definitions are in the crate's
//! documentation and in `docs/heroics.md`; every number here is recomputable from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Serialize, Serializer};

use domain::{Currency, DealStatus, Event, MILLIS_PER_DAY, Money, RecordId, Timestamp};

use crate::detect::{DealRun, Intervention, People, Settings, run_deal};

/// Every deal's history read once: the material of the report and of suggestions.
#[derive(Debug)]
pub struct History {
    pub people: People,
    pub settings: Settings,
    /// The end of what is read: events at or after it are not.
    pub until: Timestamp,
    pub deals: Vec<DealRun>,
}

impl History {
    pub fn new(people: People, settings: Settings, until: Timestamp) -> Self {
        Self {
            people,
            settings,
            until,
            deals: Vec::new(),
        }
    }

    /// Every deal in `events`, the people read from the same events.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event> + Clone,
        settings: Settings,
        until: Timestamp,
    ) -> Self {
        let mut history = Self::new(People::from_events(events.clone()), settings, until);
        for (id, events) in crate::by_deal(events) {
            history.add_deal(&id, &events);
        }
        history
    }

    /// Reads one deal's events, in occurrence order.
    pub fn add_deal(&mut self, id: &RecordId, events: &[Event]) {
        let run = run_deal(id, events, &self.people, &self.settings, self.until);
        self.deals.push(run);
    }

    pub fn interventions(&self) -> impl Iterator<Item = &Intervention> {
        self.deals.iter().flat_map(|d| &d.interventions)
    }
}

/// What the report covers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Deals closed and interventions begun in `[from, to)` are counted; `to` is also the
    /// moment ages and waiting are measured at.
    pub from: Option<Timestamp>,
    pub to: Timestamp,
    /// Only this key person's interventions count (all key people when absent).
    pub person: Option<RecordId>,
    /// Compare before and after this moment (a playbook's go-live).
    pub split_at: Option<Timestamp>,
    /// How long after a rule fired an intervention for a reason it covers counts as a human
    /// still stepping in; a firing with none in that time pre-empted it.
    pub follow_within: i64,
}

impl Options {
    pub fn new(to: Timestamp) -> Self {
        Self {
            from: None,
            to,
            person: None,
            split_at: None,
            follow_within: 14 * MILLIS_PER_DAY,
        }
    }

    fn in_period(&self, at: Timestamp) -> bool {
        self.from.is_none_or(|f| at >= f) && at < self.to
    }
}

/// A rule meant to take interventions off key people: the reasons its `covers:` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covering {
    pub playbook: String,
    pub rule: String,
    pub covers: Vec<String>,
    pub shadow: bool,
}

/// A rule firing on a deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub playbook: String,
    pub rule: String,
    pub deal: RecordId,
    pub at: Timestamp,
}

/// Something asked of a person on a deal: an escalation to them, a task assigned to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub deal: RecordId,
    pub person: RecordId,
    pub at: Timestamp,
    /// What was asked, in words (`escalation: legal-stall`, `task: Call the CFO`).
    pub what: String,
}

/// What the playbooks did, beside the events: the report's coverage and waiting sections.
#[derive(Debug, Clone, Default)]
pub struct Automation {
    pub rules: Vec<Covering>,
    pub firings: Vec<Firing>,
    pub requests: Vec<Request>,
}

/// Sums of money, one per currency (amounts in different currencies are never added).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revenue(BTreeMap<Currency, i64>);

impl Revenue {
    fn add(&mut self, m: Option<Money>) {
        if let Some(m) = m {
            *self.0.entry(m.currency).or_default() += m.minor;
        }
    }

    pub fn amounts(&self) -> impl Iterator<Item = Money> + '_ {
        self.0.iter().map(|(c, minor)| Money {
            minor: *minor,
            currency: *c,
        })
    }
}

impl Serialize for Revenue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.amounts())
    }
}

/// Closed deals of one outcome and how many of them key people stepped in on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub deals: u32,
    /// Deals with at least one intervention begun before they closed.
    pub with_key_person: u32,
    /// `with_key_person / deals`; absent when there are no deals.
    pub share: Option<f64>,
    /// The same count for each key person.
    pub by_person: BTreeMap<RecordId, u32>,
    pub revenue: Revenue,
}

/// The deals that closed in a stretch of time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Closed {
    pub won: Tally,
    pub lost: Tally,
    /// Closed deals on which someone other than their owner acted before they closed.
    pub exceptions: u32,
    /// `exceptions / (won + lost)`; absent when nothing closed.
    pub exception_rate: Option<f64>,
}

/// A stretch of time at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub from: Option<Timestamp>,
    pub to: Timestamp,
    pub closed: Closed,
    /// Interventions begun in the stretch, and by reason.
    pub interventions: u32,
    pub by_reason: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Month {
    /// `YYYY-MM`, in UTC.
    pub month: String,
    #[serde(flatten)]
    pub closed: Closed,
    pub interventions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonRow {
    pub person: RecordId,
    pub name: Option<String>,
    pub interventions: u32,
    pub deals: u32,
    /// Closed-won and closed-lost deals of the period they stepped in on before the close, and
    /// the share of all such deals.
    pub won_deals: u32,
    pub won_share: Option<f64>,
    pub lost_deals: u32,
    pub lost_share: Option<f64>,
    pub by_reason: BTreeMap<String, u32>,
}

/// Interventions grouped by a reason or a stage, and the money on the deals behind them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    pub name: String,
    pub interventions: u32,
    pub deals: u32,
    /// The deals' amounts (each deal once), and of those the deals won.
    pub pipeline: Revenue,
    pub won: Revenue,
}

/// An open deal waiting on a key person: something asked of them they have not acted on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiting {
    pub deal: RecordId,
    pub name: Option<String>,
    pub person: RecordId,
    pub what: String,
    pub since: Timestamp,
    pub age_days: i64,
    pub amount: Option<Money>,
    pub stage: Option<String>,
    pub owner: Option<RecordId>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleCoverage {
    pub playbook: String,
    pub rule: String,
    pub shadow: bool,
    /// Firings in the period, and on how many deals.
    pub fired: u32,
    pub deals: u32,
    /// Firings a key person still stepped in after, for this reason, within the follow window.
    pub stepped_in_after: u32,
    /// Firings no such intervention followed, the window having passed: the rule was enough.
    pub pre_empted: u32,
    /// Firings whose window has not passed yet.
    pub pending: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub reason: String,
    pub interventions: u32,
    /// Interventions with a covering rule fired on the deal within the follow window before.
    pub after_rule: u32,
    /// Interventions no covering rule fired before: what the playbooks missed.
    pub uncovered: u32,
    pub rules: Vec<RuleCoverage>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub at: Timestamp,
    pub before: Summary,
    pub after: Summary,
}

/// The heroics report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub person: Option<RecordId>,
    pub key_people: Vec<RecordId>,
    pub months: Vec<Month>,
    pub people: Vec<PersonRow>,
    pub reasons: Vec<Slice>,
    pub stages: Vec<Slice>,
    pub waiting: Vec<Waiting>,
    pub coverage: Vec<Coverage>,
    pub comparison: Option<Comparison>,
    pub interventions: Vec<Intervention>,
}

/// A deal closed in the period: its outcome, when, and who stepped in before.
struct ClosedDeal<'a> {
    run: &'a DealRun,
    won: bool,
    at: Timestamp,
    people: BTreeSet<&'a RecordId>,
    helped: bool,
}

fn share(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| f64::from(part) / f64::from(whole))
}

fn month_of(at: Timestamp) -> String {
    let d = at.date_utc();
    format!("{:04}-{:02}", d.year(), d.month())
}

/// The months from `first` to `last`, both `YYYY-MM`, every one between included.
fn months_between(first: &str, last: &str) -> Vec<String> {
    let parse = |m: &str| -> Option<(i32, i32)> {
        let (y, m) = m.split_once('-')?;
        Some((y.parse().ok()?, m.parse().ok()?))
    };
    let (Some((mut y, mut m)), Some(end)) = (parse(first), parse(last)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while (y, m) <= end {
        out.push(format!("{y:04}-{m:02}"));
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    out
}

fn tally<'a>(deals: impl Iterator<Item = &'a ClosedDeal<'a>>) -> Tally {
    let mut t = Tally::default();
    for d in deals {
        t.deals += 1;
        t.revenue.add(d.run.deal.amount);
        if !d.people.is_empty() {
            t.with_key_person += 1;
        }
        for p in &d.people {
            *t.by_person.entry((*p).clone()).or_default() += 1;
        }
    }
    t.share = share(t.with_key_person, t.deals);
    t
}

fn closed<'a>(deals: impl Iterator<Item = &'a ClosedDeal<'a>> + Clone) -> Closed {
    let won = tally(deals.clone().filter(|d| d.won));
    let lost = tally(deals.clone().filter(|d| !d.won));
    let exceptions = deals.filter(|d| d.helped).count() as u32;
    Closed {
        exception_rate: share(exceptions, won.deals + lost.deals),
        won,
        lost,
        exceptions,
    }
}

fn summary(
    from: Option<Timestamp>,
    to: Timestamp,
    closed_deals: &[ClosedDeal<'_>],
    interventions: &[&Intervention],
) -> Summary {
    let inside = |at: Timestamp| from.is_none_or(|f| at >= f) && at < to;
    let mut by_reason = BTreeMap::new();
    let mut count = 0;
    for i in interventions.iter().filter(|i| inside(i.first_at)) {
        count += 1;
        *by_reason.entry(i.reason.clone()).or_default() += 1;
    }
    Summary {
        from,
        to,
        closed: closed(closed_deals.iter().filter(|d| inside(d.at))),
        interventions: count,
        by_reason,
    }
}

/// Groups interventions by a name (reason or stage), with the money on their deals.
fn slices<'a>(
    interventions: &[&'a Intervention],
    deals: &HashMap<&RecordId, &'a DealRun>,
    name: impl Fn(&Intervention) -> String,
) -> Vec<Slice> {
    let mut groups: BTreeMap<String, (u32, BTreeSet<&RecordId>)> = BTreeMap::new();
    for i in interventions {
        let g = groups.entry(name(i)).or_default();
        g.0 += 1;
        g.1.insert(&i.deal);
    }
    let mut out: Vec<Slice> = groups
        .into_iter()
        .map(|(name, (count, ids))| {
            let mut pipeline = Revenue::default();
            let mut won = Revenue::default();
            for id in &ids {
                if let Some(run) = deals.get(id) {
                    pipeline.add(run.deal.amount);
                    if run.deal.status == DealStatus::Won {
                        won.add(run.deal.amount);
                    }
                }
            }
            Slice {
                name,
                interventions: count,
                deals: ids.len() as u32,
                pipeline,
                won,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.interventions
            .cmp(&a.interventions)
            .then(a.name.cmp(&b.name))
    });
    out
}

/// The report on `history` for `options`, with what the playbooks did.
pub fn report(history: &History, options: &Options, automation: &Automation) -> Report {
    let counts = |i: &&Intervention| options.person.as_ref().is_none_or(|p| &i.person == p);
    let deals: HashMap<&RecordId, &DealRun> =
        history.deals.iter().map(|d| (&d.deal.id, d)).collect();
    // Every intervention that counts (any date), and those begun in the period.
    let all: Vec<&Intervention> = history.interventions().filter(counts).collect();
    let mut in_period: Vec<&Intervention> = all
        .iter()
        .copied()
        .filter(|i| options.in_period(i.first_at))
        .collect();
    in_period
        .sort_by(|a, b| (a.first_at, &a.deal, &a.person).cmp(&(b.first_at, &b.deal, &b.person)));

    // Deals closed in the period, with who stepped in before they closed.
    let closed_deals: Vec<ClosedDeal> = history
        .deals
        .iter()
        .filter_map(|run| {
            let at = run.deal.closed_at?;
            let won = match run.deal.status {
                DealStatus::Won => true,
                DealStatus::Lost => false,
                DealStatus::Open => return None,
            };
            let people = run
                .interventions
                .iter()
                .filter(counts)
                .filter(|i| i.first_at <= at)
                .map(|i| &i.person)
                .collect();
            Some(ClosedDeal {
                run,
                won,
                at,
                people,
                helped: run.first_helped_at.is_some_and(|h| h <= at),
            })
        })
        .filter(|d| options.in_period(d.at))
        .collect();

    let summary_all = summary(options.from, options.to, &closed_deals, &all);
    let months = {
        let mut by_month: BTreeMap<String, Vec<&ClosedDeal>> = BTreeMap::new();
        for d in &closed_deals {
            by_month.entry(month_of(d.at)).or_default().push(d);
        }
        let mut interventions: BTreeMap<String, u32> = BTreeMap::new();
        for i in &in_period {
            *interventions.entry(month_of(i.first_at)).or_default() += 1;
        }
        let first = by_month.keys().chain(interventions.keys()).min().cloned();
        let last = by_month.keys().chain(interventions.keys()).max().cloned();
        match (first, last) {
            (Some(first), Some(last)) => months_between(&first, &last)
                .into_iter()
                .map(|m| Month {
                    closed: closed(by_month.get(&m).into_iter().flatten().copied()),
                    interventions: interventions.get(&m).copied().unwrap_or(0),
                    month: m,
                })
                .collect(),
            _ => Vec::new(),
        }
    };

    let key_people: Vec<RecordId> = history.people.key_people().map(|p| p.id.clone()).collect();
    let people = {
        let mut ids: BTreeSet<&RecordId> = in_period.iter().map(|i| &i.person).collect();
        if options.person.is_none() {
            ids.extend(key_people.iter());
        } else {
            ids.extend(options.person.iter());
        }
        let won_total = closed_deals.iter().filter(|d| d.won).count() as u32;
        let lost_total = closed_deals.len() as u32 - won_total;
        ids.into_iter()
            .map(|id| {
                let mine: Vec<&&Intervention> =
                    in_period.iter().filter(|i| &i.person == id).collect();
                let mut by_reason = BTreeMap::new();
                for i in &mine {
                    *by_reason.entry(i.reason.clone()).or_default() += 1;
                }
                let on = |won: bool| {
                    closed_deals
                        .iter()
                        .filter(|d| d.won == won && d.people.contains(id))
                        .count() as u32
                };
                let (won_deals, lost_deals) = (on(true), on(false));
                PersonRow {
                    person: id.clone(),
                    name: history.people.get(id).and_then(|p| p.name.clone()),
                    interventions: mine.len() as u32,
                    deals: mine.iter().map(|i| &i.deal).collect::<BTreeSet<_>>().len() as u32,
                    won_deals,
                    won_share: share(won_deals, won_total),
                    lost_deals,
                    lost_share: share(lost_deals, lost_total),
                    by_reason,
                }
            })
            .collect()
    };

    let reasons = slices(&in_period, &deals, |i| i.reason.clone());
    let stages = slices(&in_period, &deals, |i| {
        i.stage
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |s| s.as_str().to_owned())
    });

    Report {
        summary: summary_all,
        person: options.person.clone(),
        key_people,
        months,
        people,
        reasons,
        stages,
        waiting: waiting(history, options, automation, &deals),
        coverage: coverage(options, automation, &all, &in_period),
        comparison: options.split_at.map(|at| Comparison {
            at,
            before: summary(options.from, at, &closed_deals, &all),
            after: summary(Some(at), options.to, &closed_deals, &all),
        }),
        interventions: in_period.into_iter().cloned().collect(),
    }
}

/// Open deals with a request to a key person they have not acted on since (the oldest such
/// request per deal and person), largest amounts first.
fn waiting(
    history: &History,
    options: &Options,
    automation: &Automation,
    deals: &HashMap<&RecordId, &DealRun>,
) -> Vec<Waiting> {
    let mut found: BTreeMap<(&RecordId, &RecordId), &Request> = BTreeMap::new();
    for r in &automation.requests {
        let Some(run) = deals.get(&r.deal) else {
            continue;
        };
        let counted = options.person.as_ref().is_none_or(|p| p == &r.person);
        let answered = run.last_touch.get(&r.person).is_some_and(|t| *t >= r.at);
        if counted
            && history.people.is_key(&r.person)
            && run.deal.status == DealStatus::Open
            && r.at < options.to
            && !answered
        {
            found
                .entry((&r.deal, &r.person))
                .and_modify(|old| {
                    if r.at < old.at {
                        *old = r;
                    }
                })
                .or_insert(r);
        }
    }
    let mut out: Vec<Waiting> = found
        .into_values()
        .map(|r| {
            let deal = &deals[&r.deal].deal;
            Waiting {
                deal: r.deal.clone(),
                name: deal.name.clone(),
                person: r.person.clone(),
                what: r.what.clone(),
                since: r.at,
                age_days: r.at.days_until(options.to),
                amount: deal.amount,
                stage: deal.stage.as_ref().map(|s| s.as_str().to_owned()),
                owner: deal.owner.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let minor = |w: &Waiting| w.amount.map_or(0, |m| m.minor);
        minor(b)
            .cmp(&minor(a))
            .then(a.since.cmp(&b.since))
            .then(a.deal.cmp(&b.deal))
    });
    out
}

/// For each reason: its interventions, the rules that cover it, and how each did.
fn coverage(
    options: &Options,
    automation: &Automation,
    all: &[&Intervention],
    in_period: &[&Intervention],
) -> Vec<Coverage> {
    let window = options.follow_within;
    let mut reasons: BTreeSet<&str> = in_period.iter().map(|i| i.reason.as_str()).collect();
    for rule in &automation.rules {
        reasons.extend(rule.covers.iter().map(String::as_str));
    }
    let mut by_rule: HashMap<(&str, &str), Vec<&Firing>> = HashMap::new();
    let mut by_deal: HashMap<&RecordId, Vec<&Firing>> = HashMap::new();
    for f in &automation.firings {
        by_rule.entry((&f.playbook, &f.rule)).or_default().push(f);
        by_deal.entry(&f.deal).or_default().push(f);
    }
    let mut on_deal: HashMap<&RecordId, Vec<&Intervention>> = HashMap::new();
    for i in all {
        on_deal.entry(&i.deal).or_default().push(i);
    }
    let firings_of = |rule: &Covering| -> Vec<&Firing> {
        by_rule
            .get(&(rule.playbook.as_str(), rule.rule.as_str()))
            .cloned()
            .unwrap_or_default()
    };
    let mut out: Vec<Coverage> = reasons
        .into_iter()
        .map(|reason| {
            let covering: Vec<&Covering> = automation
                .rules
                .iter()
                .filter(|r| r.covers.iter().any(|c| c == reason))
                .collect();
            let mine: Vec<&&Intervention> =
                in_period.iter().filter(|i| i.reason == reason).collect();
            let after_rule = mine
                .iter()
                .filter(|i| {
                    by_deal.get(&i.deal).into_iter().flatten().any(|f| {
                        covering
                            .iter()
                            .any(|r| !r.shadow && r.playbook == f.playbook && r.rule == f.rule)
                            && f.at <= i.first_at
                            && i.first_at.as_millis() - f.at.as_millis() <= window
                    })
                })
                .count() as u32;
            let rules = covering
                .iter()
                .map(|r| {
                    let mut row = RuleCoverage {
                        playbook: r.playbook.clone(),
                        rule: r.rule.clone(),
                        shadow: r.shadow,
                        fired: 0,
                        deals: 0,
                        stepped_in_after: 0,
                        pre_empted: 0,
                        pending: 0,
                    };
                    let mut deals = BTreeSet::new();
                    for f in firings_of(r)
                        .into_iter()
                        .filter(|f| options.in_period(f.at))
                    {
                        row.fired += 1;
                        deals.insert(&f.deal);
                        let followed = on_deal.get(&f.deal).into_iter().flatten().any(|i| {
                            i.reason == reason
                                && i.first_at >= f.at
                                && i.first_at.as_millis() - f.at.as_millis() <= window
                        });
                        if followed {
                            row.stepped_in_after += 1;
                        } else if f.at.as_millis() + window <= options.to.as_millis() {
                            row.pre_empted += 1;
                        } else {
                            row.pending += 1;
                        }
                    }
                    row.deals = deals.len() as u32;
                    row
                })
                .collect();
            Coverage {
                reason: reason.to_owned(),
                interventions: mine.len() as u32,
                after_rule,
                uncovered: mine.len() as u32 - after_rule,
                rules,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.interventions
            .cmp(&a.interventions)
            .then(a.reason.cmp(&b.reason))
    });
    out
}
