//! The scale benchmark's workload (`benches/scale.rs`): a large deployment, built once per size.
//!
//! 20 site pairs (40 sites, `p01a`/`p01b` … `p20a`/`p20b`), each site 2 servers probed on 2
//! protocols (`https`, `activesync`), by three observers standing in three witness locations:
//! 3 × 80 × 2 = 480 observations per probe round, 2 s apart in virtual time. Every managed
//! name lives on one pair: preferred target `pNNa.example.com` (requires `pNNa`), fallback
//! `pNNb.example.com` (requires `pNNb`), so each pair carries `names / 20` names. The policy is
//! the shipped default but for the probe interval (2 s).

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::{
    AgentId, CheckKind, CheckName, DnsName, Observation, ObservationDetails, Outcome, ServerId,
    SiteId,
};
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::{Command, Engine, Epoch, Generation, Input, LeadershipChange, State};

/// Site pairs.
pub const PAIRS: usize = 20;
/// Servers per site.
pub const SERVERS: usize = 2;
/// Protocols (one check each) per server.
pub const PROTOCOLS: [&str; 2] = ["https", "activesync"];
/// The observers, each in a witness location of its own.
pub const OBSERVERS: [(&str, &str); 3] = [("obs1", "w1"), ("obs2", "w2"), ("obs3", "w3")];
/// Observations per probe round.
pub const PER_ROUND: usize = OBSERVERS.len() * PAIRS * 2 * SERVERS * PROTOCOLS.len();

fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Display,
{
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Site `b` (false: the preferred `a`) of pair `pair` (1-based).
pub fn site(pair: usize, b: bool) -> String {
    format!("p{pair:02}{}", if b { 'b' } else { 'a' })
}

/// The managed name `i` (0-based) and its pair.
pub fn name(i: usize) -> (DnsName, usize) {
    let pair = i % PAIRS + 1;
    (parse(&format!("n{i:05}.p{pair:02}.example.com")), pair)
}

/// The layout with `names` managed names as a controller configuration.
pub fn config(names: usize) -> ControllerConfig {
    let protocols = PROTOCOLS.map(|p| format!("\"{p}\"")).join(", ");
    let mut text = String::from("[policy]\ninterval = \"2s\"\n");
    for pair in 1..=PAIRS {
        for b in [false, true] {
            let s = site(pair, b);
            let servers: Vec<String> = (1..=SERVERS).map(|i| format!("\"{s}-cas{i}\"")).collect();
            text += &format!(
                "[[sites]]\nname = \"{s}\"\nservers = [{}]\nprotocols = [{protocols}]\n",
                servers.join(", ")
            );
        }
    }
    for (agent, witness) in OBSERVERS {
        text += &format!("[[sites]]\nname = \"{witness}\"\n");
        text += &format!("[[agents]]\nname = \"{agent}\"\nsite = \"{witness}\"\n");
    }
    for i in 0..names {
        let (n, pair) = name(i);
        let (a, b) = (site(pair, false), site(pair, true));
        text += &format!(
            "[[namespaces]]\nname = \"{n}\"\ncandidates = [\n  {{ target = \"{a}.example.com\", requires = [\"{a}\"] }},\n  {{ target = \"{b}.example.com\", requires = [\"{b}\"] }},\n]\n"
        );
    }
    ControllerConfig::from_toml("fleet.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// The workload's virtual time zero.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
}

/// The time of probe round `round`.
pub fn at(round: u64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(2 * round as i64)
}

/// One probe round: every observer probes every server on every protocol; probes of the sites
/// in `dead` fail. Sequence numbers are unique per observer and round.
pub fn round(round: u64, dead: &[String]) -> Vec<(DateTime<Utc>, Input)> {
    let now = at(round);
    let mut out = Vec::with_capacity(PER_ROUND);
    for (agent, witness) in OBSERVERS {
        let mut seq = round * 1_000 + 1;
        for pair in 1..=PAIRS {
            for b in [false, true] {
                let s = site(pair, b);
                let fail = dead.contains(&s);
                for i in 1..=SERVERS {
                    for p in PROTOCOLS {
                        out.push((
                            now,
                            Input::Observation(Observation {
                                schema_version: 1,
                                agent: parse::<AgentId>(agent),
                                site: parse::<SiteId>(witness),
                                seq,
                                observed_at: now,
                                target_site: parse::<SiteId>(&s),
                                server: parse::<ServerId>(&format!("{s}-cas{i}")),
                                check: parse::<CheckName>(p),
                                kind: CheckKind::Http,
                                protocol: p.to_owned(),
                                outcome: if fail { Outcome::Fail } else { Outcome::Pass },
                                http_status: Some(if fail { 503 } else { 200 }),
                                latency_ms: 4,
                                error_class: None,
                                error: None,
                                details: ObservationDetails::default(),
                            }),
                        ));
                        seq += 1;
                    }
                }
            }
        }
    }
    out
}

/// Feeds `inputs` to the engine; returns every command.
pub fn feed(engine: &Engine, state: &mut State, inputs: &[(DateTime<Utc>, Input)]) -> Vec<Command> {
    let mut out = Vec::new();
    for (now, input) in inputs {
        out.extend(engine.step(state, *now, input));
    }
    out
}

/// Healthy probe rounds in the warm-up: enough for every check to rise and every site to be Up.
pub const WARM_ROUNDS: u64 = 15;

/// A leader state whose records hold the preferred targets, after `WARM_ROUNDS` healthy
/// rounds, each followed by a tick; every site is Up and every name steady.
///
/// The records are set in the state directly, as `ProviderReport::Current` (marker generation
/// 0) leaves them: fed one by one, 10,000 reports cost an engine that re-plans every name per
/// input 10,000 full passes, which would dwarf what the benchmark measures.
pub fn warmed(engine: &Engine) -> State {
    let mut state = engine.initial_state();
    engine.step(
        &mut state,
        t0(),
        &Input::Leadership(LeadershipChange {
            is_leader: true,
            epoch: Epoch(1),
        }),
    );
    for (i, cfg) in engine.config().namespaces.values().enumerate() {
        let (name, _) = name(i);
        let Some(target) = cfg.targets().first().map(|t| (*t).clone()) else {
            continue;
        };
        if let Some(ns) = state.namespaces.get_mut(&name) {
            ns.current = Some(target.clone());
            ns.seen = Some((Some(target.clone()), Some(Generation(0))));
            ns.written = Some((Generation(0), target));
            ns.marked = true;
        }
    }
    for r in 0..WARM_ROUNDS {
        feed(engine, &mut state, &round(r, &[]));
        engine.step(&mut state, at(r), &Input::Tick);
    }
    let up = state
        .sites
        .values()
        .all(|s| s.verdict == sitewarden_engine::Verdict::Up);
    assert!(up, "the warm-up leaves every site Up");
    state
}

/// The state just before the deciding observation of site `p01a`'s death, and that
/// observation: from a warmed state, `p01a` fails every probe; the first input whose step
/// emits a `SetRecord` is the deciding one. Also returns the commands of that step.
pub fn before_deciding(
    engine: &Engine,
    warm: &State,
) -> (State, (DateTime<Utc>, Input), Vec<Command>) {
    let dead = [site(1, false)];
    let inputs: Vec<(DateTime<Utc>, Input)> = (WARM_ROUNDS..WARM_ROUNDS + 10)
        .flat_map(|r| {
            let mut inputs = round(r, &dead);
            inputs.push((at(r), Input::Tick));
            inputs
        })
        .collect();
    // Once to find the deciding input, once more to stop just before it (cloning the whole
    // state before every input would take longer than both).
    let mut state = warm.clone();
    let deciding = inputs
        .iter()
        .position(|(now, input)| {
            let out = engine.step(&mut state, *now, input);
            out.iter().any(|c| matches!(c, Command::SetRecord(_)))
        })
        .unwrap_or_else(|| panic!("site p01a never went Down"));
    let mut state = warm.clone();
    feed(engine, &mut state, &inputs[..deciding]);
    let before = state.clone();
    let (now, input) = inputs[deciding].clone();
    let out = engine.step(&mut state, now, &input);
    (before, (now, input), out)
}

/// How many `SetRecord`s `out` holds.
pub fn set_records(out: &[Command]) -> usize {
    out.iter()
        .filter(|c| matches!(c, Command::SetRecord(_)))
        .count()
}
