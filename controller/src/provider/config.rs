//! The `[provider]` table: which DNS provider, its zone, token source, rate budget and retries.
//!
//! ```toml
//! [provider]
//! kind = "cloudflare"                         # or "memory" (no network: lab, tests)
//! zone_id = "023e105f4ecef8ad9ca31a8372d0c353" # or zone_name = "example.com"
//! api_token = { env = "CLOUDFLARE_API_TOKEN" } # or { file = "/etc/sitewarden/cloudflare.token" }
//! api_url = "https://api.cloudflare.com/client/v4" # default; tests point it at the emulator
//! budget = { requests = 300, per = "5m" }     # client-side limit; Cloudflare's is 1,200 / 5 min
//! max_attempts = 4                            # per call, first included
//! backoff = { base = "500ms", max = "30s" }   # exponential, full jitter
//! retry_deadline = "60s"                      # no retry wait ends later than this
//! request_timeout = "10s"
//! batch_size = 200                            # records per batch write; 1 to 3,500 (paid plans)
//! ```
//!
//! `kind = "rfc2136"` (dynamic UPDATE with TSIG to a primary: BIND, Knot, PowerDNS) and
//! `kind = "route53"` have their own keys, validated in [`super::rfc2136::config`] and
//! [`super::route53::config`]; `kind = "builtin"` in [`crate::dns`]. See `docs/dns.md`.
//!
//! [`RawProvider`] is what serde reads (unknown keys are errors); [`RawProvider::validate`] turns
//! it into a [`ProviderConfig`], reporting errors with file, line and key; and
//! [`ProviderConfig::build`] reads the token and makes the provider.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source, duration};

use super::budget::{RateBudget, RetryPolicy};
use super::cloudflare::{
    CloudflareOptions, CloudflareProvider, DEFAULT_API_URL, DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE,
    Zone,
};
use super::memory::MemoryProvider;
use super::{DnsProvider, ProviderError};

/// Cloudflare's API limit per user: 1,200 requests per 5 minutes.
pub const CLOUDFLARE_LIMIT: RateBudget = RateBudget {
    requests: 1200,
    per: Duration::from_secs(300),
};

/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `[provider]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// `cloudflare` or `memory`.
    pub kind: Option<String>,
    /// Cloudflare zone id.
    pub zone_id: Option<String>,
    /// Cloudflare zone name (looked up once).
    pub zone_name: Option<String>,
    /// Where the API token comes from.
    pub api_token: Option<SecretRef>,
    /// API base URL.
    pub api_url: Option<String>,
    /// Client-side rate budget.
    pub budget: Option<RawBudget>,
    /// Attempts per call.
    pub max_attempts: Option<u32>,
    /// Backoff schedule.
    pub backoff: Option<RawBackoff>,
    /// Retries stop when their wait would end after this.
    #[serde(default, with = "duration::option")]
    pub retry_deadline: Option<Duration>,
    /// Per-request timeout.
    #[serde(default, with = "duration::option")]
    pub request_timeout: Option<Duration>,
    /// `builtin`: the delegated zone, e.g. `failover.example.com`.
    pub zone: Option<String>,
    /// `builtin`: UDP and TCP listen address (default `0.0.0.0:53`).
    pub listen: Option<std::net::SocketAddr>,
    /// `builtin`: the zone's NS names, one per controller.
    pub nameservers: Option<Vec<String>>,
    /// `builtin`: the SOA contact, e.g. `hostmaster@example.com`.
    pub soa_email: Option<String>,
    /// `builtin`: addresses allowed to transfer the zone (AXFR over TCP), e.g. secondaries.
    pub allow_transfer: Option<Vec<std::net::IpAddr>>,
    /// `builtin`: addresses of in-zone nameservers, e.g. `{ "ns1.failover.example.com" = ["192.0.2.10"] }`.
    pub addresses: Option<std::collections::BTreeMap<String, Vec<std::net::IpAddr>>>,
    /// `rfc2136`: the zone's primary, `ip:port`.
    pub server: Option<String>,
    /// `rfc2136`: the TSIG key's name as the server knows it.
    pub tsig_key_name: Option<String>,
    /// `rfc2136`: `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    pub tsig_algorithm: Option<String>,
    /// `rfc2136`: where the base64 TSIG secret comes from.
    pub tsig_secret: Option<SecretRef>,
    /// `route53`: the hosted zone id, e.g. `Z0123456789ABCDEFGHIJ`.
    pub hosted_zone_id: Option<String>,
    /// `route53`: API endpoint (default `https://route53.amazonaws.com`; tests point it at moto).
    pub endpoint_url: Option<String>,
    /// `route53`: the SigV4 signing region (default `us-east-1`, Route 53's global region).
    pub region: Option<String>,
    /// `route53`: access key id source; default: the AWS environment or shared credentials file.
    pub aws_access_key_id: Option<SecretRef>,
    /// `route53`: secret access key source (with `aws_access_key_id`).
    pub aws_secret_access_key: Option<SecretRef>,
    /// `route53`: session token source, for temporary credentials.
    pub aws_session_token: Option<SecretRef>,
    /// `route53`: how long to poll GetChange for INSYNC after a change (default 120s).
    #[serde(default, with = "duration::option")]
    pub insync_timeout: Option<Duration>,
    /// `cloudflare`, `route53`, `rfc2136`: records (Cloudflare) or names per batch write, change
    /// batch or UPDATE when many change at once (1: one name at a time).
    pub batch_size: Option<usize>,
}

/// `budget = { requests = 300, per = "5m" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Requests per period.
    pub requests: u32,
    /// The period.
    #[serde(with = "duration")]
    pub per: Duration,
}

/// `backoff = { base = "500ms", max = "30s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// First step.
    #[serde(default, with = "duration::option")]
    pub base: Option<Duration>,
    /// Longest single wait.
    #[serde(default, with = "duration::option")]
    pub max: Option<Duration>,
}

/// A validated provider configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Which provider and its own settings.
    pub kind: ProviderKind,
    /// Retries of soft failures.
    pub retry: RetryPolicy,
}

/// The provider kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// In memory, no network.
    Memory,
    /// Cloudflare v4 API.
    Cloudflare(CloudflareConfig),
    /// The controllers' own authoritative DNS server ([`crate::dns`]).
    Builtin(crate::dns::DnsConfig),
    /// Dynamic UPDATE with TSIG to the zone's primary ([`super::rfc2136`]).
    Rfc2136(super::rfc2136::config::Rfc2136Config),
    /// Amazon Route 53 ([`super::route53`]).
    Route53(super::route53::config::Route53Config),
}

impl ProviderKind {
    /// The `kind` value that selects this provider (`cloudflare`, `rfc2136`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cloudflare(_) => "cloudflare",
            Self::Builtin(_) => "builtin",
            Self::Rfc2136(_) => "rfc2136",
            Self::Route53(_) => "route53",
        }
    }
}

/// Validated Cloudflare settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudflareConfig {
    /// The zone.
    pub zone: Zone,
    /// Where the token comes from (read at build).
    pub api_token: SecretRef,
    /// API base URL.
    pub api_url: String,
    /// Client-side rate budget.
    pub budget: RateBudget,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Records one batch write carries, 1 to [`MAX_BATCH_SIZE`].
    pub batch_size: usize,
}

/// Why a provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The token could not be read.
    #[error("provider.api_token: {0}")]
    Token(String),
    /// A secret other than the Cloudflare token could not be read; names the key, never the value.
    #[error("provider.{key}: {message}")]
    Secret {
        /// The config key, e.g. `tsig_secret`.
        key: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
    /// The provider rejected its settings.
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
}

impl RawProvider {
    /// Validates the table found at `at` (usually `provider`) in `src`.
    pub fn validate(&self, src: &Source, at: &KeyPath) -> Result<ProviderConfig, ConfigError> {
        let retry = self.retry(src, at)?;
        self.no_builtin_keys_unless_builtin(src, at)?;
        self.no_backend_keys_of_other_kinds(src, at)?;
        let kind = match self.kind.as_deref() {
            Some("memory") => {
                for (key, set) in [
                    ("zone_id", self.zone_id.is_some()),
                    ("zone_name", self.zone_name.is_some()),
                    ("api_token", self.api_token.is_some()),
                    ("api_url", self.api_url.is_some()),
                    ("budget", self.budget.is_some()),
                    ("request_timeout", self.request_timeout.is_some()),
                ] {
                    if set {
                        return Err(src.error(
                            &at.key(key),
                            "only used with kind = \"cloudflare\"; remove it for kind = \"memory\"",
                        ));
                    }
                }
                ProviderKind::Memory
            }
            Some("cloudflare") => ProviderKind::Cloudflare(self.cloudflare(src, at)?),
            Some("builtin") => ProviderKind::Builtin(self.builtin(src, at)?),
            Some("rfc2136") => ProviderKind::Rfc2136(self.rfc2136(src, at)?),
            Some("route53") => ProviderKind::Route53(self.route53(src, at)?),
            Some(other) => {
                return Err(src.error(
                    &at.key("kind"),
                    format!(
                        "unknown provider kind {other:?}; use \"cloudflare\", \"route53\", \
                         \"rfc2136\", \"builtin\" or \"memory\""
                    ),
                ));
            }
            None => {
                return Err(src.error(
                    at,
                    "missing `kind`; set kind = \"cloudflare\" (or \"memory\" for a lab)",
                ));
            }
        };
        Ok(ProviderConfig { kind, retry })
    }

    /// Rejects the `rfc2136`- and `route53`-only keys under any other kind.
    fn no_backend_keys_of_other_kinds(
        &self,
        src: &Source,
        at: &KeyPath,
    ) -> Result<(), ConfigError> {
        let kind = self.kind.as_deref().unwrap_or_default();
        for (key, owner, set) in [
            ("server", "rfc2136", self.server.is_some()),
            ("tsig_key_name", "rfc2136", self.tsig_key_name.is_some()),
            ("tsig_algorithm", "rfc2136", self.tsig_algorithm.is_some()),
            ("tsig_secret", "rfc2136", self.tsig_secret.is_some()),
            ("hosted_zone_id", "route53", self.hosted_zone_id.is_some()),
            ("endpoint_url", "route53", self.endpoint_url.is_some()),
            ("region", "route53", self.region.is_some()),
            (
                "aws_access_key_id",
                "route53",
                self.aws_access_key_id.is_some(),
            ),
            (
                "aws_secret_access_key",
                "route53",
                self.aws_secret_access_key.is_some(),
            ),
            (
                "aws_session_token",
                "route53",
                self.aws_session_token.is_some(),
            ),
            ("insync_timeout", "route53", self.insync_timeout.is_some()),
        ] {
            if set && kind != owner {
                return Err(src.error(
                    &at.key(key),
                    format!("only used with kind = \"{owner}\"; remove it for kind = \"{kind}\""),
                ));
            }
        }
        if self.batch_size.is_some() && !matches!(kind, "cloudflare" | "route53" | "rfc2136") {
            return Err(src.error(
                &at.key("batch_size"),
                format!(
                    "only used with kind = \"cloudflare\", \"route53\" or \"rfc2136\"; remove it for kind = \"{kind}\""
                ),
            ));
        }
        Ok(())
    }

    /// Rejects the Cloudflare-only keys under `kind` (a kind with its own way to name the zone).
    pub(crate) fn no_cloudflare_keys(
        &self,
        src: &Source,
        at: &KeyPath,
        kind: &str,
        also: &[(&str, bool)],
    ) -> Result<(), ConfigError> {
        let cloudflare = [
            ("zone_id", self.zone_id.is_some()),
            ("zone_name", self.zone_name.is_some()),
            ("api_token", self.api_token.is_some()),
            ("api_url", self.api_url.is_some()),
        ];
        for (key, set) in cloudflare.iter().chain(also) {
            if *set {
                return Err(src.error(
                    &at.key(key),
                    format!(
                        "not used with kind = \"{kind}\"; remove it (see docs/dns.md for its keys)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Validates `budget = { requests, per }` against a provider's own limit (`limit`, named
    /// `limit_text` in errors), or returns `default`.
    pub(crate) fn budget_within(
        &self,
        src: &Source,
        at: &KeyPath,
        limit: RateBudget,
        limit_text: &str,
        default: RateBudget,
    ) -> Result<RateBudget, ConfigError> {
        let Some(b) = &self.budget else {
            return Ok(default);
        };
        let key = at.key("budget");
        if b.requests == 0 || b.per < Duration::from_secs(1) {
            return Err(src.error(
                &key,
                format!(
                    "use at least 1 request per at least 1s (default {} per {})",
                    default.requests,
                    duration::format(default.per)
                ),
            ));
        }
        let ours = f64::from(b.requests) / b.per.as_secs_f64();
        let theirs = f64::from(limit.requests) / limit.per.as_secs_f64();
        if ours > theirs {
            return Err(src.error(&key, format!("above {limit_text}; stay well below it")));
        }
        Ok(RateBudget {
            requests: b.requests,
            per: b.per,
        })
    }

    /// Validates `request_timeout` (100ms to 120s), or returns the default.
    pub(crate) fn request_timeout_checked(
        &self,
        src: &Source,
        at: &KeyPath,
    ) -> Result<Duration, ConfigError> {
        let request_timeout = self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if request_timeout < Duration::from_millis(100)
            || request_timeout > Duration::from_secs(120)
        {
            return Err(src.error(
                &at.key("request_timeout"),
                "use 100ms to 120s (default 10s)",
            ));
        }
        Ok(request_timeout)
    }

    fn retry(&self, src: &Source, at: &KeyPath) -> Result<RetryPolicy, ConfigError> {
        let d = RetryPolicy::default();
        let max_attempts = self.max_attempts.unwrap_or(d.max_attempts);
        if !(1..=10).contains(&max_attempts) {
            return Err(src.error(
                &at.key("max_attempts"),
                format!("{max_attempts} is out of range; use 1 to 10 (default 4)"),
            ));
        }
        let base = self.backoff.as_ref().and_then(|b| b.base).unwrap_or(d.base);
        let max = self
            .backoff
            .as_ref()
            .and_then(|b| b.max)
            .unwrap_or(d.max_delay);
        if base.is_zero() {
            return Err(src.error(
                &at.key("backoff").key("base"),
                "use at least 1ms (default 500ms)",
            ));
        }
        if max < base {
            return Err(src.error(
                &at.key("backoff").key("max"),
                "must not be shorter than `backoff.base`",
            ));
        }
        let deadline = self.retry_deadline.unwrap_or(d.deadline);
        if deadline.is_zero() {
            return Err(src.error(&at.key("retry_deadline"), "use more than 0s (default 60s)"));
        }
        Ok(RetryPolicy {
            max_attempts,
            base,
            max_delay: max,
            deadline,
        })
    }

    /// Validates Cloudflare's `batch_size` (1 to [`MAX_BATCH_SIZE`]), or returns the default.
    fn batch_size_checked(&self, src: &Source, at: &KeyPath) -> Result<usize, ConfigError> {
        let Some(n) = self.batch_size else {
            return Ok(DEFAULT_BATCH_SIZE);
        };
        match n {
            n if (1..=MAX_BATCH_SIZE).contains(&n) => Ok(n),
            _ => Err(src.error(
                &at.key("batch_size"),
                format!(
                    "{n} is out of range; use 1 (name by name) to 3,500 (Pro, Business and \
                     Enterprise zones); the Free plan allows 200 (default {DEFAULT_BATCH_SIZE})"
                ),
            )),
        }
    }

    fn cloudflare(&self, src: &Source, at: &KeyPath) -> Result<CloudflareConfig, ConfigError> {
        let zone = match (&self.zone_id, &self.zone_name) {
            (Some(id), None) => {
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(src.error(
                        &at.key("zone_id"),
                        "a zone id is letters and digits (32 hex digits on the zone's Overview page)",
                    ));
                }
                Zone::Id(id.clone())
            }
            (None, Some(name)) => {
                let n = name.trim_end_matches('.');
                let label_ok = |l: &str| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                };
                if !n.contains('.') || !n.split('.').all(label_ok) {
                    return Err(src.error(
                        &at.key("zone_name"),
                        format!("{name:?} is not a zone name like \"example.com\""),
                    ));
                }
                Zone::Name(n.to_owned())
            }
            (Some(_), Some(_)) => {
                return Err(src.error(
                    &at.key("zone_name"),
                    "give `zone_id` or `zone_name`, not both",
                ));
            }
            (None, None) => {
                return Err(src.error(
                    at,
                    "missing the zone; set `zone_id` (preferred) or `zone_name`",
                ));
            }
        };
        let Some(api_token) = self.api_token.clone() else {
            return Err(src.error(
                at,
                "missing `api_token`; set api_token = { env = \"CLOUDFLARE_API_TOKEN\" } or { file = \"...\" }",
            ));
        };
        if api_token.env.is_some() == api_token.file.is_some() {
            return Err(src.error(
                &at.key("api_token"),
                "give exactly one of `env = \"VAR\"` or `file = \"/path\"`",
            ));
        }
        let api_url = self
            .api_url
            .clone()
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        match reqwest::Url::parse(&api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => {
                return Err(src.error(
                    &at.key("api_url"),
                    format!(
                        "{api_url:?} is not an http(s) URL; the default is {DEFAULT_API_URL:?}"
                    ),
                ));
            }
        }
        let budget = match &self.budget {
            None => RateBudget::default(),
            Some(b) => {
                let key = at.key("budget");
                if b.requests == 0 || b.per < Duration::from_secs(1) {
                    return Err(src.error(
                        &key,
                        "use at least 1 request per at least 1s (default 300 per 5m)",
                    ));
                }
                // requests / per must stay at or below Cloudflare's 1,200 / 300 s.
                let ours = f64::from(b.requests) / b.per.as_secs_f64();
                let theirs =
                    f64::from(CLOUDFLARE_LIMIT.requests) / CLOUDFLARE_LIMIT.per.as_secs_f64();
                if ours > theirs || b.requests > CLOUDFLARE_LIMIT.requests {
                    return Err(src.error(
                        &key,
                        "above Cloudflare's own limit of 1,200 requests per 5 minutes, whose breach \
                         blocks all calls for 5 minutes; stay well below (default 300 per 5m)",
                    ));
                }
                RateBudget {
                    requests: b.requests,
                    per: b.per,
                }
            }
        };
        let request_timeout = self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if request_timeout < Duration::from_millis(100)
            || request_timeout > Duration::from_secs(120)
        {
            return Err(src.error(
                &at.key("request_timeout"),
                "use 100ms to 120s (default 10s)",
            ));
        }
        let batch_size = self.batch_size_checked(src, at)?;
        Ok(CloudflareConfig {
            zone,
            api_token,
            api_url,
            budget,
            request_timeout,
            batch_size,
        })
    }
}

impl ProviderConfig {
    /// Reads the token (if any) and builds the provider.
    pub fn build(&self) -> Result<Arc<dyn DnsProvider>, BuildError> {
        match &self.kind {
            ProviderKind::Memory => Ok(Arc::new(MemoryProvider::new(self.retry))),
            ProviderKind::Builtin(_) => Err(BuildError::Provider(ProviderError::Rejected(
                "kind = \"builtin\" needs the NATS bucket: build it with \
                 provider::builtin::BuiltinProvider::new(store)"
                    .into(),
            ))),
            ProviderKind::Cloudflare(cf) => {
                let token = cf.api_token.resolve().map_err(BuildError::Token)?;
                Ok(Arc::new(
                    CloudflareProvider::new(CloudflareOptions {
                        api_url: cf.api_url.clone(),
                        zone: cf.zone.clone(),
                        token,
                        budget: cf.budget,
                        retry: self.retry,
                        request_timeout: cf.request_timeout,
                        batch_size: cf.batch_size,
                    })?
                    .with_token_source(cf.api_token.clone()),
                ))
            }
            ProviderKind::Rfc2136(c) => Ok(Arc::new(c.build(self.retry)?)),
            ProviderKind::Route53(c) => Ok(Arc::new(c.build(self.retry)?)),
        }
    }

    /// A Cloudflare configuration reading its token from `token_file`: for tests and the lab.
    pub fn cloudflare_with_token_file(api_url: &str, zone: Zone, token_file: PathBuf) -> Self {
        Self {
            kind: ProviderKind::Cloudflare(CloudflareConfig {
                zone,
                api_token: SecretRef {
                    env: None,
                    file: Some(token_file),
                },
                api_url: api_url.to_owned(),
                budget: RateBudget::default(),
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                batch_size: DEFAULT_BATCH_SIZE,
            }),
            retry: RetryPolicy::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        provider: RawProvider,
    }

    fn load(text: &str) -> Result<ProviderConfig, ConfigError> {
        let src = Source::inline("controller.toml", text);
        let doc: Doc = src.parse()?;
        doc.provider
            .validate(&src, &KeyPath::root().key("provider"))
    }

    #[test]
    fn a_full_cloudflare_table_is_read() {
        let c = load(
            "[provider]\nkind = \"cloudflare\"\nzone_name = \"example.com\"\n\
             api_token = { env = \"CLOUDFLARE_API_TOKEN\" }\nbudget = { requests = 120, per = \"1m\" }\n\
             max_attempts = 3\nbackoff = { base = \"1s\", max = \"20s\" }\nrequest_timeout = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.retry.base, Duration::from_secs(1));
        let ProviderKind::Cloudflare(cf) = c.kind else {
            panic!()
        };
        assert_eq!(cf.zone, Zone::Name("example.com".into()));
        assert_eq!(cf.api_url, DEFAULT_API_URL);
        assert_eq!(cf.budget.requests, 120);
        assert_eq!(cf.request_timeout, Duration::from_secs(5));
        assert_eq!(cf.batch_size, DEFAULT_BATCH_SIZE);
    }

    #[test]
    fn the_batch_size_is_one_to_3500_and_cloudflare_only() {
        let table = |extra: &str| {
            format!(
                "[provider]\nkind = \"cloudflare\"\nzone_id = \"abc\"\n\
                 api_token = {{ env = \"X\" }}\n{extra}"
            )
        };
        for (n, want) in [(1, 1), (200, 200), (3500, 3500)] {
            let c = load(&table(&format!("batch_size = {n}\n"))).unwrap();
            let ProviderKind::Cloudflare(cf) = c.kind else {
                panic!()
            };
            assert_eq!(cf.batch_size, want);
        }
        for n in [0, 3501, 100_000] {
            let err = load(&table(&format!("batch_size = {n}\n"))).unwrap_err();
            assert_eq!(err.key.as_deref(), Some("provider.batch_size"), "{err}");
            assert!(
                err.message.contains("use 1 (name by name) to 3,500"),
                "{err}"
            );
            assert_eq!(err.line, Some(5), "{err}");
        }
        let err = load(&table("batch_size = -1\n")).unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        let err = load("[provider]\nkind = \"memory\"\nbatch_size = 200\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("provider.batch_size"), "{err}");
        assert!(
            err.message.contains("only used with kind = \"cloudflare\""),
            "{err}"
        );
    }

    #[test]
    fn defaults_apply() {
        let c = load(
            "[provider]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\n\
             api_token = { file = \"/etc/sitewarden/cf.token\" }\n",
        )
        .unwrap();
        assert_eq!(c.retry, RetryPolicy::default());
        let ProviderKind::Cloudflare(cf) = c.kind else {
            panic!()
        };
        assert_eq!(cf.budget, RateBudget::default());
        assert_eq!(cf.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let cases = [
            (
                "kind = \"route54\"\n",
                "provider.kind",
                "unknown provider kind",
            ),
            (
                "kind = \"cloudflare\"\napi_token = { env = \"X\" }\n",
                "provider",
                "missing the zone",
            ),
            (
                "kind = \"cloudflare\"\nzone_id = \"abc\"\nzone_name = \"example.com\"\napi_token = { env = \"X\" }\n",
                "provider.zone_name",
                "not both",
            ),
            (
                "kind = \"cloudflare\"\nzone_id = \"abc\"\napi_token = { env = \"X\" }\nbudget = { requests = 2000, per = \"5m\" }\n",
                "provider.budget",
                "1,200",
            ),
            (
                "kind = \"cloudflare\"\nzone_id = \"abc\"\napi_token = { env = \"X\" }\napi_url = \"ftp://x\"\n",
                "provider.api_url",
                "http(s)",
            ),
            (
                "kind = \"memory\"\nmax_attempts = 0\n",
                "provider.max_attempts",
                "1 to 10",
            ),
            (
                "kind = \"memory\"\nzone_id = \"abc\"\n",
                "provider.zone_id",
                "only used with",
            ),
        ];
        for (body, key, msg) in cases {
            let err = load(&format!("[provider]\n{body}")).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{body}: {err}");
            assert!(err.message.contains(msg), "{body}: {err}");
            assert!(err.line.is_some(), "{body}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = load("[provider]\nkind = \"memory\"\nzonename = \"x\"\n").unwrap_err();
        assert!(err.message.contains("unknown field `zonename`"), "{err}");
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn a_missing_token_fails_at_build_naming_the_source() {
        let c = ProviderConfig::cloudflare_with_token_file(
            DEFAULT_API_URL,
            Zone::Id("abc".into()),
            PathBuf::from("/nonexistent/sitewarden/token"),
        );
        let err = c.build().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("/nonexistent/sitewarden/token"), "{err}");
        assert!(
            load("[provider]\nkind = \"memory\"\n")
                .unwrap()
                .build()
                .is_ok()
        );
    }
}
