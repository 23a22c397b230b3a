//! CSV import: one event per row, with a fixed, documented column mapping.
//!
//! Each row becomes the same JSON envelope the API accepts and goes through the same parser, so
//! CSV and JSON events are validated identically; problems are reported by CSV line and column.

use serde_json::{Map, Value};

use crate::json::parse_one;
use crate::{Problem, ProblemCode};
use domain::NewEvent;

/// The column mapping, as printed in the README and by `pipewright import --help`.
pub const CSV_COLUMNS_DOC: &str = "\
CSV columns (a header row is required; column order is free; empty cells are ignored):
  type, source, source_id, occurred_at   the envelope (required)
  deal, lead, contact, account, person   the records the event concerns
  actor_person, actor_contact            who acted (at most one)
  field.NAME                             custom field NAME (true/false and numbers are typed)
  any other column                       a payload field of the event type, e.g. stage, kind,
                                         reason, amount, currency, close_date, name, email
  amount, employees, capacity, duration_minutes, seconds are numbers;
  auto_reply, key_person, available are true/false;
  contacts, attendees, roles are lists separated by '|'.";

const ENVELOPE: &[&str] = &[
    "type",
    "source",
    "source_id",
    "occurred_at",
    "deal",
    "lead",
    "contact",
    "account",
    "person",
];
const NUMBERS: &[&str] = &[
    "amount",
    "employees",
    "capacity",
    "duration_minutes",
    "seconds",
];
const BOOLS: &[&str] = &["auto_reply", "key_person", "available"];
const LISTS: &[&str] = &["contacts", "attendees", "roles"];

fn typed(column: &str, cell: &str) -> Value {
    if NUMBERS.contains(&column) || BOOLS.contains(&column) {
        // A cell that is not a number or boolean stays a string so the parser names the column.
        return serde_json::from_str(cell).unwrap_or_else(|_| Value::String(cell.to_owned()));
    }
    if LISTS.contains(&column) {
        return Value::Array(
            cell.split('|')
                .map(|s| Value::String(s.trim().to_owned()))
                .collect(),
        );
    }
    Value::String(cell.to_owned())
}

fn infer(cell: &str) -> Value {
    match cell {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match cell.parse::<serde_json::Number>() {
            Ok(n) if !cell.starts_with('0') || cell == "0" || cell.starts_with("0.") => {
                Value::Number(n)
            }
            _ => Value::String(cell.to_owned()),
        },
    }
}

/// Turns one CSV row into the JSON envelope the API accepts.
fn row_to_json(headers: &csv::StringRecord, row: &csv::StringRecord) -> Value {
    let mut envelope = Map::new();
    let mut data = Map::new();
    let mut fields = Map::new();
    for (column, cell) in headers.iter().zip(row.iter()) {
        let (column, cell) = (column.trim(), cell.trim());
        if cell.is_empty() {
            continue;
        }
        if ENVELOPE.contains(&column) {
            envelope.insert(column.to_owned(), Value::String(cell.to_owned()));
        } else if let Some(kind) = column.strip_prefix("actor_") {
            let mut actor = Map::new();
            actor.insert(kind.to_owned(), Value::String(cell.to_owned()));
            envelope.insert("actor".to_owned(), Value::Object(actor));
        } else if let Some(name) = column.strip_prefix("field.") {
            fields.insert(name.to_owned(), infer(cell));
        } else {
            data.insert(column.to_owned(), typed(column, cell));
        }
    }
    if !fields.is_empty() {
        data.insert("fields".to_owned(), Value::Object(fields));
    }
    if !data.is_empty() {
        envelope.insert("data".to_owned(), Value::Object(data));
    }
    Value::Object(envelope)
}

/// Maps a JSON path back to the CSV column that filled it.
fn column_of(path: &str) -> String {
    let path = path.strip_prefix("data.").unwrap_or(path);
    let path = path
        .strip_prefix("fields.")
        .map(|f| format!("field.{f}"))
        .unwrap_or(path.to_owned());
    match path.split_once('.') {
        Some(("actor", kind)) => format!("actor_{kind}"),
        _ => path.split('[').next().unwrap_or(&path).to_owned(),
    }
}

/// Parses CSV text row by row. Each row yields its event or its problem; one bad row never
/// stops the rest. Line numbers count the header as line 1.
pub fn parse_csv(text: &str) -> Vec<Result<NewEvent, Problem>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return vec![Err(Problem {
                code: ProblemCode::MalformedJson,
                index: None,
                line: Some(1),
                column: None,
                field: None,
                message: format!("cannot read the CSV header: {e}"),
            })];
        }
    };
    let mut out = Vec::new();
    for (index, row) in reader.records().enumerate() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                out.push(Err(Problem {
                    code: ProblemCode::MalformedJson,
                    index: Some(index),
                    line: e.position().map(|p| p.line() as usize),
                    column: None,
                    field: None,
                    message: format!("unreadable CSV row: {e}"),
                }));
                continue;
            }
        };
        let line = row.position().map(|p| p.line() as usize);
        let json = row_to_json(&headers, &row).to_string();
        out.push(parse_one(&json).map_err(|p| Problem {
            index: Some(index),
            line,
            column: None,
            field: p.field.as_deref().map(column_of),
            ..p
        }));
    }
    out
}
