//! pipewright's pure core: the vocabulary (events, records, people, money, time) and the fold
//! that derives the state of every lead, contact, account, deal and person from its events.
//!
//! This crate never performs I/O, never reads the wall clock and never draws random numbers:
//! "now" is always an argument. The same code therefore serves the live server, imports,
//! replays and tests, and gives the same answer each time.

mod event;
mod ids;
mod money;
mod state;
mod time;

pub use event::{
    AccountFields, Actor, Amount, CallFields, ContactFields, ContentViewed, DealClosed, DealFields,
    Direction, ENVELOPE_VERSION, EmailFields, Event, EventBody, EventId, EventType, FieldMap,
    FormSubmitted, InterventionFields, LeadFields, LinkClicked, MeetingFields, NewEvent,
    NoteFields, ObjectionFields, ObjectionKind, PersonFields, RefError, Refs, StageChange,
};
pub use ids::{IdError, RecordId, RecordKey, RecordKind, Role, Stage};
pub use money::{Currency, Money, MoneyError};
pub use state::{
    Account, ActivityFacts, Contact, Deal, DealFacts, DealStatus, Engagement, Facts, Intervention,
    LOST_STAGE, Lead, Objection, Person, Record, StageVisit, WON_STAGE,
};
pub use time::{Date, MILLIS_PER_DAY, Timestamp, TimestampError};
