//! The HTTP API, exercised over real HTTP against a server on a free port with its own database.

mod api;
mod assets;
mod exceptions;
mod gates;
mod health;
mod heroics;
mod loading;
mod monitor;
mod outbox;
mod reloads;
mod replay;
mod risk;
mod routing;
mod rules;
mod sequences;
mod storms;
mod trees;
mod web;

use std::sync::Arc;

use clock::ManualClock;
use server::{Application, Settings};
use store::{Store, TokenRole};

#[allow(missing_debug_implementations)]
pub struct TestApp {
    pub base: String,
    state: server::AppState,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    pub admin: String,
    pub writer: String,
    pub reader: String,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.database.url = format!("sqlite:{}", dir.path().join("pw.db").display());
    configure(&mut settings);
    let clock = ManualClock::new("2026-11-20T12:00:00Z".parse().unwrap());
    let app = Application::build(&settings, Arc::new(clock.clone()))
        .await
        .unwrap();
    let store = Arc::clone(&app.state().store);
    let state = app.state().clone();
    let mut secrets = Vec::new();
    for role in [TokenRole::Admin, TokenRole::Writer, TokenRole::Reader] {
        let t = server::generate_token(role.as_str(), role).unwrap();
        store.create_token(t.stored).await.unwrap();
        secrets.push(t.secret);
    }
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let [admin, writer, reader] = <[String; 3]>::try_from(secrets).unwrap();
    TestApp {
        state,
        base,
        http: delivery::http_client(std::time::Duration::from_secs(60)),
        store,
        clock,
        admin,
        writer,
        reader,
        _dir: dir,
    }
}

/// A server running the playbooks in `dir`, reloading them only when told, firing timers every
/// `timer_poll_ms` (a large value: the test fires them itself) and leaving delivery to the
/// test (`server_state().dispatcher`).
pub async fn spawn_with_playbooks(dir: &std::path::Path, timer_poll_ms: u64) -> TestApp {
    spawn_with_playbooks_on(dir, timer_poll_ms, |_| {}).await
}

/// [`spawn_with_playbooks`], with more settings (another database, dry run).
pub async fn spawn_with_playbooks_on(
    dir: &std::path::Path,
    timer_poll_ms: u64,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let dir = dir.to_owned();
    spawn_app_with(move |s| {
        s.engine.playbooks = dir;
        s.engine.timer_poll_ms = timer_poll_ms;
        s.engine.reload_poll_ms = 0;
        s.delivery.poll_ms = 3_600_000;
        configure(s);
    })
    .await
}

impl TestApp {
    pub fn server_state(&self) -> &server::AppState {
        &self.state
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(
        &self,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(self.url("/api/v1/events"))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POSTs events (JSON objects) as one batch with the writer token; the batch must be taken.
    pub async fn send(&self, events: &[String]) {
        let body = format!("[{}]", events.join(","));
        let (status, answer) = self.post(&self.writer, "application/json", body).await;
        assert_eq!(status, 200, "{answer}");
    }

    /// GET a route that needs no token, as JSON.
    pub async fn get_open(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// Copies the example playbooks (`playbooks/`) into `to`.
pub fn copy_examples(to: &std::path::Path) {
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// An event as a client would send it.
pub fn event(ty: &str, id: &str, at: &str, refs: &str, data: &str) -> String {
    format!(
        r#"{{"type":"{ty}","source":"crm","source_id":"{id}","occurred_at":"{at}",{refs},"data":{data}}}"#
    )
}
