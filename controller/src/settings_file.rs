//! The controller's configuration file, parsed once at the composition root.
//!
//! One serde pass reads the whole TOML file: the decision sections (`[policy]`, `[[sites]]`,
//! `[[agents]]`, `[[dags]]`, `[[namespaces]]`) with the engine's raw types, the runtime's
//! sections (`[controller]`, `[nats]`, `[provider]`, `[ha]`, `[[alerts]]`, `[edge]`,
//! `[propagation]`, `[slack]`, `[api]`, `[metrics]`) with the runtime's. Unknown keys anywhere are an error
//! with a line number. Each half is then validated by its owner: the engine into a
//! [`ControllerConfig`], the runtime into [`RuntimeSettings`].

use std::path::Path;

use serde::Deserialize;
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::config::raw::{
    RawAgent, RawDag, RawDecision, RawNamespace, RawPolicy, RawSite, is_builtin_kind,
};
use sitewarden_shared::config::{ConfigError, Source};

use crate::runtime::settings::{RawController, RawHa, RawPropagation, RuntimeSettings};

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfigFile {
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    sites: Vec<RawSite>,
    #[serde(default)]
    agents: Vec<RawAgent>,
    #[serde(default)]
    dags: Vec<RawDag>,
    #[serde(default)]
    namespaces: Vec<RawNamespace>,
    #[serde(default)]
    controller: Option<RawController>,
    #[serde(default)]
    nats: Option<sitewarden_shared::nats::NatsConfig>,
    #[serde(default)]
    provider: Option<crate::provider::config::RawProvider>,
    #[serde(default)]
    ha: Option<RawHa>,
    #[serde(default)]
    alerts: Vec<crate::notify::config::RawSink>,
    #[serde(default)]
    edge: Option<crate::edge::RawEdge>,
    #[serde(default)]
    propagation: Option<RawPropagation>,
    #[serde(default)]
    slack: Option<crate::runtime::slack::RawSlack>,
    #[serde(default)]
    api: Option<crate::runtime::api::RawApi>,
    #[serde(default)]
    metrics: Option<crate::runtime::metrics::RawMetrics>,
}

/// The runtime's sections as written; [`RuntimeSettings::from_raw`] validates them.
#[derive(Debug, Default)]
pub struct RawRuntime {
    /// `[controller]`: this process (id, listen address, dry run, streams).
    pub controller: Option<RawController>,
    /// `[nats]`: the bus.
    pub nats: Option<sitewarden_shared::nats::NatsConfig>,
    /// `[provider]`: where records live.
    pub provider: Option<crate::provider::config::RawProvider>,
    /// `[ha]`: the leader lease.
    pub ha: Option<RawHa>,
    /// `[[alerts]]`: chat-ops sinks.
    pub alerts: Vec<crate::notify::config::RawSink>,
    /// `[edge]`: signed webhooks to edge proxies.
    pub edge: Option<crate::edge::RawEdge>,
    /// `[propagation]`: watching authoritative servers after a change.
    pub propagation: Option<RawPropagation>,
    /// `[slack]`: the slash-command endpoint.
    pub slack: Option<crate::runtime::slack::RawSlack>,
    /// `[api]`: operator API tokens.
    pub api: Option<crate::runtime::api::RawApi>,
    /// `[metrics]`: what `/metrics` exports.
    pub metrics: Option<crate::runtime::metrics::RawMetrics>,
}

impl RawConfigFile {
    fn split(self) -> (RawDecision, RawRuntime) {
        (
            RawDecision {
                policy: self.policy,
                sites: self.sites,
                agents: self.agents,
                dags: self.dags,
                namespaces: self.namespaces,
                builtin_dns: is_builtin_kind(
                    self.provider.as_ref().and_then(|p| p.kind.as_deref()),
                ),
            },
            RawRuntime {
                controller: self.controller,
                nats: self.nats,
                provider: self.provider,
                ha: self.ha,
                alerts: self.alerts,
                edge: self.edge,
                propagation: self.propagation,
                slack: self.slack,
                api: self.api,
                metrics: self.metrics,
            },
        )
    }
}

/// A loaded configuration file: what the engine decides with and what the runtime runs with.
#[derive(Debug)]
pub struct ConfigFile {
    /// The decision configuration (sites, observers, DAGs, names, policy).
    pub decision: ControllerConfig,
    /// This process's runtime settings (bus, provider, lease, alerts, API, …).
    pub runtime: RuntimeSettings,
}

impl ConfigFile {
    /// Parses `source` once and validates both halves; the first error wins (decision first).
    pub fn load(source: &Source) -> Result<Self, ConfigError> {
        let file: RawConfigFile = source.parse()?;
        let (decision, runtime) = file.split();
        Ok(Self {
            decision: ControllerConfig::from_raw(source, decision)?,
            runtime: RuntimeSettings::from_raw(source, runtime)?,
        })
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load_file(path: &Path) -> Result<Self, ConfigError> {
        Self::load(&Source::read(path)?)
    }

    /// Only the runtime half of `source` (the decision sections are parsed but not validated):
    /// for tools and tests that run a runtime piece alone.
    pub fn load_runtime(source: &Source) -> Result<RuntimeSettings, ConfigError> {
        let file: RawConfigFile = source.parse()?;
        RuntimeSettings::from_raw(source, file.split().1)
    }
}
