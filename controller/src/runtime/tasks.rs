//! The tasks one `run` starts, tracked so that none outlives it.
//!
//! [`Tasks`] is a cloneable spawner: the wiring in `run` and the pieces it starts (the applier's
//! propagation watches, the edge publisher) spawn through it. [`TaskScope`], owned by `run`,
//! aborts every task still running when it is dropped — when `run` returns, or when `run`
//! itself is dropped or aborted (a crash, as the HA tests emulate it) — so nothing it started
//! keeps renewing the lease, writing records or sending alerts afterwards.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::{AbortHandle, JoinHandle};

/// Spawns and remembers tasks; clones share one register.
#[derive(Clone, Default)]
pub struct Tasks {
    /// Abort handles of every task spawned and not yet seen finished.
    running: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Tasks {
    /// Spawns `future` as a tracked task.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::spawn(future);
        self.track(handle)
    }

    /// Tracks a task spawned elsewhere (by a component that spawns its own).
    pub fn track<T>(&self, handle: JoinHandle<T>) -> JoinHandle<T> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // Short tasks (one edge publish, one propagation watch) come and go: forget the
        // finished ones so the register stays as long as what runs.
        running.retain(|h| !h.is_finished());
        running.push(handle.abort_handle());
        handle
    }

    /// How many tracked tasks are still running.
    pub fn running(&self) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.iter().filter(|h| !h.is_finished()).count()
    }

    fn abort_all(&self) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for h in running.iter() {
            h.abort();
        }
    }
}

/// Owns a [`Tasks`] register: dropping it aborts every task still running.
#[derive(Default)]
pub struct TaskScope(Tasks);

impl TaskScope {
    /// The spawner to hand to the pieces `run` starts.
    pub fn tasks(&self) -> Tasks {
        self.0.clone()
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_scope_aborts_tasks_spawned_from_anywhere() {
        let scope = TaskScope::default();
        let tasks = scope.tasks();
        let inner = tasks.clone();
        let outer = tasks.spawn(async move {
            // A task that spawns another, as the applier spawns propagation watches.
            let nested = inner.spawn(std::future::pending::<()>());
            nested.await.ok();
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while tasks.running() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "both tasks start");
            tokio::task::yield_now().await;
        }
        drop(scope);
        let err = outer.await.expect_err("the outer task was aborted");
        assert!(err.is_cancelled());
        assert_eq!(tasks.running(), 0);
    }

    #[tokio::test]
    async fn finished_tasks_are_forgotten() {
        let scope = TaskScope::default();
        let tasks = scope.tasks();
        for _ in 0..100 {
            tasks.spawn(async {}).await.ok();
        }
        tasks.spawn(async {}).await.ok();
        assert!(tasks.running.lock().map(|r| r.len()).unwrap_or(0) <= 1);
    }
}
