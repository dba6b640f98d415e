//! The latest edge notification in JetStream KV (`sitewarden-edge`, key `latest`).
//!
//! Receivers read this key at start-up and after a reconnect, so it must only ever move
//! forward: [`put_latest`] is a compare-and-set that refuses to replace a stored notification
//! with one that is not newer by `(epoch, generation)`. A deposed leader that wakes up late and
//! writes its last notice therefore cannot roll the edge back.

use async_nats::jetstream::kv;
use sitewarden_shared::EdgeNotification;
use sitewarden_shared::edge::{KV_BUCKET, KV_KEY};

use crate::ha::BucketSpec;

/// Watchers the edge bucket accepts at once (agents, edge readers and controllers together).
pub const EDGE_MAX_CONSUMERS: i32 = 256;

/// The bucket's settings: one value kept, never expiring. Open it with
/// [`crate::ha::ensure_bucket`], which works on nats-server 2.9.10.
pub fn bucket_spec(num_replicas: usize) -> BucketSpec {
    let mut spec = BucketSpec::state(KV_BUCKET, 1, num_replicas);
    spec.description = "sitewarden latest edge notification".into();
    // Agents may watch this bucket; the cap keeps one agent credential from creating
    // consumers without end. The value is small and kept once.
    spec.max_consumers = EDGE_MAX_CONSUMERS;
    spec.max_bytes = 8 * 1024 * 1024;
    spec
}

/// What [`put_latest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The notification is now the latest.
    Written,
    /// The stored one is as new or newer (its key); nothing was written.
    NotNewer((u64, u64)),
}

/// Why the latest notification could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The bus refused or did not answer.
    #[error("edge KV {KV_BUCKET}/{KV_KEY}: {0}")]
    Bus(String),
    /// Concurrent writers won every compare-and-set.
    #[error("edge KV {KV_BUCKET}/{KV_KEY}: compare-and-set kept losing to concurrent writers")]
    Contended,
}

/// The stored notification and its revision; an unreadable value counts as absent (and is
/// logged), so a newer notification can replace it.
async fn current(store: &kv::Store) -> Result<Option<(Option<EdgeNotification>, u64)>, StoreError> {
    match store.entry(KV_KEY).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => {
            let n = EdgeNotification::decode(&e.value)
                .inspect_err(|err| tracing::warn!("{KV_BUCKET}/{KV_KEY}: {err}"))
                .ok();
            Ok(Some((n, e.revision)))
        }
        Ok(Some(e)) => Ok(Some((None, e.revision))),
        Ok(None) => Ok(None),
        Err(e) => Err(StoreError::Bus(e.to_string())),
    }
}

/// Reads the latest notification, if there is a readable one.
pub async fn get_latest(store: &kv::Store) -> Result<Option<EdgeNotification>, StoreError> {
    Ok(current(store).await?.and_then(|(n, _)| n))
}

/// Stores `n` as the latest unless the stored one is as new or newer.
pub async fn put_latest(store: &kv::Store, n: &EdgeNotification) -> Result<Stored, StoreError> {
    let body = serde_json::to_vec(n).map_err(|e| StoreError::Bus(e.to_string()))?;
    for _ in 0..3 {
        let written = match current(store).await? {
            Some((Some(old), _)) if !n.is_newer_than(&old) => {
                return Ok(Stored::NotNewer(old.order_key()));
            }
            Some((_, revision)) => store
                .update(KV_KEY, body.clone().into(), revision)
                .await
                .is_ok(),
            None => store.create(KV_KEY, body.clone().into()).await.is_ok(),
        };
        if written {
            return Ok(Stored::Written);
        }
    }
    Err(StoreError::Contended)
}
