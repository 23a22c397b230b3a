//! Issue 23: the calendar edges in replay. Every case of the shared table (`calendar/cases.rs`,
//! which the store's live test reads too) is replayed in virtual time and must fire exactly
//! its expected instants.

#[path = "calendar/cases.rs"]
mod cases;

use std::sync::Arc;

use cases::{Case, Construct, RULE};
use domain::{EventId, Timestamp};
use engine::sequence::{Enrolment, StepAction};
use engine::{Engine, replay};
use playbook::Action;

/// The rules through `engine::replay`; for a sequence, the enrolment its `start_sequence`
/// decided, stepped from one due time to the next — a replay leaves sequences to the shell,
/// which runs this same state machine when a step comes due.
fn fired_in_replay(case: &Case) -> Vec<Timestamp> {
    let set = Arc::new(cases::playbooks(case));
    let engine = Engine::new(Arc::clone(&set));
    let events: Vec<domain::Event> = cases::events(case)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = e.occurred_at;
            e.stamp(EventId(uuid::Uuid::from_u128(i as u128 + 1)), at)
        })
        .collect();
    let until = cases::ts(case.until);
    let effects = replay::replay(&engine, &events, until);
    match case.construct {
        Construct::Cron(_) => effects
            .iter()
            .filter(|e| e.rule == RULE)
            .map(|e| e.due)
            .collect(),
        Construct::Sequence { .. } => {
            let started: Vec<_> = effects
                .iter()
                .filter(|e| matches!(e.action, Action::StartSequence { .. }))
                .collect();
            assert_eq!(started.len(), 1, "{}", case.describe());
            let sequence = &set.playbooks[0].sequences[0];
            let mut enrolment =
                Enrolment::start(sequence, engine.version(), "contact:C-1", started[0].due);
            let mut sent = Vec::new();
            while enrolment.is_active() && enrolment.due <= until {
                let now = enrolment.due;
                let actions = enrolment.advance(sequence, false, Some(case.zone), now);
                sent.extend(
                    actions
                        .iter()
                        .filter(|a| matches!(a, StepAction::Email { .. }))
                        .map(|_| now),
                );
            }
            sent
        }
    }
}

#[test]
fn the_dst_table_in_replay() {
    let wrong = cases::mismatches("replay", fired_in_replay);
    assert!(wrong.is_empty(), "{wrong}");
}
