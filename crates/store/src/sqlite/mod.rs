//! The embedded SQLite adapter.
//!
//! The shared writer ([`crate::sql::writer`]) owns the only writing connection and commits in
//! groups, each in one `BEGIN IMMEDIATE` transaction. SQLite has one writer, so records need
//! no locks. Reads go through a small pool of read-only connections; WAL mode lets them run
//! beside the writer, and a checkpointer thread copies the WAL into the database file.

mod migrate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use clock::Clock;
use domain::RecordKey;

use crate::sql::{Arg, Backend, Dialect, Row, Sql, Value, backend};
use crate::{Error, Outage, Result, SqlStore};

/// SQLite's `synchronous` setting: what "committed" survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// Every commit is fsynced before it is acknowledged: survives a process crash, an OS crash
    /// and power loss.
    #[default]
    Full,
    /// The WAL is fsynced at checkpoints only: survives a process crash (kill -9) but may lose
    /// the last acknowledged commits on an OS crash or power loss.
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// The most events one group commit takes before committing.
    pub max_group_events: usize,
    pub read_connections: usize,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_group_events: 10_000,
            read_connections: 4,
        }
    }
}

fn open(path: &Path, synchronous: Synchronous, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
    }
    for (pragma, value) in [
        ("synchronous", sync),
        // 64 MiB of page cache per connection (negative values are KiB).
        ("cache_size", "-65536"),
        // Read database pages through a memory map instead of copying them with read(2).
        ("mmap_size", "1073741824"),
        ("temp_store", "MEMORY"),
    ] {
        conn.pragma_update(None, pragma, value).map_err(backend)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Free space under which the disk holding the database counts as full: 1 MiB, room for a
/// few commits of a busy node. Readiness says the disk is full below it, before writes fail.
const ROOM: u64 = 1 << 20;

/// The bytes free to this process on the filesystem holding `path`, if it can be asked.
fn free_bytes(path: &Path) -> Option<u64> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// [`Error::Unavailable`] when the disk holding `path` has less than [`ROOM`] free.
fn room(path: &Path) -> Result<()> {
    match free_bytes(path) {
        Some(free) if free < ROOM => Err(Error::Unavailable {
            outage: Outage::DiskFull,
            source: format!(
                "{free} bytes are free on the disk holding {}, less than the {ROOM} a write may need",
                path.display()
            )
            .into(),
        }),
        _ => Ok(()),
    }
}

/// Whether a SQLite error is part of an outage: `SQLITE_FULL` is a full disk (SQLite returns it
/// when it cannot grow the database file or the WAL).
pub(crate) fn outage(error: &(dyn std::error::Error + 'static)) -> Option<Outage> {
    let code = error
        .downcast_ref::<rusqlite::Error>()?
        .sqlite_error_code()?;
    (code == rusqlite::ErrorCode::DiskFull).then_some(Outage::DiskFull)
}

/// An I/O error, or a file SQLite cannot open, while the disk holding `path` is full is the full
/// disk (growing the WAL index or a checkpoint fails that way rather than with `SQLITE_FULL`).
fn full_disk_or(error: Error, path: Option<&Path>) -> Error {
    let Error::Backend(source) = error else {
        return error;
    };
    let io = matches!(
        source
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code),
        Some(rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::CannotOpen)
    );
    if io && path.is_some_and(|p| room(p).is_err()) {
        Error::Unavailable {
            outage: Outage::DiskFull,
            source,
        }
    } else {
        Error::Backend(source)
    }
}

/// The SQLite backend: the database file and what its commits must survive.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    synchronous: Synchronous,
}

/// The embedded store.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Opens (creating if needed) the database at `options.path` and runs pending migrations.
    pub fn open(options: SqliteOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut conn = open(&options.path, options.synchronous, false)?;
        migrate::run(&mut conn)?;
        // The writer leaves checkpoints to a thread of their own (see `checkpoints`); it only
        // checkpoints itself, as a backstop, if the WAL passes 64 MiB.
        conn.pragma_update(None, "wal_autocheckpoint", 16_000)
            .map_err(backend)?;
        let checkpointer = open(&options.path, options.synchronous, false)?;
        let helper = checkpoints(&mut conn, checkpointer)?;
        SqlStore::start(
            Sqlite {
                path: options.path,
                synchronous: options.synchronous,
            },
            conn,
            vec![helper],
            clock,
            options.max_group_events,
            options.read_connections,
        )
    }
}

/// Applies pending migrations to the database at `path` (creating it if needed).
pub(crate) fn migrate(path: &Path) -> Result<crate::Migrations> {
    migrate::run(&mut open(path, Synchronous::Full, false)?)
}

impl Backend for Sqlite {
    type Conn = Connection;

    fn open_reader(&self) -> Result<Connection> {
        open(&self.path, self.synchronous, true).map_err(|e| full_disk_or(e, Some(&self.path)))
    }

    fn transaction<T>(
        conn: &mut Connection,
        f: impl FnOnce(&mut dyn Sql) -> Result<T>,
    ) -> Result<T> {
        let written = (|| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let value = f(&mut Lite(&tx))?;
            tx.commit().map_err(backend)?;
            Ok(value)
        })();
        written.map_err(|e| full_disk_or(e, conn.path().filter(|p| !p.is_empty()).map(Path::new)))
    }

    fn read<T>(conn: &mut Connection, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        f(&mut Lite(conn))
            .map_err(|e| full_disk_or(e, conn.path().filter(|p| !p.is_empty()).map(Path::new)))
    }

    fn data_version(conn: &mut Connection) -> Option<i64> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
    }

    fn room(&self) -> Result<()> {
        room(&self.path)
    }
}

/// A SQLite connection (or transaction) as the shared code sees it.
struct Lite<'c>(&'c Connection);

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Arg::Int(v) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(v)),
            Arg::Bool(v) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(v.into())),
            Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

impl Sql for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        self.0
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(args)))
            .map(|n| n as u64)
            .map_err(backend)
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(sql).map_err(backend)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(backend)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(backend)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Int(v as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        // Checked the fast way first: text written by the store is UTF-8.
                        Value::Text(match std::str::from_utf8(t) {
                            Ok(text) => text.to_owned(),
                            Err(_) => String::from_utf8_lossy(t).into_owned(),
                        })
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn lock_records(&mut self, _: &[&RecordKey]) -> Result<()> {
        Ok(())
    }

    fn try_lock_record(&mut self, _: &RecordKey) -> Result<bool> {
        Ok(true)
    }
}

/// WAL size (in pages) at which the checkpointer is woken: large enough that each checkpoint,
/// and its fsync, is amortised over many commits.
const CHECKPOINT_AT: i32 = 1_000;
/// WAL size at which the writer checkpoints itself, should the checkpointer fall behind.
const BACKSTOP_AT: i32 = 16_000;

/// Starts the checkpointer, a thread that copies committed WAL pages into the database file
/// while the writer goes on committing. A checkpoint in the writer's own commit path took a
/// fifth of its time; on its own thread it uses the other core. A WAL hook on the writer's
/// connection wakes it once the log holds [`CHECKPOINT_AT`] pages; it never runs on a timer.
fn checkpoints(
    writer: &mut Connection,
    checkpointer: Connection,
) -> Result<std::thread::JoinHandle<()>> {
    let (kick, kicked) = std::sync::mpsc::sync_channel::<()>(1);
    let thread = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while kicked.recv().is_ok() {
                if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; the writer's backstop will retry");
                }
            }
        })
        .map_err(backend)?;
    writer
        .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
            after_commit(
                pages,
                || {
                    wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE)
                        .map(drop)
                },
                || {
                    // A checkpoint already pending will pick this commit up too.
                    let _ = kick.try_send(());
                },
            );
            Ok(())
        }))
        .map_err(backend)?;
    Ok(thread)
}

/// What the WAL hook does after each commit, given the log's size in pages.
///
/// The hook runs inside COMMIT, after the transaction is durable: an error returned from it
/// would make SQLite report a committed transaction as failed (and the writer would tell the
/// client its events were not stored). So nothing here can fail: a backstop checkpoint that
/// cannot run — another checkpoint holds the lock — is only logged.
fn after_commit(
    pages: i32,
    checkpoint: impl FnOnce() -> rusqlite::Result<()>,
    wake_checkpointer: impl FnOnce(),
) {
    if pages >= BACKSTOP_AT {
        if let Err(e) = checkpoint() {
            tracing::debug!(error = %e, pages, "backstop checkpoint did not run");
        }
    } else if pages >= CHECKPOINT_AT {
        wake_checkpointer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backstop checkpoint that fails (SQLITE_BUSY while the checkpointer runs) once made
    /// committed ingests answer 500; the hook must swallow it.
    #[test]
    fn a_failing_backstop_checkpoint_never_fails_the_commit() {
        let mut woken = false;
        let mut tried = false;
        after_commit(
            BACKSTOP_AT,
            || {
                tried = true;
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(5),
                    None,
                ))
            },
            || woken = true,
        );
        assert!(tried && !woken);
    }

    #[test]
    fn the_checkpointer_is_woken_only_past_its_threshold() {
        let mut woken = false;
        after_commit(CHECKPOINT_AT - 1, || Ok(()), || woken = true);
        assert!(!woken);
        after_commit(CHECKPOINT_AT, || Ok(()), || woken = true);
        assert!(woken);
    }
}
