//! The outbox and tasks in SQLite: listing, claiming with leases, finishing attempts.

use rusqlite::{Connection, OptionalExtension, Row, params};

use domain::{RecordId, RecordKey, RecordKind, Timestamp};

use super::{backend, decode};
use crate::{
    Attempt, Claim, Error, Finish, OutboxQuery, Outcome, Result, StoredEffect, Task, TaskQuery,
};

const EFFECT_COLUMNS: &str = "key, seq, playbook, rule, version, record_kind, record_id, action,
    due, shadow, status, channel, attempts, next_at, last_error, delivered_at, rendered, response,
    trace, created_at";

fn record_key(kind: &str, id: String) -> Result<RecordKey> {
    let kind =
        RecordKind::parse(kind).ok_or_else(|| Error::Corrupt(format!("record kind {kind:?}")))?;
    let id = RecordId::parse(id).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(RecordKey::new(kind, id))
}

fn effect(r: &Row<'_>) -> rusqlite::Result<Result<StoredEffect>> {
    let kind: String = r.get(5)?;
    let id: String = r.get(6)?;
    let action: String = r.get(7)?;
    let rendered: Option<String> = r.get(16)?;
    let trace: String = r.get(18)?;
    let millis = |i: usize| r.get::<_, i64>(i).map(Timestamp::from_millis);
    let (key, seq, playbook, rule, version) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (due, shadow, status, channel, attempts) =
        (millis(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?);
    let (next_at, last_error) = (millis(13)?, r.get(14)?);
    let delivered_at = r.get::<_, Option<i64>>(15)?.map(Timestamp::from_millis);
    let response = r.get(17)?;
    let created_at = millis(19)?;
    Ok((|| {
        Ok(StoredEffect {
            key,
            seq,
            playbook,
            rule,
            version,
            record: record_key(&kind, id)?,
            action: decode(&action)?,
            due,
            shadow,
            status,
            channel,
            attempts,
            next_at,
            last_error,
            delivered_at,
            rendered: rendered.as_deref().map(decode).transpose()?,
            response,
            trace: decode(&trace)?,
            created_at,
        })
    })())
}

fn collect(rows: Vec<rusqlite::Result<Result<StoredEffect>>>) -> Result<Vec<StoredEffect>> {
    rows.into_iter().map(|r| r.map_err(backend)?).collect()
}

pub(super) fn list(conn: &Connection, q: &OutboxQuery) -> Result<Vec<StoredEffect>> {
    let (kind, id) = match &q.record {
        Some(r) => (Some(r.kind.as_str()), Some(r.id.as_str().to_owned())),
        None => (None, None),
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {EFFECT_COLUMNS} FROM effects
             WHERE (?1 IS NULL OR (record_kind = ?1 AND record_id = ?2))
               AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR channel = ?4) AND seq > ?5
             ORDER BY seq LIMIT ?6"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![
                kind,
                id,
                q.status,
                q.channel,
                q.after.unwrap_or(0),
                q.limit as i64
            ],
            effect,
        )
        .map_err(backend)?
        .collect::<Vec<_>>();
    collect(rows)
}

pub(super) fn one(conn: &Connection, key: &str) -> Result<Option<StoredEffect>> {
    conn.prepare_cached(&format!(
        "SELECT {EFFECT_COLUMNS} FROM effects WHERE key = ?1"
    ))
    .and_then(|mut s| s.query_row(params![key], effect).optional())
    .map_err(backend)?
    .transpose()
}

pub(super) fn attempts(conn: &Connection, key: &str) -> Result<Vec<Attempt>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT attempt, node, started_at, finished_at, outcome, detail FROM delivery_attempts
             WHERE effect_key = ?1 ORDER BY attempt",
        )
        .map_err(backend)?;
    stmt.query_map(params![key], |r| {
        Ok(Attempt {
            attempt: r.get(0)?,
            node: r.get(1)?,
            started_at: Timestamp::from_millis(r.get(2)?),
            finished_at: Timestamp::from_millis(r.get(3)?),
            outcome: r.get(4)?,
            detail: r.get(5)?,
        })
    })
    .map_err(backend)?
    .collect::<rusqlite::Result<Vec<_>>>()
    .map_err(backend)
}

/// Claims in one transaction (the caller's): due pending effects and effects whose lease
/// expired, oldest due first, within the claim's budgets.
pub(super) fn claim(conn: &Connection, claim: &Claim) -> Result<Vec<StoredEffect>> {
    let now = claim.now.as_millis();
    // A window a few times the limit, so budgets and pauses of some channels leave room for
    // the others.
    let window = (claim.limit * 4).max(16) as i64;
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, channel FROM (
                 SELECT key, channel, next_at, seq FROM effects
                 WHERE status = 'pending' AND next_at <= ?1
                 ORDER BY next_at, seq LIMIT ?2)
             UNION ALL
             SELECT key, channel FROM (
                 SELECT key, channel, next_at, seq FROM effects
                 WHERE status = 'delivering' AND lease_until <= ?1
                 ORDER BY next_at, seq LIMIT ?2)",
        )
        .map_err(backend)?;
    let candidates: Vec<(String, String)> = stmt
        .query_map(params![now, window], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?;
    let mut taken: std::collections::HashMap<String, usize> = Default::default();
    let mut keys = Vec::new();
    for (key, channel) in candidates {
        if keys.len() == claim.limit || claim.paused(&channel) {
            continue;
        }
        let n = taken.entry(channel.clone()).or_default();
        if claim.budget(&channel).is_some_and(|b| *n >= b) {
            continue;
        }
        *n += 1;
        keys.push(key);
    }
    let mut lease = conn
        .prepare_cached(
            "UPDATE effects SET status = 'delivering', lease_owner = ?2, lease_until = ?3,
                 attempts = attempts + 1
             WHERE key = ?1",
        )
        .map_err(backend)?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        lease
            .execute(params![key, claim.node, claim.lease_until.as_millis()])
            .map_err(backend)?;
        out.extend(one(conn, &key)?);
    }
    out.sort_by_key(|e| (e.next_at, e.seq));
    Ok(out)
}

pub(super) fn finish(conn: &Connection, f: &Finish) -> Result<bool> {
    let held: Option<u32> = conn
        .prepare_cached(
            "SELECT attempts FROM effects
             WHERE key = ?1 AND status = 'delivering' AND lease_owner = ?2",
        )
        .and_then(|mut s| s.query_row(params![f.key, f.node], |r| r.get(0)).optional())
        .map_err(backend)?;
    let Some(attempt) = held else {
        return Ok(false);
    };
    let (next_at, delivered_at) = match f.outcome {
        Outcome::Retry { next_at } => (Some(next_at.as_millis()), None),
        Outcome::Delivered | Outcome::DryRun => (None, Some(f.finished_at.as_millis())),
        Outcome::Dead => (None, None),
    };
    let (last_error, response) = match f.outcome {
        Outcome::Delivered => (None, f.detail.clone()),
        Outcome::DryRun => (None, None),
        Outcome::Retry { .. } | Outcome::Dead => (f.detail.clone(), None),
    };
    let rendered = f
        .rendered
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    conn.prepare_cached(
        "UPDATE effects SET status = ?2, next_at = coalesce(?3, next_at), lease_owner = NULL,
             lease_until = NULL, last_error = ?4, response = ?5, delivered_at = ?6,
             rendered = coalesce(?7, rendered)
         WHERE key = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            f.key,
            f.outcome.status(),
            next_at,
            last_error,
            response,
            delivered_at,
            rendered
        ])
    })
    .map_err(backend)?;
    let outcome = match f.outcome {
        Outcome::Retry { .. } => "retry",
        other => other.status(),
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO delivery_attempts
             (effect_key, attempt, node, started_at, finished_at, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            f.key,
            attempt,
            f.node,
            f.started_at.as_millis(),
            f.finished_at.as_millis(),
            outcome,
            f.detail
        ])
    })
    .map_err(backend)?;
    if let (Some(t), Outcome::Delivered) = (&f.task, f.outcome) {
        conn.prepare_cached(
            "INSERT INTO tasks (id, kind, assignee, title, record_kind, record_id, rule, due_at,
                                status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9)
             ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                t.id,
                t.kind,
                t.assignee,
                t.title,
                t.record.kind.as_str(),
                t.record.id.as_str(),
                t.rule,
                t.due_at.map(|d| d.as_millis()),
                f.finished_at.as_millis()
            ])
        })
        .map_err(backend)?;
    }
    Ok(true)
}

/// Moves an effect from one of `from` to `to`; `retry` also makes it due now with a fresh
/// attempt budget.
pub(super) fn transition(
    conn: &Connection,
    key: &str,
    from: &[&str],
    to: &str,
    now: Timestamp,
) -> Result<StoredEffect> {
    let current = one(conn, key)?.ok_or_else(|| Error::NotFound(format!("effect {key}")))?;
    if !from.contains(&current.status.as_str()) {
        return Err(Error::Conflict(format!(
            "effect {key} is {}; only a {} one can become {to}",
            current.status,
            from.join(" or ")
        )));
    }
    let sql = if to == "pending" {
        "UPDATE effects SET status = 'pending', next_at = ?2, attempts = 0, last_error = NULL
         WHERE key = ?1"
    } else {
        "UPDATE effects SET status = 'cancelled', next_at = ?2 WHERE key = ?1"
    };
    conn.execute(sql, params![key, now.as_millis()])
        .map_err(backend)?;
    one(conn, key)?.ok_or_else(|| Error::NotFound(format!("effect {key}")))
}

const TASK_COLUMNS: &str =
    "id, kind, assignee, title, record_kind, record_id, rule, due_at, status, created_at, done_at";

fn task(r: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    let kind: String = r.get(4)?;
    let id: String = r.get(5)?;
    let task = Task {
        id: r.get(0)?,
        kind: r.get(1)?,
        assignee: r.get(2)?,
        title: r.get(3)?,
        record: match record_key(&kind, id) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        },
        rule: r.get(6)?,
        due_at: r.get::<_, Option<i64>>(7)?.map(Timestamp::from_millis),
        status: r.get(8)?,
        created_at: Timestamp::from_millis(r.get(9)?),
        done_at: r.get::<_, Option<i64>>(10)?.map(Timestamp::from_millis),
    };
    Ok(Ok(task))
}

pub(super) fn tasks(conn: &Connection, q: &TaskQuery) -> Result<Vec<Task>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks
             WHERE (?1 IS NULL OR assignee = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY created_at DESC, id LIMIT ?3"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![q.assignee, q.status, q.limit as i64], task)
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    rows.into_iter().collect()
}

pub(super) fn complete_task(conn: &Connection, id: &str, now: Timestamp) -> Result<Task> {
    conn.execute(
        "UPDATE tasks SET status = 'done', done_at = coalesce(done_at, ?2) WHERE id = ?1",
        params![id, now.as_millis()],
    )
    .map_err(backend)?;
    let row = conn
        .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![id], task).optional())
        .map_err(backend)?;
    row.transpose()?
        .ok_or_else(|| Error::NotFound(format!("task {id}")))
}

pub(super) fn backlog(conn: &Connection) -> Result<crate::Backlog> {
    let by_status = conn
        .prepare_cached("SELECT status, count(*) FROM effects GROUP BY status ORDER BY status")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
                .collect::<rusqlite::Result<Vec<(String, u64)>>>()
        })
        .map_err(backend)?;
    let oldest: Option<i64> = conn
        .query_row(
            "SELECT min(next_at) FROM effects WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    Ok(crate::Backlog {
        by_status,
        oldest_pending_due: oldest.map(Timestamp::from_millis),
    })
}
