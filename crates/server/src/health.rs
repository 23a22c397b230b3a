//! The node's background loops under supervision, and what it knows of their health.
//!
//! Each loop (due timers, delivery, playbook reload, risk learning, the monitor) runs as a task a
//! supervisor watches. When the task ends or panics, the supervisor logs the cause at error,
//! counts the restart and starts the loop again after a back-off that doubles while the loop
//! keeps stopping soon after it starts. [`Health`] records whether each loop runs: `/readyz`
//! answers 503 while a loop readiness needs is down, and the monitor raises an alarm for a loop
//! that stopped.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use clock::Clock;
use domain::Timestamp;

/// The loops a server runs, by name, with what people call them.
pub const LOOPS: &[(&str, &str)] = &[
    ("timers", "the timer loop"),
    ("delivery", "the dispatcher"),
    ("reload", "the playbook reload"),
    ("risk", "risk learning"),
    ("monitor", "the monitor"),
];

/// A loop's name in words: "the timer loop".
pub fn loop_in_words(name: &str) -> String {
    LOOPS.iter().find(|(n, _)| *n == name).map_or_else(
        || format!("the {name} loop"),
        |(_, words)| (*words).to_owned(),
    )
}

/// What the node knows of one loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoopHealth {
    pub name: String,
    /// Readiness needs it running.
    pub required: bool,
    pub running: bool,
    /// How often it stopped and was started again since the node started.
    pub restarts: u64,
    /// When it last stopped, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// The node's loops and whether they run.
#[derive(Debug)]
pub struct Health {
    clock: Arc<dyn Clock>,
    loops: Mutex<BTreeMap<String, LoopHealth>>,
}

impl Health {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            loops: Mutex::new(BTreeMap::new()),
        }
    }

    /// Changes one loop's entry, made (not required, not running) if the loop was never
    /// registered.
    fn with<T>(&self, name: &str, f: impl FnOnce(&mut LoopHealth) -> T) -> T {
        let mut loops = self.all();
        f(loops.entry(name.to_owned()).or_insert_with(|| LoopHealth {
            name: name.to_owned(),
            required: false,
            running: false,
            restarts: 0,
            stopped_at: None,
            cause: None,
        }))
    }

    /// Registers a loop the node will run, not running yet: a required one keeps the node
    /// from being ready until it starts.
    pub fn expect(&self, name: &str, required: bool) {
        self.with(name, |l| {
            l.required = required;
            l.running = false;
        });
        metrics::gauge!("pipewright_loop_up", "loop" => name.to_owned()).set(0.0);
    }

    fn started(&self, name: &str) {
        self.with(name, |l| l.running = true);
        metrics::gauge!("pipewright_loop_up", "loop" => name.to_owned()).set(1.0);
    }

    /// Records that a loop stopped, and why; how often it has stopped.
    fn stopped(&self, name: &str, cause: &str) -> u64 {
        let at = self.clock.now();
        let restarts = self.with(name, |l| {
            l.running = false;
            l.restarts += 1;
            l.stopped_at = Some(at);
            l.cause = Some(cause.to_owned());
            l.restarts
        });
        metrics::gauge!("pipewright_loop_up", "loop" => name.to_owned()).set(0.0);
        metrics::counter!("pipewright_loop_restarts_total", "loop" => name.to_owned()).increment(1);
        restarts
    }

    fn all(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LoopHealth>> {
        self.loops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every loop, by name.
    pub fn loops(&self) -> Vec<LoopHealth> {
        self.all().values().cloned().collect()
    }

    /// The loops readiness needs that are not running, by name.
    pub fn down(&self) -> Vec<String> {
        self.all()
            .values()
            .filter(|l| l.required && !l.running)
            .map(|l| l.name.clone())
            .collect()
    }
}

/// How long a supervisor waits before starting a stopped loop again: `first`, doubling while
/// the loop keeps stopping within `max` of starting, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// What a panic carried, in words.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs the loop `make` builds under a supervisor, registered in `health` as running from now
/// on: whenever it ends or panics, the cause is logged and counted, and after the back-off a
/// fresh one is started. Aborting the returned task stops the loop too.
pub fn supervise<F, Fut>(
    health: Arc<Health>,
    name: &'static str,
    backoff: Backoff,
    make: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Marked running before the task is scheduled, so a server that starts its loops and then
    // serves never answers a readiness check in between with "not running".
    health.started(name);
    tokio::spawn(async move {
        let mut delay = backoff.first;
        loop {
            let began = tokio::time::Instant::now();
            // In a set of its own: aborting the supervisor drops the set, which aborts the loop.
            let mut running = tokio::task::JoinSet::new();
            running.spawn(make());
            let cause = match running.join_next().await {
                Some(Ok(())) => "it returned".to_owned(),
                Some(Err(e)) if e.is_panic() => {
                    format!("it panicked: {}", panic_message(&*e.into_panic()))
                }
                Some(Err(_)) | None => "it was cancelled".to_owned(),
            };
            // A loop that ran a good while before stopping is not failing at start.
            if began.elapsed() >= backoff.max {
                delay = backoff.first;
            }
            let restarts = health.stopped(name, &cause);
            tracing::error!(
                name,
                cause = %cause,
                restarts,
                restart_in_ms = delay.as_millis() as u64,
                "a background loop stopped; it is restarted"
            );
            tokio::time::sleep(delay).await;
            health.started(name);
            delay = (delay * 2).min(backoff.max);
        }
    })
}
