//! The heroics report and suggested rules over the store: every deal's history read once,
//! record by record, with what the playbooks did beside it (the rules whose `covers:` names a
//! reason, their firings, escalations and open tasks for key people). Served at
//! `/api/v1/reports/heroics` and `/api/v1/suggestions`, and run by `pipewright report
//! heroics` and `pipewright suggest` on the database directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use domain::{MILLIS_PER_DAY, RecordId, RecordKind, Timestamp};
use heroics::{Automation, Covering, Firing, History, People, Request, Settings, run_deal};
use playbook::{Action, PlaybookSet, Target};
use store::{ExceptionQuery, OutboxQuery, RecordEvent, RecordRange, Store, TaskQuery, TokenRole};

use crate::AppState;
use crate::api::query;
use crate::auth::Caller;
use crate::error::AppError;

/// What a report or a suggestion is asked for. Times are RFC 3339 or a date (`2026-10-01`,
/// midnight UTC); lengths are spans (`14d`, `36h`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HeroicsParams {
    /// Deals closed and interventions begun from this moment count (default: from the start).
    pub from: Option<String>,
    /// … up to this moment, exclusive; events after it are not read (default: now).
    pub to: Option<String>,
    /// Only this key person's interventions.
    pub person: Option<String>,
    /// Compare before and after this moment (e.g. a playbook's go-live).
    pub split_at: Option<String>,
    /// Touches closer than this are one intervention (default 2d).
    pub merge_within: Option<String>,
    /// An objection this recent is the reason (default 14d).
    pub objection_within: Option<String>,
    /// A deal this long without activity had gone quiet (default 5d).
    pub quiet_after: Option<String>,
    /// A deal this long in its stage was stuck (default 14d).
    pub stuck_after: Option<String>,
    /// After a rule fired, an intervention within this long means a human still stepped in
    /// (default 14d).
    pub follow_within: Option<String>,
    /// Report: json (default), table or csv. Suggestions: yaml (default) or json.
    pub format: Option<String>,
    /// With format=csv: months (default), people, reasons, stages, waiting, coverage or
    /// interventions.
    pub section: Option<String>,
    /// Suggestions: fewer interventions than this make no pattern (default 3).
    pub min_support: Option<u32>,
    /// Assets: an advance or a reply this long after a send counts (default 14d).
    pub within: Option<String>,
}

/// A parameter that does not read, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadParam {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: String) -> BadParam {
    BadParam { field, message }
}

/// A moment: RFC 3339, or a date meaning midnight UTC.
pub fn moment(field: &'static str, text: &str) -> Result<Timestamp, BadParam> {
    let full = match text.parse::<domain::Date>() {
        Ok(date) => format!("{date}T00:00:00Z"),
        Err(_) => text.to_owned(),
    };
    full.parse().map_err(|_| {
        bad(
            field,
            format!("expected a date (2026-10-01) or an RFC 3339 time (2026-10-01T09:00:00Z), got {text:?}"),
        )
    })
}

fn span(field: &'static str, text: Option<&str>, default_days: i64) -> Result<i64, BadParam> {
    match text {
        None => Ok(default_days * MILLIS_PER_DAY),
        Some(t) => playbook::parse_span(t)
            .filter(|s| s.0 > 0)
            .map(|s| s.0)
            .ok_or_else(|| {
                bad(
                    field,
                    format!("expected a length such as 14d or 36h, got {t:?}"),
                )
            }),
    }
}

impl HeroicsParams {
    /// What to count, and the report's options, with `now` as the default end.
    pub fn options(&self, now: Timestamp) -> Result<(Settings, heroics::Options), BadParam> {
        let settings = Settings {
            merge_within: span("merge_within", self.merge_within.as_deref(), 2)?,
            objection_within: span("objection_within", self.objection_within.as_deref(), 14)?,
            quiet_after: span("quiet_after", self.quiet_after.as_deref(), 5)?,
            stuck_after: span("stuck_after", self.stuck_after.as_deref(), 14)?,
        };
        let to = self
            .to
            .as_deref()
            .map(|t| moment("to", t))
            .transpose()?
            .unwrap_or(now);
        let mut options = heroics::Options::new(to);
        options.from = self
            .from
            .as_deref()
            .map(|t| moment("from", t))
            .transpose()?;
        if options.from.is_some_and(|f| f >= to) {
            return Err(bad("from", "must be before `to`".into()));
        }
        options.split_at = self
            .split_at
            .as_deref()
            .map(|t| moment("split_at", t))
            .transpose()?;
        options.person = self
            .person
            .as_deref()
            .map(|p| RecordId::parse(p).map_err(|e| bad("person", e.to_string())))
            .transpose()?;
        options.follow_within = span("follow_within", self.follow_within.as_deref(), 14)?;
        Ok((settings, options))
    }
}

/// Every person in the store, as their latest state says.
pub async fn people(store: &dyn Store) -> store::Result<People> {
    Ok(People::new(store::people(store).await?))
}

/// How many events one read takes.
const PAGE: usize = 20_000;

/// Every deal's history up to `until`, read record by record (see [`each_deal`]).
pub async fn history(
    store: &dyn Store,
    settings: Settings,
    until: Timestamp,
) -> store::Result<History> {
    let mut history = History::new(people(store).await?, settings, until);
    let h = &history;
    let runs = each_deal(store, until, &|id, events| {
        run_deal(&id, &events, &h.people, &h.settings, h.until)
    })
    .await?;
    history.deals = runs;
    Ok(history)
}

/// Every deal's events before `until`, each deal's in occurrence order, handed to `fold` one
/// deal at a time: the deals split into a range per core, each range read by its own reader
/// (reading is mostly decoding), every deal folded as soon as its last event is in.
pub async fn each_deal<T: Send>(
    store: &dyn Store,
    until: Timestamp,
    fold: &(dyn Fn(RecordId, Vec<domain::Event>) -> T + Sync),
) -> store::Result<Vec<T>> {
    let parts = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ranges = store.record_ranges(RecordKind::Deal, parts).await?;
    let runs = futures_util::future::try_join_all(
        ranges
            .iter()
            .map(|range| read_range(store, range, until, fold)),
    )
    .await?;
    Ok(runs.into_iter().flatten().collect())
}

/// One range's deals, read page by page and each folded once the next deal begins.
async fn read_range<T>(
    store: &dyn Store,
    range: &RecordRange,
    until: Timestamp,
    fold: &(dyn Fn(RecordId, Vec<domain::Event>) -> T + Sync),
) -> store::Result<Vec<T>> {
    let mut runs = Vec::new();
    let mut deal: Option<(RecordId, Vec<domain::Event>)> = None;
    let mut after: Option<RecordEvent> = None;
    loop {
        let page = store
            .record_events(RecordKind::Deal, range, after.as_ref(), PAGE)
            .await?;
        let full = page.len() == PAGE;
        after = page.last().cloned();
        for e in page {
            if e.event.occurred_at >= until {
                continue;
            }
            match &mut deal {
                Some((id, events)) if *id == e.record => events.push(e.event),
                _ => {
                    if let Some((id, events)) = deal.replace((e.record, vec![e.event])) {
                        runs.push(fold(id, events));
                    }
                }
            }
        }
        if !full {
            break;
        }
    }
    runs.extend(deal.map(|(id, events)| fold(id, events)));
    Ok(runs)
}

/// What the playbooks did: the rules that cover a reason (from every playbook version that
/// acted, the running one's last so its wording wins), their firings on deals, and the
/// requests to key people — escalations to a person or a role, open tasks assigned to them.
pub async fn automation(
    store: &dyn Store,
    running: Option<Arc<PlaybookSet>>,
    people: &People,
) -> store::Result<Automation> {
    let mut out = Automation::default();
    let mut versions = BTreeSet::new();
    let mut fired = BTreeSet::new();
    // A delivered escalation is an exception: who holds it and whether it is resolved is
    // the inbox's to say, not the effect's.
    let exceptions = store
        .exceptions(&ExceptionQuery {
            limit: usize::MAX >> 1,
            ..ExceptionQuery::default()
        })
        .await?;
    let raised: BTreeSet<&str> = exceptions.iter().map(|e| e.id.as_str()).collect();
    for e in exceptions
        .iter()
        .filter(|e| e.status != "resolved" && e.record.kind == RecordKind::Deal)
    {
        if let Ok(person) = RecordId::parse(e.assignee.clone()) {
            out.requests.push(Request {
                deal: e.record.id.clone(),
                person,
                at: e.created_at,
                what: format!("exception: {}", e.reason),
            });
        }
    }
    let mut after = None;
    loop {
        let page = store
            .outbox(&OutboxQuery {
                after,
                limit: 1000,
                ..OutboxQuery::default()
            })
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.seq);
        for e in page {
            if e.record.kind != RecordKind::Deal {
                continue;
            }
            versions.insert(e.version.clone());
            let action: Option<Action> = serde_json::from_value(e.action.clone()).ok();
            // The moment the rule fired: an escalation's delay is added to its due time.
            let at = match &action {
                Some(Action::Escalate {
                    after: Some(delay), ..
                }) => Timestamp::from_millis(e.due.as_millis() - delay.0),
                _ => e.due,
            };
            if fired.insert((e.playbook.clone(), e.rule.clone(), e.record.id.clone(), at)) {
                out.firings.push(Firing {
                    playbook: e.playbook.clone(),
                    rule: e.rule.clone(),
                    deal: e.record.id.clone(),
                    at,
                });
            }
            if let Some(Action::Escalate { to, reason, .. }) = &action
                && !e.shadow
                && e.status != "cancelled"
                && !raised.contains(e.key.as_str())
            {
                let whom: Vec<RecordId> = match to {
                    Target::Person(p) => vec![p.clone()],
                    Target::Role(role) => people.with_role(*role).map(|p| p.id.clone()).collect(),
                    _ => Vec::new(),
                };
                for person in whom {
                    out.requests.push(Request {
                        deal: e.record.id.clone(),
                        person,
                        at: e.due,
                        what: format!("escalation: {reason}"),
                    });
                }
            }
        }
    }
    let mut sets = Vec::new();
    for version in &versions {
        if running.as_ref().is_some_and(|r| &r.version == version) {
            continue;
        }
        if let Some(set) = store.playbook_set(version).await? {
            sets.push(set);
        }
    }
    sets.extend(running);
    let mut rules: BTreeMap<(String, String), Covering> = BTreeMap::new();
    for set in &sets {
        for p in &set.playbooks {
            for r in p.rules.iter().filter(|r| !r.covers.is_empty()) {
                rules.insert(
                    (p.name.clone(), r.id.clone()),
                    Covering {
                        playbook: p.name.clone(),
                        rule: r.id.clone(),
                        covers: r.covers.clone(),
                        shadow: r.shadow,
                    },
                );
            }
        }
    }
    out.rules = rules.into_values().collect();
    for person in people.key_people() {
        let tasks = store
            .tasks(&TaskQuery {
                assignee: Some(person.id.as_str().to_owned()),
                status: Some("open".into()),
                limit: 10_000,
            })
            .await?;
        out.requests.extend(
            tasks
                .into_iter()
                .filter(|t| t.record.kind == RecordKind::Deal)
                .map(|t| Request {
                    deal: t.record.id,
                    person: person.id.clone(),
                    at: t.created_at,
                    what: format!("task: {}", t.title),
                }),
        );
    }
    Ok(out)
}

/// The report, read from the store.
pub async fn report(
    store: &dyn Store,
    running: Option<Arc<PlaybookSet>>,
    params: &HeroicsParams,
    now: Timestamp,
) -> Result<heroics::Report, Failed> {
    let (settings, options) = params.options(now)?;
    let history = history(store, settings, options.to).await?;
    let automation = automation(store, running, &history.people).await?;
    Ok(heroics::report(&history, &options, &automation))
}

/// Suggested rules from the store's history, and the owner their playbook names: the person
/// asked about, else the first key person.
pub async fn suggestions(
    store: &dyn Store,
    params: &HeroicsParams,
    now: Timestamp,
) -> Result<(Vec<heroics::Suggestion>, String), Failed> {
    let (settings, options) = params.options(now)?;
    let history = history(store, settings, options.to).await?;
    let found = heroics::suggest(
        &history,
        &heroics::SuggestOptions {
            min_support: params.min_support.unwrap_or(3),
            person: options.person.clone(),
        },
    );
    let owner = options
        .person
        .as_ref()
        .or_else(|| history.people.key_people().next().map(|p| &p.id))
        .map_or("revops", RecordId::as_str)
        .to_owned();
    Ok((found, owner))
}

/// Every asset an effect sent to a deal (delivered, or rendered in a dry run), with the use
/// case the playbook sent it for.
pub async fn asset_sends(store: &dyn Store) -> store::Result<Vec<heroics::assets::AssetSend>> {
    let mut sends = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .outbox(&OutboxQuery {
                after,
                channel: Some("email".into()),
                limit: 1000,
                ..OutboxQuery::default()
            })
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.seq);
        for e in page {
            if e.record.kind != RecordKind::Deal
                || !["delivered", "dry_run"].contains(&e.status.as_str())
            {
                continue;
            }
            if let Ok(Action::SendAsset {
                asset: playbook::AssetChoice::Named(asset),
                use_case,
                ..
            }) = serde_json::from_value::<Action>(e.action.clone())
            {
                sends.push(heroics::assets::AssetSend {
                    deal: e.record.id.clone(),
                    asset,
                    use_case,
                    at: e.due,
                });
            }
        }
    }
    Ok(sends)
}

/// Asset effectiveness from the store: the sends in the period against similar deals, over
/// the pipeline's stages as the running playbooks declare them; and the window in days.
pub async fn asset_report(
    store: &dyn Store,
    running: Option<Arc<PlaybookSet>>,
    params: &HeroicsParams,
    now: Timestamp,
) -> Result<(Vec<heroics::assets::AssetRow>, i64), Failed> {
    let (settings, options) = params.options(now)?;
    let within = span("within", params.within.as_deref(), 14)?;
    let history = history(store, settings, options.to).await?;
    let sends = asset_sends(store).await?;
    let stages = running
        .iter()
        .flat_map(|set| set.playbooks.iter().flat_map(|p| &p.stages))
        .map(|s| s.as_str().to_owned())
        .fold(Vec::new(), |mut all, s| {
            if !all.contains(&s) {
                all.push(s);
            }
            all
        });
    let rows = heroics::assets::effectiveness(
        &history.deals,
        &sends,
        &heroics::assets::AssetOptions {
            within,
            from: options.from,
            to: options.to,
            stages,
        },
    );
    Ok((rows, within / MILLIS_PER_DAY))
}

/// How asset effectiveness is wanted: JSON or a text table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetFormat {
    Json,
    Table,
}

impl AssetFormat {
    pub fn parse(format: &str) -> Result<Self, BadParam> {
        match format {
            "json" => Ok(Self::Json),
            "table" => Ok(Self::Table),
            other => Err(bad(
                "format",
                format!("expected json or table, got {other:?}"),
            )),
        }
    }

    /// The rows, with the window (in days) the table's footnote names.
    pub fn render(self, rows: &[heroics::assets::AssetRow], days: i64) -> Rendered {
        match self {
            Self::Json => ("application/json", json(&rows)),
            Self::Table => (
                "text/plain; charset=utf-8",
                heroics::assets::table(rows, days),
            ),
        }
    }
}

/// Asset effectiveness: for each asset and the use case it was sent for, how often the deal
/// advanced or the buyer replied within `within` of the send, beside similar deals not sent
/// it. The definitions are in `docs/heroics.md`.
#[utoipa::path(
    get, path = "/api/v1/reports/assets", tag = "heroics", params(HeroicsParams),
    responses((status = 200, description = "the report (JSON or a text table)"),
              (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn get_assets(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    caller.require(TokenRole::Reader)?;
    let params: HeroicsParams = query(&uri)?;
    let format =
        AssetFormat::parse(params.format.as_deref().unwrap_or("json")).map_err(Failed::from)?;
    let running = state.store.engine().map(|e| Arc::clone(e.playbooks()));
    let (rows, days) = asset_report(&*state.store, running, &params, state.clock.now()).await?;
    Ok(respond(format.render(&rows, days)))
}

/// Why a report or suggestions could not be made: a parameter, or the store.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    #[error(transparent)]
    Param(#[from] BadParam),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<Failed> for AppError {
    fn from(e: Failed) -> Self {
        match e {
            Failed::Param(p) => AppError::BadRequest("invalid_query", p.to_string()),
            Failed::Store(s) => s.into(),
        }
    }
}

/// A rendered answer: its media type and its text.
pub type Rendered = (&'static str, String);

/// How the report is wanted: json, a text table, or one section as CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Table,
    Csv(&'static str),
}

impl ReportFormat {
    pub fn parse(format: &str, section: &str) -> Result<Self, BadParam> {
        match format {
            "json" => Ok(Self::Json),
            "table" => Ok(Self::Table),
            "csv" => heroics::render::SECTIONS
                .iter()
                .find(|s| **s == section)
                .map(|s| Self::Csv(s))
                .ok_or_else(|| {
                    bad(
                        "section",
                        format!(
                            "expected one of {}, got {section:?}",
                            heroics::render::SECTIONS.join(", ")
                        ),
                    )
                }),
            other => Err(bad(
                "format",
                format!("expected json, table or csv, got {other:?}"),
            )),
        }
    }

    pub fn render(self, report: &heroics::Report) -> Rendered {
        match self {
            Self::Json => ("application/json", json(report)),
            Self::Table => ("text/plain; charset=utf-8", heroics::render::table(report)),
            Self::Csv(section) => (
                "text/csv; charset=utf-8",
                heroics::render::csv(report, section).unwrap_or_default(),
            ),
        }
    }
}

/// How suggestions are wanted: a playbook (YAML) to review, or the patterns as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestFormat {
    Yaml,
    Json,
}

impl SuggestFormat {
    pub fn parse(format: &str) -> Result<Self, BadParam> {
        match format {
            "yaml" => Ok(Self::Yaml),
            "json" => Ok(Self::Json),
            other => Err(bad(
                "format",
                format!("expected yaml or json, got {other:?}"),
            )),
        }
    }

    /// The suggestions; as YAML, a playbook named `suggested` owned by `owner`.
    pub fn render(self, found: &[heroics::Suggestion], owner: &str) -> Rendered {
        match self {
            Self::Yaml => (
                "application/yaml; charset=utf-8",
                heroics::playbook_yaml("suggested", owner, found),
            ),
            Self::Json => ("application/json", json(&found)),
        }
    }
}

fn json(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn respond((content_type, body): Rendered) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The heroics report: how often key people step in on deals they do not own, why, where,
/// with what money behind it, which deals wait on them, and what the playbooks cover. The
/// definitions are in `docs/heroics.md`.
#[utoipa::path(
    get, path = "/api/v1/reports/heroics", tag = "heroics", params(HeroicsParams),
    responses((status = 200, description = "the report (JSON, a text table or CSV)"),
              (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn get_report(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    caller.require(TokenRole::Reader)?;
    let params: HeroicsParams = query(&uri)?;
    let format = ReportFormat::parse(
        params.format.as_deref().unwrap_or("json"),
        params.section.as_deref().unwrap_or("months"),
    )
    .map_err(Failed::from)?;
    let running = state.store.engine().map(|e| Arc::clone(e.playbooks()));
    let report = report(&*state.store, running, &params, state.clock.now()).await?;
    Ok(respond(format.render(&report)))
}

/// Candidate rules mined from past interventions, with their support: a playbook to review,
/// edit and backtest (YAML), or the patterns as JSON.
#[utoipa::path(
    get, path = "/api/v1/suggestions", tag = "heroics", params(HeroicsParams),
    responses((status = 200, description = "a playbook (YAML) or the suggestions (JSON)"),
              (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn get_suggestions(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    caller.require(TokenRole::Reader)?;
    let params: HeroicsParams = query(&uri)?;
    let format =
        SuggestFormat::parse(params.format.as_deref().unwrap_or("yaml")).map_err(Failed::from)?;
    let (found, owner) = suggestions(&*state.store, &params, state.clock.now()).await?;
    Ok(respond(format.render(&found, &owner)))
}
