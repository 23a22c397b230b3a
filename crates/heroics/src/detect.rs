//! Detecting interventions in one deal's history.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use domain::{
    Actor, Deal, DealStatus, Event, EventBody, MILLIS_PER_DAY, ObjectionKind, Person, Record,
    RecordId, RecordKey, RecordKind, Stage, Timestamp,
};

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

/// The team, as their latest state says: who is a key person, their names and roles.
#[derive(Debug, Clone, Default)]
pub struct People {
    people: BTreeMap<RecordId, Person>,
}

impl People {
    pub fn new(people: impl IntoIterator<Item = Person>) -> Self {
        Self {
            people: people.into_iter().map(|p| (p.id.clone(), p)).collect(),
        }
    }

    /// The people `events` create and update (other events are ignored).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut people: BTreeMap<RecordId, Record> = BTreeMap::new();
        for event in events {
            if let Some(id) = &event.refs.person
                && matches!(
                    event.body,
                    EventBody::PersonCreated(_) | EventBody::PersonUpdated(_)
                )
            {
                people
                    .entry(id.clone())
                    .or_insert_with(|| {
                        Record::empty(&RecordKey::new(RecordKind::Person, id.clone()))
                    })
                    .apply(event);
            }
        }
        Self::new(people.into_values().filter_map(|r| match r {
            Record::Person(p) => Some(p),
            _ => None,
        }))
    }

    pub fn is_key(&self, id: &RecordId) -> bool {
        self.people.get(id).is_some_and(|p| p.key_person)
    }

    /// The key people, by id.
    pub fn key_people(&self) -> impl Iterator<Item = &Person> {
        self.people.values().filter(|p| p.key_person)
    }

    /// The people with `role`, by id.
    pub fn with_role(&self, role: domain::Role) -> impl Iterator<Item = &Person> {
        self.people
            .values()
            .filter(move |p| p.roles.contains(&role))
    }

    pub fn get(&self, id: &RecordId) -> Option<&Person> {
        self.people.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Person> {
        self.people.values()
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
    /// What preceded the first touch: how long the deal had been quiet and in its stage, and
    /// the latest objection with how long before it was raised (milliseconds).
    pub quiet_ms: Option<i64>,
    pub in_stage_ms: Option<i64>,
    pub objection: Option<ObjectionKind>,
    pub objection_ms: Option<i64>,
    /// How long before a stage's gate had refused a move the deal has still not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_ms: Option<i64>,
}

/// The reason of an intervention that follows a refused move, or overrides a gate.
pub const BLOCKED_GATE: &str = "blocked-gate";

/// A stretch without activity on an open deal, as long as [`Settings::quiet_after`] or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub stage: Option<Stage>,
    pub started_at: Timestamp,
    /// How long it lasted: until the next activity, the deal's close, or the end of the
    /// history read.
    pub ms: i64,
    /// A key person's intervention began when it ended.
    pub ended_by_intervention: bool,
}

/// One stay of a deal in a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stay {
    pub stage: Stage,
    pub ms: i64,
    /// How far into the stay each intervention that began during it began.
    pub interventions_at: Vec<i64>,
}

/// An objection raised on a deal, and whether a key person stepped in within
/// [`Settings::objection_within`] after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub kind: ObjectionKind,
    pub at: Timestamp,
    pub stage: Option<Stage>,
    pub followed_by_intervention: bool,
}

/// What one deal's history shows.
#[derive(Debug, Clone)]
pub struct DealRun {
    /// Its state after the last event read.
    pub deal: Deal,
    pub interventions: Vec<Intervention>,
    /// When a person other than its owner (at the time) first acted on it, an intervention
    /// logged included: the deal needed a human beyond its owner.
    pub first_helped_at: Option<Timestamp>,
    /// Each person's latest touch (a logged intervention included).
    pub last_touch: HashMap<RecordId, Timestamp>,
    pub gaps: Vec<Gap>,
    pub stays: Vec<Stay>,
    pub objections: Vec<Raised>,
    /// When a buyer answered by email (automatic replies left out).
    pub replies: Vec<Timestamp>,
}

/// The reason an objection of this kind gives an intervention.
pub fn reason_of(kind: ObjectionKind) -> &'static str {
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
pub(crate) fn days(ms: i64) -> String {
    let d = ms as f64 / MILLIS_PER_DAY as f64;
    if (d - d.round()).abs() >= 0.05 {
        format!("{d:.1} days")
    } else if d.round() == 1.0 {
        "1 day".into()
    } else {
        format!("{:.0} days", d.round())
    }
}

/// Whether an event is a team member's touch: an email, a call, a meeting or a note.
fn is_touch(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::EmailSent(_)
            | EventBody::CallLogged(_)
            | EventBody::MeetingBooked(_)
            | EventBody::MeetingHeld(_)
            | EventBody::NoteAdded(_)
    )
}

fn deal_of(record: &Record) -> &Deal {
    match record {
        Record::Deal(d) => d,
        _ => unreachable!("a deal's history folds into a deal"),
    }
}

/// Reads one deal's events (in occurrence order; events after `until` are not read) and keeps
/// what they show. `until` also ends a gap or stay still running at the end.
pub fn run_deal(
    id: &RecordId,
    events: &[Event],
    people: &People,
    settings: &Settings,
    until: Timestamp,
) -> DealRun {
    let mut record = Record::empty(&RecordKey::new(RecordKind::Deal, id.clone()));
    let mut run = DealRun {
        deal: deal_of(&record).clone(),
        interventions: Vec::new(),
        first_helped_at: None,
        last_touch: HashMap::new(),
        gaps: Vec::new(),
        stays: Vec::new(),
        objections: Vec::new(),
        replies: Vec::new(),
    };
    // The latest intervention of each person on this deal, by index.
    let mut latest: HashMap<RecordId, usize> = HashMap::new();
    for event in events.iter().take_while(|e| e.occurred_at < until) {
        let at = event.occurred_at;
        let deal = deal_of(&record);
        let owner = deal.owner.as_ref();
        let toucher = match (&event.body, &event.actor) {
            (EventBody::InterventionLogged(i), _) => {
                Some((&i.person, Some((i.reason.as_str(), "logged"))))
            }
            // A key person pushing a deal past a stage's gate steps in, for that reason.
            (EventBody::DealStageChanged(c), _)
                if c.gate_override
                    .as_ref()
                    .is_some_and(|o| people.is_key(&o.by)) =>
            {
                c.gate_override
                    .as_ref()
                    .map(|o| (&o.by, Some((BLOCKED_GATE, "overrode the stage's gate"))))
            }
            (body, Some(Actor::Person(p))) if is_touch(body) => Some((p, None)),
            _ => None,
        };
        let mut began = false;
        if let Some((person, logged)) = toucher {
            let key = people.is_key(person) || logged.is_some();
            if owner != Some(person) {
                if owner.is_some() || key {
                    run.first_helped_at.get_or_insert(at);
                }
                if key {
                    began = touch(&mut run, &mut latest, deal, person, at, logged, settings);
                }
            }
            run.last_touch.insert(person.clone(), at);
        }
        let before = (
            deal.engagement.last_activity_at.or(deal.created_at),
            deal.stage.clone(),
            deal.stage_history.last().map(|v| v.entered_at),
            deal.status,
        );
        record.apply(event);
        let after = deal_of(&record);
        // A quiet stretch the event ended.
        if let (Some(last), Some(now_last)) = (before.0, after.engagement.last_activity_at)
            && now_last > last
            && before.3 == DealStatus::Open
            && at.as_millis() - last.as_millis() >= settings.quiet_after
        {
            run.gaps.push(Gap {
                stage: before.1.clone(),
                started_at: last,
                ms: at.as_millis() - last.as_millis(),
                ended_by_intervention: began,
            });
        }
        // A stay the event ended.
        if after.stage != before.1
            && let (Some(stage), Some(entered)) = (before.1, before.2)
        {
            close_stay(&mut run, stage, entered, at);
        }
        if let EventBody::EmailReceived(e) = &event.body
            && !e.is_automatic()
        {
            run.replies.push(at);
        }
        if let EventBody::ObjectionRaised(o) = &event.body {
            run.objections.push(Raised {
                kind: o.kind,
                at,
                stage: after.stage.clone(),
                followed_by_intervention: false,
            });
        }
    }
    let deal = deal_of(&record);
    // What was still running when the history ends.
    let end = deal.closed_at.unwrap_or(until);
    if deal.status == DealStatus::Open
        && let Some(last) = deal.engagement.last_activity_at.or(deal.created_at)
        && end.as_millis() - last.as_millis() >= settings.quiet_after
    {
        run.gaps.push(Gap {
            stage: deal.stage.clone(),
            started_at: last,
            ms: end.as_millis() - last.as_millis(),
            ended_by_intervention: false,
        });
    }
    if deal.status == DealStatus::Open
        && let (Some(stage), Some(entered)) = (
            deal.stage.clone(),
            deal.stage_history.last().map(|v| v.entered_at),
        )
    {
        close_stay(&mut run, stage, entered, end);
    }
    // Objections followed by an intervention within the window.
    for raised in &mut run.objections {
        let at = raised.at;
        raised.followed_by_intervention = run.interventions.iter().any(|i| {
            i.first_at >= at && i.first_at.as_millis() - at.as_millis() <= settings.objection_within
        });
    }
    run.deal = deal.clone();
    run
}

fn close_stay(run: &mut DealRun, stage: Stage, entered: Timestamp, left: Timestamp) {
    let interventions_at = run
        .interventions
        .iter()
        .filter(|i| i.first_at >= entered && i.first_at < left)
        .map(|i| i.first_at.as_millis() - entered.as_millis())
        .collect();
    run.stays.push(Stay {
        stage,
        ms: left.as_millis() - entered.as_millis(),
        interventions_at,
    });
}

/// A touch by `person` at `at`: merged into their latest intervention on the deal when close
/// enough, a new one otherwise. Whether it began a new one.
fn touch(
    run: &mut DealRun,
    latest: &mut HashMap<RecordId, usize>,
    deal: &Deal,
    person: &RecordId,
    at: Timestamp,
    logged: Option<(&str, &str)>,
    settings: &Settings,
) -> bool {
    if let Some(&i) = latest.get(person) {
        let latest = &mut run.interventions[i];
        if at.as_millis() - latest.last_at.as_millis() <= settings.merge_within {
            latest.touches += 1;
            latest.last_at = latest.last_at.max(at);
            if let Some((reason, because)) = logged {
                // What someone wrote down (or did) beats what was inferred.
                latest.reason = reason.to_owned();
                latest.because = because.to_owned();
            }
            return false;
        }
    }
    let ms = |t: Option<Timestamp>| t.map(|t| at.as_millis() - t.as_millis());
    let objection = deal.engagement.objections.last();
    let mut found = Intervention {
        deal: deal.id.clone(),
        person: person.clone(),
        first_at: at,
        last_at: at,
        touches: 1,
        reason: String::new(),
        because: String::new(),
        stage: deal.stage.clone(),
        owner: deal.owner.clone(),
        quiet_ms: ms(deal.engagement.last_activity_at.or(deal.created_at)),
        in_stage_ms: ms(deal.stage_history.last().map(|v| v.entered_at)),
        objection: objection.map(|o| o.kind),
        objection_ms: ms(objection.map(|o| o.at)),
        blocked_ms: ms(deal
            .blocked_moves
            .last()
            .filter(|b| deal.stage.as_ref() != Some(&b.stage))
            .map(|b| b.at)),
    };
    (found.reason, found.because) = match logged {
        Some((reason, because)) => (reason.to_owned(), because.to_owned()),
        None => infer(&found, deal.status, settings),
    };
    run.interventions.push(found);
    latest.insert(person.clone(), run.interventions.len() - 1);
    true
}

/// The reason for an intervention, by the first rule that holds, and what it saw.
fn infer(i: &Intervention, status: DealStatus, s: &Settings) -> (String, String) {
    match status {
        DealStatus::Won => return ("after-win".into(), "the deal was won before".into()),
        DealStatus::Lost => return ("win-back".into(), "the deal was lost before".into()),
        DealStatus::Open => {}
    }
    if let (Some(kind), Some(ago)) = (i.objection, i.objection_ms)
        && ago <= s.objection_within
    {
        let reason = reason_of(kind);
        return (
            reason.to_owned(),
            format!("objection ({reason}) raised {} before", days(ago)),
        );
    }
    if let Some(ago) = i.blocked_ms
        && ago <= s.objection_within
    {
        return (
            BLOCKED_GATE.into(),
            format!("a gate refused a move {} before", days(ago)),
        );
    }
    if let Some(quiet) = i.quiet_ms
        && quiet >= s.quiet_after
    {
        return (
            "went-quiet".into(),
            format!("no activity for {} before", days(quiet)),
        );
    }
    if let (Some(stage), Some(stay)) = (&i.stage, i.in_stage_ms)
        && stay >= s.stuck_after
    {
        let reason = if stage.as_str() == "legal" {
            "legal-stall"
        } else {
            "stalled"
        };
        return (reason.into(), format!("in {stage} for {}", days(stay)));
    }
    ("unknown".into(), "no rule matched".into())
}

/// Every intervention in `events` (any order of deals; each deal's events in occurrence
/// order), in the order they began. The people are read from the same events.
pub fn detect<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    settings: Settings,
) -> Vec<Intervention> {
    let events: Vec<&Event> = events.into_iter().collect();
    let people = People::from_events(events.iter().copied());
    let mut found: Vec<Intervention> = crate::by_deal(events.iter().copied())
        .into_iter()
        .flat_map(|(id, history)| {
            run_deal(
                &id,
                &history,
                &people,
                &settings,
                Timestamp::from_millis(i64::MAX),
            )
            .interventions
        })
        .collect();
    found.sort_by(|a, b| (a.first_at, &a.deal, &a.person).cmp(&(b.first_at, &b.deal, &b.person)));
    found
}
