//! API tokens: `pw_` followed by 64 hex digits of randomness, shown once when created and
//! stored only as their SHA-256 hash. A token this random needs no slow password hash: there is
//! no dictionary to guess from, and a fast hash keeps authentication off the ingest hot path.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use store::{NewToken, TokenInfo, TokenRole};

use crate::AppState;
use crate::error::AppError;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// A freshly generated token: the secret to show once and what to store.
#[derive(Debug)]
pub struct GeneratedToken {
    pub secret: String,
    pub stored: NewToken,
}

/// # Errors
/// When the operating system cannot provide randomness.
pub fn generate_token(name: &str, role: TokenRole) -> Result<GeneratedToken, getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    let mut id = [0u8; 6];
    getrandom::fill(&mut id)?;
    let secret = format!("pw_{}", hex(&secret));
    Ok(GeneratedToken {
        stored: NewToken {
            id: format!("tok_{}", hex(&id)),
            name: name.to_owned(),
            role,
            hash: hash_token(&secret),
        },
        secret,
    })
}

/// The authenticated caller of an API route.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenInfo);

impl Caller {
    pub fn require(&self, needed: TokenRole) -> Result<(), AppError> {
        if self.0.role >= needed {
            Ok(())
        } else {
            Err(AppError::forbidden(needed, self.0.role))
        }
    }
}

/// Finds the live token a request's `Authorization: Bearer` header names.
pub async fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<Caller, AppError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AppError::Unauthorized(
            "missing Authorization header: send `Authorization: Bearer <token>`",
        ))?;
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(AppError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ))?;
    match state.store.token_by_hash(&hash_token(secret)).await? {
        Some(info) => Ok(Caller(info)),
        None => Err(AppError::Unauthorized("unknown or revoked API token")),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        authenticate(&parts.headers, state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let a = generate_token("a", TokenRole::Reader).unwrap();
        let b = generate_token("b", TokenRole::Reader).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("pw_") && a.secret.len() == 67);
        assert_eq!(a.stored.hash, hash_token(&a.secret));
        assert!(!a.stored.hash.contains(&a.secret[3..]));
    }
}
