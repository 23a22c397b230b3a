//! The PostgreSQL adapter, for teams that run several `pipewright serve` nodes on one
//! database.
//!
//! Each node runs the shared writer ([`crate::sql::writer`]) with group commit on one
//! connection and reads through a pool. What SQLite gets from having a single writer is
//! made explicit here:
//! - every record an ingest touches is locked (a transaction-scoped advisory lock per record,
//!   taken in one global order before anything is written), so one record's events are
//!   applied one transaction at a time, in whatever node they arrive;
//! - timers are fired under the same locks, taken without waiting: a record another node holds
//!   is skipped, and a timer is fired only if it is still there and still due once held;
//! - effects are claimed with `FOR UPDATE SKIP LOCKED` under a lease (see `Store::claim_effects`);
//! - rows are numbered by sequences;
//! - nothing decoded is kept between transactions (other nodes write the same records).
//!
//! The driver is the synchronous `postgres` client, as the shared code is synchronous (it is
//! for SQLite); connections are only used from the writer thread and blocking tasks.

mod migrate;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, GenericClient, NoTls, Statement};

use clock::Clock;
use domain::RecordKey;

use engine::TimerChange;

use crate::sql::{Arg, Backend, Dialect, EventRow, RecordRow, Row, Sql, Value, args, backend};
use crate::{Error, Outage, Result, SqlStore};

pub use migrate::Migrations;

/// How to reach the database and how many connections a node keeps.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database`, with any of libpq's URL parameters that the
    /// driver knows (e.g. `?options=-csearch_path%3Dpipewright` to use another schema).
    pub url: String,
    /// The most events one group commit takes before committing.
    pub max_group_events: usize,
    /// Idle read connections kept per node (the writer has one more of its own).
    pub read_connections: usize,
    pub connect_timeout: Duration,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_group_events: 10_000,
            read_connections: 4,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL backend: where the database is.
#[derive(Debug)]
pub struct Postgres {
    config: postgres::Config,
}

/// A store on PostgreSQL.
pub type PostgresStore = SqlStore<Postgres>;

impl Postgres {
    fn new(options: &PostgresOptions) -> Result<Self> {
        let mut config = postgres::Config::from_str(&options.url)
            .map_err(|e| Error::Invalid(format!("database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("pipewright");
        }
        Ok(Self { config })
    }

    fn connect(&self) -> Result<PgConn> {
        let (client, schema) = open_session(&self.config)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            config: self.config.clone(),
            schema,
        })
    }
}

/// A session, and the schema it works in (its `search_path`'s first).
fn open_session(config: &postgres::Config) -> Result<(Client, String)> {
    let mut client = config.connect(NoTls).map_err(backend)?;
    let schema: Option<String> = client
        .query_one("SELECT current_schema()", &[])
        .and_then(|r| r.try_get(0))
        .map_err(backend)?;
    Ok((client, schema.unwrap_or_default()))
}

/// Whether a PostgreSQL error is part of an outage, by its SQLSTATE (the PostgreSQL
/// documentation's appendix "PostgreSQL Error Codes") or, without one, by what the driver says:
/// - `53100 disk_full` is a full disk;
/// - class `08` (connection exception), `57P01 admin_shutdown`, `57P02 crash_shutdown`,
///   `57P03 cannot_connect_now` and `53300 too_many_connections` mean no session can be had
///   for now; so does a connection the driver found closed, or could not open or use at all
///   (refused, reset, timed out: an I/O error).
pub(crate) fn outage(error: &(dyn std::error::Error + 'static)) -> Option<Outage> {
    let error = error.downcast_ref::<postgres::Error>()?;
    if let Some(state) = error.code() {
        return outage_of_sqlstate(state.code());
    }
    let io = std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>());
    (error.is_closed() || io).then_some(Outage::Unreachable)
}

fn outage_of_sqlstate(code: &str) -> Option<Outage> {
    match code {
        "53100" => Some(Outage::DiskFull),
        "57P01" | "57P02" | "57P03" | "53300" => Some(Outage::Unreachable),
        _ if code.starts_with("08") => Some(Outage::Unreachable),
        _ => None,
    }
}

/// Runs `f` on a thread outside the async runtime: the synchronous client runs a small
/// runtime of its own, which cannot be started from inside another.
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or(Err(Error::Closed)))
}

impl SqlStore<Postgres> {
    /// Connects, brings the schema up to date (see [`migrate`](self::migrate)) and starts
    /// this node's writer.
    pub fn open(options: PostgresOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let backend = Postgres::new(&options)?;
        let conn = off_runtime(|| {
            let mut conn = backend.connect()?;
            migrate::run(&mut conn.client)?;
            Ok(conn)
        })?;
        SqlStore::start(
            backend,
            conn,
            Vec::new(),
            clock,
            options.max_group_events,
            options.read_connections,
        )
    }
}

/// Applies pending migrations and reports where the schema stands.
pub(crate) fn migrate(options: &PostgresOptions) -> Result<Migrations> {
    let backend = Postgres::new(options)?;
    off_runtime(|| migrate::run(&mut backend.connect()?.client))
}

/// A connection with the statements it has prepared.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    config: postgres::Config,
    /// Record locks are advisory locks, which belong to the whole database: the schema is part
    /// of their numbers, so deployments in two schemas of one database never wait for each
    /// other.
    schema: String,
}

impl PgConn {
    /// A new session when the server closed this one (a restart, a failover, a terminated
    /// backend): the writer outlives its connection.
    fn reopen_if_closed(&mut self) -> Result<()> {
        if self.client.is_closed() {
            tracing::warn!("the PostgreSQL connection was closed; reconnecting");
            (self.client, self.schema) = open_session(&self.config)?;
            self.statements.clear();
        }
        Ok(())
    }
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("statements", &self.statements.len())
            .finish_non_exhaustive()
    }
}

impl Backend for Postgres {
    type Conn = PgConn;

    fn open_reader(&self) -> Result<PgConn> {
        self.connect()
    }

    fn transaction<T>(conn: &mut PgConn, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        conn.reopen_if_closed()?;
        if let Err(e) = conn.client.batch_execute("BEGIN") {
            if !conn.client.is_closed() {
                return Err(backend(e));
            }
            // Closed since it was last used: nothing of this transaction has happened yet.
            conn.reopen_if_closed()?;
            conn.client.batch_execute("BEGIN").map_err(backend)?;
        }
        let out = f(&mut Pg {
            client: &mut conn.client,
            statements: &mut conn.statements,
            schema: &conn.schema,
        });
        match out {
            Ok(value) => {
                conn.client.batch_execute("COMMIT").map_err(backend)?;
                Ok(value)
            }
            Err(e) => {
                let _ = conn.client.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }

    fn read<T>(conn: &mut PgConn, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        f(&mut Pg {
            client: &mut conn.client,
            statements: &mut conn.statements,
            schema: &conn.schema,
        })
    }

    fn data_version(_: &mut PgConn) -> Option<i64> {
        None
    }
}

/// A connection or transaction as the shared code sees it.
struct Pg<'c, C: GenericClient> {
    client: &'c mut C,
    statements: &'c mut HashMap<String, Statement>,
    schema: &'c str,
}

impl<C: GenericClient> Pg<'_, C> {
    /// The prepared statement for `sql`, its `?N` placeholders written `$N`.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(&placeholders(sql)).map_err(backend)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// `?1` → `$1`: the shared statements use SQLite's numbered placeholders.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) => v.to_sql(ty, out),
            // jsonb's binary form: a version byte, then the text.
            Arg::Text(v) if *ty == Type::JSONB => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            Arg::Text(v) if *ty == Type::JSON => {
                out.extend_from_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::Bool(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn value(row: &postgres::Row, i: usize) -> Result<Value> {
    let ty = row.columns()[i].type_();
    let got = match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(Value::Bool)),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => row
            .try_get::<_, Option<String>>(i)
            .map(|v| v.map(Value::Text)),
        _ => {
            return Err(Error::Corrupt(format!(
                "column {} has type {ty}, which the store does not read",
                row.columns()[i].name()
            )));
        }
    };
    Ok(got.map_err(backend)?.unwrap_or(Value::Null))
}

/// The advisory lock number of a record in a schema. Two records sharing a number only wait
/// for each other.
fn lock_id(schema: &str, key: &RecordKey) -> i64 {
    domain::stable_hash(&[schema, key.kind.as_str(), key.id.as_str()]) as i64
}

impl<C: GenericClient> Sql for Pg<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let statement = self.statement(sql)?;
        self.client
            .execute(&statement, &params(args))
            .map_err(backend)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let rows = self
            .client
            .query(&statement, &params(args))
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| value(r, i))
                    .collect::<Result<_>>()
                    .map(Row)
            })
            .collect()
    }

    fn lock_records(&mut self, keys: &[&RecordKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<i64> = keys.iter().map(|k| lock_id(self.schema, k)).collect();
        ids.sort_unstable();
        ids.dedup();
        // One round trip; the locks are taken in the sorted order of the subquery.
        let statement = self.statement(
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(id) FROM
                 (SELECT id FROM unnest(CAST(?1 AS BIGINT[])) AS id ORDER BY id) AS sorted) AS locked",
        )?;
        self.client
            .query(&statement, &[&ids])
            .map(drop)
            .map_err(backend)
    }

    fn try_lock_record(&mut self, key: &RecordKey) -> Result<bool> {
        let statement = self.statement("SELECT pg_try_advisory_xact_lock(?1)")?;
        let row = self
            .client
            .query_one(&statement, &[&lock_id(self.schema, key)])
            .map_err(backend)?;
        row.try_get(0).map_err(backend)
    }

    // Each of the following sends its rows as one JSON array, expanded by
    // `jsonb_to_recordset`: one round trip instead of one per row.

    fn insert_events(&mut self, rows: &[EventRow]) -> Result<Vec<Option<i64>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let json = json_rows(rows.iter().enumerate())?;
        // Numbered in input order; a (source, source id) repeated within the rows is stored
        // once, at its first occurrence.
        let inserted = self.query(
            "INSERT INTO events (id, source, source_id, type, occurred_at, received_at, body)
             SELECT t.id, t.source, t.source_id, t.type, t.occurred_at, t.received_at, t.body
             FROM jsonb_to_recordset(CAST(?1 AS jsonb)) AS t(n bigint, id text, source text,
                  source_id text, type text, occurred_at bigint, received_at bigint, body text)
             ORDER BY t.n
             ON CONFLICT (source, source_id) DO NOTHING RETURNING id, seq",
            args![&json],
        )?;
        let mut seqs: HashMap<String, i64> = HashMap::with_capacity(inserted.len());
        for mut row in inserted {
            let seq = row.int(1)?;
            seqs.insert(row.text(0)?, seq);
        }
        Ok(rows.iter().map(|r| seqs.get(&r.id).copied()).collect())
    }

    fn link_events(&mut self, links: &[(&RecordKey, i64, i64)]) -> Result<()> {
        if links.is_empty() {
            return Ok(());
        }
        let json = json_rows(links.iter().map(|(k, at, seq)| {
            (
                *seq,
                serde_json::json!({"kind": k.kind.as_str(), "record_id": k.id.as_str(), "occurred_at": at}),
            )
        }))?;
        self.execute(
            "INSERT INTO event_records (kind, record_id, occurred_at, seq)
             SELECT t.kind, t.record_id, t.occurred_at, t.n
             FROM jsonb_to_recordset(CAST(?1 AS jsonb))
                  AS t(n bigint, kind text, record_id text, occurred_at bigint)",
            args![&json],
        )
        .map(drop)
    }

    fn load_records(&mut self, keys: &[&RecordKey]) -> Result<Vec<Option<Row>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let json = json_rows(keys.iter().enumerate().map(|(n, k)| {
            (
                n,
                serde_json::json!({"kind": k.kind.as_str(), "id": k.id.as_str()}),
            )
        }))?;
        let rows = self.query(
            "SELECT t.n, r.state, r.last_occurred_at, r.memory, r.armed_version
             FROM jsonb_to_recordset(CAST(?1 AS jsonb)) AS t(n bigint, kind text, id text)
             JOIN records r ON r.kind = t.kind AND r.id = t.id",
            args![&json],
        )?;
        let mut out = vec![None; keys.len()];
        for mut row in rows {
            let n = usize::try_from(row.int(0)?).map_err(|e| Error::Corrupt(e.to_string()))?;
            row.0.remove(0);
            if let Some(slot) = out.get_mut(n) {
                *slot = Some(row);
            }
        }
        Ok(out)
    }

    fn save_records(&mut self, rows: &[RecordRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = json_rows(rows.iter().enumerate())?;
        self.execute(
            "INSERT INTO records (kind, id, stage, owner, last_occurred_at, updated_at, state,
                                  memory, armed_version)
             SELECT t.kind, t.id, t.stage, t.owner, t.last_occurred_at, t.updated_at, t.state,
                    t.memory, t.armed_version
             FROM jsonb_to_recordset(CAST(?1 AS jsonb)) AS t(n bigint, kind text, id text,
                  stage text, owner text, last_occurred_at bigint, updated_at bigint, state text,
                  memory text, armed_version text)
             ORDER BY t.n
             ON CONFLICT (kind, id) DO UPDATE SET stage = excluded.stage, owner = excluded.owner,
               last_occurred_at = excluded.last_occurred_at, updated_at = excluded.updated_at,
               state = excluded.state, memory = excluded.memory,
               armed_version = excluded.armed_version",
            args![&json],
        )
        .map(drop)
    }

    fn set_timers(&mut self, changes: &[TimerChange]) -> Result<()> {
        let (mut sets, mut cancels) = (Vec::new(), Vec::new());
        for (n, change) in changes.iter().enumerate() {
            match change {
                TimerChange::Set(t) => sets.push((
                    n,
                    serde_json::json!({"rule": t.rule, "kind": t.record.kind.as_str(),
                        "id": t.record.id.as_str(), "due": t.due.as_millis(),
                        "anchor": t.anchor.as_millis()}),
                )),
                TimerChange::Cancel { rule, record } => cancels.push((
                    n,
                    serde_json::json!({"rule": rule, "kind": record.kind.as_str(),
                        "id": record.id.as_str()}),
                )),
            }
        }
        if !sets.is_empty() {
            self.execute(
                "INSERT INTO timers (rule, record_kind, record_id, due, anchor)
                 SELECT t.rule, t.kind, t.id, t.due, t.anchor
                 FROM jsonb_to_recordset(CAST(?1 AS jsonb)) AS t(n bigint, rule text, kind text,
                      id text, due bigint, anchor bigint)
                 ORDER BY t.n
                 ON CONFLICT (rule, record_kind, record_id)
                 DO UPDATE SET due = excluded.due, anchor = excluded.anchor",
                args![&json_rows(sets.into_iter())?],
            )?;
        }
        if !cancels.is_empty() {
            self.execute(
                "DELETE FROM timers USING jsonb_to_recordset(CAST(?1 AS jsonb))
                     AS t(n bigint, rule text, kind text, id text)
                 WHERE timers.rule = t.rule AND timers.record_kind = t.kind
                   AND timers.record_id = t.id",
                args![&json_rows(cancels.into_iter())?],
            )?;
        }
        Ok(())
    }
}

/// A JSON array of the rows' objects, each with its number `n` added.
fn json_rows<N: Into<serde_json::Value>, T: serde::Serialize>(
    rows: impl Iterator<Item = (N, T)>,
) -> Result<String> {
    let rows = rows
        .map(|(n, row)| {
            let mut value = serde_json::to_value(row).map_err(|e| Error::Invalid(e.to_string()))?;
            if let Some(object) = value.as_object_mut() {
                object.insert("n".into(), n.into());
            }
            Ok(value)
        })
        .collect::<Result<Vec<_>>>()?;
    crate::sql::encode(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_of_outages_are_told_apart_from_other_errors() {
        for (code, outage) in [
            ("53100", Some(Outage::DiskFull)),
            ("08006", Some(Outage::Unreachable)),
            ("08001", Some(Outage::Unreachable)),
            ("57P01", Some(Outage::Unreachable)),
            ("57P03", Some(Outage::Unreachable)),
            ("53300", Some(Outage::Unreachable)),
            ("23505", None),
            ("40001", None),
            ("42P01", None),
        ] {
            assert_eq!(outage_of_sqlstate(code), outage, "{code}");
        }
    }

    #[test]
    fn placeholders_become_dollars_and_question_marks_alone_stay() {
        assert_eq!(
            placeholders("SELECT ?1, ?12 FROM t WHERE a = '?' AND b = ?2"),
            "SELECT $1, $12 FROM t WHERE a = '?' AND b = $2"
        );
    }

    #[test]
    fn lock_ids_differ_by_schema_kind_and_id() {
        let key = |k, id: &str| RecordKey::new(k, domain::RecordId::parse(id.to_owned()).unwrap());
        let a = lock_id("public", &key(domain::RecordKind::Deal, "D-1"));
        assert_eq!(a, lock_id("public", &key(domain::RecordKind::Deal, "D-1")));
        assert_ne!(a, lock_id("public", &key(domain::RecordKind::Lead, "D-1")));
        assert_ne!(a, lock_id("public", &key(domain::RecordKind::Deal, "D-2")));
        assert_ne!(a, lock_id("other", &key(domain::RecordKind::Deal, "D-1")));
    }
}
