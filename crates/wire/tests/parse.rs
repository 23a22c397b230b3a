//! The wire formats: every problem carries its code, field and position.

use domain::{EventBody, EventType, ObjectionKind};
use wire::{Problem, ProblemCode, parse_batch, parse_csv, parse_ndjson, parse_one};

fn one_problem(text: &str) -> Problem {
    parse_one(text).expect_err("the body should be rejected")
}

const GOOD: &str = r#"{"type":"objection.raised","source":"crm","source_id":"e1",
 "occurred_at":"2026-11-02T09:00:00Z","deal":"D-1","actor":{"contact":"C-1"},
 "data":{"kind":"pricing","text":"too expensive"}}"#;

#[test]
fn a_good_event_parses_into_its_typed_payload() {
    let event = parse_one(GOOD).unwrap();
    assert_eq!(event.body.event_type(), EventType::ObjectionRaised);
    assert_eq!(event.refs.deal.unwrap().as_str(), "D-1");
    match event.body {
        EventBody::ObjectionRaised(o) => assert_eq!(o.kind, ObjectionKind::Pricing),
        other => panic!("unexpected body {other:?}"),
    }
}

#[test]
fn numeric_source_ids_are_accepted_as_text() {
    let text = GOOD.replace(r#""source_id":"e1""#, r#""source_id":12345"#);
    assert_eq!(parse_one(&text).unwrap().source_id, "12345");
}

#[test]
fn malformed_json_reports_line_and_column() {
    let p = one_problem("{\"type\": \"deal.won\",\n  \"source\": oops}");
    assert_eq!(p.code, ProblemCode::MalformedJson);
    assert_eq!((p.line, p.column), (Some(2), Some(13)));
}

#[test]
fn unknown_event_type_is_named_with_the_known_ones() {
    let p = one_problem(&GOOD.replace("objection.raised", "deal.exploded"));
    assert_eq!(p.code, ProblemCode::UnknownEventType);
    assert_eq!(p.field.as_deref(), Some("type"));
    assert!(
        p.message.contains("deal.exploded") && p.message.contains("deal.won"),
        "{p}"
    );
    assert_eq!(p.line, Some(1));
}

#[test]
fn missing_envelope_field_is_named() {
    let p = one_problem(
        r#"{"type":"deal.won","source":"crm","deal":"D","occurred_at":"2026-11-02T09:00:00Z"}"#,
    );
    assert_eq!(p.code, ProblemCode::MissingField);
    assert!(p.message.contains("source_id"), "{p}");
}

#[test]
fn wrong_type_inside_data_points_at_the_value_in_the_whole_body() {
    let text = "{\"type\":\"deal.updated\",\"source\":\"crm\",\"source_id\":\"1\",\n\
                \"occurred_at\":\"2026-11-02T09:00:00Z\",\"deal\":\"D\",\n\
                \"data\":{\"name\":\"Acme\",\n   \"amount\":\"lots\"}}";
    let p = one_problem(text);
    assert_eq!(p.code, ProblemCode::InvalidField);
    assert_eq!(p.field.as_deref(), Some("data.amount"));
    assert_eq!(p.line, Some(4));
    assert_eq!(p.column, Some(18), "{p}");
}

#[test]
fn invalid_values_are_explained() {
    let p = one_problem(&GOOD.replace("2026-11-02T09:00:00Z", "yesterday"));
    assert_eq!(p.field.as_deref(), Some("occurred_at"));
    assert!(p.message.contains("RFC 3339"), "{p}");
    let p = one_problem(&GOOD.replace("\"pricing\"", "\"vibes\""));
    assert_eq!(p.field.as_deref(), Some("data.kind"));
    assert!(p.message.contains("implementation"), "{p}");
    let p = one_problem(&GOOD.replace(r#""deal":"D-1""#, r#""deal":"""#));
    assert_eq!(p.field.as_deref(), Some("deal"));
}

#[test]
fn unknown_fields_are_refused_not_ignored() {
    let p = one_problem(&GOOD.replace(r#""kind":"pricing""#, r#""knd":"pricing""#));
    assert_eq!(p.code, ProblemCode::UnknownField);
    assert_eq!(p.field.as_deref(), Some("data.knd"));
    let p = one_problem(&GOOD.replace(r#""deal":"D-1""#, r#""deal":"D-1","priority":1"#));
    assert_eq!(p.code, ProblemCode::UnknownField);
}

#[test]
fn missing_record_reference_is_a_missing_field() {
    let p = one_problem(&GOOD.replace(r#""deal":"D-1","#, ""));
    assert_eq!(p.code, ProblemCode::MissingField);
    assert_eq!(p.field.as_deref(), Some("deal"));
}

#[test]
fn newer_envelope_versions_are_refused() {
    let p = one_problem(&GOOD.replace(r#"{"type""#, r#"{"v":2,"type""#));
    assert_eq!(p.code, ProblemCode::UnsupportedVersion);
}

#[test]
fn unknown_time_zones_are_refused() {
    let text = r#"{"type":"person.created","source":"hr","source_id":"p1","person":"maya@acme.example",
        "occurred_at":"2026-01-01T00:00:00Z","data":{"timezone":"Mars/Olympus"}}"#;
    let p = one_problem(text);
    assert_eq!(p.field.as_deref(), Some("data.timezone"));
    let ok = text.replace("Mars/Olympus", "Europe/Berlin");
    assert!(parse_one(&ok).is_ok());
}

#[test]
fn batches_report_every_bad_event_with_its_index() {
    let bad = GOOD.replace("pricing", "vibes");
    let text = format!("[{GOOD},\n{bad},\n{bad}]");
    let problems = parse_batch(&text).unwrap_err();
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0].index, Some(1));
    assert_eq!(problems[1].index, Some(2));
    assert!(problems[1].line > problems[0].line);
    assert_eq!(parse_batch(&format!("[{GOOD},{GOOD}]")).unwrap().len(), 2);
}

#[test]
fn ndjson_reports_line_numbers() {
    let line = GOOD.replace('\n', "");
    let bad = line.replace("2026-11-02T09:00:00Z", "soon");
    let text = format!("{line}\n\n{bad}\n{line}\n");
    let problems = parse_ndjson(&text).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, Some(3));
}

#[test]
fn csv_rows_map_to_events_and_bad_rows_stand_alone() {
    let text = "\
type,source,source_id,occurred_at,deal,actor_person,stage,amount,contacts,field.budget_confirmed
deal.created,crm,1,2026-11-01T09:00:00Z,D-1,maya@acme.example,discovery,12000,C-1|C-2,true
deal.stage_changed,crm,2,2026-11-03T09:00:00Z,D-1,,proposal,,,
deal.created,crm,3,2026-11-01T09:00:00Z,D-2,,discovery,lots,,
deal.explode,crm,4,2026-11-01T09:00:00Z,D-2,,,,,
";
    let rows = parse_csv(text);
    assert_eq!(rows.len(), 4);
    let first = rows[0].as_ref().unwrap();
    match &first.body {
        EventBody::DealCreated(d) => {
            assert_eq!(d.contacts.len(), 2);
            assert_eq!(d.fields["budget_confirmed"], serde_json::Value::Bool(true));
            assert_eq!(d.amount.map(f64::from), Some(12000.0));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(rows[1].is_ok());
    let bad = rows[2].as_ref().unwrap_err();
    assert_eq!((bad.line, bad.field.as_deref()), (Some(4), Some("amount")));
    let bad = rows[3].as_ref().unwrap_err();
    assert_eq!(
        (bad.line, bad.code),
        (Some(5), ProblemCode::UnknownEventType)
    );
}
