//! A virtual-time harness for engine stories: a small lab of agents probing servers.
//!
//! A `Story` owns an engine and its state, a virtual clock and a log of every command. Each
//! `round` makes every agent probe every server once (the outcome comes from a closure that
//! plays the incident), ticks the engine and advances the clock by the probe interval.
//! `SetRecord`s are acknowledged at once, as a healthy DNS provider would.

#![allow(dead_code)] // shared by several test binaries; each uses a different subset

pub mod table;

use sitewarden_engine::{Epoch, Generation};
use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::dbcopy::{CopyStatus, DbCopy};
use sitewarden_contract::{
    AgentId, CheckKind, CheckName, CollectOutcome, CollectVia, DbCopySnapshot, Observation,
    ObservationDetails, Outcome, ServerId, SiteId,
};
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::{
    Alert, AlertKind, Command, Engine, Input, LeadershipChange, OverrideAction, OverrideRequest,
    ProviderReport, Rule, SetRecord, Severity, State,
};

/// The brief's layout with a witness; `extra_policy` lines go into `[policy]`.
///
/// The stories were written for probes every 2 s with `fall` 3 and `rise` 5 (the defaults
/// before 1 s / 4 / 10): they keep those unless `extra_policy` sets its own, so each story's
/// clock reads as written. The shipped defaults are checked in `config.rs`.
pub fn config(extra_policy: &str) -> ControllerConfig {
    config_from(&config_text(extra_policy))
}

/// The TOML behind [`config`], for stories that edit it.
pub fn config_text(extra_policy: &str) -> String {
    let kept: String = [("fall", "fall = 3\n"), ("rise", "rise = 5\n")]
        .iter()
        .filter(|(key, _)| !extra_policy.contains(&format!("{key} =")))
        .map(|(_, line)| *line)
        .collect();
    format!(
        r#"
[policy]
interval = "2s"
{kept}{extra_policy}

[[sites]]
name = "site1"
servers = ["cas1", "cas2"]

[[sites]]
name = "site2"
servers = ["cas3", "cas4"]

[[sites]]
name = "witness"

[[agents]]
name = "site1-agent1"
site = "site1"

[[agents]]
name = "site2-agent1"
site = "site2"

[[agents]]
name = "witness-agent1"
site = "witness"

[[dags]]
name = "DAG1"
servers = {{ EX01 = "site1", EX03 = "site2" }}

[[namespaces]]
name = "mail.example.com"
candidates = [
  {{ target = "mail-rr.example.com", requires = ["site1", "site2"] }},
  {{ target = "mail-site1.example.com", requires = ["site1"] }},
  {{ target = "mail-site2.example.com", requires = ["site2"] }},
]

[[namespaces]]
name = "owa.example.com"
follow = "mailbox"
dag = "DAG1"
targets = {{ site1 = "owa-site1.example.com", site2 = "owa-site2.example.com" }}
"#
    )
}

/// Parses a story's configuration, failing the test with the error.
pub fn config_from(text: &str) -> ControllerConfig {
    match ControllerConfig::from_toml("story.toml", text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// The time t seconds after the story starts.
pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default() + TimeDelta::seconds(secs)
}

/// Where a probe runs from and to.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The observer's site.
    pub from: &'a str,
    /// The observer.
    pub agent: &'a str,
    /// The probed server's site.
    pub to: &'a str,
    /// The probed server.
    pub server: &'a str,
}

/// One incident being played: engine, state, virtual clock and everything the engine said.
pub struct Story {
    /// The engine under test.
    pub engine: Engine,
    /// Its state.
    pub state: State,
    /// Virtual time.
    pub now: DateTime<Utc>,
    /// Next sequence number per agent.
    pub seq: BTreeMap<String, u64>,
    /// Every command, with the time it was issued.
    pub log: Vec<(DateTime<Utc>, Command)>,
    /// Acknowledge every `SetRecord` at once, like a healthy provider.
    pub auto_ack: bool,
    /// Agents that publish nothing.
    pub silent: Vec<String>,
    /// Where DAG1's databases are mounted; a snapshot is published every 10 s.
    pub dag_site: String,
    /// Per agent, how far its clock is off (ms, positive = fast): stamps its `observed_at`.
    pub skew_ms: BTreeMap<String, i64>,
}

impl Story {
    /// A leader engine whose records point at the preferred targets, run healthy for 20 s
    /// with the DAG active in site1.
    pub fn healthy(config: ControllerConfig) -> Self {
        let engine = Engine::new(config);
        let state = engine.initial_state();
        let mut s = Story {
            engine,
            state,
            now: t(-20),
            seq: BTreeMap::new(),
            log: Vec::new(),
            auto_ack: true,
            silent: Vec::new(),
            dag_site: "site1".to_owned(),
            skew_ms: BTreeMap::new(),
        };
        s.input(Input::Leadership(LeadershipChange {
            is_leader: true,
            epoch: Epoch(7),
        }));
        s.report_current("mail.example.com", "mail-rr.example.com");
        s.report_current("owa.example.com", "owa-site1.example.com");
        s.run_until(t(0), |_| Outcome::Pass);
        s.log.clear();
        s
    }

    pub fn report_current(&mut self, ns: &str, target: &str) {
        self.input(Input::Provider(ProviderReport::Current {
            namespace: ns.parse().unwrap(),
            target: Some(target.parse().unwrap()),
            generation: Some(Generation(0)),
            written: None,
        }));
    }

    /// The provider reports `ns` holding `target` without our ownership marker.
    pub fn report_unmarked(&mut self, ns: &str, target: &str) {
        self.input(Input::Provider(ProviderReport::Current {
            namespace: ns.parse().unwrap(),
            target: Some(target.parse().unwrap()),
            generation: None,
            written: None,
        }));
    }

    /// Feeds one input at the current time, logging (and acknowledging) its commands.
    pub fn input(&mut self, input: Input) -> Vec<Command> {
        let cmds = self.engine.step(&mut self.state, self.now, &input);
        for c in &cmds {
            self.log.push((self.now, c.clone()));
        }
        if self.auto_ack {
            for c in &cmds {
                if let Command::SetRecord(r) = c {
                    let ack = Input::Provider(ProviderReport::Applied {
                        namespace: r.namespace.clone(),
                        generation: r.generation,
                        calls: Default::default(),
                    });
                    self.engine.step(&mut self.state, self.now, &ack);
                }
            }
        }
        cmds
    }

    pub fn next_seq(&mut self, agent: &str) -> u64 {
        let s = self.seq.entry(agent.to_owned()).or_insert(0);
        *s += 1;
        *s
    }

    pub fn observation(
        &mut self,
        agent: &str,
        site: &str,
        target_site: &str,
        server: &str,
        outcome: Outcome,
    ) -> Observation {
        Observation {
            schema_version: 1,
            agent: AgentId::new(agent).unwrap_or_else(|e| panic!("{e}")),
            site: SiteId::new(site).unwrap_or_else(|e| panic!("{e}")),
            seq: self.next_seq(agent),
            observed_at: self.now
                + TimeDelta::milliseconds(self.skew_ms.get(agent).copied().unwrap_or(0)),
            target_site: SiteId::new(target_site).unwrap_or_else(|e| panic!("{e}")),
            server: ServerId::new(server).unwrap_or_else(|e| panic!("{e}")),
            check: CheckName::new("eas").unwrap_or_else(|e| panic!("{e}")),
            kind: CheckKind::Activesync,
            protocol: "activesync".to_owned(),
            outcome,
            http_status: None,
            latency_ms: 12,
            error_class: None,
            error: None,
            details: ObservationDetails::default(),
        }
    }

    /// Every agent probes every server once; then a tick; then the clock moves on 2 s.
    pub fn round(&mut self, world: &impl Fn(Probe<'_>) -> Outcome) {
        self.round_partial(&|p| Some(world(p)));
    }

    /// Like `round`, but a probe whose outcome is `None` is lost.
    pub fn round_partial(&mut self, world: &impl Fn(Probe<'_>) -> Option<Outcome>) {
        let agents = [
            ("site1-agent1", "site1"),
            ("site2-agent1", "site2"),
            ("witness-agent1", "witness"),
        ];
        let servers = [
            ("site1", "cas1"),
            ("site1", "cas2"),
            ("site2", "cas3"),
            ("site2", "cas4"),
        ];
        for (agent, from) in agents {
            if self.silent.iter().any(|s| s == agent) {
                continue;
            }
            for (to, server) in servers {
                let Some(outcome) = world(Probe {
                    from,
                    agent,
                    to,
                    server,
                }) else {
                    continue;
                };
                let o = self.observation(agent, from, to, server, outcome);
                self.input(Input::Observation(o));
            }
        }
        if self.now.timestamp() % 10 == 0 {
            let site = self.dag_site.clone();
            self.dag_active(&site);
        }
        self.input(Input::Tick);
        self.now += TimeDelta::seconds(2);
    }

    /// Rounds until the clock reaches `end`.
    pub fn run_until(&mut self, end: DateTime<Utc>, world: impl Fn(Probe<'_>) -> Outcome) {
        while self.now < end {
            self.round(&world);
        }
    }

    /// A DB copy snapshot saying DAG1's databases are mounted in `site`.
    pub fn dag_active(&mut self, site: &str) {
        let (active, passive) = if site == "site1" {
            ("EX01", "EX03")
        } else {
            ("EX03", "EX01")
        };
        let copy = |server: &str, status: CopyStatus| DbCopy {
            name: format!("DB01\\{server}"),
            database: "DB01".to_owned(),
            server: server.to_owned(),
            status,
            active_database_copy: Some(active.to_owned()),
            activation_suspended: false,
            copy_queue_length: 0,
            replay_queue_length: 0,
            content_index_state: Some("Healthy".to_owned()),
            last_inspected_log_time: None,
            activation_preference: None,
            error_message: None,
        };
        let snap = DbCopySnapshot {
            schema_version: 1,
            agent: AgentId::new("witness-agent1").unwrap_or_else(|e| panic!("{e}")),
            site: SiteId::new("witness").unwrap_or_else(|e| panic!("{e}")),
            seq: self.next_seq("witness-agent1"),
            observed_at: self.now,
            source: CheckName::new("dag1").unwrap_or_else(|e| panic!("{e}")),
            dag: "DAG1".to_owned(),
            via: CollectVia::Command,
            outcome: CollectOutcome::Ok,
            error: None,
            copies: vec![
                copy(active, CopyStatus::Mounted),
                copy(passive, CopyStatus::Healthy),
            ],
        };
        self.input(Input::DbCopy(snap));
    }

    pub fn operator(&mut self, action: OverrideAction) -> Vec<Command> {
        self.input(Input::Override(OverrideRequest {
            who: "alice".to_owned(),
            why: "story".to_owned(),
            action,
            force: false,
        }))
    }

    /// As [`Self::operator`], past the safety check (`--force`).
    pub fn operator_forced(&mut self, action: OverrideAction) -> Vec<Command> {
        self.input(Input::Override(OverrideRequest {
            who: "alice".to_owned(),
            why: "story".to_owned(),
            action,
            force: true,
        }))
    }

    pub fn set_records(&self) -> Vec<(DateTime<Utc>, &SetRecord)> {
        self.log
            .iter()
            .filter_map(|(at, c)| match c {
                Command::SetRecord(r) => Some((*at, r)),
                _ => None,
            })
            .collect()
    }

    pub fn set_records_for(&self, ns: &str) -> Vec<(DateTime<Utc>, &SetRecord)> {
        self.set_records()
            .into_iter()
            .filter(|(_, r)| r.namespace == ns)
            .collect()
    }

    pub fn alerts(&self) -> Vec<&Alert> {
        self.log
            .iter()
            .filter_map(|(_, c)| match c {
                Command::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    pub fn alerts_of(&self, kind: AlertKind, severity: Severity) -> usize {
        self.alerts()
            .iter()
            .filter(|a| a.kind == kind && a.severity == severity)
            .count()
    }

    pub fn target(&self, ns: &str) -> Option<String> {
        self.state
            .namespaces
            .get(ns)
            .and_then(|n| n.effective().map(|t| t.to_string()))
    }

    /// The note of the namespace's latest decision.
    pub fn note(&self, ns: &str) -> String {
        self.state
            .namespaces
            .get(ns)
            .and_then(|n| n.decision.as_ref())
            .map(|d| d.evidence.note.clone())
            .unwrap_or_default()
    }

    pub fn rule(&self, ns: &str) -> Option<Rule> {
        self.state
            .namespaces
            .get(ns)
            .and_then(|n| n.decision.as_ref())
            .map(|d| d.evidence.rule)
    }
}

/// Everyone passes except probes of servers in `dead`.
pub fn sites_dead(dead: &'static [&'static str]) -> impl Fn(Probe<'_>) -> Outcome {
    move |p| {
        if dead.contains(&p.to) {
            Outcome::Fail
        } else {
            Outcome::Pass
        }
    }
}
