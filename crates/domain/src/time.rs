use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use jiff::civil::Date;

pub const MILLIS_PER_DAY: i64 = 86_400_000;

/// An instant, as milliseconds since the Unix epoch (UTC).
///
/// Stored as an integer in every database; written and read as RFC 3339 on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an RFC 3339 timestamp with an offset, such as 2026-11-02T09:30:00Z: {0}")]
pub struct TimestampError(String);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole days from `self` to `later` (0 when `later` is earlier).
    pub fn days_until(self, later: Timestamp) -> i64 {
        (later.0 - self.0).max(0) / MILLIS_PER_DAY
    }

    pub fn to_jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// The calendar date of this instant in UTC.
    pub fn date_utc(self) -> Date {
        self.to_jiff()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date()
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ts: jiff::Timestamp = s
            .parse()
            .map_err(|e: jiff::Error| TimestampError(e.to_string()))?;
        Ok(Self(ts.as_millisecond()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Millisecond precision keeps the round trip through the database exact.
        write!(f, "{:.3}", self.to_jiff())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsed where it lies: no copy of the text for each of the log's timestamps.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_prints_utc_with_millis() {
        let ts: Timestamp = "2026-11-02T10:30:00+01:00".parse().unwrap();
        assert_eq!(ts.to_string(), "2026-11-02T09:30:00.000Z");
        assert_eq!(ts.to_string().parse::<Timestamp>().unwrap(), ts);
    }

    #[test]
    fn rejects_timestamps_without_offset() {
        let err = "2026-11-02T09:30:00".parse::<Timestamp>().unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn days_until_floors_and_never_goes_negative() {
        let a = Timestamp::from_millis(0);
        assert_eq!(
            a.days_until(Timestamp::from_millis(MILLIS_PER_DAY * 2 - 1)),
            1
        );
        assert_eq!(Timestamp::from_millis(MILLIS_PER_DAY).days_until(a), 0);
    }
}

/// A length of time as people say it, in its largest whole unit: "1 day", "3 days",
/// "5 hours", "1 minute", "45 seconds" (rounded down; under a second reads "0 seconds").
pub fn span_in_words(ms: i64) -> String {
    let ms = ms.max(0);
    let (n, unit) = [
        (MILLIS_PER_DAY, "day"),
        (3_600_000, "hour"),
        (60_000, "minute"),
        (1_000, "second"),
    ]
    .into_iter()
    .find(|(size, _)| ms >= *size)
    .map_or((0, "second"), |(size, unit)| (ms / size, unit));
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod span_tests {
    use super::span_in_words;

    #[test]
    fn spans_read_in_their_largest_whole_unit() {
        assert_eq!(span_in_words(86_400_000), "1 day");
        assert_eq!(span_in_words(3 * 86_400_000 + 5), "3 days");
        assert_eq!(span_in_words(5 * 3_600_000), "5 hours");
        assert_eq!(span_in_words(60_000), "1 minute");
        assert_eq!(span_in_words(45_999), "45 seconds");
        assert_eq!(span_in_words(10), "0 seconds");
    }
}
