//! Issue 23: the calendar edges live. Every case of the engine's shared table
//! (`crates/engine/tests/calendar/cases.rs`, which the replay test reads too) runs on a store
//! of its own: the case's events are ingested when they happen, then a manual clock moves a
//! quarter hour at a time and at each step the timer loop's two passes run — due timers, then
//! due sequence steps — as the server's loop runs them. The firings must be exactly the
//! table's.

#[path = "../../../engine/tests/calendar/cases.rs"]
mod cases;

use std::sync::Arc;

use domain::Timestamp;

use crate::Backend;
use cases::{Case, Construct, RULE, SEQUENCE};

/// The server's loop ticks at least this often in the test: every expected firing is on a
/// quarter hour, so a sequence step (sent when the loop runs) is sent at its due time.
const STEP_MS: i64 = 15 * 60_000;

async fn fired_live(backend: Backend, case: &Case) -> Vec<Timestamp> {
    let h = backend.open();
    h.store
        .set_engine(Some(Arc::new(store::Engine::new(Arc::new(
            cases::playbooks(case),
        )))));
    let from = cases::ts(case.from);
    h.clock.set(from);
    h.store.ingest(cases::events(case)).await.unwrap();
    let until = cases::ts(case.until);
    let mut now = from;
    while now <= until {
        h.clock.set(now);
        h.store.fire_due_timers(now, 1000).await.unwrap();
        h.store.advance_enrolments(now, 1000).await.unwrap();
        // The next quarter hour.
        now = Timestamp::from_millis((now.as_millis() / STEP_MS + 1) * STEP_MS);
    }
    let sequence_rule = format!("sequence:{SEQUENCE}");
    h.store
        .effects(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| match case.construct {
            Construct::Cron(_) => e.rule == RULE,
            Construct::Sequence { .. } => {
                e.rule == sequence_rule && e.action["kind"] == "send_email"
            }
        })
        .map(|e| e.due)
        .collect()
}

async fn the_dst_table_live(backend: Backend) {
    let mut fired = Vec::new();
    for case in cases::CASES {
        fired.push(fired_live(backend, case).await);
    }
    let mut fired = fired.into_iter();
    let wrong = cases::mismatches("live", |_| fired.next().unwrap());
    assert!(wrong.is_empty(), "{wrong}");
}

suite!(the_dst_table_live);
