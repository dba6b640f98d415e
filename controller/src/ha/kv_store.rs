//! The compare-and-set key-value operations the runtime's bookkeeping needs (the applied
//! generation and the intent of every name, in the state bucket), as a trait with two
//! implementations: JetStream KV for the runtime, and [`MemoryKv`] with the same revision rules
//! for unit tests of the applier's intent → compare-and-set → settle path.
//!
//! The rules both follow (JetStream's): every write gets the bucket's next revision; `create`
//! succeeds only when the key is absent (or deleted); `update` only when the key's current
//! revision is the one given. A loser learns it lost and reads again; no write is ever lost.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_nats::jetstream::kv;
use futures::future::BoxFuture;

/// A value and the revision it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The bucket revision of this write.
    pub revision: u64,
}

/// A revisioned key-value store.
pub trait KvStore: Send + Sync {
    /// The key's current value; `None` when absent or deleted.
    fn entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KvEntry>, String>>;
    /// Writes `value` when the key is absent; the new revision.
    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<u64, String>>;
    /// Writes `value` when the key is at `revision`; the new revision.
    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        revision: u64,
    ) -> BoxFuture<'a, Result<u64, String>>;
}

impl KvStore for kv::Store {
    fn entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KvEntry>, String>> {
        Box::pin(async move {
            match kv::Store::entry(self, key).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some(KvEntry {
                    value: e.value.to_vec(),
                    revision: e.revision,
                })),
                Ok(_) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<u64, String>> {
        Box::pin(async move {
            kv::Store::create(self, key, value.into())
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        revision: u64,
    ) -> BoxFuture<'a, Result<u64, String>> {
        Box::pin(async move {
            kv::Store::update(self, key, value.into(), revision)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// An in-memory [`KvStore`] with JetStream's revision rules, for unit tests.
#[derive(Debug, Default)]
pub struct MemoryKv {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    /// The bucket's last revision.
    revision: u64,
    /// Current value and revision per key.
    keys: BTreeMap<String, KvEntry>,
    /// Writes refused so far (lost compare-and-sets).
    refused: u64,
}

impl MemoryKv {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `value` unconditionally (another writer, in a test); the new revision.
    pub fn put(&self, key: &str, value: &[u8]) -> u64 {
        let mut inner = self.lock();
        inner.revision += 1;
        let revision = inner.revision;
        let entry = KvEntry {
            value: value.to_vec(),
            revision,
        };
        inner.keys.insert(key.to_owned(), entry);
        revision
    }

    /// The key's current value, read without the async interface.
    pub fn get(&self, key: &str) -> Option<KvEntry> {
        self.lock().keys.get(key).cloned()
    }

    /// How many conditional writes were refused.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    fn write(&self, key: &str, value: Vec<u8>, expect: Option<u64>) -> Result<u64, String> {
        let mut inner = self.lock();
        let current = inner.keys.get(key).map(|e| e.revision);
        if current != expect {
            inner.refused += 1;
            let at = |r: Option<u64>| r.map_or_else(|| "absent".to_owned(), |r| format!("at {r}"));
            return Err(format!(
                "{key}: wrong last revision (expected {}, the key is {})",
                at(expect),
                at(current)
            ));
        }
        inner.revision += 1;
        let revision = inner.revision;
        inner
            .keys
            .insert(key.to_owned(), KvEntry { value, revision });
        Ok(revision)
    }
}

impl KvStore for MemoryKv {
    fn entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KvEntry>, String>> {
        let found = self.get(key);
        Box::pin(async move { Ok(found) })
    }

    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<u64, String>> {
        let result = self.write(key, value, None);
        Box::pin(async move { result })
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        revision: u64,
    ) -> BoxFuture<'a, Result<u64, String>> {
        let result = self.write(key, value, Some(revision));
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_wins_once_and_update_needs_the_current_revision() {
        let kv = MemoryKv::default();
        let r1 = kv.create("ns.a", b"1".to_vec()).await.unwrap();
        assert!(
            kv.create("ns.a", b"2".to_vec()).await.is_err(),
            "a second create loses"
        );
        let other = kv.put("ns.b", b"x");
        assert!(other > r1, "revisions are the bucket's, not the key's");
        let r2 = kv.update("ns.a", b"3".to_vec(), r1).await.unwrap();
        assert!(r2 > other);
        let stale = kv.update("ns.a", b"4".to_vec(), r1).await.unwrap_err();
        assert!(stale.contains("expected"), "{stale}");
        assert_eq!(kv.refused(), 2);
        let e = KvStore::entry(&kv, "ns.a").await.unwrap().unwrap();
        assert_eq!((e.value, e.revision), (b"3".to_vec(), r2));
        assert_eq!(KvStore::entry(&kv, "ns.none").await.unwrap(), None);
    }
}
