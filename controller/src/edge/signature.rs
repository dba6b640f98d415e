//! Webhook signatures: HMAC-SHA256 over `"{timestamp}.{body}"`, and their verification.
//!
//! Every edge webhook carries two headers:
//!
//! ```text
//! X-Sitewarden-Timestamp: 1772442907
//! X-Sitewarden-Signature: v1=<64 lower-case hex digits>
//! ```
//!
//! The signature is `hex(hmac_sha256(secret, "1772442907." + body))`, computed over the exact
//! body bytes. Binding the timestamp into the MAC lets a receiver refuse replays: [`verify`]
//! accepts a timestamp only within `window` of its own clock (default 5 minutes, either way).
//! The comparison is constant-time. A signature header may list several comma-separated
//! `v1=` values (for a future secret rotation); one match suffices.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ring::hmac;

/// Header carrying the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Sitewarden-Timestamp";
/// Header carrying `v1=<hex hmac-sha256>`.
pub const SIGNATURE_HEADER: &str = "X-Sitewarden-Signature";
/// How far a timestamp may be from the receiver's clock: 5 minutes.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(300);

/// The scheme prefix of a signature value.
const SCHEME: &str = "v1=";

/// Why a webhook request is not authentic (or not fresh). Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp header is not a whole number of seconds.
    #[error("the X-Sitewarden-Timestamp header is not Unix seconds")]
    BadTimestamp,
    /// The timestamp is further from now than the replay window.
    #[error(
        "the request was signed {age_secs}s away from this receiver's clock, outside the {window_secs}s replay window; refuse it (check both clocks with NTP)"
    )]
    OutsideWindow {
        /// Seconds between the timestamp and now (absolute).
        age_secs: u64,
        /// The window, in seconds.
        window_secs: u64,
    },
    /// The signature header has no `v1=` value of 64 hex digits.
    #[error("the X-Sitewarden-Signature header has no v1=<64 hex digits> value")]
    BadSignatureFormat,
    /// No signature matches: wrong secret, or the body or timestamp was changed.
    #[error("the signature does not match: wrong secret, or the body or timestamp was changed")]
    Mismatch,
}

fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

fn signed_bytes(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    msg
}

/// The `X-Sitewarden-Signature` value for `body` signed at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), &signed_bytes(&timestamp.to_string(), body));
    let mut out = String::with_capacity(SCHEME.len() + 64);
    out.push_str(SCHEME);
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Decodes a hex HMAC-SHA256 tag (64 hex digits); `None` for anything else. Shared with the
/// Slack signature check.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Checks a received webhook: `timestamp` and `header` are the two header values as received,
/// `body` the exact body bytes, `now` the receiver's clock, `window` the replay window
/// ([`DEFAULT_REPLAY_WINDOW`] unless you have a reason).
///
/// The freshness check comes first, so a stale replay is refused even with a valid signature.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(), VerifyError> {
    let timestamp = timestamp.trim();
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let age_secs = now.timestamp().abs_diff(ts);
    if age_secs > window.as_secs() {
        return Err(VerifyError::OutsideWindow {
            age_secs,
            window_secs: window.as_secs(),
        });
    }
    let tags: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix(SCHEME))
        .filter_map(decode_hex)
        .collect();
    if tags.is_empty() {
        return Err(VerifyError::BadSignatureFormat);
    }
    let key = key(secret);
    let msg = signed_bytes(timestamp, body);
    if tags.iter().any(|tag| hmac::verify(&key, &msg, tag).is_ok()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    #[test]
    fn a_known_vector() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
        assert_eq!(
            sign(SECRET, 1_700_000_000, br#"{"a":1}"#),
            "v1=f05f2539e3ae1c49aec5f8cfdad75ef6b06480b133973ffbb7ec9e18827af177"
        );
    }

    #[test]
    fn a_signature_verifies_within_the_window_only() {
        let body = br#"{"epoch":1}"#;
        let sig = sign(SECRET, 1_700_000_000, body);
        let w = DEFAULT_REPLAY_WINDOW;
        assert_eq!(
            verify(SECRET, "1700000000", body, &sig, at(1_700_000_299), w),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, "1700000000", body, &sig, at(1_699_999_800), w),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, "1700000000", body, &sig, at(1_700_000_301), w),
            Err(VerifyError::OutsideWindow {
                age_secs: 301,
                window_secs: 300
            })
        );
    }

    #[test]
    fn tampering_is_detected() {
        let body = br#"{"epoch":1}"#;
        let sig = sign(SECRET, 1_700_000_000, body);
        let now = at(1_700_000_000);
        let w = DEFAULT_REPLAY_WINDOW;
        assert_eq!(
            verify(SECRET, "1700000000", br#"{"epoch":2}"#, &sig, now, w),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "1700000001", body, &sig, now, w),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret entirely", "1700000000", body, &sig, now, w),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "soon", body, &sig, now, w),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify(SECRET, "1700000000", body, "sha256=abc", now, w),
            Err(VerifyError::BadSignatureFormat)
        );
        let rotated = format!("v1={}, {sig}", "0".repeat(64));
        assert_eq!(verify(SECRET, "1700000000", body, &rotated, now, w), Ok(()));
    }
}
