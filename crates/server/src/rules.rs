//! The shell around the rules engine: loading playbooks (and reloading them when their files
//! change, keeping the last good set when an edit is broken) and firing due timers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use clock::Clock;
use store::{Engine, Store};

/// What is loaded, for `/api/v1/playbooks` and the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlaybookStatus {
    /// The version running (a content hash), if any playbooks are loaded.
    pub version: Option<String>,
    pub playbooks: Vec<PlaybookSummary>,
    /// Problems in the files as they are now; empty when they loaded cleanly.
    pub diagnostics: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlaybookSummary {
    pub name: String,
    pub owner: String,
    pub file: PathBuf,
    pub rules: Vec<RuleSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleSummary {
    pub id: String,
    pub why: String,
    pub covers: Vec<String>,
    pub trigger: String,
    pub condition: Option<String>,
    pub shadow: bool,
}

pub type SharedStatus = Arc<RwLock<PlaybookStatus>>;

/// Loads `dir` and, if it compiles, makes it the store's engine. A broken folder leaves the
/// running engine in place and records the problems.
pub fn load(dir: &Path, store: &dyn Store, status: &SharedStatus) {
    if !dir.exists() {
        tracing::info!(dir = %dir.display(), "no playbook folder; no rules run");
        return;
    }
    let loaded = playbook::load_dir(dir);
    let mut current = status
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    current.diagnostics = loaded.diagnostics.iter().map(ToString::to_string).collect();
    metrics::gauge!("pipewright_playbook_problems").set(loaded.diagnostics.len() as f64);
    match loaded.set {
        Some(set) => {
            current.version = Some(set.version.clone());
            current.playbooks = set
                .playbooks
                .iter()
                .map(|p| PlaybookSummary {
                    name: p.name.clone(),
                    owner: p.owner.clone(),
                    file: p.file.clone(),
                    rules: p
                        .rules
                        .iter()
                        .map(|r| RuleSummary {
                            id: r.id.clone(),
                            why: r.why.clone(),
                            covers: r.covers.clone(),
                            trigger: r.trigger.to_string(),
                            condition: r.condition.as_ref().map(|c| c.source.clone()),
                            shadow: r.shadow,
                        })
                        .collect(),
                })
                .collect();
            tracing::info!(version = %set.version, playbooks = set.playbooks.len(), "playbooks loaded");
            store.set_engine(Some(Arc::new(Engine::new(Arc::new(set)))));
        }
        None => {
            for d in &current.diagnostics {
                tracing::error!("playbook problem: {d}");
            }
            tracing::warn!(
                running = current.version.as_deref().unwrap_or("none"),
                "playbooks not loaded; the last good version keeps running"
            );
        }
    }
}

/// The newest modification time among the folder's playbook files.
fn stamp(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
}

/// Reloads the playbooks whenever a file in the folder changes.
pub async fn watch(dir: PathBuf, every: Duration, store: Arc<dyn Store>, status: SharedStatus) {
    let mut seen = stamp(&dir);
    loop {
        tokio::time::sleep(every).await;
        let now = stamp(&dir);
        if now != seen {
            seen = now;
            load(&dir, &*store, &status);
        }
    }
}

/// Fires due timers as they come due; a full batch is followed at once by the next. When the
/// playbooks change (and once at start), first walks every record so that those no event has
/// touched since wait on the new rules' timers too.
pub async fn fire_timers(store: Arc<dyn Store>, clock: Arc<dyn Clock>, every: Duration) {
    const BATCH: usize = 1000;
    // The playbook version being (or last) walked, where the walk is, and whether it is done.
    let mut walking: Option<String> = None;
    let mut cursor = 0;
    let mut walked = false;
    loop {
        let version = store.engine().map(|e| e.version().to_owned());
        if version != walking {
            // New playbooks, perhaps mid-walk: start over so every record gets them.
            walking = version;
            cursor = 0;
            walked = walking.is_none();
        }
        let mut more = false;
        if !walked {
            match store.arm_records(clock.now(), cursor, BATCH).await {
                Ok(pass) => {
                    metrics::counter!("pipewright_records_rearmed_total")
                        .increment(pass.armed as u64);
                    match pass.next {
                        Some(next) => {
                            cursor = next;
                            more = true;
                        }
                        None => {
                            tracing::info!(version = walking.as_deref(), "every record armed");
                            walked = true;
                        }
                    }
                }
                Err(e) => tracing::error!(error = ?e, "arming records failed; will retry"),
            }
        }
        match store.fire_due_timers(clock.now(), BATCH).await {
            Ok(fired) => {
                metrics::counter!("pipewright_timers_fired_total").increment(fired.timers as u64);
                metrics::counter!("pipewright_effects_decided_total")
                    .increment(fired.effects as u64);
                if fired.timers == BATCH || more {
                    continue;
                }
            }
            Err(e) => tracing::error!(error = ?e, "firing due timers failed; will retry"),
        }
        tokio::time::sleep(every).await;
    }
}
