//! The rate budget and retry policy every provider call goes through.
//!
//! Cloudflare allows 1,200 API requests per 5 minutes per user; going over blocks *every* call
//! for 5 minutes, which in a failover is the worst possible moment. So calls first take a token
//! from a client-side token bucket sized far below that (default 300 per 5 minutes): when the
//! bucket is empty the call is not made and fails with [`ProviderError::Budget`], and a flapping
//! world can never lock us out.
//!
//! Rate limits, 5xx and timeouts are soft: retried up to `max_attempts` times within `deadline`,
//! waiting an exponential backoff with full jitter (AWS's "full jitter": a uniform random wait
//! between 0 and `base × 2^attempt`, capped at `max_delay`). Auth failures and validation errors
//! are never retried. Time is `tokio::time`, so tests can pause it. Counters ([`StatsSnapshot`])
//! feed the metrics layer.
//!
//! A rate limit that says how long it lasts (`RateLimited { retry_after: Some(d) }`) is a
//! *block*: the provider remembers it, and every call until it ends fails at once with
//! `RateLimited { retry_after: Some(time left) }` without reaching the network or spending a
//! token — hammering a blocked API only prolongs the block (Cloudflare blocks every call for up
//! to 5 minutes). A retry never starts before the block ends; when the block outlasts the
//! longest wait the policy allows (`max_delay`, or the call's `deadline`), the call gives up at
//! once and returns the error, whose `retry_after` tells the engine when to try again. A rate
//! limit without a duration backs off by the schedule, with a floor of half the step so that
//! rate-limited retries are never immediate.

use sitewarden_shared::pacing::{Backoff, TokenBucket};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::ProviderError;

/// How many API requests may be made per period, client-side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateBudget {
    /// Requests per period (the bucket's size).
    pub requests: u32,
    /// The period over which `requests` refill.
    pub per: Duration,
}

impl Default for RateBudget {
    /// 300 per 5 minutes: a quarter of Cloudflare's 1,200.
    fn default() -> Self {
        Self {
            requests: 300,
            per: Duration::from_secs(300),
        }
    }
}

/// How soft failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The first backoff step; doubled each attempt.
    pub base: Duration,
    /// The longest single wait.
    pub max_delay: Duration,
    /// No retry starts a wait that would end after this much time since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1 = the wait after the first failure). For a
    /// rate limit with a `retry_after`, never shorter than it.
    pub fn delay(&self, attempt: u32, error: &ProviderError) -> Duration {
        let backoff = Backoff::new(self.base, self.max_delay);
        match error {
            ProviderError::RateLimited {
                retry_after: Some(after),
            } => (*after).max(backoff.full_jitter(attempt)),
            // No visible Retry-After: half the step fixed, half random ("equal jitter").
            ProviderError::RateLimited { retry_after: None } => backoff.equal_jitter(attempt),
            _ => backoff.full_jitter(attempt),
        }
    }
}

/// Counters for the metrics layer.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    writes: AtomicU64,
    retries: AtomicU64,
    auth_errors: AtomicU64,
    rate_limited: AtomicU64,
    transient_errors: AtomicU64,
    rejected: AtomicU64,
    budget_exhausted: AtomicU64,
}

/// A copy of a provider's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// API calls made (each attempt counts).
    pub calls: u64,
    /// Of those, writes.
    pub writes: u64,
    /// Retries after a soft failure.
    pub retries: u64,
    /// 401/403 answers.
    pub auth_errors: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// 5xx, timeouts, connection failures.
    pub transient_errors: u64,
    /// 4xx validation errors.
    pub rejected: u64,
    /// Calls not made because the client-side budget was empty.
    pub budget_exhausted: u64,
    /// Whole tokens left in the client-side budget now (`u32::MAX` when unlimited).
    pub budget_left: u32,
}

impl StatsSnapshot {
    /// What was spent between `earlier` and this snapshot (counters only; `budget_left` is
    /// this snapshot's).
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.saturating_sub(earlier.calls),
            writes: self.writes.saturating_sub(earlier.writes),
            retries: self.retries.saturating_sub(earlier.retries),
            auth_errors: self.auth_errors.saturating_sub(earlier.auth_errors),
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
            transient_errors: self
                .transient_errors
                .saturating_sub(earlier.transient_errors),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            budget_exhausted: self
                .budget_exhausted
                .saturating_sub(earlier.budget_exhausted),
            budget_left: self.budget_left,
        }
    }
}

/// The budget, retry policy and counters one provider shares across its calls.
#[derive(Debug)]
pub struct Budget {
    /// `None` = unlimited (the in-memory provider).
    bucket: Option<Mutex<TokenBucket>>,
    policy: RetryPolicy,
    counters: Counters,
    /// When the provider's last rate-limit block ends: no call goes out before then.
    blocked_until: Mutex<Option<Instant>>,
}

impl Budget {
    /// A budget of `rate`, full at start, with `policy` for retries.
    pub fn new(rate: RateBudget, policy: RetryPolicy) -> Self {
        Self::build(Some(rate), policy)
    }

    /// No rate limit (the in-memory provider); retries still follow `policy`.
    pub fn unlimited(policy: RetryPolicy) -> Self {
        Self::build(None, policy)
    }

    fn build(rate: Option<RateBudget>, policy: RetryPolicy) -> Self {
        Self {
            bucket: rate.map(|r| Mutex::new(TokenBucket::new(r.requests, r.per, Instant::now()))),
            policy,
            counters: Counters::default(),
            blocked_until: Mutex::new(None),
        }
    }

    /// How much longer the provider's rate-limit block lasts, if one is in force.
    pub fn blocked_for(&self) -> Option<Duration> {
        let until = (*lock(&self.blocked_until))?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Remembers a rate-limit block of `d` from now (a shorter one never shortens a longer one).
    fn block_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut blocked = lock(&self.blocked_until);
        if blocked.is_none_or(|b| b < until) {
            *blocked = Some(until);
        }
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Whole tokens available now.
    pub fn available(&self) -> u32 {
        match &self.bucket {
            None => u32::MAX,
            Some(bucket) => lock(bucket).available(Instant::now()),
        }
    }

    /// Fails with [`ProviderError::Budget`] unless `n` calls could be made now (takes nothing).
    pub fn ensure(&self, n: u32) -> Result<(), ProviderError> {
        if self.available() >= n {
            Ok(())
        } else {
            self.counters
                .budget_exhausted
                .fetch_add(1, Ordering::Relaxed);
            Err(ProviderError::Budget)
        }
    }

    /// Takes one token, or fails with [`ProviderError::Budget`].
    fn take(&self) -> Result<(), ProviderError> {
        let Some(bucket) = &self.bucket else {
            return Ok(());
        };
        let taken = lock(bucket).take(Instant::now());
        taken.map_err(|_| {
            self.counters
                .budget_exhausted
                .fetch_add(1, Ordering::Relaxed);
            ProviderError::Budget
        })
    }

    /// Makes one API call: takes a token, runs `op` once, counts the outcome. No retry.
    ///
    /// While a rate-limit block is in force, `op` is not run (no network call, no token) and
    /// the call fails with `RateLimited { retry_after: Some(time left) }`. An answer that is
    /// `RateLimited { retry_after: Some(d) }` starts such a block.
    pub async fn once<T, Fut>(&self, is_write: bool, op: Fut) -> Result<T, ProviderError>
    where
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        if let Some(left) = self.blocked_for() {
            tracing::debug!(
                ?left,
                "DNS provider call not made: the provider's rate limit is still in force"
            );
            return Err(ProviderError::RateLimited {
                retry_after: Some(left),
            });
        }
        self.take()?;
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if is_write {
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
        }
        let result = op.await;
        if let Err(e) = &result {
            self.count_error(e);
            if let ProviderError::RateLimited {
                retry_after: Some(d),
            } = e
            {
                self.block_for(*d);
            }
        }
        result
    }

    /// Makes an idempotent call (a read), retrying soft failures by the policy.
    pub async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(false, op()).await {
                Ok(v) => return Ok(v),
                Err(e) => self.back_off(started, attempt, e).await?,
            }
        }
    }

    /// After failed attempt number `attempt` of a call begun at `started`: waits and returns
    /// `Ok` when another attempt may be made, or returns the error when it may not.
    pub async fn back_off(
        &self,
        started: Instant,
        attempt: u32,
        error: ProviderError,
    ) -> Result<(), ProviderError> {
        if !error.is_retryable() || attempt >= self.policy.max_attempts {
            return Err(error);
        }
        // A block longer than any single wait the policy allows is not waited out in the call:
        // the error goes back at once, carrying when to try again.
        if let ProviderError::RateLimited {
            retry_after: Some(after),
        } = &error
            && *after > self.policy.max_delay
        {
            return Err(error);
        }
        let wait = self.policy.delay(attempt, &error);
        if started.elapsed() + wait > self.policy.deadline {
            return Err(error);
        }
        tracing::debug!(
            attempt,
            ?wait,
            "DNS provider call failed softly, retrying: {error}"
        );
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn count_error(&self, e: &ProviderError) {
        let c = match e {
            ProviderError::Auth(_) => &self.counters.auth_errors,
            ProviderError::RateLimited { .. } => &self.counters.rate_limited,
            ProviderError::Transient(_) => &self.counters.transient_errors,
            ProviderError::Rejected(_) => &self.counters.rejected,
            ProviderError::Budget => &self.counters.budget_exhausted,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            calls: get(&c.calls),
            writes: get(&c.writes),
            retries: get(&c.retries),
            auth_errors: get(&c.auth_errors),
            rate_limited: get(&c.rate_limited),
            transient_errors: get(&c.transient_errors),
            rejected: get(&c.rejected),
            budget_exhausted: get(&c.budget_exhausted),
            budget_left: self.available(),
        }
    }
}

/// Locks `m`. A poisoned lock only means another call panicked mid-update; the value is still
/// usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            deadline: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_empties_and_refills_over_its_period() {
        let b = Budget::new(
            RateBudget {
                requests: 3,
                per: Duration::from_secs(30),
            },
            policy(),
        );
        for _ in 0..3 {
            b.once(false, async { Ok(()) }).await.unwrap();
        }
        let err = b.once(false, async { Ok(()) }).await.unwrap_err();
        assert_eq!(err, ProviderError::Budget);
        assert_eq!(b.available(), 0);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.available(), 1);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(b.available(), 3, "never above capacity");
        let s = b.snapshot();
        assert_eq!((s.calls, s.budget_exhausted), (3, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn soft_failures_are_retried_with_growing_waits() {
        let b = Budget::unlimited(policy());
        let n = AtomicU32::new(0);
        let started = Instant::now();
        let v = b
            .retrying(|| async {
                match n.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(ProviderError::Transient("500".into())),
                    1 => Err(ProviderError::RateLimited { retry_after: None }),
                    _ => Ok(7),
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 7);
        // The second wait is a rate-limit wait: at least half of the 2 s step.
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert!(started.elapsed() <= Duration::from_secs(3));
        let s = b.snapshot();
        assert_eq!(
            (s.calls, s.retries, s.transient_errors, s.rate_limited),
            (3, 2, 1, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hard_failures_and_exhausted_attempts_stop() {
        let b = Budget::unlimited(policy());
        let n = AtomicU32::new(0);
        let err = b
            .retrying(|| async {
                n.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ProviderError::Auth("403".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Auth(_)));
        assert_eq!(n.load(Ordering::SeqCst), 1);

        let n = AtomicU32::new(0);
        let err = b
            .retrying(|| async {
                n.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ProviderError::Transient("timeout".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Transient(_)));
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_but_never_past_the_deadline() {
        let p = policy();
        let wait = p.delay(
            1,
            &ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(5)),
            },
        );
        assert!(wait >= Duration::from_secs(5));
        let b = Budget::unlimited(p);
        let started = Instant::now();
        let err = b
            .retrying(|| async {
                Err::<(), _>(ProviderError::RateLimited {
                    retry_after: Some(Duration::from_secs(300)),
                })
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::RateLimited { .. }));
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a 5-minute wait is not started"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_before_retry_after() {
        let b = Budget::unlimited(policy());
        let calls = Mutex::new(Vec::new());
        let started = Instant::now();
        let v = b
            .retrying(|| async {
                let mut c = lock(&calls);
                c.push(Instant::now());
                if c.len() == 1 {
                    Err(ProviderError::RateLimited {
                        retry_after: Some(Duration::from_secs(3)),
                    })
                } else {
                    Ok(1)
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 1);
        let calls = lock(&calls).clone();
        assert_eq!(calls.len(), 2);
        assert!(
            calls[1] - started >= Duration::from_secs(3),
            "{:?}",
            calls[1] - started
        );
        assert_eq!(b.blocked_for(), None, "the block is over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_longer_than_the_policy_waits_is_returned_at_once_and_remembered() {
        let b = Budget::unlimited(policy());
        let n = AtomicU32::new(0);
        let err = b
            .retrying(|| async {
                n.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ProviderError::RateLimited {
                    retry_after: Some(Duration::from_secs(20)),
                })
            })
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(20))
            }
        );
        assert_eq!(n.load(Ordering::SeqCst), 1);

        // Until the block ends, calls fail at once with the time left, and none is made.
        tokio::time::advance(Duration::from_secs(15)).await;
        let err = b
            .once(false, async {
                n.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(n.load(Ordering::SeqCst), 1, "no call during the block");
        let s = b.snapshot();
        assert_eq!((s.calls, s.rate_limited), (1, 1), "refusals are not calls");

        tokio::time::advance(Duration::from_secs(5)).await;
        b.once(false, async {
            n.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_block_never_shortens_a_longer_one() {
        let b = Budget::unlimited(policy());
        for secs in [30, 2] {
            let _ = b
                .once(false, async move {
                    Err::<(), _>(ProviderError::RateLimited {
                        retry_after: Some(Duration::from_secs(secs)),
                    })
                })
                .await;
            // The second call is refused locally, so only the first block counts.
        }
        assert_eq!(b.blocked_for(), Some(Duration::from_secs(30)));
        b.block_for(Duration::from_secs(2));
        assert_eq!(b.blocked_for(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn backoff_steps_are_capped() {
        let p = policy();
        for attempt in 1..40 {
            let d = p.delay(attempt, &ProviderError::Transient(String::new()));
            assert!(d <= p.max_delay, "{attempt}: {d:?}");
        }
    }
}
