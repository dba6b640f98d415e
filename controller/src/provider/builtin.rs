//! The `builtin` provider: records live in the JetStream KV bucket `sitewarden-dns`, which the
//! controllers' own DNS servers ([`crate::dns`]) answer from.
//!
//! Key = the managed name (lower case, no trailing dot), value = JSON
//! `{"content", "ttl", "epoch", "generation"}`. A change goes through the shared procedure in
//! [`cas`]: read the key (its revision is kept as the record's `provider_id`), [`decide`] by the
//! same rules as every provider (newer epoch → refused, older generation → refused, drift,
//! not ours, missing), write with `update(key, value, revision)` — a true compare-and-set: if
//! anyone wrote the key since the read, the server rejects the write and the procedure reads
//! again and decides afresh — then read back. Records are created once with
//! [`BuiltinProvider::create`] (sitewarden changes names, it does not invent them).
//!
//! Reads go through the bucket stream's leader (the JetStream `STREAM.MSG.GET` API), not the
//! KV's direct get: with R3 a direct get may be answered by a replica that has not caught up, and
//! a read-back served by one showed the previous target right after a successful write, which
//! was then audited as a failure. The DNS servers keep reading replicas; only the provider, which
//! decides and verifies, pays the trip to the leader.
//!
//! Many changes at once ([`DnsProvider::apply_many`], a mass failover): every key is read
//! from the stream leader with [`READS_IN_FLIGHT`] requests pipelined, decided, and every
//! compare-and-set is published in one pipelined burst before any acknowledgement is awaited —
//! the closest a NATS 2.9 KV comes to one transaction (it has no multi-key atomic write; each key
//! is still its own true compare-and-set). A key that lost its compare-and-set or failed softly
//! goes through the one-name procedure (read again, decide again); the written keys are read
//! back the same pipelined way.
//!
//! [`decide`]: super::decide::decide

use std::sync::Arc;

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;

use super::budget::{Budget, RetryPolicy, StatsSnapshot};
use super::cas::{self, RecordStore};
use super::decide::Patch;
use super::{
    ApplyOutcome, Change, DnsProvider, Marker, ProviderError, ProviderFuture, RecordState,
};
use crate::dns::records::{StoredRecord, record_key};

/// Reads (and writes) of many keys sent before their answers are awaited.
pub const READS_IN_FLIGHT: usize = 256;

/// TTL of a record created without one.
pub const DEFAULT_TTL: u32 = 60;

/// The built-in provider. Clones share the bucket handle.
#[derive(Debug, Clone)]
pub struct BuiltinProvider {
    store: Arc<Kv>,
    budget: Arc<Budget>,
}

#[derive(Debug)]
struct Kv(kv::Store);

impl BuiltinProvider {
    /// A provider on the bucket `store` (open it with [`crate::ha::kv::ensure_bucket`] and
    /// [`crate::dns::bucket_spec`]), retrying soft failures by the default policy.
    pub fn new(store: kv::Store) -> Self {
        Self::with_retry(store, RetryPolicy::default())
    }

    /// As [`new`](Self::new), retrying by `policy`.
    pub fn with_retry(store: kv::Store, policy: RetryPolicy) -> Self {
        Self {
            store: Arc::new(Kv(store)),
            budget: Arc::new(Budget::unlimited(policy)),
        }
    }

    /// Creates the record `name → target` once, stamped epoch 0, generation 0 (so any leader may
    /// change it). Fails if the name already has a record.
    pub async fn create(&self, name: &str, target: &str, ttl: u32) -> Result<u64, ProviderError> {
        let key = key(name)?;
        let value = encode(&StoredRecord {
            content: target.trim_end_matches('.').to_owned(),
            ttl,
            epoch: Some(0),
            generation: Some(0),
        })?;
        self.store
            .0
            .create(key, value.into())
            .await
            .map_err(|e| ProviderError::Rejected(format!("cannot create {name}: {e}")))
    }
}

fn key(name: &str) -> Result<String, ProviderError> {
    record_key(name).ok_or_else(|| {
        ProviderError::Rejected(format!(
            "{name:?} cannot be a built-in DNS record (letters, digits, '-', '_' and dots only)"
        ))
    })
}

/// Whether a KV message is a delete or purge marker (no record) rather than a value.
fn is_removal(headers: &async_nats::HeaderMap) -> bool {
    let operation = headers.get("KV-Operation").map(|v| v.as_str());
    matches!(operation, Some("DEL" | "PURGE")) || headers.get("Nats-Marker-Reason").is_some()
}

fn encode(r: &StoredRecord) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(r).map_err(|e| ProviderError::Rejected(format!("encode record: {e}")))
}

impl RecordStore for Kv {
    async fn fetch(&self, name: &str) -> Result<RecordState, ProviderError> {
        let subject = format!("{}{}", self.0.prefix, key(name)?);
        let mut state = RecordState {
            name: name.to_owned(),
            ..RecordState::default()
        };
        // From the stream leader, never a lagging replica (see the module docs).
        let message = match self
            .0
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(state),
            Err(e) => {
                return Err(ProviderError::Transient(format!(
                    "read {name} from the DNS bucket's stream leader: {e}"
                )));
            }
        };
        if is_removal(&message.headers) {
            return Ok(state);
        }
        let r: StoredRecord = serde_json::from_slice(&message.payload).map_err(|e| {
            ProviderError::Rejected(format!(
                "the DNS bucket holds a value for {name} that is not a record ({e}); fix or delete it"
            ))
        })?;
        let marker = match (r.epoch, r.generation) {
            (Some(epoch), Some(generation)) => Some(Marker { epoch, generation }),
            _ => None,
        };
        state.content = Some(r.content);
        state.ttl = Some(r.ttl);
        state.proxied = None;
        state.marker = marker;
        state.comment = marker.map(|m| m.to_string());
        state.provider_id = Some(message.sequence.to_string());
        Ok(state)
    }

    async fn write(&self, current: &RecordState, patch: &Patch) -> Result<(), ProviderError> {
        let key = key(&current.name)?;
        let revision = current
            .provider_id
            .as_deref()
            .and_then(|r| r.parse::<u64>().ok())
            .ok_or(ProviderError::Rejected(format!(
                "{} has no record revision to compare against",
                current.name
            )))?;
        let marker = Marker::parse(&patch.comment);
        let value = encode(&StoredRecord {
            content: patch.content.trim_end_matches('.').to_owned(),
            ttl: patch.ttl.or(current.ttl).unwrap_or(DEFAULT_TTL),
            epoch: marker.map(|m| m.epoch),
            generation: marker.map(|m| m.generation),
        })?;
        match self.0.update(key, value.into(), revision).await {
            Ok(_) => Ok(()),
            // Someone wrote since our read: read again and decide again (never a blind write).
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                Err(ProviderError::Transient(format!(
                    "{} changed since it was read (compare-and-set lost)",
                    current.name
                )))
            }
            Err(e) => Err(ProviderError::Transient(format!(
                "write {} to the DNS bucket: {e}",
                current.name
            ))),
        }
    }
}

impl Kv {
    /// Reads every name from the stream leader, [`READS_IN_FLIGHT`] at a time.
    async fn fetch_many(
        &self,
        budget: &Budget,
        names: &[String],
    ) -> Vec<Result<RecordState, ProviderError>> {
        use futures::StreamExt;
        // By index: a closure over `&String` trips the compiler's `Send` inference.
        futures::stream::iter(0..names.len())
            .map(|i| cas::read(self, budget, &names[i]))
            .buffered(READS_IN_FLIGHT)
            .collect()
            .await
    }

    /// Applies many changes: pipelined reads, decisions, one pipelined burst of
    /// compare-and-sets, pipelined read-backs (see the module docs).
    async fn apply_many(
        &self,
        budget: &Budget,
        changes: &[Change],
    ) -> Vec<Result<ApplyOutcome, ProviderError>> {
        use super::decide::{Decision, decide};
        use futures::StreamExt;
        let names: Vec<String> = changes.iter().map(|c| c.name.clone()).collect();
        let before = self.fetch_many(budget, &names).await;
        let mut out: Vec<Option<Result<ApplyOutcome, ProviderError>>> = vec![None; changes.len()];
        let mut writes = Vec::new();
        for (i, (change, read)) in changes.iter().zip(before).enumerate() {
            match read.map(|current| (decide(change, &current), current)) {
                Err(e) => out[i] = Some(Err(e)),
                Ok((Decision::InPlace, state)) => {
                    out[i] = Some(Ok(ApplyOutcome::AlreadyInPlace { state }));
                }
                Ok((Decision::Refuse(r), _)) => out[i] = Some(Ok(ApplyOutcome::Refused(r))),
                Ok((Decision::Write(patch), current)) => writes.push((i, current, patch)),
            }
        }
        // The lease may have lapsed while we read: checked right before the burst.
        if super::fenced() {
            for (i, ..) in writes {
                out[i] = Some(Ok(ApplyOutcome::Refused(super::Refusal::LeaseLost)));
            }
            return out.into_iter().flatten().collect();
        }
        let sent: Vec<(usize, RecordState, Result<(), ProviderError>)> =
            futures::stream::iter(writes)
                .map(|(i, current, patch)| async move {
                    let result = budget.once(true, self.write(&current, &patch)).await;
                    (i, current, result)
                })
                .buffered(READS_IN_FLIGHT)
                .collect()
                .await;
        let mut written = Vec::new();
        for (i, current, result) in sent {
            match result {
                Ok(()) => written.push((i, current)),
                // Lost the compare-and-set or failed softly: the one-name procedure reads again
                // and decides again, never a blind second write.
                Err(e) if e.is_retryable() => {
                    out[i] = Some(cas::apply(self, budget, &changes[i]).await);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let back: Vec<String> = written.iter().map(|(i, _)| names[*i].clone()).collect();
        let after = self.fetch_many(budget, &back).await;
        for ((i, before), read) in written.into_iter().zip(after) {
            out[i] = Some(match read {
                Err(e) => Err(e),
                Ok(after) => match decide(&changes[i], &after) {
                    Decision::InPlace => Ok(ApplyOutcome::Applied { before, after }),
                    Decision::Refuse(r) => Ok(ApplyOutcome::Refused(r)),
                    Decision::Write(_) => Err(ProviderError::Transient(format!(
                        "the write to {} was acknowledged but reading back shows {:?}",
                        names[i], after.content
                    ))),
                },
            });
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(ProviderError::Transient(
                        "the change ended without an outcome".into(),
                    ))
                })
            })
            .collect()
    }
}

impl DnsProvider for BuiltinProvider {
    fn kind(&self) -> &'static str {
        "builtin"
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

    /// Many keys per burst (not one API call: see the module docs).
    fn batch_limit(&self) -> usize {
        READS_IN_FLIGHT
    }

    fn read_many<'a>(&'a self, names: &'a [String]) -> super::BatchFuture<'a, RecordState> {
        Box::pin(self.store.fetch_many(&self.budget, names))
    }

    fn apply_many<'a>(&'a self, changes: &'a [Change]) -> super::BatchFuture<'a, ApplyOutcome> {
        Box::pin(self.store.apply_many(&self.budget, changes))
    }
}
