//! The engine benchmark's workload, shared by the criterion bench (`benches/engine.rs`) and the
//! instruction count (`examples/instructions.rs`, `scripts/bench-instructions`), so both measure
//! the same thing: 2 sites × 10 servers × 5 protocols, observed by 5 agents (two per site and a
//! witness), one check per protocol — 500 observer × check × server combinations per probe
//! round, 2 s apart in virtual time, from a fixed xorshift seed.

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::{
    AgentId, CheckKind, CheckName, Observation, ObservationDetails, Outcome, ServerId, SiteId,
};
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::{
    Engine, Epoch, Generation, Input, LeadershipChange, ProviderReport, State,
};

/// The protocols each server is probed on.
pub const PROTOCOLS: [&str; 5] = ["activesync", "owa", "ews", "mapi", "autodiscover"];
/// The agents and their sites.
pub const AGENTS: [(&str, &str); 5] = [
    ("site1-a1", "site1"),
    ("site1-a2", "site1"),
    ("site2-a1", "site2"),
    ("site2-a2", "site2"),
    ("witness-a1", "witness"),
];

/// The layout as a controller configuration.
pub fn config() -> ControllerConfig {
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

/// The workload's virtual time zero.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

/// `rounds` probe rounds starting at round `first`; `noise_per_mille` of probes fail.
pub fn batch(first: u64, rounds: u64, noise_per_mille: u64) -> Vec<(DateTime<Utc>, Input)> {
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

/// Probe rounds per batch (100,000 observations).
pub const ROUNDS_PER_BATCH: u64 = 200;

/// A leader state that has digested `rounds` rounds of healthy probes.
pub fn warmed(engine: &Engine, rounds: u64) -> State {
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
