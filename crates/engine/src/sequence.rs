//! Enrolments: one contact going through one sequence, as a state machine. Pure like the rest
//! of the engine — the caller supplies the sequence (the version the enrolment is pinned to),
//! the events and `now`, and delivers the steps it returns.
//!
//! A step runs when it is due. An email due outside the sequence's send window waits for the
//! next opening; every later wait counts from when the step before it actually ran, so the
//! cadence shifts with it rather than bunching up. A paused enrolment runs nothing; on resume
//! its next step is due at once (or at the next opening) and the ones after keep their spacing,
//! so a long pause never releases a burst of catch-up messages.

use serde::{Deserialize, Serialize};

use domain::{Event, EventBody, Timestamp};
use playbook::{Engagement, Exit, Schedule, Sequence, StepKind, Target, TaskKind, Wait};

/// Where an enrolment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Active,
    Paused { since: Timestamp },
    Ended { reason: Ended, at: Timestamp },
}

impl Status {
    /// As stored and reported: `active`, `paused` or `ended`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused { .. } => "paused",
            Status::Ended { .. } => "ended",
        }
    }
}

/// Why an enrolment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// Every step ran.
    Completed,
    /// The goal became true.
    Goal,
    /// An exit event (a reply, a meeting, a stage change, an unsubscribe, a bounce).
    Exit(Exit),
    /// Stopped by a rule (`stop_sequence`) or by hand.
    Stopped,
    /// Someone else at the contact's account replied (`account_wide_exit`).
    AccountReply,
    /// The contact cannot be emailed at all any more.
    Refused(Refusal),
    /// The sequence is in neither the version the enrolment was pinned to nor the running
    /// playbooks.
    SequenceRemoved,
}

impl Ended {
    /// As stored and reported: `completed`, `goal`, `reply`, `do_not_contact`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Completed => "completed",
            Ended::Goal => "goal",
            Ended::Exit(exit) => exit.as_str(),
            Ended::Stopped => "stopped",
            Ended::AccountReply => "account_reply",
            Ended::Refused(refusal) => refusal.as_str(),
            Ended::SequenceRemoved => "sequence_removed",
        }
    }
}

/// Why an email may never go to a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// On the do-not-contact list (the address or its domain).
    DoNotContact,
    Unsubscribed,
    /// An earlier email to the address bounced.
    Bounced,
    /// The contact has no email address.
    NoAddress,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::DoNotContact => "do_not_contact",
            Refusal::Unsubscribed => "unsubscribed",
            Refusal::Bounced => "bounced",
            Refusal::NoAddress => "no_address",
        }
    }
}

/// What the sending etiquette says of an email a step is about to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not now (a frequency cap or a sender's throttle): the step waits until then, and the
    /// steps after it shift with it.
    Hold {
        until: Timestamp,
    },
    /// Never: the enrolment ends.
    Refuse(Refusal),
}

/// One contact in one sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    pub sequence: String,
    /// The playbook version it started on: it runs that version's steps to the end.
    pub version: String,
    /// The contact the emails go to.
    pub contact: String,
    /// The index of the next step to run.
    pub step: usize,
    /// When that step is due.
    pub due: Timestamp,
    pub status: Status,
    pub started_at: Timestamp,
    /// Engagement with the emails sent so far.
    pub opened: bool,
    pub clicked: bool,
    pub replied: bool,
    /// When the contact first replied (a human reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<Timestamp>,
    pub emails_sent: u32,
}

/// What a step asks to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    Email {
        step: String,
        template: String,
    },
    Task {
        step: String,
        assignee: Target,
        title: String,
        kind: TaskKind,
        due: Option<Timestamp>,
    },
}

/// Steps run in one call at most: a sequence of branches and sends with no wait between them
/// is bounded by its length, and this bound only guards against a malformed one.
const MAX_STEPS_PER_ADVANCE: usize = 1_000;

impl Enrolment {
    /// Enrols `contact` now; the first step is due at once.
    pub fn start(sequence: &Sequence, version: &str, contact: &str, now: Timestamp) -> Self {
        Self {
            sequence: sequence.name.clone(),
            version: version.to_owned(),
            contact: contact.to_owned(),
            step: 0,
            due: now,
            status: Status::Active,
            started_at: now,
            opened: false,
            clicked: false,
            replied: false,
            replied_at: None,
            emails_sent: 0,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Ends it (once: a later reason does not replace the first).
    pub fn end(&mut self, reason: Ended, at: Timestamp) {
        if !matches!(self.status, Status::Ended { .. }) {
            self.status = Status::Ended { reason, at };
        }
    }

    /// Runs the steps due at `now`, until a wait (or the end). `goal_met` is whether the
    /// sequence's goal holds for the record now; `contact_zone` the contact's IANA time zone,
    /// when known: the send window's hours and `wait: until` are read in it (in the window's
    /// zone otherwise). Returns what to deliver. Every email may go: see
    /// [`Enrolment::advance_with`] for the sending etiquette.
    pub fn advance(
        &mut self,
        sequence: &Sequence,
        goal_met: bool,
        contact_zone: Option<&str>,
        now: Timestamp,
    ) -> Vec<StepAction> {
        self.advance_with(sequence, goal_met, contact_zone, now, &mut |_| {
            Verdict::Send
        })
    }

    /// [`Enrolment::advance`], asking `etiquette` about every email before it is sent: held,
    /// the step waits (it has not run, and runs when the hold ends); refused, the enrolment
    /// ends with the refusal as its reason.
    pub fn advance_with(
        &mut self,
        sequence: &Sequence,
        goal_met: bool,
        contact_zone: Option<&str>,
        now: Timestamp,
        etiquette: &mut dyn FnMut(&StepAction) -> Verdict,
    ) -> Vec<StepAction> {
        let zone = zone_of(sequence, contact_zone);
        let mut out = Vec::new();
        if !self.is_active() || self.due > now {
            return out;
        }
        if goal_met {
            self.end(Ended::Goal, now);
            return out;
        }
        for _ in 0..MAX_STEPS_PER_ADVANCE {
            let Some(step) = sequence.steps.get(self.step) else {
                self.end(Ended::Completed, now);
                return out;
            };
            match &step.kind {
                StepKind::Email { .. } => {
                    if let Some(window) = &sequence.window {
                        let opening = window.next_opening_in(now, &zone);
                        if opening != Some(now) {
                            // Outside the window: wait for it (or forever, if it never opens).
                            self.due = opening.unwrap_or(Timestamp::from_millis(i64::MAX));
                            return out;
                        }
                    }
                    let template = sequence
                        .template_for(step, &self.contact)
                        .unwrap_or_default()
                        .to_owned();
                    let email = StepAction::Email {
                        step: step.id.clone(),
                        template,
                    };
                    match etiquette(&email) {
                        Verdict::Send => {}
                        Verdict::Hold { until } => {
                            self.due = until.max(Timestamp::from_millis(now.as_millis() + 1));
                            return out;
                        }
                        Verdict::Refuse(refusal) => {
                            self.end(Ended::Refused(refusal), now);
                            return out;
                        }
                    }
                    out.push(email);
                    self.emails_sent += 1;
                    self.step += 1;
                }
                StepKind::Task {
                    assignee,
                    title,
                    kind,
                    due,
                } => {
                    out.push(StepAction::Task {
                        step: step.id.clone(),
                        assignee: assignee.clone(),
                        title: title.clone(),
                        kind: *kind,
                        due: due.map(|d| Timestamp::from_millis(now.as_millis() + d.0)),
                    });
                    self.step += 1;
                }
                StepKind::Wait(wait) => {
                    self.step += 1;
                    self.due = match wait {
                        Wait::For(span) => Timestamp::from_millis(now.as_millis() + span.0),
                        // The same wall-clock rule as a cron schedule's: a skipped time an
                        // hour later, a repeated one the first time.
                        Wait::Until { weekday, time } => Schedule::at(
                            *weekday,
                            time.unwrap_or(jiff::civil::Time::midnight()),
                            zone.clone(),
                        )
                        .next_after(now)
                        .unwrap_or(now),
                    };
                    if self.due > now {
                        return out;
                    }
                }
                StepKind::Branch { on, goto } => {
                    let holds = match on {
                        Engagement::Opened => self.opened,
                        Engagement::Clicked => self.clicked,
                        Engagement::Replied => self.replied,
                        Engagement::NoReply => !self.replied,
                    };
                    self.step = if holds { *goto } else { self.step + 1 };
                }
            }
        }
        out
    }

    /// Takes an event concerning the enrolment's record into account: engagement, and the
    /// exits the sequence stops on. Automatic replies (out of office) neither stop it nor
    /// count as a reply; a bounce is an exit of its own. Returns the reason if it ended.
    pub fn on_event(
        &mut self,
        sequence: &Sequence,
        event: &Event,
        now: Timestamp,
    ) -> Option<Ended> {
        if matches!(self.status, Status::Ended { .. }) {
            return None;
        }
        let exit = match &event.body {
            EventBody::EmailOpened(_) => {
                self.opened = true;
                None
            }
            EventBody::LinkClicked(_) => {
                self.clicked = true;
                None
            }
            EventBody::EmailReceived(e) if e.is_bounce() => Some(Exit::Bounce),
            EventBody::EmailReceived(e) if e.is_automatic() => None,
            EventBody::EmailReceived(_) => {
                self.replied = true;
                self.replied_at.get_or_insert(event.occurred_at);
                Some(Exit::Reply)
            }
            EventBody::MeetingBooked(_) => Some(Exit::Meeting),
            EventBody::ContactUnsubscribed(_) => Some(Exit::Unsubscribe),
            EventBody::DealStageChanged(_) => Some(Exit::StageChange),
            _ => None,
        }?;
        // An unsubscribe or a bounce always ends it: nothing more may (or can) be sent.
        if !sequence.exits.contains(&exit) && !matches!(exit, Exit::Unsubscribe | Exit::Bounce) {
            return None;
        }
        self.end(Ended::Exit(exit), now);
        Some(Ended::Exit(exit))
    }

    /// Stops it (a rule's `stop_sequence`, or by hand).
    pub fn stop(&mut self, now: Timestamp) {
        self.end(Ended::Stopped, now);
    }

    pub fn pause(&mut self, now: Timestamp) {
        if self.is_active() {
            self.status = Status::Paused { since: now };
        }
    }

    /// Resumes a paused enrolment: a step that fell due meanwhile is due now — one step, not
    /// every one missed — and the waits after it count from when it runs.
    pub fn resume(&mut self, now: Timestamp) {
        if let Status::Paused { .. } = self.status {
            self.status = Status::Active;
            if self.due < now {
                self.due = now;
            }
        }
    }
}

/// The zone a contact's steps are timed in: the contact's own when it names a known zone, the
/// window's otherwise, UTC without either.
fn zone_of(sequence: &Sequence, contact_zone: Option<&str>) -> jiff::tz::TimeZone {
    contact_zone
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .or_else(|| sequence.window.as_ref().map(|w| w.zone().clone()))
        .unwrap_or(jiff::tz::TimeZone::UTC)
}
