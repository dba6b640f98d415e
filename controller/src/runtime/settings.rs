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

use crate::config::raw::RawConfig;
use crate::ha::clock::LeaseClock;
use crate::provider::config::{ProviderConfig, RawProvider};

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
    /// How often time is advanced in the engine (default 250ms).
    #[serde(default, with = "duration::option")]
    pub tick: Option<Duration>,
    /// How often every managed record is read back from the provider (default 60s).
    #[serde(default, with = "duration::option")]
    pub reconcile_every: Option<Duration>,
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
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| sitewarden_shared::ids::validate_id(s).is_ok())
        .unwrap_or_else(|| "controller".to_owned())
}

impl RuntimeSettings {
    /// Validates the runtime sections of `src`.
    pub fn load(src: &Source) -> Result<Self, ConfigError> {
        let raw: RawConfig = src.parse()?;
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
        let tick = positive(
            "tick",
            c.tick,
            Duration::from_millis(250),
            Duration::from_millis(50),
        )?;
        let reconcile_every = positive(
            "reconcile_every",
            c.reconcile_every,
            Duration::from_secs(60),
            Duration::from_secs(5),
        )?;

        let nats = raw
            .nats
            .unwrap_or_default()
            .validate(src, &root.key("nats"))?;
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
        let slack = raw
            .slack
            .map(|s| s.validate(src, &root.key("slack")))
            .transpose()?;
        Ok(Self {
            alerts,
            api,
            edge,
            slack,
            id,
            listen,
            dry_run: c.dry_run,
            replicas,
            events_max_age,
            audit_max_age,
            tick,
            reconcile_every,
            nats,
            provider,
            lease,
        })
    }
}
