//! `[provider] kind = "route53"`: the keys that configure the Route 53 provider, validated into
//! a [`Route53Config`] (called from [`crate::provider::config`]).
//!
//! ```toml
//! [provider]
//! kind = "route53"
//! hosted_zone_id = "Z0123456789ABCDEFGHIJ"
//! # Credentials: by default the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
//! # AWS_SESSION_TOKEN), else ~/.aws/credentials (profile AWS_PROFILE or "default"); or:
//! aws_access_key_id = { env = "SITEWARDEN_AWS_KEY_ID" }
//! aws_secret_access_key = { file = "/etc/sitewarden/aws.secret" }
//! endpoint_url = "https://route53.amazonaws.com" # default; tests point it at moto
//! region = "us-east-1"                           # default: the global endpoint's signing region
//! budget = { requests = 120, per = "1m" }        # default; Route 53 allows 5 per second
//! insync_timeout = "120s"                        # default: how long GetChange is polled
//! request_timeout = "10s"                        # default
//! batch_size = 100                               # default: names per change batch (1 to 250)
//! ```

use std::time::Duration;

use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source};

use super::batch::{DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, MAX_RESOURCE_RECORDS, RECORDS_PER_NAME};
use super::credentials::{CredentialSource, LiveCredentials};
use super::{
    DEFAULT_BUDGET, DEFAULT_ENDPOINT, DEFAULT_INSYNC_POLL, DEFAULT_INSYNC_TIMEOUT, DEFAULT_REGION,
    MIN_INTERVAL, ROUTE53_LIMIT, Route53Options, Route53Provider,
};
use crate::provider::RawProvider;
use crate::provider::budget::{RateBudget, RetryPolicy};
use crate::provider::config::BuildError;

/// Validated Route 53 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route53Config {
    /// The hosted zone id, without `/hostedzone/`.
    pub hosted_zone_id: String,
    /// API endpoint.
    pub endpoint_url: String,
    /// SigV4 region.
    pub region: String,
    /// Where the credentials come from (read at build, and again when refused or expiring).
    pub credentials: CredentialSource,
    /// Client-side budget.
    pub budget: RateBudget,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// How long a change is followed until INSYNC.
    pub insync_timeout: Duration,
    /// Names per change batch when many change at once (1: one name at a time).
    pub batch_size: usize,
}

impl Route53Config {
    /// Reads the credentials and builds the provider.
    pub fn build(&self, retry: RetryPolicy) -> Result<Route53Provider, BuildError> {
        let credentials =
            LiveCredentials::from_source(self.credentials.clone()).map_err(|message| {
                BuildError::Secret {
                    key: "aws credentials",
                    message,
                }
            })?;
        Ok(Route53Provider::new(Route53Options {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            hosted_zone_id: self.hosted_zone_id.clone(),
            credentials,
            budget: self.budget,
            retry,
            request_timeout: self.request_timeout,
            min_interval: MIN_INTERVAL,
            insync_timeout: self.insync_timeout,
            insync_poll: DEFAULT_INSYNC_POLL,
            batch_size: self.batch_size,
        })?)
    }
}

fn one_source(src: &Source, at: &KeyPath, key: &str, s: &SecretRef) -> Result<(), ConfigError> {
    if s.env.is_some() == s.file.is_some() {
        return Err(src.error(
            &at.key(key),
            "give exactly one of `env = \"VAR\"` or `file = \"/path\"`",
        ));
    }
    Ok(())
}

impl RawProvider {
    /// Validates the `kind = "route53"` keys of `[provider]`.
    pub(crate) fn route53(&self, src: &Source, at: &KeyPath) -> Result<Route53Config, ConfigError> {
        self.no_cloudflare_keys(src, at, "route53", &[])?;
        let Some(zone) = self.hosted_zone_id.as_deref() else {
            return Err(src.error(
                at,
                "missing `hosted_zone_id`, e.g. hosted_zone_id = \"Z0123456789ABCDEFGHIJ\" \
                 (Route 53 console, Hosted zone details)",
            ));
        };
        let zone = zone.trim().trim_start_matches("/hostedzone/");
        if zone.is_empty() || zone.len() > 32 || !zone.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(src.error(
                &at.key("hosted_zone_id"),
                format!("{zone:?} is not a hosted zone id like \"Z0123456789ABCDEFGHIJ\""),
            ));
        }
        let endpoint_url = self
            .endpoint_url
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        match reqwest::Url::parse(&endpoint_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => {
                return Err(src.error(
                    &at.key("endpoint_url"),
                    format!("{endpoint_url:?} is not an http(s) URL; the default is {DEFAULT_ENDPOINT:?}"),
                ));
            }
        }
        let region = self
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(src.error(
                &at.key("region"),
                format!("{region:?} is not an AWS region like \"us-east-1\" (the default)"),
            ));
        }
        let credentials = match (
            &self.aws_access_key_id,
            &self.aws_secret_access_key,
            &self.aws_session_token,
        ) {
            (None, None, None) => CredentialSource::Default,
            (Some(id), Some(secret), token) => {
                one_source(src, at, "aws_access_key_id", id)?;
                one_source(src, at, "aws_secret_access_key", secret)?;
                if let Some(t) = token {
                    one_source(src, at, "aws_session_token", t)?;
                }
                CredentialSource::Configured {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                    session_token: token.clone(),
                }
            }
            (None, Some(_), _) | (None, None, Some(_)) => {
                return Err(src.error(
                    at,
                    "missing `aws_access_key_id`: configure it with `aws_secret_access_key`, or \
                     remove both to use the AWS environment or ~/.aws/credentials",
                ));
            }
            (Some(_), None, _) => {
                return Err(src.error(
                    at,
                    "missing `aws_secret_access_key`: configure it with `aws_access_key_id`, or \
                     remove both to use the AWS environment or ~/.aws/credentials",
                ));
            }
        };
        let budget = self.budget_within(
            src,
            at,
            ROUTE53_LIMIT,
            "Route 53's own limit of 5 requests per second per account",
            DEFAULT_BUDGET,
        )?;
        let insync_timeout = self.insync_timeout.unwrap_or(DEFAULT_INSYNC_TIMEOUT);
        if insync_timeout < Duration::from_secs(1) || insync_timeout > Duration::from_secs(900) {
            return Err(src.error(&at.key("insync_timeout"), "use 1s to 15m (default 120s)"));
        }
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(src.error(
                &at.key("batch_size"),
                format!(
                    "use 1 to {MAX_BATCH_SIZE} names (default {DEFAULT_BATCH_SIZE}): each name \
                     costs {RECORDS_PER_NAME} of the {MAX_RESOURCE_RECORDS} records Route 53 \
                     accepts in one change batch; 1 changes names one at a time"
                ),
            ));
        }
        Ok(Route53Config {
            hosted_zone_id: zone.to_owned(),
            endpoint_url,
            region,
            credentials,
            budget,
            request_timeout: self.request_timeout_checked(src, at)?,
            insync_timeout,
            batch_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::config::{DEFAULT_REQUEST_TIMEOUT, ProviderConfig, ProviderKind};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Doc {
        provider: RawProvider,
    }

    fn load(text: &str) -> Result<ProviderConfig, ConfigError> {
        let src = Source::inline("controller.toml", text);
        let doc: Doc = src.parse()?;
        doc.provider
            .validate(&src, &KeyPath::root().key("provider"))
    }

    const GOOD: &str =
        "[provider]\nkind = \"route53\"\nhosted_zone_id = \"/hostedzone/Z0123456789ABCDEFGHIJ\"\n";

    #[test]
    fn a_minimal_table_gets_the_defaults() {
        let c = load(GOOD).unwrap();
        let ProviderKind::Route53(r) = c.kind else {
            panic!("{:?}", c.kind)
        };
        assert_eq!(r.hosted_zone_id, "Z0123456789ABCDEFGHIJ");
        assert_eq!(r.endpoint_url, DEFAULT_ENDPOINT);
        assert_eq!(r.region, "us-east-1");
        assert_eq!(r.credentials, CredentialSource::Default);
        assert_eq!(r.budget, DEFAULT_BUDGET);
        assert_eq!(r.insync_timeout, DEFAULT_INSYNC_TIMEOUT);
        assert_eq!(r.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(r.batch_size, DEFAULT_BATCH_SIZE);
        let one = load(&format!("{GOOD}batch_size = 1\n")).unwrap();
        assert!(matches!(one.kind, ProviderKind::Route53(r) if r.batch_size == 1));
    }

    #[test]
    fn configured_credentials_are_read_as_sources() {
        let c = load(&format!(
            "{GOOD}aws_access_key_id = {{ env = \"K\" }}\naws_secret_access_key = {{ file = \"/s\" }}\n\
             endpoint_url = \"http://127.0.0.1:5000\"\nbudget = {{ requests = 3, per = \"1s\" }}\n"
        ))
        .unwrap();
        let ProviderKind::Route53(r) = c.kind else {
            panic!()
        };
        assert!(matches!(r.credentials, CredentialSource::Configured { .. }));
        assert_eq!(r.budget.requests, 3);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let cases = [
            (
                "[provider]\nkind = \"route53\"\n".to_owned(),
                "provider",
                "hosted_zone_id",
            ),
            (
                "[provider]\nkind = \"route53\"\nhosted_zone_id = \"Z/../x\"\n".to_owned(),
                "provider.hosted_zone_id",
                "not a hosted zone id",
            ),
            (
                format!("{GOOD}endpoint_url = \"ftp://x\"\n"),
                "provider.endpoint_url",
                "http(s)",
            ),
            (
                format!("{GOOD}region = \"US East\"\n"),
                "provider.region",
                "AWS region",
            ),
            (
                format!("{GOOD}aws_secret_access_key = {{ env = \"S\" }}\n"),
                "provider",
                "missing `aws_access_key_id`",
            ),
            (
                format!("{GOOD}aws_access_key_id = {{ env = \"K\" }}\n"),
                "provider",
                "missing `aws_secret_access_key`",
            ),
            (
                format!(
                    "{GOOD}aws_access_key_id = {{ env = \"K\", file = \"/k\" }}\naws_secret_access_key = {{ env = \"S\" }}\n"
                ),
                "provider.aws_access_key_id",
                "exactly one",
            ),
            (
                format!("{GOOD}budget = {{ requests = 10, per = \"1s\" }}\n"),
                "provider.budget",
                "5 requests per second",
            ),
            (
                format!("{GOOD}insync_timeout = \"1h\"\n"),
                "provider.insync_timeout",
                "1s to 15m",
            ),
            (
                format!("{GOOD}batch_size = 0\n"),
                "provider.batch_size",
                "use 1 to 250 names",
            ),
            (
                format!("{GOOD}batch_size = 251\n"),
                "provider.batch_size",
                "1000 records Route 53 accepts",
            ),
            (
                format!("{GOOD}zone_id = \"abc\"\n"),
                "provider.zone_id",
                "not used with kind = \"route53\"",
            ),
            (
                format!("{GOOD}zone = \"example.com\"\n"),
                "provider.zone",
                "builtin",
            ),
            (
                format!("{GOOD}tsig_key_name = \"k\"\n"),
                "provider.tsig_key_name",
                "rfc2136",
            ),
        ];
        for (body, key, msg) in cases {
            let err = load(&body).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{body}: {err}");
            assert!(err.message.contains(msg), "{body}: {err}");
            assert!(err.line.is_some(), "{body}: {err}");
        }
    }

    #[test]
    fn route53_keys_are_refused_under_other_kinds() {
        let err = load("[provider]\nkind = \"memory\"\nhosted_zone_id = \"Z1\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("provider.hosted_zone_id"));
        assert!(err.message.contains("kind = \"route53\""), "{err}");
        let err = load("[provider]\nkind = \"memory\"\nbatch_size = 10\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("provider.batch_size"));
        assert!(err.message.contains("\"route53\" or \"rfc2136\""), "{err}");
    }
}
