//! The follower task: edge notifications in, HAProxy server states out.
//!
//! At start it subscribes to `sitewarden.v1.edge.notice` and then reads the latest notification
//! from KV (`sitewarden-edge`/`latest`), so it is correct at once and misses nothing in between;
//! a missing bucket or key just means waiting for a notification. A notification that is not
//! newer by `(epoch, generation)` than the last one accepted is ignored. Each accepted one is
//! planned per backend ([`super::plan`]) and applied through the Runtime API: read the servers'
//! state, set only those that differ, read again to verify. A backend whose update failed is
//! retried with backoff (1 s doubling up to the resync interval). Every resync interval, and
//! whenever the NATS connection comes back, the KV is read again (a notification published while
//! we were away is picked up) and every backend is re-checked, undoing drift such as a HAProxy
//! reload that reset the states.

use sitewarden_shared::pacing::Backoff;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use sitewarden_shared::edge::{KV_BUCKET, KV_KEY, SUBJECT};
use sitewarden_shared::{EdgeNotification, SiteId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{EdgeSettings, HaproxyTarget};
use super::plan::{Plan, plan};
use super::runtime_api::{AdminState, RuntimeApi};
use crate::metrics::Metrics;

/// How long a KV read may take before it is given up until the next resync.
const KV_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay of a failed backend update.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How often the NATS connection is looked at for a reconnect.
const CONNECTION_POLL: Duration = Duration::from_millis(500);

/// Where a notification came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The edge subject.
    Bus,
    /// The KV bucket's `latest` key.
    Kv,
}

/// Why a backend is being updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A new notification.
    Notice,
    /// A periodic or reconnect re-check, or a retry.
    Recheck,
}

/// One steered backend and what it should look like.
#[derive(Debug)]
struct Backend {
    target: HaproxyTarget,
    api: RuntimeApi,
    /// The active site and wanted states from the last notification that named one.
    wanted: Option<(SiteId, BTreeMap<String, AdminState>)>,
    /// When the last update failed: when to retry and the delay after that.
    retry: Option<(Instant, u32)>,
}

/// Applies edge notifications to HAProxy backends; the state behind [`run`].
#[derive(Debug)]
pub struct Follower {
    backends: Vec<Backend>,
    last: Option<(u64, u64)>,
    max_retry: Duration,
    metrics: Arc<Metrics>,
}

impl Follower {
    /// A follower for `settings` that has applied nothing yet.
    pub fn new(settings: &EdgeSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            backends: settings
                .haproxy
                .iter()
                .map(|t| Backend {
                    api: RuntimeApi::new(&t.socket),
                    target: t.clone(),
                    wanted: None,
                    retry: None,
                })
                .collect(),
            last: None,
            max_retry: settings.resync_interval.max(FIRST_RETRY),
            metrics,
        }
    }

    /// The `(epoch, generation)` of the last accepted notification.
    pub fn last_accepted(&self) -> Option<(u64, u64)> {
        self.last
    }

    /// Takes `n` (from `origin`) if it is newer than the last accepted one and applies it to
    /// every backend. Returns whether it was accepted.
    pub async fn offer(&mut self, n: &EdgeNotification, origin: Origin) -> bool {
        if origin == Origin::Kv && self.last == Some(n.order_key()) {
            // The KV re-read found what we already applied: the normal case, not worth a count.
            return false;
        }
        if self.last.is_some_and(|last| n.order_key() <= last) {
            tracing::debug!(
                epoch = n.epoch,
                generation = n.generation,
                last = ?self.last,
                ?origin,
                "edge notification not newer than the last applied; ignored"
            );
            self.metrics.edge.notice("not_newer");
            return false;
        }
        self.last = Some(n.order_key());
        self.metrics.edge.notice("accepted");
        self.metrics
            .edge
            .epoch
            .set(i64::try_from(n.epoch).unwrap_or(i64::MAX));
        self.metrics
            .edge
            .generation
            .set(i64::try_from(n.generation).unwrap_or(i64::MAX));
        tracing::info!(
            epoch = n.epoch,
            generation = n.generation,
            controller = %n.controller,
            ?origin,
            "edge notification accepted"
        );
        for b in &mut self.backends {
            match plan(&b.target, n) {
                Plan::FailStatic(why) => {
                    tracing::warn!(
                        backend = %b.target.backend,
                        "changing nothing (fail static): {why}"
                    );
                    self.metrics.edge.backend(&b.target.backend, "fail_static");
                }
                Plan::Apply { site, states } => {
                    b.wanted = Some((site, states));
                    update(b, Why::Notice, &self.metrics, self.max_retry).await;
                }
            }
        }
        true
    }

    /// Re-checks every backend that has wanted states (all, or only those due for a retry),
    /// setting back any server that drifted.
    pub async fn recheck(&mut self, only_due: bool) {
        let now = Instant::now();
        for b in &mut self.backends {
            let due = b.retry.is_some_and(|(at, _)| at <= now);
            if b.wanted.is_some() && (!only_due || due) {
                update(b, Why::Recheck, &self.metrics, self.max_retry).await;
            }
        }
    }
}

/// Brings `b`'s servers to their wanted states and verifies them.
async fn update(b: &mut Backend, why: Why, metrics: &Metrics, max_retry: Duration) {
    let Some((site, wanted)) = &b.wanted else {
        return;
    };
    let backend = b.target.backend.as_str();
    let result = async {
        let observed = b.api.servers_state(backend).await.map_err(|e| vec![e.to_string()])?;
        let have: BTreeMap<String, AdminState> =
            observed.iter().map(|s| (s.name.clone(), s.admin)).collect();
        let mut errors = Vec::new();
        let mut changed = Vec::new();
        for (server, want) in wanted {
            match have.get(server) {
                None => errors.push(format!(
                    "server {backend}/{server} does not exist in HAProxy; fix [[edge.haproxy]] servers or the HAProxy config"
                )),
                Some(h) if h == want => {}
                Some(_) => match b.api.set_state(backend, server, *want).await {
                    Ok(()) => changed.push(format!("{server}={want}")),
                    Err(e) => errors.push(e.to_string()),
                },
            }
        }
        let verified = if changed.is_empty() {
            observed
        } else {
            b.api.servers_state(backend).await.map_err(|e| vec![e.to_string()])?
        };
        for s in &verified {
            if let Some(want) = wanted.get(&s.name) {
                metrics.edge.server_ready(backend, &s.name, s.admin == AdminState::Ready);
                if s.admin != *want && have.contains_key(&s.name) {
                    errors.push(format!(
                        "server {backend}/{} is {} (admin bits {:#x}) after setting {want}",
                        s.name, s.admin, s.admin_bits
                    ));
                }
            }
        }
        if errors.is_empty() { Ok(changed) } else { Err(errors) }
    }
    .await;
    match result {
        Ok(changed) => {
            if !changed.is_empty() {
                if why == Why::Recheck {
                    tracing::warn!(backend, %site, "HAProxy state had drifted; restored {changed:?}");
                    metrics.edge.backend(backend, "drift");
                } else {
                    tracing::info!(backend, %site, "HAProxy backend follows the active site: {changed:?}");
                }
            }
            if b.retry.is_some() {
                tracing::info!(backend, %site, "HAProxy backend updated after earlier failures");
            }
            b.retry = None;
            metrics.edge.backend(backend, "ok");
        }
        Err(errors) => {
            let attempt = b.retry.map_or(1, |(_, n)| n.saturating_add(1));
            let delay = Backoff::new(FIRST_RETRY, max_retry).step(attempt);
            if b.retry.is_none() {
                tracing::warn!(backend, %site, "HAProxy backend not updated: {}; retrying", errors.join("; "));
            } else {
                tracing::debug!(backend, %site, "HAProxy backend still not updated: {}", errors.join("; "));
            }
            b.retry = Some((Instant::now() + delay, attempt));
            metrics.edge.backend(backend, "error");
        }
    }
}

/// The latest notification in KV; `None` (logged at debug) when there is no bucket, no key,
/// or the bus does not answer in time.
async fn read_kv(js: &async_nats::jetstream::Context) -> Option<EdgeNotification> {
    let store = match tokio::time::timeout(KV_TIMEOUT, js.get_key_value(KV_BUCKET)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("no edge KV bucket {KV_BUCKET} yet ({e}); waiting for a notification");
            return None;
        }
        Err(_) => {
            tracing::debug!("edge KV bucket {KV_BUCKET}: no answer within {KV_TIMEOUT:?}");
            return None;
        }
    };
    let bytes = match tokio::time::timeout(KV_TIMEOUT, store.get(KV_KEY)).await {
        Ok(Ok(Some(b))) => b,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!("edge KV {KV_BUCKET}/{KV_KEY}: {e}");
            return None;
        }
        Err(_) => return None,
    };
    match EdgeNotification::decode(&bytes) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!("edge KV {KV_BUCKET}/{KV_KEY}: {e}");
            None
        }
    }
}

/// Subscribes to the edge subject, retrying until it works or shutdown.
async fn subscribe(
    client: &async_nats::Client,
    shutdown: &CancellationToken,
) -> Option<async_nats::Subscriber> {
    let backoff = Backoff::new(FIRST_RETRY, Duration::from_secs(10));
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let delay = backoff.step(attempt);
        match client.subscribe(SUBJECT).await {
            Ok(s) => return Some(s),
            Err(e) => tracing::warn!("cannot subscribe to {SUBJECT}: {e}; retrying in {delay:?}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Follows edge notifications and steers the configured HAProxy backends until `shutdown`.
///
/// `js` reads the `sitewarden-edge` bucket: a context on `client`, under the `[nats]
/// js_api_prefix` of an agent in its own NATS account.
pub async fn run(
    settings: EdgeSettings,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut follower = Follower::new(&settings, metrics.clone());
    // Every successful (re)connect bumps this counter, so even a disconnection shorter than the
    // poll period is noticed (the connection state alone could be Connected at both looks).
    let connects = |c: &async_nats::Client| c.statistics().connects.load(Ordering::Relaxed);
    let mut seen_connects = connects(&client);
    let Some(mut sub) = subscribe(&client, &shutdown).await else {
        return;
    };
    tracing::info!(
        backends = settings.haproxy.len(),
        "following edge notifications on {SUBJECT}"
    );
    // Subscribed first, then the KV: nothing published in between is missed.
    if let Some(n) = read_kv(&js).await {
        follower.offer(&n, Origin::Kv).await;
    }
    let mut resync = tokio::time::interval_at(
        Instant::now() + settings.resync_interval,
        settings.resync_interval,
    );
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(CONNECTION_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            msg = sub.next() => match msg {
                Some(m) => match EdgeNotification::decode(&m.payload) {
                    Ok(n) => {
                        follower.offer(&n, Origin::Bus).await;
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        metrics.edge.notice("invalid");
                    }
                },
                None => {
                    tracing::warn!("edge subscription ended; subscribing again");
                    let Some(s) = subscribe(&client, &shutdown).await else { break };
                    sub = s;
                }
            },
            _ = resync.tick() => {
                if let Some(n) = read_kv(&js).await {
                    follower.offer(&n, Origin::Kv).await;
                }
                follower.recheck(false).await;
            }
            _ = poll.tick() => {
                let now = connects(&client);
                // The first connect may land after start-up's KV read, which then failed.
                if now != seen_connects {
                    tracing::info!("NATS (re)connected; re-reading the latest edge notification");
                    if let Some(n) = read_kv(&js).await {
                        follower.offer(&n, Origin::Kv).await;
                    }
                    follower.recheck(false).await;
                }
                seen_connects = now;
                follower.recheck(true).await;
            }
        }
    }
}
