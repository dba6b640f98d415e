//! The controller's configuration: sites, observers, DAGs, managed names and decision policy.
//!
//! [`ControllerConfig::load`] reads TOML (see `docs/configuration-controller.md` and
//! `examples/controller.toml`) into domain types that cannot hold an invalid value: every
//! namespace has at least one candidate, every referenced site exists and has client-access
//! servers, durations are positive and consistent. Errors name the file, the line and the key.
//! The decision engine (this crate) takes a loaded config and never re-checks it.

mod namespaces;
pub mod raw;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use sitewarden_contract::config::{ConfigError, Source};
use sitewarden_contract::{AgentId, CheckName, DnsName, ServerId, SiteId};

/// Default `fall`: consecutive failures before an observer × check is failing. With the 1 s
/// interval a 3 s blip (three failures) is sat out and a dead site is Down within about 4 s.
pub const DEFAULT_FALL: u32 = 4;
/// Default `rise`: consecutive successes before an observer × check is passing (10 s of
/// passing results at the default interval).
pub const DEFAULT_RISE: u32 = 10;
/// Default agents' probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default `min_observers`.
pub const DEFAULT_MIN_OBSERVERS: usize = 2;
/// Default `failback_after`.
pub const DEFAULT_FAILBACK_AFTER: Duration = Duration::from_secs(600);
/// Default `hold_down`.
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(300);
/// Default `skew_tolerance`.
pub const DEFAULT_SKEW_TOLERANCE: Duration = Duration::from_secs(5);
/// Default `dbcopy_stale_after`.
pub const DEFAULT_DBCOPY_STALE_AFTER: Duration = Duration::from_secs(60);
/// Default record TTL at a hosted provider (Cloudflare, Route 53, RFC 2136).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default record TTL with the built-in DNS (`[provider] kind = "builtin"`): the controllers
/// answer every query themselves at no per-query cost, so the TTL is only what resolvers add
/// to a failover (measured with `sitewarden-bench peers`: a client behind unbound saw the move
/// 38 s after the authoritative answer at 60 s, 2.8 s at 10 s; docs/dns.md has the trade-off).
pub const BUILTIN_DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Default `[policy] startup_grace`: how long a fresh engine waits for every site's first verdict
/// before it alerts that a name cannot be placed or that a site is not Up.
pub const DEFAULT_STARTUP_GRACE: Duration = Duration::from_secs(60);
/// Default `[policy] retry_initial`: the first wait after a failed record change.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Default `[policy] retry_max`: the longest wait between attempts of a failing record change,
/// and the wait after a refusal that needs a human (unmarked or missing record, credentials).
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);
/// Default protocol counted for a site's client access.
pub const DEFAULT_PROTOCOL: &str = "activesync";

/// Whether a namespace returns to a more preferred candidate by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailbackMode {
    /// After `failback_after` of continuous Up, respecting `hold_down`.
    Auto,
    /// Only when an operator asks (like F5's manual resume).
    Manual,
}

/// What to do when a record holds a target that is no candidate (someone edited it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftPolicy {
    /// Alert and leave it: never fight a human.
    #[default]
    Observe,
    /// Put the most preferred Up candidate back, but only while the record carries our
    /// ownership marker (a record without it is never taken over).
    Enforce,
}

/// What to do with a record that carries no sitewarden ownership marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmarkedPolicy {
    /// Observe it and alert once: sitewarden changes only records it owns.
    #[default]
    Observe,
    /// Treat its content as sitewarden's own and take it over (writing the marker) at the next
    /// change the rules call for.
    Adopt,
}

/// Decision knobs shared by every namespace unless a namespace overrides them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Consecutive failures before an observer × check is failing.
    pub fall: u32,
    /// Consecutive successes before an observer × check is passing.
    pub rise: u32,
    /// The agents' probe interval; only used to derive defaults and bounds.
    pub interval: Duration,
    /// An observer × check without a result for longer than this no longer counts.
    pub stale_after: Duration,
    /// Smallest quorum for a server × protocol, whatever the number of fresh observers.
    pub min_observers: usize,
    /// Default failback mode.
    pub failback: FailbackMode,
    /// Default continuous Up required before automatic failback.
    pub failback_after: Duration,
    /// Default spacing of automatic non-emergency changes per namespace.
    pub hold_down: Duration,
    /// Events stamped further than this in the future are refused.
    pub skew_tolerance: Duration,
    /// A DAG whose newest good copy snapshot is older than this has no known active site.
    pub dbcopy_stale_after: Duration,
    /// After start, how long sites without a verdict yet are waited for silently: no name is
    /// placed away from its preferred candidate and no transitional verdict is alerted.
    pub startup_grace: Duration,
    /// First wait after a failed record change; doubles per failure (with jitter).
    pub retry_initial: Duration,
    /// Longest wait between attempts; also the wait after a refusal that needs a human.
    pub retry_max: Duration,
}

/// One site: a datacenter with client-access servers, or a witness location without any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteConfig {
    /// Client-access servers; empty for a witness, which only hosts observers.
    pub servers: BTreeSet<ServerId>,
    /// Protocols that count for this site's client access (default `activesync`).
    pub protocols: BTreeSet<String>,
}

impl SiteConfig {
    /// A site with servers can serve clients and have a verdict; a witness cannot.
    pub fn has_client_access(&self) -> bool {
        !self.servers.is_empty()
    }
}

/// One observer (agent) the controller trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentConfig {
    /// The site the agent runs in: decides whether it is inside or outside a probed site.
    pub site: SiteId,
    /// Check names it may report; `None` accepts any.
    pub checks: Option<BTreeSet<CheckName>>,
}

/// One DAG: which site each of its mailbox servers stands in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DagConfig {
    /// Lower-cased mailbox server name → site.
    pub servers: BTreeMap<String, SiteId>,
}

/// One ordered candidate of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The CNAME target, e.g. `mail-site1.example.com`.
    pub target: DnsName,
    /// Sites that must all be Up (or Degraded) for this candidate to be chosen.
    pub requires: BTreeSet<SiteId>,
}

/// How a namespace picks its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// The first candidate whose required sites are all Up; never empty.
    Candidates(Vec<Candidate>),
    /// The target of the site where `dag`'s mailboxes are active, when that site is Up.
    FollowMailbox {
        /// The DAG followed.
        dag: String,
        /// Site → target; never empty.
        targets: BTreeMap<SiteId, DnsName>,
    },
}

/// One managed DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceConfig {
    /// TTL written with the record.
    pub ttl: Duration,
    /// Ordered or bound model.
    pub routing: Routing,
    /// Failback mode for this name.
    pub failback: FailbackMode,
    /// Continuous Up required before automatic failback for this name.
    pub failback_after: Duration,
    /// Spacing of automatic non-emergency changes for this name.
    pub hold_down: Duration,
    /// Drift handling for this name (ordered model only).
    pub on_drift: DriftPolicy,
    /// Records without our marker: observed (default) or adopted.
    pub on_unmarked: UnmarkedPolicy,
}

impl NamespaceConfig {
    /// Every target this namespace may point at, in preference order for candidates.
    pub fn targets(&self) -> Vec<&DnsName> {
        match &self.routing {
            Routing::Candidates(c) => c.iter().map(|c| &c.target).collect(),
            Routing::FollowMailbox { targets, .. } => targets.values().collect(),
        }
    }

    /// Sites whose requirements this target depends on; `None` when it is not one of ours.
    pub fn sites_of(&self, target: &DnsName) -> Option<BTreeSet<SiteId>> {
        match &self.routing {
            Routing::Candidates(c) => c
                .iter()
                .find(|c| &c.target == target)
                .map(|c| c.requires.clone()),
            Routing::FollowMailbox { targets, .. } => targets
                .iter()
                .find(|(_, t)| *t == target)
                .map(|(s, _)| BTreeSet::from([s.clone()])),
        }
    }
}

/// The whole validated controller configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerConfig {
    /// Global decision knobs.
    pub policy: Policy,
    /// Sites by id.
    pub sites: BTreeMap<SiteId, SiteConfig>,
    /// Known observers by id.
    pub agents: BTreeMap<AgentId, AgentConfig>,
    /// DAGs by name.
    pub dags: BTreeMap<String, DagConfig>,
    /// Managed names (stored lowercase, so lookups are case-insensitive).
    pub namespaces: BTreeMap<DnsName, NamespaceConfig>,
}

impl ControllerConfig {
    /// Parses and validates a configuration from `source`.
    pub fn load(source: &Source) -> Result<Self, ConfigError> {
        let file: raw::DecisionFile = source.parse()?;
        Self::from_raw(source, file.decision())
    }

    /// Validates the decision sections of a file already deserialized by the composition root;
    /// `source` locates errors.
    pub fn from_raw(source: &Source, raw: raw::RawDecision) -> Result<Self, ConfigError> {
        validate::validate(source, raw)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load_file(path: &Path) -> Result<Self, ConfigError> {
        Self::load(&Source::read(path)?)
    }

    /// Parses and validates TOML text; `name` stands for the file in errors.
    pub fn from_toml(name: &str, text: &str) -> Result<Self, ConfigError> {
        Self::load(&Source::inline(name, text))
    }

    /// The site a client-access server belongs to.
    pub fn site_of_server(&self, server: &str) -> Option<&SiteId> {
        self.sites
            .iter()
            .find(|(_, s)| s.servers.contains(server))
            .map(|(id, _)| id)
    }
}
