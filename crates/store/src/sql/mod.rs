//! What the backends share. Ingest, the rules' timers, arming, refolds and the outbox are
//! written once, in the SQL that SQLite and PostgreSQL both understand, against the small
//! [`Sql`] trait; each backend supplies a connection, its transactions, its record locks and
//! the few statements where the dialects differ ([`Dialect`]).
//!
//! Statements are written with `?N` placeholders; the PostgreSQL adapter turns them into
//! `$N`. Integers are 64-bit in both databases (times are epoch milliseconds), text is text,
//! and JSON is stored as text.

pub(crate) mod alarms;
pub(crate) mod apply;
pub(crate) mod codec;
pub(crate) mod exceptions;
pub(crate) mod gates;
pub(crate) mod outages;
pub(crate) mod outbox;
pub(crate) mod sequences;
pub mod store;
pub(crate) mod storms;
pub(crate) mod writer;

use domain::{RecordKey, RecordKind, Timestamp};

use crate::{Error, Result};

/// Where the SQL of the two backends differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The column that orders records by insertion, for walks over all of them.
    pub(crate) fn record_position(self) -> &'static str {
        match self {
            Self::Sqlite => "rowid",
            Self::Postgres => "pos",
        }
    }
}

/// A statement parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bool(bool),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(v)
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Builds a parameter list: `args![a, b, c]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::sql::Arg::from($a)),*][..] };
}
pub(crate) use args;

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

/// One result row, its columns in select order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub(crate) Vec<Value>);

impl Row {
    fn column(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Corrupt(format!("row has no column {i}")))
    }

    fn wrong(&self, i: usize, expected: &str) -> Error {
        Error::Corrupt(format!(
            "column {i}: expected {expected}, found {:?}",
            self.0.get(i)
        ))
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.column(i)? {
            Value::Int(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    pub(crate) fn millis(&self, i: usize) -> Result<Timestamp> {
        self.int(i).map(Timestamp::from_millis)
    }

    pub(crate) fn opt_millis(&self, i: usize) -> Result<Option<Timestamp>> {
        Ok(self.opt_int(i)?.map(Timestamp::from_millis))
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool> {
        match self.column(i)? {
            Value::Bool(v) => Ok(*v),
            Value::Int(v) => Ok(*v != 0),
            _ => Err(self.wrong(i, "a boolean")),
        }
    }

    /// Takes a text column out of the row.
    pub(crate) fn text(&mut self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    pub(crate) fn opt_text(&mut self, i: usize) -> Result<Option<String>> {
        match self.column(i)? {
            Value::Text(_) => match std::mem::replace(&mut self.0[i], Value::Null) {
                Value::Text(s) => Ok(Some(s)),
                _ => unreachable!("matched above"),
            },
            Value::Null => Ok(None),
            _ => Err(self.wrong(i, "text")),
        }
    }

    /// A record key from a kind column and the id column after it.
    pub(crate) fn record_key(&mut self, i: usize) -> Result<RecordKey> {
        let kind = self.text(i)?;
        let kind = RecordKind::parse(&kind)
            .ok_or_else(|| Error::Corrupt(format!("record kind {kind:?}")))?;
        Ok(RecordKey::new(kind, self.record_id(i + 1)?))
    }

    /// A record id column.
    pub(crate) fn record_id(&mut self, i: usize) -> Result<domain::RecordId> {
        domain::RecordId::parse(self.text(i)?).map_err(|e| Error::Corrupt(e.to_string()))
    }
}

/// An event as it is appended to the log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub id: String,
    pub source: String,
    pub source_id: String,
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub occurred_at: i64,
    pub received_at: i64,
    pub body: String,
}

/// A record's state as it is written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordRow<'a> {
    pub kind: &'a str,
    pub id: &'a str,
    pub stage: Option<String>,
    pub owner: Option<String>,
    pub last_occurred_at: i64,
    pub updated_at: i64,
    pub state: String,
    pub memory: String,
    pub armed_version: Option<&'a str>,
    /// The stored row exists with the same stage and owner: SQLite then leaves the indexes on
    /// them alone.
    #[serde(skip)]
    pub same_columns: bool,
}

pub(crate) const LOAD_RECORD: &str = "SELECT state, last_occurred_at, memory, armed_version FROM records WHERE kind = ?1 AND id = ?2";

/// A connection inside a transaction (or, for reads, outside one).
///
/// The methods after [`Sql::try_lock_record`] repeat one statement over many rows. Their
/// defaults run it row by row, which costs nothing in process (SQLite); a server database
/// sends all rows in one statement instead of a round trip each.
pub trait Sql {
    fn dialect(&self) -> Dialect;

    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64>;

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>>;

    fn query_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Holds every record in `keys` for the rest of the transaction, waiting for other
    /// transactions (other nodes) that hold any of them. Locks are taken in one global order,
    /// so two transactions locking overlapping sets never deadlock. A single-writer database
    /// needs none.
    fn lock_records(&mut self, keys: &[&RecordKey]) -> Result<()>;

    /// Holds `key` for the rest of the transaction if no other transaction holds it; `false`
    /// when one does (its work is left to whoever holds it).
    fn try_lock_record(&mut self, key: &RecordKey) -> Result<bool>;

    /// Appends events to the log: for each, its position, or `None` when an event with its
    /// (source, source id) is already stored (earlier in `rows` too).
    fn insert_events(&mut self, rows: &[EventRow]) -> Result<Vec<Option<i64>>> {
        rows.iter()
            .map(|e| {
                self.query_opt(
                    "INSERT INTO events (id, source, source_id, type, occurred_at, received_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (source, source_id) DO NOTHING RETURNING seq",
                    args![
                        &e.id,
                        &e.source,
                        &e.source_id,
                        e.ty,
                        e.occurred_at,
                        e.received_at,
                        &e.body
                    ],
                )?
                .map(|r| r.int(0))
                .transpose()
            })
            .collect()
    }

    /// Records which records each stored event concerns: (record, occurred at, position).
    fn link_events(&mut self, links: &[(&RecordKey, i64, i64)]) -> Result<()> {
        for (key, at, seq) in links {
            self.execute(
                "INSERT INTO event_records (kind, record_id, occurred_at, seq) VALUES (?1, ?2, ?3, ?4)",
                args![key.kind.as_str(), key.id.as_str(), *at, *seq],
            )?;
        }
        Ok(())
    }

    /// The stored rows ([`LOAD_RECORD`]'s columns) of `keys`, in their order.
    fn load_records(&mut self, keys: &[&RecordKey]) -> Result<Vec<Option<Row>>> {
        keys.iter()
            .map(|k| self.query_opt(LOAD_RECORD, args![k.kind.as_str(), k.id.as_str()]))
            .collect()
    }

    /// Writes records' states, inserting the ones not stored yet.
    fn save_records(&mut self, rows: &[RecordRow<'_>]) -> Result<()> {
        for r in rows {
            if r.same_columns {
                self.execute(
                    "UPDATE records SET last_occurred_at = ?3, updated_at = ?4, state = ?5,
                       memory = ?6, armed_version = ?7
                     WHERE kind = ?1 AND id = ?2",
                    args![
                        r.kind,
                        r.id,
                        r.last_occurred_at,
                        r.updated_at,
                        &r.state,
                        &r.memory,
                        r.armed_version
                    ],
                )?;
            } else {
                self.execute(
                    "INSERT INTO records (kind, id, stage, owner, last_occurred_at, updated_at, state,
                                          memory, armed_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (kind, id) DO UPDATE SET stage = excluded.stage,
                       owner = excluded.owner, last_occurred_at = excluded.last_occurred_at,
                       updated_at = excluded.updated_at, state = excluded.state,
                       memory = excluded.memory, armed_version = excluded.armed_version",
                    args![
                        r.kind,
                        r.id,
                        r.stage.as_deref(),
                        r.owner.as_deref(),
                        r.last_occurred_at,
                        r.updated_at,
                        &r.state,
                        &r.memory,
                        r.armed_version
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Sets timers (each replaces its rule's timer on the record) and cancels others; no two
    /// changes concern the same rule and record.
    fn set_timers(&mut self, changes: &[engine::TimerChange]) -> Result<()> {
        for change in changes {
            match change {
                engine::TimerChange::Set(t) => self.execute(
                    "INSERT INTO timers (rule, record_kind, record_id, due, anchor)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (rule, record_kind, record_id)
                     DO UPDATE SET due = excluded.due, anchor = excluded.anchor",
                    args![
                        &t.rule,
                        t.record.kind.as_str(),
                        t.record.id.as_str(),
                        t.due.as_millis(),
                        t.anchor.as_millis()
                    ],
                ),
                engine::TimerChange::Cancel { rule, record } => self.execute(
                    "DELETE FROM timers WHERE rule = ?1 AND record_kind = ?2 AND record_id = ?3",
                    args![rule, record.kind.as_str(), record.id.as_str()],
                ),
            }?;
        }
        Ok(())
    }
}

/// A database engine behind [`store::SqlStore`]: how to open connections and run
/// transactions on them.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    type Conn: Send + 'static;

    /// Opens a connection for reads.
    fn open_reader(&self) -> Result<Self::Conn>;

    /// Runs `f` in one transaction, committed when it returns `Ok`, rolled back otherwise.
    fn transaction<T>(
        conn: &mut Self::Conn,
        f: impl FnOnce(&mut dyn Sql) -> Result<T>,
    ) -> Result<T>;

    /// Runs reads outside a transaction.
    fn read<T>(conn: &mut Self::Conn, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T>;

    /// A number that changes whenever another connection commits, so the writer may keep the
    /// records it decoded between transactions while it stays the same; `None` when other
    /// writers are always possible (other nodes) and nothing may be kept.
    fn data_version(conn: &mut Self::Conn) -> Option<i64>;

    /// Whether the disk holding the database has room for writes, where the backend can tell
    /// (SQLite's file is on this machine; PostgreSQL's disk is the server's).
    ///
    /// # Errors
    /// [`Error::Unavailable`] with [`Outage::DiskFull`](crate::Outage::DiskFull) when it has
    /// not.
    fn room(&self) -> Result<()> {
        Ok(())
    }
}

/// A database error as the store's [`Error`]: [`Error::Unavailable`] when the backend says it
/// is part of an outage (a full disk, no connection), [`Error::Backend`] otherwise.
pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    let source: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    match crate::sqlite::outage(&*source).or_else(|| crate::postgres::outage(&*source)) {
        Some(outage) => Error::Unavailable { outage, source },
        None => Error::Backend(source),
    }
}

/// The readiness probe's write: one row of `secrets` holding the time of the last probe. It
/// exists only for this; no secret is ever read by its name.
pub(crate) fn probe_write(sql: &mut dyn Sql, now: Timestamp) -> Result<()> {
    let at = now.as_millis().to_string();
    sql.execute(
        "INSERT INTO secrets (name, value) VALUES ('readiness probe', ?1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        args![&at],
    )
    .map(drop)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(e.to_string()))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Invalid(e.to_string()))
}
