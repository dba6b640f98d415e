//! Per observer × check hysteresis: HAProxy-style `fall` and `rise`, and staleness.
//!
//! A check turns failing after `fall` consecutive failures and passing after `rise` consecutive
//! successes (asymmetric on purpose: quick to notice trouble, slow to trust recovery). A new
//! check starts pending and needs a full streak either way. A check whose latest result is older
//! than `stale_after` no longer counts, whatever it said.

use chrono::{DateTime, TimeDelta, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::{ErrorClass, Outcome};

/// What one observer's check currently says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Not enough consecutive results yet.
    Pending,
    /// `rise` consecutive successes.
    Passing,
    /// `fall` consecutive failures.
    Failing,
}

/// Hysteresis state of one observer × check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckState {
    /// Current status.
    pub status: CheckStatus,
    /// When the status last changed (or the first result arrived).
    pub since: DateTime<Utc>,
    /// Outcome of the latest result.
    pub last_outcome: Outcome,
    /// Consecutive results equal to `last_outcome`.
    pub streak: u32,
    /// `observed_at` of the first result of the current streak (e.g. the first failed probe).
    pub streak_started: DateTime<Utc>,
    /// `observed_at` of the latest result; decides freshness.
    pub last_at: DateTime<Utc>,
    /// Error class of the latest result, when it failed.
    pub last_error: Option<ErrorClass>,
    /// HTTP status of the latest result, when a response arrived (shown, never judged).
    #[serde(default)]
    pub last_http_status: Option<u16>,
    /// Milliseconds the latest result took, connect to response or failure (shown, never
    /// judged); `None` in a state written before it was kept.
    #[serde(default)]
    pub last_latency_ms: Option<u64>,
    /// When the check last went from failing to passing: for `stale_after` after that it still
    /// counts as recovering (with a small `rise` the status flips at once).
    #[serde(default)]
    pub recovered_at: Option<DateTime<Utc>>,
}

impl CheckState {
    /// A check that has seen one result.
    pub fn first(outcome: Outcome, at: DateTime<Utc>, error: Option<ErrorClass>) -> Self {
        Self {
            status: CheckStatus::Pending,
            since: at,
            last_outcome: outcome,
            streak: 0,
            streak_started: at,
            last_at: at,
            last_error: error,
            last_http_status: None,
            last_latency_ms: None,
            recovered_at: None,
        }
    }

    /// Keeps what the latest result saw on the wire: its HTTP status and latency. Neither
    /// counts towards a verdict; they are there for an operator reading the evidence.
    pub fn saw(&mut self, http_status: Option<u16>, latency_ms: u64) {
        self.last_http_status = http_status;
        self.last_latency_ms = Some(latency_ms);
    }

    /// Was failing and passes again: recovering (fewer than `rise` passes), or recovered within
    /// the last `stale_after` and still passing. A check that fails again after its recovery is
    /// not recovering: the trend turned, and its fresh failures are evidence like any other.
    pub fn is_recovering(&self, now: DateTime<Utc>, stale_after: TimeDelta) -> bool {
        self.last_outcome == Outcome::Pass
            && (self.status == CheckStatus::Failing
                || self.recovered_at.is_some_and(|r| now - r <= stale_after))
    }

    /// Whether the latest result is recent enough to count at `now`.
    pub fn is_fresh(&self, now: DateTime<Utc>, stale_after: TimeDelta) -> bool {
        now - self.last_at <= stale_after
    }

    /// Records one result; returns whether the status changed or the outcome flipped (which
    /// may start or end a trend the quorum watches).
    pub fn record(
        &mut self,
        outcome: Outcome,
        at: DateTime<Utc>,
        error: Option<ErrorClass>,
        fall: u32,
        rise: u32,
    ) -> bool {
        let flipped = outcome != self.last_outcome && self.streak > 0;
        if outcome == self.last_outcome && self.streak > 0 {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.last_outcome = outcome;
            self.streak = 1;
            self.streak_started = at;
        }
        if at > self.last_at {
            self.last_at = at;
        }
        self.last_error = error;
        let next = match outcome {
            Outcome::Fail if self.streak >= fall => CheckStatus::Failing,
            Outcome::Pass if self.streak >= rise => CheckStatus::Passing,
            _ => self.status,
        };
        if next != self.status {
            if self.status == CheckStatus::Failing && next == CheckStatus::Passing {
                self.recovered_at = Some(at);
            }
            self.status = next;
            self.since = at;
            true
        } else {
            flipped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut c = CheckState::first(Outcome::Pass, t(0), None);
        let mut changes = Vec::new();
        for (i, o) in [Outcome::Pass; 5].iter().enumerate() {
            changes.push(c.record(*o, t(i as i64), None, 3, 5));
        }
        assert_eq!(c.status, CheckStatus::Passing);
        assert_eq!(changes, [false, false, false, false, true]);
        c.record(Outcome::Fail, t(10), None, 3, 5);
        c.record(Outcome::Fail, t(12), None, 3, 5);
        assert_eq!(c.status, CheckStatus::Passing);
        assert!(
            c.record(Outcome::Pass, t(14), None, 3, 5),
            "a flip is reported"
        );
        c.record(Outcome::Fail, t(16), None, 3, 5);
        c.record(Outcome::Fail, t(18), None, 3, 5);
        assert!(c.record(Outcome::Fail, t(20), None, 3, 5));
        assert_eq!(c.status, CheckStatus::Failing);
        assert_eq!(c.streak_started, t(16));
        assert!(c.is_fresh(t(26), TimeDelta::seconds(6)));
        assert!(!c.is_fresh(t(27), TimeDelta::seconds(6)));
    }
}
