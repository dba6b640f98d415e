//! The publisher: the single place that numbers events and hands them to NATS.
//!
//! Every producer (probes, collectors, the push endpoint, the heartbeat) sends its event here
//! over a channel. The publisher assigns the per-agent sequence number at the moment it publishes,
//! so sequence order is publish order and the controller can drop anything older than what it has
//! seen. The sequence starts at the process start time in microseconds since the Unix epoch, so a
//! restarted agent continues above its previous numbers without persisting anything.
//!
//! While the bus is unreachable the publisher keeps only the latest event per subject in an
//! outbox (memory stays bounded by the number of checks) and counts every superseded event as
//! dropped. When the connection returns, the outbox is published first, then live traffic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use serde::Serialize;
use sitewarden_shared::event::MAX_EVENT_BYTES;
use sitewarden_shared::{CollectOutcome, DbCopySnapshot, Heartbeat, Observation, subject};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// An event waiting to be published.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A probe result.
    Observation(Box<Observation>),
    /// A database-copy snapshot.
    DbCopy(Box<DbCopySnapshot>),
    /// A heartbeat; the publisher fills in `buffered` and `dropped_total`.
    Heartbeat(Box<Heartbeat>),
}

impl Outgoing {
    fn subject(&self) -> String {
        match self {
            Outgoing::Observation(o) => {
                subject::observation(&o.site, &o.agent, &o.server, &o.check)
            }
            Outgoing::DbCopy(d) => subject::dbcopy(&d.site, &d.agent, &d.source),
            Outgoing::Heartbeat(h) => subject::heartbeat(&h.site, &h.agent),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Outgoing::Observation(_) => "observation",
            Outgoing::DbCopy(_) => "dbcopy",
            Outgoing::Heartbeat(_) => "heartbeat",
        }
    }

    fn encode(
        &mut self,
        seq: u64,
        buffered: u64,
        dropped: u64,
    ) -> Result<Vec<u8>, serde_json::Error> {
        fn json<T: Serialize>(t: &T) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(t)
        }
        match self {
            Outgoing::Observation(o) => {
                o.seq = seq;
                json(o)
            }
            Outgoing::DbCopy(d) => {
                d.seq = seq;
                json(d)
            }
            Outgoing::Heartbeat(h) => {
                h.seq = seq;
                h.buffered = buffered;
                h.dropped_total = dropped;
                json(h)
            }
        }
    }
}

/// Counters the heartbeat and `/metrics` read.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Events held in the outbox right now.
    pub buffered: AtomicU64,
    /// Events superseded in the outbox since start.
    pub dropped: AtomicU64,
    /// Events handed to NATS since start.
    pub published: AtomicU64,
}

/// Sends events to the publisher task.
pub type PublishSender = mpsc::Sender<Outgoing>;

/// The first sequence number of this process.
pub fn initial_seq() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros())
        .unwrap_or(1)
        .max(1)
}

/// Runs until `shutdown`; then publishes what it can and flushes.
pub async fn run(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    stats: Arc<PublishStats>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut seq = initial_seq();
    let mut outbox: BTreeMap<String, Outgoing> = BTreeMap::new();
    let mut check = tokio::time::interval(Duration::from_millis(200));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let connected = |c: &async_nats::Client| c.connection_state() == State::Connected;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                if connected(&client) && outbox.is_empty() {
                    publish(&client, msg, &mut seq, &stats, &metrics).await;
                } else {
                    let key = msg.subject();
                    if outbox.insert(key, msg).is_some() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        metrics.dropped.inc();
                    }
                    stats.buffered.store(outbox.len() as u64, Ordering::Relaxed);
                    if connected(&client) {
                        drain(&client, &mut outbox, &mut seq, &stats, &metrics).await;
                    }
                }
            }
            _ = check.tick() => {
                metrics.nats_connected.set(i64::from(connected(&client)));
                if connected(&client) && !outbox.is_empty() {
                    tracing::info!(events = outbox.len(), "NATS back; publishing buffered results");
                    drain(&client, &mut outbox, &mut seq, &stats, &metrics).await;
                }
            }
        }
    }
    // Publish what is still queued, then flush, bounded in time.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        outbox.insert(msg.subject(), msg);
    }
    if connected(&client) {
        drain(&client, &mut outbox, &mut seq, &stats, &metrics).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    }
}

async fn drain(
    client: &async_nats::Client,
    outbox: &mut BTreeMap<String, Outgoing>,
    seq: &mut u64,
    stats: &PublishStats,
    metrics: &Metrics,
) {
    let mut items: Vec<Outgoing> = std::mem::take(outbox).into_values().collect();
    // Oldest observation first, so the newest result of every check is also the last published.
    items.sort_by_key(|m| match m {
        Outgoing::Observation(o) => o.observed_at,
        Outgoing::DbCopy(d) => d.observed_at,
        Outgoing::Heartbeat(h) => h.observed_at,
    });
    for msg in items {
        publish(client, msg, seq, stats, metrics).await;
    }
    stats.buffered.store(0, Ordering::Relaxed);
}

async fn publish(
    client: &async_nats::Client,
    mut msg: Outgoing,
    seq: &mut u64,
    stats: &PublishStats,
    metrics: &Metrics,
) {
    let subject = msg.subject();
    let kind = msg.kind();
    let buffered = stats.buffered.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    *seq += 1;
    let mut encoded = msg.encode(*seq, buffered, dropped);
    if let (Ok(payload), Outgoing::DbCopy(d)) = (&encoded, &mut msg)
        && payload.len() > MAX_EVENT_BYTES
    {
        let text = format!(
            "snapshot of {} copies is {} bytes, above the {MAX_EVENT_BYTES}-byte event limit; \
             split the DAG over several [[dbcopy]] collectors",
            d.copies.len(),
            payload.len()
        );
        tracing::error!(source = %d.source, "{text}");
        d.copies.clear();
        d.outcome = CollectOutcome::Error;
        d.error = Some(text);
        encoded = msg.encode(*seq, buffered, dropped);
    }
    match encoded {
        Ok(payload) if payload.len() > MAX_EVENT_BYTES => {
            tracing::error!(
                "{kind} event of {} bytes is too large to publish",
                payload.len()
            );
            metrics.publish_errors.inc();
        }
        Ok(payload) => match client.publish(subject, payload.into()).await {
            Ok(()) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
                metrics.published(kind);
            }
            Err(e) => {
                tracing::warn!("publish failed: {e}");
                metrics.publish_errors.inc();
            }
        },
        Err(e) => tracing::error!("cannot encode {kind} event: {e}"),
    }
}
