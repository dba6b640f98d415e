//! Per server × protocol quorum over fresh observers.
//!
//! Each fresh observer has one opinion about a server × protocol: failing if any of its fresh
//! checks for it is failing *now* (status failing and its latest result a failure), passing if
//! at least one is passing and none failing, none otherwise. A check that is recovering — failing
//! by hysteresis but passing again, fewer than `rise` times — votes neither way: rise/fall is an
//! observer's own hysteresis, while the quorum is made of simultaneous evidence, so failures of
//! different observers that never overlap in time can never add up to Down. The component is Down
//! when failing opinions reach the quorum and Up when passing opinions do; the quorum is a majority of the observers with an opinion and never less than
//! `min_observers`. Anything else (too few observers, a split) is Unknown. The tally also notes
//! whether an observer outside the server's site said failing, and which observer sites agree
//! among themselves, for the site verdict and partition detection.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::{AgentId, CheckName, SiteId};

use super::observer::{CheckState, CheckStatus};
use crate::config::AgentConfig;

/// What the quorum of fresh observers says about one server × protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuorumResult {
    /// A quorum says passing.
    Up,
    /// A quorum says failing.
    Down,
    /// Too few fresh observers, or they disagree.
    Unknown,
}

/// One server × protocol: its observers' checks and the quorum's current result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The quorum's result.
    pub result: QuorumResult,
    /// When it took that result (`None` before the first tally).
    pub since: Option<DateTime<Utc>>,
    /// Down with at least one failing observer outside the server's site.
    pub down_seen_outside: bool,
    /// Not Down yet, but the latest results of a quorum of fresh observers are failures: the
    /// component is probably on its way down, so its site is no place to move a name to.
    pub falling: bool,
    /// Down, but some fresh observer that was failing passes again (it is recovering, fewer
    /// than `rise` times): the component is probably coming back, so no name is moved away
    /// from its site on this evidence until the trend resolves.
    #[serde(default)]
    pub rising: bool,
    /// Observer sites whose fresh opinions are all failing.
    pub failing_sites: BTreeSet<SiteId>,
    /// Observer sites whose fresh opinions are all passing.
    pub passing_sites: BTreeSet<SiteId>,
    /// Observer → check → hysteresis state.
    pub observers: BTreeMap<AgentId, BTreeMap<CheckName, CheckState>>,
}

impl Component {
    /// A component nobody has reported on yet.
    pub fn new() -> Self {
        Self {
            result: QuorumResult::Unknown,
            since: None,
            down_seen_outside: false,
            falling: false,
            rising: false,
            failing_sites: BTreeSet::new(),
            passing_sites: BTreeSet::new(),
            observers: BTreeMap::new(),
        }
    }
}

impl Default for Component {
    fn default() -> Self {
        Self::new()
    }
}

/// One check's vote: failing only while its status is failing *and* its latest result is a
/// failure (a recovering check votes neither way), passing while its status is passing.
pub fn vote(check: &CheckState) -> Option<CheckStatus> {
    match check.status {
        CheckStatus::Failing if check.last_outcome == sitewarden_contract::Outcome::Fail => {
            Some(CheckStatus::Failing)
        }
        CheckStatus::Passing => Some(CheckStatus::Passing),
        _ => None,
    }
}

/// One observer's opinion over its fresh checks.
pub fn opinion(
    checks: &BTreeMap<CheckName, CheckState>,
    now: DateTime<Utc>,
    stale_after: TimeDelta,
) -> Option<CheckStatus> {
    let mut passing = false;
    for c in checks.values().filter(|c| c.is_fresh(now, stale_after)) {
        match vote(c) {
            Some(CheckStatus::Failing) => return Some(CheckStatus::Failing),
            Some(CheckStatus::Passing) => passing = true,
            _ => {}
        }
    }
    passing.then_some(CheckStatus::Passing)
}

/// Inputs of a tally that come from configuration.
pub struct QuorumRules<'a> {
    /// Known agents, for their sites.
    pub agents: &'a BTreeMap<AgentId, AgentConfig>,
    /// The site the server belongs to.
    pub server_site: &'a SiteId,
    /// Staleness bound.
    pub stale_after: TimeDelta,
    /// Smallest quorum.
    pub min_observers: usize,
}

/// Recounts `component` at `now`; returns whether anything the site verdict reads changed.
pub fn tally(component: &mut Component, rules: &QuorumRules<'_>, now: DateTime<Utc>) -> bool {
    let mut passing = 0usize;
    let mut failing = 0usize;
    let mut outside_failing = false;
    let mut failing_sites = BTreeSet::new();
    let mut passing_sites = BTreeSet::new();
    let mut mixed = BTreeSet::new();
    let mut fresh = 0usize;
    let mut latest_fail = 0usize;
    let mut recovering = false;
    for (agent, checks) in &component.observers {
        let mut is_fresh = false;
        let mut failed_last = false;
        for c in checks
            .values()
            .filter(|c| c.is_fresh(now, rules.stale_after))
        {
            is_fresh = true;
            failed_last |= c.last_outcome == sitewarden_contract::Outcome::Fail;
            recovering |= c.is_recovering(now, rules.stale_after);
        }
        fresh += usize::from(is_fresh);
        latest_fail += usize::from(failed_last);
        let Some(op) = opinion(checks, now, rules.stale_after) else {
            continue;
        };
        let site = rules.agents.get(agent).map(|a| &a.site);
        let (mine, other) = match op {
            CheckStatus::Failing => {
                failing += 1;
                if site.is_some_and(|s| s != rules.server_site) {
                    outside_failing = true;
                }
                (&mut failing_sites, &passing_sites)
            }
            _ => {
                passing += 1;
                (&mut passing_sites, &failing_sites)
            }
        };
        if let Some(site) = site {
            if other.contains(site) {
                mixed.insert(site.clone());
            }
            mine.insert(site.clone());
        }
    }
    for site in &mixed {
        failing_sites.remove(site);
        passing_sites.remove(site);
    }
    let need = (((passing + failing) / 2) + 1).max(rules.min_observers);
    let result = if failing >= need {
        QuorumResult::Down
    } else if passing >= need {
        QuorumResult::Up
    } else {
        QuorumResult::Unknown
    };
    let down_seen_outside = result == QuorumResult::Down && outside_failing;
    let falling = result != QuorumResult::Down
        && latest_fail > 0
        && latest_fail >= ((fresh / 2) + 1).max(rules.min_observers);
    let rising = result == QuorumResult::Down && recovering;
    let mut changed = component.falling != falling
        || component.rising != rising
        || component.down_seen_outside != down_seen_outside
        || component.failing_sites != failing_sites
        || component.passing_sites != passing_sites;
    component.failing_sites = failing_sites;
    component.passing_sites = passing_sites;
    component.down_seen_outside = down_seen_outside;
    component.falling = falling;
    component.rising = rising;
    if component.result != result || component.since.is_none() {
        component.result = result;
        component.since = Some(now);
        changed = true;
    }
    changed
}
