//! Engine cost against the number of managed names: 1,000 and 10,000 names over 20 site pairs
//! (see `fleet`), the deployment of the "mass failover" issue.
//!
//! Per size, on a leader whose every site is Up and every name steady:
//! - `steady_observation`: one observation that changes nothing (a batch of 10 probe rounds,
//!   4,800 observations; criterion's time is per batch, its throughput per observation);
//! - `idle_tick`: a tick with nothing due;
//! - `next_wake`: the runtime's question after every tick and provider report;
//! - `deciding_observation`: the observation that completes site `p01a`'s Down quorum, whose
//!   step emits the `SetRecord` of every name on `p01a` (500 at 10,000 names);
//! - `applied_report`: a provider's `Applied` for one of those names (a batch of one per
//!   pending name; throughput per report).
//!
//! The deciding step is the latency that matters (every name's `SetRecord` leaves the engine
//! when the step returns), so besides criterion's estimates the bench prints its spread:
//! `scale/deciding_observation/<names>: p50 … ms p99 … ms max … ms over 200 runs, S SetRecords`
//! (each run on a fresh copy of the state; the copy is not timed).
//!
//! Run: `cargo bench -p sitewarden-engine --bench scale -- --quick`.

use std::hint::black_box;
use std::time::Duration;

use chrono::TimeDelta;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sitewarden_engine::{Command, Engine, Input, ProviderReport, State};

mod fleet;
use fleet::{
    PER_ROUND, WARM_ROUNDS, at, before_deciding, config, feed, round, set_records, warmed,
};

/// The sizes measured.
const SIZES: [usize; 2] = [1_000, 10_000];
/// Probe rounds in a `steady_observation` batch.
const STEADY_ROUNDS: u64 = 10;
/// Runs of the deciding step behind its printed percentiles.
const SPREAD_RUNS: usize = 200;

/// Wall time of one call, for the deciding step's percentiles: criterion reports means and
/// medians of samples, not the tail of single calls. (The engine itself never reads a clock;
/// a benchmark has to.)
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn steady_and_idle(c: &mut Criterion, size: usize, engine: &Engine, warm: &State) {
    let mut g = c.benchmark_group("scale");
    let steady: Vec<_> = (WARM_ROUNDS..WARM_ROUNDS + STEADY_ROUNDS)
        .flat_map(|r| round(r, &[]))
        .collect();
    g.throughput(Throughput::Elements(steady.len() as u64));
    g.bench_function(BenchmarkId::new("steady_observation", size), |b| {
        b.iter_batched_ref(
            || warm.clone(),
            |s| black_box(feed(engine, s, &steady)),
            BatchSize::LargeInput,
        )
    });
    g.throughput(Throughput::Elements(1));
    // One second after the last round: every result is fresh, no window ends, nothing is due.
    let idle = at(WARM_ROUNDS - 1) + TimeDelta::seconds(1);
    let mut state = warm.clone();
    engine.step(&mut state, idle, &Input::Tick);
    g.bench_function(BenchmarkId::new("idle_tick", size), |b| {
        b.iter(|| black_box(engine.step(&mut state, idle, &Input::Tick)))
    });
    g.bench_function(BenchmarkId::new("next_wake", size), |b| {
        b.iter(|| black_box(engine.next_wake(&state, idle)))
    });
    g.finish();
}

fn deciding_and_applied(c: &mut Criterion, size: usize, engine: &Engine, warm: &State) {
    let (before, (now, input), out) = before_deciding(engine, warm);
    let moved = set_records(&out);
    assert_eq!(moved, size / fleet::PAIRS, "every name on p01a moves");
    let mut g = c.benchmark_group("scale");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("deciding_observation", size), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut s = before.clone();
                let (out, took) = timed(|| engine.step(&mut s, now, &input));
                black_box(out);
                total += took;
            }
            total
        })
    });
    // Criterion's sample count follows the routine's time, which leaves out the copy of the
    // state each run needs: the spread comes from a fixed number of runs of its own.
    let mut runs: Vec<Duration> = (0..SPREAD_RUNS)
        .map(|_| {
            let mut s = before.clone();
            let (out, took) = timed(|| engine.step(&mut s, now, &input));
            black_box(out);
            took
        })
        .collect();
    runs.sort();
    let pct = |p: usize| {
        let i = (runs.len() * p / 100).min(runs.len().saturating_sub(1));
        runs.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "scale/deciding_observation/{size}: p50 {:.3} ms p99 {:.3} ms max {:.3} ms over {} runs, {moved} SetRecords",
        pct(50),
        pct(99),
        pct(100),
        runs.len()
    );
    // After the deciding step: one `Applied` per pending name.
    let mut after = before.clone();
    let out = engine.step(&mut after, now, &input);
    let applied: Vec<Input> = out
        .iter()
        .filter_map(|c| match c {
            Command::SetRecord(r) => Some(Input::Provider(ProviderReport::Applied {
                namespace: r.namespace.clone(),
                generation: r.generation,
                calls: Default::default(),
            })),
            _ => None,
        })
        .collect();
    g.throughput(Throughput::Elements(applied.len() as u64));
    g.bench_function(BenchmarkId::new("applied_report", size), |b| {
        b.iter_batched_ref(
            || after.clone(),
            |s| {
                for report in &applied {
                    black_box(engine.step(s, now, report));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn scale(c: &mut Criterion) {
    for size in SIZES {
        let engine = Engine::new(config(size));
        let warm = warmed(&engine);
        assert_eq!(round(0, &[]).len(), PER_ROUND);
        steady_and_idle(c, size, &engine, &warm);
        deciding_and_applied(c, size, &engine, &warm);
    }
}

criterion_group!(benches, scale);
criterion_main!(benches);
