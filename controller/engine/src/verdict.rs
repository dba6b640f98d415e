//! Per site verdict: Up, Degraded, Down or Unknown, from its server × protocol components.
//!
//! Up: every counted component is Up. Degraded: not all Up, but every counted protocol still
//! has an Up server (clients are served). Down: some counted protocol has every server Down,
//! each seen failing by at least one observer outside the site — positive evidence, never
//! silence. Anything else is Unknown. Routing treats Up and Degraded alike ("serving").
//! A serving site where some protocol has every server Down or "falling" (a quorum's latest
//! results are failures) is marked falling: it still counts as Up for the names pointing at it,
//! but no name is moved to it until the trend resolves, so two sites dying together do not
//! produce a move to the one whose third failure arrives a moment later.
//! A Down site where a server it is Down for is coming back (an observer that was failing passes
//! again) is marked rising: no name is moved away from it on that evidence until the trend
//! resolves, so every site recovering together after a total outage moves nothing.
//! The judgement also says which observer sites see the site entirely down or entirely up, so
//! the namespace rules can recognise an inter-site partition.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::{ServerId, SiteId};

use super::quorum::{Component, QuorumResult};
use crate::config::SiteConfig;

/// A site's client-access verdict.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every counted server × protocol is Up.
    Up,
    /// Some are not Up, but every counted protocol has an Up server.
    Degraded,
    /// A counted protocol is Down on every server, confirmed from outside the site.
    Down,
    /// Not enough evidence either way.
    Unknown,
}

impl Verdict {
    /// Up or Degraded: clients are served.
    pub fn is_serving(self) -> bool {
        matches!(self, Verdict::Up | Verdict::Degraded)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Up => "Up",
            Verdict::Degraded => "Degraded",
            Verdict::Down => "Down",
            Verdict::Unknown => "Unknown",
        })
    }
}

/// A site's verdict over time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    /// Current verdict.
    pub verdict: Verdict,
    /// When it took that verdict (`None` before the first judgement).
    pub since: Option<DateTime<Utc>>,
    /// Start of the current continuous Up-or-Degraded period.
    pub serving_since: Option<DateTime<Utc>>,
    /// When an operator last released a drain of this site (failback waits from here too).
    pub undrained_at: Option<DateTime<Utc>>,
    /// Serving, but some protocol has every server Down or falling: not a place to move to.
    #[serde(default)]
    pub falling: bool,
    /// Down, but a server it is Down for is coming back (an observer that was failing passes
    /// again): no name is moved away from the site on this evidence until the trend resolves.
    #[serde(default)]
    pub rising: bool,
    /// The verdict last alerted (`None`: none yet; start-up is quiet).
    #[serde(default)]
    pub alerted: Option<Verdict>,
    /// Since when a Degraded or Unknown verdict waits to be alerted: it is alerted only once it
    /// has held for one probe interval, so a site whose servers fall one by one within a round
    /// raises Down alone, not a "clients are still served" warning beside it.
    #[serde(default)]
    pub alert_pending: Option<DateTime<Utc>>,
    /// Observer sites that see this site entirely Down for some protocol.
    pub seen_down_by: BTreeSet<SiteId>,
    /// Observer sites that see every component of this site passing.
    pub seen_up_by: BTreeSet<SiteId>,
}

impl SiteState {
    /// A site never judged.
    pub fn new() -> Self {
        Self {
            verdict: Verdict::Unknown,
            since: None,
            serving_since: None,
            undrained_at: None,
            falling: false,
            rising: false,
            alerted: None,
            alert_pending: None,
            seen_down_by: BTreeSet::new(),
            seen_up_by: BTreeSet::new(),
        }
    }

    /// Start of the current routable period, counting a drain release as a restart.
    pub fn routable_since(&self) -> Option<DateTime<Utc>> {
        match (self.serving_since, self.undrained_at) {
            (Some(s), Some(u)) => Some(s.max(u)),
            (s, _) => s,
        }
    }
}

impl Default for SiteState {
    fn default() -> Self {
        Self::new()
    }
}

/// The result of judging a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// See [`SiteState::falling`].
    pub falling: bool,
    /// See [`SiteState::rising`].
    pub rising: bool,
    /// See [`SiteState::seen_down_by`].
    pub seen_down_by: BTreeSet<SiteId>,
    /// See [`SiteState::seen_up_by`].
    pub seen_up_by: BTreeSet<SiteId>,
}

/// Judges one site with client access from its components.
pub fn judge(
    site: &SiteConfig,
    components: &BTreeMap<ServerId, BTreeMap<String, Component>>,
) -> Judgement {
    let unknown = Component::new();
    let get =
        |s: &ServerId, p: &String| components.get(s).and_then(|m| m.get(p)).unwrap_or(&unknown);
    let mut all_up = true;
    let mut every_protocol_served = true;
    let mut some_protocol_down = false;
    let mut some_protocol_falling = false;
    let mut some_component_rising = false;
    let mut seen_down_by = BTreeSet::new();
    let mut seen_up_by: Option<BTreeSet<SiteId>> = None;
    for p in &site.protocols {
        let mut any_up = false;
        let mut all_down_confirmed = true;
        let mut all_down_or_falling = true;
        let mut down_by: Option<BTreeSet<SiteId>> = None;
        for s in &site.servers {
            let c = get(s, p);
            match c.result {
                QuorumResult::Up => any_up = true,
                _ => all_up = false,
            }
            if !(c.result == QuorumResult::Down && c.down_seen_outside) {
                all_down_confirmed = false;
            }
            some_component_rising |= c.rising;
            if !(c.result == QuorumResult::Down || c.falling) {
                all_down_or_falling = false;
            }
            down_by = Some(match down_by {
                None => c.failing_sites.clone(),
                Some(d) => d.intersection(&c.failing_sites).cloned().collect(),
            });
            seen_up_by = Some(match seen_up_by {
                None => c.passing_sites.clone(),
                Some(u) => u.intersection(&c.passing_sites).cloned().collect(),
            });
        }
        every_protocol_served &= any_up;
        some_protocol_down |= all_down_confirmed && !site.servers.is_empty();
        some_protocol_falling |= all_down_or_falling && !site.servers.is_empty();
        seen_down_by.extend(down_by.unwrap_or_default());
    }
    let verdict = if all_up {
        Verdict::Up
    } else if every_protocol_served {
        Verdict::Degraded
    } else if some_protocol_down {
        Verdict::Down
    } else {
        Verdict::Unknown
    };
    Judgement {
        verdict,
        falling: verdict.is_serving() && some_protocol_falling,
        rising: verdict == Verdict::Down && some_component_rising,
        seen_down_by,
        seen_up_by: seen_up_by.unwrap_or_default(),
    }
}
