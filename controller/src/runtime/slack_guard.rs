//! What keeps the Slack endpoint from being used against us: a replay cache and quiet refusals.
//!
//! - [`ReplayCache`]: Slack's signature covers the timestamp and body, and the timestamp must be
//!   within five minutes, so a captured request could be sent again inside that window. Every
//!   verified request's signature is remembered until its timestamp leaves the window, and a
//!   second request with the same signature is refused. Only requests signed with the secret
//!   get in, so outsiders cannot fill the cache. It is bounded all the same: when it is full of
//!   live entries, new requests are refused rather than let through unchecked. Each controller
//!   keeps its own cache, so a request captured on its way to one controller could still be
//!   replayed to the other. docs/chatops.md says to give Slack one URL.
//! - [`RefusalLog`]: refused requests are counted by cause (a metric) and logged at most once
//!   per cause per minute, so an outsider sending garbage decides neither the log volume nor
//!   anything else.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::slack::REPLAY_WINDOW;

/// Most signatures remembered at once (far above what Slack sends in five minutes).
pub const MAX_REMEMBERED: usize = 10_000;
/// A refusal cause is logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// What [`ReplayCache::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// First time this signature is seen: go on.
    Fresh,
    /// This signature was seen inside the window: a replay.
    Replayed,
    /// The cache is full of live entries: refuse, do not guess.
    Full,
}

/// Signatures of verified requests, until their timestamp leaves the replay window.
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<Vec<u8>, i64>>,
}

impl ReplayCache {
    /// Admits a verified request with signature `tag` and timestamp `ts` (Unix seconds), at
    /// `now` (Unix seconds).
    pub fn admit(&self, tag: &[u8], ts: i64, now: i64) -> Admission {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let window = i64::try_from(REPLAY_WINDOW.as_secs()).unwrap_or(i64::MAX);
        if seen.contains_key(tag) {
            return Admission::Replayed;
        }
        if seen.len() >= MAX_REMEMBERED {
            // Timestamps are checked against the window before this, so anything older than
            // the window on either side can no longer be replayed: forget it.
            seen.retain(|_, t| now.abs_diff(*t) <= window.unsigned_abs());
            if seen.len() >= MAX_REMEMBERED {
                return Admission::Full;
            }
        }
        seen.insert(tag.to_vec(), ts);
        Admission::Fresh
    }
}

/// Logs each refusal cause at most once per [`LOG_EVERY`], with how many were refused since.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Per cause: when it was last logged, and how many were refused since without a line.
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RefusalLog {
    /// Notes one refusal of `cause`; logs `text` when the cause was not logged in the last
    /// minute. Returns whether it logged.
    pub fn note(&self, cause: &'static str, text: &str) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.get_mut(cause) {
            Some((logged, suppressed)) if now.duration_since(*logged) < LOG_EVERY => {
                *suppressed += 1;
                false
            }
            entry => {
                let suppressed = entry.map_or(0, |(_, n)| *n);
                last.insert(cause, (now, 0));
                if suppressed > 0 {
                    tracing::warn!(
                        cause,
                        "refused a Slack command: {text} ({suppressed} more of this kind since the last line)"
                    );
                } else {
                    tracing::warn!(cause, "refused a Slack command: {text}");
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_admitted_once_and_forgotten_after_the_window() {
        let c = ReplayCache::default();
        assert_eq!(c.admit(b"sig-a", 1000, 1000), Admission::Fresh);
        assert_eq!(c.admit(b"sig-a", 1000, 1010), Admission::Replayed);
        assert_eq!(c.admit(b"sig-b", 1000, 1010), Admission::Fresh);
    }

    #[test]
    fn a_full_cache_forgets_expired_entries_and_refuses_when_all_are_live() {
        let c = ReplayCache::default();
        for i in 0..MAX_REMEMBERED {
            assert_eq!(c.admit(&i.to_be_bytes(), 1000, 1000), Admission::Fresh);
        }
        assert_eq!(c.admit(b"one more", 1000, 1000), Admission::Full);
        // Six minutes on, every entry has left the window.
        assert_eq!(c.admit(b"one more", 1360, 1360), Admission::Fresh);
    }

    #[tokio::test(start_paused = true)]
    async fn each_cause_is_logged_at_most_once_a_minute() {
        let log = RefusalLog::default();
        assert!(log.note("mismatch", "signature does not match"));
        for _ in 0..100 {
            assert!(!log.note("mismatch", "signature does not match"));
        }
        assert!(log.note("stale", "too old"), "another cause is logged");
        tokio::time::advance(LOG_EVERY).await;
        assert!(log.note("mismatch", "signature does not match"));
    }
}
