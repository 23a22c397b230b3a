//! Send windows: the working days and hours, in a time zone, within which a sequence's steps go
//! out, minus a team's holidays. A step that comes due outside the window waits for its next
//! opening (and the steps after it, timed from when it went out, shift with it).
//!
//! A window is the hours the recipient's clock shows: it is open whenever the wall clock in its
//! zone (or the recipient's) shows an open day's hours, so across daylight-saving changes it
//! keeps its local hours. On the night the clock skips 02:00–03:00, a window from 02:30 opens
//! at 03:00, the first moment the clock shows a time inside it (one whose hours were all
//! skipped is not open that day); in the hour the clock repeats, it is open both times the
//! clock shows its hours. Unlike a cron schedule's occurrence, an opening is not an
//! appointment moved out of a gap: sending at 03:30 for a window that ends at 03:00 would send
//! outside the hours the window promises.

use std::collections::BTreeSet;
use std::fmt;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;

use domain::Timestamp;

use crate::wall;

/// When messages may go out.
#[derive(Clone)]
pub struct SendWindow {
    /// The days it is open, Monday first.
    days: [bool; 7],
    start: Time,
    /// Exclusive; `start < end`.
    end: Time,
    zone: TimeZone,
    zone_name: String,
    holidays: BTreeSet<Date>,
}

impl fmt::Debug for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendWindow({self})")
    }
}

impl fmt::Display for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = WEEKDAYS
            .iter()
            .zip(self.days)
            .filter(|(_, open)| *open)
            .map(|((name, _), _)| *name)
            .collect();
        write!(
            f,
            "{} {}-{} {}",
            days.join(","),
            self.start.strftime("%H:%M"),
            self.end.strftime("%H:%M"),
            self.zone_name
        )?;
        if !self.holidays.is_empty() {
            write!(f, " except {} holidays", self.holidays.len())?;
        }
        Ok(())
    }
}

impl PartialEq for SendWindow {
    fn eq(&self, other: &Self) -> bool {
        (
            self.days,
            self.start,
            self.end,
            &self.zone_name,
            &self.holidays,
        ) == (
            other.days,
            other.start,
            other.end,
            &other.zone_name,
            &other.holidays,
        )
    }
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// A weekday by its English name or three-letter abbreviation, any case.
pub fn parse_weekday(text: &str) -> Option<Weekday> {
    let lower = text.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|(short, day)| lower == *short || lower == format!("{day:?}").to_ascii_lowercase())
        .map(|(_, day)| *day)
}

/// The IANA time zone `name`, or what to write instead.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|e| {
        format!("unknown time zone {name:?} ({e}); use an IANA name such as Europe/Berlin")
    })
}

/// `HH:MM`, 24-hour.
pub fn parse_time(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl SendWindow {
    /// A window open on `days` (names or ranges: `mon-fri`, `mon,wed,fri`), from `hours`
    /// (`09:00-17:30`), in the IANA zone `zone`, closed on `holidays`.
    ///
    /// # Errors
    /// What is wrong with which part, in words.
    pub fn parse(
        days: &str,
        hours: &str,
        zone: &str,
        holidays: BTreeSet<Date>,
    ) -> Result<Self, String> {
        let mut open = [false; 7];
        for part in days.split(',').map(str::trim) {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let index = |name: &str| {
                parse_weekday(name.trim())
                    .map(|d| d.to_monday_zero_offset() as usize)
                    .ok_or_else(|| {
                        format!("{name:?} is not a weekday: use mon, tue, wed, thu, fri, sat, sun")
                    })
            };
            let (from, to) = (index(from)?, index(to)?);
            if from > to {
                return Err(format!(
                    "{part:?} runs backwards: write the earlier day first"
                ));
            }
            for day in &mut open[from..=to] {
                *day = true;
            }
        }
        let (start, end) = hours
            .split_once('-')
            .and_then(|(s, e)| Some((parse_time(s.trim())?, parse_time(e.trim())?)))
            .ok_or_else(|| format!("{hours:?} is not a span of hours: write e.g. 09:00-17:30"))?;
        if start >= end {
            return Err(format!(
                "{hours:?} ends before it starts: a window lies within one day"
            ));
        }
        let tz = time_zone(zone)?;
        Ok(Self {
            days: open,
            start,
            end,
            zone: tz,
            zone_name: zone.to_owned(),
            holidays,
        })
    }

    /// The zone its hours are in.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    fn open_on(&self, date: Date) -> bool {
        self.days[date.weekday().to_monday_zero_offset() as usize] && !self.holidays.contains(&date)
    }

    /// `at` itself if the window is open then, otherwise the window's next opening.
    pub fn next_opening(&self, at: Timestamp) -> Option<Timestamp> {
        self.next_opening_in(at, &self.zone)
    }

    /// Like [`SendWindow::next_opening`], with the hours read in `zone` — the recipient's,
    /// when it is known — instead of the window's own.
    pub fn next_opening_in(&self, at: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let at = jiff::Timestamp::from_millisecond(at.as_millis()).ok()?;
        // Holidays are finite: within a year and a week some open day comes round.
        let horizon = at
            .checked_add(jiff::SignedDuration::from_hours(24 * 382))
            .ok()?;
        for stretch in wall::stretches(zone, at) {
            let from = match stretch.began {
                Some(began) if began > at => began,
                _ => at,
            };
            if from > horizon {
                return None;
            }
            let wall = self.first_open(stretch.offset.to_datetime(from))?;
            let opens = stretch.offset.to_timestamp(wall).ok()?;
            // The clock jumps at the stretch's end: a wall time beyond it is looked for again
            // from the next stretch's.
            if stretch.end.is_none_or(|end| opens < end) {
                return Some(Timestamp::from_millis(opens.as_millisecond()));
            }
        }
        None
    }

    /// The first wall-clock time from `from` at which the window is open, within a year and a
    /// week.
    fn first_open(&self, from: DateTime) -> Option<DateTime> {
        let mut date = from.date();
        if self.open_on(date) && from.time() >= self.start && from.time() < self.end {
            return Some(from);
        }
        if from.time() >= self.start {
            date = date.tomorrow().ok()?;
        }
        for _ in 0..380 {
            if self.open_on(date) {
                return Some(date.to_datetime(self.start));
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn weekdays(zone: &str) -> SendWindow {
        SendWindow::parse("mon-fri", "09:00-17:00", zone, BTreeSet::new()).unwrap()
    }

    #[test]
    fn inside_the_window_a_step_goes_at_once() {
        let w = weekdays("Europe/Berlin");
        // Tuesday 2026-11-24 10:00 in Berlin (CET, UTC+1).
        let at = ts("2026-11-24T09:00:00Z");
        assert_eq!(w.next_opening(at), Some(at));
    }

    #[test]
    fn after_hours_and_weekends_wait_for_the_next_working_morning() {
        let w = weekdays("Europe/Berlin");
        // Tuesday 18:00 local → Wednesday 09:00 local.
        assert_eq!(
            w.next_opening(ts("2026-11-24T17:00:00Z")),
            Some(ts("2026-11-25T08:00:00Z"))
        );
        // Tuesday 07:30 local → the same morning at 09:00.
        assert_eq!(
            w.next_opening(ts("2026-11-24T06:30:00Z")),
            Some(ts("2026-11-24T08:00:00Z"))
        );
        // Friday 17:00 local (the end is exclusive) → Monday 09:00.
        assert_eq!(
            w.next_opening(ts("2026-11-27T16:00:00Z")),
            Some(ts("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn across_daylight_saving_changes_the_window_keeps_its_local_hours() {
        // Berlin falls back on Sunday 2026-10-25: Friday evening (CEST, UTC+2) waits for
        // Monday 09:00 CET, which is 08:00 UTC, not 07:00.
        let berlin = weekdays("Europe/Berlin");
        assert_eq!(
            berlin.next_opening(ts("2026-10-23T16:30:00Z")),
            Some(ts("2026-10-26T08:00:00Z"))
        );
        // Berlin springs forward on Sunday 2026-03-29: Monday 09:00 CEST is 07:00 UTC.
        assert_eq!(
            berlin.next_opening(ts("2026-03-27T17:00:00Z")),
            Some(ts("2026-03-30T07:00:00Z"))
        );
        // New York springs forward on Sunday 2026-03-08: Friday 17:00 EST waits for Monday
        // 09:00 EDT = 13:00 UTC (it would be 14:00 in winter).
        let new_york = weekdays("America/New_York");
        assert_eq!(
            new_york.next_opening(ts("2026-03-06T22:00:00Z")),
            Some(ts("2026-03-09T13:00:00Z"))
        );
        // And falls back on Sunday 2026-11-01: Monday 09:00 EST = 14:00 UTC.
        assert_eq!(
            new_york.next_opening(ts("2026-10-30T21:00:00Z")),
            Some(ts("2026-11-02T14:00:00Z"))
        );
    }

    /// Issue 23: a window is the hours the clock shows. On the night Berlin skips 02:00–03:00
    /// a window from 02:30 opens at 03:00 CEST (01:00 UTC), when the clock first shows a time
    /// inside it; a step due at 03:10 goes at once, as one waiting from the evening before
    /// goes at the opening. A window whose hours were all skipped stays shut that day; in the
    /// repeated hour the window is open both times.
    #[test]
    fn a_window_is_open_while_the_clock_shows_its_hours() {
        let window =
            |hours| SendWindow::parse("mon-sun", hours, "Europe/Berlin", BTreeSet::new()).unwrap();
        let night = window("02:30-04:00");
        assert_eq!(
            night.next_opening(ts("2026-03-28T22:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        let inside = ts("2026-03-29T01:10:00Z");
        assert_eq!(night.next_opening(inside), Some(inside));
        let skipped = window("02:00-02:45");
        assert_eq!(
            skipped.next_opening(ts("2026-03-28T22:00:00Z")),
            Some(ts("2026-03-30T00:00:00Z"))
        );
        // Berlin repeats 02:00–03:00 on 2026-10-25: open 00:00–00:30 and again 01:00–01:30 UTC.
        let repeated = window("02:00-02:30");
        let second = ts("2026-10-25T01:00:00Z");
        assert_eq!(
            repeated.next_opening(ts("2026-10-25T00:45:00Z")),
            Some(second)
        );
        assert_eq!(
            repeated.next_opening(ts("2026-10-25T01:10:00Z")),
            Some(ts("2026-10-25T01:10:00Z"))
        );
        assert_eq!(
            repeated.next_opening(ts("2026-10-25T01:30:00Z")),
            Some(ts("2026-10-26T01:00:00Z"))
        );
    }

    /// Against the definition checked minute by minute: the next opening is the first minute
    /// at which the clock in the zone shows an open day's hours. Around the 2026 changes of
    /// Berlin, New York and Lord Howe (which moves by half an hour).
    #[test]
    fn agrees_with_a_minute_by_minute_scan_across_changes() {
        let hours = [
            "02:30-04:00",
            "00:00-02:30",
            "02:00-02:30",
            "01:30-02:15",
            "09:00-17:00",
        ];
        let zones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"];
        for zone in zones {
            let tz = TimeZone::get(zone).unwrap();
            let changes: Vec<i64> = tz
                .following(jiff::Timestamp::from_millisecond(1_767_225_600_000).unwrap())
                .take(2)
                .map(|t| t.timestamp().as_millisecond())
                .collect();
            for hours in hours {
                for days in ["mon-sun", "mon-sat"] {
                    let w = SendWindow::parse(days, hours, zone, BTreeSet::new()).unwrap();
                    for change in &changes {
                        for minutes in (-30 * 60..30 * 60).step_by(37) {
                            let at = change + minutes * 60_000;
                            let mut t = at;
                            let want = loop {
                                let local = jiff::Timestamp::from_millisecond(t)
                                    .unwrap()
                                    .to_zoned_datetime(tz.clone())
                                    .datetime();
                                if w.open_on(local.date())
                                    && local.time() >= w.start
                                    && local.time() < w.end
                                {
                                    break t;
                                }
                                t += 60_000;
                            };
                            assert_eq!(
                                w.next_opening(Timestamp::from_millis(at)),
                                Some(Timestamp::from_millis(want)),
                                "{days} {hours} in {zone} from {}",
                                Timestamp::from_millis(at)
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_recipients_zone_moves_the_hours() {
        // A window written for Berlin, read for a recipient in New York: Tuesday 2026-11-24
        // 10:00 in Berlin is 04:00 in New York, so the email waits for 09:00 EST = 14:00 UTC.
        let w = weekdays("Europe/Berlin");
        let new_york = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            w.next_opening_in(ts("2026-11-24T09:00:00Z"), &new_york),
            Some(ts("2026-11-24T14:00:00Z"))
        );
    }

    #[test]
    fn holidays_are_skipped() {
        let christmas = [
            Date::new(2026, 12, 24).unwrap(),
            Date::new(2026, 12, 25).unwrap(),
        ];
        let w = SendWindow::parse(
            "mon-fri",
            "09:00-17:00",
            "Europe/Berlin",
            christmas.into_iter().collect(),
        )
        .unwrap();
        // Wednesday 23 December 17:30 → Monday 28 December 09:00.
        assert_eq!(
            w.next_opening(ts("2026-12-23T16:30:00Z")),
            Some(ts("2026-12-28T08:00:00Z"))
        );
        // Inside the hours on a holiday is still closed.
        assert_eq!(
            w.next_opening(ts("2026-12-24T10:00:00Z")),
            Some(ts("2026-12-28T08:00:00Z"))
        );
    }

    #[test]
    fn day_lists_ranges_and_mistakes() {
        let w = SendWindow::parse("mon,wed-thu", "08:30-12:00", "UTC", BTreeSet::new()).unwrap();
        assert_eq!(w.to_string(), "mon,wed,thu 08:30-12:00 UTC");
        // Tuesday 2026-11-24 → Wednesday 08:30.
        assert_eq!(
            w.next_opening(ts("2026-11-24T09:00:00Z")),
            Some(ts("2026-11-25T08:30:00Z"))
        );
        let bad =
            |days, hours, zone| SendWindow::parse(days, hours, zone, BTreeSet::new()).unwrap_err();
        assert!(bad("mon-fry", "09:00-17:00", "UTC").contains("\"fry\" is not a weekday"));
        assert!(bad("fri-mon", "09:00-17:00", "UTC").contains("runs backwards"));
        assert!(bad("mon", "9-17", "UTC").contains("not a span of hours"));
        assert!(bad("mon", "17:00-09:00", "UTC").contains("ends before it starts"));
        assert!(bad("mon", "09:00-17:00", "Mars/Olympus").contains("unknown time zone"));
    }

    #[test]
    fn a_window_with_no_open_day_has_no_opening() {
        let every_day: BTreeSet<Date> = (0..400)
            .map(|d| {
                Date::new(2026, 1, 1)
                    .unwrap()
                    .checked_add(jiff::Span::new().days(d))
                    .unwrap()
            })
            .collect();
        let w = SendWindow::parse("mon-sun", "09:00-17:00", "UTC", every_day).unwrap();
        assert_eq!(w.next_opening(ts("2026-01-01T00:00:00Z")), None);
    }
}
