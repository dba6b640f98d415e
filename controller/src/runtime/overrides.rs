//! Operator overrides on the bus: every pin, drain, freeze, release and failback an operator
//! makes through either controller's API is a message in the JetStream stream
//! `SITEWARDEN_OVERRIDES` (file storage, replicated like the rest), and both controllers feed the
//! same messages, in stream order, to their engines.
//!
//! So a write is safe from either controller: it is accepted once the stream has stored it
//! (the publish is acknowledged), the leader and the standby both apply it, and a controller that
//! starts later replays the stream and ends up with the same overrides (expired ones lapse on
//! the first tick). Like agent events, live messages arrive on a core NATS subscription that
//! follows the client through reconnects; the stream is replayed at start and after every
//! reconnect, and messages are de-duplicated by their id.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::replaying::{CatchUp, Delivery, Replaying, Source};
use crate::engine::OverrideRequest;

/// The overrides stream.
pub const OVERRIDES_STREAM: &str = "SITEWARDEN_OVERRIDES";
/// The subject override messages are published on.
pub const OVERRIDES_SUBJECT: &str = "sitewarden.v1.override";
/// Messages the stream keeps. Overrides are rare; this is years of them. A pin without expiry
/// older than this many later overrides would be forgotten, which the docs say.
pub const OVERRIDES_KEPT: i64 = 10_000;
/// Ids remembered for de-duplication.
const IDS_KEPT: usize = 20_000;

/// One override as stored on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideMessage {
    /// Unique id (also the `Nats-Msg-Id`, so a retried publish is stored once).
    pub id: String,
    /// When the operator asked.
    pub at: DateTime<Utc>,
    /// The controller whose API took the request.
    pub via: String,
    /// The request.
    pub request: OverrideRequest,
}

/// Creates the overrides stream if missing.
pub async fn ensure_stream(js: &jetstream::Context, replicas: usize) -> Result<(), String> {
    super::bus_budget::ensure_capped(
        js,
        jetstream::stream::Config {
            name: OVERRIDES_STREAM.into(),
            max_bytes: super::bus_budget::OVERRIDES_MAX_BYTES,
            description: Some(
                "sitewarden: operator overrides (pin, drain, freeze, release)".into(),
            ),
            subjects: vec![OVERRIDES_SUBJECT.into()],
            max_messages: OVERRIDES_KEPT,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        },
    )
    .await
}

/// Publishes an override and waits for the stream to store it.
pub async fn publish(js: &jetstream::Context, message: &OverrideMessage) -> Result<(), String> {
    let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", message.id.as_str());
    let ack = js
        .publish_with_headers(OVERRIDES_SUBJECT, headers, body.into())
        .await
        .map_err(|e| format!("NATS did not take the override: {e}"))?;
    tokio::time::timeout(Duration::from_secs(5), ack)
        .await
        .map_err(|_| "NATS did not confirm the override within 5s; it may or may not be stored (check `sitewarden status`)".to_owned())?
        .map(|_| ())
        .map_err(|e| format!("NATS did not store the override: {e}"))
}

/// Feeds every override, replayed and live, to `tx` once, in order, until `shutdown`. The
/// stream is small, so every replay reads it all; ids already delivered are skipped.
pub async fn run(
    js: jetstream::Context,
    tx: mpsc::Sender<OverrideMessage>,
    shutdown: CancellationToken,
) {
    let source = Source {
        what: "overrides",
        stream: OVERRIDES_STREAM,
        filter: OVERRIDES_SUBJECT.into(),
        subjects: vec![OVERRIDES_SUBJECT.into()],
        catch_up: CatchUp::All,
        max_held: MAX_HELD,
    };
    let Some(mut messages) = Replaying::subscribe(js, source, &shutdown).await else {
        return;
    };
    let mut seen = Seen::default();
    while let Some(delivery) = messages.next(&shutdown).await {
        let m = match delivery {
            Delivery::Live(m) | Delivery::Replayed(m) => m,
            Delivery::Reconnected => continue,
            Delivery::Dropped => {
                tracing::warn!(
                    "an override arrived while {MAX_HELD} were held back during a replay; it is read again at the next replay"
                );
                continue;
            }
        };
        match serde_json::from_slice::<OverrideMessage>(&m.payload) {
            Ok(o) => {
                if seen.first(&o.id) && tx.send(o).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!("ignored an unreadable override message: {e}"),
        }
    }
}

/// Live overrides held back during a replay (operators issue a handful a day).
const MAX_HELD: usize = 10_000;

/// Ids already delivered, bounded.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// True the first time `id` is offered.
    fn first(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == IDS_KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_delivered_once_and_memory_is_bounded() {
        let mut seen = Seen::default();
        assert!(seen.first("a"));
        assert!(!seen.first("a"));
        for i in 0..IDS_KEPT {
            seen.first(&i.to_string());
        }
        assert_eq!(seen.set.len(), IDS_KEPT);
        assert!(seen.first("a"), "forgotten after IDS_KEPT newer ids");
    }
}
