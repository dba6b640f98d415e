//! A fixed engine workload to count instructions with callgrind, where wall-clock time is too noisy.
//!
//! The same layout and observations as the criterion bench (`benches/engine.rs`): 2 sites × 10
//! servers × 5 protocols, observed by 5 agents, rounds of 500 observations 2 s apart in virtual
//! time. It warms a leader state with 10 healthy rounds, builds `ROUNDS` more rounds of
//! observations (`steady`: all pass; `noisy_2pct`: 2 % fail, the bench's seed), then feeds the
//! first `--steps` of them to `Engine::step` and prints one JSON line. Setup and input building
//! do not depend on `--steps`, so a run with `--steps 0` counts everything but the measured loop:
//! (Ir at N steps − Ir at 0 steps) / N is the engine's instructions per observation.
//! No clock, no randomness, no I/O but the printed line: two runs execute the same instructions.
//!
//! Run: `cargo run --release -p sitewarden-engine --example instructions -- steady 200000`, or
//! `scripts/bench-instructions`, which runs it under callgrind and does the subtraction.

use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::{
    AgentId, CheckKind, CheckName, Observation, ObservationDetails, Outcome, ServerId, SiteId,
};
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::{
    Engine, Epoch, Generation, Input, LeadershipChange, ProviderReport, State,
};

const PROTOCOLS: [&str; 5] = ["activesync", "owa", "ews", "mapi", "autodiscover"];
const AGENTS: [(&str, &str); 5] = [
    ("site1-a1", "site1"),
    ("site1-a2", "site1"),
    ("site2-a1", "site2"),
    ("site2-a2", "site2"),
    ("witness-a1", "witness"),
];
/// Healthy rounds digested before the measured ones, as in the bench's `observations` group.
const WARM_ROUNDS: u64 = 10;
/// Rounds built for the measured loop: 400 × 500 = 200,000 observations.
const ROUNDS: u64 = 400;

fn config() -> ControllerConfig {
    let servers = |site: &str| {
        (1..=10)
            .map(|i| format!("\"{site}-cas{i:02}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let protocols = PROTOCOLS.map(|p| format!("\"{p}\"")).join(", ");
    let mut text = String::from("[policy]\ninterval = \"2s\"\n");
    for site in ["site1", "site2"] {
        text += &format!(
            "[[sites]]\nname = \"{site}\"\nservers = [{}]\nprotocols = [{protocols}]\n",
            servers(site)
        );
    }
    text += "[[sites]]\nname = \"witness\"\n";
    for (agent, site) in AGENTS {
        text += &format!("[[agents]]\nname = \"{agent}\"\nsite = \"{site}\"\n");
    }
    text += "[[namespaces]]\nname = \"mail.example.com\"\ncandidates = [\n  { target = \"mail-rr.example.com\", requires = [\"site1\", \"site2\"] },\n  { target = \"mail-site1.example.com\", requires = [\"site1\"] },\n  { target = \"mail-site2.example.com\", requires = [\"site2\"] },\n]\n";
    match ControllerConfig::from_toml("bench.toml", &text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

/// `rounds` probe rounds starting at round `first`; `noise_per_mille` of probes fail.
fn batch(first: u64, rounds: u64, noise_per_mille: u64) -> Vec<(DateTime<Utc>, Input)> {
    let id = |s: &str| s.to_owned();
    let mut out = Vec::with_capacity((rounds * 500) as usize);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ first;
    for round in first..first + rounds {
        let at = t0() + TimeDelta::seconds(2 * round as i64);
        for (ai, (agent, site)) in AGENTS.iter().enumerate() {
            let mut seq = round * 100 + 1;
            for target in ["site1", "site2"] {
                for i in 1..=10 {
                    for p in PROTOCOLS {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let fail = rng % 1000 < noise_per_mille;
                        let o = Observation {
                            schema_version: 1,
                            agent: AgentId::new(id(agent)).unwrap_or_else(|e| panic!("{e}")),
                            site: SiteId::new(id(site)).unwrap_or_else(|e| panic!("{e}")),
                            seq,
                            observed_at: at,
                            target_site: SiteId::new(target).unwrap_or_else(|e| panic!("{e}")),
                            server: ServerId::new(format!("{target}-cas{i:02}"))
                                .unwrap_or_else(|e| panic!("{e}")),
                            check: CheckName::new(p).unwrap_or_else(|e| panic!("{e}")),
                            kind: CheckKind::Http,
                            protocol: p.to_owned(),
                            outcome: if fail { Outcome::Fail } else { Outcome::Pass },
                            http_status: Some(200),
                            latency_ms: 3 + ai as u64,
                            error_class: None,
                            error: None,
                            details: ObservationDetails::default(),
                        };
                        seq += 1;
                        out.push((at, Input::Observation(o)));
                    }
                }
            }
        }
    }
    out
}

/// A leader state that has digested `rounds` rounds of healthy probes.
fn warmed(engine: &Engine, rounds: u64) -> State {
    let mut state = engine.initial_state();
    let now = t0();
    engine.step(
        &mut state,
        now,
        &Input::Leadership(LeadershipChange {
            is_leader: true,
            epoch: Epoch(1),
        }),
    );
    engine.step(
        &mut state,
        now,
        &Input::Provider(ProviderReport::Current {
            namespace: "mail.example.com".parse().unwrap_or_else(|e| panic!("{e}")),
            target: Some(
                "mail-rr.example.com"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            generation: Some(Generation(0)),
            written: None,
        }),
    );
    for (at, input) in batch(0, rounds, 0) {
        engine.step(&mut state, at, &input);
    }
    engine.step(
        &mut state,
        t0() + TimeDelta::seconds(2 * rounds as i64),
        &Input::Tick,
    );
    state
}

/// The measured loop: one `Engine::step` per input, its commands counted so none is optimised out.
#[inline(never)]
fn run(engine: &Engine, state: &mut State, inputs: &[(DateTime<Utc>, Input)]) -> usize {
    let mut commands = 0;
    for (at, input) in inputs {
        commands += black_box(engine.step(state, *at, input)).len();
    }
    commands
}

fn main() {
    let usage = "usage: instructions steady|noisy_2pct STEPS (STEPS ≤ 200000)";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (case, steps) = match args.as_slice() {
        [case, steps] => (case.as_str(), steps.parse::<usize>().ok()),
        _ => panic!("{usage}"),
    };
    let noise = match case {
        "steady" => 0,
        "noisy_2pct" => 20,
        _ => panic!("{usage}"),
    };
    let inputs = batch(WARM_ROUNDS, ROUNDS, noise);
    let steps = match steps {
        Some(n) if n <= inputs.len() => n,
        _ => panic!("{usage}"),
    };
    let engine = Engine::new(config());
    let mut state = warmed(&engine, WARM_ROUNDS);
    let commands = run(&engine, &mut state, black_box(&inputs[..steps]));
    println!("{{\"case\":\"{case}\",\"observations\":{steps},\"commands\":{commands}}}");
}
