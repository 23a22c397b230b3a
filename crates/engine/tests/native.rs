//! The first look at a condition (`engine::Native`) against CEL: wherever it answers, it gives
//! CEL's answer, on generated deals and leads, with and without an event, at several moments.

use std::path::Path;

use domain::{Event, EventId, Record, RecordId, RecordKey, RecordKind, Timestamp};
use engine::{Native, evaluate_condition};
use playbook::{Condition, DEAL_FACTS, Fact, LEAD_FACTS, Scope};

const DEAL: &[&str] = &[
    r#"deal.stage == "demo""#,
    r#"deal.stage != "demo""#,
    r#"deal.stage in ["demo", "proposal"]"#,
    r#"!(deal.stage in ["demo"])"#,
    r#"deal.stage in ["demo", null]"#,
    r#"deal.stage == null"#,
    r#"deal.stage < "m""#,
    r#"deal.name > "M""#,
    "deal.amount >= 50000",
    "deal.amount > 0",
    "deal.amount < 10000.5",
    "deal.amount == 20000",
    "deal.amount == 20000.0",
    "deal.amount != null",
    "deal.amount == null",
    "deal.amount in [20000, 30000.0]",
    r#"deal.meetings_held >= 2 && deal.stage == "demo""#,
    r#"deal.meetings_held >= 2 || deal.stage == "demo""#,
    "deal.days_in_stage > 3",
    "deal.days_since_activity >= 7",
    "deal.closed_at == null",
    "deal.created_at < now - 86400000",
    "deal.created_at < now",
    "deal.fields.budget_confirmed == true",
    "has(deal.fields.champion)",
    "!has(deal.fields.champion) || deal.fields.budget_confirmed == false",
    "deal.fields.score > 3",
    "deal.fields.score >= 2.5",
    r#"deal.fields.champion == "C-1""#,
    "deal.owner == null",
    r#"deal.owner == "sam@acme.example""#,
    r#"deal.status == "open""#,
    r#"deal.status != "won" && deal.amount > 1000"#,
    r#"event.kind == "pricing""#,
    r#"event.kind in ["pricing", "legal"] && deal.amount >= 1000"#,
    r#"event.kind == "pricing" || deal.amount == null"#,
    r#"event.missing == "x""#,
    r#"event.missing == "x" && deal.amount > 1e12"#,
    r#"deal.amount > 1e12 && event.missing == "x""#,
    r#"event.missing == "x" || deal.amount >= 0"#,
    "deal.contacts == null",
    "size(deal.contacts) > 1",
    // Custom fields a deal may lack (issue 23): null, and orderings with them false.
    "!(deal.fields.score > 3)",
    r#"deal.fields.score <= 2.5 || deal.stage == "demo""#,
    "deal.fields.missing == null",
    "deal.fields.missing != true",
    "deal.fields.budget_confirmed != true",
    r#"deal.fields.champion in ["C-1", "C-3"]"#,
    "deal.fields.score > deal.amount",
    "deal.fields.missing < deal.fields.score",
];

const LEAD: &[&str] = &[
    r#"lead.owner == null && lead.origin in ["inbound form", "webinar"]"#,
    r#"lead.status != "converted" && lead.status != "disqualified""#,
    "lead.days_since_activity >= 5",
    r#"lead.fields.score > 1 || lead.owner == "tim@acme.example""#,
    "!(lead.fields.score >= 2)",
];

/// SplitMix64, enough to vary the records.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn stamp(line: &str, n: u128) -> Event {
    let new = wire::parse_one(line).unwrap_or_else(|p| panic!("{p}: {line}"));
    let at = new.occurred_at;
    new.stamp(EventId(uuid::Uuid::from_u128(n)), at)
}

fn deal(d: &mut Dice, i: u32) -> Record {
    let key = RecordKey::new(RecordKind::Deal, RecordId::parse(format!("D-{i}")).unwrap());
    let mut r = Record::empty(&key);
    let mut data = serde_json::json!({ "name": d.pick(&["Alpha", "Mango", "Zeta"]) });
    if d.chance(80) {
        data["stage"] = d.pick(&["discovery", "demo", "proposal", "legal"]).into();
    }
    if d.chance(80) {
        data["amount"] = [20000, 30000, 500, 75000, 10000][(d.next() % 5) as usize].into();
    }
    if d.chance(60) {
        data["owner"] = d.pick(&["sam@acme.example", "ana@acme.example"]).into();
    }
    let mut fields = serde_json::Map::new();
    if d.chance(50) {
        fields.insert("budget_confirmed".into(), d.chance(50).into());
    }
    if d.chance(50) {
        fields.insert("champion".into(), d.pick(&["C-1", "C-2"]).into());
    }
    if d.chance(50) {
        let score: serde_json::Value = if d.chance(50) { 3.into() } else { 2.5.into() };
        fields.insert("score".into(), score);
    }
    data["fields"] = fields.into();
    let created = format!(
        r#"{{"type":"deal.created","source":"t","source_id":"c{i}","occurred_at":"2026-11-0{}T09:00:00Z","deal":"D-{i}","data":{data}}}"#,
        1 + d.next() % 5
    );
    r.apply(&stamp(&created, u128::from(i) * 10));
    for m in 0..d.next() % 3 {
        let held = format!(
            r#"{{"type":"meeting.held","source":"t","source_id":"m{i}-{m}","occurred_at":"2026-11-07T1{m}:00:00Z","deal":"D-{i}"}}"#
        );
        r.apply(&stamp(&held, u128::from(i) * 10 + 1 + u128::from(m)));
    }
    if d.chance(20) {
        let outcome = d.pick(&["deal.won", "deal.lost"]);
        let closed = format!(
            r#"{{"type":"{outcome}","source":"t","source_id":"w{i}","occurred_at":"2026-11-08T09:00:00Z","deal":"D-{i}"}}"#
        );
        r.apply(&stamp(&closed, u128::from(i) * 10 + 5));
    }
    r
}

fn lead(d: &mut Dice, i: u32) -> Record {
    let key = RecordKey::new(RecordKind::Lead, RecordId::parse(format!("L-{i}")).unwrap());
    let mut r = Record::empty(&key);
    let mut data =
        serde_json::json!({ "origin": d.pick(&["inbound form", "webinar", "outbound list"]) });
    if d.chance(50) {
        data["owner"] = d.pick(&["tim@acme.example", "ben@acme.example"]).into();
    }
    if d.chance(70) {
        data["status"] = d
            .pick(&["new", "working", "converted", "disqualified"])
            .into();
    }
    if d.chance(50) {
        data["fields"] = serde_json::json!({ "score": (d.next() % 4) as i64 });
    }
    let created = format!(
        r#"{{"type":"lead.created","source":"t","source_id":"l{i}","occurred_at":"2026-11-02T09:00:00Z","lead":"L-{i}","data":{data}}}"#
    );
    r.apply(&stamp(&created, u128::from(i) * 10 + 1_000_000));
    r
}

fn events() -> Vec<Option<Event>> {
    let mut out = vec![None];
    for (n, kind) in ["pricing", "legal", "implementation"].iter().enumerate() {
        out.push(Some(stamp(
            &format!(
                r#"{{"type":"objection.raised","source":"t","source_id":"o{n}","occurred_at":"2026-11-09T09:00:00Z","deal":"D-0","data":{{"kind":"{kind}"}}}}"#
            ),
            9_000_000 + n as u128,
        )));
    }
    out.push(Some(stamp(
        r#"{"type":"email.received","source":"t","source_id":"r","occurred_at":"2026-11-09T09:00:00Z","deal":"D-0","data":{"subject":"Re"}}"#,
        9_100_000,
    )));
    out
}

fn compile(source: &str, kind: &str, facts: &'static [Fact]) -> Condition {
    let scope = Scope {
        variables: vec![(kind, Some(facts)), ("now", None), ("event", None)],
        ..Scope::default()
    };
    Condition::compile(source, &scope).unwrap_or_else(|e| panic!("{source}: {e:?}"))
}

#[test]
fn the_first_look_gives_cels_answer_wherever_it_answers() {
    let mut conditions: Vec<(String, Condition, &str)> = Vec::new();
    for source in DEAL {
        conditions.push((
            source.to_string(),
            compile(source, "deal", DEAL_FACTS),
            "deal",
        ));
    }
    for source in LEAD {
        conditions.push((
            source.to_string(),
            compile(source, "lead", LEAD_FACTS),
            "lead",
        ));
    }
    // Every condition of the example playbooks too.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
    let set = playbook::load_dir(&examples)
        .set
        .expect("the examples load");
    for rule in set.playbooks.iter().flat_map(|p| &p.rules) {
        if let Some(c) = &rule.condition {
            conditions.push((c.source.clone(), c.clone(), rule.record.as_str()));
        }
    }
    let mut dice = Dice(11);
    let deals: Vec<Record> = (0..120).map(|i| deal(&mut dice, i)).collect();
    let leads: Vec<Record> = (0..60).map(|i| lead(&mut dice, i)).collect();
    let events = events();
    let moments = [
        Timestamp::from_millis(1_793_600_000_000),
        Timestamp::from_millis(1_794_500_000_000),
        Timestamp::from_millis(1_796_000_000_000),
    ];
    let (mut answered, mut asked) = (0u32, 0u32);
    let risk = risk::Model::default();
    for (source, condition, kind) in &conditions {
        let native = Native::compile(&condition.program, kind);
        let records = if *kind == "deal" { &deals } else { &leads };
        for record in records {
            for event in &events {
                for now in moments {
                    let cel = evaluate_condition(condition, record, event.as_ref(), now, &risk);
                    let Some(native) = &native else { continue };
                    asked += 1;
                    if let Some(answer) = native.first_look(record, event.as_ref(), now, &risk) {
                        answered += 1;
                        assert_eq!(
                            cel,
                            Ok(answer),
                            "{source} on {record:?} with {event:?} at {now}"
                        );
                    }
                }
            }
        }
    }
    // The first look does the work: it answers most of what it is asked.
    assert!(answered * 10 > asked * 7, "{answered} of {asked}");
}

#[test]
fn conditions_beyond_comparisons_are_left_to_cel() {
    let compiled = |s: &str| Native::compile(&compile(s, "deal", DEAL_FACTS).program, "deal");
    assert!(compiled(r#"deal.stage in ["demo", "proposal"] && deal.meetings_held >= 1"#).is_some());
    assert!(
        compiled("has(deal.fields.champion) && deal.fields.budget_confirmed == true").is_some()
    );
    assert!(compiled("size(deal.contacts) > 1").is_none());
    assert!(compiled("deal.created_at < now - 86400000").is_none());
    assert!(compiled(r#"deal.objections.exists(o, o.kind == "pricing")"#).is_none());
}

/// Issue 23: a custom field the record lacks reads null, `==` and `!=` with it are CEL's null
/// equality, and an ordering comparison with it is false, not an error; `has` still tests it.
#[test]
fn absent_custom_fields_read_null_and_orderings_with_them_are_false() {
    let created = |n: u128, fields: &str| {
        let mut r = Record::empty(&RecordKey::new(
            RecordKind::Deal,
            RecordId::parse(format!("D-{n}")).unwrap(),
        ));
        r.apply(&stamp(
            &format!(
                r#"{{"type":"deal.created","source":"t","source_id":"f{n}","occurred_at":"2026-11-01T09:00:00Z","deal":"D-{n}","data":{{"fields":{fields}}}}}"#
            ),
            n,
        ));
        r
    };
    let without = created(1, "{}");
    let with = created(2, r#"{"seats":5,"won":true}"#);
    let now = Timestamp::from_millis(1_794_000_000_000);
    let risk = risk::Model::default();
    let on = |record: &Record, source: &str| {
        let condition = compile(source, "deal", DEAL_FACTS);
        let cel = evaluate_condition(&condition, record, None, now, &risk);
        let native = Native::compile(&condition.program, "deal")
            .and_then(|n| n.first_look(record, None, now, &risk));
        if let Some(answer) = native {
            assert_eq!(cel, Ok(answer), "the first look agrees: {source}");
        }
        cel
    };
    for (source, absent, present) in [
        ("deal.fields.won == true", false, true),
        ("deal.fields.won != true", true, false),
        ("deal.fields.won == null", true, false),
        ("deal.fields.seats > 3", false, true),
        ("deal.fields.seats <= 3", false, false),
        ("!(deal.fields.seats > 3)", true, false),
        ("3 < deal.fields.seats", false, true),
        ("deal.fields.seats in [5, 6]", false, true),
        ("has(deal.fields.seats)", false, true),
        (
            "deal.objections.exists(o, deal.fields.seats > 3)",
            false,
            false,
        ),
    ] {
        assert_eq!(
            on(&without, source),
            Ok(absent),
            "{source} without the field"
        );
        assert_eq!(on(&with, source), Ok(present), "{source} with it");
    }
    // A present field of the wrong type is still an error, not false.
    assert!(on(&with, r#"deal.fields.seats > "3""#).is_err());
}
