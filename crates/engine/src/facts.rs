//! The facts conditions read, as CEL values. Times are epoch milliseconds (integers), so `now`
//! and every `*_at` fact compare directly; durations are in days (`days_in_stage`, …).

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value;

use domain::{Deal, DealFacts, Engagement, Event, FieldMap, Lead, Record, Timestamp};

fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json).collect())),
        serde_json::Value::Object(o) => map(o.iter().map(|(k, v)| (k.as_str(), json(v)))),
    }
}

fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let m: HashMap<String, Value> = entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    m.into()
}

fn text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(Arc::new(s.to_owned())))
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::Int(t.as_millis()))
}

fn int(n: Option<i64>) -> Value {
    n.map_or(Value::Null, Value::Int)
}

fn fields(f: &FieldMap) -> Value {
    map(f.iter().map(|(k, v)| (k.as_str(), json(v))))
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::List(Arc::new(
        items
            .into_iter()
            .map(|s| Value::String(Arc::new(s.to_owned())))
            .collect(),
    ))
}

/// `assigned_at`, `assigned_by` (the routing rule) and `first_touch_at` of the current owner.
fn assignment(a: Option<&domain::Assignment>) -> [(&'static str, Value); 3] {
    [
        ("assigned_at", time(a.map(|a| a.at))),
        ("assigned_by", text(a.and_then(|a| a.by.as_deref()))),
        ("first_touch_at", time(a.and_then(|a| a.first_touch_at))),
    ]
}

fn engagement(e: &Engagement) -> Vec<(&'static str, Value)> {
    let objections = e
        .objections
        .iter()
        .map(|o| {
            let kind = serde_json::to_value(o.kind).unwrap_or_default();
            map([("kind", json(&kind)), ("at", Value::Int(o.at.as_millis()))])
        })
        .collect();
    vec![
        ("last_activity_at", time(e.last_activity_at)),
        ("last_inbound_at", time(e.last_inbound_at)),
        ("last_outbound_at", time(e.last_outbound_at)),
        ("emails_sent", Value::Int(e.emails_sent.into())),
        ("emails_received", Value::Int(e.emails_received.into())),
        ("meetings_booked", Value::Int(e.meetings_booked.into())),
        ("meetings_held", Value::Int(e.meetings_held.into())),
        ("calls", Value::Int(e.calls.into())),
        ("notes", Value::Int(e.notes.into())),
        ("content_views", Value::Int(e.content_views.into())),
        ("objections", Value::List(Arc::new(objections))),
    ]
}

/// Every fact in `playbook::DEAL_FACTS`, for one deal at `now`.
pub fn deal(d: &Deal, now: Timestamp) -> Value {
    let f = DealFacts::at(d, now);
    let status = serde_json::to_value(d.status).unwrap_or_default();
    let interventions = d
        .interventions
        .iter()
        .map(|i| {
            map([
                ("person", text(Some(i.person.as_str()))),
                ("reason", text(Some(&i.reason))),
                ("at", Value::Int(i.at.as_millis())),
            ])
        })
        .collect();
    let mut entries = vec![
        ("id", text(Some(d.id.as_str()))),
        ("name", text(d.name.as_deref())),
        ("pipeline", text(d.pipeline.as_deref())),
        ("stage", text(d.stage.as_ref().map(|s| s.as_str()))),
        ("status", json(&status)),
        ("owner", text(d.owner.as_ref().map(|o| o.as_str()))),
        (
            "amount",
            d.amount.map_or(Value::Null, |m| Value::Float(m.major())),
        ),
        (
            "currency",
            text(d.amount.map(|m| m.currency).as_ref().map(|c| c.as_str())),
        ),
        (
            "close_date",
            text(d.close_date.map(|c| c.to_string()).as_deref()),
        ),
        ("close_date_pushes", Value::Int(d.close_date_pushes.into())),
        ("account", text(d.account.as_ref().map(|a| a.as_str()))),
        ("lead", text(d.lead.as_ref().map(|l| l.as_str()))),
        ("contacts", strings(d.contacts.iter().map(|c| c.as_str()))),
        (
            "stakeholders",
            strings(d.stakeholders.iter().map(|c| c.as_str())),
        ),
        ("fields", fields(&d.fields)),
        ("created_at", time(d.created_at)),
        ("closed_at", time(d.closed_at)),
        ("days_in_stage", int(f.days_in_stage)),
        ("days_since_activity", int(f.days_since_activity)),
        ("days_open", int(f.days_open)),
        ("interventions", Value::List(Arc::new(interventions))),
        // The latest move a gate refused: {stage, unmet, at}.
        (
            "blocked",
            d.blocked_moves.last().map_or(Value::Null, |b| {
                map([
                    ("stage", text(Some(b.stage.as_str()))),
                    ("unmet", strings(b.unmet.iter().map(String::as_str))),
                    ("at", Value::Int(b.at.as_millis())),
                ])
            }),
        ),
    ];
    entries.extend(engagement(&d.engagement));
    entries.extend(assignment(d.assignment.as_ref()));
    map(entries)
}

/// Every fact in `playbook::LEAD_FACTS`, for one lead at `now`.
pub fn lead(l: &Lead, now: Timestamp) -> Value {
    let last = l.engagement.last_activity_at.or(l.created_at);
    let mut entries = vec![
        ("id", text(Some(l.id.as_str()))),
        ("name", text(l.name.as_deref())),
        ("email", text(l.email.as_deref())),
        ("company", text(l.company.as_deref())),
        ("title", text(l.title.as_deref())),
        ("origin", text(l.origin.as_deref())),
        ("owner", text(l.owner.as_ref().map(|o| o.as_str()))),
        ("status", text(l.status.as_deref())),
        (
            "converted_to",
            text(l.converted_to.as_ref().map(|d| d.as_str())),
        ),
        ("fields", fields(&l.fields)),
        ("created_at", time(l.created_at)),
        ("days_since_activity", int(last.map(|t| t.days_until(now)))),
        (
            "days_since_created",
            int(l.created_at.map(|t| t.days_until(now))),
        ),
    ];
    entries.extend(engagement(&l.engagement));
    entries.extend(assignment(l.assignment.as_ref()));
    map(entries)
}

/// The record's facts, for deals and leads (the records rules act on).
pub fn record(r: &Record, now: Timestamp) -> Option<Value> {
    match r {
        Record::Deal(d) => Some(deal(d, now)),
        Record::Lead(l) => Some(lead(l, now)),
        _ => None,
    }
}

/// An event's envelope fields with its payload fields alongside (`event.kind`), and the
/// payload again under `data`.
pub fn event(e: &Event) -> Value {
    let body = serde_json::to_value(&e.body).unwrap_or_default();
    let data = body.get("data").cloned().unwrap_or_default();
    let actor = serde_json::to_value(&e.actor).unwrap_or_default();
    let mut entries: Vec<(&str, Value)> = vec![
        ("type", text(Some(e.event_type().as_str()))),
        ("source", text(Some(&e.source))),
        ("source_id", text(Some(&e.source_id))),
        ("occurred_at", Value::Int(e.occurred_at.as_millis())),
        ("actor", json(&actor)),
        ("data", json(&data)),
    ];
    let payload: Vec<(String, Value)> = data
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        .unwrap_or_default();
    let mut m: HashMap<String, Value> = entries.drain(..).map(|(k, v)| (k.to_owned(), v)).collect();
    for (k, v) in payload {
        m.entry(k).or_insert(v);
    }
    m.into()
}

/// Converts a CEL value back to JSON, for why-traces.
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::UInt(u) => (*u).into(),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::String(s) => s.as_str().into(),
        Value::List(l) => l.iter().map(to_json).collect(),
        Value::Map(m) => m
            .map
            .iter()
            .map(|(k, v)| (k.to_string(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => format!("{other:?}").into(),
    }
}
