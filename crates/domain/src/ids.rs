use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters, got {len}")]
    TooLong { max: usize, len: usize },
    #[error("must not contain control characters")]
    Control,
}

fn check_text(s: &str, max: usize) -> Result<(), IdError> {
    if s.trim().is_empty() {
        return Err(IdError::Empty);
    }
    let len = s.chars().count();
    if len > max {
        return Err(IdError::TooLong { max, len });
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::Control);
    }
    Ok(())
}

macro_rules! text_newtype {
    ($(#[$meta:meta])* $name:ident, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_text(&s, $max)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// The id of a record in its source system (a CRM id, an email address for people, …).
    RecordId,
    200
);
text_newtype!(
    /// The name of a pipeline stage, as the team's CRM spells it ("discovery", "legal", …).
    Stage,
    100
);

/// The kinds of record whose state pipewright derives from events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Lead,
    Contact,
    Account,
    Deal,
    Person,
}

impl RecordKind {
    pub const ALL: [RecordKind; 5] = [
        Self::Lead,
        Self::Contact,
        Self::Account,
        Self::Deal,
        Self::Person,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lead => "lead",
            Self::Contact => "contact",
            Self::Account => "account",
            Self::Deal => "deal",
            Self::Person => "person",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's identity across kinds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    pub kind: RecordKind,
    pub id: RecordId,
}

impl RecordKey {
    pub fn new(kind: RecordKind, id: RecordId) -> Self {
        Self { kind, id }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

/// A team member's role. Key people are flagged separately (`Person::key_person`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Founder,
    Executive,
    Vp,
    Manager,
    Ae,
    Sdr,
    Csm,
    Revops,
}

impl Role {
    /// The role's name as written in events and playbooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Founder => "founder",
            Role::Executive => "executive",
            Role::Vp => "vp",
            Role::Manager => "manager",
            Role::Ae => "ae",
            Role::Sdr => "sdr",
            Role::Csm => "csm",
            Role::Revops => "revops",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_control_text() {
        assert_eq!(RecordId::parse("  "), Err(IdError::Empty));
        assert!(matches!(
            RecordId::parse("x".repeat(201)),
            Err(IdError::TooLong { .. })
        ));
        assert_eq!(RecordId::parse("a\nb"), Err(IdError::Control));
        assert_eq!(RecordId::parse("D-1").unwrap().as_str(), "D-1");
    }

    #[test]
    fn record_kinds_round_trip_their_names() {
        for kind in RecordKind::ALL {
            assert_eq!(RecordKind::parse(kind.as_str()), Some(kind));
        }
    }
}
