//! `/api/v1/alarms`: what the silent-failure monitor raised about the automation itself, to
//! list, acknowledge and resolve; the words and parameters are shared with the CLI.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::IntoParams;

use store::{Alarm, AlarmAction, AlarmKind, AlarmQuery, TokenRole};

use crate::AppState;
use crate::api::query;
use crate::auth::Caller;
use crate::error::AppError;
use crate::sequences::body;

/// The statuses a listing filters on.
pub const STATUSES: &[&str] = &["open", "acknowledged", "resolved", "unresolved"];

/// The query a listing's parameters name.
///
/// # Errors
/// A status or kind that is not one, in words.
pub fn alarm_query(
    status: Option<&str>,
    kind: Option<&str>,
    limit: usize,
) -> Result<AlarmQuery, String> {
    if let Some(s) = status
        && !STATUSES.contains(&s)
    {
        return Err(format!(
            "status: expected one of {}, not {s:?}",
            STATUSES.join(", ")
        ));
    }
    let kind = kind
        .map(|k| {
            AlarmKind::parse(k).ok_or_else(|| {
                let kinds: Vec<&str> = AlarmKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("kind: expected one of {}, not {k:?}", kinds.join(", "))
            })
        })
        .transpose()?;
    Ok(AlarmQuery {
        status: status.map(str::to_owned),
        kind,
        limit,
    })
}

/// What a kind of alarm is about, in words.
pub fn kind_in_words(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::RuleSilent => "a rule stopped firing",
        AlarmKind::ChannelFailing => "a channel is failing",
        AlarmKind::DeadLetters => "effects could not be delivered",
        AlarmKind::StormHeld => "a storm is held for approval",
        AlarmKind::LoopRestarted => "a background loop stopped",
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlarmParams {
    /// open, acknowledged, resolved or unresolved (open or acknowledged); all when absent.
    status: Option<String>,
    /// rule_silent, channel_failing, dead_letters, storm_held or loop_restarted.
    kind: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Alarms about the automation itself, newest first: a rule that stopped firing, a channel
/// failing, dead letters, a storm held, a background loop that stopped.
#[utoipa::path(
    get, path = "/api/v1/alarms", tag = "operations", params(AlarmParams),
    responses((status = 200, description = "alarms"), (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Json<Vec<Alarm>>, AppError> {
    caller.require(TokenRole::Reader)?;
    let p: AlarmParams = query(&uri)?;
    let q = alarm_query(
        p.status.as_deref(),
        p.kind.as_deref(),
        crate::outbox::limit(p.limit)?,
    )
    .map_err(|m| AppError::BadRequest("invalid_query", m))?;
    Ok(Json(state.store.alarms(&q).await?))
}

/// What a person sends to act on an alarm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    /// Who acts (a person id); the token's name when absent.
    by: Option<String>,
    /// For `resolve`: how it was handled.
    resolution: Option<String>,
    /// For `acknowledge`.
    note: Option<String>,
}

/// Acknowledges an alarm (`{"by", "note"}`) or resolves it (`{"by", "resolution"}`). One
/// resolved while its condition still holds stays resolved until the condition clears.
#[utoipa::path(
    post, path = "/api/v1/alarms/{id}/{action}", tag = "operations",
    params(("id" = String, Path, description = "The alarm's id"),
           ("action" = String, Path, description = "acknowledge or resolve")),
    request_body(content = String, content_type = "application/json",
                 description = r#"{"by": "omar@acme.example", "resolution": "…", "note": "…"}"#),
    responses((status = 200, description = "the alarm"), (status = 400, description = "invalid_body"),
              (status = 404, description = "not_found"),
              (status = 409, description = "conflict: already resolved, or already acknowledged")),
    security(("token" = []))
)]
pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, verb)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<Alarm>, AppError> {
    caller.require(TokenRole::Admin)?;
    let b: ActBody = body(&bytes)?;
    let by = b.by.unwrap_or_else(|| format!("token {}", caller.0.name));
    let action = match verb.as_str() {
        "acknowledge" => AlarmAction::Acknowledge { by, note: b.note },
        "resolve" => AlarmAction::Resolve {
            by,
            resolution: b.resolution.ok_or_else(|| {
                AppError::BadRequest(
                    "invalid_body",
                    "resolution: required to resolve an alarm".into(),
                )
            })?,
        },
        _ => return Err(AppError::NotFound("route".into())),
    };
    match state.store.act_on_alarm(&id, action).await {
        Ok(alarm) => Ok(Json(alarm)),
        Err(store::Error::Invalid(m)) => Err(AppError::BadRequest("invalid_body", m)),
        Err(e) => Err(e.into()),
    }
}
