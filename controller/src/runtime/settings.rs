//! Runtime settings: the parts of the controller's TOML that are about running, not deciding.
//!
//! `[controller]`, `[nats]`, `[provider]` and `[ha]` live in the same file as the decision
//! configuration (`[policy]`, `[[sites]]`, ...). The engine never sees them; they are validated
//! here into a [`RuntimeSettings`]. Every option and default is in
//! docs/configuration-controller.md.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use sitewarden_shared::config::{ConfigError, KeyPath, Source, duration};
use sitewarden_shared::nats::NatsSettings;

use crate::ha::clock::LeaseClock;
use crate::provider::config::{ProviderConfig, RawProvider};
use crate::settings_file::{ConfigFile, RawRuntime};

/// `[controller]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    /// This controller's id (lease holder, audit subject); default: the host name.
    #[serde(default)]
    pub id: Option<String>,
    /// Address for `/healthz`, `/readyz` and `/metrics`; default `127.0.0.1:9465`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Decide and audit "would apply", never write to the provider.
    #[serde(default)]
    pub dry_run: bool,
    /// JetStream replicas for sitewarden's streams and buckets (1, or 3 across three sites).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// How long the events stream keeps a subject's last event (default 15m).
    #[serde(default, with = "duration::option")]
    pub events_max_age: Option<Duration>,
    /// Audit retention (default 30 days).
    #[serde(default, with = "duration::option")]
    pub audit_max_age: Option<Duration>,
    /// Byte cap of the events stream (default: from agents × servers × checks, see
    /// `runtime::bus_budget`).
    #[serde(default)]
    pub events_max_bytes: Option<u64>,
    /// Byte cap of the audit stream, oldest records dropped first (default 256 MiB).
    #[serde(default)]
    pub audit_max_bytes: Option<u64>,
    /// How often time is advanced in the engine (default 250ms).
    #[serde(default, with = "duration::option")]
    pub tick: Option<Duration>,
    /// How often every managed record is read back from the provider (default 60s).
    #[serde(default, with = "duration::option")]
    pub reconcile_every: Option<Duration>,
}

/// `[propagation]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPropagation {
    /// Authoritative nameservers to watch (`"192.0.2.53:53"`); default: the built-in server's
    /// listen address, or the RFC 2136 primary; none for hosted APIs.
    #[serde(default)]
    pub servers: Option<Vec<SocketAddr>>,
    /// Alert when not every server answers the new target after this many TTLs (default 3).
    #[serde(default)]
    pub alert_after_ttls: Option<u32>,
    /// Wait between two queries to one server (default 1s).
    #[serde(default, with = "duration::option")]
    pub poll_interval: Option<Duration>,
    /// A recursive resolver for checking that every candidate target resolves (default: no
    /// check).
    #[serde(default)]
    pub resolver: Option<SocketAddr>,
    /// How often candidates are checked (default 5m).
    #[serde(default, with = "duration::option")]
    pub check_every: Option<Duration>,
}

/// Validated `[propagation]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationSettings {
    /// Servers to watch after each change (empty: no watch).
    pub servers: Vec<SocketAddr>,
    /// Alert after this many TTLs (at least 10 s).
    pub alert_after_ttls: u32,
    /// Query spacing per server.
    pub poll_interval: Duration,
    /// Resolver for the candidate check.
    pub resolver: Option<SocketAddr>,
    /// Candidate check period.
    pub check_every: Duration,
}

impl PropagationSettings {
    /// How long to watch a change with this TTL before alerting.
    pub fn deadline(&self, ttl_secs: u64) -> Duration {
        Duration::from_secs(ttl_secs.saturating_mul(u64::from(self.alert_after_ttls)))
            .max(Duration::from_secs(10))
    }
}

/// `[ha]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHa {
    /// Leader lease (default 10s); the bucket's `max_age`.
    #[serde(default, with = "duration::option")]
    pub lease: Option<Duration>,
    /// Renewal interval (default lease/3).
    #[serde(default, with = "duration::option")]
    pub renew_every: Option<Duration>,
    /// The leader stops acting this long before the lease could expire (default lease/3).
    #[serde(default, with = "duration::option")]
    pub margin: Option<Duration>,
}

/// Checked runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Controller id.
    pub id: String,
    /// Health and metrics address.
    pub listen: Option<SocketAddr>,
    /// Never write to the provider.
    pub dry_run: bool,
    /// JetStream replicas.
    pub replicas: usize,
    /// Events stream retention.
    pub events_max_age: Duration,
    /// Audit retention.
    pub audit_max_age: Duration,
    /// Events stream byte cap, when set by hand (else computed from the configuration).
    pub events_max_bytes: Option<u64>,
    /// Audit stream byte cap.
    pub audit_max_bytes: i64,
    /// Engine tick.
    pub tick: Duration,
    /// Provider read-back period.
    pub reconcile_every: Duration,
    /// Bus settings.
    pub nats: NatsSettings,
    /// Provider settings.
    pub provider: ProviderConfig,
    /// Lease timing.
    pub lease: LeaseClock,
    /// Chat-ops sinks (`[[alerts]]`).
    pub alerts: Vec<crate::notify::config::SinkConfig>,
    /// Operator API tokens (`[api]`).
    pub api: crate::runtime::api::ApiSettings,
    /// Edge webhooks (`[edge]`).
    pub edge: crate::edge::EdgeConfig,
    /// The Slack slash command (`[slack]`), when configured.
    pub slack: Option<crate::runtime::slack::SlackSettings>,
    /// Propagation watch (`[propagation]`).
    pub propagation: PropagationSettings,
    /// What `/metrics` exports (`[metrics]`).
    pub metrics: crate::runtime::metrics::MetricsSettings,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| sitewarden_shared::ids::validate_id(s).is_ok())
        .unwrap_or_else(|| "controller".to_owned())
}

impl RuntimeSettings {
    /// Parses `src` and validates its runtime sections only (the binary loads the whole file
    /// once with [`ConfigFile::load`]; this is for tools and tests that need this half alone).
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        ConfigFile::load_runtime(src)
    }

    /// Validates the runtime sections already deserialized from `src`.
    pub fn from_raw(src: &Source, raw: RawRuntime) -> Result<Self, ConfigError> {
        let root = KeyPath::root();
        let c = raw.controller.unwrap_or_default();
        let at = root.key("controller");
        let id = c.id.unwrap_or_else(hostname);
        sitewarden_shared::ids::validate_id(&id)
            .map_err(|e| src.error(&at.key("id"), format!("{id:?} {e}")))?;
        let listen = match c.listen.as_deref().unwrap_or("127.0.0.1:9465") {
            "" | "off" => None,
            s => Some(s.parse().map_err(|_| {
                src.error(
                    &at.key("listen"),
                    format!("{s:?} is not an address like \"127.0.0.1:9465\" (or \"off\")"),
                )
            })?),
        };
        let replicas = c.replicas.unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            return Err(src.error(
                &at.key("replicas"),
                "use 1 (single node) or 3 (three sites); at most 5",
            ));
        }
        let positive = |key: &str,
                        d: Option<Duration>,
                        default: Duration,
                        min: Duration|
         -> Result<Duration, ConfigError> {
            let d = d.unwrap_or(default);
            if d < min {
                return Err(src.error(
                    &at.key(key),
                    format!("use at least {}", duration::format(min)),
                ));
            }
            Ok(d)
        };
        let events_max_age = positive(
            "events_max_age",
            c.events_max_age,
            Duration::from_secs(900),
            Duration::from_secs(60),
        )?;
        let audit_max_age = positive(
            "audit_max_age",
            c.audit_max_age,
            Duration::from_secs(30 * 86400),
            Duration::from_secs(3600),
        )?;
        let min_bytes = |key: &str, v: Option<u64>| -> Result<Option<u64>, ConfigError> {
            match v {
                Some(b) if b < 1024 * 1024 || b > i64::MAX as u64 => Err(src.error(
                    &at.key(key),
                    format!("{b} bytes is out of range; use at least 1048576 (1 MiB)"),
                )),
                v => Ok(v),
            }
        };
        let events_max_bytes = min_bytes("events_max_bytes", c.events_max_bytes)?;
        let audit_max_bytes = min_bytes("audit_max_bytes", c.audit_max_bytes)?
            .map(|b| b as i64)
            .unwrap_or(crate::runtime::bus_budget::AUDIT_DEFAULT_MAX_BYTES);
        let tick = positive(
            "tick",
            c.tick,
            Duration::from_secs(1),
            Duration::from_millis(50),
        )?;
        let reconcile_every = positive(
            "reconcile_every",
            c.reconcile_every,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )?;

        let nats = controller_nats(src, &root, raw.nats)?;
        let provider = match raw.provider {
            Some(p) => p.validate(src, &root.key("provider"))?,
            None => RawProvider::default().validate(src, &root.key("provider"))?,
        };
        let ha = raw.ha.unwrap_or_default();
        let lease_len = ha.lease.unwrap_or(LeaseClock::DEFAULT_LEASE);
        let lease = LeaseClock::with(
            lease_len,
            ha.renew_every.unwrap_or(lease_len / 3),
            ha.margin.unwrap_or(lease_len / 3),
        )
        .map_err(|e| src.error(&root.key("ha"), e.to_string()))?;
        let alerts = crate::notify::config::validate(src, &root.key("alerts"), &raw.alerts)?;
        let api = raw
            .api
            .unwrap_or_default()
            .validate(src, &root.key("api"))?;
        let edge = crate::edge::validate(src, &root.key("edge"), &raw.edge.unwrap_or_default())?;
        let propagation = propagation(src, &root, raw.propagation, &provider)?;
        let slack = raw
            .slack
            .map(|s| s.validate(src, &root.key("slack")))
            .transpose()?;
        Ok(Self {
            alerts,
            api,
            edge,
            slack,
            propagation,
            id,
            listen,
            dry_run: c.dry_run,
            replicas,
            events_max_age,
            audit_max_age,
            events_max_bytes,
            audit_max_bytes,
            tick,
            reconcile_every,
            nats,
            provider,
            lease,
            metrics: raw.metrics.unwrap_or_default().into(),
        })
    }
}

/// `[propagation]`: which authoritative servers to watch after a change (default: the built-in
/// DNS's own listener, or the RFC 2136 server) and how.
fn propagation(
    src: &Source,
    root: &KeyPath,
    raw: Option<RawPropagation>,
    provider: &ProviderConfig,
) -> Result<PropagationSettings, ConfigError> {
    let p = raw.unwrap_or_default();
    let pat = root.key("propagation");
    let default_servers = match &provider.kind {
        crate::provider::config::ProviderKind::Builtin(d) => {
            let mut a = d.listen;
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            vec![a]
        }
        crate::provider::config::ProviderKind::Rfc2136(r) => vec![r.server],
        _ => Vec::new(),
    };
    let alert_after_ttls = p.alert_after_ttls.unwrap_or(3);
    if !(1..=100).contains(&alert_after_ttls) {
        return Err(src.error(&pat.key("alert_after_ttls"), "use 1 to 100"));
    }
    let poll_interval = p.poll_interval.unwrap_or(Duration::from_secs(1));
    if poll_interval < Duration::from_millis(100) {
        return Err(src.error(&pat.key("poll_interval"), "use at least 100ms"));
    }
    let check_every = p.check_every.unwrap_or(Duration::from_secs(300));
    if check_every < Duration::from_secs(10) {
        return Err(src.error(&pat.key("check_every"), "use at least 10s"));
    }
    Ok(PropagationSettings {
        servers: p.servers.unwrap_or(default_servers),
        alert_after_ttls,
        poll_interval,
        resolver: p.resolver,
        check_every,
    })
}

/// `[nats]` for a controller: as for any client, and without `js_api_prefix` (the controllers'
/// account holds the streams).
fn controller_nats(
    src: &Source,
    root: &KeyPath,
    raw: Option<sitewarden_shared::nats::NatsConfig>,
) -> Result<NatsSettings, ConfigError> {
    let nats = raw.unwrap_or_default().validate(src, &root.key("nats"))?;
    if nats.js_api_prefix().is_some() {
        return Err(src.error(
            &root.key("nats").key("js_api_prefix"),
            "js_api_prefix is for agents in an account of their own; the controllers' \
             account holds sitewarden's streams, so remove it here",
        ));
    }
    Ok(nats)
}
