//! The audit trail: every decision, apply attempt, result, override, drift, leadership change and
//! refused event class, as JSON in the JetStream stream `SITEWARDEN_AUDIT` (file storage).
//!
//! Each record carries a message id (`Nats-Msg-Id`: controller id, process start and a counter),
//! so a publish retried after a lost acknowledgement is stored once. A record the stream does not
//! acknowledge (the bus is down, the stream has no leader yet after a quorum loss) is sent again,
//! with backoff up to 2 s, until it is stored or the controller stops. Records waiting together
//! are sent as one burst before their acknowledgements are awaited (see [`start`]); they are
//! stored in the order made, except that a record the stream refused mid-burst, sent again, may
//! land after records that followed it.
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
use chrono::Utc;
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

/// One audit record as stored: the typed record the API serves and the CLI and the tests read.
pub use sitewarden_api::audit::AuditRecord;

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

/// Records the queue holds whatever the deployment's size.
pub const QUEUE_BASE: usize = 4096;

/// Records the queue holds more per managed name: a mass move queues every name's decision in
/// one engine step, then its intent, settlement and provider report.
pub const QUEUE_PER_NAME: usize = 4;

/// How many records the queue holds for a deployment of `names` managed names: a mass move of
/// every name at once must not find it full (a full queue drops records, and refuses intents:
/// their changes fail and wait for a retry).
pub fn queue_capacity(names: usize) -> usize {
    QUEUE_BASE.saturating_add(names.saturating_mul(QUEUE_PER_NAME))
}

/// Starts the publisher task for a deployment of `names` managed names (its queue holds
/// [`queue_capacity`] records); returns the sink and the task.
pub fn spawn(
    js: jetstream::Context,
    controller: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    names: usize,
) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let capacity = queue_capacity(names);
    let subject = format!("{AUDIT_SUBJECT_PREFIX}.{controller}");
    let boot = Utc::now().timestamp_micros();
    // The send resolves to the acknowledgement still to come: awaiting it later is the point.
    #[allow(clippy::async_yields_async)]
    let send = move |n: u64, body: axum::body::Bytes| {
        let (js, subject) = (js.clone(), subject.clone());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{controller}-{boot}-{n}").as_str());
        async move {
            match js.publish_with_headers(subject, headers, body).await {
                // A lost ack is harmless: the retry carries the same message id.
                Ok(ack) => Box::pin(async move {
                    match tokio::time::timeout(Duration::from_secs(2), ack).await {
                        Ok(Ok(_)) => true,
                        Ok(Err(e)) => {
                            tracing::debug!("audit record not stored: {e}");
                            false
                        }
                        Err(_) => false,
                    }
                }) as Ack,
                Err(e) => {
                    tracing::debug!("audit publish failed: {e}");
                    Box::pin(std::future::ready(false)) as Ack
                }
            }
        }
    };
    start(send, metrics, shutdown, capacity)
}

/// The stream's answer to one sent record: whether it stored it.
pub(super) type Ack = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

/// Records sent before the first acknowledgement is awaited.
const PIPELINE: usize = 64;

/// One record on its way, numbered.
struct Numbered {
    n: u64,
    body: axum::body::Bytes,
    stored: Option<oneshot::Sender<bool>>,
}

/// The publisher around `send(n, body)`, which hands the `n`th record to the connection and
/// answers with the stream's acknowledgement to come (a record is sent again with the same `n`
/// until it is stored).
///
/// Records waiting in the queue go out together, up to [`PIPELINE`], each sent before any
/// acknowledgement is awaited: one round trip for a burst instead of one per record (an intent
/// queued behind a decision's verdict, alert and provider records no longer waits for each of
/// theirs). Acknowledgements are taken in order; a waiter is told its record is stored only
/// once it and every record before it are. From the first record the stream did not store, the
/// rest of the burst is sent again one by one, with backoff, as before.
pub(super) fn start<P, F>(
    send: P,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    capacity: usize,
) -> (AuditSink, tokio::task::JoinHandle<()>)
where
    P: Fn(u64, axum::body::Bytes) -> F + Send + 'static,
    F: Future<Output = Ack> + Send,
{
    let (tx, mut rx) = mpsc::channel::<Queued>(capacity.max(1));
    let sink = AuditSink {
        tx,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(async move {
        let mut n: u64 = 0;
        let mut burst: Vec<Numbered> = Vec::with_capacity(PIPELINE);
        loop {
            let first = tokio::select! {
                r = rx.recv() => match r { Some(r) => r, None => break },
                _ = shutdown.cancelled() => break,
            };
            let mut next = Some(first);
            while let Some(queued) = next.take() {
                n += 1;
                if let Ok(body) = serde_json::to_vec(&queued.record) {
                    burst.push(Numbered {
                        n,
                        body: body.into(),
                        stored: queued.stored,
                    });
                }
                if burst.len() < PIPELINE {
                    next = rx.try_recv().ok();
                }
            }
            let mut acks = Vec::with_capacity(burst.len());
            for r in &burst {
                acks.push(send(r.n, r.body.clone()).await);
            }
            let mut stored = 0;
            for ack in acks {
                if !ack.await {
                    break;
                }
                stored += 1;
            }
            for (i, r) in burst.drain(..).enumerate() {
                if i >= stored {
                    let backoff = sitewarden_shared::pacing::Backoff::new(
                        Duration::from_millis(100),
                        Duration::from_secs(2),
                    );
                    let mut attempt = 0u32;
                    metrics.audit_errors.inc();
                    loop {
                        attempt = attempt.saturating_add(1);
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff.step(attempt)) => {}
                        }
                        if send(r.n, r.body.clone()).await.await {
                            break;
                        }
                        metrics.audit_errors.inc();
                    }
                }
                if let Some(stored) = r.stored {
                    // The waiter may have given up (timed out); the record is stored all the same.
                    let _ = stored.send(true);
                }
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
            role: sitewarden_api::Role::Leader,
            epoch: Some(crate::engine::Epoch(i)),
            event: sitewarden_api::AuditEvent::Runtime(
                sitewarden_api::RuntimeEvent::IntakeRejected {
                    stage: sitewarden_api::audit::RejectStage::Intake,
                    cause: "test".into(),
                    example: format!("record {i}"),
                },
            ),
            seq: None,
        }
    }

    /// A stream that stores what it is sent while `up`, and remembers the order.
    fn fake_stream(
        up: Arc<AtomicBool>,
        stored: Arc<Mutex<Vec<u64>>>,
    ) -> impl Fn(u64, axum::body::Bytes) -> std::future::Ready<Ack> + Send + 'static {
        move |n, _body| {
            let ok = up.load(Ordering::SeqCst);
            if ok {
                stored.lock().unwrap().push(n);
            }
            std::future::ready(Box::pin(std::future::ready(ok)) as Ack)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_mass_move_of_every_name_fits_the_queue_while_the_stream_is_slow() {
        const NAMES: usize = 10_000;
        let (up, stored) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let (sink, _task) = start(
            fake_stream(Arc::clone(&up), Arc::clone(&stored)),
            metrics.clone(),
            stop.clone(),
            queue_capacity(NAMES),
        );
        // Every name's decision in one step, then its intent, settlement and report, while
        // the stream stores nothing yet.
        for n in 0..NAMES * QUEUE_PER_NAME {
            sink.record(rec(n as u64));
        }
        assert_eq!(metrics.audit_dropped.get(), 0, "nothing dropped");
        up.store(true, Ordering::SeqCst);
        assert!(
            sink.record_stored(rec(0)).await,
            "stored in order once it answers"
        );
        assert_eq!(stored.lock().unwrap().len(), NAMES * QUEUE_PER_NAME + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waited_record_resolves_after_the_records_queued_before_it_are_stored() {
        let (up, stored) = (Arc::new(AtomicBool::new(true)), Arc::default());
        let stop = CancellationToken::new();
        let (sink, _task) = start(
            fake_stream(up, Arc::clone(&stored)),
            Arc::new(Metrics::new()),
            stop.clone(),
            QUEUE_BASE,
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
            QUEUE_BASE,
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
            QUEUE_BASE,
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

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_sent_before_its_first_acknowledgement_is_awaited() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let send = {
            let (sent, release) = (Arc::clone(&sent), Arc::clone(&release));
            move |n: u64, _body: axum::body::Bytes| {
                sent.lock().unwrap().push(n);
                let release = Arc::clone(&release);
                std::future::ready(Box::pin(async move {
                    release.acquire().await.map(|p| p.forget()).is_ok()
                }) as Ack)
            }
        };
        let stop = CancellationToken::new();
        let (sink, _task) = start(send, Arc::new(Metrics::new()), stop.clone(), QUEUE_BASE);
        sink.record(rec(1));
        sink.record(rec(2));
        sink.record(rec(3));
        for _ in 0..100 {
            if sent.lock().unwrap().len() == 3 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // All three went out on one round trip, with no acknowledgement given yet.
        assert_eq!(*sent.lock().unwrap(), vec![1, 2, 3]);
        release.add_permits(4);
        assert!(sink.record_stored(rec(4)).await);
        assert_eq!(*sent.lock().unwrap(), vec![1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_refused_mid_burst_is_sent_again_and_holds_back_the_waiters_after_it() {
        // The stream refuses record 2 once; 1 and 3 are stored at the first try.
        let stored = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicBool::new(false));
        let send = {
            let (stored, refused) = (Arc::clone(&stored), Arc::clone(&refused));
            move |n: u64, _body: axum::body::Bytes| {
                let ok = n != 2 || refused.swap(true, Ordering::SeqCst);
                if ok {
                    stored.lock().unwrap().push(n);
                }
                std::future::ready(Box::pin(std::future::ready(ok)) as Ack)
            }
        };
        let stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let (sink, _task) = start(send, metrics.clone(), stop.clone(), QUEUE_BASE);
        sink.record(rec(1));
        sink.record(rec(2));
        assert!(sink.record_stored(rec(3)).await);
        // 2 was stored (on its second try) before 3's waiter was answered; 3 went out again
        // too and the stream's duplicate window keeps it once.
        let order = stored.lock().unwrap().clone();
        assert_eq!(order.first(), Some(&1));
        assert!(order.contains(&2), "{order:?}");
        assert!(metrics.audit_errors.get() >= 1);
    }
}
