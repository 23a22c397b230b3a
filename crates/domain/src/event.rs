//! Events: immutable facts about leads, contacts, accounts, deals and people.
//!
//! Every event kind is declared once, in the table passed to `event_types!`: its wire name and
//! its payload type. The macro derives the closed [`EventType`] enum, the [`EventBody`] enum
//! carrying typed payloads, and the dispatch that deserialises a payload for a given type.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{IdError, RecordId, RecordKey, RecordKind, Role, Stage};
use crate::money::{Currency, Money, MoneyError};
use crate::time::{Date, Timestamp};

/// The version of the stored event envelope. A reader meeting a newer version refuses it
/// rather than misreading it; an older one is upgraded when a new version is introduced.
pub const ENVELOPE_VERSION: u32 = 1;

/// Custom fields, as the source system names them. A `null` value removes the field.
pub type FieldMap = BTreeMap<String, serde_json::Value>;

/// pipewright's own id for an event (a time-ordered UUID v7, assigned at ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub uuid::Uuid);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A non-negative decimal amount in major units, as it arrives on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Amount(f64);

impl TryFrom<f64> for Amount {
    type Error = MoneyError;
    fn try_from(v: f64) -> Result<Self, MoneyError> {
        Money::from_major(v, Currency::DEFAULT).map(|_| Amount(v))
    }
}

impl From<Amount> for f64 {
    fn from(a: Amount) -> f64 {
        a.0
    }
}

impl Amount {
    pub fn to_money(self, currency: Option<Currency>) -> Money {
        // Validated at construction, so the conversion cannot fail here.
        Money::from_major(self.0, currency.unwrap_or(Currency::DEFAULT)).unwrap_or(Money {
            minor: 0,
            currency: Currency::DEFAULT,
        })
    }
}

/// The kinds of objection a buyer raises; playbooks answer each kind differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectionKind {
    Pricing,
    Implementation,
    Legal,
    Security,
    Competitor,
    Timing,
    Other,
}

impl ObjectionKind {
    pub const ALL: [ObjectionKind; 7] = [
        ObjectionKind::Pricing,
        ObjectionKind::Implementation,
        ObjectionKind::Legal,
        ObjectionKind::Security,
        ObjectionKind::Competitor,
        ObjectionKind::Timing,
        ObjectionKind::Other,
    ];

    /// The kind as events and playbooks write it (`pricing`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectionKind::Pricing => "pricing",
            ObjectionKind::Implementation => "implementation",
            ObjectionKind::Legal => "legal",
            ObjectionKind::Security => "security",
            ObjectionKind::Competitor => "competitor",
            ObjectionKind::Timing => "timing",
            ObjectionKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

    /// The direction as events write it (`inbound`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    /// Where the lead came from (inbound form, event, outbound list, referral, …).
    pub origin: Option<String>,
    pub owner: Option<RecordId>,
    pub status: Option<String>,
    #[serde(default)]
    pub fields: FieldMap,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub title: Option<String>,
    /// IANA time zone name, such as "Europe/Berlin".
    pub timezone: Option<String>,
    /// Buying role: champion, economic_buyer, decision_maker, influencer, user, …
    pub role: Option<String>,
    #[serde(default)]
    pub fields: FieldMap,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFields {
    pub name: Option<String>,
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub segment: Option<String>,
    pub territory: Option<String>,
    pub employees: Option<u32>,
    pub owner: Option<RecordId>,
    #[serde(default)]
    pub fields: FieldMap,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealFields {
    pub name: Option<String>,
    pub pipeline: Option<String>,
    /// A stage given here is a stage change like `deal.stage_changed`.
    pub stage: Option<Stage>,
    pub owner: Option<RecordId>,
    pub amount: Option<Amount>,
    pub currency: Option<Currency>,
    pub close_date: Option<Date>,
    /// Contacts involved in the deal (stakeholders).
    #[serde(default)]
    pub contacts: Vec<RecordId>,
    /// The buying role of contacts on this deal (`{"C-1": "economic_buyer"}`): champion,
    /// economic_buyer, decision_maker, influencer, user, … A contact named here is on the deal.
    #[serde(default)]
    pub roles: BTreeMap<RecordId, String>,
    #[serde(default)]
    pub fields: FieldMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageChange {
    pub stage: Stage,
    /// The stage the source believes the deal left; informational only.
    pub from: Option<Stage>,
    /// A move past the stage's qualification gate, by someone the gate permits, with why.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub gate_override: Option<GateOverride>,
}

/// Who moves a deal past an unmet gate, and why. The store records the criteria that were
/// unmet at the time in `unmet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateOverride {
    pub by: RecordId,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmet: Vec<String>,
}

/// A move into a gated stage that the gate refused: the deal stayed where it was. Recorded
/// in place of the move (same source and source id), or beside a `deal.updated` whose stage
/// was taken out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateBlocked {
    /// The stage the move wanted.
    pub stage: Stage,
    /// The stage the deal stayed in.
    pub from: Option<Stage>,
    /// The playbook declaring the gate.
    pub gate: String,
    /// The criteria that were not met, by name.
    pub unmet: Vec<String>,
    /// The type of the event that tried to move the deal.
    pub attempted: String,
    /// An override that was asked for and refused, with why it was refused.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub gate_override: Option<GateOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealClosed {
    pub amount: Option<Amount>,
    pub currency: Option<Currency>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailFields {
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    /// An automatic reply (out of office, auto-responder) is not a human reply. The sender of
    /// the event may say so; pipewright also recognises one by its headers and subject
    /// ([`EmailFields::is_automatic`]).
    #[serde(default)]
    pub auto_reply: bool,
    /// The message's header fields, as received (names in any case), for recognising
    /// automatic replies and bounces.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Subjects that out-of-office messages and auto-responders start with, as the common mail
/// systems write them (English, German, French, Spanish, Italian, Dutch).
const AUTOMATIC_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto:",
    "away from the office",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "automatisch antwoord",
    "afwezigheidsbericht",
];

/// Subjects of delivery failure reports from the common mail servers.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undelivered mail returned to sender",
    "delivery status notification (failure)",
    "mail delivery failed",
    "undeliverable:",
    "returned mail:",
    "failure notice",
    "mail delivery subsystem",
];

impl EmailFields {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    fn subject_starts_with(&self, prefixes: &[&str]) -> bool {
        let subject = self
            .subject
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_lowercase();
        prefixes.iter().any(|p| subject.starts_with(p))
    }

    /// Sent by a machine rather than a person: the sender said so (`auto_reply`), or
    /// - `Auto-Submitted` is present with any value but `no` (RFC 3834, section 5);
    /// - `X-Autoreply`, `X-Autorespond` or `X-Auto-Response-Suppress` is present (set by common
    ///   auto-responders and by Exchange on its automatic replies);
    /// - `Precedence` is `auto_reply`, `bulk` or `junk`;
    /// - the subject starts the way out-of-office replies do ("Automatic reply:", "Out of
    ///   Office", "Abwesenheitsnotiz", …);
    /// - or it is a bounce.
    pub fn is_automatic(&self) -> bool {
        self.auto_reply
            || self
                .header("auto-submitted")
                .is_some_and(|v| !v.eq_ignore_ascii_case("no"))
            || ["x-autoreply", "x-autorespond", "x-auto-response-suppress"]
                .iter()
                .any(|h| self.header(h).is_some())
            || self.header("precedence").is_some_and(|v| {
                ["auto_reply", "bulk", "junk"]
                    .iter()
                    .any(|p| v.eq_ignore_ascii_case(p))
            })
            || self.subject_starts_with(AUTOMATIC_SUBJECTS)
            || self.is_bounce()
    }

    /// A report that a message could not be delivered: a delivery status notification
    /// (`Content-Type: multipart/report; report-type=delivery-status`, RFC 3464) or the subject
    /// mail servers give their failure reports.
    pub fn is_bounce(&self) -> bool {
        self.header("content-type").is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.starts_with("multipart/report") && v.contains("delivery-status")
        }) || self.subject_starts_with(BOUNCE_SUBJECTS)
    }
}

/// A contact (or a lead) asked to receive no more automated email: through the link or the
/// one-click `List-Unsubscribe` header of an email pipewright sent, or recorded elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribed {
    /// The address that unsubscribed (the contact's own when absent).
    pub email: Option<String>,
    /// How: `link`, `one_click`, `reply`, `import`, …
    pub via: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkClicked {
    pub url: String,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingFields {
    pub title: Option<String>,
    pub scheduled_for: Option<Timestamp>,
    pub duration_minutes: Option<u32>,
    /// Contacts who attend (or attended); they count as stakeholders of the deal.
    #[serde(default)]
    pub attendees: Vec<RecordId>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallFields {
    pub direction: Option<Direction>,
    pub duration_minutes: Option<u32>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteFields {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectionFields {
    pub kind: ObjectionKind,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentViewed {
    pub url: Option<String>,
    pub asset: Option<String>,
    pub title: Option<String>,
    pub seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSubmitted {
    pub form: String,
    #[serde(default)]
    pub fields: FieldMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterventionFields {
    /// The person who stepped in.
    pub person: RecordId,
    /// Why they stepped in (went-quiet, pricing, legal-stall, …).
    pub reason: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonFields {
    pub name: Option<String>,
    pub email: Option<String>,
    pub roles: Option<Vec<Role>>,
    /// IANA time zone name.
    pub timezone: Option<String>,
    /// Key people are the ones whose interventions pipewright measures.
    pub key_person: Option<bool>,
    pub available: Option<bool>,
    /// How many open deals this person can carry.
    pub capacity: Option<u32>,
    pub manager: Option<RecordId>,
    /// Periods away (they replace the ones known before); routing and escalations pass over
    /// a person while one lasts.
    pub out_of_office: Option<Vec<crate::Absence>>,
    /// The days and hours they work, in their `timezone` (`mon-fri 09:00-17:00`).
    pub working_hours: Option<crate::WorkingHours>,
}

/// A deal or lead given to an owner by pipewright's routing, with the rule and why that
/// person: the record of every assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assigned {
    pub owner: RecordId,
    /// The owner before, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<RecordId>,
    /// The rule that decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `round_robin`, `weighted`, `least_busy` or `fallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Why this person: the strategy's choice and who was passed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

macro_rules! event_types {
    ($( $variant:ident($payload:ty) = $name:literal ),* $(,)?) => {
        /// The closed set of event types pipewright understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $( #[serde(rename = $name)] $variant, )*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(Self::$variant),)* _ => None }
            }
        }

        /// An event's typed payload. Stored adjacently tagged: `{"type": …, "data": {…}}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum EventBody {
            $( #[serde(rename = $name)] $variant($payload), )*
        }

        impl EventBody {
            pub fn event_type(&self) -> EventType {
                match self { $(EventBody::$variant(_) => EventType::$variant,)* }
            }

            /// Deserialises the payload of an event of type `ty`.
            pub fn deserialize_data<'de, D: Deserializer<'de>>(
                ty: EventType,
                d: D,
            ) -> Result<Self, D::Error> {
                match ty { $(EventType::$variant => <$payload>::deserialize(d).map(EventBody::$variant),)* }
            }
        }
    };
}

event_types! {
    LeadCreated(LeadFields) = "lead.created",
    LeadUpdated(LeadFields) = "lead.updated",
    ContactCreated(ContactFields) = "contact.created",
    ContactUpdated(ContactFields) = "contact.updated",
    AccountCreated(AccountFields) = "account.created",
    AccountUpdated(AccountFields) = "account.updated",
    DealCreated(DealFields) = "deal.created",
    DealUpdated(DealFields) = "deal.updated",
    DealStageChanged(StageChange) = "deal.stage_changed",
    DealWon(DealClosed) = "deal.won",
    DealLost(DealClosed) = "deal.lost",
    EmailSent(EmailFields) = "email.sent",
    EmailReceived(EmailFields) = "email.received",
    EmailOpened(EmailFields) = "email.opened",
    LinkClicked(LinkClicked) = "link.clicked",
    ContactUnsubscribed(Unsubscribed) = "contact.unsubscribed",
    MeetingBooked(MeetingFields) = "meeting.booked",
    MeetingHeld(MeetingFields) = "meeting.held",
    CallLogged(CallFields) = "call.logged",
    NoteAdded(NoteFields) = "note.added",
    ObjectionRaised(ObjectionFields) = "objection.raised",
    ObjectionResolved(ObjectionFields) = "objection.resolved",
    ContentViewed(ContentViewed) = "content.viewed",
    FormSubmitted(FormSubmitted) = "form.submitted",
    InterventionLogged(InterventionFields) = "intervention.logged",
    OwnerAssigned(Assigned) = "owner.assigned",
    GateBlocked(GateBlocked) = "gate.blocked",
    PersonCreated(PersonFields) = "person.created",
    PersonUpdated(PersonFields) = "person.updated",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did what the event records, when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    /// A team member (by person id, usually their email address).
    Person(RecordId),
    /// A buyer-side contact (by contact id).
    Contact(RecordId),
}

/// The records an event concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<RecordId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<RecordId>,
}

/// A reference the event's type needs is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RefError {
    /// The envelope field to fill in (`deal`, `lead`, …).
    pub field: &'static str,
    pub message: String,
}

impl Refs {
    pub fn get(&self, kind: RecordKind) -> Option<&RecordId> {
        match kind {
            RecordKind::Deal => self.deal.as_ref(),
            RecordKind::Lead => self.lead.as_ref(),
            RecordKind::Contact => self.contact.as_ref(),
            RecordKind::Account => self.account.as_ref(),
            RecordKind::Person => self.person.as_ref(),
        }
    }

    /// Every record the event concerns, in a fixed order.
    pub fn keys(&self) -> Vec<RecordKey> {
        RecordKind::ALL
            .into_iter()
            .filter_map(|kind| self.get(kind).map(|id| RecordKey::new(kind, id.clone())))
            .collect()
    }

    /// Checks that the references an event of type `ty` needs are present.
    pub fn check_for(&self, ty: EventType) -> Result<(), RefError> {
        use EventType::*;
        let required = match ty {
            LeadCreated | LeadUpdated => Some(RecordKind::Lead),
            ContactCreated | ContactUpdated => Some(RecordKind::Contact),
            AccountCreated | AccountUpdated => Some(RecordKind::Account),
            DealCreated | DealUpdated | DealStageChanged | DealWon | DealLost
            | InterventionLogged | GateBlocked => Some(RecordKind::Deal),
            PersonCreated | PersonUpdated => Some(RecordKind::Person),
            ObjectionRaised | ObjectionResolved | OwnerAssigned => {
                return if self.deal.is_some() || self.lead.is_some() {
                    Ok(())
                } else {
                    Err(RefError {
                        field: "deal",
                        message: format!("a {ty} event needs a `deal` or a `lead` reference"),
                    })
                };
            }
            _ => None,
        };
        match required {
            Some(kind) if self.get(kind).is_none() => Err(RefError {
                field: kind.as_str(),
                message: format!("a {ty} event needs a `{kind}` reference"),
            }),
            Some(_) => Ok(()),
            None if self.deal.is_none()
                && self.lead.is_none()
                && self.contact.is_none()
                && self.account.is_none() =>
            {
                Err(RefError {
                    field: "deal",
                    message: format!(
                        "a {ty} event needs at least one of `deal`, `lead`, `contact`, `account`"
                    ),
                })
            }
            None => Ok(()),
        }
    }
}

/// An event as pipewright stores it: the versioned envelope around a typed payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    #[serde(rename = "v")]
    pub version: u32,
    pub id: EventId,
    /// The system the event came from (`hubspot`, `gmail`, `api`, …).
    pub source: String,
    /// The event's id in its source: (source, source_id) is unique in the log.
    pub source_id: String,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default)]
    pub refs: Refs,
    #[serde(flatten)]
    pub body: EventBody,
}

/// Read field by field, the payload straight into its type once `type` is known (it comes
/// first in what the store writes; a `data` before it is held until then). Reading every log
/// entry is most of a replay's or a report's time: a derived reader of the flattened body
/// copied each event into an intermediate tree first, at twice the cost. Unknown fields are
/// ignored, as they were.
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            #[serde(rename = "v")]
            Version,
            Id,
            Source,
            SourceId,
            OccurredAt,
            ReceivedAt,
            Actor,
            Refs,
            Type,
            Data,
            #[serde(other)]
            Other,
        }

        /// The payload of an event of a known type.
        struct Payload(EventType);

        impl<'de> serde::de::DeserializeSeed<'de> for Payload {
            type Value = EventBody;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EventBody, D::Error> {
                EventBody::deserialize_data(self.0, d)
            }
        }

        struct Envelope;

        impl<'de> serde::de::Visitor<'de> for Envelope {
            type Value = Event;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Event, A::Error> {
                use serde::de::Error;
                fn once<T, E: Error>(
                    slot: &mut Option<T>,
                    name: &'static str,
                    value: T,
                ) -> Result<(), E> {
                    match slot.replace(value) {
                        Some(_) => Err(E::duplicate_field(name)),
                        None => Ok(()),
                    }
                }
                let (mut version, mut id, mut source, mut source_id) = (None, None, None, None);
                let (mut occurred_at, mut received_at, mut actor, mut refs) =
                    (None, None, None, None);
                let mut ty: Option<EventType> = None;
                let mut body: Option<EventBody> = None;
                let mut early: Option<serde_json::Value> = None;
                while let Some(field) = map.next_key()? {
                    match field {
                        Field::Version => once(&mut version, "v", map.next_value()?)?,
                        Field::Id => once(&mut id, "id", map.next_value()?)?,
                        Field::Source => once(&mut source, "source", map.next_value()?)?,
                        Field::SourceId => once(&mut source_id, "source_id", map.next_value()?)?,
                        Field::OccurredAt => {
                            once(&mut occurred_at, "occurred_at", map.next_value()?)?
                        }
                        Field::ReceivedAt => {
                            once(&mut received_at, "received_at", map.next_value()?)?
                        }
                        Field::Actor => {
                            once(&mut actor, "actor", map.next_value::<Option<Actor>>()?)?
                        }
                        Field::Refs => once(&mut refs, "refs", map.next_value()?)?,
                        Field::Type => once(&mut ty, "type", map.next_value()?)?,
                        Field::Data => {
                            if body.is_some() || early.is_some() {
                                return Err(A::Error::duplicate_field("data"));
                            }
                            match ty {
                                Some(ty) => body = Some(map.next_value_seed(Payload(ty))?),
                                None => early = Some(map.next_value()?),
                            }
                        }
                        Field::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let ty = ty.ok_or_else(|| A::Error::missing_field("type"))?;
                let body = match (body, early) {
                    (Some(body), _) => body,
                    (None, Some(data)) => {
                        EventBody::deserialize_data(ty, data).map_err(A::Error::custom)?
                    }
                    (None, None) => return Err(A::Error::missing_field("data")),
                };
                Ok(Event {
                    version: version.ok_or_else(|| A::Error::missing_field("v"))?,
                    id: id.ok_or_else(|| A::Error::missing_field("id"))?,
                    source: source.ok_or_else(|| A::Error::missing_field("source"))?,
                    source_id: source_id.ok_or_else(|| A::Error::missing_field("source_id"))?,
                    occurred_at: occurred_at
                        .ok_or_else(|| A::Error::missing_field("occurred_at"))?,
                    received_at: received_at
                        .ok_or_else(|| A::Error::missing_field("received_at"))?,
                    actor: actor.flatten(),
                    refs: refs.unwrap_or_default(),
                    body,
                })
            }
        }

        d.deserialize_map(Envelope)
    }
}

impl Event {
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }

    /// Checks a source or source id: the de-duplication key must be short, printable text.
    pub fn check_source_text(s: &str, max: usize) -> Result<(), IdError> {
        RecordId::parse(s).and_then(|_| {
            let len = s.chars().count();
            if len > max {
                Err(IdError::TooLong { max, len })
            } else {
                Ok(())
            }
        })
    }
}

/// An event as received, before the log gives it an id and a receipt time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub source: String,
    pub source_id: String,
    pub occurred_at: Timestamp,
    pub actor: Option<Actor>,
    pub refs: Refs,
    pub body: EventBody,
}

impl NewEvent {
    pub fn stamp(self, id: EventId, received_at: Timestamp) -> Event {
        Event {
            version: ENVELOPE_VERSION,
            id,
            source: self.source,
            source_id: self.source_id,
            occurred_at: self.occurred_at,
            received_at,
            actor: self.actor,
            refs: self.refs,
            body: self.body,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn enum_names_are_the_wire_names() {
        for d in super::Direction::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for k in super::ObjectionKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in crate::DealStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    fn email(subject: &str, headers: &[(&str, &str)]) -> EmailFields {
        EmailFields {
            subject: Some(subject.into()),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..EmailFields::default()
        }
    }

    #[test]
    fn automatic_replies_are_recognised_by_headers_and_subjects() {
        // RFC 3834: any Auto-Submitted value but "no".
        assert!(email("Re: pricing", &[("Auto-Submitted", "auto-replied")]).is_automatic());
        assert!(email("Re: pricing", &[("auto-submitted", "auto-generated")]).is_automatic());
        assert!(!email("Re: pricing", &[("Auto-Submitted", "no")]).is_automatic());
        // Exchange's automatic reply, and common auto-responders.
        assert!(
            email(
                "Automatic reply: Globex rollout",
                &[("X-Auto-Response-Suppress", "All")]
            )
            .is_automatic()
        );
        assert!(email("Re: Globex", &[("X-Autoreply", "yes")]).is_automatic());
        assert!(email("Re: Globex", &[("Precedence", "auto_reply")]).is_automatic());
        assert!(email("Newsletter", &[("Precedence", "Bulk")]).is_automatic());
        // By subject alone, in several languages.
        for subject in [
            "Out of Office: back on Monday",
            "Abwesenheitsnotiz: Globex",
            "Réponse automatique : Globex",
            "AUTO: away until 2 December",
        ] {
            assert!(email(subject, &[]).is_automatic(), "{subject}");
        }
        // A person writing about an office, or replying normally, is a person.
        assert!(!email("Re: out of office hours support?", &[]).is_automatic());
        assert!(!email("Re: Globex rollout", &[("Precedence", "list")]).is_automatic());
        // The sender's own flag still counts.
        let flagged = EmailFields {
            auto_reply: true,
            ..EmailFields::default()
        };
        assert!(flagged.is_automatic());
    }

    #[test]
    fn bounces_are_recognised_and_are_automatic() {
        let dsn = email(
            "Returned mail: see transcript for details",
            &[(
                "Content-Type",
                "multipart/report; report-type=delivery-status; boundary=x",
            )],
        );
        assert!(dsn.is_bounce() && dsn.is_automatic());
        assert!(email("Undelivered Mail Returned to Sender", &[]).is_bounce());
        assert!(email("Delivery Status Notification (Failure)", &[]).is_bounce());
        assert!(!email("Re: delivery dates", &[]).is_bounce());
    }

    use super::*;

    #[test]
    fn every_type_name_parses_back() {
        for ty in EventType::ALL {
            assert_eq!(EventType::parse(ty.as_str()), Some(*ty));
        }
        assert_eq!(EventType::ALL.len(), 29);
    }

    #[test]
    fn refs_required_by_type() {
        let none = Refs::default();
        assert_eq!(
            none.check_for(EventType::DealWon).unwrap_err().field,
            "deal"
        );
        assert_eq!(
            none.check_for(EventType::PersonCreated).unwrap_err().field,
            "person"
        );
        assert!(none.check_for(EventType::EmailSent).is_err());
        let lead = Refs {
            lead: Some(RecordId::parse("L1").unwrap()),
            ..Refs::default()
        };
        assert!(lead.check_for(EventType::ObjectionRaised).is_ok());
        assert!(lead.check_for(EventType::EmailSent).is_ok());
        assert!(lead.check_for(EventType::DealCreated).is_err());
    }

    #[test]
    fn stored_envelope_round_trips() {
        let event = Event {
            version: ENVELOPE_VERSION,
            id: EventId(uuid::Uuid::nil()),
            source: "crm".into(),
            source_id: "1".into(),
            occurred_at: Timestamp::from_millis(5),
            received_at: Timestamp::from_millis(6),
            actor: Some(Actor::Person(RecordId::parse("maya@acme.example").unwrap())),
            refs: Refs {
                deal: Some(RecordId::parse("D1").unwrap()),
                ..Refs::default()
            },
            body: EventBody::ObjectionRaised(ObjectionFields {
                kind: ObjectionKind::Pricing,
                text: None,
            }),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""type":"objection.raised""#), "{json}");
        assert!(json.contains(r#""v":1"#), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        // Fields in any order, `data` before `type`, unknown fields ignored: the same event.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let object = value.as_object().unwrap();
        let field = |k: &str| format!("{}:{}", serde_json::Value::from(k), object[k]);
        let mut fields = vec![field("data"), r#""later":{"ignored":[1,2]}"#.to_owned()];
        fields.extend(
            object
                .keys()
                .filter(|k| !["data", "type"].contains(&k.as_str()))
                .map(|k| field(k)),
        );
        fields.push(field("type"));
        let text = format!("{{{}}}", fields.join(","));
        assert!(text.starts_with(r#"{"data":"#), "{text}");
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn a_stored_event_missing_or_repeating_a_field_is_refused_by_name() {
        let json = concat!(
            r#"{"v":1,"id":"01a20ebb-2ab4-70d0-961d-cf45d8de6c6d","source":"api","source_id":"x","#,
            r#""occurred_at":"2026-01-15T00:07:10Z","received_at":"2026-01-15T00:07:11Z","#,
            r#""type":"note.added","data":{"text":"hi"}}"#
        );
        let event: Event = serde_json::from_str(json).unwrap();
        assert_eq!(event.refs, Refs::default());
        assert_eq!(event.actor, None);
        let error = |text: &str| serde_json::from_str::<Event>(text).unwrap_err().to_string();
        assert!(error(&json.replace(r#""source":"api","#, "")).contains("missing field `source`"));
        assert!(
            error(&json.replace(r#""type":"note.added","#, "")).contains("missing field `type`")
        );
        assert!(
            error(&json.replace(r#","data":{"text":"hi"}"#, "")).contains("missing field `data`")
        );
        assert!(
            error(&json.replace(r#""v":1,"#, r#""v":1,"v":2,"#)).contains("duplicate field `v`")
        );
        assert!(error(&json.replace("note.added", "note.removed")).contains("unknown variant"));
        assert!(error(&json.replace(r#""text":"hi""#, r#""text":7"#)).contains("invalid type"));
    }
}
