//! The outbox and tasks: listing, claiming with leases, finishing attempts.

use domain::Timestamp;

use super::{Dialect, Row, Sql, args, decode, encode};
use crate::{
    Attempt, Claim, Error, Finish, OutboxQuery, Outcome, Result, StoredEffect, Task, TaskQuery,
};

const EFFECT_COLUMNS: &str = "key, seq, playbook, rule, version, record_kind, record_id, action,
    due, shadow, status, channel, attempts, next_at, last_error, delivered_at, rendered, response,
    trace, created_at, retried_at";

fn effect(mut r: Row) -> Result<StoredEffect> {
    Ok(StoredEffect {
        key: r.text(0)?,
        seq: r.int(1)?,
        playbook: r.text(2)?,
        rule: r.text(3)?,
        version: r.text(4)?,
        record: r.record_key(5)?,
        action: decode(&r.text(7)?)?,
        due: r.millis(8)?,
        shadow: r.bool(9)?,
        status: r.text(10)?,
        channel: r.text(11)?,
        attempts: u32::try_from(r.int(12)?).map_err(|e| Error::Corrupt(e.to_string()))?,
        next_at: r.millis(13)?,
        last_error: r.opt_text(14)?,
        delivered_at: r.opt_millis(15)?,
        rendered: r.opt_text(16)?.as_deref().map(decode).transpose()?,
        response: r.opt_text(17)?,
        trace: decode(&r.text(18)?)?,
        created_at: r.millis(19)?,
        retried_at: r.opt_millis(20)?,
    })
}

fn effects(rows: Vec<Row>) -> Result<Vec<StoredEffect>> {
    rows.into_iter().map(effect).collect()
}

pub(crate) fn list(sql: &mut dyn Sql, q: &OutboxQuery) -> Result<Vec<StoredEffect>> {
    let (kind, id) = match &q.record {
        Some(r) => (Some(r.kind.as_str()), Some(r.id.as_str())),
        None => (None, None),
    };
    let rows = sql.query(
        &format!(
            "SELECT {EFFECT_COLUMNS} FROM effects
             WHERE (CAST(?1 AS TEXT) IS NULL OR (record_kind = ?1 AND record_id = ?2))
               AND (CAST(?3 AS TEXT) IS NULL OR status = ?3)
               AND (CAST(?4 AS TEXT) IS NULL OR channel = ?4) AND seq > ?5
               AND (CAST(?7 AS TEXT) IS NULL OR rule = ?7)
             ORDER BY seq {} LIMIT ?6",
            if q.newest_first { "DESC" } else { "ASC" }
        ),
        args![
            kind,
            id,
            q.status.as_deref(),
            q.channel.as_deref(),
            q.after.unwrap_or(0),
            q.limit as i64,
            q.rule.as_deref()
        ],
    )?;
    effects(rows)
}

pub(crate) fn one(sql: &mut dyn Sql, key: &str) -> Result<Option<StoredEffect>> {
    sql.query_opt(
        &format!("SELECT {EFFECT_COLUMNS} FROM effects WHERE key = ?1"),
        args![key],
    )?
    .map(effect)
    .transpose()
}

pub(crate) fn attempts(sql: &mut dyn Sql, key: &str) -> Result<Vec<Attempt>> {
    sql.query(
        "SELECT attempt, node, started_at, finished_at, outcome, detail FROM delivery_attempts
         WHERE effect_key = ?1 ORDER BY attempt",
        args![key],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(Attempt {
            attempt: u32::try_from(r.int(0)?).map_err(|e| Error::Corrupt(e.to_string()))?,
            node: r.text(1)?,
            started_at: r.millis(2)?,
            finished_at: r.millis(3)?,
            outcome: r.text(4)?,
            detail: r.opt_text(5)?,
        })
    })
    .collect()
}

/// Claims in one transaction (the caller's), fairly across channels: each channel keeps a
/// queue of its own, oldest due first, with the effects whose lease expired (their dispatcher
/// died) at its head, and the claim takes one effect from each channel in turn, the channel
/// that has waited longest first, until `limit`, within each channel's budget. So a channel at
/// its rate limit or behind an open breaker never holds back another, and an orphaned effect
/// is taken up by the first claim after its lease ends, however long the backlog behind it.
/// On PostgreSQL the candidates are locked as they are read and rows another node is claiming
/// are skipped, so two nodes never claim the same effect.
pub(crate) fn claim(sql: &mut dyn Sql, claim: &Claim) -> Result<Vec<StoredEffect>> {
    let now = claim.now.as_millis();
    let limit = claim.limit as i64;
    let lock = match sql.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let mut queues: std::collections::BTreeMap<String, Vec<Waiting>> = Default::default();
    // Orphans first: few by nature, at most what the dispatchers that died were holding.
    for mut row in sql.query(
        &format!(
            "SELECT key, channel, lease_until, seq FROM effects
             WHERE status = 'delivering' AND lease_until <= ?1
             ORDER BY lease_until, seq LIMIT ?2{lock}"
        ),
        args![now, limit],
    )? {
        let (key, channel) = (row.text(0)?, row.text(1)?);
        queues
            .entry(channel)
            .or_default()
            .push((key, row.int(2)?, row.int(3)?));
    }
    // Every channel with pending work, read off the index one channel at a time.
    let channels = sql.query(
        "WITH RECURSIVE c(channel) AS (
             SELECT (SELECT min(channel) FROM effects WHERE status = 'pending')
             UNION ALL
             SELECT (SELECT min(channel) FROM effects
                     WHERE status = 'pending' AND channel > c.channel)
             FROM c WHERE c.channel IS NOT NULL
         )
         SELECT channel FROM c WHERE channel IS NOT NULL",
        &[],
    )?;
    for mut row in channels {
        let channel = row.text(0)?;
        if claim.paused(&channel) {
            continue;
        }
        let queue = queues.entry(channel.clone()).or_default();
        let budget = claim
            .budget(&channel)
            .map_or(limit, |b| (b as i64).min(limit));
        let wanted = budget - queue.len() as i64;
        if wanted <= 0 {
            continue;
        }
        for mut row in sql.query(
            &format!(
                "SELECT key, next_at, seq FROM effects
                 WHERE status = 'pending' AND channel = ?1 AND next_at <= ?2
                 ORDER BY next_at, seq LIMIT ?3{lock}"
            ),
            args![&channel, now, wanted],
        )? {
            queue.push((row.text(0)?, row.int(1)?, row.int(2)?));
        }
    }
    let keys = take_in_turn(queues, claim);
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // All chosen keys leased in one statement, given as a JSON array; each attempt is on
    // record before it is made, as "unknown" until it ends, so a send lost in a crash still
    // shows.
    let each = match sql.dialect() {
        Dialect::Sqlite => "SELECT value FROM json_each(?1)",
        Dialect::Postgres => "SELECT value FROM jsonb_array_elements_text(CAST(?1 AS jsonb))",
    };
    let keys = encode(&keys)?;
    let rows = sql.query(
        &format!(
            "UPDATE effects SET status = 'delivering', lease_owner = ?2, lease_until = ?3,
                 attempts = attempts + 1
             WHERE key IN ({each})
             RETURNING {EFFECT_COLUMNS}"
        ),
        args![&keys, &claim.node, claim.lease_until.as_millis()],
    )?;
    sql.execute(
        &format!(
            "INSERT INTO delivery_attempts
                 (effect_key, attempt, node, started_at, finished_at, outcome, detail)
             SELECT key, attempts, ?2, ?3, ?3, 'unknown', NULL FROM effects
             WHERE key IN ({each})
             ON CONFLICT (effect_key, attempt) DO UPDATE SET node = excluded.node,
                 started_at = excluded.started_at, finished_at = excluded.finished_at,
                 outcome = excluded.outcome, detail = excluded.detail"
        ),
        args![&keys, &claim.node, now],
    )?;
    let mut out = effects(rows)?;
    out.sort_by_key(|e| (e.next_at, e.seq));
    Ok(out)
}

/// An effect waiting in its channel's queue: its key, and since when it waits (its due time,
/// or when its lease ended) with its position as the tie-break.
type Waiting = (String, i64, i64);

/// One key from each channel's queue in turn, the channel whose head has waited longest first
/// in every round, within each channel's budget, until the claim's limit.
fn take_in_turn(
    queues: std::collections::BTreeMap<String, Vec<Waiting>>,
    claim: &Claim,
) -> Vec<String> {
    struct Queue {
        rest: std::vec::IntoIter<Waiting>,
        head: Option<Waiting>,
        budget: usize,
    }
    let mut queues: Vec<Queue> = queues
        .into_iter()
        .filter(|(channel, _)| !claim.paused(channel))
        .map(|(channel, q)| {
            let mut rest = q.into_iter();
            Queue {
                head: rest.next(),
                rest,
                budget: claim.budget(&channel).unwrap_or(usize::MAX),
            }
        })
        .collect();
    let mut keys = Vec::new();
    while keys.len() < claim.limit {
        // This round's order: by how long each channel's head has waited.
        let mut round: Vec<usize> = (0..queues.len())
            .filter(|&i| queues[i].head.is_some() && queues[i].budget > 0)
            .collect();
        if round.is_empty() {
            break;
        }
        round.sort_by_key(|&i| queues[i].head.as_ref().map(|(_, at, seq)| (*at, *seq)));
        for i in round {
            if keys.len() == claim.limit {
                break;
            }
            let q = &mut queues[i];
            if let Some((key, ..)) = q.head.take() {
                keys.push(key);
                q.budget -= 1;
                q.head = q.rest.next();
            }
        }
    }
    keys
}

pub(crate) fn finish(sql: &mut dyn Sql, f: &Finish) -> Result<bool> {
    let (next_at, delivered_at) = match f.outcome {
        Outcome::Retry { next_at } => (Some(next_at.as_millis()), None),
        Outcome::Delivered | Outcome::DryRun => (None, Some(f.finished_at.as_millis())),
        Outcome::Dead => (None, None),
    };
    let (last_error, response) = match f.outcome {
        Outcome::Delivered => (None, f.detail.as_deref()),
        Outcome::DryRun => (None, None),
        Outcome::Retry { .. } | Outcome::Dead => (f.detail.as_deref(), None),
    };
    let rendered = f.rendered.as_ref().map(encode).transpose()?;
    // Only while this node still holds the lease; the attempt number comes back.
    let held = sql.query_opt(
        "UPDATE effects SET status = ?2, next_at = coalesce(?3, next_at), lease_owner = NULL,
             lease_until = NULL, last_error = ?4, response = ?5, delivered_at = ?6,
             rendered = coalesce(?7, rendered)
         WHERE key = ?1 AND status = 'delivering' AND lease_owner = ?8
         RETURNING attempts",
        args![
            &f.key,
            f.outcome.status(),
            next_at,
            last_error,
            response,
            delivered_at,
            rendered.as_deref(),
            &f.node
        ],
    )?;
    let Some(attempt) = held.map(|r| r.int(0)).transpose()? else {
        return Ok(false);
    };
    let outcome = match f.outcome {
        Outcome::Retry { .. } => "retry",
        other => other.status(),
    };
    sql.execute(
        "INSERT INTO delivery_attempts
             (effect_key, attempt, node, started_at, finished_at, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (effect_key, attempt) DO UPDATE SET node = excluded.node,
             started_at = excluded.started_at, finished_at = excluded.finished_at,
             outcome = excluded.outcome, detail = excluded.detail",
        args![
            &f.key,
            attempt,
            &f.node,
            f.started_at.as_millis(),
            f.finished_at.as_millis(),
            outcome,
            f.detail.as_deref()
        ],
    )?;
    if let (Some(e), Outcome::Delivered) = (&f.exception, f.outcome) {
        super::exceptions::raise(sql, e)?;
    }
    if let (Some(t), Outcome::Delivered) = (&f.task, f.outcome) {
        sql.execute(
            "INSERT INTO tasks (id, kind, assignee, title, record_kind, record_id, rule, due_at,
                                status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9)
             ON CONFLICT (id) DO NOTHING",
            args![
                &t.id,
                &t.kind,
                &t.assignee,
                &t.title,
                t.record.kind.as_str(),
                t.record.id.as_str(),
                &t.rule,
                t.due_at.map(|d| d.as_millis()),
                f.finished_at.as_millis()
            ],
        )?;
    }
    Ok(true)
}

pub(crate) fn give_up(
    sql: &mut dyn Sql,
    channel: &str,
    due_before: Timestamp,
    reason: &str,
    now: Timestamp,
) -> Result<u64> {
    sql.execute(
        "UPDATE effects SET status = 'dead', last_error = ?3, next_at = ?4
         WHERE status = 'pending' AND channel = ?1 AND due < ?2 AND created_at < ?2
           AND coalesce(retried_at, 0) < ?2",
        args![channel, due_before.as_millis(), reason, now.as_millis()],
    )
}

/// Moves an effect from one of `from` to `to`; `retry` also makes it due now with a fresh
/// attempt budget.
pub(crate) fn transition(
    sql: &mut dyn Sql,
    key: &str,
    from: &[&str],
    to: &str,
    now: Timestamp,
) -> Result<StoredEffect> {
    let lock = match sql.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    };
    let current = sql
        .query_opt(
            &format!("SELECT {EFFECT_COLUMNS} FROM effects WHERE key = ?1{lock}"),
            args![key],
        )?
        .map(effect)
        .transpose()?
        .ok_or_else(|| Error::NotFound(format!("effect {key}")))?;
    if !from.contains(&current.status.as_str()) {
        return Err(Error::Conflict(format!(
            "effect {key} is {}; only a {} one can become {to}",
            current.status,
            from.join(" or ")
        )));
    }
    let update = if to == "pending" {
        "UPDATE effects SET status = 'pending', next_at = ?2, attempts = 0, last_error = NULL,
             retried_at = ?2
         WHERE key = ?1"
    } else {
        "UPDATE effects SET status = 'cancelled', next_at = ?2 WHERE key = ?1"
    };
    sql.execute(update, args![key, now.as_millis()])?;
    one(sql, key)?.ok_or_else(|| Error::NotFound(format!("effect {key}")))
}

const TASK_COLUMNS: &str =
    "id, kind, assignee, title, record_kind, record_id, rule, due_at, status, created_at, done_at";

fn task(mut r: Row) -> Result<Task> {
    Ok(Task {
        id: r.text(0)?,
        kind: r.text(1)?,
        assignee: r.text(2)?,
        title: r.text(3)?,
        record: r.record_key(4)?,
        rule: r.text(6)?,
        due_at: r.opt_millis(7)?,
        status: r.text(8)?,
        created_at: r.millis(9)?,
        done_at: r.opt_millis(10)?,
    })
}

pub(crate) fn tasks(sql: &mut dyn Sql, q: &TaskQuery) -> Result<Vec<Task>> {
    sql.query(
        &format!(
            "SELECT {TASK_COLUMNS} FROM tasks
             WHERE (CAST(?1 AS TEXT) IS NULL OR assignee = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
             ORDER BY created_at DESC, id LIMIT ?3"
        ),
        args![q.assignee.as_deref(), q.status.as_deref(), q.limit as i64],
    )?
    .into_iter()
    .map(task)
    .collect()
}

pub(crate) fn complete_task(sql: &mut dyn Sql, id: &str, now: Timestamp) -> Result<Task> {
    sql.execute(
        "UPDATE tasks SET status = 'done', done_at = coalesce(done_at, ?2) WHERE id = ?1",
        args![id, now.as_millis()],
    )?;
    sql.query_opt(
        &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
        args![id],
    )?
    .map(task)
    .transpose()?
    .ok_or_else(|| Error::NotFound(format!("task {id}")))
}

pub(crate) fn backlog(sql: &mut dyn Sql) -> Result<crate::Backlog> {
    let by_status = sql
        .query(
            "SELECT status, count(*) FROM effects GROUP BY status ORDER BY status",
            &[],
        )?
        .into_iter()
        .map(|mut r| Ok((r.text(0)?, r.int(1)?.max(0) as u64)))
        .collect::<Result<Vec<_>>>()?;
    let oldest = sql
        .query_opt(
            "SELECT min(next_at) FROM effects WHERE status = 'pending'",
            &[],
        )?
        .map(|r| r.opt_millis(0))
        .transpose()?
        .flatten();
    let exceptions = sql
        .query(
            "SELECT status, count(*) FROM exceptions GROUP BY status ORDER BY status",
            &[],
        )?
        .into_iter()
        .map(|mut r| Ok((r.text(0)?, r.int(1)?.max(0) as u64)))
        .collect::<Result<Vec<_>>>()?;
    let overdue = sql
        .query_opt(
            "SELECT count(*) FROM exceptions WHERE status = 'open' AND overdue_at IS NOT NULL",
            &[],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    Ok(crate::Backlog {
        by_status,
        oldest_pending_due: oldest,
        exceptions,
        exceptions_overdue: overdue.max(0) as u64,
    })
}
