//! The managed names' metrics: per rule over all names (`namespaces_*`, always) and per name
//! (`namespace_*`, unless `[metrics] per_name = false`).
//!
//! Per name the page carries four series plus one per rule a decision or change about it has
//! had: about 0.6 KB a name, about 6 MB of a scrape at 10,000 names (the size test below prints
//! it). A deployment with thousands of names may keep only the per-rule totals, which answer
//! "how many names are failed over, pending, pinned" at a constant size.
//!
//! Refreshed on the runtime's tick from the engine's state, compared with what the previous
//! tick saw: a decision or change is counted when its evidence timestamp moves (two decisions
//! about one name within one tick count once). A name whose state did not change since then
//! costs a few comparisons and no allocation, so the tick stays cheap at 10,000 names.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::engine::rule_label;
use crate::engine::namespace::NamespaceState;
use crate::engine::{Rule, State};

/// One namespace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabel {
    /// The managed name.
    pub namespace: String,
}

/// Where a namespace points and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The managed name.
    pub namespace: String,
    /// What the record holds (`none` when not known yet).
    pub current: String,
    /// Where the engine wants it: the pending change, else the latest decision, else `current`.
    pub desired: String,
    /// The rule of the latest decision (`none` before the first).
    pub rule: String,
}

/// A decision about a namespace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The managed name.
    pub namespace: String,
    /// The rule that fired.
    pub rule: String,
}

/// A rule, over all names.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// The rule (`none`: no decision yet).
    pub rule: String,
}

/// Registers `metric` under `name` with `help` and gives it back for the caller to keep.
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// The per-name series (`sitewarden_controller_namespace_*`).
#[derive(Debug)]
struct PerName {
    target: Family<TargetLabels, Gauge>,
    pending: Family<NamespaceLabel, Gauge>,
    pinned: Family<NamespaceLabel, Gauge>,
    frozen: Family<NamespaceLabel, Gauge>,
    decisions: Family<DecisionLabels, Counter>,
    changes: Family<DecisionLabels, Counter>,
}

impl PerName {
    fn register(registry: &mut Registry) -> Self {
        Self {
            target: registered(
                registry,
                "namespace_target",
                "Always 1: where a managed name points (current), where the engine wants it (desired) and the rule of the latest decision",
                Family::default(),
            ),
            pending: registered(
                registry,
                "namespace_change_pending",
                "1 while a record change is issued and not yet confirmed by the provider",
                Family::default(),
            ),
            pinned: registered(
                registry,
                "namespace_pinned",
                "1 while an operator pins the name",
                Family::default(),
            ),
            frozen: registered(
                registry,
                "namespace_frozen",
                "1 while automatic changes of the name are frozen (by name or for all)",
                Family::default(),
            ),
            decisions: registered(
                registry,
                "namespace_decisions",
                "Decisions about a managed name (a move or a new reason to stay), by rule",
                Family::default(),
            ),
            changes: registered(
                registry,
                "namespace_changes",
                "Record changes the engine issued for a managed name, by rule",
                Family::default(),
            ),
        }
    }
}

/// The per-rule series over all names (`sitewarden_controller_namespaces_*`).
#[derive(Debug)]
struct Totals {
    by_rule: Family<RuleLabel, Gauge>,
    pending: Gauge,
    pinned: Gauge,
    frozen: Gauge,
    decisions: Family<RuleLabel, Counter>,
    changes: Family<RuleLabel, Counter>,
}

impl Totals {
    fn register(registry: &mut Registry) -> Self {
        Self {
            by_rule: registered(
                registry,
                "namespaces",
                "Managed names by the rule of their latest decision (none: no decision yet)",
                Family::default(),
            ),
            pending: registered(
                registry,
                "namespaces_change_pending",
                "Managed names with a record change issued and not yet confirmed",
                Gauge::default(),
            ),
            pinned: registered(
                registry,
                "namespaces_pinned",
                "Managed names an operator pins",
                Gauge::default(),
            ),
            frozen: registered(
                registry,
                "namespaces_frozen",
                "Managed names whose automatic changes are frozen (by name or for all)",
                Gauge::default(),
            ),
            decisions: registered(
                registry,
                "namespaces_decisions",
                "Decisions about managed names (a move or a new reason to stay), by rule",
                Family::default(),
            ),
            changes: registered(
                registry,
                "namespaces_changes",
                "Record changes the engine issued for managed names, by rule",
                Family::default(),
            ),
        }
    }
}

/// What the previous tick saw of one name.
#[derive(Debug, Default)]
struct Seen {
    /// The target series exported, and the rule in it (per name only).
    target: Option<(TargetLabels, Option<Rule>)>,
    /// The gauges exported: change pending, pinned, frozen (per name only).
    flags: Option<[bool; 3]>,
    decision_at: Option<DateTime<Utc>>,
    change_at: Option<DateTime<Utc>>,
}

/// The managed names' metrics.
#[derive(Debug)]
pub struct NameMetrics {
    /// `None` with `[metrics] per_name = false`.
    per_name: Option<PerName>,
    totals: Totals,
    /// Rules counted in `totals.by_rule` on the previous tick, to zero those gone.
    rules_seen: Mutex<BTreeMap<Rule, ()>>,
    /// Per name, in the state's name order, so a tick walks both side by side.
    seen: Mutex<Vec<(String, Seen)>>,
}

impl NameMetrics {
    /// Registers the per-rule series, and the per-name ones when `per_name`.
    pub fn register(registry: &mut Registry, per_name: bool) -> Self {
        let totals = Totals::register(registry);
        totals
            .by_rule
            .get_or_create(&RuleLabel {
                rule: "none".into(),
            })
            .set(0);
        Self {
            per_name: per_name.then(|| PerName::register(registry)),
            totals,
            rules_seen: Mutex::default(),
            seen: Mutex::default(),
        }
    }

    /// Refreshes every name's series from `state`.
    pub fn observe(&self, state: &State) {
        let (Ok(mut seen), Ok(mut rules_seen)) = (self.seen.lock(), self.rules_seen.lock()) else {
            return;
        };
        align(&mut seen, state);
        let mut by_rule: BTreeMap<Option<Rule>, i64> = BTreeMap::new();
        let mut flags_total = [0i64; 3];
        for ((name, ns), (_, prev)) in state.namespaces.iter().zip(seen.iter_mut()) {
            let flags = [
                ns.pending.is_some(),
                state.overrides.pins.contains_key(name),
                state.overrides.freeze_of(name).is_some(),
            ];
            for (total, on) in flags_total.iter_mut().zip(flags) {
                *total += i64::from(on);
            }
            *by_rule
                .entry(ns.decision.as_ref().map(|d| d.evidence.rule))
                .or_default() += 1;
            self.count(name, ns, prev);
            if let Some(per) = &self.per_name {
                per.refresh(name, ns, flags, prev);
            }
        }
        let [pending, pinned, frozen] = flags_total;
        self.totals.pending.set(pending);
        self.totals.pinned.set(pinned);
        self.totals.frozen.set(frozen);
        let label = |rule: Option<Rule>| RuleLabel {
            rule: rule.map_or_else(|| "none".into(), rule_label),
        };
        for rule in rules_seen.keys() {
            if !by_rule.contains_key(&Some(*rule)) {
                self.totals
                    .by_rule
                    .get_or_create(&label(Some(*rule)))
                    .set(0);
            }
        }
        self.totals
            .by_rule
            .get_or_create(&label(None))
            .set(by_rule.get(&None).copied().unwrap_or(0));
        rules_seen.clear();
        for (rule, n) in by_rule {
            if let Some(rule) = rule {
                self.totals.by_rule.get_or_create(&label(Some(rule))).set(n);
                rules_seen.insert(rule, ());
            }
        }
    }

    /// Counts a decision or change of `name` not seen on the previous tick.
    fn count(&self, name: &str, ns: &NamespaceState, prev: &mut Seen) {
        let counted = [
            (ns.decision.as_ref(), &mut prev.decision_at, true),
            (ns.last_change.as_ref(), &mut prev.change_at, false),
        ];
        for (d, at, decision) in counted {
            let Some(d) = d.filter(|d| *at != Some(d.evidence.at)) else {
                continue;
            };
            *at = Some(d.evidence.at);
            let rule = rule_label(d.evidence.rule);
            let (total, per) = if decision {
                (
                    &self.totals.decisions,
                    self.per_name.as_ref().map(|p| &p.decisions),
                )
            } else {
                (
                    &self.totals.changes,
                    self.per_name.as_ref().map(|p| &p.changes),
                )
            };
            total.get_or_create(&RuleLabel { rule: rule.clone() }).inc();
            if let Some(per) = per {
                per.get_or_create(&DecisionLabels {
                    namespace: name.to_owned(),
                    rule,
                })
                .inc();
            }
        }
    }
}

/// Makes `seen` hold one entry per name of `state`, in the same order: as it is unless the
/// names changed (the first tick, a new configuration), when what was seen of the names that
/// stay is kept and names no longer configured are forgotten (their per-name series stay until
/// restart, like any counter's).
fn align(seen: &mut Vec<(String, Seen)>, state: &State) {
    let aligned = seen.len() == state.namespaces.len()
        && seen
            .iter()
            .zip(state.namespaces.keys())
            .all(|((a, _), b)| a == b.as_str());
    if aligned {
        return;
    }
    let mut old: BTreeMap<String, Seen> = std::mem::take(seen).into_iter().collect();
    *seen = state
        .namespaces
        .keys()
        .map(|name| {
            let prev = old.remove(name.as_str()).unwrap_or_default();
            (name.to_string(), prev)
        })
        .collect();
}

impl PerName {
    /// Brings one name's gauges and target series up to `ns`, building labels only for what
    /// changed since the previous tick.
    fn refresh(&self, name: &str, ns: &NamespaceState, flags: [bool; 3], prev: &mut Seen) {
        if prev.flags != Some(flags) {
            let label = NamespaceLabel {
                namespace: name.to_owned(),
            };
            let [pending, pinned, frozen] = flags;
            self.pending.get_or_create(&label).set(i64::from(pending));
            self.pinned.get_or_create(&label).set(i64::from(pinned));
            self.frozen.get_or_create(&label).set(i64::from(frozen));
            prev.flags = Some(flags);
        }
        let current = ns.current.as_deref().unwrap_or("none");
        let desired = ns
            .pending
            .as_ref()
            .map(|p| p.target.as_str())
            .or_else(|| ns.decision.as_ref().and_then(|d| d.to.as_deref()))
            .unwrap_or(current);
        let rule = ns.decision.as_ref().map(|d| d.evidence.rule);
        let same = prev
            .target
            .as_ref()
            .is_some_and(|(t, r)| *r == rule && t.current == current && t.desired == desired);
        if same {
            return;
        }
        let target = TargetLabels {
            namespace: name.to_owned(),
            current: current.to_owned(),
            desired: desired.to_owned(),
            rule: rule.map_or_else(|| "none".into(), rule_label),
        };
        self.target.get_or_create(&target).set(1);
        if let Some((old, _)) = prev.target.replace((target, rule)) {
            self.target.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta};
    use sitewarden_shared::{CheckKind, Observation, ObservationDetails, Outcome};

    use crate::engine::{Engine, Epoch, Generation, Input, LeadershipChange, ProviderReport};
    use crate::runtime::metrics::{Metrics, MetricsSettings};

    const PAIRS: usize = 20;
    const NAMES: usize = 10_000;

    /// 20 site pairs of 2 servers × 2 protocols, three observers in three witness locations,
    /// 10,000 names each on one pair (the engine's `scale` bench layout, with fall and rise 2
    /// to reach a steady state in few rounds).
    fn config() -> String {
        let mut text = String::from("[policy]\ninterval = \"2s\"\nfall = 2\nrise = 2\n");
        for pair in 1..=PAIRS {
            for s in ["a", "b"] {
                text += &format!(
                    "[[sites]]\nname = \"p{pair:02}{s}\"\nservers = [\"p{pair:02}{s}-cas1\", \"p{pair:02}{s}-cas2\"]\nprotocols = [\"https\", \"activesync\"]\n"
                );
            }
        }
        for i in 1..=3 {
            text += &format!(
                "[[sites]]\nname = \"w{i}\"\n[[agents]]\nname = \"obs{i}\"\nsite = \"w{i}\"\n"
            );
        }
        for i in 0..NAMES {
            let pair = i % PAIRS + 1;
            text += &format!(
                "[[namespaces]]\nname = \"n{i:05}.p{pair:02}.example.com\"\ncandidates = [\n  {{ target = \"p{pair:02}a.example.com\", requires = [\"p{pair:02}a\"] }},\n  {{ target = \"p{pair:02}b.example.com\", requires = [\"p{pair:02}b\"] }},\n]\n"
            );
        }
        text
    }

    /// One probe round at `round` × 2 s; probes of `dead` fail.
    fn round(engine: &Engine, state: &mut crate::engine::State, round: i64, dead: &str) {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let now = t0 + TimeDelta::seconds(2 * round);
        let mut seq = round as u64 * 1_000;
        for i in 1..=3 {
            for pair in 1..=PAIRS {
                for s in ["a", "b"] {
                    let site = format!("p{pair:02}{s}");
                    for server in 1..=2 {
                        for check in ["https", "activesync"] {
                            seq += 1;
                            let o = Observation {
                                schema_version: 1,
                                agent: format!("obs{i}").parse().unwrap(),
                                site: format!("w{i}").parse().unwrap(),
                                seq,
                                observed_at: now,
                                target_site: site.parse().unwrap(),
                                server: format!("{site}-cas{server}").parse().unwrap(),
                                check: check.parse().unwrap(),
                                kind: CheckKind::Http,
                                protocol: check.to_owned(),
                                outcome: if site == dead {
                                    Outcome::Fail
                                } else {
                                    Outcome::Pass
                                },
                                http_status: Some(200),
                                latency_ms: 4,
                                error_class: None,
                                error: None,
                                details: ObservationDetails::default(),
                            };
                            engine.step(state, now, &Input::Observation(o));
                        }
                    }
                }
            }
        }
        engine.step(state, now, &Input::Tick);
    }

    /// The page after 10,000 names went through start-up, steady state and the failover of
    /// 500 of them, observed at each stage as the runtime's tick would.
    fn page(settings: MetricsSettings) -> String {
        let config = crate::config::ControllerConfig::from_toml("scale.toml", &config())
            .unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::new(config);
        let mut state = engine.initial_state();
        let m = Metrics::with_settings(settings);
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        engine.step(
            &mut state,
            t0,
            &Input::Leadership(LeadershipChange {
                is_leader: true,
                epoch: Epoch(1),
            }),
        );
        let names: Vec<_> = engine.config().namespaces.keys().cloned().collect();
        for name in names {
            let target = engine.config().namespaces[&name].targets()[0].clone();
            let report = ProviderReport::Current {
                namespace: name,
                target: Some(target),
                generation: Some(Generation(0)),
                written: None,
            };
            engine.step(&mut state, t0, &Input::Provider(report));
        }
        m.observe(&engine, &state, t0);
        for r in 0..4 {
            round(&engine, &mut state, r, "");
        }
        m.observe(&engine, &state, t0);
        for r in 4..8 {
            round(&engine, &mut state, r, "p01a");
            m.observe(&engine, &state, t0);
        }
        let moved = state
            .namespaces
            .values()
            .filter(|ns| ns.pending.is_some())
            .count();
        assert_eq!(moved, NAMES / PAIRS, "p01a's names moved");
        m.encode()
    }

    #[test]
    fn at_10000_names_the_page_stays_under_50_mb_and_per_name_off_keeps_only_totals() {
        let full = page(MetricsSettings::default());
        println!(
            "/metrics at {NAMES} names, per_name = true: {} bytes",
            full.len()
        );
        assert!(full.len() <= 50 << 20, "{} bytes", full.len());
        for line in [
            "sitewarden_controller_namespace_target{namespace=\"n00000.p01.example.com\",current=\"p01a.example.com\",desired=\"p01b.example.com\",rule=\"failed_over\"} 1",
            "sitewarden_controller_namespace_changes_total{namespace=\"n00000.p01.example.com\",rule=\"move_away_from_down\"} 1",
            "sitewarden_controller_namespaces_changes_total{rule=\"move_away_from_down\"} 500",
            "sitewarden_controller_namespaces{rule=\"failed_over\"} 500",
            "sitewarden_controller_namespaces{rule=\"steady\"} 9500",
            "sitewarden_controller_namespaces{rule=\"none\"} 0",
            "sitewarden_controller_namespaces_change_pending 500",
        ] {
            assert!(full.contains(line), "missing {line}");
        }
        let totals = page(MetricsSettings { per_name: false });
        println!(
            "/metrics at {NAMES} names, per_name = false: {} bytes",
            totals.len()
        );
        assert!(!totals.contains("namespace="), "a per-name series is left");
        for line in [
            "sitewarden_controller_namespaces_changes_total{rule=\"move_away_from_down\"} 500",
            "sitewarden_controller_namespaces{rule=\"steady\"} 9500",
            "sitewarden_controller_namespaces_change_pending 500",
        ] {
            assert!(totals.contains(line), "missing {line}");
        }
        assert!(totals.len() < 200 << 10, "{} bytes", totals.len());
    }
}
