//! sitewarden's decision engine: a pure function from (configuration, state, time, input) to
//! commands.
//!
//! No I/O, no clock, no randomness: [`Engine::step`] takes the current time as a value and one
//! [`Input`], updates the [`State`] in place and returns [`Command`]s for the runtime to perform.
//! The leader, the standby, `sitewarden-controller plan`, the tests and the benchmarks all run this
//! same code. The per-observation path is a handful of map lookups; verdicts are recounted only when
//! an observer × check changes status or freshness, and a namespace is re-planned only when
//! something it reads changes — a site its targets need, its DAG, an override naming it or
//! its sites, a provider report about it — or when its hold-down, failback window or retry
//! wait ends (see `replan`).
//!
//! Where each rule lives: fall/rise in `observer`, quorum in `quorum`, site verdicts in
//! `verdict`, candidates, failback and hold-down in `namespace`, mailbox following in `dag` and
//! `namespace`, overrides in `overrides`, bad input in `intake`, "why" in `explain`.

// Functions stay short enough to read and test on their own (threshold in clippy.toml);
// documentation is part of the API; product code never unwraps.
#![warn(clippy::too_many_lines, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod command;
pub mod config;
pub mod dag;
mod decide;
pub mod evidence;
pub mod explain;
mod follow;
mod health;
pub mod input;
pub mod intake;
pub mod namespace;
pub mod observer;
pub mod order;
mod outcome;
pub mod overrides;
pub mod quorum;
pub mod replan;
mod retry;
pub mod state;
pub mod trouble;
pub mod verdict;
mod wake;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::{DnsName, ServerId, SiteId};

pub use command::{Alert, AlertKind, Audit, AuditEvent, Command, EdgeNotice, SetRecord, Severity};
pub use evidence::{Evidence, Rule};
pub use explain::Explanation;
pub use input::{
    BusReport, CallStats, EVENTS_NEAR_CAP_PERCENT, FailureClass, FreezeScope, Input,
    LeadershipChange, OverrideAction, OverrideRequest, ProviderReport, ReleaseTarget, StreamFill,
};
pub use order::{Epoch, Generation};
pub use state::State;
pub use verdict::Verdict;

use crate::config::ControllerConfig;

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The engine: configuration plus lookup tables derived from it. Holds no mutable state.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The validated configuration.
    config: ControllerConfig,
    /// Server → its site, for admitting observations.
    server_site: BTreeMap<ServerId, SiteId>,
    /// `policy.stale_after` as a chrono delta.
    stale_after: TimeDelta,
    /// `policy.skew_tolerance` as a chrono delta.
    skew: TimeDelta,
    /// `policy.dbcopy_stale_after` as a chrono delta.
    dbcopy_stale_after: TimeDelta,
    /// `policy.startup_grace` as a chrono delta.
    startup_grace: TimeDelta,
    /// Which names read which site and DAG, so an evaluation re-plans only those (`replan`).
    dependents: replan::Dependents,
    /// Re-plan every name on every evaluation (the reference for the property tests).
    full_replan: bool,
}

impl Engine {
    /// Builds an engine for a validated configuration.
    pub fn new(config: ControllerConfig) -> Self {
        let mut server_site = BTreeMap::new();
        for (site, cfg) in &config.sites {
            for server in &cfg.servers {
                server_site.insert(server.clone(), site.clone());
            }
        }
        Self {
            stale_after: delta(config.policy.stale_after),
            skew: delta(config.policy.skew_tolerance),
            dbcopy_stale_after: delta(config.policy.dbcopy_stale_after),
            startup_grace: delta(config.policy.startup_grace),
            dependents: replan::Dependents::new(&config),
            full_replan: false,
            config,
            server_site,
        }
    }

    /// Whether `now` is still inside the start-up grace of this state (see
    /// `policy.startup_grace`): sites without a verdict yet are waited for silently.
    /// The grace ends early once every site with client access has been Up at the same time.
    pub fn in_startup_grace(&self, state: &State, now: DateTime<Utc>) -> bool {
        !state.started_up
            && state
                .started_at
                .is_none_or(|s| now - s < self.startup_grace)
    }

    /// The configuration this engine decides by.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// A fresh state: everything Unknown, standby, no record content known.
    pub fn initial_state(&self) -> State {
        let mut state = State::default();
        self.adopt(&mut state);
        state
    }

    /// Makes a state built for another configuration fit this one: adds entries for new agents,
    /// servers, protocols, sites, DAGs and namespaces, and drops those no longer configured.
    pub fn adopt(&self, state: &mut State) {
        let c = &self.config;
        state.agents.retain(|a, _| c.agents.contains_key(a));
        for a in c.agents.keys() {
            state.agents.entry(a.clone()).or_default();
        }
        state
            .components
            .retain(|s, _| self.server_site.contains_key(s));
        state
            .sites
            .retain(|s, _| c.sites.get(s).is_some_and(|s| s.has_client_access()));
        for (site, cfg) in &c.sites {
            if !cfg.has_client_access() {
                continue;
            }
            state.sites.entry(site.clone()).or_default();
            for server in &cfg.servers {
                let protos = state.components.entry(server.clone()).or_default();
                protos.retain(|p, _| cfg.protocols.contains(p));
                for p in &cfg.protocols {
                    protos.entry(p.clone()).or_default();
                }
            }
        }
        state.dags.retain(|d, _| c.dags.contains_key(d));
        for d in c.dags.keys() {
            state.dags.entry(d.clone()).or_default();
        }
        state.namespaces.retain(|n, _| c.namespaces.contains_key(n));
        for n in c.namespaces.keys() {
            state.namespaces.entry(n.clone()).or_default();
        }
        // What the next evaluation re-plans was worked out for the old configuration.
        state.replan = replan::Replan {
            all: true,
            ..replan::Replan::default()
        };
    }

    /// Advances `state` by one input at time `now` and returns the commands to perform.
    ///
    /// Time never runs backwards: a `now` earlier than one already seen is treated as that one.
    pub fn step(&self, state: &mut State, now: DateTime<Utc>, input: &Input) -> Vec<Command> {
        let now = match state.clock {
            Some(c) if c > now => c,
            _ => now,
        };
        state.clock = Some(now);
        state.started_at.get_or_insert(now);
        let mut out = Vec::new();
        match input {
            Input::Observation(o) => self.on_observation(state, now, o, &mut out),
            Input::DbCopy(s) => self.on_dbcopy(state, now, s, &mut out),
            Input::Heartbeat(h) => self.on_heartbeat(state, now, h, &mut out),
            Input::Tick => self.on_tick(state, now, &mut out),
            Input::Override(r) => self.on_override(state, now, r, &mut out),
            Input::Provider(p) => self.on_provider(state, now, p, &mut out),
            Input::Leadership(l) => self.on_leadership(state, now, *l, &mut out),
            Input::Bus(b) => self.on_bus(state, now, *b, &mut out),
            Input::EventsStream(f) => self.on_events_stream(state, f, &mut out),
        }
        if !state.leadership.is_leader && !out.is_empty() {
            out = out
                .into_iter()
                .map(|c| match c {
                    Command::Audit(a) => Command::Audit(a),
                    // What a controller says about itself (its bus, its role) is its own to say.
                    Command::Alert(a) if a.is_about_this_controller() => Command::Alert(a),
                    other => Command::Audit(Audit {
                        at: now,
                        event: AuditEvent::Standby {
                            command: Box::new(other),
                        },
                    }),
                })
                .collect();
        }
        out
    }

    /// Explains where `namespace` points and why, with live evidence for its sites.
    pub fn explain(&self, state: &State, namespace: &DnsName) -> Option<Explanation> {
        let name = namespace;
        let cfg = self.config.namespaces.get(name)?;
        let ns = state.namespaces.get(name)?;
        let now = state.clock.unwrap_or_default();
        let mut sites = BTreeMap::new();
        for site in self.sites_of_namespace(cfg) {
            let ev =
                explain::site_evidence(&self.config, state, &site, now, self.stale_after, true);
            sites.insert(site, ev);
        }
        Some(Explanation {
            namespace: name.clone(),
            at: state.clock,
            current: ns.current.clone(),
            pending: ns.pending.clone(),
            pin: state.overrides.pins.get(name).cloned(),
            freeze: state.overrides.freeze_of(name).cloned(),
            decision: ns.decision.clone(),
            last_change: ns.last_change.clone(),
            sites,
            quorum: self.config.policy.min_observers,
            drift: ns.drift.clone(),
            retry: ns.retry.clone(),
            dag_split: match &cfg.routing {
                crate::config::Routing::FollowMailbox { dag, .. } => state
                    .dags
                    .get(dag)
                    .filter(|d| !d.split.is_empty())
                    .map(|d| d.split_text()),
                crate::config::Routing::Candidates(_) => None,
            },
            off_preferred: match &cfg.routing {
                crate::config::Routing::Candidates(list) => explain::off_preferred(state, ns, list),
                crate::config::Routing::FollowMailbox { .. } => None,
            },
        })
    }

    /// Every site a namespace's targets depend on.
    fn sites_of_namespace(
        &self,
        cfg: &crate::config::NamespaceConfig,
    ) -> std::collections::BTreeSet<SiteId> {
        namespace_sites(cfg).into_iter().cloned().collect()
    }
}

/// The sites a namespace's targets depend on, as `NamespaceConfig::sites_of` finds them for
/// each target (a site may appear twice): without cloning them, for the per-decision path.
pub(crate) fn namespace_sites(cfg: &crate::config::NamespaceConfig) -> Vec<&SiteId> {
    match &cfg.routing {
        crate::config::Routing::Candidates(list) => list.iter().flat_map(|c| &c.requires).collect(),
        // `sites_of` answers the first site pointing at a target.
        crate::config::Routing::FollowMailbox { targets, .. } => targets
            .iter()
            .filter(|(site, target)| {
                targets.iter().find(|(_, t)| t == target).map(|(s, _)| s) == Some(site)
            })
            .map(|(site, _)| site)
            .collect(),
    }
}
