//! What every write does, whatever the database: append events and fold them into record
//! state, run the rules, keep each record's timers, fire due timers, arm records for new
//! playbooks, refold from the log, and add effects to the outbox.

use std::collections::HashMap;

use domain::{Event, EventId, NewEvent, Record, RecordKey, RecordKind, Timestamp};
use engine::{Effect, Engine, Memory, Timer, TimerChange};
use playbook::Action;

use super::gates;
use super::sequences::{self, Cx, Library};
use super::storms;
use super::{Dialect, EventRow, LOAD_RECORD, RecordRow, Sql, args, codec, decode, encode};
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
        None => known_or_load(sql, known, key),
    }
}

/// The record as the transaction sees it, left where it is (a read before the writes).
pub(crate) fn peek(
    sql: &mut dyn Sql,
    known: &Known,
    written: &Known,
    key: &RecordKey,
) -> Result<Record> {
    match written.get(key) {
        Some(f) => Ok(f.record.clone()),
        None => Ok(known_or_load(sql, known, key)?.record),
    }
}

/// The record as committed: from the writer's cache, or read.
fn known_or_load(sql: &mut dyn Sql, known: &Known, key: &RecordKey) -> Result<Folded> {
    match known.get(key) {
        Some(f) => Ok(f.clone()),
        None => load(sql, key),
    }
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

/// Appends events and updates the records they concern. `written` holds the records written
/// earlier in the same transaction: a record is taken from there first, so each call builds on
/// the one before it; it goes to `known` once the transaction commits. Rows are read and written a statement per kind of row where the backend can
/// (see [`Sql`]): the events, their links, the records they touch, their states and timers.
pub(crate) fn ingest(
    sql: &mut dyn Sql,
    known: &Known,
    engine: Option<&Engine>,
    library: &Library,
    batch: Vec<NewEvent>,
    now: Timestamp,
    written: &mut Known,
) -> Result<Vec<Ingested>> {
    let events: Vec<Event> = batch
        .into_iter()
        .map(|new| new.stamp(event_id(now), now))
        .collect();
    let refs: Vec<Vec<RecordKey>> = events.iter().map(|e| e.refs.keys()).collect();
    // Every record the events concern is held before anything is written, so concurrent
    // writers (other nodes) apply one record's events one transaction at a time.
    sql.lock_records(&refs.iter().flatten().collect::<Vec<_>>())?;
    // Gates judge moves on the deals as held; a refused move may add an event (same records).
    let (events, asked): (Vec<Event>, Vec<bool>) = match engine {
        Some(engine) => gates::enforce(sql, known, written, engine, events, || event_id(now))?
            .into_iter()
            .unzip(),
        None => {
            let asked = vec![true; events.len()];
            (events, asked)
        }
    };
    // Only an added `gate.blocked` changes the list; it concerns its origin's records.
    let refs: Vec<Vec<RecordKey>> = if events.len() == refs.len() {
        refs
    } else {
        events.iter().map(|e| e.refs.keys()).collect()
    };
    let rows = events
        .iter()
        .map(|event| {
            Ok(EventRow {
                id: event.id.0.to_string(),
                source: event.source.clone(),
                source_id: event.source_id.clone(),
                ty: event.event_type().as_str(),
                occurred_at: event.occurred_at.as_millis(),
                received_at: now.as_millis(),
                body: encode(event)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let seqs = sql.insert_events(&rows)?;
    drop(rows);
    let mut links = Vec::new();
    for ((event, keys), seq) in events.iter().zip(&refs).zip(&seqs) {
        if let Some(seq) = seq {
            links.extend(
                keys.iter()
                    .map(|k| (k, event.occurred_at.as_millis(), *seq)),
            );
        }
    }
    sql.link_events(&links)?;
    // Every record the stored events concern that neither this transaction nor the cache
    // holds, read in one go.
    let mut wanted: Vec<&RecordKey> = links
        .iter()
        .map(|(k, _, _)| *k)
        .filter(|k| !written.contains_key(*k) && !known.contains_key(*k))
        .collect();
    wanted.sort_unstable_by_key(|k| (k.kind.as_str(), k.id.as_str()));
    wanted.dedup();
    let mut loaded: Known = HashMap::with_capacity(wanted.len());
    for (key, row) in wanted.iter().zip(sql.load_records(&wanted)?) {
        loaded.insert((*key).clone(), folded(key, row)?);
    }

    let mut touched: HashMap<RecordKey, Touched> = HashMap::new();
    let mut effects = Vec::new();
    let mut results = Vec::with_capacity(events.len());
    for (((event, keys), seq), asked) in events.iter().zip(refs).zip(seqs).zip(asked) {
        let Some(seq) = seq else {
            let mut row = sql
                .query_opt(
                    "SELECT id FROM events WHERE source = ?1 AND source_id = ?2",
                    args![&event.source, &event.source_id],
                )?
                .ok_or_else(|| Error::Corrupt("a duplicate event vanished".into()))?;
            let id =
                uuid::Uuid::parse_str(&row.text(0)?).map_err(|e| Error::Corrupt(e.to_string()))?;
            if asked {
                results.push(Ingested::Duplicate { id: EventId(id) });
            }
            continue;
        };
        for key in keys {
            let t = match touched.entry(key) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let folded = match loaded.remove(v.key()) {
                        Some(f) => f,
                        None => current(sql, known, written, v.key())?,
                    };
                    let stored = folded.last.map(|_| indexed(&folded.record));
                    // What the record waits on now; after the request only changes are written.
                    let armed = match engine {
                        Some(engine)
                            if folded.armed_version.as_deref() == Some(engine.arming())
                                && rules_apply(v.key().kind) =>
                        {
                            engine.arm(&folded.record, &folded.memory, now)
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
                t.folded.record.apply(event);
                t.folded.last = Some(event.occurred_at);
                if let Some(engine) = engine
                    && rules_apply(t.folded.record.kind())
                {
                    effects.extend(engine.on_event(event, &t.folded.record, &mut t.folded.memory));
                }
            }
        }
        if asked {
            results.push(Ingested::Stored { id: event.id, seq });
        }
    }
    let mut timers = Vec::new();
    let mut done = Vec::with_capacity(touched.len());
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
            let now_armed = engine.arm(&f.record, &f.memory, now);
            match f.armed_version.as_deref() {
                // Armed by this engine before the request: only what moved is rewritten.
                Some(v) if v == engine.arming() => timers.extend(
                    now_armed
                        .into_iter()
                        .zip(&t.armed)
                        .filter(|(new, old)| new != *old)
                        .map(|(new, _)| new),
                ),
                // Armed under other playbooks: the timers of rules gone from them go too.
                Some(_) => {
                    clear_timers(sql, &key)?;
                    timers.extend(now_armed);
                }
                None => timers.extend(now_armed),
            }
            f.armed_version = Some(engine.arming().to_owned());
        } else if rules_apply(key.kind) {
            // No rules decided on these events (none loaded, switched off, or history
            // imported): the timers stored may no longer fit the record, so the walk after the
            // rules run again re-arms it.
            f.armed_version = None;
        }
        done.push((key, f, t.stored));
    }
    sql.set_timers(&timers)?;
    let rows = done
        .iter()
        .map(|(key, f, stored)| {
            let (stage, owner) = indexed(&f.record);
            Ok(RecordRow {
                kind: key.kind.as_str(),
                id: key.id.as_str(),
                same_columns: stored.as_ref() == Some(&(stage.clone(), owner.clone())),
                stage,
                owner,
                last_occurred_at: f.last.unwrap_or_default().as_millis(),
                updated_at: now.as_millis(),
                state: codec::encode(&f.record)?,
                memory: encode(&f.memory)?,
                armed_version: f.armed_version.as_deref(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    sql.save_records(&rows)?;
    drop(rows);
    written.extend(done.into_iter().map(|(key, f, _)| (key, f)));
    let cx = Cx::new(library, engine, known, written);
    // Enrolments see the events before the effects they caused: a sequence a reply starts
    // is not ended by that reply.
    let stored: Vec<&Event> = events
        .iter()
        .zip(&results)
        .filter(|(_, r)| matches!(r, Ingested::Stored { .. }))
        .map(|(e, _)| e)
        .collect();
    sequences::on_events(sql, &cx, &stored, now)?;
    insert_effects(sql, Some(&cx), &effects, now)?;
    Ok(results)
}

/// Fires, in due order, the timers due at or before `now` — about `limit` of them: each with
/// the record's other timers due at the same moment, which are one input whose effects are
/// resolved together ([`Engine::on_timers`]; a replay fires them so too). Each is deleted as
/// it fires, with the effects it causes and the rule's memory, so a crash leaves it either
/// pending or done. A timer whose record another transaction holds (another node firing it,
/// or an ingest moving it) is left to that transaction.
pub(crate) fn fire_timers(
    sql: &mut dyn Sql,
    known: &Known,
    engine: &Engine,
    library: &Library,
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
        // Still there and still due once the record is held (otherwise it fired or moved),
        // with the record's other timers due at that moment.
        let rows = sql.query(
            "DELETE FROM timers WHERE record_kind = ?2 AND record_id = ?3
               AND due = (SELECT due FROM timers
                          WHERE rule = ?1 AND record_kind = ?2 AND record_id = ?3 AND due <= ?4)
             RETURNING rule, due, anchor",
            args![
                &rule,
                record.kind.as_str(),
                record.id.as_str(),
                now.as_millis()
            ],
        )?;
        if rows.is_empty() {
            continue;
        }
        let mut timers = rows
            .into_iter()
            .map(|mut row| {
                Ok(Timer {
                    rule: row.text(0)?,
                    due: row.millis(1)?,
                    record: record.clone(),
                    anchor: row.millis(2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        timers.sort();
        let mut folded = current(sql, known, written, &record)?;
        // A timer fires at its due time, whatever the lateness: replays decide alike.
        effects.extend(engine.on_timers(&timers, &folded.record, &mut folded.memory));
        for timer in &timers {
            if let Some(next) = engine.follow_up(timer, &folded.record, now) {
                sql.set_timers(&[TimerChange::Set(next)])?;
            }
        }
        fired.timers += timers.len();
        written.insert(record, folded);
    }
    for (key, f) in written.iter() {
        sql.execute(
            "UPDATE records SET memory = ?3 WHERE kind = ?1 AND id = ?2",
            args![key.kind.as_str(), key.id.as_str(), &encode(&f.memory)?],
        )?;
    }
    let cx = Cx::new(library, Some(engine), known, written);
    fired.effects = insert_effects(sql, Some(&cx), &effects, now)?;
    Ok(fired)
}

/// A page of records in storage order after the cursor `after`, and the cursor of the next
/// page when this one is full. The records are locked for the rest of the transaction, so what
/// the caller reads of them next is current.
fn records_page(
    sql: &mut dyn Sql,
    after: i64,
    limit: usize,
) -> Result<(Vec<RecordKey>, Option<i64>)> {
    let position = sql.dialect().record_position();
    let rows = sql.query(
        &format!(
            "SELECT {position}, kind, id FROM records WHERE {position} > ?1
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
        .map(|mut r| r.record_key(1))
        .collect::<Result<Vec<_>>>()?;
    sql.lock_records(&page.iter().collect::<Vec<_>>())?;
    Ok((page, next))
}

/// One pass of [`crate::Store::refold_records`]; the keys it corrected.
pub(crate) fn refold_records(
    sql: &mut dyn Sql,
    after: i64,
    limit: usize,
) -> Result<(RefoldPass, Vec<RecordKey>)> {
    let (keys, next) = records_page(sql, after, limit)?;
    let mut pass = RefoldPass {
        examined: keys.len(),
        next,
        ..RefoldPass::default()
    };
    let mut corrected = Vec::new();
    for key in keys {
        let events = record_events(sql, &key, None)?;
        let record = Record::fold(&key, &events);
        let folded = codec::encode(&record)?;
        let state = sql
            .query_opt(
                "SELECT state FROM records WHERE kind = ?1 AND id = ?2",
                args![key.kind.as_str(), key.id.as_str()],
            )?
            .map(|mut r| r.text(0))
            .transpose()?;
        if state.as_deref() == Some(folded.as_str()) {
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

/// One pass of [`crate::Store::arm_records`]: the pass and the records it re-armed. Only the
/// timers that differ from what is stored are written: a reload that changes no trigger (a
/// reworded `why`) rewrites none, only which version each record was armed under.
pub(crate) fn arm_records(
    sql: &mut dyn Sql,
    known: &Known,
    engine: &Engine,
    now: Timestamp,
    after: i64,
    limit: usize,
) -> Result<(ArmPass, Vec<(RecordKey, Folded)>)> {
    let (keys, next) = records_page(sql, after, limit)?;
    let mut stored = stored_timers(sql, after, next)?;
    let mut written = Vec::new();
    let mut changes = Vec::new();
    let mut versions = Vec::new();
    for key in keys {
        if !rules_apply(key.kind) {
            continue;
        }
        let mut folded = known_or_load(sql, known, &key)?;
        if folded.armed_version.as_deref() == Some(engine.arming()) {
            continue;
        }
        let mut had = stored.remove(&key).unwrap_or_default();
        for change in engine.arm(&folded.record, &folded.memory, now) {
            match change {
                TimerChange::Set(t) => {
                    if had.remove(&t.rule) != Some((t.due, t.anchor)) {
                        changes.push(TimerChange::Set(t));
                    }
                }
                TimerChange::Cancel { rule, record } => {
                    if had.remove(&rule).is_some() {
                        changes.push(TimerChange::Cancel { rule, record });
                    }
                }
            }
        }
        // Timers of rules the playbooks no longer have.
        changes.extend(had.into_keys().map(|rule| TimerChange::Cancel {
            rule,
            record: key.clone(),
        }));
        versions.push(key.clone());
        folded.armed_version = Some(engine.arming().to_owned());
        written.push((key, folded));
    }
    sql.set_timers(&changes)?;
    for key in &versions {
        sql.execute(
            "UPDATE records SET armed_version = ?3 WHERE kind = ?1 AND id = ?2",
            args![key.kind.as_str(), key.id.as_str(), engine.arming()],
        )?;
    }
    let pass = ArmPass {
        armed: written.len(),
        next,
    };
    Ok((pass, written))
}

/// Each record's stored timers: by rule, (due, anchor).
type StoredTimers = HashMap<RecordKey, HashMap<String, (Timestamp, Timestamp)>>;

/// The stored timers of the records in storage order after `after` up to `last` (to the end
/// without it), by record: each rule's (due, anchor).
fn stored_timers(sql: &mut dyn Sql, after: i64, last: Option<i64>) -> Result<StoredTimers> {
    let position = sql.dialect().record_position();
    let rows = sql.query(
        &format!(
            "SELECT t.record_kind, t.record_id, t.rule, t.due, t.anchor
             FROM timers t JOIN records r ON r.kind = t.record_kind AND r.id = t.record_id
             WHERE r.{position} > ?1 AND r.{position} <= ?2"
        ),
        args![after, last.unwrap_or(i64::MAX)],
    )?;
    let mut out = StoredTimers::new();
    for mut r in rows {
        let key = r.record_key(0)?;
        out.entry(key)
            .or_default()
            .insert(r.text(2)?, (r.millis(3)?, r.millis(4)?));
    }
    Ok(out)
}

/// Removes every timer of a record.
fn clear_timers(sql: &mut dyn Sql, key: &RecordKey) -> Result<()> {
    sql.execute(
        "DELETE FROM timers WHERE record_kind = ?1 AND record_id = ?2",
        args![key.kind.as_str(), key.id.as_str()],
    )
    .map(drop)
}

/// The team's count of routing decisions before this one, advancing it (in the caller's
/// transaction): the turn a rotation starts from.
fn next_turn(sql: &mut dyn Sql, team: &[domain::RecordId]) -> Result<u64> {
    let name = team
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let turn = sql
        .query_opt(
            "INSERT INTO rotations (team, next) VALUES (?1, 1)
             ON CONFLICT (team) DO UPDATE SET next = rotations.next + 1 RETURNING next - 1",
            args![&name],
        )?
        .ok_or_else(|| Error::Corrupt("rotation upsert returned nothing".into()))?
        .int(0)?;
    Ok(turn.max(0) as u64)
}

/// Decides an `assign_owner` as the effect is added: each member's state (availability,
/// working hours, capacity) and load (open deals, recent assignments) as the transaction sees
/// them, handed to the pure [`engine::routing::choose`] at the decision's time; the choice is
/// recorded in `assignments`.
fn route(
    sql: &mut dyn Sql,
    cx: Option<&Cx<'_>>,
    effect: &Effect,
    team: &[domain::RecordId],
    route: &playbook::Route,
) -> Result<engine::routing::Routed> {
    // As the transaction sees them: a person updated earlier in the same request counts.
    let read = |sql: &mut dyn Sql, key: &RecordKey| match cx {
        Some(cx) => cx.record(sql, key),
        None => load(sql, key).map(|f| f.record),
    };
    let record = read(sql, &effect.record)?;
    let at = effect.due;
    let turn = next_turn(sql, team)?;
    let since = at.as_millis() - route.recent.0;
    let mut people = Vec::new();
    let mut loads = Vec::new();
    for id in team.iter().chain(route.fallback.as_ref()) {
        people.push(
            match read(sql, &RecordKey::new(RecordKind::Person, id.clone()))? {
                // A person no event has created is not known.
                Record::Person(p) if p.created_at.is_some() => Some(p),
                _ => None,
            },
        );
        let open = sql
            .query_opt(
                "SELECT count(*) FROM records WHERE kind = 'deal' AND owner = ?1
                   AND (stage IS NULL OR stage NOT IN ('closed_won', 'closed_lost'))",
                args![id.as_str()],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        let recent = sql
            .query_opt(
                "SELECT count(*) FROM assignments WHERE person = ?1 AND at > ?2",
                args![id.as_str(), since],
            )?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        loads.push((open.max(0) as u32, recent.max(0) as u32));
    }
    let members: Vec<engine::routing::Member> = team
        .iter()
        .chain(route.fallback.as_ref())
        .zip(&people)
        .zip(&loads)
        .map(|((id, person), (open, recent))| engine::routing::Member {
            id,
            person: person.as_ref(),
            open_deals: *open,
            recent: *recent,
        })
        .collect();
    let (members, fallback) = members.split_at(team.len());
    let routed =
        engine::routing::choose(route, members, fallback.first(), record.owner(), turn, at);
    // A shadow rule's choice is recorded in its effect only: it assigns nothing.
    if let Some(person) = routed.chosen.as_ref().filter(|_| !effect.shadow) {
        sql.execute(
            "INSERT INTO assignments (effect_key, person, record_kind, record_id, rule, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (effect_key) DO NOTHING",
            args![
                &effect.key,
                person.as_str(),
                effect.record.kind.as_str(),
                effect.record.id.as_str(),
                &effect.rule,
                at.as_millis()
            ],
        )?;
    }
    Ok(routed)
}

/// Adds effects to the outbox; an effect whose idempotency key is already there is skipped.
/// An effect the engine overruled is written `overruled`, with why in `last_error`, and
/// nothing more: it is never claimed for delivery. With `cx` (the rules' effects), each other
/// new one first passes the storm guard — a watched rule past its limit has its effects
/// `held` — and is then acted on where the store acts: an owner routed, a sequence started or
/// stopped, a rule's email to a contact screened by the sending etiquette (one it stops is
/// `blocked`, with the reason).
pub(crate) fn insert_effects(
    sql: &mut dyn Sql,
    cx: Option<&Cx<'_>>,
    effects: &[Effect],
    now: Timestamp,
) -> Result<usize> {
    if effects.is_empty() {
        return Ok(0);
    }
    let insert = match sql.dialect() {
        // SQLite has one writer: the next number is the largest plus one.
        Dialect::Sqlite => {
            "INSERT INTO effects (key, seq, playbook, rule, version, record_kind, record_id, action,
                                  due, shadow, status, trace, created_at, channel, next_at,
                                  last_error)
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM effects), ?2, ?3, ?4, ?5, ?6, ?7,
                     ?8, ?9, ?10, ?11, ?12, ?13, ?8, ?14)
             ON CONFLICT (key) DO NOTHING"
        }
        // Several writers: a sequence numbers them.
        Dialect::Postgres => {
            "INSERT INTO effects (key, playbook, rule, version, record_kind, record_id, action,
                                  due, shadow, status, trace, created_at, channel, next_at,
                                  last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?8, ?14)
             ON CONFLICT (key) DO NOTHING"
        }
    };
    let mut guard = match cx {
        Some(_) => storms::Guard::load(sql, now)?,
        None => storms::Guard::default(),
    };
    let mut added = 0;
    for e in effects {
        // An overruled effect goes nowhere: it is not judged, routed or acted on.
        let judged = !e.shadow && e.overruled.is_none() && cx.is_some() && guard.watches(&e.rule);
        // Only a new decision is judged, and only one that passes takes a turn in a rotation.
        if (judged || matches!(e.action, Action::AssignOwner { .. }))
            && sql
                .query_opt("SELECT 1 FROM effects WHERE key = ?1", args![&e.key])?
                .is_some()
        {
            continue;
        }
        let verdict = if judged {
            guard.judge(sql, e, now)?
        } else {
            storms::Verdict::Pass
        };
        let mut action = e.action.clone();
        let unrouted = match verdict {
            storms::Verdict::Pass if e.overruled.is_none() => {
                route_action(sql, cx, e, &mut action)?
            }
            _ => None,
        };
        let (status, error) = match (&verdict, e.shadow, &e.overruled) {
            (_, true, _) => ("shadow", None),
            (_, _, Some(why)) => ("overruled", Some(why.as_str())),
            (storms::Verdict::Pass, _, _) => ("pending", None),
            (storms::Verdict::Hold, _, _) => ("held", None),
            (storms::Verdict::Cancel(why), _, _) => ("cancelled", Some(why.as_str())),
        };
        let channel = action.channel();
        let inserted = sql.execute(
            insert,
            args![
                &e.key,
                &e.playbook,
                &e.rule,
                &e.version,
                e.record.kind.as_str(),
                e.record.id.as_str(),
                &encode(&action)?,
                e.due.as_millis(),
                e.shadow,
                status,
                &encode(&e.trace)?,
                now.as_millis(),
                &channel,
                error
            ],
        )? as usize;
        added += inserted;
        if inserted == 0 || status != "pending" {
            if inserted == 1 && status == "held" {
                guard.held(sql, e)?;
            }
            continue;
        }
        act_on(sql, cx, e, &channel, unrouted, now)?;
    }
    Ok(added)
}

/// Decides an `assign_owner`'s member, written into its action; why nobody could be chosen,
/// if nobody could.
fn route_action(
    sql: &mut dyn Sql,
    cx: Option<&Cx<'_>>,
    e: &Effect,
    action: &mut Action,
) -> Result<Option<String>> {
    let Action::AssignOwner {
        team,
        route: how,
        chosen,
        chosen_by,
        why,
    } = action
    else {
        return Ok(None);
    };
    let routed = route(sql, cx, e, team, how)?;
    let unrouted = routed.chosen.is_none().then(|| routed.why.clone());
    *chosen = routed.chosen;
    *chosen_by = Some(routed.strategy.to_owned());
    *why = Some(routed.why);
    Ok(unrouted)
}

/// What the store does itself with a new effect that goes out: an unroutable assignment is
/// blocked; a sequence is started or stopped; a rule's email is screened by the etiquette.
fn act_on(
    sql: &mut dyn Sql,
    cx: Option<&Cx<'_>>,
    e: &Effect,
    channel: &str,
    unrouted: Option<String>,
    now: Timestamp,
) -> Result<()> {
    if let Some(why) = unrouted {
        return set_outcome(sql, &e.key, "blocked", &why, now);
    }
    let Some(cx) = cx else {
        return Ok(());
    };
    let outcome = if channel == "sequence" {
        Some(sequences::enact(sql, cx, e, now)?)
    } else {
        sequences::screen_rule_email(sql, cx, e, now)?.map(|why| ("blocked", why))
    };
    if let Some((status, detail)) = outcome {
        set_outcome(sql, &e.key, status, &detail, now)?;
    }
    Ok(())
}

/// Lets a held effect go out, now: routed, acted on and delivered as it would have been when
/// it was added (see [`insert_effects`]).
pub(crate) fn release(sql: &mut dyn Sql, cx: &Cx<'_>, key: &str, now: Timestamp) -> Result<()> {
    let mut row = sql
        .query_opt(
            "SELECT playbook, rule, version, record_kind, record_id, action, due, trace
             FROM effects WHERE key = ?1 AND status = 'held'",
            args![key],
        )?
        .ok_or_else(|| Error::NotFound(format!("held effect {key}")))?;
    let due = row.millis(6)?;
    let mut e = Effect {
        key: key.to_owned(),
        playbook: row.text(0)?,
        rule: row.text(1)?,
        version: row.text(2)?,
        record: row.record_key(3)?,
        action: decode(&row.text(5)?)?,
        at: due,
        due,
        shadow: false,
        overruled: None,
        trace: decode(&row.text(7)?)?,
    };
    let mut action = e.action.clone();
    let unrouted = route_action(sql, Some(cx), &e, &mut action)?;
    e.action = action;
    sql.execute(
        "UPDATE effects SET status = 'pending', action = ?2, next_at = ?3 WHERE key = ?1",
        args![key, &encode(&e.action)?, due.max(now).as_millis()],
    )?;
    act_on(sql, Some(cx), &e, &e.action.channel(), unrouted, now)
}

/// Ends an effect the store acted on itself: `delivered` with what it did, or `blocked` with
/// why not.
fn set_outcome(
    sql: &mut dyn Sql,
    key: &str,
    status: &str,
    detail: &str,
    now: Timestamp,
) -> Result<()> {
    let delivered = (status == "delivered").then_some(now.as_millis());
    let (error, response) = if status == "delivered" {
        (None, Some(detail))
    } else {
        (Some(detail), None)
    };
    sql.execute(
        "UPDATE effects SET status = ?2, last_error = ?3, response = ?4, delivered_at = ?5
         WHERE key = ?1",
        args![key, status, error, response, delivered],
    )?;
    Ok(())
}

/// Adds effects the etiquette stopped: in the outbox as `blocked`, with the reason, once.
pub(crate) fn insert_blocked(
    sql: &mut dyn Sql,
    blocked: &[(Effect, String)],
    now: Timestamp,
) -> Result<()> {
    for (effect, why) in blocked {
        if insert_effects(sql, None, std::slice::from_ref(effect), now)? == 1 {
            set_outcome(sql, &effect.key, "blocked", why, now)?;
        }
    }
    Ok(())
}

/// One pass over due enrolments: their steps' effects join the outbox in the same
/// transaction.
pub(crate) fn advance_enrolments(
    sql: &mut dyn Sql,
    known: &Known,
    engine: Option<&Engine>,
    library: &Library,
    now: Timestamp,
    limit: usize,
) -> Result<crate::Advanced> {
    let written = Known::new();
    let cx = Cx::new(library, engine, known, &written);
    let ran = sequences::advance(sql, &cx, now, limit)?;
    insert_effects(sql, None, &ran.effects, now)?;
    insert_blocked(sql, &ran.blocked, now)?;
    Ok(ran.pass)
}

pub(crate) fn load(sql: &mut dyn Sql, key: &RecordKey) -> Result<Folded> {
    let row = sql.query_opt(LOAD_RECORD, args![key.kind.as_str(), key.id.as_str()])?;
    folded(key, row)
}

/// A record from its stored row ([`LOAD_RECORD`]'s columns), or empty when there is none.
fn folded(key: &RecordKey, row: Option<super::Row>) -> Result<Folded> {
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
