//! DNS providers: where the controller reads and changes the records of managed names.
//!
//! A [`DnsProvider`] does two things: [`read`](DnsProvider::read) the current CNAME of a name,
//! and [`apply`](DnsProvider::apply) one [`Change`] as a compare-and-set. Hosted DNS APIs such as
//! Cloudflare's have no conditional write, so the compare-and-set is emulated (see [`cas`]): read
//! the record, decide from its [`Marker`] and content whether the change may go ahead
//! ([`decide`]), write content and marker in one call, then read back to verify — at most three
//! API calls per change. A change is refused when the record shows a newer epoch (a newer leader
//! wrote it), a newer generation (a newer plan is already in place), content other than what the
//! controller expected (someone else changed it: drift), no marker at all (not ours, unless the
//! namespace opts in to adopting it) or no record. A write whose response is lost is resolved by
//! reading back, never by a blind second write.
//!
//! Every API call spends a token from a client-side budget far below the provider's own limit,
//! and soft failures (rate limited, 5xx, timeouts) are retried with exponential backoff and full
//! jitter ([`budget`]). Implementations: [`cloudflare`] (the Cloudflare v4 API through the
//! `cloudflare` crate), [`rfc2136`] (TSIG-signed dynamic UPDATE to a BIND, Knot or PowerDNS
//! primary, whose prerequisites make the write a true compare-and-set), [`route53`] (one
//! all-or-nothing ChangeResourceRecordSets batch whose DELETE of the current value is the
//! compare-and-set, then GetChange until INSYNC), [`builtin`] (the controllers' own DNS server)
//! and [`memory`] (no network; for tests, `plan` and the lab). Where records carry no comment
//! (RFC 2136, Route 53) the marker is a TXT record at `_sitewarden.<name>`. [`config`] reads the
//! `[provider]` table and builds one. [`propagation`] watches a change reach every authoritative
//! nameserver and checks that candidate targets resolve.

pub mod batch;
pub mod budget;
pub mod builtin;
pub mod cas;
pub mod cloudflare;
pub mod conditional;
pub mod config;
pub mod decide;
pub mod marker;
pub mod memory;
pub mod propagation;
pub mod rfc2136;
pub mod route53;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use budget::{RateBudget, RetryPolicy, StatsSnapshot};
pub use config::{ProviderConfig, RawProvider};
pub use marker::Marker;
pub use memory::MemoryProvider;
/// Re-exported so callers can hand a token to [`cloudflare::CloudflareProvider`] without
/// depending on `secrecy` themselves.
pub use secrecy::SecretString;

/// The boxed future a [`DnsProvider`] method returns (boxed so the trait is object safe and the
/// runtime can hold an `Arc<dyn DnsProvider>`).
pub type ProviderFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// The boxed future of a many-name call: one result per name, in the order asked.
pub type BatchFuture<'a, T> =
    Pin<Box<dyn Future<Output = Vec<Result<T, ProviderError>>> + Send + 'a>>;

/// How many one-name calls the default [`DnsProvider::apply_many`] and
/// [`DnsProvider::read_many`] run at once.
pub const ONE_BY_ONE_IN_FLIGHT: usize = 32;

/// What a provider holds for one name, as far as a CNAME failover cares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordState {
    /// The fully qualified name, e.g. `mail.example.com`.
    pub name: String,
    /// The CNAME target; `None` when there is no CNAME record for the name.
    pub content: Option<String>,
    /// The record's TTL in seconds (`1` is Cloudflare's "automatic").
    pub ttl: Option<u32>,
    /// Cloudflare's proxied flag; preserved by every change.
    pub proxied: Option<bool>,
    /// Our ownership marker, when the record carries one.
    pub marker: Option<Marker>,
    /// The provider's id for the record (Cloudflare's record id), used to address the write.
    pub provider_id: Option<String>,
    /// The record's full comment, kept so a write can preserve an administrator's text.
    pub comment: Option<String>,
}

impl RecordState {
    /// Whether the record points at `target` (case-insensitive, trailing dot ignored).
    pub fn points_at(&self, target: &str) -> bool {
        self.content
            .as_deref()
            .is_some_and(|c| same_host(c, target))
    }
}

/// Whether two host names are the same DNS name.
pub fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// One change to one managed name: point it at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The managed name, e.g. `mail.example.com`.
    pub name: String,
    /// The new CNAME target, e.g. `mail-site2.example.com`.
    pub target: String,
    /// The TTL the namespace sets; `None` keeps the record's TTL.
    pub ttl: Option<u32>,
    /// The content the controller believes is there now; a different value is drift and the
    /// change is refused. `None` skips that check (e.g. the first reconcile after start).
    pub expected: Option<String>,
    /// The leader's epoch (lease revision), written into the marker.
    pub epoch: u64,
    /// The namespace's plan generation, written into the marker.
    pub generation: u64,
    /// Take over a record that carries no marker (`on_drift = "enforce"` plus an explicit
    /// adoption); otherwise such a record is refused as [`Refusal::NotOurs`].
    pub adopt_unmarked: bool,
}

impl Change {
    /// The marker this change writes.
    pub fn marker(&self) -> Marker {
        Marker {
            epoch: self.epoch,
            generation: self.generation,
        }
    }
}

/// What applying a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The record was written and the read-back shows the change.
    Applied {
        /// The record before the write.
        before: RecordState,
        /// The record as read back after the write.
        after: RecordState,
    },
    /// The record already showed this change (same target, TTL and marker); nothing was written.
    AlreadyInPlace {
        /// The record as read.
        state: RecordState,
    },
    /// The change was not made; nothing was written.
    Refused(Refusal),
}

/// Why a change was refused. None of these is retried: each needs a decision, not a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A newer leader wrote the record: this controller is fenced off.
    #[error("the record shows a newer epoch ({found}); this controller is no longer the leader")]
    NewerEpoch {
        /// The marker on the record.
        found: Marker,
    },
    /// A newer plan for this name is already in place.
    #[error("the record shows a newer generation ({found}); an older plan is never applied")]
    OlderGeneration {
        /// The marker on the record.
        found: Marker,
    },
    /// The record's content is not what the controller expected: someone else changed it.
    #[error("the record points at {:?}, not the expected target: changed outside sitewarden", found.content)]
    Drift {
        /// The record as read.
        found: RecordState,
    },
    /// The record carries no sitewarden marker and the change does not adopt unmarked records.
    #[error(
        "the record has no sitewarden marker; it is observed, not changed (opt in to adopt it)"
    )]
    NotOurs {
        /// The record as read.
        found: RecordState,
    },
    /// There is no CNAME record for the name; sitewarden changes records, it does not create them.
    #[error("there is no CNAME record for the name; create it once by hand")]
    Missing,
    /// This controller's lease lapsed between its read and its write (e.g. it was frozen): it
    /// no longer writes. See [`Fence`].
    #[error("the lease lapsed before the write; this controller no longer writes")]
    LeaseLost,
}

/// "May this controller still write?", asked at the moment of every provider write.
///
/// Hosted DNS APIs have no conditional write on our epoch, so the epoch in the marker fences a
/// stale leader only at its read. A leader frozen after its read (SIGSTOP, a VM pause) would
/// otherwise send its write when it thaws. The runtime runs every apply inside
/// [`FENCE`]`.scope(..)` with a check of the lease on the monotonic clock; `cas::apply` consults
/// it right before each write. Outside a scope (tests, `plan`) nothing is fenced.
#[derive(Clone)]
pub struct Fence(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl Fence {
    /// A fence that allows writes while `allows` returns true.
    pub fn new(allows: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(allows))
    }

    /// Whether a write may go out now.
    pub fn allows(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

tokio::task_local! {
    /// The fence of the apply running in this task; see [`Fence`].
    pub static FENCE: Fence;
}

/// True when the current task runs under a fence that forbids writing now.
pub fn fenced() -> bool {
    FENCE.try_with(|f| !f.allows()).unwrap_or(false)
}

/// A provider call that failed. Messages never contain the API token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// 401/403: the token is wrong, expired or lacks a scope. Alert; never retried.
    #[error("DNS provider refused the credentials: {0}; check the API token and its scopes")]
    Auth(String),
    /// 429: the provider's rate limit was hit. Retried with backoff.
    #[error("DNS provider rate limit hit ({}); backing off", retry_words(*.retry_after))]
    RateLimited {
        /// The server's `Retry-After`, when it could be seen.
        retry_after: Option<Duration>,
    },
    /// 5xx, a timeout, a reset connection, a garbled answer. Retried with backoff.
    #[error("DNS provider call failed (will retry): {0}")]
    Transient(String),
    /// 4xx validation error or an answer that cannot be acted on. Never retried.
    #[error("DNS provider rejected the request: {0}")]
    Rejected(String),
    /// The client-side rate budget has no tokens left; the call was not made.
    #[error("client-side DNS API budget exhausted; the call was not made (see `provider.budget`)")]
    Budget,
}

/// A rate limit's `Retry-After` in words: "retry after 4 s", or "no retry-after given".
fn retry_words(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) if d.subsec_millis() == 0 => format!("retry after {} s", d.as_secs()),
        Some(d) => format!("retry after {:.1} s", d.as_secs_f64()),
        None => "no retry-after given".to_owned(),
    }
}

impl ProviderError {
    /// Whether a retry may help (rate limit, 5xx, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient(_))
    }
}

/// A DNS provider: reads and changes CNAME records, one managed name at a time.
pub trait DnsProvider: Send + Sync {
    /// A short name for logs and metrics (`cloudflare`, `memory`).
    fn kind(&self) -> &'static str;

    /// The current record for `name` (content `None` when there is no CNAME).
    fn read<'a>(&'a self, name: &'a str) -> ProviderFuture<'a, RecordState>;

    /// Applies `change` as a compare-and-set, verified by reading back.
    fn apply<'a>(&'a self, change: &'a Change) -> ProviderFuture<'a, ApplyOutcome>;

    /// Calls, errors by class and budget left, for the metrics layer.
    fn stats(&self) -> StatsSnapshot {
        StatsSnapshot::default()
    }

    /// The most records one write carries; `1` when the provider applies name by name.
    fn batch_limit(&self) -> usize {
        1
    }

    /// Reads many names. The default reads them one by one, [`ONE_BY_ONE_IN_FLIGHT`] at a
    /// time; a provider with a listing reads them in a few calls.
    fn read_many<'a>(&'a self, names: &'a [String]) -> BatchFuture<'a, RecordState> {
        use futures::StreamExt;
        Box::pin(
            futures::stream::iter(names)
                .map(|n| self.read(n))
                .buffered(ONE_BY_ONE_IN_FLIGHT)
                .collect(),
        )
    }

    /// Applies many changes, one outcome per change in order. The default applies them one by
    /// one, [`ONE_BY_ONE_IN_FLIGHT`] at a time; a provider with a batch write implements it with
    /// [`batch::apply_many`].
    fn apply_many<'a>(&'a self, changes: &'a [Change]) -> BatchFuture<'a, ApplyOutcome> {
        use futures::StreamExt;
        Box::pin(
            futures::stream::iter(changes)
                .map(|c| self.apply(c))
                .buffered(ONE_BY_ONE_IN_FLIGHT)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_its_retry_after_in_words() {
        let said = |retry_after| ProviderError::RateLimited { retry_after }.to_string();
        assert_eq!(
            said(Some(Duration::from_secs(4))),
            "DNS provider rate limit hit (retry after 4 s); backing off"
        );
        assert_eq!(
            said(Some(Duration::from_millis(1500))),
            "DNS provider rate limit hit (retry after 1.5 s); backing off"
        );
        assert_eq!(
            said(None),
            "DNS provider rate limit hit (no retry-after given); backing off"
        );
    }
}
