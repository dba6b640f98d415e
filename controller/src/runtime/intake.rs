//! Event intake: agent events from NATS, checked against the contract, turned into engine inputs.
//!
//! Agents publish on core NATS; the controller keeps a JetStream stream `SITEWARDEN_EVENTS` over
//! the three agent subject trees with the last [`EVENTS_HISTORY`] messages per subject, so the
//! recent results of every observer × server × check — enough to rebuild the `fall`/`rise`
//! counters, not just the last outcome — plus every collector's snapshots and every agent's
//! heartbeats are always on disk. Intake reads it with an ordered consumer from the start of
//! what is retained (with an explicit filter subject, as 2.9 requires): a controller that starts
//! or takes over replays the current health picture at once, then keeps receiving live events on
//! the same consumer — no probe interval is waited for.
//!
//! Before an event reaches the engine it must fit the contract: at most [`MAX_EVENT_BYTES`],
//! a v1 subject, a payload that decodes, and a subject whose site and agent match the payload's.
//! Refusals are counted by cause and logged once per cause; the engine then applies its own
//! checks (known agent, sequence order, clock skew).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use sitewarden_shared::event::MAX_EVENT_BYTES;
use sitewarden_shared::subject::{self, ParsedSubject};
use sitewarden_shared::{DbCopySnapshot, Event, Heartbeat, Observation};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
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

/// The events stream's configuration.
pub fn stream_config(replicas: usize, max_age: Duration) -> jetstream::stream::Config {
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
        max_messages_per_subject: EVENTS_HISTORY,
        max_age,
        max_message_size: i32::try_from(MAX_EVENT_BYTES).unwrap_or(i32::MAX),
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::Old,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Creates the events stream if it is missing.
pub async fn ensure_stream(
    js: &jetstream::Context,
    replicas: usize,
    max_age: Duration,
) -> Result<(), String> {
    js.get_or_create_stream(stream_config(replicas, max_age))
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create or open stream {EVENTS_STREAM}: {e}"))
}

/// Reads events until `shutdown`, sending accepted ones to the engine. The consumer is recreated
/// (replaying the last message per subject again) whenever it fails, e.g. after a NATS outage;
/// the engine drops the replayed duplicates by sequence number.
pub async fn run(
    js: jetstream::Context,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut logged: BTreeSet<IntakeReject> = BTreeSet::new();
    while !shutdown.is_cancelled() {
        match consume(&js, &tx, &metrics, &mut logged, &shutdown).await {
            Ok(()) => break,
            Err(e) => {
                metrics.intake_restarts.inc();
                tracing::warn!("event intake interrupted: {e}; resubscribing");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

async fn consume(
    js: &jetstream::Context,
    tx: &mpsc::Sender<Input>,
    metrics: &Metrics,
    logged: &mut BTreeSet<IntakeReject>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let stream = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: "sitewarden.v1.>".into(),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => m,
        };
        let msg = match next {
            None => return Err("consumer ended".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(m)) => m,
        };
        match decode(msg.subject.as_str(), &msg.payload) {
            Ok(input) => {
                metrics.events_accepted.inc();
                if tx.send(input).await.is_err() {
                    return Ok(());
                }
            }
            Err((cause, text)) => {
                metrics.rejected(cause.label());
                if logged.insert(cause) {
                    tracing::warn!(
                        cause = cause.label(),
                        "refused an event (logged once per cause): {text}"
                    );
                }
            }
        }
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
