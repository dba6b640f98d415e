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
//!
//! `deciding N`: the `scale` bench's fleet (10,000 names over 20 site pairs, three observers),
//! the observation that completes site `p01a`'s Down quorum and moves its 500 names, stepped
//! `N` times, each on its own copy of the state made beforehand. Count it with callgrind's
//! `--toggle-collect='instructions::decide'`, which counts the steps alone (not the setup or
//! the copies): `scripts/bench-instructions` does, and divides by `N`.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use sitewarden_engine::{Engine, Input, State};

// The bench's own workload, so the two measure the same thing.
#[path = "../benches/workload/mod.rs"]
mod workload;
// The `scale` bench's fleet, for the `deciding` case: the same module the bench compiles, of
// which this example uses the part that builds the deciding step.
#[allow(
    dead_code,
    reason = "shared with benches/scale.rs, which uses the rest of the module"
)]
#[path = "../benches/fleet/mod.rs"]
mod fleet;
use workload::{batch, config, warmed};

/// Healthy rounds digested before the measured ones, as in the bench's `observations` group.
const WARM_ROUNDS: u64 = 10;
/// Rounds built for the measured loop: 400 × 500 = 200,000 observations.
const ROUNDS: u64 = 400;

/// The measured loop: one `Engine::step` per input, its commands counted so none is optimised out.
#[inline(never)]
fn run(engine: &Engine, state: &mut State, inputs: &[(DateTime<Utc>, Input)]) -> usize {
    let mut commands = 0;
    for (at, input) in inputs {
        commands += black_box(engine.step(state, *at, input)).len();
    }
    commands
}

/// The measured loop of `deciding`: the deciding step once per prepared state.
#[inline(never)]
fn decide(engine: &Engine, states: &mut [State], now: DateTime<Utc>, input: &Input) -> usize {
    let mut records = 0;
    for state in states {
        records += fleet::set_records(&black_box(engine.step(state, now, input)));
    }
    records
}

/// `deciding STEPS`: see the module docs.
fn deciding(steps: usize) {
    let engine = Engine::new(fleet::config(10_000));
    let warm = fleet::warmed(&engine);
    let (before, (now, input), _) = fleet::before_deciding(&engine, &warm);
    let mut states: Vec<State> = (0..steps).map(|_| before.clone()).collect();
    let records = decide(&engine, &mut states, now, black_box(&input));
    println!("{{\"case\":\"deciding\",\"steps\":{steps},\"set_records\":{records}}}");
}

fn main() {
    let usage = "usage: instructions steady|noisy_2pct STEPS (STEPS ≤ 200000) | deciding STEPS";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [case, steps] = args.as_slice()
        && case == "deciding"
    {
        deciding(steps.parse().unwrap_or_else(|_| panic!("{usage}")));
        return;
    }
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
