//! The replicated records: the KV bucket `sitewarden-dns`, the JSON value of one record, and the
//! in-memory map the server answers from, kept current by watching the bucket.
//!
//! The key is the managed name, lower-cased, without the trailing dot
//! (`mail.failover.example.com`); the value is `{"content": ..., "ttl": ..., "epoch": ...,
//! "generation": ...}`. The watcher replays the last value of every key, then follows every
//! change; the map is swapped in whole once the replay has caught up, so a server never answers
//! NXDOMAIN for a name merely because it has not read it yet (it answers SERVFAIL until then).
//! When the bus is lost the last known records keep being served: both controllers answer what
//! the leader last committed, and nothing fails over because NATS is down.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ha::kv::BucketSpec;

/// The KV bucket holding the built-in zone's records.
pub const BUCKET: &str = "sitewarden-dns";

/// Revisions kept per record (for `nats kv history`).
pub const HISTORY: i64 = 10;

/// The bucket's settings, for [`crate::ha::kv::ensure_bucket`]: values never expire.
pub fn bucket_spec(num_replicas: usize) -> BucketSpec {
    BucketSpec {
        bucket: BUCKET.to_owned(),
        description: "sitewarden built-in authoritative DNS records".to_owned(),
        history: HISTORY,
        max_age: Duration::ZERO,
        num_replicas,
        max_bytes: BucketSpec::STATE_MAX_BYTES,
        max_consumers: -1,
    }
}

/// One record as stored in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The CNAME target, e.g. `mail-site2.example.com`.
    pub content: String,
    /// The TTL answered, in seconds.
    pub ttl: u32,
    /// The epoch of the leader that wrote it; absent on a record nobody has stamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The plan generation that wrote it; absent with `epoch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// The bucket key of a DNS name: lower case, no trailing dot; `None` when the name cannot be a
/// key (empty, or characters a KV key does not allow, such as `*`).
pub fn record_key(name: &str) -> Option<String> {
    let key = name.trim_end_matches('.').to_ascii_lowercase();
    let ok = !key.is_empty()
        && !key.starts_with('.')
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then_some(key)
}

/// What one managed name answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The CNAME target (fully qualified).
    pub target: Name,
    /// The TTL.
    pub ttl: u32,
}

/// The records the server answers from.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// By lower-cased, fully qualified name.
    pub names: HashMap<Name, Answer>,
    /// The highest bucket revision seen; the SOA serial.
    pub revision: u64,
    /// Whether the initial replay has caught up (until then the server answers SERVFAIL).
    pub ready: bool,
}

impl Records {
    /// Applies one bucket entry (a put, delete or purge of a key).
    pub fn apply(&mut self, entry: &kv::Entry) {
        self.revision = self.revision.max(entry.revision);
        let Some(name) = key_name(&entry.key) else {
            tracing::warn!(key = %entry.key, "DNS bucket key is not a DNS name; ignored");
            return;
        };
        match entry.operation {
            Operation::Delete | Operation::Purge => {
                self.names.remove(&name);
            }
            Operation::Put => match parse_value(&entry.value) {
                Some(answer) => {
                    self.names.insert(name, answer);
                }
                None => {
                    tracing::warn!(key = %entry.key, revision = entry.revision,
                        "DNS bucket value is not {{\"content\", \"ttl\", ...}} with a valid target; the name is not answered");
                    self.names.remove(&name);
                }
            },
        }
    }

    /// The SOA serial: the bucket revision, folded into 32 bits, never zero.
    pub fn serial(&self) -> u32 {
        // Truncation is intended: RFC 1982 serial arithmetic wraps.
        let s = (self.revision & u64::from(u32::MAX)) as u32;
        s.max(1)
    }
}

fn key_name(key: &str) -> Option<Name> {
    let mut n = Name::from_ascii(key).ok()?;
    n.set_fqdn(true);
    Some(n.to_lowercase())
}

/// The answer a stored value gives; `None` when the server cannot answer it.
pub(crate) fn parse_value(value: &[u8]) -> Option<Answer> {
    let r: StoredRecord = serde_json::from_slice(value).ok()?;
    let content = r.content.trim();
    let mut target = Name::from_ascii(content).ok()?;
    if content.trim_end_matches('.').is_empty() || target.is_root() {
        return None;
    }
    target.set_fqdn(true);
    Some(Answer { target, ttl: r.ttl })
}

/// The map shared between the watcher and the server tasks.
pub type Shared = Arc<RwLock<Records>>;

/// Reads the shared map.
pub fn snapshot<R>(shared: &Shared, f: impl FnOnce(&Records) -> R) -> R {
    f(&shared.read().unwrap_or_else(PoisonError::into_inner))
}

/// Keeps `shared` equal to the bucket until `shutdown`: replays the last value of every key,
/// swaps the map in once caught up, then follows changes. A lost watch is re-established (and the
/// map rebuilt) after a pause; meanwhile the last known records keep being answered.
pub async fn watch(store: kv::Store, shared: Shared, shutdown: CancellationToken) {
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            r = follow(&store, &shared) => r,
        };
        if let Err(e) = outcome {
            tracing::warn!(
                bucket = BUCKET,
                "DNS records watch lost, answering the last known records: {e}"
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Every key's last entry (deletes included), read by replaying the bucket; the watch is left
/// at the end of the replay, to follow changes from there.
async fn replay(store: &kv::Store) -> Result<(kv::Watch, Vec<kv::Entry>), String> {
    let messages = store
        .stream
        .get_info()
        .await
        .map_err(|e| format!("stream info: {e}"))?
        .state
        .messages;
    let mut watch = store
        .watch_with_history(">")
        .await
        .map_err(|e| format!("watch: {e}"))?;
    let mut entries = Vec::new();
    if messages > 0 {
        loop {
            let Some(entry) = watch.next().await else {
                return Err("the watch ended during the replay".into());
            };
            let entry = entry.map_err(|e| e.to_string())?;
            let last = entry.delta == 0;
            entries.push(entry);
            if last {
                break;
            }
        }
    }
    Ok((watch, entries))
}

/// Every key's last entry, deletes included: what the bucket holds now.
pub async fn read_all(store: &kv::Store) -> Result<Vec<kv::Entry>, String> {
    Ok(replay(store).await?.1)
}

async fn follow(store: &kv::Store, shared: &Shared) -> Result<(), String> {
    let (mut watch, entries) = replay(store).await?;
    let mut fresh = Records::default();
    for entry in &entries {
        fresh.apply(entry);
    }
    fresh.ready = true;
    let count = fresh.names.len();
    *shared.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    tracing::info!(
        bucket = BUCKET,
        names = count,
        "built-in DNS records loaded"
    );
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        shared
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(&entry);
    }
    Err("the watch ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lower_case_names_without_the_dot() {
        assert_eq!(
            record_key("Mail.Failover.Example.com."),
            Some("mail.failover.example.com".into())
        );
        assert_eq!(record_key("*.failover.example.com"), None);
        assert_eq!(record_key(""), None);
        assert_eq!(record_key("a..b"), None);
    }

    #[test]
    fn values_parse_and_bad_ones_are_not_answered() {
        let a = parse_value(
            br#"{"content":"mail-site2.example.com","ttl":30,"epoch":3,"generation":4}"#,
        )
        .unwrap();
        assert_eq!(a.ttl, 30);
        assert_eq!(a.target.to_ascii(), "mail-site2.example.com.");
        assert!(parse_value(b"not json").is_none());
        assert!(parse_value(br#"{"content":"","ttl":30}"#).is_none());
    }
}
