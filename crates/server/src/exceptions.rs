//! `/api/v1/exceptions`: the exceptions inbox — what the playbooks routed to a human on
//! purpose, per person, with acknowledge, resolve and reassign.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use domain::{RecordId, RecordKey, RecordKind};
use store::{ExceptionAction, ExceptionEntry, ExceptionItem, ExceptionQuery, TokenRole};

use crate::AppState;
use crate::api::query;
use crate::auth::Caller;
use crate::error::AppError;
use crate::sequences::body;

/// The statuses a listing filters on.
pub const STATUSES: &[&str] = &["open", "acknowledged", "resolved", "unresolved"];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExceptionParams {
    /// Only the exceptions this person holds: their inbox.
    assignee: Option<String>,
    /// open, acknowledged, resolved, or unresolved (open or acknowledged).
    status: Option<String>,
    /// Only this deal's.
    deal: Option<String>,
    /// Only this lead's.
    lead: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

impl ExceptionParams {
    /// The store query, each parameter checked by name.
    pub fn to_query(&self) -> Result<ExceptionQuery, AppError> {
        if let Some(s) = &self.status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(AppError::BadRequest(
                "invalid_query",
                format!("status: expected one of {}, not {s:?}", STATUSES.join(", ")),
            ));
        }
        let record = match (&self.deal, &self.lead) {
            (Some(_), Some(_)) => {
                return Err(AppError::BadRequest(
                    "invalid_query",
                    "deal, lead: give one of them".into(),
                ));
            }
            (Some(id), None) => Some((RecordKind::Deal, id, "deal")),
            (None, Some(id)) => Some((RecordKind::Lead, id, "lead")),
            (None, None) => None,
        }
        .map(|(kind, id, name)| {
            RecordId::parse(id.clone())
                .map(|id| RecordKey::new(kind, id))
                .map_err(|e| AppError::BadRequest("invalid_query", format!("{name}: {e}")))
        })
        .transpose()?;
        Ok(ExceptionQuery {
            assignee: self.assignee.clone(),
            status: self.status.clone(),
            record,
            limit: crate::outbox::limit(self.limit)?,
        })
    }
}

/// Exceptions, newest first: a person's inbox with `assignee`.
#[utoipa::path(
    get, path = "/api/v1/exceptions", tag = "exceptions", params(ExceptionParams),
    responses((status = 200, description = "exceptions"), (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Json<Vec<ExceptionItem>>, AppError> {
    caller.require(TokenRole::Reader)?;
    let p: ExceptionParams = query(&uri)?;
    Ok(Json(state.store.exceptions(&p.to_query()?).await?))
}

#[derive(Debug, Serialize)]
pub struct ExceptionDetail {
    #[serde(flatten)]
    pub item: ExceptionItem,
    pub history: Vec<ExceptionEntry>,
}

/// One exception, with what happened to it.
#[utoipa::path(
    get, path = "/api/v1/exceptions/{id}", tag = "exceptions",
    params(("id" = String, Path, description = "The exception's id")),
    responses((status = 200, description = "the exception and its history"), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ExceptionDetail>, AppError> {
    caller.require(TokenRole::Reader)?;
    let (item, history) = state
        .store
        .exception(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("exception {id}")))?;
    Ok(Json(ExceptionDetail { item, history }))
}

/// What a person sends to act on an exception.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    /// Who acts (a person id).
    by: String,
    /// For `resolve`: how it was handled.
    resolution: Option<String>,
    /// For `reassign`: the person who takes it.
    to: Option<String>,
    note: Option<String>,
}

/// The store action an `action` path segment and its body name.
pub fn action(action: &str, b: ActBody) -> Result<ExceptionAction, AppError> {
    let missing = |field: &str| {
        AppError::BadRequest(
            "invalid_body",
            format!("{field}: required to {action} an exception"),
        )
    };
    Ok(match action {
        "acknowledge" => ExceptionAction::Acknowledge {
            by: b.by,
            note: b.note,
        },
        "resolve" => ExceptionAction::Resolve {
            by: b.by,
            resolution: b.resolution.ok_or_else(|| missing("resolution"))?,
            note: b.note,
        },
        "reassign" => ExceptionAction::Reassign {
            to: b.to.ok_or_else(|| missing("to"))?,
            by: b.by,
            note: b.note,
        },
        _ => return Err(AppError::NotFound("route".into())),
    })
}

/// Acts on an exception: `action` is `acknowledge` (`{"by"}`), `resolve` (`{"by",
/// "resolution"}`; on a deal, logged as the resolver's intervention with the exception's
/// reason) or `reassign` (`{"by", "to"}`); `note` is optional.
#[utoipa::path(
    post, path = "/api/v1/exceptions/{id}/{action}", tag = "exceptions",
    params(("id" = String, Path, description = "The exception's id"),
           ("action" = String, Path, description = "acknowledge, resolve or reassign")),
    request_body(content = String, content_type = "application/json",
                 description = r#"{"by": "omar@acme.example", "resolution": "…", "to": "…", "note": "…"}"#),
    responses((status = 200, description = "the exception"), (status = 400, description = "invalid_body"),
              (status = 404, description = "not_found"),
              (status = 409, description = "conflict: already resolved, or already acknowledged")),
    security(("token" = []))
)]
pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, verb)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<ExceptionItem>, AppError> {
    caller.require(TokenRole::Writer)?;
    if !["acknowledge", "resolve", "reassign"].contains(&verb.as_str()) {
        return Err(AppError::NotFound("route".into()));
    }
    let act = action(&verb, body(&bytes)?)?;
    match state.store.act_on_exception(&id, act).await {
        Ok(item) => Ok(Json(item)),
        Err(store::Error::Invalid(m)) => Err(AppError::BadRequest("invalid_body", m)),
        Err(e) => Err(e.into()),
    }
}
