//! The lease's timing rules, pure: when a leader renews, when it must stop acting, and when a
//! new leader may start acting.
//!
//! Nothing here reads a clock or touches the network. Every instant is passed in as a
//! `tokio::time::Instant` taken from the local monotonic clock by the caller, so the rules are
//! tested with explicit instants and the I/O task in `lease` stays thin.
//!
//! The rules, with the defaults `lease` = 10 s and `renew_every` = `margin` = lease/3:
//!
//! - **Renew** every `renew_every`, timed from when the last successful renewal was *sent*.
//! - **Step down**: a leader acts only while its last successful renewal (or the create that
//!   won the lease), timed from when it was sent, is younger than `lease − margin`. The send
//!   time is earlier than the moment the bus wrote the renewal, so the bus's own view of the
//!   lease always outlives the leader's acting window by at least `margin`; the margin absorbs
//!   clock-rate differences between hosts and the delay of the bus's expiry timer.
//! - **Takeover wait**: a new leader acts once one renewal interval has passed since the
//!   previous holder must have stopped acting. The previous holder stopped acting by its last
//!   renewal as observed by us + `lease − margin` (we observe a renewal after it was sent, so
//!   this is never too early), hence the new leader acts at
//!   `max(won_at, last_observed_renewal + lease − margin + renew_every)`. With the default
//!   `margin = renew_every` that is `last_observed_renewal + lease`, which has normally passed
//!   already when the key expired, so a takeover after a crash costs about one lease.
//!   If we never observed the previous holder (we just started, or our watch of the key broke),
//!   we wait a full `renew_every` after winning. If the previous holder released the lease
//!   gracefully (it stops acting *before* it writes the release), we act at once. So does a
//!   leader that stepped down (say, the bus was away for longer than `lease − margin`) and
//!   takes its own record back with a compare-and-set: nobody else held the key meanwhile, and
//!   its old term stopped acting when it stepped down. The term it starts is a new one, with
//!   the new (higher) revision as its epoch.

use std::time::Duration;

use tokio::time::Instant;

/// The smallest lease we accept; shorter leases cannot be renewed reliably over a network.
pub const MIN_LEASE: Duration = Duration::from_millis(300);

/// The lease's timing: how long it lasts, how often it is renewed, and the safety margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseClock {
    /// How long the bus keeps the lease key after its last write (the bucket's `max_age`).
    lease: Duration,
    /// How often the leader renews; also the takeover wait.
    renew_every: Duration,
    /// How much earlier than the lease the leader stops acting.
    margin: Duration,
}

/// A lease timing that could not work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseClockError {
    /// The lease is shorter than [`MIN_LEASE`].
    #[error("lease {lease:?} is too short; use at least {MIN_LEASE:?} (default 10s)")]
    TooShort {
        /// The rejected lease.
        lease: Duration,
    },
    /// The margin leaves no acting window.
    #[error("lease margin {margin:?} must be shorter than the lease {lease:?}; use lease/3")]
    MarginTooLarge {
        /// The lease.
        lease: Duration,
        /// The rejected margin.
        margin: Duration,
    },
    /// The leader would stop acting before its next renewal is due.
    #[error(
        "renew_every {renew_every:?} must be shorter than lease − margin ({window:?}), or the \
         leader stops acting before it renews; use lease/3"
    )]
    RenewTooSlow {
        /// The rejected renewal interval.
        renew_every: Duration,
        /// `lease − margin`.
        window: Duration,
    },
    /// A zero renewal interval would renew in a busy loop.
    #[error("renew_every must be more than zero; use lease/3")]
    RenewZero,
}

impl LeaseClock {
    /// The default lease.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

    /// A lease of `lease` with `renew_every` = `margin` = `lease / 3`.
    pub fn new(lease: Duration) -> Result<Self, LeaseClockError> {
        Self::with(lease, lease / 3, lease / 3)
    }

    /// A lease with explicit renewal interval and margin, checked to be workable.
    pub fn with(
        lease: Duration,
        renew_every: Duration,
        margin: Duration,
    ) -> Result<Self, LeaseClockError> {
        if lease < MIN_LEASE {
            return Err(LeaseClockError::TooShort { lease });
        }
        if margin >= lease {
            return Err(LeaseClockError::MarginTooLarge { lease, margin });
        }
        if renew_every.is_zero() {
            return Err(LeaseClockError::RenewZero);
        }
        let window = lease - margin;
        if renew_every >= window {
            return Err(LeaseClockError::RenewTooSlow {
                renew_every,
                window,
            });
        }
        Ok(Self {
            lease,
            renew_every,
            margin,
        })
    }

    /// How long the bus keeps the lease key after its last write.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often the leader renews.
    pub fn renew_every(&self) -> Duration {
        self.renew_every
    }

    /// How much earlier than the lease the leader stops acting.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// How long a renewal sent at some instant lets the leader act: `lease − margin`.
    pub fn acting_window(&self) -> Duration {
        self.lease - self.margin
    }

    /// The instant a leader whose last successful renewal was sent at `sent_at` stops acting.
    pub fn acting_deadline(&self, sent_at: Instant) -> Instant {
        sent_at + self.acting_window()
    }

    /// The instant a leader that won the lease at `won_at` may start acting, given what we know
    /// about the previous holder (see the module docs for the rule).
    pub fn takeover_at(&self, won_at: Instant, previous: PreviousHolder) -> Instant {
        match previous {
            PreviousHolder::Released | PreviousHolder::Ourselves => won_at,
            PreviousHolder::Unobserved => won_at + self.renew_every,
            PreviousHolder::LastRenewalSeen(seen) => {
                won_at.max(self.acting_deadline(seen) + self.renew_every)
            }
        }
    }
}

impl Default for LeaseClock {
    fn default() -> Self {
        Self {
            lease: Self::DEFAULT_LEASE,
            renew_every: Self::DEFAULT_LEASE / 3,
            margin: Self::DEFAULT_LEASE / 3,
        }
    }
}

/// What a new leader knows about whoever held the lease before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousHolder {
    /// Nothing: we just started or lost our watch of the key. Wait a full renewal interval.
    Unobserved,
    /// We last saw another holder's renewal (or create) arrive at this instant on our
    /// monotonic clock. Another holder includes an earlier run of our own process; our own
    /// earlier terms in this run do not count, because we stop acting the moment we step down.
    LastRenewalSeen(Instant),
    /// The previous holder released the lease; it stopped acting before it wrote the release.
    Released,
    /// Our own earlier term in this run, and nobody else since: the key still held our record
    /// and every write we sent since that term began was a compare-and-set on our own revision,
    /// so the key held our record throughout and nobody else can have won it. That term stopped
    /// acting when it stepped down, so the new term may act at once (under its new epoch).
    Ourselves,
}

/// One term of leadership: from winning the lease (its epoch) until stepping down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    /// The revision returned by the create that won the lease: the fencing token.
    epoch: u64,
    /// The key's revision after our last successful write, expected by the next renewal.
    revision: u64,
    /// When we may start acting (the takeover wait).
    acting_from: Instant,
    /// When the last successful renewal (or the winning create) was sent.
    renewed_sent_at: Instant,
    /// When the first renewal expecting [`Self::revision`] was sent, while none of them has
    /// been acknowledged: the earliest any of them can have landed.
    unconfirmed_since: Option<Instant>,
}

impl Term {
    /// A term won by a create sent at `sent_at` that returned revision `epoch` at `won_at`.
    pub fn begin(
        clock: &LeaseClock,
        epoch: u64,
        sent_at: Instant,
        won_at: Instant,
        previous: PreviousHolder,
    ) -> Self {
        Self {
            epoch,
            revision: epoch,
            acting_from: clock.takeover_at(won_at, previous),
            renewed_sent_at: sent_at,
            unconfirmed_since: None,
        }
    }

    /// The fencing token of this term.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The revision the next renewal must expect.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// When this term may start acting.
    pub fn acting_from(&self) -> Instant {
        self.acting_from
    }

    /// When this term stops acting unless renewed.
    pub fn acting_deadline(&self, clock: &LeaseClock) -> Instant {
        clock.acting_deadline(self.renewed_sent_at)
    }

    /// When the next renewal is due.
    pub fn next_renewal(&self, clock: &LeaseClock) -> Instant {
        self.renewed_sent_at + clock.renew_every()
    }

    /// Whether this term may act at `now`: past the takeover wait and within `lease − margin`
    /// of the last successful renewal's send.
    pub fn is_acting(&self, clock: &LeaseClock, now: Instant) -> bool {
        now >= self.acting_from && now < self.acting_deadline(clock)
    }

    /// Whether this term is over at `now` because renewals failed for `lease − margin`.
    pub fn has_lapsed(&self, clock: &LeaseClock, now: Instant) -> bool {
        now >= self.acting_deadline(clock)
    }

    /// A renewal expecting [`Self::revision`] is being sent at `at`.
    pub fn sending(&mut self, at: Instant) {
        self.unconfirmed_since.get_or_insert(at);
    }

    /// A renewal sent at `sent_at` succeeded with `revision`. Older send times never move the
    /// deadline back.
    pub fn renewed(&mut self, sent_at: Instant, revision: u64) {
        self.renewed_sent_at = self.renewed_sent_at.max(sent_at);
        self.revision = revision;
        self.unconfirmed_since = None;
    }

    /// The bus holds our write at `revision` although we saw no acknowledgement (the ack was
    /// lost, or came after our timeout). Expect that revision next. It was one of the renewals
    /// sent on the previous revision, so it was sent no earlier than the first of them: the
    /// deadline moves to that send, never later (a slow bus whose writes all land keeps the
    /// lease; the key's `max_age` counts from a receipt that came after that send).
    pub fn adopt_revision(&mut self, revision: u64) {
        if let Some(first) = self.unconfirmed_since.take() {
            self.renewed_sent_at = self.renewed_sent_at.max(first);
        }
        self.revision = revision;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn clock10() -> LeaseClock {
        LeaseClock::new(secs(10.0)).unwrap()
    }

    #[test]
    fn defaults_are_a_third_of_the_lease() {
        let c = LeaseClock::default();
        assert_eq!(c, clock10());
        assert_eq!(c.renew_every(), c.margin());
        assert_eq!(
            c.acting_window(),
            Duration::from_secs(10) - Duration::from_secs(10) / 3
        );
    }

    #[test]
    fn unworkable_timings_are_refused_with_the_fix() {
        let e = LeaseClock::new(secs(0.1)).unwrap_err();
        assert!(e.to_string().contains("at least"), "{e}");
        let e = LeaseClock::with(secs(10.0), secs(7.0), secs(4.0)).unwrap_err();
        assert!(matches!(e, LeaseClockError::RenewTooSlow { .. }), "{e}");
        assert!(e.to_string().contains("lease/3"), "{e}");
        let e = LeaseClock::with(secs(10.0), secs(1.0), secs(10.0)).unwrap_err();
        assert!(matches!(e, LeaseClockError::MarginTooLarge { .. }));
        let e = LeaseClock::with(secs(10.0), Duration::ZERO, secs(3.0)).unwrap_err();
        assert_eq!(e, LeaseClockError::RenewZero);
    }

    #[test]
    fn a_leader_stops_acting_at_lease_minus_margin_after_its_last_renewal_send() {
        let c = clock10();
        let t0 = Instant::now();
        let mut term = Term::begin(&c, 7, t0, t0, PreviousHolder::Released);
        assert!(term.is_acting(&c, t0));
        let window = c.acting_window();
        assert!(term.is_acting(&c, t0 + window - secs(0.001)));
        assert!(!term.is_acting(&c, t0 + window));
        assert!(term.has_lapsed(&c, t0 + window));

        // A renewal sent at t0+3s (acknowledged much later) extends from the send, not the ack.
        term.renewed(t0 + secs(3.0), 9);
        assert_eq!(term.revision(), 9);
        assert_eq!(
            term.epoch(),
            7,
            "renewals change the revision, never the epoch"
        );
        assert_eq!(term.acting_deadline(&c), t0 + secs(3.0) + window);
        assert!(term.is_acting(&c, t0 + secs(3.0) + window - secs(0.001)));
        assert!(!term.is_acting(&c, t0 + secs(3.0) + window));
        assert_eq!(term.next_renewal(&c), t0 + secs(3.0) + c.renew_every());

        // An older send acknowledged late never moves the deadline back.
        term.renewed(t0 + secs(1.0), 10);
        assert_eq!(term.acting_deadline(&c), t0 + secs(3.0) + window);

        // A lost ack with no send recorded: adopt the revision, keep the deadline.
        term.adopt_revision(12);
        assert_eq!(term.revision(), 12);
        assert_eq!(term.acting_deadline(&c), t0 + secs(3.0) + window);

        // Renewals on revision 12 sent at 4 s and 4.5 s both time out; one of them landed (a
        // read finds revision 13 ours): the deadline counts from the first of them, 4 s.
        term.sending(t0 + secs(4.0));
        term.sending(t0 + secs(4.5));
        term.adopt_revision(13);
        assert_eq!(term.revision(), 13);
        assert_eq!(term.acting_deadline(&c), t0 + secs(4.0) + window);
        // The next renewals start a new count.
        term.sending(t0 + secs(6.0));
        term.renewed(t0 + secs(6.5), 14);
        term.sending(t0 + secs(8.0));
        term.adopt_revision(15);
        assert_eq!(term.acting_deadline(&c), t0 + secs(8.0) + window);
    }

    #[test]
    fn takeover_waits_one_renewal_interval_after_the_previous_holder_stopped() {
        let c = clock10();
        let t0 = Instant::now();
        // Last renewal seen at t0: the holder stopped acting by t0 + 10 - 3.33; we act one
        // renewal interval later, i.e. at t0 + 10s with the default margin.
        let seen = PreviousHolder::LastRenewalSeen(t0);
        assert_eq!(c.takeover_at(t0 + secs(10.2), seen), t0 + secs(10.2));
        assert_eq!(
            c.takeover_at(t0 + secs(4.0), seen),
            t0 + c.acting_window() + c.renew_every()
        );
        assert_eq!(
            c.takeover_at(t0 + secs(4.0), seen),
            t0 + secs(10.0),
            "with margin = renew_every the wait ends one lease after the last renewal seen"
        );
        // Never observed: a full renewal interval after winning.
        assert_eq!(
            c.takeover_at(t0, PreviousHolder::Unobserved),
            t0 + c.renew_every()
        );
        // Released, or our own lapsed term taken back: at once.
        assert_eq!(c.takeover_at(t0, PreviousHolder::Released), t0);
        assert_eq!(c.takeover_at(t0, PreviousHolder::Ourselves), t0);
    }

    #[test]
    fn a_new_leader_never_acts_before_its_wait_and_the_old_one_stopped_before_that() {
        let c = LeaseClock::with(secs(2.0), secs(0.5), secs(0.8)).unwrap();
        let t0 = Instant::now();
        // The old leader's last renewal was sent at t0 and arrived at the standby at t0 + 50ms.
        let old = Term::begin(&c, 3, t0, t0, PreviousHolder::Released);
        let seen = t0 + secs(0.05);
        // The standby wins early (e.g. the key was released by someone else's mistake).
        let won = t0 + secs(0.3);
        let new = Term::begin(&c, 8, won, won, PreviousHolder::LastRenewalSeen(seen));
        let mut t = t0;
        while t < t0 + secs(5.0) {
            assert!(
                !(old.is_acting(&c, t) && new.is_acting(&c, t)),
                "two actors at {:?}",
                t - t0
            );
            if t < new.acting_from() {
                assert!(!new.is_acting(&c, t));
            }
            t += secs(0.01);
        }
        assert_eq!(
            new.acting_from(),
            seen + c.acting_window() + c.renew_every()
        );
        assert!(new.acting_from() >= old.acting_deadline(&c) + c.renew_every());

        let fresh = Term::begin(&c, 9, won, won, PreviousHolder::Unobserved);
        assert!(!fresh.is_acting(&c, won));
        assert!(!fresh.is_acting(&c, won + c.renew_every() - secs(0.001)));
        assert!(fresh.is_acting(&c, won + c.renew_every()));
    }
}
