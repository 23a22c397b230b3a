//! What the backends share. Ingest, the rules' timers, arming, refolds and the outbox are
//! written once, in the SQL that SQLite and PostgreSQL both understand, against the small
//! [`Sql`] trait; each backend supplies a connection, its transactions, its record locks and
//! the few statements where the dialects differ ([`Dialect`]).
//!
//! Statements are written with `?N` placeholders; the PostgreSQL adapter turns them into
//! `$N`. Integers are 64-bit in both databases (times are epoch milliseconds), text is text,
//! and JSON is stored as text.

pub(crate) mod apply;
pub(crate) mod codec;
pub(crate) mod outbox;
pub mod store;
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
        let id = domain::RecordId::parse(self.text(i + 1)?)
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(RecordKey::new(kind, id))
    }
}

/// A connection inside a transaction (or, for reads, outside one).
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
}

pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend(Box::new(e))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(e.to_string()))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Invalid(e.to_string()))
}
