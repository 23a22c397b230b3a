//! The `/api/v1` routes.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use domain::{Event, Facts, Record, RecordId, RecordKey, RecordKind, Timestamp};
use store::{Ingested, ListQuery, StoredRecord, TokenRole};

use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;

/// How the body of `POST /api/v1/events` is framed.
enum Framing {
    Json,
    Ndjson,
}

fn framing(headers: &HeaderMap) -> Result<Framing, AppError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Framing::Json);
    };
    let ct = ct.to_str().unwrap_or_default();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Framing::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Framing::Ndjson),
        _ => Err(AppError::UnsupportedMediaType(ct.to_owned())),
    }
}

async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<String, AppError> {
    let limit = state.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(AppError::BodyTooLarge { limit });
    }
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| AppError::BodyTooLarge { limit })?;
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        AppError::Problems(vec![wire::Problem {
            code: wire::ProblemCode::MalformedJson,
            index: None,
            line: None,
            column: None,
            field: None,
            message: format!(
                "the body is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        }])
    })
}

/// The outcome of one ingested event.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResult {
    /// `stored` or `duplicate`.
    #[schema(example = "stored")]
    pub status: String,
    /// pipewright's id of the event (for a duplicate: of the event stored first).
    pub id: String,
    /// Position in the event log (stored events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

impl From<Ingested> for IngestResult {
    fn from(r: Ingested) -> Self {
        match r {
            Ingested::Stored { id, seq } => Self {
                status: "stored".into(),
                id: id.to_string(),
                seq: Some(seq),
            },
            Ingested::Duplicate { id } => Self {
                status: "duplicate".into(),
                id: id.to_string(),
                seq: None,
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub stored: usize,
    pub duplicates: usize,
    /// One result per event, in the order sent.
    pub results: Vec<IngestResult>,
}

/// An event envelope. `type` selects the shape of `data`; one record reference at least.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[allow(dead_code)] // Documents the wire format; parsing is done by the `wire` crate.
pub struct EventEnvelope {
    /// Envelope version; 1 when absent.
    v: Option<u32>,
    #[serde(rename = "type")]
    ty: String,
    /// The system the event comes from; with `source_id` it de-duplicates.
    source: String,
    /// The event's id in its source (a string or an integer).
    source_id: String,
    /// RFC 3339 with an offset.
    #[schema(example = "2026-11-02T09:30:00Z")]
    occurred_at: String,
    /// `{"person": id}` or `{"contact": id}`.
    #[schema(value_type = Option<Object>)]
    actor: Option<serde_json::Value>,
    deal: Option<String>,
    lead: Option<String>,
    contact: Option<String>,
    account: Option<String>,
    person: Option<String>,
    /// The type's payload (see the README's event reference).
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
}

/// Ingest one event (a JSON object) or a batch (a JSON array, or NDJSON with
/// `Content-Type: application/x-ndjson`). Answered only after the events are committed. A batch
/// with any invalid event is refused whole, listing every problem; nothing is stored.
#[utoipa::path(
    post, path = "/api/v1/events", tag = "events",
    request_body(description = "An event, an array of events, or NDJSON (one event per line)",
                 content((EventEnvelope = "application/json"), (String = "application/x-ndjson"))),
    responses(
        (status = 201, description = "The event was stored", body = IngestResult),
        (status = 200, description = "A duplicate (single event), or the batch's results", body = BatchResult),
        (status = 400, description = "malformed_json: the body is not JSON; line and column given"),
        (status = 401, description = "unauthorized: token missing, unknown or revoked"),
        (status = 403, description = "forbidden: the token is not a writer"),
        (status = 413, description = "body_too_large"),
        (status = 415, description = "unsupported_media_type"),
        (status = 422, description = "unknown_event_type, missing_field, unknown_field, invalid_field or unsupported_version, with field, line and column"),
    ),
    security(("token" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    caller.require(TokenRole::Writer)?;
    let framing = framing(&headers)?;
    let text = read_body(&state, &headers, body).await?;
    let single = matches!(framing, Framing::Json) && !text.trim_start().starts_with('[');
    let parsed = match framing {
        Framing::Json => wire::parse_batch(&text),
        Framing::Ndjson => wire::parse_ndjson(&text),
    };
    let events = parsed
        .inspect_err(|p| {
            metrics::counter!("pipewright_events_rejected_total").increment(p.len() as u64);
        })
        .map_err(AppError::Problems)?;
    let results = state.store.ingest(events).await?;
    let stored = results
        .iter()
        .filter(|r| matches!(r, Ingested::Stored { .. }))
        .count();
    let duplicates = results.len() - stored;
    metrics::counter!("pipewright_events_ingested_total", "outcome" => "stored")
        .increment(stored as u64);
    metrics::counter!("pipewright_events_ingested_total", "outcome" => "duplicate")
        .increment(duplicates as u64);
    if single && let Some(first) = results.first() {
        let status = if stored == 1 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(IngestResult::from(*first))).into_response());
    }
    let results = results.into_iter().map(IngestResult::from).collect();
    Ok(Json(BatchResult {
        stored,
        duplicates,
        results,
    })
    .into_response())
}

/// The record collections of the API.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Collection {
    Deals,
    Leads,
    Contacts,
    Accounts,
    People,
}

impl Collection {
    fn kind(self) -> RecordKind {
        match self {
            Self::Deals => RecordKind::Deal,
            Self::Leads => RecordKind::Lead,
            Self::Contacts => RecordKind::Contact,
            Self::Accounts => RecordKind::Account,
            Self::People => RecordKind::Person,
        }
    }
}

/// A record's derived state, with the facts that depend on the current time.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordView {
    #[schema(value_type = Object)]
    pub record: Record,
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
    #[schema(value_type = String)]
    pub last_event_at: Timestamp,
}

impl RecordView {
    fn new(stored: StoredRecord, now: Timestamp) -> Self {
        let facts = stored.record.facts(now);
        Self {
            record: stored.record,
            facts,
            updated_at: stored.updated_at,
            last_event_at: stored.last_event_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordWithTimeline {
    #[serde(flatten)]
    pub view: RecordView,
    /// The record's events in occurrence order (the newest `timeline_limit`).
    #[schema(value_type = Vec<Object>)]
    pub timeline: Vec<Event>,
    /// What the rules decided for this record, with why-traces, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub effects: Vec<store::StoredEffect>,
    /// Time triggers the record is waiting on, soonest first.
    #[schema(value_type = Vec<Object>)]
    pub timers: Vec<store::Timer>,
    /// For an open deal: its risk score, and every warning with its sentence and weight.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<risk::Assessment>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordParams {
    /// How many of the newest events to include (default 200, at most 5000).
    timeline_limit: Option<usize>,
}

pub(crate) fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, AppError> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| AppError::BadRequest("invalid_query", e.body_text()))
}

/// One record with its derived facts and its timeline.
#[utoipa::path(
    get, path = "/api/v1/{collection}/{id}", tag = "records",
    params(("collection" = Collection, Path, description = "deals, leads, contacts, accounts or people"),
           ("id" = String, Path, description = "The record's id in its source"), RecordParams),
    responses((status = 200, body = RecordWithTimeline), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn get_record(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Result<Json<RecordWithTimeline>, AppError> {
    caller.require(TokenRole::Reader)?;
    let params: RecordParams = query(&uri)?;
    let (key, stored) = find(&state, &collection, id).await?;
    let timeline = state
        .store
        .timeline(&key, params.timeline_limit.unwrap_or(200).min(5000))
        .await?;
    let effects = state.store.effects(Some(&key), 1000).await?;
    let timers = state.store.timers(&key).await?;
    let now = state.clock.now();
    let risk = match &stored.record {
        Record::Deal(d) if d.status == domain::DealStatus::Open => {
            Some(crate::risk::running(&*state.store).assess(d, now))
        }
        _ => None,
    };
    Ok(Json(RecordWithTimeline {
        view: RecordView::new(stored, now),
        timeline,
        effects,
        timers,
        risk,
    }))
}

/// The record a `/{collection}/{id}` path names, or `not_found`.
async fn find(
    state: &AppState,
    collection: &str,
    id: String,
) -> Result<(RecordKey, StoredRecord), AppError> {
    let kind = parse_collection(collection)?.kind();
    let id =
        RecordId::parse(id).map_err(|e| AppError::BadRequest("invalid_id", format!("id {e}")))?;
    let key = RecordKey::new(kind, id);
    let stored = state
        .store
        .record(&key)
        .await?
        .ok_or_else(|| AppError::NotFound(key.to_string()))?;
    Ok((key, stored))
}

fn parse_collection(s: &str) -> Result<Collection, AppError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        AppError::NotFound(format!(
            "collection {s:?} (use deals, leads, contacts, accounts or people)"
        ))
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only deals in this stage.
    stage: Option<String>,
    /// Only records owned by this person.
    owner: Option<String>,
    /// Only records changed at or after this time (RFC 3339).
    updated_since: Option<String>,
    /// The `next` value of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    pub items: Vec<RecordView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next: Option<String>,
}

/// Records of a collection, filtered and paginated, ordered by id.
#[utoipa::path(
    get, path = "/api/v1/{collection}", tag = "records",
    params(("collection" = Collection, Path, description = "deals, leads, contacts, accounts or people"), ListParams),
    responses((status = 200, body = RecordPage), (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn list_records(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<RecordPage>, AppError> {
    caller.require(TokenRole::Reader)?;
    let params: ListParams = query(&uri)?;
    let mut q = ListQuery::new(parse_collection(&collection)?.kind());
    q.stage = params.stage;
    q.owner = params.owner;
    q.after = params.cursor;
    q.limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&q.limit) {
        return Err(AppError::BadRequest(
            "invalid_query",
            "limit must be between 1 and 1000".into(),
        ));
    }
    if let Some(since) = params.updated_since {
        q.updated_since =
            Some(since.parse().map_err(|e| {
                AppError::BadRequest("invalid_query", format!("updated_since: {e}"))
            })?);
    }
    let page = state.store.list(&q).await?;
    let now = state.clock.now();
    Ok(Json(RecordPage {
        items: page
            .items
            .into_iter()
            .map(|r| RecordView::new(r, now))
            .collect(),
        next: page.next,
    }))
}

/// The playbooks running, their rules, and any problems in the files as they are now.
#[utoipa::path(
    get, path = "/api/v1/playbooks", tag = "playbooks",
    responses((status = 200, description = "version, playbooks with their rules, diagnostics")),
    security(("token" = []))
)]
pub async fn playbooks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<crate::rules::PlaybookStatus>, AppError> {
    caller.require(TokenRole::Reader)?;
    let status = state
        .playbooks
        .read()
        .map(|s| s.clone())
        .unwrap_or_default();
    Ok(Json(status))
}

/// For every rule that acts on this record: has it fired, what its condition gives now and the
/// facts it read, and when a time trigger fires if nothing changes; for a deal, where it stands
/// against every stage's gate.
#[utoipa::path(
    get, path = "/api/v1/{collection}/{id}/explain", tag = "playbooks",
    params(("collection" = Collection, Path, description = "deals or leads"),
           ("id" = String, Path, description = "The record's id in its source")),
    responses((status = 200, description = "one explanation per rule"), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn explain(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AppError> {
    caller.require(TokenRole::Reader)?;
    let (key, stored) = find(&state, &collection, id).await?;
    let memory = state.store.rule_memory(&key).await?;
    let now = state.clock.now();
    let (version, rules, gates) = match state.store.engine() {
        Some(engine) => (
            Some(engine.version().to_owned()),
            engine.explain(&stored.record, &memory, now),
            engine.explain_gates(&stored.record, now),
        ),
        None => (None, Vec::new(), Vec::new()),
    };
    Ok(Json(serde_json::json!({
        "record": key.to_string(), "at": now, "version": version, "rules": rules, "gates": gates,
    })))
}
