//! The webhook deliverer: one worker per endpoint, newest notice first, never blocking the caller.
//!
//! [`WebhookDeliverer::notify`] serializes a notification once and offers it to every endpoint's
//! slot under a mutex; it never waits for the network. A slot holds at most one pending notice:
//! a newer one replaces a queued older one (which is reported as superseded), and a notice that
//! is not newer than what the endpoint has pending, in flight or delivered is ignored. So an
//! endpoint never receives an older `(epoch, generation)` after a newer one.
//!
//! Each endpoint's worker takes the pending notice and POSTs it, signed ([`super::signature`]),
//! retrying transport errors, timeouts, 408, 429 and 5xx with jittered exponential backoff up to
//! `max_attempts`. A newer notice arriving while it waits abandons the old one. Other statuses
//! (a 401 from a receiver with another secret, a 400) are not retried. After giving up, the same
//! notice is accepted again by `notify`, so the runtime can re-offer the latest state later.
//! Every outcome goes to a bounded channel for metrics and audit; when nobody drains it, outcomes
//! are dropped and counted rather than blocking delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use secrecy::ExposeSecret;
use sitewarden_shared::EdgeNotification;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::WebhookEndpoint;
use super::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::outbound::{error_chain, http_client, is_transient_status};

/// Outcomes buffered for the runtime before new ones are dropped (and counted).
pub const OUTCOME_QUEUE: usize = 256;

/// Why a notice did not reach an endpoint. Never carries the URL or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The receiver answered with a non-success status.
    #[error("the receiver answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// No answer within the endpoint's timeout.
    #[error("no answer within {timeout_ms} ms")]
    Timeout {
        /// The timeout, in milliseconds.
        timeout_ms: u64,
    },
    /// The request did not complete (connect refused, reset, TLS).
    #[error("request failed: {cause}")]
    Transport {
        /// What went wrong, without the URL.
        cause: String,
    },
    /// A newer notice replaced this one before it was delivered.
    #[error("superseded by notice ({epoch}, {generation})")]
    Superseded {
        /// The newer notice's epoch.
        epoch: u64,
        /// The newer notice's generation.
        generation: u64,
    },
    /// The deliverer was shut down first.
    #[error("the deliverer stopped")]
    Stopped,
}

impl WebhookError {
    /// Worth another attempt.
    pub fn is_transient(&self) -> bool {
        match self {
            WebhookError::Status { status } => is_transient_status(*status),
            WebhookError::Timeout { .. } | WebhookError::Transport { .. } => true,
            WebhookError::Superseded { .. } | WebhookError::Stopped => false,
        }
    }
}

/// What happened to one notice at one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The endpoint's configured name.
    pub endpoint: String,
    /// The notice's epoch.
    pub epoch: u64,
    /// The notice's generation.
    pub generation: u64,
    /// Requests made (0 when it was superseded while queued).
    pub attempts: u32,
    /// Delivered (a 2xx), or why not.
    pub result: Result<(), WebhookError>,
    /// From [`WebhookDeliverer::notify`] to this outcome, retries included.
    pub latency: Duration,
}

/// One notice, serialized once, as queued for an endpoint.
#[derive(Debug, Clone)]
struct Job {
    key: (u64, u64),
    body: Arc<Vec<u8>>,
    accepted_at: Instant,
}

/// An endpoint's queue and history, guarded by the slot's mutex.
#[derive(Debug, Default)]
struct SlotState {
    /// The next notice to send; only ever newer than everything below.
    pending: Option<Job>,
    /// The notice being sent.
    in_flight: Option<(u64, u64)>,
    /// The newest notice delivered.
    delivered: Option<(u64, u64)>,
    /// The newest notice given up on (accepted again by `notify`).
    failed: Option<(u64, u64)>,
}

impl SlotState {
    /// Queues `job` if it is newer than anything this endpoint has seen, or is the notice it
    /// last gave up on; returns the queued job it replaced, if any.
    fn offer(&mut self, job: Job) -> Result<Option<Job>, ()> {
        let newest = [
            self.pending.as_ref().map(|j| j.key),
            self.in_flight,
            self.delivered,
            self.failed,
        ]
        .into_iter()
        .flatten()
        .max();
        let retry_failed = self.failed == Some(job.key)
            && self.pending.is_none()
            && self.in_flight.is_none()
            && self.delivered.is_none_or(|d| d < job.key);
        if newest.is_none_or(|n| job.key > n) || retry_failed {
            if retry_failed {
                self.failed = None;
            }
            Ok(self.pending.replace(job))
        } else {
            Err(())
        }
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    state: Mutex<SlotState>,
    wake: Notify,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A worker that panicked mid-update leaves consistent-enough state; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands edge notifications to the webhook workers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookDeliverer {
    slots: Vec<Arc<Slot>>,
    outcomes: mpsc::Sender<DeliveryOutcome>,
    dropped_outcomes: Arc<AtomicU64>,
}

impl WebhookDeliverer {
    /// Starts one worker per endpoint; returns the handle and the outcome channel. Call inside
    /// a tokio runtime. Workers stop when `shutdown` is cancelled (a request in flight is
    /// abandoned and reported as [`WebhookError::Stopped`]).
    pub fn spawn(
        endpoints: Vec<WebhookEndpoint>,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::Receiver<DeliveryOutcome>) {
        let (tx, rx) = mpsc::channel(OUTCOME_QUEUE);
        let dropped_outcomes = Arc::new(AtomicU64::new(0));
        let mut slots = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            let slot = Arc::new(Slot {
                name: ep.name.clone(),
                state: Mutex::new(SlotState::default()),
                wake: Notify::new(),
            });
            let worker = Worker {
                client: http_client(ep.timeout),
                endpoint: ep,
                slot: slot.clone(),
                outcomes: tx.clone(),
                dropped_outcomes: dropped_outcomes.clone(),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(worker.run());
            slots.push(slot);
        }
        (
            Self {
                slots,
                outcomes: tx,
                dropped_outcomes,
            },
            rx,
        )
    }

    /// Offers `n` to every endpoint; never blocks. Returns how many endpoints queued it (the
    /// others already have it or something newer).
    pub fn notify(&self, n: &EdgeNotification) -> usize {
        let body = match serde_json::to_vec(n) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::error!("edge notification cannot be serialized: {e}");
                return 0;
            }
        };
        let now = Instant::now();
        let mut queued = 0;
        for slot in &self.slots {
            let job = Job {
                key: n.order_key(),
                body: body.clone(),
                accepted_at: now,
            };
            let offered = slot.lock().offer(job);
            match offered {
                Ok(replaced) => {
                    queued += 1;
                    slot.wake.notify_one();
                    if let Some(old) = replaced {
                        report(
                            &self.outcomes,
                            &self.dropped_outcomes,
                            DeliveryOutcome {
                                endpoint: slot.name.clone(),
                                epoch: old.key.0,
                                generation: old.key.1,
                                attempts: 0,
                                result: Err(WebhookError::Superseded {
                                    epoch: n.epoch,
                                    generation: n.generation,
                                }),
                                latency: now.saturating_duration_since(old.accepted_at),
                            },
                        );
                    }
                }
                Err(()) => tracing::debug!(
                    endpoint = %slot.name,
                    epoch = n.epoch,
                    generation = n.generation,
                    "edge notice not newer than what this webhook has; ignored"
                ),
            }
        }
        queued
    }

    /// The endpoints' names, in configuration order.
    pub fn endpoints(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }

    /// Outcomes dropped because the channel was full.
    pub fn dropped_outcomes(&self) -> u64 {
        self.dropped_outcomes.load(Ordering::Relaxed)
    }
}

fn report(tx: &mpsc::Sender<DeliveryOutcome>, dropped: &AtomicU64, o: DeliveryOutcome) {
    match &o.result {
        Ok(()) => tracing::debug!(
            endpoint = %o.endpoint, epoch = o.epoch, generation = o.generation,
            attempts = o.attempts, latency_ms = o.latency.as_millis() as u64,
            "edge webhook delivered"
        ),
        Err(WebhookError::Superseded { .. }) => tracing::debug!(
            endpoint = %o.endpoint, epoch = o.epoch, generation = o.generation,
            "edge webhook superseded by a newer notice"
        ),
        Err(e) => tracing::warn!(
            endpoint = %o.endpoint, epoch = o.epoch, generation = o.generation,
            attempts = o.attempts, "edge webhook not delivered: {e}"
        ),
    }
    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(o) {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// One endpoint's delivery loop.
struct Worker {
    endpoint: WebhookEndpoint,
    client: reqwest::Client,
    slot: Arc<Slot>,
    outcomes: mpsc::Sender<DeliveryOutcome>,
    dropped_outcomes: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

impl Worker {
    async fn run(self) {
        loop {
            let job = loop {
                {
                    let mut st = self.slot.lock();
                    if let Some(job) = st.pending.take() {
                        st.in_flight = Some(job.key);
                        break job;
                    }
                }
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = self.slot.wake.notified() => {}
                }
            };
            let (attempts, result) = self.deliver(&job).await;
            {
                let mut st = self.slot.lock();
                st.in_flight = None;
                match &result {
                    Ok(()) => {
                        st.delivered = Some(job.key);
                        st.failed = None;
                    }
                    Err(WebhookError::Superseded { .. }) => {}
                    Err(_) => st.failed = Some(job.key),
                }
            }
            let stopped = matches!(result, Err(WebhookError::Stopped));
            report(
                &self.outcomes,
                &self.dropped_outcomes,
                DeliveryOutcome {
                    endpoint: self.endpoint.name.clone(),
                    epoch: job.key.0,
                    generation: job.key.1,
                    attempts,
                    result,
                    latency: job.accepted_at.elapsed(),
                },
            );
            if stopped {
                return;
            }
        }
    }

    /// The newer notice waiting behind the one in flight, if any.
    fn superseded_by(&self) -> Option<WebhookError> {
        self.slot
            .lock()
            .pending
            .as_ref()
            .map(|j| WebhookError::Superseded {
                epoch: j.key.0,
                generation: j.key.1,
            })
    }

    /// Posts `job` until it is delivered, fails for good, is superseded or shutdown comes.
    async fn deliver(&self, job: &Job) -> (u32, Result<(), WebhookError>) {
        let retry = self.endpoint.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = tokio::select! {
                () = self.shutdown.cancelled() => return (attempt, Err(WebhookError::Stopped)),
                r = self.post(job) => r,
            };
            let e = match result {
                Ok(()) => return (attempt, Ok(())),
                Err(e) if e.is_transient() && attempt < retry.max_attempts => e,
                Err(e) => return (attempt, Err(e)),
            };
            tracing::debug!(endpoint = %self.endpoint.name, attempt, "edge webhook: {e}; retrying");
            if let Some(newer) = self.superseded_by() {
                return (attempt, Err(newer));
            }
            let until = Instant::now() + retry.delay(attempt);
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => return (attempt, Err(WebhookError::Stopped)),
                    () = tokio::time::sleep_until(until) => break,
                    () = self.slot.wake.notified() => {
                        if let Some(newer) = self.superseded_by() {
                            return (attempt, Err(newer));
                        }
                    }
                }
            }
        }
    }

    /// One signed POST.
    async fn post(&self, job: &Job) -> Result<(), WebhookError> {
        let ts = Utc::now().timestamp();
        let signature = sign(
            self.endpoint.secret.expose_secret().as_bytes(),
            ts,
            &job.body,
        );
        let resp = self
            .client
            .post(self.endpoint.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(job.body.as_ref().clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    WebhookError::Timeout {
                        timeout_ms: u64::try_from(self.endpoint.timeout.as_millis())
                            .unwrap_or(u64::MAX),
                    }
                } else {
                    WebhookError::Transport {
                        cause: error_chain(e),
                    }
                }
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(WebhookError::Status {
                status: status.as_u16(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(epoch: u64, generation: u64) -> Job {
        Job {
            key: (epoch, generation),
            body: Arc::new(Vec::new()),
            accepted_at: Instant::now(),
        }
    }

    #[tokio::test]
    async fn a_slot_takes_only_newer_notices_and_the_newest_replaces_the_queued_one() {
        let mut st = SlotState::default();
        assert!(st.offer(job(1, 1)).unwrap().is_none());
        let replaced = st.offer(job(1, 3)).unwrap().unwrap();
        assert_eq!(replaced.key, (1, 1));
        assert!(st.offer(job(1, 2)).is_err(), "older than the queued one");
        assert!(st.offer(job(1, 3)).is_err(), "a duplicate");
        st.in_flight = st.pending.take().map(|j| j.key);
        assert!(st.offer(job(1, 3)).is_err(), "already in flight");
        assert!(st.offer(job(0, 99)).is_err(), "an older epoch");
        assert!(st.offer(job(2, 1)).unwrap().is_none(), "a new epoch");
    }

    #[tokio::test]
    async fn a_notice_given_up_on_can_be_offered_again_but_a_delivered_one_cannot() {
        let mut st = SlotState {
            failed: Some((3, 4)),
            ..SlotState::default()
        };
        assert!(st.offer(job(3, 4)).is_ok());
        assert_eq!(st.failed, None);
        st.pending = None;
        st.delivered = Some((3, 4));
        assert!(st.offer(job(3, 4)).is_err());
    }
}
