//! Real peers for tests and benchmarks: an SMTP server (aiosmtpd, started as a process), an
//! HTTP receiver (axum, in process) and a schema of its own on a PostgreSQL server. None is a
//! mock of pipewright's clients: each speaks its protocol to whatever connects. Real faults:
//! a small disk to fill and a TCP link to cut ([`faults`]). And a seeded sales history with
//! known patterns planted in it ([`history`]).

pub mod faults;
pub mod history;
pub mod postgres;
pub mod rules;

pub use faults::{Proxy, Tmpfs};

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Whether a test that needs `what` must run: always under `CI=true`; otherwise it is skipped
/// with a note when the part is missing.
fn required(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required under CI=true (.ci/run installs it)");
    }
    eprintln!("skipped: {what} is not available on this machine");
    false
}

/// A free local port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

const PYTHON: &str = "/usr/bin/python3";

/// aiosmtpd (Debian's python3-aiosmtpd) listening on a local port; every accepted message is
/// appended as a JSON line to a file.
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    child: Child,
    out: PathBuf,
    _dir: DirGuard,
}

#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl SmtpServer {
    /// Starts the server, or `None` (the test skips) when aiosmtpd is missing outside CI.
    pub fn start() -> Option<Self> {
        Self::launch(None)
    }

    /// Like [`SmtpServer::start`], requiring clients to log in with `user` and `password`.
    pub fn start_with_login(user: &str, password: &str) -> Option<Self> {
        Self::launch(Some(format!("{user}:{password}")))
    }

    fn launch(credentials: Option<String>) -> Option<Self> {
        let available = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !required(
            "an SMTP server (Debian package python3-aiosmtpd)",
            available,
        ) {
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("pw-smtp-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, include_str!("smtp_server.py")).expect("the server script");
        let out = dir.join("messages.jsonl");
        std::fs::write(&out, "").expect("the message file");
        let port = free_port();
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .arg(port.to_string())
            .arg(&out)
            .args(credentials)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        // Wait for READY.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("the SMTP server says it is ready");
        assert!(line.starts_with("READY"), "SMTP server: {line}");
        Some(Self {
            port,
            child,
            out,
            _dir: DirGuard(dir),
        })
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    /// Requests seen per (path, idempotency key).
    tries: HashMap<(String, String), u32>,
    /// Whether `/switch/…` is down.
    down: bool,
}

/// An HTTP receiver on a local port. What it answers depends on the path:
/// `/ok/…` 200; `/flaky/…` 503 for the first two tries of each idempotency key, then 200;
/// `/slow/…` waits 2 s on the first try of each key, then 200; `/gone/…` 410; `/down/…` 500;
/// `/switch/…` 500 while [`Receiver::set_down`] says so, else 200.
/// Every request is recorded, whatever the answer.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let key = headers.get("idempotency-key").cloned().unwrap_or_default();
    let kind = path.split('/').next().unwrap_or_default().to_owned();
    let (tries, down) = {
        let mut inner = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let down = inner.down;
        inner.received.push(Received {
            path: format!("/{path}"),
            headers,
            body: body.to_vec(),
            at: std::time::Instant::now(),
        });
        let n = inner.tries.entry((kind.clone(), key)).or_default();
        *n += 1;
        (*n, down)
    };
    match kind.as_str() {
        "flaky" if tries <= 2 => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        "slow" if tries == 1 => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            (StatusCode::OK, "late")
        }
        "gone" => (StatusCode::GONE, "no such hook"),
        "down" => (StatusCode::INTERNAL_SERVER_ERROR, "down"),
        "switch" if down => (StatusCode::INTERNAL_SERVER_ERROR, "down"),
        _ => (StatusCode::OK, "ok"),
    }
}

impl Receiver {
    /// Starts on a free port, on the current tokio runtime.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let port = listener.local_addr().expect("bound").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Takes `/switch/…` down (500) or brings it back (200).
    pub fn set_down(&self, down: bool) {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .down = down;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .received
            .clone()
    }
}
