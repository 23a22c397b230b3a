//! The storage conformance suite: every backend must pass it unchanged.

mod conformance;

use std::sync::Arc;

use clock::ManualClock;
use domain::{NewEvent, Timestamp};
use store::{SqliteOptions, SqliteStore, Store};

/// A fresh store on its own database, with the clock that stamps receipt times.
#[allow(missing_debug_implementations)]
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    pub reopen: Box<dyn Fn() -> Arc<dyn Store>>,
    _dir: tempfile::TempDir,
}

pub fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipewright.db");
    let clock = ManualClock::new(ts("2026-11-20T12:00:00Z"));
    let open = {
        let clock = clock.clone();
        move || -> Arc<dyn Store> {
            Arc::new(SqliteStore::open(SqliteOptions::new(&path), Arc::new(clock.clone())).unwrap())
        }
    };
    Harness {
        store: open(),
        clock,
        reopen: Box::new(open),
        _dir: dir,
    }
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Builds an event the way a client sends it, through the wire parser.
pub fn ev(ty: &str, id: &str, at: &str, refs: &str, data: &str) -> NewEvent {
    let refs = if refs.is_empty() {
        String::new()
    } else {
        format!(",{refs}")
    };
    let text = format!(
        r#"{{"type":"{ty}","source":"test","source_id":"{id}","occurred_at":"{at}"{refs},"data":{data}}}"#
    );
    wire::parse_one(&text).unwrap_or_else(|p| panic!("bad test event {text}: {p}"))
}
