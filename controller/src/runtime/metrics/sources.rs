//! Metrics read from the DNS provider's and the alert dispatcher's own counters.
//!
//! Both keep totals since start ([`StatsSnapshot`], [`AlertStats`]); each tick the runtime hands
//! them over and the Prometheus counters are advanced by the difference from the previous tick.
//! How long provider operations take is measured by the applier around each `read` and `apply`
//! (retries and the read-back included) and recorded through [`SourceMetrics::provider_call`].

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::advance;
use crate::notify::Stats as AlertStats;
use crate::provider::StatsSnapshot;

/// Buckets of provider operations: a read is tens of milliseconds, an apply with retries and
/// backoff may take up to the retry deadline (60 s by default).
const OPERATION_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    /// `cloudflare`, `builtin`, `memory`.
    pub provider: String,
}

/// A class of provider errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The provider.
    pub provider: String,
    /// `auth`, `rate_limited`, `transient`, `rejected`.
    pub class: String,
}

/// One provider operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The provider.
    pub provider: String,
    /// `read` or `apply`.
    pub operation: String,
    /// `ok` or `error`.
    pub result: String,
}

/// What became of alerts or alert messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// See `docs/metrics.md`.
    pub result: String,
}

/// The provider's and the dispatcher's totals as of the previous tick.
#[derive(Debug, Default)]
struct Seen {
    provider: StatsSnapshot,
    alerts: AlertStats,
}

/// Provider and alert metrics.
#[derive(Debug)]
pub struct SourceMetrics {
    calls: Family<ProviderLabel, Counter>,
    writes: Family<ProviderLabel, Counter>,
    retries: Family<ProviderLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    budget_exhausted: Family<ProviderLabel, Counter>,
    budget_left: Family<ProviderLabel, Gauge>,
    operations: Family<OperationLabels, Histogram>,
    alerts: Family<ResultLabel, Counter>,
    alert_messages: Family<ResultLabel, Counter>,
    seen: Mutex<Seen>,
}

impl SourceMetrics {
    /// Registers the provider and alert metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let calls = Family::<ProviderLabel, Counter>::default();
        registry.register(
            "dns_api_calls",
            "DNS provider API calls made (each attempt counts)",
            calls.clone(),
        );
        let writes = Family::<ProviderLabel, Counter>::default();
        registry.register(
            "dns_api_writes",
            "DNS provider API calls that were writes",
            writes.clone(),
        );
        let retries = Family::<ProviderLabel, Counter>::default();
        registry.register(
            "dns_api_retries",
            "DNS provider API retries after a soft failure (429, 5xx, timeout)",
            retries.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "dns_api_errors",
            "DNS provider API errors by class: auth (401/403), rate_limited (429), transient (5xx, timeouts, connection), rejected (4xx validation)",
            errors.clone(),
        );
        let budget_exhausted = Family::<ProviderLabel, Counter>::default();
        registry.register(
            "dns_api_budget_exhausted",
            "DNS provider API calls not made because the client-side budget was empty",
            budget_exhausted.clone(),
        );
        let budget_left = Family::<ProviderLabel, Gauge>::default();
        registry.register(
            "dns_api_budget_left",
            "Whole requests left in the client-side DNS API budget (absent when unlimited)",
            budget_left.clone(),
        );
        let operations = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(OPERATION_BUCKETS)
        });
        registry.register(
            "dns_operation_duration_seconds",
            "Duration of provider reads and applies (retries, backoff and the verifying read included)",
            operations.clone(),
        );
        let alerts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "alerts",
            "Alerts handed to the dispatcher, by result: accepted, overflowed (queue full), deduplicated, aggregated (folded into a burst summary)",
            alerts.clone(),
        );
        let alert_messages = Family::<ResultLabel, Counter>::default();
        registry.register(
            "alert_messages",
            "Alert messages per sink, by result: queued, overflowed (sink queue full), delivered, retried, failed",
            alert_messages.clone(),
        );
        Self {
            calls,
            writes,
            retries,
            errors,
            budget_exhausted,
            budget_left,
            operations,
            alerts,
            alert_messages,
            seen: Mutex::default(),
        }
    }

    /// Advances the DNS API counters to the provider's totals `now`.
    pub fn provider(&self, provider: &str, now: &StatsSnapshot) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let last = &mut seen.provider;
        let label = ProviderLabel {
            provider: provider.into(),
        };
        let class = |class: &str| {
            self.errors.get_or_create_owned(&ErrorLabels {
                provider: provider.into(),
                class: class.into(),
            })
        };
        advance(
            &self.calls.get_or_create_owned(&label),
            &mut last.calls,
            now.calls,
        );
        advance(
            &self.writes.get_or_create_owned(&label),
            &mut last.writes,
            now.writes,
        );
        advance(
            &self.retries.get_or_create_owned(&label),
            &mut last.retries,
            now.retries,
        );
        advance(&class("auth"), &mut last.auth_errors, now.auth_errors);
        advance(
            &class("rate_limited"),
            &mut last.rate_limited,
            now.rate_limited,
        );
        advance(
            &class("transient"),
            &mut last.transient_errors,
            now.transient_errors,
        );
        advance(&class("rejected"), &mut last.rejected, now.rejected);
        advance(
            &self.budget_exhausted.get_or_create_owned(&label),
            &mut last.budget_exhausted,
            now.budget_exhausted,
        );
        if now.budget_left == u32::MAX {
            self.budget_left.remove(&label);
        } else {
            self.budget_left
                .get_or_create(&label)
                .set(i64::from(now.budget_left));
        }
    }

    /// Records one provider operation.
    pub fn provider_call(&self, provider: &str, operation: &str, ok: bool, seconds: f64) {
        self.operations
            .get_or_create(&OperationLabels {
                provider: provider.into(),
                operation: operation.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .observe(seconds);
    }

    /// Advances the alert counters to the dispatcher's totals `now`.
    pub fn alerts(&self, now: &AlertStats) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let last = &mut seen.alerts;
        let alert = |result: &str| {
            self.alerts.get_or_create_owned(&ResultLabel {
                result: result.into(),
            })
        };
        advance(&alert("accepted"), &mut last.accepted, now.accepted);
        advance(&alert("overflowed"), &mut last.overflowed, now.overflowed);
        advance(
            &alert("deduplicated"),
            &mut last.deduplicated,
            now.deduplicated,
        );
        advance(&alert("aggregated"), &mut last.aggregated, now.aggregated);
        let message = |result: &str| {
            self.alert_messages.get_or_create_owned(&ResultLabel {
                result: result.into(),
            })
        };
        advance(&message("queued"), &mut last.queued, now.queued);
        advance(
            &message("overflowed"),
            &mut last.sink_overflowed,
            now.sink_overflowed,
        );
        advance(&message("delivered"), &mut last.delivered, now.delivered);
        advance(&message("retried"), &mut last.retried, now.retried);
        advance(&message("failed"), &mut last.failed, now.failed);
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::metrics::Metrics;

    use super::*;

    #[test]
    fn provider_counters_follow_the_totals_and_an_unlimited_budget_is_not_exported() {
        let m = Metrics::new();
        let mut stats = StatsSnapshot {
            calls: 3,
            writes: 1,
            rate_limited: 2,
            budget_left: 297,
            ..Default::default()
        };
        m.observe_provider("cloudflare", &stats);
        stats.calls = 5;
        m.observe_provider("cloudflare", &stats);
        let text = m.encode();
        for line in [
            "sitewarden_controller_dns_api_calls_total{provider=\"cloudflare\"} 5",
            "sitewarden_controller_dns_api_writes_total{provider=\"cloudflare\"} 1",
            "sitewarden_controller_dns_api_errors_total{provider=\"cloudflare\",class=\"rate_limited\"} 2",
            "sitewarden_controller_dns_api_errors_total{provider=\"cloudflare\",class=\"auth\"} 0",
            "sitewarden_controller_dns_api_budget_left{provider=\"cloudflare\"} 297",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        stats.budget_left = u32::MAX;
        m.observe_provider("cloudflare", &stats);
        assert!(!m.encode().contains("dns_api_budget_left{"));
    }

    #[test]
    fn alert_counters_follow_the_dispatcher() {
        let m = Metrics::new();
        m.observe_alerts(&AlertStats {
            accepted: 4,
            delivered: 3,
            failed: 1,
            ..Default::default()
        });
        let text = m.encode();
        for line in [
            "sitewarden_controller_alerts_total{result=\"accepted\"} 4",
            "sitewarden_controller_alert_messages_total{result=\"delivered\"} 3",
            "sitewarden_controller_alert_messages_total{result=\"failed\"} 1",
            "sitewarden_controller_alert_messages_total{result=\"retried\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
