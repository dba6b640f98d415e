//! An in-memory DNS provider: the same compare-and-set rules as Cloudflare, no network.
//!
//! `plan`, the lab and tests use it. Records are seeded with [`MemoryProvider::insert`] and can be
//! edited "by a human" with [`MemoryProvider::edit`]. Failures can be queued to exercise the retry
//! and read-back paths: [`MemoryProvider::fail_next`] makes the next call fail with an error, and
//! [`MemoryProvider::lose_next_write`] applies the next write but reports it as a lost response.
//! Retries wait on `tokio::time`, so tests using it can pause time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::budget::{Budget, RetryPolicy, StatsSnapshot};
use super::cas::{self, RecordStore};
use super::decide::Patch;
use super::{
    ApplyOutcome, Change, DnsProvider, Marker, ProviderError, ProviderFuture, RecordState,
};

/// The in-memory provider. Clones share the same records.
#[derive(Debug, Clone)]
pub struct MemoryProvider {
    store: Arc<Store>,
    budget: Arc<Budget>,
}

/// The records and the queued failures.
#[derive(Debug, Default)]
struct Store {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Records by lower-cased name.
    records: HashMap<String, RecordState>,
    /// Errors the next calls return, in order.
    failures: VecDeque<ProviderError>,
    /// Apply the next write, then report it as lost.
    lose_next_write: bool,
    /// Writes that reached the records.
    writes: u64,
    /// Record ids handed out.
    next_id: u64,
    /// Records one batch write carries; `0` applies name by name (see
    /// [`MemoryProvider::with_batches`]).
    batch_limit: usize,
    /// A batch write of more records than this is rejected as too large (a provider that
    /// lowered its limit); `None` accepts any size.
    accepts_at_most: Option<usize>,
    /// Batch writes that reached the records.
    batch_writes: u64,
    /// Names whose writes the provider rejects (a batch carrying one is rejected as a whole).
    refused: std::collections::HashSet<String>,
}

impl Default for MemoryProvider {
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl MemoryProvider {
    /// An empty provider retrying by `policy`, without a rate budget.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            store: Arc::default(),
            budget: Arc::new(Budget::unlimited(policy)),
        }
    }

    /// Creates or replaces the CNAME `name → content` with `comment` (TTL 60, not proxied).
    pub fn insert(&self, name: &str, content: &str, comment: Option<&str>) {
        let mut s = self.store.lock();
        s.next_id += 1;
        let id = format!("mem-{}", s.next_id);
        s.records.insert(
            name.to_ascii_lowercase(),
            RecordState {
                name: name.to_owned(),
                content: Some(content.to_owned()),
                ttl: Some(60),
                proxied: Some(false),
                marker: comment.and_then(Marker::parse),
                provider_id: Some(id),
                comment: comment.map(str::to_owned),
            },
        );
    }

    /// Changes a record's content and comment as a human in a dashboard would.
    pub fn edit(&self, name: &str, content: &str, comment: Option<&str>) {
        let mut s = self.store.lock();
        if let Some(r) = s.records.get_mut(&name.to_ascii_lowercase()) {
            r.content = Some(content.to_owned());
            r.comment = comment.map(str::to_owned);
            r.marker = comment.and_then(Marker::parse);
        }
    }

    /// The record for `name`, if any, without spending a call.
    pub fn record(&self, name: &str) -> Option<RecordState> {
        self.store
            .lock()
            .records
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    /// Writes that reached the records so far (a batch counts once per record).
    pub fn writes(&self) -> u64 {
        self.store.lock().writes
    }

    /// Batch writes that reached the records so far.
    pub fn batch_writes(&self) -> u64 {
        self.store.lock().batch_writes
    }

    /// Applies many changes in batches of up to `limit` records (a listing to read, one
    /// all-or-nothing write per batch, a listing to verify), like a provider with a batch API.
    #[must_use]
    pub fn with_batches(self, limit: usize) -> Self {
        self.store.lock().batch_limit = limit;
        self
    }

    /// Rejects every write to `name` from now on, as a provider does that finds one record of
    /// a batch invalid: a batch carrying it is rejected as a whole.
    pub fn reject_writes_to(&self, name: &str) {
        self.store.lock().refused.insert(name.to_ascii_lowercase());
    }

    /// Rejects, as a whole, every batch write of more than `records` records from now on, as a
    /// provider does that lowered its limit (`None`: any size).
    pub fn accept_at_most(&self, records: Option<usize>) {
        self.store.lock().accepts_at_most = records;
    }

    /// The next call (read or write) fails with `error`; queue several to fail several calls.
    pub fn fail_next(&self, error: ProviderError) {
        self.store.lock().failures.push_back(error);
    }

    /// The next write is applied, but answers as if the connection was reset.
    pub fn lose_next_write(&self) {
        self.store.lock().lose_next_write = true;
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RecordStore for Store {
    async fn fetch(&self, name: &str) -> Result<RecordState, ProviderError> {
        let mut s = self.lock();
        if let Some(e) = s.failures.pop_front() {
            return Err(e);
        }
        Ok(s.records
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| RecordState {
                name: name.to_owned(),
                ..RecordState::default()
            }))
    }

    async fn write(&self, current: &RecordState, patch: &Patch) -> Result<(), ProviderError> {
        let mut s = self.lock();
        if let Some(e) = s.failures.pop_front() {
            return Err(e);
        }
        let key = current.name.to_ascii_lowercase();
        if s.refused.contains(&key) {
            return Err(ProviderError::Rejected(format!(
                "the record {} is invalid",
                current.name
            )));
        }
        let Some(r) = s.records.get_mut(&key) else {
            return Err(ProviderError::Rejected(format!(
                "record {} does not exist",
                current.name
            )));
        };
        r.content = Some(patch.content.clone());
        r.comment = Some(patch.comment.clone());
        r.marker = Marker::parse(&patch.comment);
        if let Some(ttl) = patch.ttl {
            r.ttl = Some(ttl);
        }
        s.writes += 1;
        if std::mem::take(&mut s.lose_next_write) {
            return Err(ProviderError::Transient(
                "connection reset before the response (emulated)".into(),
            ));
        }
        Ok(())
    }
}

impl super::batch::BatchStore for Store {
    fn limit(&self) -> usize {
        self.lock().batch_limit.max(1)
    }

    async fn fetch_many(
        &self,
        budget: &Budget,
        names: &[String],
    ) -> Result<Vec<RecordState>, ProviderError> {
        budget
            .retrying(|| async {
                let mut s = self.lock();
                if let Some(e) = s.failures.pop_front() {
                    return Err(e);
                }
                Ok(names
                    .iter()
                    .map(|n| {
                        s.records
                            .get(&n.to_ascii_lowercase())
                            .cloned()
                            .unwrap_or_else(|| RecordState {
                                name: n.clone(),
                                ..RecordState::default()
                            })
                    })
                    .collect())
            })
            .await
    }

    async fn write_many(&self, writes: &[(RecordState, Patch)]) -> Result<(), ProviderError> {
        let mut s = self.lock();
        if let Some(e) = s.failures.pop_front() {
            return Err(e);
        }
        if let Some(max) = s.accepts_at_most.filter(|max| writes.len() > *max) {
            return Err(ProviderError::Rejected(format!(
                "413: a batch of {} records is larger than the {max} accepted",
                writes.len()
            )));
        }
        if let Some((bad, _)) = writes
            .iter()
            .find(|(r, _)| s.refused.contains(&r.name.to_ascii_lowercase()))
        {
            return Err(ProviderError::Rejected(format!(
                "the record {} is invalid; nothing in the batch was written",
                bad.name
            )));
        }
        // All or nothing: one missing record refuses the whole batch.
        if let Some((missing, _)) = writes
            .iter()
            .find(|(r, _)| !s.records.contains_key(&r.name.to_ascii_lowercase()))
        {
            return Err(ProviderError::Rejected(format!(
                "record {} does not exist; nothing in the batch was written",
                missing.name
            )));
        }
        for (current, patch) in writes {
            if let Some(r) = s.records.get_mut(&current.name.to_ascii_lowercase()) {
                r.content = Some(patch.content.clone());
                r.comment = Some(patch.comment.clone());
                r.marker = Marker::parse(&patch.comment);
                if let Some(ttl) = patch.ttl {
                    r.ttl = Some(ttl);
                }
            }
        }
        s.writes += writes.len() as u64;
        s.batch_writes += 1;
        if std::mem::take(&mut s.lose_next_write) {
            return Err(ProviderError::Transient(
                "connection reset before the response (emulated)".into(),
            ));
        }
        Ok(())
    }
}

impl DnsProvider for MemoryProvider {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn read<'a>(&'a self, name: &'a str) -> ProviderFuture<'a, RecordState> {
        Box::pin(cas::read(&*self.store, &self.budget, name))
    }

    fn apply<'a>(&'a self, change: &'a Change) -> ProviderFuture<'a, ApplyOutcome> {
        Box::pin(cas::apply(&*self.store, &self.budget, change))
    }

    fn stats(&self) -> StatsSnapshot {
        self.budget.snapshot()
    }

    fn batch_limit(&self) -> usize {
        self.store.lock().batch_limit.max(1)
    }

    fn read_many<'a>(&'a self, names: &'a [String]) -> super::BatchFuture<'a, RecordState> {
        use super::batch::BatchStore;
        Box::pin(async move {
            if self.store.lock().batch_limit == 0 {
                let mut out = Vec::with_capacity(names.len());
                for n in names {
                    out.push(cas::read(&*self.store, &self.budget, n).await);
                }
                return out;
            }
            match self.store.fetch_many(&self.budget, names).await {
                Ok(states) => states.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e); names.len()],
            }
        })
    }

    fn apply_many<'a>(&'a self, changes: &'a [Change]) -> super::BatchFuture<'a, ApplyOutcome> {
        Box::pin(async move {
            if self.store.lock().batch_limit == 0 {
                let mut out = Vec::with_capacity(changes.len());
                for c in changes {
                    out.push(cas::apply(&*self.store, &self.budget, c).await);
                }
                return out;
            }
            super::batch::apply_many(&*self.store, &self.budget, changes).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Refusal;

    const NAME: &str = "mail.example.com";

    fn change(target: &str, epoch: u64, generation: u64, expected: &str) -> Change {
        Change {
            name: NAME.into(),
            target: target.into(),
            ttl: None,
            expected: Some(expected.into()),
            epoch,
            generation,
            adopt_unmarked: false,
        }
    }

    fn seeded() -> MemoryProvider {
        let p = MemoryProvider::default();
        p.insert(
            NAME,
            "mail-rr.example.com",
            Some("sitewarden epoch=1 gen=1"),
        );
        p
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_is_applied_and_verified_in_three_calls() {
        let p = seeded();
        let c = change("mail-site2.example.com", 2, 2, "mail-rr.example.com");
        let out = p.apply(&c).await.unwrap();
        let ApplyOutcome::Applied { before, after } = out else {
            panic!("{out:?}");
        };
        assert_eq!(before.content.as_deref(), Some("mail-rr.example.com"));
        assert_eq!(after.content.as_deref(), Some("mail-site2.example.com"));
        assert_eq!(after.marker, Some(c.marker()));
        assert_eq!(after.proxied, Some(false));
        assert_eq!(p.stats().calls, 3);
        assert_eq!(
            p.apply(&c).await.unwrap(),
            ApplyOutcome::AlreadyInPlace { state: after }
        );
        assert_eq!(p.writes(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_write_is_resolved_by_reading_back() {
        let p = seeded();
        p.lose_next_write();
        let c = change("mail-site2.example.com", 2, 2, "mail-rr.example.com");
        assert!(matches!(
            p.apply(&c).await.unwrap(),
            ApplyOutcome::Applied { .. }
        ));
        assert_eq!(p.writes(), 1, "no blind second write");
    }

    #[tokio::test(start_paused = true)]
    async fn soft_failures_are_retried_and_applied_once() {
        let p = seeded();
        p.fail_next(ProviderError::Transient("500".into()));
        let c = change("mail-site2.example.com", 2, 2, "mail-rr.example.com");
        assert!(matches!(
            p.apply(&c).await.unwrap(),
            ApplyOutcome::Applied { .. }
        ));
        p.fail_next(ProviderError::Auth("403".into()));
        let err = p.read(NAME).await.unwrap_err();
        assert!(matches!(err, ProviderError::Auth(_)));
        assert_eq!(p.writes(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_human_edit_is_drift_and_is_not_fought() {
        let p = seeded();
        p.edit(
            NAME,
            "mail-site1.example.com",
            Some("sitewarden epoch=1 gen=1"),
        );
        let c = change("mail-site2.example.com", 2, 2, "mail-rr.example.com");
        assert!(matches!(
            p.apply(&c).await.unwrap(),
            ApplyOutcome::Refused(Refusal::Drift { .. })
        ));
        assert_eq!(p.writes(), 0);
    }

    #[tokio::test]
    async fn a_fence_that_closed_after_the_read_stops_the_write() {
        let p = MemoryProvider::new(RetryPolicy::default());
        p.insert(
            NAME,
            "mail-rr.example.com",
            Some("sitewarden epoch=1 gen=1"),
        );
        let c = change("mail-site2.example.com", 2, 2, "mail-rr.example.com");
        // Closed fence: the lease lapsed (the process was frozen) before the write.
        let closed = crate::provider::Fence::new(|| false);
        let out = crate::provider::FENCE
            .scope(closed, p.apply(&c))
            .await
            .unwrap();
        assert_eq!(out, ApplyOutcome::Refused(Refusal::LeaseLost));
        assert_eq!(p.writes(), 0);
        assert_eq!(
            p.record(NAME).and_then(|r| r.content).as_deref(),
            Some("mail-rr.example.com")
        );
        // Open fence: written once.
        let open = crate::provider::Fence::new(|| true);
        let out = crate::provider::FENCE
            .scope(open, p.apply(&c))
            .await
            .unwrap();
        assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
        assert_eq!(p.writes(), 1);
    }
}
