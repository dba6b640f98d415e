//! The emulated compare-and-set every provider shares: read, [`decide`], write, read back.
//!
//! A provider implements [`RecordStore`] (one read, one write, no policy) and gets the whole
//! apply procedure from [`apply`]: the read is retried like any idempotent call; the write is
//! made once per cycle. When a write fails softly (rate limited, 5xx, timeout, a connection reset
//! after the server may already have applied it), the next step is always a read, never a second
//! write: if the record now shows our target and marker, the change is `Applied`; otherwise the
//! cycle decides again from what it read (a newer leader may have written meanwhile). A happy
//! change costs three calls: read, write, read back.

use std::future::Future;

use tokio::time::Instant;

use super::budget::Budget;
use super::decide::{Decision, Patch, decide};
use super::{ApplyOutcome, Change, ProviderError, RecordState, Refusal};

/// Calls a change needs when nothing goes wrong: read, write, read back.
pub const CALLS_PER_CHANGE: u32 = 3;

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
                let after = read(store, budget, &change.name).await?;
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
