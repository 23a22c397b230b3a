//! Delivery settings: the `[delivery]` section of the configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Render every message and keep it in the outbox instead of sending it.
    pub dry_run: bool,
    /// The address people reach this server at — behind a reverse proxy, its public
    /// `https://` address. Alerts, tasks, escalations, chat messages and webhooks link to the
    /// web UI's page of their record under it (`/deals/ID`, `/leads/ID`); unsubscribe links
    /// point at its `/unsubscribe/` page.
    pub public_url: String,
    /// The name `public_url` had before issue 23, still read so older configurations load:
    /// [`Config::adopt_old_keys`] moves it to `public_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    pub poll_ms: u64,
    /// How long a claimed effect is held before another dispatcher may take it over.
    pub lease_ms: u64,
    /// Effects claimed per pass, and at most under way at once.
    pub batch: usize,
    /// Deliveries under way at once per channel (an SMTP server, a webhook host, a chat
    /// channel): a slow receiver holds only its own.
    pub concurrency: usize,
    /// Attempts before an effect is dead-lettered.
    pub max_attempts: u32,
    /// How long after it was due an effect may still be delivered: past it, an effect whose
    /// channel kept failing is dead-lettered with the reason, whether or not its attempts
    /// are used up (a channel paused by its breaker uses none).
    pub retry_budget_ms: u64,
    /// Retry delays: `backoff_base_ms` × 2^(attempt−1), at most `backoff_max_ms`, half of it
    /// random ("equal jitter").
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures that pause a channel, and the first pause (doubling while the
    /// channel keeps failing, up to `breaker_max_ms`). A paused channel is tried again after
    /// its pause, so delivery resumes at most `breaker_max_ms` plus one poll after the
    /// receiver is back.
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub breaker_max_ms: u64,
    /// Deliveries per second per channel (`email`, `webhook` per host, `chat` per channel,
    /// `task`); a channel not named is not limited.
    pub rate_limits: BTreeMap<String, f64>,
    pub email: EmailConfig,
    pub webhooks: WebhookConfig,
    /// Chat channel name → incoming-webhook URL (Slack, Mattermost, …).
    pub chat: BTreeMap<String, String>,
    pub tasks: TaskConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dry_run: false,
            public_url: "http://127.0.0.1:7878".into(),
            base_url: None,
            poll_ms: 250,
            lease_ms: 60_000,
            batch: 100,
            concurrency: 16,
            max_attempts: 8,
            retry_budget_ms: 86_400_000,
            backoff_base_ms: 5_000,
            backoff_max_ms: 3_600_000,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
            breaker_max_ms: 60_000,
            rate_limits: [("email".to_owned(), 20.0), ("chat".to_owned(), 1.0)]
                .into_iter()
                .collect(),
            email: EmailConfig::default(),
            webhooks: WebhookConfig::default(),
            chat: BTreeMap::new(),
            tasks: TaskConfig::default(),
        }
    }
}

impl Config {
    /// Moves the old key `base_url` to `public_url`.
    ///
    /// # Errors
    /// Both given with different addresses: which one is meant cannot be told.
    pub fn adopt_old_keys(&mut self) -> Result<(), String> {
        let Some(old) = self.base_url.take() else {
            return Ok(());
        };
        // The configuration is layered over the defaults, so a `public_url` still at its
        // default was not given.
        if self.public_url != Config::default().public_url && self.public_url != old {
            return Err(format!(
                "delivery.base_url ({old}) is the old name of delivery.public_url ({}): give only public_url",
                self.public_url
            ));
        }
        self.public_url = old;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    /// Plain SMTP (a relay on the same host or network).
    None,
    /// Upgrade with STARTTLS (RFC 3207), usually on port 587.
    Starttls,
    /// TLS from the first byte ("implicit TLS", RFC 8314), usually on port 465.
    Tls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, `Name <address>`; its domain also names Message-IDs. Email to a contact
    /// goes from this address under the name of the record's owner.
    pub from: String,
    /// Where a contact's reply to an email goes (its `Reply-To`).
    pub reply_to: ReplyTo,
    pub timeout_ms: u64,
}

/// Where a buyer's reply goes: to the record's owner (the default), to the sender's address,
/// or to one fixed address (a shared inbox that the CRM reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ReplyTo {
    /// The owner's address (their person record's email, or their id when it is one), with
    /// their name; an owner without an address gets no `Reply-To`.
    Owner,
    /// No `Reply-To`: replies go to the sender's address.
    Sender,
    /// This address (`reply@acme.example` or `Sales <reply@acme.example>`).
    Address(String),
}

impl TryFrom<String> for ReplyTo {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "owner" => Ok(ReplyTo::Owner),
            "sender" => Ok(ReplyTo::Sender),
            other => match other.parse::<lettre::message::Mailbox>() {
                Ok(_) => Ok(ReplyTo::Address(s)),
                Err(_) => Err(format!(
                    "reply_to {other:?} is neither `owner`, `sender` nor an email address"
                )),
            },
        }
    }
}

impl From<ReplyTo> for String {
    fn from(r: ReplyTo) -> String {
        match r {
            ReplyTo::Owner => "owner".into(),
            ReplyTo::Sender => "sender".into(),
            ReplyTo::Address(a) => a,
        }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: Tls::None,
            username: None,
            password: None,
            from: "pipewright <pipewright@localhost>".into(),
            reply_to: ReplyTo::Owner,
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The HMAC-SHA256 key receivers verify `Pipewright-Signature` with.
    pub secret: String,
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret: String::new(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Also push each new task to this URL as a signed webhook.
    pub webhook: Option<String>,
}
