//! The Cloudflare v4 provider: CNAME records in one zone, changed through the `cloudflare` crate.
//!
//! The zone is configured by id, or by name and looked up once (`GET zones?name=`, cached). Each
//! change is the shared compare-and-set ([`cas::apply`]): `GET dns_records?type=CNAME&name=`,
//! `PATCH dns_records/{id}` with `content`, `comment` (our marker) and, only when the namespace
//! sets one, `ttl` — so `proxied` and the record's TTL are preserved — then a read-back. Every
//! call spends a token from the client-side [`Budget`].
//!
//! Errors map to [`ProviderError`]: 401/403 → `Auth` (never retried), 429 → `RateLimited`
//! (the crate exposes no response headers, so `Retry-After` cannot be read and the backoff
//! follows the schedule), 5xx and transport failures (timeouts, resets, garbled bodies) →
//! `Transient`, other 4xx → `Rejected`. The API token is a [`SecretString`]; this type has no
//! `Debug` that could print it, and error messages are scrubbed of it before they leave.

mod endpoints;

use std::time::Duration;

use cloudflare::framework::auth::Credentials;
use cloudflare::framework::client::ClientConfig;
use cloudflare::framework::client::async_api::Client;
use cloudflare::framework::response::ApiFailure;
use cloudflare::framework::{Environment, endpoint::spec::EndpointSpec};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use super::budget::{Budget, RateBudget, RetryPolicy, StatsSnapshot};
use super::cas::{self, RecordStore};
use super::decide::Patch;
use super::{
    ApplyOutcome, Change, DnsProvider, Marker, ProviderError, ProviderFuture, RecordState,
};
use endpoints::{DnsRecord, ListCnames, ListZones, PatchBody, PatchRecord};

/// Cloudflare's production API base.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";

/// Which zone holds the managed names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// The zone id (32 hex digits in the dashboard's Overview page); no lookup needed.
    Id(String),
    /// The zone name (`example.com`); its id is looked up once and cached.
    Name(String),
}

/// Everything the provider needs.
#[derive(Debug)]
pub struct CloudflareOptions {
    /// API base URL, e.g. [`DEFAULT_API_URL`] or an emulator's.
    pub api_url: String,
    /// The zone.
    pub zone: Zone,
    /// API token with Zone:DNS:Edit on the zone (Zone:Zone:Read too when the zone is by name).
    pub token: SecretString,
    /// Client-side rate budget.
    pub budget: RateBudget,
    /// Retry policy for soft failures.
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

/// The Cloudflare provider. Deliberately without `Debug`: it holds the API token.
pub struct CloudflareProvider {
    api: Api,
    zone: Zone,
    zone_id: OnceCell<String>,
    budget: Budget,
}

/// The crate's client and the token (kept only to scrub it from error messages).
struct Api {
    client: Client,
    token: SecretString,
}

impl CloudflareProvider {
    /// Builds the provider; fails on an unusable `api_url` or HTTP client setup.
    pub fn new(options: CloudflareOptions) -> Result<Self, ProviderError> {
        let mut base = options.api_url.trim().to_owned();
        // The crate joins relative paths onto the base: without a trailing slash, the last
        // segment (`v4`) would be replaced.
        if !base.ends_with('/') {
            base.push('/');
        }
        match reqwest::Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => {
                return Err(ProviderError::Rejected(format!(
                    "api_url {:?} is not an http(s) URL",
                    options.api_url
                )));
            }
        }
        let client = Client::new(
            Credentials::UserAuthToken {
                token: options.token.expose_secret().to_owned(),
            },
            ClientConfig {
                http_timeout: options.request_timeout,
                ..ClientConfig::default()
            },
            Environment::Custom(base),
        )
        .map_err(|e| ProviderError::Rejected(format!("cannot build the HTTP client: {e}")))?;
        if let Zone::Id(id) | Zone::Name(id) = &options.zone
            && !safe_segment(id)
        {
            return Err(ProviderError::Rejected(format!(
                "zone {id:?} is not a valid zone id or name"
            )));
        }
        Ok(Self {
            api: Api {
                client,
                token: options.token,
            },
            zone: options.zone,
            zone_id: OnceCell::new(),
            budget: Budget::new(options.budget, options.retry),
        })
    }

    /// The zone id: configured, or looked up by name once.
    async fn zone_id(&self) -> Result<&str, ProviderError> {
        let id = self
            .zone_id
            .get_or_try_init(|| async {
                match &self.zone {
                    Zone::Id(id) => Ok(id.clone()),
                    Zone::Name(name) => self.budget.retrying(|| self.api.find_zone(name)).await,
                }
            })
            .await?;
        Ok(id.as_str())
    }
}

impl Api {
    async fn call<E>(&self, endpoint: &E) -> Result<E::ResponseType, ProviderError>
    where
        E: EndpointSpec + Send + Sync,
        E::ResponseType: cloudflare::framework::response::ResponseConverter<E::JsonResponse>,
    {
        self.client
            .request(endpoint)
            .await
            .map_err(|f| scrub(classify(f), &self.token))
    }

    async fn find_zone(&self, name: &str) -> Result<String, ProviderError> {
        let zones = self.call(&ListZones { name }).await?.result.0;
        let mut matching = zones
            .into_iter()
            .filter(|z| super::same_host(&z.name, name));
        match (matching.next(), matching.next()) {
            (Some(z), None) if safe_segment(&z.id) => Ok(z.id),
            (Some(_), Some(_)) => Err(ProviderError::Rejected(format!(
                "more than one zone is named {name}; configure `zone_id`"
            ))),
            _ => Err(ProviderError::Rejected(format!(
                "no zone named {name} is visible to this token; check the name and that the token \
                 has Zone:Zone:Read, or configure `zone_id`"
            ))),
        }
    }
}

/// One zone's records, for the shared compare-and-set.
struct ZoneRecords<'a> {
    api: &'a Api,
    zone: &'a str,
}

impl RecordStore for ZoneRecords<'_> {
    async fn fetch(&self, name: &str) -> Result<RecordState, ProviderError> {
        let records = self
            .api
            .call(&ListCnames {
                zone: self.zone,
                name,
            })
            .await?
            .result
            .0;
        let mut cnames = records
            .into_iter()
            .filter(|r| r.kind.eq_ignore_ascii_case("CNAME") && super::same_host(&r.name, name));
        match (cnames.next(), cnames.next()) {
            (None, _) => Ok(RecordState {
                name: name.to_owned(),
                ..RecordState::default()
            }),
            (Some(r), None) => Ok(state_of(r)),
            (Some(_), Some(_)) => Err(ProviderError::Rejected(format!(
                "Cloudflare lists more than one CNAME for {name}"
            ))),
        }
    }

    async fn write(&self, current: &RecordState, patch: &Patch) -> Result<(), ProviderError> {
        let id = current
            .provider_id
            .as_deref()
            .filter(|id| safe_segment(id))
            .ok_or_else(|| {
                ProviderError::Rejected(format!("record {} has no usable id", current.name))
            })?;
        let body = serde_json::to_string(&PatchBody {
            content: &patch.content,
            comment: &patch.comment,
            ttl: patch.ttl,
        })
        .map_err(|e| ProviderError::Rejected(format!("cannot encode the change: {e}")))?;
        self.api
            .call(&PatchRecord {
                zone: self.zone,
                id,
                body,
            })
            .await?;
        Ok(())
    }
}

fn state_of(r: DnsRecord) -> RecordState {
    RecordState {
        marker: r.comment.as_deref().and_then(Marker::parse),
        name: r.name,
        content: Some(r.content),
        ttl: Some(r.ttl),
        proxied: r.proxied,
        provider_id: Some(r.id),
        comment: r.comment,
    }
}

/// Ids and zone names go into URL paths: letters, digits, `-`, `_` and `.` only.
fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Maps the crate's failure to our error classes.
fn classify(failure: ApiFailure) -> ProviderError {
    match failure {
        ApiFailure::Error(status, errors) => {
            let detail = errors
                .errors
                .iter()
                .map(|e| format!("{} {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            let what = format!("Cloudflare answered HTTP {}: {detail}", status.as_u16());
            match status.as_u16() {
                401 | 403 => ProviderError::Auth(what),
                // The crate drops response headers, so Retry-After is not visible here.
                429 => ProviderError::RateLimited { retry_after: None },
                408 | 500..=599 => ProviderError::Transient(what),
                _ => ProviderError::Rejected(what),
            }
        }
        // Timeouts, refused or reset connections, bodies cut short or not JSON.
        ApiFailure::Invalid(e) => {
            ProviderError::Transient(format!("Cloudflare request failed: {e}"))
        }
    }
}

/// Removes the token from a message, should a server or library ever echo it.
fn scrub(error: ProviderError, token: &SecretString) -> ProviderError {
    let token = token.expose_secret();
    if token.is_empty() {
        return error;
    }
    let clean = |s: String| s.replace(token, "[REDACTED]");
    match error {
        ProviderError::Auth(s) => ProviderError::Auth(clean(s)),
        ProviderError::Transient(s) => ProviderError::Transient(clean(s)),
        ProviderError::Rejected(s) => ProviderError::Rejected(clean(s)),
        other => other,
    }
}

impl DnsProvider for CloudflareProvider {
    fn kind(&self) -> &'static str {
        "cloudflare"
    }

    fn read<'a>(&'a self, name: &'a str) -> ProviderFuture<'a, RecordState> {
        Box::pin(async move {
            let zone = self.zone_id().await?;
            let store = ZoneRecords {
                api: &self.api,
                zone,
            };
            cas::read(&store, &self.budget, name).await
        })
    }

    fn apply<'a>(&'a self, change: &'a Change) -> ProviderFuture<'a, ApplyOutcome> {
        Box::pin(async move {
            let zone = self.zone_id().await?;
            let store = ZoneRecords {
                api: &self.api,
                zone,
            };
            cas::apply(&store, &self.budget, change).await
        })
    }

    fn stats(&self) -> StatsSnapshot {
        self.budget.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_api_url_is_an_error_not_a_panic() {
        for url in ["not a url", "ftp://x/", "http://"] {
            let r = CloudflareProvider::new(CloudflareOptions {
                api_url: url.into(),
                zone: Zone::Id("abc".into()),
                token: SecretString::from("t0ken".to_owned()),
                budget: RateBudget::default(),
                retry: RetryPolicy::default(),
                request_timeout: Duration::from_secs(1),
            });
            assert!(matches!(r, Err(ProviderError::Rejected(_))), "{url}");
        }
    }

    #[test]
    fn the_token_is_scrubbed_from_messages() {
        let t = SecretString::from("s3cr3t-token".to_owned());
        let e = scrub(ProviderError::Auth("bad s3cr3t-token here".into()), &t);
        assert_eq!(e, ProviderError::Auth("bad [REDACTED] here".into()));
    }

    #[test]
    fn path_segments_are_checked() {
        assert!(safe_segment("023e105f4ecef8ad9ca31a8372d0c353"));
        assert!(safe_segment("example.com"));
        for bad in ["", "..", "a/b", "a?b", "a b"] {
            assert!(!safe_segment(bad), "{bad:?}");
        }
    }
}
