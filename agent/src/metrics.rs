//! The agent's Prometheus metrics, served on `/metrics`.
//!
//! Names start with `sitewarden_agent_` and follow Prometheus conventions (base units, counters
//! end in `_total`, checked by `promtool check metrics`); `docs/metrics.md` lists them. Labels are
//! configuration ids (check, server, site), so their cardinality is bounded by the config. The
//! page also carries `sitewarden_agent_build_info` and the unprefixed `process_*` families
//! (`sitewarden_shared::metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sitewarden_shared::{Observation, Outcome};

/// Labels of one probe.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// Check name.
    pub check: String,
    /// Server name.
    pub server: String,
    /// Target site.
    pub target_site: String,
}

/// Labels of a probe result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Check name.
    pub check: String,
    /// Server name.
    pub server: String,
    /// Target site.
    pub target_site: String,
    /// `pass` or `fail`.
    pub outcome: String,
}

/// One label naming a kind or source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind.
    pub kind: String,
}

/// Labels of a collection run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectLabels {
    /// Collector name.
    pub source: String,
    /// `ok` or `error`.
    pub outcome: String,
}

/// Every agent metric.
#[derive(Debug)]
pub struct Metrics {
    /// The whole page: the process families, and the `sitewarden_agent` sub-registry.
    registry: Registry,
    probes: Family<OutcomeLabels, Counter>,
    latency: Family<ProbeLabels, Histogram>,
    cert_expiry: Family<ProbeLabels, Gauge>,
    published: Family<KindLabel, Counter>,
    /// Publish calls the client refused.
    pub publish_errors: Counter,
    /// Events superseded while NATS was unreachable.
    pub dropped: Counter,
    /// 1 while connected to NATS.
    pub nats_connected: Gauge,
    collections: Family<CollectLabels, Counter>,
    /// Pushes refused (bad token, too large, unparsable).
    pub push_rejected: Family<KindLabel, Counter>,
    /// The HAProxy adapter's metrics (`sitewarden_agent_edge_*`).
    pub edge: crate::edge::metrics::EdgeMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let registry = sitewarden_shared::metrics::program_registry(
            &mut root,
            "sitewarden_agent",
            env!("CARGO_PKG_VERSION"),
        );
        let probes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "probes",
            "Probe results by check, server, target site and outcome",
            probes.clone(),
        );
        let latency = Family::<ProbeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        registry.register("probe_latency_seconds", "Probe latency", latency.clone());
        let cert_expiry = Family::<ProbeLabels, Gauge>::default();
        registry.register(
            "cert_expiry_timestamp_seconds",
            "When the probed server's certificate expires (notAfter), in Unix seconds",
            cert_expiry.clone(),
        );
        let published = Family::<KindLabel, Counter>::default();
        registry.register(
            "published_events",
            "Events handed to NATS by type",
            published.clone(),
        );
        let publish_errors = Counter::default();
        registry.register(
            "publish_errors",
            "Publish calls the NATS client refused",
            publish_errors.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "dropped_events",
            "Results superseded while NATS was unreachable (latest per check is kept)",
            dropped.clone(),
        );
        let nats_connected = Gauge::default();
        registry.register(
            "nats_connected",
            "1 while connected to NATS",
            nats_connected.clone(),
        );
        let collections = Family::<CollectLabels, Counter>::default();
        registry.register(
            "dbcopy_collections",
            "Database-copy collection runs by source and outcome",
            collections.clone(),
        );
        let push_rejected = Family::<KindLabel, Counter>::default();
        registry.register(
            "push_rejected",
            "Pushes refused by cause",
            push_rejected.clone(),
        );
        let edge = crate::edge::metrics::EdgeMetrics::register(registry);
        Self {
            registry: root,
            probes,
            latency,
            cert_expiry,
            published,
            publish_errors,
            dropped,
            nats_connected,
            collections,
            push_rejected,
            edge,
        }
    }

    /// Records one probe result.
    pub fn observe(&self, o: &Observation) {
        let outcome = match o.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
        };
        let labels = ProbeLabels {
            check: o.check.to_string(),
            server: o.server.to_string(),
            target_site: o.target_site.to_string(),
        };
        self.probes
            .get_or_create(&OutcomeLabels {
                check: labels.check.clone(),
                server: labels.server.clone(),
                target_site: labels.target_site.clone(),
                outcome: outcome.into(),
            })
            .inc();
        self.latency
            .get_or_create(&labels)
            .observe(o.latency_ms as f64 / 1000.0);
        if let Some(tls) = &o.details.tls {
            self.cert_expiry
                .get_or_create(&labels)
                .set(tls.not_after.timestamp());
        }
    }

    /// Counts one published event.
    pub fn published(&self, kind: &str) {
        self.published
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Counts one collection run.
    pub fn collected(&self, source: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.collections
            .get_or_create(&CollectLabels {
                source: source.into(),
                outcome: outcome.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_build_and_carries_the_unprefixed_process_families() {
        let text = Metrics::new().encode();
        let build = format!(
            "sitewarden_agent_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "no {build:?} in\n{text}");
        for family in sitewarden_shared::metrics::PROCESS_FAMILIES {
            assert!(
                text.contains(&format!("\n{family} ")),
                "no {family} in\n{text}"
            );
        }
        assert!(!text.contains("sitewarden_agent_process_"), "{text}");
    }
}
