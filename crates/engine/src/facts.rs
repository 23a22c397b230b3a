//! The facts conditions read, as CEL values. Times are epoch milliseconds (integers), so `now`
//! and every `*_at` fact compare directly; durations are in days (`days_in_stage`, …).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use cel::Value;

use domain::{Deal, DealFacts, Engagement, Event, FieldMap, Lead, Record, Timestamp};

/// A deal's facts at a moment: those the domain derives, and its risk by the engine's model
/// (absent where no model is given: templates).
pub(crate) struct DealNow<'m> {
    pub facts: DealFacts,
    pub now: Timestamp,
    pub risk: Option<&'m risk::Model>,
}

impl<'m> DealNow<'m> {
    pub(crate) fn at(d: &Deal, now: Timestamp, risk: Option<&'m risk::Model>) -> Self {
        Self {
            facts: DealFacts::at(d, now),
            now,
            risk,
        }
    }
}

/// `deal.risk`: `{score, at_risk, warnings: [kind…], reasons: [{warning, says, weight, since}]}`.
fn risk_fact(model: &risk::Model, d: &Deal, now: Timestamp) -> Value {
    let a = model.assess(d, now);
    map([
        ("score", Value::Float(a.score)),
        ("at_risk", Value::Bool(a.at_risk)),
        (
            "warnings",
            strings(a.warnings.iter().map(|c| c.warning.kind.as_str())),
        ),
        (
            "reasons",
            Value::List(Arc::new(
                a.warnings
                    .iter()
                    .map(|c| {
                        map([
                            ("warning", text(Some(c.warning.kind.as_str()))),
                            ("says", text(Some(&c.warning.says))),
                            ("weight", Value::Float(c.weight)),
                            ("since", Value::Int(c.warning.since.as_millis())),
                        ])
                    })
                    .collect(),
            )),
        ),
    ])
}

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

/// One fact as the rules see it: a scalar, read without building anything, or a list or map.
#[derive(Debug)]
pub(crate) enum Fact<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A list or a map, as CEL holds it.
    Value(Value),
}

impl Fact<'_> {
    pub(crate) fn cel(self) -> Value {
        match self {
            Fact::Null => Value::Null,
            Fact::Bool(b) => Value::Bool(b),
            Fact::Int(i) => Value::Int(i),
            Fact::Float(f) => Value::Float(f),
            Fact::Str(s) => Value::String(Arc::new(s.into_owned())),
            Fact::Value(v) => v,
        }
    }
}

fn s(t: Option<&str>) -> Fact<'_> {
    t.map_or(Fact::Null, |t| Fact::Str(Cow::Borrowed(t)))
}

fn t(at: Option<Timestamp>) -> Fact<'static> {
    at.map_or(Fact::Null, |at| Fact::Int(at.as_millis()))
}

fn n(v: Option<i64>) -> Fact<'static> {
    v.map_or(Fact::Null, Fact::Int)
}

/// A fact of the engagement both deals and leads have.
fn engagement<'a>(e: &'a Engagement, name: &str) -> Option<Fact<'a>> {
    Some(match name {
        "last_activity_at" => t(e.last_activity_at),
        "last_inbound_at" => t(e.last_inbound_at),
        "last_outbound_at" => t(e.last_outbound_at),
        "emails_sent" => Fact::Int(e.emails_sent.into()),
        "emails_received" => Fact::Int(e.emails_received.into()),
        "meetings_booked" => Fact::Int(e.meetings_booked.into()),
        "meetings_held" => Fact::Int(e.meetings_held.into()),
        "calls" => Fact::Int(e.calls.into()),
        "notes" => Fact::Int(e.notes.into()),
        "content_views" => Fact::Int(e.content_views.into()),
        "objections" => Fact::Value(Value::List(Arc::new(
            e.objections
                .iter()
                .map(|o| {
                    let kind = serde_json::to_value(o.kind).unwrap_or_default();
                    map([("kind", json(&kind)), ("at", Value::Int(o.at.as_millis()))])
                })
                .collect(),
        ))),
        _ => return None,
    })
}

/// `assigned_at`, `assigned_by` (the routing rule) and `first_touch_at` of the current owner.
fn assignment<'a>(a: Option<&'a domain::Assignment>, name: &str) -> Option<Fact<'a>> {
    Some(match name {
        "assigned_at" => t(a.map(|a| a.at)),
        "assigned_by" => s(a.and_then(|a| a.by.as_deref())),
        "first_touch_at" => t(a.and_then(|a| a.first_touch_at)),
        _ => return None,
    })
}

/// One fact of `playbook::DEAL_FACTS` for a deal; `at` its facts at the moment asked about.
pub(crate) fn deal_fact<'a>(d: &'a Deal, at: &DealNow<'_>, name: &str) -> Option<Fact<'a>> {
    let f = &at.facts;
    Some(match name {
        "id" => s(Some(d.id.as_str())),
        "name" => s(d.name.as_deref()),
        "pipeline" => s(d.pipeline.as_deref()),
        "stage" => s(d.stage.as_ref().map(|s| s.as_str())),
        "status" => Fact::Str(Cow::Borrowed(d.status.as_str())),
        "owner" => s(d.owner.as_ref().map(|o| o.as_str())),
        "amount" => d.amount.map_or(Fact::Null, |m| Fact::Float(m.major())),
        "currency" => d.amount.map_or(Fact::Null, |m| {
            Fact::Str(Cow::Owned(m.currency.as_str().to_owned()))
        }),
        "close_date" => d
            .close_date
            .map_or(Fact::Null, |c| Fact::Str(Cow::Owned(c.to_string()))),
        "close_date_pushes" => Fact::Int(d.close_date_pushes.into()),
        "account" => s(d.account.as_ref().map(|a| a.as_str())),
        "lead" => s(d.lead.as_ref().map(|l| l.as_str())),
        "contacts" => Fact::Value(strings(d.contacts.iter().map(|c| c.as_str()))),
        "stakeholders" => Fact::Value(strings(d.stakeholders.iter().map(|c| c.as_str()))),
        "fields" => Fact::Value(fields(&d.fields)),
        "created_at" => t(d.created_at),
        "closed_at" => t(d.closed_at),
        "days_in_stage" => n(f.days_in_stage),
        "days_since_activity" => n(f.days_since_activity),
        "days_open" => n(f.days_open),
        "interventions" => Fact::Value(Value::List(Arc::new(
            d.interventions
                .iter()
                .map(|i| {
                    map([
                        ("person", text(Some(i.person.as_str()))),
                        ("reason", text(Some(&i.reason))),
                        ("at", Value::Int(i.at.as_millis())),
                    ])
                })
                .collect(),
        ))),
        // The latest move a gate refused: {stage, unmet, at}.
        "blocked" => Fact::Value(d.blocked_moves.last().map_or(Value::Null, |b| {
            map([
                ("stage", text(Some(b.stage.as_str()))),
                ("unmet", strings(b.unmet.iter().map(String::as_str))),
                ("at", Value::Int(b.at.as_millis())),
            ])
        })),
        "risk" => Fact::Value(at.risk.map_or(Value::Null, |m| risk_fact(m, d, at.now))),
        other => {
            return engagement(&d.engagement, other)
                .or_else(|| assignment(d.assignment.as_ref(), other));
        }
    })
}

/// One fact of `playbook::LEAD_FACTS` for a lead at `now`.
pub(crate) fn lead_fact<'a>(l: &'a Lead, now: Timestamp, name: &str) -> Option<Fact<'a>> {
    Some(match name {
        "id" => s(Some(l.id.as_str())),
        "name" => s(l.name.as_deref()),
        "email" => s(l.email.as_deref()),
        "company" => s(l.company.as_deref()),
        "title" => s(l.title.as_deref()),
        "origin" => s(l.origin.as_deref()),
        "owner" => s(l.owner.as_ref().map(|o| o.as_str())),
        "status" => s(l.status.as_deref()),
        "converted_to" => s(l.converted_to.as_ref().map(|d| d.as_str())),
        "fields" => Fact::Value(fields(&l.fields)),
        "created_at" => t(l.created_at),
        "days_since_activity" => n(l
            .engagement
            .last_activity_at
            .or(l.created_at)
            .map(|t| t.days_until(now))),
        "days_since_created" => n(l.created_at.map(|t| t.days_until(now))),
        other => {
            return engagement(&l.engagement, other)
                .or_else(|| assignment(l.assignment.as_ref(), other));
        }
    })
}

/// Every fact in `playbook::DEAL_FACTS`, for one deal at `now`; `deal.risk` by `risk` (null
/// without a model).
pub fn deal(d: &Deal, now: Timestamp, risk: Option<&risk::Model>) -> Value {
    let f = DealNow::at(d, now, risk);
    map(playbook::DEAL_FACTS
        .iter()
        .filter_map(|fact| Some((fact.name, deal_fact(d, &f, fact.name)?.cel()))))
}

/// Every fact in `playbook::LEAD_FACTS`, for one lead at `now`.
pub fn lead(l: &Lead, now: Timestamp) -> Value {
    map(playbook::LEAD_FACTS
        .iter()
        .filter_map(|fact| Some((fact.name, lead_fact(l, now, fact.name)?.cel()))))
}

/// The record's facts, for deals and leads (the records rules act on).
pub fn record(r: &Record, now: Timestamp, risk: Option<&risk::Model>) -> Option<Value> {
    match r {
        Record::Deal(d) => Some(deal(d, now, risk)),
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
