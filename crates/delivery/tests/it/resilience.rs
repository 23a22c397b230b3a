//! Failures: retries with backoff, timeouts, permanent refusals, dead letters, the circuit
//! breaker and rate limits — all in virtual time.

use std::time::Duration;

use testkit::{Receiver, SmtpServer};

use crate::{Backend, ingest, note, rule, setup};

fn webhook(receiver: &Receiver, path: &str) -> String {
    rule(&format!(
        "      - webhook: {{ url: \"{}\" }}\n",
        receiver.url(path)
    ))
}

async fn a_flaky_receiver_is_retried_with_backoff_until_it_answers(backend: Backend) {
    let receiver = Receiver::start().await;
    let s = setup(backend, &webhook(&receiver, "/flaky/x"), |_| {}).await;
    ingest(&*s.store, &note(1)).await;
    let start = clock::Clock::now(&s.clock).as_millis();
    assert_eq!(s.dispatcher.run_once().await.unwrap().retried, 1);
    let e = &s.store.effects(None, 1).await.unwrap()[0];
    assert_eq!((e.status.as_str(), e.attempts), ("pending", 1));
    let wait = e.next_at.as_millis() - start;
    // Base 1 s, equal jitter: between 0.5 and 1 s.
    assert!((500..=1000).contains(&wait), "{wait}");
    assert_eq!(
        s.dispatcher.run_once().await.unwrap().claimed,
        0,
        "not due yet"
    );
    s.clock.set(e.next_at);
    assert_eq!(s.dispatcher.run_once().await.unwrap().retried, 1);
    let e = &s.store.effects(None, 1).await.unwrap()[0];
    let wait = e.next_at.as_millis() - clock::Clock::now(&s.clock).as_millis();
    assert!(
        (1000..=2000).contains(&wait),
        "the second wait doubles: {wait}"
    );
    s.clock.set(e.next_at);
    assert_eq!(s.dispatcher.run_once().await.unwrap().delivered, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.header("idempotency-key") == Some(e.key.as_str()))
    );
    let (_, attempts) = s.store.effect(&e.key).await.unwrap().unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "delivered"]);
    assert!(attempts[0].detail.as_deref().unwrap().starts_with("503"));
}

async fn timeouts_are_retried(backend: Backend) {
    let receiver = Receiver::start().await;
    let s = setup(backend, &webhook(&receiver, "/slow/x"), |c| {
        c.webhooks.timeout_ms = 300
    })
    .await;
    ingest(&*s.store, &note(1)).await;
    assert_eq!(s.dispatcher.run_once().await.unwrap().retried, 1);
    let e = &s.store.effects(None, 1).await.unwrap()[0];
    assert!(
        e.last_error.as_deref().unwrap().contains("timed out"),
        "{e:?}"
    );
    s.clock.set(e.next_at);
    assert_eq!(s.dispatcher.run_once().await.unwrap().delivered, 1);
}

async fn permanent_refusals_are_dead_lettered_at_once_and_temporary_ones_retried(backend: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let receiver = Receiver::start().await;
    let s = setup(
        backend,
        &rule(&format!(
            "      - webhook: {{ url: \"{}\" }}\n      - send_email: {{ template: follow-up, to: \"person:permfail@globex.example\" }}\n      - send_email: {{ template: follow-up, to: \"person:tempfail@globex.example\" }}\n",
            receiver.url("/gone/x")
        )),
        |c| c.email.port = smtp.port,
    )
    .await;
    ingest(&*s.store, &note(1)).await;
    let pass = s.dispatcher.run_once().await.unwrap();
    assert_eq!((pass.dead, pass.retried), (2, 1), "{pass:?}");
    let effects = s.store.effects(None, 10).await.unwrap();
    let error = |channel: &str, needle: &str| {
        effects.iter().any(|e| {
            e.channel.starts_with(channel)
                && e.last_error.as_deref().unwrap_or_default().contains(needle)
        })
    };
    assert!(error("webhook", "410"), "{effects:?}");
    assert!(error("email", "550"), "{effects:?}");
    assert!(error("email", "451"), "{effects:?}");
    for _ in 0..2 {
        s.clock.advance(Duration::from_secs(60));
        s.dispatcher.run_once().await.unwrap();
    }
    let messages = smtp.messages();
    assert_eq!(
        messages.len(),
        1,
        "the 451 was retried until accepted: {messages:?}"
    );
    assert_eq!(
        messages[0]["rcpt_tos"],
        serde_json::json!(["tempfail@globex.example"])
    );
}

async fn after_the_attempt_limit_an_effect_is_dead_until_retried_by_hand(backend: Backend) {
    let receiver = Receiver::start().await;
    let s = setup(backend, &webhook(&receiver, "/down/x"), |c| {
        c.max_attempts = 3;
        c.breaker_failures = 100;
    })
    .await;
    ingest(&*s.store, &note(1)).await;
    for _ in 0..3 {
        s.dispatcher.run_once().await.unwrap();
        s.clock.advance(Duration::from_secs(60));
    }
    let e = &s.store.effects(None, 1).await.unwrap()[0];
    assert_eq!(e.status, "dead");
    assert_eq!(
        e.last_error.as_deref(),
        Some("gave up after 3 attempts: 500 down")
    );
    assert_eq!(s.dispatcher.run_once().await.unwrap().claimed, 0);
    let retried = s.store.retry_effect(&e.key).await.unwrap();
    assert_eq!((retried.status.as_str(), retried.attempts), ("pending", 0));
    assert_eq!(s.dispatcher.run_once().await.unwrap().retried, 1);
    assert_eq!(receiver.received().len(), 4);
}

async fn a_failing_channel_is_paused_then_probed_once(backend: Backend) {
    let receiver = Receiver::start().await;
    let s = setup(backend, &webhook(&receiver, "/down/b"), |c| {
        c.breaker_failures = 2;
        c.breaker_cooldown_ms = 10_000;
    })
    .await;
    let notes: Vec<String> = (1..=4).map(note).collect();
    ingest(&*s.store, &notes.join("\n")).await;
    assert_eq!(s.dispatcher.run_once().await.unwrap().retried, 4);
    let paused = s.dispatcher.paused();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert!(paused[0].0.starts_with("webhook:127.0.0.1:"));
    assert_eq!(
        paused[0].1.as_millis(),
        clock::Clock::now(&s.clock).as_millis() + 10_000
    );
    // Retries are due, but the channel is paused.
    s.clock.advance(Duration::from_secs(5));
    assert_eq!(s.dispatcher.run_once().await.unwrap().claimed, 0);
    // After the pause one probe goes; it fails and the pause doubles.
    s.clock.advance(Duration::from_secs(6));
    assert_eq!(s.dispatcher.run_once().await.unwrap().claimed, 1);
    let paused = s.dispatcher.paused();
    assert_eq!(
        paused[0].1.as_millis(),
        clock::Clock::now(&s.clock).as_millis() + 20_000
    );
    assert_eq!(receiver.received().len(), 5);
}

async fn rate_limits_spread_a_burst(backend: Backend) {
    let receiver = Receiver::start().await;
    let s = setup(backend, &webhook(&receiver, "/ok/r"), |c| {
        c.rate_limits.insert("webhook".into(), 2.0);
    })
    .await;
    let notes: Vec<String> = (1..=5).map(note).collect();
    ingest(&*s.store, &notes.join("\n")).await;
    let mut per_second = Vec::new();
    for _ in 0..3 {
        per_second.push(s.dispatcher.run_once().await.unwrap().delivered);
        per_second.push(s.dispatcher.run_once().await.unwrap().delivered);
        s.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(per_second, [2, 0, 2, 0, 1, 0]);
}

/// A note on D-1 that happened at `at`.
fn note_at(id: u32, at: domain::Timestamp) -> String {
    format!(
        r#"{{"type":"note.added","source":"t","source_id":"m{id}","occurred_at":"{at}","deal":"D-1","data":{{"text":"note {id}"}}}}"#
    )
}

/// Issue 24: a receiver down for longer than the retry budget gets its effects dead-lettered
/// with the reason, though the breaker kept their attempts from being used up; once it is
/// back, delivery resumes within the longest pause of the breaker.
async fn a_channel_down_past_its_budget_dead_letters_and_resumes_when_back(backend: Backend) {
    let receiver = Receiver::start().await;
    let s = setup(backend, &webhook(&receiver, "/switch/x"), |c| {
        c.breaker_failures = 2;
        c.breaker_cooldown_ms = 10_000;
        c.breaker_max_ms = 60_000;
        c.max_attempts = 1_000;
        c.retry_budget_ms = 2 * 3_600_000;
    })
    .await;
    receiver.set_down(true);
    let start = clock::Clock::now(&s.clock);
    let notes: Vec<String> = (1..=3).map(|i| note_at(i, start)).collect();
    ingest(&*s.store, &notes.join("\n")).await;
    // Three hours down, looked at every 10 seconds.
    for _ in 0..(3 * 360) {
        s.dispatcher.run_once().await.unwrap();
        s.clock.advance(Duration::from_secs(10));
    }
    let effects = s.store.effects(None, 10).await.unwrap();
    assert_eq!(effects.len(), 3);
    for e in &effects {
        assert_eq!(e.status, "dead", "{e:?}");
        let why = e.last_error.as_deref().unwrap();
        // Given up by the probe that found it past its budget, or by the sweep when the
        // breaker opened again.
        assert!(why.starts_with("gave up"), "{why}");
        assert!(why.contains("2 hours"), "{why}");
        assert!(why.contains("500"), "{why}");
        // The breaker held most attempts back: about one probe a minute.
        assert!(e.attempts < 150, "{e:?}");
    }
    // While down, probes went at most once per longest pause, never in a flood.
    let tries = receiver.received().len();
    assert!((3..=3 + 2 * 3 * 60).contains(&tries), "{tries}");

    // A dead letter retried by hand gets a whole budget again: failing now, it waits.
    let retried = s.store.retry_effect(&effects[0].key).await.unwrap();
    assert_eq!(retried.status, "pending");
    s.clock.advance(Duration::from_secs(60));
    s.dispatcher.run_once().await.unwrap();
    let (again, _) = s.store.effect(&effects[0].key).await.unwrap().unwrap();
    assert_eq!(again.status, "pending", "{again:?}");

    // New work while still down; then the receiver comes back.
    let now = clock::Clock::now(&s.clock);
    ingest(&*s.store, &note_at(10, now)).await;
    s.dispatcher.run_once().await.unwrap();
    receiver.set_down(false);
    let back = clock::Clock::now(&s.clock).as_millis();
    let mut delivered = 0;
    while delivered == 0 {
        s.clock.advance(Duration::from_secs(1));
        delivered = s.dispatcher.run_once().await.unwrap().delivered;
        let waited = clock::Clock::now(&s.clock).as_millis() - back;
        assert!(
            waited <= 61_000,
            "still not delivered {waited} ms after the receiver came back"
        );
    }
}

/// Issue 24: one channel at its rate limit and one broken never slow the others: in a small
/// batch, the healthy webhook and the tasks drain at their own pace while the chat channel
/// goes one a second and the broken receiver is paused.
async fn a_limited_and_a_broken_channel_never_slow_the_others(backend: Backend) {
    let ok = Receiver::start().await;
    let broken = Receiver::start().await;
    let chat = Receiver::start().await;
    let s = setup(
        backend,
        &rule(&format!(
            "      - alert: {{ to: channel:sales, text: note }}\n      - webhook: {{ url: \"{}\" }}\n      - webhook: {{ url: \"{}\" }}\n      - task: {{ assignee: deal.owner, title: Read the note }}\n",
            broken.url("/down/x"),
            ok.url("/ok/x")
        )),
        |c| {
            c.batch = 10;
            c.breaker_failures = 2;
            c.breaker_cooldown_ms = 30_000;
            c.rate_limits.insert("chat".into(), 1.0);
            c.chat.insert("sales".into(), chat.url("/ok/chat"));
        },
    )
    .await;
    let start = clock::Clock::now(&s.clock);
    let notes: Vec<String> = (1..=30).map(|i| note_at(i, start)).collect();
    ingest(&*s.store, &notes.join("\n")).await;
    let delivered = |channel: &str, effects: &[store::StoredEffect]| {
        effects
            .iter()
            .filter(|e| e.channel.starts_with(channel) && e.status == "delivered")
            .count()
    };
    let task_channel = "task";
    let ok_channel = format!("webhook:127.0.0.1:{}", ok.port);
    let mut pace = Vec::new();
    for _ in 0..5 {
        // Ten passes of ten a second: room for 100 deliveries.
        for _ in 0..10 {
            s.dispatcher.run_once().await.unwrap();
        }
        let effects = s.store.effects(None, 200).await.unwrap();
        pace.push((
            delivered("chat", &effects),
            delivered(&ok_channel, &effects),
            delivered(task_channel, &effects),
        ));
        s.clock.advance(Duration::from_secs(1));
    }
    // Chat: one a second, its limit. The healthy webhook and the tasks: all 30 in the first
    // second, whatever waits on the other two channels.
    assert_eq!(
        pace,
        [
            (1, 30, 30),
            (2, 30, 30),
            (3, 30, 30),
            (4, 30, 30),
            (5, 30, 30)
        ]
    );
    // The broken receiver: tried with its share of the first pass (3 of 10 in turn with the
    // other channels), its breaker opened, then left alone for its pause.
    assert_eq!(broken.received().len(), 3);
    assert_eq!(chat.received().len(), 5);
}

/// Issue 24: a dry run sends nothing, so no rate limit holds it back.
async fn a_dry_run_is_not_rate_limited(backend: Backend) {
    let chat = Receiver::start().await;
    let s = setup(
        backend,
        &rule("      - alert: { to: channel:sales, text: note }\n"),
        |c| {
            c.dry_run = true;
            c.rate_limits.insert("chat".into(), 1.0);
            c.chat.insert("sales".into(), chat.url("/ok/chat"));
        },
    )
    .await;
    let start = clock::Clock::now(&s.clock);
    let notes: Vec<String> = (1..=30).map(|i| note_at(i, start)).collect();
    ingest(&*s.store, &notes.join("\n")).await;
    assert_eq!(s.dispatcher.run_once().await.unwrap().dry_run, 30);
    assert!(chat.received().is_empty());
}

crate::suite!(
    a_flaky_receiver_is_retried_with_backoff_until_it_answers,
    timeouts_are_retried,
    permanent_refusals_are_dead_lettered_at_once_and_temporary_ones_retried,
    after_the_attempt_limit_an_effect_is_dead_until_retried_by_hand,
    a_failing_channel_is_paused_then_probed_once,
    rate_limits_spread_a_burst,
    a_channel_down_past_its_budget_dead_letters_and_resumes_when_back,
    a_limited_and_a_broken_channel_never_slow_the_others,
    a_dry_run_is_not_rate_limited,
);
