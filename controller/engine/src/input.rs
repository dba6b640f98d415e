//! What the engine consumes: agent events, time, operator overrides, provider and leadership news.
//!
//! Every input is a plain value, serializable so that a run can be recorded and replayed
//! (`sitewarden-controller plan` replays the events stream through a fresh engine). Time never comes from the engine itself:
//! each call to [`super::Engine::step`] carries `now`.

use crate::order::{Epoch, Generation};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::{DbCopySnapshot, DnsName, Heartbeat, Observation, SiteId};

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
    /// Whether this controller reaches NATS with a JetStream quorum.
    Bus(BusReport),
    /// How full the events stream is, read every few seconds.
    EventsStream(StreamFill),
}

/// Share of the events stream's byte or message cap at which the engine alerts; the alert is
/// resolved once the stream is back under half of it.
pub const EVENTS_NEAR_CAP_PERCENT: i64 = 80;

/// The events stream's fill against its caps, and the publisher (`<site>.<agent>`) whose live
/// events took the most bytes since the previous look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFill {
    /// Bytes stored.
    pub bytes: u64,
    /// Byte cap (≤ 0: none).
    pub max_bytes: i64,
    /// Messages stored.
    pub messages: u64,
    /// Message cap (≤ 0: none).
    pub max_messages: i64,
    /// The top publisher and its bytes since the previous look.
    pub top_publisher: Option<(String, u64)>,
}

impl StreamFill {
    /// How full the stream is, in percent of the nearer cap (0 when it has none).
    pub fn percent(&self) -> i64 {
        let pct = |used: u64, cap: i64| {
            if cap <= 0 {
                0
            } else {
                i64::try_from(u128::from(used) * 100 / cap.unsigned_abs() as u128)
                    .unwrap_or(i64::MAX)
            }
        };
        pct(self.bytes, self.max_bytes).max(pct(self.messages, self.max_messages))
    }
}

/// What the runtime knows about the bus, reported on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusReport {
    /// NATS answers and JetStream has a quorum (the lease can be read and renewed).
    pub reachable: bool,
}

/// An operator's request, audited with who and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OverrideRequest {
    /// The operator (user name or chat handle).
    pub who: String,
    /// The reason, free text, kept in the audit trail.
    pub why: String,
    /// What to do.
    pub action: OverrideAction,
    /// Do it even though it would point a name at a target whose sites are not Up (a pin to a
    /// Down site, a drain that leaves a name nowhere to go); marked in the audit and the alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What an override does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OverrideAction {
    /// Point `namespace` at `target` whatever the verdicts say, until `expires` or a release.
    Pin {
        /// The managed name.
        namespace: DnsName,
        /// One of the namespace's configured targets.
        target: DnsName,
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
        namespace: DnsName,
    },
}

impl OverrideAction {
    /// The managed name this override acts on, if it names one.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Self::Pin { namespace, .. } | Self::Failback { namespace } => Some(namespace),
            Self::Release {
                what: ReleaseTarget::Pin { namespace },
            } => Some(namespace),
            Self::Freeze {
                scope: FreezeScope::Namespace(n),
                ..
            }
            | Self::Release {
                what:
                    ReleaseTarget::Freeze {
                        scope: FreezeScope::Namespace(n),
                    },
            } => Some(n),
            _ => None,
        }
    }
}

/// Where a freeze applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FreezeScope {
    /// Every namespace.
    All,
    /// One namespace.
    Namespace(DnsName),
}

/// Which override a release removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReleaseTarget {
    /// The pin on a namespace.
    Pin {
        /// The managed name.
        namespace: DnsName,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum ProviderReport {
    /// The record currently holds `target` (`None`: no such record), written by `generation`
    /// when our ownership marker says so.
    Current {
        /// The managed name.
        namespace: DnsName,
        /// The CNAME content.
        target: Option<DnsName>,
        /// Generation from our marker, if the record carries one.
        generation: Option<Generation>,
        /// What sitewarden's own books say that marker's generation wrote (`None`: no book for
        /// that generation). A record whose content differs was edited outside sitewarden.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        written: Option<DnsName>,
    },
    /// A `SetRecord` of `generation` was applied and verified.
    Applied {
        /// The managed name.
        namespace: DnsName,
        /// The generation applied.
        generation: Generation,
        /// What the provider's API took to do it.
        #[serde(default)]
        calls: CallStats,
    },
    /// A `SetRecord` of `generation` failed.
    Failed {
        /// The managed name.
        namespace: DnsName,
        /// The generation that failed.
        generation: Generation,
        /// The provider's error, for the alert.
        error: String,
        /// What kind of failure: decides the retry schedule and the alert.
        #[serde(default)]
        class: FailureClass,
        /// What the provider's API took before it failed.
        #[serde(default)]
        calls: CallStats,
    },
    /// How an applied change reached the zone's authoritative servers.
    Propagation {
        /// The managed name.
        namespace: DnsName,
        /// The target that was applied.
        target: DnsName,
        /// Every watched server answers the target.
        converged: bool,
        /// Time from the apply until convergence, or until the watch gave up.
        elapsed_ms: u64,
        /// The servers still answering something else, in words.
        #[serde(default)]
        laggards: Vec<String>,
    },
    /// Whether a candidate target resolves (`problem: None`: it does).
    TargetCheck {
        /// The candidate target.
        target: DnsName,
        /// Why it does not resolve.
        problem: Option<String>,
    },
}

/// API calls one apply took, as the provider's client counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallStats {
    /// Calls made.
    pub calls: u32,
    /// Retries among them (rate limited, 5xx, timeouts).
    pub retries: u32,
    /// Of which rate limited.
    pub rate_limited: u32,
    /// Time from the start of the apply to its end.
    pub elapsed_ms: u64,
}

/// Why a record change failed; the engine picks the retry schedule and the alert from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum FailureClass {
    /// The record carries no sitewarden marker and the name does not adopt unmarked records.
    Unmarked,
    /// The provider has no record for the name.
    Missing,
    /// The record shows a newer epoch: another leader wrote it.
    NewerEpoch,
    /// The record shows a newer generation: a newer plan is in place.
    OlderGeneration,
    /// The record's content is not what the controller expected: changed outside sitewarden.
    Drift,
    /// The lease lapsed before the write.
    LeaseLost,
    /// The provider refused the credentials.
    Auth,
    /// The client-side budget of API calls is empty; the call was not made.
    Budget,
    /// The provider's rate limit; `retry_after_ms` is the provider's `Retry-After` if seen.
    RateLimited {
        /// The provider's `Retry-After`, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// 5xx, timeouts, resets, a garbled answer, a state-store hiccup.
    #[default]
    Transient,
    /// The provider rejected the request as invalid.
    Rejected,
}

impl FailureClass {
    /// A refusal a retry cannot fix: a human must act (create or mark the record, fix the
    /// credentials, fix the request). Retried only on the slow schedule or on new evidence.
    pub fn needs_human(self) -> bool {
        matches!(
            self,
            Self::Unmarked | Self::Missing | Self::Auth | Self::Rejected | Self::Drift
        )
    }

    /// A condition of the whole provider account rather than of one name: it holds back every
    /// name's change, whatever the target.
    pub fn provider_wide(self) -> bool {
        matches!(self, Self::Auth | Self::Budget | Self::RateLimited { .. })
    }

    /// A short word for logs, metrics and alerts.
    pub fn word(self) -> &'static str {
        match self {
            Self::Unmarked => "unmarked",
            Self::Missing => "missing",
            Self::NewerEpoch => "newer_epoch",
            Self::OlderGeneration => "older_generation",
            Self::Drift => "drift",
            Self::LeaseLost => "lease_lost",
            Self::Auth => "auth",
            Self::Budget => "budget",
            Self::RateLimited { .. } => "rate_limited",
            Self::Transient => "transient",
            Self::Rejected => "rejected",
        }
    }

    /// What a human should do about it, in one sentence.
    pub fn fix(self, name: &str) -> String {
        match self {
            Self::Unmarked => format!(
                "the record of {name} has no sitewarden marker, so sitewarden only observes it; add the marker once (docs/dns.md) or set on_unmarked = \"adopt\" for {name}"
            ),
            Self::Missing => format!(
                "the provider has no CNAME record for {name}; create it once (docs/dns.md; with the built-in DNS: sitewarden-controller zone create), sitewarden changes records but never creates them"
            ),
            Self::Auth => "the DNS provider refuses the credentials; check the API token or keys and their scopes (docs/dns.md), then nothing else is needed: the next attempt uses them".to_owned(),
            Self::Rejected => format!(
                "the DNS provider rejects the change of {name} as invalid; read the error, fix the zone or the configuration"
            ),
            Self::Drift => format!(
                "{name} was changed outside sitewarden since it was last read; sitewarden leaves it alone until an operator pins, releases or fails it back"
            ),
            Self::NewerEpoch | Self::LeaseLost => {
                "another controller holds the lease; this one stops writing".to_owned()
            }
            Self::OlderGeneration => {
                "a newer plan is already in place; the record is read again".to_owned()
            }
            Self::Budget => "the client-side API budget is empty; the change waits for it to refill".to_owned(),
            Self::RateLimited { .. } => {
                "the provider's rate limit was hit; no call goes out before its Retry-After".to_owned()
            }
            Self::Transient => "the provider or the state store failed; retrying with backoff".to_owned(),
        }
    }
}

/// The leader lease changed hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadershipChange {
    /// This controller now holds the lease.
    pub is_leader: bool,
    /// The lease revision (fencing token).
    pub epoch: Epoch,
}

#[cfg(test)]
mod tests {
    use super::StreamFill;

    fn fill(bytes: u64, max_bytes: i64, messages: u64, max_messages: i64) -> StreamFill {
        StreamFill {
            bytes,
            max_bytes,
            messages,
            max_messages,
            top_publisher: None,
        }
    }

    #[test]
    fn the_fill_is_the_nearer_cap_and_no_cap_is_empty() {
        assert_eq!(fill(80, 100, 1, 1000).percent(), 80);
        assert_eq!(fill(1, 100, 900, 1000).percent(), 90);
        assert_eq!(fill(5, -1, 5, 0).percent(), 0);
        assert_eq!(fill(u64::MAX, 1, 0, 0).percent(), i64::MAX);
    }
}
