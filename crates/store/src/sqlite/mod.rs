//! The embedded SQLite adapter.
//!
//! One writer thread owns the only writing connection and commits in groups: it takes every
//! request waiting in its queue (up to a bound), applies them in one `BEGIN IMMEDIATE`
//! transaction with a savepoint per request, commits once, then answers each request. A request
//! is answered only after the commit that holds it, so "acknowledged" means "committed". Reads
//! go through a small pool of read-only connections; WAL mode lets them run beside the writer.

mod codec;
mod migrate;
mod outbox;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use clock::Clock;
use domain::{Event, NewEvent, RecordKey, RecordKind, Timestamp};

use crate::{
    ArmPass, Attempt, Claim, Error, Finish, Ingested, ListQuery, NewToken, OutboxQuery, Page,
    Result, Store, StoredEffect, StoredRecord, Task, TaskQuery, TimersFired, TokenInfo, TokenRole,
};

/// SQLite's `synchronous` setting: what "committed" survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// Every commit is fsynced before it is acknowledged: survives a process crash, an OS crash
    /// and power loss.
    #[default]
    Full,
    /// The WAL is fsynced at checkpoints only: survives a process crash (kill -9) but may lose
    /// the last acknowledged commits on an OS crash or power loss.
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// The most events one group commit takes before committing.
    pub max_group_events: usize,
    pub read_connections: usize,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_group_events: 10_000,
            read_connections: 4,
        }
    }
}

pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend(Box::new(e))
}

fn open(path: &Path, synchronous: Synchronous, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
    }
    for (pragma, value) in [
        ("synchronous", sync),
        // 64 MiB of page cache per connection (negative values are KiB).
        ("cache_size", "-65536"),
        // Read database pages through a memory map instead of copying them with read(2).
        ("mmap_size", "1073741824"),
        ("temp_store", "MEMORY"),
    ] {
        conn.pragma_update(None, pragma, value).map_err(backend)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A handful of read-only connections, used from blocking tasks.
#[derive(Debug)]
struct ReadPool {
    path: PathBuf,
    synchronous: Synchronous,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = pool.idle.lock().map_err(|_| Error::Closed)?.pop();
            let conn = match conn {
                Some(c) => c,
                None => open(&pool.path, pool.synchronous, true)?,
            };
            let out = f(&conn);
            let mut idle = pool.idle.lock().map_err(|_| Error::Closed)?;
            if idle.len() < pool.max_idle {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|_| Error::Closed)?
    }
}

/// The embedded SQLite store. Cheap to clone; all clones share one writer thread.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<writer::Command>,
    engine: writer::EngineSlot,
    reads: Arc<ReadPool>,
    _thread: Arc<writer::Thread>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `options.path` and runs pending migrations.
    pub fn open(options: SqliteOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut conn = open(&options.path, options.synchronous, false)?;
        migrate::run(&mut conn)?;
        // The writer leaves checkpoints to a thread of their own (see `writer::spawn`); it only
        // checkpoints itself, as a backstop, if the WAL passes 64 MiB.
        conn.pragma_update(None, "wal_autocheckpoint", 16_000)
            .map_err(backend)?;
        let checkpointer = open(&options.path, options.synchronous, false)?;
        let engine = writer::EngineSlot::default();
        let (tx, thread) = writer::spawn(
            conn,
            checkpointer,
            Arc::clone(&engine),
            clock,
            options.max_group_events,
        )?;
        Ok(Self {
            writer: tx,
            engine,
            reads: Arc::new(ReadPool {
                path: options.path,
                synchronous: options.synchronous,
                idle: Mutex::new(Vec::new()),
                max_idle: options.read_connections.max(1),
            }),
            _thread: Arc::new(thread),
        })
    }

    /// Sends the writer a command built around a reply channel, and waits for the reply.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> writer::Command,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(command(reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Runs `f` on the writer thread in its own transaction, committed before the reply.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, Timestamp) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let job: writer::Job = Box::new(move |conn, now| {
            let out = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)
                .and_then(|tx| {
                    let value = f(&tx, now)?;
                    tx.commit().map_err(backend)?;
                    Ok(value)
                });
            let _ = reply.send(out);
        });
        self.writer
            .send(writer::Command::Job(job))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(e.to_string()))
}

fn token_from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, i64, Option<i64>)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn token_info(
    (id, name, role, created, revoked): (String, String, String, i64, Option<i64>),
) -> Result<TokenInfo> {
    let role =
        TokenRole::parse(&role).ok_or_else(|| Error::Corrupt(format!("token role {role:?}")))?;
    Ok(TokenInfo {
        id,
        name,
        role,
        created_at: Timestamp::from_millis(created),
        revoked_at: revoked.map(Timestamp::from_millis),
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, created_at, revoked_at";

fn stored_record(
    kind: RecordKind,
    state: &str,
    updated_at: i64,
    last: i64,
) -> Result<StoredRecord> {
    Ok(StoredRecord {
        record: codec::decode(kind, state)?,
        updated_at: Timestamp::from_millis(updated_at),
        last_event_at: Timestamp::from_millis(last),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Ingested>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.ask(|reply| writer::Command::Ingest { events, reply })
            .await
    }

    async fn record(&self, key: &RecordKey) -> Result<Option<StoredRecord>> {
        let key = key.clone();
        self.reads
            .run(move |conn| {
                let row = conn
                    .prepare_cached(
                        "SELECT state, updated_at, last_occurred_at FROM records WHERE kind = ?1 AND id = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![key.kind.as_str(), key.id.as_str()], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                        })
                        .optional()
                    })
                    .map_err(backend)?;
                row.map(|(s, u, l)| stored_record(key.kind, &s, u, l)).transpose()
            })
            .await
    }

    async fn timeline(&self, key: &RecordKey, limit: usize) -> Result<Vec<Event>> {
        let key = key.clone();
        self.reads
            .run(move |conn| writer::record_events(conn, &key, Some(limit)))
            .await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page> {
        let q = q.clone();
        self.reads
            .run(move |conn| {
                let mut sql = String::from(
                    "SELECT id, state, updated_at, last_occurred_at FROM records WHERE kind = ?1",
                );
                let mut args: Vec<rusqlite::types::Value> = vec![q.kind.as_str().to_owned().into()];
                let mut arg = |v: rusqlite::types::Value| {
                    args.push(v);
                    args.len()
                };
                if let Some(stage) = &q.stage {
                    sql.push_str(&format!(" AND stage = ?{}", arg(stage.clone().into())));
                }
                if let Some(owner) = &q.owner {
                    sql.push_str(&format!(" AND owner = ?{}", arg(owner.clone().into())));
                }
                if let Some(since) = q.updated_since {
                    // A record changes only when an event concerning it is committed: the
                    // records changed since `since` are those the log received events for since
                    // then, found through the index on receipt time.
                    let path = arg(format!("$.refs.{}", q.kind.as_str()).into());
                    let at = arg(since.as_millis().into());
                    sql.push_str(&format!(
                        " AND id IN (SELECT json_extract(body, ?{path}) FROM events WHERE received_at >= ?{at})"
                    ));
                }
                if let Some(after) = &q.after {
                    sql.push_str(&format!(" AND id > ?{}", arg(after.clone().into())));
                }
                let limit = q.limit.clamp(1, 1000);
                sql.push_str(&format!(" ORDER BY id LIMIT {}", limit + 1));
                let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args), |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get(2)?,
                            r.get(3)?,
                        ))
                    })
                    .map_err(backend)?
                    .collect::<rusqlite::Result<Vec<(String, String, i64, i64)>>>()
                    .map_err(backend)?;
                let more = rows.len() > limit;
                let mut items = Vec::with_capacity(limit);
                let mut last_id = None;
                for (id, state, updated, last) in rows.into_iter().take(limit) {
                    items.push(stored_record(q.kind, &state, updated, last)?);
                    last_id = Some(id);
                }
                Ok(Page {
                    items,
                    next: if more { last_id } else { None },
                })
            })
            .await
    }

    async fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Event)>> {
        self.reads
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![after_seq, limit as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(backend)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend)?;
                rows.into_iter()
                    .map(|(seq, body)| Ok((seq, decode(&body)?)))
                    .collect()
            })
            .await
    }

    async fn event_count(&self) -> Result<u64> {
        self.reads
            .run(|conn| {
                conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(backend)
            })
            .await
    }

    async fn create_token(&self, token: NewToken) -> Result<TokenInfo> {
        self.write(move |tx, now| {
            let now = now.as_millis();
            tx.execute(
                "INSERT INTO api_tokens (id, name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token.id, token.name, token.role.as_str(), token.hash, now],
            )
            .map_err(backend)?;
            Ok(TokenInfo {
                id: token.id,
                name: token.name,
                role: token.role,
                created_at: Timestamp::from_millis(now),
                revoked_at: None,
            })
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.reads
            .run(|conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map([], token_from_row)
                    .map_err(backend)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend)?;
                rows.into_iter().map(token_info).collect()
            })
            .await
    }

    async fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        let id = id.to_owned();
        self.write(move |tx, now| {
            let now = now.as_millis();
            tx.execute(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                params![id, now],
            )
            .map_err(backend)?;
            let row = tx
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                    params![id],
                    token_from_row,
                )
                .optional()
                .map_err(backend)?;
            row.map(token_info)
                .transpose()?
                .ok_or_else(|| Error::NotFound(format!("token {id}")))
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let hash = hash.to_owned();
        self.reads
            .run(move |conn| {
                let row = conn
                    .prepare_cached(&format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL"
                    ))
                    .and_then(|mut s| s.query_row(params![hash], token_from_row).optional())
                    .map_err(backend)?;
                row.map(token_info).transpose()
            })
            .await
    }

    fn set_engine(&self, engine: Option<Arc<engine::Engine>>) {
        if let Ok(mut slot) = self.engine.write() {
            *slot = engine;
        }
    }

    fn engine(&self) -> Option<Arc<engine::Engine>> {
        self.engine.read().ok().and_then(|e| e.clone())
    }

    async fn rule_memory(&self, record: &RecordKey) -> Result<engine::Memory> {
        let record = record.clone();
        self.reads
            .run(move |conn| {
                let memory: Option<String> = conn
                    .prepare_cached("SELECT memory FROM records WHERE kind = ?1 AND id = ?2")
                    .and_then(|mut s| {
                        s.query_row(params![record.kind.as_str(), record.id.as_str()], |r| {
                            r.get(0)
                        })
                        .optional()
                    })
                    .map_err(backend)?;
                memory.map_or(Ok(engine::Memory::new()), |m| decode(&m))
            })
            .await
    }

    async fn fire_due_timers(&self, now: Timestamp, limit: usize) -> Result<TimersFired> {
        self.ask(|reply| writer::Command::FireTimers { now, limit, reply })
            .await
    }

    async fn arm_records(&self, now: Timestamp, after: i64, limit: usize) -> Result<ArmPass> {
        self.ask(|reply| writer::Command::ArmRecords {
            now,
            after,
            limit,
            reply,
        })
        .await
    }

    async fn refold_records(&self, after: i64, limit: usize) -> Result<crate::RefoldPass> {
        self.ask(|reply| writer::Command::RefoldRecords {
            after,
            limit,
            reply,
        })
        .await
    }

    async fn outbox(&self, query: &OutboxQuery) -> Result<Vec<StoredEffect>> {
        let query = query.clone();
        self.reads.run(move |conn| outbox::list(conn, &query)).await
    }

    async fn backlog(&self) -> Result<crate::Backlog> {
        self.reads.run(outbox::backlog).await
    }

    async fn effect(&self, key: &str) -> Result<Option<(StoredEffect, Vec<Attempt>)>> {
        let key = key.to_owned();
        self.reads
            .run(move |conn| {
                let Some(effect) = outbox::one(conn, &key)? else {
                    return Ok(None);
                };
                Ok(Some((effect, outbox::attempts(conn, &key)?)))
            })
            .await
    }

    async fn claim_effects(&self, claim: Claim) -> Result<Vec<StoredEffect>> {
        self.write(move |tx, _| outbox::claim(tx, &claim)).await
    }

    async fn finish_delivery(&self, finish: Finish) -> Result<bool> {
        self.ask(|reply| writer::Command::Finish {
            finish: Box::new(finish),
            reply,
        })
        .await
    }

    async fn retry_effect(&self, key: &str) -> Result<StoredEffect> {
        let key = key.to_owned();
        self.write(move |tx, now| {
            outbox::transition(tx, &key, &["dead", "cancelled"], "pending", now)
        })
        .await
    }

    async fn cancel_effect(&self, key: &str) -> Result<StoredEffect> {
        let key = key.to_owned();
        self.write(move |tx, now| {
            outbox::transition(tx, &key, &["pending", "dead"], "cancelled", now)
        })
        .await
    }

    async fn tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        let query = query.clone();
        self.reads
            .run(move |conn| outbox::tasks(conn, &query))
            .await
    }

    async fn complete_task(&self, id: &str) -> Result<Task> {
        let id = id.to_owned();
        self.write(move |tx, now| outbox::complete_task(tx, &id, now))
            .await
    }

    async fn timers(&self, record: &RecordKey) -> Result<Vec<engine::Timer>> {
        let record = record.clone();
        self.reads
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT rule, due, anchor FROM timers WHERE record_kind = ?1 AND record_id = ?2 ORDER BY due, rule",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![record.kind.as_str(), record.id.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    })
                    .map_err(backend)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend)?;
                Ok(rows
                    .into_iter()
                    .map(|(rule, due, anchor)| engine::Timer {
                        due: Timestamp::from_millis(due),
                        rule,
                        record: record.clone(),
                        anchor: Timestamp::from_millis(anchor),
                    })
                    .collect())
            })
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.reads
            .run(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }
}
