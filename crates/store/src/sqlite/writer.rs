//! The single writer thread and its group commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use clock::Clock;
use domain::{Event, EventId, NewEvent, Record, RecordKey, RecordKind, Timestamp};
use engine::{Effect, Engine, Memory, Timer, TimerChange};
use playbook::Action;

use super::{backend, codec, decode};
use crate::{ArmPass, Error, Ingested, Result, TimersFired};

/// A write that is not an ingest: runs alone, in its own transaction, and replies itself.
pub(super) type Job = Box<dyn FnOnce(&mut Connection, Timestamp) + Send>;

pub(super) enum Command {
    Ingest {
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<Vec<Ingested>>>,
    },
    Job(Job),
    FireTimers {
        now: Timestamp,
        limit: usize,
        reply: oneshot::Sender<Result<TimersFired>>,
    },
    ArmRecords {
        now: Timestamp,
        after: i64,
        limit: usize,
        reply: oneshot::Sender<Result<ArmPass>>,
    },
    RefoldRecords {
        after: i64,
        limit: usize,
        reply: oneshot::Sender<Result<crate::RefoldPass>>,
    },
    /// Recorded together with the other finishes waiting, in one transaction: the sooner a
    /// delivery is recorded, the smaller the window in which a crash makes it go out twice.
    Finish {
        finish: Box<crate::Finish>,
        reply: oneshot::Sender<Result<bool>>,
    },
}

/// Joins the writer and checkpointer threads when the last handle to the store is dropped,
/// after the queue has been drained, so every accepted request is answered before shutdown
/// completes.
#[derive(Debug)]
pub(super) struct Thread(Vec<JoinHandle<()>>);

impl Drop for Thread {
    fn drop(&mut self) {
        for handle in self.0.drain(..) {
            let _ = handle.join();
        }
    }
}

/// WAL size (in pages) at which the checkpointer is woken: large enough that each checkpoint,
/// and its fsync, is amortised over many commits.
const CHECKPOINT_AT: i32 = 1_000;
/// WAL size at which the writer checkpoints itself, should the checkpointer fall behind.
const BACKSTOP_AT: i32 = 16_000;

/// Starts the writer, and beside it a checkpointer that copies committed WAL pages into the
/// database file while the writer goes on committing. A checkpoint in the writer's own commit
/// path took a fifth of its time; on its own thread it uses the other core. A WAL hook on the
/// writer's connection wakes it once the log holds [`CHECKPOINT_AT`] pages; it never runs on a
/// timer.
pub(super) fn spawn(
    mut conn: Connection,
    checkpointer: Connection,
    engine: EngineSlot,
    clock: Arc<dyn Clock>,
    max_group_events: usize,
) -> Result<(mpsc::Sender<Command>, Thread)> {
    let (tx, rx) = mpsc::channel(1024);
    let (kick, kicked) = std::sync::mpsc::sync_channel::<()>(1);
    let checkpoints = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while kicked.recv().is_ok() {
                if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; the writer's backstop will retry");
                }
            }
        })
        .map_err(backend)?;
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        after_commit(
            pages,
            || {
                wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE)
                    .map(drop)
            },
            || {
                // A checkpoint already pending will pick this commit up too.
                let _ = kick.try_send(());
            },
        );
        Ok(())
    }))
    .map_err(backend)?;
    let writer = std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, engine, clock, rx, max_group_events.max(1)))
        .map_err(backend)?;
    Ok((tx, Thread(vec![writer, checkpoints])))
}

/// What the WAL hook does after each commit, given the log's size in pages.
///
/// The hook runs inside COMMIT, after the transaction is durable: an error returned from it
/// would make SQLite report a committed transaction as failed (and the writer would tell the
/// client its events were not stored). So nothing here can fail: a backstop checkpoint that
/// cannot run — another checkpoint holds the lock — is only logged.
fn after_commit(
    pages: i32,
    checkpoint: impl FnOnce() -> rusqlite::Result<()>,
    wake_checkpointer: impl FnOnce(),
) {
    if pages >= BACKSTOP_AT {
        if let Err(e) = checkpoint() {
            tracing::debug!(error = %e, pages, "backstop checkpoint did not run");
        }
    } else if pages >= CHECKPOINT_AT {
        wake_checkpointer();
    }
}

fn run(
    conn: Connection,
    engine: EngineSlot,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Command>,
    max: usize,
) {
    let mut writer = Writer {
        conn,
        cache: RecordCache::default(),
        engine,
    };
    while let Some(first) = rx.blocking_recv() {
        let mut group = Vec::new();
        let mut finishes = Vec::new();
        let mut pending_job = None;
        let mut size = 0;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Ingest { events, reply } => {
                    size += events.len();
                    group.push((events, reply));
                }
                Command::Finish { finish, reply } => {
                    size += 1;
                    finishes.push((finish, reply));
                }
                other => {
                    pending_job = Some(other);
                    break;
                }
            }
            if size < max {
                next = rx.try_recv().ok();
            }
        }
        if group.is_empty() {
            if !finishes.is_empty() {
                writer.finish_all(finishes);
            }
        } else {
            writer.commit_group(clock.now(), group, finishes);
        }
        match pending_job {
            Some(Command::Job(job)) => job(&mut writer.conn, clock.now()),
            Some(Command::FireTimers { now, limit, reply }) => {
                let _ = reply.send(writer.fire_timers(now, limit));
            }
            Some(Command::ArmRecords {
                now,
                after,
                limit,
                reply,
            }) => {
                let _ = reply.send(writer.arm_records(now, after, limit));
            }
            Some(Command::RefoldRecords {
                after,
                limit,
                reply,
            }) => {
                let _ = reply.send(writer.refold_records(after, limit));
            }
            Some(Command::Ingest { .. } | Command::Finish { .. }) | None => {}
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Ingested>>>;

/// Delivery outcomes waiting to be recorded, with their replies.
type Finishes = Vec<(Box<crate::Finish>, oneshot::Sender<Result<bool>>)>;

/// A record's state as of the latest commit, the time of its latest event, and the rules'
/// memory of it.
#[derive(Clone)]
struct Folded {
    record: Record,
    last: Option<Timestamp>,
    memory: Memory,
    /// The playbook version the record's timers were last armed with.
    armed_version: Option<String>,
}

/// The rules engine the writer runs inside its transactions, replaceable on playbook reload.
pub(super) type EngineSlot = Arc<std::sync::RwLock<Option<Arc<Engine>>>>;

fn rules_apply(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Deal | RecordKind::Lead)
}

/// Decoded states of recently written records, so a busy record is not read back and decoded
/// on every event. Holds only committed state. Another process writing the same database (an
/// import beside the server) changes SQLite's `data_version`; the cache is then dropped.
#[derive(Default)]
struct RecordCache {
    records: HashMap<RecordKey, Folded>,
    data_version: i64,
}

impl RecordCache {
    /// Bounds memory: past this many records the cache starts over.
    const CAPACITY: usize = 20_000;

    fn revalidate(&mut self, conn: &Connection) {
        let version = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap_or(-1);
        if version != self.data_version {
            self.records.clear();
            self.data_version = version;
        }
    }

    fn remember(&mut self, written: Vec<(RecordKey, Folded)>) {
        if self.records.len() + written.len() > Self::CAPACITY {
            self.records.clear();
        }
        self.records.extend(written);
    }
}

struct Writer {
    conn: Connection,
    cache: RecordCache,
    engine: EngineSlot,
}

impl Writer {
    /// Applies every request of the group in one transaction, commits once, and only then
    /// answers. If anything fails, the group is rolled back and each request is retried in a
    /// transaction of its own, so one failing request never takes the others down and nothing
    /// is half-written.
    /// Delivery outcomes waiting (`finishes`) are recorded in the same transaction: one commit
    /// for both.
    fn commit_group(
        &mut self,
        now: Timestamp,
        group: Vec<(Vec<NewEvent>, Reply)>,
        finishes: Finishes,
    ) {
        let started = Instant::now();
        let events: usize = group.iter().map(|(e, _)| e.len()).sum();
        self.cache.revalidate(&self.conn);
        if group.len() == 1 && finishes.is_empty() {
            let (batch, reply) = group.into_iter().next().expect("one request");
            let _ = reply.send(self.in_transaction(now, batch));
        } else {
            // The batches are cloned only so they can be retried alone should the group fail.
            let batches: Vec<Vec<NewEvent>> = group.iter().map(|(b, _)| b.clone()).collect();
            let records: Vec<&crate::Finish> = finishes.iter().map(|(f, _)| &**f).collect();
            match self.apply_all(now, batches, &records) {
                Ok((outcomes, held)) => {
                    for ((_, reply), out) in group.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(out));
                    }
                    for ((_, reply), held) in finishes.into_iter().zip(held) {
                        let _ = reply.send(Ok(held));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "group commit failed; retrying its requests one by one");
                    if !finishes.is_empty() {
                        self.finish_all(finishes);
                    }
                    for (batch, reply) in group {
                        let _ = reply.send(self.in_transaction(now, batch));
                    }
                }
            }
        }
        metrics::histogram!("pipewright_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("pipewright_store_group_events").record(events as f64);
    }

    fn apply_all(
        &mut self,
        now: Timestamp,
        batches: Vec<Vec<NewEvent>>,
        finishes: &[&crate::Finish],
    ) -> Result<(Vec<Vec<Ingested>>, Vec<bool>)> {
        let engine = self.engine.read().ok().and_then(|e| e.clone());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let held = finishes
            .iter()
            .map(|f| super::outbox::finish(&tx, f))
            .collect::<Result<Vec<bool>>>()?;
        let mut written = HashMap::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            outcomes.push(ingest(
                &tx,
                &self.cache,
                engine.as_deref(),
                batch,
                now,
                &mut written,
            )?);
        }
        tx.commit().map_err(backend)?;
        self.cache.remember(written.into_iter().collect());
        Ok((outcomes, held))
    }

    /// Fires due timers in one transaction: each timer is deleted as it fires, with the effects
    /// it causes and the rule's memory, so a crash leaves it either pending or done.
    fn fire_timers(&mut self, now: Timestamp, limit: usize) -> Result<TimersFired> {
        let Some(engine) = self.engine.read().ok().and_then(|e| e.clone()) else {
            return Ok(TimersFired::default());
        };
        self.cache.revalidate(&self.conn);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let due: Vec<(String, String, String, i64, i64)> = tx
            .prepare_cached(
                "SELECT rule, record_kind, record_id, due, anchor FROM timers
                 WHERE due <= ?1 ORDER BY due, rule, record_kind, record_id LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![now.as_millis(), limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            })
            .map_err(backend)?;
        let mut fired = TimersFired::default();
        let mut written: HashMap<RecordKey, Folded> = HashMap::new();
        let mut effects = Vec::new();
        for (rule, kind, id, due, anchor) in due {
            let kind = RecordKind::parse(&kind)
                .ok_or_else(|| Error::Corrupt(format!("timer record kind {kind:?}")))?;
            let record = RecordKey::new(
                kind,
                domain::RecordId::parse(id).map_err(|e| Error::Corrupt(e.to_string()))?,
            );
            tx.execute(
                "DELETE FROM timers WHERE rule = ?1 AND record_kind = ?2 AND record_id = ?3",
                params![rule, record.kind.as_str(), record.id.as_str()],
            )
            .map_err(backend)?;
            let mut folded = match written.remove(&record) {
                Some(f) => f,
                None => match self.cache.records.get(&record) {
                    Some(f) => f.clone(),
                    None => load(&tx, &record)?,
                },
            };
            let timer = Timer {
                due: Timestamp::from_millis(due),
                rule,
                record: record.clone(),
                anchor: Timestamp::from_millis(anchor),
            };
            // A timer fires at its due time, whatever the lateness: replays decide alike.
            effects.extend(engine.on_timer(&timer, &folded.record, &mut folded.memory, timer.due));
            if let Some(next) = engine.follow_up(&timer, &folded.record, now) {
                set_timers(&tx, vec![TimerChange::Set(next)])?;
            }
            fired.timers += 1;
            written.insert(record, folded);
        }
        for (key, f) in &written {
            tx.execute(
                "UPDATE records SET memory = ?3 WHERE kind = ?1 AND id = ?2",
                params![
                    key.kind.as_str(),
                    key.id.as_str(),
                    encode_memory(&f.memory)?
                ],
            )
            .map_err(backend)?;
        }
        fired.effects = insert_effects(&tx, &effects, now)?;
        tx.commit().map_err(backend)?;
        self.cache.remember(written.into_iter().collect());
        Ok(fired)
    }

    /// Records delivery outcomes in one transaction; should it fail, each alone.
    fn finish_all(&mut self, finishes: Finishes) {
        let together = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut held = Vec::with_capacity(finishes.len());
            for (finish, _) in &finishes {
                held.push(super::outbox::finish(&tx, finish)?);
            }
            tx.commit().map_err(backend)?;
            Ok::<_, Error>(held)
        })();
        match together {
            Ok(held) => {
                for ((_, reply), held) in finishes.into_iter().zip(held) {
                    let _ = reply.send(Ok(held));
                }
            }
            Err(_) => {
                for (finish, reply) in finishes {
                    let alone = (|| {
                        let tx = self
                            .conn
                            .transaction_with_behavior(TransactionBehavior::Immediate)
                            .map_err(backend)?;
                        let held = super::outbox::finish(&tx, &finish)?;
                        tx.commit().map_err(backend)?;
                        Ok(held)
                    })();
                    let _ = reply.send(alone);
                }
            }
        }
    }

    /// One pass of [`crate::Store::refold_records`], in one transaction.
    fn refold_records(&mut self, after: i64, limit: usize) -> Result<crate::RefoldPass> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let (rows, next) = records_page::<String>(&tx, "state", after, limit)?;
        let mut pass = crate::RefoldPass {
            examined: rows.len(),
            next,
            ..crate::RefoldPass::default()
        };
        for (key, state) in rows {
            let events = record_events(&tx, &key, None)?;
            let record = Record::fold(&key, &events);
            let folded = codec::encode(&record)?;
            if folded == state {
                continue;
            }
            let (stage, owner) = indexed(&record);
            tx.prepare_cached(
                "UPDATE records SET state = ?3, stage = ?4, owner = ?5 WHERE kind = ?1 AND id = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    key.kind.as_str(),
                    key.id.as_str(),
                    folded,
                    stage,
                    owner
                ])
            })
            .map_err(backend)?;
            pass.corrected += 1;
        }
        tx.commit().map_err(backend)?;
        if pass.corrected > 0 {
            self.cache.records.clear();
        }
        Ok(pass)
    }

    /// One pass of [`crate::Store::arm_records`], in one transaction.
    fn arm_records(&mut self, now: Timestamp, after: i64, limit: usize) -> Result<ArmPass> {
        let Some(engine) = self.engine.read().ok().and_then(|e| e.clone()) else {
            return Ok(ArmPass::default());
        };
        self.cache.revalidate(&self.conn);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let (rows, next) = records_page::<Option<String>>(&tx, "armed_version", after, limit)?;
        let mut written = Vec::new();
        for (key, armed) in rows {
            if !rules_apply(key.kind) || armed.as_deref() == Some(engine.version()) {
                continue;
            }
            let mut folded = match self.cache.records.get(&key) {
                Some(f) => f.clone(),
                None => load(&tx, &key)?,
            };
            clear_timers(&tx, &key)?;
            set_timers(&tx, engine.arm(&folded.record, now))?;
            tx.prepare_cached("UPDATE records SET armed_version = ?3 WHERE kind = ?1 AND id = ?2")
                .and_then(|mut s| {
                    s.execute(params![
                        key.kind.as_str(),
                        key.id.as_str(),
                        engine.version()
                    ])
                })
                .map_err(backend)?;
            folded.armed_version = Some(engine.version().to_owned());
            written.push((key, folded));
        }
        tx.commit().map_err(backend)?;
        let pass = ArmPass {
            armed: written.len(),
            next,
        };
        self.cache.remember(written);
        Ok(pass)
    }

    fn in_transaction(&mut self, now: Timestamp, batch: Vec<NewEvent>) -> Result<Vec<Ingested>> {
        self.apply_all(now, vec![batch], &[])
            .map(|(mut o, _)| o.pop().unwrap_or_default())
            .inspect_err(|e| {
                tracing::error!(error = ?e, "ingest failed; its events were not written");
            })
    }
}

/// A record touched by the request being applied.
struct Touched {
    folded: Folded,
    /// An event arrived earlier than `last`: fold again from the log before writing.
    refold: bool,
    /// The indexed columns (stage, owner) of the stored row, when a row exists: if they do not
    /// change, only the state is rewritten and the indexes on them are left alone.
    stored: Option<(Option<String>, Option<String>)>,
    /// Events that arrived out of order, for the rules once the record is folded again.
    late: Vec<Event>,
    /// The timers the record waited on before this request (empty for a new record).
    armed: Vec<TimerChange>,
}

fn indexed(record: &Record) -> (Option<String>, Option<String>) {
    (
        record.stage().map(|s| s.as_str().to_owned()),
        record.owner().map(|o| o.as_str().to_owned()),
    )
}

fn event_id(now: Timestamp) -> EventId {
    let ms = now.as_millis().max(0) as u64;
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    EventId(uuid::Uuid::new_v7(ts))
}

/// Appends one request's events and updates the records they concern. `written` holds the
/// records earlier requests of the same transaction wrote: a record is taken from there first,
/// so each request builds on the one before it; it goes to the cache once the transaction
/// commits.
fn ingest(
    conn: &Connection,
    cache: &RecordCache,
    engine: Option<&Engine>,
    batch: Vec<NewEvent>,
    now: Timestamp,
    written: &mut HashMap<RecordKey, Folded>,
) -> Result<Vec<Ingested>> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (id, source, source_id, type, occurred_at, received_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (source, source_id) DO NOTHING",
        )
        .map_err(backend)?;
    let mut existing = conn
        .prepare_cached("SELECT id FROM events WHERE source = ?1 AND source_id = ?2")
        .map_err(backend)?;
    let mut link = conn
        .prepare_cached(
            "INSERT INTO event_records (kind, record_id, occurred_at, seq) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(backend)?;
    let mut touched: HashMap<RecordKey, Touched> = HashMap::new();
    let mut effects = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    for new in batch {
        let event = new.stamp(event_id(now), now);
        let body = serde_json::to_string(&event).map_err(|e| Error::Invalid(e.to_string()))?;
        let at = event.occurred_at.as_millis();
        let inserted = insert
            .execute(params![
                event.id.0.to_string(),
                event.source,
                event.source_id,
                event.event_type().as_str(),
                at,
                now.as_millis(),
                body
            ])
            .map_err(backend)?;
        let seq = (inserted == 1).then(|| conn.last_insert_rowid());
        let Some(seq) = seq else {
            let id: String = existing
                .query_row(params![event.source, event.source_id], |r| r.get(0))
                .map_err(backend)?;
            let id = uuid::Uuid::parse_str(&id).map_err(|e| Error::Corrupt(e.to_string()))?;
            results.push(Ingested::Duplicate { id: EventId(id) });
            continue;
        };
        for key in event.refs.keys() {
            link.execute(params![key.kind.as_str(), key.id.as_str(), at, seq])
                .map_err(backend)?;
            let t = match touched.entry(key) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let folded = match written.remove(v.key()) {
                        Some(f) => f,
                        None => match cache.records.get(v.key()) {
                            Some(f) => f.clone(),
                            None => load(conn, v.key())?,
                        },
                    };
                    let stored = folded.last.map(|_| indexed(&folded.record));
                    // What the record waits on now; after the request only changes are written.
                    let armed = match engine {
                        Some(engine)
                            if folded.armed_version.as_deref() == Some(engine.version())
                                && rules_apply(v.key().kind) =>
                        {
                            engine.arm(&folded.record, now)
                        }
                        _ => Vec::new(),
                    };
                    v.insert(Touched {
                        folded,
                        refold: false,
                        stored,
                        late: Vec::new(),
                        armed,
                    })
                }
            };
            let late = t.folded.last.is_some_and(|last| event.occurred_at < last);
            if late || t.refold {
                // Rules see a late event once the record has been folded again in order.
                t.refold = true;
                if engine.is_some() && rules_apply(t.folded.record.kind()) {
                    t.late.push(event.clone());
                }
            } else {
                t.folded.record.apply(&event);
                t.folded.last = Some(event.occurred_at);
                if let Some(engine) = engine
                    && rules_apply(t.folded.record.kind())
                {
                    effects.extend(engine.on_event(&event, &t.folded.record, &mut t.folded.memory));
                }
            }
        }
        results.push(Ingested::Stored { id: event.id, seq });
    }
    let mut save = conn
        .prepare_cached(
            "INSERT INTO records (kind, id, stage, owner, last_occurred_at, updated_at, state, memory,
                                  armed_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (kind, id) DO UPDATE SET stage = excluded.stage, owner = excluded.owner,
               last_occurred_at = excluded.last_occurred_at, updated_at = excluded.updated_at,
               state = excluded.state, memory = excluded.memory,
               armed_version = excluded.armed_version",
        )
        .map_err(backend)?;
    let mut save_state = conn
        .prepare_cached(
            "UPDATE records SET last_occurred_at = ?3, updated_at = ?4, state = ?5, memory = ?6,
               armed_version = ?7
             WHERE kind = ?1 AND id = ?2",
        )
        .map_err(backend)?;
    for (key, t) in touched {
        let mut f = t.folded;
        if t.refold {
            let events = record_events(conn, &key, None)?;
            f.last = events.last().map(|e| e.occurred_at);
            f.record = Record::fold(&key, &events);
        }
        if let Some(engine) = engine
            && rules_apply(key.kind)
        {
            for event in &t.late {
                effects.extend(engine.on_event(event, &f.record, &mut f.memory));
            }
            let now_armed = engine.arm(&f.record, now);
            let changed: Vec<TimerChange> = match f.armed_version.as_deref() {
                // Armed by this engine before the request: only what moved is rewritten.
                Some(v) if v == engine.version() => now_armed
                    .into_iter()
                    .zip(&t.armed)
                    .filter(|(new, old)| new != *old)
                    .map(|(new, _)| new)
                    .collect(),
                // Armed under other playbooks: the timers of rules gone from them go too.
                Some(_) => {
                    clear_timers(conn, &key)?;
                    now_armed
                }
                None => now_armed,
            };
            set_timers(conn, changed)?;
            f.armed_version = Some(engine.version().to_owned());
        }
        let memory = encode_memory(&f.memory)?;
        let state = codec::encode(&f.record)?;
        let (kind, id, last) = (
            key.kind.as_str(),
            key.id.as_str(),
            f.last.unwrap_or_default().as_millis(),
        );
        let now = now.as_millis();
        let columns = indexed(&f.record);
        if t.stored.as_ref() == Some(&columns) {
            save_state
                .execute(params![kind, id, last, now, state, memory, f.armed_version])
                .map_err(backend)?;
        } else {
            save.execute(params![
                kind,
                id,
                columns.0,
                columns.1,
                last,
                now,
                state,
                memory,
                f.armed_version
            ])
            .map_err(backend)?;
        }
        written.insert(key, f);
    }
    insert_effects(conn, &effects, now)?;
    Ok(results)
}

fn encode_memory(memory: &Memory) -> Result<String> {
    serde_json::to_string(memory).map_err(|e| Error::Invalid(e.to_string()))
}

/// Records with one of their columns, and the cursor of the next page.
type Page<T> = (Vec<(RecordKey, T)>, Option<i64>);

/// A page of records in storage order after the cursor `after`: (rowid, key, `column`), and
/// the cursor of the next page when this one is full.
fn records_page<T: rusqlite::types::FromSql>(
    conn: &Connection,
    column: &str,
    after: i64,
    limit: usize,
) -> Result<Page<T>> {
    let rows: Vec<(i64, String, String, T)> = conn
        .prepare_cached(&format!(
            "SELECT rowid, kind, id, {column} FROM records WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"
        ))
        .and_then(|mut s| {
            s.query_map(params![after, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect()
        })
        .map_err(backend)?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.0))
        .flatten();
    let page = rows
        .into_iter()
        .map(|(_, kind, id, value)| {
            let kind = RecordKind::parse(&kind)
                .ok_or_else(|| Error::Corrupt(format!("record kind {kind:?}")))?;
            let id = domain::RecordId::parse(id).map_err(|e| Error::Corrupt(e.to_string()))?;
            Ok((RecordKey::new(kind, id), value))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((page, next))
}

/// Removes every timer of a record.
fn clear_timers(conn: &Connection, key: &RecordKey) -> Result<()> {
    conn.prepare_cached("DELETE FROM timers WHERE record_kind = ?1 AND record_id = ?2")
        .and_then(|mut s| s.execute(params![key.kind.as_str(), key.id.as_str()]))
        .map(drop)
        .map_err(backend)
}

/// Writes the timers a record should now wait on: each set replaces the rule's previous timer.
fn set_timers(conn: &Connection, changes: Vec<TimerChange>) -> Result<()> {
    let mut set = conn
        .prepare_cached(
            "INSERT INTO timers (rule, record_kind, record_id, due, anchor) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (rule, record_kind, record_id) DO UPDATE SET due = excluded.due, anchor = excluded.anchor",
        )
        .map_err(backend)?;
    let mut cancel = conn
        .prepare_cached(
            "DELETE FROM timers WHERE rule = ?1 AND record_kind = ?2 AND record_id = ?3",
        )
        .map_err(backend)?;
    for change in changes {
        match change {
            TimerChange::Set(t) => set.execute(params![
                t.rule,
                t.record.kind.as_str(),
                t.record.id.as_str(),
                t.due.as_millis(),
                t.anchor.as_millis()
            ]),
            TimerChange::Cancel { rule, record } => {
                cancel.execute(params![rule, record.kind.as_str(), record.id.as_str()])
            }
        }
        .map_err(backend)?;
    }
    Ok(())
}

/// The next member of a team's round-robin, advancing it (in the caller's transaction).
fn next_in_rotation(
    conn: &Connection,
    team: &[domain::RecordId],
) -> Result<Option<domain::RecordId>> {
    if team.is_empty() {
        return Ok(None);
    }
    let name = team
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let next: i64 = conn
        .prepare_cached(
            "INSERT INTO rotations (team, next) VALUES (?1, 1)
             ON CONFLICT (team) DO UPDATE SET next = next + 1 RETURNING next - 1",
        )
        .and_then(|mut s| s.query_row(params![name], |r| r.get(0)))
        .map_err(backend)?;
    Ok(team
        .get(next.rem_euclid(team.len() as i64) as usize)
        .cloned())
}

/// Adds effects to the outbox; an effect whose idempotency key is already there is skipped.
fn insert_effects(conn: &Connection, effects: &[Effect], now: Timestamp) -> Result<usize> {
    if effects.is_empty() {
        return Ok(0);
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO effects (key, seq, playbook, rule, version, record_kind, record_id, action,
                                  due, shadow, status, trace, created_at, channel, next_at)
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM effects), ?2, ?3, ?4, ?5, ?6, ?7,
                     ?8, ?9, ?10, ?11, ?12, ?13, ?8)
             ON CONFLICT (key) DO NOTHING",
        )
        .map_err(backend)?;
    let mut exists = conn
        .prepare_cached("SELECT 1 FROM effects WHERE key = ?1")
        .map_err(backend)?;
    let mut added = 0;
    for e in effects {
        let mut action = e.action.clone();
        if let Action::AssignOwner { team, chosen } = &mut action {
            // Only a new decision takes a turn in the rotation; a known key is skipped below.
            if exists.exists(params![e.key]).map_err(backend)? {
                continue;
            }
            *chosen = next_in_rotation(conn, team)?;
        }
        let channel = action.channel();
        let action = serde_json::to_string(&action).map_err(|x| Error::Invalid(x.to_string()))?;
        let trace = serde_json::to_string(&e.trace).map_err(|x| Error::Invalid(x.to_string()))?;
        added += insert
            .execute(params![
                e.key,
                e.playbook,
                e.rule,
                e.version,
                e.record.kind.as_str(),
                e.record.id.as_str(),
                action,
                e.due.as_millis(),
                e.shadow,
                if e.shadow { "shadow" } else { "pending" },
                trace,
                now.as_millis(),
                channel
            ])
            .map_err(backend)?;
    }
    Ok(added)
}

fn load(conn: &Connection, key: &RecordKey) -> Result<Folded> {
    let row: Option<(String, i64, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT state, last_occurred_at, memory, armed_version FROM records
             WHERE kind = ?1 AND id = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![key.kind.as_str(), key.id.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(backend)?;
    Ok(match row {
        Some((state, last, memory, armed_version)) => Folded {
            record: codec::decode(key.kind, &state)?,
            last: Some(Timestamp::from_millis(last)),
            memory: decode(&memory)?,
            armed_version,
        },
        None => Folded {
            record: Record::empty(key),
            last: None,
            memory: Memory::new(),
            armed_version: None,
        },
    })
}

/// A record's events in occurrence order (ties in log order); only the newest `newest` if set.
pub(super) fn record_events(
    conn: &Connection,
    key: &RecordKey,
    newest: Option<usize>,
) -> Result<Vec<Event>> {
    let limit = newest.map_or(-1, |n| n as i64);
    let mut stmt = conn
        .prepare_cached(
            "SELECT e.body FROM event_records r JOIN events e ON e.seq = r.seq
             WHERE r.kind = ?1 AND r.record_id = ?2
             ORDER BY r.occurred_at DESC, r.seq DESC LIMIT ?3",
        )
        .map_err(backend)?;
    let bodies = stmt
        .query_map(params![key.kind.as_str(), key.id.as_str(), limit], |r| {
            r.get::<_, String>(0)
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    bodies.iter().rev().map(|b| decode(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backstop checkpoint that fails (SQLITE_BUSY while the checkpointer runs) once made
    /// committed ingests answer 500; the hook must swallow it.
    #[test]
    fn a_failing_backstop_checkpoint_never_fails_the_commit() {
        let mut woken = false;
        let mut tried = false;
        after_commit(
            BACKSTOP_AT,
            || {
                tried = true;
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(5),
                    None,
                ))
            },
            || woken = true,
        );
        assert!(tried && !woken);
    }

    #[test]
    fn the_checkpointer_is_woken_only_past_its_threshold() {
        let mut woken = false;
        after_commit(CHECKPOINT_AT - 1, || Ok(()), || woken = true);
        assert!(!woken);
        after_commit(CHECKPOINT_AT, || Ok(()), || woken = true);
        assert!(woken);
    }
}
