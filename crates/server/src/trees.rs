//! Decision trees and the handbook over HTTP: `GET /api/v1/trees`, walking a tree for a deal
//! (`POST /api/v1/deals/{id}/trees/{tree}`), and `GET /api/v1/handbook`. Recording a walk is
//! shared with the CLI.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use domain::{
    Actor, DealFields, EventBody, NewEvent, NoteFields, RecordId, RecordKey, RecordKind, Refs,
    Timestamp,
};
use playbook::{DecisionTree, PlaybookSet, Walk};
use store::{Ingested, Store, TokenRole};

use crate::AppState;
use crate::api::query;
use crate::auth::Caller;
use crate::error::AppError;
use crate::sequences::body;

/// The source of the events a walk writes.
pub const SOURCE: &str = "decision-tree";

/// The transcript of a walk, as the note on the deal reads.
fn transcript(tree: &DecisionTree, walk: &Walk, by: &RecordId) -> String {
    let mut text = format!("{} ({}), walked by {by}:", tree.title, tree.name);
    for a in &walk.path {
        text.push_str(&format!("\n- {} {}", a.ask, a.answer));
    }
    if let Some(r) = &walk.recommendation {
        text.push_str(&format!("\nRecommendation: {r}"));
    }
    text
}

/// Writes a complete walk to the deal, in one batch: its answers as the deal's fields (a
/// `deal.updated`, which gates and rules read) and its transcript as a note, both by `by` at
/// `now`. The source ids come from `walk_id`, so sending the same walk again writes nothing.
///
/// # Errors
/// As [`Store::ingest`].
pub async fn record_walk(
    store: &dyn Store,
    tree: &DecisionTree,
    deal: &RecordId,
    by: &RecordId,
    walk: &Walk,
    walk_id: &str,
    now: Timestamp,
) -> store::Result<Vec<Ingested>> {
    let refs = Refs {
        deal: Some(deal.clone()),
        ..Refs::default()
    };
    let event = |suffix: &str, body: EventBody| NewEvent {
        source: SOURCE.into(),
        source_id: format!("{}:{walk_id}{suffix}", tree.name),
        occurred_at: now,
        actor: Some(Actor::Person(by.clone())),
        refs: refs.clone(),
        body,
    };
    let fields = walk.fields().into_iter().collect();
    store
        .ingest(vec![
            event(
                "",
                EventBody::DealUpdated(DealFields {
                    fields,
                    ..DealFields::default()
                }),
            ),
            event(
                ":note",
                EventBody::NoteAdded(NoteFields {
                    text: transcript(tree, walk, by),
                }),
            ),
        ])
        .await
}

/// A walk's id when the caller gives none: the tree, deal, person, answers and time, so a
/// retry of the same request in the same millisecond is the same walk.
pub fn walk_id(
    tree: &str,
    deal: &RecordId,
    by: &RecordId,
    answers: &BTreeMap<String, String>,
    now: Timestamp,
) -> String {
    let mut parts = vec![
        tree.to_owned(),
        deal.as_str().to_owned(),
        by.as_str().to_owned(),
    ];
    for (q, a) in answers {
        parts.push(format!("{q}={a}"));
    }
    parts.push(now.as_millis().to_string());
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!("{:016x}", domain::stable_hash(&refs))
}

fn running(state: &AppState) -> Result<Arc<PlaybookSet>, AppError> {
    state
        .store
        .engine()
        .map(|e| Arc::clone(e.playbooks()))
        .ok_or_else(|| AppError::NotFound("playbooks (none are loaded)".into()))
}

/// The decision trees of the running playbooks.
#[utoipa::path(
    get, path = "/api/v1/trees", tag = "playbooks",
    responses((status = 200, description = "decision trees")),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DecisionTree>>, AppError> {
    caller.require(TokenRole::Reader)?;
    let set = running(&state)?;
    Ok(Json(
        set.playbooks
            .iter()
            .flat_map(|p| p.trees.iter().cloned())
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalkBody {
    /// Who is on the call (a person id).
    by: String,
    /// Question id → the answer's words (or the typed value of an input).
    #[serde(default)]
    answers: BTreeMap<String, String>,
    /// Names the walk, so a retry writes nothing new.
    walk_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WalkResult {
    pub tree: String,
    pub deal: String,
    pub complete: bool,
    #[serde(flatten)]
    pub walk: Walk,
    /// The fields written (complete walks only).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// What became of the written events (complete walks only).
    pub events: Vec<Ingested>,
}

/// Walks a decision tree for a deal with the answers given. Until the answers reach a
/// recommendation, answers the next question and writes nothing; then writes the answers
/// as the deal's fields, with a note of the walk.
#[utoipa::path(
    post, path = "/api/v1/deals/{id}/trees/{tree}", tag = "playbooks",
    params(("id" = String, Path, description = "The deal"), ("tree" = String, Path, description = "The decision tree")),
    request_body(content = String, content_type = "application/json",
                 description = r#"{"by": "sam@acme.example", "answers": {"budget": "Yes, approved"}}"#),
    responses((status = 200, description = "where the walk got to"), (status = 400, description = "invalid_body or invalid_answer"),
              (status = 404, description = "no such deal or tree")),
    security(("token" = []))
)]
pub async fn walk(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<WalkResult>, AppError> {
    caller.require(TokenRole::Writer)?;
    let set = running(&state)?;
    let tree = set
        .tree(&name)
        .ok_or_else(|| AppError::NotFound(format!("decision tree {name}")))?;
    let b: WalkBody = body(&bytes)?;
    let bad = |field: &str, e: domain::IdError| {
        AppError::BadRequest("invalid_body", format!("{field}: {e}"))
    };
    let deal = RecordId::parse(id.clone()).map_err(|e| bad("deal", e))?;
    let by = RecordId::parse(b.by.clone()).map_err(|e| bad("by", e))?;
    if state
        .store
        .record(&RecordKey::new(RecordKind::Deal, deal.clone()))
        .await?
        .is_none()
    {
        return Err(AppError::NotFound(format!("deal {id}")));
    }
    let walk = tree
        .walk(&b.answers)
        .map_err(|e| AppError::BadRequest("invalid_answer", e.to_string()))?;
    let mut result = WalkResult {
        tree: name.clone(),
        deal: id,
        complete: walk.complete(),
        fields: serde_json::Map::new(),
        events: Vec::new(),
        walk,
    };
    if result.complete {
        let now = state.clock.now();
        let walk_id = b
            .walk_id
            .unwrap_or_else(|| walk_id(&name, &deal, &by, &b.answers, now));
        result.events =
            record_walk(&*state.store, tree, &deal, &by, &result.walk, &walk_id, now).await?;
        result.fields = result.walk.fields();
    }
    Ok(Json(result))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HandbookParams {
    /// html (the default) or markdown.
    format: Option<String>,
}

/// The handbook of the running playbooks, as a page or as Markdown.
#[utoipa::path(
    get, path = "/api/v1/handbook", tag = "playbooks", params(HandbookParams),
    responses((status = 200, description = "the handbook"), (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn handbook(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    caller.require(TokenRole::Reader)?;
    let p: HandbookParams = query(&uri)?;
    let set = running(&state)?;
    Ok(match p.format.as_deref().unwrap_or("html") {
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            playbook::handbook::html(&set),
        )
            .into_response(),
        "markdown" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            playbook::handbook::markdown(&set),
        )
            .into_response(),
        other => {
            return Err(AppError::BadRequest(
                "invalid_query",
                format!("format: expected html or markdown, not {other:?}"),
            ));
        }
    })
}
