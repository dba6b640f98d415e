//! The dispatcher: accepts alerts without ever blocking the caller, shapes them, and fans them
//! out to one delivery task per sink.
//!
//! `send` puts a clone on a bounded queue with `try_send`; a full queue drops the alert and
//! counts it. A shaping task runs the [`Shaper`] (de-duplication, bursts) on tokio time and hands
//! each message to the sinks that take its severity at once, again through bounded queues; the
//! shaper itself holds back nothing but folded repeats. Each sink task keeps an [`Outbox`]: up to
//! `in_flight` posts at once (one per subject, in order), the most severe subject first,
//! criticals past the token bucket, and a failed post retried after a doubling backoff without
//! holding back other subjects (until shutdown; then what is still queued gets one attempt each).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::SinkConfig;
use super::outbox::{Entry, Next, Outbox};
use super::render::Message;
use super::shaper::{Shaped, Shaper, Windows};
use super::sink::{DeliveryError, Sink};
use crate::engine::Alert;

/// Queue sizes, windows, timeouts and retries.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Alerts waiting to be shaped.
    pub queue: usize,
    /// Messages waiting per sink.
    pub sink_queue: usize,
    /// De-duplication and burst windows.
    pub windows: Windows,
    /// Limit for one HTTP request.
    pub request_timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Backoff before the first retry; doubled each time.
    pub backoff: Duration,
    /// Posts in flight at once per sink (at most one per subject, which keeps each subject's
    /// order), so a slow request does not hold back alerts about other subjects.
    pub in_flight: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            queue: 1024,
            sink_queue: 64,
            windows: Windows::default(),
            request_timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_secs(1),
            in_flight: 4,
        }
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Alerts taken by `send`.
    pub accepted: u64,
    /// Alerts dropped by `send` because the queue was full or the dispatcher stopped.
    pub overflowed: u64,
    /// Alerts dropped as duplicates.
    pub deduplicated: u64,
    /// Alerts folded into a burst summary.
    pub aggregated: u64,
    /// Messages handed to a sink's queue (per sink).
    pub queued: u64,
    /// Messages dropped because a sink's queue was full.
    pub sink_overflowed: u64,
    /// Messages posted successfully (per sink).
    pub delivered: u64,
    /// Failed attempts that were retried.
    pub retried: u64,
    /// Messages given up on (per sink).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    overflowed: AtomicU64,
    deduplicated: AtomicU64,
    aggregated: AtomicU64,
    queued: AtomicU64,
    sink_overflowed: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The handle the runtime keeps; cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Alert>,
    counters: Arc<Counters>,
}

impl Dispatcher {
    /// Starts the shaping and sink tasks with default tuning. Call inside a tokio runtime; the
    /// tasks stop when `shutdown` is cancelled (open bursts are summarised first).
    pub fn spawn(sinks: Vec<SinkConfig>, shutdown: CancellationToken) -> Self {
        Self::spawn_with(sinks, Tuning::default(), shutdown)
    }

    /// As [`Dispatcher::spawn`], with explicit tuning.
    pub fn spawn_with(sinks: Vec<SinkConfig>, tuning: Tuning, shutdown: CancellationToken) -> Self {
        let counters = Arc::new(Counters::default());
        let client = super::sink::http_client(tuning.request_timeout);
        let mut outlets = Vec::with_capacity(sinks.len());
        for cfg in sinks {
            let sink = Arc::new(Sink::new(cfg, client.clone()));
            let (tx, rx) = mpsc::channel(tuning.sink_queue.max(1));
            tokio::spawn(run_sink(
                sink.clone(),
                rx,
                tuning,
                counters.clone(),
                shutdown.clone(),
            ));
            outlets.push((sink, tx));
        }
        let (tx, rx) = mpsc::channel(tuning.queue.max(1));
        tokio::spawn(run_shaper(
            rx,
            outlets,
            tuning.windows,
            counters.clone(),
            shutdown,
        ));
        Self { tx, counters }
    }

    /// Hands an alert over; never blocks and never fails (a full queue is counted in `stats`).
    pub fn send(&self, alert: &Alert) {
        match self.tx.try_send(alert.clone()) {
            Ok(()) => bump(&self.counters.accepted),
            Err(_) => bump(&self.counters.overflowed),
        }
    }

    /// Resolves once the dispatcher has stopped taking alerts (after `shutdown` was cancelled
    /// and open bursts were summarised and queued to the sinks).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            accepted: g(&c.accepted),
            overflowed: g(&c.overflowed),
            deduplicated: g(&c.deduplicated),
            aggregated: g(&c.aggregated),
            queued: g(&c.queued),
            sink_overflowed: g(&c.sink_overflowed),
            delivered: g(&c.delivered),
            retried: g(&c.retried),
            failed: g(&c.failed),
        }
    }
}

type Outlet = (Arc<Sink>, mpsc::Sender<Message>);

async fn run_shaper(
    mut rx: mpsc::Receiver<Alert>,
    outlets: Vec<Outlet>,
    windows: Windows,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let mut shaper = Shaper::new(windows);
    loop {
        let deadline = shaper.next_deadline();
        let shaped = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                fan_out(shaper.flush(Instant::now()), &outlets, &counters);
                break;
            }
            alert = rx.recv() => match alert {
                Some(a) => shaper.offer(a, Instant::now()),
                None => {
                    fan_out(shaper.flush(Instant::now()), &outlets, &counters);
                    break;
                }
            },
            () = sleep_until(deadline) => shaper.due(Instant::now()),
        };
        fan_out(shaped, &outlets, &counters);
        counters
            .deduplicated
            .store(shaper.deduplicated, Ordering::Relaxed);
        counters
            .aggregated
            .store(shaper.aggregated, Ordering::Relaxed);
    }
    counters
        .deduplicated
        .store(shaper.deduplicated, Ordering::Relaxed);
    counters
        .aggregated
        .store(shaper.aggregated, Ordering::Relaxed);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn fan_out(shaped: Vec<Shaped>, outlets: &[Outlet], counters: &Counters) {
    for s in shaped {
        let m = match s {
            Shaped::Alert(a) => Message::single(Utc::now(), a),
            Shaped::Summary {
                count,
                window,
                severity,
                latest,
            } => Message::summary(Utc::now(), latest, count, window, severity),
        };
        for (sink, tx) in outlets {
            if !sink.accepts(&m) {
                continue;
            }
            if tx.try_send(m.clone()).is_ok() {
                bump(&counters.queued);
            } else {
                bump(&counters.sink_overflowed);
                tracing::warn!(sink = sink.name(), "alert sink queue full; message dropped");
            }
        }
    }
}

async fn run_sink(
    sink: Arc<Sink>,
    mut rx: mpsc::Receiver<Message>,
    tuning: Tuning,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let mut outbox = Outbox::new();
    let mut bucket = sink.bucket(Instant::now());
    let mut flights = JoinSet::new();
    // What each post in flight carries, by task, to free its subject if the task dies.
    let mut posting = HashMap::new();
    let in_flight = tuning.in_flight.max(1);
    let room = tuning.sink_queue.max(1);
    let mut open = true;
    let mut stopping = false;
    loop {
        // Start every post that may start now.
        let wake = loop {
            if flights.len() >= in_flight {
                break None;
            }
            match outbox.next(Instant::now(), &mut bucket) {
                Next::Post(entry) => {
                    let sink = sink.clone();
                    let held = entry.clone();
                    let task = flights.spawn(async move {
                        let outcome = sink.deliver(&entry.message).await;
                        (entry, outcome)
                    });
                    posting.insert(task.id(), held);
                }
                Next::WaitUntil(at) => break Some(at),
                Next::Idle => break None,
            }
        };
        if !open && outbox.is_empty() && flights.is_empty() {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled(), if !stopping => {
                // After shutdown, what is queued gets one attempt each, so a dead sink cannot
                // keep the task alive through its backoff.
                stopping = true;
                outbox.expedite(Instant::now());
            }
            m = rx.recv(), if open && outbox.len() < room => match m {
                Some(m) => outbox.push(m, Instant::now()),
                None => open = false,
            },
            Some(joined) = flights.join_next_with_id(), if !flights.is_empty() => match joined {
                Ok((id, (entry, outcome))) => {
                    posting.remove(&id);
                    settle(entry, outcome, &mut outbox, &tuning, &counters, &shutdown);
                }
                Err(e) => {
                    // Only a bug ends a post this way: count it as failed and free its subject.
                    bump(&counters.failed);
                    tracing::warn!(sink = sink.name(), "alert post task ended abnormally: {e}");
                    if let Some(entry) = posting.remove(&e.id()) {
                        outbox.done(&entry);
                    }
                }
            },
            () = sleep_until(wake) => {}
        }
    }
}

/// Records one post's outcome: delivered, retried after its backoff, or given up.
fn settle(
    entry: Entry,
    outcome: Result<(), DeliveryError>,
    outbox: &mut Outbox,
    tuning: &Tuning,
    counters: &Counters,
    shutdown: &CancellationToken,
) {
    match outcome {
        Ok(()) => {
            bump(&counters.delivered);
            outbox.done(&entry);
        }
        Err(e)
            if e.is_transient() && entry.attempt < tuning.retries && !shutdown.is_cancelled() =>
        {
            bump(&counters.retried);
            // Doubling from `backoff`; `retries` bounds the number, so no cap is needed.
            let backoff = sitewarden_shared::pacing::Backoff::new(tuning.backoff, Duration::MAX)
                .step(entry.attempt.saturating_add(1));
            tracing::debug!("{e}; retry {} in {backoff:?}", entry.attempt + 1);
            outbox.retry(entry, Instant::now() + backoff);
        }
        Err(e) => {
            bump(&counters.failed);
            tracing::warn!(
                "{e}; alert {:?} about {} not delivered",
                entry.message.alert.kind,
                entry.message.alert.subject
            );
            outbox.done(&entry);
        }
    }
}
