//! `[provider] kind = "rfc2136"`: the keys that configure dynamic UPDATE with TSIG, validated
//! into an [`Rfc2136Config`] (called from [`crate::provider::config`]).
//!
//! ```toml
//! [provider]
//! kind = "rfc2136"
//! server = "192.0.2.53:53"                     # the zone's primary, ip:port
//! zone = "example.com"                         # the zone holding the managed names
//! tsig_key_name = "sitewarden-update"          # as in the server's `key "…" { … }`
//! tsig_algorithm = "hmac-sha256"               # default; or hmac-sha384, hmac-sha512
//! tsig_secret = { env = "SITEWARDEN_TSIG_SECRET" } # or { file = "/etc/sitewarden/tsig.secret" }; base64
//! request_timeout = "10s"                      # default
//! batch_size = 100                             # default: names per UPDATE (1 to 250)
//! max_attempts = 4                             # and backoff, retry_deadline: as for every kind
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source};

use super::batch::{DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE};
use super::{Rfc2136Options, Rfc2136Provider, TsigAlgorithm, TsigKey};
use crate::provider::RawProvider;
use crate::provider::budget::RetryPolicy;
use crate::provider::config::BuildError;

/// Validated RFC 2136 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136Config {
    /// The zone's primary.
    pub server: SocketAddr,
    /// The zone, without a trailing dot.
    pub zone: String,
    /// The TSIG key's name.
    pub tsig_key_name: String,
    /// The TSIG algorithm.
    pub tsig_algorithm: TsigAlgorithm,
    /// Where the base64 secret comes from (read at build).
    pub tsig_secret: SecretRef,
    /// Per-exchange timeout.
    pub request_timeout: Duration,
    /// Names per UPDATE when many change at once (1: one name at a time).
    pub batch_size: usize,
}

impl Rfc2136Config {
    /// Reads the secret and builds the provider.
    pub fn build(&self, retry: RetryPolicy) -> Result<Rfc2136Provider, BuildError> {
        let secret = self
            .tsig_secret
            .resolve()
            .map_err(|message| BuildError::Secret {
                key: "tsig_secret",
                message,
            })?;
        Ok(Rfc2136Provider::new(Rfc2136Options {
            server: self.server,
            zone: self.zone.clone(),
            key: TsigKey {
                name: self.tsig_key_name.clone(),
                algorithm: self.tsig_algorithm,
                secret,
            },
            retry,
            request_timeout: self.request_timeout,
            batch_size: self.batch_size,
        })?)
    }
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`, each 1–63 characters.
pub(crate) fn dns_name_ok(name: &str) -> bool {
    let n = name.trim_end_matches('.');
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl RawProvider {
    /// Validates the `kind = "rfc2136"` keys of `[provider]`.
    pub(crate) fn rfc2136(&self, src: &Source, at: &KeyPath) -> Result<Rfc2136Config, ConfigError> {
        self.no_cloudflare_keys(src, at, "rfc2136", &[("budget", self.budget.is_some())])?;
        let Some(server) = self.server.as_deref() else {
            return Err(src.error(
                at,
                "missing `server`, the zone's primary, e.g. server = \"192.0.2.53:53\"",
            ));
        };
        let server = match server.trim().parse::<SocketAddr>() {
            Ok(s) if s.port() != 0 => s,
            _ if server.trim().parse::<IpAddr>().is_ok() => {
                return Err(src.error(
                    &at.key("server"),
                    format!("{server:?} has no port; write it as \"{server}:53\""),
                ));
            }
            _ => {
                return Err(src.error(
                    &at.key("server"),
                    format!(
                        "{server:?} is not an ip:port address like \"192.0.2.53:53\" or \
                         \"[2001:db8::53]:53\" (host names are not resolved)"
                    ),
                ));
            }
        };
        let Some(zone) = self.zone.as_deref() else {
            return Err(src.error(at, "missing `zone`, e.g. zone = \"example.com\""));
        };
        if !dns_name_ok(zone) || !zone.contains('.') {
            return Err(src.error(
                &at.key("zone"),
                format!("{zone:?} is not a zone name like \"example.com\""),
            ));
        }
        let Some(key_name) = self.tsig_key_name.as_deref() else {
            return Err(src.error(
                at,
                "missing `tsig_key_name`, the key's name in the server's configuration, \
                 e.g. tsig_key_name = \"sitewarden-update\"",
            ));
        };
        if !dns_name_ok(key_name) {
            return Err(src.error(
                &at.key("tsig_key_name"),
                format!("{key_name:?} is not a key name (letters, digits, '-', '_' and dots)"),
            ));
        }
        let algorithm = match self.tsig_algorithm.as_deref() {
            None => TsigAlgorithm::HmacSha256,
            Some(a) => TsigAlgorithm::parse(a).ok_or_else(|| {
                src.error(
                    &at.key("tsig_algorithm"),
                    format!(
                        "{a:?} is not supported; use \"hmac-sha256\" (default), \"hmac-sha384\" \
                         or \"hmac-sha512\""
                    ),
                )
            })?,
        };
        let Some(secret) = self.tsig_secret.clone() else {
            return Err(src.error(
                at,
                "missing `tsig_secret`; set tsig_secret = { env = \"SITEWARDEN_TSIG_SECRET\" } \
                 or { file = \"/etc/sitewarden/tsig.secret\" } (the base64 secret from tsig-keygen)",
            ));
        };
        if secret.env.is_some() == secret.file.is_some() {
            return Err(src.error(
                &at.key("tsig_secret"),
                "give exactly one of `env = \"VAR\"` or `file = \"/path\"`",
            ));
        }
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(src.error(
                &at.key("batch_size"),
                format!(
                    "use 1 to {MAX_BATCH_SIZE} names (default {DEFAULT_BATCH_SIZE}): every name's \
                     records must fit in one UPDATE of at most 65,535 bytes; 1 changes names one \
                     at a time"
                ),
            ));
        }
        Ok(Rfc2136Config {
            server,
            zone: zone.trim_end_matches('.').to_ascii_lowercase(),
            tsig_key_name: key_name.trim_end_matches('.').to_owned(),
            tsig_algorithm: algorithm,
            tsig_secret: secret,
            request_timeout: self.request_timeout_checked(src, at)?,
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

    const GOOD: &str = "[provider]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:5353\"\n\
                        zone = \"Example.com.\"\ntsig_key_name = \"sitewarden-update\"\n\
                        tsig_secret = { env = \"SITEWARDEN_TSIG_SECRET\" }\n";

    #[test]
    fn a_minimal_table_gets_the_defaults() {
        let c = load(GOOD).unwrap();
        let ProviderKind::Rfc2136(r) = c.kind else {
            panic!("{:?}", c.kind)
        };
        assert_eq!(r.server, "127.0.0.1:5353".parse().unwrap());
        assert_eq!(r.zone, "example.com");
        assert_eq!(r.tsig_algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(r.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(r.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(c.retry, RetryPolicy::default());
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let base = "[provider]\nkind = \"rfc2136\"\n";
        let full = |extra: &str, without: &str| {
            let mut t = GOOD.to_owned();
            if !without.is_empty() {
                t = t
                    .lines()
                    .filter(|l| !l.starts_with(without))
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n";
            }
            t + extra
        };
        let cases = [
            (
                format!("{base}zone = \"example.com\"\n"),
                "provider",
                "missing `server`",
            ),
            (
                full("", "server").replace("kind", "server = \"127.0.0.1\"\nkind"),
                "provider.server",
                "no port",
            ),
            (
                full("", "server").replace("kind", "server = \"ns1.example.com:53\"\nkind"),
                "provider.server",
                "ip:port",
            ),
            (full("", "zone"), "provider", "missing `zone`"),
            (
                full("", "zone").replace("kind", "zone = \"bad zone\"\nkind"),
                "provider.zone",
                "not a zone name",
            ),
            (
                full("", "tsig_key_name"),
                "provider",
                "missing `tsig_key_name`",
            ),
            (
                full("tsig_algorithm = \"hmac-md5\"\n", ""),
                "provider.tsig_algorithm",
                "hmac-sha256",
            ),
            (full("", "tsig_secret"), "provider", "missing `tsig_secret`"),
            (
                full("", "tsig_secret")
                    .replace("kind", "tsig_secret = { env = \"A\", file = \"/b\" }\nkind"),
                "provider.tsig_secret",
                "exactly one",
            ),
            (
                full("api_token = { env = \"X\" }\n", ""),
                "provider.api_token",
                "not used with kind = \"rfc2136\"",
            ),
            (
                full("budget = { requests = 1, per = \"1s\" }\n", ""),
                "provider.budget",
                "not used",
            ),
            (
                full("hosted_zone_id = \"Z1\"\n", ""),
                "provider.hosted_zone_id",
                "only used with kind = \"route53\"",
            ),
            (
                full("batch_size = 0\n", ""),
                "provider.batch_size",
                "use 1 to 250 names",
            ),
            (
                full("batch_size = 1000\n", ""),
                "provider.batch_size",
                "65,535 bytes",
            ),
            (
                full("request_timeout = \"5m\"\n", ""),
                "provider.request_timeout",
                "100ms to 120s",
            ),
            (
                full("nameservers = [\"ns1.example.com\"]\n", ""),
                "provider.nameservers",
                "builtin",
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
    fn rfc2136_keys_are_refused_under_other_kinds() {
        let err = load("[provider]\nkind = \"memory\"\ntsig_key_name = \"k\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("provider.tsig_key_name"));
        assert!(err.message.contains("kind = \"rfc2136\""), "{err}");
        let err = load(
            "[provider]\nkind = \"cloudflare\"\nzone_id = \"abc\"\napi_token = { env = \"X\" }\nzone = \"example.com\"\n",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("provider.zone"));
    }

    #[test]
    fn a_missing_secret_fails_at_build_naming_the_key_and_source() {
        let c = load(
            "[provider]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:5353\"\nzone = \"example.com\"\n\
             tsig_key_name = \"k\"\ntsig_secret = { file = \"/nonexistent/sitewarden/tsig\" }\n",
        )
        .unwrap();
        let err = c.build().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("provider.tsig_secret"), "{err}");
        assert!(err.contains("/nonexistent/sitewarden/tsig"), "{err}");
    }
}
