//! The [`Store`] implementation every SQL backend shares: writes go to the writer thread,
//! reads to a small pool of connections used from blocking tasks.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use domain::{Event, NewEvent, RecordId, RecordKey, RecordKind, Timestamp};

use super::sequences::{self, Library};
use super::writer::{self, Command, EngineSlot, LibrarySlot, Thread};
use super::{Arg, Backend, Row, Sql, apply, args, codec, decode, outbox};
use crate::{
    ArmPass, Attempt, Claim, Error, Finish, Ingested, ListQuery, NewToken, OutboxQuery, Page,
    RecordEvent, RecordRange, RefoldPass, Result, Store, StoredEffect, StoredRecord, Task,
    TaskQuery, TimersFired, TokenInfo, TokenRole,
};

/// Read connections, used from blocking tasks: at most `permits` at a time, each opened once
/// and kept (a PostgreSQL connection costs the server a process; opening one per read would
/// cost more than the read).
struct ReadPool<B: Backend> {
    backend: Arc<B>,
    idle: Mutex<Vec<B::Conn>>,
    permits: tokio::sync::Semaphore,
}

impl<B: Backend> Drop for ReadPool<B> {
    fn drop(&mut self) {
        // Closing a connection may block (PostgreSQL's client says goodbye to the server):
        // never on an async worker thread.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("close-readers".into())
                .spawn(move || drop(idle));
        }
    }
}

impl<B: Backend> ReadPool<B> {
    async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Sql) -> Result<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = pool.idle.lock().map_err(|_| Error::Closed)?.pop();
            let mut conn = match conn {
                Some(c) => c,
                None => pool.backend.open_reader()?,
            };
            let out = B::read(&mut conn, f);
            // A connection whose read failed at the database level may be broken: not kept.
            if !matches!(out, Err(Error::Backend(_) | Error::Unavailable { .. })) {
                pool.idle.lock().map_err(|_| Error::Closed)?.push(conn);
            }
            out
        })
        .await
        .map_err(|_| Error::Closed)?
    }
}

/// A store on a SQL database. Cheap to clone; all clones share one writer thread.
pub struct SqlStore<B: Backend> {
    writer: mpsc::Sender<Command<B::Conn>>,
    engine: EngineSlot,
    library: LibrarySlot,
    reads: Arc<ReadPool<B>>,
    outages: Arc<super::outages::Outages>,
    _thread: Arc<Thread>,
}

impl<B: Backend> std::fmt::Debug for SqlStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.reads.backend)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Clone for SqlStore<B> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            engine: Arc::clone(&self.engine),
            library: Arc::clone(&self.library),
            reads: Arc::clone(&self.reads),
            outages: Arc::clone(&self.outages),
            _thread: Arc::clone(&self._thread),
        }
    }
}

impl<B: Backend> SqlStore<B> {
    /// Starts the writer on `conn`; `helpers` are the backend's own threads, joined with it.
    pub(crate) fn start(
        backend: B,
        conn: B::Conn,
        helpers: Vec<std::thread::JoinHandle<()>>,
        clock: Arc<dyn clock::Clock>,
        max_group_events: usize,
        read_connections: usize,
    ) -> Result<Self> {
        let engine = EngineSlot::default();
        let library = Arc::new(Library::default());
        let (tx, handle) = writer::spawn::<B>(
            "store-writer",
            conn,
            Arc::clone(&engine),
            Arc::clone(&library),
            clock,
            max_group_events,
        )?;
        let mut threads = vec![handle];
        threads.extend(helpers);
        Ok(Self {
            writer: tx,
            engine,
            library,
            reads: Arc::new(ReadPool {
                backend: Arc::new(backend),
                idle: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(read_connections.max(1)),
            }),
            outages: Arc::default(),
            _thread: Arc::new(Thread(threads)),
        })
    }

    /// Sends the writer a command built around a reply channel, and waits for the reply. A
    /// failure that is part of an outage begins it (or is counted in it).
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command<B::Conn>,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(command(reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await?.inspect_err(|e| self.outages.failed(e))
    }

    /// A write committed something: the outage, if any, is over — for a full disk, once the
    /// disk has room again too (a write can commit in space the database already held).
    fn wrote(&self) {
        if self.outages.current() == Some(crate::Outage::DiskFull)
            && self.reads.backend.room().is_err()
        {
            return;
        }
        self.outages.wrote();
    }

    /// Runs `f` on the writer thread in its own transaction, committed before the reply.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Sql, Timestamp) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.ask(|reply| writer::job::<B, T>(f, reply)).await
    }
}

fn token_info(mut r: Row) -> Result<TokenInfo> {
    let role = r.text(2)?;
    let role =
        TokenRole::parse(&role).ok_or_else(|| Error::Corrupt(format!("token role {role:?}")))?;
    Ok(TokenInfo {
        id: r.text(0)?,
        name: r.text(1)?,
        role,
        created_at: r.millis(3)?,
        revoked_at: r.opt_millis(4)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, created_at, revoked_at";

const USER_COLUMNS: &str = "id, name, role, created_at, disabled_at";

fn user(r: &mut Row) -> Result<crate::User> {
    let role = r.text(2)?;
    let role = crate::UserRole::parse(&role)
        .ok_or_else(|| Error::Corrupt(format!("user role {role:?}")))?;
    Ok(crate::User {
        id: r.text(0)?,
        name: r.text(1)?,
        role,
        created_at: r.millis(3)?,
        disabled_at: r.opt_millis(4)?,
    })
}

/// A record from the columns (state, updated_at, last_occurred_at) starting at `i`.
fn stored_record(kind: RecordKind, r: &mut Row, i: usize) -> Result<StoredRecord> {
    Ok(StoredRecord {
        record: codec::decode(kind, &r.text(i)?)?,
        updated_at: r.millis(i + 1)?,
        last_event_at: r.millis(i + 2)?,
    })
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Ingested>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let ingested = self.ask(|reply| Command::Ingest { events, reply }).await?;
        if ingested
            .iter()
            .any(|i| matches!(i, Ingested::Stored { .. }))
        {
            self.wrote();
        }
        Ok(ingested)
    }

    async fn record(&self, key: &RecordKey) -> Result<Option<StoredRecord>> {
        let key = key.clone();
        self.reads
            .run(move |sql| {
                sql.query_opt(
                    "SELECT state, updated_at, last_occurred_at FROM records WHERE kind = ?1 AND id = ?2",
                    args![key.kind.as_str(), key.id.as_str()],
                )?
                .map(|mut r| stored_record(key.kind, &mut r, 0))
                .transpose()
            })
            .await
    }

    async fn timeline(&self, key: &RecordKey, limit: usize) -> Result<Vec<Event>> {
        let key = key.clone();
        self.reads
            .run(move |sql| apply::record_events(sql, &key, Some(limit)))
            .await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page> {
        let q = q.clone();
        self.reads
            .run(move |sql| {
                let limit = q.limit.clamp(1, 1000);
                let dialect = sql.dialect();
                // The path to the record's id in an event's JSON.
                let path = match dialect {
                    super::Dialect::Sqlite => format!("$.refs.{}", q.kind.as_str()),
                    super::Dialect::Postgres => q.kind.as_str().to_owned(),
                };
                let mut text = String::from(
                    "SELECT id, state, updated_at, last_occurred_at FROM records WHERE kind = ?1",
                );
                let mut args: Vec<super::Arg<'_>> = vec![q.kind.as_str().into()];
                if let Some(stage) = &q.stage {
                    args.push(stage.into());
                    text.push_str(&format!(" AND stage = ?{}", args.len()));
                }
                if let Some(owner) = &q.owner {
                    args.push(owner.into());
                    text.push_str(&format!(" AND owner = ?{}", args.len()));
                }
                if let Some(since) = q.updated_since {
                    // A record changes only when an event concerning it is committed: the
                    // records changed since `since` are those the log received events for
                    // since then, found through the index on receipt time.
                    args.push((&path).into());
                    let refs = match dialect {
                        super::Dialect::Sqlite => format!("json_extract(body, ?{})", args.len()),
                        super::Dialect::Postgres => {
                            format!("(CAST(body AS jsonb) -> 'refs' ->> ?{})", args.len())
                        }
                    };
                    args.push(since.as_millis().into());
                    text.push_str(&format!(
                        " AND id IN (SELECT {refs} FROM events WHERE received_at >= ?{})",
                        args.len()
                    ));
                }
                if let Some(after) = &q.after {
                    args.push(after.into());
                    text.push_str(&format!(" AND id > ?{}", args.len()));
                }
                args.push((limit as i64 + 1).into());
                text.push_str(&format!(" ORDER BY id LIMIT ?{}", args.len()));
                let rows = sql.query(&text, &args)?;
                let more = rows.len() > limit;
                let mut items = Vec::with_capacity(limit);
                let mut last_id = None;
                for mut r in rows.into_iter().take(limit) {
                    items.push(stored_record(q.kind, &mut r, 1)?);
                    last_id = Some(r.text(0)?);
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
            .run(move |sql| {
                sql.query(
                    "SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    args![after_seq, limit as i64],
                )?
                .into_iter()
                .map(|mut r| Ok((r.int(0)?, decode(&r.text(1)?)?)))
                .collect()
            })
            .await
    }

    async fn record_events(
        &self,
        kind: RecordKind,
        range: &RecordRange,
        after: Option<&RecordEvent>,
        limit: usize,
    ) -> Result<Vec<RecordEvent>> {
        let (id, at, seq) = after.map_or((String::new(), i64::MIN, i64::MIN), |a| {
            (
                a.record.as_str().to_owned(),
                a.event.occurred_at.as_millis(),
                a.seq,
            )
        });
        let from = range.from.as_ref().map(|r| r.as_str().to_owned());
        let before = range.before.as_ref().map(|r| r.as_str().to_owned());
        self.reads
            .run(move |sql| {
                let mut query = String::from(
                    "SELECT r.record_id, r.seq, e.body FROM event_records r
                     JOIN events e ON e.seq = r.seq
                     WHERE r.kind = ?1 AND (r.record_id, r.occurred_at, r.seq) > (?2, ?3, ?4)",
                );
                let mut values = vec![
                    Arg::from(kind.as_str()),
                    Arg::from(id.as_str()),
                    Arg::from(at),
                    Arg::from(seq),
                    Arg::from(limit as i64),
                ];
                for (bound, op) in [(&from, ">="), (&before, "<")] {
                    if let Some(bound) = bound {
                        values.push(Arg::from(bound.as_str()));
                        query.push_str(&format!(" AND r.record_id {op} ?{}", values.len()));
                    }
                }
                query.push_str(" ORDER BY r.record_id, r.occurred_at, r.seq LIMIT ?5");
                sql.query(&query, &values)?
                    .into_iter()
                    .map(|mut r| {
                        Ok(RecordEvent {
                            record: r.record_id(0)?,
                            seq: r.int(1)?,
                            event: decode(&r.text(2)?)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn record_ranges(&self, kind: RecordKind, parts: usize) -> Result<Vec<RecordRange>> {
        let bounds = self
            .reads
            .run(move |sql| {
                let count = sql
                    .query_opt(
                        "SELECT count(*) FROM records WHERE kind = ?1",
                        args![kind.as_str()],
                    )?
                    .map(|r| r.int(0))
                    .transpose()?
                    .unwrap_or(0);
                let parts = parts.max(1) as i64;
                let mut bounds: Vec<RecordId> = Vec::new();
                for i in 1..parts {
                    let at = count * i / parts;
                    if at == 0 {
                        continue;
                    }
                    if let Some(mut r) = sql.query_opt(
                        "SELECT id FROM records WHERE kind = ?1 ORDER BY id LIMIT 1 OFFSET ?2",
                        args![kind.as_str(), at],
                    )? {
                        let id = r.record_id(0)?;
                        if bounds.last() != Some(&id) {
                            bounds.push(id);
                        }
                    }
                }
                Ok(bounds)
            })
            .await?;
        Ok(RecordRange::split_at(bounds))
    }

    async fn event_count(&self) -> Result<u64> {
        self.reads
            .run(|sql| {
                let n = sql
                    .query_opt("SELECT count(*) FROM events", &[])?
                    .map(|r| r.int(0))
                    .transpose()?;
                Ok(n.unwrap_or(0).max(0) as u64)
            })
            .await
    }

    async fn create_token(&self, token: NewToken) -> Result<TokenInfo> {
        self.write(move |sql, now| {
            let now = now.as_millis();
            sql.execute(
                "INSERT INTO api_tokens (id, name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![&token.id, &token.name, token.role.as_str(), &token.hash, now],
            )?;
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
            .run(|sql| {
                sql.query(
                    &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"),
                    &[],
                )?
                .into_iter()
                .map(token_info)
                .collect()
            })
            .await
    }

    async fn revoke_token(&self, id: &str) -> Result<TokenInfo> {
        let id = id.to_owned();
        self.write(move |sql, now| {
            sql.execute(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                args![&id, now.as_millis()],
            )?;
            sql.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                args![&id],
            )?
            .map(token_info)
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("token {id}")))
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let hash = hash.to_owned();
        self.reads
            .run(move |sql| {
                sql.query_opt(
                    &format!(
                        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?1 AND revoked_at IS NULL"
                    ),
                    args![&hash],
                )?
                .map(token_info)
                .transpose()
            })
            .await
    }

    fn set_engine(&self, engine: Option<Arc<engine::Engine>>) {
        if let Some(engine) = &engine {
            self.library.remember(engine.playbooks());
        }
        if let Ok(mut slot) = self.engine.write() {
            slot.engine = engine;
        }
    }

    fn engine(&self) -> Option<Arc<engine::Engine>> {
        self.engine.read().ok().and_then(|e| e.engine.clone())
    }

    fn set_rules_on(&self, on: bool) {
        if let Ok(mut slot) = self.engine.write() {
            slot.off = !on;
        }
    }

    fn rules_on(&self) -> bool {
        self.engine.read().is_ok_and(|e| !e.off)
    }

    async fn switch_rules(&self, switch: crate::RulesSwitch) -> Result<()> {
        self.write(move |sql, _| {
            sql.execute(
                "INSERT INTO rules_switches (rules_on, changed_by, changed_at, reason)
                 VALUES (?1, ?2, ?3, ?4)",
                args![
                    switch.on,
                    &switch.by,
                    switch.at.as_millis(),
                    switch.reason.as_deref()
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn rules_switch(&self) -> Result<Option<crate::RulesSwitch>> {
        self.reads
            .run(|sql| {
                sql.query_opt(
                    "SELECT rules_on, changed_by, changed_at, reason FROM rules_switches
                     ORDER BY seq DESC LIMIT 1",
                    &[],
                )?
                .map(|mut r| {
                    Ok(crate::RulesSwitch {
                        on: r.bool(0)?,
                        by: r.text(1)?,
                        at: r.millis(2)?,
                        reason: r.opt_text(3)?,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn rule_memory(&self, record: &RecordKey) -> Result<engine::Memory> {
        let record = record.clone();
        self.reads
            .run(move |sql| {
                let memory = sql
                    .query_opt(
                        "SELECT memory FROM records WHERE kind = ?1 AND id = ?2",
                        args![record.kind.as_str(), record.id.as_str()],
                    )?
                    .map(|mut r| r.text(0))
                    .transpose()?;
                memory.map_or(Ok(engine::Memory::new()), |m| decode(&m))
            })
            .await
    }

    async fn fire_due_timers(&self, now: Timestamp, limit: usize) -> Result<TimersFired> {
        self.ask(|reply| Command::FireTimers { now, limit, reply })
            .await
    }

    async fn arm_records(&self, now: Timestamp, after: i64, limit: usize) -> Result<ArmPass> {
        self.ask(|reply| Command::ArmRecords {
            now,
            after,
            limit,
            reply,
        })
        .await
    }

    async fn refold_records(&self, after: i64, limit: usize) -> Result<RefoldPass> {
        self.ask(|reply| Command::RefoldRecords {
            after,
            limit,
            reply,
        })
        .await
    }

    async fn outbox(&self, query: &OutboxQuery) -> Result<Vec<StoredEffect>> {
        let query = query.clone();
        self.reads.run(move |sql| outbox::list(sql, &query)).await
    }

    async fn backlog(&self) -> Result<crate::Backlog> {
        self.reads.run(outbox::backlog).await
    }

    async fn effect(&self, key: &str) -> Result<Option<(StoredEffect, Vec<Attempt>)>> {
        let key = key.to_owned();
        self.reads
            .run(move |sql| {
                let Some(effect) = outbox::one(sql, &key)? else {
                    return Ok(None);
                };
                Ok(Some((effect, outbox::attempts(sql, &key)?)))
            })
            .await
    }

    async fn claim_effects(&self, claim: Claim) -> Result<Vec<StoredEffect>> {
        self.write(move |sql, _| outbox::claim(sql, &claim)).await
    }

    async fn finish_delivery(&self, finish: Finish) -> Result<bool> {
        self.ask(|reply| Command::Finish {
            finish: Box::new(finish),
            reply,
        })
        .await
    }

    async fn give_up_effects(
        &self,
        channel: &str,
        due_before: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<u64> {
        let (channel, reason) = (channel.to_owned(), reason.to_owned());
        self.write(move |sql, _| outbox::give_up(sql, &channel, due_before, &reason, now))
            .await
    }

    async fn retry_effect(&self, key: &str) -> Result<StoredEffect> {
        let key = key.to_owned();
        self.write(move |sql, now| {
            outbox::transition(sql, &key, &["dead", "cancelled"], "pending", now)
        })
        .await
    }

    async fn cancel_effect(&self, key: &str) -> Result<StoredEffect> {
        let key = key.to_owned();
        self.write(move |sql, now| {
            outbox::transition(sql, &key, &["pending", "dead"], "cancelled", now)
        })
        .await
    }

    async fn tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        let query = query.clone();
        self.reads.run(move |sql| outbox::tasks(sql, &query)).await
    }

    async fn exceptions(&self, query: &crate::ExceptionQuery) -> Result<Vec<crate::ExceptionItem>> {
        let query = query.clone();
        self.reads
            .run(move |sql| super::exceptions::list(sql, &query))
            .await
    }

    async fn exception(
        &self,
        id: &str,
    ) -> Result<Option<(crate::ExceptionItem, Vec<crate::ExceptionEntry>)>> {
        let id = id.to_owned();
        self.reads
            .run(move |sql| super::exceptions::get(sql, &id))
            .await
    }

    async fn watch_rules(&self, storms: Vec<crate::NewStorm>) -> Result<Vec<crate::Storm>> {
        self.write(move |sql, now| super::storms::watch(sql, &storms, now))
            .await
    }

    async fn storms(&self, query: &crate::StormQuery, now: Timestamp) -> Result<Vec<crate::Storm>> {
        let query = query.clone();
        self.reads
            .run(move |sql| super::storms::list(sql, &query, now))
            .await
    }

    async fn storm(&self, id: &str, now: Timestamp) -> Result<Option<crate::Storm>> {
        let id = id.to_owned();
        self.reads
            .run(move |sql| super::storms::get(sql, &id, now))
            .await
    }

    async fn decide_storm(&self, id: &str, decision: crate::StormDecision) -> Result<crate::Storm> {
        let id = id.to_owned();
        self.ask(|reply| Command::DecideStorm {
            id,
            decision,
            reply,
        })
        .await
    }

    async fn rule_page(&self, after: i64, limit: usize) -> Result<crate::RulePage> {
        self.reads
            .run(move |sql| super::storms::rule_page(sql, after, limit))
            .await
    }

    async fn act_on_exception(
        &self,
        id: &str,
        action: crate::ExceptionAction,
    ) -> Result<crate::ExceptionItem> {
        let id = id.to_owned();
        self.ask(|reply| Command::ActOnException { id, action, reply })
            .await
    }

    async fn escalate_exceptions(&self, now: Timestamp, limit: usize) -> Result<crate::Escalated> {
        self.write(move |sql, _| super::exceptions::escalate_due(sql, now, limit))
            .await
    }

    async fn complete_task(&self, id: &str) -> Result<Task> {
        let id = id.to_owned();
        self.write(move |sql, now| outbox::complete_task(sql, &id, now))
            .await
    }

    async fn timers(&self, record: &RecordKey) -> Result<Vec<engine::Timer>> {
        let record = record.clone();
        self.reads
            .run(move |sql| {
                sql.query(
                    "SELECT rule, due, anchor FROM timers WHERE record_kind = ?1 AND record_id = ?2
                     ORDER BY due, rule",
                    args![record.kind.as_str(), record.id.as_str()],
                )?
                .into_iter()
                .map(|mut r| {
                    Ok(engine::Timer {
                        due: r.millis(1)?,
                        rule: r.text(0)?,
                        record: record.clone(),
                        anchor: r.millis(2)?,
                    })
                })
                .collect()
            })
            .await
    }

    async fn publish_playbooks(&self, set: crate::PublishedPlaybooks) -> Result<()> {
        self.write(move |sql, _| {
            sql.execute(
                "INSERT INTO playbook_sets (version, files, published_at, node)
                 VALUES (?1, ?2, ?3, ?4)",
                args![
                    &set.version,
                    &super::encode(&set.files)?,
                    set.published_at.as_millis(),
                    &set.node
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn latest_playbooks(&self) -> Result<Option<crate::PublishedPlaybooks>> {
        self.reads
            .run(|sql| {
                sql.query_opt(
                    "SELECT version, files, published_at, node FROM playbook_sets
                     ORDER BY seq DESC LIMIT 1",
                    &[],
                )?
                .map(|mut r| {
                    Ok(crate::PublishedPlaybooks {
                        version: r.text(0)?,
                        files: decode(&r.text(1)?)?,
                        published_at: r.millis(2)?,
                        node: r.text(3)?,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn create_user(&self, new: crate::NewUser, replace: bool) -> Result<crate::User> {
        self.write(move |sql, now| {
            let now = now.as_millis();
            let exists = sql
                .query_opt("SELECT 1 FROM users WHERE id = ?1", args![&new.id])?
                .is_some();
            match (exists, replace) {
                (true, false) => {
                    return Err(Error::Conflict(format!("user {} already exists", new.id)));
                }
                (true, true) => {
                    sql.execute(
                        "UPDATE users SET name = ?2, role = ?3, password_hash = ?4, disabled_at = NULL WHERE id = ?1",
                        args![&new.id, &new.name, new.role.as_str(), &new.password_hash],
                    )?;
                    sql.execute("DELETE FROM sessions WHERE user_id = ?1", args![&new.id])?;
                }
                (false, _) => {
                    sql.execute(
                        "INSERT INTO users (id, name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        args![&new.id, &new.name, new.role.as_str(), &new.password_hash, now],
                    )?;
                }
            }
            let mut row = sql
                .query_opt(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                    args![&new.id],
                )?
                .ok_or_else(|| Error::NotFound(format!("user {}", new.id)))?;
            user(&mut row)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<crate::User>> {
        self.reads
            .run(|sql| {
                sql.query(
                    &format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"),
                    &[],
                )?
                .into_iter()
                .map(|mut r| user(&mut r))
                .collect()
            })
            .await
    }

    async fn user_for_sign_in(&self, id: &str) -> Result<Option<(crate::User, String)>> {
        let id = id.to_owned();
        self.reads
            .run(move |sql| {
                sql.query_opt(
                    &format!(
                        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE id = ?1 AND disabled_at IS NULL"
                    ),
                    args![&id],
                )?
                .map(|mut r| Ok((user(&mut r)?, r.text(5)?)))
                .transpose()
            })
            .await
    }

    async fn create_session(
        &self,
        hash: &str,
        user_id: &str,
        csrf: &str,
        expires_at: Timestamp,
    ) -> Result<()> {
        let (hash, user_id, csrf) = (hash.to_owned(), user_id.to_owned(), csrf.to_owned());
        self.write(move |sql, now| {
            // Expired sessions are swept as new ones begin.
            sql.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1",
                args![now.as_millis()],
            )?;
            sql.execute(
                "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![&hash, &user_id, &csrf, now.as_millis(), expires_at.as_millis()],
            )
            .map(drop)
        })
        .await
    }

    async fn session(&self, hash: &str, now: Timestamp) -> Result<Option<crate::Session>> {
        let hash = hash.to_owned();
        self.reads
            .run(move |sql| {
                sql.query_opt(
                    "SELECT u.id, u.name, u.role, u.created_at, u.disabled_at, s.csrf, s.expires_at
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.hash = ?1 AND s.expires_at > ?2 AND u.disabled_at IS NULL",
                    args![&hash, now.as_millis()],
                )?
                .map(|mut r| {
                    Ok(crate::Session {
                        user: user(&mut r)?,
                        csrf: r.text(5)?,
                        expires_at: r.millis(6)?,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn end_session(&self, hash: &str) -> Result<()> {
        let hash = hash.to_owned();
        self.write(move |sql, _| {
            sql.execute("DELETE FROM sessions WHERE hash = ?1", args![&hash])
                .map(drop)
        })
        .await
    }

    async fn rule_firings(&self) -> Result<Vec<crate::RuleFirings>> {
        self.reads.run(super::alarms::rule_firings).await
    }

    async fn publish_risk(&self, model: crate::PublishedRisk) -> Result<()> {
        self.write(move |sql, _| {
            sql.execute(
                "INSERT INTO risk_models (learned, settings, learned_at, node)
                 VALUES (?1, ?2, ?3, ?4)",
                args![
                    &super::encode(&model.learned)?,
                    &model.settings,
                    model.learned_at.as_millis(),
                    &model.node
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn latest_risk(&self) -> Result<Option<crate::PublishedRisk>> {
        self.reads
            .run(|sql| {
                sql.query_opt(
                    "SELECT learned, settings, learned_at, node FROM risk_models
                     ORDER BY seq DESC LIMIT 1",
                    &[],
                )?
                .map(|mut r| {
                    Ok(crate::PublishedRisk {
                        learned: decode(&r.text(0)?)?,
                        settings: r.text(1)?,
                        learned_at: r.millis(2)?,
                        node: r.text(3)?,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn playbooks_published(&self, version: &str) -> Result<bool> {
        let version = version.to_owned();
        self.reads
            .run(move |sql| {
                Ok(sql
                    .query_opt(
                        "SELECT 1 FROM playbook_sets WHERE version = ?1 LIMIT 1",
                        args![&version],
                    )?
                    .is_some())
            })
            .await
    }

    async fn advance_enrolments(&self, now: Timestamp, limit: usize) -> Result<crate::Advanced> {
        self.ask(|reply| Command::AdvanceEnrolments { now, limit, reply })
            .await
    }

    async fn enrolments(&self, query: &crate::EnrolmentQuery) -> Result<Vec<crate::EnrolmentInfo>> {
        let query = query.clone();
        self.reads
            .run(move |sql| sequences::list(sql, &query))
            .await
    }

    async fn control_enrolment(
        &self,
        id: &str,
        control: crate::Control,
    ) -> Result<crate::EnrolmentInfo> {
        let id = id.to_owned();
        self.write(move |sql, now| sequences::control(sql, &id, control, now))
            .await
    }

    async fn pause_sequences(&self, scope: crate::PauseScope, note: Option<String>) -> Result<u64> {
        self.write(move |sql, now| sequences::pause(sql, &scope, note.as_deref(), now))
            .await
    }

    async fn resume_sequences(&self, scope: crate::PauseScope) -> Result<u64> {
        self.write(move |sql, now| sequences::resume(sql, &scope, now))
            .await
    }

    async fn sequence_pauses(&self) -> Result<Vec<crate::SequencePause>> {
        self.reads.run(sequences::pauses).await
    }

    async fn suppress(&self, address: &str, reason: &str, note: Option<String>) -> Result<()> {
        let address = address.trim().to_lowercase();
        if address.is_empty() || !address.contains('@') {
            return Err(Error::Invalid(format!(
                "{address:?} is neither an email address nor a domain written @example.com"
            )));
        }
        if !["do_not_contact", "unsubscribed", "bounced"].contains(&reason) {
            return Err(Error::Invalid(format!(
                "reason {reason:?}: expected do_not_contact, unsubscribed or bounced"
            )));
        }
        let reason = reason.to_owned();
        self.write(move |sql, now| {
            sequences::suppress(sql, &address, &reason, note.as_deref(), now)
        })
        .await
    }

    async fn unsuppress(&self, address: &str) -> Result<bool> {
        let address = address.trim().to_lowercase();
        self.write(move |sql, _| {
            Ok(sql.execute(
                "DELETE FROM suppressions WHERE address = ?1",
                args![&address],
            )? > 0)
        })
        .await
    }

    async fn suppressions(&self, limit: usize) -> Result<Vec<crate::Suppression>> {
        self.reads
            .run(move |sql| sequences::suppressions(sql, limit))
            .await
    }

    async fn sequence_results(&self, sequence: &str) -> Result<Vec<crate::VariantResult>> {
        let sequence = sequence.to_owned();
        self.reads
            .run(move |sql| sequences::results(sql, &sequence))
            .await
    }

    async fn playbook_set(&self, version: &str) -> Result<Option<Arc<playbook::PlaybookSet>>> {
        let library = Arc::clone(&self.library);
        let version = version.to_owned();
        self.reads.run(move |sql| library.get(sql, &version)).await
    }

    async fn secret(&self, name: &str) -> Result<String> {
        // Made once; every later ask is a read (the unsubscribe page asks on each request).
        let wanted = name.to_owned();
        let stored = self
            .reads
            .run(move |sql| {
                sql.query_opt("SELECT value FROM secrets WHERE name = ?1", args![&wanted])?
                    .map(|mut r| r.text(0))
                    .transpose()
            })
            .await?;
        if let Some(secret) = stored {
            return Ok(secret);
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Backend(Box::new(std::io::Error::other(e.to_string()))))?;
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let name = name.to_owned();
        self.write(move |sql, _| sequences::secret(sql, &name, &fresh))
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.reads
            .run(|sql| sql.query("SELECT 1", &[]).map(drop))
            .await
    }

    async fn ping_writer(&self) -> Result<()> {
        self.write(super::probe_write).await?;
        if let Err(full) = self.reads.backend.room() {
            self.outages.failed(&full);
            return Err(full);
        }
        self.outages.wrote();
        Ok(())
    }

    fn outage(&self) -> Option<crate::Outage> {
        self.outages.current()
    }

    async fn close(&self) -> Result<()> {
        match self.ask(|reply| Command::Stop { reply }).await {
            // Stopped before: closed is what was asked for.
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }

    async fn channel_attempts(&self, since: Timestamp) -> Result<Vec<crate::ChannelAttempts>> {
        self.reads
            .run(move |sql| super::alarms::channel_attempts(sql, since))
            .await
    }

    async fn dead_letters(&self) -> Result<crate::DeadLetters> {
        self.reads.run(super::alarms::dead_letters).await
    }

    async fn sync_alarms(
        &self,
        syncs: Vec<crate::AlarmSync>,
        now: Timestamp,
    ) -> Result<crate::AlarmsSynced> {
        self.write(move |sql, _| super::alarms::sync(sql, &syncs, now))
            .await
    }

    async fn alarms(&self, query: &crate::AlarmQuery) -> Result<Vec<crate::Alarm>> {
        let query = query.clone();
        self.reads
            .run(move |sql| super::alarms::list(sql, &query))
            .await
    }

    async fn alarm(&self, id: &str) -> Result<Option<crate::Alarm>> {
        let id = id.to_owned();
        self.reads
            .run(move |sql| super::alarms::get(sql, &id))
            .await
    }

    async fn act_on_alarm(&self, id: &str, action: crate::AlarmAction) -> Result<crate::Alarm> {
        let id = id.to_owned();
        self.write(move |sql, now| super::alarms::act(sql, &id, &action, now))
            .await
    }
}
