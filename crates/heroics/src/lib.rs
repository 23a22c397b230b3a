//! Heroics: how often key people — a founder, a sales manager, a VP — still step in on deals
//! they do not own, and why. Pure, like the engine: events in, interventions and a report out;
//! no clock, no I/O, so a report recomputes the same numbers from the same log.
//!
//! **Key people** are the persons whose latest state flags them `key_person`; their touches
//! count at any date, so history imported before they were flagged is measured too.
//!
//! **An intervention** is a key person acting on a deal they do not own (a deal nobody owns
//! included) — an email they sent, a call, a meeting booked or held, a note, with the event's
//! `actor` naming them — or an explicit `intervention.logged` event naming someone who does not
//! own the deal. Touches by the same person on the same deal no further apart than
//! [`Settings::merge_within`] are one intervention.
//!
//! **Its reason** is the logged one when there is one; otherwise it is inferred from the deal's
//! state just before the first touch (its state as the rules see it: activity as in
//! `deal.last_activity_at`, the stage it is in and since when, its objections), by the first
//! of these rules that holds, and the rule and what it saw are kept (`because`):
//! 0. the deal was closed: `after-win` when won, `win-back` when lost;
//! 1. an objection raised on the deal within [`Settings::objection_within`] before (the latest
//!    one): its kind (`pricing`, `implementation-concern`, `legal-concern`,
//!    `security-concern`, `competitor`, `timing`, `objection`);
//! 2. a move a stage's gate refused (`gate.blocked`) within [`Settings::objection_within`]
//!    before, the deal still short of that stage: `blocked-gate` (a key person overriding a
//!    gate steps in for the same reason);
//! 3. no activity on the deal for at least [`Settings::quiet_after`]: `went-quiet`;
//! 4. in its stage for at least [`Settings::stuck_after`]: `legal-stall` in a stage named
//!    `legal`, `stalled` otherwise;
//! 5. otherwise `unknown`.
//!
//! The reasons are the names playbooks' `covers:` use, so a report can say which rules were
//! meant to take an intervention off a key person's plate.

/// The report's definitions, as `docs/heroics.md` words them (shown by `pipewright report
/// heroics --help`).
pub const DEFINITIONS: &str = include_str!("../../../docs/heroics.md");

pub mod assets;
mod detect;
pub mod render;
mod report;
mod suggest;

use std::collections::BTreeMap;

use domain::{Event, RecordId};

pub use detect::{
    DealRun, Gap, Intervention, People, Raised, Settings, Stay, detect, reason_of, run_deal,
};
pub use report::{
    Automation, Closed, Comparison, Coverage, Covering, Firing, History, Month, Options, PersonRow,
    Report, Request, Revenue, RuleCoverage, Slice, Summary, Tally, Waiting, report,
};
pub use suggest::{SuggestOptions, Suggestion, Trigger, playbook_yaml, suggest};

/// Events grouped by the deal they concern, each deal's in occurrence order (ties kept in the
/// order given); events on no deal are left out.
pub fn by_deal<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<RecordId, Vec<Event>> {
    let mut deals: BTreeMap<RecordId, Vec<Event>> = BTreeMap::new();
    for event in events {
        if let Some(deal) = &event.refs.deal {
            deals.entry(deal.clone()).or_default().push(event.clone());
        }
    }
    for history in deals.values_mut() {
        history.sort_by_key(|e| e.occurred_at);
    }
    deals
}
