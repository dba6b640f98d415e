//! The HAProxy adapter's metrics, registered in the agent's registry under
//! `sitewarden_agent_edge_*`. Labels are backend and server names from the configuration, so
//! their cardinality is bounded by it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A notification's fate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabels {
    /// `accepted`, `not_newer` or `invalid`.
    pub outcome: String,
}

/// One backend's apply or verify result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Backend name.
    pub backend: String,
    /// `ok`, `error`, `fail_static` or `drift`.
    pub outcome: String,
}

/// One steered server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// Backend name.
    pub backend: String,
    /// Server name.
    pub server: String,
}

/// Every edge metric.
#[derive(Debug, Default)]
pub struct EdgeMetrics {
    notices: Family<NoticeLabels, Counter>,
    applies: Family<BackendLabels, Counter>,
    /// Epoch of the last accepted notification.
    pub epoch: Gauge,
    /// Generation of the last accepted notification.
    pub generation: Gauge,
    ready: Family<ServerLabels, Gauge>,
}

impl EdgeMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "edge_notices",
            "Edge notifications received, by outcome (accepted, not_newer, invalid)",
            m.notices.clone(),
        );
        registry.register(
            "edge_backend_updates",
            "HAProxy backend updates by outcome (ok, error, fail_static, drift)",
            m.applies.clone(),
        );
        registry.register(
            "edge_epoch",
            "Epoch of the last accepted edge notification",
            m.epoch.clone(),
        );
        registry.register(
            "edge_generation",
            "Generation of the last accepted edge notification",
            m.generation.clone(),
        );
        registry.register(
            "edge_server_ready",
            "1 when HAProxy reports the steered server ready, 0 when drain or maint (last verify)",
            m.ready.clone(),
        );
        m
    }

    /// Counts one notification.
    pub fn notice(&self, outcome: &str) {
        self.notices
            .get_or_create(&NoticeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts one backend update.
    pub fn backend(&self, backend: &str, outcome: &str) {
        self.applies
            .get_or_create(&BackendLabels {
                backend: backend.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records a verified server state.
    pub fn server_ready(&self, backend: &str, server: &str, ready: bool) {
        self.ready
            .get_or_create(&ServerLabels {
                backend: backend.into(),
                server: server.into(),
            })
            .set(i64::from(ready));
    }
}
