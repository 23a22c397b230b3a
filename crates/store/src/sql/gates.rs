//! Qualification gates, enforced where every stage change passes: in the transaction that
//! stores it, whatever sent it (the API, an import, an automation's internal event). A move
//! into a gated stage whose deal does not meet the gate becomes a `gate.blocked` event in the
//! log — so the deal stays where it was on every replay — unless someone the gate permits
//! overrides it with a reason, which the stored move then carries with the unmet criteria.

use std::collections::HashMap;

use domain::{
    Event, EventBody, GateBlocked, GateOverride, Record, RecordId, RecordKey, RecordKind, Stage,
};
use engine::{Engine, Refusal};

use super::Sql;
use super::apply::{Known, peek};
use crate::Result;

/// The stage an event moves its deal into, if it moves it.
fn move_of(event: &Event) -> Option<&Stage> {
    match &event.body {
        EventBody::DealStageChanged(c) => Some(&c.stage),
        EventBody::DealUpdated(f) => f.stage.as_ref(),
        _ => None,
    }
}

/// The events with every refused move turned into a `gate.blocked` (a `deal.updated` keeps
/// its other fields and gets a `gate.blocked` beside it), and every permitted override
/// stamped with what it overrode; each with whether it was asked for (`false` for the events
/// added beside, which `companion_id` names).
pub(crate) fn enforce(
    sql: &mut dyn Sql,
    known: &Known,
    written: &Known,
    engine: &Engine,
    events: Vec<Event>,
    mut companion_id: impl FnMut() -> domain::EventId,
) -> Result<Vec<(Event, bool)>> {
    let mut events = events;
    // What an override overrode is the store's to say, not the sender's.
    for event in &mut events {
        if let EventBody::DealStageChanged(c) = &mut event.body
            && let Some(o) = &mut c.gate_override
        {
            o.unmet.clear();
        }
    }
    let gated = |e: &Event| {
        e.refs.deal.is_some() && move_of(e).is_some_and(|s| engine.playbooks().gate(s).is_some())
    };
    if !events.iter().any(gated) {
        return Ok(events.into_iter().map(|e| (e, true)).collect());
    }
    // The deals with a gated move, as they stand before each of the batch's events.
    let mut deals: HashMap<RecordId, Record> = HashMap::new();
    for e in events.iter().filter(|e| gated(e)) {
        if let Some(id) = &e.refs.deal
            && !deals.contains_key(id)
        {
            let key = RecordKey::new(RecordKind::Deal, id.clone());
            deals.insert(id.clone(), peek(sql, known, written, &key)?);
        }
    }
    let mut out = Vec::with_capacity(events.len());
    for mut event in events {
        let Some(deal) = event.refs.deal.as_ref().and_then(|id| deals.get_mut(id)) else {
            out.push((event, true));
            continue;
        };
        let refusal = match move_of(&event) {
            Some(stage) if deal.stage() != Some(stage) => {
                // An update's other fields arrive with its move: the gate sees them.
                let judged = match &event.body {
                    EventBody::DealUpdated(f) => {
                        let mut fields = event.clone();
                        fields.body = EventBody::DealUpdated(domain::DealFields {
                            stage: None,
                            ..f.clone()
                        });
                        let mut judged = deal.clone();
                        judged.apply(&fields);
                        Some(judged)
                    }
                    _ => None,
                };
                engine.check_gate(judged.as_ref().unwrap_or(deal), stage, event.occurred_at)
            }
            _ => None,
        };
        let Some(refusal) = refusal else {
            deal.apply(&event);
            out.push((event, true));
            continue;
        };
        let from = deal.stage().cloned();
        let asked = match &event.body {
            EventBody::DealStageChanged(c) => c.gate_override.clone(),
            _ => None,
        };
        let refused = match &asked {
            Some(o) => refuse_override(sql, known, written, &refusal, o)?,
            None => None,
        };
        if asked.is_some() && refused.is_none() {
            // Permitted: the move stands, carrying what it overrode.
            if let EventBody::DealStageChanged(c) = &mut event.body
                && let Some(o) = &mut c.gate_override
            {
                o.unmet = refusal.unmet_names();
            }
            deal.apply(&event);
            out.push((event, true));
            continue;
        }
        let blocked = EventBody::GateBlocked(GateBlocked {
            stage: refusal.stage.clone(),
            from,
            gate: refusal.playbook.clone(),
            unmet: refusal.unmet_names(),
            attempted: event.event_type().as_str().to_owned(),
            gate_override: asked,
            refused,
        });
        match &mut event.body {
            EventBody::DealUpdated(f) => {
                // The update's other fields stand; its stage is refused beside it.
                f.stage = None;
                let companion = Event {
                    id: companion_id(),
                    source: "pipewright".into(),
                    source_id: format!("gate:{}:{}", event.source, event.source_id),
                    body: blocked,
                    ..event.clone()
                };
                deal.apply(&event);
                deal.apply(&companion);
                out.push((event, true));
                out.push((companion, false));
            }
            _ => {
                event.body = blocked;
                deal.apply(&event);
                out.push((event, true));
            }
        }
    }
    Ok(out)
}

/// Why an override is refused, if it is: no reason given, an unknown person, or a person
/// without a role the gate permits.
fn refuse_override(
    sql: &mut dyn Sql,
    known: &Known,
    written: &Known,
    refusal: &Refusal,
    asked: &GateOverride,
) -> Result<Option<String>> {
    if asked.reason.trim().is_empty() {
        return Ok(Some("an override needs a reason".into()));
    }
    if refusal.override_roles.is_empty() {
        return Ok(Some(format!(
            "the gate on {} allows no overrides",
            refusal.stage
        )));
    }
    let key = RecordKey::new(RecordKind::Person, asked.by.clone());
    let roles = match peek(sql, known, written, &key)? {
        Record::Person(p) => p.roles,
        _ => Default::default(),
    };
    if roles.iter().any(|r| refusal.override_roles.contains(r)) {
        return Ok(None);
    }
    let allowed: Vec<&str> = refusal.override_roles.iter().map(|r| r.as_str()).collect();
    Ok(Some(format!(
        "{} may not override the gate on {}: it takes one of the roles {}",
        asked.by,
        refusal.stage,
        allowed.join(", ")
    )))
}
