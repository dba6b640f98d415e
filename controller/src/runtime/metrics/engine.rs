//! Metrics read from the engine's state: check results per observer, observer freshness, site
//! verdicts, the engine's refusals; the managed names' series are in `names`.
//!
//! Nothing here is on the engine's path: [`EngineMetrics::observe`] runs on the runtime's tick
//! and compares the state with what it saw on the previous tick (a decision or change is counted
//! when its evidence timestamp moves; two decisions about one name within one tick count once).
//! [`EngineMetrics::observation`] runs once per admitted observation and finds its counters
//! through maps keyed by the ids themselves, looked up by `&str`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sitewarden_shared::{AgentId, CheckName, Observation, Outcome, ServerId};

use super::{RejectLabels, advance};
use crate::engine::intake::Counters;
use crate::engine::{Engine, Input, Rule, State, Verdict};

/// Latency buckets of check results, the same as the agent's.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// One observer's check of one server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// The observing agent.
    pub observer: String,
    /// The probed server's site.
    pub target_site: String,
    /// The probed server.
    pub server: String,
    /// The check.
    pub check: String,
}

/// A check result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckOutcomeLabels {
    /// The observing agent.
    pub observer: String,
    /// The probed server's site.
    pub target_site: String,
    /// The probed server.
    pub server: String,
    /// The check.
    pub check: String,
    /// `pass` or `fail`.
    pub outcome: String,
}

/// One observer × check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObserverLabels {
    /// The agent.
    pub observer: String,
    /// The check.
    pub check: String,
}

/// One site's verdict state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// The site.
    pub site: String,
    /// `up`, `degraded`, `down` or `unknown`.
    pub verdict: String,
}

/// One site.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabel {
    /// The site.
    pub site: String,
}

/// One agent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    /// The agent.
    pub agent: String,
}

/// The counters of one observer × server × check, found without building labels.
#[derive(Clone, Debug)]
struct CheckSlot {
    pass: Counter,
    fail: Counter,
    latency: Histogram,
}

impl CheckSlot {
    fn record(&self, o: &Observation) {
        match o.outcome {
            Outcome::Pass => self.pass.inc(),
            Outcome::Fail => self.fail.inc(),
        };
        self.latency.observe(o.latency_ms as f64 / 1000.0);
    }
}

type SlotMap = HashMap<AgentId, HashMap<ServerId, HashMap<CheckName, CheckSlot>>>;

/// What the previous tick saw, to count changes.
#[derive(Debug, Default)]
struct Seen {
    /// The engine's admission counters.
    counters: Counters,
}

/// The engine-derived metrics.
#[derive(Debug)]
pub struct EngineMetrics {
    check_results: Family<CheckOutcomeLabels, Counter>,
    check_latency: Family<CheckLabels, Histogram>,
    slots: Mutex<SlotMap>,
    /// The engine's admission count after the previous step.
    admitted_seen: AtomicU64,
    observer_age: Family<ObserverLabels, Gauge<f64, AtomicU64>>,
    observer_fresh: Family<ObserverLabels, Gauge>,
    agent_silent: Family<AgentLabel, Gauge>,
    /// Per-site series.
    sites: SiteSeries,
    /// The managed names' series (per rule, and per name unless turned off).
    names: super::names::NameMetrics,
    generation: Gauge,
    admitted: Counter,
    ignored: Counter,
    rejected: Family<RejectLabels, Counter>,
    seen: Mutex<Seen>,
}

/// Registers `metric` under `name` with `help` and gives it back for the caller to keep.
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// The per-site series (`sitewarden_controller_site_*`).
#[derive(Debug)]
struct SiteSeries {
    verdict: Family<VerdictLabels, Gauge>,
    verdict_code: Family<SiteLabel, Gauge>,
    falling: Family<SiteLabel, Gauge>,
    drained: Family<SiteLabel, Gauge>,
}

impl SiteSeries {
    fn register(registry: &mut Registry) -> Self {
        let verdict = registered(
            registry,
            "site_verdict",
            "1 for a site's current verdict (up, degraded, down, unknown), 0 for the others",
            Family::<VerdictLabels, Gauge>::default(),
        );
        let verdict_code = registered(
            registry,
            "site_verdict_code",
            "A site's verdict as a number: 0 unknown, 1 up, 2 degraded, 3 down",
            Family::<SiteLabel, Gauge>::default(),
        );
        let falling = registered(
            registry,
            "site_falling",
            "1 while a serving site trends down (no name is moved to it)",
            Family::<SiteLabel, Gauge>::default(),
        );
        let drained = registered(
            registry,
            "site_drained",
            "1 while an operator drains the site",
            Family::<SiteLabel, Gauge>::default(),
        );
        Self {
            verdict,
            verdict_code,
            falling,
            drained,
        }
    }
}

impl EngineMetrics {
    /// Registers the engine-derived metrics; engine refusals go to `rejected` (stage `engine`);
    /// the per-name series only when `per_name`.
    pub fn register(
        registry: &mut Registry,
        rejected: Family<RejectLabels, Counter>,
        per_name: bool,
    ) -> Self {
        let check_results = registered(
            registry,
            "check_results",
            "Check results admitted by the engine, by observer, target site, server, check and outcome",
            Family::<CheckOutcomeLabels, Counter>::default(),
        );
        let check_latency = registered(
            registry,
            "check_latency_seconds",
            "Latency of admitted check results as the observer measured it",
            Family::<CheckLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(LATENCY_BUCKETS)
            }),
        );
        let observer_age = registered(
            registry,
            "observer_result_age_seconds",
            "Seconds since the newest result of an observer's check (any server), in engine time",
            Family::<ObserverLabels, Gauge<f64, AtomicU64>>::default(),
        );
        let observer_fresh = registered(
            registry,
            "observer_fresh",
            "1 while an observer's check has a result newer than stale_after, else 0",
            Family::<ObserverLabels, Gauge>::default(),
        );
        let agent_silent = registered(
            registry,
            "agent_silent",
            "1 while an agent's heartbeats have stopped (an agent-silent alert is active)",
            Family::<AgentLabel, Gauge>::default(),
        );
        let sites = SiteSeries::register(registry);
        let names = super::names::NameMetrics::register(registry, per_name);
        let generation = registered(
            registry,
            "generation",
            "Latest record-plan generation issued or seen in a provider's marker",
            Gauge::default(),
        );
        let admitted = registered(
            registry,
            "events_admitted",
            "Agent events that also passed the engine's admission rules",
            Counter::default(),
        );
        let ignored = registered(
            registry,
            "observations_ignored",
            "Admitted observations of a protocol no site counts (kept out of verdicts)",
            Counter::default(),
        );
        Self {
            check_results,
            check_latency,
            slots: Mutex::default(),
            admitted_seen: AtomicU64::new(0),
            observer_age,
            observer_fresh,
            agent_silent,
            sites,
            names,
            generation,
            admitted,
            ignored,
            rejected,
            seen: Mutex::default(),
        }
    }

    /// Counts `input` if it is an observation the engine admitted. Called after every step,
    /// whatever the input: the engine's admission count grows exactly when it admits one.
    pub fn observation(&self, state: &State, input: &Input) {
        let before = self
            .admitted_seen
            .swap(state.counters.accepted, Ordering::Relaxed);
        let Input::Observation(o) = input else {
            return;
        };
        if state.counters.accepted <= before {
            return;
        }
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        if let Some(slot) = slots
            .get(o.agent.as_str())
            .and_then(|s| s.get(o.server.as_str()))
            .and_then(|c| c.get(o.check.as_str()))
        {
            slot.record(o);
            return;
        }
        let slot = self.slot(o);
        slot.record(o);
        slots
            .entry(o.agent.clone())
            .or_default()
            .entry(o.server.clone())
            .or_default()
            .insert(o.check.clone(), slot);
    }

    /// The counters of a new observer × server × check.
    fn slot(&self, o: &Observation) -> CheckSlot {
        let labels = CheckLabels {
            observer: o.agent.to_string(),
            target_site: o.target_site.to_string(),
            server: o.server.to_string(),
            check: o.check.to_string(),
        };
        let outcome = |outcome: &str| CheckOutcomeLabels {
            observer: labels.observer.clone(),
            target_site: labels.target_site.clone(),
            server: labels.server.clone(),
            check: labels.check.clone(),
            outcome: outcome.into(),
        };
        CheckSlot {
            pass: self.check_results.get_or_create_owned(&outcome("pass")),
            fail: self.check_results.get_or_create_owned(&outcome("fail")),
            latency: self.check_latency.get_or_create_owned(&labels),
        }
    }

    /// Refreshes every state-derived metric at engine time `now`.
    pub fn observe(&self, engine: &Engine, state: &State, now: DateTime<Utc>) {
        self.freshness(engine, state, now);
        for (agent, a) in &state.agents {
            self.agent_silent
                .get_or_create(&AgentLabel {
                    agent: agent.to_string(),
                })
                .set(i64::from(a.silent));
        }
        for (site, s) in &state.sites {
            for v in [
                Verdict::Up,
                Verdict::Degraded,
                Verdict::Down,
                Verdict::Unknown,
            ] {
                self.sites
                    .verdict
                    .get_or_create(&VerdictLabels {
                        site: site.to_string(),
                        verdict: v.to_string().to_ascii_lowercase(),
                    })
                    .set(i64::from(s.verdict == v));
            }
            let label = SiteLabel {
                site: site.to_string(),
            };
            self.sites
                .verdict_code
                .get_or_create(&label)
                .set(verdict_code(s.verdict));
            self.sites
                .falling
                .get_or_create(&label)
                .set(i64::from(s.falling));
            self.sites
                .drained
                .get_or_create(&label)
                .set(i64::from(state.overrides.is_drained(site)));
        }
        self.generation
            .set(i64::try_from(state.generation.get()).unwrap_or(i64::MAX));
        if let Ok(mut seen) = self.seen.lock() {
            self.admission(&state.counters, &mut seen.counters);
        }
        self.names.observe(state);
    }

    /// Per observer × check: the age of its newest result over all servers, and freshness.
    fn freshness(&self, engine: &Engine, state: &State, now: DateTime<Utc>) {
        let mut newest: BTreeMap<(&AgentId, &CheckName), DateTime<Utc>> = BTreeMap::new();
        for protocols in state.components.values() {
            for component in protocols.values() {
                for (agent, checks) in &component.observers {
                    for (check, c) in checks {
                        let at = newest.entry((agent, check)).or_insert(c.last_at);
                        *at = (*at).max(c.last_at);
                    }
                }
            }
        }
        let stale_after = engine.config().policy.stale_after.as_secs_f64();
        // Configured allow-lists are exported before their first result, as not fresh.
        for (agent, cfg) in &engine.config().agents {
            for check in cfg.checks.iter().flatten() {
                if !newest.contains_key(&(agent, check)) {
                    self.observer_fresh
                        .get_or_create(&ObserverLabels {
                            observer: agent.to_string(),
                            check: check.to_string(),
                        })
                        .set(0);
                }
            }
        }
        for ((agent, check), at) in newest {
            let labels = ObserverLabels {
                observer: agent.to_string(),
                check: check.to_string(),
            };
            let age = ((now - at).num_milliseconds() as f64 / 1000.0).max(0.0);
            self.observer_age.get_or_create(&labels).set(age);
            self.observer_fresh
                .get_or_create(&labels)
                .set(i64::from(age <= stale_after));
        }
    }

    /// Brings the engine's admission counters over.
    fn admission(&self, now: &Counters, last: &mut Counters) {
        advance(&self.admitted, &mut last.accepted, now.accepted);
        advance(
            &self.ignored,
            &mut last.ignored_protocol,
            now.ignored_protocol,
        );
        let causes: [(&str, u64, &mut u64); 9] = [
            (
                "schema_version",
                now.schema_version,
                &mut last.schema_version,
            ),
            ("unknown_agent", now.unknown_agent, &mut last.unknown_agent),
            (
                "agent_site_mismatch",
                now.agent_site_mismatch,
                &mut last.agent_site_mismatch,
            ),
            ("unknown_site", now.unknown_site, &mut last.unknown_site),
            (
                "unknown_server",
                now.unknown_server,
                &mut last.unknown_server,
            ),
            ("unknown_check", now.unknown_check, &mut last.unknown_check),
            ("unknown_dag", now.unknown_dag, &mut last.unknown_dag),
            ("out_of_order", now.out_of_order, &mut last.out_of_order),
            ("future", now.future, &mut last.future),
        ];
        for (cause, total, last) in causes {
            // Every cause is exported from the start, so a rate over it is never "no data".
            let counter = self.rejected.get_or_create_owned(&RejectLabels {
                stage: "engine".into(),
                cause: cause.into(),
            });
            advance(&counter, last, total);
        }
    }
}

/// A verdict as a number: 0 unknown, 1 up, 2 degraded, 3 down.
pub fn verdict_code(v: Verdict) -> i64 {
    match v {
        Verdict::Unknown => 0,
        Verdict::Up => 1,
        Verdict::Degraded => 2,
        Verdict::Down => 3,
    }
}

/// A rule's snake_case name, as in audit records and `explain`.
pub fn rule_label(rule: Rule) -> String {
    match serde_json::to_value(rule) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{rule:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::metrics::Metrics;

    #[test]
    fn every_rule_has_a_snake_case_label() {
        assert_eq!(rule_label(Rule::MoveAwayFromDown), "move_away_from_down");
        assert_eq!(rule_label(Rule::FailStaticUnknown), "fail_static_unknown");
    }

    #[test]
    fn a_fresh_engine_exports_unknown_verdicts_and_every_engine_cause() {
        let config = crate::config::ControllerConfig::from_toml(
            "controller.toml",
            &sitewarden_test_decisions(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::new(config);
        let state = engine.initial_state();
        let m = Metrics::new();
        m.observe(&engine, &state, Utc::now());
        let text = m.encode();
        for line in [
            "sitewarden_controller_site_verdict{site=\"site1\",verdict=\"unknown\"} 1",
            "sitewarden_controller_site_verdict{site=\"site1\",verdict=\"up\"} 0",
            "sitewarden_controller_site_verdict_code{site=\"site2\"} 0",
            "sitewarden_controller_events_rejected_total{stage=\"engine\",cause=\"out_of_order\"} 0",
            "sitewarden_controller_namespace_target{namespace=\"mail.example.com\",current=\"none\",desired=\"none\",rule=\"none\"} 1",
            "sitewarden_controller_observer_fresh{observer=\"witness-agent1\",check=\"eas\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    fn observation(seq: u64, server: &str) -> Observation {
        Observation {
            schema_version: 1,
            agent: AgentId::new("site1-agent1").unwrap_or_else(|e| panic!("{e}")),
            site: "site1".parse().unwrap_or_else(|e| panic!("{e}")),
            seq,
            observed_at: Utc::now(),
            target_site: "site2".parse().unwrap_or_else(|e| panic!("{e}")),
            server: ServerId::new(server).unwrap_or_else(|e| panic!("{e}")),
            check: CheckName::new("eas").unwrap_or_else(|e| panic!("{e}")),
            kind: sitewarden_shared::CheckKind::Activesync,
            protocol: "activesync".to_owned(),
            outcome: Outcome::Pass,
            http_status: None,
            latency_ms: 30,
            error_class: None,
            error: None,
            details: Default::default(),
        }
    }

    #[test]
    fn only_observations_the_engine_admits_are_counted_per_observer() {
        let config = crate::config::ControllerConfig::from_toml(
            "controller.toml",
            &sitewarden_test_decisions(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::new(config);
        let mut state = engine.initial_state();
        let m = Metrics::new();
        for input in [
            observation(1, "cas2"),
            observation(1, "cas2"), // a duplicate: out of order
            observation(2, "cas9"), // not a configured server
            observation(3, "cas2"),
        ]
        .map(Input::Observation)
        {
            engine.step(&mut state, Utc::now(), &input);
            m.observation(&state, &input);
        }
        m.observe(&engine, &state, Utc::now());
        let text = m.encode();
        for line in [
            "sitewarden_controller_check_results_total{observer=\"site1-agent1\",target_site=\"site2\",server=\"cas2\",check=\"eas\",outcome=\"pass\"} 2",
            "sitewarden_controller_check_latency_seconds_count{observer=\"site1-agent1\",target_site=\"site2\",server=\"cas2\",check=\"eas\"} 2",
            "sitewarden_controller_events_rejected_total{stage=\"engine\",cause=\"out_of_order\"} 1",
            "sitewarden_controller_events_rejected_total{stage=\"engine\",cause=\"unknown_server\"} 1",
            "sitewarden_controller_events_admitted_total 2",
            "sitewarden_controller_observer_fresh{observer=\"site1-agent1\",check=\"eas\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("cas9"), "{text}");
    }

    fn sitewarden_test_decisions() -> String {
        r#"
[[sites]]
name = "site1"
servers = ["cas1"]

[[sites]]
name = "site2"
servers = ["cas2"]

[[agents]]
name = "site1-agent1"
site = "site1"

[[agents]]
name = "witness-agent1"
site = "site2"
checks = ["eas"]

[[namespaces]]
name = "mail.example.com"
candidates = [
  { target = "mail-site1.example.com", requires = ["site1"] },
  { target = "mail-site2.example.com", requires = ["site2"] },
]
"#
        .to_owned()
    }
}
