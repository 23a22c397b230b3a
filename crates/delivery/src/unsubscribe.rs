//! Unsubscribe links: every automated email to a contact carries a link (and the one-click
//! `List-Unsubscribe` headers of RFC 2369 and RFC 8058) naming the contact, signed so nobody
//! can unsubscribe someone else by editing it.
//!
//! A token is `hex(contact key) "." hex(first 16 bytes of HMAC-SHA256(secret, contact key))`;
//! the secret is shared by every node through the store ([`SECRET`]).

use hmac::{KeyInit, Mac};

use domain::{RecordId, RecordKey, RecordKind};

/// The store secret that signs the links.
pub const SECRET: &str = "unsubscribe";

type Hmac = hmac::Hmac<sha2::Sha256>;

fn mac(secret: &str, payload: &str) -> Hmac {
    let mut mac = Hmac::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(payload.as_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signed token for a contact (or a lead).
pub fn token(secret: &str, contact: &RecordKey) -> String {
    let payload = contact.to_string();
    let tag = mac(secret, &payload).finalize().into_bytes();
    format!("{}.{}", hex(payload.as_bytes()), hex(&tag[..16]))
}

/// The contact a token names, if its signature holds (compared in constant time).
pub fn verify(secret: &str, token: &str) -> Option<RecordKey> {
    let (payload, tag) = token.split_once('.')?;
    let payload = String::from_utf8(unhex(payload)?).ok()?;
    let tag = unhex(tag).filter(|t| t.len() == 16)?;
    mac(secret, &payload).verify_truncated_left(&tag).ok()?;
    let (kind, id) = payload.split_once(':')?;
    let kind =
        RecordKind::parse(kind).filter(|k| matches!(k, RecordKind::Contact | RecordKind::Lead))?;
    Some(RecordKey::new(kind, RecordId::parse(id).ok()?))
}

/// Where the link points: the server's unsubscribe page.
pub fn url(base_url: &str, token: &str) -> String {
    format!("{}/unsubscribe/{token}", base_url.trim_end_matches('/'))
}

/// The headers that let mail clients offer unsubscribing in one click (RFC 8058 §3.1: a
/// `List-Unsubscribe` HTTPS URI, and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`).
pub fn headers(url: &str) -> [(&'static str, String); 2] {
    [
        ("List-Unsubscribe", format!("<{url}>")),
        (
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".to_owned(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str) -> RecordKey {
        RecordKey::new(RecordKind::Contact, RecordId::parse(id).unwrap())
    }

    #[test]
    fn tokens_verify_only_with_their_secret_and_unaltered() {
        let t = token("s3cret", &contact("C-1"));
        assert_eq!(verify("s3cret", &t), Some(contact("C-1")));
        assert_eq!(verify("other", &t), None);
        // Another contact's payload with this signature: refused.
        let forged = format!("{}.{}", hex(b"contact:C-2"), t.split_once('.').unwrap().1);
        assert_eq!(verify("s3cret", &forged), None);
        for bad in ["", ".", "zz.zz", "abc", &t[..t.len() - 2]] {
            assert_eq!(verify("s3cret", bad), None, "{bad}");
        }
        // Only contacts and leads can unsubscribe.
        let deal = RecordKey::new(RecordKind::Deal, RecordId::parse("D-1").unwrap());
        assert_eq!(verify("s3cret", &token("s3cret", &deal)), None);
    }
}
