//! Evidence: the facts behind a verdict or a decision, kept so a human can ask "why".
//!
//! A [`Rule`] names the decision rule that fired; [`Evidence`] holds it with a sentence and, for
//! each site involved, the verdict, since when, and the observers and checks that produced it.
//! Evidence is built only when a decision changes, never on the per-observation path.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::{AgentId, CheckName, ErrorClass, ServerId, SiteId};

use super::observer::CheckStatus;
use super::quorum::QuorumResult;
use super::verdict::Verdict;

/// The decision rule that produced an outcome (see `docs/engine.md`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The record has not been read yet: nothing is written before it is.
    AwaitingRecord,
    /// Nothing to do: the target is the most preferred Up candidate.
    Steady,
    /// Failed over: the name stands on a less preferred candidate because the most preferred
    /// one needs a site that is Down or Unknown (the note says which, since when).
    FailedOver,
    /// As `FailedOver`, where every site keeping the name off its preferred target is drained;
    /// also the move itself when the target needs a drained site (at once, no hold-down).
    Drained,
    /// The target needs a Down site: move at once, hold-down does not apply.
    MoveAwayFromDown,
    /// A more preferred candidate has been Up for `failback_after`: move back.
    Failback,
    /// A more preferred candidate is Up but has not been for `failback_after` yet.
    FailbackPending,
    /// `failback = "manual"`: a more preferred candidate is Up; waiting for an operator.
    FailbackManual,
    /// An operator asked for failback.
    ManualFailback,
    /// A change is due but the namespace changed less than `hold_down` ago.
    HoldDown,
    /// Follow the site where the DAG's mailboxes are active.
    FollowMailbox,
    /// Mailboxes are active in a site whose client access is not Up: stay.
    FollowTargetNotUp,
    /// The DAG's active site is unknown: stay.
    FollowDagUnknown,
    /// A site the target needs is Unknown: fail static.
    FailStaticUnknown,
    /// Every site is Down: fail static, the observers are the likelier fault.
    FailStaticAllDown,
    /// The target is Down and no candidate is Up: stay.
    FailStaticNoCandidate,
    /// Sites see each other Down while each sees itself Up: no change.
    Partition,
    /// An operator pinned the namespace.
    Pinned,
    /// An operator froze automatic changes.
    Frozen,
    /// The record holds a target that is not one of ours: observed, not fought.
    Drift,
    /// Sites a more preferred target needs have no verdict yet (start-up) or are rising: wait.
    AwaitingVerdicts,
    /// The provider has no record for the name: nothing to change until it is created.
    RecordMissing,
    /// A change failed; the next attempt waits for the retry schedule.
    RetryWait,
}

impl Rule {
    /// The rule's name as written in the API, the audit trail and the docs.
    pub fn word(self) -> &'static str {
        match self {
            Rule::AwaitingRecord => "awaiting_record",
            Rule::Steady => "steady",
            Rule::FailedOver => "failed_over",
            Rule::Drained => "drained",
            Rule::MoveAwayFromDown => "move_away_from_down",
            Rule::Failback => "failback",
            Rule::FailbackPending => "failback_pending",
            Rule::FailbackManual => "failback_manual",
            Rule::ManualFailback => "manual_failback",
            Rule::HoldDown => "hold_down",
            Rule::FollowMailbox => "follow_mailbox",
            Rule::FollowTargetNotUp => "follow_target_not_up",
            Rule::FollowDagUnknown => "follow_dag_unknown",
            Rule::FailStaticUnknown => "fail_static_unknown",
            Rule::FailStaticAllDown => "fail_static_all_down",
            Rule::FailStaticNoCandidate => "fail_static_no_candidate",
            Rule::Partition => "partition",
            Rule::Pinned => "pinned",
            Rule::Frozen => "frozen",
            Rule::Drift => "drift",
            Rule::AwaitingVerdicts => "awaiting_verdicts",
            Rule::RecordMissing => "record_missing",
            Rule::RetryWait => "retry_wait",
        }
    }

    /// Automatic changes that are not emergencies, limited by `hold_down`.
    pub fn is_non_emergency_change(self) -> bool {
        matches!(self, Rule::Failback | Rule::FollowMailbox)
    }

    /// Changes made by the engine on its own (not by an operator).
    pub fn is_automatic_change(self) -> bool {
        self.is_non_emergency_change() || matches!(self, Rule::MoveAwayFromDown | Rule::Drained)
    }
}

/// One observer × check as seen at the time of the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObserverEvidence {
    /// The agent.
    pub agent: AgentId,
    /// The agent's site.
    pub site: SiteId,
    /// The check it ran.
    pub check: CheckName,
    /// Passing, failing or pending.
    pub status: CheckStatus,
    /// When it entered that status.
    pub since: DateTime<Utc>,
    /// When its current streak of equal results began (e.g. the first failed probe).
    pub streak_started: DateTime<Utc>,
    /// Length of that streak.
    pub streak: u32,
    /// The outcome of that streak's results: a streak of failures under a status still
    /// `passing` is a check on its way down (fewer than `fall` yet). `None` in evidence written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streak_outcome: Option<sitewarden_contract::Outcome>,
    /// Its latest result's `observed_at`.
    pub last_at: DateTime<Utc>,
    /// Whether that result is recent enough to count.
    pub fresh: bool,
    /// The latest failure's class, if the latest result failed.
    pub error: Option<ErrorClass>,
    /// The latest result's HTTP status, when a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The latest result's latency in milliseconds (connect to response or failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// One server × protocol of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentEvidence {
    /// The server.
    pub server: ServerId,
    /// The protocol.
    pub protocol: String,
    /// The quorum's result.
    pub result: QuorumResult,
    /// When it took that result.
    pub since: Option<DateTime<Utc>>,
    /// The observers behind it (omitted for Up components in decision evidence, to stay short).
    pub observers: Vec<ObserverEvidence>,
}

/// A site's verdict and what produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SiteEvidence {
    /// The verdict.
    pub verdict: Verdict,
    /// Since when.
    pub since: Option<DateTime<Utc>>,
    /// Since when it has been continuously routable (Up or Degraded and not drained).
    pub routable_since: Option<DateTime<Utc>>,
    /// An operator drained it.
    pub drained: bool,
    /// Serving but trending down: not a place to move a name to.
    pub falling: bool,
    /// Down but coming back: no name is moved away on this evidence.
    #[serde(default)]
    pub rising: bool,
    /// Server × protocol components, in name order.
    pub components: Vec<ComponentEvidence>,
}

/// Why something was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    /// The rule that fired.
    pub rule: Rule,
    /// When.
    pub at: DateTime<Utc>,
    /// One sentence for humans.
    pub note: String,
    /// The sites involved.
    // Shared (`Arc`): one site's facts at one instant are the same for every decision made
    // then, and a site going Down moves hundreds of names at once; the map too is shared by
    // every name needing the same sites, and by the copies a decision's commands carry.
    pub sites: Arc<BTreeMap<SiteId, Arc<SiteEvidence>>>,
    /// Rule `failback_pending`: when failback becomes eligible (the time its note names), if
    /// the sites stay Up until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_eligible_at: Option<DateTime<Utc>>,
}
