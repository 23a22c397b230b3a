//! The channels that reach the outside world: SMTP and HTTP. Each failure is classified:
//! permanent (the receiver refused: dead-letter at once) or transient (retry, and count
//! towards the channel's circuit breaker).

use std::time::Duration;

use hmac::{KeyInit, Mac};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use crate::config::{EmailConfig, Tls};
use crate::render::Message;

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }
}

/// An SMTP relay connection pool.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Smtp")
    }
}

impl Smtp {
    /// # Errors
    /// A host name TLS cannot use.
    pub fn new(config: &EmailConfig) -> Result<Self, String> {
        crate::install_crypto();
        let builder = match config.tls {
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            Tls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                .map_err(|e| e.to_string())?,
            Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
                .map_err(|e| e.to_string())?,
        };
        let mut builder = builder
            .port(config.port)
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }

    /// Sends one email; answers the server's reply to the message.
    pub async fn send(
        &self,
        email: &Message,
        headers: &[(&'static str, String)],
    ) -> Result<String, SendError> {
        let Message::Email {
            from,
            to,
            subject,
            text,
            html,
            message_id,
        } = email
        else {
            return Err(SendError::permanent("not an email"));
        };
        let parse = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| SendError::permanent(format!("bad address {a:?}: {e}")))
        };
        let mut builder = lettre::Message::builder()
            .from(parse(from)?)
            .subject(subject.as_str())
            .message_id(Some(message_id.clone()));
        for address in to {
            builder = builder.to(parse(address)?);
        }
        for (name, value) in headers {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(name),
                value.clone(),
            ));
        }
        let message = match html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            None => builder.body(text.clone()),
        }
        .map_err(|e| SendError::permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(response) => Ok(format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::transient(format!("SMTP: {e}"))),
        }
    }
}

/// The signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "Pipewright-Signature";

/// Signs `body` as sent at `unix_seconds` with `secret`, in the header's format.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_seconds},v1={hex}")
}

/// POSTs JSON with the effect's idempotency key and, with a secret, a signature. 2xx is
/// delivered; 408, 429, 5xx, timeouts and connection failures are transient; other 4xx
/// answers are permanent.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    key: &str,
    secret: &str,
    unix_seconds: i64,
) -> Result<String, SendError> {
    let bytes = serde_json::to_vec(body).map_err(|e| SendError::permanent(e.to_string()))?;
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", key);
    if !secret.is_empty() {
        request = request.header(SIGNATURE_HEADER, signature(secret, unix_seconds, &bytes));
    }
    let response = request.body(bytes).send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        SendError::transient(format!("POST {what}: {e}"))
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(200).collect();
    let said = format!("{} {}", status.as_u16(), excerpt.trim());
    match status.as_u16() {
        200..=299 => Ok(said),
        408 | 429 | 500..=599 => Err(SendError::transient(said)),
        _ => Err(SendError::permanent(said)),
    }
}
