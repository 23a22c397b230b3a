use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use domain::{
    Actor, ENVELOPE_VERSION, Event, EventBody, EventType, NewEvent, RecordId, Refs, Timestamp,
};

use crate::{Problem, ProblemCode};

/// The envelope as it appears on the wire.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<'a> {
    v: Option<u32>,
    #[serde(rename = "type")]
    ty: EventType,
    source: String,
    #[serde(deserialize_with = "string_or_integer")]
    source_id: String,
    occurred_at: Timestamp,
    actor: Option<Actor>,
    deal: Option<RecordId>,
    lead: Option<RecordId>,
    contact: Option<RecordId>,
    account: Option<RecordId>,
    person: Option<RecordId>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// CRMs often number their ids; accept `"123"` and `123` alike.
fn string_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(u64),
    }
    match Id::deserialize(d) {
        Ok(Id::S(s)) => Ok(s),
        Ok(Id::N(n)) => Ok(n.to_string()),
        Err(_) => Err(serde::de::Error::custom(
            "invalid type: expected a string or an integer",
        )),
    }
}

/// Where a slice of the body starts, to turn positions inside it into positions in the body.
///
/// Only the byte offset is kept; line and column are counted when a problem is reported, so
/// well-formed bodies never pay for it.
#[derive(Debug, Clone, Copy)]
struct Origin<'a> {
    whole: &'a str,
    offset: usize,
}

impl<'a> Origin<'a> {
    /// The origin of `part`, which must be a sub-slice of `whole`.
    fn of(whole: &'a str, part: &str) -> Origin<'a> {
        let offset = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
        Origin {
            whole,
            offset: offset.min(whole.len()),
        }
    }

    /// Line and column (1-based) of the slice's first byte.
    fn position(self) -> (usize, usize) {
        let before = &self.whole.as_bytes()[..self.offset];
        let line = 1 + before.iter().filter(|b| **b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        (line, self.offset - line_start + 1)
    }

    /// Converts a position inside the slice to a position in the whole body.
    fn shift(self, line: usize, column: usize) -> (usize, usize) {
        let (base_line, base_column) = self.position();
        if line <= 1 {
            (base_line, base_column + column.saturating_sub(1))
        } else {
            (base_line + line - 1, column)
        }
    }

    fn problem(
        self,
        err: &serde_json::Error,
        path: Option<String>,
        index: Option<usize>,
    ) -> Problem {
        let msg = strip_position(&err.to_string());
        let code = if err.is_syntax() || err.is_eof() {
            ProblemCode::MalformedJson
        } else {
            classify(&msg, path.as_deref())
        };
        let (line, column) = if err.line() == 0 {
            (None, None)
        } else {
            let (l, c) = self.shift(err.line(), err.column());
            (Some(l), Some(c))
        };
        Problem {
            code,
            index,
            line,
            column,
            field: path.filter(|p| !p.is_empty() && p != "."),
            message: msg,
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

fn classify(msg: &str, path: Option<&str>) -> ProblemCode {
    if msg.starts_with("missing field") {
        ProblemCode::MissingField
    } else if msg.starts_with("unknown field") {
        ProblemCode::UnknownField
    } else if msg.starts_with("unknown variant") && path == Some("type") {
        ProblemCode::UnknownEventType
    } else {
        ProblemCode::InvalidField
    }
}

/// Deserialises `T` from `text` (a slice of the body starting at `origin`), reporting the path.
fn from_slice<'a, T: Deserialize<'a>>(
    text: &'a str,
    origin: Origin<'_>,
    prefix: &str,
    index: Option<usize>,
) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            prefix.trim_end_matches('.').to_owned()
        } else {
            format!("{prefix}{path}")
        };
        origin.problem(e.inner(), Some(path), index)
    })?;
    de.end().map_err(|e| origin.problem(&e, None, index))?;
    Ok(value)
}

fn problem_at(
    origin: Origin<'_>,
    code: ProblemCode,
    field: &str,
    message: String,
    index: Option<usize>,
) -> Problem {
    let (line, column) = origin.position();
    Problem {
        code,
        index,
        line: Some(line),
        column: Some(column),
        field: Some(field.to_owned()),
        message,
    }
}

/// Parses one event object. `whole` is the full body `text` is a slice of (for positions).
fn parse_in(whole: &str, text: &str, index: Option<usize>) -> Result<NewEvent, Problem> {
    let origin = Origin::of(whole, text.trim_start());
    let wire: WireEvent<'_> = from_slice(text, Origin::of(whole, text), "", index)?;
    let ty = wire.ty;
    if let Some(v) = wire.v
        && v != ENVELOPE_VERSION
    {
        return Err(problem_at(
            origin,
            ProblemCode::UnsupportedVersion,
            "v",
            format!(
                "envelope version {v} is not supported; this server reads version {ENVELOPE_VERSION}"
            ),
            index,
        ));
    }
    for (field, value, max) in [
        ("source", &wire.source, 100),
        ("source_id", &wire.source_id, 200),
    ] {
        Event::check_source_text(value, max).map_err(|e| {
            problem_at(
                origin,
                ProblemCode::InvalidField,
                field,
                format!("{field} {e}"),
                index,
            )
        })?;
    }
    let refs = Refs {
        deal: wire.deal,
        lead: wire.lead,
        contact: wire.contact,
        account: wire.account,
        person: wire.person,
    };
    refs.check_for(ty)
        .map_err(|e| problem_at(origin, ProblemCode::MissingField, e.field, e.message, index))?;
    let body = match wire.data {
        Some(raw) => parse_data(ty, raw.get(), Origin::of(whole, raw.get()), index)?,
        None => parse_data(ty, "{}", origin, index)?,
    };
    check_time_zones(&body)
        .map_err(|(field, msg)| problem_at(origin, ProblemCode::InvalidField, field, msg, index))?;
    Ok(NewEvent {
        source: wire.source,
        source_id: wire.source_id,
        occurred_at: wire.occurred_at,
        actor: wire.actor,
        refs,
        body,
    })
}

fn parse_data(
    ty: EventType,
    text: &str,
    origin: Origin<'_>,
    index: Option<usize>,
) -> Result<EventBody, Problem> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let result = EventBody::deserialize_data(
        ty,
        serde_path_to_error::Deserializer::new(&mut de, &mut track),
    );
    match result {
        Ok(body) => Ok(body),
        Err(e) => {
            let path = track.path().to_string();
            let path = if path == "." {
                "data".to_owned()
            } else {
                format!("data.{path}")
            };
            Err(origin.problem(&e, Some(path), index))
        }
    }
}

/// Time zone names must exist in the IANA database, or send windows would silently use UTC.
fn check_time_zones(body: &EventBody) -> Result<(), (&'static str, String)> {
    let tz = match body {
        EventBody::ContactCreated(c) | EventBody::ContactUpdated(c) => c.timezone.as_deref(),
        EventBody::PersonCreated(p) | EventBody::PersonUpdated(p) => p.timezone.as_deref(),
        _ => None,
    };
    match tz {
        Some(name) if jiff::tz::TimeZone::get(name).is_err() => Err((
            "data.timezone",
            format!("unknown time zone {name:?}: expected an IANA name such as \"Europe/Berlin\""),
        )),
        _ => Ok(()),
    }
}

/// Parses a body holding exactly one event object.
pub fn parse_one(text: &str) -> Result<NewEvent, Problem> {
    parse_in(text, text, None)
}

/// Parses a JSON body that is either one event object or an array of them.
///
/// Returns every problem found, not only the first, so a sender can fix a batch in one go.
pub fn parse_batch(text: &str) -> Result<Vec<NewEvent>, Vec<Problem>> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('[') {
        return parse_one(text).map(|e| vec![e]).map_err(|p| vec![p]);
    }
    let items: Vec<&RawValue> = from_slice(
        text,
        Origin {
            whole: text,
            offset: 0,
        },
        "",
        None,
    )
    .map_err(|p| vec![p])?;
    collect(
        items
            .iter()
            .enumerate()
            .map(|(i, raw)| parse_in(text, raw.get(), Some(i))),
    )
}

/// Parses newline-delimited JSON: one event per non-blank line.
pub fn parse_ndjson(text: &str) -> Result<Vec<NewEvent>, Vec<Problem>> {
    collect(
        text.split('\n')
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| parse_in(text, line, Some(i))),
    )
}

fn collect(
    results: impl Iterator<Item = Result<NewEvent, Problem>>,
) -> Result<Vec<NewEvent>, Vec<Problem>> {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(e) => events.push(e),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(events)
    } else {
        Err(problems)
    }
}
