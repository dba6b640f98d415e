//! Typed builders for the TOML files the tests give the controller and the agent.
//!
//! A test fills in [`ControllerToml`] or [`AgentToml`] (plain structs with the keys the tests
//! use; `None` and empty lists are left out, so the component's documented default applies) and
//! calls `render()`. The text goes through `toml`'s serializer, so quoting, escaping and table
//! order are never the test's problem, and then through the component's real config loader, so
//! the tests still exercise it. Files that test the parser on purpose (typos, hostile values,
//! every `[nats]` auth method) stay literal text.

mod agent;
mod controller;

pub use agent::{
    AgentSite, AgentTable, AgentToml, Check, DbCopy, Defaults, EdgeAdapter, HaproxyBackend,
    ServerAddress,
};
pub use controller::{
    AlertSink, Api, ApiToken, Candidate, ControllerTable, ControllerToml, Dag, Decisions, Edge,
    EdgeWebhook, Ha, Namespace, Policy, Provider, Site, SiteAgent, Slack,
};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A secret read from a file: `{ file = "…" }`, as production configs hold them.
#[derive(Debug, Clone, Serialize)]
pub struct SecretFile {
    /// The file holding the secret.
    pub file: PathBuf,
}

impl SecretFile {
    /// The secret in `path`.
    pub fn at(path: impl AsRef<Path>) -> Self {
        Self {
            file: path.as_ref().to_path_buf(),
        }
    }
}

/// `[nats]`: where the bus is and, on the shipped permissions, who connects.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NatsTable {
    /// Client URLs of the nodes.
    pub servers: Vec<String>,
    /// The user of the shipped permissions (`deploy/nats/sitewarden-auth.conf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretFile>,
    /// The JetStream API prefix an agent's account imports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub js_api_prefix: Option<String>,
    /// How often the client pings the server (a lost connection is noticed after two).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub ping_interval: Option<Duration>,
}

impl NatsTable {
    /// The nodes at `urls`, without credentials.
    pub fn servers<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            servers: urls.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Renders a table as TOML text.
fn render(value: &impl Serialize) -> String {
    toml::to_string(value).unwrap_or_else(|e| panic!("a test config does not serialize: {e}"))
}

/// A duration as the configs write it: whole seconds as `"3s"`, anything else as `"500ms"`.
fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_text(*d))
}

fn optional_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_configs_write_them() {
        assert_eq!(duration_text(Duration::from_secs(3)), "3s");
        assert_eq!(duration_text(Duration::from_millis(500)), "500ms");
        assert_eq!(duration_text(Duration::from_millis(2500)), "2500ms");
    }
}
