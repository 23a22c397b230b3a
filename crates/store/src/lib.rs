//! pipewright's storage: the event log, the derived state of every record, and API tokens,
//! behind the [`Store`] trait, with an embedded SQLite adapter ([`SqliteStore`]).
//!
//! The trait is written for several backends: nothing above it knows SQL or which database is
//! in use. An adapter must append events and update the derived state they imply in one
//! transaction, acknowledge only what it has committed, and ignore an event whose
//! (source, source id) it already holds. Derived state comes from `domain::Record::fold`; the
//! store never interprets events itself.

mod alarms;
mod exceptions;
mod outbox;
mod postgres;
mod sequences;
mod sql;
mod sqlite;
mod storms;

use async_trait::async_trait;
use serde::Serialize;

use domain::{Event, EventId, NewEvent, Record, RecordId, RecordKey, RecordKind, Timestamp};

pub use alarms::{
    Alarm, AlarmAction, AlarmKind, AlarmQuery, AlarmSync, AlarmsSynced, ChannelAttempts,
    DeadLetters, MONITOR, NewAlarm, RuleFirings,
};
pub use engine::{Engine, Timer};
pub use exceptions::{
    Escalated, ExceptionAction, ExceptionEntry, ExceptionItem, ExceptionQuery, NewException,
};
pub use outbox::{
    Attempt, Backlog, Claim, Finish, NewTask, OutboxQuery, Outcome, StoredEffect, Task, TaskQuery,
};
pub use postgres::{Migrations, Postgres, PostgresOptions, PostgresStore};
pub use sequences::{
    Advanced, Control, EnrolmentInfo, EnrolmentQuery, PauseScope, SequencePause, Suppression,
    VariantResult,
};
pub use sql::store::SqlStore;
pub use sqlite::{Sqlite, SqliteOptions, SqliteStore, Synchronous};
pub use storms::{NewStorm, RulePage, Storm, StormDecision, StormQuery, StormReason};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the store is shutting down")]
    Closed,
    /// The database cannot take the work now, for a reason outside pipewright that ends
    /// without a restart (space freed, the server back): nothing of the failed write was
    /// committed, unless the connection was lost while committing — a retry of the same
    /// events is then a duplicate.
    #[error("{outage}")]
    Unavailable {
        outage: Outage,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why the database cannot take work for now (see [`Error::Unavailable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outage {
    /// The disk holding the database has no room for what a write adds (SQLite: `SQLITE_FULL`,
    /// or an I/O error while the disk is full; PostgreSQL: `53100 disk_full`).
    DiskFull,
    /// No session with the database: it refuses connections, closed them, or is restarting or
    /// shutting down (PostgreSQL's class 08 and `57P01`–`57P03`).
    Unreachable,
}

impl Outage {
    /// A stable name, for error codes and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DiskFull => "disk_full",
            Self::Unreachable => "database_unreachable",
        }
    }
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DiskFull => "the disk holding the database is full",
            Self::Unreachable => "the database cannot be reached",
        })
    }
}

impl Error {
    /// The outage this error is part of, if it is one.
    pub fn outage(&self) -> Option<Outage> {
        match self {
            Self::Unavailable { outage, .. } => Some(*outage),
            _ => None,
        }
    }

    /// Logs a background loop's failed pass, `what` saying which ("firing due timers failed;
    /// will retry"): at error, but at debug during an outage, which is logged once when it
    /// begins and once when it ends rather than by every pass.
    pub fn log_in_loop(&self, what: &str) {
        if self.outage().is_some() {
            tracing::debug!(error = ?self, "{what}");
        } else {
            tracing::error!(error = ?self, "{what}");
        }
    }
}

/// What became of one event handed to [`Store::ingest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Ingested {
    /// Newly appended to the log; `seq` is its position.
    Stored { id: EventId, seq: i64 },
    /// An event with the same (source, source id) was already stored; nothing changed.
    Duplicate { id: EventId },
}

/// A record's derived state as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecord {
    pub record: Record,
    /// When the record last changed in the store (commit time).
    pub updated_at: Timestamp,
    /// The occurrence time of its latest event.
    pub last_event_at: Timestamp,
}

/// Filters for listing records; every filter is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub kind: RecordKind,
    pub stage: Option<String>,
    pub owner: Option<String>,
    pub updated_since: Option<Timestamp>,
    /// Return records whose id sorts after this one (the previous page's `next`).
    pub after: Option<String>,
    pub limit: usize,
}

impl ListQuery {
    pub fn new(kind: RecordKind) -> Self {
        Self {
            kind,
            stage: None,
            owner: None,
            updated_since: None,
            after: None,
            limit: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub items: Vec<StoredRecord>,
    /// The cursor for the next page, when there is one.
    pub next: Option<String>,
}

/// The roles an API token can carry, each including the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    Reader,
    Writer,
    Admin,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Reader, Self::Writer, Self::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: TokenRole,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What a person signed in to the web UI may do, each role including the ones below it:
/// viewers read; reps also act on their own exceptions and walk decision trees; managers act on
/// anyone's; admins also manage users.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    Viewer,
    Rep,
    Manager,
    Admin,
}

impl UserRole {
    pub const ALL: [UserRole; 4] = [Self::Viewer, Self::Rep, Self::Manager, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Rep => "rep",
            Self::Manager => "manager",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A person who signs in to the web UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Their email address: also their person id in events, where they have one.
    pub id: String,
    pub name: String,
    pub role: UserRole,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// A user to store, with the PHC string of their password's hash (never the password).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub name: String,
    pub role: UserRole,
    pub password_hash: String,
}

/// A signed-in session, found by the hash of its cookie's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    /// The token every form of the session carries.
    pub csrf: String,
    pub expires_at: Timestamp,
}

/// A token to store: its public id and the hash of its secret (never the secret itself).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub role: TokenRole,
    pub hash: String,
}

/// What one pass over due timers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TimersFired {
    pub timers: usize,
    pub effects: usize,
}

/// What one arming pass did: see [`Store::arm_records`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ArmPass {
    /// Records whose timers were re-armed in this pass.
    pub armed: usize,
    /// Where the next pass starts; `None` when every record has been seen.
    pub next: Option<i64>,
}

/// What one refold pass did: see [`Store::refold_records`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefoldPass {
    pub examined: usize,
    /// Records whose stored state differed from the fold of their events, now corrected.
    pub corrected: usize,
    /// Where the next pass starts; `None` when every record has been seen.
    pub next: Option<i64>,
}

/// A playbook set published for every node sharing the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPlaybooks {
    /// The set's content hash.
    pub version: String,
    /// Its files: (path on the publishing node, text).
    pub files: Vec<(String, String)>,
    pub published_at: Timestamp,
    /// The node that published it.
    pub node: String,
}

/// A person switching the playbooks' rules off or on, for every node ([`Store::switch_rules`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesSwitch {
    /// Whether the rules act from then on.
    pub on: bool,
    /// Who switched them.
    pub by: String,
    pub at: Timestamp,
    /// Why, in their words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the risk score learned from closed deals, published for every node sharing the
/// database ([`Store::publish_risk`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedRisk {
    pub learned: risk::Learned,
    /// The risk settings it was learned under, as JSON: what a node compares with its own to
    /// know whether the model fits its playbooks.
    pub settings: String,
    pub learned_at: Timestamp,
    /// The node that learned it.
    pub node: String,
}

/// An event and the record it was read for ([`Store::record_events`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    pub record: RecordId,
    /// Its position in the log.
    pub seq: i64,
    pub event: Event,
}

/// Records by id: from `from` (inclusive, or the first) to `before` (exclusive, or past the
/// last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordRange {
    pub from: Option<RecordId>,
    pub before: Option<RecordId>,
}

impl RecordRange {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// Consecutive ranges split at `bounds` (in order), together covering every record.
    pub fn split_at(bounds: Vec<RecordId>) -> Vec<Self> {
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut from = None;
        for bound in bounds {
            ranges.push(Self {
                from: from.replace(bound.clone()),
                before: Some(bound),
            });
        }
        ranges.push(Self { from, before: None });
        ranges
    }
}

/// The storage contract every backend fulfils; the conformance suite in `tests/` checks it.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `events` to the log and updates the derived state of the records they concern.
    ///
    /// # Contract
    /// All of `events` are committed together, or none is: when this returns `Ok` they are
    /// durable to the configured level. Results are in input order. An event whose (source,
    /// source id) is already stored — earlier or within the same call — is reported as
    /// [`Ingested::Duplicate`] and changes nothing. Events may arrive out of occurrence order;
    /// derived state is always the fold of the record's events sorted by occurrence time.
    ///
    /// # Errors
    /// [`Error::Backend`] when the database fails (nothing is written), [`Error::Closed`] during
    /// shutdown.
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Ingested>>;

    /// The derived state of one record, or `None` if no event has concerned it.
    async fn record(&self, key: &RecordKey) -> Result<Option<StoredRecord>>;

    /// The most recent `limit` events concerning a record, oldest first.
    async fn timeline(&self, key: &RecordKey, limit: usize) -> Result<Vec<Event>>;

    /// Records of one kind matching the query, ordered by id.
    async fn list(&self, query: &ListQuery) -> Result<Page>;

    /// Events in log order with a sequence number above `after_seq`, at most `limit` of them.
    async fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, Event)>>;

    /// Events concerning records of `kind` in `range`, record after record (by id) and each
    /// record's in occurrence order (ties in log order): at most `limit` of them after `after`
    /// (the previous page's last), so a reader can take one record's history at a time, and
    /// several readers a range each.
    async fn record_events(
        &self,
        kind: RecordKind,
        range: &RecordRange,
        after: Option<&RecordEvent>,
        limit: usize,
    ) -> Result<Vec<RecordEvent>>;

    /// Splits the records of `kind` into at most `parts` ranges of about equal size, in order,
    /// together covering every record (one range when there are few).
    async fn record_ranges(&self, kind: RecordKind, parts: usize) -> Result<Vec<RecordRange>>;

    async fn event_count(&self) -> Result<u64>;

    async fn create_token(&self, token: NewToken) -> Result<TokenInfo>;
    async fn tokens(&self) -> Result<Vec<TokenInfo>>;
    /// # Errors
    /// [`Error::NotFound`] when no token has this id.
    async fn revoke_token(&self, id: &str) -> Result<TokenInfo>;
    /// The live (not revoked) token whose secret hashes to `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;

    /// Adds a user, or — with `replace` — replaces the name, role and password of one with
    /// that id (and ends their sessions).
    ///
    /// # Errors
    /// [`Error::Conflict`] when the id is taken and `replace` is false.
    async fn create_user(&self, user: NewUser, replace: bool) -> Result<User>;
    /// Every user, by id.
    async fn users(&self) -> Result<Vec<User>>;
    /// A user who is not disabled, with their password's hash.
    async fn user_for_sign_in(&self, id: &str) -> Result<Option<(User, String)>>;
    /// Starts a session for a user, until `expires_at`.
    async fn create_session(
        &self,
        hash: &str,
        user: &str,
        csrf: &str,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// The session whose secret hashes to `hash`, if it has not expired at `now` and its user
    /// is not disabled.
    async fn session(&self, hash: &str, now: Timestamp) -> Result<Option<Session>>;
    /// Ends a session (signing out).
    async fn end_session(&self, hash: &str) -> Result<()>;

    /// Succeeds when the database answers a read.
    async fn ping(&self) -> Result<()>;

    /// Succeeds when the writer takes a request from its queue and can write: on SQLite the disk
    /// holding the database has room (at least [`ROOM`] bytes free), and a small write (one row
    /// of `secrets`, the time of the probe) commits in a transaction of its own. A write that
    /// commits in space the database already holds proves nothing about room, hence the
    /// check of the disk.
    ///
    /// # Errors
    /// [`Error::Closed`] when the writer has stopped (or its thread ended);
    /// [`Error::Unavailable`] when the disk is full or the database cannot be reached;
    /// [`Error::Backend`] when the write fails otherwise. A writer that is stuck does not
    /// answer: the caller bounds the wait.
    async fn ping_writer(&self) -> Result<()>;

    /// The outage the store's writes are in, if any: set by the first write (a request's, a
    /// loop's or [`Store::ping_writer`]'s) that fails with [`Error::Unavailable`], ended by the
    /// next write that commits something. Logged once when it begins and once when it ends.
    fn outage(&self) -> Option<Outage>;

    /// Stops the writer once every request queued before this one has been answered; later
    /// writes fail with [`Error::Closed`]. Reads go on. What a server calls as it stops.
    async fn close(&self) -> Result<()>;

    /// The rules evaluated inside every ingest from now on (`None`: no playbooks loaded).
    ///
    /// # Contract
    /// With an engine set, `ingest` also runs it on every event for the deals and leads the
    /// event concerns, and writes the effects it decides, the record's re-armed timers and the
    /// rules' memory in the same transaction as the events.
    fn set_engine(&self, engine: Option<std::sync::Arc<Engine>>);

    /// The engine set last, if any.
    fn engine(&self) -> Option<std::sync::Arc<Engine>>;

    /// Switches this store's rules on or off (what [`Store::rules_switch`] says, applied on
    /// this node); on until told otherwise.
    ///
    /// # Contract
    /// While off, the engine set stays (pages, explanations and risk read it) but decides
    /// nothing: `ingest` stores events and folds records without running rules or gates on
    /// them, and marks the deals and leads it touches as armed under no playbooks, so the walk
    /// after switching on ([`Store::arm_records`]) re-arms them; `fire_due_timers`,
    /// `arm_records` and `advance_enrolments` do nothing. Timers stay stored and come due as
    /// they would have.
    fn set_rules_on(&self, on: bool);

    /// Whether this store's rules are on ([`Store::set_rules_on`]).
    fn rules_on(&self) -> bool;

    /// Records that a person switched the rules off or on, for every node sharing the
    /// database; each node applies it with [`Store::set_rules_on`].
    async fn switch_rules(&self, switch: RulesSwitch) -> Result<()>;

    /// The newest switch of the rules, if anyone ever switched them (none: they are on).
    async fn rules_switch(&self) -> Result<Option<RulesSwitch>>;

    /// Every rule's memory of a record (empty when no rule has fired for it).
    async fn rule_memory(&self, record: &RecordKey) -> Result<engine::Memory>;

    /// Fires, in due order, about `limit` timers due at or before `now`, each once: the
    /// timer's deletion, the effects it causes and the rule's memory commit together. A
    /// record's timers due at the same moment fire together, past `limit` if need be: they are
    /// one input, whose conflicting effects are resolved against each other (an `overruled`
    /// effect in the outbox, never claimed).
    async fn fire_due_timers(&self, now: Timestamp, limit: usize) -> Result<TimersFired>;

    /// Brings the timers of records the current engine has not armed up to date: the deals and
    /// leads whose timers were armed under another playbook version, or never (they existed
    /// before the rules did), get exactly the timers the engine asks for at `now`. Rules that
    /// no longer exist lose their timers. Examines at most `limit` records in storage order,
    /// starting after the cursor `after` (0 for the first pass); call again with
    /// [`ArmPass::next`] until it is `None`. Without an engine, does nothing.
    ///
    /// # Contract
    /// Each record's timers and its armed version change in one transaction; a record an
    /// ingest re-arms meanwhile is skipped (its version already matches).
    async fn arm_records(&self, now: Timestamp, after: i64, limit: usize) -> Result<ArmPass>;

    /// [`Store::arm_records`] over every record, `page` a transaction: how many were armed.
    async fn arm_all(&self, now: Timestamp, page: usize) -> Result<usize> {
        let (mut cursor, mut armed) = (0, 0);
        loop {
            let pass = self.arm_records(now, cursor, page).await?;
            armed += pass.armed;
            match pass.next {
                Some(next) => cursor = next,
                None => return Ok(armed),
            }
        }
    }

    /// Rebuilds derived state from the log: each record's state becomes the fold of its events
    /// (the log is the truth; state is a cache of it). Examines at most `limit` records in
    /// storage order after the cursor `after`; call again with [`RefoldPass::next`] until it
    /// is `None`. Rules do not run: nothing is decided again.
    async fn refold_records(&self, after: i64, limit: usize) -> Result<RefoldPass>;

    /// Effects in outbox order (oldest first) matching the query.
    async fn outbox(&self, query: &OutboxQuery) -> Result<Vec<StoredEffect>>;

    /// The outbox, oldest first; only one record's effects when `record` is given.
    async fn effects(&self, record: Option<&RecordKey>, limit: usize) -> Result<Vec<StoredEffect>> {
        self.outbox(&OutboxQuery {
            record: record.cloned(),
            limit,
            ..OutboxQuery::default()
        })
        .await
    }

    /// Counts by status and the oldest pending due time.
    async fn backlog(&self) -> Result<Backlog>;

    /// One effect by its idempotency key, with every attempt at delivering it.
    async fn effect(&self, key: &str) -> Result<Option<(StoredEffect, Vec<Attempt>)>>;

    /// Claims due effects for delivery, fairly across channels.
    ///
    /// # Contract
    /// An effect is due when it is `pending` with `next_at` at or before `claim.now`, or
    /// `delivering` under a lease that has expired (its dispatcher died). Each channel is a
    /// queue of its own: its expired leases first, then its pending effects oldest due first;
    /// the claim takes from the channels in turn (the one whose head waited longest first),
    /// within each channel's budget, so one channel's backlog, budget or pause never holds back
    /// another, and an expired lease on a channel that is not paused and has budget is taken by
    /// the next claim. Each claimed effect becomes `delivering`, leased to `claim.node` until
    /// `claim.lease_until`, its attempt count raised by one and the attempt recorded with the
    /// outcome `unknown` until [`Store::finish_delivery`] ends it — atomically, so two claims
    /// never return the same effect while a lease holds. Delivered, dead, cancelled, dry-run, shadow, blocked, held and overruled effects
    /// are never claimed.
    async fn claim_effects(&self, claim: Claim) -> Result<Vec<StoredEffect>>;

    /// Records how an attempt ended: the effect's new status, the attempt in its history and
    /// the task the delivery creates, in one transaction. Returns `false` (and changes
    /// nothing) when `finish.node` no longer holds the effect's lease.
    async fn finish_delivery(&self, finish: Finish) -> Result<bool>;

    /// Dead-letters the pending effects of `channel` that were due before `due_before`, with
    /// `reason` as their last error: what a channel that kept failing could not deliver within
    /// its time budget. Returns how many.
    async fn give_up_effects(
        &self,
        channel: &str,
        due_before: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<u64>;

    /// Puts a dead or cancelled effect back to `pending`, due now, with a fresh attempt budget.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when the effect is in another state.
    async fn retry_effect(&self, key: &str) -> Result<StoredEffect>;

    /// Cancels a pending or dead effect: it will never be delivered.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when it is being delivered or has ended.
    async fn cancel_effect(&self, key: &str) -> Result<StoredEffect>;

    /// Starts watching rules for storms: new ones, ones whose reach changed, or every rule
    /// after an import. A watched rule that acts on more records within an hour than its limit
    /// (or one opened `holding`, because its forecast says it would) has its effects added to
    /// the outbox as `held` until [`Store::decide_storm`]. A rule already holding keeps its
    /// storm. The storms in force for those rules.
    async fn watch_rules(&self, storms: Vec<NewStorm>) -> Result<Vec<Storm>>;

    /// Storms, newest first; one whose watch ran out by `now` reads as `ended`.
    async fn storms(&self, query: &StormQuery, now: Timestamp) -> Result<Vec<Storm>>;

    async fn storm(&self, id: &str, now: Timestamp) -> Result<Option<Storm>>;

    /// Approves a storm (its held effects go out now, acted on as when they were added, in the
    /// order they were decided) or discards it (they are cancelled, as is any effect of the
    /// rule decided for a moment before the discard while the watch lasts).
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when it was decided already or has ended.
    async fn decide_storm(&self, id: &str, decision: StormDecision) -> Result<Storm>;

    /// A page of deals and leads after the cursor `after` (0 for the first), with the rules'
    /// memory of each: what forecasts read.
    async fn rule_page(&self, after: i64, limit: usize) -> Result<RulePage>;

    /// Tasks, newest first.
    async fn tasks(&self, query: &TaskQuery) -> Result<Vec<Task>>;

    /// Exceptions, newest first.
    async fn exceptions(&self, query: &ExceptionQuery) -> Result<Vec<ExceptionItem>>;

    /// One exception with its history, oldest entry first.
    async fn exception(&self, id: &str) -> Result<Option<(ExceptionItem, Vec<ExceptionEntry>)>>;

    /// Acknowledges, resolves or reassigns an exception.
    ///
    /// # Contract
    /// The change and its history entry commit together. Resolving an exception about a deal
    /// also ingests, in the same transaction, an `intervention.logged` by the resolver with the
    /// exception's reason (source `pipewright`, source id `exception:ID`), which the heroics
    /// report counts like any logged intervention.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] for a resolved exception, or one already
    /// acknowledged; [`Error::Invalid`] for a blank `by` or `resolution`, or a reassignment
    /// to someone who is not a known person.
    async fn act_on_exception(&self, id: &str, action: ExceptionAction) -> Result<ExceptionItem>;

    /// Moves at most `limit` open exceptions whose holder's SLA ran out by `now` to the next
    /// person of their chain (due one SLA after the one that ran out), or marks them overdue
    /// at the last; each once, with its history entry.
    async fn escalate_exceptions(&self, now: Timestamp, limit: usize) -> Result<Escalated>;

    /// Marks a task done.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    async fn complete_task(&self, id: &str) -> Result<Task>;

    /// The timers a record is waiting on, soonest first.
    async fn timers(&self, record: &RecordKey) -> Result<Vec<Timer>>;

    /// Publishes a playbook set: from now on it is the newest, the one every node runs.
    async fn publish_playbooks(&self, set: PublishedPlaybooks) -> Result<()>;

    /// The newest published playbook set, if any was published.
    async fn latest_playbooks(&self) -> Result<Option<PublishedPlaybooks>>;

    /// Whether a set with this version was ever published.
    async fn playbooks_published(&self, version: &str) -> Result<bool>;

    /// Every rule that has decided an effect (shadow ones included), by rule: how many, on
    /// how many days, the first and the last.
    async fn rule_firings(&self) -> Result<Vec<RuleFirings>>;

    /// Delivery attempts that finished after `since`, per channel: how many, how many failed,
    /// the last failure and success, and what the last failure was told.
    async fn channel_attempts(&self, since: Timestamp) -> Result<Vec<ChannelAttempts>>;

    /// The effects given up on (`dead`): how many, per channel, and when the first of them was
    /// last attempted.
    async fn dead_letters(&self) -> Result<DeadLetters>;

    /// Brings the alarms of each kind in `syncs` in line with what the monitor sees at `now`.
    ///
    /// # Contract
    /// In one transaction, for each kind: a current condition whose (kind, subject) has no
    /// alarm opens one (`open`); one that has refreshes its title, detail and update time,
    /// never adding a second. An alarm whose subject is not current — and has not been raised
    /// for the kind's `quiet_ms` — is resolved by [`MONITOR`] with the kind's reason (or the
    /// subject's). One a person resolved while its condition held stays resolved and is not
    /// opened again until its condition has cleared once. Kinds not in `syncs` are left alone.
    async fn sync_alarms(&self, syncs: Vec<AlarmSync>, now: Timestamp) -> Result<AlarmsSynced>;

    /// Alarms, newest first.
    async fn alarms(&self, query: &AlarmQuery) -> Result<Vec<Alarm>>;

    async fn alarm(&self, id: &str) -> Result<Option<Alarm>>;

    /// Acknowledges or resolves an alarm.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] for a resolved alarm, or one already
    /// acknowledged; [`Error::Invalid`] for a blank `by` or resolution.
    async fn act_on_alarm(&self, id: &str, action: AlarmAction) -> Result<Alarm>;

    /// Publishes what the risk score learned: from now on every node scores with it.
    async fn publish_risk(&self, model: PublishedRisk) -> Result<()>;

    /// The newest published risk model, if any.
    async fn latest_risk(&self) -> Result<Option<PublishedRisk>>;

    /// Runs the due steps of at most `limit` active enrolments due at or before `now`.
    ///
    /// # Contract
    /// Each enrolment's new state, the effects of its steps (emails, tasks) and the emails the
    /// sending etiquette stopped (`blocked`, with the reason) commit together, under the
    /// record's lock: a step runs once. The steps run with the sequence as it was in the
    /// playbook version the enrolment started on. An email held by a frequency cap or a
    /// throttle is not sent; its step runs when the hold ends.
    async fn advance_enrolments(&self, now: Timestamp, limit: usize) -> Result<Advanced>;

    /// Enrolments, newest first.
    async fn enrolments(&self, query: &EnrolmentQuery) -> Result<Vec<EnrolmentInfo>>;

    /// Pauses, resumes or stops one enrolment by hand.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] when it has ended.
    async fn control_enrolment(&self, id: &str, control: Control) -> Result<EnrolmentInfo>;

    /// Pauses the enrolments in `scope` (and every one that starts in it until resumed);
    /// returns how many were active.
    async fn pause_sequences(&self, scope: PauseScope, note: Option<String>) -> Result<u64>;

    /// Ends a pause; returns how many enrolments run again. A step that fell due during the
    /// pause runs once, now; the ones after keep their spacing.
    async fn resume_sequences(&self, scope: PauseScope) -> Result<u64>;

    async fn sequence_pauses(&self) -> Result<Vec<SequencePause>>;

    /// Puts an address (or `@domain`) on the suppression list with a reason
    /// (`do_not_contact`, `unsubscribed`, `bounced`).
    ///
    /// # Errors
    /// [`Error::Invalid`] for something that is not an address or domain, or another reason.
    async fn suppress(&self, address: &str, reason: &str, note: Option<String>) -> Result<()>;

    /// Takes an address off the list; whether it was on it.
    async fn unsuppress(&self, address: &str) -> Result<bool>;

    async fn suppressions(&self, limit: usize) -> Result<Vec<Suppression>>;

    /// Reply rates per step and variant of a sequence.
    async fn sequence_results(&self, sequence: &str) -> Result<Vec<VariantResult>>;

    /// The compiled playbook set of a version: one this node ran, or one published.
    async fn playbook_set(
        &self,
        version: &str,
    ) -> Result<Option<std::sync::Arc<playbook::PlaybookSet>>>;

    /// A secret every node shares (e.g. `unsubscribe` signs links with it), made at random the
    /// first time it is asked for.
    async fn secret(&self, name: &str) -> Result<String>;
}

/// How to open a store, beside its URL; each backend takes what applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// SQLite only: what a commit survives.
    pub synchronous: Synchronous,
    /// The most events one group commit takes.
    pub max_group_events: usize,
    /// Idle read connections kept (the writer has one more of its own).
    pub read_connections: usize,
    /// PostgreSQL only: how long to wait for a connection.
    pub connect_timeout: std::time::Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_group_events: 10_000,
            read_connections: 4,
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Every person (team member) in the store, as their latest state says, read page by page.
pub async fn people(store: &dyn Store) -> Result<Vec<domain::Person>> {
    let mut found = Vec::new();
    let mut query = ListQuery::new(RecordKind::Person);
    query.limit = 1000;
    loop {
        let page = store.list(&query).await?;
        found.extend(page.items.into_iter().filter_map(|r| match r.record {
            Record::Person(p) => Some(p),
            _ => None,
        }));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(found),
        }
    }
}

/// Opens the store a database URL names: `sqlite:PATH` (or `sqlite://PATH`) for the embedded
/// database, `postgres://…` (or `postgresql://…`) for PostgreSQL. The scheme is the only
/// place the backend is chosen.
///
/// # Errors
/// [`Error::Invalid`] for a URL whose scheme no backend serves; [`Error::Backend`] when the
/// database cannot be opened or migrated.
pub fn connect(
    url: &str,
    options: &ConnectOptions,
    clock: std::sync::Arc<dyn clock::Clock>,
) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match Database::of(url)? {
        Database::Sqlite(path) => {
            let mut sqlite = SqliteOptions::new(path);
            sqlite.synchronous = options.synchronous;
            sqlite.max_group_events = options.max_group_events;
            sqlite.read_connections = options.read_connections;
            std::sync::Arc::new(SqliteStore::open(sqlite, clock)?)
        }
        Database::Postgres => {
            std::sync::Arc::new(PostgresStore::open(postgres_options(url, options), clock)?)
        }
    })
}

/// Brings the schema of the database `url` names up to this binary's version, without
/// starting a store; what [`connect`] also does on every start. Reports the versions.
///
/// # Errors
/// As [`connect`]; [`Error::Invalid`] when the database is newer than this binary.
pub fn migrate(url: &str, options: &ConnectOptions) -> Result<Migrations> {
    match Database::of(url)? {
        Database::Sqlite(path) => sqlite::migrate(std::path::Path::new(path)),
        Database::Postgres => postgres::migrate(&postgres_options(url, options)),
    }
}

/// The backend a database URL names.
enum Database<'a> {
    Sqlite(&'a str),
    Postgres,
}

impl<'a> Database<'a> {
    fn of(url: &'a str) -> Result<Self> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(Error::Invalid(
                    "the sqlite: URL needs a file path, e.g. sqlite:pipewright.db".into(),
                ));
            }
            return Ok(Self::Sqlite(path));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres);
        }
        let scheme = url.split(':').next().unwrap_or_default();
        Err(Error::Invalid(format!(
            "database URL scheme {scheme:?} is not supported; use sqlite:PATH or postgres://USER@HOST/DATABASE"
        )))
    }
}

/// The PostgreSQL options for `url`.
pub fn postgres_options(url: &str, options: &ConnectOptions) -> PostgresOptions {
    let mut pg = PostgresOptions::new(url);
    pg.max_group_events = options.max_group_events;
    pg.read_connections = options.read_connections;
    pg.connect_timeout = options.connect_timeout;
    pg
}
