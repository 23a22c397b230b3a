//! Detecting interventions in a stream of events.

use std::collections::HashMap;

use serde::Serialize;

use domain::{Actor, Event, EventBody, MILLIS_PER_DAY, ObjectionKind, RecordId, Stage, Timestamp};

/// What counts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Touches by one person on one deal at most this far apart are one intervention.
    pub merge_within: i64,
    /// An objection raised at most this long before a touch is its reason.
    pub objection_within: i64,
    /// A deal with no activity for this long before a touch had gone quiet.
    pub quiet_after: i64,
    /// A deal this long in its stage before a touch was stuck there.
    pub stuck_after: i64,
}

impl Default for Settings {
    /// Touches within 2 days merge; objections count for 14 days; quiet after 5 days; stuck
    /// after 14 days in a stage.
    fn default() -> Self {
        Self {
            merge_within: 2 * MILLIS_PER_DAY,
            objection_within: 14 * MILLIS_PER_DAY,
            quiet_after: 5 * MILLIS_PER_DAY,
            stuck_after: 14 * MILLIS_PER_DAY,
        }
    }
}

/// A key person stepping in on a deal they do not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Intervention {
    pub deal: RecordId,
    pub person: RecordId,
    /// The first and last touch it merges.
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    pub touches: u32,
    /// Logged, inferred (see the crate's documentation) or `unknown`.
    pub reason: String,
    /// How the reason was found: `logged`, or the rule that inferred it and what it saw.
    pub because: String,
    /// The deal's stage and owner at the first touch.
    pub stage: Option<Stage>,
    pub owner: Option<RecordId>,
}

/// What is known of a deal just before the event being read.
#[derive(Debug, Default)]
struct Deal {
    owner: Option<RecordId>,
    stage: Option<Stage>,
    stage_entered_at: Option<Timestamp>,
    last_activity_at: Option<Timestamp>,
    objection: Option<(ObjectionKind, Timestamp)>,
}

/// Reads events in occurrence order and keeps the interventions they show.
#[derive(Debug, Default)]
pub struct Detector {
    settings: Settings,
    key_people: HashMap<RecordId, bool>,
    deals: HashMap<RecordId, Deal>,
    /// The latest intervention of each (deal, person), by index.
    latest: HashMap<(RecordId, RecordId), usize>,
    found: Vec<Intervention>,
}

/// Every intervention in `events` (in occurrence order), in the order they began.
pub fn detect<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    settings: Settings,
) -> Vec<Intervention> {
    let mut detector = Detector::new(settings);
    for event in events {
        detector.push(event);
    }
    detector.finish()
}

fn objection_reason(kind: ObjectionKind) -> &'static str {
    match kind {
        ObjectionKind::Pricing => "pricing",
        ObjectionKind::Implementation => "implementation-concern",
        ObjectionKind::Legal => "legal-concern",
        ObjectionKind::Security => "security-concern",
        ObjectionKind::Competitor => "competitor",
        ObjectionKind::Timing => "timing",
        ObjectionKind::Other => "objection",
    }
}

/// A length of time in days, as the reasons say it: `1 day`, `7 days`, `2.5 days`.
fn days(ms: i64) -> String {
    let d = ms as f64 / MILLIS_PER_DAY as f64;
    if (d - d.round()).abs() >= 0.05 {
        format!("{d:.1} days")
    } else if d.round() == 1.0 {
        "1 day".into()
    } else {
        format!("{:.0} days", d.round())
    }
}

impl Detector {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Takes the next event (in occurrence order).
    pub fn push(&mut self, event: &Event) {
        if let EventBody::PersonCreated(p) | EventBody::PersonUpdated(p) = &event.body
            && let (Some(person), Some(key)) = (&event.refs.person, p.key_person)
        {
            self.key_people.insert(person.clone(), key);
        }
        let Some(deal) = event.refs.deal.clone() else {
            return;
        };
        let at = event.occurred_at;
        match &event.body {
            EventBody::InterventionLogged(i) => {
                self.touch(&deal, &i.person, at, Some(&i.reason));
            }
            EventBody::EmailSent(_)
            | EventBody::CallLogged(_)
            | EventBody::MeetingBooked(_)
            | EventBody::MeetingHeld(_)
            | EventBody::NoteAdded(_) => {
                if let Some(Actor::Person(person)) = &event.actor
                    && self.key_people.get(person).copied().unwrap_or(false)
                {
                    let owner = self.deals.get(&deal).and_then(|d| d.owner.as_ref());
                    if owner != Some(person) {
                        self.touch(&deal, person, at, None);
                    }
                }
            }
            _ => {}
        }
        self.update(&deal, event);
    }

    /// A touch by `person` on `deal` at `at`: merged into their latest intervention there when
    /// close enough, a new one otherwise.
    fn touch(&mut self, deal: &RecordId, person: &RecordId, at: Timestamp, logged: Option<&str>) {
        let key = (deal.clone(), person.clone());
        if let Some(&i) = self.latest.get(&key) {
            let latest = &mut self.found[i];
            if at.as_millis() - latest.last_at.as_millis() <= self.settings.merge_within {
                latest.touches += 1;
                latest.last_at = latest.last_at.max(at);
                if let Some(reason) = logged {
                    // What someone wrote down beats what was inferred.
                    latest.reason = reason.to_owned();
                    latest.because = "logged".into();
                }
                return;
            }
        }
        let track = self.deals.get(deal);
        let (reason, because) = match logged {
            Some(reason) => (reason.to_owned(), "logged".to_owned()),
            None => self.infer(track, at),
        };
        self.found.push(Intervention {
            deal: deal.clone(),
            person: person.clone(),
            first_at: at,
            last_at: at,
            touches: 1,
            reason,
            because,
            stage: track.and_then(|d| d.stage.clone()),
            owner: track.and_then(|d| d.owner.clone()),
        });
        self.latest.insert(key, self.found.len() - 1);
    }

    /// The reason for a touch at `at`, by the first rule that holds, and what it saw.
    fn infer(&self, deal: Option<&Deal>, at: Timestamp) -> (String, String) {
        let s = &self.settings;
        let at = at.as_millis();
        if let Some(deal) = deal {
            if let Some((kind, raised)) = deal.objection
                && at - raised.as_millis() <= s.objection_within
            {
                return (
                    objection_reason(kind).to_owned(),
                    format!(
                        "objection ({}) raised {} before",
                        objection_reason(kind),
                        days(at - raised.as_millis())
                    ),
                );
            }
            if let Some(last) = deal.last_activity_at
                && at - last.as_millis() >= s.quiet_after
            {
                return (
                    "went-quiet".into(),
                    format!("no activity for {} before", days(at - last.as_millis())),
                );
            }
            if let (Some(stage), Some(entered)) = (&deal.stage, deal.stage_entered_at)
                && at - entered.as_millis() >= s.stuck_after
            {
                let reason = if stage.as_str() == "legal" {
                    "legal-stall"
                } else {
                    "stalled"
                };
                return (
                    reason.into(),
                    format!("in {stage} for {}", days(at - entered.as_millis())),
                );
            }
        }
        ("unknown".into(), "no rule matched".into())
    }

    /// What the event changes about the deal, after any touch it was has been judged.
    fn update(&mut self, deal: &RecordId, event: &Event) {
        let d = self.deals.entry(deal.clone()).or_default();
        let at = event.occurred_at;
        let enter = |d: &mut Deal, stage: &Stage| {
            if d.stage.as_ref() != Some(stage) {
                d.stage = Some(stage.clone());
                d.stage_entered_at = Some(at);
            }
        };
        match &event.body {
            EventBody::DealCreated(f) | EventBody::DealUpdated(f) => {
                if let Some(owner) = &f.owner {
                    d.owner = Some(owner.clone());
                }
                if let Some(stage) = &f.stage {
                    enter(d, stage);
                }
            }
            EventBody::DealStageChanged(c) => enter(d, &c.stage),
            EventBody::ObjectionRaised(o) => d.objection = Some((o.kind, at)),
            _ => {}
        }
        // Every event on the deal is activity, except a recorded intervention and automatic
        // replies (an out-of-office message is not the buyer talking).
        let automatic = matches!(&event.body, EventBody::EmailReceived(e) if e.is_automatic());
        if !automatic && !matches!(event.body, EventBody::InterventionLogged(_)) {
            d.last_activity_at = Some(d.last_activity_at.map_or(at, |l| l.max(at)));
        }
    }

    /// The interventions found, in the order they began.
    pub fn finish(self) -> Vec<Intervention> {
        self.found
    }
}
