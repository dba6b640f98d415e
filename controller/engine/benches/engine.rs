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

use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sitewarden_engine::{Engine, Input, State};

mod workload;
use workload::{ROUNDS_PER_BATCH, batch, config, t0, warmed};

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
