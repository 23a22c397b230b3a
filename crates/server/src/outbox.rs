//! `/api/v1/outbox` and `/api/v1/tasks`: what pipewright has decided to send, how each
//! delivery went, dead letters to retry or cancel, and the tasks deliveries created.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use domain::{RecordId, RecordKey, RecordKind, Timestamp};
use store::{Attempt, OutboxQuery, StoredEffect, Task, TaskQuery, TokenRole};

use crate::AppState;
use crate::api::query;
use crate::auth::Caller;
use crate::error::AppError;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutboxParams {
    /// pending, delivering, delivered, dry_run, dead, cancelled, shadow, blocked, held or
    /// overruled.
    status: Option<String>,
    /// email, task, internal, sequence, chat:NAME or webhook:HOST.
    channel: Option<String>,
    /// Only this deal's effects.
    deal: Option<String>,
    /// Only this lead's effects.
    lead: Option<String>,
    /// The `next` value of the previous page.
    cursor: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct OutboxPage {
    pub items: Vec<StoredEffect>,
    pub next: Option<i64>,
    /// Channels paused by their circuit breaker, and until when.
    pub paused: Vec<PausedChannel>,
}

#[derive(Debug, Serialize)]
pub struct PausedChannel {
    pub channel: String,
    pub until: Timestamp,
}

/// Every status an effect can have.
pub(crate) const STATUSES: &[&str] = &[
    "pending",
    "delivering",
    "delivered",
    "dry_run",
    "dead",
    "cancelled",
    "shadow",
    "blocked",
    "held",
    "overruled",
];

/// A page size: 1 to 1000, 100 when not given.
pub(crate) fn limit(limit: Option<usize>) -> Result<usize, AppError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest(
            "invalid_query",
            "limit must be between 1 and 1000".into(),
        ));
    }
    Ok(limit)
}

pub(crate) fn record(kind: RecordKind, id: String) -> Result<RecordKey, AppError> {
    RecordId::parse(id)
        .map(|id| RecordKey::new(kind, id))
        .map_err(|e| AppError::BadRequest("invalid_query", e.to_string()))
}

/// The record a `deal=` or `lead=` filter names (one of them at most).
pub(crate) fn deal_or_lead(
    deal: Option<String>,
    lead: Option<String>,
) -> Result<Option<RecordKey>, AppError> {
    match (deal, lead) {
        (Some(d), None) => Ok(Some(record(RecordKind::Deal, d)?)),
        (None, Some(l)) => Ok(Some(record(RecordKind::Lead, l)?)),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(AppError::BadRequest(
            "invalid_query",
            "give deal or lead, not both".into(),
        )),
    }
}

/// A `status=` filter, when given, is one of `known`.
pub(crate) fn status(status: &Option<String>, known: &[&str]) -> Result<(), AppError> {
    match status {
        Some(s) if !known.contains(&s.as_str()) => Err(AppError::BadRequest(
            "invalid_query",
            format!("status {s:?} is not one of {}", known.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// The outbox, oldest first: every effect with its status, attempts and rendered message.
#[utoipa::path(
    get, path = "/api/v1/outbox", tag = "delivery", params(OutboxParams),
    responses((status = 200, description = "items, next, paused"), (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Json<OutboxPage>, AppError> {
    caller.require(TokenRole::Reader)?;
    let p: OutboxParams = query(&uri)?;
    status(&p.status, STATUSES)?;
    let record = deal_or_lead(p.deal, p.lead)?;
    let limit = limit(p.limit)?;
    let items = state
        .store
        .outbox(&OutboxQuery {
            record,
            status: p.status,
            channel: p.channel,
            rule: None,
            after: p.cursor,
            limit,
            newest_first: false,
        })
        .await?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    let paused = state
        .dispatcher
        .as_ref()
        .map(|d| d.paused())
        .unwrap_or_default()
        .into_iter()
        .map(|(channel, until)| PausedChannel { channel, until })
        .collect();
    Ok(Json(OutboxPage {
        items,
        next,
        paused,
    }))
}

#[derive(Debug, Serialize)]
pub struct EffectDetail {
    pub effect: StoredEffect,
    pub attempts: Vec<Attempt>,
}

/// One effect with every delivery attempt.
#[utoipa::path(
    get, path = "/api/v1/outbox/{key}", tag = "delivery",
    params(("key" = String, Path, description = "The effect's idempotency key")),
    responses((status = 200, description = "effect and attempts"), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<EffectDetail>, AppError> {
    caller.require(TokenRole::Reader)?;
    let (effect, attempts) = state
        .store
        .effect(&key)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("effect {key}")))?;
    Ok(Json(EffectDetail { effect, attempts }))
}

/// Puts a dead or cancelled effect back in line, due now, with a fresh attempt budget.
#[utoipa::path(
    post, path = "/api/v1/outbox/{key}/retry", tag = "delivery",
    params(("key" = String, Path, description = "The effect's idempotency key")),
    responses((status = 200, description = "the effect"), (status = 404, description = "not_found"),
              (status = 409, description = "conflict: the effect is not dead or cancelled")),
    security(("token" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<StoredEffect>, AppError> {
    caller.require(TokenRole::Writer)?;
    Ok(Json(state.store.retry_effect(&key).await?))
}

/// Cancels a pending or dead effect: it is never delivered.
#[utoipa::path(
    post, path = "/api/v1/outbox/{key}/cancel", tag = "delivery",
    params(("key" = String, Path, description = "The effect's idempotency key")),
    responses((status = 200, description = "the effect"), (status = 404, description = "not_found"),
              (status = 409, description = "conflict: the effect is being delivered or has ended")),
    security(("token" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<StoredEffect>, AppError> {
    caller.require(TokenRole::Writer)?;
    Ok(Json(state.store.cancel_effect(&key).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskParams {
    /// Only this person's tasks.
    assignee: Option<String>,
    /// open or done.
    status: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Tasks and escalations created by deliveries, newest first.
#[utoipa::path(
    get, path = "/api/v1/tasks", tag = "delivery", params(TaskParams),
    responses((status = 200, description = "tasks")),
    security(("token" = []))
)]
pub async fn tasks(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Json<Vec<Task>>, AppError> {
    caller.require(TokenRole::Reader)?;
    let p: TaskParams = query(&uri)?;
    Ok(Json(
        state
            .store
            .tasks(&TaskQuery {
                assignee: p.assignee,
                status: p.status,
                limit: limit(p.limit)?,
            })
            .await?,
    ))
}

/// Marks a task done.
#[utoipa::path(
    post, path = "/api/v1/tasks/{id}/done", tag = "delivery",
    params(("id" = String, Path, description = "The task's id")),
    responses((status = 200, description = "the task"), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn done(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Task>, AppError> {
    caller.require(TokenRole::Writer)?;
    Ok(Json(state.store.complete_task(&id).await?))
}
