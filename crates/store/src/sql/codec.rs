//! How record state is written in the `records` table: the JSON of the record's own struct,
//! its kind kept in the `kind` column. Decoding straight into the struct avoids serde's
//! buffering of internally tagged enums, which dominated ingest time.

use domain::{Record, RecordKind};

use crate::{Error, Result};

pub(crate) fn encode(record: &Record) -> Result<String> {
    let json = match record {
        Record::Deal(r) => serde_json::to_string(r),
        Record::Lead(r) => serde_json::to_string(r),
        Record::Contact(r) => serde_json::to_string(r),
        Record::Account(r) => serde_json::to_string(r),
        Record::Person(r) => serde_json::to_string(r),
    };
    json.map_err(|e| Error::Invalid(e.to_string()))
}

pub(crate) fn decode(kind: RecordKind, json: &str) -> Result<Record> {
    let record = match kind {
        RecordKind::Deal => serde_json::from_str(json).map(Record::Deal),
        RecordKind::Lead => serde_json::from_str(json).map(Record::Lead),
        RecordKind::Contact => serde_json::from_str(json).map(Record::Contact),
        RecordKind::Account => serde_json::from_str(json).map(Record::Account),
        RecordKind::Person => serde_json::from_str(json).map(Record::Person),
    };
    record.map_err(|e| Error::Corrupt(format!("{kind} state: {e}")))
}
