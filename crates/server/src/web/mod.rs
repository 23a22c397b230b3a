//! The web UI, rendered on the server: sign-in, the heroics dashboard, the pipeline needing
//! attention, a deal's page, a lead's page, the exceptions inbox, the playbooks and the outbox.
//! Templates are minijinja, compiled into the binary (`crates/server/templates`); nothing is
//! fetched from elsewhere at run time. Every form carries the session's CSRF token; a viewer
//! reads only.

pub mod auth;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::Serialize;

use domain::{Record, RecordId, RecordKey, RecordKind, Timestamp};
use store::{ExceptionAction, ExceptionQuery, OutboxQuery, UserRole};

use crate::AppState;
use auth::Web;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("error.html", include_str!("../../templates/error.html")),
    (
        "dashboard.html",
        include_str!("../../templates/dashboard.html"),
    ),
    (
        "pipeline.html",
        include_str!("../../templates/pipeline.html"),
    ),
    ("deal.html", include_str!("../../templates/deal.html")),
    ("lead.html", include_str!("../../templates/lead.html")),
    ("record.html", include_str!("../../templates/record.html")),
    ("inbox.html", include_str!("../../templates/inbox.html")),
    (
        "playbooks.html",
        include_str!("../../templates/playbooks.html"),
    ),
    ("outbox.html", include_str!("../../templates/outbox.html")),
    ("effect.html", include_str!("../../templates/effect.html")),
];

const CSS: &str = include_str!("../../templates/app.css");

/// A share as a percentage, `-` when there is none.
fn pct(v: Value) -> String {
    f64::try_from(v).map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

/// Amounts by currency (`[{minor, currency}]`) in words.
fn money(v: Value) -> String {
    let Ok(items) = v.try_iter() else {
        return String::new();
    };
    let parts: Vec<String> = items
        .filter_map(|m| {
            let minor = i64::try_from(m.get_attr("minor").ok()?).ok()?;
            let currency = m.get_attr("currency").ok()?.to_string();
            Some(format!("{} {currency}", thousands(minor / 100)))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env.add_function("pct", pct);
        env.add_function("money", money);
        env
    })
}

/// A page: the template with its context, as HTML with the headers every page carries.
fn page(status: StatusCode, name: &str, ctx: Value) -> Response {
    let html = env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| format!("<!doctype html><p>The page could not be rendered: {e}</p>"));
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The user and CSRF token every signed-in page shows.
fn chrome(web: &Web, here: &str) -> Value {
    context! { user => Serde(&web.session.user), csrf => &web.session.csrf, here => here }
}

fn merge(a: Value, b: Value) -> Value {
    context! { ..a, ..b }
}

fn failure(web: Option<&Web>, status: StatusCode, title: &str, message: &str) -> Response {
    let base = web.map_or_else(|| context! {}, |w| chrome(w, ""));
    page(
        status,
        "error.html",
        merge(base, context! { title => title, message => message }),
    )
}

fn forbidden(web: &Web, what: &str) -> Response {
    failure(
        Some(web),
        StatusCode::FORBIDDEN,
        "Not allowed",
        &format!(
            "{} ({}) may not {what}.",
            web.session.user.name,
            web.role().as_str()
        ),
    )
}

fn store_failed(web: &Web, e: store::Error) -> Response {
    tracing::error!(error = ?e, "a page could not read the store");
    failure(
        Some(web),
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The page could not be read from the database; the log says why.",
    )
}

/// A form's fields (`application/x-www-form-urlencoded`).
fn form(bytes: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A form field with something in it besides spaces, trimmed.
fn filled(fields: &HashMap<String, String>, name: &str) -> Option<String> {
    fields
        .get(name)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A posted form's fields, once it has carried the session's CSRF token and the person may
/// do what it asks (`needs`: the least role, and the deed in words); else the page that refuses
/// it, changing nothing.
fn posted(
    web: &Web,
    bytes: &[u8],
    needs: Option<(UserRole, &str)>,
) -> Result<HashMap<String, String>, Box<Response>> {
    let fields = form(bytes);
    match fields.get("csrf") {
        Some(t) if auth::same(t, &web.session.csrf) => {}
        _ => {
            return Err(Box::new(failure(
                Some(web),
                StatusCode::FORBIDDEN,
                "The form was refused",
                "It did not carry this session's security token (CSRF). Reload the page and try again.",
            )));
        }
    }
    match needs {
        Some((role, deed)) if !web.can(role) => Err(Box::new(forbidden(web, deed))),
        _ => Ok(fields),
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/app.css", get(css))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/", get(dashboard))
        .route("/pipeline", get(pipeline))
        .route("/deals/{id}", get(deal))
        .route("/deals/{id}/trees/{tree}", post(walk_tree))
        .route("/leads/{id}", get(lead))
        .route("/inbox", get(inbox))
        .route("/inbox/{id}/{action}", post(act))
        .route("/storms/{id}/{action}", post(decide_storm))
        .route("/alarms/{id}/{action}", post(act_on_alarm))
        .route("/playbooks", get(playbooks))
        .route("/handbook", get(handbook))
        .route("/outbox", get(outbox))
        .route("/outbox/{key}", get(effect))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// A page's query parameters; a malformed query reads as none.
fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    form(uri.query().unwrap_or_default().as_bytes())
}

// ---- signing in and out ----

/// The page to go to after signing in, from the form or its query (`next`): one of this
/// server's, else the dashboard.
fn after_sign_in(fields: &HashMap<String, String>) -> &str {
    fields
        .get("next")
        .and_then(|n| auth::local_page(n))
        .unwrap_or("/")
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let q = query(&uri);
    let next = after_sign_in(&q);
    if let Some(secret) = auth::cookie(&headers, auth::SESSION)
        && let Ok(Some(_)) = state
            .store
            .session(&crate::auth::hash_token(secret), state.clock.now())
            .await
    {
        return Redirect::to(next).into_response();
    }
    login_page(StatusCode::OK, "", None, next)
}

fn login_page(status: StatusCode, email: &str, error: Option<&str>, next: &str) -> Response {
    let Ok(token) = auth::random() else {
        return failure(
            None,
            StatusCode::INTERNAL_SERVER_ERROR,
            "No randomness",
            "The system could not make a token.",
        );
    };
    let mut r = page(
        status,
        "login.html",
        context! { token => &token, email => email, error => error, next => (next != "/").then_some(next) },
    );
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(auth::LOGIN, &token, 3600)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn login(State(state): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let fields = form(&bytes);
    let email = fields
        .get("email")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    let password = fields.get("password").cloned().unwrap_or_default();
    let next = after_sign_in(&fields).to_owned();
    let expected = auth::cookie(&headers, auth::LOGIN).unwrap_or_default();
    match fields.get("csrf") {
        Some(t) if !expected.is_empty() && auth::same(t, expected) => {}
        _ => {
            return login_page(
                StatusCode::FORBIDDEN,
                &email,
                Some("The form had expired or was not this one: sign in again."),
                &next,
            );
        }
    }
    let now = state.clock.now();
    if let Some(until) = state.sign_ins.blocked_until(&email, now) {
        let message = format!(
            "Too many failed sign-ins for this email: try again after {} (UTC).",
            when(until)
        );
        return login_page(StatusCode::TOO_MANY_REQUESTS, &email, Some(&message), &next);
    }
    let found = match state.store.user_for_sign_in(&email).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = ?e, "sign-in could not read the users");
            return login_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &email,
                Some("The database could not be read; try again."),
                &next,
            );
        }
    };
    // The hash is checked even for an unknown user, so the answer takes as long either way.
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, DUMMY_HASH.to_owned()),
    };
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        state.sign_ins.failed(&email, now);
        return login_page(
            StatusCode::UNAUTHORIZED,
            &email,
            Some("Wrong email or password."),
            &next,
        );
    };
    state.sign_ins.succeeded(&email);
    let (Ok(secret), Ok(csrf)) = (auth::random(), auth::random()) else {
        return login_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &email,
            Some("The system could not make a session."),
            &next,
        );
    };
    let expires = Timestamp::from_millis(state.clock.now().as_millis() + auth::SESSION_MS);
    if let Err(e) = state
        .store
        .create_session(&crate::auth::hash_token(&secret), &user.id, &csrf, expires)
        .await
    {
        tracing::error!(error = ?e, "cannot start a session");
        return login_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &email,
            Some("The session could not be started; try again."),
            &next,
        );
    }
    tracing::info!(user = %user.id, "signed in");
    let mut r = Redirect::to(&next).into_response();
    for c in [
        auth::set_cookie(auth::SESSION, &secret, auth::SESSION_MS / 1000),
        auth::set_cookie(auth::LOGIN, "", 0),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// An Argon2id hash of nothing anyone types, checked when the user is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ";

async fn logout(State(state): State<AppState>, web: Web, bytes: Bytes) -> Response {
    if let Err(r) = posted(&web, &bytes, None) {
        return *r;
    }
    if let Err(e) = state.store.end_session(&web.hash).await {
        return store_failed(&web, e);
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(auth::SESSION, "", 0)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ---- the heroics dashboard ----

#[derive(Serialize)]
struct Bar {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
    month: String,
    short: String,
    label: String,
    after: bool,
}

async fn dashboard(State(state): State<AppState>, web: Web, uri: axum::http::Uri) -> Response {
    let q = query(&uri);
    let split_at = q.get("split_at").filter(|s| !s.trim().is_empty()).cloned();
    let params = crate::heroics::HeroicsParams {
        split_at: split_at.clone(),
        ..Default::default()
    };
    let running = state.store.engine().map(|e| Arc::clone(e.playbooks()));
    let report =
        match crate::heroics::report(&*state.store, running, &params, state.clock.now()).await {
            Ok(r) => r,
            Err(crate::heroics::Failed::Param(p)) => {
                return failure(
                    Some(&web),
                    StatusCode::BAD_REQUEST,
                    "Check the date",
                    &format!("{}: {}", p.field, p.message),
                );
            }
            Err(crate::heroics::Failed::Store(e)) => return store_failed(&web, e),
        };
    let waiting = match state
        .store
        .exceptions(&ExceptionQuery {
            status: Some("unresolved".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
    {
        Ok(x) => x.len(),
        Err(e) => return store_failed(&web, e),
    };
    // The share of closed deals (won and lost) with a key person, month by month.
    let split_month = report
        .comparison
        .as_ref()
        .map(|c| c.at.date_utc().to_string()[..7].to_owned());
    let months = &report.months;
    let step = 36;
    let mut bars = Vec::new();
    let mut split_x = None;
    for (i, m) in months.iter().enumerate() {
        let deals = m.closed.won.deals + m.closed.lost.deals;
        let with = m.closed.won.with_key_person + m.closed.lost.with_key_person;
        let share = if deals == 0 {
            0.0
        } else {
            f64::from(with) / f64::from(deals)
        };
        let x = 40 + i as i64 * step;
        let h = (share * 140.0).round() as i64;
        let after = split_month
            .as_deref()
            .is_some_and(|s| m.month.as_str() >= s);
        if after && split_x.is_none() {
            split_x = Some(x - 4);
        }
        bars.push(Bar {
            x,
            y: 160 - h,
            w: step - 8,
            h,
            short: m.month[2..].to_owned(),
            label: format!("{:.0}% of {deals} closed deals", share * 100.0),
            month: m.month.clone(),
            after,
        });
    }
    let width = (40 + months.len() as i64 * step).max(400);
    let ctx = context! {
        summary => Serde(&report.summary),
        key_people => report.key_people.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>(),
        reasons => Serde(&report.reasons),
        coverage => Serde(&report.coverage),
        comparison => Serde(&report.comparison),
        split_at => split_at,
        waiting => waiting,
        chart => context! { bars => Serde(&bars), width => width, split_x => split_x },
    };
    page(
        StatusCode::OK,
        "dashboard.html",
        merge(chrome(&web, "dashboard"), ctx),
    )
}

// ---- the pipeline needing attention ----

fn amount_text(amount: Option<f64>, currency: Option<&str>) -> String {
    amount.map_or("-".into(), |a| {
        format!("{} {}", thousands(a.round() as i64), currency.unwrap_or(""))
    })
}

/// How far off a moment is, in words: `in 2 days`, `in 5 hours`, `now` (or `overdue`).
fn from_now(due: Timestamp, now: Timestamp) -> String {
    let ms = due.as_millis() - now.as_millis();
    let hours = ms / 3_600_000;
    match ms {
        ..=0 => "now".into(),
        _ if hours >= 48 => format!("in {} days", hours / 24),
        _ if hours >= 1 => format!("in {hours} hours"),
        _ => format!("in {} minutes", (ms / 60_000).max(1)),
    }
}

/// What stops a time trigger before it fires.
fn unless(trigger: &playbook::Trigger) -> String {
    use playbook::Trigger;
    match trigger {
        Trigger::QuietFor(_) => "unless someone on either side acts first".into(),
        Trigger::InStageFor { stage, .. } => format!("unless the deal leaves {stage}"),
        Trigger::DateField { field, .. } => format!("unless {field} moves"),
        Trigger::Untouched(_) => "unless the owner touches it first".into(),
        Trigger::Warning(k) => format!("unless the {} warning clears", k.title().to_lowercase()),
        Trigger::Schedule(_) | Trigger::Event(_) => "on its schedule".into(),
    }
}

/// The time triggers a record waits on, each in words: what starts, when, what stops it, why
/// ("quiet-after-enthusiasm starts in 2 days (2026-12-05 14:55) unless someone … acts first").
async fn next_actions(state: &AppState, key: &RecordKey) -> store::Result<Vec<String>> {
    let engine = state.store.engine();
    let now = state.clock.now();
    let timers = state.store.timers(key).await?;
    Ok(timers
        .iter()
        .map(|t| {
            let rule = engine.as_ref().and_then(|e| {
                e.playbooks()
                    .playbooks
                    .iter()
                    .flat_map(|p| &p.rules)
                    .find(|r| r.id == t.rule)
                    .map(|r| (unless(&r.trigger), r.why.clone()))
            });
            let at = format!("{} ({})", from_now(t.due, now), when(t.due));
            match rule {
                Some((unless, why)) => format!("{} starts {at} {unless}: {why}", t.rule),
                None => format!("{} starts {at}", t.rule),
            }
        })
        .collect())
}

async fn pipeline(State(state): State<AppState>, web: Web) -> Response {
    let model = crate::risk::running(&*state.store);
    let now = state.clock.now();
    // Every open deal showing a warning, those at risk marked: by value at risk.
    let query = crate::risk::RankQuery {
        all: true,
        limit: 100_000,
        ..Default::default()
    };
    let mut deals = match crate::risk::ranked(&*state.store, &model, now, &query).await {
        Ok(d) => d,
        Err(e) => return store_failed(&web, e),
    };
    deals.retain(|d| !d.warnings.is_empty());
    deals.truncate(100);
    let mut rows = Vec::new();
    for d in &deals {
        let Ok(id) = RecordId::parse(d.id.clone()) else {
            continue;
        };
        let key = RecordKey::new(RecordKind::Deal, id);
        let next = match next_actions(&state, &key).await {
            Ok(n) => n.into_iter().next(),
            Err(e) => return store_failed(&web, e),
        };
        rows.push(context! {
            id => &d.id, href => href(&key), name => &d.name, owner => &d.owner, stage => &d.stage,
            amount_text => amount_text(d.amount, d.currency.as_deref()),
            score => d.score, score_text => format!("{:.2}", d.score), at_risk => d.at_risk,
            warnings => d.warnings.iter().map(|w| context! { kind => w.warning.kind.as_str(), says => &w.warning.says }).collect::<Vec<_>>(),
            next => next,
        });
    }
    let ctx = context! { deals => rows, scoring => model.scoring().to_string() };
    page(
        StatusCode::OK,
        "pipeline.html",
        merge(chrome(&web, "pipeline"), ctx),
    )
}

// ---- a deal ----

fn event_text(e: &domain::Event) -> String {
    let data = serde_json::to_value(&e.body)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    if let Some(actor) = &e.actor {
        parts.push(match actor {
            domain::Actor::Person(p) => format!("by {}", p.as_str()),
            domain::Actor::Contact(c) => format!("by contact {}", c.as_str()),
        });
    }
    if let Some(o) = data.as_object() {
        let shown = o.iter().filter(|(_, v)| match v {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(m) => !m.is_empty(),
            serde_json::Value::Bool(b) => *b,
            _ => true,
        });
        for (k, v) in shown.take(6) {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let v: String = v.chars().take(120).collect();
            parts.push(format!("{k}: {v}"));
        }
    }
    parts.join(" · ")
}

/// The page of a record (`/deals/ID`, `/leads/ID`; the links messages to the team carry). Its
/// id is percent-encoded, so nothing in it needs HTML escaping.
fn href(key: &RecordKey) -> Option<Value> {
    delivery::render::page(key).map(Value::from_safe_string)
}

/// What a deal's and a lead's pages both show: one timeline of the record's events and of
/// everything pipewright decided for it, the time triggers it waits on, every rule's state for
/// it, and its sequence enrolments.
async fn record_parts(
    state: &AppState,
    key: &RecordKey,
    record: &Record,
    now: Timestamp,
) -> store::Result<Value> {
    let (events, effects, memory) = tokio::try_join!(
        state.store.timeline(key, 500),
        state.store.effects(Some(key), 1000),
        state.store.rule_memory(key),
    )?;
    let timers = next_actions(state, key).await?;
    let enrolments = state
        .store
        .enrolments(&store::EnrolmentQuery {
            record: Some(key.clone()),
            limit: 50,
            ..Default::default()
        })
        .await?;
    // One timeline: the record's events and everything the system decided for it.
    let mut timeline: Vec<(Timestamp, u8, Value)> = events
        .iter()
        .map(|e| (e.occurred_at, 0, context! { at => when(e.occurred_at), event => context! { type => e.event_type().as_str(), text => event_text(e) } }))
        .collect();
    for e in &effects {
        let trace = &e.trace;
        let saw = trace
            .get("saw")
            .filter(|s| s.as_object().is_some_and(|o| !o.is_empty()));
        timeline.push((
            e.created_at,
            1,
            context! { at => when(e.created_at), effect => context! {
                key => &e.key, rule => &e.rule, status => &e.status,
                action => action_text(&e.action),
                why => trace.get("why").and_then(|v| v.as_str()).unwrap_or(""),
                trigger => trace.get("trigger").and_then(|v| v.as_str()).unwrap_or(""),
                condition => trace.get("condition").and_then(|v| v.as_str()),
                saw => saw.map(|s| serde_json::to_string_pretty(s).unwrap_or_default()),
            } },
        ));
    }
    timeline.sort_by_key(|a| (a.0, a.1));
    let explain: Vec<Value> = state
        .store
        .engine()
        .map(|e| {
            e.explain(record, &memory, now)
                .into_iter()
                .map(|r| context! { rule => r.rule, why => r.why, trigger => r.trigger, summary => r.summary, condition => r.condition, condition_now => r.condition_now })
                .collect()
        })
        .unwrap_or_default();
    let enrolments: Vec<Value> = enrolments
        .iter()
        .map(|e| context! { sequence => &e.sequence, contact => e.contact.to_string(), status => &e.status, next => e.due_at.map(|t| t.to_string()), ended => &e.end_reason })
        .collect();
    Ok(context! {
        kind => key.kind.as_str(), timers => timers,
        timeline => timeline.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
        explain => explain, enrolments => enrolments,
    })
}

async fn deal(State(state): State<AppState>, web: Web, Path(id): Path<String>) -> Response {
    deal_page(&state, &web, &id, None).await
}

async fn deal_page(
    state: &AppState,
    web: &Web,
    id: &str,
    walked: Option<(String, String)>,
) -> Response {
    let Ok(rid) = RecordId::parse(id.to_owned()) else {
        return failure(
            Some(web),
            StatusCode::NOT_FOUND,
            "No such deal",
            &format!("{id:?} is not a record id."),
        );
    };
    let key = RecordKey::new(RecordKind::Deal, rid);
    let stored = match state.store.record(&key).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return failure(
                Some(web),
                StatusCode::NOT_FOUND,
                "No such deal",
                &format!("There is no deal {id}."),
            );
        }
        Err(e) => return store_failed(web, e),
    };
    let Record::Deal(d) = &stored.record else {
        return failure(Some(web), StatusCode::NOT_FOUND, "No such deal", id);
    };
    let now = state.clock.now();
    let parts = match record_parts(state, &key, &stored.record, now).await {
        Ok(p) => p,
        Err(e) => return store_failed(web, e),
    };
    let engine = state.store.engine();
    let model = crate::risk::running(&*state.store);
    let facts = domain::DealFacts::at(d, now);
    let amount = d.amount.map_or("no amount".into(), |m| {
        format!(
            "{} {}",
            thousands(m.major().round() as i64),
            m.currency.as_str()
        )
    });
    let fact_rows: Vec<(String, String)> = vec![
        (
            "days in stage".into(),
            facts.days_in_stage.map_or("-".into(), |v| v.to_string()),
        ),
        (
            "days since activity".into(),
            facts
                .days_since_activity
                .map_or("-".into(), |v| v.to_string()),
        ),
        (
            "days open".into(),
            facts.days_open.map_or("-".into(), |v| v.to_string()),
        ),
        (
            "close date".into(),
            d.close_date.map_or("-".into(), |c| c.to_string()),
        ),
        ("pushed".into(), d.close_date_pushes.to_string()),
        ("stakeholders".into(), facts.stakeholder_count.to_string()),
        ("objections".into(), facts.objection_count.to_string()),
        (
            "meetings held".into(),
            d.engagement.meetings_held.to_string(),
        ),
    ];
    let stages: Vec<Value> = d
        .stage_history
        .iter()
        .map(|v| {
            let end = v.left_at.unwrap_or(now);
            context! { stage => v.stage.as_str(), entered => when(v.entered_at), left => v.left_at.map(when), days => v.entered_at.days_until(end) }
        })
        .collect();
    let gates: Vec<Value> = engine
        .as_ref()
        .map(|e| {
            e.explain_gates(&stored.record, now)
                .into_iter()
                .map(|g| Value::from(Serde(&g)))
                .collect()
        })
        .unwrap_or_default();
    let trees: Vec<Value> = engine
        .as_ref()
        .map(|e| {
            e.playbooks()
                .playbooks
                .iter()
                .flat_map(|p| &p.trees)
                .map(|t| {
                    let result = walked.as_ref().filter(|(name, _)| *name == t.name).map(|(_, r)| r.clone());
                    context! {
                        name => &t.name, title => &t.title, why => &t.why,
                        open => result.is_some(), result => result,
                        questions => t.questions.iter().map(|q| context! {
                            id => &q.id, ask => &q.ask,
                            answers => match &q.reply {
                                playbook::Reply::Choice { answers } => answers.iter().map(|a| a.answer.clone()).collect::<Vec<_>>(),
                                playbook::Reply::Input { .. } => Vec::new(),
                            },
                        }).collect::<Vec<_>>(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let risk = (d.status == domain::DealStatus::Open).then(|| {
        let a = model.assess(d, now);
        context! {
            score_text => format!("{:.2}", a.score), at_risk => a.at_risk, scoring => a.scoring.to_string(),
            warnings => a.warnings.iter().map(|c| context! { kind => c.warning.kind.as_str(), says => &c.warning.says, weight_text => format!("{:+.2}", c.weight) }).collect::<Vec<_>>(),
        }
    });
    let ctx = context! {
        deal => context! { id => d.id.as_str(), href => href(&key), name => &d.name, status => format!("{:?}", d.status).to_lowercase(), stage => d.stage.as_ref().map(|s| s.as_str()), owner => d.owner.as_ref().map(|o| o.as_str()) },
        amount => amount, risk => risk, facts => fact_rows, stages => stages,
        gates => gates, trees => trees,
        can_walk => web.can(UserRole::Rep),
    };
    page(
        StatusCode::OK,
        "deal.html",
        merge(merge(chrome(web, "pipeline"), parts), ctx),
    )
}

// ---- a lead ----

async fn lead(State(state): State<AppState>, web: Web, Path(id): Path<String>) -> Response {
    let not_found =
        |message: String| failure(Some(&web), StatusCode::NOT_FOUND, "No such lead", &message);
    let Ok(rid) = RecordId::parse(id.clone()) else {
        return not_found(format!("{id:?} is not a record id."));
    };
    let key = RecordKey::new(RecordKind::Lead, rid);
    let stored = match state.store.record(&key).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(format!("There is no lead {id}.")),
        Err(e) => return store_failed(&web, e),
    };
    let Record::Lead(l) = &stored.record else {
        return not_found(id);
    };
    let now = state.clock.now();
    let parts = match record_parts(&state, &key, &stored.record, now).await {
        Ok(p) => p,
        Err(e) => return store_failed(&web, e),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let facts: Vec<(&str, String)> = vec![
        ("email", text(&l.email)),
        ("title", text(&l.title)),
        ("origin", text(&l.origin)),
        ("created", l.created_at.map_or("-".into(), when)),
        (
            "first touch",
            l.assignment
                .as_ref()
                .and_then(|a| a.first_touch_at)
                .map_or("-".into(), when),
        ),
    ];
    let deal = l
        .converted_to
        .as_ref()
        .map(|d| RecordKey::new(RecordKind::Deal, d.clone()));
    let ctx = context! {
        lead => context! { id => l.id.as_str(), name => &l.name, company => &l.company, status => l.status.as_deref().unwrap_or("open"), owner => l.owner.as_ref().map(|o| o.as_str()) },
        deal => deal.as_ref().map(|d| context! { id => d.id.as_str(), href => href(d) }),
        facts => facts,
    };
    page(
        StatusCode::OK,
        "lead.html",
        merge(merge(chrome(&web, "pipeline"), parts), ctx),
    )
}

/// An action in words: its kind and its fields (`alert: to owner, text …`).
fn action_text(action: &serde_json::Value) -> String {
    let Some(o) = action.as_object() else {
        return action.to_string();
    };
    let kind = o.get("kind").and_then(|k| k.as_str()).unwrap_or("action");
    let detail = o
        .iter()
        .filter(|(k, v)| *k != "kind" && !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("{}: {detail}", kind.replace('_', " "))
}

/// A moment as people read it: `2026-11-11 12:36` (UTC).
fn when(t: Timestamp) -> String {
    let s = t.to_string();
    format!("{} {}", &s[..10], &s[11..16])
}

async fn walk_tree(
    State(state): State<AppState>,
    web: Web,
    Path((id, name)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let fields = match posted(&web, &bytes, Some((UserRole::Rep, "walk a decision tree"))) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let Some(engine) = state.store.engine() else {
        return failure(
            Some(&web),
            StatusCode::NOT_FOUND,
            "No playbooks",
            "No playbooks are running.",
        );
    };
    let Some(tree) = engine.playbooks().tree(&name) else {
        return failure(
            Some(&web),
            StatusCode::NOT_FOUND,
            "No such tree",
            &format!("There is no decision tree {name}."),
        );
    };
    let answers: BTreeMap<String, String> = fields
        .into_iter()
        .filter(|(k, v)| k != "csrf" && !v.trim().is_empty())
        .collect();
    let (Ok(deal), Ok(by)) = (
        RecordId::parse(id.clone()),
        RecordId::parse(web.session.user.id.clone()),
    ) else {
        return failure(Some(&web), StatusCode::BAD_REQUEST, "Bad id", &id);
    };
    let walk = match tree.walk(&answers) {
        Ok(w) => w,
        Err(e) => {
            return deal_page(
                &state,
                &web,
                &id,
                Some((name.clone(), format!("Not walked: {e}"))),
            )
            .await;
        }
    };
    let result = if walk.complete() {
        let now = state.clock.now();
        let walk_id = crate::trees::walk_id(&name, &deal, &by, &answers, now);
        if let Err(e) =
            crate::trees::record_walk(&*state.store, tree, &deal, &by, &walk, &walk_id, now).await
        {
            return store_failed(&web, e);
        }
        format!(
            "Recommended: {} (the answers are on the deal)",
            walk.recommendation.clone().unwrap_or_default()
        )
    } else {
        format!(
            "Next question: {}",
            walk.next.as_ref().map_or(String::new(), |q| q.ask.clone())
        )
    };
    let tree_name = tree.name.clone();
    deal_page(&state, &web, &id, Some((tree_name, result))).await
}

// ---- the exceptions inbox ----

async fn inbox(State(state): State<AppState>, web: Web, uri: axum::http::Uri) -> Response {
    let q = query(&uri);
    let can_see_all = web.can(UserRole::Manager) || web.role() == UserRole::Viewer;
    let all = can_see_all && q.contains_key("all");
    let items = match state
        .store
        .exceptions(&ExceptionQuery {
            assignee: (!all).then(|| web.session.user.id.clone()),
            status: Some("unresolved".into()),
            limit: 500,
            ..Default::default()
        })
        .await
    {
        Ok(x) => x,
        Err(e) => return store_failed(&web, e),
    };
    let me = &web.session.user.id;
    let rows: Vec<Value> = items
        .iter()
        .map(|x| context! {
            id => &x.id, title => &x.title, reason => &x.reason, record_id => x.record.id.as_str(),
            href => href(&x.record),
            assignee => &x.assignee, status => &x.status, created_at => when(x.created_at),
            due_at => x.due_at.map(when), overdue_at => x.overdue_at.map(when),
            can_act => web.can(UserRole::Manager) || (web.role() == UserRole::Rep && &x.assignee == me),
        })
        .collect();
    let storms = match held_storms(&state, &web).await {
        Ok(s) => s,
        Err(e) => return store_failed(&web, e),
    };
    // What the monitor raised about the automation itself is for those who look after it.
    let alarms = if can_see_all {
        match alarms(&state, &web).await {
            Ok(a) => a,
            Err(e) => return store_failed(&web, e),
        }
    } else {
        Vec::new()
    };
    let decided = q.get("decided").cloned();
    let ctx = context! {
        items => rows, all => all, can_see_all => can_see_all, storms => storms, decided => decided,
        alarms => alarms,
    };
    page(
        StatusCode::OK,
        "inbox.html",
        merge(chrome(&web, "inbox"), ctx),
    )
}

/// The storms holding a rule's effects that this person sees: managers, admins and viewers
/// see every one; anyone sees those of the playbooks they own. Each in words: what the rule
/// would do at once, a few of the records, why it is held.
async fn held_storms(state: &AppState, web: &Web) -> Result<Vec<Value>, store::Error> {
    let query = store::StormQuery {
        status: Some("holding".into()),
        limit: 100,
    };
    let sees_all = web.can(UserRole::Manager) || web.role() == UserRole::Viewer;
    let me = &web.session.user.id;
    let storms = state.store.storms(&query, state.clock.now()).await?;
    Ok(storms
        .into_iter()
        .filter(|s| sees_all || &s.owner == me)
        .map(|s| {
            let preview = s.preview.clone().unwrap_or_default();
            let examples: Vec<Value> = preview["sample"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| context! {
                            name => e["name"].as_str().unwrap_or_default(),
                            id => e["record"]["id"].as_str().unwrap_or_default(),
                            deal => e["record"]["kind"] == "deal",
                        })
                        .collect()
                })
                .unwrap_or_default();
            let at_once = preview["now"].as_u64().unwrap_or_default();
            let busiest_at = preview["busiest_at"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(when);
            context! {
                id => &s.id, rule => &s.rule, playbook => &s.playbook, owner => &s.owner,
                why => crate::storms::reason_in_words(s.reason),
                since => when(s.holding_since.unwrap_or(s.since)),
                held => s.held, limit => s.limit, at_once => at_once,
                busiest => preview["busiest_hour"].as_u64().unwrap_or_default(),
                busiest_at => busiest_at,
                trigger => preview["trigger"].as_str().unwrap_or_default(),
                rule_why => preview["why"].as_str().unwrap_or_default(),
                examples => examples,
                can_decide => web.can(UserRole::Manager) || &s.owner == me && web.can(UserRole::Rep),
            }
        })
        .collect())
}

/// The unresolved alarms about the automation, newest first, in words.
async fn alarms(state: &AppState, web: &Web) -> Result<Vec<Value>, store::Error> {
    let alarms = state
        .store
        .alarms(&store::AlarmQuery {
            status: Some("unresolved".into()),
            limit: 100,
            ..Default::default()
        })
        .await?;
    Ok(alarms
        .iter()
        .map(|a| {
            context! {
                id => &a.id, title => &a.title, status => &a.status,
                kind => crate::alarms::kind_in_words(a.kind),
                opened_at => when(a.opened_at),
                updated_at => (a.updated_at != a.opened_at).then(|| when(a.updated_at)),
                acknowledged_by => &a.acknowledged_by,
                can_act => web.can(UserRole::Manager),
            }
        })
        .collect())
}

/// Acknowledges or resolves an alarm from the inbox (managers and admins).
async fn act_on_alarm(
    State(state): State<AppState>,
    web: Web,
    Path((id, verb)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let fields = match posted(
        &web,
        &bytes,
        Some((UserRole::Manager, "act on alarms about the automation")),
    ) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let by = web.session.user.id.clone();
    let text = |k: &str| filled(&fields, k);
    let action = match verb.as_str() {
        "acknowledge" => store::AlarmAction::Acknowledge {
            by,
            note: text("note"),
        },
        "resolve" => match text("resolution") {
            Some(resolution) => store::AlarmAction::Resolve { by, resolution },
            None => {
                return failure(
                    Some(&web),
                    StatusCode::BAD_REQUEST,
                    "Say how it was resolved",
                    "A resolution needs a few words on how it was handled.",
                );
            }
        },
        _ => return failure(Some(&web), StatusCode::NOT_FOUND, "No such action", &verb),
    };
    match state.store.act_on_alarm(&id, action).await {
        Ok(_) => Redirect::to("/inbox").into_response(),
        Err(store::Error::NotFound(_)) => {
            failure(Some(&web), StatusCode::NOT_FOUND, "No such alarm", &id)
        }
        Err(store::Error::Invalid(m) | store::Error::Conflict(m)) => {
            failure(Some(&web), StatusCode::CONFLICT, "Not done", &m)
        }
        Err(e) => store_failed(&web, e),
    }
}

/// Approves or discards a storm from the inbox.
async fn decide_storm(
    State(state): State<AppState>,
    web: Web,
    Path((id, verb)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let fields = match posted(
        &web,
        &bytes,
        Some((UserRole::Rep, "decide about held effects")),
    ) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let storm = match state.store.storm(&id, state.clock.now()).await {
        Ok(Some(s)) => s,
        Ok(None) => return failure(Some(&web), StatusCode::NOT_FOUND, "No such storm", &id),
        Err(e) => return store_failed(&web, e),
    };
    if !web.can(UserRole::Manager) && storm.owner != web.session.user.id {
        return forbidden(
            &web,
            "decide about the held effects of a playbook someone else owns",
        );
    }
    let by = web.session.user.id.clone();
    let note = filled(&fields, "note");
    let decision = match verb.as_str() {
        "approve" => store::StormDecision::Approve { by, note },
        "discard" => store::StormDecision::Discard { by, note },
        _ => return failure(Some(&web), StatusCode::NOT_FOUND, "No such action", &verb),
    };
    match state.store.decide_storm(&id, decision).await {
        Ok(s) => {
            let done = format!("{} {}: {} effects", s.rule, s.status, s.held);
            let query = serde_urlencoded::to_string([("decided", done)]).unwrap_or_default();
            Redirect::to(&format!("/inbox?{query}")).into_response()
        }
        Err(store::Error::Invalid(m) | store::Error::Conflict(m)) => {
            failure(Some(&web), StatusCode::CONFLICT, "Not done", &m)
        }
        Err(e) => store_failed(&web, e),
    }
}

async fn act(
    State(state): State<AppState>,
    web: Web,
    Path((id, verb)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let fields = match posted(&web, &bytes, Some((UserRole::Rep, "act on exceptions"))) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let held = match state.store.exception(&id).await {
        Ok(Some((x, _))) => x,
        Ok(None) => return failure(Some(&web), StatusCode::NOT_FOUND, "No such exception", &id),
        Err(e) => return store_failed(&web, e),
    };
    if !web.can(UserRole::Manager) && held.assignee != web.session.user.id {
        return forbidden(&web, "act on an exception someone else holds");
    }
    let by = web.session.user.id.clone();
    let text = |k: &str| filled(&fields, k);
    let action = match verb.as_str() {
        "acknowledge" => ExceptionAction::Acknowledge {
            by,
            note: text("note"),
        },
        "resolve" => match text("resolution") {
            Some(resolution) => ExceptionAction::Resolve {
                by,
                resolution,
                note: text("note"),
            },
            None => {
                return failure(
                    Some(&web),
                    StatusCode::BAD_REQUEST,
                    "Say how it was resolved",
                    "A resolution needs a few words on how it was handled.",
                );
            }
        },
        "reassign" => match text("to") {
            Some(to) => ExceptionAction::Reassign {
                to,
                by,
                note: text("note"),
            },
            None => {
                return failure(
                    Some(&web),
                    StatusCode::BAD_REQUEST,
                    "Say to whom",
                    "Reassigning needs the person who takes it.",
                );
            }
        },
        _ => return failure(Some(&web), StatusCode::NOT_FOUND, "No such action", &verb),
    };
    match state.store.act_on_exception(&id, action).await {
        Ok(_) => Redirect::to("/inbox").into_response(),
        Err(store::Error::Invalid(m) | store::Error::Conflict(m)) => {
            failure(Some(&web), StatusCode::CONFLICT, "Not done", &m)
        }
        Err(e) => store_failed(&web, e),
    }
}

// ---- playbooks, the handbook, the outbox ----

async fn playbooks(State(state): State<AppState>, web: Web) -> Response {
    let status = state
        .playbooks
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let fired: HashMap<String, (u64, Timestamp)> = match state.store.rule_firings().await {
        Ok(f) => f
            .into_iter()
            .map(|r| (r.rule, (r.effects, r.last)))
            .collect(),
        Err(e) => return store_failed(&web, e),
    };
    let books: Vec<Value> = status
        .playbooks
        .iter()
        .map(|p| context! {
            name => &p.name, owner => &p.owner,
            rules => p.rules.iter().map(|r| {
                let f = fired.get(&r.id);
                context! { id => &r.id, why => &r.why, trigger => &r.trigger, condition => &r.condition, shadow => r.shadow,
                    fired => f.map_or(0, |f| f.0), last => f.map(|f| when(f.1)) }
            }).collect::<Vec<_>>(),
        })
        .collect();
    let assets: Vec<Value> = state
        .store
        .engine()
        .map(|e| {
            e.playbooks()
                .playbooks
                .iter()
                .flat_map(|p| &p.assets)
                .map(|a| context! {
                    title => a.title.clone().unwrap_or_else(|| a.name.clone()),
                    use_cases => a.use_cases.join(", "),
                    stages => a.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    link => a.url.clone().or(a.file.clone()).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let switched_off = (!status.rules.on).then_some(&status.rules.words);
    let ctx = context! { version => &status.version, origin => &status.origin, diagnostics => &status.diagnostics, switched_off => switched_off, playbooks => books, assets => assets };
    page(
        StatusCode::OK,
        "playbooks.html",
        merge(chrome(&web, "playbooks"), ctx),
    )
}

async fn handbook(State(state): State<AppState>, web: Web) -> Response {
    match state.store.engine() {
        Some(e) => {
            let mut r = playbook::handbook::html(e.playbooks()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        None => failure(
            Some(&web),
            StatusCode::NOT_FOUND,
            "No playbooks",
            "No playbooks are running.",
        ),
    }
}

async fn outbox(State(state): State<AppState>, web: Web, uri: axum::http::Uri) -> Response {
    let q = query(&uri);
    let status = q
        .get("status")
        .filter(|s| crate::outbox::STATUSES.contains(&s.as_str()))
        .cloned();
    // The latest 200, newest first.
    let effects = match state
        .store
        .outbox(&OutboxQuery {
            status: status.clone(),
            limit: 200,
            newest_first: true,
            ..Default::default()
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return store_failed(&web, e),
    };
    let rows: Vec<Value> = effects
        .iter()
        .map(|e| context! {
            key => &e.key, created_at => when(e.created_at), rule => &e.rule, record => e.record.to_string(),
            href => href(&e.record), action => action_text(&e.action), status => &e.status,
            attempts => e.attempts, last_error => &e.last_error,
        })
        .collect();
    let ctx =
        context! { effects => rows, statuses => Serde(crate::outbox::STATUSES), status => status };
    page(
        StatusCode::OK,
        "outbox.html",
        merge(chrome(&web, "outbox"), ctx),
    )
}

async fn effect(State(state): State<AppState>, web: Web, Path(key): Path<String>) -> Response {
    let (e, _) = match state.store.effect(&key).await {
        Ok(Some(x)) => x,
        Ok(None) => return failure(Some(&web), StatusCode::NOT_FOUND, "No such effect", &key),
        Err(e) => return store_failed(&web, e),
    };
    let rendered: Option<Vec<(String, String)>> =
        e.rendered.as_ref().and_then(|r| r.as_object()).map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => serde_json::to_string_pretty(other).unwrap_or_default(),
                        },
                    )
                })
                .collect()
        });
    let saw = e
        .trace
        .get("saw")
        .filter(|s| s.as_object().is_some_and(|o| !o.is_empty()));
    let ctx = context! {
        effect => Value::from(Serde(&e)),
        href => href(&e.record),
        why => e.trace.get("why").and_then(|v| v.as_str()).unwrap_or(""),
        trigger => e.trace.get("trigger").and_then(|v| v.as_str()).unwrap_or(""),
        saw => saw.map(|s| serde_json::to_string_pretty(s).unwrap_or_default()),
        rendered => rendered,
    };
    page(
        StatusCode::OK,
        "effect.html",
        merge(chrome(&web, "outbox"), ctx),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles_and_the_helpers_format() {
        let env = super::env();
        for (name, _) in super::TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        assert_eq!(super::thousands(1_234_567), "1,234,567");
        assert_eq!(super::pct(minijinja::Value::from(0.256)), "26%");
        assert_eq!(super::pct(minijinja::Value::from(())), "-");
    }

    #[test]
    fn a_waiting_timer_says_when_and_what_stops_it() {
        let now = domain::Timestamp::from_millis(1_796_083_200_000);
        let at = |h: i64| domain::Timestamp::from_millis(now.as_millis() + h * 3_600_000);
        assert_eq!(super::from_now(at(50), now), "in 2 days");
        assert_eq!(super::from_now(at(5), now), "in 5 hours");
        assert_eq!(super::from_now(at(-1), now), "now");
        let quiet = playbook::Trigger::QuietFor(playbook::Span(5 * 86_400_000));
        assert_eq!(
            super::unless(&quiet),
            "unless someone on either side acts first"
        );
        let stalled = playbook::Trigger::Warning(risk::Kind::Stalled);
        assert_eq!(
            super::unless(&stalled),
            "unless the stalled in stage warning clears"
        );
    }
}
