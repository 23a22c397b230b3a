//! The facts table (`playbook::facts`) against what the engine builds (`engine::facts`), so the
//! two cannot drift apart (issue 23): on full records and on an event of every type, every
//! declared fact is produced with a value of its declared type, and nothing undeclared is.

use std::collections::BTreeSet;

use cel::Value;
use domain::{Event, EventId, EventType, Record, RecordId, RecordKey, RecordKind, Timestamp};
use playbook::facts::{DEAL_FACTS, EVENT_FACTS, Fact, LEAD_FACTS, Type, payload_facts};

const STAGES: &[&str] = &["discovery", "demo", "proposal", "closed_won", "closed_lost"];

fn stamp(n: u128, line: &str) -> Event {
    let new = wire::parse_one(line).unwrap_or_else(|p| panic!("{p}: {line}"));
    let at = new.occurred_at;
    new.stamp(EventId(uuid::Uuid::from_u128(n)), at)
}

/// An event as a client sends it: type, when (a day of November 2026 at 09:00), the
/// envelope's references and actor, the payload.
fn event(n: u128, ty: &str, day: u32, refs: &str, data: &str) -> Event {
    stamp(
        n,
        &format!(
            r#"{{"type":"{ty}","source":"t","source_id":"{n}","occurred_at":"2026-11-{day:02}T09:00:00Z",{refs},"data":{data}}}"#
        ),
    )
}

/// Whether `v` is a value of type `ty` (null is: any fact may be missing), and where not.
fn conforms(v: &Value, ty: Type, at: &str) -> Result<(), String> {
    let ok = match (ty, v) {
        (_, Value::Null) | (Type::Any, _) => true,
        (Type::String, Value::String(_))
        | (Type::Int | Type::Time, Value::Int(_))
        | (Type::Double, Value::Float(_))
        | (Type::Bool, Value::Bool(_))
        | (Type::Map, Value::Map(_)) => true,
        (Type::Date, Value::String(s)) => s.parse::<domain::Date>().is_ok(),
        (Type::Enum(values), Value::String(s)) => values.list(STAGES).contains(&s.as_str()),
        (Type::List(element), Value::List(items)) => {
            for (i, item) in items.iter().enumerate() {
                conforms(item, *element, &format!("{at}[{i}]"))?;
            }
            true
        }
        (Type::Object(fields), Value::Map(m)) => {
            let keys: BTreeSet<String> = m.map.keys().map(ToString::to_string).collect();
            let declared: BTreeSet<String> = fields.iter().map(|f| f.name.to_owned()).collect();
            if keys != declared {
                return Err(format!("{at} has {keys:?}, declared {declared:?}"));
            }
            for f in fields {
                conforms(&m.map[&key(f.name)], f.ty, &format!("{at}.{}", f.name))?;
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{at} is {v:?}, declared {ty:?}"))
    }
}

fn key(name: &str) -> cel::objects::Key {
    cel::objects::Key::String(std::sync::Arc::new(name.to_owned()))
}

/// Holds the facts built for `records` to `table`: each declared fact present in every one,
/// of its type, and not null in at least one; nothing undeclared.
fn holds(what: &str, table: &[Fact], built: &[Value]) {
    let mut problems = Vec::new();
    for fact in table {
        let mut seen = false;
        for (i, facts) in built.iter().enumerate() {
            let Value::Map(m) = facts else {
                panic!("{what} #{i}: facts are not a map: {facts:?}")
            };
            match m.map.get(&key(fact.name)) {
                None => problems.push(format!("{what} #{i} lacks `{}`", fact.name)),
                Some(v) => {
                    seen |= *v != Value::Null;
                    if let Err(e) = conforms(v, fact.ty, &format!("{what}.{}", fact.name)) {
                        problems.push(e);
                    }
                }
            }
        }
        if !seen {
            problems.push(format!("{what}.{} is null in every sample", fact.name));
        }
    }
    for (i, facts) in built.iter().enumerate() {
        let Value::Map(m) = facts else { continue };
        for k in m.map.keys() {
            if !table.iter().any(|f| k.to_string() == f.name) {
                problems.push(format!("{what} #{i} has `{k}`, which the table lacks"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn deal_events() -> Vec<Event> {
    let deal = r#""deal":"D-1""#;
    let ana = r#""deal":"D-1","actor":{"person":"ana@acme.example"}"#;
    let mut events = vec![
        event(
            1,
            "deal.created",
            1,
            r#""deal":"D-1","account":"A-1","lead":"L-1""#,
            r#"{"name":"Acme","pipeline":"new","stage":"demo","owner":"sam@acme.example","amount":20000,"currency":"EUR","close_date":"2026-12-01","contacts":["C-1","C-2"],"roles":{"C-1":"champion"},"fields":{"seats":12}}"#,
        ),
        event(
            2,
            "owner.assigned",
            2,
            deal,
            r#"{"owner":"ana@acme.example","rule":"route-deals"}"#,
        ),
    ];
    events.extend(activity(deal, ana));
    events.extend([
        event(
            11,
            "intervention.logged",
            11,
            deal,
            r#"{"person":"maya@acme.example","reason":"pricing"}"#,
        ),
        event(
            12,
            "gate.blocked",
            12,
            deal,
            r#"{"stage":"proposal","from":"demo","gate":"qualification","unmet":["budget confirmed"],"attempted":"deal.stage_changed"}"#,
        ),
        event(13, "deal.updated", 13, deal, r#"{"close_date":"2026-12-10"}"#),
    ]);
    events
}

/// What makes a record's engagement, on days 3 to 10: the owner's email, meetings, call and
/// note (`by`: the record's reference with the owner as actor), the buyer's reply, a view of
/// content and an objection.
fn activity(record: &str, by: &str) -> Vec<Event> {
    let buyer = format!(r#"{record},"actor":{{"contact":"C-1"}}"#);
    vec![
        event(3, "email.sent", 3, by, r#"{"subject":"Hello"}"#),
        event(4, "email.received", 4, &buyer, r#"{"subject":"Re: Hello"}"#),
        event(5, "meeting.booked", 5, by, r#"{"title":"Demo"}"#),
        event(6, "meeting.held", 6, by, r#"{"title":"Demo"}"#),
        event(7, "call.logged", 7, by, r#"{"direction":"outbound"}"#),
        event(8, "note.added", 8, by, r#"{"text":"Keen."}"#),
        event(9, "content.viewed", 9, record, r#"{"url":"https://x"}"#),
        event(10, "objection.raised", 10, record, r#"{"kind":"pricing"}"#),
    ]
}

fn record_of(kind: RecordKind, id: &str, events: &[Event]) -> Record {
    let mut r = Record::empty(&RecordKey::new(kind, RecordId::parse(id).unwrap()));
    for e in events {
        r.apply(e);
    }
    r
}

#[test]
fn every_deal_fact_is_built_as_the_table_declares_it() {
    let events = deal_events();
    let open = record_of(RecordKind::Deal, "D-1", &events);
    let mut closed = open.clone();
    closed.apply(&event(
        20,
        "deal.won",
        20,
        r#""deal":"D-1""#,
        r#"{"amount":21000,"reason":"fit"}"#,
    ));
    // Late enough for the open deal to show risk warnings, and their reasons.
    let now = Timestamp::from_millis(1_796_000_000_000);
    let risk = risk::Model::default();
    let built: Vec<Value> = [&open, &closed]
        .into_iter()
        .map(|r| engine::facts::record(r, now, Some(&risk)).unwrap())
        .collect();
    holds("deal", DEAL_FACTS, &built);
}

#[test]
fn every_lead_fact_is_built_as_the_table_declares_it() {
    let lead = r#""lead":"L-1""#;
    let mut events = vec![
        event(
            1,
            "lead.created",
            1,
            lead,
            r#"{"name":"Ada","email":"ada@x.example","company":"X","title":"CTO","origin":"webinar","owner":"ben@acme.example","status":"working","fields":{"score":3}}"#,
        ),
        event(
            2,
            "owner.assigned",
            2,
            lead,
            r#"{"owner":"tim@acme.example","rule":"route-leads"}"#,
        ),
    ];
    events.extend(activity(
        lead,
        r#""lead":"L-1","actor":{"person":"tim@acme.example"}"#,
    ));
    // Converted into a deal.
    events.push(event(
        11,
        "deal.created",
        11,
        r#""lead":"L-1","deal":"D-9""#,
        "{}",
    ));
    let record = record_of(RecordKind::Lead, "L-1", &events);
    let now = Timestamp::from_millis(1_796_000_000_000);
    let built = engine::facts::record(&record, now, None).unwrap();
    holds("lead", LEAD_FACTS, &[built]);
}

/// An event of each type with every payload field given.
fn full_payload(t: EventType) -> &'static str {
    use EventType::*;
    match t {
        LeadCreated | LeadUpdated => {
            r#"{"name":"Ada","email":"ada@x.example","company":"X","title":"CTO","origin":"webinar","owner":"tim","status":"new","fields":{"score":3}}"#
        }
        ContactCreated | ContactUpdated => {
            r#"{"name":"Ada","email":"ada@x.example","title":"CTO","timezone":"Europe/Berlin","role":"champion","fields":{"x":1}}"#
        }
        AccountCreated | AccountUpdated => {
            r#"{"name":"X","domain":"x.example","industry":"saas","segment":"smb","territory":"emea","employees":40,"owner":"sam","fields":{"x":1}}"#
        }
        DealCreated | DealUpdated => {
            r#"{"name":"Acme","pipeline":"new","stage":"demo","owner":"sam","amount":20000.5,"currency":"EUR","close_date":"2026-12-01","contacts":["C-1"],"roles":{"C-1":"champion"},"fields":{"seats":12}}"#
        }
        DealStageChanged => {
            r#"{"stage":"proposal","from":"demo","override":{"by":"maya","reason":"signed","unmet":["budget confirmed"]}}"#
        }
        GateBlocked => {
            r#"{"stage":"proposal","from":"demo","gate":"qualification","unmet":["budget confirmed"],"attempted":"deal.stage_changed","override":{"by":"sam","reason":"please","unmet":["budget confirmed"]},"refused":"sam may not override"}"#
        }
        DealWon | DealLost => r#"{"amount":20000.5,"currency":"EUR","reason":"fit"}"#,
        EmailSent | EmailReceived | EmailOpened => {
            r#"{"subject":"Hi","message_id":"<m@x>","in_reply_to":"<n@x>","auto_reply":false,"headers":{"Precedence":"list"}}"#
        }
        LinkClicked => r#"{"url":"https://x.example","message_id":"<m@x>"}"#,
        ContactUnsubscribed => r#"{"email":"ada@x.example","via":"link"}"#,
        MeetingBooked | MeetingHeld => {
            r#"{"title":"Demo","scheduled_for":"2026-11-20T10:00:00Z","duration_minutes":30,"attendees":["C-1"]}"#
        }
        CallLogged => r#"{"direction":"inbound","duration_minutes":12,"outcome":"connected"}"#,
        NoteAdded => r#"{"text":"Keen."}"#,
        ObjectionRaised | ObjectionResolved => r#"{"kind":"security","text":"SOC 2?"}"#,
        ContentViewed => r#"{"url":"https://x.example","asset":"roi","title":"ROI","seconds":90}"#,
        FormSubmitted => r#"{"form":"demo-request","fields":{"size":"40"}}"#,
        InterventionLogged => r#"{"person":"maya","reason":"pricing","note":"called"}"#,
        OwnerAssigned => {
            r#"{"owner":"ana","previous":"sam","rule":"route","strategy":"round_robin","why":"next in turn"}"#
        }
        PersonCreated | PersonUpdated => {
            r#"{"name":"Ana","email":"ana@acme.example","roles":["ae"],"timezone":"Europe/Berlin","key_person":true,"available":true,"capacity":20,"manager":"maya","out_of_office":[{"from":"2026-12-01T00:00:00Z","until":"2026-12-05T00:00:00Z"}],"working_hours":"mon-fri 09:00-17:00"}"#
        }
    }
}

#[test]
fn every_event_fact_is_built_as_the_table_declares_it() {
    for (n, t) in EventType::ALL.iter().enumerate() {
        // Every reference an event may need, and an actor.
        let refs = r#""deal":"D-1","lead":"L-1","contact":"C-1","account":"A-1","person":"ana","actor":{"person":"ana"}"#;
        let e = event(n as u128, t.as_str(), 1, refs, full_payload(*t));
        let table = [EVENT_FACTS, payload_facts(*t)].concat();
        holds(t.as_str(), &table, &[engine::facts::event(&e)]);
    }
}
