//! The storage conformance suite: every backend must pass it unchanged. Each test runs once on
//! SQLite and once on PostgreSQL (when a server answers; always under `CI=true`), each time on
//! a database of its own.

/// Runs each named test on SQLite and on PostgreSQL.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(backend) = crate::Backend::postgres() {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}

mod alarms;
mod calendar;
mod conflicts;
mod conformance;
mod exceptions;
mod gates;
mod reloads;
mod routing;
mod sequences;
mod storms;

use std::sync::Arc;

use clock::ManualClock;
use domain::{NewEvent, Timestamp};
use store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store};
use testkit::postgres::TestDatabase;

/// A fresh store on its own database, with the clock that stamps receipt times.
#[allow(missing_debug_implementations)]
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    /// Another handle on the same database: a restart, or (PostgreSQL) another node.
    pub reopen: Box<dyn Fn() -> Arc<dyn Store>>,
    _database: Database,
}

enum Database {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL, when a server answers (the test is skipped otherwise, except under CI).
    pub fn postgres() -> Option<Self> {
        testkit::postgres::available().then_some(Self::Postgres)
    }

    pub fn open(self) -> Harness {
        let clock = ManualClock::new(ts("2026-11-20T12:00:00Z"));
        let (open, database): (Box<dyn Fn() -> Arc<dyn Store>>, Database) = match self {
            Self::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("pipewright.db");
                let clock = clock.clone();
                let open = move || -> Arc<dyn Store> {
                    Arc::new(
                        SqliteStore::open(SqliteOptions::new(&path), Arc::new(clock.clone()))
                            .unwrap(),
                    )
                };
                (Box::new(open), Database::Sqlite(dir))
            }
            Self::Postgres => {
                let db = TestDatabase::create().expect("PostgreSQL answered a moment ago");
                let url = db.url();
                let clock = clock.clone();
                let open = move || -> Arc<dyn Store> {
                    Arc::new(
                        PostgresStore::open(PostgresOptions::new(&url), Arc::new(clock.clone()))
                            .unwrap(),
                    )
                };
                (Box::new(open), Database::Postgres(db))
            }
        };
        Harness {
            store: open(),
            clock,
            reopen: open,
            _database: database,
        }
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

/// PostgreSQL only: a node outlives its database sessions (a server restart, a failover).
#[tokio::test]
async fn postgres_writes_go_on_after_the_server_ends_the_sessions() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let clock = ManualClock::new(ts("2026-11-20T12:00:00Z"));
    let store = PostgresStore::open(PostgresOptions::new(db.url()), Arc::new(clock)).unwrap();
    let created = ev(
        "deal.created",
        "1",
        "2026-11-01T09:00:00Z",
        r#""deal":"D-1""#,
        r#"{"stage":"discovery"}"#,
    );
    store.ingest(vec![created]).await.unwrap();
    assert!(store.record(&deal_key()).await.unwrap().is_some());
    assert!(db.terminate_sessions() >= 2, "the writer's and a reader's");
    // The writer finds its session gone when it begins, and opens another.
    let note = ev(
        "note.added",
        "2",
        "2026-11-02T09:00:00Z",
        r#""deal":"D-1""#,
        r#"{"text":"x"}"#,
    );
    let stored = store.ingest(vec![note]).await.unwrap();
    assert!(matches!(stored[0], store::Ingested::Stored { .. }));
    // A reader whose session ended fails once and is replaced.
    let mut read = store.record(&deal_key()).await;
    if read.is_err() {
        read = store.record(&deal_key()).await;
    }
    let deal = read.unwrap().unwrap();
    let domain::Record::Deal(deal) = deal.record else {
        panic!("a deal")
    };
    assert_eq!(deal.engagement.notes, 1);
}

fn deal_key() -> domain::RecordKey {
    domain::RecordKey::new(
        domain::RecordKind::Deal,
        domain::RecordId::parse("D-1".to_owned()).unwrap(),
    )
}
