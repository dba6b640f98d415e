//! The retry schedule of a failed record change: capped exponential backoff with deterministic
//! jitter, decided here so that stories over virtual time cover it.
//!
//! A change that fails is tried again after `retry_initial` (1 s), doubling per consecutive
//! failure of the same target up to `retry_max` (5 min); each wait is drawn between half and the
//! whole of that step ("equal jitter") from a seed kept in the state, so the same inputs give the
//! same schedule. A refusal a retry cannot fix (unmarked or missing record, credentials, an
//! invalid request, content changed outside sitewarden) waits `retry_max` at once: it is alerted
//! with the fix and tried again only on that slow schedule or on new evidence (the record's
//! content or marker changed). A provider's `Retry-After` is a floor, and once a change has been
//! failing for a minute it is tried at most once a minute. Conditions of the whole
//! provider account (credentials, budget, rate limit) hold back every target of the name, not
//! only the one that failed.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::DnsName;

use super::input::FailureClass;
use crate::config::Policy;

/// A failed change and when the name may be tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// The target whose change failed.
    pub target: DnsName,
    /// Why it failed, the latest time.
    pub class: FailureClass,
    /// The provider's error text, the latest time.
    pub error: String,
    /// Consecutive failures of this target.
    pub attempts: u32,
    /// When the first of them happened.
    pub since: DateTime<Utc>,
    /// No new attempt before this time (unless new evidence arrives).
    pub not_before: DateTime<Utc>,
}

impl Retry {
    /// Whether this retry holds back a change to `target` at `now`.
    pub fn holds(&self, target: &str, now: DateTime<Utc>) -> bool {
        now < self.not_before && (self.target == target || self.class.provider_wide())
    }
}

/// splitmix64: a tiny, well-mixed deterministic generator; advances `seed`.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The wait before attempt `attempts + 1`, after `attempts` consecutive failures of `class`.
pub fn wait(policy: &Policy, class: FailureClass, attempts: u32, seed: &mut u64) -> TimeDelta {
    let max = policy.retry_max.as_millis().min(u128::from(u64::MAX)) as u64;
    let step = if class.needs_human() {
        max
    } else {
        let initial = policy.retry_initial.as_millis().min(u128::from(u64::MAX)) as u64;
        let doublings = attempts.saturating_sub(1).min(32);
        initial.saturating_mul(1u64 << doublings).min(max)
    };
    let half = step / 2;
    let jittered = half + next(seed) % (step - half + 1);
    let floor = match class {
        FailureClass::RateLimited {
            retry_after_ms: Some(ms),
        } => ms,
        // Without a Retry-After, a rate limit is waited out for a full minute at least
        // (Cloudflare's block lasts up to five).
        FailureClass::RateLimited {
            retry_after_ms: None,
        } => 60_000.min(max),
        _ => 0,
    };
    TimeDelta::milliseconds(i64::try_from(jittered.max(floor)).unwrap_or(i64::MAX))
}

/// The retry after one more failure of a change to `target` at `now`.
pub fn after_failure(
    policy: &Policy,
    previous: Option<&Retry>,
    target: &DnsName,
    class: FailureClass,
    error: &str,
    now: DateTime<Utc>,
    seed: &mut u64,
) -> Retry {
    let (attempts, since) = match previous {
        Some(r) if &r.target == target => (r.attempts.saturating_add(1), r.since),
        _ => (1, now),
    };
    let mut step = wait(policy, class, attempts, seed);
    // After the first minute of failing, at most one attempt a minute.
    let minute =
        TimeDelta::seconds(60).min(TimeDelta::from_std(policy.retry_max).unwrap_or(TimeDelta::MAX));
    if now - since >= TimeDelta::seconds(60) {
        step = step.max(minute);
    }
    let not_before = now
        .checked_add_signed(step)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    Retry {
        target: target.clone(),
        class,
        error: error.to_owned(),
        attempts,
        since,
        not_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ControllerConfig;

    fn policy() -> Policy {
        let text = r#"
[[sites]]
name = "site1"
servers = ["cas1"]
[[agents]]
name = "a"
site = "site1"
[[agents]]
name = "b"
site = "site1"
"#;
        match ControllerConfig::from_toml("t.toml", text) {
            Ok(c) => c.policy,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn transient_failures_back_off_from_one_second_doubling_to_five_minutes() {
        let p = policy();
        let mut seed = 7;
        let waits: Vec<i64> = (1..=12)
            .map(|n| wait(&p, FailureClass::Transient, n, &mut seed).num_milliseconds())
            .collect();
        for (i, w) in waits.iter().enumerate() {
            let step = (1000i64 << i.min(30)).min(300_000);
            assert!(*w >= step / 2 && *w <= step, "attempt {}: {w} ms", i + 1);
        }
        assert!(
            waits[11] >= 150_000,
            "capped at 5 min with jitter: {waits:?}"
        );
    }

    #[test]
    fn refusals_that_need_a_human_wait_the_slow_schedule_at_once() {
        let p = policy();
        let mut seed = 1;
        for class in [
            FailureClass::Unmarked,
            FailureClass::Missing,
            FailureClass::Auth,
        ] {
            let w = wait(&p, class, 1, &mut seed);
            assert!(w >= TimeDelta::seconds(150), "{class:?}: {w}");
        }
    }

    #[test]
    fn a_retry_after_is_a_floor_and_a_rate_limit_without_one_waits_a_minute() {
        let p = policy();
        let mut seed = 3;
        let with = FailureClass::RateLimited {
            retry_after_ms: Some(90_000),
        };
        assert!(wait(&p, with, 1, &mut seed) >= TimeDelta::seconds(90));
        let without = FailureClass::RateLimited {
            retry_after_ms: None,
        };
        assert!(wait(&p, without, 1, &mut seed) >= TimeDelta::seconds(60));
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let p = policy();
        let (mut a, mut b) = (42, 42);
        for n in 1..10 {
            assert_eq!(
                wait(&p, FailureClass::Transient, n, &mut a),
                wait(&p, FailureClass::Transient, n, &mut b)
            );
        }
    }
}
