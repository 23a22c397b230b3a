//! The shell around the rules engine: loading playbooks, sharing them with every node on the
//! database, reloading them when they change (keeping the last good set when an edit is
//! broken), and firing due timers.
//!
//! Every node runs the newest playbook set published in the database. A node publishes its
//! folder when it starts with a version never published (a deployment) and whenever the folder
//! changes while it runs (an edit); every node polls for a newer publication and switches to
//! it. So an edit on any one node reaches all of them, and a node restarted with an older copy
//! of the files runs what the others run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use clock::Clock;
use store::{Engine, PublishedPlaybooks, Store};

use crate::storms::GuardSettings;

/// What is loaded, for `/api/v1/playbooks` and the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlaybookStatus {
    /// The version running (a content hash), if any playbooks are loaded.
    pub version: Option<String>,
    /// Where the running set came from: this node's folder, or which node published it.
    pub origin: Option<String>,
    pub playbooks: Vec<PlaybookSummary>,
    /// Problems in the files as they are now (errors, and warnings prefixed `warning:`);
    /// empty when they loaded cleanly.
    pub diagnostics: Vec<String>,
    /// What the last set this node published does on the pipeline, beside the one before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<crate::storms::Preview>,
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

/// The playbooks of one node: its folder, the store they are published in and run by.
#[derive(Debug, Clone)]
pub struct Playbooks {
    pub dir: PathBuf,
    pub store: Arc<dyn Store>,
    pub status: SharedStatus,
    pub clock: Arc<dyn Clock>,
    /// This node's name, recorded with what it publishes.
    pub node: String,
    /// The storm guard a publication opens for rules that are new or reach further.
    pub guard: GuardSettings,
    /// What this node's configuration delivers to: its folder's actions are held to it, as
    /// `pipewright check` holds them.
    pub targets: playbook::Targets,
}

impl Playbooks {
    /// At start: publishes the folder if its version was never published, then runs the newest
    /// published set (the folder's own when the database cannot be read).
    pub async fn start(&self) {
        let local = self.dir.exists().then(|| self.read_folder());
        if let Some((files, Some(engine))) = &local {
            match self.store.playbooks_published(engine.version()).await {
                Ok(false) => self.publish(files, engine).await,
                Ok(true) => {}
                Err(e) => tracing::error!(error = ?e, "cannot read the published playbooks"),
            }
        }
        match self.store.latest_playbooks().await {
            Ok(Some(latest)) => match local {
                Some((_, Some(engine))) if engine.version() == latest.version => {
                    switch(engine, &*self.store, &self.status, self.origin());
                }
                _ => self.adopt(latest),
            },
            Ok(None) | Err(_) => match local {
                None => {
                    tracing::info!(dir = %self.dir.display(), "no playbook folder; no rules run");
                }
                Some((_, Some(engine))) => {
                    switch(engine, &*self.store, &self.status, self.origin());
                }
                Some(_) => {}
            },
        }
    }

    /// Loads the folder now, and if it compiles, publishes it for every node and runs it: its
    /// new rules and those that reach further are watched for storms first.
    pub async fn reload(&self) {
        if let (files, Some(engine)) = self.read_folder() {
            let newest = self.store.latest_playbooks().await.ok().flatten();
            if newest.is_none_or(|n| n.version != engine.version()) {
                self.publish(&files, &engine).await;
            }
            switch(engine, &*self.store, &self.status, self.origin());
        }
    }

    /// Polls the folder and the database: an edit is loaded and published, a newer publication
    /// from another node is run.
    pub async fn watch(self, every: Duration) {
        let mut seen = stamp(&self.dir);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&self.dir);
            if now != seen {
                seen = now;
                self.reload().await;
            }
            match self.store.latest_playbooks().await {
                Ok(Some(latest)) if Some(&latest.version) != self.running().as_ref() => {
                    self.adopt(latest);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "cannot read the published playbooks"),
            }
        }
    }

    fn running(&self) -> Option<String> {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .version
            .clone()
    }

    fn origin(&self) -> String {
        format!("folder {}", self.dir.display())
    }

    /// Reads and compiles the folder, recording its problems: its files, and the engine that
    /// would run them when they compile.
    fn read_folder(&self) -> (Vec<(PathBuf, String)>, Option<Engine>) {
        let (files, problems) = playbook::read_dir(&self.dir);
        let engine = compile(&files, problems, &self.targets, &self.status)
            .map(|set| engine_for(set, &*self.store));
        (files, engine)
    }

    /// The set every node runs now: this node's, or the newest publication.
    async fn previous(&self) -> Option<Arc<Engine>> {
        if let Some(running) = self.store.engine() {
            return Some(running);
        }
        let latest = self.store.latest_playbooks().await.ok().flatten()?;
        let set = self
            .store
            .playbook_set(&latest.version)
            .await
            .ok()
            .flatten()?;
        Some(Arc::new(Engine::new(set)))
    }

    /// Publishes `engine`'s playbooks for every node, after watching its rules that are new
    /// or reach further than the set running now (holding those whose forecast passes their
    /// limit already).
    async fn publish(&self, files: &[(PathBuf, String)], engine: &Engine) {
        let previous = self.previous().await;
        let now = self.clock.now();
        match crate::storms::guard_change(
            &*self.store,
            previous.as_deref(),
            engine,
            self.guard,
            now,
        )
        .await
        {
            Ok(preview) => {
                log_preview(&preview);
                if let Ok(mut status) = self.status.write() {
                    status.preview = Some(preview);
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, "cannot forecast the new playbooks; their rules are not watched for storms")
            }
        }
        let version = engine.version();
        let set = PublishedPlaybooks {
            version: version.to_owned(),
            files: files
                .iter()
                .map(|(p, t)| (p.display().to_string(), t.clone()))
                .collect(),
            published_at: now,
            node: self.node.clone(),
        };
        match self.store.publish_playbooks(set).await {
            Ok(()) => tracing::info!(version, "playbooks published for every node"),
            Err(e) => tracing::error!(error = ?e, "cannot publish the playbooks"),
        }
    }

    /// Runs a set another node (or this one, earlier) published.
    fn adopt(&self, latest: PublishedPlaybooks) {
        if Some(&latest.version) == self.running().as_ref() {
            return;
        }
        let files: Vec<(PathBuf, String)> = latest
            .files
            .into_iter()
            .map(|(p, t)| (PathBuf::from(p), t))
            .collect();
        let origin = format!("published by {} at {}", latest.node, latest.published_at);
        // A published set runs on every node, checked against the configuration of the node
        // that published it: refusing it here would leave the nodes on different versions.
        let unchecked = playbook::Targets::default();
        if let Some(set) = compile(&files, Vec::new(), &unchecked, &self.status) {
            switch(
                engine_for(set, &*self.store),
                &*self.store,
                &self.status,
                origin,
            );
            tracing::info!(version = %latest.version, node = %latest.node, "running the playbooks another node published");
        }
    }
}

/// Says in the log what a new set will do at once, and which rules wait for approval.
fn log_preview(preview: &crate::storms::Preview) {
    for r in &preview.rules {
        let Some(f) = r.forecast.as_ref().filter(|f| f.now > 0 || r.would_hold) else {
            continue;
        };
        tracing::info!(
            rule = %r.rule,
            change = ?r.change,
            at_once = f.now,
            busiest_hour = f.busiest_hour,
            held = r.would_hold,
            "what the new playbooks do at once"
        );
    }
}

/// Compiles `files` (their actions held to `targets`), recording every problem (with
/// `problems` found reading them) in the status; the set when none is an error (warnings are
/// recorded and logged beside a set that runs).
fn compile(
    files: &[(PathBuf, String)],
    mut problems: Vec<playbook::Diagnostic>,
    targets: &playbook::Targets,
    status: &SharedStatus,
) -> Option<playbook::PlaybookSet> {
    let mut loaded = playbook::load_files_with(files, targets);
    problems.append(&mut loaded.diagnostics);
    let mut current = status
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    current.diagnostics = problems.iter().map(ToString::to_string).collect();
    let errors = problems.iter().filter(|d| d.is_error()).count();
    metrics::gauge!("pipewright_playbook_problems").set(errors as f64);
    for warning in problems.iter().filter(|d| !d.is_error()) {
        tracing::warn!("playbook {warning}");
    }
    if errors == 0 {
        return loaded.set;
    }
    for d in problems.iter().filter(|d| d.is_error()) {
        tracing::error!("playbook problem: {d}");
    }
    tracing::warn!(
        running = current.version.as_deref().unwrap_or("none"),
        "playbooks not loaded; the last good version keeps running"
    );
    None
}

/// The engine for a set; what was learned about risk carries over while the risk settings
/// stay the same.
fn engine_for(set: playbook::PlaybookSet, store: &dyn Store) -> Engine {
    let engine = Engine::new(Arc::new(set));
    match store.engine() {
        Some(running)
            if crate::risk::fingerprint(running.risk())
                == crate::risk::fingerprint(engine.risk()) =>
        {
            engine.with_learned(running.risk().learned.clone())
        }
        _ => engine,
    }
}

/// Makes `engine` the store's, unless it runs already. The version run.
fn switch(engine: Engine, store: &dyn Store, status: &SharedStatus, origin: String) -> String {
    let set = engine.playbooks();
    let version = set.version.clone();
    let mut current = status
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if current.version.as_ref() == Some(&version) {
        return version;
    }
    current.version = Some(version.clone());
    current.origin = Some(origin);
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
    store.set_engine(Some(Arc::new(engine)));
    version
}

/// The newest modification time among the folder's playbook files.
fn stamp(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
}

/// Fires due timers and runs sequences' due steps as they come due; a full batch is followed
/// at once by the next. When the playbooks change (and once at start), first walks every
/// record so that those no event has touched since wait on the new rules' timers too.
pub async fn fire_timers(store: Arc<dyn Store>, clock: Arc<dyn Clock>, every: Duration) {
    const BATCH: usize = 1000;
    // The playbook version being (or last) walked, where the walk is, and whether it is done.
    let mut walking: Option<String> = None;
    let mut cursor = 0;
    let mut walked = false;
    loop {
        let version = store.engine().map(|e| e.arming().to_owned());
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
                more |= fired.timers == BATCH;
            }
            Err(e) => tracing::error!(error = ?e, "firing due timers failed; will retry"),
        }
        // Sequences' due steps, after the timers that may have started them.
        match store.advance_enrolments(clock.now(), BATCH).await {
            Ok(pass) => {
                metrics::counter!("pipewright_sequence_steps_total", "kind" => "email")
                    .increment(pass.emails as u64);
                metrics::counter!("pipewright_sequence_steps_total", "kind" => "task")
                    .increment(pass.tasks as u64);
                metrics::counter!("pipewright_sequence_sends_held_total")
                    .increment(pass.held as u64);
                more |= pass.enrolments == BATCH;
            }
            Err(e) => tracing::error!(error = ?e, "advancing enrolments failed; will retry"),
        }
        // Exceptions nobody acknowledged in time move up their chain.
        match store.escalate_exceptions(clock.now(), BATCH).await {
            Ok(pass) => {
                metrics::counter!("pipewright_exceptions_escalated_total")
                    .increment(pass.escalated as u64);
                metrics::counter!("pipewright_exceptions_overdue_total")
                    .increment(pass.overdue as u64);
                more |= pass.escalated + pass.overdue == BATCH;
            }
            Err(e) => tracing::error!(error = ?e, "escalating exceptions failed; will retry"),
        }
        if more {
            continue;
        }
        tokio::time::sleep(every).await;
    }
}
