//! The exceptions inbox: raising (with the delivery that decided it), listing, acting on one,
//! and moving unacknowledged ones along their escalation chain as their SLAs run out.

use domain::{
    Actor, EventBody, InterventionFields, NewEvent, RecordId, RecordKind, Refs, Timestamp,
};

use super::{Dialect, Row, Sql, args, decode, encode};
use crate::{
    Error, Escalated, ExceptionAction, ExceptionEntry, ExceptionItem, ExceptionQuery, NewException,
    Result,
};

const COLUMNS: &str = "id, record_kind, record_id, rule, reason, title, context, chain, level,
    assignee, sla_ms, due_at, overdue_at, status, created_at, acknowledged_at, acknowledged_by,
    resolved_at, resolved_by, resolution, note, playbook, version";

fn item(mut r: Row) -> Result<ExceptionItem> {
    Ok(ExceptionItem {
        id: r.text(0)?,
        record: r.record_key(1)?,
        rule: r.text(3)?,
        reason: r.text(4)?,
        title: r.text(5)?,
        context: decode(&r.text(6)?)?,
        chain: decode(&r.text(7)?)?,
        level: u32::try_from(r.int(8)?).map_err(|e| Error::Corrupt(e.to_string()))?,
        assignee: r.text(9)?,
        sla_ms: r.int(10)?,
        due_at: r.opt_millis(11)?,
        overdue_at: r.opt_millis(12)?,
        status: r.text(13)?,
        created_at: r.millis(14)?,
        acknowledged_at: r.opt_millis(15)?,
        acknowledged_by: r.opt_text(16)?,
        resolved_at: r.opt_millis(17)?,
        resolved_by: r.opt_text(18)?,
        resolution: r.opt_text(19)?,
        note: r.opt_text(20)?,
        playbook: r.text(21)?,
        version: r.text(22)?,
    })
}

/// Adds an entry to an exception's history.
fn record(
    sql: &mut dyn Sql,
    id: &str,
    at: Timestamp,
    action: &str,
    by: Option<&str>,
    assignee: Option<&str>,
    note: Option<&str>,
) -> Result<()> {
    sql.execute(
        "INSERT INTO exception_history (exception_id, n, at, action, by_person, assignee, note)
         VALUES (?1, (SELECT coalesce(max(n), 0) + 1 FROM exception_history
                      WHERE exception_id = ?1), ?2, ?3, ?4, ?5, ?6)",
        args![id, at.as_millis(), action, by, assignee, note],
    )?;
    Ok(())
}

/// Raises an exception once (a repeated delivery of the same effect adds nothing): the first
/// of its chain holds it, due to acknowledge within its SLA.
pub(crate) fn raise(sql: &mut dyn Sql, e: &NewException) -> Result<()> {
    let Some(first) = e.chain.first() else {
        return Err(Error::Invalid(format!(
            "exception {} has nobody to go to",
            e.id
        )));
    };
    let due = e.raised_at.as_millis() + e.sla_ms;
    let inserted = sql.execute(
        "INSERT INTO exceptions (id, record_kind, record_id, playbook, rule, version, reason,
                                 title, context, chain, level, assignee, sla_ms, due_at, status,
                                 created_at)
         VALUES (?1, ?2, ?3, ?13, ?4, ?14, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11, 'open', ?12)
         ON CONFLICT (id) DO NOTHING",
        args![
            &e.id,
            e.record.kind.as_str(),
            e.record.id.as_str(),
            &e.rule,
            &e.reason,
            &e.title,
            &encode(&e.context)?,
            &encode(&e.chain)?,
            first.as_str(),
            e.sla_ms,
            due,
            e.raised_at.as_millis(),
            &e.playbook,
            &e.version
        ],
    )?;
    if inserted == 1 {
        let note = format!("to acknowledge by {}", Timestamp::from_millis(due));
        record(
            sql,
            &e.id,
            e.raised_at,
            "raised",
            None,
            Some(first),
            Some(&note),
        )?;
        let item = one(sql, &e.id, false)?;
        tell(sql, &item, "raised", first, e.raised_at, &note)?;
    }
    Ok(())
}

/// Tells the person who now holds an exception: an alert (an email through the outbox, with
/// the escalation's why) whose key names the exception, the step and the person, so it is
/// written once.
fn tell(
    sql: &mut dyn Sql,
    e: &ExceptionItem,
    step: &str,
    to: &str,
    at: Timestamp,
    why_now: &str,
) -> Result<()> {
    let person = RecordId::parse(to.to_owned())
        .map_err(|err| Error::Invalid(format!("exception {}: {to}: {err}", e.id)))?;
    // Titles are data, not templates: the alert text is rendered as it is.
    let text = format!(
        "{{% raw %}}{}: an exception for you to acknowledge ({why_now}).{{% endraw %}}",
        e.title
    );
    let why = e.context["trace"]["why"]
        .as_str()
        .unwrap_or(e.reason.as_str())
        .to_owned();
    let effect = engine::Effect {
        key: engine::key(&["exception", &e.id, step, to, &at.as_millis().to_string()]),
        playbook: e.playbook.clone(),
        rule: e.rule.clone(),
        version: e.version.clone(),
        record: e.record.clone(),
        action: playbook::Action::Alert {
            to: playbook::Target::Person(person),
            text,
        },
        at,
        due: at,
        shadow: false,
        overruled: None,
        trace: engine::Trace {
            why,
            trigger: format!("exception {} {step}: {why_now}", e.id),
            condition: None,
            saw: Default::default(),
        },
    };
    super::apply::insert_effects(sql, None, std::slice::from_ref(&effect), at)?;
    Ok(())
}

pub(crate) fn list(sql: &mut dyn Sql, q: &ExceptionQuery) -> Result<Vec<ExceptionItem>> {
    let (kind, id) = match &q.record {
        Some(r) => (Some(r.kind.as_str()), Some(r.id.as_str())),
        None => (None, None),
    };
    let status = q.status.as_deref().filter(|s| *s != "unresolved");
    let unresolved = q.status.as_deref() == Some("unresolved");
    sql.query(
        &format!(
            "SELECT {COLUMNS} FROM exceptions
             WHERE (CAST(?1 AS TEXT) IS NULL OR assignee = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
               AND (?3 = 0 OR status <> 'resolved')
               AND (CAST(?4 AS TEXT) IS NULL OR (record_kind = ?4 AND record_id = ?5))
             ORDER BY created_at DESC, id LIMIT ?6"
        ),
        args![
            q.assignee.as_deref(),
            status,
            i64::from(unresolved),
            kind,
            id,
            q.limit as i64
        ],
    )?
    .into_iter()
    .map(item)
    .collect()
}

pub(crate) fn history(sql: &mut dyn Sql, id: &str) -> Result<Vec<ExceptionEntry>> {
    sql.query(
        "SELECT at, action, by_person, assignee, note FROM exception_history
         WHERE exception_id = ?1 ORDER BY n",
        args![id],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(ExceptionEntry {
            at: r.millis(0)?,
            action: r.text(1)?,
            by: r.opt_text(2)?,
            assignee: r.opt_text(3)?,
            note: r.opt_text(4)?,
        })
    })
    .collect()
}

fn one(sql: &mut dyn Sql, id: &str, lock: bool) -> Result<ExceptionItem> {
    let lock = match (lock, sql.dialect()) {
        (true, Dialect::Postgres) => " FOR UPDATE",
        _ => "",
    };
    sql.query_opt(
        &format!("SELECT {COLUMNS} FROM exceptions WHERE id = ?1{lock}"),
        args![id],
    )?
    .map(item)
    .transpose()?
    .ok_or_else(|| Error::NotFound(format!("exception {id}")))
}

pub(crate) fn get(
    sql: &mut dyn Sql,
    id: &str,
) -> Result<Option<(ExceptionItem, Vec<ExceptionEntry>)>> {
    match one(sql, id, false) {
        Ok(e) => Ok(Some((e, history(sql, id)?))),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn required(value: &str, what: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::Invalid(format!("{what} must not be blank")));
    }
    Ok(())
}

/// Acts on one exception at `now`; for a resolution on a deal, also the `intervention.logged`
/// that records the resolver's part (to be ingested in the same transaction).
pub(crate) fn act(
    sql: &mut dyn Sql,
    id: &str,
    action: &ExceptionAction,
    now: Timestamp,
) -> Result<(ExceptionItem, Option<NewEvent>)> {
    let current = one(sql, id, true)?;
    let by = match action {
        ExceptionAction::Acknowledge { by, .. }
        | ExceptionAction::Resolve { by, .. }
        | ExceptionAction::Reassign { by, .. } => by,
    };
    required(by, "`by`")?;
    if current.status == "resolved" {
        return Err(Error::Conflict(format!(
            "exception {id} was resolved at {}",
            current.resolved_at.unwrap_or(current.created_at)
        )));
    }
    let at = now.as_millis();
    let mut event = None;
    match action {
        ExceptionAction::Acknowledge { by, note } => {
            if current.status == "acknowledged" {
                return Err(Error::Conflict(format!(
                    "exception {id} was already acknowledged by {}",
                    current.acknowledged_by.as_deref().unwrap_or("someone")
                )));
            }
            sql.execute(
                "UPDATE exceptions SET status = 'acknowledged', due_at = NULL,
                     acknowledged_at = ?2, acknowledged_by = ?3
                 WHERE id = ?1",
                args![id, at, by.as_str()],
            )?;
            record(
                sql,
                id,
                now,
                "acknowledged",
                Some(by),
                Some(&current.assignee),
                note.as_deref(),
            )?;
        }
        ExceptionAction::Resolve {
            by,
            resolution,
            note,
        } => {
            required(resolution, "`resolution`")?;
            sql.execute(
                "UPDATE exceptions SET status = 'resolved', due_at = NULL, resolved_at = ?2,
                     resolved_by = ?3, resolution = ?4, note = ?5
                 WHERE id = ?1",
                args![id, at, by.as_str(), resolution.as_str(), note.as_deref()],
            )?;
            record(
                sql,
                id,
                now,
                "resolved",
                Some(by),
                Some(&current.assignee),
                Some(resolution),
            )?;
            if current.record.kind == RecordKind::Deal {
                event = Some(intervention(&current, by, resolution, now)?);
            }
        }
        ExceptionAction::Reassign { to, by, note } => {
            required(to, "`to`")?;
            let known = sql
                .query_opt(
                    "SELECT 1 FROM records WHERE kind = 'person' AND id = ?1",
                    args![to.as_str()],
                )?
                .is_some();
            if !known {
                return Err(Error::Invalid(format!("`to`: {to} is not a known person")));
            }
            // The new holder gets a fresh SLA while it is open.
            let due = (current.status == "open").then_some(at + current.sla_ms);
            sql.execute(
                "UPDATE exceptions SET assignee = ?2, due_at = ?3 WHERE id = ?1",
                args![id, to.as_str(), due],
            )?;
            record(
                sql,
                id,
                now,
                "reassigned",
                Some(by),
                Some(to),
                note.as_deref(),
            )?;
            tell(
                sql,
                &current,
                "reassigned",
                to,
                now,
                &format!("reassigned to you by {by}"),
            )?;
        }
    }
    Ok((one(sql, id, false)?, event))
}

/// The intervention a resolution records: the resolver stepped in on the deal, for the
/// exception's reason. Its source id names the exception, so it is logged once.
fn intervention(e: &ExceptionItem, by: &str, resolution: &str, now: Timestamp) -> Result<NewEvent> {
    let person = RecordId::parse(by.to_owned())
        .map_err(|err| Error::Invalid(format!("`by`: the person id {err}")))?;
    Ok(NewEvent {
        source: "pipewright".into(),
        source_id: format!("exception:{}", e.id),
        occurred_at: now,
        actor: Some(Actor::Person(person.clone())),
        refs: Refs {
            deal: Some(e.record.id.clone()),
            ..Refs::default()
        },
        body: EventBody::InterventionLogged(InterventionFields {
            person,
            reason: e.reason.clone(),
            note: Some(format!(
                "resolved the exception \"{}\": {resolution}",
                e.title
            )),
        }),
    })
}

/// Moves at most `limit` open exceptions whose SLA ran out by `now` to the next person of
/// their chain, due again one SLA after the one that ran out; past the last, marks them
/// overdue (they stay with the last holder).
pub(crate) fn escalate_due(sql: &mut dyn Sql, now: Timestamp, limit: usize) -> Result<Escalated> {
    let lock = match sql.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let due = sql.query(
        &format!(
            "SELECT {COLUMNS} FROM exceptions WHERE status = 'open' AND due_at <= ?1
             ORDER BY due_at, id LIMIT ?2{lock}"
        ),
        args![now.as_millis(), limit as i64],
    )?;
    let mut out = Escalated::default();
    for row in due {
        let e = item(row)?;
        let Some(ran_out) = e.due_at else { continue };
        let next = e.level as usize + 1;
        let note = format!(
            "not acknowledged by {} within {}",
            e.assignee,
            playbook::Span(e.sla_ms)
        );
        match e.chain.get(next) {
            Some(person) => {
                let due = ran_out.as_millis() + e.sla_ms;
                sql.execute(
                    "UPDATE exceptions SET level = ?2, assignee = ?3, due_at = ?4 WHERE id = ?1",
                    args![&e.id, next as i64, person.as_str(), due],
                )?;
                record(
                    sql,
                    &e.id,
                    ran_out,
                    "escalated",
                    None,
                    Some(person),
                    Some(&note),
                )?;
                tell(sql, &e, "escalated", person, ran_out, &note)?;
                out.escalated += 1;
            }
            None => {
                sql.execute(
                    "UPDATE exceptions SET due_at = NULL, overdue_at = ?2 WHERE id = ?1",
                    args![&e.id, ran_out.as_millis()],
                )?;
                let note = format!("{note}, the last of its chain");
                record(
                    sql,
                    &e.id,
                    ran_out,
                    "overdue",
                    None,
                    Some(&e.assignee),
                    Some(&note),
                )?;
                out.overdue += 1;
            }
        }
    }
    Ok(out)
}
