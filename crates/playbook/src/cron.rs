//! Cron schedules in a time zone: the five standard fields (minute, hour, day of month, month,
//! day of week), lists, ranges, steps, month and weekday names, and the `@daily`-style
//! shorthands, as crontab(5) documents them.
//!
//! Occurrences are wall-clock times in the schedule's zone. Across daylight-saving changes a
//! time that does not exist (the hour skipped in spring) happens at the same offset later —
//! `02:30` becomes `03:30` — and a time that exists twice (the hour repeated in autumn)
//! happens once, the first time.

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use domain::Timestamp;

/// A parsed schedule. Each field is a bit set of the values it allows.
#[derive(Clone)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Both day fields restricted: a day matches when either does (crontab's rule).
    either_day: bool,
    zone: TimeZone,
    source: String,
    zone_name: String,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} in {}", self.source, self.zone_name)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.zone_name == other.zone_name
    }
}

/// What is wrong with a schedule, and where in its text (0-based character offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub offset: usize,
    pub message: String,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    Field {
        name: "day of week",
        min: 0,
        // 7 is Sunday too.
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

impl Schedule {
    /// Parses `expression` for the IANA time zone `zone` (e.g. `Europe/Berlin`, `UTC`).
    ///
    /// # Errors
    /// The first problem found, with its offset in `expression` (0 for an unknown zone).
    pub fn parse(expression: &str, zone: &str) -> Result<Self, CronError> {
        let tz =
            crate::window::time_zone(zone).map_err(|message| CronError { offset: 0, message })?;
        let trimmed = expression.trim();
        let expanded = match trimmed {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(CronError {
                    offset: 0,
                    message: format!(
                        "unknown shorthand {other:?}; expected @hourly, @daily, @weekly, @monthly or @yearly"
                    ),
                });
            }
            other => other,
        };
        let offsets: Vec<(usize, &str)> = split_fields(expanded);
        if offsets.len() != 5 {
            return Err(CronError {
                offset: 0,
                message: format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                    offsets.len()
                ),
            });
        }
        let leading = expression.len() - expression.trim_start().len();
        let shift = if expanded == trimmed { leading } else { 0 };
        let mut sets = [0u64; 5];
        for (i, (at, text)) in offsets.iter().enumerate() {
            sets[i] = parse_field(text, &FIELDS[i]).map_err(|(o, message)| CronError {
                offset: shift + at + o,
                message,
            })?;
        }
        let star = |i: usize| offsets[i].1 == "*" || offsets[i].1.starts_with("*/");
        // Sunday may be written 0 or 7.
        let weekdays = (sets[4] | (sets[4] >> 7)) & 0x7f;
        let schedule = Self {
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays: weekdays as u8,
            either_day: !star(2) && !star(4),
            zone: tz,
            source: trimmed.to_owned(),
            zone_name: zone.to_owned(),
        };
        if !schedule.any_day_exists() {
            return Err(CronError {
                offset: shift + offsets[2].0,
                message: "this day of month never occurs in the months given".into(),
            });
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.source
    }

    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let instant = jiff::Timestamp::from_millisecond(after.as_millis()).ok()?;
        let local = instant.to_zoned_datetime(self.zone.clone()).datetime();
        // Candidates start at the whole minute after `after`, in local time: on the first day
        // from that hour and minute, on later days from midnight.
        let (mut hour, mut minute) = (local.hour() as u32, local.minute() as u32 + 1);
        let mut date = local.date();
        // Every field matches within a few years (Feb 29 needs up to 8); further is a bug.
        let limit = date.year() + 9;
        while date.year() <= limit {
            if !self.month_matches(date) {
                date = date
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?;
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date) {
                for h in bits(u64::from(self.hours), hour) {
                    let from = if h == hour { minute } else { 0 };
                    for m in bits(self.minutes, from) {
                        let at = date.to_datetime(Time::new(h as i8, m as i8, 0, 0).ok()?);
                        // Gaps resolve forward, folds to the earlier instant.
                        let zoned = self
                            .zone
                            .to_ambiguous_zoned_datetime(at)
                            .compatible()
                            .ok()?;
                        let t = zoned.timestamp().as_millisecond();
                        if t > after.as_millis() {
                            return Some(Timestamp::from_millis(t));
                        }
                        // Otherwise the second pass through a repeated hour: that wall time
                        // already happened.
                    }
                }
            }
            date = date.tomorrow().ok()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    fn month_matches(&self, date: Date) -> bool {
        self.months & (1 << date.month()) != 0
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// Whether some allowed day of month exists in some allowed month (`30 2` never does).
    fn any_day_exists(&self) -> bool {
        if self.either_day {
            return true;
        }
        (1..=12).any(|m| {
            let longest = match m {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            self.months & (1 << m) != 0 && (1..=longest).any(|d| self.days & (1 << d) != 0)
        })
    }
}

/// The values of a bit set from `from` upwards, in order.
fn bits(set: u64, from: u32) -> impl Iterator<Item = u32> {
    (from..64).filter(move |v| set & (1 << v) != 0)
}

/// The fields with their offsets in the text.
fn split_fields(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

/// One field's list (`1,15`, `9-17/2`, `*/15`, `MON-FRI`) as a bit set; an error carries its
/// offset within the field.
fn parse_field(text: &str, field: &Field) -> Result<u64, (usize, String)> {
    let mut set = 0u64;
    let mut offset = 0;
    for part in text.split(',') {
        set |= parse_part(part, field).map_err(|(o, m)| (offset + o, m))?;
        offset += part.len() + 1;
    }
    Ok(set)
}

fn parse_part(part: &str, field: &Field) -> Result<u64, (usize, String)> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                (
                    r.len() + 1,
                    format!(
                        "the step {s:?} of the {} field is not a positive number",
                        field.name
                    ),
                )
            })?;
            (r, step)
        }
        None => (part, 1),
    };
    let (low, high) = if range == "*" {
        (field.min, field.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let low = value(a, field).map_err(|m| (0, m))?;
        let high = value(b, field).map_err(|m| (a.len() + 1, m))?;
        if low > high {
            return Err((
                0,
                format!(
                    "the range {range:?} of the {} field runs backwards",
                    field.name
                ),
            ));
        }
        (low, high)
    } else {
        let v = value(range, field).map_err(|m| (0, m))?;
        // `5/15`: from 5 to the end, every 15.
        (v, if step > 1 { field.max } else { v })
    };
    let mut set = 0u64;
    let mut v = low;
    while v <= high {
        set |= 1 << v;
        v += step;
    }
    Ok(set)
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + field.min);
    }
    let expected = || {
        let names = if field.names.is_empty() {
            String::new()
        } else {
            format!(" or a name ({}…)", field.names[..3].join(", "))
        };
        format!(
            "{text:?} is not a valid {}: expected {}–{}{names}",
            field.name, field.min, field.max
        )
    };
    let v: u32 = text.parse().map_err(|_| expected())?;
    if v < field.min || v > field.max {
        return Err(expected());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The next occurrence, printed as RFC 3339 in UTC without the milliseconds.
    fn next(expr: &str, zone: &str, after: &str) -> String {
        let t = Schedule::parse(expr, zone)
            .unwrap()
            .next_after(at(after))
            .unwrap();
        t.to_jiff().to_string()
    }

    #[test]
    fn next_occurrences() {
        // (expression, zone, after, next occurrence)
        let cases = [
            // Monday 09:00 in Berlin is 08:00 UTC in winter; strictly after: a week on.
            (
                "0 9 * * MON",
                "Europe/Berlin",
                "2026-11-20T12:00:00Z",
                "2026-11-23T08:00:00Z",
            ),
            (
                "0 9 * * MON",
                "Europe/Berlin",
                "2026-11-23T08:00:00Z",
                "2026-11-30T08:00:00Z",
            ),
            // Lists, ranges, steps and names.
            (
                "*/15 9-17 * * mon-fri",
                "UTC",
                "2026-11-21T10:00:00Z",
                "2026-11-23T09:00:00Z",
            ),
            (
                "*/15 9-17 * * mon-fri",
                "UTC",
                "2026-11-23T09:07:00Z",
                "2026-11-23T09:15:00Z",
            ),
            (
                "0 8 1,15 * *",
                "UTC",
                "2026-11-02T00:00:00Z",
                "2026-11-15T08:00:00Z",
            ),
            (
                "30 6 * JAN,jul 7",
                "UTC",
                "2026-11-23T00:00:00Z",
                "2027-01-03T06:30:00Z",
            ),
            (
                "@monthly",
                "UTC",
                "2026-11-23T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                "5/20 * * * *",
                "UTC",
                "2026-11-23T00:26:00Z",
                "2026-11-23T00:45:00Z",
            ),
            // Both day fields restricted: the 13th or any Friday, whichever comes first.
            (
                "0 0 13 * FRI",
                "UTC",
                "2026-11-23T00:00:00Z",
                "2026-11-27T00:00:00Z",
            ),
            // A leap day waits for a leap year.
            (
                "0 0 29 2 *",
                "UTC",
                "2026-11-23T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
        ];
        for (expr, zone, after, want) in cases {
            assert_eq!(
                next(expr, zone, after),
                want,
                "{expr} in {zone} after {after}"
            );
        }
    }

    #[test]
    fn daylight_saving_gap_and_fold() {
        // Berlin skips 02:00–03:00 on 2027-03-28: 02:30 happens at 03:30 CEST (01:30 UTC).
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z"),
            "2027-03-28T01:30:00Z"
        );
        // Berlin repeats 02:00–03:00 on 2026-10-25: 02:30 happens once, at 02:30 CEST.
        let first = next("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z");
        assert_eq!(first, "2026-10-25T00:30:00Z");
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", &first),
            "2026-10-26T01:30:00Z"
        );
    }

    /// Against a minute-by-minute scan that checks every field directly.
    #[test]
    fn agrees_with_a_brute_force_scan() {
        let expressions = [
            "*/7 3-5 * * *",
            "0 12 1-3,20 * SAT",
            "45 23 * 2,3 MON-WED",
            "0 0 31 * *",
            "10,20 */6 * * 0",
        ];
        let mut seed: u64 = 0x5eed;
        for expr in expressions {
            let schedule = Schedule::parse(expr, "UTC").unwrap();
            let fields = expr.split(' ').collect::<Vec<_>>();
            let sets: Vec<u64> = (0..5)
                .map(|i| parse_field(fields[i], &FIELDS[i]).unwrap())
                .collect();
            let hit = |i: usize, v: u32| sets[i] & (1 << v) != 0;
            for _ in 0..8 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let start = 1_767_225_600_000 + (seed >> 20) as i64 % (365 * 86_400_000);
                let got = schedule.next_after(Timestamp::from_millis(start)).unwrap();
                let mut t = (start / 60_000 + 1) * 60_000;
                let want = loop {
                    let dt = jiff::Timestamp::from_millisecond(t)
                        .unwrap()
                        .to_zoned_datetime(TimeZone::UTC);
                    let dow = dt.weekday().to_sunday_zero_offset() as u32;
                    let dom_star = fields[2] == "*";
                    let dow_star = fields[4] == "*";
                    let dom = hit(2, dt.day() as u32);
                    let wd = hit(4, dow) || (dow == 0 && hit(4, 7));
                    let day = if !dom_star && !dow_star {
                        dom || wd
                    } else {
                        dom && wd
                    };
                    if hit(0, dt.minute() as u32)
                        && hit(1, dt.hour() as u32)
                        && hit(3, dt.month() as u32)
                        && day
                    {
                        break t;
                    }
                    t += 60_000;
                };
                assert_eq!(got.as_millis(), want, "{expr} after {start}");
            }
        }
    }

    #[test]
    fn errors_point_at_the_field() {
        let err = |e: &str| Schedule::parse(e, "UTC").unwrap_err();
        assert_eq!(err("0 9 * *").offset, 0);
        let e = err("0 25 * * *");
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("hour"), "{}", e.message);
        let e = err("0 9 * * MON-FRX");
        assert_eq!(e.offset, 12);
        assert!(e.message.contains("day of week"), "{}", e.message);
        assert_eq!(err("*/0 * * * *").offset, 2);
        assert_eq!(err("0 0 30 2 *").offset, 4);
        assert_eq!(err("0 0 5-1 * *").offset, 4);
        assert!(err("@sometimes").message.contains("@daily"));
        let zone = Schedule::parse("0 9 * * *", "Mars/Olympus").unwrap_err();
        assert!(zone.message.contains("Mars/Olympus"), "{}", zone.message);
    }
}
