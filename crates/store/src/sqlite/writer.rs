//! The single writer thread and its group commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use clock::Clock;
use domain::{Event, EventId, NewEvent, Record, RecordKey, Timestamp};

use super::{backend, decode};
use crate::{Error, Ingested, Result};

/// A write that is not an ingest: runs alone, in its own transaction, and replies itself.
pub(super) type Job = Box<dyn FnOnce(&mut Connection, Timestamp) + Send>;

pub(super) enum Command {
    Ingest {
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<Vec<Ingested>>>,
    },
    Job(Job),
}

/// Joins the writer thread when the last handle to the store is dropped, after the queue has
/// been drained, so every accepted request is answered before shutdown completes.
#[derive(Debug)]
pub(super) struct Thread(Option<JoinHandle<()>>);

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

pub(super) fn spawn(
    conn: Connection,
    clock: Arc<dyn Clock>,
    max_group_events: usize,
) -> Result<(mpsc::Sender<Command>, Thread)> {
    let (tx, rx) = mpsc::channel(1024);
    let handle = std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, clock, rx, max_group_events.max(1)))
        .map_err(backend)?;
    Ok((tx, Thread(Some(handle))))
}

fn run(mut conn: Connection, clock: Arc<dyn Clock>, mut rx: mpsc::Receiver<Command>, max: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = Vec::new();
        let mut pending_job = None;
        let mut size = 0;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Ingest { events, reply } => {
                    size += events.len();
                    group.push((events, reply));
                }
                Command::Job(job) => {
                    pending_job = Some(job);
                    break;
                }
            }
            if size < max {
                next = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            commit_group(&mut conn, clock.now(), group);
        }
        if let Some(job) = pending_job {
            job(&mut conn, clock.now());
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Ingested>>>;

/// Applies every request in one transaction (a savepoint each, so one failing request does not
/// take the others down), commits once, and only then answers.
fn commit_group(conn: &mut Connection, now: Timestamp, group: Vec<(Vec<NewEvent>, Reply)>) {
    let started = Instant::now();
    let events: usize = group.iter().map(|(e, _)| e.len()).sum();
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "cannot begin a write transaction");
            for (_, reply) in group {
                let _ = reply.send(Err(Error::Backend(e.to_string().into())));
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(group.len());
    for (batch, reply) in group {
        let outcome = tx.savepoint().map_err(backend).and_then(|sp| {
            let out = ingest(&sp, batch, now)?;
            sp.commit().map_err(backend)?;
            Ok(out)
        });
        match outcome {
            Ok(out) => done.push((reply, out)),
            Err(e) => {
                tracing::error!(error = ?e, "ingest failed; its events were not written");
                let _ = reply.send(Err(e));
            }
        }
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, out) in done {
                let _ = reply.send(Ok(out));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; no event of the group was written");
            for (reply, _) in done {
                let _ = reply.send(Err(Error::Backend(e.to_string().into())));
            }
        }
    }
    metrics::histogram!("pipewright_store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("pipewright_store_group_events").record(events as f64);
}

/// A record touched by the request being applied.
struct Touched {
    record: Record,
    /// Occurrence time of the latest event folded into `record`.
    last: Option<Timestamp>,
    /// An event arrived earlier than `last`: fold again from the log before writing.
    refold: bool,
}

fn event_id(now: Timestamp) -> EventId {
    let ms = now.as_millis().max(0) as u64;
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    EventId(uuid::Uuid::new_v7(ts))
}

fn ingest(conn: &Connection, batch: Vec<NewEvent>, now: Timestamp) -> Result<Vec<Ingested>> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (id, source, source_id, type, occurred_at, received_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (source, source_id) DO NOTHING RETURNING seq",
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
    let mut results = Vec::with_capacity(batch.len());
    for new in batch {
        let event = new.stamp(event_id(now), now);
        let body = serde_json::to_string(&event).map_err(|e| Error::Invalid(e.to_string()))?;
        let at = event.occurred_at.as_millis();
        let seq: Option<i64> = insert
            .query_row(
                params![
                    event.id.0.to_string(),
                    event.source,
                    event.source_id,
                    event.event_type().as_str(),
                    at,
                    now.as_millis(),
                    body
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
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
                    let loaded = load(conn, v.key())?;
                    v.insert(loaded)
                }
            };
            if t.last.is_some_and(|last| event.occurred_at < last) {
                t.refold = true;
            } else if !t.refold {
                t.record.apply(&event);
                t.last = Some(event.occurred_at);
            }
        }
        results.push(Ingested::Stored { id: event.id, seq });
    }
    let mut save = conn
        .prepare_cached(
            "INSERT INTO records (kind, id, stage, owner, last_occurred_at, updated_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (kind, id) DO UPDATE SET stage = excluded.stage, owner = excluded.owner,
               last_occurred_at = excluded.last_occurred_at, updated_at = excluded.updated_at,
               state = excluded.state",
        )
        .map_err(backend)?;
    for (key, mut t) in touched {
        if t.refold {
            let events = record_events(conn, &key, None)?;
            t.last = events.last().map(|e| e.occurred_at);
            t.record = Record::fold(&key, &events);
        }
        let state = serde_json::to_string(&t.record).map_err(|e| Error::Invalid(e.to_string()))?;
        save.execute(params![
            key.kind.as_str(),
            key.id.as_str(),
            t.record.stage().map(|s| s.as_str()),
            t.record.owner().map(|o| o.as_str()),
            t.last.unwrap_or_default().as_millis(),
            now.as_millis(),
            state
        ])
        .map_err(backend)?;
    }
    Ok(results)
}

fn load(conn: &Connection, key: &RecordKey) -> Result<Touched> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT state, last_occurred_at FROM records WHERE kind = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row(params![key.kind.as_str(), key.id.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(backend)?;
    Ok(match row {
        Some((state, last)) => Touched {
            record: decode(&state)?,
            last: Some(Timestamp::from_millis(last)),
            refold: false,
        },
        None => Touched {
            record: Record::empty(key),
            last: None,
            refold: false,
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
