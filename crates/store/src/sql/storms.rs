//! The storm guard: watching rules, judging each effect a watched rule decides (pass, hold,
//! or cancel with a discarded storm), and a person's decision about a storm.

use std::collections::HashMap;

use domain::Timestamp;
use engine::Effect;

use super::apply;
use super::sequences::Cx;
use super::{Row, Sql, args, decode, encode};
use crate::{Error, NewStorm, Result, Storm, StormDecision, StormQuery, StormReason};

const HOUR: i64 = 3_600_000;

const COLUMNS: &str = "id, rule, playbook, owner, version, reason, since, watch_until,
    record_limit, status, held, holding_since, preview, decided_at, decided_by, note";

/// A storm from its row ([`COLUMNS`]); a watch that ran out at `now` reads as `ended`.
fn storm(mut r: Row, now: Timestamp) -> Result<Storm> {
    let watch_until = r.millis(7)?;
    let mut status = r.text(9)?;
    if status == "watching" && watch_until <= now {
        status = "ended".into();
    }
    let reason = r.text(5)?;
    Ok(Storm {
        id: r.text(0)?,
        rule: r.text(1)?,
        playbook: r.text(2)?,
        owner: r.text(3)?,
        version: r.text(4)?,
        reason: StormReason::parse(&reason)
            .ok_or_else(|| Error::Corrupt(format!("storm reason {reason:?}")))?,
        since: r.millis(6)?,
        watch_until,
        limit: u32::try_from(r.int(8)?).map_err(|e| Error::Corrupt(e.to_string()))?,
        status,
        held: u64::try_from(r.int(10)?).map_err(|e| Error::Corrupt(e.to_string()))?,
        holding_since: r.opt_millis(11)?,
        preview: r.opt_text(12)?.map(|p| decode(&p)).transpose()?,
        decided_at: r.opt_millis(13)?,
        decided_by: r.opt_text(14)?,
        note: r.opt_text(15)?,
    })
}

/// Starts watching rules. A rule already holding keeps its storm (and its held effects),
/// watched until the later of the two ends; one merely watched is watched anew. The storms
/// now in force for those rules.
pub(crate) fn watch(sql: &mut dyn Sql, storms: &[NewStorm], now: Timestamp) -> Result<Vec<Storm>> {
    let mut out = Vec::with_capacity(storms.len());
    for s in storms {
        let holding = sql
            .query_opt(
                "SELECT id, watch_until FROM storms WHERE rule = ?1 AND status = 'holding'",
                args![&s.rule],
            )?
            .map(|mut r| Ok::<_, Error>((r.text(0)?, r.millis(1)?)))
            .transpose()?;
        let id = match holding {
            Some((id, until)) => {
                sql.execute(
                    "UPDATE storms SET watch_until = ?2 WHERE id = ?1",
                    args![&id, until.max(s.watch_until).as_millis()],
                )?;
                id
            }
            None => {
                sql.execute(
                    "UPDATE storms SET status = 'ended' WHERE rule = ?1 AND status = 'watching'",
                    args![&s.rule],
                )?;
                let id = engine::key(&[
                    "storm",
                    &s.rule,
                    s.reason.as_str(),
                    &s.since.as_millis().to_string(),
                ]);
                let preview = s.preview.as_ref().map(encode).transpose()?;
                sql.execute(
                    "INSERT INTO storms (id, rule, playbook, owner, version, reason, since,
                                         watch_until, record_limit, status, holding_since,
                                         preview)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (id) DO NOTHING",
                    args![
                        &id,
                        &s.rule,
                        &s.playbook,
                        &s.owner,
                        &s.version,
                        s.reason.as_str(),
                        s.since.as_millis(),
                        s.watch_until.as_millis(),
                        i64::from(s.limit),
                        if s.holding { "holding" } else { "watching" },
                        s.holding.then_some(s.since.as_millis()),
                        preview.as_deref()
                    ],
                )?;
                if s.holding {
                    opened(&s.rule, s.reason);
                }
                id
            }
        };
        out.push(one(sql, &id, now)?);
    }
    Ok(out)
}

fn opened(rule: &str, reason: StormReason) {
    metrics::counter!("pipewright_storms_held_total").increment(1);
    tracing::warn!(
        rule,
        reason = reason.as_str(),
        "storm guard: the rule's effects are held until a person approves or discards them"
    );
}

fn one(sql: &mut dyn Sql, id: &str, now: Timestamp) -> Result<Storm> {
    let row = sql
        .query_opt(
            &format!("SELECT {COLUMNS} FROM storms WHERE id = ?1"),
            args![id],
        )?
        .ok_or_else(|| Error::NotFound(format!("storm {id}")))?;
    storm(row, now)
}

pub(crate) fn get(sql: &mut dyn Sql, id: &str, now: Timestamp) -> Result<Option<Storm>> {
    match one(sql, id, now) {
        Err(Error::NotFound(_)) => Ok(None),
        other => other.map(Some),
    }
}

pub(crate) fn list(sql: &mut dyn Sql, q: &StormQuery, now: Timestamp) -> Result<Vec<Storm>> {
    let limit = q.limit as i64;
    let at = now.as_millis();
    let order = "ORDER BY since DESC, rule LIMIT";
    let rows = match q.status.as_deref() {
        None => sql.query(
            &format!("SELECT {COLUMNS} FROM storms {order} ?1"),
            args![limit],
        )?,
        Some("open") => sql.query(
            &format!(
                "SELECT {COLUMNS} FROM storms
                 WHERE status = 'holding' OR (status = 'watching' AND watch_until > ?1)
                 {order} ?2"
            ),
            args![at, limit],
        )?,
        Some("ended") => sql.query(
            &format!(
                "SELECT {COLUMNS} FROM storms
                 WHERE (status = 'watching' AND watch_until <= ?1) OR status = 'ended'
                 {order} ?2"
            ),
            args![at, limit],
        )?,
        Some("watching") => sql.query(
            &format!(
                "SELECT {COLUMNS} FROM storms WHERE status = 'watching' AND watch_until > ?1
                 {order} ?2"
            ),
            args![at, limit],
        )?,
        Some(other) => sql.query(
            &format!("SELECT {COLUMNS} FROM storms WHERE status = ?1 {order} ?2"),
            args![other, limit],
        )?,
    };
    rows.into_iter().map(|r| storm(r, now)).collect()
}

/// What becomes of one effect a rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Held with the storm of its rule.
    Hold,
    /// Cancelled: its rule's storm was discarded, and it was decided for a moment before.
    Cancel(String),
}

/// A storm in force, as the guard holds it for one transaction.
struct Watched {
    id: String,
    status: String,
    limit: i64,
    decided_at: Option<Timestamp>,
    decided_by: Option<String>,
    reason: StormReason,
    /// Records acted on within the last hour, once counted in this transaction.
    recent: Option<i64>,
}

/// The storms in force while one transaction adds effects, read once.
#[derive(Default)]
pub(crate) struct Guard {
    by_rule: HashMap<String, Watched>,
}

impl Guard {
    /// The storms in force at `now`: holding, or watching (or discarded) until later.
    pub(crate) fn load(sql: &mut dyn Sql, now: Timestamp) -> Result<Self> {
        let rows = sql.query(
            "SELECT id, rule, status, record_limit, decided_at, decided_by, reason FROM storms
             WHERE status = 'holding'
                OR (status IN ('watching', 'discarded') AND watch_until > ?1)",
            args![now.as_millis()],
        )?;
        let mut by_rule = HashMap::with_capacity(rows.len());
        for mut r in rows {
            by_rule.insert(
                r.text(1)?,
                Watched {
                    id: r.text(0)?,
                    status: r.text(2)?,
                    limit: r.int(3)?,
                    decided_at: r.opt_millis(4)?,
                    decided_by: r.opt_text(5)?,
                    reason: StormReason::parse(&r.text(6)?).unwrap_or(StormReason::Reaches),
                    recent: None,
                },
            );
        }
        Ok(Self { by_rule })
    }

    /// Whether effects of `rule` are judged: a storm is in force for it.
    pub(crate) fn watches(&self, rule: &str) -> bool {
        self.by_rule.contains_key(rule)
    }

    /// Judges one effect a rule decided, counting its record for a watched rule; a watched rule
    /// past its limit starts holding here.
    pub(crate) fn judge(
        &mut self,
        sql: &mut dyn Sql,
        e: &Effect,
        now: Timestamp,
    ) -> Result<Verdict> {
        let Some(w) = self.by_rule.get_mut(&e.rule) else {
            return Ok(Verdict::Pass);
        };
        match w.status.as_str() {
            "holding" => Ok(Verdict::Hold),
            "discarded" => Ok(match w.decided_at {
                Some(at) if e.at <= at => Verdict::Cancel(format!(
                    "discarded with the storm of rule {} by {}",
                    e.rule,
                    w.decided_by.as_deref().unwrap_or("a person")
                )),
                _ => Verdict::Pass,
            }),
            "watching" => {
                let new = sql.execute(
                    "INSERT INTO storm_records (storm, record_kind, record_id, at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    args![
                        &w.id,
                        e.record.kind.as_str(),
                        e.record.id.as_str(),
                        now.as_millis()
                    ],
                )? == 1;
                if !new {
                    return Ok(Verdict::Pass);
                }
                let recent = match w.recent {
                    Some(n) => n + 1,
                    None => sql
                        .query_opt(
                            "SELECT count(*) FROM storm_records WHERE storm = ?1 AND at > ?2",
                            args![&w.id, now.as_millis() - HOUR],
                        )?
                        .map(|r| r.int(0))
                        .transpose()?
                        .unwrap_or(1),
                };
                w.recent = Some(recent);
                if recent <= w.limit {
                    return Ok(Verdict::Pass);
                }
                sql.execute(
                    "UPDATE storms SET status = 'holding', holding_since = ?2 WHERE id = ?1",
                    args![&w.id, now.as_millis()],
                )?;
                w.status = "holding".into();
                opened(&e.rule, w.reason);
                Ok(Verdict::Hold)
            }
            _ => Ok(Verdict::Pass),
        }
    }

    /// Counts an effect held with its rule's storm.
    pub(crate) fn held(&self, sql: &mut dyn Sql, e: &Effect) -> Result<()> {
        if let Some(w) = self.by_rule.get(&e.rule) {
            sql.execute(
                "UPDATE storms SET held = held + 1 WHERE id = ?1",
                args![&w.id],
            )?;
        }
        Ok(())
    }
}

/// A person's decision about a storm that is watching or holding: approved, the held effects
/// go out in the order they were decided, each acted on as it would have been when added;
/// discarded, they are cancelled.
pub(crate) fn decide(
    sql: &mut dyn Sql,
    cx: &Cx<'_>,
    id: &str,
    decision: &StormDecision,
    now: Timestamp,
) -> Result<Storm> {
    let s = one(sql, id, now)?;
    if !matches!(s.status.as_str(), "watching" | "holding") {
        return Err(Error::Conflict(format!(
            "the storm of rule {} is {} already",
            s.rule, s.status
        )));
    }
    let (status, by, note) = match decision {
        StormDecision::Approve { by, note } => ("approved", by, note),
        StormDecision::Discard { by, note } => ("discarded", by, note),
    };
    if by.trim().is_empty() {
        return Err(Error::Invalid("who decides must be given".into()));
    }
    sql.execute(
        "UPDATE storms SET status = ?2, decided_at = ?3, decided_by = ?4, note = ?5 WHERE id = ?1",
        args![id, status, now.as_millis(), by.as_str(), note.as_deref()],
    )?;
    let held = sql.query(
        "SELECT key FROM effects WHERE rule = ?1 AND status = 'held' ORDER BY seq",
        args![&s.rule],
    )?;
    let keys = held
        .into_iter()
        .map(|mut r| r.text(0))
        .collect::<Result<Vec<_>>>()?;
    match decision {
        StormDecision::Approve { .. } => {
            for key in &keys {
                apply::release(sql, cx, key, now)?;
            }
        }
        StormDecision::Discard { by, .. } => {
            let why = format!("discarded with the storm of rule {} by {by}", s.rule);
            for key in &keys {
                sql.execute(
                    "UPDATE effects SET status = 'cancelled', last_error = ?2 WHERE key = ?1",
                    args![key.as_str(), why.as_str()],
                )?;
            }
        }
    }
    tracing::info!(rule = %s.rule, decision = status, effects = keys.len(), by = %by, "storm decided");
    one(sql, id, now)
}

/// A page of deals and leads, in storage order after `after`, with the rules' memory of them.
pub(crate) fn rule_page(sql: &mut dyn Sql, after: i64, limit: usize) -> Result<crate::RulePage> {
    let position = sql.dialect().record_position();
    let rows = sql.query(
        &format!(
            "SELECT {position}, kind, id, state, memory FROM records
             WHERE {position} > ?1 AND kind IN ('deal', 'lead')
             ORDER BY {position} LIMIT ?2"
        ),
        args![after, limit as i64],
    )?;
    let next = if rows.len() == limit {
        rows.last().map(|r| r.int(0)).transpose()?
    } else {
        None
    };
    let records = rows
        .into_iter()
        .map(|mut r| {
            let key = r.record_key(1)?;
            Ok((
                super::codec::decode(key.kind, &r.text(3)?)?,
                decode(&r.text(4)?)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::RulePage { records, next })
}
