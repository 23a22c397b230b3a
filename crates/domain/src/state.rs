//! Record state, derived from events by a fold.
//!
//! `Record::fold` replays a record's events in occurrence order; `Record::apply` adds one event
//! at the end. The store applies in-order events incrementally and refolds a record when an
//! event arrives out of order, so derived facts are always correct by occurrence time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::{
    AccountFields, Actor, ContactFields, DealFields, Direction, EmailFields, Event, EventBody,
    FieldMap, LeadFields, ObjectionKind, PersonFields,
};
use crate::ids::{RecordId, RecordKey, RecordKind, Role, Stage};
use crate::money::Money;
use crate::time::{Date, Timestamp};

/// How a record has been engaged with: activity counters and their latest times.
///
/// Counters at zero and absent times are left out of the serialised form.
///
/// Activity is anything a person on either side did: emails sent and received (not automatic
/// replies), meetings, calls, notes, content views, form submissions, link clicks, objections,
/// interventions and stage moves. Email opens are counted but are not activity: privacy proxies
/// open mail automatically, so an open must not reset a "quiet for" timer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inbound_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outbound_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub emails_sent: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub emails_received: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auto_replies: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub emails_opened: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links_clicked: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub meetings_booked: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub meetings_held: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calls: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notes: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub content_views: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forms_submitted: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objections: Vec<Objection>,
    /// Our messages since the buyer's side last answered (an email, click, form, call or
    /// meeting of theirs): when each was sent, the first [`UNANSWERED_KEPT`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<Timestamp>,
    /// When pricing first came up: a pricing objection, or an email, meeting, call or content
    /// view about pricing, a quote or a proposal (see [`about_pricing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_discussed_at: Option<Timestamp>,
}

/// How many unanswered messages [`Engagement::unanswered`] keeps: the ghosting warning's
/// threshold cannot be higher.
pub const UNANSWERED_KEPT: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objection {
    pub kind: ObjectionKind,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When an `objection.resolved` of its kind answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
}

/// Words that say a message, meeting or asset is about money: what makes pricing "discussed".
const PRICING_WORDS: [&str; 6] = ["pric", "quote", "proposal", "discount", "cost", "roi"];

/// Whether a subject, title, asset name or URL is about pricing: it contains one of `pric`
/// (price, pricing), `quote`, `proposal`, `discount`, `cost` or `roi`, in any case.
pub fn about_pricing(text: &str) -> bool {
    let lower = text.to_lowercase();
    PRICING_WORDS.iter().any(|w| lower.contains(w))
}

impl Engagement {
    /// Nothing has happened yet.
    pub fn is_empty(&self) -> bool {
        *self == Engagement::default()
    }

    fn touch(&mut self, at: Timestamp, direction: Option<Direction>) {
        bump(&mut self.last_activity_at, at);
        match direction {
            Some(Direction::Inbound) => {
                bump(&mut self.last_inbound_at, at);
                self.answered();
            }
            Some(Direction::Outbound) => bump(&mut self.last_outbound_at, at),
            None => {}
        }
    }

    /// The buyer's side spoke: every message before is answered.
    fn answered(&mut self) {
        self.unanswered.clear();
    }

    fn pricing(&mut self, at: Timestamp, about: Option<&str>) {
        if about.is_some_and(about_pricing) && self.pricing_discussed_at.is_none_or(|t| at < t) {
            self.pricing_discussed_at = Some(at);
        }
    }

    /// Whether the email is about pricing, by its subject.
    fn email_pricing(&mut self, at: Timestamp, e: &EmailFields) {
        self.pricing(at, e.subject.as_deref());
    }

    fn apply(&mut self, event: &Event) {
        let at = event.occurred_at;
        let buyer = matches!(event.actor, Some(Actor::Contact(_)));
        let side = if buyer {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        match &event.body {
            EventBody::EmailSent(e) => {
                self.emails_sent += 1;
                self.touch(at, Some(Direction::Outbound));
                if self.unanswered.len() < UNANSWERED_KEPT {
                    self.unanswered.push(at);
                }
                self.email_pricing(at, e);
            }
            EventBody::EmailReceived(e) if e.is_automatic() => self.auto_replies += 1,
            EventBody::EmailReceived(e) => {
                self.emails_received += 1;
                self.touch(at, Some(Direction::Inbound));
                self.email_pricing(at, e);
            }
            EventBody::EmailOpened(_) => self.emails_opened += 1,
            EventBody::LinkClicked(_) => {
                self.links_clicked += 1;
                self.touch(at, Some(Direction::Inbound));
            }
            EventBody::MeetingBooked(_) => {
                self.meetings_booked += 1;
                self.touch(at, Some(side));
            }
            EventBody::MeetingHeld(m) => {
                self.meetings_held += 1;
                self.touch(at, None);
                self.answered();
                self.pricing(at, m.title.as_deref());
            }
            EventBody::CallLogged(c) => {
                self.calls += 1;
                self.touch(at, Some(c.direction.unwrap_or(side)));
                // A call that reached someone is a conversation; one that did not is ours
                // unanswered.
                let missed = c.outcome.as_deref().is_some_and(|o| {
                    matches!(o, "no_answer" | "voicemail" | "left_voicemail" | "busy")
                });
                if missed {
                    if self.unanswered.len() < UNANSWERED_KEPT {
                        self.unanswered.push(at);
                    }
                } else {
                    self.answered();
                }
            }
            EventBody::NoteAdded(_) => {
                self.notes += 1;
                self.touch(at, None);
            }
            EventBody::ContentViewed(c) => {
                self.content_views += 1;
                self.touch(at, Some(Direction::Inbound));
                for about in [&c.asset, &c.title, &c.url] {
                    self.pricing(at, about.as_deref());
                }
            }
            EventBody::FormSubmitted(_) => {
                self.forms_submitted += 1;
                self.touch(at, Some(Direction::Inbound));
            }
            EventBody::ObjectionRaised(o) => {
                self.objections.push(Objection {
                    kind: o.kind,
                    at,
                    text: o.text.clone(),
                    resolved_at: None,
                });
                self.touch(at, Some(Direction::Inbound));
                if o.kind == ObjectionKind::Pricing {
                    self.pricing(at, Some("pricing"));
                }
            }
            EventBody::ObjectionResolved(o) => {
                for open in &mut self.objections {
                    if open.kind == o.kind && open.resolved_at.is_none() && open.at <= at {
                        open.resolved_at = Some(at);
                    }
                }
                self.touch(at, None);
            }
            EventBody::InterventionLogged(_)
            | EventBody::DealStageChanged(_)
            | EventBody::DealWon(_)
            | EventBody::DealLost(_) => self.touch(at, None),
            EventBody::LeadCreated(_)
            | EventBody::LeadUpdated(_)
            | EventBody::OwnerAssigned(_)
            | EventBody::GateBlocked(_)
            | EventBody::ContactUnsubscribed(_)
            | EventBody::ContactCreated(_)
            | EventBody::ContactUpdated(_)
            | EventBody::AccountCreated(_)
            | EventBody::AccountUpdated(_)
            | EventBody::DealCreated(_)
            | EventBody::DealUpdated(_)
            | EventBody::PersonCreated(_)
            | EventBody::PersonUpdated(_) => {}
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn bump(slot: &mut Option<Timestamp>, at: Timestamp) {
    if slot.is_none_or(|t| t < at) {
        *slot = Some(at);
    }
}

fn set<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if let Some(v) = value {
        *slot = Some(v.clone());
    }
}

fn merge_fields(into: &mut FieldMap, from: &FieldMap) {
    for (k, v) in from {
        if v.is_null() {
            into.remove(k);
        } else {
            into.insert(k.clone(), v.clone());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    #[default]
    Open,
    Won,
    Lost,
}

impl DealStatus {
    pub const ALL: [DealStatus; 3] = [DealStatus::Open, DealStatus::Won, DealStatus::Lost];

    /// The status as facts and the API write it (`open`).
    pub fn as_str(self) -> &'static str {
        match self {
            DealStatus::Open => "open",
            DealStatus::Won => "won",
            DealStatus::Lost => "lost",
        }
    }
}

/// One stay of a deal in a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageVisit {
    pub stage: Stage,
    pub entered_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intervention {
    pub person: RecordId,
    pub reason: String,
    pub at: Timestamp,
}

/// Who owns a record since when, who gave it to them, and when they first touched it: what a
/// first-touch SLA watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub owner: RecordId,
    pub at: Timestamp,
    /// The routing rule that assigned it (`owner.assigned`); absent when the owner came from
    /// the CRM or an import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The owner's first activity on the record after `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_touch_at: Option<Timestamp>,
}

impl Assignment {
    /// Follows an owner change (a new assignment when the owner is another person) and the
    /// owner's first touch after it.
    fn track(slot: &mut Option<Assignment>, owner: Option<&RecordId>, event: &Event) {
        let at = event.occurred_at;
        let by = match &event.body {
            EventBody::OwnerAssigned(a) => a.rule.clone(),
            _ => None,
        };
        if let Some(owner) = owner
            && slot.as_ref().is_none_or(|a| &a.owner != owner)
        {
            *slot = Some(Assignment {
                owner: owner.clone(),
                at,
                by,
                first_touch_at: None,
            });
            return;
        }
        if let Some(a) = slot
            && a.first_touch_at.is_none()
            && at >= a.at
            && touched_by(event, &a.owner)
        {
            a.first_touch_at = Some(at);
        }
    }
}

/// An activity by `owner`: an event whose actor they are, or an outbound email, call or
/// meeting with no actor named (a CRM logging the owner's own work).
fn touched_by(event: &Event, owner: &RecordId) -> bool {
    let activity = matches!(
        event.body,
        EventBody::EmailSent(_)
            | EventBody::CallLogged(_)
            | EventBody::MeetingBooked(_)
            | EventBody::MeetingHeld(_)
            | EventBody::NoteAdded(_)
    );
    match &event.actor {
        Some(Actor::Person(p)) => p == owner && activity,
        Some(Actor::Contact(_)) => false,
        None => matches!(
            event.body,
            EventBody::EmailSent(_) | EventBody::CallLogged(_) | EventBody::MeetingBooked(_)
        ),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    pub id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    pub status: DealStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_date: Option<Date>,
    /// How many times the close date moved later: a leading indicator of slippage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub close_date_pushes: u32,
    /// When each of those pushes happened, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushed_at: Vec<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<RecordId>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub contacts: BTreeSet<RecordId>,
    /// Contacts on the deal plus every contact seen acting on it or attending its meetings.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub stakeholders: BTreeSet<RecordId>,
    /// The buying role of contacts on this deal (champion, economic_buyer, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<RecordId, String>,
    /// Contacts who took part — acted on the deal or attended a held meeting — and when each
    /// last did.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engaged: BTreeMap<RecordId, Timestamp>,
    #[serde(default, skip_serializing_if = "FieldMap::is_empty")]
    pub fields: FieldMap,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_history: Vec<StageVisit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Engagement::is_empty")]
    pub engagement: Engagement,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interventions: Vec<Intervention>,
    /// Moves its stages' gates refused, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_moves: Vec<BlockedMove>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
}

/// A move a gate refused (`gate.blocked`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockedMove {
    pub stage: Stage,
    pub unmet: Vec<String>,
    pub at: Timestamp,
}

/// Names of the stages a deal enters when it is won or lost.
pub const WON_STAGE: &str = "closed_won";
pub const LOST_STAGE: &str = "closed_lost";

impl Deal {
    fn new(id: RecordId) -> Self {
        Self {
            id,
            name: None,
            pipeline: None,
            stage: None,
            status: DealStatus::Open,
            owner: None,
            amount: None,
            close_date: None,
            close_date_pushes: 0,
            pushed_at: Vec::new(),
            account: None,
            lead: None,
            contacts: BTreeSet::new(),
            stakeholders: BTreeSet::new(),
            roles: BTreeMap::new(),
            engaged: BTreeMap::new(),
            fields: FieldMap::new(),
            stage_history: Vec::new(),
            created_at: None,
            closed_at: None,
            close_reason: None,
            engagement: Engagement::default(),
            interventions: Vec::new(),
            blocked_moves: Vec::new(),
            assignment: None,
        }
    }

    fn enter_stage(&mut self, stage: &Stage, at: Timestamp) {
        if self.stage.as_ref() == Some(stage) {
            return;
        }
        if let Some(last) = self.stage_history.last_mut() {
            last.left_at.get_or_insert(at);
        }
        self.stage_history.push(StageVisit {
            stage: stage.clone(),
            entered_at: at,
            left_at: None,
        });
        self.stage = Some(stage.clone());
    }

    fn apply_fields(&mut self, f: &DealFields, at: Timestamp) {
        set(&mut self.name, &f.name);
        set(&mut self.pipeline, &f.pipeline);
        set(&mut self.owner, &f.owner);
        if let Some(amount) = f.amount {
            let currency = f.currency.or(self.amount.map(|m| m.currency));
            self.amount = Some(amount.to_money(currency));
        }
        if let Some(date) = f.close_date {
            if self.close_date.is_some_and(|old| date > old) {
                self.close_date_pushes += 1;
                self.pushed_at.push(at);
            }
            self.close_date = Some(date);
        }
        for c in f.contacts.iter().chain(f.roles.keys()) {
            self.contacts.insert(c.clone());
            self.stakeholders.insert(c.clone());
        }
        for (c, role) in &f.roles {
            self.roles.insert(c.clone(), role.clone());
        }
        merge_fields(&mut self.fields, &f.fields);
        if let Some(stage) = &f.stage {
            self.reopen();
            self.enter_stage(stage, at);
        }
    }

    fn engage(&mut self, contact: &RecordId, at: Timestamp) {
        let last = self.engaged.entry(contact.clone()).or_insert(at);
        *last = (*last).max(at);
    }

    fn reopen(&mut self) {
        self.status = DealStatus::Open;
        self.closed_at = None;
        self.close_reason = None;
    }

    fn close(
        &mut self,
        status: DealStatus,
        stage: &str,
        f: &crate::event::DealClosed,
        at: Timestamp,
    ) {
        if let Some(amount) = f.amount {
            self.amount = Some(amount.to_money(f.currency.or(self.amount.map(|m| m.currency))));
        }
        self.status = status;
        self.closed_at = Some(at);
        self.close_reason = f.reason.clone();
        if let Ok(stage) = Stage::parse(stage) {
            self.enter_stage(&stage, at);
        }
    }

    fn apply(&mut self, event: &Event) {
        let at = event.occurred_at;
        self.created_at.get_or_insert(at);
        if let Some(account) = &event.refs.account {
            self.account = Some(account.clone());
        }
        if let Some(lead) = &event.refs.lead {
            self.lead.get_or_insert_with(|| lead.clone());
        }
        if let Some(contact) = &event.refs.contact {
            self.stakeholders.insert(contact.clone());
        }
        if let Some(Actor::Contact(contact)) = &event.actor {
            self.stakeholders.insert(contact.clone());
            self.engage(contact, at);
        }
        self.engagement.apply(event);
        match &event.body {
            EventBody::DealCreated(f) | EventBody::DealUpdated(f) => self.apply_fields(f, at),
            EventBody::DealStageChanged(c) => {
                self.reopen();
                self.enter_stage(&c.stage, at);
            }
            EventBody::DealWon(f) => self.close(DealStatus::Won, WON_STAGE, f, at),
            EventBody::DealLost(f) => self.close(DealStatus::Lost, LOST_STAGE, f, at),
            EventBody::MeetingBooked(m) => self.stakeholders.extend(m.attendees.iter().cloned()),
            EventBody::MeetingHeld(m) => {
                self.stakeholders.extend(m.attendees.iter().cloned());
                for a in &m.attendees {
                    self.engage(a, at);
                }
            }
            EventBody::InterventionLogged(i) => self.interventions.push(Intervention {
                person: i.person.clone(),
                reason: i.reason.clone(),
                at,
            }),
            EventBody::GateBlocked(g) => self.blocked_moves.push(BlockedMove {
                stage: g.stage.clone(),
                unmet: g.unmet.clone(),
                at,
            }),
            EventBody::OwnerAssigned(a) => self.owner = Some(a.owner.clone()),
            _ => {}
        }
        Assignment::track(&mut self.assignment, self.owner.as_ref(), event);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The deal this lead became, once a deal referencing it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_to: Option<RecordId>,
    #[serde(default, skip_serializing_if = "FieldMap::is_empty")]
    pub fields: FieldMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Engagement::is_empty")]
    pub engagement: Engagement,
    /// When the lead asked for no more automated email (`contact.unsubscribed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
}

impl Lead {
    fn apply_fields(&mut self, f: &LeadFields) {
        set(&mut self.name, &f.name);
        set(&mut self.email, &f.email);
        set(&mut self.company, &f.company);
        set(&mut self.title, &f.title);
        set(&mut self.origin, &f.origin);
        set(&mut self.owner, &f.owner);
        set(&mut self.status, &f.status);
        merge_fields(&mut self.fields, &f.fields);
    }

    fn apply(&mut self, event: &Event) {
        self.created_at.get_or_insert(event.occurred_at);
        self.engagement.apply(event);
        match &event.body {
            EventBody::LeadCreated(f) | EventBody::LeadUpdated(f) => self.apply_fields(f),
            EventBody::ContactUnsubscribed(_) => {
                self.unsubscribed_at.get_or_insert(event.occurred_at);
            }
            EventBody::DealCreated(_) => {
                if let Some(deal) = &event.refs.deal {
                    self.converted_to = Some(deal.clone());
                    self.status = Some("converted".to_owned());
                }
            }
            EventBody::OwnerAssigned(a) => self.owner = Some(a.owner.clone()),
            _ => {}
        }
        Assignment::track(&mut self.assignment, self.owner.as_ref(), event);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<RecordId>,
    #[serde(default, skip_serializing_if = "FieldMap::is_empty")]
    pub fields: FieldMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Engagement::is_empty")]
    pub engagement: Engagement,
    /// When the contact asked for no more automated email (`contact.unsubscribed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribed_at: Option<Timestamp>,
}

impl Contact {
    fn apply_fields(&mut self, f: &ContactFields) {
        set(&mut self.name, &f.name);
        set(&mut self.email, &f.email);
        set(&mut self.title, &f.title);
        set(&mut self.timezone, &f.timezone);
        set(&mut self.role, &f.role);
        merge_fields(&mut self.fields, &f.fields);
    }

    fn apply(&mut self, event: &Event) {
        self.created_at.get_or_insert(event.occurred_at);
        self.engagement.apply(event);
        if let EventBody::ContactUnsubscribed(_) = &event.body {
            self.unsubscribed_at.get_or_insert(event.occurred_at);
        }
        if let EventBody::ContactCreated(f) | EventBody::ContactUpdated(f) = &event.body {
            if let Some(account) = &event.refs.account {
                self.account = Some(account.clone());
            }
            self.apply_fields(f);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub territory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employees: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<RecordId>,
    #[serde(default, skip_serializing_if = "FieldMap::is_empty")]
    pub fields: FieldMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Engagement::is_empty")]
    pub engagement: Engagement,
}

impl Account {
    fn apply_fields(&mut self, f: &AccountFields) {
        set(&mut self.name, &f.name);
        set(&mut self.domain, &f.domain);
        set(&mut self.industry, &f.industry);
        set(&mut self.segment, &f.segment);
        set(&mut self.territory, &f.territory);
        set(&mut self.employees, &f.employees);
        set(&mut self.owner, &f.owner);
        merge_fields(&mut self.fields, &f.fields);
    }

    fn apply(&mut self, event: &Event) {
        self.created_at.get_or_insert(event.occurred_at);
        self.engagement.apply(event);
        if let EventBody::AccountCreated(f) | EventBody::AccountUpdated(f) = &event.body {
            self.apply_fields(f);
        }
    }
}

/// A team member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: RecordId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub roles: BTreeSet<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key_person: bool,
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_office: Vec<crate::Absence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<crate::WorkingHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

impl Person {
    fn apply_fields(&mut self, f: &PersonFields) {
        set(&mut self.name, &f.name);
        set(&mut self.email, &f.email);
        if let Some(roles) = &f.roles {
            self.roles = roles.iter().copied().collect();
        }
        set(&mut self.timezone, &f.timezone);
        if let Some(k) = f.key_person {
            self.key_person = k;
        }
        if let Some(a) = f.available {
            self.available = a;
        }
        set(&mut self.capacity, &f.capacity);
        set(&mut self.manager, &f.manager);
        if let Some(away) = &f.out_of_office {
            self.out_of_office = away.clone();
        }
        set(&mut self.working_hours, &f.working_hours);
    }

    fn apply(&mut self, event: &Event) {
        self.created_at.get_or_insert(event.occurred_at);
        if let EventBody::PersonCreated(f) | EventBody::PersonUpdated(f) = &event.body {
            self.apply_fields(f);
        }
    }
}

/// The derived state of one record.
///
/// Deals are the largest and the most common records the engine and the store handle, so
/// they are held inline rather than boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Lead(Lead),
    Contact(Contact),
    Account(Account),
    Deal(Deal),
    Person(Person),
}

impl Record {
    /// The state of a record no event has touched yet.
    pub fn empty(key: &RecordKey) -> Self {
        let id = key.id.clone();
        match key.kind {
            RecordKind::Deal => Record::Deal(Deal::new(id)),
            RecordKind::Lead => Record::Lead(Lead {
                id,
                name: None,
                email: None,
                company: None,
                title: None,
                origin: None,
                owner: None,
                status: None,
                converted_to: None,
                fields: FieldMap::new(),
                created_at: None,
                engagement: Engagement::default(),
                unsubscribed_at: None,
                assignment: None,
            }),
            RecordKind::Contact => Record::Contact(Contact {
                id,
                name: None,
                email: None,
                title: None,
                timezone: None,
                role: None,
                account: None,
                fields: FieldMap::new(),
                created_at: None,
                engagement: Engagement::default(),
                unsubscribed_at: None,
            }),
            RecordKind::Account => Record::Account(Account {
                id,
                name: None,
                domain: None,
                industry: None,
                segment: None,
                territory: None,
                employees: None,
                owner: None,
                fields: FieldMap::new(),
                created_at: None,
                engagement: Engagement::default(),
            }),
            RecordKind::Person => Record::Person(Person {
                id,
                name: None,
                email: None,
                roles: BTreeSet::new(),
                timezone: None,
                key_person: false,
                available: true,
                capacity: None,
                manager: None,
                out_of_office: Vec::new(),
                working_hours: None,
                created_at: None,
            }),
        }
    }

    /// Adds one event, which must not be earlier than any event applied before it.
    pub fn apply(&mut self, event: &Event) {
        match self {
            Record::Deal(d) => d.apply(event),
            Record::Lead(l) => l.apply(event),
            Record::Contact(c) => c.apply(event),
            Record::Account(a) => a.apply(event),
            Record::Person(p) => p.apply(event),
        }
    }

    /// Derives a record's state from all of its events, given in occurrence order.
    pub fn fold<'a>(key: &RecordKey, events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut record = Record::empty(key);
        for event in events {
            record.apply(event);
        }
        record
    }

    pub fn id(&self) -> &RecordId {
        match self {
            Record::Lead(r) => &r.id,
            Record::Contact(r) => &r.id,
            Record::Account(r) => &r.id,
            Record::Deal(r) => &r.id,
            Record::Person(r) => &r.id,
        }
    }

    pub fn key(&self) -> RecordKey {
        RecordKey::new(self.kind(), self.id().clone())
    }

    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Lead(_) => RecordKind::Lead,
            Record::Contact(_) => RecordKind::Contact,
            Record::Account(_) => RecordKind::Account,
            Record::Deal(_) => RecordKind::Deal,
            Record::Person(_) => RecordKind::Person,
        }
    }

    /// The stage, for deals; used to index and filter.
    pub fn stage(&self) -> Option<&Stage> {
        match self {
            Record::Deal(d) => d.stage.as_ref(),
            _ => None,
        }
    }

    /// Its name as people read it: the name it was given, else its id.
    pub fn name(&self) -> &str {
        let name = match self {
            Record::Deal(d) => d.name.as_deref(),
            Record::Lead(l) => l.name.as_deref(),
            Record::Contact(c) => c.name.as_deref(),
            Record::Account(a) => a.name.as_deref(),
            Record::Person(p) => p.name.as_deref(),
        };
        name.unwrap_or_else(|| self.id().as_str())
    }

    /// The owning team member, for records that have one.
    pub fn owner(&self) -> Option<&RecordId> {
        match self {
            Record::Deal(d) => d.owner.as_ref(),
            Record::Lead(l) => l.owner.as_ref(),
            Record::Account(a) => a.owner.as_ref(),
            Record::Contact(_) | Record::Person(_) => None,
        }
    }
}

/// Facts about a deal that depend on "now" as well as on its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealFacts {
    pub days_in_stage: Option<i64>,
    pub days_since_activity: Option<i64>,
    pub days_open: Option<i64>,
    pub stakeholder_count: usize,
    pub objection_count: usize,
    pub intervention_count: usize,
}

impl DealFacts {
    pub fn at(deal: &Deal, now: Timestamp) -> Self {
        let entered = deal.stage_history.last().map(|v| v.entered_at);
        let last = deal.engagement.last_activity_at.or(deal.created_at);
        let end = deal.closed_at.unwrap_or(now);
        Self {
            days_in_stage: entered.map(|t| t.days_until(now)),
            days_since_activity: last.map(|t| t.days_until(now)),
            days_open: deal.created_at.map(|t| t.days_until(end)),
            stakeholder_count: deal.stakeholders.len(),
            objection_count: deal.engagement.objections.len(),
            intervention_count: deal.interventions.len(),
        }
    }
}

/// Facts about a lead, contact or account that depend on "now".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityFacts {
    pub days_since_activity: Option<i64>,
    pub days_since_created: Option<i64>,
    pub objection_count: usize,
}

impl ActivityFacts {
    fn at(created_at: Option<Timestamp>, engagement: &Engagement, now: Timestamp) -> Self {
        let last = engagement.last_activity_at.or(created_at);
        Self {
            days_since_activity: last.map(|t| t.days_until(now)),
            days_since_created: created_at.map(|t| t.days_until(now)),
            objection_count: engagement.objections.len(),
        }
    }
}

/// The time-dependent facts of a record, as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Facts {
    Deal(DealFacts),
    Activity(ActivityFacts),
}

impl Record {
    /// Facts that depend on `now`; people have none.
    pub fn facts(&self, now: Timestamp) -> Option<Facts> {
        match self {
            Record::Deal(d) => Some(Facts::Deal(DealFacts::at(d, now))),
            Record::Lead(l) => Some(Facts::Activity(ActivityFacts::at(
                l.created_at,
                &l.engagement,
                now,
            ))),
            Record::Contact(c) => Some(Facts::Activity(ActivityFacts::at(
                c.created_at,
                &c.engagement,
                now,
            ))),
            Record::Account(a) => Some(Facts::Activity(ActivityFacts::at(
                a.created_at,
                &a.engagement,
                now,
            ))),
            Record::Person(_) => None,
        }
    }
}
