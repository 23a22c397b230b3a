//! The one error type of the HTTP API. Every error is JSON:
//! `{"error": {"code": "…", "message": "…", "problems": [...]}}` with a stable `code`.
//! 4xx answers are precise and logged at debug level; 5xx answers are opaque to the client and
//! logged with their cause.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use store::TokenRole;
use wire::{Problem, ProblemCode};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Problems(Vec<Problem>),
    #[error("the body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("unsupported content type {0:?}: send application/json or application/x-ndjson")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this needs a token with the {needed} role; this token is {has}")]
    Forbidden {
        needed: &'static str,
        has: &'static str,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("{0}")]
    Conflict(String),
    #[error("not ready: {0}")]
    NotReady(String),
    /// The store cannot take the work for now (a full disk, the database unreachable): 503
    /// with `Retry-After`. Logged once per outage by the store, not per request.
    #[error("{0}; try again later")]
    Unavailable(store::Outage),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    problems: &'a [Problem],
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Problems(p) => match p.first().map(|p| p.code) {
                Some(ProblemCode::MalformedJson) => (StatusCode::BAD_REQUEST, "malformed_json"),
                Some(code) => (StatusCode::UNPROCESSABLE_ENTITY, code.as_str()),
                None => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
            },
            AppError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            AppError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            AppError::Unavailable(outage) => (StatusCode::SERVICE_UNAVAILABLE, outage.as_str()),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn forbidden(needed: TokenRole, has: TokenRole) -> Self {
        AppError::Forbidden {
            needed: needed.as_str(),
            has: has.as_str(),
        }
    }
}

/// How long a client is asked to wait before retrying during an outage, in seconds: a full disk
/// needs someone to free space, a database restart or failover usually takes seconds.
pub fn retry_after(outage: store::Outage) -> u64 {
    match outage {
        store::Outage::DiskFull => 30,
        store::Outage::Unreachable => 5,
    }
}

impl From<store::Error> for AppError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NotFound(what) => AppError::NotFound(what),
            store::Error::Conflict(why) => AppError::Conflict(why),
            store::Error::Unavailable { outage, .. } => AppError::Unavailable(outage),
            other => AppError::Internal(Box::new(other)),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let AppError::Unavailable(_) = self {
            tracing::debug!(code, "{self}");
        } else if status.is_server_error() {
            let mut cause = String::new();
            let mut source = std::error::Error::source(&self);
            while let Some(s) = source {
                cause.push_str(&format!(": {s}"));
                source = s.source();
            }
            tracing::error!(code, "{self}{cause}");
        } else {
            tracing::debug!(code, "{self}");
        }
        let problems = match &self {
            AppError::Problems(p) => p.as_slice(),
            _ => &[],
        };
        let body = Body {
            error: Detail {
                code,
                message: self.to_string(),
                problems,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let AppError::Unavailable(outage) = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(*outage)));
        }
        response
    }
}
