//! What the engine asks the runtime to do: set a record, notify edges, alert, audit.
//!
//! Commands are values; the engine never performs them. Only the leader receives `SetRecord`
//! and `NotifyEdge`; a standby gets the same decisions wrapped in [`AuditEvent::Standby`], so it
//! records what it would have done.

use crate::order::{Epoch, Generation};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::{AgentId, DnsName, SiteId};

use super::evidence::{Evidence, Rule};
use super::input::{OverrideRequest, ProviderReport};
use super::intake::RejectCause;
use super::verdict::Verdict;

/// One command for the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Point a namespace at a target.
    SetRecord(SetRecord),
    /// Tell edge proxies where mailboxes are active and how every site is doing.
    NotifyEdge(EdgeNotice),
    /// Tell a human.
    Alert(Alert),
    /// Record for the audit trail.
    Audit(Audit),
}

/// Point `namespace` (a CNAME) at `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SetRecord {
    /// The managed name.
    pub namespace: DnsName,
    /// The new CNAME content.
    pub target: DnsName,
    /// TTL in seconds.
    pub ttl_secs: u64,
    /// The rule that decided it.
    pub reason: Rule,
    /// Monotonic plan number; never apply one older than the newest applied.
    pub generation: Generation,
    /// Leader epoch (fencing token) to write into the ownership marker.
    pub epoch: Epoch,
    /// Why.
    pub evidence: Evidence,
}

/// Edge proxy notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EdgeNotice {
    /// Monotonic notice number.
    pub generation: u64,
    /// Per DAG, the site holding its mounted databases (`None`: unknown).
    pub active_sites: BTreeMap<String, Option<SiteId>>,
    /// Every site with client access and its verdict.
    pub verdicts: BTreeMap<SiteId, Verdict>,
}

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record; something resolved or may be done by hand.
    Info,
    /// Needs a look.
    Warning,
    /// Needs a human now.
    Critical,
}

/// What an alert is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A site's verdict changed (subject: the site).
    SiteVerdict,
    /// A namespace cannot follow the rules and fails static (subject: the namespace).
    FailStatic,
    /// Every site is Down.
    AllSitesDown,
    /// Sites see each other Down.
    Partition,
    /// A namespace is ready for a manual failback.
    FailbackAvailable,
    /// A frozen or pinned namespace points at a Down site.
    OverrideTargetDown,
    /// A record holds something we did not write.
    Drift,
    /// The provider failed to apply a change.
    ApplyFailed,
    /// An agent stopped sending heartbeats.
    AgentSilent,
    /// A record change was decided and recorded as an intent (subject: the namespace).
    DnsDecided,
    /// A record change was applied and verified (subject: the namespace).
    DnsApplied,
    /// The DNS provider needed retries (rate limited, 5xx, timeouts) to answer (subject:
    /// `dns-provider`).
    ProviderDegraded,
    /// The DNS provider refused the credentials (subject: `dns-provider`).
    ProviderAuth,
    /// This controller became or stopped being the acting leader (subject: `controller`).
    Leadership,
    /// NATS is unreachable or without JetStream quorum (subject: `nats`, this controller's
    /// connection).
    BusLost,
    /// A database copy is failed, suspended or far behind (subject: the DAG).
    CopyTrouble,
    /// A client-access certificate expires soon or does not cover a name (subject: the server).
    Certificate,
    /// Not every authoritative server answers a new target in time (subject: the namespace).
    PropagationSlow,
    /// A candidate target does not resolve (subject: the target).
    TargetUnresolvable,
    /// A DAG's databases are active in more than one site (subject: the DAG).
    DagSplit,
    /// The events stream is near its cap and drops its oldest events (subject: the stream).
    EventsNearCap,
    /// A condition cleared.
    Resolved,
}

/// Subject of the alerts about this controller's connection to NATS.
pub const BUS_SUBJECT: &str = "nats";
/// Subject of the alerts about the events stream's fill.
pub const EVENTS_SUBJECT: &str = "SITEWARDEN_EVENTS";

/// A message for humans (chat-ops).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// How urgent.
    pub severity: Severity,
    /// What about.
    pub kind: AlertKind,
    /// The namespace, site, agent or DAG concerned.
    pub subject: String,
    /// One or two sentences.
    pub text: String,
    /// The facts behind it, when there are some.
    pub evidence: Option<Evidence>,
}

impl Alert {
    /// Alerts about this controller itself (its bus, its role): every controller of the pair
    /// sends its own, the standby included.
    pub fn is_about_this_controller(&self) -> bool {
        matches!(self.kind, AlertKind::BusLost | AlertKind::Leadership)
            || (self.kind == AlertKind::Resolved && self.subject == BUS_SUBJECT)
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Audit {
    /// Engine time of the event.
    pub at: DateTime<Utc>,
    /// What happened.
    pub event: AuditEvent,
}

/// What an audit record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Its schema's name beside the API's `AuditEvent` (the record's event, engine or runtime).
#[schemars(rename = "EngineAuditEvent")]
pub enum AuditEvent {
    /// A namespace's decision changed (a move, or a new reason to stay).
    Decision {
        /// The managed name.
        namespace: DnsName,
        /// Where it pointed.
        from: Option<DnsName>,
        /// Where it points now (same as `from` when staying).
        to: Option<DnsName>,
        /// Why.
        evidence: Evidence,
    },
    /// A site's verdict changed.
    Verdict {
        /// The site.
        site: SiteId,
        /// Previous verdict.
        from: Verdict,
        /// New verdict.
        to: Verdict,
        /// Why.
        evidence: Evidence,
    },
    /// A DAG's active site changed.
    DagActiveSite {
        /// The DAG.
        dag: String,
        /// Previous site.
        from: Option<SiteId>,
        /// New site.
        to: Option<SiteId>,
    },
    /// An override was accepted.
    Override(OverrideRequest),
    /// An override was refused.
    OverrideRejected {
        /// The request.
        request: OverrideRequest,
        /// Why it was refused.
        reason: String,
    },
    /// An override lapsed.
    OverrideExpired {
        /// Which one, in words.
        what: String,
    },
    /// The first event refused for this cause (later ones are only counted).
    InputRejected {
        /// The cause.
        cause: RejectCause,
        /// The sending agent.
        agent: AgentId,
    },
    /// A provider report.
    Provider(ProviderReport),
    /// Leadership changed.
    Leadership {
        /// Now leader.
        is_leader: bool,
        /// Lease revision.
        epoch: Epoch,
    },
    /// The standby would have issued this command. A field of its own, not flattened: an
    /// alert's own `kind` would otherwise clash with the event's `kind`.
    Standby {
        /// The command, with its own `command` tag.
        command: Box<Command>,
    },
}
