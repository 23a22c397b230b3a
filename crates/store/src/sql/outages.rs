//! The outage the store's writes are in, if any, and the two lines each one is logged with.
//!
//! A full disk or an unreachable database fails every write until it ends; logging each
//! failure would bury the one line that matters under one per request. So the first write
//! that fails with [`Error::Unavailable`] begins the outage (logged at error, with its cause),
//! later failures are only counted, and the next write that commits ends it (logged once, with
//! how long it lasted and how many writes were refused).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, Outage};

#[derive(Debug, Default)]
pub(crate) struct Outages {
    current: Mutex<Option<Current>>,
}

#[derive(Debug)]
struct Current {
    outage: Outage,
    since: Instant,
    refused: u64,
}

impl Outages {
    pub(crate) fn current(&self) -> Option<Outage> {
        self.lock().as_ref().map(|c| c.outage)
    }

    /// Notes what a write came to: an outage's error begins one (or counts a refusal in it).
    pub(crate) fn failed(&self, error: &Error) {
        let Some(outage) = error.outage() else {
            return;
        };
        let mut current = self.lock();
        match &mut *current {
            Some(c) if c.outage == outage => c.refused += 1,
            _ => {
                if let Some(c) = current.take() {
                    ended(&c);
                }
                let mut cause = String::new();
                let mut source = std::error::Error::source(error);
                while let Some(s) = source {
                    cause.push_str(&format!(": {s}"));
                    source = s.source();
                }
                tracing::error!(
                    outage = outage.as_str(),
                    "the store cannot write, {outage}{cause}; writes are answered 503 until it can"
                );
                metrics::gauge!("pipewright_store_outage", "cause" => outage.as_str()).set(1.0);
                *current = Some(Current {
                    outage,
                    since: Instant::now(),
                    refused: 1,
                });
            }
        }
    }

    /// A write committed: the outage, if any, has ended.
    pub(crate) fn wrote(&self) {
        if let Some(c) = self.lock().take() {
            ended(&c);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn ended(c: &Current) {
    let refused = match c.refused {
        1 => "1 write was".to_owned(),
        n => format!("{n} writes were"),
    };
    tracing::warn!(
        outage = c.outage.as_str(),
        "the store can write again; the outage ({}) lasted {}, and {refused} refused",
        c.outage,
        in_words(c.since.elapsed())
    );
    metrics::gauge!("pipewright_store_outage", "cause" => c.outage.as_str()).set(0.0);
}

/// A duration as people say it: "40 seconds", "3 minutes", "2 hours".
fn in_words(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0..120 => (s, "second"),
        120..7200 => (s / 60, "minute"),
        _ => (s / 3600, "hour"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(outage: Outage) -> Error {
        Error::Unavailable {
            outage,
            source: "no room".into(),
        }
    }

    #[test]
    fn an_outage_begins_with_the_first_failure_and_ends_with_the_next_write() {
        let o = Outages::default();
        o.failed(&Error::Closed);
        assert_eq!(o.current(), None);
        o.failed(&unavailable(Outage::DiskFull));
        o.failed(&unavailable(Outage::DiskFull));
        assert_eq!(o.current(), Some(Outage::DiskFull));
        assert_eq!(o.lock().as_ref().map(|c| c.refused), Some(2));
        o.failed(&unavailable(Outage::Unreachable));
        assert_eq!(o.current(), Some(Outage::Unreachable));
        o.wrote();
        assert_eq!(o.current(), None);
    }

    #[test]
    fn durations_read_as_words() {
        assert_eq!(in_words(Duration::from_secs(1)), "1 second");
        assert_eq!(in_words(Duration::from_secs(119)), "119 seconds");
        assert_eq!(in_words(Duration::from_secs(180)), "3 minutes");
        assert_eq!(in_words(Duration::from_secs(7300)), "2 hours");
    }
}
