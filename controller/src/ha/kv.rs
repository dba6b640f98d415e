//! JetStream KV buckets that work on Debian's nats-server 2.9.10 and on newer servers.
//!
//! `jetstream::Context::create_key_value` fails on 2.9.10 (async-nats 0.51 first asks for
//! account info, whose 2.9 reply it cannot parse), so [`ensure_bucket`] creates the bucket's
//! backing stream itself, following the KV conventions (`KV_<bucket>`, subjects
//! `$KV.<bucket>.>`, one message per key per history slot, rollup allowed, delete denied,
//! direct get, discard new), and then opens it with `get_key_value`. Calling it again is
//! harmless; a stream that exists with settings we cannot use is reported by name with the fix.
//!
//! `deny_delete` only forbids removing individual messages from the stream. KV deletes and our
//! lease release are new messages (markers), so they still work on such a bucket.

use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream::{
    self, kv,
    stream::{self, DiscardPolicy, StorageType},
};

/// The duplicate-detection window a KV stream gets when it has no `max_age` (the server's
/// default); with a `max_age` the window is clamped to it, as the server requires.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The settings of one KV bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    /// The bucket's name (letters, digits, `-`, `_`); the stream is `KV_<bucket>`.
    pub bucket: String,
    /// A line for `nats stream info`.
    pub description: String,
    /// Values kept per key (1..=64).
    pub history: i64,
    /// How long a value lives after its last write; zero keeps values forever.
    pub max_age: Duration,
    /// JetStream replicas: 1 for a single node, 3 for production across three sites.
    pub num_replicas: usize,
    /// The stream's `max_bytes`: storage the server reserves for the bucket when it is created,
    /// so no other stream (the agents' events above all) can take it. Writes beyond it are
    /// refused (discard new), so size it far above what the bucket holds.
    pub max_bytes: i64,
    /// The stream's `max_consumers` (-1: no cap); caps the watchers a reader may open.
    pub max_consumers: i32,
}

impl BucketSpec {
    /// Reserved storage of the lease bucket: one small value.
    pub const LEASE_MAX_BYTES: i64 = 1024 * 1024;
    /// Reserved storage of a state bucket: keys × history of values of a few KiB.
    pub const STATE_MAX_BYTES: i64 = 64 * 1024 * 1024;

    /// The leader-lease bucket: one value per key that expires `lease` after its last write.
    pub fn lease(bucket: impl Into<String>, lease: Duration, num_replicas: usize) -> Self {
        Self {
            bucket: bucket.into(),
            description: "sitewarden controller leader lease".into(),
            history: 1,
            max_age: lease,
            num_replicas,
            max_bytes: Self::LEASE_MAX_BYTES,
            max_consumers: -1,
        }
    }

    /// A state bucket: values never expire, `history` revisions kept per key.
    pub fn state(bucket: impl Into<String>, history: i64, num_replicas: usize) -> Self {
        Self {
            bucket: bucket.into(),
            description: "sitewarden controller state".into(),
            history,
            max_age: Duration::ZERO,
            num_replicas,
            max_bytes: Self::STATE_MAX_BYTES,
            max_consumers: -1,
        }
    }

    /// The backing stream's name, `KV_<bucket>`.
    pub fn stream_name(&self) -> String {
        format!("KV_{}", self.bucket)
    }

    /// The backing stream's configuration under the KV conventions.
    pub fn stream_config(&self) -> stream::Config {
        let duplicate_window = if self.max_age.is_zero() {
            DEFAULT_DUPLICATE_WINDOW
        } else {
            self.max_age.min(DEFAULT_DUPLICATE_WINDOW)
        };
        stream::Config {
            name: self.stream_name(),
            description: Some(self.description.clone()),
            subjects: vec![format!("$KV.{}.>", self.bucket)],
            max_messages_per_subject: self.history,
            max_age: self.max_age,
            duplicate_window,
            storage: StorageType::File,
            num_replicas: self.num_replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            max_bytes: self.max_bytes,
            max_consumers: self.max_consumers,
            ..Default::default()
        }
    }

    /// How an existing stream's settings differ from ours, in words; empty when compatible.
    fn differences(&self, found: &stream::Config) -> String {
        let want = self.stream_config();
        let mut out = String::new();
        let mut differ = |what: &str, found: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{what} is {found:?}, sitewarden needs {want:?}");
        };
        if !found.subjects.contains(&want.subjects[0]) {
            differ("subjects", &found.subjects, &want.subjects);
        }
        if found.max_messages_per_subject != want.max_messages_per_subject {
            differ(
                "history (max_msgs_per_subject)",
                &found.max_messages_per_subject,
                &want.max_messages_per_subject,
            );
        }
        if found.max_age != want.max_age {
            differ("max_age", &found.max_age, &want.max_age);
        }
        if found.num_replicas.max(1) != want.num_replicas {
            differ("replicas", &found.num_replicas, &want.num_replicas);
        }
        if found.storage != want.storage {
            differ("storage", &found.storage, &want.storage);
        }
        if found.discard != want.discard {
            differ("discard policy", &found.discard, &want.discard);
        }
        if !found.allow_rollup {
            differ("allow_rollup", &found.allow_rollup, &true);
        }
        if found.mirror.is_some() {
            differ("mirror", &found.mirror.as_ref().map(|m| &m.name), &"none");
        }
        out
    }
}

/// A KV bucket that could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The bucket name is not usable in a subject.
    #[error("KV bucket name {bucket:?} is invalid: use only letters, digits, `-` and `_`")]
    InvalidName {
        /// The rejected name.
        bucket: String,
    },
    /// The history is outside what JetStream KV allows.
    #[error("KV bucket {bucket:?}: history {history} is out of range; use 1 to 64")]
    InvalidHistory {
        /// The bucket.
        bucket: String,
        /// The rejected history.
        history: i64,
    },
    /// The stream exists with settings that would break the bucket's guarantees.
    #[error(
        "KV bucket {bucket:?} (stream KV_{bucket}) exists with settings sitewarden cannot use: \
         {differences}; fix the stream (`nats stream edit KV_{bucket}`) or remove it \
         (`nats stream rm KV_{bucket}`, its data is lost) and let sitewarden create it"
    )]
    Incompatible {
        /// The bucket.
        bucket: String,
        /// Each differing setting, found and needed.
        differences: String,
    },
    /// The bus did not answer or refused.
    #[error("KV bucket {bucket:?} (stream KV_{bucket}): cannot {action}: {detail}")]
    Bus {
        /// The bucket.
        bucket: String,
        /// What we tried ("read the stream", "create the stream", "open the bucket").
        action: &'static str,
        /// The client's error text.
        detail: String,
    },
}

/// Opens the KV bucket `bucket` if it exists; `None` when its stream does not (yet). Creates
/// nothing: for tools that only read.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<Option<kv::Store>, BucketError> {
    let bus = |action: &'static str, e: &dyn std::fmt::Display| BucketError::Bus {
        bucket: bucket.to_owned(),
        action,
        detail: e.to_string(),
    };
    match js.get_stream(format!("KV_{bucket}")).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(bus("read the stream", &e)),
    }
    js.get_key_value(bucket)
        .await
        .map(Some)
        .map_err(|e| bus("open the bucket", &e))
}

/// Opens the KV bucket described by `spec`, creating its backing stream first if it is missing.
///
/// Idempotent and safe to race: two controllers starting together both end up with the same
/// bucket. Works on nats-server 2.9.10 and newer.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    spec: BucketSpec,
) -> Result<kv::Store, BucketError> {
    let bucket = spec.bucket.clone();
    if bucket.is_empty()
        || !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(BucketError::InvalidName { bucket });
    }
    if !(1..=64).contains(&spec.history) {
        return Err(BucketError::InvalidHistory {
            bucket,
            history: spec.history,
        });
    }
    let bus = |action: &'static str, e: &dyn std::fmt::Display| BucketError::Bus {
        bucket: bucket.clone(),
        action,
        detail: e.to_string(),
    };

    let mut created_here = false;
    let found = match js.get_stream(spec.stream_name()).await {
        Ok(s) => s.cached_info().config.clone(),
        Err(e) if is_not_found(&e) => match js.create_stream(spec.stream_config()).await {
            Ok(s) => {
                created_here = true;
                s.cached_info().config.clone()
            }
            // Another controller created it between our read and our create.
            Err(e) if is_name_in_use(&e) => js
                .get_stream(spec.stream_name())
                .await
                .map_err(|e| bus("read the stream", &e))?
                .cached_info()
                .config
                .clone(),
            Err(e) => return Err(bus("create the stream", &e)),
        },
        Err(e) => return Err(bus("read the stream", &e)),
    };
    let differences = spec.differences(&found);
    if !differences.is_empty() {
        return Err(BucketError::Incompatible {
            bucket,
            differences,
        });
    }
    if found.max_bytes != spec.max_bytes {
        // A bucket from before the caps (or with another one): give it ours, keeping the rest.
        // Not fatal when refused: the bucket works, it only lacks its reservation; a controller
        // upgraded before its NATS permissions must still start.
        let mut update = found.clone();
        update.max_bytes = spec.max_bytes;
        match js.update_stream(update).await {
            Ok(_) => {
                tracing::info!(bucket = %bucket, max_bytes = spec.max_bytes, "set the bucket's reserved size")
            }
            Err(e) => tracing::warn!(
                bucket = %bucket,
                "cannot set max_bytes {} on stream KV_{bucket} ({e}); until it has one, a full \
                 JetStream store can stop writes to it: allow the controller user \
                 `$JS.API.STREAM.UPDATE.KV_{bucket}` (deploy/nats/sitewarden-auth.conf) and \
                 restart, or run `nats stream edit KV_{bucket} --max-bytes {}`",
                spec.max_bytes,
                spec.max_bytes
            ),
        }
    }
    let consumers = |c: i32| if c <= 0 { -1 } else { c };
    if consumers(found.max_consumers) != consumers(spec.max_consumers) {
        let mut update = found.clone();
        update.max_bytes = spec.max_bytes;
        update.max_consumers = spec.max_consumers;
        // nats-server before 2.12 refuses to change max_consumers of an existing stream; the
        // bucket works without the cap, so this is a warning with the fix, not a failure.
        if let Err(e) = js.update_stream(update).await {
            tracing::warn!(
                bucket = %bucket,
                "stream KV_{bucket} has no cap of {} consumers and the server cannot add one ({e}); \
                 remove the stream once (`nats stream rm KV_{bucket}`) and let the controller \
                 recreate it with the cap",
                spec.max_consumers
            );
        }
    }
    if created_here {
        tracing::info!(bucket = %bucket, replicas = spec.num_replicas, max_age = ?spec.max_age, "created KV bucket");
    }
    js.get_key_value(bucket.clone())
        .await
        .map_err(|e| bus("open the bucket", &e))
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

fn is_name_in_use(e: &jetstream::context::CreateStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::CreateStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_bucket_follows_the_kv_conventions() {
        let spec = BucketSpec::lease("sitewarden-lease", Duration::from_secs(10), 3);
        let c = spec.stream_config();
        assert_eq!(c.name, "KV_sitewarden-lease");
        assert_eq!(c.subjects, vec!["$KV.sitewarden-lease.>".to_owned()]);
        assert_eq!(c.max_messages_per_subject, 1);
        assert_eq!(c.max_age, Duration::from_secs(10));
        assert_eq!(c.duplicate_window, Duration::from_secs(10));
        assert!(c.allow_rollup && c.deny_delete && c.allow_direct);
        assert_eq!(c.discard, DiscardPolicy::New);
        assert_eq!(c.storage, StorageType::File);
        assert_eq!(c.num_replicas, 3);
        assert!(spec.differences(&c).is_empty());
    }

    #[test]
    fn a_stream_with_other_settings_is_described_setting_by_setting() {
        let spec = BucketSpec::state("sitewarden-state", 5, 1);
        let mut found = spec.stream_config();
        assert_eq!(found.max_age, Duration::ZERO);
        found.max_messages_per_subject = 1;
        found.max_age = Duration::from_secs(60);
        let d = spec.differences(&found);
        assert!(d.contains("history"), "{d}");
        assert!(d.contains("max_age"), "{d}");
        assert!(!d.contains("replicas"), "{d}");
    }
}
