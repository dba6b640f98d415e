//! [`AgentToml`]: an agent's configuration file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{NatsTable, SecretFile, duration, optional_duration, render};

/// An agent's whole configuration file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentToml {
    /// `[agent]`.
    pub agent: AgentTable,
    /// `[nats]`.
    pub nats: NatsTable,
    /// `[defaults]` of every check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// `[edge]`: edge proxies this agent steers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeAdapter>,
    /// `[[sites]]`: the servers the checks probe.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<AgentSite>,
    /// `[[checks]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// `[[dbcopy]]`: database-copy collectors and push endpoints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dbcopy: Vec<DbCopy>,
}

impl AgentToml {
    /// The TOML text, as an agent reads it.
    pub fn render(&self) -> String {
        render(self)
    }
}

/// `[agent]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentTable {
    /// The agent's id (an observer of the decisions' `[[agents]]`).
    pub id: String,
    /// The site it runs in.
    pub site: String,
    /// Where `/metrics` and the push endpoint listen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// How often it publishes a heartbeat.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub heartbeat_interval: Option<Duration>,
}

/// `[defaults]`.
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    /// Every check's interval.
    #[serde(serialize_with = "duration")]
    pub interval: Duration,
    /// Every check's timeout.
    #[serde(serialize_with = "duration")]
    pub timeout: Duration,
}

/// One `[[sites]]` entry of an agent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentSite {
    /// The site's name.
    pub name: String,
    /// The site's ActiveSync `ExternalUrl` (a 451 must name a known one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activesync_url: Option<String>,
    /// Its client-access servers.
    pub servers: Vec<ServerAddress>,
}

/// A client-access server and where to connect to it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerAddress {
    /// The server's name.
    pub name: String,
    /// `host` or `host:port`.
    pub address: String,
}

/// One `[[checks]]` entry (the keys the integration tests use).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Check {
    /// The check's name.
    pub name: String,
    /// `"activesync"`, `"tcp"`, `"exchange_healthcheck"`, …
    pub kind: String,
    /// The site whose servers it probes.
    pub site: String,
    /// `"http"` against the plain-HTTP emulator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The TCP port (`kind = "tcp"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Overrides `[defaults] interval`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub interval: Option<Duration>,
    /// Overrides `[defaults] timeout`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub timeout: Option<Duration>,
}

/// One `[[dbcopy]]` entry: a collector command, or a push endpoint with `push_token`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbCopy {
    /// The collector's name.
    pub name: String,
    /// The DAG it reports on.
    pub dag: String,
    /// The command that prints the copy status.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// How often it runs.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub interval: Option<Duration>,
    /// How long one run may take.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub timeout: Option<Duration>,
    /// The bearer token of the push endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_token: Option<SecretFile>,
}

impl DbCopy {
    /// This collector as a `[[dbcopy]]` table alone, to append to an agent's TOML text.
    pub fn render(&self) -> String {
        /// An agent file holding nothing but this collector.
        #[derive(Serialize)]
        struct Collectors<'a> {
            /// `[[dbcopy]]`.
            dbcopy: [&'a DbCopy; 1],
        }
        render(&Collectors { dbcopy: [self] })
    }
}

/// `[edge]` of an agent.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeAdapter {
    /// How often it re-reads the latest notice and puts servers back.
    #[serde(serialize_with = "duration")]
    pub resync_interval: Duration,
    /// `[[edge.haproxy]]`.
    pub haproxy: Vec<HaproxyBackend>,
}

/// One `[[edge.haproxy]]` backend.
#[derive(Debug, Clone, Serialize)]
pub struct HaproxyBackend {
    /// HAProxy's admin socket.
    pub socket: PathBuf,
    /// The backend.
    pub backend: String,
    /// The DAG it follows.
    pub dag: String,
    /// Server → site.
    pub servers: BTreeMap<String, String>,
    /// What passive servers are set to (`"drain"` by default, or `"maint"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive: Option<String>,
}
