//! Wall-clock time in a zone, walked in stretches of one offset from UTC. Inside a stretch the
//! wall clock runs evenly with real time, so "the first moment the clock shows such a time" is
//! found on the wall clock and converted with one offset; at a change of offset (daylight
//! saving, or a zone moving its standard time) the wall clock jumps, and the next stretch
//! begins. Cron schedules and send windows both search this way, so they agree on every
//! calendar edge.

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// A stretch of time in which a zone keeps one offset from UTC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stretch {
    /// The change of offset that began it; `None` when the zone has never changed before.
    pub began: Option<Timestamp>,
    pub offset: Offset,
    /// The next change, which ends it; `None` when the zone never changes again.
    pub end: Option<Timestamp>,
}

/// The stretches of `zone` from the one `at` lies in, in order.
pub(crate) fn stretches(zone: &TimeZone, at: Timestamp) -> impl Iterator<Item = Stretch> + '_ {
    // A change exactly at `at` begins the stretch `at` lies in; `preceding` only gives changes
    // strictly before the instant it is asked about.
    let just_after = at.checked_add(SignedDuration::from_nanos(1)).unwrap_or(at);
    let began = zone.preceding(just_after).next().map(|t| t.timestamp());
    let mut changes = zone.following(at);
    let mut current = Some((began, zone.to_offset(at)));
    std::iter::from_fn(move || {
        let (began, offset) = current.take()?;
        let next = changes.next();
        current = next.as_ref().map(|t| (Some(t.timestamp()), t.offset()));
        Some(Stretch {
            began,
            offset,
            end: next.map(|t| t.timestamp()),
        })
    })
}
