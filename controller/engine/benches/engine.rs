//! Engine throughput: observations per second on one core, and per-event cost against history.
//!
//! Layout: 2 sites × 10 servers × 5 protocols, observed by 5 agents (two per site and a
//! witness), one check per protocol: 500 observer × check × server combinations. A batch is 200
//! probe rounds (100,000 observations, 2 s apart in virtual time). `steady` is all passes,
//! `noisy` fails 2 % of probes at random (flips make the engine recount quorums). The
//! `history` group runs the same batch on a fresh state and on one that has already digested
//! 1 and 5 million observations: the cost per event must not grow.
//!
//! Run: `cargo bench -p sitewarden-engine --bench engine -- --quick`.

use sitewarden_engine::{Epoch, Generation};
use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sitewarden_contract::{
    AgentId, CheckKind, CheckName, Observation, ObservationDetails, Outcome, ServerId, SiteId,
};
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::{Engine, Input, LeadershipChange, ProviderReport, State};

const PROTOCOLS: [&str; 5] = ["activesync", "owa", "ews", "mapi", "autodiscover"];
const AGENTS: [(&str, &str); 5] = [
    ("site1-a1", "site1"),
    ("site1-a2", "site1"),
    ("site2-a1", "site2"),
    ("site2-a2", "site2"),
    ("witness-a1", "witness"),
];
const ROUNDS_PER_BATCH: u64 = 200;

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
            namespace: "mail.example.com".parse().unwrap(),
            target: Some("mail-rr.example.com".parse().unwrap()),
            generation: Some(Generation(0)),
            written: None,
        }),
    );
    let mut done = 0;
    while done < rounds {
        let n = (rounds - done).min(ROUNDS_PER_BATCH);
        for (at, input) in batch(done, n, 0) {
            engine.step(&mut state, at, &input);
        }
        engine.step(
            &mut state,
            t0() + TimeDelta::seconds(2 * (done + n) as i64),
            &Input::Tick,
        );
        done += n;
    }
    state
}

fn run(engine: &Engine, state: &mut State, inputs: &[(DateTime<Utc>, Input)]) {
    for (at, input) in inputs {
        black_box(engine.step(state, *at, input));
    }
}

fn throughput(c: &mut Criterion) {
    let engine = Engine::new(config());
    let warm_rounds = 10;
    let base = warmed(&engine, warm_rounds);
    let mut g = c.benchmark_group("observations");
    g.throughput(Throughput::Elements(ROUNDS_PER_BATCH * 500));
    for (name, noise) in [("steady", 0), ("noisy_2pct", 20)] {
        let inputs = batch(warm_rounds, ROUNDS_PER_BATCH, noise);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || base.clone(),
                |s| run(&engine, s, &inputs),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn history(c: &mut Criterion) {
    let engine = Engine::new(config());
    let mut g = c.benchmark_group("history");
    g.throughput(Throughput::Elements(ROUNDS_PER_BATCH * 500));
    // 10 rounds = 5,000 observations; 2,000 rounds = 1M; 10,000 rounds = 5M.
    for warm_rounds in [10u64, 2_000, 10_000] {
        let base = warmed(&engine, warm_rounds);
        let inputs = batch(warm_rounds, ROUNDS_PER_BATCH, 0);
        g.bench_function(format!("after_{}_observations", warm_rounds * 500), |b| {
            b.iter_batched_ref(
                || base.clone(),
                |s| run(&engine, s, &inputs),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn tick(c: &mut Criterion) {
    let engine = Engine::new(config());
    let base = warmed(&engine, 10);
    let at = t0() + TimeDelta::seconds(21);
    c.bench_function("tick", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |s| black_box(engine.step(s, at, &Input::Tick)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, throughput, history, tick);
criterion_main!(benches);
