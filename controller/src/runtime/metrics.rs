//! The controller's Prometheus metrics (`sitewarden_controller_*`), listed in `docs/metrics.md`.
//!
//! The runtime counts what only it sees (intake, applies, audit delivery, leadership) directly
//! on the fields here. Everything else is read, not pushed: on every tick the runtime hands the
//! engine's state to [`Metrics::observe`] (verdicts, targets, decisions, freshness, the engine's
//! own refusals — see [`engine`]), the provider's counters to [`Metrics::observe_provider`] and
//! the alert dispatcher's to [`Metrics::observe_alerts`] (see [`sources`]). Each admitted
//! observation passes through [`Metrics::observation`], the only per-event cost: a few map
//! lookups by `&str`, no allocation once an observer × server × check has been seen.
//! Every label value comes from the configuration (sites, servers, agents, checks, namespaces,
//! targets) or from a fixed list, so cardinality is bounded by the config. The page also carries
//! `sitewarden_controller_build_info` and the unprefixed `process_*` families
//! (`sitewarden_shared::metrics`), read at scrape time.

pub mod engine;
pub mod names;
pub mod sources;

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sitewarden_shared::exposition;

use crate::engine::{Engine, Input, State};
use crate::notify::Stats as AlertStats;
use crate::provider::StatsSnapshot;

/// Labels of a refused event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `intake` (the runtime's contract checks) or `engine` (the engine's admission rules).
    pub stage: String,
    /// Why, e.g. `undecodable`, `unknown_agent`, `out_of_order`.
    pub cause: String,
}

/// Labels of an apply.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `applied`, `refused`, `failed`, `not_acting`, `dry_run`, `stale_generation`, ...
    pub outcome: String,
}

/// Labels of a refused Slack request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    /// `bad_timestamp`, `stale`, `bad_signature_format`, `mismatch`, `replayed`, `busy`.
    pub cause: String,
}

/// Every controller metric.
#[derive(Debug)]
pub struct Metrics {
    /// The whole page: the process families, and the `sitewarden_controller` sub-registry.
    registry: Registry,
    /// Events accepted by intake (before the engine's own checks).
    pub events_accepted: Counter,
    rejected: Family<RejectLabels, Counter>,
    /// Catch-up replays from the events stream after a NATS reconnect.
    pub intake_catch_ups: Counter,
    /// Replayed events skipped because the agent had already delivered them live.
    pub replay_skipped: Counter,
    applies: Family<OutcomeLabel, Counter>,
    slack_refused: Family<CauseLabel, Counter>,
    /// Audit records dropped because the queue was full.
    pub audit_dropped: Counter,
    /// Audit publishes that failed or were not acknowledged.
    pub audit_errors: Counter,
    /// 1 while this controller holds the lease and may act.
    pub acting: Gauge,
    /// The current epoch (0 when none).
    pub epoch: Gauge,
    /// The events stream's fill and caps, read every few seconds (`runtime::events_watch`).
    events_stream: [Gauge; 4],
    /// 1 while the engine's `events_near_cap` alert is out.
    pub events_stream_near_cap: Gauge,
    /// What is read from the engine's state.
    engine: engine::EngineMetrics,
    /// What is read from the provider and the alert dispatcher.
    sources: sources::SourceMetrics,
    /// The length of the latest exposition, to size the next one's buffer.
    encoded_len: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Export the per-name series (`namespace_*`); default true.
    #[serde(default)]
    pub per_name: Option<bool>,
}

/// What `/metrics` exports (`[metrics]`, docs/configuration-controller.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Export the per-name series (`namespace_*`) beside the per-rule totals
    /// (`namespaces_*`): about 0.6 KB of every scrape per managed name.
    pub per_name: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { per_name: true }
    }
}

impl From<RawMetrics> for MetricsSettings {
    fn from(raw: RawMetrics) -> Self {
        Self {
            per_name: raw.per_name.unwrap_or(true),
        }
    }
}

impl Metrics {
    /// Registers every metric, the per-name series included.
    pub fn new() -> Self {
        Self::with_settings(MetricsSettings::default())
    }

    /// Registers every metric `settings` asks for.
    pub fn with_settings(settings: MetricsSettings) -> Self {
        let mut root = Registry::default();
        let registry = sitewarden_shared::metrics::program_registry(
            &mut root,
            "sitewarden_controller",
            env!("CARGO_PKG_VERSION"),
        );
        let events_accepted = Counter::default();
        registry.register(
            "events_accepted",
            "Agent events that passed the intake checks (before the engine's own)",
            events_accepted.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "events_rejected",
            "Agent events refused, by stage (intake or engine) and cause",
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
        let applies = Family::<OutcomeLabel, Counter>::default();
        registry.register("applies", "Record changes by outcome", applies.clone());
        let slack_refused = Family::<CauseLabel, Counter>::default();
        registry.register(
            "slack_refused",
            "Slack slash-command requests refused before they were acted on, by cause",
            slack_refused.clone(),
        );
        for cause in super::slack::SlackRefusal::CAUSES {
            slack_refused
                .get_or_create(&CauseLabel {
                    cause: cause.into(),
                })
                .inc_by(0);
        }
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
        let events_stream: [Gauge; 4] = Default::default();
        for (name, help, g) in [
            (
                "events_stream_bytes",
                "Bytes in the events stream",
                &events_stream[0],
            ),
            (
                "events_stream_max_bytes",
                "The events stream's byte cap",
                &events_stream[1],
            ),
            (
                "events_stream_messages",
                "Messages in the events stream",
                &events_stream[2],
            ),
            (
                "events_stream_max_messages",
                "The events stream's message cap",
                &events_stream[3],
            ),
        ] {
            registry.register(name, help, g.clone());
        }
        let events_stream_near_cap = Gauge::default();
        registry.register(
            "events_stream_near_cap",
            "1 while the events stream is past 80% of its byte or message cap (an events_near_cap alert is out)",
            events_stream_near_cap.clone(),
        );
        let engine = engine::EngineMetrics::register(registry, rejected.clone(), settings.per_name);
        let sources = sources::SourceMetrics::register(registry);
        Self {
            registry: root,
            events_accepted,
            rejected,
            intake_catch_ups,
            replay_skipped,
            applies,
            slack_refused,
            audit_dropped,
            audit_errors,
            acting,
            epoch,
            events_stream,
            events_stream_near_cap,
            engine,
            sources,
            encoded_len: AtomicUsize::new(0),
        }
    }

    /// Records the events stream's fill and caps.
    pub fn events_stream(&self, bytes: u64, max_bytes: i64, messages: u64, max_messages: i64) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.events_stream[0].set(g(bytes));
        self.events_stream[1].set(max_bytes);
        self.events_stream[2].set(g(messages));
        self.events_stream[3].set(max_messages);
    }

    /// Counts an intake refusal.
    pub fn rejected(&self, cause: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                stage: "intake".into(),
                cause: cause.into(),
            })
            .inc();
    }

    /// Counts a refused Slack request by cause ([`super::slack::SlackRefusal::cause`]).
    pub fn slack_refused(&self, cause: &str) {
        self.slack_refused
            .get_or_create(&CauseLabel {
                cause: cause.into(),
            })
            .inc();
    }

    /// Counts one record change handed to the applier, by outcome.
    pub fn applied(&self, outcome: &str) {
        self.applies
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts an observation the engine has just admitted. Call after every `engine.step`, with
    /// the same input, whatever it is: other inputs and refused observations are not counted.
    pub fn observation(&self, state: &State, input: &Input) {
        self.engine.observation(state, input);
    }

    /// Refreshes everything derived from the engine's state: verdicts, namespace targets,
    /// decisions and changes, observer freshness, overrides, the engine's refusals.
    pub fn observe(&self, engine: &Engine, state: &State, now: DateTime<Utc>) {
        self.engine.observe(engine, state, now);
        self.events_stream_near_cap
            .set(i64::from(state.bus.events_near_cap));
    }

    /// Brings the DNS API counters up to `stats`, the provider's counters since start.
    pub fn observe_provider(&self, provider: &str, stats: &StatsSnapshot) {
        self.sources.provider(provider, stats);
    }

    /// Records how long one provider operation (`read` or `apply`, retries included) took.
    pub fn provider_call(&self, provider: &str, operation: &str, ok: bool, seconds: f64) {
        self.sources.provider_call(provider, operation, ok, seconds);
    }

    /// Brings the alert delivery counters up to `stats`, the dispatcher's counters since start.
    pub fn observe_alerts(&self, stats: &AlertStats) {
        self.sources.alerts(stats);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        self.exposition(Some(exposition::OPENMETRICS)).1
    }

    /// What a scrape with this `Accept` header gets, and its content type: OpenMetrics for
    /// scrapers that ask for it (Prometheus), the classic text format for everyone else.
    ///
    /// Either is written straight into one buffer, sized from the previous exposition. With
    /// 10,000 observer × check keys the text is about 20 MB: an OpenMetrics copy translated
    /// into a second buffer, both grown by doubling, held more than 70 MB per scrape, and the
    /// allocator kept most of it after the scrape.
    pub fn exposition(&self, accept: Option<&str>) -> (&'static str, String) {
        let hint = self.encoded_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 8);
        let (content_type, encoded) = if exposition::wants_openmetrics(accept) {
            (
                exposition::OPENMETRICS,
                prometheus_client::encoding::text::encode(&mut out, &self.registry),
            )
        } else {
            let mut writer = exposition::ClassicWriter::new(&mut out);
            let encoded = prometheus_client::encoding::text::encode(&mut writer, &self.registry);
            writer.finish();
            (exposition::CLASSIC, encoded)
        };
        if encoded.is_err() {
            out.clear();
        }
        self.encoded_len.store(out.len(), Ordering::Relaxed);
        (content_type, out)
    }
}

/// Adds what a counter fed from absolute totals is missing: `now - *last` when the total grew,
/// nothing when it did not (a restarted source starts over from its new total).
fn advance(counter: &Counter, last: &mut u64, now: u64) {
    if now > *last {
        counter.inc_by(now - *last);
    }
    *last = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_name_the_build_and_carry_the_unprefixed_process_families() {
        let m = Metrics::new();
        let build = format!(
            "sitewarden_controller_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let openmetrics = m.encode();
        let (_, classic) = m.exposition(None);
        for (format, text, lines) in [
            (
                "OpenMetrics",
                &openmetrics,
                [
                    "# TYPE sitewarden_controller_build info",
                    "# TYPE process_cpu_seconds counter",
                ],
            ),
            (
                "classic",
                &classic,
                [
                    "# TYPE sitewarden_controller_build_info gauge",
                    "# TYPE process_cpu_seconds_total counter",
                ],
            ),
        ] {
            for line in lines.iter().chain([&build.as_str()]) {
                assert!(
                    text.lines().any(|l| l == *line),
                    "{format}: no {line:?} in\n{text}"
                );
            }
            for family in sitewarden_shared::metrics::PROCESS_FAMILIES {
                assert!(
                    text.contains(&format!("\n{family} ")),
                    "{format}: no {family} in\n{text}"
                );
            }
            assert!(!text.contains("sitewarden_controller_process_"), "{text}");
        }
    }
}
