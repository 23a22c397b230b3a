//! The facts conditions read, each with its type, declared once: the checker takes names and
//! types from these tables, and the engine builds a record's facts by walking them (its tests
//! hold every fact it produces to the type declared here).
//!
//! Any fact may be null: a deal without an owner has `deal.owner == null`.

use domain::{DealStatus, Direction, EventType, ObjectionKind};

/// What a fact holds, as CEL sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Int,
    Double,
    Bool,
    /// A moment as epoch milliseconds (an int), comparable with `now`.
    Time,
    /// A calendar date written `YYYY-MM-DD` (a string).
    Date,
    /// A string that is one of a closed set of values.
    Enum(Values),
    List(&'static Type),
    /// A map with these fields.
    Object(&'static [Fact]),
    /// A map whose keys are the team's own (custom fields, a payload, headers).
    Map,
    /// A value of no declared shape.
    Any,
}

/// The closed sets of values an [`Type::Enum`] fact takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// The stages the playbook set declares, with closed_won and closed_lost.
    Stages,
    /// A deal's status: open, won, lost.
    DealStatus,
    /// The kinds of objection.
    ObjectionKinds,
    /// The risk warnings.
    Warnings,
    EventTypes,
    /// A call's direction: inbound, outbound.
    Directions,
}

impl Values {
    /// The values, in their declared order; `stages` are the set's.
    pub fn list<'a>(self, stages: &[&'a str]) -> Vec<&'a str> {
        match self {
            Values::Stages => stages.to_vec(),
            Values::DealStatus => DealStatus::ALL.iter().map(|s| s.as_str()).collect(),
            Values::ObjectionKinds => ObjectionKind::ALL.iter().map(|k| k.as_str()).collect(),
            Values::Warnings => risk::Kind::ALL.iter().map(|k| k.as_str()).collect(),
            Values::EventTypes => EventType::ALL.iter().map(|t| t.as_str()).collect(),
            Values::Directions => Direction::ALL.iter().map(|d| d.as_str()).collect(),
        }
    }

    /// What the values are, for messages: "the stages", "an objection's kinds".
    pub fn what(self) -> &'static str {
        match self {
            Values::Stages => "the stages the playbooks declare",
            Values::DealStatus => "a deal's statuses",
            Values::ObjectionKinds => "the kinds of objection",
            Values::Warnings => "the risk warnings",
            Values::EventTypes => "the event types",
            Values::Directions => "a call's directions",
        }
    }
}

/// One fact: its name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fact {
    pub name: &'static str,
    pub ty: Type,
}

const fn fact(name: &'static str, ty: Type) -> Fact {
    Fact { name, ty }
}

/// The fact named `name` in `facts`.
pub fn find<'f>(facts: &'f [Fact], name: &str) -> Option<&'f Fact> {
    facts.iter().find(|f| f.name == name)
}

/// The names of `facts`, in order.
pub fn names(facts: &[Fact]) -> Vec<&'static str> {
    facts.iter().map(|f| f.name).collect()
}

use Type::{Bool, Date, Double, Int, List, Map, Object, String as Str, Time};

const STAGE: Type = Type::Enum(Values::Stages);
const STRINGS: Type = List(&Str);
const OBJECTIONS: Type = List(&Object(&[
    fact("kind", Type::Enum(Values::ObjectionKinds)),
    fact("at", Time),
]));
/// Who moved a deal past a gate, and why.
const OVERRIDE: Type = Object(&[fact("by", Str), fact("reason", Str), fact("unmet", STRINGS)]);

/// A record's own facts followed by those of what deals and leads both have: their engagement
/// and their owner's assignment (`engagement` and `assignment` in the engine's `facts.rs`).
macro_rules! record_facts {
    ($($fact:expr),* $(,)?) => {
        &[
            $($fact,)*
            fact("last_activity_at", Time),
            fact("last_inbound_at", Time),
            fact("last_outbound_at", Time),
            fact("emails_sent", Int),
            fact("emails_received", Int),
            fact("meetings_booked", Int),
            fact("meetings_held", Int),
            fact("calls", Int),
            fact("notes", Int),
            fact("content_views", Int),
            fact("objections", OBJECTIONS),
            fact("assigned_at", Time),
            fact("assigned_by", Str),
            fact("first_touch_at", Time),
        ]
    };
}

/// The facts of a deal. `fields` holds custom fields, whose names are the team's own.
pub const DEAL_FACTS: &[Fact] = record_facts!(
    fact("id", Str),
    fact("name", Str),
    fact("pipeline", Str),
    fact("stage", STAGE),
    fact("status", Type::Enum(Values::DealStatus)),
    fact("owner", Str),
    fact("amount", Double),
    fact("currency", Str),
    fact("close_date", Date),
    fact("close_date_pushes", Int),
    fact("account", Str),
    fact("lead", Str),
    fact("contacts", STRINGS),
    fact("stakeholders", STRINGS),
    fact("fields", Map),
    fact("created_at", Time),
    fact("closed_at", Time),
    fact("days_in_stage", Int),
    fact("days_since_activity", Int),
    fact("days_open", Int),
    fact(
        "interventions",
        List(&Object(&[
            fact("person", Str),
            fact("reason", Str),
            fact("at", Time),
        ])),
    ),
    // The latest move a gate refused.
    fact(
        "blocked",
        Object(&[
            fact("stage", STAGE),
            fact("unmet", STRINGS),
            fact("at", Time),
        ]),
    ),
    fact(
        "risk",
        Object(&[
            fact("score", Double),
            fact("at_risk", Bool),
            fact("warnings", List(&Type::Enum(Values::Warnings))),
            fact(
                "reasons",
                List(&Object(&[
                    fact("warning", Type::Enum(Values::Warnings)),
                    fact("says", Str),
                    fact("weight", Double),
                    fact("since", Time),
                ])),
            ),
        ]),
    ),
);

/// The facts of a lead. Its `status` is the source system's own (`converted` and
/// `disqualified` close it).
pub const LEAD_FACTS: &[Fact] = record_facts!(
    fact("id", Str),
    fact("name", Str),
    fact("email", Str),
    fact("company", Str),
    fact("title", Str),
    fact("origin", Str),
    fact("owner", Str),
    fact("status", Str),
    fact("converted_to", Str),
    fact("fields", Map),
    fact("created_at", Time),
    fact("days_since_activity", Int),
    fact("days_since_created", Int),
);

/// Fields every event has; its payload fields ([`payload_facts`]) are read beside them
/// (`event.kind`) and again under `data`.
pub const EVENT_FACTS: &[Fact] = &[
    fact("type", Type::Enum(Values::EventTypes)),
    fact("source", Str),
    fact("source_id", Str),
    fact("occurred_at", Time),
    // `{"person": ID}` or `{"contact": ID}`.
    fact("actor", Map),
    fact("data", Map),
];

/// A table of facts as a `'static` slice, where a `const fn` call is not promoted.
macro_rules! facts {
    ($($fact:expr),* $(,)?) => {{
        const FACTS: &[Fact] = &[$($fact),*];
        FACTS
    }};
}

/// The payload fields of each event type, as the event's JSON has them (moments in RFC 3339
/// are strings there).
pub fn payload_facts(t: EventType) -> &'static [Fact] {
    use EventType::*;
    match t {
        LeadCreated | LeadUpdated => facts![
            fact("name", Str),
            fact("email", Str),
            fact("company", Str),
            fact("title", Str),
            fact("origin", Str),
            fact("owner", Str),
            fact("status", Str),
            fact("fields", Map),
        ],
        ContactCreated | ContactUpdated => facts![
            fact("name", Str),
            fact("email", Str),
            fact("title", Str),
            fact("timezone", Str),
            fact("role", Str),
            fact("fields", Map),
        ],
        AccountCreated | AccountUpdated => facts![
            fact("name", Str),
            fact("domain", Str),
            fact("industry", Str),
            fact("segment", Str),
            fact("territory", Str),
            fact("employees", Int),
            fact("owner", Str),
            fact("fields", Map),
        ],
        DealCreated | DealUpdated => facts![
            fact("name", Str),
            fact("pipeline", Str),
            fact("stage", STAGE),
            fact("owner", Str),
            fact("amount", Double),
            fact("currency", Str),
            fact("close_date", Date),
            fact("contacts", STRINGS),
            fact("roles", Map),
            fact("fields", Map),
        ],
        DealStageChanged => facts![
            fact("stage", STAGE),
            fact("from", STAGE),
            fact("override", OVERRIDE),
        ],
        GateBlocked => facts![
            fact("stage", STAGE),
            fact("from", STAGE),
            fact("gate", Str),
            fact("unmet", STRINGS),
            fact("attempted", Type::Enum(Values::EventTypes)),
            fact("override", OVERRIDE),
            fact("refused", Str),
        ],
        DealWon | DealLost => facts![
            fact("amount", Double),
            fact("currency", Str),
            fact("reason", Str),
        ],
        EmailSent | EmailReceived | EmailOpened => facts![
            fact("subject", Str),
            fact("message_id", Str),
            fact("in_reply_to", Str),
            fact("auto_reply", Bool),
            fact("headers", Map),
        ],
        LinkClicked => facts![fact("url", Str), fact("message_id", Str)],
        ContactUnsubscribed => facts![fact("email", Str), fact("via", Str)],
        MeetingBooked | MeetingHeld => facts![
            fact("title", Str),
            fact("scheduled_for", Str),
            fact("duration_minutes", Int),
            fact("attendees", STRINGS),
        ],
        CallLogged => facts![
            fact("direction", Type::Enum(Values::Directions)),
            fact("duration_minutes", Int),
            fact("outcome", Str),
        ],
        NoteAdded => facts![fact("text", Str)],
        ObjectionRaised | ObjectionResolved => facts![
            fact("kind", Type::Enum(Values::ObjectionKinds)),
            fact("text", Str),
        ],
        ContentViewed => facts![
            fact("url", Str),
            fact("asset", Str),
            fact("title", Str),
            fact("seconds", Int),
        ],
        FormSubmitted => facts![fact("form", Str), fact("fields", Map)],
        InterventionLogged => facts![fact("person", Str), fact("reason", Str), fact("note", Str),],
        OwnerAssigned => facts![
            fact("owner", Str),
            fact("previous", Str),
            fact("rule", Str),
            fact("strategy", Str),
            fact("why", Str),
        ],
        PersonCreated | PersonUpdated => facts![
            fact("name", Str),
            fact("email", Str),
            fact("roles", STRINGS),
            fact("timezone", Str),
            fact("key_person", Bool),
            fact("available", Bool),
            fact("capacity", Int),
            fact("manager", Str),
            fact("out_of_office", List(&Map)),
            fact("working_hours", Str),
        ],
    }
}

/// The facts of an event of type `t`: the envelope's and the payload's.
pub fn event_facts(t: EventType) -> Vec<Fact> {
    [EVENT_FACTS, payload_facts(t)].concat()
}
