//! Delivery: the dispatcher that takes effects from the outbox and delivers each once — email
//! over SMTP, signed webhooks, chat alerts, tasks, changes to pipewright's own records — or,
//! in a dry run, renders and keeps them.
//!
//! The promise toward receivers: an effect whose delivery was recorded is never sent again; a
//! crash between sending and recording can send it a second time, always with the same
//! idempotency key (the email's Message-ID, the webhook's `Idempotency-Key` header), so a
//! receiver that de-duplicates on it sees each effect exactly once.

mod config;
mod dispatcher;
pub mod render;
pub mod send;
pub mod unsubscribe;

pub use config::{Config, EmailConfig, ReplyTo, TaskConfig, Tls, WebhookConfig};
pub use dispatcher::{Dispatcher, Pass};
pub use send::{SIGNATURE_HEADER, signature};

/// Makes ring the process's TLS crypto provider (once); every HTTPS or SMTPS client needs one.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client with the crypto provider installed.
///
/// # Panics
/// Only if the TLS stack cannot be initialised at all.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("an HTTP client with the ring provider")
}
