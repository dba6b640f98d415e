//! Pacing: how long to wait before trying again, and how many tries a rate allows now. One
//! exponential backoff and one token bucket for every retry loop and client-side rate limit in
//! the agent and the controller (DNS provider calls, chat-ops posts, edge webhooks, the audit
//! publisher, NATS reconnects, the edge follower), so they all double, cap and jitter the same
//! way and are tested once.
//!
//! Time is tokio's: tests pause and advance it.

use std::time::Duration;

use tokio::time::Instant;

/// A doubling backoff: `base` before the first retry, twice that before the next, never more
/// than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub base: Duration,
    /// The longest single wait.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `base` doubling up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The step before retry `attempt` (1 = the wait after the first failure): `base` ×
    /// 2^(attempt − 1), at most `max`. Attempt 0 counts as 1.
    pub fn step(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// "Full jitter": a uniform wait in `[0, step]`, so many clients that failed together do
    /// not retry together.
    pub fn full_jitter(&self, attempt: u32) -> Duration {
        jitter(Duration::ZERO, self.step(attempt))
    }

    /// "Equal jitter": half the step fixed, half random, for waits that must not be short.
    pub fn equal_jitter(&self, attempt: u32) -> Duration {
        let step = self.step(attempt);
        jitter(step / 2, step)
    }
}

/// A uniform random duration in `[low, high]` (millisecond steps; `low` when `high <= low`).
pub fn jitter(low: Duration, high: Duration) -> Duration {
    let low_ms = u64::try_from(low.as_millis()).unwrap_or(u64::MAX);
    let high_ms = u64::try_from(high.as_millis()).unwrap_or(u64::MAX);
    if high_ms <= low_ms {
        return low;
    }
    Duration::from_millis(rand::random_range(low_ms..=high_ms))
}

/// A token bucket: `capacity` tokens, refilled evenly over `per`; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per: Duration,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens (at least 1) refilled over `per`, as of `now`.
    pub fn new(capacity: u32, per: Duration, now: Instant) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self {
            capacity,
            tokens: capacity,
            per,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now.max(self.last);
        if self.per.is_zero() {
            self.tokens = self.capacity;
        } else {
            let added = elapsed.as_secs_f64() * self.capacity / self.per.as_secs_f64();
            self.tokens = (self.tokens + added).min(self.capacity);
        }
    }

    /// Whole tokens available at `now` (a fraction of a token is not a call).
    pub fn available(&mut self, now: Instant) -> u32 {
        self.refill(now);
        // Truncation intended; tokens never exceed the u32 capacity.
        self.tokens.floor() as u32
    }

    /// Takes a token at `now`, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.per.is_zero() {
            return Ok(());
        }
        let per_token = self.per.as_secs_f64() / self.capacity;
        Err(Duration::from_secs_f64(per_token * (1.0 - self.tokens)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_and_stops_at_max() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let steps: Vec<u64> = (0..=9).map(|n| b.step(n).as_millis() as u64).collect();
        assert_eq!(
            steps,
            [100, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
        assert_eq!(b.step(u32::MAX), Duration::from_secs(5), "no overflow");
        for n in 1..12 {
            let full = b.full_jitter(n);
            assert!(full <= b.step(n), "{full:?}");
            let equal = b.equal_jitter(n);
            assert!(equal >= b.step(n) / 2 && equal <= b.step(n), "{equal:?}");
        }
    }

    #[test]
    fn a_bucket_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, Duration::from_secs(3), t0);
        assert_eq!(b.available(t0), 3);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert_eq!(b.take(t0).unwrap_err(), Duration::from_secs(1));
        assert!(b.take(t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(1)).is_err());
        assert_eq!(
            b.available(t0 + Duration::from_secs(60)),
            3,
            "never above capacity"
        );
    }
}
