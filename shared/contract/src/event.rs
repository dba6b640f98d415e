//! The v1 event contract: what agents publish and the controller consumes.
//!
//! Three event types travel on the bus, each as one JSON object per NATS message:
//! [`Observation`] (one probe result), [`DbCopySnapshot`] (the mailbox-database copies one
//! collector saw) and [`Heartbeat`] (the agent is alive, with its own counters). Every event
//! starts with the same five fields — `schema_version`, `agent`, `site`, `seq`, `observed_at` —
//! so a consumer can check order and freshness before it looks at the rest. Agents report and
//! never judge: an observation says what happened on the wire, the controller decides what it
//! means. `docs/events.md` documents every field; `shared/contract/schemas/` holds the generated JSON
//! Schemas, checked against these types by a test.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dbcopy::DbCopy;
use crate::ids::{AgentId, CheckName, ServerId, SiteId};

/// The schema version this build writes and accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// Largest event, in bytes of JSON: NATS's default `max_payload` (1 MiB). The agent replaces a
/// database-copy snapshot that would exceed it by an error snapshot that says so (split the DAG
/// over several collectors); the controller rejects anything larger as hostile or broken.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// What a probe found, as the agent saw it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The check's success condition held.
    Pass,
    /// It did not; `error_class` says how.
    Fail,
}

/// The kind of probe that produced an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `GET /<vdir>/healthcheck.htm` on Exchange 2013 and later.
    ExchangeHealthcheck,
    /// `OPTIONS /Microsoft-Server-ActiveSync`, anonymous or with a test account.
    Activesync,
    /// A generic HTTP(S) request with expected status, body and headers.
    Http,
    /// A TCP connect.
    Tcp,
}

/// Why a probe failed, coarse enough to aggregate and alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The server actively refused the TCP connection.
    ConnectRefused,
    /// No answer within the check's timeout (connect, TLS or response).
    Timeout,
    /// Any other connection-level failure (reset, unreachable, DNS).
    Connect,
    /// The TLS handshake failed (untrusted or expired certificate, wrong SNI).
    Tls,
    /// An HTTP status outside the expected set.
    HttpStatus,
    /// The body did not contain what the check expects (e.g. `200 OK` for healthcheck.htm).
    Body,
    /// A required header was missing or wrong (e.g. `MS-ASProtocolVersions`).
    Header,
    /// An ActiveSync 451 pointing at the same host: clients would loop.
    RedirectLoop,
    /// An ActiveSync 451 pointing at a host that is no configured site's URL.
    RedirectUnknown,
    /// The server is throttling (503), possibly with `Retry-After`.
    Throttled,
    /// The response was not HTTP, or was cut off.
    Protocol,
}

/// ActiveSync details from an `OPTIONS /Microsoft-Server-ActiveSync` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActiveSyncDetails {
    /// `MS-ASProtocolVersions`, split on commas, e.g. `["12.1","14.0","14.1","16.0","16.1"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocol_versions: Vec<String>,
    /// `MS-ASProtocolCommands`, split on commas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocol_commands: Vec<String>,
    /// `MS-Server-ActiveSync`, the server build, e.g. `14.00.0536.000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// `X-MS-Location` of a 451 redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_location: Option<String>,
    /// The configured site whose ActiveSync URL the 451 named, when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_site: Option<SiteId>,
    /// `Retry-After` of a 503, verbatim (seconds or an HTTP date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// The probe authenticated with the configured test account.
    #[serde(default)]
    pub authenticated: bool,
}

/// What the agent saw of the server's TLS certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TlsDetails {
    /// The leaf certificate's `notAfter`.
    pub not_after: DateTime<Utc>,
    /// Whole days from `observed_at` until `not_after` (negative once expired).
    pub days_left: i64,
    /// `true` when `days_left` is below the agent's `cert_expiry_warn_days`.
    pub expiring_soon: bool,
    /// DNS names in the certificate's subjectAltName extension.
    pub sans: Vec<String>,
    /// Names configured for the target site that no SAN covers (wildcards honoured). Empty is good.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_names: Vec<String>,
}

/// Optional facts a probe recorded beyond pass/fail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservationDetails {
    /// The backend FQDN from a healthcheck.htm body (`200 OK<br/>EXCH-SVR-2.DOMAIN.COM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_fqdn: Option<String>,
    /// ActiveSync specifics, for `activesync` checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activesync: Option<ActiveSyncDetails>,
    /// Certificate facts, for HTTPS targets whose handshake completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDetails>,
    /// A free-text note that qualifies a pass (e.g. "451 to known site site2").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One probe result: observer `agent` in `site` checked `server` in `target_site`.
///
/// Subject: `sitewarden.v1.obs.<site>.<agent>.<server>.<check>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Observation {
    /// Always 1 for this contract.
    pub schema_version: u32,
    /// The observing agent.
    pub agent: AgentId,
    /// The observing agent's own site (the observer's vantage point).
    pub site: SiteId,
    /// Per-agent sequence number, strictly increasing across all of the agent's events.
    pub seq: u64,
    /// When the probe started, in UTC (RFC 3339).
    pub observed_at: DateTime<Utc>,
    /// The site the probed server belongs to.
    pub target_site: SiteId,
    /// The probed server as named in the configuration.
    pub server: ServerId,
    /// The configured check that ran.
    pub check: CheckName,
    /// The kind of probe.
    pub kind: CheckKind,
    /// The service this check speaks for, e.g. `activesync`, `owa`, `ews`, `smtp`.
    pub protocol: String,
    /// Pass or fail.
    pub outcome: Outcome,
    /// The HTTP status, when a response arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Milliseconds from connect to the end of the response (or to the failure).
    pub latency_ms: u64,
    /// Why it failed; absent on pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// Human-readable failure text, without secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Extra facts the probe recorded.
    #[serde(default)]
    pub details: ObservationDetails,
}

/// Whether a database-copy collection run produced data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectOutcome {
    /// `copies` holds what the collector returned.
    Ok,
    /// The collector failed; `error` says how and `copies` is empty.
    Error,
}

/// How the snapshot reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectVia {
    /// The agent ran the configured command and parsed its output.
    Command,
    /// An Exchange server POSTed the JSON to the agent's push endpoint.
    Push,
}

/// The mailbox-database copies one collector saw at one moment.
///
/// Subject: `sitewarden.v1.dbcopy.<site>.<agent>.<source>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DbCopySnapshot {
    /// Always 1 for this contract.
    pub schema_version: u32,
    /// The agent that collected it.
    pub agent: AgentId,
    /// The agent's site.
    pub site: SiteId,
    /// Per-agent sequence number, strictly increasing across all of the agent's events.
    pub seq: u64,
    /// When the collection finished (or the push arrived), in UTC.
    pub observed_at: DateTime<Utc>,
    /// The configured collector (`[[dbcopy]] name`).
    pub source: CheckName,
    /// The DAG this collector reports on, as configured.
    pub dag: String,
    /// Command or push.
    pub via: CollectVia,
    /// Whether `copies` is meaningful.
    pub outcome: CollectOutcome,
    /// The collector's failure, when `outcome` is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every copy the collector returned.
    #[serde(default)]
    pub copies: Vec<DbCopy>,
}

/// The agent is alive; sent every `heartbeat_interval`.
///
/// Subject: `sitewarden.v1.heartbeat.<site>.<agent>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    /// Always 1 for this contract.
    pub schema_version: u32,
    /// The agent.
    pub agent: AgentId,
    /// The agent's site.
    pub site: SiteId,
    /// Per-agent sequence number, strictly increasing across all of the agent's events.
    pub seq: u64,
    /// When the heartbeat was sent, in UTC.
    pub observed_at: DateTime<Utc>,
    /// When this agent process started (a change means a restart).
    pub started_at: DateTime<Utc>,
    /// The agent's build version.
    pub version: String,
    /// Milliseconds between heartbeats; the controller treats the agent as silent after a few.
    pub interval_ms: u64,
    /// Probe checks the agent runs (servers × checks).
    pub checks: u32,
    /// Results held while the bus was unreachable, waiting to be published.
    pub buffered: u64,
    /// Results superseded while the bus was unreachable (only the latest per check is kept).
    pub dropped_total: u64,
}

/// The fields every event starts with, borrowed, for order and freshness checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta<'a> {
    /// `schema_version`.
    pub schema_version: u32,
    /// `agent`.
    pub agent: &'a AgentId,
    /// `site`.
    pub site: &'a SiteId,
    /// `seq`.
    pub seq: u64,
    /// `observed_at`.
    pub observed_at: DateTime<Utc>,
}

/// Common access to the five leading fields of every event.
pub trait Event {
    /// The leading fields.
    fn meta(&self) -> EventMeta<'_>;
}

macro_rules! impl_event {
    ($($t:ty),*) => {$(
        impl Event for $t {
            fn meta(&self) -> EventMeta<'_> {
                EventMeta {
                    schema_version: self.schema_version,
                    agent: &self.agent,
                    site: &self.site,
                    seq: self.seq,
                    observed_at: self.observed_at,
                }
            }
        }
    )*};
}
impl_event!(Observation, DbCopySnapshot, Heartbeat);
