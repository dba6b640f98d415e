//! The audit trail: every decision, apply attempt, result, override, drift, leadership change and
//! refused event class, as JSON in the JetStream stream `SITEWARDEN_AUDIT` (file storage).
//!
//! Each record carries a message id (`Nats-Msg-Id`: controller id, process start and a counter),
//! so a publish retried after a lost acknowledgement is stored once. A record the stream does not
//! acknowledge (the bus is down, the stream has no leader yet after a quorum loss) is sent again,
//! with backoff up to 2 s, until it is stored or the controller stops; records stay in order.
//! Most records go through a bounded queue (4096) without waiting ([`AuditSink::record`]); if the
//! bus stays down long enough to fill it, further records are counted as dropped, never waited
//! for. The records that must precede an effect — the intent before the DNS write, the settlement
//! before the intent is marked done in the state bucket — are sent with
//! [`AuditSink::record_stored`], which resolves once the stream has acknowledged that record
//! (and so every record queued before it): audit before effect, so a leader killed at any moment
//! leaves no change the audit trail does not show. It waits at most [`STORED_WAIT`] and answers
//! `false` when the record was not stored in time or the controller is stopping; the caller
//! then does not perform the effect. A record that timed out stays queued and may still be
//! stored later, in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Name of the audit stream.
pub const AUDIT_STREAM: &str = "SITEWARDEN_AUDIT";
/// Subject prefix of audit records: `sitewarden.v1.audit.<controller>`.
pub const AUDIT_SUBJECT_PREFIX: &str = "sitewarden.v1.audit";
/// How long [`AuditSink::record_stored`] waits for the stream's acknowledgement: long enough for
/// the audit stream to elect a new leader after a node loss, well inside the default 10 s lease.
pub const STORED_WAIT: Duration = Duration::from_secs(5);

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
    max_bytes: i64,
) -> Result<(), String> {
    super::bus_budget::ensure_capped(
        js,
        jetstream::stream::Config {
            name: AUDIT_STREAM.into(),
            max_bytes,
            description: Some(
                "sitewarden: decisions, applies, overrides, drift, leadership".into(),
            ),
            subjects: vec![format!("{AUDIT_SUBJECT_PREFIX}.>")],
            max_age,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        },
    )
    .await
}

/// A record on its way to the stream.
#[derive(Debug)]
struct Queued {
    /// The record.
    record: AuditRecord,
    /// Told `true` once the stream acknowledged the record; dropped (read as `false`) when the
    /// publisher stops first.
    stored: Option<oneshot::Sender<bool>>,
}

/// Sends records to the audit publisher.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Queued>,
    metrics: Arc<Metrics>,
}

impl AuditSink {
    /// Queues a record without waiting; counts it as dropped if the queue is full.
    pub fn record(&self, record: AuditRecord) {
        if self
            .tx
            .try_send(Queued {
                record,
                stored: None,
            })
            .is_err()
        {
            self.metrics.audit_dropped.inc();
        }
    }

    /// Queues a record and waits (at most [`STORED_WAIT`]) until the stream has stored it, after
    /// every record queued before it. `false`: not stored in time (the record stays queued),
    /// the queue was full (dropped), or the controller is stopping — do not act on it.
    pub async fn record_stored(&self, record: AuditRecord) -> bool {
        self.record_stored_within(record, STORED_WAIT).await
    }

    async fn record_stored_within(&self, record: AuditRecord, wait: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let queued = Queued {
            record,
            stored: Some(tx),
        };
        if self.tx.try_send(queued).is_err() {
            self.metrics.audit_dropped.inc();
            return false;
        }
        matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(true)))
    }
}

/// Starts the publisher task; returns the sink and the task.
pub fn spawn(
    js: jetstream::Context,
    controller: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let subject = format!("{AUDIT_SUBJECT_PREFIX}.{controller}");
    let boot = Utc::now().timestamp_micros();
    let publish = move |n: u64, body: axum::body::Bytes| {
        let (js, subject) = (js.clone(), subject.clone());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{controller}-{boot}-{n}").as_str());
        async move {
            match js.publish_with_headers(subject, headers, body).await {
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
            }
        }
    };
    start(publish, metrics, shutdown)
}

/// The publisher around `publish(n, body)`, which sends the `n`th record and answers whether the
/// stream stored it (called again with the same `n` until it does).
pub(super) fn start<P, F>(
    publish: P,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (AuditSink, tokio::task::JoinHandle<()>)
where
    P: Fn(u64, axum::body::Bytes) -> F + Send + 'static,
    F: Future<Output = bool> + Send,
{
    let (tx, mut rx) = mpsc::channel::<Queued>(4096);
    let sink = AuditSink {
        tx,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(async move {
        let mut n: u64 = 0;
        loop {
            let queued = tokio::select! {
                r = rx.recv() => match r { Some(r) => r, None => break },
                _ = shutdown.cancelled() => break,
            };
            n += 1;
            let Ok(body) = serde_json::to_vec(&queued.record) else {
                continue;
            };
            let body = axum::body::Bytes::from(body);
            let mut backoff = Duration::from_millis(100);
            while !publish(n, body.clone()).await {
                metrics.audit_errors.inc();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            if let Some(stored) = queued.stored {
                // The waiter may have given up (timed out); the record is stored all the same.
                let _ = stored.send(true);
            }
        }
    });
    (sink, task)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn rec(i: u64) -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            controller: "c1".into(),
            role: "leader",
            epoch: Some(i),
            event: serde_json::json!({"kind": "test", "i": i}),
        }
    }

    /// A stream that stores what it is sent while `up`, and remembers the order.
    fn fake_stream(
        up: Arc<AtomicBool>,
        stored: Arc<Mutex<Vec<u64>>>,
    ) -> impl Fn(u64, axum::body::Bytes) -> std::future::Ready<bool> + Send + 'static {
        move |n, _body| {
            let ok = up.load(Ordering::SeqCst);
            if ok {
                stored.lock().unwrap().push(n);
            }
            std::future::ready(ok)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waited_record_resolves_after_the_records_queued_before_it_are_stored() {
        let (up, stored) = (Arc::new(AtomicBool::new(true)), Arc::default());
        let stop = CancellationToken::new();
        let (sink, _task) = start(
            fake_stream(up, Arc::clone(&stored)),
            Arc::new(Metrics::new()),
            stop.clone(),
        );
        sink.record(rec(1));
        sink.record(rec(2));
        assert!(sink.record_stored(rec(3)).await);
        assert_eq!(*stored.lock().unwrap(), vec![1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_stream_refuses_the_wait_gives_up_and_the_record_is_stored_later_in_order() {
        let (up, stored) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let (sink, _task) = start(
            fake_stream(Arc::clone(&up), Arc::clone(&stored)),
            metrics.clone(),
            stop.clone(),
        );
        sink.record(rec(1));
        assert!(!sink.record_stored(rec(2)).await, "not stored: no effect");
        assert!(stored.lock().unwrap().is_empty());
        assert!(metrics.audit_errors.get() > 0);
        up.store(true, Ordering::SeqCst);
        assert!(sink.record_stored(rec(3)).await);
        assert_eq!(*stored.lock().unwrap(), vec![1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn on_shutdown_a_waiting_record_is_answered_false_at_once() {
        let (up, stored) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let stop = CancellationToken::new();
        let (sink, task) = start(
            fake_stream(up, stored),
            Arc::new(Metrics::new()),
            stop.clone(),
        );
        let waiting = tokio::spawn({
            let sink = sink.clone();
            async move {
                sink.record_stored_within(rec(1), Duration::from_secs(3600))
                    .await
            }
        });
        tokio::task::yield_now().await;
        stop.cancel();
        task.await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(!waiting.await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
