//! What every write does, whatever the database: append events and fold them into record
//! state, run the rules, keep each record's timers, fire due timers, arm records for new
//! playbooks, refold from the log, and add effects to the outbox.

use std::collections::HashMap;

use domain::{Event, EventId, NewEvent, Record, RecordKey, RecordKind, Timestamp};
use engine::{Effect, Engine, Memory, Timer, TimerChange};
use playbook::Action;

use super::{Dialect, Sql, args, codec, decode, encode};
use crate::{ArmPass, Error, Ingested, RefoldPass, Result, TimersFired};

/// A record's state as of the latest commit, the time of its latest event, and the rules'
/// memory of it.
#[derive(Clone)]
pub(crate) struct Folded {
    pub(crate) record: Record,
    pub(crate) last: Option<Timestamp>,
    pub(crate) memory: Memory,
    /// The playbook version the record's timers were last armed with.
    pub(crate) armed_version: Option<String>,
}

/// Decoded records the writer may reuse instead of reading them back (committed state only).
pub(crate) type Known = HashMap<RecordKey, Folded>;

pub(crate) fn rules_apply(kind: RecordKind) -> bool {
    matches!(kind, RecordKind::Deal | RecordKind::Lead)
}

/// The record as the transaction sees it: written earlier in it, known from before it, or read.
fn current(
    sql: &mut dyn Sql,
    known: &Known,
    written: &mut Known,
    key: &RecordKey,
) -> Result<Folded> {
    match written.remove(key) {
        Some(f) => Ok(f),
        None => match known.get(key) {
            Some(f) => Ok(f.clone()),
            None => load(sql, key),
        },
    }
}

/// Locks every record the batches concern, all at once before anything is written, so
/// concurrent writers (other nodes) apply one record's events one transaction at a time.
pub(crate) fn lock_for(sql: &mut dyn Sql, batches: &[Vec<NewEvent>]) -> Result<()> {
    if sql.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let keys: Vec<RecordKey> = batches
        .iter()
        .flatten()
        .flat_map(|e| e.refs.keys())
        .collect();
    sql.lock_records(&keys.iter().collect::<Vec<_>>())
}

/// A record touched by the request being applied.
struct Touched {
    folded: Folded,
    /// An event arrived earlier than `last`: fold again from the log before writing.
    refold: bool,
    /// The indexed columns (stage, owner) of the stored row, when a row exists: if they do not
    /// change, only the state is rewritten and the indexes on them are left alone.
    stored: Option<(Option<String>, Option<String>)>,
    /// Events that arrived out of order, for the rules once the record is folded again.
    late: Vec<Event>,
    /// The timers the record waited on before this request (empty for a new record).
    armed: Vec<TimerChange>,
}

fn indexed(record: &Record) -> (Option<String>, Option<String>) {
    (
        record.stage().map(|s| s.as_str().to_owned()),
        record.owner().map(|o| o.as_str().to_owned()),
    )
}

fn event_id(now: Timestamp) -> EventId {
    let ms = now.as_millis().max(0) as u64;
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    EventId(uuid::Uuid::new_v7(ts))
}

/// Appends one request's events and updates the records they concern. `written` holds the
/// records earlier requests of the same transaction wrote: a record is taken from there first,
/// so each request builds on the one before it; it goes to `known` once the transaction
/// commits.
pub(crate) fn ingest(
    sql: &mut dyn Sql,
    known: &Known,
    engine: Option<&Engine>,
    batch: Vec<NewEvent>,
    now: Timestamp,
    written: &mut Known,
) -> Result<Vec<Ingested>> {
    let mut touched: HashMap<RecordKey, Touched> = HashMap::new();
    let mut effects = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    for new in batch {
        let event = new.stamp(event_id(now), now);
        let body = encode(&event)?;
        let at = event.occurred_at.as_millis();
        let id = event.id.0.to_string();
        let inserted = sql.query_opt(
            "INSERT INTO events (id, source, source_id, type, occurred_at, received_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (source, source_id) DO NOTHING RETURNING seq",
            args![
                &id,
                &event.source,
                &event.source_id,
                event.event_type().as_str(),
                at,
                now.as_millis(),
                &body
            ],
        )?;
        let Some(seq) = inserted.map(|r| r.int(0)).transpose()? else {
            let mut row = sql
                .query_opt(
                    "SELECT id FROM events WHERE source = ?1 AND source_id = ?2",
                    args![&event.source, &event.source_id],
                )?
                .ok_or_else(|| Error::Corrupt("a duplicate event vanished".into()))?;
            let id =
                uuid::Uuid::parse_str(&row.text(0)?).map_err(|e| Error::Corrupt(e.to_string()))?;
            results.push(Ingested::Duplicate { id: EventId(id) });
            continue;
        };
        for key in event.refs.keys() {
            sql.execute(
                "INSERT INTO event_records (kind, record_id, occurred_at, seq) VALUES (?1, ?2, ?3, ?4)",
                args![key.kind.as_str(), key.id.as_str(), at, seq],
            )?;
            let t = match touched.entry(key) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let folded = current(sql, known, written, v.key())?;
                    let stored = folded.last.map(|_| indexed(&folded.record));
                    // What the record waits on now; after the request only changes are written.
                    let armed = match engine {
                        Some(engine)
                            if folded.armed_version.as_deref() == Some(engine.version())
                                && rules_apply(v.key().kind) =>
                        {
                            engine.arm(&folded.record, now)
                        }
                        _ => Vec::new(),
                    };
                    v.insert(Touched {
                        folded,
                        refold: false,
                        stored,
                        late: Vec::new(),
                        armed,
                    })
                }
            };
            let late = t.folded.last.is_some_and(|last| event.occurred_at < last);
            if late || t.refold {
                // Rules see a late event once the record has been folded again in order.
                t.refold = true;
                if engine.is_some() && rules_apply(t.folded.record.kind()) {
                    t.late.push(event.clone());
                }
            } else {
                t.folded.record.apply(&event);
                t.folded.last = Some(event.occurred_at);
                if let Some(engine) = engine
                    && rules_apply(t.folded.record.kind())
                {
                    effects.extend(engine.on_event(&event, &t.folded.record, &mut t.folded.memory));
                }
            }
        }
        results.push(Ingested::Stored { id: event.id, seq });
    }
    for (key, t) in touched {
        let mut f = t.folded;
        if t.refold {
            let events = record_events(sql, &key, None)?;
            f.last = events.last().map(|e| e.occurred_at);
            f.record = Record::fold(&key, &events);
        }
        if let Some(engine) = engine
            && rules_apply(key.kind)
        {
            for event in &t.late {
                effects.extend(engine.on_event(event, &f.record, &mut f.memory));
            }
            let now_armed = engine.arm(&f.record, now);
            let changed: Vec<TimerChange> = match f.armed_version.as_deref() {
                // Armed by this engine before the request: only what moved is rewritten.
                Some(v) if v == engine.version() => now_armed
                    .into_iter()
                    .zip(&t.armed)
                    .filter(|(new, old)| new != *old)
                    .map(|(new, _)| new)
                    .collect(),
                // Armed under other playbooks: the timers of rules gone from them go too.
                Some(_) => {
                    clear_timers(sql, &key)?;
                    now_armed
                }
                None => now_armed,
            };
            set_timers(sql, changed)?;
            f.armed_version = Some(engine.version().to_owned());
        }
        save(sql, &key, &f, t.stored.as_ref(), now)?;
        written.insert(key, f);
    }
    insert_effects(sql, &effects, now)?;
    Ok(results)
}

/// Writes a record's state; the indexed columns only when they changed from `stored`.
fn save(
    sql: &mut dyn Sql,
    key: &RecordKey,
    f: &Folded,
    stored: Option<&(Option<String>, Option<String>)>,
    now: Timestamp,
) -> Result<()> {
    let memory = encode(&f.memory)?;
    let state = codec::encode(&f.record)?;
    let (kind, id, last) = (
        key.kind.as_str(),
        key.id.as_str(),
        f.last.unwrap_or_default().as_millis(),
    );
    let now = now.as_millis();
    let columns = indexed(&f.record);
    let armed = f.armed_version.as_deref();
    if stored == Some(&columns) {
        sql.execute(
            "UPDATE records SET last_occurred_at = ?3, updated_at = ?4, state = ?5, memory = ?6,
               armed_version = ?7
             WHERE kind = ?1 AND id = ?2",
            args![kind, id, last, now, &state, &memory, armed],
        )?;
    } else {
        sql.execute(
            "INSERT INTO records (kind, id, stage, owner, last_occurred_at, updated_at, state, memory,
                                  armed_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (kind, id) DO UPDATE SET stage = excluded.stage, owner = excluded.owner,
               last_occurred_at = excluded.last_occurred_at, updated_at = excluded.updated_at,
               state = excluded.state, memory = excluded.memory,
               armed_version = excluded.armed_version",
            args![
                kind,
                id,
                columns.0.as_deref(),
                columns.1.as_deref(),
                last,
                now,
                &state,
                &memory,
                armed
            ],
        )?;
    }
    Ok(())
}

/// Fires, in due order, at most `limit` timers due at or before `now`: each is deleted as it
/// fires, with the effects it causes and the rule's memory, so a crash leaves it either
/// pending or done. A timer whose record another transaction holds (another node firing it,
/// or an ingest moving it) is left to that transaction.
pub(crate) fn fire_timers(
    sql: &mut dyn Sql,
    known: &Known,
    engine: &Engine,
    now: Timestamp,
    limit: usize,
    written: &mut Known,
) -> Result<TimersFired> {
    let due = sql.query(
        "SELECT rule, record_kind, record_id FROM timers
         WHERE due <= ?1 ORDER BY due, rule, record_kind, record_id LIMIT ?2",
        args![now.as_millis(), limit as i64],
    )?;
    let mut fired = TimersFired::default();
    let mut effects = Vec::new();
    for mut row in due {
        let rule = row.text(0)?;
        let record = row.record_key(1)?;
        if !sql.try_lock_record(&record)? {
            continue;
        }
        // Still there and still due once the record is held: otherwise it fired or moved.
        let Some(row) = sql.query_opt(
            "DELETE FROM timers WHERE rule = ?1 AND record_kind = ?2 AND record_id = ?3
               AND due <= ?4
             RETURNING due, anchor",
            args![
                &rule,
                record.kind.as_str(),
                record.id.as_str(),
                now.as_millis()
            ],
        )?
        else {
            continue;
        };
        let mut folded = current(sql, known, written, &record)?;
        let timer = Timer {
            due: row.millis(0)?,
            rule,
            record: record.clone(),
            anchor: row.millis(1)?,
        };
        // A timer fires at its due time, whatever the lateness: replays decide alike.
        effects.extend(engine.on_timer(&timer, &folded.record, &mut folded.memory, timer.due));
        if let Some(next) = engine.follow_up(&timer, &folded.record, now) {
            set_timers(sql, vec![TimerChange::Set(next)])?;
        }
        fired.timers += 1;
        written.insert(record, folded);
    }
    for (key, f) in written.iter() {
        sql.execute(
            "UPDATE records SET memory = ?3 WHERE kind = ?1 AND id = ?2",
            args![key.kind.as_str(), key.id.as_str(), &encode(&f.memory)?],
        )?;
    }
    fired.effects = insert_effects(sql, &effects, now)?;
    Ok(fired)
}

/// Records with one of their columns, and the cursor of the next page.
type Page = (Vec<(RecordKey, super::Row)>, Option<i64>);

/// A page of records in storage order after the cursor `after`: each key with its row of
/// `columns`, and the cursor of the next page when this one is full. The records are locked
/// for the rest of the transaction.
fn records_page(sql: &mut dyn Sql, columns: &str, after: i64, limit: usize) -> Result<Page> {
    let position = sql.dialect().record_position();
    let rows = sql.query(
        &format!(
            "SELECT {position}, kind, id, {columns} FROM records WHERE {position} > ?1
             ORDER BY {position} LIMIT ?2"
        ),
        args![after, limit as i64],
    )?;
    let next = if rows.len() == limit {
        rows.last().map(|r| r.int(0)).transpose()?
    } else {
        None
    };
    let page = rows
        .into_iter()
        .map(|mut r| {
            let key = r.record_key(1)?;
            r.0.drain(..3);
            Ok((key, r))
        })
        .collect::<Result<Vec<_>>>()?;
    sql.lock_records(&page.iter().map(|(k, _)| k).collect::<Vec<_>>())?;
    Ok((page, next))
}

/// One pass of [`crate::Store::refold_records`]; the keys it corrected.
pub(crate) fn refold_records(
    sql: &mut dyn Sql,
    after: i64,
    limit: usize,
) -> Result<(RefoldPass, Vec<RecordKey>)> {
    let (rows, next) = records_page(sql, "state", after, limit)?;
    let mut pass = RefoldPass {
        examined: rows.len(),
        next,
        ..RefoldPass::default()
    };
    let mut corrected = Vec::new();
    for (key, mut row) in rows {
        let events = record_events(sql, &key, None)?;
        let record = Record::fold(&key, &events);
        let folded = codec::encode(&record)?;
        // Read again under the lock: the page was read before it was taken.
        let state = sql
            .query_opt(
                "SELECT state FROM records WHERE kind = ?1 AND id = ?2",
                args![key.kind.as_str(), key.id.as_str()],
            )?
            .map(|mut r| r.text(0))
            .transpose()?
            .unwrap_or(row.text(0)?);
        if folded == state {
            continue;
        }
        let (stage, owner) = indexed(&record);
        sql.execute(
            "UPDATE records SET state = ?3, stage = ?4, owner = ?5 WHERE kind = ?1 AND id = ?2",
            args![
                key.kind.as_str(),
                key.id.as_str(),
                &folded,
                stage.as_deref(),
                owner.as_deref()
            ],
        )?;
        pass.corrected += 1;
        corrected.push(key);
    }
    Ok((pass, corrected))
}

/// One pass of [`crate::Store::arm_records`]: the pass and the records it re-armed.
pub(crate) fn arm_records(
    sql: &mut dyn Sql,
    known: &Known,
    engine: &Engine,
    now: Timestamp,
    after: i64,
    limit: usize,
) -> Result<(ArmPass, Vec<(RecordKey, Folded)>)> {
    let (rows, next) = records_page(sql, "armed_version", after, limit)?;
    let mut written = Vec::new();
    for (key, _) in rows {
        if !rules_apply(key.kind) {
            continue;
        }
        let mut folded = match known.get(&key) {
            Some(f) => f.clone(),
            None => load(sql, &key)?,
        };
        if folded.armed_version.as_deref() == Some(engine.version()) {
            continue;
        }
        clear_timers(sql, &key)?;
        set_timers(sql, engine.arm(&folded.record, now))?;
        sql.execute(
            "UPDATE records SET armed_version = ?3 WHERE kind = ?1 AND id = ?2",
            args![key.kind.as_str(), key.id.as_str(), engine.version()],
        )?;
        folded.armed_version = Some(engine.version().to_owned());
        written.push((key, folded));
    }
    let pass = ArmPass {
        armed: written.len(),
        next,
    };
    Ok((pass, written))
}

/// Removes every timer of a record.
fn clear_timers(sql: &mut dyn Sql, key: &RecordKey) -> Result<()> {
    sql.execute(
        "DELETE FROM timers WHERE record_kind = ?1 AND record_id = ?2",
        args![key.kind.as_str(), key.id.as_str()],
    )
    .map(drop)
}

/// Writes the timers a record should now wait on: each set replaces the rule's previous timer.
fn set_timers(sql: &mut dyn Sql, changes: Vec<TimerChange>) -> Result<()> {
    for change in changes {
        match change {
            TimerChange::Set(t) => sql.execute(
                "INSERT INTO timers (rule, record_kind, record_id, due, anchor) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (rule, record_kind, record_id) DO UPDATE SET due = excluded.due, anchor = excluded.anchor",
                args![
                    &t.rule,
                    t.record.kind.as_str(),
                    t.record.id.as_str(),
                    t.due.as_millis(),
                    t.anchor.as_millis()
                ],
            ),
            TimerChange::Cancel { rule, record } => sql.execute(
                "DELETE FROM timers WHERE rule = ?1 AND record_kind = ?2 AND record_id = ?3",
                args![&rule, record.kind.as_str(), record.id.as_str()],
            ),
        }?;
    }
    Ok(())
}

/// The next member of a team's round-robin, advancing it (in the caller's transaction).
fn next_in_rotation(
    sql: &mut dyn Sql,
    team: &[domain::RecordId],
) -> Result<Option<domain::RecordId>> {
    if team.is_empty() {
        return Ok(None);
    }
    let name = team
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let next = sql
        .query_opt(
            "INSERT INTO rotations (team, next) VALUES (?1, 1)
             ON CONFLICT (team) DO UPDATE SET next = rotations.next + 1 RETURNING next - 1",
            args![&name],
        )?
        .ok_or_else(|| Error::Corrupt("rotation upsert returned nothing".into()))?
        .int(0)?;
    Ok(team
        .get(next.rem_euclid(team.len() as i64) as usize)
        .cloned())
}

/// Adds effects to the outbox; an effect whose idempotency key is already there is skipped.
pub(crate) fn insert_effects(
    sql: &mut dyn Sql,
    effects: &[Effect],
    now: Timestamp,
) -> Result<usize> {
    let insert = match sql.dialect() {
        // SQLite has one writer: the next number is the largest plus one.
        Dialect::Sqlite => {
            "INSERT INTO effects (key, seq, playbook, rule, version, record_kind, record_id, action,
                                  due, shadow, status, trace, created_at, channel, next_at)
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM effects), ?2, ?3, ?4, ?5, ?6, ?7,
                     ?8, ?9, ?10, ?11, ?12, ?13, ?8)
             ON CONFLICT (key) DO NOTHING"
        }
        // Several writers: a sequence numbers them.
        Dialect::Postgres => {
            "INSERT INTO effects (key, playbook, rule, version, record_kind, record_id, action,
                                  due, shadow, status, trace, created_at, channel, next_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?8)
             ON CONFLICT (key) DO NOTHING"
        }
    };
    let mut added = 0;
    for e in effects {
        let mut action = e.action.clone();
        if let Action::AssignOwner { team, chosen } = &mut action {
            // Only a new decision takes a turn in the rotation; a known key is skipped below.
            if sql
                .query_opt("SELECT 1 FROM effects WHERE key = ?1", args![&e.key])?
                .is_some()
            {
                continue;
            }
            *chosen = next_in_rotation(sql, team)?;
        }
        let channel = action.channel();
        let action = encode(&action)?;
        let trace = encode(&e.trace)?;
        added += sql.execute(
            insert,
            args![
                &e.key,
                &e.playbook,
                &e.rule,
                &e.version,
                e.record.kind.as_str(),
                e.record.id.as_str(),
                &action,
                e.due.as_millis(),
                e.shadow,
                if e.shadow { "shadow" } else { "pending" },
                &trace,
                now.as_millis(),
                &channel
            ],
        )? as usize;
    }
    Ok(added)
}

pub(crate) fn load(sql: &mut dyn Sql, key: &RecordKey) -> Result<Folded> {
    let row = sql.query_opt(
        "SELECT state, last_occurred_at, memory, armed_version FROM records
         WHERE kind = ?1 AND id = ?2",
        args![key.kind.as_str(), key.id.as_str()],
    )?;
    Ok(match row {
        Some(mut r) => Folded {
            record: codec::decode(key.kind, &r.text(0)?)?,
            last: Some(r.millis(1)?),
            memory: decode(&r.text(2)?)?,
            armed_version: r.opt_text(3)?,
        },
        None => Folded {
            record: Record::empty(key),
            last: None,
            memory: Memory::new(),
            armed_version: None,
        },
    })
}

/// A record's events in occurrence order (ties in log order); only the newest `newest` if set.
pub(crate) fn record_events(
    sql: &mut dyn Sql,
    key: &RecordKey,
    newest: Option<usize>,
) -> Result<Vec<Event>> {
    let limit = newest.map_or(i64::MAX, |n| n as i64);
    let rows = sql.query(
        "SELECT e.body FROM event_records r JOIN events e ON e.seq = r.seq
         WHERE r.kind = ?1 AND r.record_id = ?2
         ORDER BY r.occurred_at DESC, r.seq DESC LIMIT ?3",
        args![key.kind.as_str(), key.id.as_str(), limit],
    )?;
    rows.into_iter()
        .rev()
        .map(|mut r| decode(&r.text(0)?))
        .collect()
}
