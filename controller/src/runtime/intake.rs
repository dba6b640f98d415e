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

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use sitewarden_api::audit::{RejectStage, RuntimeEvent};
use sitewarden_shared::event::MAX_EVENT_BYTES;
use sitewarden_shared::subject::{self, ParsedSubject};
use sitewarden_shared::{AgentId, DbCopySnapshot, Event, Heartbeat, Observation};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus_budget::{EventsCaps, ensure_capped};
use super::events_watch::PublisherTally;
use super::metrics::Metrics;
use super::replaying::{CatchUp, Delivery, Replaying, Source};
use crate::engine::Input;

/// Name of the stream holding the latest agent events.
pub const EVENTS_STREAM: &str = "SITEWARDEN_EVENTS";
/// Events kept per subject: at least the largest `fall`/`rise` a deployment uses, so a replay
/// rebuilds consecutive-result counters exactly (config refuses larger `fall`/`rise`).
pub const EVENTS_HISTORY: i64 = 10;

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

/// Live events held back while a replay runs; beyond this the oldest are dropped (counted).
const MAX_HELD: usize = 200_000;
/// A catch-up replay after a reconnect starts this long before the last live event received.
const CATCH_UP_OVERLAP: Duration = Duration::from_secs(2);

/// Where agent events come from: live on the three agent subject trees (not `sitewarden.v1.>`,
/// which also carries the controller's own edge notices), replayed from the events stream.
fn source() -> Source {
    Source {
        what: "agent events",
        stream: EVENTS_STREAM,
        filter: "sitewarden.v1.>".into(),
        subjects: [
            subject::ALL_OBSERVATIONS,
            subject::ALL_DBCOPY,
            subject::ALL_HEARTBEATS,
        ]
        .map(str::to_owned)
        .to_vec(),
        catch_up: CatchUp::SinceLastLive(CATCH_UP_OVERLAP),
        max_held: MAX_HELD,
    }
}

/// Reads events until `shutdown`, sending accepted ones to the engine.
///
/// Live events and replays come through [`Replaying`]: the whole stream at start (a controller
/// that starts or takes over has the current health picture at once), and after every
/// reconnect what arrived since shortly before the last live event, so the gap is filled.
/// Replayed events an agent already delivered live are skipped here, by its sequence number,
/// not reported by the engine as replays.
pub async fn run(
    js: jetstream::Context,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    audit: RejectAudit,
    publishers: Arc<PublisherTally>,
    shutdown: CancellationToken,
) {
    let mut intake = Intake {
        tx,
        metrics,
        audit,
        logged: BTreeSet::new(),
        forwarded: HashMap::new(),
    };
    let Some(mut messages) = Replaying::subscribe(js, source(), &shutdown).await else {
        return;
    };
    while let Some(delivery) = messages.next(&shutdown).await {
        let forwarded = match delivery {
            Delivery::Live(m) => {
                publishers.count(m.subject.as_str(), m.payload.len());
                intake.forward(&m.subject, &m.payload, false).await
            }
            Delivery::Replayed(m) => intake.forward(&m.subject, &m.payload, true).await,
            Delivery::Reconnected => {
                intake.metrics.intake_catch_ups.inc();
                true
            }
            Delivery::Dropped => {
                intake.metrics.rejected("held_overflow");
                true
            }
        };
        if !forwarded {
            return;
        }
    }
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
