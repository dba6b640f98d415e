//! [`ControllerToml`]: a controller's configuration file, runtime tables and decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{NatsTable, SecretFile, duration, optional_duration, render};

/// A controller's whole configuration file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControllerToml {
    /// `[controller]`.
    pub controller: ControllerTable,
    /// `[nats]`.
    pub nats: NatsTable,
    /// `[provider]`.
    pub provider: Provider,
    /// `[ha]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<Ha>,
    /// `[api]`: the operator API's tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// `[slack]`: the slash command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<Slack>,
    /// `[[alerts]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertSink>,
    /// `[edge]`: signed webhooks to edge proxies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<Edge>,
    /// The decision part: policy, sites, agents, namespaces, DAGs.
    #[serde(flatten)]
    pub decisions: Decisions,
}

impl ControllerToml {
    /// The TOML text, as a controller reads it.
    pub fn render(&self) -> String {
        render(self)
    }
}

/// `[controller]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControllerTable {
    /// The controller's id (in the lease, the audit trail and the metrics).
    pub id: String,
    /// Where the API, dashboard and `/metrics` listen, or `"off"`.
    pub listen: String,
    /// How often the engine steps without input.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub tick: Option<Duration>,
    /// Replicas of every stream and bucket (3 on a 3-node cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    /// Decide and audit, write nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// How often the leader reads every record back.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub reconcile_every: Option<Duration>,
    /// The audit stream's size cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_max_bytes: Option<u64>,
}

/// `[provider]`: where the records live.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Provider {
    /// In memory; the test hands the controller its `MemoryProvider`.
    #[default]
    Memory,
    /// Cloudflare's v4 API (the emulator's, in tests).
    Cloudflare {
        /// The zone's id.
        zone_id: String,
        /// The API token.
        api_token: SecretFile,
        /// The API's base URL.
        api_url: String,
        /// How long one API call may take.
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "optional_duration"
        )]
        request_timeout: Option<Duration>,
        /// No retry wait of a call ends later than this after its first attempt.
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "optional_duration"
        )]
        retry_deadline: Option<Duration>,
    },
    /// The controller's own authoritative DNS server, records kept on the bus.
    Builtin {
        /// The zone it serves.
        zone: String,
        /// Where it answers (UDP and TCP).
        listen: String,
        /// The zone's NS names.
        nameservers: Vec<String>,
        /// The SOA's contact.
        soa_email: String,
    },
}

/// `[ha]`.
#[derive(Debug, Clone, Serialize)]
pub struct Ha {
    /// The leader lease.
    #[serde(serialize_with = "duration")]
    pub lease: Duration,
}

/// `[api]`.
#[derive(Debug, Clone, Serialize)]
pub struct Api {
    /// Who may call the API.
    pub tokens: Vec<ApiToken>,
}

/// One entry of `[api] tokens`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    /// The holder, as the audit trail names them.
    pub name: String,
    /// `"admin"` or `"read"`.
    pub role: String,
    /// The token.
    pub token: SecretFile,
}

/// `[slack]`.
#[derive(Debug, Clone, Serialize)]
pub struct Slack {
    /// The Slack app's signing secret.
    pub signing_secret: SecretFile,
    /// Slack user ids allowed to write.
    pub allowed_users: Vec<String>,
}

/// One `[[alerts]]` sink (a webhook).
#[derive(Debug, Clone, Serialize)]
pub struct AlertSink {
    /// `"webhook"` (or `"slack"`, `"teams"`).
    pub kind: String,
    /// The URL, kept as a secret.
    pub url: SecretFile,
    /// The least severity sent.
    pub min_severity: String,
}

/// `[edge]`.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    /// `[[edge.webhooks]]`.
    pub webhooks: Vec<EdgeWebhook>,
}

/// One `[[edge.webhooks]]` endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeWebhook {
    /// Its name in logs and metrics.
    pub name: String,
    /// Where notices are POSTed.
    pub url: String,
    /// The HMAC key that signs them.
    pub secret: SecretFile,
}

/// The decision part of a controller's configuration (what `sitewarden plan` reads too).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Decisions {
    /// `[policy]`; `None` leaves the table out (every default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// `[[sites]]`.
    pub sites: Vec<Site>,
    /// `[[agents]]`.
    pub agents: Vec<SiteAgent>,
    /// `[[dags]]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dags: Vec<Dag>,
    /// `[[namespaces]]`.
    pub namespaces: Vec<Namespace>,
}

impl Decisions {
    /// The TOML text of the decision part alone.
    pub fn render(&self) -> String {
        render(self)
    }
}

/// `[policy]`; `None` keeps the documented default.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Policy {
    /// The agents' probe interval the controller expects.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub interval: Option<Duration>,
    /// Consecutive failures before an observer counts a check as failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Consecutive successes before it counts as passing again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// The least number of fresh observers for a quorum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_observers: Option<u32>,
    /// The least time between two automatic non-emergency changes of a name.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub hold_down: Option<Duration>,
    /// How long a preferred site must be Up before a name fails back to it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub failback_after: Option<Duration>,
}

/// One `[[sites]]` entry of the decisions.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    /// The site's name.
    pub name: String,
    /// Its client-access servers (none for a witness).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
}

/// One `[[agents]]` entry: an observer and the site it lives in.
#[derive(Debug, Clone, Serialize)]
pub struct SiteAgent {
    /// The agent's id.
    pub name: String,
    /// Its site.
    pub site: String,
}

/// One `[[dags]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Dag {
    /// The DAG's name.
    pub name: String,
    /// Mailbox server → site.
    pub servers: BTreeMap<String, String>,
}

/// One `[[namespaces]]` entry: a managed name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Namespace {
    /// The name.
    pub name: String,
    /// The TTL written with the record.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_duration"
    )]
    pub ttl: Option<Duration>,
    /// `"mailbox"` for a name that follows a DAG's active site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow: Option<String>,
    /// The DAG it follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dag: Option<String>,
    /// With `follow`: site → target.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, String>,
    /// The targets in order of preference.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

/// One candidate target of a namespace.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The target name.
    pub target: String,
    /// Sites that must all be serving for it.
    pub requires: Vec<String>,
}
