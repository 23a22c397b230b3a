//! The shell around the rules engine: loading playbooks, sharing them with every node on the
//! database, reloading them when they change (keeping the last good set when an edit is
//! broken), the rules' switch, and firing due timers.
//!
//! Every node runs the newest playbook set published in the database. A node publishes its
//! folder when it starts with a version never published (a deployment) and whenever the folder
//! changes while it runs (an edit); every node polls for a newer publication and switches to
//! it. So an edit on any one node reaches all of them, and a node restarted with an older copy
//! of the files runs what the others run.
//!
//! The folder's problems (an error in a file, no playbook files, no folder) are this node's
//! status whatever set runs: reported at start as after an edit, beside the last good set that
//! keeps running. A change is read only once it has settled ([`Settle`]): a file still being
//! written is never published.
//!
//! The rules are switched off and on by a person, for every node ([`switch_rules`]); switched
//! off, nothing is decided, and switched back on, what came due meanwhile is watched by the
//! storm guard before it acts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use serde::{Deserialize, Serialize};

use clock::Clock;
use domain::Timestamp;
use store::{Engine, PublishedPlaybooks, RulesSwitch, Store, StormReason, TokenRole};

use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;
use crate::storms::{GuardSettings, when};

/// What is loaded, for `/api/v1/playbooks` and the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlaybookStatus {
    /// The version running (a content hash), if any playbooks are loaded.
    pub version: Option<String>,
    /// Where the running set came from, in words: this node's folder, or which node published
    /// it and when; first, when this node's folder has problems, that it has them.
    pub origin: Option<String>,
    pub playbooks: Vec<PlaybookSummary>,
    /// Problems in the folder's files as they are now (errors, and warnings prefixed
    /// `warning:`), an empty or missing folder among them; empty when they loaded cleanly.
    pub diagnostics: Vec<String>,
    /// How many of them are errors (what the `pipewright_playbook_problems` gauge says).
    pub problems: usize,
    /// Whether the rules act, and who switched them off or on, when and why.
    pub rules: RulesState,
    /// What the last set this node published does on the pipeline, beside the one before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<crate::storms::Preview>,
    /// Where the running set came from, for `origin`.
    #[serde(skip)]
    source: Option<Source>,
    /// What is wrong with the folder, in words, for `origin`.
    #[serde(skip)]
    folder_problem: Option<String>,
}

/// Whether the rules act (`pipewright rules off|on`, `POST /api/v1/rules/off|on`).
#[derive(Debug, Clone, Serialize)]
pub struct RulesState {
    pub on: bool,
    /// The last switch, if anyone ever switched them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched: Option<RulesSwitch>,
    /// In words: "on", or "switched off by maya@acme.example at 2026-11-20 12:00 UTC: …".
    pub words: String,
}

impl Default for RulesState {
    fn default() -> Self {
        Self::of(None)
    }
}

impl RulesState {
    /// The state the newest switch (if any) says.
    pub fn of(switched: Option<RulesSwitch>) -> Self {
        let on = switched.as_ref().is_none_or(|s| s.on);
        let words = match &switched {
            None => "on".to_owned(),
            Some(s) => {
                let how = if s.on {
                    "on, switched back on"
                } else {
                    "switched off"
                };
                let why = s
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                format!("{how} by {} at {}{why}", s.by, when(s.at))
            }
        };
        Self {
            on,
            switched,
            words,
        }
    }
}

/// Where a running set came from.
#[derive(Debug, Clone)]
enum Source {
    /// This node's folder, loaded at that moment.
    Folder { dir: PathBuf, at: Timestamp },
    /// A publication: by which node, when, and who that node is to this one.
    Published {
        node: String,
        at: Timestamp,
        who: Publisher,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publisher {
    ThisNode,
    /// Another process on this machine: on a single node, an earlier run of it.
    ThisMachine,
    Another,
}

impl Publisher {
    /// Who `node` is to `me`: node names are `host-process-random`.
    fn of(node: &str, me: &str) -> Self {
        let host = |n: &str| n.rsplitn(3, '-').nth(2).map(str::to_owned);
        if node == me {
            Self::ThisNode
        } else if host(node).is_some() && host(node) == host(me) {
            Self::ThisMachine
        } else {
            Self::Another
        }
    }
}

impl PlaybookStatus {
    /// Says where the running set came from, and first what is wrong with the folder.
    fn describe(&mut self) {
        let set = self.source.as_ref().map(|source| match source {
            Source::Folder { dir, at } => {
                format!("folder {}, loaded at {}", dir.display(), when(*at))
            }
            Source::Published { node, at, who } => {
                let by = match who {
                    Publisher::ThisNode => format!("this node ({node})"),
                    Publisher::ThisMachine => {
                        format!("{node} on this machine (an earlier run, not this process)")
                    }
                    Publisher::Another => format!("another node, {node},"),
                };
                format!("published by {by} at {}", when(*at))
            }
        });
        self.origin = match (set, &self.folder_problem) {
            (Some(set), None) => Some(set),
            (Some(set), Some(problem)) => {
                Some(format!("{problem}; the last good set keeps running: {set}"))
            }
            (None, Some(problem)) => Some(format!("{problem}; no playbooks run")),
            (None, None) => None,
        };
    }
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

fn write(status: &SharedStatus) -> std::sync::RwLockWriteGuard<'_, PlaybookStatus> {
    status
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the watcher sees of the folder: each entry's name, size and modification time, in
/// name order; `None` when the folder cannot be read (missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState(Option<Vec<(PathBuf, u64, Option<SystemTime>)>>);

impl FolderState {
    pub fn of(dir: &Path) -> Self {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Self(None);
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.path(), meta.len(), meta.modified().ok()))
            })
            .collect();
        files.sort();
        Self(Some(files))
    }
}

/// The watcher's settle rule, pure: a change to the folder is read only once the folder has
/// looked the same — every file's name, size and modification time — at two polls in a row at
/// least [`Settle::PERIOD`] apart (so for one poll interval, `engine.reload_poll_ms`, and at
/// least a second); a file still being written changes between polls and waits. What was read
/// is then checked against the folder as it is after the read ([`Settle::read`]).
#[derive(Debug, Clone)]
pub struct Settle {
    /// The state last read (or seen at start).
    read: FolderState,
    /// A changed state, and when it was first seen so.
    seen: Option<(FolderState, Timestamp)>,
}

impl Settle {
    /// How long a changed folder must look the same before it is read.
    pub const PERIOD: Duration = Duration::from_secs(1);

    pub fn new(read: FolderState) -> Self {
        Self { read, seen: None }
    }

    /// The folder as one poll sees it at `now`: whether to read it now.
    pub fn observe(&mut self, state: FolderState, now: Timestamp) -> bool {
        if state == self.read {
            self.seen = None;
            return false;
        }
        match &self.seen {
            Some((seen, since)) if *seen == state => {
                now.as_millis() - since.as_millis() >= Self::PERIOD.as_millis() as i64
            }
            _ => {
                self.seen = Some((state, now));
                false
            }
        }
    }

    /// After reading: `after` is the folder as it is once the read ended. Whether what was
    /// read is the settled state (then it is the state read); otherwise it changed while
    /// being read, and waits to settle again.
    pub fn read(&mut self, after: FolderState, now: Timestamp) -> bool {
        match self.seen.take() {
            Some((seen, _)) if seen == after => {
                self.read = after;
                true
            }
            _ => {
                self.seen = Some((after, now));
                false
            }
        }
    }
}

/// What the folder holds, read and compiled.
struct Folder {
    files: Vec<(PathBuf, String)>,
    /// The engine that would run them, when they compile.
    engine: Option<Engine>,
}

/// The playbooks of one node: its folder, the store they are published in and run by.
#[derive(Debug, Clone)]
pub struct Playbooks {
    /// The folder; empty: this node has none on purpose and runs what is published.
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
    /// At start: follows the rules' switch, publishes the folder if its version was never
    /// published, then runs the newest published set (the folder's own when the database
    /// cannot be read). The folder's problems are reported whatever runs.
    pub async fn start(&self) {
        self.follow_switch().await;
        let local = self.has_folder().then(|| self.read_folder());
        if let Some(Folder {
            files,
            engine: Some(engine),
        }) = &local
        {
            match self.store.playbooks_published(engine.version()).await {
                Ok(false) => self.publish(files, engine).await,
                Ok(true) => {}
                Err(e) => tracing::error!(error = ?e, "cannot read the published playbooks"),
            }
        }
        let engine = local.and_then(|f| f.engine);
        match self.store.latest_playbooks().await {
            Ok(Some(latest)) => match engine {
                Some(engine) if engine.version() == latest.version => {
                    switch(engine, &*self.store, &self.status, self.folder_source());
                }
                _ => self.adopt(latest),
            },
            Ok(None) | Err(_) => match engine {
                Some(engine) => {
                    switch(engine, &*self.store, &self.status, self.folder_source());
                }
                None if !self.has_folder() => {
                    tracing::info!("no playbook folder and none published; no rules run");
                }
                None => {}
            },
        }
        if let Some(origin) = &self.status.read().ok().and_then(|s| s.origin.clone()) {
            tracing::info!(origin, "playbooks at start");
        }
    }

    /// Loads the folder now, and if it compiles, publishes it for every node and runs it: its
    /// new rules and those that reach further are watched for storms first.
    pub async fn reload(&self) {
        self.load(self.read_folder()).await;
    }

    /// Polls the folder, the rules' switch and the database: an edit is loaded and published
    /// once it has settled ([`Settle`]), a switch made on any node is followed, a newer
    /// publication from another node is run.
    pub async fn watch(self, every: Duration) {
        let mut settle = Settle::new(FolderState::of(&self.dir));
        loop {
            tokio::time::sleep(every).await;
            if self.has_folder() && settle.observe(FolderState::of(&self.dir), self.clock.now()) {
                let folder = self.read_folder_quietly();
                if settle.read(FolderState::of(&self.dir), self.clock.now()) {
                    self.report(&folder);
                    self.load(folder.0).await;
                } else {
                    tracing::info!(dir = %self.dir.display(), "the playbook folder changed while it was read; waiting for it to settle");
                }
            }
            self.follow_switch().await;
            match self.store.latest_playbooks().await {
                Ok(Some(latest)) if Some(&latest.version) != self.running().as_ref() => {
                    self.adopt(latest);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "cannot read the published playbooks"),
            }
        }
    }

    /// Publishes (when new) and runs a folder read and reported, when it compiles.
    async fn load(&self, folder: Folder) {
        if let Some(engine) = folder.engine {
            let newest = self.store.latest_playbooks().await.ok().flatten();
            if newest.is_none_or(|n| n.version != engine.version()) {
                self.publish(&folder.files, &engine).await;
            }
            switch(engine, &*self.store, &self.status, self.folder_source());
        }
    }

    /// Applies the newest switch of the rules (made on any node) to this node.
    pub async fn follow_switch(&self) {
        match self.store.rules_switch().await {
            Ok(switched) => apply_switch(&*self.store, &self.status, switched),
            Err(e) => tracing::warn!(error = ?e, "cannot read whether the rules are switched off"),
        }
    }

    fn running(&self) -> Option<String> {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .version
            .clone()
    }

    fn has_folder(&self) -> bool {
        !self.dir.as_os_str().is_empty()
    }

    fn folder_source(&self) -> Source {
        Source::Folder {
            dir: self.dir.clone(),
            at: self.clock.now(),
        }
    }

    fn published(&self, set: &PublishedPlaybooks) -> Source {
        Source::Published {
            node: set.node.clone(),
            at: set.published_at,
            who: Publisher::of(&set.node, &self.node),
        }
    }

    /// Reads and compiles the folder, reporting its problems.
    fn read_folder(&self) -> Folder {
        let read = self.read_folder_quietly();
        self.report(&read);
        read.0
    }

    /// Reads and compiles the folder: what it holds, and its problems.
    fn read_folder_quietly(&self) -> (Folder, Vec<playbook::Diagnostic>) {
        let (files, problems) = playbook::read_dir(&self.dir);
        let (set, problems) = compile(&files, problems, &self.targets);
        let engine = set.map(|set| engine_for(set, &*self.store));
        (Folder { files, engine }, problems)
    }

    /// Records the folder's problems in the status, the gauge and the log: errors keep the
    /// folder from loading, and the last good set (if any) keeps running.
    fn report(&self, (folder, problems): &(Folder, Vec<playbook::Diagnostic>)) {
        let errors = problems.iter().filter(|d| d.is_error()).count();
        for warning in problems.iter().filter(|d| !d.is_error()) {
            tracing::warn!("playbook {warning}");
        }
        let mut current = write(&self.status);
        current.diagnostics = problems.iter().map(ToString::to_string).collect();
        current.problems = errors;
        metrics::gauge!("pipewright_playbook_problems").set(errors as f64);
        current.folder_problem = (errors > 0).then(|| {
            let dir = self.dir.display();
            if !self.dir.is_dir() {
                format!("the playbook folder {dir} does not exist or cannot be read")
            } else if folder.files.is_empty() {
                format!("the playbook folder {dir} holds no playbook files")
            } else if errors == 1 {
                format!("the playbook folder {dir} has a problem")
            } else {
                format!("the playbook folder {dir} has {errors} problems")
            }
        });
        current.describe();
        if errors > 0 {
            for d in problems.iter().filter(|d| d.is_error()) {
                tracing::error!("playbook problem: {d}");
            }
            tracing::warn!(
                origin = current.origin.as_deref().unwrap_or("no playbooks run"),
                "playbooks not loaded"
            );
        }
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

    /// Runs a published set (another node's, or this one's earlier). The folder's problems,
    /// reported when it was read, stay this node's.
    fn adopt(&self, latest: PublishedPlaybooks) {
        if Some(&latest.version) == self.running().as_ref() {
            return;
        }
        let source = self.published(&latest);
        let files: Vec<(PathBuf, String)> = latest
            .files
            .into_iter()
            .map(|(p, t)| (PathBuf::from(p), t))
            .collect();
        // A published set runs on every node, checked against the configuration of the node
        // that published it: refusing it here would leave the nodes on different versions.
        let unchecked = playbook::Targets::default();
        match compile(&files, Vec::new(), &unchecked) {
            (Some(set), _) => {
                switch(
                    engine_for(set, &*self.store),
                    &*self.store,
                    &self.status,
                    source,
                );
                tracing::info!(version = %latest.version, node = %latest.node, "running the published playbooks");
            }
            (None, problems) => {
                for d in problems.iter().filter(|d| d.is_error()) {
                    tracing::error!(version = %latest.version, "a published playbook set does not compile: {d}");
                }
            }
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

/// Compiles `files` (their actions held to `targets`): the set when no problem is an error,
/// and every problem (with `problems` found reading them).
fn compile(
    files: &[(PathBuf, String)],
    mut problems: Vec<playbook::Diagnostic>,
    targets: &playbook::Targets,
) -> (Option<playbook::PlaybookSet>, Vec<playbook::Diagnostic>) {
    let mut loaded = playbook::load_files_with(files, targets);
    problems.append(&mut loaded.diagnostics);
    if problems.iter().any(playbook::Diagnostic::is_error) {
        (None, problems)
    } else {
        (loaded.set, problems)
    }
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
fn switch(engine: Engine, store: &dyn Store, status: &SharedStatus, source: Source) -> String {
    let set = engine.playbooks();
    let version = set.version.clone();
    let mut current = write(status);
    if current.version.as_ref() == Some(&version) {
        return version;
    }
    current.version = Some(version.clone());
    current.source = Some(source);
    current.describe();
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

/// Applies a switch of the rules (the newest; none: on) to this node's store and status,
/// logging a change once.
pub fn apply_switch(store: &dyn Store, status: &SharedStatus, switched: Option<RulesSwitch>) {
    let state = RulesState::of(switched);
    if state.on != store.rules_on() {
        if state.on {
            tracing::info!(rules = %state.words, "the rules are on again");
        } else {
            tracing::warn!(rules = %state.words, "the rules are switched off: nothing is decided until they are switched on");
        }
    }
    store.set_rules_on(state.on);
    write(status).rules = state;
}

/// Switches the rules off or on for every node, as `by` asks (`pipewright rules off|on`,
/// `POST /api/v1/rules/off|on`). Switching on first has the storm guard watch every rule of
/// `running` (the set every node runs), holding those whose forecast over the pipeline as it
/// now stands — with the timers that came due while off — passes their limit. Switching to
/// where they stand already changes nothing. The switch now in force.
///
/// # Errors
/// The store's.
pub async fn switch_rules(
    store: &dyn Store,
    running: Option<&Engine>,
    guard: GuardSettings,
    switch: RulesSwitch,
) -> Result<RulesSwitch, store::Error> {
    let current = store.rules_switch().await?;
    if current.as_ref().is_none_or(|c| c.on) == switch.on {
        if let Some(current) = current {
            return Ok(current);
        }
        return Ok(switch);
    }
    if switch.on
        && let Some(engine) = running
    {
        crate::storms::guard_all(store, engine, guard, switch.at, StormReason::SwitchedOn).await?;
    }
    store.switch_rules(switch.clone()).await?;
    Ok(switch)
}

/// What `POST /api/v1/rules/off|on` takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchBody {
    /// Who switches (a person); the token's name when absent.
    by: Option<String>,
    /// Why, in their words.
    reason: Option<String>,
}

/// Switches the playbooks' rules off (no rule fires, no timer acts, no sequence step runs, on
/// every node) or on again (what came due meanwhile is watched by the storm guard first).
#[utoipa::path(
    post, path = "/api/v1/rules/{action}", tag = "playbooks",
    params(("action" = String, Path, description = "off or on")),
    request_body(content = String, content_type = "application/json",
                 description = r#"{"by": "maya@acme.example", "reason": "…"} (both optional)"#),
    responses((status = 200, description = "how the rules stand"), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn switch_route(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(action): UrlPath<String>,
    bytes: Bytes,
) -> Result<Json<RulesState>, AppError> {
    caller.require(TokenRole::Admin)?;
    let on = match action.as_str() {
        "on" => true,
        "off" => false,
        _ => return Err(AppError::NotFound("route".into())),
    };
    let b: SwitchBody = if bytes.is_empty() {
        SwitchBody::default()
    } else {
        crate::sequences::body(&bytes)?
    };
    let asked = RulesSwitch {
        on,
        by: b.by.unwrap_or_else(|| format!("token {}", caller.0.name)),
        at: state.clock.now(),
        reason: b.reason,
    };
    let running = state.store.engine();
    let now = switch_rules(&*state.store, running.as_deref(), state.guard, asked).await?;
    apply_switch(&*state.store, &state.playbooks, Some(now));
    Ok(Json(state.playbooks.read().map_or_else(
        |_| RulesState::default(),
        |s| s.rules.clone(),
    )))
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
    // Switched back on: timers wait until the walk has re-armed the records events reached
    // while the rules were off (their stored timers may no longer fit them).
    let mut resumed = false;
    let mut was_on = true;
    loop {
        // Switched off, no playbooks run for the walk and nothing fires (the store decides
        // nothing); switched on, the walk starts over.
        let on = store.rules_on();
        resumed |= on && !was_on;
        was_on = on;
        let version = store.engine().filter(|_| on).map(|e| e.arming().to_owned());
        if version != walking {
            // New playbooks, perhaps mid-walk: start over so every record gets them.
            walking = version;
            cursor = 0;
            walked = walking.is_none();
        }
        if !on {
            // Exceptions already raised wait on people, not on the rules: they still move up
            // their chains.
            if !escalate(&*store, clock.now(), BATCH).await {
                tokio::time::sleep(every).await;
            }
            continue;
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
                Err(e) => e.log_in_loop("arming records failed; will retry"),
            }
        }
        if resumed {
            if !walked {
                if !more {
                    tokio::time::sleep(every).await;
                }
                continue;
            }
            resumed = false;
        }
        match store.fire_due_timers(clock.now(), BATCH).await {
            Ok(fired) => {
                metrics::counter!("pipewright_timers_fired_total").increment(fired.timers as u64);
                metrics::counter!("pipewright_effects_decided_total")
                    .increment(fired.effects as u64);
                more |= fired.timers == BATCH;
            }
            Err(e) => e.log_in_loop("firing due timers failed; will retry"),
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
            Err(e) => e.log_in_loop("advancing enrolments failed; will retry"),
        }
        more |= escalate(&*store, clock.now(), BATCH).await;
        if more {
            continue;
        }
        tokio::time::sleep(every).await;
    }
}

/// Moves exceptions nobody acknowledged in time up their chain; whether a full batch did.
async fn escalate(store: &dyn Store, now: Timestamp, batch: usize) -> bool {
    match store.escalate_exceptions(now, batch).await {
        Ok(pass) => {
            metrics::counter!("pipewright_exceptions_escalated_total")
                .increment(pass.escalated as u64);
            metrics::counter!("pipewright_exceptions_overdue_total").increment(pass.overdue as u64);
            pass.escalated + pass.overdue == batch
        }
        Err(e) => {
            e.log_in_loop("escalating exceptions failed; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(files: &[(&str, u64, u64)]) -> FolderState {
        FolderState(Some(
            files
                .iter()
                .map(|(name, size, modified)| {
                    (
                        PathBuf::from(name),
                        *size,
                        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(*modified)),
                    )
                })
                .collect(),
        ))
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000 + ms)
    }

    /// Issue 24: a file written in pieces is read only once it has stayed the same for the
    /// settle period, over polls; one that changed while being read waits again.
    #[test]
    fn a_change_is_read_only_once_it_has_settled() {
        let start = state(&[("a.yaml", 100, 1)]);
        let half = state(&[("a.yaml", 100, 1), ("b.yaml", 50, 2)]);
        let full = state(&[("a.yaml", 100, 1), ("b.yaml", 120, 3)]);
        let mut settle = Settle::new(start.clone());
        // Nothing changed.
        assert!(!settle.observe(start.clone(), at(0)));
        // The first half appears, and is still there at the next polls within the period.
        assert!(!settle.observe(half.clone(), at(2_000)));
        assert!(!settle.observe(half.clone(), at(2_500)));
        // The second half lands before the period is over: the wait starts again.
        assert!(!settle.observe(full.clone(), at(2_900)));
        assert!(!settle.observe(full.clone(), at(3_800)));
        assert!(settle.observe(full.clone(), at(3_900)));
        // Read, and still the same afterwards: it is the state read from then on.
        assert!(settle.read(full.clone(), at(3_900)));
        assert!(!settle.observe(full.clone(), at(5_000)));
        assert!(!settle.observe(full.clone(), at(9_000)));
    }

    #[test]
    fn a_folder_that_changed_while_being_read_waits_to_settle_again() {
        let start = state(&[("a.yaml", 100, 1)]);
        let edited = state(&[("a.yaml", 90, 2)]);
        let again = state(&[("a.yaml", 140, 3)]);
        let mut settle = Settle::new(start);
        assert!(!settle.observe(edited.clone(), at(0)));
        assert!(settle.observe(edited, at(1_000)));
        // Written to while it was read: what was read is not used.
        assert!(!settle.read(again.clone(), at(1_100)));
        assert!(!settle.observe(again.clone(), at(1_500)));
        assert!(settle.observe(again.clone(), at(2_100)));
        assert!(settle.read(again, at(2_100)));
    }

    /// A folder that disappears is a change like any other: read once settled (and reported).
    #[test]
    fn a_missing_folder_is_a_settled_change_too() {
        let mut settle = Settle::new(state(&[("a.yaml", 1, 1)]));
        assert!(!settle.observe(FolderState(None), at(0)));
        assert!(settle.observe(FolderState(None), at(1_000)));
        assert!(settle.read(FolderState(None), at(1_000)));
        assert!(!settle.observe(FolderState(None), at(3_000)));
    }

    #[test]
    fn who_published_a_set_in_words() {
        let me = "box-41-0a0b0c0d";
        assert_eq!(Publisher::of(me, me), Publisher::ThisNode);
        assert_eq!(Publisher::of("box-40-99aabbcc", me), Publisher::ThisMachine);
        assert_eq!(
            Publisher::of("other-box-7-11223344", me),
            Publisher::Another
        );
        let mut status = PlaybookStatus {
            source: Some(Source::Published {
                node: "box-40-99aabbcc".into(),
                at: "2026-11-20T12:00:00Z".parse().unwrap(),
                who: Publisher::ThisMachine,
            }),
            folder_problem: Some("the playbook folder playbooks has 2 problems".into()),
            ..PlaybookStatus::default()
        };
        status.describe();
        assert_eq!(
            status.origin.as_deref(),
            Some(
                "the playbook folder playbooks has 2 problems; the last good set keeps running: \
                 published by box-40-99aabbcc on this machine (an earlier run, not this process) \
                 at 2026-11-20 12:00 UTC"
            )
        );
    }
}
