//! Sequences inside the store's transactions: enrolments start and stop with the effects
//! that ask for them, take every event of their record and contact into account, and run their
//! due steps under the sending etiquette — all in the transaction of their cause, under the
//! record's lock, like the rules.
//!
//! The state machine itself is the engine's ([`engine::sequence::Enrolment`]); this module
//! keeps it in `enrolments`, feeds it, and turns what it returns into effects.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use domain::{
    Event, EventBody, MILLIS_PER_DAY, Record, RecordId, RecordKey, RecordKind, Timestamp,
};
use engine::sequence::{Ended, Enrolment, Refusal, Status, StepAction, Verdict};
use engine::{Effect, Trace};
use playbook::{Action, PlaybookSet, Sending, Sequence, Span, Target};

use engine::Engine;

use super::apply::{self, Known};
use super::{Dialect, Row, Sql, args, decode, encode};
use crate::sequences::{
    Advanced, Control, EnrolmentInfo, EnrolmentQuery, PauseScope, SequencePause, Suppression,
    VariantResult,
};
use crate::{Error, Result};

/// Every playbook set this process has run or read, by version: an enrolment runs the version
/// it started on to the end.
#[derive(Debug, Default)]
pub(crate) struct Library {
    sets: Mutex<HashMap<String, Arc<PlaybookSet>>>,
}

impl Library {
    pub(crate) fn remember(&self, set: &Arc<PlaybookSet>) {
        if let Ok(mut sets) = self.sets.lock() {
            sets.entry(set.version.clone())
                .or_insert_with(|| Arc::clone(set));
        }
    }

    /// The set `version`: run here before, or published by a node and compiled now.
    pub(crate) fn get(&self, sql: &mut dyn Sql, version: &str) -> Result<Option<Arc<PlaybookSet>>> {
        if let Some(set) = self.sets.lock().ok().and_then(|s| s.get(version).cloned()) {
            return Ok(Some(set));
        }
        let Some(mut row) = sql.query_opt(
            "SELECT files FROM playbook_sets WHERE version = ?1 ORDER BY seq DESC LIMIT 1",
            args![version],
        )?
        else {
            return Ok(None);
        };
        let files: Vec<(String, String)> = decode(&row.text(0)?)?;
        let files: Vec<(PathBuf, String)> = files
            .into_iter()
            .map(|(path, text)| (PathBuf::from(path), text))
            .collect();
        let Some(set) = playbook::load_files(&files).set.map(Arc::new) else {
            return Ok(None);
        };
        self.remember(&set);
        Ok(Some(set))
    }
}

/// What sequences need from the transaction they run in.
pub(crate) struct Cx<'a> {
    library: &'a Library,
    /// The running playbooks: their sending etiquette applies to every send.
    current: Option<&'a Arc<PlaybookSet>>,
    /// Records as committed before the transaction (the writer's cache).
    known: &'a Known,
    /// Records written earlier in the transaction.
    written: &'a Known,
    /// The running engine's risk model, for goals that read `deal.risk`.
    risk: &'a risk::Model,
}

/// The risk model of a store running no playbooks.
static NO_RISK: std::sync::LazyLock<risk::Model> = std::sync::LazyLock::new(risk::Model::default);

impl<'a> Cx<'a> {
    pub(crate) fn new(
        library: &'a Library,
        engine: Option<&'a Engine>,
        known: &'a Known,
        written: &'a Known,
    ) -> Self {
        Self {
            library,
            current: engine.map(Engine::playbooks),
            known,
            written,
            risk: engine.map_or(&*NO_RISK, Engine::risk),
        }
    }

    pub(crate) fn record(&self, sql: &mut dyn Sql, key: &RecordKey) -> Result<Record> {
        match self.written.get(key).or_else(|| self.known.get(key)) {
            Some(f) => Ok(f.record.clone()),
            None => apply::load(sql, key).map(|f| f.record),
        }
    }

    fn sending(&self) -> Sending {
        self.current.map(|s| s.sending).unwrap_or_default()
    }

    /// The playbooks of `version`, which enrolments pinned to it run: known or published,
    /// or (when that version is nowhere to be found) the running ones.
    fn playbooks(&self, sql: &mut dyn Sql, version: &str) -> Result<Option<Arc<PlaybookSet>>> {
        Ok(self
            .library
            .get(sql, version)?
            .or_else(|| self.current.cloned()))
    }
}

/// An enrolment with the columns kept beside its state.
struct Stored {
    id: String,
    record: RecordKey,
    contact: RecordKey,
    account: Option<String>,
    owner: Option<String>,
    concurrent: bool,
    paused_by: Option<String>,
    enrolment: Enrolment,
}

const COLUMNS: &str = "id, record, contact, account, owner, concurrent, status, paused_by, \
                       paused_at, due_at, state";

fn key_of(text: &str) -> Result<RecordKey> {
    let (kind, id) = text
        .split_once(':')
        .ok_or_else(|| Error::Corrupt(format!("record key {text:?}")))?;
    let kind =
        RecordKind::parse(kind).ok_or_else(|| Error::Corrupt(format!("record kind {kind:?}")))?;
    let id = RecordId::parse(id).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(RecordKey::new(kind, id))
}

/// Reads a row of [`COLUMNS`]. The columns are authoritative for the status and due time: a
/// pause or resume over many enrolments (an owner's, everyone's) changes only them.
fn stored(mut r: Row) -> Result<Stored> {
    let mut enrolment: Enrolment = decode(&r.text(10)?)?;
    let status = r.text(6)?;
    match status.as_str() {
        "active" => {
            enrolment.status = Status::Active;
            enrolment.due = r.millis(9)?;
        }
        "paused" => {
            enrolment.status = Status::Paused {
                since: r.opt_millis(8)?.unwrap_or(enrolment.due),
            };
            enrolment.due = r.millis(9)?;
        }
        _ => {}
    }
    Ok(Stored {
        id: r.text(0)?,
        record: key_of(&r.text(1)?)?,
        contact: key_of(&r.text(2)?)?,
        account: r.opt_text(3)?,
        owner: r.opt_text(4)?,
        concurrent: r.bool(5)?,
        paused_by: r.opt_text(7)?,
        enrolment,
    })
}

fn save(sql: &mut dyn Sql, s: &Stored) -> Result<()> {
    let e = &s.enrolment;
    let (paused_at, ended_at, end_reason) = match &e.status {
        Status::Active => (None, None, None),
        Status::Paused { since } => (Some(since.as_millis()), None, None),
        Status::Ended { reason, at } => (None, Some(at.as_millis()), Some(reason.as_str())),
    };
    let status = e.status.as_str();
    let due = ended_at.is_none().then_some(e.due.as_millis());
    let paused_by = paused_at.map(|_| s.paused_by.as_deref().unwrap_or("enrolment"));
    sql.execute(
        "INSERT INTO enrolments (id, sequence, version, record, contact, account, owner, concurrent,
                                 status, paused_by, paused_at, due_at, replied_at, state, started_at,
                                 ended_at, end_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, status = excluded.status,
           paused_by = excluded.paused_by, paused_at = excluded.paused_at,
           due_at = excluded.due_at, replied_at = excluded.replied_at, state = excluded.state,
           ended_at = excluded.ended_at, end_reason = excluded.end_reason",
        args![
            &s.id,
            &e.sequence,
            &e.version,
            &s.record.to_string(),
            &s.contact.to_string(),
            s.account.as_deref(),
            s.owner.as_deref(),
            i64::from(s.concurrent),
            status,
            paused_by,
            paused_at,
            due,
            e.replied_at.map(|t| t.as_millis()),
            &encode(e)?,
            e.started_at.as_millis(),
            ended_at,
            end_reason
        ],
    )?;
    Ok(())
}

fn for_update(sql: &dyn Sql) -> &'static str {
    match sql.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    }
}

/// The contact a sequence on `record` emails: a deal's first contact, a lead itself.
fn contact_of(record: &Record) -> Option<RecordKey> {
    match record {
        Record::Deal(d) => d
            .contacts
            .iter()
            .next()
            .map(|id| RecordKey::new(RecordKind::Contact, id.clone())),
        Record::Lead(l) => Some(RecordKey::new(RecordKind::Lead, l.id.clone())),
        _ => None,
    }
}

/// What sending to a contact needs to know of it.
struct Reach {
    address: Option<String>,
    zone: Option<String>,
    account: Option<String>,
    unsubscribed: bool,
}

fn reach(record: &Record) -> Reach {
    match record {
        Record::Contact(c) => Reach {
            address: c.email.clone(),
            zone: c.timezone.clone(),
            account: c.account.as_ref().map(|a| a.as_str().to_owned()),
            unsubscribed: c.unsubscribed_at.is_some(),
        },
        Record::Lead(l) => Reach {
            address: l.email.clone(),
            zone: None,
            account: None,
            unsubscribed: l.unsubscribed_at.is_some(),
        },
        _ => Reach {
            address: None,
            zone: None,
            account: None,
            unsubscribed: false,
        },
    }
}

/// Why the contact may get no email at all: no address, unsubscribed, or suppressed.
fn refusal(sql: &mut dyn Sql, reach: &Reach) -> Result<Option<Refusal>> {
    match &reach.address {
        None => Ok(Some(Refusal::NoAddress)),
        Some(_) if reach.unsubscribed => Ok(Some(Refusal::Unsubscribed)),
        Some(a) => suppressed(sql, a),
    }
}

/// The suppression that covers `address` (itself, or its domain), if any.
fn suppressed(sql: &mut dyn Sql, address: &str) -> Result<Option<Refusal>> {
    let address = address.trim().to_lowercase();
    let domain = address
        .rsplit_once('@')
        .map(|(_, d)| format!("@{d}"))
        .unwrap_or_default();
    let row = sql.query_opt(
        "SELECT reason FROM suppressions WHERE address = ?1 OR address = ?2
         ORDER BY address LIMIT 1",
        args![&address, &domain],
    )?;
    Ok(match row {
        Some(mut r) => Some(match r.text(0)?.as_str() {
            "unsubscribed" => Refusal::Unsubscribed,
            "bounced" => Refusal::Bounced,
            _ => Refusal::DoNotContact,
        }),
        None => None,
    })
}

/// Adds a suppression; an address already suppressed keeps its first reason.
pub(crate) fn suppress(
    sql: &mut dyn Sql,
    address: &str,
    reason: &str,
    note: Option<&str>,
    now: Timestamp,
) -> Result<()> {
    sql.execute(
        "INSERT INTO suppressions (address, reason, note, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (address) DO NOTHING",
        args![
            &address.trim().to_lowercase(),
            reason,
            note,
            now.as_millis()
        ],
    )?;
    Ok(())
}

/// The sending etiquette for one contact and one sender, as of `now`: the sends it counts are
/// read once, and the ones decided meanwhile added.
struct Etiquette {
    policy: Sending,
    contact: String,
    sender: String,
    refusal: Option<Refusal>,
    /// Send times (ms) to the contact within the frequency cap's span, oldest first.
    to_contact: Vec<i64>,
    /// Send times (ms) from the sender within the last day, oldest first.
    from_sender: Vec<i64>,
}

/// What keeps an email from going now.
struct Stop {
    verdict: Verdict,
    /// `frequency_cap`, `throttle`, or the refusal's name.
    kind: &'static str,
    /// In words, for the outbox.
    why: String,
}

/// Each sender's send times within the last day, as read (and added to) during one pass.
type Senders = HashMap<String, Vec<i64>>;

const HOUR: i64 = 3_600_000;

impl Etiquette {
    /// Reads what the etiquette counts. A sender's recent sends are taken from `senders` when
    /// an earlier enrolment of the same pass read them (give them back with
    /// [`Etiquette::keep`]): one owner's hundred enrolments due at nine read them once.
    fn load(
        sql: &mut dyn Sql,
        policy: Sending,
        contact: &RecordKey,
        reach: &Reach,
        sender: &str,
        now: Timestamp,
        senders: &mut Senders,
    ) -> Result<Self> {
        let refusal = refusal(sql, reach)?;
        let contact = contact.to_string();
        // The newest sends only, as many as a limit allows (the oldest of them says when the
        // limit frees up); older ones are filtered out here. A time bound in the statement
        // would make SQLite plan it again for every value.
        let times = |sql: &mut dyn Sql, column: &str, who: &str, most: u32, since: i64| {
            let rows = sql.query(
                &format!("SELECT at FROM sends WHERE {column} = ?1 ORDER BY at DESC LIMIT ?2"),
                args![who, i64::from(most)],
            )?;
            let mut times = rows
                .into_iter()
                .map(|r| r.int(0))
                .filter(|t| t.as_ref().map_or(true, |t| *t > since))
                .collect::<Result<Vec<i64>>>()?;
            times.reverse();
            Ok::<_, Error>(times)
        };
        let to_contact = match policy.per_contact {
            Some((max, Span(span))) => {
                times(sql, "contact", &contact, max, now.as_millis() - span)?
            }
            None => Vec::new(),
        };
        let most = policy
            .per_sender_hour
            .max(policy.per_sender_day)
            .unwrap_or(0);
        let from_sender = match senders.remove(sender) {
            Some(times) => times,
            None if most == 0 => Vec::new(),
            None => times(
                sql,
                "sender",
                sender,
                most,
                now.as_millis() - MILLIS_PER_DAY,
            )?,
        };
        Ok(Self {
            policy,
            contact,
            sender: sender.to_owned(),
            refusal,
            to_contact,
            from_sender,
        })
    }

    /// May an email go now? `None` when it may; otherwise what stops it.
    fn verdict(&self, now: Timestamp) -> Option<Stop> {
        if let Some(refusal) = self.refusal {
            return Some(Stop {
                verdict: Verdict::Refuse(refusal),
                kind: refusal.as_str(),
                why: format!("{}: {}", refusal.as_str(), self.contact),
            });
        }
        let now = now.as_millis();
        let within = |times: &[i64], span: i64| -> Vec<i64> {
            times.iter().copied().filter(|t| *t > now - span).collect()
        };
        let mut holds = Vec::new();
        if let Some((max, Span(span))) = self.policy.per_contact {
            let recent = within(&self.to_contact, span);
            if recent.len() >= max as usize {
                let until = recent[recent.len() - max as usize] + span;
                holds.push((
                    until,
                    "frequency_cap",
                    format!(
                        "frequency cap: {max} automated emails to {} within {}",
                        self.contact,
                        Span(span)
                    ),
                ));
            }
        }
        for (limit, span, per) in [
            (self.policy.per_sender_hour, HOUR, "hour"),
            (self.policy.per_sender_day, MILLIS_PER_DAY, "day"),
        ] {
            let Some(limit) = limit else { continue };
            let recent = within(&self.from_sender, span);
            if limit == 0 || recent.len() >= limit as usize {
                let until = recent
                    .get(recent.len().saturating_sub(limit.max(1) as usize))
                    .map_or(now + span, |t| t + span);
                holds.push((
                    until,
                    "throttle",
                    format!("throttle: {limit} emails from {} per {per}", self.sender),
                ));
            }
        }
        holds
            .into_iter()
            .max_by_key(|(until, _, _)| *until)
            .map(|(until, kind, why)| {
                let until = Timestamp::from_millis(until);
                Stop {
                    verdict: Verdict::Hold { until },
                    kind,
                    why: format!("{why}; held until {until}"),
                }
            })
    }

    /// Hands the sender's sends (with the ones just decided) back for the next enrolment.
    fn keep(self, senders: &mut Senders) {
        senders.insert(self.sender, self.from_sender);
    }

    fn sent(&mut self, now: Timestamp) {
        self.to_contact.push(now.as_millis());
        self.from_sender.push(now.as_millis());
    }
}

/// Records an automated email to a contact (for caps, throttles and results).
fn record_send(
    sql: &mut dyn Sql,
    effect: &str,
    etiquette: &Etiquette,
    step: Option<(&str, &str, &str)>,
    now: Timestamp,
) -> Result<()> {
    let (enrolment, step, variant) = match step {
        Some((e, s, v)) => (Some(e), Some(s), Some(v)),
        None => (None, None, None),
    };
    sql.execute(
        "INSERT INTO sends (effect, contact, sender, at, enrolment, step, variant)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (effect) DO NOTHING",
        args![
            effect,
            &etiquette.contact,
            &etiquette.sender,
            now.as_millis(),
            enrolment,
            step,
            variant
        ],
    )?;
    Ok(())
}

fn sender_of(record: &Record) -> String {
    record
        .owner()
        .map_or_else(|| "(no owner)".to_owned(), |o| o.as_str().to_owned())
}

/// The screening of an email a rule decided for a contact: `None` when it may go (and is
/// counted), or why it may not. Emails to people of the team are not screened.
pub(crate) fn screen_rule_email(
    sql: &mut dyn Sql,
    cx: &Cx<'_>,
    effect: &Effect,
    now: Timestamp,
) -> Result<Option<String>> {
    let to = match &effect.action {
        Action::SendEmail { to, .. } | Action::SendAsset { to, .. } => to,
        _ => return Ok(None),
    };
    let record = cx.record(sql, &effect.record)?;
    let contact = match to {
        Target::PrimaryContact => contact_of(&record),
        Target::Contact(id) => Some(RecordKey::new(RecordKind::Contact, id.clone())),
        _ => return Ok(None),
    };
    let Some(contact) = contact else {
        return Ok(None);
    };
    let reach = reach(&cx.record(sql, &contact)?);
    if reach.address.is_none() {
        // Nothing to screen: delivery reports the missing address.
        return Ok(None);
    }
    let etiquette = Etiquette::load(
        sql,
        cx.sending(),
        &contact,
        &reach,
        &sender_of(&record),
        now,
        &mut Senders::new(),
    )?;
    match etiquette.verdict(now) {
        None => {
            record_send(sql, &effect.key, &etiquette, None, now)?;
            Ok(None)
        }
        Some(stop) => Ok(Some(stop.why)),
    }
}

/// Whether a pause covers enrolments of `owner` now: the scope that does.
fn pause_for(sql: &mut dyn Sql, owner: Option<&str>) -> Result<Option<String>> {
    let owner = owner
        .map(|o| PauseScope::Owner(o.to_owned()).key())
        .unwrap_or_default();
    sql.query_opt(
        "SELECT scope FROM sequence_pauses WHERE scope = 'global' OR scope = ?1
             ORDER BY scope DESC LIMIT 1",
        args![&owner],
    )?
    .map(|mut r| r.text(0))
    .transpose()
}

/// Acts on a `start_sequence` or `stop_sequence` effect just added to the outbox; returns the
/// effect's status and what happened (the enrolment, or why there is none).
pub(crate) fn enact(
    sql: &mut dyn Sql,
    cx: &Cx<'_>,
    effect: &Effect,
    now: Timestamp,
) -> Result<(&'static str, String)> {
    match &effect.action {
        Action::StartSequence { sequence } => start(sql, cx, effect, sequence, now),
        Action::StopSequence { sequence } => {
            let rows = sql.query(
                &format!(
                    "SELECT {COLUMNS} FROM enrolments
                     WHERE record = ?1 AND sequence = ?2 AND status <> 'ended'{}",
                    for_update(sql)
                ),
                args![&effect.record.to_string(), sequence],
            )?;
            let n = rows.len();
            for row in rows {
                let mut s = stored(row)?;
                s.enrolment.stop(now);
                save(sql, &s)?;
            }
            Ok(("delivered", format!("stopped {n} enrolment(s)")))
        }
        _ => Err(Error::Invalid("not a sequence action".into())),
    }
}

fn start(
    sql: &mut dyn Sql,
    cx: &Cx<'_>,
    effect: &Effect,
    name: &str,
    now: Timestamp,
) -> Result<(&'static str, String)> {
    let blocked = |why: String| Ok(("blocked", why));
    let set = cx.playbooks(sql, &effect.version)?;
    let Some((_, sequence)) = set.as_deref().and_then(|s| s.sequence(name)) else {
        return blocked(format!("sequence {name:?} is not in the playbooks"));
    };
    let record = cx.record(sql, &effect.record)?;
    let Some(contact) = contact_of(&record) else {
        return blocked(format!("{} has no contact to enrol", effect.record));
    };
    let others = sql.query(
        "SELECT id, sequence, concurrent FROM enrolments WHERE contact = ?1 AND status <> 'ended'",
        args![&contact.to_string()],
    )?;
    for mut other in others {
        let (id, other_sequence, other_concurrent) =
            (other.text(0)?, other.text(1)?, other.bool(2)?);
        if other_sequence == name {
            return blocked(format!("{contact} is already in sequence {name:?} ({id})"));
        }
        if !(sequence.concurrent && other_concurrent) {
            return blocked(format!(
                "exclusivity: {contact} is in sequence {other_sequence:?} ({id}); one at a time unless both allow more (`concurrent: true`)"
            ));
        }
    }
    if let Some(Span(cool_off)) = cx.sending().cool_off {
        let last = sql
            .query_opt(
                "SELECT max(ended_at) FROM enrolments WHERE contact = ?1 AND status = 'ended'",
                args![&contact.to_string()],
            )?
            .map(|r| r.opt_int(0))
            .transpose()?
            .flatten();
        if let Some(last) = last
            && now.as_millis() < last + cool_off
        {
            return blocked(format!(
                "cool-off: {contact}'s last sequence ended at {}; the next may start from {}",
                Timestamp::from_millis(last),
                Timestamp::from_millis(last + cool_off)
            ));
        }
    }
    let reach = reach(&cx.record(sql, &contact)?);
    if let Some(refusal) = refusal(sql, &reach)? {
        return blocked(format!("{}: {contact}", refusal.as_str()));
    }
    let owner = record.owner().map(|o| o.as_str().to_owned());
    let mut enrolment = Enrolment::start(sequence, &effect.version, &contact.to_string(), now);
    let paused_by = pause_for(sql, owner.as_deref())?;
    if paused_by.is_some() {
        enrolment.pause(now);
    }
    let stored = Stored {
        id: effect.key.clone(),
        record: effect.record.clone(),
        account: reach.account.or_else(|| match &record {
            Record::Deal(d) => d.account.as_ref().map(|a| a.as_str().to_owned()),
            _ => None,
        }),
        contact,
        owner,
        concurrent: sequence.concurrent,
        paused_by,
        enrolment,
    };
    save(sql, &stored)?;
    Ok((
        "delivered",
        format!(
            "enrolled {} in {name:?} ({}){}",
            stored.contact,
            stored.id,
            if stored.paused_by.is_some() {
                ", paused"
            } else {
                ""
            }
        ),
    ))
}

/// Whether an event can change an enrolment (engagement, exits, unsubscribes).
fn matters(event: &Event) -> bool {
    matches!(
        event.body,
        EventBody::EmailOpened(_)
            | EventBody::LinkClicked(_)
            | EventBody::EmailReceived(_)
            | EventBody::MeetingBooked(_)
            | EventBody::DealStageChanged(_)
            | EventBody::ContactUnsubscribed(_)
    )
}

/// The contact (or lead) an event is from or about.
fn event_contact(event: &Event) -> Option<RecordKey> {
    event
        .refs
        .contact
        .as_ref()
        .map(|c| RecordKey::new(RecordKind::Contact, c.clone()))
        .or_else(|| {
            event
                .refs
                .lead
                .as_ref()
                .map(|l| RecordKey::new(RecordKind::Lead, l.clone()))
        })
}

fn human_reply(event: &Event) -> bool {
    matches!(&event.body, EventBody::EmailReceived(e) if !e.is_automatic())
}

/// Takes newly stored events into account: unsubscribes and hard bounces suppress the
/// address; enrolments of the events' records and contacts track engagement and end on their
/// exits; a human reply ends the enrolments of the account's other contacts where the sequence
/// says so; an enrolment whose record changed ends once its goal holds.
pub(crate) fn on_events(
    sql: &mut dyn Sql,
    cx: &Cx<'_>,
    events: &[&Event],
    now: Timestamp,
) -> Result<()> {
    for event in events {
        let reason = match &event.body {
            EventBody::ContactUnsubscribed(_) => "unsubscribed",
            EventBody::EmailReceived(e) if e.is_bounce() => "bounced",
            _ => continue,
        };
        let given = match &event.body {
            EventBody::ContactUnsubscribed(u) => u.email.clone(),
            _ => None,
        };
        let address = match (given, event_contact(event)) {
            (Some(a), _) => Some(a),
            (None, Some(contact)) => reach(&cx.record(sql, &contact)?).address,
            (None, None) => None,
        };
        if let Some(address) = address {
            suppress(
                sql,
                &address,
                reason,
                Some(&format!("event {}", event.id)),
                now,
            )?;
        }
    }
    let relevant: Vec<&Event> = events.iter().copied().filter(|e| matters(e)).collect();
    let goals: Vec<&RecordKey> = cx
        .written
        .keys()
        .filter(|k| apply::rules_apply(k.kind))
        .collect();
    if relevant.is_empty() && goals.is_empty() {
        return Ok(());
    }
    if sql
        .query_opt(
            "SELECT 1 FROM enrolments WHERE status <> 'ended' LIMIT 1",
            &[],
        )?
        .is_none()
    {
        return Ok(());
    }
    // The enrolments any of the events or changed records can reach, in one query per chunk.
    let mut records = BTreeSet::new();
    let mut contacts = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    let mut reply_accounts: Vec<Option<String>> = Vec::with_capacity(relevant.len());
    for event in &relevant {
        records.extend(
            event
                .refs
                .keys()
                .into_iter()
                .filter(|k| apply::rules_apply(k.kind))
                .map(|k| k.to_string()),
        );
        let contact = event_contact(event);
        if let Some(c) = &contact {
            contacts.insert(c.to_string());
        }
        let account = if human_reply(event) {
            match (&event.refs.account, &contact) {
                (Some(a), _) => Some(a.as_str().to_owned()),
                (None, Some(c)) => reach(&cx.record(sql, c)?).account,
                (None, None) => None,
            }
        } else {
            None
        };
        if let Some(a) = &account {
            accounts.insert(a.clone());
        }
        reply_accounts.push(account);
    }
    records.extend(goals.iter().map(|k| k.to_string()));
    let mut found: Vec<Stored> = Vec::new();
    let mut seen = BTreeSet::new();
    for (column, values) in [
        ("record", &records),
        ("contact", &contacts),
        ("account", &accounts),
    ] {
        let values: Vec<&String> = values.iter().collect();
        for chunk in values.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let args: Vec<super::Arg<'_>> = chunk.iter().map(|v| super::Arg::from(*v)).collect();
            let rows = sql.query(
                &format!(
                    "SELECT {COLUMNS} FROM enrolments
                     WHERE {column} IN ({marks}) AND status <> 'ended' ORDER BY id{}",
                    for_update(sql)
                ),
                &args,
            )?;
            for row in rows {
                let s = stored(row)?;
                if seen.insert(s.id.clone()) {
                    found.push(s);
                }
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    for mut s in found {
        let before = s.enrolment.clone();
        let set = cx.playbooks(sql, &s.enrolment.version)?;
        let Some((_, sequence)) = set
            .as_deref()
            .and_then(|p| p.sequence(&s.enrolment.sequence))
        else {
            continue;
        };
        for (event, account) in relevant.iter().zip(&reply_accounts) {
            let concerns = event.refs.keys().contains(&s.record)
                || event_contact(event).as_ref() == Some(&s.contact);
            if concerns {
                s.enrolment.on_event(sequence, event, event.occurred_at);
            } else if sequence.account_wide_exit && account.is_some() && *account == s.account {
                s.enrolment.end(Ended::AccountReply, event.occurred_at);
            }
        }
        if let Some(goal) = &sequence.goal
            && !matches!(s.enrolment.status, Status::Ended { .. })
            && let Some(f) = cx.written.get(&s.record)
            && engine::holds(goal, &f.record, now, cx.risk)
        {
            s.enrolment.end(Ended::Goal, now);
        }
        if s.enrolment != before {
            save(sql, &s)?;
        }
    }
    Ok(())
}

/// Runs the due steps of at most `limit` active enrolments due at `now`, each under its
/// record's and contact's locks (one another transaction holds is left to it). Emails go
/// through the sending etiquette: held ones wait, and a blocked email is recorded in the
/// outbox with its reason.
pub(crate) fn advance(sql: &mut dyn Sql, cx: &Cx<'_>, now: Timestamp, limit: usize) -> Result<Ran> {
    let due = sql.query(
        "SELECT id, record, contact FROM enrolments
         WHERE status = 'active' AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
        args![now.as_millis(), limit as i64],
    )?;
    let mut pass = Advanced::default();
    let mut effects = Vec::new();
    let mut blocked = Vec::new();
    let mut senders = Senders::new();
    for mut row in due {
        let id = row.text(0)?;
        let record_key = key_of(&row.text(1)?)?;
        let contact_key = key_of(&row.text(2)?)?;
        if !sql.try_lock_record(&record_key)?
            || (contact_key != record_key && !sql.try_lock_record(&contact_key)?)
        {
            continue;
        }
        let Some(row) = sql.query_opt(
            &format!(
                "SELECT {COLUMNS} FROM enrolments
                 WHERE id = ?1 AND status = 'active' AND due_at <= ?2{}",
                for_update(sql)
            ),
            args![&id, now.as_millis()],
        )?
        else {
            continue;
        };
        let mut s = stored(row)?;
        pass.enrolments += 1;
        let set = cx.playbooks(sql, &s.enrolment.version)?;
        let Some((playbook, sequence)) = set
            .as_deref()
            .and_then(|p| p.sequence(&s.enrolment.sequence))
        else {
            s.enrolment.end(Ended::SequenceRemoved, now);
            pass.ended += 1;
            save(sql, &s)?;
            continue;
        };
        let record = cx.record(sql, &s.record)?;
        let reach = reach(&cx.record(sql, &s.contact)?);
        s.owner = record.owner().map(|o| o.as_str().to_owned());
        let goal = sequence
            .goal
            .as_ref()
            .is_some_and(|g| engine::holds(g, &record, now, cx.risk));
        let mut etiquette = Etiquette::load(
            sql,
            cx.sending(),
            &s.contact,
            &reach,
            &sender_of(&record),
            now,
            &mut senders,
        )?;
        let mut stopped = None;
        let actions =
            s.enrolment
                .advance_with(
                    sequence,
                    goal,
                    reach.zone.as_deref(),
                    now,
                    &mut |_| match etiquette.verdict(now) {
                        None => {
                            etiquette.sent(now);
                            Verdict::Send
                        }
                        Some(stop) => {
                            let verdict = stop.verdict;
                            stopped = Some(stop);
                            verdict
                        }
                    },
                );
        let step_index = s.enrolment.step;
        let made = step_effects(&s, playbook, sequence, &actions, now);
        for (effect, action) in made.into_iter().zip(&actions) {
            match action {
                StepAction::Email { step, template } => {
                    pass.emails += 1;
                    record_send(
                        sql,
                        &effect.key,
                        &etiquette,
                        Some((&s.id, step, template)),
                        now,
                    )?;
                }
                StepAction::Task { .. } => pass.tasks += 1,
            }
            effects.push(effect);
        }
        if let Some(stop) = stopped {
            // The email the etiquette stopped, recorded once per step and reason.
            let step = sequence.steps.get(step_index);
            let template = step
                .and_then(|st| sequence.template_for(st, &s.enrolment.contact))
                .unwrap_or_default();
            let step_id = step.map_or("", |st| st.id.as_str());
            let mut effect = email_effect(&s, playbook, sequence, step_id, template, now);
            effect.key = engine::key(&[&s.id, &step_index.to_string(), "blocked", stop.kind]);
            if matches!(s.enrolment.status, Status::Ended { .. }) {
                pass.ended += 1;
            } else {
                pass.held += 1;
            }
            blocked.push((effect, stop.why));
        } else if matches!(s.enrolment.status, Status::Ended { .. }) {
            pass.ended += 1;
        }
        etiquette.keep(&mut senders);
        save(sql, &s)?;
    }
    Ok(Ran {
        pass,
        effects,
        blocked,
    })
}

/// What a pass over due enrolments ran.
pub(crate) struct Ran {
    pub(crate) pass: Advanced,
    /// The steps' emails and tasks.
    pub(crate) effects: Vec<Effect>,
    /// Emails the etiquette stopped, with why.
    pub(crate) blocked: Vec<(Effect, String)>,
}

fn email_effect(
    s: &Stored,
    playbook: &playbook::Playbook,
    sequence: &Sequence,
    step: &str,
    template: &str,
    now: Timestamp,
) -> Effect {
    let to = match s.contact.kind {
        RecordKind::Contact => Target::Contact(s.contact.id.clone()),
        _ => Target::PrimaryContact,
    };
    step_effect(
        s,
        playbook,
        sequence,
        step,
        Action::SendEmail {
            template: template.to_owned(),
            to,
        },
        format!(
            "step {step} of sequence {:?} for {} (template {template})",
            sequence.name, s.contact
        ),
        now,
    )
}

fn step_effect(
    s: &Stored,
    playbook: &playbook::Playbook,
    sequence: &Sequence,
    step: &str,
    action: Action,
    why: String,
    now: Timestamp,
) -> Effect {
    Effect {
        key: engine::key(&[&s.id, step]),
        playbook: playbook.name.clone(),
        rule: format!("sequence:{}", sequence.name),
        version: s.enrolment.version.clone(),
        record: s.record.clone(),
        action,
        at: now,
        due: now,
        shadow: false,
        overruled: None,
        trace: Trace {
            why,
            trigger: format!("enrolment {}", s.id),
            condition: None,
            saw: Default::default(),
        },
    }
}

/// The effects of the steps an advance ran.
fn step_effects(
    s: &Stored,
    playbook: &playbook::Playbook,
    sequence: &Sequence,
    actions: &[StepAction],
    now: Timestamp,
) -> Vec<Effect> {
    actions
        .iter()
        .map(|action| match action {
            StepAction::Email { step, template } => {
                email_effect(s, playbook, sequence, step, template, now)
            }
            StepAction::Task {
                step,
                assignee,
                title,
                kind,
                due,
            } => step_effect(
                s,
                playbook,
                sequence,
                step,
                Action::Task {
                    assignee: assignee.clone(),
                    title: title.clone(),
                    due: due.map(|d| Span(d.as_millis() - now.as_millis())),
                    task: Some(*kind),
                },
                format!(
                    "step {step} of sequence {:?} for {}",
                    sequence.name, s.contact
                ),
                now,
            ),
        })
        .collect()
}

fn info(s: Stored) -> EnrolmentInfo {
    let e = s.enrolment;
    let status = e.status.as_str();
    let (due_at, ended_at, end_reason) = match e.status {
        Status::Active | Status::Paused { .. } => (Some(e.due), None, None),
        Status::Ended { reason, at } => (None, Some(at), Some(reason.as_str().to_owned())),
    };
    EnrolmentInfo {
        id: s.id,
        sequence: e.sequence,
        version: e.version,
        record: s.record,
        contact: s.contact,
        status: status.into(),
        paused_by: s.paused_by,
        due_at,
        step: e.step,
        emails_sent: e.emails_sent,
        opened: e.opened,
        clicked: e.clicked,
        replied: e.replied,
        started_at: e.started_at,
        ended_at,
        end_reason,
    }
}

/// Enrolments matching the query, newest first.
pub(crate) fn list(sql: &mut dyn Sql, q: &EnrolmentQuery) -> Result<Vec<EnrolmentInfo>> {
    let record = q.record.as_ref().map(ToString::to_string);
    let contact = q.contact.as_ref().map(ToString::to_string);
    let rows = sql.query(
        &format!(
            "SELECT {COLUMNS} FROM enrolments
             WHERE (CAST(?1 AS TEXT) IS NULL OR record = ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR contact = ?2)
               AND (CAST(?3 AS TEXT) IS NULL OR sequence = ?3)
               AND (CAST(?4 AS TEXT) IS NULL OR status = ?4)
             ORDER BY started_at DESC, id DESC LIMIT ?5"
        ),
        args![
            record.as_deref(),
            contact.as_deref(),
            q.sequence.as_deref(),
            q.status.as_deref(),
            if q.limit == 0 { 100 } else { q.limit as i64 }
        ],
    )?;
    rows.into_iter().map(|r| stored(r).map(info)).collect()
}

/// Pauses, resumes or stops one enrolment.
pub(crate) fn control(
    sql: &mut dyn Sql,
    id: &str,
    control: Control,
    now: Timestamp,
) -> Result<EnrolmentInfo> {
    let row = sql
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM enrolments WHERE id = ?1{}",
                for_update(sql)
            ),
            args![id],
        )?
        .ok_or_else(|| Error::NotFound(format!("enrolment {id}")))?;
    let mut s = stored(row)?;
    if matches!(s.enrolment.status, Status::Ended { .. }) {
        return Err(Error::Conflict(format!("enrolment {id} has ended")));
    }
    match control {
        Control::Pause => {
            s.enrolment.pause(now);
            s.paused_by = Some("enrolment".into());
        }
        Control::Resume => {
            s.enrolment.resume(now);
            s.paused_by = None;
        }
        Control::Stop => s.enrolment.stop(now),
    }
    save(sql, &s)?;
    Ok(info(s))
}

/// Pauses every active enrolment in the scope (and, until it is resumed, every new one).
pub(crate) fn pause(
    sql: &mut dyn Sql,
    scope: &PauseScope,
    note: Option<&str>,
    now: Timestamp,
) -> Result<u64> {
    let key = scope.key();
    sql.execute(
        "INSERT INTO sequence_pauses (scope, since, note) VALUES (?1, ?2, ?3)
         ON CONFLICT (scope) DO NOTHING",
        args![&key, now.as_millis(), note],
    )?;
    let owner = match scope {
        PauseScope::Global => None,
        PauseScope::Owner(id) => Some(id.as_str()),
    };
    sql.execute(
        "UPDATE enrolments SET status = 'paused', paused_by = ?1, paused_at = ?2
         WHERE status = 'active' AND (CAST(?3 AS TEXT) IS NULL OR owner = ?3)",
        args![&key, now.as_millis(), owner],
    )
}

/// Ends a pause: the enrolments it paused run again — a step that fell due meanwhile runs
/// now, one step and not every one missed, and the waits after it count from then.
pub(crate) fn resume(sql: &mut dyn Sql, scope: &PauseScope, now: Timestamp) -> Result<u64> {
    let key = scope.key();
    sql.execute("DELETE FROM sequence_pauses WHERE scope = ?1", args![&key])?;
    sql.execute(
        "UPDATE enrolments SET status = 'active', paused_by = NULL, paused_at = NULL,
           due_at = CASE WHEN due_at < ?2 THEN ?2 ELSE due_at END
         WHERE status = 'paused' AND paused_by = ?1",
        args![&key, now.as_millis()],
    )
}

pub(crate) fn pauses(sql: &mut dyn Sql) -> Result<Vec<SequencePause>> {
    sql.query(
        "SELECT scope, since, note FROM sequence_pauses ORDER BY scope",
        &[],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(SequencePause {
            scope: r.text(0)?,
            since: r.millis(1)?,
            note: r.opt_text(2)?,
        })
    })
    .collect()
}

pub(crate) fn suppressions(sql: &mut dyn Sql, limit: usize) -> Result<Vec<Suppression>> {
    sql.query(
        "SELECT address, reason, note, created_at FROM suppressions ORDER BY address LIMIT ?1",
        args![limit as i64],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(Suppression {
            address: r.text(0)?,
            reason: r.text(1)?,
            note: r.opt_text(2)?,
            created_at: r.millis(3)?,
        })
    })
    .collect()
}

/// Reply rates per step and variant of one sequence: a send counts as replied when its
/// enrolment's first human reply came after it.
pub(crate) fn results(sql: &mut dyn Sql, sequence: &str) -> Result<Vec<VariantResult>> {
    sql.query(
        "SELECT s.step, s.variant, count(*),
                sum(CASE WHEN e.replied_at >= s.at THEN 1 ELSE 0 END)
         FROM sends s JOIN enrolments e ON e.id = s.enrolment
         WHERE e.sequence = ?1
         GROUP BY s.step, s.variant ORDER BY s.step, s.variant",
        args![sequence],
    )?
    .into_iter()
    .map(|mut r| {
        let sent = r.int(2)? as u64;
        let replied = r.opt_int(3)?.unwrap_or(0) as u64;
        Ok(VariantResult {
            step: r.text(0)?,
            variant: r.text(1)?,
            sent,
            replied,
            reply_rate: if sent == 0 {
                0.0
            } else {
                replied as f64 / sent as f64
            },
        })
    })
    .collect()
}

/// A shared secret, made (from `fresh`) the first time it is asked for.
pub(crate) fn secret(sql: &mut dyn Sql, name: &str, fresh: &str) -> Result<String> {
    sql.execute(
        "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        args![name, fresh],
    )?;
    sql.query_opt("SELECT value FROM secrets WHERE name = ?1", args![name])?
        .ok_or_else(|| Error::Corrupt(format!("secret {name} vanished")))?
        .text(0)
}
