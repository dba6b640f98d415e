//! The wire types of the operator API: request bodies and answers, with one definition for the
//! controller that serves them and the CLI that reads them. Answers default every field a
//! controller of another version might leave out, so a CLI keeps working across an upgrade of
//! the pair. History records are the typed [`AuditRecord`]; `recent` in [`Status`] holds the
//! same events without the record around them ([`RecentEvent`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, RecentEvent};
use sitewarden_contract::{AgentId, DnsName, SiteId};
use sitewarden_engine::Explanation;
use sitewarden_engine::evidence::SiteEvidence;
use sitewarden_engine::overrides::Overrides;

/// The header naming the answering controller on every authenticated API answer.
pub const CONTROLLER_HEADER: &str = "x-sitewarden-controller";
/// The header with the answering controller's role (`leader`, `standby`, `unknown`): the CLI
/// prefers the leader's answer and remembers where it found it.
pub const ROLE_HEADER: &str = "x-sitewarden-role";

/// `POST /api/v1/overrides`: pin, drain, freeze or fail back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOverride {
    /// `pin`, `drain`, `freeze` or `failback`.
    pub action: String,
    /// The managed name (pin, failback, freeze of one name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The target (pin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The site (drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// How long it holds (`30m`, `4h`); none = until released.
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    /// Why (required, audited).
    pub reason: String,
    /// Do it even though it points a name at a target whose sites are not all Up (pin, drain);
    /// without it such a request is refused with the reason.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `POST /api/v1/overrides/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseOverride {
    /// `pin`, `drain` or `freeze`.
    pub kind: String,
    /// The namespace (pin, freeze of one name), the site (drain); absent for a freeze of all.
    #[serde(default)]
    pub subject: Option<String>,
    /// Why (required, audited).
    pub reason: String,
}

/// `GET /api/v1/whoami`: the holder and role of the token used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The token's holder (`[[api.tokens]] name`); none for an anonymous read.
    pub name: Option<String>,
    /// `read` or `admin`; none for an anonymous read.
    pub role: Option<String>,
}

/// Every 4xx/5xx answer: what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong and what to do.
    pub error: String,
}

/// The lease as the answering controller sees it (`leader` in [`Status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    /// The answering controller's id.
    pub controller: String,
    /// `leader`, `standby` or `unknown` (its bus is unreachable).
    pub role: String,
    /// Whether the answering controller acts now.
    #[serde(default)]
    pub acting: bool,
    /// The leader's id, when known.
    #[serde(default)]
    pub leader: Option<String>,
    /// The answering controller's epoch while it leads.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// The leader's epoch: this controller's own while it leads, else the one the leader's
    /// presence record announces (none when no leader is known).
    #[serde(default)]
    pub leader_epoch: Option<u64>,
}

/// One controller of the pair in [`Status`], as its presence record (rewritten every
/// `renew_every`) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerPresence {
    /// Its id.
    pub controller: String,
    /// The version it runs.
    pub version: String,
    /// `leader`, `standby`, `unknown` (its bus did not answer) or `stopped` (it shut down).
    pub role: String,
    /// Whether it acted when it last wrote.
    #[serde(default)]
    pub acting: bool,
    /// Its epoch while leader.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// When its process started.
    pub started_at: DateTime<Utc>,
    /// When it last wrote (its clock).
    pub last_seen: DateTime<Utc>,
    /// How long ago the answering controller received that write, in milliseconds.
    pub age_ms: u64,
    /// Received within the lease: a controller silent for longer is gone (or cut off).
    pub fresh: bool,
}

/// One site in [`Status`]: its verdict and the evidence for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStatus {
    /// The site.
    pub site: SiteId,
    /// Verdict, since when, drained, and per component the observers' view.
    pub evidence: SiteEvidence,
}

/// One managed name in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStatus {
    /// The managed name.
    pub name: DnsName,
    /// Its targets, most preferred first.
    #[serde(default)]
    pub targets: Vec<DnsName>,
    /// The most preferred target.
    #[serde(default)]
    pub preferred: Option<DnsName>,
    /// What the record holds.
    #[serde(default)]
    pub current: Option<DnsName>,
    /// Where the engine wants it (the pending or decided target, else the current one).
    #[serde(default)]
    pub desired: Option<DnsName>,
    /// Why: the engine's whole explanation.
    pub explanation: Explanation,
}

/// One agent in [`Status`]: who it is, where, which build, and what its latest heartbeat said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent.
    pub agent: AgentId,
    /// Its site.
    pub site: SiteId,
    /// Its build version, from its latest heartbeat (none before the first).
    #[serde(default)]
    pub version: Option<String>,
    /// When its process started, from its latest heartbeat.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When its latest heartbeat arrived, on the controller's clock.
    #[serde(default)]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Milliseconds from `last_heartbeat` to the status's `at`.
    #[serde(default)]
    pub age_ms: Option<u64>,
    /// The heartbeat interval it announces.
    #[serde(default)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Results it held unpublished (the bus was unreachable) at its latest heartbeat.
    #[serde(default)]
    pub buffered: u64,
    /// Results it superseded while the bus was unreachable, since it started.
    #[serde(default)]
    pub dropped_total: u64,
    /// The engine judged it silent (no heartbeat for three intervals): an `agent_silent` alert
    /// is out.
    #[serde(default)]
    pub silent: bool,
}

/// One DAG in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagStatus {
    /// The DAG's name.
    pub dag: String,
    /// The site holding its mounted databases, when known.
    #[serde(default)]
    pub active_site: Option<SiteId>,
    /// Databases by site when they are mounted in more than one (a split DAG).
    #[serde(default)]
    pub split: BTreeMap<SiteId, Vec<String>>,
}

/// `GET /api/v1/status`: what the answering controller believes, all at one engine time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The engine time the answer describes.
    pub at: DateTime<Utc>,
    /// The lease as the answering controller sees it.
    pub leader: LeaderView,
    /// Every site.
    #[serde(default)]
    pub sites: Vec<SiteStatus>,
    /// The managed names listed (`?names=N`, default [`STATUS_NAMES`]; `names=all` lists
    /// every one): those with a change pending first, then those off their preferred target,
    /// then the rest by name.
    #[serde(default)]
    pub namespaces: Vec<NamespaceStatus>,
    /// How many managed names there are (the listed ones and the rest).
    #[serde(default)]
    pub namespaces_total: usize,
    /// How many managed names point elsewhere than their preferred target.
    #[serde(default)]
    pub off_preferred_total: usize,
    /// Names whose change is decided but not applied and verified yet (in flight at the
    /// provider, or failed and waiting for its retry), oldest first, at most
    /// [`PENDING_LISTED`].
    #[serde(default)]
    pub pending: Vec<PendingName>,
    /// How many names have a change pending (listed or not).
    #[serde(default)]
    pub pending_total: usize,
    /// Every DAG the controller has heard of.
    #[serde(default)]
    pub dags: Vec<DagStatus>,
    /// The controllers of the pair, the answering one included.
    #[serde(default)]
    pub controllers: Vec<ControllerPresence>,
    /// The active overrides.
    #[serde(default)]
    pub overrides: Overrides,
    /// The latest decisions, alerts and overrides (newest last).
    #[serde(default)]
    pub recent: Vec<RecentEvent>,
    /// Every configured agent, in name order.
    #[serde(default)]
    pub agents: Vec<AgentStatus>,
}

/// Managed names a status lists unless asked for more (`?names=N` or `names=all`).
pub const STATUS_NAMES: usize = 200;

/// Pending names a status lists; `pending_total` counts them all.
pub const PENDING_LISTED: usize = 100;

/// A name in [`Status::pending`]: its change, and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingName {
    /// The managed name.
    pub name: DnsName,
    /// Where it is being moved.
    pub target: DnsName,
    /// Since when the change has been pending (issued, or first failed).
    pub since: DateTime<Utc>,
    /// `in_flight` (at the provider now) or `waiting` (failed; retried at `retry_at`).
    pub state: String,
    /// When the next attempt is due (`waiting` only).
    #[serde(default)]
    pub retry_at: Option<DateTime<Utc>>,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure's class (`rate_limited`, `transient`, `drift`, …; `waiting` only).
    #[serde(default)]
    pub class: Option<String>,
    /// The last failure in the provider's words (`waiting` only).
    #[serde(default)]
    pub error: Option<String>,
}

/// `GET /api/v1/namespaces/{name}/explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainAnswer {
    /// The engine's explanation.
    pub explanation: Explanation,
    /// The same as text, as `sitewarden explain` prints it.
    pub text: String,
}

/// `GET /api/v1/overrides`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverridesAnswer {
    /// The active overrides.
    #[serde(default)]
    pub overrides: Overrides,
}

/// `GET /api/v1/history`: audit records from `since` on, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryAnswer {
    /// The oldest time asked for.
    pub since: DateTime<Utc>,
    /// The records, newest first, each with its `seq`.
    #[serde(default)]
    pub records: Vec<AuditRecord>,
    /// More records match than were returned: ask for `next`.
    #[serde(default)]
    pub truncated: bool,
    /// The query of the next (older) page, e.g. `before=1234`; set when `truncated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
