//! Admission of agent events: bad input is counted by cause and never reaches a verdict.
//!
//! An event is refused when its schema version is not ours, its agent is unknown or claims the
//! wrong site, it names an unknown site, server, check or DAG, it is stamped further in the
//! future than `skew_tolerance`, or its sequence number is not above the agent's last one.
//! Refusals are counted in [`Counters`] (kept in the state, exported as metrics by the runtime);
//! the first refusal of each cause is also audited. An agent restart (a heartbeat with a later
//! `started_at`) resets its sequence floor, because a new process numbers from the start.

use chrono::{DateTime, TimeDelta, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::SCHEMA_VERSION;
use sitewarden_contract::event::EventMeta;

use super::state::AgentState;
use crate::config::{AgentConfig, ControllerConfig};

/// Why an event was refused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RejectCause {
    /// `schema_version` is not 1.
    SchemaVersion,
    /// The agent is not configured.
    UnknownAgent,
    /// The agent claims a site other than its configured one.
    AgentSiteMismatch,
    /// The probed site is not configured.
    UnknownSite,
    /// The probed server is not configured in that site.
    UnknownServer,
    /// The agent is not configured to run that check.
    UnknownCheck,
    /// The DAG is not configured.
    UnknownDag,
    /// The sequence number is not above the agent's last one.
    OutOfOrder,
    /// `observed_at` lies beyond the skew tolerance in the future.
    Future,
}

/// Counts of accepted and refused events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Events admitted.
    pub accepted: u64,
    /// Observations admitted for a protocol that no site counts (kept out of verdicts).
    pub ignored_protocol: u64,
    /// Refused: schema version.
    pub schema_version: u64,
    /// Refused: unknown agent.
    pub unknown_agent: u64,
    /// Refused: agent and site disagree with the configuration.
    pub agent_site_mismatch: u64,
    /// Refused: unknown probed site.
    pub unknown_site: u64,
    /// Refused: unknown server.
    pub unknown_server: u64,
    /// Refused: unknown check.
    pub unknown_check: u64,
    /// Refused: unknown DAG.
    pub unknown_dag: u64,
    /// Refused: out of order.
    pub out_of_order: u64,
    /// Refused: from the future.
    pub future: u64,
}

impl Counters {
    /// Counts one refusal; returns the new count for that cause.
    pub fn bump(&mut self, cause: RejectCause) -> u64 {
        let c = match cause {
            RejectCause::SchemaVersion => &mut self.schema_version,
            RejectCause::UnknownAgent => &mut self.unknown_agent,
            RejectCause::AgentSiteMismatch => &mut self.agent_site_mismatch,
            RejectCause::UnknownSite => &mut self.unknown_site,
            RejectCause::UnknownServer => &mut self.unknown_server,
            RejectCause::UnknownCheck => &mut self.unknown_check,
            RejectCause::UnknownDag => &mut self.unknown_dag,
            RejectCause::OutOfOrder => &mut self.out_of_order,
            RejectCause::Future => &mut self.future,
        };
        *c = c.saturating_add(1);
        *c
    }

    /// All refusals.
    pub fn rejected(&self) -> u64 {
        self.schema_version
            + self.unknown_agent
            + self.agent_site_mismatch
            + self.unknown_site
            + self.unknown_server
            + self.unknown_check
            + self.unknown_dag
            + self.out_of_order
            + self.future
    }
}

/// Checks the leading fields every event carries (not the sequence number); answers the
/// sending agent's configuration.
pub fn check_meta<'c>(
    config: &'c ControllerConfig,
    meta: &EventMeta<'_>,
    now: DateTime<Utc>,
    skew: TimeDelta,
) -> Result<&'c AgentConfig, RejectCause> {
    if meta.schema_version != SCHEMA_VERSION {
        return Err(RejectCause::SchemaVersion);
    }
    let Some(agent) = config.agents.get(meta.agent.as_str()) else {
        return Err(RejectCause::UnknownAgent);
    };
    if agent.site != *meta.site {
        return Err(RejectCause::AgentSiteMismatch);
    }
    if meta.observed_at > now + skew {
        return Err(RejectCause::Future);
    }
    Ok(agent)
}

/// Checks and advances the agent's sequence floor; call last, once everything else passed.
pub fn check_seq(agent: &mut AgentState, seq: u64) -> Result<(), RejectCause> {
    match agent.last_seq {
        Some(last) if seq <= last => Err(RejectCause::OutOfOrder),
        _ => {
            agent.last_seq = Some(seq);
            Ok(())
        }
    }
}
