//! The Cloudflare v4 provider: CNAME records in one zone, changed with the `cloudflare` crate's
//! endpoint and envelope types, sent over the workspace's reqwest.
//!
//! The zone is configured by id, or by name and looked up once (`GET zones?name=`, cached). Each
//! change is the shared compare-and-set ([`cas::apply`]): `GET dns_records?type=CNAME&name=`,
//! `PATCH dns_records/{id}` with `content`, `comment` (our marker) and, only when the namespace
//! sets one, `ttl` — so `proxied` and the record's TTL are preserved — then a read-back. Every
//! call spends a token from the client-side [`Budget`].
//!
//! Many changes at once ([`DnsProvider::apply_many`], a mass failover) go through the batched
//! compare-and-set ([`super::batch::apply_many`]): the zone's CNAMEs listed in pages of 5,000,
//! the writes in `POST dns_records/batch` calls of up to `batch_size` records (200 by default,
//! the Free plan's limit; 3,500 on paid plans), and one more listing to verify — a failover of
//! 10,000 names costs about 54 calls instead of 30,000. See [`batch`]. With `batch_size = 1`
//! every change takes the one-name path above.
//!
//! Why not the crate's own client: it turns an answer into `ApiFailure::Error(status, errors)`
//! and drops the response headers, so a 429's `retry-after` is lost — and over Cloudflare's
//! limit *every* call is refused for up to 5 minutes, so every call can meet a 429. A blind
//! backoff burned 40 refusals in 27 s during one sustained block. So each call is built from
//! the same [`EndpointSpec`] (method, path, query, JSON body), sent by our reqwest client to the
//! same base URL with the same `Authorization: Bearer` token, and its answer read into the
//! crate's `ApiSuccess` envelope — with the headers still in hand. An error answer is read into
//! our own `{errors: [{code, message}]}`: the crate keeps a code in a `u16`, too small for
//! Cloudflare's DNS codes (81044, 81053…), and would lose every error message with it.
//!
//! Errors map to [`ProviderError`]: 401/403 → `Auth` (never retried), 429 →
//! `RateLimited { retry_after: Some(d) }` with `d` from `retry-after` (seconds), or
//! [`DEFAULT_RATE_LIMIT_BLOCK`] when the header is missing or unreadable; the [`Budget`] then
//! holds every call back until the block ends. 5xx and transport failures (timeouts, resets,
//! garbled bodies) → `Transient`, other 4xx → `Rejected`. The API token is a [`SecretString`];
//! it is sent as a sensitive header, this type has no `Debug` that could print it, and error
//! messages are scrubbed of it before they leave.

mod batch;
mod endpoints;

use std::time::Duration;

use cloudflare::framework::endpoint::RequestBody;
use cloudflare::framework::endpoint::spec::EndpointSpec;
use cloudflare::framework::response::{ApiResult, ApiSuccess};
use reqwest::{StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use super::batch::BatchStore;
use super::budget::{Budget, RateBudget, RetryPolicy, StatsSnapshot};
use super::cas::{self, RecordStore};
use super::decide::Patch;
use super::{
    ApplyOutcome, BatchFuture, Change, DnsProvider, Marker, ONE_BY_ONE_IN_FLIGHT, ProviderError,
    ProviderFuture, RecordState,
};
pub use batch::{DEFAULT_BATCH_SIZE, LIST_PAGE_SIZE, MAX_BATCH_SIZE, ONE_NAME_READS_UP_TO};
use endpoints::{DnsRecord, ErrorAnswer, ListCnames, ListZones, PatchBody, PatchRecord};

/// Cloudflare's production API base.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";

/// How long a 429 without a readable `retry-after` blocks every call. Cloudflare's block lasts
/// up to 5 minutes and it documents sending `retry-after`; without one, a minute keeps us from
/// hammering a blocked API while still trying again well within the block's longest span.
pub const DEFAULT_RATE_LIMIT_BLOCK: Duration = Duration::from_secs(60);

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
    /// Records one batch write carries, 1 to [`MAX_BATCH_SIZE`] ([`DEFAULT_BATCH_SIZE`]: the
    /// Free plan's limit); `1` applies many changes name by name, three calls each.
    pub batch_size: usize,
}

/// The Cloudflare provider. Deliberately without `Debug`: it holds the API token.
pub struct CloudflareProvider {
    api: Api,
    zone: Zone,
    zone_id: OnceCell<String>,
    budget: Budget,
    /// Records one batch write carries; `1`: the one-name path.
    batch_size: usize,
}

/// The HTTP client, the API base and the token.
struct Api {
    /// Our reqwest client (see the module docs for why not the crate's).
    http: reqwest::Client,
    /// The API base with a trailing slash, e.g. `https://api.cloudflare.com/client/v4/`.
    base: Url,
    /// Sent as `Authorization: Bearer …`, marked sensitive; also scrubbed from error messages.
    /// Replaced when the token's source holds a new one (see [`CloudflareProvider::with_token_source`]).
    token: std::sync::RwLock<SecretString>,
    /// Where the token came from: read again when the API refuses the credentials, so a
    /// rotated token is picked up by the next call without a restart.
    source: Option<sitewarden_shared::config::secret::SecretRef>,
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
        let base = match Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => {
                return Err(ProviderError::Rejected(format!(
                    "api_url {:?} is not an http(s) URL",
                    options.api_url
                )));
            }
        };
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .build()
            .map_err(|e| ProviderError::Rejected(format!("cannot build the HTTP client: {e}")))?;
        if let Zone::Id(id) | Zone::Name(id) = &options.zone
            && !safe_segment(id)
        {
            return Err(ProviderError::Rejected(format!(
                "zone {id:?} is not a valid zone id or name"
            )));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&options.batch_size) {
            return Err(ProviderError::Rejected(format!(
                "batch_size {} is out of range; use 1 (name by name) to {MAX_BATCH_SIZE} (paid \
                 plans), {DEFAULT_BATCH_SIZE} on the Free plan",
                options.batch_size
            )));
        }
        Ok(Self {
            api: Api {
                http,
                base,
                token: std::sync::RwLock::new(options.token),
                source: None,
            },
            zone: options.zone,
            zone_id: OnceCell::new(),
            budget: Budget::new(options.budget, options.retry),
            batch_size: options.batch_size,
        })
    }

    /// Reads the token again from `source` whenever the API refuses the credentials; if it
    /// changed (rotated), the call is sent once more with the new one.
    pub fn with_token_source(
        mut self,
        source: sitewarden_shared::config::secret::SecretRef,
    ) -> Self {
        self.api.source = Some(source);
        self
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

    /// The zone's records, for the compare-and-set.
    async fn records(&self) -> Result<ZoneRecords<'_>, ProviderError> {
        Ok(ZoneRecords {
            api: &self.api,
            zone: self.zone_id().await?,
            limit: self.batch_size,
        })
    }
}

impl Api {
    /// Sends `endpoint` and reads its answer, keeping the `retry-after` of a 429.
    async fn call<E>(&self, endpoint: &E) -> Result<ApiSuccess<E::JsonResponse>, ProviderError>
    where
        E: EndpointSpec,
        E::JsonResponse: ApiResult,
    {
        let token = self.token();
        match self.send(endpoint, &token).await {
            Err(ProviderError::Auth(_)) if self.refreshed_token(&token) => {
                let token = self.token();
                self.send(endpoint, &token)
                    .await
                    .map_err(|e| scrub(e, &token))
            }
            r => r.map_err(|e| scrub(e, &token)),
        }
    }

    /// The current token.
    fn token(&self) -> SecretString {
        match self.token.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the token's source again; true when it now holds a different token (kept).
    fn refreshed_token(&self, used: &SecretString) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let fresh = match source.resolve() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot read the Cloudflare API token again: {e}");
                return false;
            }
        };
        if fresh.expose_secret() == used.expose_secret() {
            return false;
        }
        tracing::info!("the Cloudflare API token changed at its source; using the new one");
        match self.token.write() {
            Ok(mut t) => *t = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        true
    }

    async fn send<E>(
        &self,
        endpoint: &E,
        token: &SecretString,
    ) -> Result<ApiSuccess<E::JsonResponse>, ProviderError>
    where
        E: EndpointSpec,
        E::JsonResponse: ApiResult,
    {
        let mut url = self.base.join(&endpoint.path()).map_err(|e| {
            ProviderError::Rejected(format!("cannot build the Cloudflare request URL: {e}"))
        })?;
        url.set_query(endpoint.query().as_deref());
        let mut request = self
            .http
            .request(endpoint.method(), url)
            .bearer_auth(token.expose_secret());
        match endpoint.body() {
            None => {}
            Some(RequestBody::Json(json)) => {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(json);
            }
            Some(_) => {
                return Err(ProviderError::Rejected(
                    "only JSON request bodies are supported".into(),
                ));
            }
        }
        // Timeouts, refused or reset connections, bodies cut short.
        let failed = |e: reqwest::Error| {
            ProviderError::Transient(format!("Cloudflare request failed: {}", e.without_url()))
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.map_err(failed)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                ProviderError::Transient(format!(
                    "Cloudflare sent an answer that cannot be read: {e}"
                ))
            });
        }
        // An error answer without a readable envelope still has its status.
        let errors: ErrorAnswer = serde_json::from_slice(&body).unwrap_or_default();
        Err(classify(status, &errors, retry_after))
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

/// One zone's records, for the shared compare-and-set, one name or many ([`batch`]).
struct ZoneRecords<'a> {
    api: &'a Api,
    zone: &'a str,
    /// Records one batch write carries.
    limit: usize,
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

/// The `retry-after` of an answer in seconds, as Cloudflare sends it; `None` when missing or
/// not a number of seconds.
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Maps an error answer to our error classes.
fn classify(
    status: StatusCode,
    errors: &ErrorAnswer,
    retry_after: Option<Duration>,
) -> ProviderError {
    let detail = errors
        .errors
        .iter()
        .map(|e| format!("{} {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    // A 413 from a proxy in front of the API comes without an envelope: say what it means.
    let detail = if detail.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no error details")
            .to_owned()
    } else {
        detail
    };
    let what = format!("Cloudflare answered HTTP {}: {detail}", status.as_u16());
    match status.as_u16() {
        401 | 403 => ProviderError::Auth(what),
        // A block always has a length, so the budget holds calls back until it ends.
        429 => ProviderError::RateLimited {
            retry_after: Some(retry_after.unwrap_or(DEFAULT_RATE_LIMIT_BLOCK)),
        },
        408 | 500..=599 => ProviderError::Transient(what),
        _ => ProviderError::Rejected(what),
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
            let store = self.records().await?;
            cas::read(&store, &self.budget, name).await
        })
    }

    fn apply<'a>(&'a self, change: &'a Change) -> ProviderFuture<'a, ApplyOutcome> {
        Box::pin(async move {
            let store = self.records().await?;
            cas::apply(&store, &self.budget, change).await
        })
    }

    fn stats(&self) -> StatsSnapshot {
        self.budget.snapshot()
    }

    fn batch_limit(&self) -> usize {
        self.batch_size
    }

    fn read_many<'a>(&'a self, names: &'a [String]) -> BatchFuture<'a, RecordState> {
        use futures::StreamExt;
        if self.batch_size == 1 {
            // The one-name path, as `DnsProvider`'s default does it.
            return Box::pin(
                futures::stream::iter(names)
                    .map(|n| self.read(n))
                    .buffered(ONE_BY_ONE_IN_FLIGHT)
                    .collect(),
            );
        }
        Box::pin(async move {
            let store = match self.records().await {
                Ok(store) => store,
                Err(e) => return vec![Err(e); names.len()],
            };
            match store.fetch_many(&self.budget, names).await {
                Ok(states) => states.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e); names.len()],
            }
        })
    }

    fn apply_many<'a>(&'a self, changes: &'a [Change]) -> BatchFuture<'a, ApplyOutcome> {
        use futures::StreamExt;
        if self.batch_size == 1 || changes.len() <= ONE_NAME_READS_UP_TO {
            // The one-name path, as `DnsProvider`'s default does it: a handful of names (a
            // single failover, a retry) cost three calls each, read and verified by name, and
            // their writes are the plain PATCH every earlier release sent.
            return Box::pin(
                futures::stream::iter(changes)
                    .map(|c| self.apply(c))
                    .buffered(ONE_BY_ONE_IN_FLIGHT)
                    .collect(),
            );
        }
        Box::pin(async move {
            match self.records().await {
                Ok(store) => super::batch::apply_many(&store, &self.budget, changes).await,
                Err(e) => vec![Err(e); changes.len()],
            }
        })
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
                batch_size: DEFAULT_BATCH_SIZE,
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
    fn a_429_carries_its_retry_after_or_the_default_block() {
        let mut h = header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(" 17 "),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &ErrorAnswer::default(),
            retry_after(&h),
        );
        assert_eq!(
            e,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(17))
            }
        );
        h.insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None, "Cloudflare sends seconds");
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &ErrorAnswer::default(), None);
        assert_eq!(
            e,
            ProviderError::RateLimited {
                retry_after: Some(DEFAULT_RATE_LIMIT_BLOCK)
            }
        );
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &ErrorAnswer::default(), None),
            ProviderError::Auth(_)
        ));
    }

    #[test]
    fn five_digit_error_codes_reach_the_message() {
        let body = br#"{"success":false,"errors":[{"code":81044,"message":"Record does not exist."}],"messages":[],"result":null}"#;
        let errors: ErrorAnswer = serde_json::from_slice(body).unwrap();
        let e = classify(StatusCode::NOT_FOUND, &errors, None);
        assert_eq!(
            e,
            ProviderError::Rejected(
                "Cloudflare answered HTTP 404: 81044 Record does not exist.".into()
            )
        );
        let e = classify(StatusCode::PAYLOAD_TOO_LARGE, &ErrorAnswer::default(), None);
        assert_eq!(
            e,
            ProviderError::Rejected("Cloudflare answered HTTP 413: Payload Too Large".into())
        );
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
