//! Each warning: when it appears for a deal, and the sentence that explains it.

use serde::Serialize;

use domain::{Deal, Stage, Timestamp};

use crate::{DAY, Kind, Model, Scoring};

fn plus(t: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_millis(t.as_millis().saturating_add(ms))
}

/// A warning present on a deal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub kind: Kind,
    /// When it appeared.
    pub since: Timestamp,
    /// Why, in one sentence.
    pub says: String,
}

/// One warning's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    #[serde(flatten)]
    pub warning: Warning,
    /// Its weight: a chance for rule-based scoring, log-odds for fitted weights.
    pub weight: f64,
}

/// A deal's risk at a moment: the score, whether it is at risk, and every warning with its
/// weight, heaviest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub score: f64,
    /// The score of a deal in its stage with none of its warnings: 0 for rule-based weights;
    /// for fitted ones, how often deals in the stage were lost anyway.
    pub baseline: f64,
    pub at_risk: bool,
    pub scoring: Scoring,
    pub warnings: Vec<Contribution>,
}

impl Model {
    /// The warnings present on `deal` at `now`, in [`Kind::ALL`]'s order.
    pub fn warnings(&self, deal: &Deal, now: Timestamp) -> Vec<Warning> {
        Kind::ALL
            .iter()
            .filter_map(|kind| {
                let (_, since) = self.window(*kind, deal, now)?;
                (since <= now).then(|| Warning {
                    kind: *kind,
                    since,
                    says: self.says(*kind, deal, now),
                })
            })
            .collect()
    }

    /// The score with its reasons.
    pub fn assess(&self, deal: &Deal, now: Timestamp) -> Assessment {
        let signs = self.signs(deal, now);
        let open = deal.status == domain::DealStatus::Open;
        let score = if open { self.score_of(signs) } else { 0.0 };
        let baseline = match &self.learned.fitted {
            Some(f) if open => f.probability(crate::Signs {
                warnings: 0,
                ..signs
            }),
            _ => 0.0,
        };
        let mut warnings: Vec<Contribution> = self
            .warnings(deal, now)
            .into_iter()
            .map(|warning| {
                let i = Kind::ALL
                    .iter()
                    .position(|k| *k == warning.kind)
                    .unwrap_or(0);
                let weight = match &self.learned.fitted {
                    Some(f) => f.weights[i],
                    None => self.settings.weight(warning.kind),
                };
                Contribution { warning, weight }
            })
            .collect();
        warnings.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        Assessment {
            score,
            baseline,
            at_risk: self.at_risk(signs, score),
            scoring: self.scoring(),
            warnings,
        }
    }

    /// At risk: the score reached the threshold and a warning that raises it is present. A
    /// deal with no such warning is not flagged however often deals in its stage are lost:
    /// there is nothing to act on.
    pub fn at_risk(&self, signs: crate::Signs, score: f64) -> bool {
        score >= self.settings.threshold && self.raising(signs.warnings)
    }

    /// Whether any of these warnings raises the score (has a positive weight).
    pub fn raising(&self, warnings: u16) -> bool {
        Kind::ALL.iter().enumerate().any(|(i, kind)| {
            warnings & (1 << i) != 0
                && match &self.learned.fitted {
                    Some(f) => f.weights[i] > 0.0,
                    None => self.settings.weight(*kind) > 0.0,
                }
        })
    }

    /// When warning `kind` holds, in words, with this model's thresholds: what the handbook
    /// says.
    pub fn describe(&self, kind: Kind) -> String {
        let s = &self.settings;
        let late = if self.late.is_empty() {
            "a late stage (none are declared)".to_owned()
        } else {
            self.late
                .iter()
                .map(Stage::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match kind {
            Kind::NoActivity => format!(
                "nobody on either side has done anything for {}",
                span(s.no_activity_after)
            ),
            Kind::Ghosted => format!(
                "{} of our messages in a row have no answer, the first at least {} old",
                s.ghosted_messages,
                span(s.ghosted_after)
            ),
            Kind::CloseDateOverdue => match s.overdue_after {
                0 => "the close date has passed".to_owned(),
                after => format!("the close date passed {} ago or more", span(after)),
            },
            Kind::CloseDatePushed => format!(
                "the close date has moved later {} times or more",
                s.pushed_times
            ),
            Kind::SingleThreaded => format!(
                "fewer than {} contacts took part in the last {}, on a deal open {} or more",
                s.single_contacts,
                span(s.single_within),
                span(s.single_after)
            ),
            Kind::NoEconomicBuyer => {
                format!("in {late} with no {} taking part", self.buyer_roles())
            }
            Kind::PricingNotDiscussed => format!("in {late} before pricing has come up"),
            Kind::UnresolvedObjection => format!(
                "an objection has been open for {} without `objection.resolved`",
                span(s.objection_after)
            ),
            Kind::Stalled => format!(
                "longer in the stage than the {}th percentile of the won deals that went through it (once {} have; {} until then)",
                s.stalled_percentile,
                s.stalled_min_won,
                span(s.stalled_default)
            ),
        }
    }

    /// The buying roles that count as an economic buyer, in words (`economic buyer or
    /// decision maker`).
    fn buyer_roles(&self) -> String {
        self.settings
            .buyer_roles
            .iter()
            .map(|r| r.replace('_', " "))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Whether the deal's current stage is one of the late stages, and since when it has been
    /// in them without a break.
    fn late_since(&self, deal: &Deal) -> Option<Timestamp> {
        let current = deal.stage.as_ref()?;
        if !self.late.contains(current) {
            return None;
        }
        let mut since = None;
        for visit in deal.stage_history.iter().rev() {
            if !self.late.contains(&visit.stage) {
                break;
            }
            since = Some(visit.entered_at);
        }
        since
    }

    /// The sentence for a warning present at `now`.
    fn says(&self, kind: Kind, deal: &Deal, now: Timestamp) -> String {
        let s = &self.settings;
        let days = |t: Timestamp| t.days_until(now);
        let stage = deal.stage.as_ref().map_or("its stage", Stage::as_str);
        match kind {
            Kind::NoActivity => {
                let last = deal.engagement.last_activity_at.or(deal.created_at);
                format!(
                    "No activity for {} days (warns after {}).",
                    last.map_or(0, days),
                    span(s.no_activity_after)
                )
            }
            Kind::Ghosted => {
                let u = &deal.engagement.unanswered;
                format!(
                    "{} of our messages in a row unanswered, the first {} days ago.",
                    plural_more(u.len()),
                    u.first().map_or(0, |t| days(*t))
                )
            }
            Kind::CloseDateOverdue => {
                let date = deal.close_date.map_or_else(String::new, |d| d.to_string());
                let ago = deal
                    .close_date
                    .and_then(|d| d.until(now.date_utc()).ok())
                    .map_or(0, |s| s.get_days());
                format!("The close date {date} passed {}.", ago_days(ago.into()))
            }
            Kind::CloseDatePushed => format!(
                "The close date has been pushed back {} times (warns at {}).",
                deal.close_date_pushes, s.pushed_times
            ),
            Kind::SingleThreaded => {
                let since = Timestamp::from_millis(now.as_millis() - s.single_within);
                let engaged = deal.engaged.values().filter(|t| **t > since).count();
                format!(
                    "{} engaged in the last {} (warns below {}).",
                    match engaged {
                        0 => "No contact".to_owned(),
                        1 => "Only one contact".to_owned(),
                        n => format!("Only {n} contacts"),
                    },
                    span(s.single_within),
                    s.single_contacts
                )
            }
            Kind::NoEconomicBuyer => {
                format!("In {stage} with no {} engaged.", self.buyer_roles())
            }
            Kind::PricingNotDiscussed => {
                format!("In {stage} and pricing has not been discussed.")
            }
            Kind::UnresolvedObjection => {
                let open = deal
                    .engagement
                    .objections
                    .iter()
                    .find(|o| o.resolved_at.is_none());
                match open {
                    Some(o) => {
                        let kind = o.kind.as_str();
                        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                            "An"
                        } else {
                            "A"
                        };
                        format!(
                            "{article} {kind} objection raised {} days ago is unresolved.",
                            days(o.at)
                        )
                    }
                    None => "An objection is unresolved.".to_owned(),
                }
            }
            Kind::Stalled => {
                let entered = deal.stage_history.last().map(|v| v.entered_at);
                let Some(current) = deal.stage.as_ref() else {
                    return "Stalled.".to_owned();
                };
                let (after, stat) = self.stalled_after(deal.pipeline.as_deref(), current);
                let basis = match stat {
                    Some(st) => format!(
                        "won deals of this pipeline left it within {} ({}th percentile of {} won deals)",
                        span(after),
                        s.stalled_percentile,
                        st.won
                    ),
                    None => format!(
                        "the default is {} until {} won deals have been through it",
                        span(after),
                        s.stalled_min_won
                    ),
                };
                format!("In {stage} for {} days; {basis}.", entered.map_or(0, days))
            }
        }
    }
}

fn ago_days(n: i64) -> String {
    match n {
        1 => "1 day ago".to_owned(),
        n => format!("{n} days ago"),
    }
}

fn plural_more(n: usize) -> String {
    if n >= domain::UNANSWERED_KEPT {
        format!("{n} or more")
    } else {
        n.to_string()
    }
}

/// A duration in whole days (or hours below a day).
fn span(ms: i64) -> String {
    if ms % DAY == 0 || ms >= 2 * DAY {
        let d = ms / DAY;
        if d == 1 {
            "1 day".into()
        } else {
            format!("{d} days")
        }
    } else {
        format!("{} hours", ms / 3_600_000)
    }
}

/// The most deals' contacts the single-threaded warning may ask for.
pub const MAX_CONTACTS: usize = 8;

/// The `n`-th latest of some times (1: the latest), without allocating; `n` is at most
/// [`MAX_CONTACTS`].
fn nth_latest(times: impl Iterator<Item = Timestamp>, n: usize) -> Option<Timestamp> {
    let n = n.clamp(1, MAX_CONTACTS);
    let mut top = [Timestamp::from_millis(i64::MIN); MAX_CONTACTS];
    let mut len = 0;
    for t in times {
        // Insert into the descending list of the n latest.
        let mut i = len.min(n);
        if i == n && top[n - 1] >= t {
            continue;
        }
        if len < n {
            len += 1;
        }
        while i > 0 && top[i - 1] < t {
            if i < n {
                top[i] = top[i - 1];
            }
            i -= 1;
        }
        top[i] = t;
    }
    (len >= n).then(|| top[n - 1])
}

/// See [`Model::window`]; the deal is open and the warning on.
pub(crate) fn window(
    m: &Model,
    kind: Kind,
    deal: &Deal,
    _now: Timestamp,
) -> Option<(Timestamp, Timestamp)> {
    let s = &m.settings;
    match kind {
        Kind::NoActivity => {
            let last = deal.engagement.last_activity_at.or(deal.created_at)?;
            Some((last, plus(last, s.no_activity_after)))
        }
        Kind::Ghosted => {
            let u = &deal.engagement.unanswered;
            let n = s.ghosted_messages.max(1);
            if u.len() < n {
                return None;
            }
            let first = u[0];
            Some((first, plus(first, s.ghosted_after).max(u[n - 1])))
        }
        Kind::CloseDateOverdue => {
            let date = deal.close_date?;
            let midnight = date
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .ok()?
                .timestamp()
                .as_millisecond();
            let anchor = Timestamp::from_millis(midnight);
            // Overdue once the whole day of the close date has passed.
            Some((anchor, plus(anchor, DAY + s.overdue_after)))
        }
        Kind::CloseDatePushed => {
            let n = s.pushed_times.max(1);
            if deal.close_date_pushes < n {
                return None;
            }
            // A state folded before push times were kept knows the count only.
            let at = deal
                .pushed_at
                .get(n as usize - 1)
                .copied()
                .or(deal.created_at)?;
            Some((at, at))
        }
        Kind::SingleThreaded => {
            let created = deal.created_at?;
            let from = plus(created, s.single_after);
            let since = match nth_latest(deal.engaged.values().copied(), s.single_contacts) {
                // Fewer than the threshold engaged once the n-th most recent ages out.
                Some(t) => from.max(plus(t, s.single_within)),
                None => from,
            };
            Some((since, since))
        }
        Kind::NoEconomicBuyer => {
            let late = m.late_since(deal)?;
            let engaged = deal.engaged.keys().any(|c| {
                deal.roles
                    .get(c)
                    .is_some_and(|r| s.buyer_roles.iter().any(|b| b == r))
            });
            (!engaged).then(|| (late, plus(late, s.buyer_after)))
        }
        Kind::PricingNotDiscussed => {
            let late = m.late_since(deal)?;
            let discussed = deal.engagement.pricing_discussed_at.is_some()
                || deal
                    .fields
                    .get("pricing_discussed")
                    .is_some_and(|v| v == &serde_json::Value::Bool(true));
            (!discussed).then(|| (late, plus(late, s.pricing_after)))
        }
        Kind::UnresolvedObjection => {
            let open = deal
                .engagement
                .objections
                .iter()
                .filter(|o| o.resolved_at.is_none())
                .map(|o| o.at)
                .min()?;
            Some((open, plus(open, s.objection_after)))
        }
        Kind::Stalled => {
            let stage = deal.stage.as_ref()?;
            let entered = deal.stage_history.last()?.entered_at;
            let (after, _) = m.stalled_after(deal.pipeline.as_deref(), stage);
            Some((entered, plus(entered, after)))
        }
    }
}
