//! The controller configuration file as written: serde structs that mirror the TOML.
//!
//! Every struct denies unknown fields, so a typo is an error with a line number instead of a
//! silently ignored option. Values stay loosely typed here (strings for ids, options for
//! defaults); [`super::validate`] turns them into domain types and checks how they fit together.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use sitewarden_shared::config::duration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// `[policy]`: decision knobs; every key has a default.
    #[serde(default)]
    pub policy: RawPolicy,
    /// `[[sites]]`: datacenters and witness locations.
    #[serde(default)]
    pub sites: Vec<RawSite>,
    /// `[[agents]]`: the observers the controller trusts.
    #[serde(default)]
    pub agents: Vec<RawAgent>,
    /// `[[dags]]`: database availability groups and where their mailbox servers stand.
    #[serde(default)]
    pub dags: Vec<RawDag>,
    /// `[[namespaces]]`: the managed DNS names.
    #[serde(default)]
    pub namespaces: Vec<RawNamespace>,
    /// `[controller]`: this process (id, listen address, dry run, streams). Runtime only.
    #[serde(default)]
    pub controller: Option<crate::runtime::settings::RawController>,
    /// `[nats]`: the bus. Runtime only.
    #[serde(default)]
    pub nats: Option<sitewarden_shared::nats::NatsConfig>,
    /// `[provider]`: where records live. Runtime only.
    #[serde(default)]
    pub provider: Option<crate::provider::config::RawProvider>,
    /// `[ha]`: the leader lease. Runtime only.
    #[serde(default)]
    pub ha: Option<crate::runtime::settings::RawHa>,
    /// `[[alerts]]`: chat-ops sinks. Runtime only.
    #[serde(default)]
    pub alerts: Vec<crate::notify::config::RawSink>,
    /// `[edge]`: signed webhooks to edge proxies. Runtime only.
    #[serde(default)]
    pub edge: Option<crate::edge::RawEdge>,
    /// `[propagation]`: watching authoritative servers after a change. Runtime only.
    #[serde(default)]
    pub propagation: Option<crate::runtime::settings::RawPropagation>,
    /// `[slack]`: the slash-command endpoint. Runtime only.
    #[serde(default)]
    pub slack: Option<crate::runtime::slack::RawSlack>,
    /// `[api]`: operator API tokens. Runtime only.
    #[serde(default)]
    pub api: Option<crate::runtime::api::RawApi>,
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
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
pub(crate) struct RawSite {
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
pub(crate) struct RawAgent {
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
pub(crate) struct RawDag {
    /// DAG name as the collectors report it.
    pub name: String,
    /// Mailbox server name → site.
    #[serde(default)]
    pub servers: BTreeMap<String, String>,
}

/// One candidate of a namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCandidate {
    /// The CNAME target.
    pub target: String,
    /// Sites that must all be Up.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// `[[namespaces]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNamespace {
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
