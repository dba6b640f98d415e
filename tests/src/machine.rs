//! The test machine's cores, shared between stories.
//!
//! Every integration test runs in one test binary, two at a time on a 2-core machine (cargo
//! test runs one thread per core). Most tests barely load the machine. Two kinds do:
//!
//! - stories that load it **on purpose** — an agent flooding the bus as hard as it can, hundreds
//!   of slow clients or 4 MiB pushes at once — take it [`alone`]: beside one of them, a story
//!   whose timings assume a fair share of two cores (a 2 s lease renewed, a standby taking over
//!   within one lease) fails for the wrong reason. Before the one binary they were kept apart
//!   by living in their own binary (`bus_flood`) and by its own lock; here they are kept apart
//!   from every heavy story.
//! - stories whose timings assume a fair share of two cores take a [`share`]: the HA lab (a
//!   controller pair as processes, three agents, a NATS cluster), the lease stories, the
//!   in-process controller pairs, and the few light tests that assert an upper bound on a time
//!   (an answer within a second, a block honoured to the second). Any number of them may run
//!   together, as they did two at a time in their own binaries, but never beside one that runs
//!   alone.
//!
//! The light tests (emulators, parsers, one nats-server) take nothing and fill the gaps.
//! Tokio's `RwLock` is fair: a story waiting to run alone is not overtaken by later shares.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::const_new(());

/// Waits until no other heavy story runs, and keeps the machine for this one until the guard
/// drops.
pub async fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// Waits until no story runs alone; then runs beside other sharing stories until the guard
/// drops.
pub async fn share() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}
