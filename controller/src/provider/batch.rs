//! Many changes in a few API calls: the batched form of the emulated compare-and-set.
//!
//! A provider whose API can read many records in one call (a listing) and write many in one
//! all-or-nothing call (Cloudflare's batch endpoint, one Route 53 change batch, one RFC 2136
//! UPDATE carrying every name's prerequisites) implements [`BatchStore`] and gets
//! [`apply_many`]: one listing of every name, [`decide`] per name exactly as the one-name
//! [`cas::apply`](super::cas::apply) does, the writes in batches of at most
//! [`BatchStore::limit`] records, and one listing to verify. A mass failover of 10,000 names
//! costs a handful of calls instead of 30,000, and every guarantee of the one-name path holds
//! per name: the compare-and-set on the content read, the ownership marker with epoch and
//! generation, the fence checked right before each write, the read-back, and a lost answer
//! resolved by reading, never by a blind second write.
//!
//! A batch is all or nothing, so one bad name would refuse the whole batch. A batch rejected
//! as a whole (a 4xx naming no name, a 413, a limit lowered under us) is split into halves and
//! each half is sent on its own, down to single names: the bad name ends refused alone and every
//! other name is written — no name is ever lost, and a batch of `n` with one bad name costs about
//! `2·log2(n)` extra calls. A batch that fails softly (rate limited, 5xx, a timeout) is backed
//! off by the retry policy, then its names are read again and decided afresh before anything is
//! written again.

use std::collections::VecDeque;
use std::future::Future;

use tokio::time::Instant;

use super::budget::Budget;
use super::cas::READ_BACK_PAUSES;
use super::decide::{Decision, Patch, decide};
use super::{ApplyOutcome, Change, ProviderError, RecordState, Refusal};

/// A provider's many-record operations; policy lives in [`apply_many`].
pub trait BatchStore: Send + Sync {
    /// The most records one write may carry (Cloudflare: 200 on Free plans, 3,500 on paid;
    /// Route 53: 1,000 changes; RFC 2136: what fits one message).
    fn limit(&self) -> usize;

    /// The fewest API calls one listing of `names` takes (pages), for the budget check before
    /// a run starts: one by default.
    fn listing_calls(&self, names: usize) -> u32 {
        let _ = names;
        1
    }

    /// Reads the CNAME records of `names`, one state per name in the order asked (content
    /// `None` for a name without one), in as few API calls as the API allows. Spends one token
    /// of `budget` per call and retries soft failures itself.
    fn fetch_many(
        &self,
        budget: &Budget,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<RecordState>, ProviderError>> + Send;

    /// Writes every `(record as read, patch)` in one all-or-nothing API call. The caller spends
    /// the token. An answer that rejects the call as a whole (too large, one bad record) must be
    /// [`ProviderError::Rejected`], so the caller splits the batch.
    fn write_many(
        &self,
        writes: &[(RecordState, Patch)],
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// One name's outcome, as [`apply_many`] returns it, in the order of the changes.
pub type Outcomes = Vec<Result<ApplyOutcome, ProviderError>>;

/// A write waiting to go out: the change's index, the record it was decided on, the patch.
type Write = (usize, RecordState, Patch);

/// Applies every change in `changes` through `store`; one outcome per change, in order.
pub async fn apply_many<S: BatchStore>(store: &S, budget: &Budget, changes: &[Change]) -> Outcomes {
    let n = changes.len();
    if n == 0 {
        return Vec::new();
    }
    let limit = store.limit().max(1);
    // One listing, the writes, one listing to verify: do not start what the budget cannot end.
    let writes_needed = u32::try_from(n.div_ceil(limit)).unwrap_or(u32::MAX);
    let listings = store.listing_calls(n).max(1).saturating_mul(2);
    if let Err(e) = budget.ensure(writes_needed.saturating_add(listings)) {
        return vec![Err(e); n];
    }
    let names: Vec<String> = changes.iter().map(|c| c.name.clone()).collect();
    let before = match store.fetch_many(budget, &names).await {
        Ok(states) if states.len() == n => states,
        Ok(states) => {
            let e = ProviderError::Transient(format!(
                "the provider listed {} records for {n} names",
                states.len()
            ));
            return vec![Err(e); n];
        }
        Err(e) => return vec![Err(e); n],
    };
    let mut out: Vec<Option<Result<ApplyOutcome, ProviderError>>> = vec![None; n];
    let mut pending = Vec::new();
    for (i, (change, current)) in changes.iter().zip(&before).enumerate() {
        match decide(change, current) {
            Decision::InPlace => {
                out[i] = Some(Ok(ApplyOutcome::AlreadyInPlace {
                    state: current.clone(),
                }));
            }
            Decision::Refuse(r) => out[i] = Some(Ok(ApplyOutcome::Refused(r))),
            Decision::Write(patch) => pending.push((i, current.clone(), patch)),
        }
    }
    let written = write_all(store, budget, changes, &before, pending, limit, &mut out).await;
    verify(store, budget, changes, &before, written, &mut out).await;
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(ProviderError::Transient(
                    "the batch ended without an outcome for this name".into(),
                ))
            })
        })
        .collect()
}

/// Sends `pending` in batches of at most `limit`, splitting a rejected batch into halves and
/// re-deciding a softly failed one from a fresh read. Settles every name it does not write in
/// `out`; returns the indices written (to be verified).
async fn write_all<S: BatchStore>(
    store: &S,
    budget: &Budget,
    changes: &[Change],
    before: &[RecordState],
    pending: Vec<Write>,
    limit: usize,
    out: &mut [Option<Result<ApplyOutcome, ProviderError>>],
) -> Vec<usize> {
    let mut queue = batches(pending, limit);
    let mut written = Vec::new();
    let started = Instant::now();
    let mut soft_failures = 0;
    while let Some(batch) = queue.pop_front() {
        // The lease may have lapsed while we read or waited: check right before each write.
        if super::fenced() {
            for (i, ..) in batch {
                out[i] = Some(Ok(ApplyOutcome::Refused(Refusal::LeaseLost)));
            }
            continue;
        }
        let writes: Vec<(RecordState, Patch)> = batch
            .iter()
            .map(|(_, s, p)| (s.clone(), p.clone()))
            .collect();
        match budget.once(true, store.write_many(&writes)).await {
            Ok(()) => written.extend(batch.iter().map(|(i, ..)| *i)),
            Err(ProviderError::Rejected(why)) if batch.len() > 1 => {
                tracing::info!(
                    records = batch.len(),
                    "the DNS provider rejected a batch as a whole ({why}); sending each half on its own"
                );
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                queue.push_front(second);
                queue.push_front(first);
            }
            Err(e) if e.is_retryable() => {
                soft_failures += 1;
                tracing::warn!(
                    records = batch.len(),
                    "DNS batch write failed, reading back before any retry: {e}"
                );
                let retry = budget.back_off(started, soft_failures, e.clone()).await;
                let again = reread(store, budget, changes, before, &batch, retry.err(), out).await;
                if !again.is_empty() {
                    queue.push_front(again);
                }
            }
            Err(e) => {
                for (i, ..) in batch {
                    out[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    written
}

/// `pending` cut into batches of at most `limit` writes, in order, each allocated to its own
/// length: cutting one vector with `split_off` would leave every batch holding the capacity of
/// all the writes after it (25 times the writes themselves at 10,000 names in batches of 200,
/// about 48 MB held until the last batch is sent).
fn batches(pending: Vec<Write>, limit: usize) -> VecDeque<Vec<Write>> {
    let mut rest = pending.into_iter();
    std::iter::from_fn(|| {
        let batch: Vec<Write> = rest.by_ref().take(limit.max(1)).collect();
        (!batch.is_empty()).then_some(batch)
    })
    .collect()
}

/// After a soft failure of `batch`: reads its names and decides each again. A name whose write
/// landed after all is applied, one refused now is refused; the rest are returned to be written
/// again — unless `gave_up` holds the error that ends the attempts, which they then fail with.
async fn reread<S: BatchStore>(
    store: &S,
    budget: &Budget,
    changes: &[Change],
    before: &[RecordState],
    batch: &[Write],
    gave_up: Option<ProviderError>,
    out: &mut [Option<Result<ApplyOutcome, ProviderError>>],
) -> Vec<Write> {
    let names: Vec<String> = batch
        .iter()
        .map(|(i, ..)| changes[*i].name.clone())
        .collect();
    let states = match store.fetch_many(budget, &names).await {
        Ok(states) if states.len() == batch.len() => states,
        Ok(_) | Err(_) => {
            let e = gave_up.unwrap_or_else(|| {
                ProviderError::Transient("the batch write failed and reading back failed".into())
            });
            for (i, ..) in batch {
                out[*i] = Some(Err(e.clone()));
            }
            return Vec::new();
        }
    };
    let mut again = Vec::new();
    for ((i, ..), now) in batch.iter().zip(states) {
        match decide(&changes[*i], &now) {
            // A write whose answer was lost did land: the read shows it.
            Decision::InPlace => {
                out[*i] = Some(Ok(ApplyOutcome::Applied {
                    before: before[*i].clone(),
                    after: now,
                }));
            }
            Decision::Refuse(r) => out[*i] = Some(Ok(ApplyOutcome::Refused(r))),
            Decision::Write(patch) => match &gave_up {
                Some(e) => out[*i] = Some(Err(e.clone())),
                None => again.push((*i, now, patch)),
            },
        }
    }
    again
}

/// Reads back every written name in one listing (again, briefly, for those whose read-back
/// trails the write) and settles each: applied, refused (someone wrote over it meanwhile) or
/// failed (the provider acknowledged a write it does not show).
async fn verify<S: BatchStore>(
    store: &S,
    budget: &Budget,
    changes: &[Change],
    before: &[RecordState],
    mut written: Vec<usize>,
    out: &mut [Option<Result<ApplyOutcome, ProviderError>>],
) {
    let mut pauses = READ_BACK_PAUSES.iter();
    while !written.is_empty() {
        let names: Vec<String> = written.iter().map(|i| changes[*i].name.clone()).collect();
        let states = match store.fetch_many(budget, &names).await {
            Ok(states) if states.len() == written.len() => states,
            Ok(_) | Err(_) => {
                for i in written {
                    out[i] = Some(Err(ProviderError::Transient(format!(
                        "the write to {} was acknowledged but reading it back failed",
                        changes[i].name
                    ))));
                }
                return;
            }
        };
        let pause = pauses.next();
        let mut trailing = Vec::new();
        for (i, after) in written.into_iter().zip(states) {
            match decide(&changes[i], &after) {
                Decision::InPlace => {
                    out[i] = Some(Ok(ApplyOutcome::Applied {
                        before: before[i].clone(),
                        after,
                    }));
                }
                Decision::Refuse(r) => out[i] = Some(Ok(ApplyOutcome::Refused(r))),
                Decision::Write(_) if pause.is_some() => trailing.push(i),
                Decision::Write(_) => {
                    out[i] = Some(Err(ProviderError::Transient(format!(
                        "the write to {} succeeded but reading back shows {:?}",
                        changes[i].name, after.content
                    ))));
                }
            }
        }
        if let Some(pause) = pause.filter(|_| !trailing.is_empty()) {
            tracing::debug!(
                records = trailing.len(),
                "read-back does not show the batch yet; reading again"
            );
            tokio::time::sleep(*pause).await;
        }
        written = trailing;
    }
}

/// What the batch tests of every provider share: `n` names moving from site1 to site2.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::Change;

    /// The `i`th name.
    pub(crate) fn name(i: usize) -> String {
        format!("svc{i}.example.com")
    }

    /// `n` changes from site1 (epoch 1's generation 1) to site2 under epoch 2, generation 2.
    pub(crate) fn to_site2(n: usize) -> Vec<Change> {
        (0..n)
            .map(|i| Change {
                name: name(i),
                target: "site2.example.com".into(),
                ttl: None,
                expected: Some("site1.example.com".into()),
                epoch: 2,
                generation: 2,
                adopt_unmarked: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{name, to_site2};
    use super::*;
    use crate::provider::budget::RetryPolicy;
    use crate::provider::{DnsProvider, FENCE, Fence, MemoryProvider};

    /// `n` records on site1, each carrying epoch 1's marker for generation 1.
    fn seeded(n: usize, limit: usize) -> MemoryProvider {
        let p = MemoryProvider::new(RetryPolicy::default()).with_batches(limit);
        for i in 0..n {
            p.insert(
                &name(i),
                "site1.example.com",
                Some("sitewarden epoch=1 gen=1"),
            );
        }
        p
    }

    #[test]
    fn writes_are_cut_into_batches_each_no_larger_than_it_needs() {
        let write = |i: usize| {
            (
                i,
                RecordState::default(),
                Patch {
                    content: "site2.example.com".into(),
                    comment: "sitewarden epoch=1 gen=2".into(),
                    ttl: None,
                },
            )
        };
        let queue = batches((0..1_001).map(write).collect(), 200);
        let sizes: Vec<usize> = queue.iter().map(Vec::len).collect();
        assert_eq!(sizes, [200, 200, 200, 200, 200, 1]);
        assert!(
            queue.iter().all(|b| b.capacity() == b.len()),
            "no batch keeps the rest's room"
        );
        let order: Vec<usize> = queue.iter().flatten().map(|(i, ..)| *i).collect();
        assert_eq!(order, (0..1_001).collect::<Vec<_>>());
        assert!(batches(Vec::new(), 200).is_empty());
    }

    fn applied(outcomes: &Outcomes) -> usize {
        outcomes
            .iter()
            .filter(|o| matches!(o, Ok(ApplyOutcome::Applied { .. })))
            .count()
    }

    #[tokio::test]
    async fn a_thousand_names_cost_a_listing_five_batches_and_a_listing() {
        let p = seeded(1000, 200);
        let outcomes = p.apply_many(&to_site2(1000)).await;
        assert_eq!(applied(&outcomes), 1000);
        assert_eq!(p.stats().calls, 7, "list, 5 batches of 200, list");
        assert_eq!(p.batch_writes(), 5);
        let r = p.record(&name(999)).unwrap();
        assert_eq!(r.content.as_deref(), Some("site2.example.com"));
        assert_eq!(r.marker.unwrap().to_string(), "sitewarden epoch=2 gen=2");
    }

    #[tokio::test]
    async fn one_bad_name_is_isolated_by_halves_and_every_other_name_is_written() {
        let p = seeded(64, 64);
        p.reject_writes_to(&name(37));
        let outcomes = p.apply_many(&to_site2(64)).await;
        assert_eq!(applied(&outcomes), 63);
        assert!(
            matches!(&outcomes[37], Err(ProviderError::Rejected(why)) if why.contains("svc37")),
            "{:?}",
            outcomes[37]
        );
        // 64 → 32+32 → 16+16 → 8+8 → 4+4 → 2+2 → 1+1: one rejected batch per level.
        assert_eq!(p.batch_writes(), 6, "the good half at each of six levels");
        assert_eq!(p.stats().calls, 1 + 13 + 1);
    }

    #[tokio::test]
    async fn a_lowered_limit_is_met_by_splitting_and_nothing_is_lost() {
        let p = seeded(100, 100);
        p.accept_at_most(Some(30));
        let outcomes = p.apply_many(&to_site2(100)).await;
        assert_eq!(applied(&outcomes), 100);
        // 100 → 50 → 25+25, twice: three rejected, four written.
        assert_eq!(p.batch_writes(), 4);
    }

    #[tokio::test]
    async fn a_human_edit_is_refused_as_drift_and_the_rest_moves() {
        let p = seeded(10, 200);
        p.edit(
            &name(3),
            "elsewhere.example.com",
            Some("sitewarden epoch=1 gen=1"),
        );
        let outcomes = p.apply_many(&to_site2(10)).await;
        assert_eq!(applied(&outcomes), 9);
        assert!(matches!(
            &outcomes[3],
            Ok(ApplyOutcome::Refused(Refusal::Drift { .. }))
        ));
        let r = p.record(&name(3)).unwrap();
        assert_eq!(r.content.as_deref(), Some("elsewhere.example.com"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_is_resolved_by_reading_never_by_writing_twice() {
        let p = seeded(50, 200);
        p.lose_next_write();
        let outcomes = p.apply_many(&to_site2(50)).await;
        assert_eq!(applied(&outcomes), 50);
        assert_eq!(
            p.batch_writes(),
            1,
            "the batch landed once; the read showed it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_listing_is_waited_out_and_the_batch_goes_through() {
        let p = seeded(50, 200);
        p.fail_next(ProviderError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(2)),
        });
        let started = Instant::now();
        let outcomes = p.apply_many(&to_site2(50)).await;
        assert_eq!(applied(&outcomes), 50);
        assert_eq!(p.stats().rate_limited, 1);
        assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_fence_closed_before_the_write_writes_nothing() {
        let p = seeded(20, 200);
        let changes = to_site2(20);
        let outcomes = FENCE
            .scope(Fence::new(|| false), p.apply_many(&changes))
            .await;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(ApplyOutcome::Refused(Refusal::LeaseLost))))
        );
        assert_eq!(p.writes(), 0);
    }

    #[tokio::test]
    async fn a_newer_epoch_on_one_record_fences_that_name_only() {
        let p = seeded(5, 200);
        p.edit(
            &name(1),
            "site1.example.com",
            Some("sitewarden epoch=9 gen=1"),
        );
        let outcomes = p.apply_many(&to_site2(5)).await;
        assert_eq!(applied(&outcomes), 4);
        assert!(matches!(
            &outcomes[1],
            Ok(ApplyOutcome::Refused(Refusal::NewerEpoch { .. }))
        ));
    }

    #[tokio::test]
    async fn the_one_by_one_path_gives_the_same_outcomes_at_three_calls_a_name() {
        let p = seeded(10, 0);
        let outcomes = p.apply_many(&to_site2(10)).await;
        assert_eq!(applied(&outcomes), 10);
        assert_eq!(p.stats().calls, 30);
    }
}
