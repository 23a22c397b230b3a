//! pipewright's HTTP server: the `/api/v1` ingest and record API, health and readiness,
//! Prometheus metrics and the OpenAPI document.
//!
//! This is the only crate that knows about HTTP. It translates requests into calls on the
//! [`store::Store`] trait and never touches SQL; it parses bodies only through the `wire`
//! crate, so the API and the CLI import accept exactly the same events.

pub mod alarms;
mod api;
mod auth;
mod error;
pub mod exceptions;
pub mod health;
pub mod heroics;
pub mod monitor;
mod outbox;
pub mod risk;
pub mod rules;
mod sequences;
mod settings;
pub mod storms;
pub mod trees;
pub mod web;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use utoipa::OpenApi;

use clock::Clock;
use store::{Store, TokenRole};

pub use auth::{GeneratedToken, generate_token, hash_token};
pub use error::AppError;
pub use rules::PlaybookStatus;
pub use settings::{
    DEFAULT_CONFIG, DatabaseSettings, EngineSettings, LogFormat, LogSettings, ServerSettings,
    Settings,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database")]
    Store(#[from] store::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server stopped with an error")]
    Serve(#[source] std::io::Error),
    #[error("delivery settings: {0}")]
    Delivery(String),
}

/// This process's name in leases: host, process id and a random part.
fn node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".into());
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{}-{random}", std::process::id())
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub playbooks: rules::SharedStatus,
    /// This node's name: it leases effects and publishes playbooks under it.
    pub node: String,
    /// Delivers the outbox (absent in tools that only read it).
    pub dispatcher: Option<Arc<delivery::Dispatcher>>,
    /// This node's background loops and whether they run.
    pub health: Arc<health::Health>,
    /// Failed sign-ins by email, for the web UI's throttle.
    pub sign_ins: web::auth::Throttle,
    /// The storm guard's limits.
    pub guard: storms::GuardSettings,
    /// What this node's configuration delivers to, which its playbook folder is checked against.
    targets: playbook::Targets,
    max_body_bytes: usize,
    metrics_public: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "pipewright", description = "Self-hosted revenue autopilot: events in, derived state out."),
    paths(api::ingest, api::get_record, api::list_records, api::playbooks, api::explain, playbook_schema,
          outbox::list, outbox::get, outbox::retry, outbox::cancel, outbox::tasks, outbox::done,
          sequences::list, sequences::control, sequences::pause_or_resume,
          sequences::pauses, sequences::results, sequences::suppressions, sequences::suppress,
          sequences::unsuppress, exceptions::list, exceptions::get, exceptions::act,
          storms::list, storms::get, storms::decide, rules::switch_route, storms::preview_files, alarms::list, alarms::act,
          trees::list, trees::walk, trees::handbook, heroics::get_report, heroics::get_assets, heroics::get_suggestions, risk::get_deals, risk::get_model, risk::get_evaluation, health, ready, openapi_json),
    components(schemas(api::EventEnvelope, api::IngestResult, api::BatchResult, api::RecordView,
                        api::RecordWithTimeline, api::RecordPage, api::Collection)),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token from `pipewright token create`"))
                    .build(),
            ),
        );
        // The list of event types comes from the domain, so the document cannot drift from it.
        let types: Vec<&str> = domain::EventType::ALL.iter().map(|t| t.as_str()).collect();
        if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(envelope))) =
            components.schemas.get_mut("EventEnvelope")
            && let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(ty))) =
                envelope.properties.get_mut("type")
        {
            ty.enum_values = Some(types.into_iter().map(Into::into).collect());
        }
    }
}

/// The OpenAPI 3.1 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// How long readiness waits for the store's writer to take a request.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What keeps this node from being ready, in words; nothing when it is: the database answers
/// reads, the store's writer takes requests and can write (the disk has room, the database can
/// be reached: [`Store::ping_writer`]), and the loops readiness needs (the timer loop, the
/// dispatcher) are running.
pub async fn not_ready(state: &AppState) -> Vec<String> {
    let mut down = Vec::new();
    match state.store.ping().await {
        Ok(()) => {}
        Err(store::Error::Unavailable { outage, .. }) => down.push(outage.to_string()),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness: the database does not answer reads");
            down.push("the database does not answer reads".to_owned());
        }
    }
    match tokio::time::timeout(WRITER_WAIT, state.store.ping_writer()).await {
        Ok(Ok(())) => {}
        Ok(Err(store::Error::Closed)) => down.push("the store's writer has stopped".to_owned()),
        // Logged by the store once, as the outage begins.
        Ok(Err(store::Error::Unavailable { outage, .. })) => {
            let words = outage.to_string();
            if !down.contains(&words) {
                down.push(words);
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "readiness: the store's writer cannot write");
            down.push("the store's writer cannot write".to_owned());
        }
        Err(_) => down.push(format!(
            "the store's writer has not answered within {} seconds",
            WRITER_WAIT.as_secs()
        )),
    }
    for name in state.health.down() {
        down.push(format!("{} is not running", health::loop_in_words(&name)));
    }
    down
}

/// Readiness: the database answers, its writer takes requests and can write, and the timer
/// loop and the dispatcher run. A 503 names what is down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200), (status = 503, description = "not_ready, naming what is down")))]
async fn ready(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let down = not_ready(&state).await;
    if !down.is_empty() {
        return Err(AppError::NotReady(down.join("; ")));
    }
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// The JSON Schema of playbook files.
#[utoipa::path(get, path = "/api/v1/playbooks/schema", tag = "playbooks", responses((status = 200)))]
async fn playbook_schema() -> Json<serde_json::Value> {
    Json(playbook::json_schema())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (e.g. by an embedding program);
        // metrics then go there instead.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

async fn metrics_text(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if !state.metrics_public {
        let mut parts = axum::http::Request::new(()).into_parts().0;
        parts.headers = headers;
        let caller =
            <auth::Caller as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                &mut parts, &state,
            )
            .await?;
        caller.require(TokenRole::Reader)?;
    }
    // The outbox backlog, read at scrape time.
    if let Ok(backlog) = state.store.backlog().await {
        for status in outbox::STATUSES {
            let n = backlog
                .by_status
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("pipewright_outbox_effects", "status" => *status).set(n as f64);
        }
        let late = backlog.oldest_pending_due.map_or(0.0, |due| {
            (state.clock.now().as_millis() - due.as_millis()).max(0) as f64 / 1000.0
        });
        metrics::gauge!("pipewright_outbox_oldest_pending_seconds").set(late);
        // The exceptions inbox: what waits on people.
        for status in ["open", "acknowledged", "resolved"] {
            let n = backlog
                .exceptions
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("pipewright_exceptions", "status" => status).set(n as f64);
        }
        metrics::gauge!("pipewright_exceptions_overdue").set(backlog.exceptions_overdue as f64);
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response())
}

async fn not_found() -> AppError {
    AppError::NotFound("route".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// A handler that panics answers 500 in the usual JSON shape; the server keeps serving.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    AppError::Internal("a request handler panicked".into()).into_response()
}

/// Records each request's latency by route and status.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("pipewright_http_request_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/events", post(api::ingest))
        .route("/api/v1/playbooks", get(api::playbooks))
        .route("/api/v1/playbooks/schema", get(playbook_schema))
        .route("/api/v1/playbooks/preview", post(storms::preview_files))
        .route("/api/v1/rules/{action}", post(rules::switch_route))
        .route("/api/v1/storms", get(storms::list))
        .route("/api/v1/storms/{id}", get(storms::get))
        .route("/api/v1/storms/{id}/{action}", post(storms::decide))
        .route("/api/v1/outbox", get(outbox::list))
        .route("/api/v1/outbox/{key}", get(outbox::get))
        .route("/api/v1/outbox/{key}/retry", post(outbox::retry))
        .route("/api/v1/outbox/{key}/cancel", post(outbox::cancel))
        .route("/api/v1/tasks", get(outbox::tasks))
        .route("/api/v1/tasks/{id}/done", post(outbox::done))
        .route("/api/v1/trees", get(trees::list))
        .route("/api/v1/deals/{id}/trees/{tree}", post(trees::walk))
        .route("/api/v1/handbook", get(trees::handbook))
        .route("/api/v1/alarms", get(alarms::list))
        .route("/api/v1/alarms/{id}/{action}", post(alarms::act))
        .route("/api/v1/exceptions", get(exceptions::list))
        .route("/api/v1/exceptions/{id}", get(exceptions::get))
        .route("/api/v1/exceptions/{id}/{action}", post(exceptions::act))
        .route("/api/v1/enrolments", get(sequences::list))
        .route("/api/v1/enrolments/{id}/{action}", post(sequences::control))
        .route(
            "/api/v1/sequences/{action}",
            post(sequences::pause_or_resume),
        )
        .route("/api/v1/sequences/pauses", get(sequences::pauses))
        .route("/api/v1/reports/heroics", get(heroics::get_report))
        .route("/api/v1/reports/assets", get(heroics::get_assets))
        .route("/api/v1/suggestions", get(heroics::get_suggestions))
        .route("/api/v1/risk/deals", get(risk::get_deals))
        .route("/api/v1/risk/model", get(risk::get_model))
        .route("/api/v1/risk/evaluation", get(risk::get_evaluation))
        .route("/api/v1/sequences/{name}/results", get(sequences::results))
        .route(
            "/api/v1/suppressions",
            get(sequences::suppressions).post(sequences::suppress),
        )
        .route(
            "/api/v1/suppressions/{address}",
            delete(sequences::unsuppress),
        )
        .route(
            "/unsubscribe/{token}",
            get(sequences::confirm).post(sequences::unsubscribe),
        )
        .route("/api/v1/{collection}", get(api::list_records))
        .route("/api/v1/{collection}/{id}", get(api::get_record))
        .route("/api/v1/{collection}/{id}/explain", get(api::explain))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .merge(web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn(observe))
        // Bodies are read with our own limit so the refusal is a JSON error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// A built server, bound to its port and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    port: u16,
    state: AppState,
    engine: EngineSettings,
    delivery_poll_ms: u64,
}

impl Application {
    /// Opens the database and binds the listener (port 0 picks a free port, for tests).
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let store = store::connect(
            &settings.database.url,
            &settings.database.connect_options(),
            Arc::clone(&clock),
        )?;
        Self::with_store(settings, store, clock).await
    }

    /// Like [`Application::build`], over a store the caller opened.
    pub async fn with_store(
        settings: &Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        prometheus();
        let addr = settings.server.listen.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| Error::Listen { addr, source })?;
        let port = listener.local_addr().map_err(Error::Serve)?.port();
        let node = node_name();
        let playbooks = rules::SharedStatus::default();
        let dispatcher = delivery::Dispatcher::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            settings.delivery.clone(),
            node.clone(),
        )
        .map_err(Error::Delivery)?;
        // The loops this node will run, registered before they start: until the timer loop
        // and the dispatcher run, the node is not ready.
        let health = Arc::new(health::Health::new(Arc::clone(&clock)));
        health.expect("timers", true);
        health.expect("delivery", true);
        for (name, on) in [
            ("reload", settings.engine.reload_poll_ms > 0),
            ("risk", settings.engine.risk_refit_ms > 0),
            ("monitor", settings.engine.monitor_ms > 0),
        ] {
            if on {
                health.expect(name, false);
            }
        }
        let state = AppState {
            store,
            clock,
            playbooks,
            node,
            dispatcher: Some(Arc::new(dispatcher)),
            health,
            sign_ins: web::auth::Throttle::default(),
            guard: storms::GuardSettings::of(&settings.engine),
            targets: settings.playbook_targets(),
            max_body_bytes: settings.server.max_body_bytes,
            metrics_public: settings.server.metrics_public,
        };
        state.loader(&settings.engine.playbooks).start().await;
        if let Err(e) = risk::adopt(&*state.store).await {
            tracing::warn!(error = ?e, "cannot read the published risk model");
        }
        Ok(Self {
            listener,
            router: router(state.clone()),
            port,
            state,
            engine: settings.engine.clone(),
            delivery_poll_ms: settings.delivery.poll_ms,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests, stops the
    /// background loops and the store's writer (once it has answered what it was asked).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        tracing::info!(port = self.port, "pipewright is listening");
        let loops = self.state.start_loops(&self.engine, self.delivery_poll_ms);
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(Error::Serve);
        for task in loops {
            task.abort();
        }
        if let Err(e) = self.state.store.close().await {
            tracing::warn!(error = ?e, "the store's writer did not stop cleanly");
        }
        served
    }
}

impl AppState {
    /// Starts the background loops, each under a supervisor that restarts it when it ends or
    /// panics: due timers, delivery, and where configured risk learning, the playbook reload
    /// and the monitor. Aborting the tasks stops them.
    fn start_loops(
        &self,
        engine: &EngineSettings,
        delivery_poll_ms: u64,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        use std::time::Duration;
        let backoff = health::Backoff::default();
        let health = &self.health;
        let mut loops = Vec::new();
        let (store, clock) = (Arc::clone(&self.store), Arc::clone(&self.clock));
        let every = Duration::from_millis(engine.timer_poll_ms.max(10));
        loops.push(health::supervise(
            Arc::clone(health),
            "timers",
            backoff,
            move || rules::fire_timers(Arc::clone(&store), Arc::clone(&clock), every),
        ));
        if let Some(dispatcher) = self.dispatcher.clone() {
            let every = Duration::from_millis(delivery_poll_ms.max(10));
            loops.push(health::supervise(
                Arc::clone(health),
                "delivery",
                backoff,
                move || Arc::clone(&dispatcher).run(every),
            ));
        }
        if engine.risk_refit_ms > 0 {
            let (store, clock, node) = (
                Arc::clone(&self.store),
                Arc::clone(&self.clock),
                self.node.clone(),
            );
            let refit = Duration::from_millis(engine.risk_refit_ms);
            let poll = Duration::from_millis(engine.reload_poll_ms.max(1000));
            loops.push(health::supervise(
                Arc::clone(health),
                "risk",
                backoff,
                move || {
                    risk::keep_learned(
                        Arc::clone(&store),
                        Arc::clone(&clock),
                        node.clone(),
                        refit,
                        poll,
                    )
                },
            ));
        }
        if engine.reload_poll_ms > 0 {
            let loader = self.loader(&engine.playbooks);
            let every = Duration::from_millis(engine.reload_poll_ms);
            loops.push(health::supervise(
                Arc::clone(health),
                "reload",
                backoff,
                move || loader.clone().watch(every),
            ));
        }
        if engine.monitor_ms > 0 {
            let monitor = Arc::new(monitor::Monitor::new(self, monitor::Thresholds::default()));
            let clock = Arc::clone(&self.clock);
            let every = Duration::from_millis(engine.monitor_ms);
            loops.push(health::supervise(
                Arc::clone(health),
                "monitor",
                backoff,
                move || Arc::clone(&monitor).run(Arc::clone(&clock), every),
            ));
        }
        loops
    }

    /// Loads the playbooks in `dir` now and publishes them for every node (the server also
    /// does this when their files change). A broken folder keeps the running playbooks and
    /// reports its problems.
    pub async fn reload_playbooks(&self, dir: &std::path::Path) {
        self.loader(dir).reload().await;
    }

    fn loader(&self, dir: &std::path::Path) -> rules::Playbooks {
        rules::Playbooks {
            dir: dir.to_owned(),
            store: Arc::clone(&self.store),
            status: Arc::clone(&self.playbooks),
            clock: Arc::clone(&self.clock),
            node: self.node.clone(),
            guard: self.guard,
            targets: self.targets.clone(),
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
