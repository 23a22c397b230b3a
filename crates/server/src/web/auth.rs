//! Signing in to the web UI: passwords hashed with Argon2id (a PHC string per user), sessions
//! kept as the SHA-256 of a random cookie secret, a CSRF token per session that every form
//! carries, and the sign-in form's own token in a short-lived cookie (double submit).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use domain::Timestamp;
use store::{Session, UserRole};

use crate::AppState;
use crate::auth::hash_token;

/// The session cookie's name.
pub const SESSION: &str = "pw_session";
/// The sign-in form's token cookie.
pub const LOGIN: &str = "pw_login";
/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3_600_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes in hex.
pub fn random() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex(&b))
}

/// The password's Argon2id hash as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`), with a
/// random salt.
///
/// # Errors
/// No randomness, or a password Argon2 refuses.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` is the one `hash` was made from.
pub fn verify_password(password: &str, hash: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Equality that takes as long whatever the bytes: for tokens compared with what a form sent.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, Secure, SameSite=Lax, for the whole site.
pub fn set_cookie(name: &str, value: &str, max_age_s: i64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age_s}")
}

/// Failed sign-ins allowed per email within [`THROTTLE_MS`] before the next are refused.
pub const THROTTLE_FAILURES: usize = 5;
/// The window the failures are counted in.
pub const THROTTLE_MS: i64 = 15 * 60_000;

/// Failed sign-ins by email (on this node, in memory): after [`THROTTLE_FAILURES`] within
/// [`THROTTLE_MS`], the email's sign-ins are refused until the oldest of them ages out, so a
/// password cannot be guessed at the speed of requests.
#[derive(Debug, Clone, Default)]
pub struct Throttle(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<i64>>>>);

impl Throttle {
    fn recent(&self, email: &str, now: Timestamp) -> Vec<i64> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(email)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|t| now.as_millis() - t < THROTTLE_MS)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the email may try again, if it may not now.
    pub fn blocked_until(&self, email: &str, now: Timestamp) -> Option<Timestamp> {
        let recent = self.recent(email, now);
        (recent.len() >= THROTTLE_FAILURES).then(|| {
            Timestamp::from_millis(recent.iter().min().copied().unwrap_or(0) + THROTTLE_MS)
        })
    }

    pub fn failed(&self, email: &str, now: Timestamp) {
        let mut recent = self.recent(email, now);
        recent.push(now.as_millis());
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget emails whose failures have all aged out, so the map stays small.
        map.retain(|_, v| v.iter().any(|t| now.as_millis() - t < THROTTLE_MS));
        map.insert(email.to_owned(), recent);
    }

    pub fn succeeded(&self, email: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(email);
    }
}

/// The person signed in, their session's CSRF token and its key.
#[derive(Debug, Clone)]
pub struct Web {
    pub session: Session,
    pub hash: String,
}

impl Web {
    pub fn role(&self) -> UserRole {
        self.session.user.role
    }

    pub fn can(&self, role: UserRole) -> bool {
        self.role() >= role
    }
}

/// Not signed in: the page sends the browser to the sign-in form, which comes back to the page
/// asked for (`next`: a link from an alert opens its page once signed in).
#[derive(Debug)]
pub struct SignIn {
    next: Option<String>,
}

impl axum::response::IntoResponse for SignIn {
    fn into_response(self) -> axum::response::Response {
        let to = match self
            .next
            .and_then(|n| serde_urlencoded::to_string([("next", n)]).ok())
        {
            Some(query) => format!("/login?{query}"),
            None => "/login".to_owned(),
        };
        axum::response::Redirect::to(&to).into_response()
    }
}

/// `next` if it is a page of this server to return to after signing in: a path, never another
/// site (`//host`, `/\host` and `https://…` are refused, so the form cannot be used to send
/// someone elsewhere), nor the sign-in form itself.
pub fn local_page(next: &str) -> Option<&str> {
    let page = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/login")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    page.then_some(next)
}

impl FromRequestParts<AppState> for Web {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SignIn> {
        // Only a page read is returned to; a form posted without a session is not replayed.
        let next = (parts.method == axum::http::Method::GET)
            .then(|| parts.uri.path_and_query().map(|p| p.as_str()))
            .flatten()
            .filter(|p| *p != "/")
            .and_then(local_page)
            .map(str::to_owned);
        let refused = || SignIn { next: next.clone() };
        let secret = cookie(&parts.headers, SESSION).ok_or_else(refused)?;
        let hash = hash_token(secret);
        let now: Timestamp = state.clock.now();
        match state.store.session(&hash, now).await {
            Ok(Some(session)) => Ok(Web { session, hash }),
            _ => Err(refused()),
        }
    }
}
