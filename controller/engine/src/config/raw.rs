//! The controller configuration file as written: serde structs that mirror the TOML.
//!
//! Every struct denies unknown fields, so a typo is an error with a line number instead of a
//! silently ignored option. Values stay loosely typed here (strings for ids, options for
//! defaults); [`super::validate`] turns them into domain types and checks how they fit together.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use sitewarden_contract::config::duration;

/// The decision sections of the controller's file: what the engine reads. The composition root
/// (`sitewarden-controller`) deserializes the whole file once, with these types for these
/// sections and its own for the runtime's, and hands this part to
/// [`super::ControllerConfig::from_raw`].
#[derive(Debug, Default)]
pub struct RawDecision {
    /// `[policy]`: decision knobs; every key has a default.
    pub policy: RawPolicy,
    /// `[[sites]]`: datacenters and witness locations.
    pub sites: Vec<RawSite>,
    /// `[[agents]]`: the observers the controller trusts.
    pub agents: Vec<RawAgent>,
    /// `[[dags]]`: database availability groups and where their mailbox servers stand.
    pub dags: Vec<RawDag>,
    /// `[[namespaces]]`: the managed DNS names.
    pub namespaces: Vec<RawNamespace>,
    /// Whether `[provider] kind` is `"builtin"`: the default TTL is shorter with the built-in
    /// DNS (see `BUILTIN_DEFAULT_TTL`). The one fact the engine takes from a runtime section.
    pub builtin_dns: bool,
}

/// `[provider]` as far as the engine looks: its `kind`, everything else skipped unread.
#[derive(Debug, Deserialize)]
pub(super) struct ProviderKindOnly {
    kind: Option<String>,
}

/// Whether a `[provider] kind` names the built-in DNS.
pub fn is_builtin_kind(kind: Option<&str>) -> bool {
    kind.is_some_and(|k| k.eq_ignore_ascii_case("builtin"))
}

/// The whole file as the engine alone reads it (`plan`-style callers, tests, benchmarks): the
/// decision sections typed, the runtime's sections accepted by name and skipped unread, any
/// other key an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionFile {
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    sites: Vec<RawSite>,
    #[serde(default)]
    agents: Vec<RawAgent>,
    #[serde(default)]
    dags: Vec<RawDag>,
    #[serde(default)]
    namespaces: Vec<RawNamespace>,
    // The runtime's sections, read by the composition root, not here.
    #[serde(default, rename = "controller")]
    _controller: Option<IgnoredAny>,
    #[serde(default, rename = "nats")]
    _nats: Option<IgnoredAny>,
    #[serde(default)]
    provider: Option<ProviderKindOnly>,
    #[serde(default, rename = "ha")]
    _ha: Option<IgnoredAny>,
    #[serde(default, rename = "alerts")]
    _alerts: Option<IgnoredAny>,
    #[serde(default, rename = "edge")]
    _edge: Option<IgnoredAny>,
    #[serde(default, rename = "propagation")]
    _propagation: Option<IgnoredAny>,
    #[serde(default, rename = "slack")]
    _slack: Option<IgnoredAny>,
    #[serde(default, rename = "api")]
    _api: Option<IgnoredAny>,
}

impl DecisionFile {
    /// The decision sections; the runtime's are dropped unread.
    pub(super) fn decision(self) -> RawDecision {
        RawDecision {
            policy: self.policy,
            sites: self.sites,
            agents: self.agents,
            dags: self.dags,
            namespaces: self.namespaces,
            builtin_dns: is_builtin_kind(self.provider.and_then(|p| p.kind).as_deref()),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Consecutive failures before an observer × check is failing.
    pub fall: Option<u32>,
    /// Consecutive successes before an observer × check is passing.
    pub rise: Option<u32>,
    /// The agents' probe interval, used for defaults.
    #[serde(default, with = "duration::option")]
    pub interval: Option<Duration>,
    /// Silence after which an observer × check no longer counts.
    #[serde(default, with = "duration::option")]
    pub stale_after: Option<Duration>,
    /// Smallest quorum for a server × protocol.
    pub min_observers: Option<usize>,
    /// `"auto"` or `"manual"`.
    pub failback: Option<String>,
    /// Continuous Up required before an automatic failback.
    #[serde(default, with = "duration::option")]
    pub failback_after: Option<Duration>,
    /// Minimum spacing of automatic non-emergency changes per namespace.
    #[serde(default, with = "duration::option")]
    pub hold_down: Option<Duration>,
    /// How far in the future an event's `observed_at` may be.
    #[serde(default, with = "duration::option")]
    pub skew_tolerance: Option<Duration>,
    /// Age after which a DAG's newest copy snapshot no longer tells where mailboxes are.
    #[serde(default, with = "duration::option")]
    pub dbcopy_stale_after: Option<Duration>,
    /// Default TTL of managed records.
    #[serde(default, with = "duration::option")]
    pub ttl: Option<Duration>,
    /// How long after start sites without a verdict are waited for silently.
    #[serde(default, with = "duration::option")]
    pub startup_grace: Option<Duration>,
    /// First wait after a failed record change.
    #[serde(default, with = "duration::option")]
    pub retry_initial: Option<Duration>,
    /// Longest wait between attempts of a failing record change.
    #[serde(default, with = "duration::option")]
    pub retry_max: Option<Duration>,
}

/// `[[sites]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    /// Site id.
    pub name: String,
    /// Client-access servers in this site (empty for a witness).
    #[serde(default)]
    pub servers: Vec<String>,
    /// Protocols that count for this site's client access.
    pub protocols: Option<Vec<String>>,
}

/// `[[agents]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Agent id.
    pub name: String,
    /// The site the agent runs in.
    pub site: String,
    /// Check names the agent may report; absent means any.
    pub checks: Option<Vec<String>>,
}

/// `[[dags]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDag {
    /// DAG name as the collectors report it.
    pub name: String,
    /// Mailbox server name → site.
    #[serde(default)]
    pub servers: BTreeMap<String, String>,
}

/// One candidate of a namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCandidate {
    /// The CNAME target.
    pub target: String,
    /// Sites that must all be Up.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// `[[namespaces]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamespace {
    /// The managed DNS name.
    pub name: String,
    /// Record TTL.
    #[serde(default, with = "duration::option")]
    pub ttl: Option<Duration>,
    /// Ordered candidates (ordered model).
    pub candidates: Option<Vec<RawCandidate>>,
    /// `"mailbox"` for the bound model.
    pub follow: Option<String>,
    /// The DAG followed (bound model).
    pub dag: Option<String>,
    /// Site → target (bound model).
    pub targets: Option<BTreeMap<String, String>>,
    /// Per-namespace `failback`.
    pub failback: Option<String>,
    /// Per-namespace `failback_after`.
    #[serde(default, with = "duration::option")]
    pub failback_after: Option<Duration>,
    /// Per-namespace `hold_down`.
    #[serde(default, with = "duration::option")]
    pub hold_down: Option<Duration>,
    /// `"observe"` (default) or `"enforce"`: whether a hand-edited record that still carries
    /// our marker is put back.
    pub on_drift: Option<String>,
    /// `"observe"` (default) or `"adopt"`: whether a record without our marker is taken over.
    pub on_unmarked: Option<String>,
}
