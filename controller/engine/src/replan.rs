//! Which namespaces an evaluation re-plans: the names whose plan may have changed, not all of
//! them.
//!
//! A plan (see `namespace::plan`) reads its own namespace's state and configuration, the state
//! of the sites its targets need, its DAG, the pins, freezes and drains that name it or those
//! sites, a few conditions every plan reads (every site Down, an inter-site partition, the
//! start-up grace, the settle window after a total outage) and the time. So an evaluation
//! re-plans:
//! - the dependents of each site whose state changed (verdict, since, serving since, falling,
//!   rising, drain) — an index site → names, built once from the configuration;
//! - the followers of each DAG whose active site changed;
//! - each name whose own state changed outside a plan (a provider report, an override naming
//!   it, a lost lease dropping its pending change), and each name whose record the previous
//!   evaluation changed (its next plan starts from the new target);
//! - each name whose time has come: the end of its hold-down, its failback window or its
//!   retry wait (`due`, kept per name after every plan);
//! - every name, when one of the shared conditions differs from the previous evaluation, when
//!   a freeze of everything starts or ends, or when the configuration changed.
//!
//! A name outside that scope would plan exactly what it planned last time, which emits nothing
//! (a plan only speaks when its rule, target, failback time or alert differ from the stored
//! decision, or when it moves the record, after which the name is re-planned once more). A
//! hidden switch ([`Engine::with_full_replan`]) re-plans every name on every evaluation; the
//! property tests run both on the same inputs and require the same commands, state and
//! explanations.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::{DnsName, SiteId};

use super::input::{FreezeScope, OverrideAction, ReleaseTarget};
use super::namespace::NamespaceState;
use super::overrides::FREEZE_ALL;
use super::{Engine, State};
use crate::config::{ControllerConfig, NamespaceConfig, Routing};

/// Which names read which site and which DAG: built once from the configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dependents {
    /// Site → the names whose targets need it, in name order.
    sites: BTreeMap<SiteId, Vec<DnsName>>,
    /// DAG → the names that follow it, in name order.
    dags: BTreeMap<String, Vec<DnsName>>,
}

impl Dependents {
    /// Indexes every namespace of `config`.
    pub(crate) fn new(config: &ControllerConfig) -> Self {
        let mut out = Self::default();
        for (name, cfg) in &config.namespaces {
            let sites: BTreeSet<&SiteId> = match &cfg.routing {
                Routing::Candidates(list) => list.iter().flat_map(|c| &c.requires).collect(),
                Routing::FollowMailbox { dag, targets } => {
                    out.dags.entry(dag.clone()).or_default().push(name.clone());
                    targets.keys().collect()
                }
            };
            for site in sites {
                out.sites
                    .entry(site.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
        out
    }

    /// The names whose targets need `site`, in name order.
    pub(crate) fn of_site(&self, site: &SiteId) -> &[DnsName] {
        self.sites.get(site).map_or(&[], Vec::as_slice)
    }

    fn of_dag(&self, dag: &str) -> &[DnsName] {
        self.dags.get(dag).map_or(&[], Vec::as_slice)
    }
}

/// The conditions every plan reads, as of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// Every site with client access is Down.
    pub all_down: bool,
    /// Site pairs that see each other Down while each sees itself Up.
    pub partitions: BTreeSet<(SiteId, SiteId)>,
    /// Inside the start-up grace.
    pub startup: bool,
    /// A total outage ended a moment ago: no move away from a Down site before this time.
    pub settling: Option<DateTime<Utc>>,
}

/// What the next evaluation must re-plan, and when each name is due again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replan {
    /// Re-plan every name (a freeze of everything, a new configuration).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Names whose state changed since their last plan, or whose record their last plan
    /// changed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub names: BTreeSet<DnsName>,
    /// Sites whose state changed since the last evaluation.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sites: BTreeSet<SiteId>,
    /// DAGs whose active site changed since the last evaluation.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub dags: BTreeSet<String>,
    /// The shared conditions as of the last evaluation (`None`: none yet).
    #[serde(default)]
    pub shared: Option<Shared>,
    /// Per name, the next time its plan may change with nothing but time passing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub due: BTreeMap<DnsName, DateTime<Utc>>,
    /// The same entries ordered by time, so a tick finds the names due without looking at the
    /// others.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub queue: BTreeSet<(DateTime<Utc>, DnsName)>,
}

impl Replan {
    /// Re-plan `name` at the next evaluation.
    pub fn mark(&mut self, name: &DnsName) {
        if !self.names.contains(name) {
            self.names.insert(name.clone());
        }
    }

    /// Re-plan the name spelled `name` (an override's, a freeze's key) at the next evaluation.
    pub fn name(&mut self, name: &str) {
        if !self.names.contains(name)
            && let Ok(name) = DnsName::new(name)
        {
            self.names.insert(name);
        }
    }

    /// Re-plan the dependents of `site` at the next evaluation.
    pub fn site(&mut self, site: &SiteId) {
        if !self.sites.contains(site) {
            self.sites.insert(site.clone());
        }
    }

    /// Re-plan the followers of `dag` at the next evaluation.
    pub fn dag(&mut self, dag: &str) {
        if !self.dags.contains(dag) {
            self.dags.insert(dag.to_owned());
        }
    }

    /// Re-plan what an accepted override touches.
    pub fn override_action(&mut self, action: &OverrideAction) {
        match action {
            OverrideAction::Drain { site, .. }
            | OverrideAction::Release {
                what: ReleaseTarget::Drain { site },
            } => self.site(site),
            OverrideAction::Freeze {
                scope: FreezeScope::All,
                ..
            }
            | OverrideAction::Release {
                what:
                    ReleaseTarget::Freeze {
                        scope: FreezeScope::All,
                    },
            } => self.all = true,
            other => {
                if let Some(name) = other.namespace() {
                    self.name(name);
                }
            }
        }
    }

    /// Re-plan what the overrides lapsing at `now` touch (call before they are removed).
    pub fn expiring(&mut self, overrides: &super::overrides::Overrides, now: DateTime<Utc>) {
        let due = |h: &super::overrides::Hold| h.expires.is_some_and(|e| e <= now);
        for (name, pin) in &overrides.pins {
            if due(&pin.hold) {
                self.name(name);
            }
        }
        for (site, hold) in &overrides.drains {
            if due(hold) {
                self.site(site);
            }
        }
        for (scope, hold) in &overrides.freezes {
            if due(hold) {
                if scope == FREEZE_ALL {
                    self.all = true;
                } else {
                    self.name(scope);
                }
            }
        }
    }

    /// Removes and returns the names due at or before `now`.
    fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<DnsName> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.first()
            && *at <= now
        {
            if let Some((_, name)) = self.queue.pop_first() {
                self.due.remove(&name);
                out.push(name);
            }
        }
        out
    }

    /// Keeps `at` as the time `name` is due again (`None`: not time-driven now).
    pub(crate) fn schedule(&mut self, name: &DnsName, at: Option<DateTime<Utc>>) {
        if self.due.get(name) == at.as_ref() {
            return;
        }
        if let Some(old) = self.due.remove(name) {
            self.queue.remove(&(old, name.clone()));
        }
        if let Some(at) = at {
            self.due.insert(name.clone(), at);
            self.queue.insert((at, name.clone()));
        }
    }

    /// The earliest time after `now` a name is due, for `Engine::next_wake`.
    pub fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.queue.iter().map(|(at, _)| *at).find(|at| *at > now)
    }
}

impl Engine {
    /// Re-plans every name on every evaluation, as the engine did before evaluations were
    /// scoped: the reference the property tests hold the scoped engine to.
    #[doc(hidden)]
    #[must_use]
    pub fn with_full_replan(mut self) -> Self {
        self.full_replan = true;
        self
    }

    /// The conditions every plan reads, as they stand at `now`; notes the start and end of a
    /// total outage on the way.
    pub(super) fn shared(&self, state: &mut State, now: DateTime<Utc>) -> Shared {
        let all_down = self.track_total_outage(state, now);
        Shared {
            all_down,
            partitions: self.partitions(state),
            startup: self.in_startup_grace(state, now),
            settling: state.settle_until.filter(|u| now < *u),
        }
    }

    /// Site pairs that see each other Down while each sees itself Up. Only a site some
    /// observer site sees entirely Down can be in one, so only those pairs are looked at.
    fn partitions(&self, state: &State) -> BTreeSet<(SiteId, SiteId)> {
        let mut out = BTreeSet::new();
        for (a, sa) in &state.sites {
            let after_a = (std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded);
            for b in sa.seen_down_by.range::<SiteId, _>(after_a) {
                let Some(sb) = state.sites.get(b) else {
                    continue;
                };
                if sb.seen_down_by.contains(a)
                    && sa.seen_up_by.contains(a)
                    && sb.seen_up_by.contains(b)
                {
                    out.insert((a.clone(), b.clone()));
                }
            }
        }
        out
    }

    /// Notes when a total outage (every site Down) starts and ends; its end opens the settle
    /// window (`stale_after`) in which no name is moved away from a Down site. Returns whether
    /// every site with client access is Down.
    fn track_total_outage(&self, state: &mut State, now: DateTime<Utc>) -> bool {
        let mut any = false;
        let mut all_down = true;
        for (id, cfg) in &self.config.sites {
            if cfg.has_client_access() {
                any = true;
                all_down &= state
                    .sites
                    .get(id)
                    .is_some_and(|s| s.verdict == super::Verdict::Down);
            }
        }
        if any && all_down {
            state.all_down_since.get_or_insert(now);
        } else if state.all_down_since.take().is_some() {
            state.settle_until = now.checked_add_signed(self.stale_after);
        }
        any && all_down
    }

    /// The names this evaluation re-plans, in name order, given the shared conditions as they
    /// stand now (the caller records them once the evaluation is done); consumes the marks and
    /// the due entries up to `now`.
    pub(super) fn scope(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        shared: &Shared,
    ) -> Vec<&DnsName> {
        let replan = &mut state.replan;
        let due = replan.pop_due(now);
        let names = std::mem::take(&mut replan.names);
        let sites = std::mem::take(&mut replan.sites);
        let dags = std::mem::take(&mut replan.dags);
        let all = std::mem::take(&mut replan.all) || replan.shared.as_ref() != Some(shared);
        if all || self.full_replan {
            return self.config.namespaces.keys().collect();
        }
        let mut scope: Vec<&DnsName> = Vec::new();
        for site in &sites {
            scope.extend(self.dependents.of_site(site));
        }
        for dag in &dags {
            scope.extend(self.dependents.of_dag(dag));
        }
        for name in names.iter().chain(&due) {
            if let Some((name, _)) = self.config.namespaces.get_key_value(name) {
                scope.push(name);
            }
        }
        // In name order, as a full pass goes (the lists are each sorted already).
        scope.sort_unstable();
        scope.dedup();
        scope
    }
}

/// When a namespace's plan may next change with nothing but time passing, after `now`: its
/// hold-down ending, its failback window ending (the time its latest decision names), its
/// retry wait ending.
pub(super) fn due_at(
    cfg: &NamespaceConfig,
    ns: &NamespaceState,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let hold = TimeDelta::from_std(cfg.hold_down).unwrap_or(TimeDelta::MAX);
    [
        ns.last_change_at.and_then(|t| t.checked_add_signed(hold)),
        ns.retry.as_ref().map(|r| r.not_before),
        ns.decision
            .as_ref()
            .and_then(|d| d.evidence.failback_eligible_at),
    ]
    .into_iter()
    .flatten()
    .filter(|t| *t > now)
    .min()
}
