//! The lease's answer to "may this controller act, and under which epoch?", as the rest of the
//! controller sees it.
//!
//! [`Leadership`] is published on a `tokio::sync::watch` channel whenever the role or the acting
//! flag changes, for dashboards, metrics, alerts and the engine's `LeadershipChange` input. A
//! published value is a snapshot and goes stale while nobody publishes (for instance while the
//! process is frozen by SIGSTOP), so writers must not trust it: right before every provider
//! write or state compare-and-set the runtime calls [`LeaseHandle::is_acting_now`], which
//! checks the acting window against the monotonic clock at the moment of the call.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::time::Instant;

/// What this controller is, as far as the lease goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// We hold the lease under this epoch (we may still be in the takeover wait).
    Leader {
        /// The fencing token of our term.
        epoch: u64,
    },
    /// Someone else holds the lease, or nobody does and we have not won it yet.
    Standby {
        /// The holder's id as written in the lease, if anyone holds it.
        holder: Option<String>,
    },
    /// The bus does not answer (unreachable or without JetStream quorum): we cannot tell.
    Unknown,
}

/// A snapshot of this controller's leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// Leader, standby or unknown.
    pub role: Role,
    /// Leader, past the takeover wait and within `lease − margin` of the last renewal, when
    /// this snapshot was taken.
    pub acting: bool,
    /// The epoch while leader.
    pub epoch: Option<u64>,
}

impl Leadership {
    /// Before the first answer from the bus.
    pub fn unknown() -> Self {
        Self {
            role: Role::Unknown,
            acting: false,
            epoch: None,
        }
    }
}

/// The window in which the current term may act, on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActingWindow {
    /// The term's epoch.
    pub(crate) epoch: u64,
    /// End of the takeover wait.
    pub(crate) from: Instant,
    /// Last successful renewal's send + `lease − margin`.
    pub(crate) until: Instant,
}

/// The acting window shared between the lease task and its handles.
#[derive(Debug, Default)]
pub(crate) struct SharedWindow(Mutex<Option<ActingWindow>>);

impl SharedWindow {
    fn lock(&self) -> MutexGuard<'_, Option<ActingWindow>> {
        // The guarded value is a plain Copy struct, always whole: a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, window: Option<ActingWindow>) {
        *self.lock() = window;
    }

    pub(crate) fn get(&self) -> Option<ActingWindow> {
        *self.lock()
    }
}

/// A cheap, cloneable view of one lease task.
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    /// This controller's holder id.
    holder: Arc<str>,
    /// The acting window, updated by the lease task on every win, renewal and step-down.
    window: Arc<SharedWindow>,
    /// Leadership snapshots.
    leadership: watch::Receiver<Leadership>,
}

impl LeaseHandle {
    pub(crate) fn new(
        holder: Arc<str>,
        window: Arc<SharedWindow>,
        leadership: watch::Receiver<Leadership>,
    ) -> Self {
        Self {
            holder,
            window,
            leadership,
        }
    }

    /// The epoch to write under if this controller may act at this very moment; `None`
    /// otherwise. Reads the monotonic clock, so a leader that was frozen past its lease gets
    /// `None` on waking even before its lease task has run. Call it right before each write.
    pub fn is_acting_now(&self) -> Option<u64> {
        let w = self.window.get()?;
        let now = Instant::now();
        (now >= w.from && now < w.until).then_some(w.epoch)
    }

    /// A receiver of leadership snapshots; `changed()` fires on every role or acting change.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// The latest published snapshot.
    pub fn current(&self) -> Leadership {
        self.leadership.borrow().clone()
    }

    /// This controller's holder id.
    pub fn holder_id(&self) -> &str {
        &self.holder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn is_acting_now_reads_the_clock_not_the_last_snapshot() {
        let window = Arc::new(SharedWindow::default());
        let (_tx, rx) = watch::channel(Leadership::unknown());
        let handle = LeaseHandle::new("ctl-a".into(), window.clone(), rx);
        assert_eq!(handle.is_acting_now(), None);

        let now = Instant::now();
        window.set(Some(ActingWindow {
            epoch: 4,
            from: now + Duration::from_secs(1),
            until: now + Duration::from_secs(5),
        }));
        assert_eq!(handle.is_acting_now(), None, "still in the takeover wait");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(handle.is_acting_now(), Some(4));
        // Nobody renews or publishes: the window closes on its own.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(handle.is_acting_now(), None);
        assert_eq!(handle.holder_id(), "ctl-a");
        assert_eq!(handle.current(), Leadership::unknown());
    }
}
