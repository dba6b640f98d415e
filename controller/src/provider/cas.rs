//! The emulated compare-and-set every provider shares: read, [`decide`], write, read back.
//!
//! A provider implements [`RecordStore`] (one read, one write, no policy) and gets the whole
//! apply procedure from [`apply`]: the read is retried like any idempotent call; the write is
//! made once per cycle. When a write fails softly (rate limited, 5xx, timeout, a connection reset
//! after the server may already have applied it), the next step is always a read, never a second
//! write: if the record now shows our target and marker, the change is `Applied`; otherwise the
//! cycle decides again from what it read (a newer leader may have written meanwhile). A happy
//! change costs three calls: read, write, read back.
//!
//! A read-back that still shows the old record right after a write the provider acknowledged
//! is read again ([`READ_BACK_PAUSES`]: up to three more reads over half a second) before the
//! change is called a failure: a replica or a cache behind the API may trail the write for a
//! moment, and reporting such a write as failed would make the trail say the opposite of what
//! happened.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::Budget;
use super::decide::{Decision, Patch, decide};
use super::{ApplyOutcome, Change, ProviderError, RecordState, Refusal};

/// Calls a change needs when nothing goes wrong: read, write, read back.
pub const CALLS_PER_CHANGE: u32 = 3;

/// Pauses before each further read when a read-back right after an acknowledged write does not
/// show it yet (half a second in all).
pub const READ_BACK_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(150),
    Duration::from_millis(250),
];

/// The two raw operations a provider offers; policy lives in [`apply`] and [`Budget`].
pub trait RecordStore: Send + Sync {
    /// Reads the CNAME record of `name` (one API call).
    fn fetch(&self, name: &str) -> impl Future<Output = Result<RecordState, ProviderError>> + Send;

    /// Writes `patch` over the record `current` (one API call).
    fn write(
        &self,
        current: &RecordState,
        patch: &Patch,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// Reads `name`, retrying soft failures.
pub async fn read<S: RecordStore>(
    store: &S,
    budget: &Budget,
    name: &str,
) -> Result<RecordState, ProviderError> {
    budget.retrying(|| store.fetch(name)).await
}

/// Applies `change` through `store` as a verified compare-and-set.
pub async fn apply<S: RecordStore>(
    store: &S,
    budget: &Budget,
    change: &Change,
) -> Result<ApplyOutcome, ProviderError> {
    // Do not start a change the budget cannot finish.
    budget.ensure(CALLS_PER_CHANGE)?;
    let before = read(store, budget, &change.name).await?;
    let started = Instant::now();
    let mut current = before.clone();
    let mut writes = 0;
    loop {
        let patch = match decide(change, &current) {
            Decision::InPlace if writes == 0 => {
                return Ok(ApplyOutcome::AlreadyInPlace { state: current });
            }
            // A write whose answer was lost did land: the read-back shows it.
            Decision::InPlace => {
                return Ok(ApplyOutcome::Applied {
                    before,
                    after: current,
                });
            }
            Decision::Refuse(r) => return Ok(ApplyOutcome::Refused(r)),
            Decision::Write(patch) => patch,
        };
        // The lease may have lapsed while we read (a frozen process): check right before writing.
        if super::fenced() {
            return Ok(ApplyOutcome::Refused(Refusal::LeaseLost));
        }
        writes += 1;
        match budget.once(true, store.write(&current, &patch)).await {
            Ok(()) => {
                let mut after = read(store, budget, &change.name).await?;
                for pause in READ_BACK_PAUSES {
                    if !matches!(decide(change, &after), Decision::Write(_)) {
                        break;
                    }
                    tracing::debug!(name = %change.name, "read-back does not show the write yet; reading again");
                    tokio::time::sleep(pause).await;
                    after = read(store, budget, &change.name).await?;
                }
                return match decide(change, &after) {
                    Decision::InPlace => Ok(ApplyOutcome::Applied { before, after }),
                    Decision::Refuse(r) => Ok(ApplyOutcome::Refused(r)),
                    Decision::Write(_) => Err(ProviderError::Transient(format!(
                        "the write to {} succeeded but reading back shows {:?}",
                        change.name, after.content
                    ))),
                };
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(name = %change.name, "DNS write failed, reading back before any retry: {e}");
                let retry = budget.back_off(started, writes, e.clone()).await;
                current = read(store, budget, &change.name).await?;
                if retry.is_err() {
                    // Out of attempts; the read-back still tells whether the lost write landed.
                    return match decide(change, &current) {
                        Decision::InPlace => Ok(ApplyOutcome::Applied {
                            before,
                            after: current,
                        }),
                        Decision::Refuse(r) => Ok(ApplyOutcome::Refused(r)),
                        Decision::Write(_) => Err(e),
                    };
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::provider::Marker;
    use crate::provider::budget::RetryPolicy;

    const NAME: &str = "mail.example.com";

    /// One record whose reads trail each write by `lag` reads (a replica catching up).
    struct Lagging {
        /// (what reads show, what is stored, reads left that show the old record).
        state: Mutex<(RecordState, RecordState, u32)>,
        /// Reads that trail each write.
        lag: u32,
    }

    impl Lagging {
        fn new(lag: u32) -> Self {
            let r = RecordState {
                name: NAME.into(),
                content: Some("mail-rr.example.com".into()),
                ttl: Some(60),
                marker: Some(Marker {
                    epoch: 1,
                    generation: 1,
                }),
                comment: Some("sitewarden epoch=1 gen=1".into()),
                provider_id: Some("1".into()),
                ..RecordState::default()
            };
            Self {
                state: Mutex::new((r.clone(), r, 0)),
                lag,
            }
        }
    }

    impl RecordStore for Lagging {
        async fn fetch(&self, _name: &str) -> Result<RecordState, ProviderError> {
            let mut s = self.state.lock().unwrap();
            if s.2 > 0 {
                s.2 -= 1;
            } else {
                s.0 = s.1.clone();
            }
            Ok(s.0.clone())
        }

        async fn write(&self, current: &RecordState, patch: &Patch) -> Result<(), ProviderError> {
            let mut s = self.state.lock().unwrap();
            s.1 = RecordState {
                content: Some(patch.content.clone()),
                comment: Some(patch.comment.clone()),
                marker: Marker::parse(&patch.comment),
                ..current.clone()
            };
            s.2 = self.lag;
            Ok(())
        }
    }

    fn to_site2() -> Change {
        Change {
            name: NAME.into(),
            target: "mail-site2.example.com".into(),
            ttl: None,
            expected: Some("mail-rr.example.com".into()),
            epoch: 2,
            generation: 2,
            adopt_unmarked: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_back_that_trails_the_write_is_read_again_and_the_change_is_applied() {
        let store = Lagging::new(2);
        let budget = Budget::unlimited(RetryPolicy::default());
        let started = Instant::now();
        let outcome = apply(&store, &budget, &to_site2()).await;
        match outcome {
            Ok(ApplyOutcome::Applied { after, .. }) => {
                assert_eq!(after.content.as_deref(), Some("mail-site2.example.com"));
            }
            other => panic!("expected Applied, got {other:?}"),
        }
        assert!(started.elapsed() <= Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_back_that_never_shows_the_write_is_a_failure_after_half_a_second() {
        let store = Lagging::new(100);
        let budget = Budget::unlimited(RetryPolicy::default());
        let started = Instant::now();
        let outcome = apply(&store, &budget, &to_site2()).await;
        match outcome {
            Err(ProviderError::Transient(why)) => assert!(why.contains("reading back"), "{why}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        let waited: Duration = READ_BACK_PAUSES.iter().sum();
        assert_eq!(started.elapsed(), waited);
    }
}
