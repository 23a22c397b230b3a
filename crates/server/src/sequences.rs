//! Sequences over HTTP: enrolments (list, pause, resume, stop), pauses per owner and for
//! everyone, results per variant, the suppression list, and the public unsubscribe page that
//! the links and one-click headers of every automated email point at.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use domain::{NewEvent, RecordKey, RecordKind};
use store::{
    Control, EnrolmentInfo, EnrolmentQuery, PauseScope, SequencePause, Suppression, TokenRole,
    VariantResult,
};

use crate::api::query;
use crate::auth::Caller;
use crate::error::AppError;
use crate::{AppState, outbox};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentParams {
    /// Only this deal's enrolments.
    deal: Option<String>,
    /// Only this lead's enrolments.
    lead: Option<String>,
    /// Only this contact's.
    contact: Option<String>,
    sequence: Option<String>,
    /// active, paused or ended.
    status: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Enrolments, newest first.
#[utoipa::path(
    get, path = "/api/v1/enrolments", tag = "sequences", params(EnrolmentParams),
    responses((status = 200, description = "enrolments")),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Json<Vec<EnrolmentInfo>>, AppError> {
    caller.require(TokenRole::Reader)?;
    let p: EnrolmentParams = query(&uri)?;
    outbox::status(&p.status, &["active", "paused", "ended"])?;
    Ok(Json(
        state
            .store
            .enrolments(&EnrolmentQuery {
                record: outbox::deal_or_lead(p.deal, p.lead)?,
                contact: p
                    .contact
                    .map(|c| outbox::record(RecordKind::Contact, c))
                    .transpose()?,
                sequence: p.sequence,
                status: p.status,
                limit: outbox::limit(p.limit)?,
            })
            .await?,
    ))
}

/// Pauses, resumes or stops one enrolment: `action` is `pause`, `resume` or `stop`.
#[utoipa::path(
    post, path = "/api/v1/enrolments/{id}/{action}", tag = "sequences",
    params(("id" = String, Path, description = "The enrolment's id"),
           ("action" = String, Path, description = "pause, resume or stop")),
    responses((status = 200, description = "the enrolment"), (status = 404, description = "not_found"),
              (status = 409, description = "conflict: it has ended")),
    security(("token" = []))
)]
pub async fn control(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<EnrolmentInfo>, AppError> {
    caller.require(TokenRole::Writer)?;
    let control = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "stop" => Control::Stop,
        _ => return Err(AppError::NotFound("route".into())),
    };
    Ok(Json(state.store.control_enrolment(&id, control).await?))
}

/// A JSON body, with where it went wrong when it is not what was expected.
pub(crate) fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, AppError> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| {
        AppError::BadRequest(
            "invalid_body",
            format!("line {} column {}: {e}", e.line(), e.column()),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    /// Only this owner's enrolments (out of office); everyone's when absent.
    owner: Option<String>,
    note: Option<String>,
}

impl PauseBody {
    fn scope(&self) -> PauseScope {
        match &self.owner {
            Some(owner) => PauseScope::Owner(owner.clone()),
            None => PauseScope::Global,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PauseOutcome {
    pub scope: String,
    /// Enrolments paused, or running again.
    pub enrolments: u64,
}

/// Pauses sequences (`action` = `pause`): every owner's (`{}`), or one owner's
/// (`{"owner": "sam@acme.example"}`); enrolments that start while paused start paused. Or ends
/// a pause (`resume`): each enrolment it held runs its next step once, now if it fell due, and
/// keeps its spacing after — no burst of catch-up emails.
#[utoipa::path(
    post, path = "/api/v1/sequences/{action}", tag = "sequences",
    params(("action" = String, Path, description = "pause or resume")),
    request_body(content = String, content_type = "application/json", description = "JSON"),
    responses((status = 200, description = "the scope, and how many enrolments were paused or run again")),
    security(("token" = []))
)]
pub async fn pause_or_resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(action): Path<String>,
    bytes: Bytes,
) -> Result<Json<PauseOutcome>, AppError> {
    caller.require(TokenRole::Writer)?;
    let p: PauseBody = body(&bytes)?;
    let scope = p.scope();
    let enrolments = match action.as_str() {
        "pause" => state.store.pause_sequences(scope.clone(), p.note).await?,
        "resume" => state.store.resume_sequences(scope.clone()).await?,
        _ => return Err(AppError::NotFound("route".into())),
    };
    Ok(Json(PauseOutcome {
        scope: scope.key(),
        enrolments,
    }))
}

/// The pauses in force.
#[utoipa::path(
    get, path = "/api/v1/sequences/pauses", tag = "sequences",
    responses((status = 200, description = "pauses")),
    security(("token" = []))
)]
pub async fn pauses(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SequencePause>>, AppError> {
    caller.require(TokenRole::Reader)?;
    Ok(Json(state.store.sequence_pauses().await?))
}

/// Reply rates per step and A/B variant of a sequence.
#[utoipa::path(
    get, path = "/api/v1/sequences/{name}/results", tag = "sequences",
    params(("name" = String, Path, description = "The sequence's name")),
    responses((status = 200, description = "results per step and variant")),
    security(("token" = []))
)]
pub async fn results(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<VariantResult>>, AppError> {
    caller.require(TokenRole::Reader)?;
    Ok(Json(state.store.sequence_results(&name).await?))
}

/// The suppression list: addresses and domains that get no automated email.
#[utoipa::path(
    get, path = "/api/v1/suppressions", tag = "sequences",
    responses((status = 200, description = "suppressions")),
    security(("token" = []))
)]
pub async fn suppressions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Suppression>>, AppError> {
    caller.require(TokenRole::Reader)?;
    Ok(Json(state.store.suppressions(10_000).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressBody {
    /// An address, or `@example.com` for a whole domain.
    address: String,
    /// do_not_contact (the default), unsubscribed or bounced.
    reason: Option<String>,
    note: Option<String>,
}

/// Adds an address or domain to the do-not-contact list.
#[utoipa::path(
    post, path = "/api/v1/suppressions", tag = "sequences",
    request_body(content = String, content_type = "application/json", description = "JSON"),
    responses((status = 201, description = "suppressed"), (status = 400, description = "invalid_body")),
    security(("token" = []))
)]
pub async fn suppress(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    caller.require(TokenRole::Writer)?;
    let b: SuppressBody = body(&bytes)?;
    let reason = b.reason.unwrap_or_else(|| "do_not_contact".into());
    state
        .store
        .suppress(&b.address, &reason, b.note)
        .await
        .map_err(|e| match e {
            store::Error::Invalid(m) => AppError::BadRequest("invalid_body", m),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "address": b.address.trim().to_lowercase(), "reason": reason })),
    ))
}

/// Takes an address or domain off the list.
#[utoipa::path(
    delete, path = "/api/v1/suppressions/{address}", tag = "sequences",
    params(("address" = String, Path, description = "The address or @domain")),
    responses((status = 204, description = "removed"), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn unsuppress(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
) -> Result<StatusCode, AppError> {
    caller.require(TokenRole::Writer)?;
    if state.store.unsuppress(&address).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound(format!("suppression {address}")))
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <meta name=\"viewport\" content=\"width=device-width\"></head>\
             <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">\
             <h1>{title}</h1>{body}</body></html>"
        )),
    )
        .into_response()
}

fn invalid_link() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This link is not valid",
        "<p>It may have been cut short. Use the link from the email as it is.</p>",
    )
}

async fn contact_of(state: &AppState, token: &str) -> Result<Option<RecordKey>, AppError> {
    let secret = state.store.secret(delivery::unsubscribe::SECRET).await?;
    Ok(delivery::unsubscribe::verify(&secret, token))
}

/// The page an unsubscribe link opens: a button, because link scanners open links too (a GET
/// never unsubscribes, as RFC 8058 asks).
pub async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    if contact_of(&state, &token).await?.is_none() {
        return Ok(invalid_link());
    }
    Ok(page(
        StatusCode::OK,
        "Unsubscribe",
        "<p>You will receive no more automated emails from us.</p>\
         <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>",
    ))
}

/// Unsubscribes the contact a valid token names: from the page's button, or in one click from
/// a mail client (`List-Unsubscribe=One-Click` posted to the `List-Unsubscribe` URL, RFC 8058
/// §3.2). Recorded as a `contact.unsubscribed` event: the address is suppressed and every
/// running sequence of the contact ends. Doing it twice changes nothing.
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
    bytes: Bytes,
) -> Result<Response, AppError> {
    let Some(contact) = contact_of(&state, &token).await? else {
        return Ok(invalid_link());
    };
    let one_click = String::from_utf8_lossy(&bytes).contains("List-Unsubscribe=One-Click");
    let refs = match contact.kind {
        RecordKind::Lead => format!(r#""lead":{:?}"#, contact.id.as_str()),
        _ => format!(r#""contact":{:?}"#, contact.id.as_str()),
    };
    let text = format!(
        r#"{{"type":"contact.unsubscribed","source":"pipewright","source_id":"unsubscribe:{contact}","occurred_at":"{}",{refs},"data":{{"via":"{}"}}}}"#,
        state.clock.now(),
        if one_click { "one_click" } else { "link" }
    );
    let event: NewEvent = wire::parse_one(&text).map_err(|p| {
        AppError::Internal(format!("the unsubscribe event did not parse: {p}").into())
    })?;
    state.store.ingest(vec![event]).await?;
    Ok(page(
        StatusCode::OK,
        "You are unsubscribed",
        "<p>You will receive no more automated emails from us.</p>",
    ))
}
