//! The controllers' audit stream (`SITEWARDEN_AUDIT`) as the tests read it: every record in
//! stream order, typed as the controllers wrote it ([`AuditRecord`], [`records`],
//! [`complete_records`]), filters by kind ([`of_kind`], [`intents`], [`alerts`]) and a
//! one-line-per-record [`summary`] for failure messages.

use std::time::Duration;

use futures::StreamExt;
pub use sitewarden_api::audit::{
    AuditEvent, AuditRecord, EngineAudit, IntentSettlement, Role, RuntimeEvent, Settlement,
};
use sitewarden_controller::engine::{
    Alert, AlertKind, AuditEvent as EngineEvent, Evidence, Rule, Verdict,
};

/// Every record in the controllers' audit stream so far (empty when there is none yet, or when
/// the node at `url` does not answer).
pub async fn records(url: &str) -> Vec<AuditRecord> {
    complete_records(url).await.unwrap_or_default()
}

/// The whole audit stream through the node at `url`, or `None` when it cannot be read to its
/// end now (the node is down, the stream has no leader yet, a read stalled midway): callers
/// that check invariants must not mistake part of the history for all of it.
///
/// Panics on a record that is not an [`AuditRecord`]: the controllers write nothing else.
pub async fn complete_records(url: &str) -> Option<Vec<AuditRecord>> {
    let client = async_nats::connect(url).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SITEWARDEN_AUDIT").await.ok()?;
    let total = stream.info().await.ok()?.state.messages;
    if total == 0 {
        return Some(Vec::new());
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .ok()?;
    let mut messages = consumer.messages().await.ok()?;
    let mut records = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(2), messages.next())
            .await
            .ok()??
            .ok()?;
        let record = serde_json::from_slice::<AuditRecord>(&m.payload).unwrap_or_else(|e| {
            panic!(
                "the audit stream holds a record AuditRecord cannot read ({e}): {}",
                String::from_utf8_lossy(&m.payload)
            )
        });
        records.push(record);
        if m.info().map(|i| i.pending).unwrap_or(0) == 0 {
            return Some(records);
        }
    }
}

/// Records whose `event.kind` is `kind`.
pub fn of_kind<'a>(
    history: &'a [AuditRecord],
    kind: &'a str,
) -> impl Iterator<Item = &'a AuditRecord> + 'a {
    history.iter().filter(move |r| r.event.kind() == kind)
}

/// The engine's event of a record, when the engine decided it.
pub fn engine(r: &AuditRecord) -> Option<&EngineEvent> {
    r.event.engine()
}

/// One `intent` record's fields.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    /// The record around it.
    pub record: &'a AuditRecord,
    /// The managed name.
    pub namespace: &'a str,
    /// The new CNAME content.
    pub target: &'a str,
    /// The change's generation.
    pub generation: u64,
    /// The rule that decided it.
    pub reason: Rule,
    /// Why.
    pub evidence: &'a Evidence,
}

impl Intent<'_> {
    /// The epoch the intent was stored under (0 when the record has none).
    pub fn epoch(&self) -> u64 {
        self.record.epoch.map_or(0, |e| e.0)
    }
}

/// The `intent` records, in stream order.
pub fn intents(history: &[AuditRecord]) -> impl Iterator<Item = Intent<'_>> {
    history.iter().filter_map(intent)
}

/// The intent a record holds, if it is one.
pub fn intent(r: &AuditRecord) -> Option<Intent<'_>> {
    match r.event.runtime()? {
        RuntimeEvent::Intent {
            namespace,
            target,
            generation,
            reason,
            evidence,
        } => Some(Intent {
            record: r,
            namespace,
            target,
            generation: generation.0,
            reason: *reason,
            evidence,
        }),
        _ => None,
    }
}

/// `(epoch, true)` for each leadership record of a controller becoming leader, with its id.
pub fn became_leader(history: &[AuditRecord]) -> impl Iterator<Item = (&str, u64)> {
    history.iter().filter_map(|r| match engine(r)? {
        EngineEvent::Leadership {
            is_leader: true,
            epoch,
        } => Some((r.controller.as_str(), epoch.0)),
        _ => None,
    })
}

/// Every audited alert (sent by a leader, or a controller's own), in stream order.
pub fn all_alerts(history: &[AuditRecord]) -> impl Iterator<Item = &Alert> {
    history.iter().filter_map(|r| match r.event.runtime()? {
        RuntimeEvent::Alert { alert } => Some(alert),
        _ => None,
    })
}

/// Audited alerts of `kind` (the alert's own kind, e.g. [`AlertKind::Drift`]).
pub fn alerts(history: &[AuditRecord], kind: AlertKind) -> Vec<&Alert> {
    all_alerts(history).filter(|a| a.kind == kind).collect()
}

/// One line per audit record (controller, role, epoch, kind and the event's fields), for
/// failure messages.
pub fn summary(history: &[AuditRecord]) -> String {
    history
        .iter()
        .map(|r| {
            format!(
                "{} {} epoch={} {} {}",
                r.controller,
                r.role.word(),
                r.epoch.map_or_else(|| "-".to_owned(), |e| e.0.to_string()),
                r.event.kind(),
                compact(&r.event)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The event's fields that matter in a failure message.
fn compact(e: &AuditEvent) -> String {
    let v = serde_json::to_value(e).unwrap_or_default();
    let mut parts = Vec::new();
    for key in [
        "is_leader",
        "epoch",
        "site",
        "from",
        "to",
        "target",
        "generation",
        "intent_epoch",
        "reason",
        "cause",
    ] {
        if !v[key].is_null() {
            parts.push(format!("{key}={}", v[key]));
        }
    }
    if let Some(EngineEvent::Decision { evidence, .. } | EngineEvent::Verdict { evidence, .. }) =
        e.engine()
    {
        parts.push(format!("rule={}", evidence.rule.word()));
    }
    if let Some(RuntimeEvent::Intent { evidence, .. }) = e.runtime() {
        parts.push(format!("rule={}", evidence.rule.word()));
    }
    if let Some(RuntimeEvent::Alert { alert }) = e.runtime() {
        parts.push(format!("alert={:?} {}", alert.kind, alert.subject));
    }
    parts.join(" ")
}

/// Every verdict change: `(site, from, to)`, in stream order.
pub fn verdict_changes(history: &[AuditRecord]) -> impl Iterator<Item = (&str, Verdict, Verdict)> {
    history.iter().filter_map(|r| match engine(r)? {
        EngineEvent::Verdict { site, from, to, .. } => Some((site.as_str(), *from, *to)),
        _ => None,
    })
}

/// The rule of every `decision`, in stream order.
pub fn decision_rules(history: &[AuditRecord]) -> impl Iterator<Item = Rule> + '_ {
    history.iter().filter_map(|r| match engine(r)? {
        EngineEvent::Decision { evidence, .. } => Some(evidence.rule),
        _ => None,
    })
}

/// The cause of every audited refusal of an event (`undecodable`, `out_of_order`, …), whether
/// the intake or the engine refused it.
pub fn refusal_causes(history: &[AuditRecord]) -> impl Iterator<Item = String> + '_ {
    history.iter().filter_map(|r| match &r.event {
        AuditEvent::Engine(EngineAudit {
            event: EngineEvent::InputRejected { cause, .. },
            ..
        }) => serde_json::to_value(cause)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
        AuditEvent::Runtime(RuntimeEvent::IntakeRejected { cause, .. }) => Some(cause.clone()),
        _ => None,
    })
}
