//! Event intake: agent events from NATS, checked against the contract, turned into engine inputs.
//!
//! Agents publish on core NATS; the controller keeps a JetStream stream `SITEWARDEN_EVENTS` over
//! the three agent subject trees with the last [`EVENTS_HISTORY`] messages per subject, so the
//! recent results of every observer × server × check — enough to rebuild the `fall`/`rise`
//! counters, not just the last outcome — plus every collector's snapshots and every agent's
//! heartbeats are always on disk, within the byte and message caps of [`super::bus_budget`]
//! (oldest dropped first, so a flooding agent cannot fill the store). Intake receives live events on a core NATS subscription and
//! replays the stream at start (a controller that starts or takes over has the current health
//! picture at once, no probe interval is waited for) and after every reconnect (to fill the
//! gap); see [`run`].
//!
//! Before an event reaches the engine it must fit the contract: at most [`MAX_EVENT_BYTES`],
//! a v1 subject, a payload that decodes, and a subject whose site and agent match the payload's.
//! Refusals are counted by cause and logged once per cause; the engine then applies its own
//! checks (known agent, sequence order, clock skew).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;
use sitewarden_api::audit::{RejectStage, RuntimeEvent};
use sitewarden_shared::event::MAX_EVENT_BYTES;
use sitewarden_shared::subject::{self, ParsedSubject};
use sitewarden_shared::{AgentId, DbCopySnapshot, Event, Heartbeat, Observation};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus_budget::{EventsCaps, ensure_capped};
use super::events_watch::PublisherTally;
use super::metrics::Metrics;
use crate::engine::Input;

/// Name of the stream holding the latest agent events.
pub const EVENTS_STREAM: &str = "SITEWARDEN_EVENTS";
/// Events kept per subject: at least the largest `fall`/`rise` a deployment uses, so a replay
/// rebuilds consecutive-result counters exactly (config refuses larger `fall`/`rise`).
pub const EVENTS_HISTORY: i64 = 10;

/// Expiry of the ordered consumer's pull requests; its idle heartbeat is half of it.
pub const ORDERED_PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Why intake refused a message before the engine saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IntakeReject {
    /// Larger than `MAX_EVENT_BYTES`.
    TooLarge,
    /// The subject is not a v1 agent-event subject.
    BadSubject,
    /// The payload is not a valid event of the subject's type.
    Undecodable,
    /// The payload's site or agent differs from the subject's.
    SubjectMismatch,
}

impl IntakeReject {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            IntakeReject::TooLarge => "too_large",
            IntakeReject::BadSubject => "bad_subject",
            IntakeReject::Undecodable => "undecodable",
            IntakeReject::SubjectMismatch => "subject_mismatch",
        }
    }
}

/// Checks one message against the contract and decodes it.
pub fn decode(subject: &str, payload: &[u8]) -> Result<Input, (IntakeReject, String)> {
    if payload.len() > MAX_EVENT_BYTES {
        return Err((
            IntakeReject::TooLarge,
            format!("{} bytes on {subject}", payload.len()),
        ));
    }
    let parsed = subject::parse(subject).map_err(|e| (IntakeReject::BadSubject, e.to_string()))?;
    let bad = |e: serde_json::Error| (IntakeReject::Undecodable, format!("{subject}: {e}"));
    let (input, site, agent) = match &parsed {
        ParsedSubject::Observation {
            site,
            agent,
            server,
            check,
        } => {
            let o: Observation = serde_json::from_slice(payload).map_err(bad)?;
            if &o.server != server || &o.check != check {
                return Err((
                    IntakeReject::SubjectMismatch,
                    format!("{subject}: payload names {}/{}", o.server, o.check),
                ));
            }
            let (s, a) = (o.meta().site.clone(), o.meta().agent.clone());
            (Input::Observation(o), (site, s), (agent, a))
        }
        ParsedSubject::DbCopy {
            site,
            agent,
            source,
        } => {
            let d: DbCopySnapshot = serde_json::from_slice(payload).map_err(bad)?;
            if &d.source != source {
                return Err((
                    IntakeReject::SubjectMismatch,
                    format!("{subject}: payload source {}", d.source),
                ));
            }
            let (s, a) = (d.site.clone(), d.agent.clone());
            (Input::DbCopy(d), (site, s), (agent, a))
        }
        ParsedSubject::Heartbeat { site, agent } => {
            let h: Heartbeat = serde_json::from_slice(payload).map_err(bad)?;
            let (s, a) = (h.site.clone(), h.agent.clone());
            (Input::Heartbeat(h), (site, s), (agent, a))
        }
    };
    if site.0 != &site.1 || agent.0 != &agent.1 {
        return Err((
            IntakeReject::SubjectMismatch,
            format!(
                "{subject}: payload claims site {} agent {}",
                site.1, agent.1
            ),
        ));
    }
    Ok(input)
}

/// The events stream's configuration, with the caps of [`EventsCaps`]: at most
/// `caps.max_bytes` and `caps.max_messages` in all, oldest dropped first, so a flooding publisher
/// evicts old events instead of taking the store the lease and the state need.
pub fn stream_config(
    replicas: usize,
    max_age: Duration,
    caps: &EventsCaps,
) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: EVENTS_STREAM.into(),
        description: Some(
            "sitewarden: latest agent event per subject (health picture for a starting controller)"
                .into(),
        ),
        subjects: vec![
            subject::ALL_OBSERVATIONS.into(),
            subject::ALL_DBCOPY.into(),
            subject::ALL_HEARTBEATS.into(),
        ],
        max_messages_per_subject: caps.per_subject,
        max_messages: caps.max_messages,
        max_bytes: caps.max_bytes,
        max_age,
        max_message_size: caps.max_message_size,
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::Old,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Creates the events stream if it is missing, or brings an existing one's caps up to date.
pub async fn ensure_stream(
    js: &jetstream::Context,
    replicas: usize,
    max_age: Duration,
    caps: &EventsCaps,
) -> Result<(), String> {
    ensure_capped(js, stream_config(replicas, max_age, caps)).await
}

/// How long a replay from the events stream may take before intake gives up on it and goes on
/// with live events alone (a replay normally takes milliseconds).
pub const REPLAY_DEADLINE: Duration = Duration::from_secs(10);
/// How often intake checks whether the NATS client reconnected.
const RECONNECT_POLL: Duration = Duration::from_millis(250);
/// Live events held back while a replay runs; beyond this the oldest are dropped (counted).
const MAX_HELD: usize = 200_000;
/// A catch-up replay after a reconnect starts this long before the last live event received.
const CATCH_UP_OVERLAP: Duration = Duration::from_secs(2);

/// Reads events until `shutdown`, sending accepted ones to the engine.
///
/// Live events come from a core NATS subscription on the three agent subject trees: it follows
/// the client through reconnects to any surviving node at once and has no server-side state to
/// lose with a node (an ephemeral JetStream consumer lives on one node, and recovering one
/// after its node died took async-nats up to a minute). The events stream serves replays only:
/// at start, everything it retains; after every reconnect, what arrived since shortly before the
/// last live event, so the gap is filled. Live events are held back while a replay runs and
/// released after it, so each agent's events reach the engine in order; replayed events an
/// agent already delivered live are skipped here, not reported by the engine as replays.
pub async fn run(
    js: jetstream::Context,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    audit: RejectAudit,
    publishers: Arc<PublisherTally>,
    shutdown: CancellationToken,
) {
    let client = js.client();
    let mut intake = Intake {
        tx,
        metrics,
        audit,
        logged: BTreeSet::new(),
        forwarded: HashMap::new(),
    };
    let mut live = loop {
        match subscribe(&client).await {
            Ok(live) => break live,
            Err(e) => {
                tracing::warn!("cannot subscribe to agent events: {e}; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let stats = client.statistics();
    let mut connects = stats.connects.load(Ordering::Relaxed);
    let mut replay_from: Option<DeliverPolicy> = Some(DeliverPolicy::All);
    let mut last_live: Option<OffsetDateTime> = None;
    let mut poll = tokio::time::interval(RECONNECT_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(policy) = replay_from.take() {
            let held = tokio::select! {
                _ = shutdown.cancelled() => return,
                held = intake.replay(&js, policy, &mut live) => held,
            };
            for m in held {
                if !intake.forward(&m.subject, &m.payload, false).await {
                    return;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = poll.tick() => {
                let now = stats.connects.load(Ordering::Relaxed);
                if now != connects {
                    connects = now;
                    intake.metrics.intake_catch_ups.inc();
                    replay_from = Some(catch_up_policy(last_live));
                    tracing::info!("NATS reconnected; catching up on agent events from the stream");
                }
            }
            m = live.next() => {
                let Some(m) = m else {
                    tracing::error!("agent event subscription ended; intake stops");
                    return;
                };
                last_live = Some(OffsetDateTime::now_utc());
                publishers.count(m.subject.as_str(), m.payload.len());
                if !intake.forward(&m.subject, &m.payload, false).await {
                    return;
                }
            }
        }
    }
}

/// Where a catch-up replay starts: shortly before the last live event, or at the beginning.
fn catch_up_policy(last_live: Option<OffsetDateTime>) -> DeliverPolicy {
    match last_live {
        Some(t) => DeliverPolicy::ByStartTime {
            start_time: t - CATCH_UP_OVERLAP,
        },
        None => DeliverPolicy::All,
    }
}

/// One subscription over the three agent subject trees (not `sitewarden.v1.>`, which also
/// carries the controller's own edge notices).
async fn subscribe(
    client: &async_nats::Client,
) -> Result<futures::stream::SelectAll<async_nats::Subscriber>, String> {
    let mut all = futures::stream::SelectAll::new();
    for s in [
        subject::ALL_OBSERVATIONS,
        subject::ALL_DBCOPY,
        subject::ALL_HEARTBEATS,
    ] {
        all.push(client.subscribe(s).await.map_err(|e| e.to_string())?);
    }
    Ok(all)
}

/// Records the first refusal of each cause in the audit trail (the runtime adds controller, role
/// and epoch).
pub type RejectAudit = Arc<dyn Fn(RuntimeEvent) + Send + Sync>;

struct Intake {
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    audit: RejectAudit,
    logged: BTreeSet<IntakeReject>,
    /// Per agent, the highest sequence number passed on to the engine.
    forwarded: HashMap<AgentId, u64>,
}

impl Intake {
    /// Checks and passes on one message; false when the engine is gone.
    async fn forward(&mut self, subject: &str, payload: &[u8], replayed: bool) -> bool {
        match decode(subject, payload) {
            Ok(input) => {
                if let Some((agent, seq)) = agent_seq(&input) {
                    let last = self.forwarded.entry(agent.clone()).or_insert(0);
                    if replayed && seq <= *last {
                        self.metrics.replay_skipped.inc();
                        return true;
                    }
                    *last = (*last).max(seq);
                }
                self.metrics.events_accepted.inc();
                self.tx.send(input).await.is_ok()
            }
            Err((cause, text)) => {
                self.metrics.rejected(cause.label());
                if self.logged.insert(cause) {
                    tracing::warn!(
                        cause = cause.label(),
                        "refused an event (logged once per cause): {text}"
                    );
                    (self.audit)(RuntimeEvent::IntakeRejected {
                        stage: RejectStage::Intake,
                        cause: cause.label().to_owned(),
                        example: text,
                    });
                }
                true
            }
        }
    }

    /// Replays the events stream from `policy` up to what it held when the replay began, while
    /// holding back live events; returns the held live events, oldest first.
    async fn replay(
        &mut self,
        js: &jetstream::Context,
        policy: DeliverPolicy,
        live: &mut futures::stream::SelectAll<async_nats::Subscriber>,
    ) -> VecDeque<async_nats::Message> {
        let mut held = VecDeque::new();
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(REPLAY_DEADLINE, async {
            let mut stream = js
                .get_stream(EVENTS_STREAM)
                .await
                .map_err(|e| format!("cannot open stream {EVENTS_STREAM}: {e}"))?;
            let last = stream
                .info()
                .await
                .map_err(|e| format!("cannot read stream {EVENTS_STREAM}: {e}"))?
                .state
                .last_sequence;
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    filter_subject: "sitewarden.v1.>".into(),
                    deliver_policy: policy,
                    max_expires: ORDERED_PULL_EXPIRES,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("cannot create a replay consumer: {e}"))?;
            if consumer.cached_info().num_pending == 0 {
                return Ok(0u64);
            }
            let mut messages = consumer
                .messages()
                .await
                .map_err(|e| format!("cannot read the replay: {e}"))?;
            let mut n = 0u64;
            loop {
                tokio::select! {
                    m = messages.next() => {
                        let m = match m {
                            None => return Err("replay ended early".to_owned()),
                            Some(Err(e)) => return Err(format!("replay interrupted: {e}")),
                            Some(Ok(m)) => m,
                        };
                        let (seq, pending) = m
                            .info()
                            .map(|i| (i.stream_sequence, i.pending))
                            .unwrap_or((u64::MAX, 0));
                        n += 1;
                        if !self.forward(m.subject.as_str(), &m.payload, true).await {
                            return Ok(n);
                        }
                        if seq >= last || pending == 0 {
                            return Ok(n);
                        }
                    }
                    Some(m) = live.next() => {
                        if held.len() == MAX_HELD {
                            held.pop_front();
                            self.metrics.rejected("held_overflow");
                        }
                        held.push_back(m);
                    }
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(n)) => tracing::info!(
                events = n,
                held = held.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "replayed agent events from the stream"
            ),
            Ok(Err(e)) => tracing::warn!(
                "replay from the events stream failed: {e}; going on with live events"
            ),
            Err(_) => tracing::warn!(
                "replay from the events stream took longer than {REPLAY_DEADLINE:?}; going on with live events"
            ),
        }
        held
    }
}

/// The agent and sequence number of an input that carries one.
fn agent_seq(input: &Input) -> Option<(&AgentId, u64)> {
    match input {
        Input::Observation(o) => Some((&o.agent, o.seq)),
        Input::DbCopy(d) => Some((&d.agent, d.seq)),
        Input::Heartbeat(h) => Some((&h.agent, h.seq)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBS: &str = r#"{"schema_version":1,"agent":"a1","site":"site1","seq":5,"observed_at":"2026-11-24T03:00:00Z","target_site":"site1","server":"cas1","check":"eas","kind":"activesync","protocol":"activesync","outcome":"pass","latency_ms":3,"details":{}}"#;

    #[test]
    fn accepts_a_well_formed_observation() {
        assert!(matches!(
            decode("sitewarden.v1.obs.site1.a1.cas1.eas", OBS.as_bytes()),
            Ok(Input::Observation(_))
        ));
    }

    #[test]
    fn refuses_by_cause() {
        let cause = |s: &str, p: &[u8]| decode(s, p).err().map(|(c, _)| c);
        assert_eq!(
            cause("sitewarden.v1.obs.site2.a1.cas1.eas", OBS.as_bytes()),
            Some(IntakeReject::SubjectMismatch)
        );
        assert_eq!(
            cause("sitewarden.v1.obs.site1.a2.cas1.eas", OBS.as_bytes()),
            Some(IntakeReject::SubjectMismatch)
        );
        assert_eq!(
            cause("sitewarden.v1.obs.site1.a1.cas9.eas", OBS.as_bytes()),
            Some(IntakeReject::SubjectMismatch)
        );
        assert_eq!(
            cause("sitewarden.v1.obs.site1.a1.cas1.eas", b"{not json"),
            Some(IntakeReject::Undecodable)
        );
        assert_eq!(
            cause("sitewarden.v1.heartbeat.site1.a1", OBS.as_bytes()),
            Some(IntakeReject::Undecodable)
        );
        assert_eq!(
            cause("other.subject", OBS.as_bytes()),
            Some(IntakeReject::BadSubject)
        );
        let huge = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(
            cause("sitewarden.v1.obs.site1.a1.cas1.eas", &huge),
            Some(IntakeReject::TooLarge)
        );
    }
}
