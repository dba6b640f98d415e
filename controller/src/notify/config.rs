//! `[[alerts]]`: the chat-ops sinks, read from TOML and validated into [`SinkConfig`]s.
//!
//! ```toml
//! [[alerts]]
//! kind = "slack"                     # "slack" | "teams" | "webhook"
//! url = { env = "SITEWARDEN_SLACK_URL" }   # or { file = "/etc/sitewarden/slack.url" }
//! min_severity = "warning"           # "info" | "warning" | "critical"; default "info"
//! rate = { messages = 20, per = "1m" }     # default 20 per minute
//! ```
//!
//! The URL is a secret (a Slack or Teams webhook URL grants posting rights), so it is named by
//! its source and read once into a [`SecretString`]; errors name the variable or file only.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source, duration};

use crate::engine::Severity;

/// Default token-bucket size and refill: 20 messages per minute per sink.
pub const DEFAULT_RATE: Rate = Rate {
    messages: 20,
    per: Duration::from_secs(60),
};

/// The `[[alerts]]` array as written.
pub type RawAlerts = Vec<RawSink>;

/// One `[[alerts]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// `"slack"`, `"teams"` or `"webhook"`.
    pub kind: String,
    /// Where the webhook URL (a secret) is read from.
    pub url: SecretRef,
    /// Least severity delivered to this sink (default `"info"`).
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Rate limit (default 20 per minute).
    #[serde(default)]
    pub rate: Option<RawRate>,
    /// A label for logs and metrics (default `<kind>-<index>`).
    #[serde(default)]
    pub name: Option<String>,
}

/// `rate = { messages = 20, per = "1m" }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    /// Messages allowed per `per` (also the burst size).
    pub messages: u32,
    /// The period, e.g. `"1m"`.
    pub per: String,
}

/// Which message format a sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Slack incoming webhook (Block Kit).
    Slack,
    /// Microsoft Teams workflow webhook (Adaptive Card 1.4).
    Teams,
    /// Any HTTP endpoint taking the alert as JSON.
    Webhook,
}

impl SinkKind {
    /// The word used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Slack => "slack",
            SinkKind::Teams => "teams",
            SinkKind::Webhook => "webhook",
        }
    }
}

/// A token bucket's size and refill period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages per period, at least 1.
    pub messages: u32,
    /// The period, not zero.
    pub per: Duration,
}

/// One validated sink.
#[derive(Clone)]
pub struct SinkConfig {
    /// Label for logs and metrics; never the URL.
    pub name: String,
    /// Message format.
    pub kind: SinkKind,
    /// The webhook URL: a secret.
    pub url: SecretString,
    /// Least severity delivered.
    pub min_severity: Severity,
    /// Rate limit.
    pub rate: Rate,
}

impl SinkConfig {
    /// A sink with the default severity (info) and rate; for code and tests.
    pub fn new(name: impl Into<String>, kind: SinkKind, url: SecretString) -> Self {
        Self {
            name: name.into(),
            kind,
            url,
            min_severity: Severity::Info,
            rate: DEFAULT_RATE,
        }
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &"[REDACTED]")
            .field("min_severity", &self.min_severity)
            .field("rate", &self.rate)
            .finish()
    }
}

/// Parses a severity word.
pub fn severity(s: &str) -> Option<Severity> {
    match s {
        "info" => Some(Severity::Info),
        "warning" => Some(Severity::Warning),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

/// Validates `[[alerts]]` found at `key` (usually `alerts`) into sinks, reading each URL.
pub fn validate(
    src: &Source,
    key: &KeyPath,
    raw: &[RawSink],
) -> Result<Vec<SinkConfig>, ConfigError> {
    let mut out: Vec<SinkConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let k = key.index(i);
        let kind = match r.kind.as_str() {
            "slack" => SinkKind::Slack,
            "teams" => SinkKind::Teams,
            "webhook" => SinkKind::Webhook,
            other => {
                return Err(src.error(
                    &k.key("kind"),
                    format!(
                        "{other:?} is not a sink kind; use \"slack\", \"teams\" or \"webhook\""
                    ),
                ));
            }
        };
        let url = r.url.resolve().map_err(|e| src.error(&k.key("url"), e))?;
        crate::outbound::check_url(url.expose_secret()).map_err(|e| src.error(&k.key("url"), e))?;
        let min_severity = match r.min_severity.as_deref() {
            None => Severity::Info,
            Some(s) => severity(s).ok_or_else(|| {
                src.error(
                    &k.key("min_severity"),
                    format!("{s:?} is not a severity; use \"info\", \"warning\" or \"critical\""),
                )
            })?,
        };
        let rate = match &r.rate {
            None => DEFAULT_RATE,
            Some(rr) => {
                if rr.messages == 0 {
                    return Err(src.error(
                        &k.key("rate").key("messages"),
                        "is 0; use at least 1 (default 20)",
                    ));
                }
                let per = duration::parse(&rr.per)
                    .map_err(|e| src.error(&k.key("rate").key("per"), e))?;
                if per.is_zero() {
                    return Err(src.error(
                        &k.key("rate").key("per"),
                        "is 0s; use a period such as \"1m\" (default)",
                    ));
                }
                Rate {
                    messages: rr.messages,
                    per,
                }
            }
        };
        let name = r
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{i}", kind.as_str()));
        if out.iter().any(|s| s.name == name) {
            return Err(src.error(
                &k.key("name"),
                format!("{name:?} is used by another sink; give each a distinct name"),
            ));
        }
        out.push(SinkConfig {
            name,
            kind,
            url,
            min_severity,
            rate,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<SinkConfig>, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            alerts: RawAlerts,
        }
        let src = Source::inline("controller.toml", text);
        let doc: Doc = src.parse()?;
        validate(&src, &KeyPath::root().key("alerts"), &doc.alerts)
    }

    #[test]
    fn notify_config_reads_a_file_url_with_defaults() {
        let dir = std::env::temp_dir().join(format!("sw-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("slack.url");
        std::fs::write(&p, "https://hooks.slack.invalid/services/T/B/s3cr3t\n").unwrap();
        let text = format!(
            "[[alerts]]\nkind = \"slack\"\nurl = {{ file = {:?} }}\n\n[[alerts]]\nkind = \"teams\"\nurl = {{ file = {:?} }}\nmin_severity = \"critical\"\nrate = {{ messages = 5, per = \"10s\" }}\n",
            p.display().to_string(),
            p.display().to_string()
        );
        let sinks = load(&text).unwrap();
        assert_eq!(sinks.len(), 2);
        assert_eq!(sinks[0].rate, DEFAULT_RATE);
        assert_eq!(sinks[0].min_severity, Severity::Info);
        assert_eq!(sinks[1].min_severity, Severity::Critical);
        assert_eq!(sinks[1].rate.per, Duration::from_secs(10));
        assert!(!format!("{sinks:?}").contains("s3cr3t"));
        let bad = text.replace("\"critical\"", "\"loud\"");
        let err = load(&bad).unwrap_err();
        assert_eq!(err.line, Some(8), "{err}");
        assert!(err.to_string().contains("alerts[1].min_severity"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn notify_config_errors_never_quote_the_url() {
        let dir = std::env::temp_dir().join(format!("sw-notify-u-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("hook.url");
        std::fs::write(&p, "http://hooks.example.invalid/s3cr3t").unwrap();
        let text = format!(
            "[[alerts]]\nkind = \"webhook\"\nurl = {{ file = {:?} }}\n",
            p.display().to_string()
        );
        let err = load(&text).unwrap_err();
        assert!(err.to_string().contains("use https"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"));
        assert!(!format!("{err:?}").contains("s3cr3t"));
        let unknown =
            load("[[alerts]]\nkind = \"slack\"\nurl = { env = \"X\" }\nurll = 1\n").unwrap_err();
        assert_eq!(unknown.line, Some(4));
        let _ = std::fs::remove_dir_all(dir);
    }
}
