//! The writer thread and its group commit, the same for every backend.
//!
//! One thread owns the writing connection. It takes every request waiting in its queue (up to
//! a bound), applies them in one transaction, commits once, then answers each request: a
//! request is answered only after the commit that holds it, so "acknowledged" means
//! "committed", and one commit (one fsync) serves the whole group.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use clock::Clock;
use domain::{NewEvent, RecordKey, Timestamp};
use engine::Engine;

use super::apply::{self, Folded, Known};
use super::sequences::Library;
use super::{Backend, Sql};
use crate::{ArmPass, Error, Ingested, RefoldPass, Result, TimersFired};

/// A write that is not an ingest: runs alone and replies itself.
pub(crate) type Job<C> = Box<dyn FnOnce(&mut C, Timestamp) + Send>;

pub(crate) enum Command<C> {
    Ingest {
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<Vec<Ingested>>>,
    },
    Job(Job<C>),
    FireTimers {
        now: Timestamp,
        limit: usize,
        reply: oneshot::Sender<Result<TimersFired>>,
    },
    AdvanceEnrolments {
        now: Timestamp,
        limit: usize,
        reply: oneshot::Sender<Result<crate::Advanced>>,
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
        reply: oneshot::Sender<Result<RefoldPass>>,
    },
    /// Acts on an exception; a resolution's intervention is ingested in its transaction.
    ActOnException {
        id: String,
        action: crate::ExceptionAction,
        reply: oneshot::Sender<Result<crate::ExceptionItem>>,
    },
    /// A person's decision about a storm; approved effects are acted on in its transaction.
    DecideStorm {
        id: String,
        decision: crate::StormDecision,
        reply: oneshot::Sender<Result<crate::Storm>>,
    },
    /// Recorded together with the other finishes waiting, in one transaction: the sooner a
    /// delivery is recorded, the smaller the window in which a crash makes it go out twice.
    Finish {
        finish: Box<crate::Finish>,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Ends the writer once everything queued before it is answered; what is queued after is
    /// dropped with the queue, so its callers hear that the store is closed.
    Stop {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Joins the writer (and any helper threads of the backend) when the last handle to the store
/// is dropped, after the queue has been drained, so every accepted request is answered before
/// shutdown completes.
#[derive(Debug)]
pub(crate) struct Thread(pub(crate) Vec<JoinHandle<()>>);

impl Drop for Thread {
    fn drop(&mut self) {
        for handle in self.0.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Where requests for the writer are queued.
pub(crate) type Queue<C> = mpsc::Sender<Command<C>>;

/// The rules engine the writer runs inside its transactions, replaceable on playbook reload,
/// and whether a person switched the rules off.
pub(crate) type EngineSlot = Arc<std::sync::RwLock<Running>>;

/// What [`EngineSlot`] holds.
#[derive(Default)]
pub(crate) struct Running {
    pub(crate) engine: Option<Arc<Engine>>,
    /// Switched off: the engine stays for reading but decides nothing.
    pub(crate) off: bool,
}

/// The playbook versions enrolments are pinned to.
pub(crate) type LibrarySlot = Arc<Library>;

/// Starts the writer thread on `conn`.
pub(crate) fn spawn<B: Backend>(
    name: &str,
    conn: B::Conn,
    engine: EngineSlot,
    library: LibrarySlot,
    clock: Arc<dyn Clock>,
    max_group_events: usize,
) -> Result<(Queue<B::Conn>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(1024);
    let writer = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run::<B>(conn, engine, library, clock, rx, max_group_events.max(1)))
        .map_err(super::backend)?;
    Ok((tx, writer))
}

fn run<B: Backend>(
    conn: B::Conn,
    engine: EngineSlot,
    library: LibrarySlot,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Command<B::Conn>>,
    max: usize,
) {
    let mut writer = Writer::<B> {
        conn,
        cache: RecordCache::default(),
        engine,
        library,
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
            Some(Command::ActOnException { id, action, reply }) => {
                let _ = reply.send(writer.act_on_exception(clock.now(), &id, &action));
            }
            Some(Command::DecideStorm {
                id,
                decision,
                reply,
            }) => {
                let _ = reply.send(writer.decide_storm(clock.now(), &id, &decision));
            }
            Some(Command::AdvanceEnrolments { now, limit, reply }) => {
                let _ = reply.send(writer.advance_enrolments(now, limit));
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
            Some(Command::Stop { reply }) => {
                tracing::info!("the store's writer stops");
                let _ = reply.send(Ok(()));
                return;
            }
            Some(Command::Ingest { .. } | Command::Finish { .. }) | None => {}
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<Ingested>>>;

/// Delivery outcomes waiting to be recorded, with their replies.
type Finishes = Vec<(Box<crate::Finish>, oneshot::Sender<Result<bool>>)>;

/// Decoded states of recently written records, so a busy record is not read back and decoded
/// on every event. Holds only committed state, and only while the backend can tell that no
/// other connection has written since ([`Backend::data_version`]): an import beside the
/// server, or another node, drops it.
#[derive(Default)]
struct RecordCache {
    records: Known,
    data_version: Option<i64>,
}

impl RecordCache {
    /// Bounds memory: past this many records the cache starts over.
    const CAPACITY: usize = 20_000;

    fn revalidate<B: Backend>(&mut self, conn: &mut B::Conn) {
        let version = B::data_version(conn);
        if version.is_none() || version != self.data_version {
            self.records.clear();
            self.data_version = version;
        }
    }

    fn remember(&mut self, written: impl IntoIterator<Item = (RecordKey, Folded)>) {
        if self.data_version.is_none() {
            return;
        }
        if self.records.len() > Self::CAPACITY {
            self.records.clear();
        }
        self.records.extend(written);
    }
}

struct Writer<B: Backend> {
    conn: B::Conn,
    cache: RecordCache,
    engine: EngineSlot,
    library: LibrarySlot,
}

impl<B: Backend> Writer<B> {
    /// The engine set, whether or not the rules are on: what a person's decision (a storm
    /// approved) is acted on with.
    fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.read().ok().and_then(|e| e.engine.clone())
    }

    /// The engine that decides: none while the rules are switched off.
    fn deciding(&self) -> Option<Arc<Engine>> {
        self.engine
            .read()
            .ok()
            .filter(|e| !e.off)
            .and_then(|e| e.engine.clone())
    }

    /// Applies every request of the group in one transaction, commits once, and only then
    /// answers. If anything fails, the group is rolled back and each request is retried in a
    /// transaction of its own, so one failing request never takes the others down and nothing
    /// is half-written. Delivery outcomes waiting (`finishes`) are recorded in the same
    /// transaction: one commit for both.
    fn commit_group(
        &mut self,
        now: Timestamp,
        group: Vec<(Vec<NewEvent>, Reply)>,
        finishes: Finishes,
    ) {
        let started = Instant::now();
        let events: usize = group.iter().map(|(e, _)| e.len()).sum();
        self.cache.revalidate::<B>(&mut self.conn);
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
                    // An outage is logged once, as it begins (`outages`), not per commit.
                    if e.outage().is_some() {
                        tracing::debug!(error = ?e, "group commit failed; retrying its requests one by one");
                    } else {
                        tracing::warn!(error = ?e, "group commit failed; retrying its requests one by one");
                    }
                    self.cache.records.clear();
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
        let engine = self.deciding();
        let known = &self.cache.records;
        let library = &*self.library;
        let mut written = HashMap::new();
        let out = B::transaction(&mut self.conn, |sql| {
            // The requests are applied as one batch, in order (each building on the ones
            // before it), so every kind of row is written once for the whole group; the
            // outcomes are handed back request by request.
            let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
            let all = batches.into_iter().flatten().collect();
            let mut results = apply::ingest(
                sql,
                known,
                engine.as_deref(),
                library,
                all,
                now,
                &mut written,
            )?
            .into_iter();
            let outcomes = sizes
                .into_iter()
                .map(|n| results.by_ref().take(n).collect())
                .collect();
            let held = finishes
                .iter()
                .map(|f| super::outbox::finish(sql, f))
                .collect::<Result<Vec<bool>>>()?;
            Ok((outcomes, held))
        })?;
        self.cache.remember(written);
        Ok(out)
    }

    fn fire_timers(&mut self, now: Timestamp, limit: usize) -> Result<TimersFired> {
        let Some(engine) = self.deciding() else {
            return Ok(TimersFired::default());
        };
        self.cache.revalidate::<B>(&mut self.conn);
        let known = &self.cache.records;
        let library = &*self.library;
        let mut written = HashMap::new();
        let fired = B::transaction(&mut self.conn, |sql| {
            apply::fire_timers(sql, known, &engine, library, now, limit, &mut written)
        })?;
        self.cache.remember(written);
        Ok(fired)
    }

    fn advance_enrolments(&mut self, now: Timestamp, limit: usize) -> Result<crate::Advanced> {
        if self.engine.read().is_ok_and(|e| e.off) {
            return Ok(crate::Advanced::default());
        }
        let engine = self.engine();
        self.cache.revalidate::<B>(&mut self.conn);
        let known = &self.cache.records;
        let library = &*self.library;
        B::transaction(&mut self.conn, |sql| {
            apply::advance_enrolments(sql, known, engine.as_deref(), library, now, limit)
        })
    }

    fn act_on_exception(
        &mut self,
        now: Timestamp,
        id: &str,
        action: &crate::ExceptionAction,
    ) -> Result<crate::ExceptionItem> {
        let engine = self.deciding();
        self.cache.revalidate::<B>(&mut self.conn);
        let known = &self.cache.records;
        let library = &*self.library;
        let mut written = HashMap::new();
        let item = B::transaction(&mut self.conn, |sql| {
            let (item, event) = super::exceptions::act(sql, id, action, now)?;
            if let Some(event) = event {
                apply::ingest(
                    sql,
                    known,
                    engine.as_deref(),
                    library,
                    vec![event],
                    now,
                    &mut written,
                )?;
            }
            Ok(item)
        })
        .inspect_err(|_| self.cache.records.clear())?;
        self.cache.remember(written);
        Ok(item)
    }

    fn decide_storm(
        &mut self,
        now: Timestamp,
        id: &str,
        decision: &crate::StormDecision,
    ) -> Result<crate::Storm> {
        let engine = self.engine();
        self.cache.revalidate::<B>(&mut self.conn);
        let known = &self.cache.records;
        let library = &*self.library;
        let written = HashMap::new();
        B::transaction(&mut self.conn, |sql| {
            let cx = super::sequences::Cx::new(library, engine.as_deref(), known, &written);
            super::storms::decide(sql, &cx, id, decision, now)
        })
        .inspect_err(|_| self.cache.records.clear())
    }

    /// Records delivery outcomes in one transaction; should it fail, each alone.
    fn finish_all(&mut self, finishes: Finishes) {
        let together = B::transaction(&mut self.conn, |sql| {
            finishes
                .iter()
                .map(|(f, _)| super::outbox::finish(sql, f))
                .collect::<Result<Vec<bool>>>()
        });
        match together {
            Ok(held) => {
                for ((_, reply), held) in finishes.into_iter().zip(held) {
                    let _ = reply.send(Ok(held));
                }
            }
            Err(_) => {
                for (finish, reply) in finishes {
                    let alone =
                        B::transaction(&mut self.conn, |sql| super::outbox::finish(sql, &finish));
                    let _ = reply.send(alone);
                }
            }
        }
    }

    fn refold_records(&mut self, after: i64, limit: usize) -> Result<RefoldPass> {
        let (pass, corrected) = B::transaction(&mut self.conn, |sql| {
            apply::refold_records(sql, after, limit)
        })?;
        for key in corrected {
            self.cache.records.remove(&key);
        }
        Ok(pass)
    }

    fn arm_records(&mut self, now: Timestamp, after: i64, limit: usize) -> Result<ArmPass> {
        let Some(engine) = self.deciding() else {
            return Ok(ArmPass::default());
        };
        self.cache.revalidate::<B>(&mut self.conn);
        let known = &self.cache.records;
        let (pass, written) = B::transaction(&mut self.conn, |sql| {
            apply::arm_records(sql, known, &engine, now, after, limit)
        })?;
        self.cache.remember(written);
        Ok(pass)
    }

    fn in_transaction(&mut self, now: Timestamp, batch: Vec<NewEvent>) -> Result<Vec<Ingested>> {
        self.apply_all(now, vec![batch], &[])
            .map(|(mut o, _)| o.pop().unwrap_or_default())
            .inspect_err(|e| {
                self.cache.records.clear();
                if e.outage().is_some() {
                    tracing::debug!(error = ?e, "ingest failed; its events were not written");
                } else {
                    tracing::error!(error = ?e, "ingest failed; its events were not written");
                }
            })
    }
}

/// Runs `f` as a job on the writer: in a transaction of its own, answered after the commit.
pub(crate) fn job<B: Backend, T: Send + 'static>(
    f: impl FnOnce(&mut dyn Sql, Timestamp) -> Result<T> + Send + 'static,
    reply: oneshot::Sender<Result<T>>,
) -> Command<B::Conn> {
    Command::Job(Box::new(move |conn, now| {
        let _ = reply.send(B::transaction(conn, |sql| f(sql, now)));
    }))
}

impl From<tokio::sync::oneshot::error::RecvError> for Error {
    fn from(_: tokio::sync::oneshot::error::RecvError) -> Self {
        Error::Closed
    }
}
