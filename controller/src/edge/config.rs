//! `[edge]`: the signed edge webhooks, read from TOML and validated into [`EdgeConfig`].
//!
//! ```toml
//! [[edge.webhooks]]
//! name = "f5-site1"                          # label for logs and metrics (an id)
//! url = "https://edge1.example.com/sitewarden/notice"  # https, or http to loopback
//! secret = { env = "SITEWARDEN_EDGE_F5_SECRET" }   # or { file = "/etc/sitewarden/f5.secret" }
//! timeout = "5s"                             # per request; default 5s
//! max_attempts = 5                           # per notice, first included; default 5
//! backoff = { base = "500ms", max = "30s" }  # exponential with jitter; defaults shown
//! ```
//!
//! The signing secret is named by its source and read once into a [`SecretString`]; errors
//! name the variable or file only, and `Debug` shows `[REDACTED]`. The integrator adds
//! `edge: Option<RawEdge>` to the controller's raw configuration and calls [`validate`] with the
//! key `edge`, as `[[alerts]]` is validated by [`crate::notify::config::validate`].

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source, duration};

use crate::provider::config::RawBackoff;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts per notice, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default first backoff step.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Default longest backoff step.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Shortest signing secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// `[edge]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// `[[edge.webhooks]]`: receivers of signed notifications.
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

/// One `[[edge.webhooks]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Label for logs, metrics and outcomes.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// Where the HMAC signing secret is read from.
    pub secret: SecretRef,
    /// Per-request timeout (default 5s).
    #[serde(default, with = "duration::option")]
    pub timeout: Option<Duration>,
    /// Attempts per notice, the first included (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Backoff schedule (default base 500ms, max 30s).
    #[serde(default)]
    pub backoff: Option<RawBackoff>,
}

/// How one endpoint retries a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookRetry {
    /// Attempts per notice, the first included (1..=20).
    pub max_attempts: u32,
    /// The first backoff step; doubled each attempt.
    pub base: Duration,
    /// The longest backoff step.
    pub max: Duration,
}

impl Default for WebhookRetry {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base: DEFAULT_BACKOFF_BASE,
            max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl WebhookRetry {
    /// The wait after failed attempt number `attempt` (1-based): "equal jitter", half of
    /// `min(base × 2^(attempt-1), max)` fixed and half uniformly random, so retries from many
    /// controllers or endpoints spread out but never come back at once.
    pub fn delay(&self, attempt: u32) -> Duration {
        sitewarden_shared::pacing::Backoff::new(self.base, self.max).equal_jitter(attempt)
    }
}

/// One validated webhook endpoint.
#[derive(Clone)]
pub struct WebhookEndpoint {
    /// Label for logs, metrics and outcomes; an id.
    pub name: String,
    /// Where to POST.
    pub url: reqwest::Url,
    /// The HMAC-SHA256 signing secret.
    pub secret: SecretString,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries.
    pub retry: WebhookRetry,
}

impl WebhookEndpoint {
    /// An endpoint with default timeout and retries; for code and tests.
    pub fn new(name: impl Into<String>, url: reqwest::Url, secret: SecretString) -> Self {
        Self {
            name: name.into(),
            url,
            secret,
            timeout: DEFAULT_TIMEOUT,
            retry: WebhookRetry::default(),
        }
    }
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("name", &self.name)
            .field("host", &self.url.host_str().unwrap_or_default())
            .field("secret", &"[REDACTED]")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The validated `[edge]` section.
#[derive(Debug, Clone, Default)]
pub struct EdgeConfig {
    /// Signed webhook receivers, in configuration order.
    pub webhooks: Vec<WebhookEndpoint>,
}

/// Validates `[edge]` found at `key` (usually `edge`), reading each signing secret.
pub fn validate(src: &Source, key: &KeyPath, raw: &RawEdge) -> Result<EdgeConfig, ConfigError> {
    let mut webhooks: Vec<WebhookEndpoint> = Vec::with_capacity(raw.webhooks.len());
    for (i, w) in raw.webhooks.iter().enumerate() {
        let k = key.key("webhooks").index(i);
        sitewarden_shared::ids::validate_id(&w.name)
            .map_err(|e| src.error(&k.key("name"), format!("{:?} {e}", w.name)))?;
        if webhooks.iter().any(|o| o.name == w.name) {
            return Err(src.error(
                &k.key("name"),
                format!(
                    "{:?} is used by another webhook; give each a distinct name",
                    w.name
                ),
            ));
        }
        crate::notify::config::check_url(&w.url).map_err(|e| src.error(&k.key("url"), e))?;
        let url = reqwest::Url::parse(&w.url)
            .map_err(|e| src.error(&k.key("url"), format!("not a URL ({e})")))?;
        let secret = w
            .secret
            .resolve()
            .map_err(|e| src.error(&k.key("secret"), e))?;
        if secret.expose_secret().len() < MIN_SECRET_LEN {
            return Err(src.error(
                &k.key("secret"),
                format!(
                    "the secret read from this source is shorter than {MIN_SECRET_LEN} bytes; use at least 32 random characters (e.g. `openssl rand -hex 32`)"
                ),
            ));
        }
        let timeout = w.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            return Err(src.error(
                &k.key("timeout"),
                format!(
                    "{} is out of range; use 1ms to 60s (default 5s)",
                    duration::format(timeout)
                ),
            ));
        }
        let max_attempts = w.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if !(1..=20).contains(&max_attempts) {
            return Err(src.error(
                &k.key("max_attempts"),
                format!("{max_attempts} is out of range; use 1 to 20 (default 5)"),
            ));
        }
        let base = w
            .backoff
            .as_ref()
            .and_then(|b| b.base)
            .unwrap_or(DEFAULT_BACKOFF_BASE);
        let max = w
            .backoff
            .as_ref()
            .and_then(|b| b.max)
            .unwrap_or(DEFAULT_BACKOFF_MAX.max(base));
        if base.is_zero() {
            return Err(src.error(
                &k.key("backoff").key("base"),
                "use at least 1ms (default 500ms)",
            ));
        }
        if max < base {
            return Err(src.error(
                &k.key("backoff").key("max"),
                "must not be shorter than `backoff.base`",
            ));
        }
        webhooks.push(WebhookEndpoint {
            name: w.name.clone(),
            url,
            secret,
            timeout,
            retry: WebhookRetry {
                max_attempts,
                base,
                max,
            },
        });
    }
    Ok(EdgeConfig { webhooks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<EdgeConfig, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            edge: RawEdge,
        }
        let src = Source::inline("controller.toml", text);
        let doc: Doc = src.parse()?;
        validate(&src, &KeyPath::root().key("edge"), &doc.edge)
    }

    fn secret_file(dir: &tempfile::TempDir, value: &str) -> String {
        let p = dir.path().join("edge.secret");
        std::fs::write(&p, value).unwrap();
        p.display().to_string()
    }

    #[test]
    fn edge_config_defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let f = secret_file(&dir, "s3cr3t-s3cr3t-s3cr3t-s3cr3t\n");
        let text = format!(
            "[[edge.webhooks]]\nname = \"f5\"\nurl = \"https://edge.example.com/hook\"\nsecret = {{ file = {f:?} }}\n\n[[edge.webhooks]]\nname = \"lab\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = {{ file = {f:?} }}\ntimeout = \"2s\"\nmax_attempts = 3\nbackoff = {{ base = \"10ms\", max = \"40ms\" }}\n"
        );
        let c = load(&text).unwrap();
        assert_eq!(c.webhooks.len(), 2);
        assert_eq!(c.webhooks[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.webhooks[0].retry, WebhookRetry::default());
        assert_eq!(c.webhooks[1].timeout, Duration::from_secs(2));
        assert_eq!(
            c.webhooks[1].retry,
            WebhookRetry {
                max_attempts: 3,
                base: Duration::from_millis(10),
                max: Duration::from_millis(40)
            }
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let e = load(&text.replace("max_attempts = 3", "max_attempts = 0")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("edge.webhooks[1].max_attempts"));
        assert_eq!(e.line, Some(11), "{e}");
        let e = load(&text.replace("name = \"lab\"", "name = \"f5\"")).unwrap_err();
        assert!(e.to_string().contains("distinct name"), "{e}");
        let e =
            load(&text.replace("http://127.0.0.1:9/x", "http://edge.example.com/x")).unwrap_err();
        assert!(e.to_string().contains("use https"), "{e}");
        let e = load(&text.replace("max = \"40ms\"", "max = \"1ms\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("edge.webhooks[1].backoff.max"));
        let e = load(&text.replace("timeout = \"2s\"", "tiemout = \"2s\"")).unwrap_err();
        assert!(e.message.contains("unknown field `tiemout`"), "{e}");
    }

    #[test]
    fn edge_config_short_or_missing_secrets_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = secret_file(&dir, "short-s3cr3t");
        let text = format!(
            "[[edge.webhooks]]\nname = \"f5\"\nurl = \"https://edge.example.com/hook\"\nsecret = {{ file = {f:?} }}\n"
        );
        let e = load(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("edge.webhooks[0].secret"));
        assert!(e.to_string().contains("openssl rand"), "{e}");
        assert!(!e.to_string().contains("s3cr3t") && !format!("{e:?}").contains("s3cr3t"));
        let e = load(
            "[[edge.webhooks]]\nname = \"f5\"\nurl = \"https://e.example.com/\"\nsecret = { env = \"SITEWARDEN_TEST_EDGE_UNSET\" }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("SITEWARDEN_TEST_EDGE_UNSET"), "{e}");
    }

    #[test]
    fn edge_backoff_doubles_with_jitter_up_to_the_cap() {
        let r = WebhookRetry {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        for _ in 0..50 {
            let d1 = r.delay(1);
            assert!((50..=100).contains(&d1.as_millis()), "{d1:?}");
            let d2 = r.delay(2);
            assert!((100..=200).contains(&d2.as_millis()), "{d2:?}");
            let d9 = r.delay(9);
            assert!((150..=300).contains(&d9.as_millis()), "{d9:?}");
        }
    }
}
