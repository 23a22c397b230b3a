//! Delivery settings: the `[delivery]` section of the configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Render every message and keep it in the outbox instead of sending it.
    pub dry_run: bool,
    /// The address links in messages point at (the deal in pipewright's API).
    pub base_url: String,
    pub poll_ms: u64,
    /// How long a claimed effect is held before another dispatcher may take it over.
    pub lease_ms: u64,
    /// Effects claimed per pass, and delivered at once.
    pub batch: usize,
    pub concurrency: usize,
    /// Attempts before an effect is dead-lettered.
    pub max_attempts: u32,
    /// Retry delays: `backoff_base_ms` × 2^(attempt−1), at most `backoff_max_ms`, half of it
    /// random ("equal jitter").
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failures that pause a channel, and the first pause (doubling while the
    /// channel keeps failing, up to `breaker_max_ms`).
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
            base_url: "http://127.0.0.1:7878".into(),
            poll_ms: 250,
            lease_ms: 60_000,
            batch: 100,
            concurrency: 16,
            max_attempts: 8,
            backoff_base_ms: 5_000,
            backoff_max_ms: 3_600_000,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
            breaker_max_ms: 600_000,
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
    /// The sender, `Name <address>`; its domain also names Message-IDs.
    pub from: String,
    pub timeout_ms: u64,
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
