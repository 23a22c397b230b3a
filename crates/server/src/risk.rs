//! Risk over the store: learning from its closed deals and sharing what was learned with every
//! node, the open deals ranked by risk with their reasons, and the evaluation of the warnings
//! and the score on the stored history.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use clock::Clock;
use domain::{Deal, DealStatus, RecordKey, RecordKind, Timestamp};
use risk::{Contribution, DealHistory, Learned, Model};
use store::{Engine, ListQuery, PublishedRisk, Store};

use crate::heroics::each_deal;

/// The settings a model was learned under, as JSON: a published model fits the running
/// playbooks only if they agree.
pub fn fingerprint(model: &Model) -> String {
    // The stages too: a fitted model's stage baselines are by the stages' order.
    serde_json::json!({ "settings": model.settings, "stages": model.stages, "late": model.late })
        .to_string()
}

/// The events before `until` of every deal that had closed by then.
pub async fn closed_histories(
    store: &dyn Store,
    until: Timestamp,
) -> store::Result<Vec<DealHistory>> {
    let all = each_deal(store, until, &|id, events| {
        let history = DealHistory {
            key: RecordKey::new(RecordKind::Deal, id),
            events,
        };
        let closed = history.deal().is_some_and(|d| d.status != DealStatus::Open);
        closed.then_some(history)
    })
    .await?;
    Ok(all.into_iter().flatten().collect())
}

/// What the closed deals before `until` teach `model`'s settings.
pub async fn learn(store: &dyn Store, model: &Model, until: Timestamp) -> store::Result<Learned> {
    let histories = closed_histories(store, until).await?;
    let model = model.clone();
    // Fitting is CPU work: off the async threads.
    tokio::task::spawn_blocking(move || risk::learn(&model, &histories))
        .await
        .map_err(|e| store::Error::Invalid(format!("learning failed: {e}")))
}

/// The model to score with now: the running engine's (or the defaults without playbooks), with
/// the newest published learning if it was learned under the same settings, else learned from
/// the store now (not published).
pub async fn current(
    store: &dyn Store,
    engine: Option<&Engine>,
    now: Timestamp,
) -> store::Result<Model> {
    let base = engine.map_or_else(Model::default, |e| e.risk().clone());
    if let Some(p) = store.latest_risk().await?
        && p.settings == fingerprint(&base)
    {
        return Ok(base.with_learned(p.learned));
    }
    let learned = learn(store, &base, now).await?;
    Ok(base.with_learned(learned))
}

/// What the server scores with: the running engine's model (the defaults without playbooks).
pub fn running(store: &dyn Store) -> Model {
    store
        .engine()
        .map_or_else(Model::default, |e| e.risk().clone())
}

/// At start: runs the newest published learning at once if it fits the running playbooks, so
/// records are armed once, with it.
pub async fn adopt(store: &dyn Store) -> store::Result<()> {
    if let Some(p) = store.latest_risk().await? {
        run(store, p);
    }
    Ok(())
}

/// Runs a publication if it was learned under the running playbooks' risk settings (another
/// node's, under older playbooks, is not for this one) and the engine does not run it yet.
fn run(store: &dyn Store, p: PublishedRisk) {
    if let Some(engine) = store.engine()
        && p.settings == fingerprint(engine.risk())
        && engine.risk().learned != p.learned
    {
        store.set_engine(Some(Arc::new(engine.with_learned(p.learned))));
    }
}

/// Keeps every node scoring with one learned model: when the newest published one is older
/// than `refit` or was learned under other settings than the running playbooks', learns from
/// the store and publishes; whenever the newest published differs from what the engine runs,
/// the engine takes it (its warning timers are re-armed by the timer loop).
pub async fn keep_learned(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    node: String,
    refit: Duration,
    poll: Duration,
) {
    loop {
        if let Err(e) = learn_once(&*store, &*clock, &node, refit).await {
            tracing::warn!(error = ?e, "cannot bring the risk model up to date; will retry");
        }
        tokio::time::sleep(poll).await;
    }
}

/// One round of [`keep_learned`].
pub async fn learn_once(
    store: &dyn Store,
    clock: &dyn Clock,
    node: &str,
    refit: Duration,
) -> store::Result<()> {
    let Some(engine) = store.engine() else {
        return Ok(());
    };
    let settings = fingerprint(engine.risk());
    let now = clock.now();
    let latest = store.latest_risk().await?;
    let fresh = latest.filter(|p| {
        p.settings == settings
            && now.as_millis() - p.learned_at.as_millis() < refit.as_millis() as i64
    });
    let latest = if let Some(fresh) = fresh {
        fresh
    } else {
        let started = std::time::Instant::now();
        let learned = learn(store, engine.risk(), now).await?;
        let model = engine.risk().with_learned(learned.clone());
        tracing::info!(
            scoring = %model.scoring(),
            took_ms = started.elapsed().as_millis() as u64,
            "risk model learned from the closed deals"
        );
        let published = PublishedRisk {
            learned,
            settings: settings.clone(),
            learned_at: now,
            node: node.to_owned(),
        };
        store.publish_risk(published.clone()).await?;
        // Run what every node reads back (numbers as stored), so all run the same.
        store.latest_risk().await?.unwrap_or(published)
    };
    run(store, latest);
    Ok(())
}

/// An open deal with its risk, for the pipeline that needs attention.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtRisk {
    pub id: String,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub stage: Option<String>,
    /// In major units of `currency`.
    pub amount: Option<f64>,
    pub currency: Option<String>,
    pub score: f64,
    /// The score of a deal in its stage with no warning (0 for rule-based weights).
    pub baseline: f64,
    pub at_risk: bool,
    /// The amount weighted by the score: what the ranking orders by.
    pub value_at_risk: f64,
    pub warnings: Vec<Contribution>,
}

impl AtRisk {
    pub fn of(deal: &Deal, model: &Model, now: Timestamp) -> Self {
        let a = model.assess(deal, now);
        let amount = deal.amount.map(|m| m.major());
        Self {
            id: deal.id.as_str().to_owned(),
            name: deal.name.clone(),
            owner: deal.owner.as_ref().map(|o| o.as_str().to_owned()),
            stage: deal.stage.as_ref().map(|s| s.as_str().to_owned()),
            amount,
            currency: deal.amount.map(|m| m.currency.as_str().to_owned()),
            score: a.score,
            baseline: a.baseline,
            at_risk: a.at_risk,
            value_at_risk: amount.unwrap_or(0.0) * a.score,
            warnings: a.warnings,
        }
    }
}

/// Which open deals to rank.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankQuery {
    pub owner: Option<String>,
    /// Only deals at risk (a warning that raises the score) scoring at least this (the
    /// settings' threshold when absent).
    pub min_score: Option<f64>,
    /// Every open deal, warnings or not.
    pub all: bool,
    pub limit: usize,
}

/// The open deals, ranked by value at risk (amount × score), then score: with the reasons.
pub async fn ranked(
    store: &dyn Store,
    model: &Model,
    now: Timestamp,
    query: &RankQuery,
) -> store::Result<Vec<AtRisk>> {
    let min = if query.all {
        0.0
    } else {
        query.min_score.unwrap_or(model.settings.threshold)
    };
    let mut out = Vec::new();
    let mut list = ListQuery::new(RecordKind::Deal);
    list.owner = query.owner.clone();
    list.limit = 1000;
    loop {
        let page = store.list(&list).await?;
        for r in &page.items {
            if let domain::Record::Deal(d) = &r.record
                && d.status == DealStatus::Open
            {
                let a = AtRisk::of(d, model, now);
                if query.all || (a.score >= min && a.at_risk) {
                    out.push(a);
                }
            }
        }
        match page.next {
            Some(next) => list.after = Some(next),
            None => break,
        }
    }
    out.sort_by(|a, b| {
        b.value_at_risk
            .total_cmp(&a.value_at_risk)
            .then(b.score.total_cmp(&a.score))
            .then(a.id.cmp(&b.id))
    });
    out.truncate(query.limit.max(1));
    Ok(out)
}

/// The evaluation on the stored history: learned from the oldest `split` of the closed deals,
/// judged on the rest.
pub async fn evaluate(
    store: &dyn Store,
    model: &Model,
    until: Timestamp,
    split: f64,
) -> store::Result<risk::Evaluation> {
    let histories = closed_histories(store, until).await?;
    let model = model.clone();
    tokio::task::spawn_blocking(move || risk::evaluate(&model, &histories, split))
        .await
        .map_err(|e| store::Error::Invalid(format!("the evaluation failed: {e}")))
}

/// What `/api/v1/risk/deals` takes.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RiskParams {
    /// Only this owner's deals.
    pub owner: Option<String>,
    /// Only deals scoring at least this (default: the playbooks' threshold).
    pub min_score: Option<f64>,
    /// Every open deal, whatever its score.
    pub all: Option<bool>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<usize>,
    /// For the evaluation: the share of closed deals learned from, the oldest (default 0.7).
    pub split: Option<f64>,
    /// For the evaluation: `json` (default) or `table`.
    pub format: Option<String>,
}

/// The open deals at risk, ranked by value at risk (amount × score), each with its warnings
/// in words and their weights.
#[utoipa::path(
    get, path = "/api/v1/risk/deals", tag = "risk", params(RiskParams),
    responses((status = 200, description = "the deals, riskiest value first"),
              (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn get_deals(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    caller: crate::auth::Caller,
    uri: axum::http::Uri,
) -> Result<axum::Json<serde_json::Value>, crate::error::AppError> {
    caller.require(store::TokenRole::Reader)?;
    let params: RiskParams = crate::api::query(&uri)?;
    if let Some(m) = params.min_score
        && !(0.0..=1.0).contains(&m)
    {
        return Err(crate::error::AppError::BadRequest(
            "invalid_query",
            format!("min_score is between 0 and 1, not {m}"),
        ));
    }
    let now = state.clock.now();
    let model = running(&*state.store);
    let deals = ranked(
        &*state.store,
        &model,
        now,
        &RankQuery {
            owner: params.owner,
            min_score: params.min_score,
            all: params.all.unwrap_or(false),
            limit: params.limit.unwrap_or(50).min(1000),
        },
    )
    .await?;
    Ok(axum::Json(serde_json::json!({
        "at": now,
        "threshold": model.settings.threshold,
        "scoring": model.scoring(),
        "scoring_says": model.scoring().to_string(),
        "deals": deals,
    })))
}

/// What the score runs on: the settings, the late stages, the won deals' time in each stage
/// and the weights (rule-based or fitted, and on how much data).
#[utoipa::path(
    get, path = "/api/v1/risk/model", tag = "risk",
    responses((status = 200, description = "the model")),
    security(("token" = []))
)]
pub async fn get_model(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    caller: crate::auth::Caller,
) -> Result<axum::Json<serde_json::Value>, crate::error::AppError> {
    caller.require(store::TokenRole::Reader)?;
    Ok(axum::Json(describe(&running(&*state.store))))
}

/// The model as JSON: what `get_model` and `pipewright risk model` show.
pub fn describe(model: &Model) -> serde_json::Value {
    let weights: Vec<serde_json::Value> = risk::Kind::ALL
        .iter()
        .enumerate()
        .map(|(i, k)| {
            serde_json::json!({
                "warning": k,
                "on": model.settings.is_on(*k),
                "rule_weight": model.settings.weight(*k),
                "fitted_weight": model.learned.fitted.as_ref().map(|f| f.weights[i]),
            })
        })
        .collect();
    serde_json::json!({
        "scoring": model.scoring(),
        "scoring_says": model.scoring().to_string(),
        "threshold": model.settings.threshold,
        "late_stages": model.late,
        "settings": model.settings,
        "weights": weights,
        "bias": model.learned.fitted.as_ref().map(|f| f.bias),
        "stages": model.learned.stages,
    })
}

/// How well the warnings and the score foresaw the deals that were lost, on a time split of
/// the stored closed deals.
#[utoipa::path(
    get, path = "/api/v1/risk/evaluation", tag = "risk", params(RiskParams),
    responses((status = 200, description = "the evaluation (JSON or a text table)"),
              (status = 400, description = "invalid_query")),
    security(("token" = []))
)]
pub async fn get_evaluation(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    caller: crate::auth::Caller,
    uri: axum::http::Uri,
) -> Result<axum::response::Response, crate::error::AppError> {
    use axum::response::IntoResponse;
    caller.require(store::TokenRole::Reader)?;
    let params: RiskParams = crate::api::query(&uri)?;
    let split = params.split.unwrap_or(0.7);
    if !(split > 0.0 && split < 1.0) {
        return Err(crate::error::AppError::BadRequest(
            "invalid_query",
            format!(
                "split is between 0 and 1 (the share of closed deals learned from), not {split}"
            ),
        ));
    }
    let engine = state.store.engine();
    let base = engine.as_deref().map_or_else(Model::default, |e| {
        e.risk().with_learned(Learned::default())
    });
    let e = evaluate(&*state.store, &base, state.clock.now(), split).await?;
    Ok(match params.format.as_deref().unwrap_or("json") {
        "json" => axum::Json(e).into_response(),
        "table" => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            e.table(),
        )
            .into_response(),
        other => {
            return Err(crate::error::AppError::BadRequest(
                "invalid_query",
                format!("format is json or table, not {other:?}"),
            ));
        }
    })
}
