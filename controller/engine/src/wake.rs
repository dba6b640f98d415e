//! When the engine must be woken next if no input arrives: the `requeue_after` of its decisions.
//!
//! Time-driven rules are staleness (an observer's latest result growing old), the end of a
//! recovering check's window (which ends a Down site's "rising"), agent silence, a
//! DAG's snapshot growing old, override expiries, failback windows, hold-downs, the retry
//! schedule, the end of the start-up grace, the end of the settle window after a total outage
//! and a Degraded or Unknown verdict's alert settling. Per name, the time its latest plan
//! may change by itself is kept in `State::replan` (see `replan`), so the question costs the
//! same whatever the number of names. [`Engine::next_wake`] returns the earliest of
//! their deadlines after `now`, so the runtime can sleep until then or the next input instead of
//! recounting on a fixed beat. Deadlines are computed generously (a deadline that turns out to
//! change nothing costs one idle tick); none is ever missed.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Engine, State};

impl Engine {
    /// The earliest time after `now` at which a tick may change something, if any.
    pub fn next_wake(&self, state: &State, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut wake: Option<DateTime<Utc>> = None;
        let mut at = |t: Option<DateTime<Utc>>| {
            if let Some(t) = t.filter(|t| *t > now) {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        // A result counts while `now - last_at <= stale_after`: it is stale just after.
        let just_after =
            |t: DateTime<Utc>, d: TimeDelta| t.checked_add_signed(d + TimeDelta::milliseconds(1));
        at(state
            .started_at
            .and_then(|s| s.checked_add_signed(self.startup_grace)));
        for s in state.sites.values() {
            at(s.alert_pending
                .and_then(|t| t.checked_add_signed(self.settle())));
        }
        for protos in state.components.values() {
            for c in protos.values() {
                for checks in c.observers.values() {
                    for check in checks.values() {
                        at(just_after(check.last_at, self.stale_after));
                        // A recovering check stops holding its site "rising" by itself.
                        at(check
                            .recovered_at
                            .and_then(|r| just_after(r, self.stale_after)));
                    }
                }
            }
        }
        for a in state.agents.values() {
            if let (Some(last), Some(ms)) = (a.last_heartbeat, a.heartbeat_interval_ms) {
                let limit = TimeDelta::milliseconds(
                    i64::try_from(ms.saturating_mul(3)).unwrap_or(i64::MAX),
                )
                .max(self.stale_after);
                at(just_after(last, limit));
            }
        }
        for d in state.dags.values() {
            at(d.last_good_at
                .and_then(|t| just_after(t, self.dbcopy_stale_after)));
        }
        let o = &state.overrides;
        for hold in o
            .pins
            .values()
            .map(|p| &p.hold)
            .chain(o.drains.values())
            .chain(o.freezes.values())
        {
            at(hold.expires);
        }
        // Hold-downs, failback windows and retry waits, as each name's latest plan left them.
        at(state.replan.next_due(now));
        at(state.settle_until);
        wake
    }
}
