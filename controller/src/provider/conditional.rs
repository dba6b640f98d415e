//! Batches on providers whose batch write is itself a compare-and-set: Route 53 (one change batch
//! whose DELETEs repeat every record exactly as read) and RFC 2136 (one UPDATE whose
//! prerequisites repeat them). [`batch::apply_many`] lists, decides, writes by halves and
//! verifies; this module adds the two things such a provider needs around it.
//!
//! First, each write must compare against the provider's raw record as read (Route 53's values
//! verbatim, the TXT RRset as the server holds it), which a [`RecordState`] does not carry. The
//! provider's [`ConditionalStore`] — one per batched apply — keeps the raw record of every name
//! its listings read in [`Reads`] and builds each write from it; a write whose state is not the
//! one last read fails softly, so the batch is read again before anything is sent.
//!
//! Second, a name the halving isolated (a batch of one the provider rejected) was refused either
//! because its comparison failed — someone changed the record or its marker between our listing
//! and our write — or because the write itself is invalid. As in the one-name path, reading
//! again tells which: a record that changed is settled by the usual rules
//! ([`after_failed_comparison`]: the refusal the new state calls for, or [`Refusal::Drift`];
//! never a second write over someone else's change); an unchanged one keeps the provider's
//! error. A name that cannot be managed at all (a Route 53 alias, a name outside the RFC 2136
//! zone) reads as "no record" inside the batch, so it is never written, and ends with the error
//! that says why.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::batch::{self, BatchStore, Outcomes};
use super::budget::Budget;
use super::decide::{Decision, decide};
use super::{
    ApplyOutcome, BatchFuture, Change, ONE_BY_ONE_IN_FLIGHT, ProviderError, ProviderFuture,
    RecordState, Refusal,
};

/// The raw records one batched apply read, by name: the latest read of each, or why the name
/// cannot be managed.
#[derive(Debug)]
pub struct Reads<H> {
    /// By lower-cased name without the trailing dot.
    by_name: Mutex<HashMap<String, Result<H, ProviderError>>>,
}

impl<H> Default for Reads<H> {
    fn default() -> Self {
        Self {
            by_name: Mutex::new(HashMap::new()),
        }
    }
}

impl<H: Clone> Reads<H> {
    fn key(name: &str) -> String {
        name.trim().trim_end_matches('.').to_ascii_lowercase()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Result<H, ProviderError>>> {
        self.by_name.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers what was just read for `name`.
    pub fn put(&self, name: &str, read: Result<H, ProviderError>) {
        self.lock().insert(Self::key(name), read);
    }

    /// The latest read of `name`, if it was read.
    pub fn get(&self, name: &str) -> Option<Result<H, ProviderError>> {
        self.lock().get(&Self::key(name)).cloned()
    }

    /// The raw record a write decided on `state` must compare against; `view` turns a raw
    /// record into the state the decision saw. Fails softly (the caller reads again) when the
    /// latest read of the name is not the one decided on.
    pub fn for_write(
        &self,
        state: &RecordState,
        view: impl Fn(&H) -> RecordState,
    ) -> Result<H, ProviderError> {
        match self.get(&state.name) {
            Some(Ok(held)) if view(&held) == *state => Ok(held),
            _ => Err(ProviderError::Transient(format!(
                "the record of {} last read is not the one the write was decided on; reading it \
                 again",
                state.name
            ))),
        }
    }
}

/// A [`BatchStore`] whose writes compare against raw records it keeps in [`Reads`].
pub trait ConditionalStore: BatchStore {
    /// The provider's raw record of one name: what its write repeats.
    type Held: Clone + PartialEq + Send;

    /// Every raw record this store's listings read.
    fn reads(&self) -> &Reads<Self::Held>;
}

/// What an isolated write refused by the provider's comparison comes to, given the record
/// `now` read after it changed: the refusal the new state calls for; nothing to do when it
/// already shows the change; otherwise drift — never a second write over someone else's change.
pub fn after_failed_comparison(change: &Change, now: RecordState) -> ApplyOutcome {
    match decide(change, &now) {
        Decision::Refuse(r) => ApplyOutcome::Refused(r),
        Decision::InPlace => ApplyOutcome::AlreadyInPlace { state: now },
        Decision::Write(_) => ApplyOutcome::Refused(Refusal::Drift { found: now }),
    }
}

/// Runs `call` on every item, [`ONE_BY_ONE_IN_FLIGHT`] at a time: one result per item, in
/// order. What a provider configured with a batch size of 1 does instead of batching.
pub fn one_by_one<'a, I: Sync, T: Send + 'a>(
    items: &'a [I],
    call: impl Fn(&'a I) -> ProviderFuture<'a, T> + Send + 'a,
) -> BatchFuture<'a, T> {
    use futures::StreamExt;
    Box::pin(
        futures::stream::iter(items)
            .map(call)
            .buffered(ONE_BY_ONE_IN_FLIGHT)
            .collect(),
    )
}

/// Reads many names through `store`: one result per name, in order; a name that cannot be
/// managed is its error.
pub async fn read_many<S: ConditionalStore>(
    store: &S,
    budget: &Budget,
    names: &[String],
) -> Vec<Result<RecordState, ProviderError>> {
    match store.fetch_many(budget, names).await {
        Ok(states) if states.len() == names.len() => states
            .into_iter()
            .zip(names)
            .map(|(state, name)| match store.reads().get(name) {
                Some(Err(e)) => Err(e),
                _ => Ok(state),
            })
            .collect(),
        Ok(states) => {
            let e = ProviderError::Transient(format!(
                "the provider read {} records for {} names",
                states.len(),
                names.len()
            ));
            vec![Err(e); names.len()]
        }
        Err(e) => vec![Err(e); names.len()],
    }
}

/// Applies `changes` through `store` with [`batch::apply_many`], then settles the names that
/// cannot be managed and those the provider refused alone (see the module documentation).
pub async fn apply_many<S: ConditionalStore>(
    store: &S,
    budget: &Budget,
    changes: &[Change],
) -> Outcomes {
    let mut out = batch::apply_many(store, budget, changes).await;
    for (outcome, change) in out.iter_mut().zip(changes) {
        if let (Ok(ApplyOutcome::Refused(Refusal::Missing)), Some(Err(e))) =
            (&*outcome, store.reads().get(&change.name))
        {
            *outcome = Err(e);
        }
    }
    settle_isolated(store, budget, changes, &mut out).await;
    out
}

/// Reads again every name the provider refused alone, and settles those whose record changed
/// since the write compared against it.
async fn settle_isolated<S: ConditionalStore>(
    store: &S,
    budget: &Budget,
    changes: &[Change],
    out: &mut Outcomes,
) {
    let isolated: Vec<(usize, S::Held)> = out
        .iter()
        .zip(changes)
        .enumerate()
        .filter_map(|(i, (outcome, change))| match outcome {
            Err(ProviderError::Rejected(_)) => match store.reads().get(&change.name) {
                Some(Ok(compared)) => Some((i, compared)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    if isolated.is_empty() {
        return;
    }
    let names: Vec<String> = isolated
        .iter()
        .map(|(i, _)| changes[*i].name.clone())
        .collect();
    let states = match store.fetch_many(budget, &names).await {
        Ok(states) if states.len() == names.len() => states,
        // The provider's own error says more than a failed read would.
        Ok(_) | Err(_) => return,
    };
    for ((i, compared), now) in isolated.into_iter().zip(states) {
        let change = &changes[i];
        match store.reads().get(&change.name) {
            // Unchanged: the write was refused for another reason, and its error stands.
            Some(Ok(held)) if held == compared => {}
            Some(Err(e)) => out[i] = Err(e),
            _ => {
                tracing::warn!(
                    name = %change.name,
                    "the DNS provider refused the write: the record changed since it was read"
                );
                out[i] = Ok(after_failed_comparison(change, now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::fixtures::{name, to_site2};
    use super::*;
    use crate::provider::Marker;
    use crate::provider::budget::RetryPolicy;
    use crate::provider::decide::Patch;

    /// A provider whose records are (target, epoch) pairs; a write compares each target with
    /// the one read and rejects the whole batch on any difference, as Route 53 and RFC 2136 do.
    #[derive(Default)]
    struct Strict {
        records: Mutex<HashMap<String, (String, u64)>>,
        /// Names the next listing shows changed to this target (an administrator, meanwhile).
        changes_after_read: Mutex<Vec<(String, String)>>,
        reads: Reads<(String, u64)>,
        batches: Mutex<Vec<usize>>,
    }

    fn view(name: &str, held: &(String, u64)) -> RecordState {
        let marker = Marker {
            epoch: held.1,
            generation: held.1,
        };
        RecordState {
            name: name.to_owned(),
            content: Some(held.0.clone()),
            ttl: Some(60),
            marker: Some(marker),
            comment: Some(marker.to_string()),
            ..RecordState::default()
        }
    }

    impl BatchStore for Strict {
        fn limit(&self) -> usize {
            8
        }

        async fn fetch_many(
            &self,
            _budget: &Budget,
            names: &[String],
        ) -> Result<Vec<RecordState>, ProviderError> {
            let mut states = Vec::new();
            for name in names {
                let held = self.records.lock().unwrap().get(name).cloned();
                let read = held.ok_or_else(|| {
                    ProviderError::Rejected(format!("{name} is an alias; not managed"))
                });
                states.push(match &read {
                    Ok(h) => view(name, h),
                    Err(_) => RecordState {
                        name: name.clone(),
                        ..RecordState::default()
                    },
                });
                self.reads.put(name, read);
            }
            let meanwhile = std::mem::take(&mut *self.changes_after_read.lock().unwrap());
            for (name, target) in meanwhile {
                if let Some(r) = self.records.lock().unwrap().get_mut(&name) {
                    r.0 = target;
                }
            }
            Ok(states)
        }

        async fn write_many(&self, writes: &[(RecordState, Patch)]) -> Result<(), ProviderError> {
            let mut records = self.records.lock().unwrap();
            for (state, _) in writes {
                let held = self.reads.for_write(state, |h| view(&state.name, h))?;
                if records.get(&state.name) != Some(&held) {
                    return Err(ProviderError::Rejected(format!(
                        "{} does not match; nothing written",
                        state.name
                    )));
                }
            }
            for (state, patch) in writes {
                let m = Marker::parse(&patch.comment).unwrap();
                records.insert(state.name.clone(), (patch.content.clone(), m.epoch));
            }
            self.batches.lock().unwrap().push(writes.len());
            Ok(())
        }
    }

    impl ConditionalStore for Strict {
        type Held = (String, u64);

        fn reads(&self) -> &Reads<(String, u64)> {
            &self.reads
        }
    }

    fn store(n: usize) -> Strict {
        let s = Strict::default();
        for i in 0..n {
            s.records
                .lock()
                .unwrap()
                .insert(name(i), ("site1.example.com".into(), 1));
        }
        s
    }

    #[tokio::test]
    async fn a_record_changed_between_listing_and_write_is_isolated_and_refused_as_drift() {
        let s = store(8);
        s.changes_after_read
            .lock()
            .unwrap()
            .push((name(5), "elsewhere.example.com".into()));
        let budget = Budget::unlimited(RetryPolicy::default());
        let out = apply_many(&s, &budget, &to_site2(8)).await;
        let applied = out
            .iter()
            .filter(|o| matches!(o, Ok(ApplyOutcome::Applied { .. })))
            .count();
        assert_eq!(applied, 7, "{out:?}");
        assert!(
            matches!(&out[5], Ok(ApplyOutcome::Refused(Refusal::Drift { found }))
                if found.points_at("elsewhere.example.com")),
            "{:?}",
            out[5]
        );
        // 8 → 4 written + 4 → 2 (svc4, svc5) + 2 written → svc4 written, svc5 alone refused.
        assert_eq!(*s.batches.lock().unwrap(), [4, 1, 2]);
        assert_eq!(
            s.records.lock().unwrap()[&name(5)].0,
            "elsewhere.example.com",
            "the administrator's change stands"
        );
    }

    #[tokio::test]
    async fn a_name_that_cannot_be_managed_ends_with_the_reason_and_is_never_written() {
        let s = store(3);
        s.records.lock().unwrap().remove(&name(1));
        let budget = Budget::unlimited(RetryPolicy::default());
        let out = apply_many(&s, &budget, &to_site2(3)).await;
        assert!(
            matches!(&out[1], Err(ProviderError::Rejected(why)) if why.contains("alias")),
            "{:?}",
            out[1]
        );
        assert!(matches!(out[0], Ok(ApplyOutcome::Applied { .. })));
        assert_eq!(*s.batches.lock().unwrap(), [2]);
        let read = read_many(&s, &budget, &[name(0), name(1)]).await;
        assert!(read[0].is_ok() && read[1].is_err(), "{read:?}");
    }

    #[test]
    fn a_failed_comparison_is_never_a_second_write() {
        let c = &to_site2(1)[0];
        let now = view(&c.name, &("elsewhere.example.com".into(), 1));
        assert!(matches!(
            after_failed_comparison(c, now),
            ApplyOutcome::Refused(Refusal::Drift { .. })
        ));
        let newer = view(&c.name, &("site1.example.com".into(), 9));
        assert!(matches!(
            after_failed_comparison(c, newer),
            ApplyOutcome::Refused(Refusal::NewerEpoch { .. })
        ));
        let done = view(&c.name, &("site2.example.com".into(), 2));
        assert!(matches!(
            after_failed_comparison(c, done),
            ApplyOutcome::AlreadyInPlace { .. }
        ));
    }
}
