//! Alarms about the automation: raised, refreshed and resolved by the monitor's passes (one
//! alarm per kind and subject while its condition lasts), acted on by people; and the readings
//! the monitor takes (rules' firings, channels' recent attempts, dead letters).

use std::collections::{HashMap, HashSet};

use domain::Timestamp;

use super::{Row, Sql, args, decode, encode};
use crate::{
    Alarm, AlarmAction, AlarmKind, AlarmQuery, AlarmSync, AlarmsSynced, ChannelAttempts,
    DeadLetters, Error, MONITOR, Result, RuleFirings,
};

const COLUMNS: &str = "id, kind, subject, title, detail, status, opened_at, updated_at,
    acknowledged_at, acknowledged_by, note, resolved_at, resolved_by, resolution";

const DAY: i64 = 86_400_000;

/// Outcomes of a delivery attempt that failed (see `outbox::finish`).
const FAILED: &str = "a.outcome IN ('retry', 'dead')";

fn alarm(mut r: Row) -> Result<Alarm> {
    let kind = r.text(1)?;
    Ok(Alarm {
        id: r.text(0)?,
        kind: AlarmKind::parse(&kind)
            .ok_or_else(|| Error::Corrupt(format!("alarm kind {kind:?}")))?,
        subject: r.text(2)?,
        title: r.text(3)?,
        detail: decode(&r.text(4)?)?,
        status: r.text(5)?,
        opened_at: r.millis(6)?,
        updated_at: r.millis(7)?,
        acknowledged_at: r.opt_millis(8)?,
        acknowledged_by: r.opt_text(9)?,
        note: r.opt_text(10)?,
        resolved_at: r.opt_millis(11)?,
        resolved_by: r.opt_text(12)?,
        resolution: r.opt_text(13)?,
    })
}

pub(crate) fn get(sql: &mut dyn Sql, id: &str) -> Result<Option<Alarm>> {
    sql.query_opt(
        &format!("SELECT {COLUMNS} FROM alarms WHERE id = ?1"),
        args![id],
    )?
    .map(alarm)
    .transpose()
}

fn one(sql: &mut dyn Sql, id: &str) -> Result<Alarm> {
    get(sql, id)?.ok_or_else(|| Error::NotFound(format!("alarm {id}")))
}

/// Alarms, newest first.
pub(crate) fn list(sql: &mut dyn Sql, q: &AlarmQuery) -> Result<Vec<Alarm>> {
    let (status, unresolved) = match q.status.as_deref() {
        Some("unresolved") => (None, true),
        other => (other, false),
    };
    sql.query(
        &format!(
            "SELECT {COLUMNS} FROM alarms
             WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1)
               AND (?2 = 0 OR status <> 'resolved')
               AND (CAST(?3 AS TEXT) IS NULL OR kind = ?3)
             ORDER BY opened_at DESC, id LIMIT ?4"
        ),
        args![
            status,
            i64::from(unresolved),
            q.kind.map(AlarmKind::as_str),
            q.limit as i64
        ],
    )?
    .into_iter()
    .map(alarm)
    .collect()
}

/// The alarm of a kind and subject whose condition has not been seen to clear.
struct Current {
    id: String,
    status: String,
    updated_at: Timestamp,
}

/// One monitor pass: for each kind, every condition that holds now opens an alarm or refreshes
/// the one it has; an alarm whose condition is gone is resolved by the monitor (after the
/// kind's quiet time) with the reason, and one a person resolved while it held is marked
/// cleared, so the next occurrence opens anew.
pub(crate) fn sync(sql: &mut dyn Sql, syncs: &[AlarmSync], now: Timestamp) -> Result<AlarmsSynced> {
    let mut out = AlarmsSynced::default();
    let at = now.as_millis();
    for s in syncs {
        let kind = s.kind.as_str();
        let mut known: HashMap<String, Current> = HashMap::new();
        for mut r in sql.query(
            "SELECT subject, id, status, updated_at FROM alarms
             WHERE kind = ?1 AND cleared_at IS NULL",
            args![kind],
        )? {
            known.insert(
                r.text(0)?,
                Current {
                    id: r.text(1)?,
                    status: r.text(2)?,
                    updated_at: r.millis(3)?,
                },
            );
        }
        let mut seen = HashSet::new();
        for c in &s.current {
            if !seen.insert(c.subject.as_str()) {
                continue;
            }
            let detail = encode(&c.detail)?;
            match known.get(&c.subject) {
                Some(k) if k.status != "resolved" => {
                    sql.execute(
                        "UPDATE alarms SET title = ?2, detail = ?3, updated_at = ?4 WHERE id = ?1",
                        args![&k.id, &c.title, &detail, at],
                    )?;
                }
                // A person resolved it while the condition held: quiet until it clears.
                Some(_) => {}
                None => {
                    let id = engine::key(&["alarm", kind, &c.subject, &at.to_string()]);
                    // Another node may have opened it a moment ago: the unique index on the
                    // current (kind, subject) keeps it one.
                    let added = sql.execute(
                        "INSERT INTO alarms (id, kind, subject, title, detail, status, opened_at,
                                             updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?6)
                         ON CONFLICT DO NOTHING",
                        args![&id, kind, &c.subject, &c.title, &detail, at],
                    )?;
                    if added == 1 {
                        out.opened.push(one(sql, &id)?);
                    }
                }
            }
        }
        for (subject, k) in &known {
            if seen.contains(subject.as_str()) {
                continue;
            }
            if k.status == "resolved" {
                sql.execute(
                    "UPDATE alarms SET cleared_at = ?2 WHERE id = ?1",
                    args![&k.id, at],
                )?;
            } else if k.updated_at.as_millis() <= at - s.quiet_ms {
                let why = s.cleared_because.get(subject).unwrap_or(&s.cleared);
                sql.execute(
                    "UPDATE alarms SET status = 'resolved', resolved_at = ?2, resolved_by = ?3,
                         resolution = ?4, cleared_at = ?2
                     WHERE id = ?1",
                    args![&k.id, at, MONITOR, why.as_str()],
                )?;
                out.resolved.push(one(sql, &k.id)?);
            }
        }
    }
    for mut r in sql.query(
        "SELECT kind, status, count(*) FROM alarms WHERE status <> 'resolved'
         GROUP BY kind, status ORDER BY kind, status",
        &[],
    )? {
        let kind = r.text(0)?;
        let kind = AlarmKind::parse(&kind)
            .ok_or_else(|| Error::Corrupt(format!("alarm kind {kind:?}")))?;
        out.unresolved
            .push((kind, r.text(1)?, r.int(2)?.max(0) as u64));
    }
    Ok(out)
}

/// A person acknowledges or resolves an alarm.
pub(crate) fn act(
    sql: &mut dyn Sql,
    id: &str,
    action: &AlarmAction,
    now: Timestamp,
) -> Result<Alarm> {
    let a = one(sql, id)?;
    if a.is_resolved() {
        return Err(Error::Conflict(format!(
            "the alarm is resolved already, by {}",
            a.resolved_by.as_deref().unwrap_or("someone")
        )));
    }
    let at = now.as_millis();
    match action {
        AlarmAction::Acknowledge { by, note } => {
            if by.trim().is_empty() {
                return Err(Error::Invalid("who acknowledges must be given".into()));
            }
            if let Some(who) = &a.acknowledged_by {
                return Err(Error::Conflict(format!(
                    "the alarm is acknowledged already, by {who}"
                )));
            }
            sql.execute(
                "UPDATE alarms SET status = 'acknowledged', acknowledged_at = ?2,
                     acknowledged_by = ?3, note = ?4
                 WHERE id = ?1",
                args![id, at, by.trim(), note.as_deref()],
            )?;
        }
        AlarmAction::Resolve { by, resolution } => {
            if by.trim().is_empty() {
                return Err(Error::Invalid("who resolves must be given".into()));
            }
            if resolution.trim().is_empty() {
                return Err(Error::Invalid(
                    "a resolution needs a few words on how it was handled".into(),
                ));
            }
            sql.execute(
                "UPDATE alarms SET status = 'resolved', resolved_at = ?2, resolved_by = ?3,
                     resolution = ?4
                 WHERE id = ?1",
                args![id, at, by.trim(), resolution.trim()],
            )?;
        }
    }
    one(sql, id)
}

/// Every rule's firings: effects, the days it fired on, the first and the last.
pub(crate) fn rule_firings(sql: &mut dyn Sql) -> Result<Vec<RuleFirings>> {
    sql.query(
        "SELECT rule, count(*), count(DISTINCT created_at / ?1), min(created_at), max(created_at)
         FROM effects GROUP BY rule ORDER BY rule",
        args![DAY],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(RuleFirings {
            rule: r.text(0)?,
            effects: r.int(1)?.max(0) as u64,
            days: r.int(2)?.max(0) as u64,
            first: r.millis(3)?,
            last: r.millis(4)?,
        })
    })
    .collect()
}

/// Delivery attempts that finished after `since`, per channel.
pub(crate) fn channel_attempts(
    sql: &mut dyn Sql,
    since: Timestamp,
) -> Result<Vec<ChannelAttempts>> {
    let mut out = sql
        .query(
            &format!(
                "SELECT e.channel, count(*),
                        sum(CASE WHEN {FAILED} THEN 1 ELSE 0 END),
                        max(CASE WHEN {FAILED} THEN a.finished_at END),
                        max(CASE WHEN {FAILED} THEN NULL ELSE a.finished_at END)
                 FROM delivery_attempts a JOIN effects e ON e.key = a.effect_key
                 WHERE a.finished_at > ?1
                 GROUP BY e.channel ORDER BY e.channel"
            ),
            args![since.as_millis()],
        )?
        .into_iter()
        .map(|mut r| {
            Ok(ChannelAttempts {
                channel: r.text(0)?,
                attempts: r.int(1)?.max(0) as u64,
                failures: r.int(2)?.max(0) as u64,
                last_failure: r.opt_millis(3)?,
                last_success: r.opt_millis(4)?,
                last_error: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for c in out.iter_mut().filter(|c| c.failures > 0) {
        c.last_error = sql
            .query_opt(
                &format!(
                    "SELECT a.detail FROM delivery_attempts a JOIN effects e ON e.key = a.effect_key
                     WHERE a.finished_at > ?1 AND e.channel = ?2 AND {FAILED}
                     ORDER BY a.finished_at DESC LIMIT 1"
                ),
                args![since.as_millis(), &c.channel],
            )?
            .map(|mut r| r.opt_text(0))
            .transpose()?
            .flatten();
    }
    Ok(out)
}

/// The effects given up on: how many, per channel, and since when.
pub(crate) fn dead_letters(sql: &mut dyn Sql) -> Result<DeadLetters> {
    let by_channel = sql
        .query(
            "SELECT channel, count(*) FROM effects WHERE status = 'dead'
             GROUP BY channel ORDER BY count(*) DESC, channel",
            &[],
        )?
        .into_iter()
        .map(|mut r| Ok((r.text(0)?, r.int(1)?.max(0) as u64)))
        .collect::<Result<Vec<_>>>()?;
    let oldest = sql
        .query_opt(
            "SELECT min(coalesce(
                 (SELECT max(a.finished_at) FROM delivery_attempts a WHERE a.effect_key = e.key),
                 e.created_at))
             FROM effects e WHERE e.status = 'dead'",
            &[],
        )?
        .map(|r| r.opt_millis(0))
        .transpose()?
        .flatten();
    Ok(DeadLetters {
        count: by_channel.iter().map(|(_, n)| n).sum(),
        by_channel,
        oldest,
    })
}
