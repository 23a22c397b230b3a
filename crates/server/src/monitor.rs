//! The silent-failure monitor: what tells people when the automation itself stops working.
//!
//! Each pass reads a few numbers from the store and this node's loops and judges them here, in
//! pure functions: a rule that used to fire regularly and has been silent for much longer than
//! usual, a channel most of whose recent deliveries failed, effects given up on (dead letters),
//! a storm holding a rule's effects, a background loop that stopped. Each condition is one
//! alarm (`Store::sync_alarms`: raised once, refreshed while it lasts, resolved with the reason
//! when it clears) and a metric. The monitor decides nothing about deals and sends nothing: the
//! inbox, the API and `pipewright alarms` show what it raised.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clock::Clock;
use domain::Timestamp;
use store::{
    AlarmKind, AlarmQuery, AlarmSync, AlarmsSynced, ChannelAttempts, DeadLetters, NewAlarm,
    RuleFirings, Store, Storm, StormQuery,
};

use crate::AppState;
use crate::health::{Health, LoopHealth, loop_in_words};
use crate::storms::{count, when};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// When a condition becomes an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A rule is judged once it has fired on this many days: fewer say nothing of its rate.
    pub rule_min_days: u64,
    /// A rule is silent when it has not fired for this many times its typical gap …
    pub rule_silence_factor: i64,
    /// … and for at least this long (milliseconds).
    pub rule_min_silence_ms: i64,
    /// The recent deliveries a channel is judged on (milliseconds).
    pub channel_window_ms: i64,
    /// A channel is failing when at least this many of them failed, and at least half.
    pub channel_min_failures: u64,
    /// A loop's alarm resolves once it has run this long without stopping (milliseconds).
    pub loop_quiet_ms: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            rule_min_days: 5,
            rule_silence_factor: 4,
            rule_min_silence_ms: DAY,
            channel_window_ms: 15 * MINUTE,
            channel_min_failures: 5,
            loop_quiet_ms: HOUR,
        }
    }
}

/// A length of time in words, rounded: "16 days", "5 hours", "15 minutes".
pub fn duration_in_words(ms: i64) -> String {
    let round = |unit: i64| ((ms + unit / 2) / unit).max(1) as u64;
    if ms >= 2 * DAY {
        count(round(DAY), "day", "days")
    } else if ms >= 2 * HOUR {
        count(round(HOUR), "hour", "hours")
    } else if ms >= HOUR {
        "1 hour".into()
    } else {
        count(round(MINUTE), "minute", "minutes")
    }
}

/// How often, in words: "every 3 days", "every day".
fn every(ms: i64) -> String {
    match (ms + DAY / 2) / DAY {
        0 | 1 => "every day".into(),
        days => format!("every {days} days"),
    }
}

/// Rules of the running set that fired on enough days to have a rate and have been silent for
/// longer than `factor` times their typical gap (and the minimum): "stuck-in-legal used to fire
/// about every 3 days and has not fired for 16 days". Resolves when the rule fires again, or
/// leaves the running playbooks.
pub fn silent_rules(
    firings: &[RuleFirings],
    running: &BTreeSet<String>,
    now: Timestamp,
    t: &Thresholds,
) -> AlarmSync {
    let mut current = Vec::new();
    let mut sync = AlarmSync::new(AlarmKind::RuleSilent, Vec::new(), "the rule fired again");
    for f in firings {
        if !running.contains(&f.rule) {
            sync.cleared_because.insert(
                f.rule.clone(),
                "the rule is no longer in the running playbooks".into(),
            );
            continue;
        }
        if f.days < t.rule_min_days.max(2) {
            continue;
        }
        // The typical gap between firing days, not firings: a schedule acting on fifty records
        // at once is one firing, and a rule that rests every weekend is not silent on Sunday.
        let gap = (f.last.as_millis() - f.first.as_millis()) / (f.days as i64 - 1);
        let limit = (t.rule_silence_factor * gap).max(t.rule_min_silence_ms);
        let silent = now.as_millis() - f.last.as_millis();
        if silent <= limit {
            continue;
        }
        current.push(NewAlarm {
            subject: f.rule.clone(),
            title: format!(
                "{} used to fire about {} and has not fired for {}",
                f.rule,
                every(gap),
                duration_in_words(silent)
            ),
            detail: serde_json::json!({
                "rule": f.rule,
                "firing_days": f.days,
                "effects": f.effects,
                "first": f.first,
                "last": f.last,
                "typical_gap_ms": gap,
                "silent_ms": silent,
                "threshold_ms": limit,
            }),
        });
    }
    sync.current = current;
    sync
}

/// Channels most of whose recent deliveries failed: at least the minimum of failures, and at
/// least half of the attempts. A channel already alarmed stays so while its latest attempt
/// failed or this node's breaker has it paused, so a channel the breaker probes only now and
/// then does not resolve and reopen; it resolves once its deliveries succeed again (or nothing
/// was attempted and it is not paused).
pub fn failing_channels(
    attempts: &[ChannelAttempts],
    alarmed: &BTreeSet<String>,
    paused: &[(String, Timestamp)],
    t: &Thresholds,
) -> AlarmSync {
    let window = duration_in_words(t.channel_window_ms);
    let mut sync = AlarmSync::new(
        AlarmKind::ChannelFailing,
        Vec::new(),
        format!("nothing was attempted on it in the last {window} and it is not paused"),
    );
    let seen: BTreeMap<&str, &ChannelAttempts> =
        attempts.iter().map(|a| (a.channel.as_str(), a)).collect();
    let paused: BTreeMap<&str, Timestamp> = paused.iter().map(|(c, t)| (c.as_str(), *t)).collect();
    let channels: BTreeSet<&str> = seen
        .keys()
        .copied()
        .chain(alarmed.iter().map(String::as_str))
        .collect();
    for channel in channels {
        let a = seen.get(channel);
        let (n, failed) = a.map_or((0, 0), |a| (a.attempts, a.failures));
        let raise = failed >= t.channel_min_failures && 2 * failed >= n;
        let until = paused.get(channel).copied();
        let keep =
            alarmed.contains(channel) && (a.is_some_and(|a| a.failing_last()) || until.is_some());
        if !(raise || keep) {
            if a.is_some_and(|a| a.last_success.is_some()) {
                sync.cleared_because
                    .insert(channel.to_owned(), "deliveries to it succeed again".into());
            }
            continue;
        }
        let mut title = if n > 0 {
            format!("{channel}: {failed} of {n} deliveries failed in the last {window}")
        } else {
            format!("{channel}: nothing was attempted in the last {window}")
        };
        if let Some(until) = until {
            title.push_str(&format!("; paused until {}", when(until)));
        }
        if let Some(said) = a.and_then(|a| a.last_error.as_deref()) {
            title.push_str(&format!("; the last failure: {said}"));
        }
        sync.current.push(NewAlarm {
            subject: channel.to_owned(),
            title,
            detail: serde_json::json!({
                "channel": channel,
                "window_ms": t.channel_window_ms,
                "attempts": n,
                "failures": failed,
                "last_failure": a.and_then(|a| a.last_failure),
                "last_success": a.and_then(|a| a.last_success),
                "last_error": a.and_then(|a| a.last_error.clone()),
                "paused_until": until,
            }),
        });
    }
    sync
}

/// Effects given up on, as one alarm while any remain.
pub fn dead_letters(dead: &DeadLetters) -> AlarmSync {
    let mut current = Vec::new();
    if dead.count > 0 {
        let channels: Vec<String> = dead
            .by_channel
            .iter()
            .map(|(c, n)| format!("{n} to {c}"))
            .collect();
        let mut title = format!(
            "{} could not be delivered ({})",
            count(dead.count, "effect", "effects"),
            channels.join(", ")
        );
        if let Some(oldest) = dead.oldest {
            title.push_str(&format!("; the oldest since {}", when(oldest)));
        }
        title.push_str(". Retry or cancel them in the outbox.");
        current.push(NewAlarm {
            subject: "outbox".into(),
            title,
            detail: serde_json::json!({
                "count": dead.count,
                "by_channel": dead.by_channel,
                "oldest": dead.oldest,
            }),
        });
    }
    AlarmSync::new(
        AlarmKind::DeadLetters,
        current,
        "no effect waits undelivered any more: they were retried or cancelled",
    )
}

/// Each storm holding a rule's effects, pointing at it: the storm stays the thing to approve
/// or discard.
pub fn storms_held(holding: &[Storm]) -> Vec<NewAlarm> {
    holding
        .iter()
        .filter(|s| s.is_holding())
        .map(|s| {
            let since = when(s.holding_since.unwrap_or(s.since));
            let title = if s.held > 0 {
                format!(
                    "{} is held by the storm guard: {} wait for approval since {since}",
                    s.rule,
                    count(s.held, "effect", "effects")
                )
            } else {
                format!(
                    "{} is held by the storm guard since {since}: its effects will wait for approval",
                    s.rule
                )
            };
            NewAlarm {
                subject: s.id.clone(),
                title,
                detail: serde_json::json!({
                    "storm": s.id,
                    "rule": s.rule,
                    "playbook": s.playbook,
                    "owner": s.owner,
                    "held": s.held,
                    "holding_since": s.holding_since,
                }),
            }
        })
        .collect()
}

/// What became of a storm that no longer holds, in words.
fn storm_decided(s: &Storm) -> String {
    match (s.status.as_str(), s.decided_by.as_deref()) {
        ("approved", Some(by)) => format!("the storm was approved by {by}"),
        ("discarded", Some(by)) => format!("the storm was discarded by {by}"),
        (status, _) => format!("the storm is {status}"),
    }
}

/// Loops of this node that stopped since the last pass (`since`; any stop on the first), or
/// stopped and are not running again yet. (A loop that never started is readiness's matter.)
pub fn restarted_loops(
    loops: &[LoopHealth],
    since: Option<Timestamp>,
    node: &str,
) -> Vec<NewAlarm> {
    loops
        .iter()
        .filter(|l| {
            l.stopped_at
                .is_some_and(|at| !l.running || since.is_none_or(|s| at > s))
        })
        .map(|l| {
            let cause = l.cause.as_deref().unwrap_or("for no known reason");
            let what = loop_in_words(&l.name);
            let mut title = format!(
                "{}{} stopped ({cause})",
                what[..1].to_uppercase(),
                &what[1..]
            );
            if l.running {
                title.push_str(&format!(
                    " and was restarted; {} since the node started",
                    count(l.restarts, "restart", "restarts")
                ));
            } else {
                title.push_str("; it is restarted shortly");
            }
            NewAlarm {
                subject: l.name.clone(),
                title,
                detail: serde_json::json!({
                    "loop": l.name,
                    "node": node,
                    "running": l.running,
                    "restarts": l.restarts,
                    "stopped_at": l.stopped_at,
                    "cause": l.cause,
                }),
            }
        })
        .collect()
}

/// The monitor of one node.
#[derive(Debug)]
pub struct Monitor {
    store: Arc<dyn Store>,
    health: Arc<Health>,
    dispatcher: Option<Arc<delivery::Dispatcher>>,
    node: String,
    thresholds: Thresholds,
    /// When the last pass ran: loops that stopped since are raised.
    last_pass: Mutex<Option<Timestamp>>,
}

impl Monitor {
    pub fn new(state: &AppState, thresholds: Thresholds) -> Self {
        Self {
            store: Arc::clone(&state.store),
            health: Arc::clone(&state.health),
            dispatcher: state.dispatcher.clone(),
            node: state.node.clone(),
            thresholds,
            last_pass: Mutex::new(None),
        }
    }

    /// One pass at `now`: reads, judges, and brings the alarms in line.
    ///
    /// # Errors
    /// The store failing to read or write; nothing is changed then.
    pub async fn pass(&self, now: Timestamp) -> store::Result<AlarmsSynced> {
        let t = &self.thresholds;
        let store = &*self.store;
        let running: BTreeSet<String> = store
            .engine()
            .map(|e| e.rules().map(|(_, r)| r.id.clone()).collect())
            .unwrap_or_default();
        let rules = silent_rules(&store.rule_firings().await?, &running, now, t);

        let unresolved = store
            .alarms(&AlarmQuery {
                status: Some("unresolved".into()),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let alarmed = |kind: AlarmKind| -> BTreeSet<String> {
            unresolved
                .iter()
                .filter(|a| a.kind == kind)
                .map(|a| a.subject.clone())
                .collect()
        };
        let since = Timestamp::from_millis(now.as_millis() - t.channel_window_ms);
        let paused = self
            .dispatcher
            .as_ref()
            .map(|d| d.paused())
            .unwrap_or_default();
        let channels = failing_channels(
            &store.channel_attempts(since).await?,
            &alarmed(AlarmKind::ChannelFailing),
            &paused,
            t,
        );

        let dead = store.dead_letters().await?;
        metrics::gauge!("pipewright_dead_letters").set(dead.count as f64);
        let dead = dead_letters(&dead);

        let holding = store
            .storms(
                &StormQuery {
                    status: Some("holding".into()),
                    limit: 1000,
                },
                now,
            )
            .await?;
        let mut storms = AlarmSync::new(
            AlarmKind::StormHeld,
            storms_held(&holding),
            "the storm was decided",
        );
        for id in alarmed(AlarmKind::StormHeld) {
            if !holding.iter().any(|s| s.id == id)
                && let Some(s) = store.storm(&id, now).await?
            {
                storms.cleared_because.insert(id, storm_decided(&s));
            }
        }

        let previous = self
            .last_pass
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(now);
        let mut loops = AlarmSync::new(
            AlarmKind::LoopRestarted,
            restarted_loops(&self.health.loops(), previous, &self.node),
            format!(
                "it has run for {} without stopping",
                duration_in_words(t.loop_quiet_ms)
            ),
        );
        loops.quiet_ms = t.loop_quiet_ms;

        let synced = store
            .sync_alarms(vec![rules, channels, dead, storms, loops], now)
            .await?;
        for a in &synced.opened {
            tracing::warn!(kind = a.kind.as_str(), title = %a.title, "alarm raised");
        }
        for a in &synced.resolved {
            tracing::info!(
                kind = a.kind.as_str(),
                title = %a.title,
                resolution = a.resolution.as_deref().unwrap_or_default(),
                "alarm resolved"
            );
        }
        for kind in AlarmKind::ALL {
            for status in ["open", "acknowledged"] {
                let n = synced
                    .unresolved
                    .iter()
                    .find(|(k, s, _)| *k == kind && s == status)
                    .map_or(0, |(_, _, n)| *n);
                metrics::gauge!("pipewright_alarms", "kind" => kind.as_str(), "status" => status)
                    .set(n as f64);
            }
        }
        Ok(synced)
    }

    /// Passes every `every`, forever; a failed pass is logged and the next one tries again.
    pub async fn run(self: Arc<Self>, clock: Arc<dyn Clock>, every: Duration) {
        loop {
            if let Err(e) = self.pass(clock.now()).await {
                tracing::error!(error = ?e, "the monitor's pass failed; will retry");
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_in_words(16 * DAY + 3 * HOUR), "16 days");
        assert_eq!(duration_in_words(2 * DAY - 1), "48 hours");
        assert_eq!(duration_in_words(5 * HOUR), "5 hours");
        assert_eq!(duration_in_words(HOUR + 10 * MINUTE), "1 hour");
        assert_eq!(duration_in_words(15 * MINUTE), "15 minutes");
        assert_eq!(duration_in_words(20_000), "1 minute");
        assert_eq!(every(3 * DAY + 2 * HOUR), "every 3 days");
        assert_eq!(every(20 * HOUR), "every day");
    }

    fn firings(rule: &str, days: u64, first: &str, last: &str) -> RuleFirings {
        RuleFirings {
            rule: rule.into(),
            effects: days * 2,
            days,
            first: ts(first),
            last: ts(last),
        }
    }

    /// Issue 23: a rule is silent past four of its typical gaps (at least a day); too little
    /// history says nothing; a rule no longer running is resolved with that reason.
    #[test]
    fn a_rule_is_silent_past_four_of_its_gaps() {
        let t = Thresholds::default();
        let running: BTreeSet<String> = ["stuck-in-legal", "new-rule"]
            .into_iter()
            .map(String::from)
            .collect();
        // Five days, 3 days apart: 1, 4, 7, 10, 13 November; silent past 12 days after the
        // 13th.
        let history = [
            firings(
                "stuck-in-legal",
                5,
                "2026-11-01T09:00:00Z",
                "2026-11-13T09:00:00Z",
            ),
            firings(
                "new-rule",
                4,
                "2026-11-01T09:00:00Z",
                "2026-11-04T09:00:00Z",
            ),
            firings("removed", 9, "2026-10-01T09:00:00Z", "2026-10-09T09:00:00Z"),
        ];
        let judge = |now: &str| silent_rules(&history, &running, ts(now), &t);
        assert!(judge("2026-11-25T09:00:00Z").current.is_empty());
        let sync = judge("2026-11-29T10:00:00Z");
        assert_eq!(sync.current.len(), 1);
        assert_eq!(
            sync.current[0].title,
            "stuck-in-legal used to fire about every 3 days and has not fired for 16 days"
        );
        assert_eq!(
            sync.cleared_because.get("removed").map(String::as_str),
            Some("the rule is no longer in the running playbooks")
        );
    }

    /// Issue 23: a channel is failing with five failures that are at least half of its
    /// attempts; once alarmed it stays so while its latest attempt failed or it is paused.
    #[test]
    fn a_channel_fails_past_five_failures_and_half_its_attempts() {
        let t = Thresholds::default();
        let attempts = |n, failed, failing_last: bool| ChannelAttempts {
            channel: "webhook:crm.acme.example".into(),
            attempts: n,
            failures: failed,
            last_failure: Some(ts("2026-11-20T12:00:02Z")),
            last_success: Some(ts(if failing_last {
                "2026-11-20T12:00:01Z"
            } else {
                "2026-11-20T12:00:03Z"
            })),
            last_error: Some("503 Service Unavailable".into()),
        };
        let none = BTreeSet::new();
        let alarmed: BTreeSet<String> = ["webhook:crm.acme.example".to_owned()].into();
        let judge =
            |a: ChannelAttempts, alarmed: &BTreeSet<String>, paused: &[(String, Timestamp)]| {
                failing_channels(&[a], alarmed, paused, &t).current
            };
        let failing = judge(attempts(14, 12, true), &none, &[]);
        assert_eq!(
            failing[0].title,
            "webhook:crm.acme.example: 12 of 14 deliveries failed in the last 15 minutes; the last failure: 503 Service Unavailable"
        );
        assert!(judge(attempts(14, 4, true), &none, &[]).is_empty());
        assert!(judge(attempts(14, 6, true), &none, &[]).is_empty());
        // Alarmed: kept while the latest failed, resolved once one succeeded after.
        assert_eq!(judge(attempts(30, 6, true), &alarmed, &[]).len(), 1);
        let recovered = failing_channels(&[attempts(30, 6, false)], &alarmed, &[], &t);
        assert!(recovered.current.is_empty());
        assert_eq!(
            recovered.cleared_because["webhook:crm.acme.example"],
            "deliveries to it succeed again"
        );
        // Paused by the breaker with nothing attempted lately: still failing.
        let paused = [(
            "webhook:crm.acme.example".to_owned(),
            ts("2026-11-20T12:10:00Z"),
        )];
        let quiet = failing_channels(&[], &alarmed, &paused, &t).current;
        assert_eq!(
            quiet[0].title,
            "webhook:crm.acme.example: nothing was attempted in the last 15 minutes; paused until 2026-11-20 12:10 UTC"
        );
    }

    #[test]
    fn dead_letters_are_one_alarm_in_words() {
        let dead = DeadLetters {
            count: 7,
            by_channel: vec![("webhook:crm.acme.example".into(), 5), ("email".into(), 2)],
            oldest: Some(ts("2026-11-17T09:30:00Z")),
        };
        let sync = dead_letters(&dead);
        assert_eq!(
            sync.current[0].title,
            "7 effects could not be delivered (5 to webhook:crm.acme.example, 2 to email); the oldest since 2026-11-17 09:30 UTC. Retry or cancel them in the outbox."
        );
        assert!(dead_letters(&DeadLetters::default()).current.is_empty());
    }

    #[test]
    fn a_loop_that_stopped_since_the_last_pass_is_raised() {
        let stopped = LoopHealth {
            name: "timers".into(),
            required: true,
            running: true,
            restarts: 2,
            stopped_at: Some(ts("2026-11-20T12:00:30Z")),
            cause: Some("it panicked: boom".into()),
        };
        let stopped = [stopped];
        let raised = restarted_loops(&stopped, None, "node-a");
        assert_eq!(
            raised[0].title,
            "The timer loop stopped (it panicked: boom) and was restarted; 2 restarts since the node started"
        );
        let since = |at: &str| restarted_loops(&stopped, Some(ts(at)), "node-a").len();
        assert_eq!(since("2026-11-20T12:00:00Z"), 1);
        assert_eq!(since("2026-11-20T12:01:00Z"), 0);
        // Never started: readiness says so; it has not stopped.
        let waiting = LoopHealth {
            running: false,
            restarts: 0,
            stopped_at: None,
            cause: None,
            ..stopped[0].clone()
        };
        assert!(restarted_loops(&[waiting], None, "node-a").is_empty());
    }
}
