//! Delivery against real peers: an SMTP server (aiosmtpd) and an HTTP receiver, with a manual
//! clock driving retries, pauses and rate limits. Every test runs on SQLite and on PostgreSQL
//! (when a server answers; always under `CI=true`).

mod channels;
mod resilience;

use std::sync::Arc;

use clock::ManualClock;
use delivery::{Config, Dispatcher};
use domain::Timestamp;
use store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store};
use testkit::postgres::TestDatabase;

#[allow(missing_debug_implementations)]
pub struct Setup {
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    pub dispatcher: Arc<Dispatcher>,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

/// The database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Every test of a module, once per backend.
#[macro_export]
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if testkit::postgres::available() {
                        super::$name($crate::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A team (an AE who owns the deal, a VP), a contact, and a deal in proposal.
const COMPANY: &str = r#"
{"type":"person.created","source":"t","source_id":"p1","occurred_at":"2026-11-01T08:00:00Z","person":"sam@acme.example","data":{"name":"Sam Ortiz","email":"sam@acme.example","roles":["ae"]}}
{"type":"person.created","source":"t","source_id":"p2","occurred_at":"2026-11-01T08:00:00Z","person":"vera@acme.example","data":{"name":"Vera Lind","email":"vera@acme.example","roles":["vp"]}}
{"type":"contact.created","source":"t","source_id":"c1","occurred_at":"2026-11-01T08:00:00Z","contact":"C-1","data":{"name":"Ana Ruiz","email":"ana@globex.example"}}
{"type":"deal.created","source":"t","source_id":"d1","occurred_at":"2026-11-01T09:00:00Z","deal":"D-1","data":{"name":"Globex rollout","stage":"proposal","owner":"sam@acme.example","contacts":["C-1"],"amount":48000,"currency":"EUR"}}
"#;

/// A store with `playbook` running, the company loaded, and a dispatcher with `config`.
pub async fn setup(backend: Backend, playbook: &str, configure: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(ts("2026-11-20T12:00:00Z"));
    let (store, database): (Arc<dyn Store>, _) = match backend {
        Backend::Sqlite => (
            Arc::new(
                SqliteStore::open(
                    SqliteOptions::new(dir.path().join("p.db")),
                    Arc::new(clock.clone()),
                )
                .unwrap(),
            ),
            None,
        ),
        Backend::Postgres => {
            let database = TestDatabase::create().expect("PostgreSQL answered a moment ago");
            let store = PostgresStore::open(
                PostgresOptions::new(database.url()),
                Arc::new(clock.clone()),
            )
            .unwrap();
            (Arc::new(store), Some(database))
        }
    };
    let loaded = playbook::load_files(&[(std::path::PathBuf::from("p.yaml"), playbook.to_owned())]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    store.set_engine(Some(Arc::new(store::Engine::new(Arc::new(
        loaded.set.unwrap(),
    )))));
    ingest(&*store, COMPANY).await;
    let mut config = Config {
        public_url: "https://pipewright.acme.example".into(),
        backoff_base_ms: 1_000,
        ..Config::default()
    };
    config.email.from = "Acme Sales <sales@acme.example>".into();
    config.webhooks.secret = "whsec-test".into();
    configure(&mut config);
    let dispatcher = Arc::new(
        Dispatcher::new(
            Arc::clone(&store),
            Arc::new(clock.clone()),
            config,
            "node-a".into(),
        )
        .unwrap(),
    );
    Setup {
        store,
        clock,
        dispatcher,
        _dir: dir,
        _database: database,
    }
}

pub async fn ingest(store: &dyn Store, ndjson: &str) {
    let events = ndjson
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| wire::parse_one(l).unwrap_or_else(|p| panic!("{l}: {p}")))
        .collect();
    store.ingest(events).await.unwrap();
}

/// A note on D-1: the trigger most test playbooks use.
pub fn note(id: u32) -> String {
    format!(
        r#"{{"type":"note.added","source":"t","source_id":"n{id}","occurred_at":"2026-11-20T11:00:00Z","deal":"D-1","data":{{"text":"note {id}"}}}}"#
    )
}

pub fn rule(then: &str) -> String {
    format!(
        "playbook: p\nowner: o\nstages: [proposal]\ntemplates:\n  follow-up:\n    subject: \"{{{{ deal.name }}}}: next steps\"\n    text: \"Hi {{{{ contact.name }}}}, about {{{{ deal.name }}}} ({{{{ deal.stage }}}}). {{{{ owner.name }}}}\"\n    html: \"<p>Hi {{{{ contact.name }}}}, about <b>{{{{ deal.name }}}}</b> &amp; more <a href='{{{{ assets[\\\"roi-calculator\\\"].url }}}}'>ROI</a></p>\"\nassets:\n  roi-calculator: {{ title: ROI calculator, url: \"https://acme.example/roi\", use_cases: [pricing] }}\nrules:\n  - id: r\n    why: Every note gets a follow-up.\n    when: {{ event: note.added }}\n    then:\n{then}"
    )
}
