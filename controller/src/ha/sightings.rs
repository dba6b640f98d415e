//! What a controller has seen of the lease key through its watch, pure: the last renewal (by
//! whom, when it arrived on our monotonic clock) or a release, and whether the watch is intact.
//!
//! The takeover wait ([`crate::ha::clock::LeaseClock::takeover_at`]) needs the arrival time of
//! the previous holder's last renewal; campaigning needs to know whether a holder is still
//! renewing. A broken watch forgets everything, because renewals may have been missed while it
//! was down, and the takeover wait falls back to its most careful form. The lease task does not
//! report its own writes here (see [`crate::ha::clock::PreviousHolder::LastRenewalSeen`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::ha::clock::{LeaseClock, PreviousHolder};

/// The last thing seen on the lease key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A write by a holder (a create or a renewal), arriving at `at`.
    Renewal {
        /// Who wrote it (see [`crate::ha::record::LeaseValue::holder`]).
        holder: Option<String>,
        /// Arrival on our monotonic clock.
        at: Instant,
    },
    /// A graceful release.
    Release,
    /// The key was deleted or purged (not by sitewarden). The arrival time of the last renewal
    /// before it still bounds when the holder stopped acting.
    Removed {
        /// The last renewal seen before the removal, if any.
        last_renewal: Option<Instant>,
    },
}

/// The lease key as seen through a watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sightings {
    /// The latest sighting; `None` before the first one and after the watch broke.
    last: Option<Seen>,
}

impl Sightings {
    /// A write by `holder` arrived at `at`.
    pub fn renewal(&mut self, holder: Option<String>, at: Instant) {
        self.last = Some(Seen::Renewal { holder, at });
    }

    /// A graceful release arrived.
    pub fn release(&mut self) {
        self.last = Some(Seen::Release);
    }

    /// A delete or purge marker arrived (written by hand or by another tool).
    pub fn removed(&mut self) {
        let last_renewal = match &self.last {
            Some(Seen::Renewal { at, .. }) => Some(*at),
            Some(Seen::Removed { last_renewal }) => *last_renewal,
            Some(Seen::Release) | None => None,
        };
        self.last = Some(Seen::Removed { last_renewal });
    }

    /// The watch broke: renewals may be missed from now on, so forget what was seen.
    pub fn lost(&mut self) {
        self.last = None;
    }

    /// What a controller winning the lease now knows about the previous holder.
    pub fn previous_holder(&self) -> PreviousHolder {
        match &self.last {
            None => PreviousHolder::Unobserved,
            Some(Seen::Release) => PreviousHolder::Released,
            Some(Seen::Renewal { at, .. }) => PreviousHolder::LastRenewalSeen(*at),
            Some(Seen::Removed {
                last_renewal: Some(at),
            }) => PreviousHolder::LastRenewalSeen(*at),
            Some(Seen::Removed { last_renewal: None }) => PreviousHolder::Unobserved,
        }
    }

    /// Who holds the lease as far as we saw; `None` if nobody or unknown.
    pub fn holder(&self) -> Option<String> {
        match &self.last {
            Some(Seen::Renewal { holder, .. }) => holder.clone(),
            _ => None,
        }
    }

    /// Whether it is worth trying to win the lease at `now`: unless a holder's renewal arrived
    /// within the last renewal interval (plus `slack` for the holder's and the bus's jitter),
    /// the key may be free.
    pub fn may_be_free(&self, clock: &LeaseClock, now: Instant, slack: Duration) -> bool {
        match &self.last {
            Some(Seen::Renewal { at, .. }) => now >= *at + clock.renew_every() + slack,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewing_holder_keeps_us_from_campaigning_until_it_goes_quiet() {
        let c = LeaseClock::default();
        let t0 = Instant::now();
        let mut s = Sightings::default();
        assert!(s.may_be_free(&c, t0, Duration::ZERO));
        assert_eq!(s.previous_holder(), PreviousHolder::Unobserved);

        s.renewal(Some("ctl-a".into()), t0);
        assert_eq!(s.holder().as_deref(), Some("ctl-a"));
        assert!(!s.may_be_free(&c, t0 + c.renew_every() / 2, Duration::ZERO));
        assert!(s.may_be_free(&c, t0 + c.renew_every(), Duration::ZERO));
        assert_eq!(s.previous_holder(), PreviousHolder::LastRenewalSeen(t0));
    }

    #[test]
    fn a_release_allows_an_immediate_takeover_and_a_broken_watch_the_most_careful_one() {
        let t0 = Instant::now();
        let mut s = Sightings::default();
        s.renewal(Some("ctl-a".into()), t0);
        s.release();
        assert_eq!(s.previous_holder(), PreviousHolder::Released);
        assert_eq!(s.holder(), None);

        s.renewal(Some("ctl-b".into()), t0);
        s.lost();
        assert_eq!(s.previous_holder(), PreviousHolder::Unobserved);
        assert!(s.may_be_free(&LeaseClock::default(), t0, Duration::ZERO));
    }

    #[test]
    fn a_hand_deleted_key_still_waits_for_the_last_renewal_seen() {
        let t0 = Instant::now();
        let mut s = Sightings::default();
        s.renewal(Some("ctl-a".into()), t0);
        s.removed();
        assert_eq!(s.previous_holder(), PreviousHolder::LastRenewalSeen(t0));
        s.removed();
        assert_eq!(s.previous_holder(), PreviousHolder::LastRenewalSeen(t0));
        let mut fresh = Sightings::default();
        fresh.removed();
        assert_eq!(fresh.previous_holder(), PreviousHolder::Unobserved);
    }
}
