//! One sink's delivery: the body for its kind, a token-bucket rate limit, and bounded retries.
//!
//! Errors name the sink by its configured name and never carry the URL: reqwest errors are
//! stripped of it (`without_url`) before they are turned into text.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
pub use sitewarden_shared::pacing::TokenBucket;
use tokio::time::Instant;

use super::config::{Rate, SinkConfig, SinkKind};
use super::render::{Message, render};
use super::{slack, teams, webhook};
use crate::engine::Severity;

/// A delivery that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The request did not complete (connect, timeout, TLS).
    #[error("alert sink {sink}: request failed: {cause}")]
    Transport {
        /// The sink's name.
        sink: String,
        /// What went wrong, without the URL.
        cause: String,
    },
    /// The receiver answered with a non-success status.
    #[error("alert sink {sink}: the receiver answered HTTP {status}")]
    Status {
        /// The sink's name.
        sink: String,
        /// The HTTP status.
        status: u16,
    },
}

impl DeliveryError {
    /// Worth retrying: transport failures, 408, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Transport { .. } => true,
            DeliveryError::Status { status, .. } => is_transient_status(*status),
        }
    }
}

/// A configured sink ready to post.
pub struct Sink {
    name: String,
    kind: SinkKind,
    url: SecretString,
    min_severity: Severity,
    rate: Rate,
    client: reqwest::Client,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &"[REDACTED]")
            .field("min_severity", &self.min_severity)
            .finish()
    }
}

impl Sink {
    /// A sink posting with `client`.
    pub fn new(cfg: SinkConfig, client: reqwest::Client) -> Self {
        Self {
            name: cfg.name,
            kind: cfg.kind,
            url: cfg.url,
            min_severity: cfg.min_severity,
            rate: cfg.rate,
            client,
        }
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this sink takes the message at all.
    pub fn accepts(&self, m: &Message) -> bool {
        m.severity() >= self.min_severity
    }

    /// The JSON body this sink would post for `m`.
    pub fn body(&self, m: &Message) -> serde_json::Value {
        let r = render(m);
        match self.kind {
            SinkKind::Slack => slack::body(&r),
            SinkKind::Teams => teams::body(&r),
            SinkKind::Webhook => webhook::body(m, &r),
        }
    }

    /// Posts `m` once.
    pub async fn deliver(&self, m: &Message) -> Result<(), DeliveryError> {
        let resp = self
            .client
            .post(self.url.expose_secret())
            .json(&self.body(m))
            .send()
            .await
            .map_err(|e| DeliveryError::Transport {
                sink: self.name.clone(),
                cause: error_chain(e),
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status {
                sink: self.name.clone(),
                status: status.as_u16(),
            })
        }
    }

    /// A fresh token bucket for this sink's rate.
    pub fn bucket(&self, now: Instant) -> TokenBucket {
        rate_bucket(self.rate, now)
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and 5xx. Shared with the edge webhooks.
pub(crate) fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The HTTP client for outgoing webhooks (alert sinks, edge webhooks): rustls, `timeout` per
/// request. Falls back to reqwest's defaults (and says so) if the builder fails.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!("webhook HTTP client with defaults: {e}");
            reqwest::Client::new()
        })
}

/// A reqwest error and its causes as one line, without the URL. Shared with the edge webhooks.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The token bucket of a sink's rate (`messages` per `per`), full as of `now`.
pub fn rate_bucket(rate: Rate, now: Instant) -> TokenBucket {
    TokenBucket::new(rate.messages, rate.per, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_token_bucket_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut b = rate_bucket(
            Rate {
                messages: 3,
                per: Duration::from_secs(3),
            },
            t0,
        );
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(b.take(t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(1)).is_err());
    }
}
