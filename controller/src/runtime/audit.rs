//! The audit trail: every decision, apply attempt, result, override, drift, leadership change and
//! refused event class, as JSON in the JetStream stream `SITEWARDEN_AUDIT` (file storage).
//!
//! Each record carries a message id (`Nats-Msg-Id`: controller id, process start and a counter),
//! so a publish retried after a lost acknowledgement is stored once. A record the stream does not
//! acknowledge (the bus is down, the stream has no leader yet after a quorum loss) is sent again,
//! with backoff up to 2 s, until it is stored or the controller stops; records stay in order.
//! Publishing never blocks a decision: records go through a bounded queue (4096); if the bus
//! stays down long enough to fill it, further records are counted as dropped, never waited for.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Name of the audit stream.
pub const AUDIT_STREAM: &str = "SITEWARDEN_AUDIT";
/// Subject prefix of audit records: `sitewarden.v1.audit.<controller>`.
pub const AUDIT_SUBJECT_PREFIX: &str = "sitewarden.v1.audit";

/// One audit record as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When the controller recorded it.
    pub at: DateTime<Utc>,
    /// The controller that recorded it.
    pub controller: String,
    /// `leader` or `standby` at the time.
    pub role: &'static str,
    /// Leader epoch, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// What happened (free-form JSON from the engine or the runtime).
    pub event: serde_json::Value,
}

/// Creates the audit stream if missing.
pub async fn ensure_stream(
    js: &jetstream::Context,
    replicas: usize,
    max_age: Duration,
) -> Result<(), String> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: AUDIT_STREAM.into(),
        description: Some("sitewarden: decisions, applies, overrides, drift, leadership".into()),
        subjects: vec![format!("{AUDIT_SUBJECT_PREFIX}.>")],
        max_age,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| format!("cannot create or open stream {AUDIT_STREAM}: {e}"))
}

/// Sends records to the audit publisher without waiting.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
    metrics: Arc<Metrics>,
}

impl AuditSink {
    /// Queues a record; counts it as dropped if the queue is full.
    pub fn record(&self, record: AuditRecord) {
        if self.tx.try_send(record).is_err() {
            self.metrics.audit_dropped.inc();
        }
    }
}

/// Starts the publisher task; returns the sink and the task.
pub fn spawn(
    js: jetstream::Context,
    controller: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<AuditRecord>(4096);
    let sink = AuditSink {
        tx,
        metrics: metrics.clone(),
    };
    let boot = Utc::now().timestamp_micros();
    let task = tokio::spawn(async move {
        let subject = format!("{AUDIT_SUBJECT_PREFIX}.{controller}");
        let mut n: u64 = 0;
        loop {
            let record = tokio::select! {
                r = rx.recv() => match r { Some(r) => r, None => break },
                _ = shutdown.cancelled() => break,
            };
            n += 1;
            let Ok(body) = serde_json::to_vec(&record) else {
                continue;
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{controller}-{boot}-{n}").as_str());
            let body = axum::body::Bytes::from(body);
            let mut backoff = Duration::from_millis(100);
            loop {
                let stored = match js
                    .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                    .await
                {
                    // A lost ack is harmless: the retry carries the same message id.
                    Ok(ack) => match tokio::time::timeout(Duration::from_secs(2), ack).await {
                        Ok(Ok(_)) => true,
                        Ok(Err(e)) => {
                            tracing::debug!("audit record not stored: {e}");
                            false
                        }
                        Err(_) => false,
                    },
                    Err(e) => {
                        tracing::debug!("audit publish failed: {e}");
                        false
                    }
                };
                if stored {
                    break;
                }
                metrics.audit_errors.inc();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    });
    (sink, task)
}
