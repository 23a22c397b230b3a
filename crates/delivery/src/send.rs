//! The channels that reach the outside world: SMTP and HTTP. Each failure is classified:
//! permanent (the receiver refused: dead-letter at once) or transient (retry, and count
//! towards the channel's circuit breaker).

use std::time::Duration;

use hmac::{KeyInit, Mac};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
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

/// Connections to the SMTP relay, kept open between messages.
///
/// Built on lettre's connection rather than its transport so that plain and STARTTLS sockets
/// get `TCP_NODELAY`: without it the message body and its terminating `.` are two small
/// writes, and Nagle's algorithm holds the second until the server's delayed ACK — about 40 ms
/// per message.
pub struct Smtp {
    config: EmailConfig,
    hello: ClientId,
    idle: std::sync::Mutex<Vec<AsyncSmtpConnection>>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Smtp")
    }
}

/// Idle connections kept for reuse.
const IDLE_MAX: usize = 32;

fn smtp_error(e: &lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::permanent(format!("SMTP: {e}"))
    } else {
        SendError::transient(format!("SMTP: {e}"))
    }
}

impl Smtp {
    /// # Errors
    /// None yet: connections are made when the first message goes.
    pub fn new(config: &EmailConfig) -> Result<Self, String> {
        crate::install_crypto();
        Ok(Self {
            config: config.clone(),
            hello: ClientId::default(),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let c = &self.config;
        let timeout = Duration::from_millis(c.timeout_ms);
        let tls = || {
            TlsParameters::new(c.host.clone())
                .map_err(|e| SendError::permanent(format!("TLS: {e}")))
        };
        let mut conn = match c.tls {
            Tls::Tls => AsyncSmtpConnection::connect_tokio1(
                (c.host.as_str(), c.port),
                Some(timeout),
                &self.hello,
                Some(tls()?),
                None,
            )
            .await
            .map_err(|e| smtp_error(&e))?,
            Tls::None | Tls::Starttls => {
                let stream = tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((c.host.as_str(), c.port)),
                )
                .await
                .map_err(|_| SendError::transient("SMTP: connecting timed out"))?
                .map_err(|e| SendError::transient(format!("SMTP: cannot connect: {e}")))?;
                let _ = stream.set_nodelay(true);
                let mut conn = tokio::time::timeout(
                    timeout,
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello),
                )
                .await
                .map_err(|_| SendError::transient("SMTP: greeting timed out"))?
                .map_err(|e| smtp_error(&e))?;
                if c.tls == Tls::Starttls {
                    conn.starttls(tls()?, &self.hello)
                        .await
                        .map_err(|e| smtp_error(&e))?;
                }
                conn
            }
        };
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            conn.auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(user.clone(), password.clone()),
            )
            .await
            .map_err(|e| smtp_error(&e))?;
        }
        Ok(conn)
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        self.idle.lock().ok()?.pop()
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_MAX
        {
            idle.push(conn);
        }
    }

    /// One SMTP transaction on a connection; the connection comes back if it is still good.
    async fn transact(
        &self,
        mut conn: AsyncSmtpConnection,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
    ) -> Result<String, (SendError, bool)> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match tokio::time::timeout(timeout, conn.send(envelope, bytes)).await {
            Ok(Ok(response)) => {
                self.put_back(conn);
                Ok(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ))
            }
            Ok(Err(e)) => {
                // A refusal leaves the connection usable; a broken one is dropped.
                let refused = e.status().is_some();
                if refused && !conn.has_broken() {
                    self.put_back(conn);
                }
                Err((smtp_error(&e), !refused))
            }
            Err(_) => Err((SendError::transient("SMTP: sending timed out"), false)),
        }
    }

    /// Sends one email; answers the server's reply to the message.
    pub async fn send(
        &self,
        email: &Message,
        headers: &[(&'static str, String)],
    ) -> Result<String, SendError> {
        let Message::Email {
            from,
            reply_to,
            to,
            subject,
            text,
            html,
            message_id,
            unsubscribe,
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
        if let Some(reply_to) = reply_to {
            builder = builder.reply_to(parse(reply_to)?);
        }
        for address in to {
            builder = builder.to(parse(address)?);
        }
        let unsubscribe = unsubscribe.as_deref().map(crate::unsubscribe::headers);
        for (name, value) in headers.iter().chain(unsubscribe.iter().flatten()) {
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
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        // A kept connection may have been closed by the server meanwhile: then once more on a
        // fresh one.
        if let Some(conn) = self.take_idle() {
            match self.transact(conn, &envelope, &bytes).await {
                Ok(said) => return Ok(said),
                Err((e, false)) => return Err(e),
                Err((_, true)) => {}
            }
        }
        let conn = self.connect().await?;
        self.transact(conn, &envelope, &bytes)
            .await
            .map_err(|(e, _)| e)
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
