//! The controller runtime's Prometheus metrics (`sitewarden_controller_*`).
//!
//! The operator-surface issue extends these; this module holds what the runtime itself counts:
//! intake, refusals by cause, applies, audit delivery and leadership.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One `cause` or `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Label {
    /// The value.
    pub value: String,
}

/// Runtime metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Events accepted by intake (before the engine's own checks).
    pub events_accepted: Counter,
    rejected: Family<Label, Counter>,
    /// Catch-up replays from the events stream after a NATS reconnect.
    pub intake_catch_ups: Counter,
    /// Replayed events skipped because the agent had already delivered them live.
    pub replay_skipped: Counter,
    applies: Family<Label, Counter>,
    /// Audit records dropped because the queue was full.
    pub audit_dropped: Counter,
    /// Audit publishes that failed or were not acknowledged.
    pub audit_errors: Counter,
    /// 1 while this controller holds the lease and may act.
    pub acting: Gauge,
    /// The current epoch (0 when none).
    pub epoch: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sitewarden_controller");
        let events_accepted = Counter::default();
        registry.register(
            "events_accepted",
            "Agent events that passed intake checks",
            events_accepted.clone(),
        );
        let rejected = Family::<Label, Counter>::default();
        registry.register(
            "events_rejected",
            "Agent events refused at intake, by cause",
            rejected.clone(),
        );
        let intake_catch_ups = Counter::default();
        registry.register(
            "intake_catch_ups",
            "Catch-up replays from the events stream after a NATS reconnect",
            intake_catch_ups.clone(),
        );
        let replay_skipped = Counter::default();
        registry.register(
            "replay_skipped",
            "Replayed events skipped because they had arrived live already",
            replay_skipped.clone(),
        );
        let applies = Family::<Label, Counter>::default();
        registry.register("applies", "Record changes by outcome", applies.clone());
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped",
            "Audit records dropped (queue full)",
            audit_dropped.clone(),
        );
        let audit_errors = Counter::default();
        registry.register(
            "audit_errors",
            "Audit publishes that failed or were not acknowledged",
            audit_errors.clone(),
        );
        let acting = Gauge::default();
        registry.register(
            "acting",
            "1 while this controller holds the lease and may act",
            acting.clone(),
        );
        let epoch = Gauge::default();
        registry.register("epoch", "Current leader epoch", epoch.clone());
        Self {
            registry,
            events_accepted,
            rejected,
            intake_catch_ups,
            replay_skipped,
            applies,
            audit_dropped,
            audit_errors,
            acting,
            epoch,
        }
    }

    /// Counts an intake refusal.
    pub fn rejected(&self, cause: &str) {
        self.rejected
            .get_or_create(&Label {
                value: cause.into(),
            })
            .inc();
    }

    /// Counts an apply outcome.
    pub fn applied(&self, outcome: &str) {
        self.applies
            .get_or_create(&Label {
                value: outcome.into(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
