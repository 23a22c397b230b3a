//! A PostgreSQL schema of its own for each test, dropped when the test ends.

use postgres::{Client, NoTls};

/// The server tests use: `PIPEWRIGHT_TEST_POSTGRES`, or the local one (trust authentication).
pub fn server_url() -> String {
    std::env::var("PIPEWRIGHT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty schema on the test server; pipewright sees only it (through the URL's
/// `search_path`). Dropped with everything in it when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    schema: String,
}

/// Runs `f` on a thread of its own: the synchronous client cannot run inside an async runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("postgres helper thread"))
}

/// Whether a PostgreSQL server answers at [`server_url`] (asked once per test process). A test
/// without one skips, with a note — except under `CI=true`, where it fails.
pub fn available() -> bool {
    static ANSWERS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let up = *ANSWERS.get_or_init(|| off_runtime(|| Client::connect(&server_url(), NoTls).is_ok()));
    super::required(&format!("PostgreSQL at {}", server_url()), up)
}

impl TestDatabase {
    /// A new schema, or `None` (the test skips) when no server answers and `CI` is not `true`.
    pub fn create() -> Option<Self> {
        let server = server_url();
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        let schema = format!("pw_test_{:016x}", u64::from_le_bytes(bytes));
        let created = off_runtime(|| {
            let mut client = Client::connect(&server, NoTls)?;
            client.batch_execute(&format!("CREATE SCHEMA {schema}"))
        });
        match created {
            Ok(()) => Some(Self { server, schema }),
            Err(e) => {
                // Panics under CI=true; otherwise notes the skip.
                super::required(&format!("PostgreSQL at {server} ({e})"), false);
                None
            }
        }
    }

    /// The URL pipewright connects with: the server, with this schema first on the search path.
    /// Sessions on it carry the schema's name as their application name.
    pub fn url(&self) -> String {
        let sep = if self.server.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-csearch_path%3D{schema}&application_name={schema}",
            self.server,
            schema = self.schema
        )
    }

    /// Ends every server session opened through [`TestDatabase::url`], as a database restart
    /// or a failover would, and waits until they have ended; returns how many there were.
    pub fn terminate_sessions(&self) -> i64 {
        let (server, schema) = (&self.server, &self.schema);
        off_runtime(|| {
            let mut client = Client::connect(server, NoTls).expect("connect");
            client
                .query_one(
                    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
                     WHERE application_name = $1",
                    &[schema],
                )
                .expect("terminate")
                .get(0)
        })
    }

    /// The server's address (host and port of [`server_url`]), for a [`crate::Proxy`] in front
    /// of it.
    pub fn address(&self) -> std::net::SocketAddr {
        let (start, end) = authority(&self.server);
        let host_port = &self.server[start..end];
        std::net::ToSocketAddrs::to_socket_addrs(host_port)
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("the test server's address {host_port:?}"))
    }

    /// [`TestDatabase::url`], through `addr` (a proxy) instead of the server's address.
    pub fn url_through(&self, addr: std::net::SocketAddr) -> String {
        let url = self.url();
        let (start, end) = authority(&url);
        format!("{}{addr}{}", &url[..start], &url[end..])
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs a statement on the schema (for tests that look behind the store).
    pub fn query_i64(&self, sql: &str) -> i64 {
        let url = self.url();
        off_runtime(|| {
            let mut client = Client::connect(&url, NoTls).expect("connect");
            client.query_one(sql, &[]).expect("query").get(0)
        })
    }
}

/// Where the host and port of a `postgres://user@host:port/database` URL are.
fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (start, end)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, schema) = (&self.server, &self.schema);
        let dropped = off_runtime(|| {
            let mut client = Client::connect(server, NoTls)?;
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop test schema {schema}: {e}");
        }
    }
}
