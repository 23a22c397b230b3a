//! When a team member can take work: out-of-office periods and working hours, as routing and
//! escalation read them. Pure: "now" is always an argument.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A period a person is away, `from` (inclusive) to `until` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Absence {
    pub from: Timestamp,
    pub until: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The days and hours a person works, in their own time zone: `mon-fri 09:00-17:00`,
/// `mon,tue,thu 08:30-16:00`, or `09:00-17:00` for every day. Hours past midnight
/// (`22:00-06:00`) are not supported: split such a shift into two people or two days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    /// Bit `n` set: the weekday `n` (Monday = 0) is a working day.
    days: u8,
    /// Minutes after midnight: start inclusive, end exclusive.
    start: u16,
    end: u16,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not working hours: expected days and hours such as \"mon-fri 09:00-17:00\"")]
pub struct WorkingHoursError(String);

fn day(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| s.len() >= 3 && d.starts_with(&s[..3]) && d.len() <= s.len())
        .map(|i| i as u8)
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl WorkingHours {
    pub fn parse(text: &str) -> Result<Self, WorkingHoursError> {
        let err = || WorkingHoursError(text.to_owned());
        let mut words = text.split_whitespace();
        let (days_text, hours_text) = match (words.next(), words.next(), words.next()) {
            (Some(hours), None, None) => (None, hours),
            (Some(days), Some(hours), None) => (Some(days), hours),
            _ => return Err(err()),
        };
        let mut days = 0u8;
        match days_text {
            None => days = 0x7f,
            Some(spec) => {
                for part in spec.split(',') {
                    match part.split_once('-') {
                        Some((a, b)) => {
                            let (a, b) = (day(a).ok_or_else(err)?, day(b).ok_or_else(err)?);
                            if a > b {
                                return Err(err());
                            }
                            (a..=b).for_each(|d| days |= 1 << d);
                        }
                        None => days |= 1 << day(part).ok_or_else(err)?,
                    }
                }
            }
        }
        let (start, end) = hours_text.split_once('-').ok_or_else(err)?;
        let (start, end) = (
            minutes(start).ok_or_else(err)?,
            minutes(end).ok_or_else(err)?,
        );
        if start >= end {
            return Err(err());
        }
        Ok(Self { days, start, end })
    }

    /// Whether `at` falls inside these hours in the IANA zone `zone` (UTC when the zone is
    /// unknown).
    pub fn contains(&self, at: Timestamp, zone: Option<&str>) -> bool {
        let tz = zone
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let local = at.to_jiff().to_zoned_datetime(tz);
        let weekday = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.days & (1 << weekday) != 0 && minute >= self.start && minute < self.end
    }
}

impl fmt::Display for WorkingHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days != 0x7f {
            // Runs of consecutive days as ranges: mon-fri, mon,wed-fri.
            let mut parts = Vec::new();
            let mut d = 0;
            while d < 7 {
                if self.days & (1 << d) == 0 {
                    d += 1;
                    continue;
                }
                let first = d;
                while d + 1 < 7 && self.days & (1 << (d + 1)) != 0 {
                    d += 1;
                }
                parts.push(if first == d {
                    DAYS[first].to_owned()
                } else {
                    format!("{}-{}", DAYS[first], DAYS[d])
                });
                d += 1;
            }
            write!(f, "{} ", parts.join(","))?;
        }
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

impl Serialize for WorkingHours {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WorkingHours {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        WorkingHours::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl crate::Person {
    /// Why this person cannot take work at `now`, or `None` when they can: marked unavailable,
    /// inside an out-of-office period, or outside their working hours (in their time zone).
    pub fn unavailable(&self, now: Timestamp) -> Option<String> {
        if !self.available {
            return Some("marked unavailable".into());
        }
        if let Some(away) = self
            .out_of_office
            .iter()
            .find(|a| a.from <= now && now < a.until)
        {
            return Some(format!("out of office until {}", away.until));
        }
        match &self.working_hours {
            Some(h) if !h.contains(now, self.timezone.as_deref()) => Some(format!(
                "outside working hours ({h}, {})",
                self.timezone.as_deref().unwrap_or("UTC")
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn working_hours_parse_and_print() {
        for (text, printed) in [
            ("mon-fri 09:00-17:00", "mon-fri 09:00-17:00"),
            ("Mon,Wed,Fri 08:30-16:00", "mon,wed,fri 08:30-16:00"),
            ("mon,tue-thu 10:00-12:00", "mon-thu 10:00-12:00"),
            ("09:00-17:00", "09:00-17:00"),
        ] {
            assert_eq!(WorkingHours::parse(text).unwrap().to_string(), printed);
        }
        for bad in [
            "",
            "mon-fri",
            "fri-mon 09:00-17:00",
            "mon-fri 17:00-09:00",
            "mon-fri 9-5",
            "someday 09:00-17:00",
            "mon-fri 09:00-25:00",
            "mon fri 09:00-17:00",
        ] {
            assert!(WorkingHours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn working_hours_are_read_in_the_persons_zone() {
        let h = WorkingHours::parse("mon-fri 09:00-17:00").unwrap();
        // Tuesday 2026-12-01 08:30 UTC is 09:30 in Berlin and 03:30 in New York.
        let t = at("2026-12-01T08:30:00Z");
        assert!(h.contains(t, Some("Europe/Berlin")));
        assert!(!h.contains(t, Some("America/New_York")));
        assert!(!h.contains(t, None));
        // Saturday.
        assert!(!h.contains(at("2026-12-05T10:00:00Z"), Some("Europe/Berlin")));
        // The end is exclusive.
        assert!(!h.contains(at("2026-12-01T16:00:00Z"), Some("Europe/Berlin")));
    }
}
