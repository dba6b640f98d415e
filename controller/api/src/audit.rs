//! The audit record: one typed definition of what the controller writes to the stream
//! `SITEWARDEN_AUDIT`, serves in `GET /api/v1/history` and the `sitewarden history` CLI and the
//! tests read back, so a renamed field is a compile error in all three, not a silent `null`.
//!
//! The JSON is the contract of docs/api.md ("`GET /api/v1/history`"):
//! `{"at", "controller", "role", "epoch", "event": {"kind": …}}`. An event is either the engine's
//! own [`sitewarden_engine::AuditEvent`] (decisions, verdicts, overrides, leadership, provider
//! reports, what a standby would have done), flattened beside the engine time it happened at
//! ([`EngineAudit`]), or one the runtime writes around its I/O ([`RuntimeEvent`]: the intent
//! before a DNS write and its settlement, alerts, edge notices and webhooks, refused event
//! classes). A record of a kind this version does not know (written by a newer controller) reads
//! as [`AuditEvent::Unknown`] instead of failing the whole history.
//!
//! `controller/api/schemas/audit.v1.schema.json` is the JSON Schema of [`AuditRecord`], generated
//! from these types by [`crate::schema`]; it lists the kinds this version writes and leaves the
//! `Unknown` arm out.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sitewarden_contract::DnsName;
use sitewarden_engine::{Alert, EdgeNotice, Epoch, Evidence, Generation, Rule};

/// One audit record as stored in the stream and served by the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRecord {
    /// When the controller recorded it (its wall clock).
    pub at: DateTime<Utc>,
    /// The controller that recorded it.
    pub controller: String,
    /// Whether it acted as the leader when it recorded it.
    pub role: Role,
    /// Leader epoch, when known (absent for a standby's records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    /// What happened.
    pub event: AuditEvent,
    /// Its sequence number in the audit stream: set in history answers (the cursor of
    /// `before`/`after`), never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// One of the latest events in the status answer (`recent`): the event as the audit trail
/// has it, at the engine time of the step that produced it, without the record around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecentEvent {
    /// The engine time of the step.
    pub at: DateTime<Utc>,
    /// What happened: a decision, verdict change, DAG move, override or leadership change
    /// ([`AuditEvent::Engine`]), or an alert ([`RuntimeEvent::Alert`]).
    pub event: AuditEvent,
}

/// The recording controller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It held the lease and acted in `epoch`.
    Leader,
    /// It did not act (it records what it saw or would have done).
    Standby,
}

impl Role {
    /// `Leader` when the controller acts in an epoch, `Standby` otherwise.
    pub fn of_epoch(epoch: Option<Epoch>) -> Self {
        if epoch.is_some() {
            Self::Leader
        } else {
            Self::Standby
        }
    }

    /// `leader` or `standby`, as on the wire.
    pub fn word(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Standby => "standby",
        }
    }
}

/// What an audit record is about: an object with a `kind`.
///
/// Untagged on the wire: each variant carries its own `kind`. Reading tries the engine's
/// events first, then the runtime's, then keeps anything else whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AuditEvent {
    /// Decided by the engine.
    Engine(EngineAudit),
    /// Written by the runtime around its I/O.
    Runtime(RuntimeEvent),
    /// A kind (or shape) this version does not know, kept as it was read: opaque JSON, for a
    /// history served by a newer controller.
    ///
    /// Not in the published schema, which describes what this version writes: a record the
    /// schema accepts reads as one of the known arms, and one it refuses (an unknown `kind`, a
    /// missing or misspelled required field, a wrong type) is what lands here.
    #[schemars(skip)]
    Unknown(serde_json::Value),
}

impl AuditEvent {
    /// The event's `kind` (`decision`, `intent`, `apply_applied`, …; `?` when unknown has none).
    pub fn kind(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("?")
                .to_owned(),
            _ => "?".to_owned(),
        }
    }

    /// The engine's event, when the engine decided it.
    pub fn engine(&self) -> Option<&sitewarden_engine::AuditEvent> {
        match self {
            Self::Engine(e) => Some(&e.event),
            _ => None,
        }
    }

    /// The runtime's event, when the runtime wrote it.
    pub fn runtime(&self) -> Option<&RuntimeEvent> {
        match self {
            Self::Runtime(e) => Some(e),
            _ => None,
        }
    }
}

/// An event the engine decided, with the engine time it happened at: the engine's fields
/// (`kind` and the rest, typed as [`sitewarden_engine::AuditEvent`]) flattened beside
/// `engine_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EngineAudit {
    /// What the engine decided.
    #[serde(flatten)]
    pub event: sitewarden_engine::AuditEvent,
    /// The engine time of the step that decided it.
    pub engine_at: DateTime<Utc>,
}

/// An event the runtime writes: around a DNS write, for alerts and the edge, and for refused
/// event classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuntimeEvent {
    /// A record change is about to be written: stored before the provider write.
    Intent {
        /// The managed name.
        namespace: DnsName,
        /// The new CNAME content.
        target: DnsName,
        /// The change's generation.
        generation: Generation,
        /// The rule that decided it.
        reason: Rule,
        /// Why.
        evidence: Evidence,
    },
    /// Dry run: the change the applier would have written.
    WouldApply {
        /// The managed name.
        namespace: DnsName,
        /// The new CNAME content.
        target: DnsName,
        /// The change's generation.
        generation: Generation,
        /// The rule that decided it.
        reason: Rule,
    },
    /// The change was written and verified.
    ApplyApplied(Settlement),
    /// The change was not written: compare-and-set lost, drift, a newer epoch's marker, a
    /// generation already applied, an intent the state bucket refused.
    ApplyRefused(Settlement),
    /// The provider failed to write it, or the intent was not stored in time.
    ApplyFailed(Settlement),
    /// A newer generation overtook it after its intent was stored; nothing was written.
    ApplySuperseded(Settlement),
    /// Not started: this controller does not act in the epoch, or a newer generation came first.
    ApplySkipped(Settlement),
    /// A later leader found an earlier leader's pending intent had landed.
    IntentApplied(IntentSettlement),
    /// A later leader found an earlier leader's pending intent had not landed, or replaced it.
    IntentSuperseded(IntentSettlement),
    /// An alert the engine raised (sent, or for a standby only recorded).
    Alert {
        /// The alert as sent.
        alert: Alert,
    },
    /// A notice to the edge proxies.
    EdgeNotice {
        /// The notice.
        notice: EdgeNotice,
    },
    /// The outcome of one signed edge webhook delivery.
    EdgeWebhook {
        /// The receiver's URL.
        endpoint: String,
        /// The notice's generation.
        generation: u64,
        /// Attempts made.
        attempts: u32,
        /// Whether the receiver took it.
        delivered: bool,
        /// Why not, when it did not.
        error: Option<String>,
        /// How long the delivery took, in milliseconds.
        latency_ms: u64,
    },
    /// The first event of a class the intake refused before the engine saw it (later ones are
    /// only counted). The engine's own refusals are [`sitewarden_engine::AuditEvent::InputRejected`].
    #[serde(rename = "input_rejected")]
    IntakeRejected {
        /// Where it was refused (`intake`).
        stage: RejectStage,
        /// The cause, as in the metric's `cause` label.
        cause: String,
        /// The first refused event's error, as an example.
        example: String,
    },
}

/// The settlement of one record change by the applier that wrote (or did not write) it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Settlement {
    /// The managed name.
    pub namespace: DnsName,
    /// The change's target (absent when the applier did not get as far as reading it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<DnsName>,
    /// The change's generation.
    pub generation: Generation,
    /// What the provider answered, or why nothing was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why it was not started (skipped, already applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A later leader's settlement of an earlier leader's pending intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IntentSettlement {
    /// The managed name.
    pub namespace: DnsName,
    /// The intent's target.
    pub target: DnsName,
    /// The intent's generation.
    pub generation: Generation,
    /// The epoch of the leader that stored the intent.
    pub intent_epoch: Epoch,
    /// What the record showed, in words.
    pub why: String,
}

/// Where an event was refused before the engine saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectStage {
    /// The intake: it could not be decoded or checked.
    Intake,
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
