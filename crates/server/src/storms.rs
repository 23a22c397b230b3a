//! Blast radius before it happens: what a playbook set would do on the pipeline as it stands
//! (a preview, compared with the running set), the storm guard opened when rules become new,
//! reach further, or when records are imported, and `/api/v1/storms` to approve or discard a
//! storm. The preview and the guard are shared with the CLI.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use domain::Timestamp;
use engine::forecast::{self, Change, Forecaster, RuleForecast};
use playbook::{Rule, StormLimit};
use store::{
    Engine, NewStorm, Store, StoredEffect, Storm, StormDecision, StormQuery, StormReason, TokenRole,
};

use crate::AppState;
use crate::api::query;
use crate::auth::Caller;
use crate::error::AppError;
use crate::sequences::body;

/// Records read per page while forecasting.
const PAGE: usize = 2_000;

/// How the guard is set: the limit of records a watched rule may act on within an hour, how
/// long a rule is watched, and how many days a preview looks ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    pub limit: u32,
    pub watch_ms: i64,
    pub days: usize,
}

impl GuardSettings {
    pub fn of(engine: &crate::settings::EngineSettings) -> Self {
        Self {
            limit: engine.storm_limit,
            watch_ms: engine.storm_watch_ms as i64,
            days: engine.preview_days as usize,
        }
    }

    /// The limit a rule is held to: its own, else the configured one (`None`: never held).
    pub fn limit_of(&self, rule: &Rule) -> Option<u32> {
        match rule.storm_limit {
            Some(StormLimit::Off) => None,
            Some(StormLimit::Records(n)) => Some(n),
            None => Some(self.limit).filter(|n| *n > 0),
        }
    }
}

/// One rule in a preview: how it changed, what it would do, what the running set's rule of
/// the same id does, and whether the guard would hold it.
#[derive(Debug, Clone, Serialize)]
pub struct RulePreview {
    pub rule: String,
    pub playbook: String,
    pub change: Change,
    /// What it would do (absent for a removed rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<RuleForecast>,
    /// What the running set's rule of this id would do (absent for a new rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<RuleForecast>,
    /// The storm limit it is held to while watched (absent: never held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Watched and over its limit at once: its effects would be held for approval.
    pub would_hold: bool,
}

/// What a playbook set would do on the pipeline now and over the days ahead, rule by rule,
/// beside the running set.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    pub at: Timestamp,
    pub days: usize,
    /// Deals and leads looked at.
    pub records: u64,
    pub rules: Vec<RulePreview>,
}

impl Preview {
    /// The rules the guard would hold.
    pub fn held(&self) -> impl Iterator<Item = &RulePreview> {
        self.rules.iter().filter(|r| r.would_hold)
    }
}

/// Forecasts `engines` together over every deal and lead the store holds (only the rules
/// named in `only`, when given): one read of the records for all of them. The records read,
/// and each engine's forecasts.
pub async fn forecast_store(
    store: &dyn Store,
    engines: &[&Engine],
    only: Option<&HashSet<String>>,
    now: Timestamp,
    days: usize,
) -> Result<(u64, Vec<Vec<RuleForecast>>), store::Error> {
    let mut forecasters: Vec<Forecaster<'_>> = engines
        .iter()
        .map(|engine| {
            Forecaster::of(engine, now, days, |r: &Rule| {
                only.is_none_or(|ids| ids.contains(&r.id))
            })
        })
        .collect();
    let (mut after, mut records) = (0, 0);
    loop {
        let page = store.rule_page(after, PAGE).await?;
        for (record, memory) in &page.records {
            for f in &mut forecasters {
                f.add(record, memory);
            }
        }
        records += page.records.len() as u64;
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok((
        records,
        forecasters.into_iter().map(Forecaster::finish).collect(),
    ))
}

/// The preview of `new` against `old` (the running set): every rule of both, with its change,
/// forecasts and whether the guard would hold it.
pub async fn preview(
    store: &dyn Store,
    old: Option<&Engine>,
    new: &Engine,
    guard: GuardSettings,
    now: Timestamp,
) -> Result<Preview, store::Error> {
    preview_of(store, old, new, None, guard, now).await
}

/// [`preview`] of the rules named in `only`, when given.
async fn preview_of(
    store: &dyn Store,
    old: Option<&Engine>,
    new: &Engine,
    only: Option<&HashSet<String>>,
    guard: GuardSettings,
    now: Timestamp,
) -> Result<Preview, store::Error> {
    let mut engines = vec![new];
    engines.extend(old);
    let (records, mut forecasts) = forecast_store(store, &engines, only, now, guard.days).await?;
    let running: HashMap<String, RuleForecast> = match forecasts.len() {
        2 => forecasts
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.rule.clone(), f))
            .collect(),
        _ => HashMap::new(),
    };
    let mut mine: HashMap<String, RuleForecast> = forecasts
        .pop()
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f.rule.clone(), f))
        .collect();
    let rules: HashMap<&str, (&str, &Rule)> =
        new.rules().map(|(p, r)| (r.id.as_str(), (p, r))).collect();
    let old_rules: HashMap<&str, &str> = old
        .map(|o| o.rules().map(|(p, r)| (r.id.as_str(), p)).collect())
        .unwrap_or_default();
    let rules = forecast::changes(old, new)
        .into_iter()
        .filter(|(id, _)| only.is_none_or(|ids| ids.contains(id)))
        .map(|(id, change)| {
            let forecast = mine.remove(&id);
            let limit = rules.get(id.as_str()).and_then(|(_, r)| guard.limit_of(r));
            let watched = matches!(change, Change::New | Change::Reaches);
            let would_hold = watched
                && forecast
                    .as_ref()
                    .zip(limit)
                    .is_some_and(|(f, l)| f.busiest_hour > u64::from(l));
            let playbook = rules
                .get(id.as_str())
                .map(|(p, _)| *p)
                .or_else(|| old_rules.get(id.as_str()).copied())
                .unwrap_or_default()
                .to_owned();
            RulePreview {
                running: running.get(&id).cloned(),
                rule: id,
                playbook,
                change,
                forecast,
                limit,
                would_hold,
            }
        })
        .collect();
    Ok(Preview {
        version: new.version().to_owned(),
        running: old.map(|o| o.version().to_owned()),
        at: now,
        days: guard.days,
        records,
        rules,
    })
}

/// The owner of each playbook: who a storm of one of its rules goes to.
fn owners(engine: &Engine) -> HashMap<String, String> {
    engine
        .playbooks()
        .playbooks
        .iter()
        .map(|p| (p.name.clone(), p.owner.clone()))
        .collect()
}

/// Before `new` runs (replacing `old`): every rule that is new or reaches further is watched,
/// opened holding when its forecast already passes its limit. The preview it was judged on.
pub async fn guard_change(
    store: &dyn Store,
    old: Option<&Engine>,
    new: &Engine,
    guard: GuardSettings,
    now: Timestamp,
) -> Result<Preview, store::Error> {
    // Only the rules that will be watched are forecast: a reworded set reads no records.
    let watched: HashSet<String> = forecast::changes(old, new)
        .into_iter()
        .filter(|(_, c)| matches!(c, Change::New | Change::Reaches))
        .map(|(id, _)| id)
        .collect();
    if watched.is_empty() {
        return Ok(Preview {
            version: new.version().to_owned(),
            running: old.map(|o| o.version().to_owned()),
            at: now,
            days: guard.days,
            records: 0,
            rules: Vec::new(),
        });
    }
    let preview = preview_of(store, old, new, Some(&watched), guard, now).await?;
    let owners = owners(new);
    let storms = preview
        .rules
        .iter()
        .filter_map(|r| {
            let reason = match r.change {
                Change::New => StormReason::New,
                Change::Reaches => StormReason::Reaches,
                _ => return None,
            };
            watch(r, reason, &owners, new.version(), guard, now)
        })
        .collect::<Vec<_>>();
    if !storms.is_empty() {
        store.watch_rules(storms).await?;
    }
    Ok(preview)
}

/// After records were imported under `engine`: every rule is watched, opened holding when its
/// forecast over the pipeline as it now stands passes its limit.
pub async fn guard_import(
    store: &dyn Store,
    engine: &Engine,
    guard: GuardSettings,
    now: Timestamp,
) -> Result<Preview, store::Error> {
    guard_all(store, engine, guard, now, StormReason::Import).await
}

/// Before every rule of `engine` may act at once on the pipeline as it stands (after an
/// import, or switched back on with what came due while they were off): every rule is
/// watched for `reason`, opened holding when its forecast passes its limit.
pub async fn guard_all(
    store: &dyn Store,
    engine: &Engine,
    guard: GuardSettings,
    now: Timestamp,
    reason: StormReason,
) -> Result<Preview, store::Error> {
    let mut preview = preview(store, None, engine, guard, now).await?;
    let owners = owners(engine);
    for r in &mut preview.rules {
        r.would_hold = r
            .forecast
            .as_ref()
            .zip(r.limit)
            .is_some_and(|(f, l)| f.busiest_hour > u64::from(l));
    }
    let storms = preview
        .rules
        .iter()
        .filter_map(|r| watch(r, reason, &owners, engine.version(), guard, now))
        .collect::<Vec<_>>();
    if !storms.is_empty() {
        store.watch_rules(storms).await?;
    }
    Ok(preview)
}

fn watch(
    r: &RulePreview,
    reason: StormReason,
    owners: &HashMap<String, String>,
    version: &str,
    guard: GuardSettings,
    now: Timestamp,
) -> Option<NewStorm> {
    let limit = r.limit?;
    Some(NewStorm {
        rule: r.rule.clone(),
        playbook: r.playbook.clone(),
        owner: owners.get(&r.playbook).cloned().unwrap_or_default(),
        version: version.to_owned(),
        reason,
        since: now,
        watch_until: Timestamp::from_millis(now.as_millis() + guard.watch_ms),
        limit,
        holding: r.would_hold,
        preview: r
            .forecast
            .as_ref()
            .and_then(|f| serde_json::to_value(f).ok()),
    })
}

/// A storm with a few of the effects it holds.
#[derive(Debug, Serialize)]
pub struct StormDetail {
    #[serde(flatten)]
    pub storm: Storm,
    /// Up to 20 held effects, oldest first.
    pub held_effects: Vec<StoredEffect>,
}

/// A storm and a sample of what it holds.
pub async fn detail(store: &dyn Store, id: &str, now: Timestamp) -> Result<StormDetail, AppError> {
    let storm = store
        .storm(id, now)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("storm {id}")))?;
    let held_effects = store
        .outbox(&store::OutboxQuery {
            status: Some("held".into()),
            rule: Some(storm.rule.clone()),
            limit: 20,
            ..Default::default()
        })
        .await?;
    Ok(StormDetail {
        storm,
        held_effects,
    })
}

/// The statuses a listing filters on.
pub const STATUSES: &[&str] = &[
    "open",
    "watching",
    "holding",
    "approved",
    "discarded",
    "ended",
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StormParams {
    /// open (watching or holding), watching, holding, approved, discarded or ended.
    status: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Storms, newest first: rules watched after a change or an import, and whether their
/// effects are held.
#[utoipa::path(
    get, path = "/api/v1/storms", tag = "playbooks", params(StormParams),
    responses((status = 200, description = "storms"), (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Json<Vec<Storm>>, AppError> {
    caller.require(TokenRole::Reader)?;
    let p: StormParams = query(&uri)?;
    if let Some(s) = &p.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(AppError::BadRequest(
            "invalid_query",
            format!("status: expected one of {}, not {s:?}", STATUSES.join(", ")),
        ));
    }
    let q = StormQuery {
        status: p.status,
        limit: crate::outbox::limit(p.limit)?,
    };
    Ok(Json(state.store.storms(&q, state.clock.now()).await?))
}

/// One storm, with the forecast it was opened on and up to 20 of the effects it holds.
#[utoipa::path(
    get, path = "/api/v1/storms/{id}", tag = "playbooks",
    params(("id" = String, Path, description = "The storm's id")),
    responses((status = 200, description = "the storm"), (status = 404, description = "not_found")),
    security(("token" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<StormDetail>, AppError> {
    caller.require(TokenRole::Reader)?;
    Ok(Json(detail(&*state.store, &id, state.clock.now()).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// Who decides (a person id); the token's name when absent.
    by: Option<String>,
    note: Option<String>,
}

/// The store decision an `action` path segment names.
pub fn decision(action: &str, by: String, note: Option<String>) -> Result<StormDecision, AppError> {
    match action {
        "approve" => Ok(StormDecision::Approve { by, note }),
        "discard" => Ok(StormDecision::Discard { by, note }),
        _ => Err(AppError::NotFound("route".into())),
    }
}

/// Approves a storm (its held effects go out now) or discards it (they are cancelled, with
/// what the rule decides later for moments before now).
#[utoipa::path(
    post, path = "/api/v1/storms/{id}/{action}", tag = "playbooks",
    params(("id" = String, Path, description = "The storm's id"),
           ("action" = String, Path, description = "approve or discard")),
    request_body(content = String, content_type = "application/json",
                 description = r#"{"by": "maya@acme.example", "note": "…"} (both optional)"#),
    responses((status = 200, description = "the storm"), (status = 404, description = "not_found"),
              (status = 409, description = "conflict: decided already, or ended")),
    security(("token" = []))
)]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, verb)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<Storm>, AppError> {
    caller.require(TokenRole::Admin)?;
    let b: DecideBody = body(&bytes)?;
    let by = b.by.unwrap_or_else(|| format!("token {}", caller.0.name));
    let decision = decision(&verb, by, b.note)?;
    Ok(Json(state.store.decide_storm(&id, decision).await?))
}

/// What `POST /api/v1/playbooks/preview` takes: playbook files by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    files: std::collections::BTreeMap<String, String>,
}

/// What a set of playbook files would do on the pipeline now and over the days ahead, rule
/// by rule, beside the running set; or every problem in the files.
#[utoipa::path(
    post, path = "/api/v1/playbooks/preview", tag = "playbooks",
    request_body(content = String, content_type = "application/json",
                 description = r#"{"files": {"rules.yaml": "playbook: …"}}"#),
    responses((status = 200, description = "the preview"),
              (status = 400, description = "invalid_body, or playbook_problems with every problem")),
    security(("token" = []))
)]
pub async fn preview_files(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Json<Preview>, AppError> {
    caller.require(TokenRole::Reader)?;
    let b: PreviewBody = body(&bytes)?;
    let files: Vec<(std::path::PathBuf, String)> = b
        .files
        .into_iter()
        .map(|(name, text)| (std::path::PathBuf::from(name), text))
        .collect();
    let set = playbook::load_files_with(&files, &state.targets)
        .into_set()
        .map_err(|errors| AppError::BadRequest("playbook_problems", errors.join("\n")))?;
    let running = state.store.engine();
    let new = Engine::new(Arc::new(set));
    let guard = state.guard;
    Ok(Json(
        preview(
            &*state.store,
            running.as_deref(),
            &new,
            guard,
            state.clock.now(),
        )
        .await?,
    ))
}

/// `n` things, with the noun in the singular for one.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A forecast's days ahead in words, from `at`: "12 within a day, 3 on Mon 7 Dec".
fn days_in_words(days: &[u64], at: Timestamp) -> String {
    let parts: Vec<String> = days
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(d, n)| match d {
            0 => format!("{n} within a day"),
            d => {
                let day = Timestamp::from_millis(at.as_millis() + d as i64 * 86_400_000);
                format!("{n} on {}", day.to_jiff().strftime("%a %-d %b"))
            }
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `n` effects of one kind of action, in words: "3 alerts", "1 sequence started".
fn actions_in_words(kind: &str, n: u64) -> String {
    let (one, many) = match kind {
        "alert" => ("alert", "alerts"),
        "task" => ("task", "tasks"),
        "escalate" => ("escalation", "escalations"),
        "start_sequence" => ("sequence started", "sequences started"),
        "stop_sequence" => ("sequence stopped", "sequences stopped"),
        "send_email" => ("email", "emails"),
        "send_asset" => ("asset sent", "assets sent"),
        "assign_owner" => ("owner assigned", "owners assigned"),
        "set_field" => ("field set", "fields set"),
        "set_stage" => ("stage move", "stage moves"),
        "webhook" => ("webhook call", "webhook calls"),
        other => (other, other),
    };
    count(n, one, many)
}

/// What a change to a rule means, in words.
fn change_in_words(change: Change) -> &'static str {
    match change {
        Change::New => "new",
        Change::Reaches => "changed: its trigger, condition or re-entry",
        Change::Acts => "changed: what it does or says",
        Change::Same => "unchanged",
        Change::Removed => "removed",
    }
}

/// A preview in plain words, rule by rule: what each would do at once and over the days
/// ahead (the running set's figure beside it), its busiest hour against its storm limit,
/// and a few of the records.
pub fn describe(preview: &Preview, what: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "What {what} would do to the pipeline as it stands ({}), now and over the next {}{}.\n",
        count(preview.records, "deal or lead", "deals and leads"),
        count(preview.days as u64, "day", "days"),
        if preview.running.is_some() {
            ", beside the playbooks running now"
        } else {
            "; no playbooks run now"
        }
    );
    let mut quiet = Vec::new();
    for r in &preview.rules {
        let was = |f: &RuleForecast| format!(" (running now: {})", f.now);
        match (&r.forecast, r.change) {
            (None, _) => {
                let at_once = r.running.as_ref().map_or(0, |f| f.now);
                let _ = writeln!(
                    out,
                    "{} — removed; the running version would act on {} at once\n",
                    r.rule,
                    count(at_once, "record", "records")
                );
            }
            (Some(f), change) if !f.timed => {
                if change == Change::Same {
                    quiet.push(r.rule.as_str());
                } else {
                    let _ = writeln!(
                        out,
                        "{} — {}; acts on its events as they arrive ({})\n",
                        r.rule,
                        change_in_words(change),
                        f.trigger
                    );
                }
            }
            (Some(f), change) => {
                let ahead: u64 = f.days.iter().sum();
                if change == Change::Same && f.now == 0 && ahead == 0 {
                    quiet.push(r.rule.as_str());
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{} — {} ({})",
                    r.rule,
                    change_in_words(change),
                    f.trigger
                );
                let mut at_once = count(f.now, "record", "records");
                if let Some(o) = r.running.as_ref().filter(|_| change != Change::Same) {
                    at_once.push_str(&was(o));
                }
                // The examples are of the records acted on at once, else of the first ones.
                let examples: Vec<&str> = f.sample.iter().map(|e| e.name.as_str()).collect();
                let such_as = if examples.is_empty() {
                    String::new()
                } else {
                    format!(", such as {}", examples.join(", "))
                };
                let (now_examples, later_examples) = if f.now > 0 {
                    (such_as.as_str(), "")
                } else {
                    ("", such_as.as_str())
                };
                let _ = writeln!(out, "  at once: {at_once}{now_examples}");
                let _ = writeln!(
                    out,
                    "  next {}: {}{later_examples}",
                    count(preview.days as u64, "day", "days"),
                    days_in_words(&f.days, preview.at)
                );
                if !f.actions.is_empty() {
                    let actions: Vec<String> = f
                        .actions
                        .iter()
                        .map(|(k, n)| actions_in_words(k, *n))
                        .collect();
                    let _ = writeln!(out, "  actions: {}", actions.join(", "));
                }
                match (r.limit, r.would_hold) {
                    (Some(limit), true) => {
                        let _ = writeln!(
                            out,
                            "  storm guard: {} within one hour is over its limit of {limit}; its effects will wait for approval",
                            f.busiest_hour
                        );
                    }
                    (Some(limit), false) if matches!(change, Change::New | Change::Reaches) => {
                        let _ = writeln!(
                            out,
                            "  storm guard: watched; held if it acts on more than {limit} records within an hour"
                        );
                    }
                    _ => {}
                }
                out.push('\n');
            }
        }
    }
    if !quiet.is_empty() {
        let _ = writeln!(
            out,
            "Unchanged, with nothing to do now: {}",
            quiet.join(", ")
        );
    }
    let held: Vec<&str> = preview.held().map(|r| r.rule.as_str()).collect();
    if !held.is_empty() {
        let _ = writeln!(
            out,
            "\nHeld for approval when they run: {}. Approve or discard with `pipewright storms`, the inbox, or the API.",
            held.join(", ")
        );
    }
    out
}

/// A moment as people read it: "2026-11-20 12:00 UTC".
pub fn when(t: Timestamp) -> String {
    t.to_jiff().strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Why a rule is watched, in words.
pub fn reason_in_words(reason: StormReason) -> &'static str {
    match reason {
        StormReason::New => "a new rule",
        StormReason::Reaches => "its trigger, condition or re-entry changed",
        StormReason::Import => "records were imported",
        StormReason::SwitchedOn => "the rules were switched back on",
    }
}
