//! pipewright's pure core: the vocabulary (events, records, people, money, time) and the fold
//! that derives the state of every lead, contact, account, deal and person from its events.
//!
//! This crate never performs I/O, never reads the wall clock and never draws random numbers:
//! "now" is always an argument. The same code therefore serves the live server, imports,
//! replays and tests, and gives the same answer each time.

mod availability;
mod event;
mod ids;
mod money;
mod state;
mod time;

pub use availability::{Absence, WorkingHours, WorkingHoursError};
pub use event::{
    AccountFields, Actor, Amount, Assigned, CallFields, ContactFields, ContentViewed, DealClosed,
    DealFields, Direction, ENVELOPE_VERSION, EmailFields, Event, EventBody, EventId, EventType,
    FieldMap, FormSubmitted, GateBlocked, GateOverride, InterventionFields, LeadFields,
    LinkClicked, MeetingFields, NewEvent, NoteFields, ObjectionFields, ObjectionKind, PersonFields,
    RefError, Refs, StageChange, Unsubscribed,
};
pub use ids::{IdError, RecordId, RecordKey, RecordKind, Role, Stage};
pub use money::{Currency, Money, MoneyError};
pub use state::{
    Account, ActivityFacts, Assignment, BlockedMove, Contact, Deal, DealFacts, DealStatus,
    Engagement, Facts, Intervention, LOST_STAGE, Lead, Objection, Person, Record, StageVisit,
    UNANSWERED_KEPT, WON_STAGE, about_pricing,
};
pub use time::{Date, MILLIS_PER_DAY, Timestamp, TimestampError, span_in_words};

/// A hash of `parts` that never changes between runs, builds or machines (FNV-1a over the
/// parts separated by a zero byte), for choices every node and every replay must make alike.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        let separator: &[u8] = if i == 0 { &[] } else { &[0] };
        for byte in separator.iter().chain(part.as_bytes()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_hash_is_fnv1a_and_separates_its_parts() {
        // FNV-1a of "a" (the published test vector).
        assert_eq!(super::stable_hash(&["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(super::stable_hash(&["ab"]), super::stable_hash(&["a", "b"]));
        assert_eq!(
            super::stable_hash(&["a", "b"]),
            super::stable_hash(&["a", "b"])
        );
    }
}
