//! The engine's whole memory. A controller never restores it: a fresh one rebuilds it by
//! replaying the events stream, and a new leader re-reads every record (`docs/operations.md`).
//! It is serializable so the API and the tests can show it.
//!
//! Everything that is iterated for output lives in a `BTreeMap`, so the same inputs give the
//! same commands byte for byte. The state holds no configuration: [`super::Engine::adopt`]
//! fills in entries for servers, sites, DAGs and namespaces that a new configuration adds.

use crate::order::{Epoch, Generation};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::{AgentId, DnsName, ServerId, SiteId};

use super::dag::DagState;
use super::intake::Counters;
use super::namespace::NamespaceState;
use super::overrides::Overrides;
use super::quorum::Component;
use super::verdict::SiteState;

/// Whether this engine instance acts or only records what it would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// This controller holds the lease and may change records.
    pub is_leader: bool,
    /// The lease revision: the fencing token written with every change.
    pub epoch: Epoch,
}

/// What the engine remembers about the bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusState {
    /// The bus has answered at least once: before that, a missing bus is start-up, not news.
    pub answered: bool,
    /// Since when the bus has been lost (a `bus_lost` alert is out).
    pub lost_since: Option<DateTime<Utc>>,
    /// The events stream passed its near-cap share (an `events_near_cap` alert is out).
    #[serde(default)]
    pub events_near_cap: bool,
}

/// What the engine remembers about one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// Highest sequence number accepted.
    pub last_seq: Option<u64>,
    /// The agent process's start time from its latest heartbeat.
    pub started_at: Option<DateTime<Utc>>,
    /// When its latest heartbeat arrived, on the controller's clock (the engine's `now`):
    /// liveness is judged by arrival, so an agent's clock skew cannot make it look silent.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Its announced heartbeat interval.
    pub heartbeat_interval_ms: Option<u64>,
    /// The agent's build version from its latest heartbeat.
    #[serde(default)]
    pub version: Option<String>,
    /// Results it held unpublished (the bus was unreachable) at its latest heartbeat.
    #[serde(default)]
    pub buffered: u64,
    /// Results it has superseded while the bus was unreachable, since it started, as of its
    /// latest heartbeat.
    #[serde(default)]
    pub dropped_total: u64,
    /// An agent-silent alert is active.
    pub silent: bool,
}

/// The engine's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Latest `now` seen; time never runs backwards inside the engine.
    pub clock: Option<DateTime<Utc>>,
    /// The first `now` this state saw: the start-up grace counts from here.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// Every site with client access has been Up at the same time since start: the start-up
    /// grace is over.
    #[serde(default)]
    pub started_up: bool,
    /// Seed of the deterministic jitter of retry schedules (splitmix64), advanced per use.
    #[serde(default)]
    pub jitter_seed: u64,
    /// The bus: whether it answered once, and since when it has been lost (alerted).
    #[serde(default)]
    pub bus: BusState,
    /// The provider needed retries on the latest apply (a `provider_degraded` alert is out).
    #[serde(default)]
    pub provider_degraded: bool,
    /// The provider refused the credentials (a `provider_auth` alert is out).
    #[serde(default)]
    pub provider_auth: bool,
    /// Since when every site with client access has been Down (fail static).
    #[serde(default)]
    pub all_down_since: Option<DateTime<Utc>>,
    /// After a total outage ends, no name is moved away from a Down site before this time: the
    /// sites are likely recovering together, and one probe cycle (`stale_after`) lets every
    /// observer report the recovery.
    #[serde(default)]
    pub settle_until: Option<DateTime<Utc>>,
    /// Candidate targets that do not resolve, with the problem last alerted.
    #[serde(default)]
    pub unresolvable: BTreeMap<DnsName, String>,
    /// Leader or standby, and the epoch.
    pub leadership: Leadership,
    /// Last record-plan generation issued (or seen in a provider's marker).
    pub generation: Generation,
    /// Last edge notice generation.
    pub edge_generation: u64,
    /// Per agent: sequence floor and liveness.
    pub agents: BTreeMap<AgentId, AgentState>,
    /// Per server, per counted protocol: observers and quorum.
    pub components: BTreeMap<ServerId, BTreeMap<String, Component>>,
    /// Per site with client access: the verdict.
    pub sites: BTreeMap<SiteId, SiteState>,
    /// Per DAG: where mailboxes are active.
    pub dags: BTreeMap<String, DagState>,
    /// Per namespace: where it points and why.
    pub namespaces: BTreeMap<DnsName, NamespaceState>,
    /// Operator pins, drains and freezes.
    pub overrides: Overrides,
    /// Accepted and refused event counts.
    pub counters: Counters,
    /// Per server, the certificate problem last alerted (expiring, names not covered).
    #[serde(default)]
    pub cert_trouble: BTreeMap<ServerId, String>,
    /// What the next evaluation re-plans, and when each name is due again (see `replan`).
    #[serde(default)]
    pub replan: super::replan::Replan,
}
