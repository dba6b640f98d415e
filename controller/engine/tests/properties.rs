//! Property tests: random event sequences and timings against the engine's invariants.
//!
//! Sites fail and recover at random, observers add noise, the DAG moves, operators drain and
//! release, the provider acknowledges late. Whatever happens: no automatic move to a target
//! whose sites are not Up; no automatic change while every site is Down or Unknown; at most one
//! automatic non-emergency change per namespace per hold-down; the same inputs give the same
//! bytes; the state survives a serialization round trip mid-run.

mod support;

use sitewarden_engine::{Epoch, Generation};
use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use sitewarden_contract::dbcopy::{CopyStatus, DbCopy};
use sitewarden_contract::{
    AgentId, CheckKind, CheckName, CollectOutcome, CollectVia, DbCopySnapshot, Observation,
    ObservationDetails, Outcome, ServerId, SiteId,
};
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::{
    AlertKind, Command, Engine, Input, LeadershipChange, OverrideAction, OverrideRequest,
    ProviderReport, ReleaseTarget, Severity, State,
};

const AGENTS: [(&str, &str); 3] = [
    ("site1-agent1", "site1"),
    ("site2-agent1", "site2"),
    ("witness-agent1", "witness"),
];
const SERVERS: [(&str, &str); 4] = [
    ("site1", "cas1"),
    ("site1", "cas2"),
    ("site2", "cas3"),
    ("site2", "cas4"),
];

fn cfg() -> ControllerConfig {
    support::config(
        "fall = 2\nrise = 2\nstale_after = \"10s\"\nhold_down = \"20s\"\nfailback_after = \"30s\"",
    )
}

#[derive(Debug, Clone)]
enum Op {
    Probe {
        agent: usize,
        server: usize,
        noise: bool,
    },
    Tick,
    FlipSite(usize),
    Dag(usize),
    Ack,
    Drain(usize),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => (0..3usize, 0..4usize, prop::bool::weighted(0.1)).prop_map(|(agent, server, noise)| Op::Probe { agent, server, noise }),
        8 => Just(Op::Tick),
        1 => (0..2usize).prop_map(Op::FlipSite),
        1 => (0..2usize).prop_map(Op::Dag),
        4 => Just(Op::Ack),
        1 => (0..2usize).prop_map(Op::Drain),
        1 => (0..2usize).prop_map(Op::Release),
    ]
}

fn steps() -> impl Strategy<Value = Vec<(u16, Op)>> {
    prop::collection::vec((0..1000u16, op()), 1..1200)
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    match s.parse() {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    }
}

/// Turns ops into concrete inputs with times (the world's own state lives here, not in the engine).
fn inputs(ops: &[(u16, Op)]) -> Vec<(DateTime<Utc>, Input)> {
    let mut now = support::t(0);
    let mut healthy = [true, true];
    let mut seq: BTreeMap<&str, u64> = BTreeMap::new();
    let mut out = vec![
        (
            now,
            Input::Leadership(LeadershipChange {
                is_leader: true,
                epoch: Epoch(1),
            }),
        ),
        (
            now,
            Input::Provider(ProviderReport::Current {
                namespace: "mail.example.com".parse().unwrap(),
                target: Some("mail-rr.example.com".parse().unwrap()),
                generation: Some(Generation(0)),
                written: None,
            }),
        ),
        (
            now,
            Input::Provider(ProviderReport::Current {
                namespace: "owa.example.com".parse().unwrap(),
                target: Some("owa-site1.example.com".parse().unwrap()),
                generation: Some(Generation(0)),
                written: None,
            }),
        ),
    ];
    let mut last_gen = 0u64;
    for (dt, op) in ops {
        now += TimeDelta::milliseconds(i64::from(*dt));
        let input = match op {
            Op::Probe {
                agent,
                server,
                noise,
            } => {
                // One agent probes every server; `server` picks the one that sees the noise.
                let (agent, site) = AGENTS[*agent];
                for (i, (target_site, name)) in SERVERS.iter().enumerate() {
                    let ok =
                        healthy[usize::from(*target_site == "site2")] ^ (*noise && i == *server);
                    let s = seq.entry(agent).or_insert(0);
                    *s += 1;
                    out.push((
                        now,
                        Input::Observation(Observation {
                            schema_version: 1,
                            agent: id::<AgentId>(agent),
                            site: id::<SiteId>(site),
                            seq: *s,
                            observed_at: now,
                            target_site: id::<SiteId>(target_site),
                            server: id::<ServerId>(name),
                            check: id::<CheckName>("eas"),
                            kind: CheckKind::Activesync,
                            protocol: "activesync".into(),
                            outcome: if ok { Outcome::Pass } else { Outcome::Fail },
                            http_status: None,
                            latency_ms: 5,
                            error_class: None,
                            error: None,
                            details: ObservationDetails::default(),
                        }),
                    ));
                }
                continue;
            }
            Op::Tick => Input::Tick,
            Op::FlipSite(i) => {
                healthy[*i] = !healthy[*i];
                continue;
            }
            Op::Dag(i) => {
                let s = seq.entry("witness-agent1").or_insert(0);
                *s += 1;
                let server = if *i == 0 { "EX01" } else { "EX03" };
                Input::DbCopy(DbCopySnapshot {
                    schema_version: 1,
                    agent: id("witness-agent1"),
                    site: id("witness"),
                    seq: *s,
                    observed_at: now,
                    source: id("dag1"),
                    dag: "DAG1".into(),
                    via: CollectVia::Command,
                    outcome: CollectOutcome::Ok,
                    error: None,
                    copies: vec![DbCopy {
                        name: format!("DB01\\{server}"),
                        database: "DB01".into(),
                        server: server.into(),
                        status: CopyStatus::Mounted,
                        active_database_copy: None,
                        activation_suspended: false,
                        copy_queue_length: 0,
                        replay_queue_length: 0,
                        content_index_state: None,
                        last_inspected_log_time: None,
                        activation_preference: None,
                        error_message: None,
                    }],
                })
            }
            Op::Ack => {
                // Acknowledge generations in order, whatever namespace they were for; stale or
                // foreign acknowledgements must be harmless.
                last_gen += 1;
                for ns in ["mail.example.com", "owa.example.com"] {
                    out.push((
                        now,
                        Input::Provider(ProviderReport::Applied {
                            namespace: ns.parse().unwrap(),
                            generation: sitewarden_engine::Generation(last_gen),
                            calls: Default::default(),
                        }),
                    ));
                }
                continue;
            }
            Op::Drain(i) | Op::Release(i) => {
                let site = id::<SiteId>(if *i == 0 { "site1" } else { "site2" });
                let action = if matches!(op, Op::Drain(_)) {
                    OverrideAction::Drain {
                        site,
                        expires: Some(now + TimeDelta::seconds(90)),
                    }
                } else {
                    OverrideAction::Release {
                        what: ReleaseTarget::Drain { site },
                    }
                };
                Input::Override(OverrideRequest {
                    who: "prop".into(),
                    why: "test".into(),
                    action,
                    force: false,
                })
            }
        };
        out.push((now, input));
    }
    out
}

fn run(engine: &Engine, state: &mut State, inputs: &[(DateTime<Utc>, Input)]) -> Vec<Vec<Command>> {
    inputs
        .iter()
        .map(|(now, i)| engine.step(state, *now, i))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_random_runs(ops in steps()) {
        let engine = Engine::new(cfg());
        let mut state = engine.initial_state();
        let hold = TimeDelta::seconds(20);
        let mut last_change: BTreeMap<sitewarden_contract::DnsName, DateTime<Utc>> = BTreeMap::new();
        for (now, input) in inputs(&ops) {
            let cmds = engine.step(&mut state, now, &input);
            let any_serving = state.sites.values().any(|s| s.verdict.is_serving());
            let settle = TimeDelta::from_std(engine.config().policy.interval).unwrap_or_default();
            let mut verdict_alerts: BTreeMap<&str, usize> = BTreeMap::new();
            for c in &cmds {
                let Command::Alert(a) = c else { continue };
                if a.kind != AlertKind::SiteVerdict {
                    continue;
                }
                *verdict_alerts.entry(a.subject.as_str()).or_default() += 1;
                // A Degraded or Unknown alert names a verdict that still holds and has held for
                // one probe interval: never a passing state on the way to Down or Up.
                if a.severity == Severity::Warning {
                    // As the alert's own evidence has it: the verdict's start and the alert's time.
                    let ev = a.evidence.as_ref();
                    let since = ev.and_then(|e| e.sites.values().next()).and_then(|s| s.since);
                    let held = match (ev, since) {
                        (Some(e), Some(since)) => e.at - since >= settle,
                        _ => false,
                    };
                    prop_assert!(held, "{} alerted before it settled (settle {settle}): {a:?}", a.subject);
                }
            }
            for (site, n) in verdict_alerts {
                prop_assert!(n <= 1, "{n} verdict alerts for {site} in one step");
            }
            for c in &cmds {
                let Command::SetRecord(r) = c else { continue };
                let ns = &engine.config().namespaces[&r.namespace];
                if r.reason.is_automatic_change() {
                    let sites = ns.sites_of(&r.target).unwrap_or_default();
                    for s in &sites {
                        let st = &state.sites[s];
                        prop_assert!(st.verdict.is_serving(), "{} moved to {} while {s} is {}", r.namespace, r.target, st.verdict);
                        prop_assert!(!state.overrides.is_drained(s), "moved to drained {s}");
                    }
                    prop_assert!(any_serving, "automatic change while every site is Down or Unknown");
                }
                if r.reason.is_non_emergency_change()
                    && let Some(prev) = last_change.get(&r.namespace)
                {
                    prop_assert!(now - *prev >= hold, "{} changed at {now} and {prev}", r.namespace);
                }
                last_change.insert(r.namespace.clone(), now);
            }
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes(ops in steps()) {
        let engine = Engine::new(cfg());
        let inputs = inputs(&ops);
        let mut a = engine.initial_state();
        let mut b = engine.initial_state();
        let out_a = serde_json::to_string(&run(&engine, &mut a, &inputs)).unwrap_or_default();
        let out_b = serde_json::to_string(&run(&engine, &mut b, &inputs)).unwrap_or_default();
        prop_assert_eq!(out_a, out_b);
        prop_assert_eq!(serde_json::to_string(&a).unwrap_or_default(), serde_json::to_string(&b).unwrap_or_default());
    }

    #[test]
    fn state_round_trips_and_resumes_exactly(ops in steps(), cut in 0usize..1200) {
        let engine = Engine::new(cfg());
        let inputs = inputs(&ops);
        let cut = cut.min(inputs.len());
        let mut straight = engine.initial_state();
        let mut resumed = engine.initial_state();
        run(&engine, &mut straight, &inputs[..cut]);
        run(&engine, &mut resumed, &inputs[..cut]);
        let json = serde_json::to_string(&resumed).unwrap_or_default();
        let restored: State = match serde_json::from_str(&json) {
            Ok(s) => s,
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        prop_assert_eq!(&restored, &straight);
        let mut restored = restored;
        let rest_a = serde_json::to_string(&run(&engine, &mut straight, &inputs[cut..])).unwrap_or_default();
        let rest_b = serde_json::to_string(&run(&engine, &mut restored, &inputs[cut..])).unwrap_or_default();
        prop_assert_eq!(rest_a, rest_b);
    }
}
