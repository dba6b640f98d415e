//! Applying record changes: intent first, then the provider, then verification and bookkeeping.
//!
//! For every `SetRecord` the leader decides, the applier
//! 1. checks, on the monotonic clock at that very moment, that this controller still holds the
//!    lease with the command's epoch (a leader paused past its lease wakes up and writes nothing);
//! 2. refuses a generation not newer than the newest applied one for that name (KV `ns.<name>`);
//! 3. records the intent (KV `intent.<name>`, compare-and-set, refused if a newer epoch wrote it);
//! 4. asks the provider to compare-and-set the record with the epoch in its ownership marker
//!    (the provider refuses if the record shows a newer epoch) and verifies by reading back;
//! 5. marks the intent applied and stores the new `ns.<name>` (compare-and-set).
//!
//! A leader that crashes between 3 and 4 leaves a pending intent: the next leader reads the
//! record, whose marker tells whether the change landed, and the engine re-decides from there —
//! so a change is applied once or superseded, never twice. Outcomes go back to the engine as
//! provider reports and to the audit trail.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::kv;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::audit::{AuditRecord, AuditSink};
use super::metrics::Metrics;
use crate::engine::{Input, ProviderReport, SetRecord};
use crate::provider::{ApplyOutcome, Change, DnsProvider, ProviderError, Refusal};

/// Answers "may I act, and with which epoch?" from the lease's monotonic clock, at call time.
pub type ActingCheck = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// What the state bucket keeps per namespace (`ns.<name>`) and per pending change
/// (`intent.<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBook {
    /// The plan generation.
    pub generation: u64,
    /// The CNAME target.
    pub target: String,
    /// The epoch of the leader that wrote it.
    pub epoch: u64,
    /// `pending`, `applied`, `refused` or `failed` (intents); `applied` (ns entries).
    pub status: String,
    /// When it was written.
    pub at: chrono::DateTime<Utc>,
}

/// Applies `SetRecord` commands for the leader.
pub struct Applier {
    /// The DNS provider.
    pub provider: Arc<dyn DnsProvider>,
    /// The state bucket (`None` in `plan` and unit tests).
    pub store: Option<kv::Store>,
    /// The lease check.
    pub acting: ActingCheck,
    /// Decide and audit, never write to the provider.
    pub dry_run: bool,
    /// Adopt records without our marker (`on_drift = "enforce"` namespaces).
    pub adopt_unmarked: BTreeMap<String, bool>,
    /// The audit trail.
    pub audit: AuditSink,
    /// This controller's id, for audit records.
    pub controller: String,
    /// Runtime metrics.
    pub metrics: Arc<Metrics>,
    /// Where provider reports go (the engine loop).
    pub reports: mpsc::Sender<Input>,
    /// Last content read per name, the `expected` value of the next compare-and-set.
    pub last_seen: BTreeMap<String, Option<String>>,
    /// Dry run: what the records would hold now, `(target, generation)`, so the engine sees the
    /// consequences of its own decisions and "would apply" is audited once, not every tick.
    pub shadow: BTreeMap<String, (String, u64)>,
}

impl Applier {
    fn audit(&self, epoch: Option<u64>, event: serde_json::Value) {
        self.audit.record(AuditRecord {
            at: Utc::now(),
            controller: self.controller.clone(),
            role: if epoch.is_some() { "leader" } else { "standby" },
            epoch,
            event,
        });
    }

    async fn report(&self, r: ProviderReport) {
        let _ = self.reports.send(Input::Provider(r)).await;
    }

    /// Reads the current record of `name` and tells the engine.
    pub async fn refresh(&mut self, name: &str) -> Result<(), ProviderError> {
        let state = self.provider.read(name).await?;
        self.last_seen
            .insert(name.to_owned(), state.content.clone());
        self.report(ProviderReport::Current {
            namespace: name.to_owned(),
            target: state.content,
            generation: state.marker.map(|m| m.generation),
        })
        .await;
        Ok(())
    }

    /// Applies one command; never panics, reports the outcome to the engine.
    pub async fn apply(&mut self, cmd: SetRecord) {
        let name = cmd.namespace.clone();
        let fail = |error: String| ProviderReport::Failed {
            namespace: name.clone(),
            generation: cmd.generation,
            error,
        };
        if (self.acting)() != Some(cmd.epoch) {
            self.metrics.applied("not_acting");
            self.audit(None, serde_json::json!({"kind": "apply_skipped", "namespace": name, "generation": cmd.generation, "why": "not the acting leader for this epoch"}));
            return;
        }
        if self.dry_run {
            self.metrics.applied("dry_run");
            self.audit(Some(cmd.epoch), serde_json::json!({"kind": "would_apply", "namespace": name, "target": cmd.target, "generation": cmd.generation, "reason": cmd.reason}));
            self.shadow
                .insert(name.clone(), (cmd.target.clone(), cmd.generation));
            self.report(ProviderReport::Applied {
                namespace: name,
                generation: cmd.generation,
            })
            .await;
            return;
        }
        match self.book(&name, "ns").await {
            Ok(Some((book, _))) if book.generation >= cmd.generation => {
                self.metrics.applied("stale_generation");
                self.audit(Some(cmd.epoch), serde_json::json!({"kind": "apply_refused", "namespace": name, "generation": cmd.generation, "why": format!("generation {} already applied", book.generation)}));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                self.report(fail(format!("state store: {e}"))).await;
                return;
            }
        }
        let intent = RecordBook {
            generation: cmd.generation,
            target: cmd.target.clone(),
            epoch: cmd.epoch,
            status: "pending".into(),
            at: Utc::now(),
        };
        if let Err(e) = self.put(&name, "intent", &intent).await {
            self.metrics.applied("intent_refused");
            self.audit(Some(cmd.epoch), serde_json::json!({"kind": "intent_refused", "namespace": name, "generation": cmd.generation, "why": e}));
            self.report(fail(e)).await;
            return;
        }
        self.audit(Some(cmd.epoch), serde_json::json!({"kind": "intent", "namespace": name, "target": cmd.target, "generation": cmd.generation, "reason": cmd.reason, "evidence": cmd.evidence}));

        // Re-check the lease right before the write: the intent write may have taken a while.
        if (self.acting)() != Some(cmd.epoch) {
            self.metrics.applied("not_acting");
            self.audit(None, serde_json::json!({"kind": "apply_skipped", "namespace": name, "generation": cmd.generation, "why": "lease lost before the write"}));
            return;
        }
        let change = Change {
            name: name.clone(),
            target: cmd.target.clone(),
            ttl: u32::try_from(cmd.ttl_secs).ok(),
            expected: self.last_seen.get(&name).cloned().flatten(),
            epoch: cmd.epoch,
            generation: cmd.generation,
            adopt_unmarked: self.adopt_unmarked.get(&name).copied().unwrap_or(false),
        };
        let acting = self.acting.clone();
        let epoch = cmd.epoch;
        let fence = crate::provider::Fence::new(move || acting() == Some(epoch));
        let outcome = crate::provider::FENCE
            .scope(fence, self.provider.apply(&change))
            .await;
        let (status, report) = match &outcome {
            Ok(ApplyOutcome::Applied { after, .. })
            | Ok(ApplyOutcome::AlreadyInPlace { state: after }) => {
                self.last_seen.insert(name.clone(), after.content.clone());
                (
                    "applied",
                    ProviderReport::Applied {
                        namespace: name.clone(),
                        generation: cmd.generation,
                    },
                )
            }
            Ok(ApplyOutcome::Refused(r)) => {
                if let Refusal::Drift { found } | Refusal::NotOurs { found } = r {
                    self.last_seen.insert(name.clone(), found.content.clone());
                }
                (
                    "refused",
                    fail(format!("provider refused the change: {r:?}")),
                )
            }
            Err(e) => ("failed", fail(e.to_string())),
        };
        self.metrics.applied(status);
        let done = RecordBook {
            status: status.into(),
            at: Utc::now(),
            ..intent
        };
        if let Err(e) = self.put(&name, "intent", &done).await {
            tracing::warn!(namespace = %name, "cannot mark intent {status}: {e}");
        }
        if status == "applied"
            && let Err(e) = self.put(&name, "ns", &done).await
        {
            tracing::warn!(namespace = %name, "cannot record applied generation: {e}");
        }
        self.audit(Some(cmd.epoch), serde_json::json!({"kind": format!("apply_{status}"), "namespace": name, "target": cmd.target, "generation": cmd.generation, "outcome": format!("{outcome:?}")}));
        self.report(report).await;
    }

    async fn book(&self, name: &str, prefix: &str) -> Result<Option<(RecordBook, u64)>, String> {
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let key = format!("{prefix}.{name}");
        match store.entry(&key).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => {
                serde_json::from_slice::<RecordBook>(&e.value)
                    .map(|b| Some((b, e.revision)))
                    .map_err(|err| format!("{key} holds unreadable JSON: {err}"))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(format!("reading {key}: {e}")),
        }
    }

    /// Compare-and-set `prefix.name`, refused when the stored value carries a newer epoch.
    async fn put(&self, name: &str, prefix: &str, value: &RecordBook) -> Result<(), String> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let key = format!("{prefix}.{name}");
        let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        for _ in 0..3 {
            let current = self.book(name, prefix).await?;
            let result = match current {
                Some((book, _)) if book.epoch > value.epoch => {
                    return Err(format!("{key} was written by newer epoch {}", book.epoch));
                }
                Some((_, revision)) => store
                    .update(&key, body.clone().into(), revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => store
                    .create(&key, body.clone().into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if result.is_ok() {
                return Ok(());
            }
        }
        Err(format!(
            "{key}: compare-and-set kept losing to concurrent writers"
        ))
    }
}
