//! The dispatcher: claims due effects under a lease, renders and delivers them, records each
//! attempt. Each channel (an SMTP server, a webhook host, a chat channel) is a queue of its own
//! with its own concurrency, rate limit and circuit breaker, so one slow, limited or broken
//! receiver never holds back another. Retries back off exponentially with jitter, within a
//! number of attempts and a time budget, then dead-letter with the reason. Time comes from the
//! clock it is given, so tests drive all of it with a manual clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::Digest;

use clock::Clock;
use domain::{Record, RecordKey, RecordKind, Timestamp};
use store::{Claim, Finish, Outcome, Store, StoredEffect};

use crate::Config;
use crate::render::{Lookup, Message, email_headers, render};
use crate::send::{SendError, Smtp, post_json};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pass {
    pub claimed: usize,
    pub delivered: usize,
    pub dry_run: usize,
    pub retried: usize,
    pub dead: usize,
    /// Attempts whose lease had passed to another dispatcher before they were recorded.
    pub lost_lease: usize,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Timestamp>,
    cooldown_ms: u64,
    /// What the last failure said.
    last_error: String,
    /// Whether the effects past their time budget were given up since the breaker last
    /// opened.
    swept: bool,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

#[derive(Debug, Default)]
struct State {
    breakers: HashMap<String, Breaker>,
    buckets: HashMap<String, Bucket>,
    /// Each channel's deliveries under way at once.
    permits: HashMap<String, Arc<tokio::sync::Semaphore>>,
    /// Effects claimed and not yet finished, by channel (the running loop's).
    in_flight: HashMap<String, usize>,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Config,
    node: String,
    smtp: Smtp,
    http: reqwest::Client,
    state: Mutex<State>,
    /// The key that signs unsubscribe links, read from the store once.
    unsubscribe_secret: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("node", &self.node)
            .finish()
    }
}

fn family(channel: &str) -> &str {
    channel.split(':').next().unwrap_or(channel)
}

fn plus(t: Timestamp, ms: u64) -> Timestamp {
    Timestamp::from_millis(t.as_millis().saturating_add(ms as i64))
}

/// How one delivery went, for the breaker.
enum Health {
    Up,
    /// The receiver failed, saying this.
    Down(String),
    /// The channel was not tried.
    Untried,
}

/// A delivery under way: its channel and how it ended.
type Flight = tokio::task::JoinSet<(String, Outcome, Health, store::Result<bool>)>;

impl Dispatcher {
    /// # Errors
    /// An SMTP configuration that cannot be used.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: Config,
        node: String,
    ) -> Result<Self, String> {
        let smtp = Smtp::new(&config.email)?;
        let http = crate::http_client(Duration::from_millis(config.webhooks.timeout_ms));
        Ok(Self {
            store,
            clock,
            config,
            node,
            smtp,
            http,
            state: Mutex::new(State::default()),
            unsubscribe_secret: std::sync::OnceLock::new(),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Delivers forever, keeping up to `batch` deliveries under way: whenever some end, what
    /// is due is claimed for the room they leave (each channel at most twice its concurrency,
    /// so nothing claimed waits long for its turn); with nothing due, it looks again every
    /// `every`.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut flight = Flight::new();
        let mut pass = Pass::default();
        loop {
            let room = self.config.batch.saturating_sub(flight.len());
            // Claims come in batches: once a quarter of the room is free, or nothing is under
            // way.
            if room > 0 && (flight.is_empty() || room >= self.config.batch.div_ceil(4)) {
                let each = 2 * self.config.concurrency.max(1);
                match self.claim(room, Some(each)).await {
                    Ok(effects) => {
                        if let Err(e) = self.launch(effects, &mut flight).await {
                            e.log_in_loop("starting deliveries failed; will retry");
                        }
                    }
                    Err(e) => e.log_in_loop("claiming deliveries failed; will retry"),
                }
            }
            // The next end of a delivery or the next look, whichever comes first, so work
            // that becomes due never waits on a slow receiver.
            tokio::select! {
                Some(done) = flight.join_next(), if !flight.is_empty() => {
                    self.record(done, &mut pass);
                }
                () = tokio::time::sleep(every) => {}
            }
            while let Some(done) = flight.try_join_next() {
                self.record(done, &mut pass);
            }
        }
    }

    /// One pass: claim what is due (within pauses and rate limits, up to `batch`), deliver it
    /// concurrently (`concurrency` at once per channel), record every outcome.
    ///
    /// # Errors
    /// The store failing to claim.
    pub async fn run_once(self: &Arc<Self>) -> store::Result<Pass> {
        let claimed = self.claim(self.config.batch, None).await?;
        let mut pass = Pass {
            claimed: claimed.len(),
            ..Pass::default()
        };
        let mut flight = Flight::new();
        self.launch(claimed, &mut flight).await?;
        while let Some(done) = flight.join_next().await {
            self.record(done, &mut pass);
        }
        Ok(pass)
    }

    /// Claims up to `room` due effects, at most `each` from a channel besides its own limits,
    /// after giving up the effects of broken channels that are past their time budget.
    async fn claim(&self, room: usize, each: Option<usize>) -> store::Result<Vec<StoredEffect>> {
        let now = self.clock.now();
        self.give_up_on_broken_channels(now).await;
        let (paused, budgets) = self.plan(now, each);
        let claimed = self
            .store
            .claim_effects(Claim {
                node: self.node.clone(),
                now,
                lease_until: plus(now, self.config.lease_ms),
                limit: room,
                paused,
                budgets,
                each,
            })
            .await?;
        self.take_tokens(&claimed, now);
        let mut lag: HashMap<&str, i64> = HashMap::new();
        for e in &claimed {
            let late = (now.as_millis() - e.next_at.as_millis()).max(0);
            let worst = lag.entry(family(&e.channel)).or_default();
            *worst = (*worst).max(late);
        }
        for (family, late) in lag {
            metrics::gauge!("pipewright_delivery_lag_seconds", "channel" => family.to_owned())
                .set(late as f64 / 1000.0);
        }
        Ok(claimed)
    }

    /// Starts delivering what was claimed, each channel within its concurrency.
    ///
    /// # Errors
    /// The store failing to give the team; what was claimed is taken up again when its lease
    /// ends.
    async fn launch(
        self: &Arc<Self>,
        claimed: Vec<StoredEffect>,
        flight: &mut Flight,
    ) -> store::Result<()> {
        if claimed.is_empty() {
            return Ok(());
        }
        let people: Arc<Vec<domain::Person>> = Arc::new(store::people(&*self.store).await?);
        // An effect renders with the playbooks that decided it (a sequence's step with the
        // version its enrolment is pinned to), the running ones when that is not to be had:
        // each version of the pass looked up once.
        let running_set = self.store.engine().map(|e| Arc::clone(e.playbooks()));
        let mut sets: HashMap<String, Option<Arc<playbook::PlaybookSet>>> = HashMap::new();
        if let Some(set) = &running_set {
            sets.insert(set.version.clone(), Some(Arc::clone(set)));
        }
        for effect in &claimed {
            if !sets.contains_key(&effect.version) {
                let set = self
                    .store
                    .playbook_set(&effect.version)
                    .await
                    .ok()
                    .flatten();
                sets.insert(effect.version.clone(), set);
            }
        }
        for effect in claimed {
            let this = Arc::clone(self);
            let people = Arc::clone(&people);
            let playbooks = sets
                .get(&effect.version)
                .cloned()
                .flatten()
                .or_else(|| running_set.clone());
            let permits = self.board(&effect.channel, 1);
            flight.spawn(async move {
                let permit = permits.acquire().await;
                let channel = effect.channel.clone();
                let (finish, health) = this.deliver(effect, &people, playbooks).await;
                // The permit guards the receiver; recording waits for the writer only.
                drop(permit);
                let outcome = finish.outcome;
                let recorded = this.store.finish_delivery(finish).await;
                (channel, outcome, health, recorded)
            });
        }
        Ok(())
    }

    /// Counts `n` more effects under way on `channel` (a negative `n`, fewer), returning the
    /// channel's permits.
    fn board(&self, channel: &str, n: isize) -> Arc<tokio::sync::Semaphore> {
        let mut state = self.state();
        let count = state.in_flight.entry(channel.to_owned()).or_default();
        *count = count.saturating_add_signed(n);
        if *count == 0 {
            state.in_flight.remove(channel);
        }
        let concurrency = self.config.concurrency.max(1);
        Arc::clone(
            state
                .permits
                .entry(channel.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(concurrency))),
        )
    }

    /// Takes in how a delivery ended: the channel's breaker, the pass's counts, the metrics.
    fn record(
        &self,
        joined: Result<(String, Outcome, Health, store::Result<bool>), tokio::task::JoinError>,
        pass: &mut Pass,
    ) {
        let Ok((channel, outcome, health, recorded)) = joined else {
            return;
        };
        self.board(&channel, -1);
        self.observe(&channel, health);
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                pass.lost_lease += 1;
                return;
            }
            Err(e) => {
                // The lease runs out and the effect is taken up again.
                tracing::error!(error = ?e, "recording a delivery failed");
                return;
            }
        }
        let label = match outcome {
            Outcome::Delivered => {
                pass.delivered += 1;
                "delivered"
            }
            Outcome::DryRun => {
                pass.dry_run += 1;
                "dry_run"
            }
            Outcome::Retry { .. } => {
                pass.retried += 1;
                "retry"
            }
            Outcome::Dead => {
                pass.dead += 1;
                "dead"
            }
        };
        metrics::counter!("pipewright_deliveries_total", "channel" => family(&channel).to_owned(), "outcome" => label)
            .increment(1);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Dead-letters, with the reason, the pending effects of each channel the breaker holds
    /// paused that are past their time budget: once each time the breaker opens.
    async fn give_up_on_broken_channels(&self, now: Timestamp) {
        let broken: Vec<(String, String)> = {
            let mut state = self.state();
            state
                .breakers
                .iter_mut()
                .filter(|(_, b)| !b.swept && b.open_until.is_some_and(|t| t > now))
                .map(|(channel, b)| {
                    b.swept = true;
                    (channel.clone(), b.last_error.clone())
                })
                .collect()
        };
        let budget = self.config.retry_budget_ms;
        for (channel, error) in broken {
            let reason = format!(
                "gave up: {channel} kept failing for longer than {} after this was due (the last failure: {error})",
                domain::span_in_words(budget as i64)
            );
            let due_before = Timestamp::from_millis(now.as_millis().saturating_sub(budget as i64));
            match self
                .store
                .give_up_effects(&channel, due_before, &reason, now)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(
                        channel,
                        effects = n,
                        "effects past their retry budget dead-lettered"
                    );
                    metrics::counter!("pipewright_deliveries_total", "channel" => family(&channel).to_owned(), "outcome" => "dead")
                        .increment(n);
                }
                Err(e) => {
                    tracing::error!(error = ?e, channel, "giving up effects past their retry budget failed")
                }
            }
        }
    }

    async fn lookup(
        &self,
        effect: &StoredEffect,
        people: &[domain::Person],
        playbooks: Option<Arc<playbook::PlaybookSet>>,
    ) -> store::Result<Lookup> {
        let key = &effect.record;
        let record = self.store.record(key).await?.map(|r| r.record);
        // An email a sequence sends names its contact; other effects go to the first.
        let named = serde_json::from_value::<playbook::Action>(effect.action.clone())
            .ok()
            .and_then(|a| match a {
                playbook::Action::SendEmail {
                    to: playbook::Target::Contact(id),
                    ..
                } => Some(id),
                _ => None,
            });
        let contact = match &record {
            Some(Record::Deal(d)) => match named.as_ref().or(d.contacts.iter().next()) {
                Some(id) => match self
                    .store
                    .record(&RecordKey::new(RecordKind::Contact, id.clone()))
                    .await?
                {
                    Some(stored) => match stored.record {
                        Record::Contact(c) => Some(c),
                        _ => None,
                    },
                    None => None,
                },
                None => None,
            },
            // A lead is its own contact.
            Some(Record::Lead(l)) => serde_json::from_value(serde_json::json!({
                "id": l.id, "name": l.name, "email": l.email, "title": l.title
            }))
            .ok(),
            _ => None,
        };
        let unsubscribe_secret = match self.unsubscribe_secret.get() {
            Some(secret) => secret.clone(),
            None => {
                let secret = self.store.secret(crate::unsubscribe::SECRET).await?;
                self.unsubscribe_secret.get_or_init(|| secret).clone()
            }
        };
        Ok(Lookup {
            record,
            people: people.to_vec(),
            contact,
            playbooks,
            unsubscribe_secret: Some(unsubscribe_secret),
        })
    }

    async fn deliver(
        &self,
        effect: StoredEffect,
        people: &[domain::Person],
        playbooks: Option<Arc<playbook::PlaybookSet>>,
    ) -> (Finish, Health) {
        let started_at = self.clock.now();
        let mut finish = Finish {
            key: effect.key.clone(),
            node: self.node.clone(),
            started_at,
            finished_at: started_at,
            outcome: Outcome::Dead,
            detail: None,
            rendered: None,
            task: None,
            exception: None,
        };
        let lookup = match self.lookup(&effect, people, playbooks).await {
            Ok(l) => l,
            Err(e) => {
                finish.outcome = self.retry(&effect, started_at);
                finish.detail = Some(format!("looking up the record failed: {e}"));
                return (finish, Health::Untried);
            }
        };
        let message = match render(&effect, &lookup, &self.config, started_at) {
            Ok(m) => m,
            Err(e) => {
                finish.detail = Some(e.0);
                return (finish, Health::Untried);
            }
        };
        finish.rendered = serde_json::to_value(&message).ok();
        finish.task = message.task(&effect);
        finish.exception = message.exception(&effect, started_at);
        let external = matches!(
            message,
            Message::Email { .. } | Message::Chat { .. } | Message::Webhook { .. }
        );
        let result = if self.config.dry_run && external {
            finish.outcome = Outcome::DryRun;
            finish.finished_at = self.clock.now();
            return (finish, Health::Untried);
        } else {
            self.send(&effect, &message, started_at).await
        };
        finish.finished_at = self.clock.now();
        let health = match &result {
            Ok(said) => {
                finish.outcome = Outcome::Delivered;
                finish.detail = Some(said.clone());
                Health::Up
            }
            Err(e) if e.permanent => {
                finish.outcome = Outcome::Dead;
                finish.detail = Some(e.message.clone());
                Health::Up
            }
            Err(e) => {
                finish.outcome = self.retry(&effect, finish.finished_at);
                finish.detail = Some(match finish.outcome {
                    Outcome::Dead => {
                        let tries = match effect.attempts {
                            1 => "1 attempt".to_owned(),
                            n => format!("{n} attempts"),
                        };
                        if effect.attempts >= self.config.max_attempts {
                            format!("gave up after {tries}: {}", e.message)
                        } else {
                            format!(
                                "gave up after {tries}: still failing {} after this was due or retried, its retry budget: {}",
                                domain::span_in_words(self.config.retry_budget_ms as i64),
                                e.message
                            )
                        }
                    }
                    _ => e.message.clone(),
                });
                Health::Down(e.message.clone())
            }
        };
        (finish, health)
    }

    async fn send(
        &self,
        effect: &StoredEffect,
        message: &Message,
        now: Timestamp,
    ) -> Result<String, SendError> {
        let seconds = now.as_millis().div_euclid(1000);
        let secret = &self.config.webhooks.secret;
        match message {
            Message::Email { .. } => {
                let headers: Vec<(&'static str, String)> =
                    email_headers(effect).into_iter().collect();
                self.smtp.send(message, &headers).await
            }
            Message::Chat { channel, payload } => match self.config.chat.get(channel) {
                Some(url) => {
                    post_json(&self.http, url, payload, &effect.key, secret, seconds).await
                }
                None => Err(SendError {
                    permanent: true,
                    message: format!(
                        "chat channel {channel:?} is not configured (delivery.chat.{channel})"
                    ),
                }),
            },
            Message::Webhook { url, body } => {
                post_json(&self.http, url, body, &effect.key, secret, seconds).await
            }
            Message::Exception { .. } => Ok("raised".into()),
            Message::Task { .. } => match &self.config.tasks.webhook {
                Some(url) if !self.config.dry_run => {
                    let body = serde_json::to_value(message).unwrap_or_default();
                    post_json(&self.http, url, &body, &effect.key, secret, seconds).await
                }
                _ => Ok("stored".into()),
            },
            Message::Internal { event } => {
                let new = wire::parse_one(&event.to_string()).map_err(|p| SendError {
                    permanent: true,
                    message: format!("the change is not a valid event: {p}"),
                })?;
                match self.store.ingest(vec![new]).await {
                    Ok(results) => Ok(format!("{:?}", results.first())),
                    Err(e) => Err(SendError {
                        permanent: false,
                        message: format!("applying the change failed: {e}"),
                    }),
                }
            }
            Message::Sequence => Err(SendError {
                permanent: false,
                message: "sequences are run by the sequence engine".into(),
            }),
        }
    }

    /// The next attempt after a transient failure, or dead once the attempts or the time
    /// budget are used up.
    fn retry(&self, effect: &StoredEffect, now: Timestamp) -> Outcome {
        let budget_ends = plus(effect.budget_from(), self.config.retry_budget_ms);
        if effect.attempts >= self.config.max_attempts || now >= budget_ends {
            return Outcome::Dead;
        }
        let exponent = effect.attempts.saturating_sub(1).min(30);
        let delay = self
            .config
            .backoff_base_ms
            .saturating_mul(1 << exponent)
            .min(self.config.backoff_max_ms);
        // Equal jitter, drawn from the key and attempt: effects that failed together spread
        // out, and a replay of the same history waits the same.
        let half = delay / 2;
        let mut h = sha2::Sha256::new();
        h.update(effect.key.as_bytes());
        h.update(effect.attempts.to_le_bytes());
        let bytes = h.finalize();
        let draw = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        Outcome::Retry {
            next_at: plus(now, half + draw % (half + 1)),
        }
    }

    /// Channels to leave alone this claim, and how many each may take: a half-open breaker's
    /// one probe, what its rate limit allows (none in a dry run, which sends nothing), and
    /// with `each`, what is left of that beside the effects under way.
    fn plan(&self, now: Timestamp, each: Option<usize>) -> (Vec<String>, Vec<(String, usize)>) {
        let mut state = self.state();
        // The sequence engine runs sequences.
        let mut paused = vec!["sequence".to_owned()];
        let mut budgets = Vec::new();
        for (channel, b) in &state.breakers {
            match b.open_until {
                Some(until) if until > now => paused.push(channel.clone()),
                // Half-open: one probe decides.
                Some(_) => budgets.push((channel.clone(), 1)),
                None => {}
            }
        }
        let rates = if self.config.dry_run {
            Default::default()
        } else {
            self.config.rate_limits.clone()
        };
        for (channel, bucket) in &mut state.buckets {
            if let Some(rate) = rates.get(family(channel)) {
                let burst = rate.max(1.0);
                let elapsed = (now.as_millis() - bucket.at.as_millis()).max(0) as f64 / 1000.0;
                bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
                bucket.at = now;
                if !budgets.iter().any(|(c, _)| c == channel) {
                    budgets.push((channel.clone(), bucket.tokens.floor() as usize));
                }
            }
        }
        if let Some(each) = each {
            for (channel, n) in &state.in_flight {
                let left = each.saturating_sub(*n);
                match budgets.iter_mut().find(|(c, _)| c == channel) {
                    Some((_, b)) => *b = (*b).min(left),
                    None => {
                        let rate = rates
                            .get(family(channel))
                            .map(|r| r.max(1.0).floor() as usize);
                        budgets.push((channel.clone(), rate.map_or(left, |r| r.min(left))));
                    }
                }
            }
        }
        for (family, rate) in &rates {
            let burst = rate.max(1.0).floor() as usize;
            budgets.push((family.clone(), each.map_or(burst, |e| burst.min(e))));
        }
        (paused, budgets)
    }

    fn take_tokens(&self, claimed: &[StoredEffect], now: Timestamp) {
        if self.config.dry_run {
            return;
        }
        let mut state = self.state();
        for e in claimed {
            if let Some(rate) = self.config.rate_limits.get(family(&e.channel)) {
                let bucket = state.buckets.entry(e.channel.clone()).or_insert(Bucket {
                    tokens: rate.max(1.0),
                    at: now,
                });
                bucket.tokens -= 1.0;
            }
        }
    }

    /// Feeds the channel's breaker: failures in a row open it, for longer each time it
    /// re-opens; a success closes it.
    fn observe(&self, channel: &str, health: Health) {
        let mut state = self.state();
        let now = self.clock.now();
        let breaker = state.breakers.entry(channel.to_owned()).or_default();
        match health {
            Health::Untried => {}
            Health::Up => *breaker = Breaker::default(),
            Health::Down(error) => {
                breaker.failures += 1;
                breaker.last_error = error;
                // Failures of deliveries already under way when it opened change nothing.
                let open = breaker.open_until.is_some_and(|t| t > now);
                let half_open = breaker.open_until.is_some_and(|t| t <= now);
                if !open && (half_open || breaker.failures >= self.config.breaker_failures) {
                    breaker.cooldown_ms = if breaker.cooldown_ms == 0 {
                        self.config.breaker_cooldown_ms
                    } else {
                        (breaker.cooldown_ms * 2).min(self.config.breaker_max_ms)
                    };
                    breaker.open_until = Some(plus(now, breaker.cooldown_ms));
                    breaker.swept = false;
                    tracing::warn!(
                        channel,
                        failures = breaker.failures,
                        pause_ms = breaker.cooldown_ms,
                        "channel failing; paused"
                    );
                }
            }
        }
        if breaker.failures == 0 && breaker.open_until.is_none() {
            state.breakers.remove(channel);
        }
    }

    /// Channels paused now, with when they will be tried again.
    pub fn paused(&self) -> Vec<(String, Timestamp)> {
        let now = self.clock.now();
        let state = self.state();
        let mut out: Vec<(String, Timestamp)> = state
            .breakers
            .iter()
            .filter_map(|(c, b)| b.open_until.filter(|t| *t > now).map(|t| (c.clone(), t)))
            .collect();
        out.sort();
        out
    }
}
