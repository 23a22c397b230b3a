//! Heroics: how often key people — a founder, a sales manager, a VP — still step in on deals
//! they do not own, and why. Pure, like the engine: events in (in occurrence order),
//! interventions out; no clock, no I/O, so a report recomputes the same numbers from the same
//! log.
//!
//! **An intervention** is a key person (`person.key_person`) acting on a deal someone else owns
//! — an email they sent, a call, a meeting booked or held, a note, with the event's `actor`
//! naming them — or an explicit `intervention.logged` event. Touches by the same person on the
//! same deal no further apart than [`Settings::merge_within`] are one intervention.
//!
//! **Its reason** is the logged one when there is one; otherwise it is inferred from what
//! preceded the first touch, by the first of these rules that holds, and the rule and what it
//! saw are kept (`because`):
//! 1. an objection raised on the deal within [`Settings::objection_within`] before: its kind
//!    (`pricing`, `implementation-concern`, `legal-concern`, `security-concern`, `competitor`,
//!    `timing`, `objection`);
//! 2. no activity on the deal for at least [`Settings::quiet_after`]: `went-quiet`;
//! 3. in its stage for at least [`Settings::stuck_after`]: `legal-stall` in a stage named
//!    `legal`, `stalled` otherwise;
//! 4. otherwise `unknown`.
//!
//! The reasons are the names playbooks' `covers:` use, so a report can say which rules were
//! meant to take an intervention off a key person's plate.

mod detect;

pub use detect::{Detector, Intervention, Settings, detect};
