//! What the engine consumes: agent events, time, operator overrides, provider and leadership news.
//!
//! Every input is a plain value, serializable so that a run can be recorded and replayed (the
//! simulator and `sitewarden plan` do exactly that). Time never comes from the engine itself:
//! each call to [`super::Engine::step`] carries `now`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_shared::{DbCopySnapshot, Heartbeat, Observation, SiteId};

/// One input to the engine.
///
/// Observations dominate the traffic and are passed by reference, so they stay unboxed: boxing
/// would cost an allocation per event for the sake of the rare small variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// A probe result from an agent.
    Observation(Observation),
    /// A DAG's database copies as one collector saw them.
    DbCopy(DbCopySnapshot),
    /// An agent is alive.
    Heartbeat(Heartbeat),
    /// Time passed: staleness, expiry, failback windows and hold-downs are re-evaluated.
    Tick,
    /// An operator's override.
    Override(OverrideRequest),
    /// What the DNS provider said.
    Provider(ProviderReport),
    /// This controller won or lost the leader lease.
    Leadership(LeadershipChange),
}

/// An operator's request, audited with who and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideRequest {
    /// The operator (user name or chat handle).
    pub who: String,
    /// The reason, free text, kept in the audit trail.
    pub why: String,
    /// What to do.
    pub action: OverrideAction,
}

/// What an override does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OverrideAction {
    /// Point `namespace` at `target` whatever the verdicts say, until `expires` or a release.
    Pin {
        /// The managed name.
        namespace: String,
        /// One of the namespace's configured targets.
        target: String,
        /// When the pin lapses by itself.
        expires: Option<DateTime<Utc>>,
    },
    /// Treat `site` as Down for routing (planned maintenance).
    Drain {
        /// The site to drain.
        site: SiteId,
        /// When the drain lapses by itself.
        expires: Option<DateTime<Utc>>,
    },
    /// No automatic changes in `scope`.
    Freeze {
        /// One namespace or everything.
        scope: FreezeScope,
        /// When the freeze lapses by itself.
        expires: Option<DateTime<Utc>>,
    },
    /// Remove a pin, drain or freeze.
    Release {
        /// Which override to remove.
        what: ReleaseTarget,
    },
    /// Move `namespace` back to its most preferred Up candidate now (manual failback).
    Failback {
        /// The managed name.
        namespace: String,
    },
}

/// Where a freeze applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreezeScope {
    /// Every namespace.
    All,
    /// One namespace.
    Namespace(String),
}

/// Which override a release removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReleaseTarget {
    /// The pin on a namespace.
    Pin {
        /// The managed name.
        namespace: String,
    },
    /// The drain of a site.
    Drain {
        /// The drained site.
        site: SiteId,
    },
    /// A freeze.
    Freeze {
        /// The frozen scope.
        scope: FreezeScope,
    },
}

/// What the DNS provider reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum ProviderReport {
    /// The record currently holds `target` (`None`: no such record), written by `generation`
    /// when our ownership marker says so.
    Current {
        /// The managed name.
        namespace: String,
        /// The CNAME content.
        target: Option<String>,
        /// Generation from our marker, if the record carries one.
        generation: Option<u64>,
    },
    /// A `SetRecord` of `generation` was applied and verified.
    Applied {
        /// The managed name.
        namespace: String,
        /// The generation applied.
        generation: u64,
    },
    /// A `SetRecord` of `generation` failed.
    Failed {
        /// The managed name.
        namespace: String,
        /// The generation that failed.
        generation: u64,
        /// The provider's error, for the alert.
        error: String,
    },
}

/// The leader lease changed hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadershipChange {
    /// This controller now holds the lease.
    pub is_leader: bool,
    /// The lease revision (fencing token).
    pub epoch: u64,
}
