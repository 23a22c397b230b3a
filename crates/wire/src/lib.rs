//! The wire formats through which events arrive — a JSON object, a JSON array, NDJSON, and CSV
//! with a documented column mapping — parsed into domain events with precise errors.
//!
//! Every problem names what is wrong, where (line and column of the body, or the CSV line and
//! column name) and which field, so a sender can fix a bad event without guessing. Parsing is
//! pure: this crate knows nothing of HTTP, storage or the clock.

mod csv_format;
mod json;

pub use csv_format::{CSV_COLUMNS_DOC, parse_csv};
pub use domain::NewEvent;
pub use json::{parse_batch, parse_ndjson, parse_one};

use serde::Serialize;

/// The stable code of a problem with an incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// The body is not valid JSON (or a CSV line could not be read).
    MalformedJson,
    /// `type` names no event type pipewright knows.
    UnknownEventType,
    /// A required field (or record reference) is absent.
    MissingField,
    /// A field pipewright does not know was sent (usually a typo).
    UnknownField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// The envelope version is newer than this server understands.
    UnsupportedVersion,
}

impl ProblemCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::UnknownEventType => "unknown_event_type",
            Self::MissingField => "missing_field",
            Self::UnknownField => "unknown_field",
            Self::InvalidField => "invalid_field",
            Self::UnsupportedVersion => "unsupported_version",
        }
    }
}

/// One problem with one incoming event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: ProblemCode,
    /// Position of the event in a batch (0-based), when the body held several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// 1-based line in the body (or CSV file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column in that line (in bytes), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The field at fault, as a path such as `data.kind` (or a CSV column name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            if let Some(col) = self.column {
                write!(f, ", column {col}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for Problem {}
