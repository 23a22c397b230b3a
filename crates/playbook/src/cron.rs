//! Cron schedules in a time zone: the five standard fields (minute, hour, day of month, month,
//! day of week), lists, ranges, steps, month and weekday names, and the `@daily`-style
//! shorthands, as crontab(5) documents them.
//!
//! Occurrences are wall-clock times in the schedule's zone. Across daylight-saving changes:
//! - a time that does not exist (the hour skipped in spring) happens at the same offset later —
//!   `02:30` on the night Berlin skips 02:00–03:00 happens at 03:30 CEST; a skipped time and the
//!   real time it lands on (`0 2,3 * * *`) are one occurrence;
//! - a time that exists twice (the hour repeated in autumn) happens once, the first time —
//!   unless the schedule allows every hour of the day (`0 * * * *`, `*/15 * * * *`): such a
//!   schedule counts elapsed time rather than naming a time of day, so it also runs through
//!   the second pass, every real hour (or quarter hour) without a gap.
//!
//! The engine asks [`Schedule::occurs_at`] whether an armed timer is still an occurrence, live
//! and in replay alike, so the rule above is the whole of what both do.

use std::cmp::Ordering;
use std::fmt;

use jiff::SignedDuration;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{Offset, TimeZone};

use domain::Timestamp;

use crate::wall;

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

    /// Every day (or every `weekday`) at `time` in `zone`: `30 9 * * TUE` for Tuesday 09:30. A
    /// sequence's `wait: until` is this schedule in the contact's zone, so it meets the calendar's
    /// edges as cron schedules do.
    pub fn at(weekday: Option<Weekday>, time: Time, zone: TimeZone) -> Self {
        let (minute, hour) = (time.minute(), time.hour());
        let day = weekday.map_or("*".to_owned(), |d| d.to_sunday_zero_offset().to_string());
        Self {
            minutes: 1 << minute,
            hours: 1 << hour,
            days: u32::MAX,
            months: u16::MAX,
            weekdays: weekday.map_or(0x7f, |d| 1 << d.to_sunday_zero_offset()),
            either_day: false,
            source: format!("{minute} {hour} * * {day}"),
            zone_name: zone.iana_name().unwrap_or("(unnamed zone)").to_owned(),
            zone,
        }
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.source
    }

    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// The first occurrence strictly after `after`.
    ///
    /// The search walks the zone's stretches of one offset (see `wall.rs`): in each, the first
    /// wall-clock time that matches after `after` is its candidate, beside — right after a
    /// change that skipped wall times — the first skipped time that matches, which happens as
    /// if the clock had not changed. A stretch that begins by repeating wall times skips them
    /// unless the schedule runs every hour. Usually the first stretch holds the answer, and a
    /// schedule that runs every minute finds it at the first minute tried.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let after = jiff::Timestamp::from_millisecond(after.as_millis()).ok()?;
        // Every field matches within a few years (Feb 29 needs up to 8); further is a bug.
        let year = Offset::UTC.to_datetime(after).year();
        let horizon = Date::new(year.checked_add(10)?, 1, 1)
            .ok()?
            .to_datetime(Time::midnight());
        let just = SignedDuration::from_nanos(1);
        for stretch in wall::stretches(&self.zone, after) {
            let offset = stretch.offset;
            // Wall times count from just after `after`, or from the change that began a later
            // stretch.
            let mut from = match stretch.began {
                Some(began) if began > after => offset.to_datetime(began),
                _ => offset.to_datetime(after).checked_add(just).ok()?,
            };
            let until = stretch
                .end
                .map_or(horizon, |end| offset.to_datetime(end).min(horizon));
            let mut first = None;
            // A change reaches past `after` only by the length of its jump (a day at most).
            if let Some(began) = stretch.began
                && after < began.checked_add(SignedDuration::from_hours(24)).ok()?
            {
                let before = self.zone.to_offset(began.checked_sub(just).ok()?);
                match offset.seconds().cmp(&before.seconds()) {
                    // Spring: the wall times the clock jumped over happen at the same offset
                    // later, as the earlier offset counts them (02:30 at 03:30).
                    Ordering::Greater => {
                        let skipped = before
                            .to_datetime(began)
                            .max(before.to_datetime(after).checked_add(just).ok()?);
                        first = self
                            .first_match(skipped, offset.to_datetime(began))
                            .and_then(|wall| before.to_timestamp(wall).ok());
                    }
                    // Autumn: the wall times the clock goes back over happened already, before
                    // the change; a time of day happens once, but a schedule that runs every
                    // hour keeps running through the repeated hour.
                    Ordering::Less if !self.every_hour() => {
                        from = from.max(before.to_datetime(began));
                    }
                    _ => {}
                }
            }
            if let Some(wall) = self.first_match(from, until) {
                let at = offset.to_timestamp(wall).ok()?;
                first = Some(first.map_or(at, |f: jiff::Timestamp| f.min(at)));
            }
            if let Some(at) = first {
                return Some(Timestamp::from_millis(at.as_millisecond()));
            }
            if until >= horizon {
                return None;
            }
        }
        None
    }

    /// Whether `at` is an occurrence: a timer armed for one the schedule no longer has (the
    /// playbook changed it) is stale.
    pub fn occurs_at(&self, at: Timestamp) -> bool {
        self.next_after(Timestamp::from_millis(at.as_millis() - 1)) == Some(at)
    }

    /// Every hour of the day allowed: the schedule counts elapsed time rather than naming a
    /// time of day, so a repeated hour does not interrupt it.
    fn every_hour(&self) -> bool {
        self.hours == (1 << 24) - 1
    }

    /// The first wall-clock time from `from` (rounded up to the whole minute) and before
    /// `until` that every field matches.
    fn first_match(&self, from: DateTime, until: DateTime) -> Option<DateTime> {
        let whole = from
            .date()
            .to_datetime(Time::new(from.hour(), from.minute(), 0, 0).ok()?);
        let from = if whole < from {
            whole.checked_add(SignedDuration::from_mins(1)).ok()?
        } else {
            whole
        };
        let (mut hour, mut minute) = (from.hour() as u32, from.minute() as u32);
        let mut date = from.date();
        while date.to_datetime(Time::midnight()) < until {
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
                    if let Some(m) = bits(self.minutes, from).next() {
                        let at = date.to_datetime(Time::new(h as i8, m as i8, 0, 0).ok()?);
                        return (at < until).then_some(at);
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

    /// Issue 23: the daily 02:30 on the night Berlin skips 02:00–03:00 happens at 03:30 CEST,
    /// and it is found from anywhere before it — also from inside the skipped hour's
    /// replacement (03:10 CEST), and from just before it, as the engine asks whether a timer
    /// is still an occurrence.
    #[test]
    fn a_skipped_time_is_found_from_anywhere_before_it() {
        let daily = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let gap = at("2026-03-29T01:30:00Z");
        for after in [
            "2026-03-28T12:00:00Z",
            "2026-03-29T00:59:59Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:10:00Z",
            "2026-03-29T01:29:59.999Z",
        ] {
            assert_eq!(daily.next_after(at(after)), Some(gap), "after {after}");
        }
        assert!(daily.occurs_at(gap));
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-03-29T01:30:00Z"),
            "2026-03-30T00:30:00Z"
        );
        // New York skips 02:00–03:00 EST on 2026-03-08: 02:30 happens at 03:30 EDT.
        assert_eq!(
            next("30 2 * * *", "America/New_York", "2026-03-08T07:10:00Z"),
            "2026-03-08T07:30:00Z"
        );
    }

    /// Issue 23: in the repeated hour a time of day happens once, the first time; a schedule
    /// that runs every hour keeps running through it, so `0 * * * *` fires every real hour and
    /// `*/15 * * * *` every real quarter hour.
    #[test]
    fn a_repeated_hour_runs_a_time_of_day_once_and_an_hourly_schedule_throughout() {
        let occurrences = |expr: &str, zone: &str, from: &str, n: usize| {
            let s = Schedule::parse(expr, zone).unwrap();
            let mut t = at(from);
            (0..n)
                .map(|_| {
                    t = s.next_after(t).unwrap();
                    assert!(s.occurs_at(t), "{expr} occurs at {t}");
                    t.to_jiff().to_string()
                })
                .collect::<Vec<_>>()
        };
        // Berlin repeats 02:00–03:00 on 2026-10-25 (00:00–01:00 UTC in CEST, 01:00–02:00 in
        // CET).
        assert_eq!(
            occurrences("0 * * * *", "Europe/Berlin", "2026-10-24T22:30:00Z", 4),
            [
                "2026-10-24T23:00:00Z",
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z"
            ]
        );
        assert_eq!(
            occurrences("*/15 2 * * *", "Europe/Berlin", "2026-10-24T23:50:00Z", 5),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:15:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T00:45:00Z",
                "2026-10-26T01:00:00Z"
            ]
        );
        // New York repeats 01:00–02:00 on 2026-11-01 (05:00–06:00 UTC in EDT, 06:00–07:00 in
        // EST).
        assert_eq!(
            occurrences(
                "*/30 * * * *",
                "America/New_York",
                "2026-11-01T04:50:00Z",
                5
            ),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
        assert_eq!(
            occurrences("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // A timer armed for the second pass of a time of day is not an occurrence.
        let daily = Schedule::parse("30 1 * * *", "America/New_York").unwrap();
        assert!(!daily.occurs_at(at("2026-11-01T06:30:00Z")));
    }

    /// Against the rule written out directly: every wall time the fields match, in a window of
    /// days around `after`, happens where jiff resolves it (a skipped time at the earlier
    /// offset, so an hour later; a repeated time the first time, and the second time too when
    /// every hour is allowed); the answer is the least of those instants after `after`. Run
    /// around the changes of zones that jump by an hour, by half an hour (Lord Howe), at
    /// midnight (Santiago) and by a whole day (Apia, 2011).
    #[test]
    fn agrees_with_the_rule_around_every_kind_of_change() {
        use jiff::tz::AmbiguousOffset;
        let expressions = [
            "30 2 * * *",
            "0 * * * *",
            "*/15 * * * *",
            "*/15 2 * * *",
            "20,40 2 * * *",
            "0 0 * * *",
            "45 1-3 * * SUN",
            "*/7 * * * *",
        ];
        let zones = [
            ("Europe/Berlin", "2026-01-01T00:00:00Z"),
            ("America/New_York", "2026-01-01T00:00:00Z"),
            ("Australia/Lord_Howe", "2026-01-01T00:00:00Z"),
            ("America/Santiago", "2026-01-01T00:00:00Z"),
            ("Pacific/Apia", "2011-12-01T00:00:00Z"),
        ];
        let mut seed: u64 = 0xd57;
        for (zone, since) in zones {
            let tz = TimeZone::get(zone).unwrap();
            let since = jiff::Timestamp::from_millisecond(at(since).as_millis()).unwrap();
            let changes: Vec<i64> = tz
                .following(since)
                .take(2)
                .map(|t| t.timestamp().as_millisecond())
                .collect();
            for expr in expressions {
                let schedule = Schedule::parse(expr, zone).unwrap();
                let fields = expr.split(' ').collect::<Vec<_>>();
                let sets: Vec<u64> = (0..5)
                    .map(|i| parse_field(fields[i], &FIELDS[i]).unwrap())
                    .collect();
                let hit = |i: usize, v: i64| sets[i] & (1 << v) != 0;
                for change in &changes {
                    for _ in 0..6 {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let after =
                            change - 36 * 3_600_000 + (seed >> 20) as i64 % (72 * 3_600_000);
                        let start = jiff::Timestamp::from_millisecond(after)
                            .unwrap()
                            .to_zoned_datetime(tz.clone())
                            .date()
                            .checked_sub(jiff::Span::new().days(2))
                            .unwrap();
                        let mut want: Option<i64> = None;
                        for day in 0..13 {
                            let date = start.checked_add(jiff::Span::new().days(day)).unwrap();
                            let dow = i64::from(date.weekday().to_sunday_zero_offset());
                            let weekday = hit(4, dow) || (dow == 0 && hit(4, 7));
                            if !(hit(2, i64::from(date.day()))
                                && hit(3, i64::from(date.month()))
                                && weekday)
                            {
                                continue;
                            }
                            for h in (0..24).filter(|h| hit(1, *h)) {
                                for m in (0..60).filter(|m| hit(0, *m)) {
                                    let wall = date
                                        .to_datetime(Time::new(h as i8, m as i8, 0, 0).unwrap());
                                    let ms = |o: jiff::tz::Offset| {
                                        o.to_timestamp(wall).unwrap().as_millisecond()
                                    };
                                    let instants = match tz.to_ambiguous_timestamp(wall).offset() {
                                        AmbiguousOffset::Unambiguous { offset } => vec![ms(offset)],
                                        AmbiguousOffset::Gap { before, .. } => vec![ms(before)],
                                        AmbiguousOffset::Fold { before, after }
                                            if fields[1] == "*" =>
                                        {
                                            vec![ms(before), ms(after)]
                                        }
                                        AmbiguousOffset::Fold { before, .. } => vec![ms(before)],
                                    };
                                    for t in instants.into_iter().filter(|t| *t > after) {
                                        want = Some(want.map_or(t, |w| w.min(t)));
                                    }
                                }
                            }
                        }
                        let got = schedule.next_after(Timestamp::from_millis(after));
                        assert_eq!(
                            got.map(Timestamp::as_millis),
                            want,
                            "{expr} in {zone} after {}",
                            Timestamp::from_millis(after)
                        );
                    }
                }
            }
        }
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
