//! The agent's configuration: TOML in, checked domain types out.
//!
//! `RawConfig` mirrors the file (unknown keys are errors); [`AgentConfig::load`] turns it into
//! values that cannot be wrong: every check names a known site and servers, intervals are at
//! least 500 ms, timeouts fit inside their interval, kind-specific keys appear only on their kind,
//! secrets are read. Each error names the file, the line and the key, and says what is allowed.
//! `docs/configuration.md` documents every option and its default.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source, duration};
use sitewarden_shared::nats::{NatsConfig, NatsSettings};
use sitewarden_shared::{AgentId, CheckKind, CheckName, ServerId, SiteId};

/// Shortest allowed check interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Default check interval (with the controller's default `fall` of 4, a site is Down about 4 s
/// after it dies, and a 3 s blip is sat out: BENCHMARKS.md, "Peers").
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default probe timeout (at most the interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default database-copy collection interval.
pub const DEFAULT_DBCOPY_INTERVAL: Duration = Duration::from_secs(10);
/// Default database-copy collector timeout.
pub const DEFAULT_DBCOPY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default warning threshold for certificate expiry.
pub const DEFAULT_CERT_WARN_DAYS: u32 = 14;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    agent: RawAgent,
    #[serde(default)]
    nats: NatsConfig,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    sites: Vec<RawSite>,
    #[serde(default)]
    checks: Vec<RawCheck>,
    #[serde(default)]
    dbcopy: Vec<RawDbCopy>,
    #[serde(default)]
    edge: Option<crate::edge::config::RawEdge>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: String,
    site: String,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default, with = "duration::option")]
    heartbeat_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default, with = "duration::option")]
    interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    timeout: Option<Duration>,
    #[serde(default)]
    cert_expiry_warn_days: Option<u32>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: String,
    #[serde(default)]
    activesync_url: Option<String>,
    #[serde(default)]
    tls_names: Vec<String>,
    #[serde(default)]
    servers: Vec<RawServer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: String,
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: String,
    kind: String,
    site: String,
    #[serde(default)]
    servers: Option<Vec<String>>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default, with = "duration::option")]
    interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    timeout: Option<Duration>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    vdir: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<SecretRef>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    expect_status: Option<Vec<u16>>,
    #[serde(default)]
    body_contains: Option<String>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDbCopy {
    name: String,
    dag: String,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default, with = "duration::option")]
    interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    timeout: Option<Duration>,
    #[serde(default)]
    push_token: Option<SecretRef>,
}

/// The checked agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This agent's id, unique across the deployment.
    pub agent: AgentId,
    /// The site this agent runs in (its vantage point).
    pub site: SiteId,
    /// Where `/metrics`, `/healthz` and the push endpoint listen; `None` disables the server.
    pub listen: Option<SocketAddr>,
    /// How often a heartbeat is published.
    pub heartbeat_interval: Duration,
    /// Bus connection settings, secrets resolved.
    pub nats: NatsSettings,
    /// Sites this agent knows, by name (targets of checks and of 451 redirects).
    pub sites: BTreeMap<SiteId, Site>,
    /// Every probe to run: one per configured check × server.
    pub probes: Vec<Probe>,
    /// Database-copy collectors.
    pub dbcopy: Vec<DbCopySource>,
    /// Certificates expiring within this many days are flagged.
    pub cert_expiry_warn_days: u32,
    /// `[edge]`: HAProxy backends that follow edge notifications; `None` when not configured.
    pub edge: Option<crate::edge::EdgeSettings>,
}

/// A site as the agent knows it.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site's ActiveSync `ExternalUrl`, used to judge 451 redirects.
    pub activesync_url: Option<reqwest::Url>,
    /// Names the site's certificate must cover.
    pub tls_names: Vec<String>,
    /// Servers by name.
    pub servers: BTreeMap<ServerId, ServerAddr>,
}

/// A server's address: host (IP or name) and optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// IP address or resolvable name of the server itself (not the public name).
    pub host: String,
    /// Port, when the address gave one.
    pub port: Option<u16>,
}

/// Kind-specific probe settings.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// `GET /<vdir>/healthcheck.htm`.
    Healthcheck {
        /// The virtual directory, e.g. `owa`.
        vdir: String,
    },
    /// `OPTIONS /Microsoft-Server-ActiveSync`.
    ActiveSync {
        /// Test account; `None` probes anonymously (401 = alive).
        account: Option<(String, SecretString)>,
    },
    /// A generic HTTP request.
    Http {
        /// HTTP method.
        method: reqwest::Method,
        /// Path and query.
        path: String,
        /// Statuses that pass.
        expect_status: Vec<u16>,
        /// Text the body must contain.
        body_contains: Option<String>,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// A TCP connect.
    Tcp,
}

/// One probe: a check applied to one server.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The check's name.
    pub check: CheckName,
    /// Its kind.
    pub kind: CheckKind,
    /// Protocol label reported in observations.
    pub protocol: String,
    /// The site the server belongs to.
    pub target_site: SiteId,
    /// The server.
    pub server: ServerId,
    /// Host (IP or name) to connect to.
    pub connect_host: String,
    /// Port to connect to.
    pub port: u16,
    /// Public name sent as Host and TLS SNI.
    pub public_host: String,
    /// `true` for HTTPS.
    pub tls: bool,
    /// Extra CA (PEM file) trusted for this probe.
    pub ca_file: Option<PathBuf>,
    /// Time between probes.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Kind-specific settings.
    pub spec: ProbeSpec,
}

/// A database-copy collector.
#[derive(Debug, Clone)]
pub struct DbCopySource {
    /// Collector name (subject token).
    pub name: CheckName,
    /// The DAG it reports on.
    pub dag: String,
    /// Command and arguments to run, if collection is by command.
    pub command: Option<Vec<String>>,
    /// Time between runs.
    pub interval: Duration,
    /// Longest a run may take before it is killed.
    pub timeout: Duration,
    /// Bearer token for the push endpoint, if pushes are accepted.
    pub push_token: Option<SecretString>,
}

const KINDS: &str = "exchange_healthcheck, activesync, http or tcp";
const VDIRS: [&str; 8] = [
    "Microsoft-Server-ActiveSync",
    "owa",
    "ews",
    "autodiscover",
    "mapi",
    "oab",
    "ecp",
    "rpc",
];

impl AgentConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_source(&Source::read(path)?)
    }

    /// Checks configuration text.
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let raw: RawConfig = src.parse()?;
        let root = KeyPath::root();
        let id = |key: KeyPath, s: &str| -> Result<String, ConfigError> {
            sitewarden_shared::ids::validate_id(s)
                .map(|_| s.to_owned())
                .map_err(|e| src.error(&key, format!("{s:?} {e}")))
        };
        let a = root.key("agent");
        let agent = AgentId::new(id(a.key("id"), &raw.agent.id)?)
            .map_err(|e| src.error(&a.key("id"), e.to_string()))?;
        let site = SiteId::new(id(a.key("site"), &raw.agent.site)?)
            .map_err(|e| src.error(&a.key("site"), e.to_string()))?;
        let listen = match &raw.agent.listen {
            None => None,
            Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
                src.error(
                    &a.key("listen"),
                    format!("{s:?} is not an address; write it like \"127.0.0.1:9464\""),
                )
            })?),
        };
        let heartbeat_interval = raw.agent.heartbeat_interval.unwrap_or(DEFAULT_INTERVAL);
        if heartbeat_interval < MIN_INTERVAL {
            return Err(src.error(&a.key("heartbeat_interval"), "use at least 500ms"));
        }
        let nats = raw.nats.validate(src, &root.key("nats"))?;

        let d = root.key("defaults");
        let default_interval = raw.defaults.interval.unwrap_or(DEFAULT_INTERVAL);
        if default_interval < MIN_INTERVAL {
            return Err(src.error(
                &d.key("interval"),
                format!(
                    "{} is too short; use at least 500ms",
                    duration::format(default_interval)
                ),
            ));
        }
        let default_timeout = raw
            .defaults
            .timeout
            .unwrap_or(DEFAULT_TIMEOUT.min(default_interval));
        check_timeout(src, &d.key("timeout"), default_timeout, default_interval)?;
        if let Some(ca) = &raw.defaults.ca_file {
            require_file(src, &d.key("ca_file"), ca)?;
        }

        let mut sites = BTreeMap::new();
        for (i, s) in raw.sites.iter().enumerate() {
            let at = root.key("sites").index(i);
            let name = SiteId::new(&s.name)
                .map_err(|e| src.error(&at.key("name"), format!("{:?} {e}", s.name)))?;
            if sites.contains_key(&name) {
                return Err(src.error(&at.key("name"), format!("site {name} is defined twice")));
            }
            let activesync_url = match &s.activesync_url {
                None => None,
                Some(u) => Some(reqwest::Url::parse(u).ok().filter(|u| u.host_str().is_some()).ok_or_else(|| {
                    src.error(&at.key("activesync_url"), format!("{u:?} is not an absolute URL like \"https://mail-site1.example.com/Microsoft-Server-ActiveSync\""))
                })?),
            };
            let mut servers = BTreeMap::new();
            for (j, srv) in s.servers.iter().enumerate() {
                let sat = at.key("servers").index(j);
                let sname = ServerId::new(&srv.name)
                    .map_err(|e| src.error(&sat.key("name"), format!("{:?} {e}", srv.name)))?;
                let addr = parse_server_addr(&srv.address).ok_or_else(|| {
                    src.error(&sat.key("address"), format!("{:?} is not host or host:port (e.g. \"10.1.0.11\" or \"10.1.0.11:443\")", srv.address))
                })?;
                if servers.insert(sname.clone(), addr).is_some() {
                    return Err(src.error(
                        &sat.key("name"),
                        format!("server {sname} is listed twice in site {name}"),
                    ));
                }
            }
            sites.insert(
                name,
                Site {
                    activesync_url,
                    tls_names: s.tls_names.clone(),
                    servers,
                },
            );
        }

        let mut probes = Vec::new();
        let mut names = BTreeSet::new();
        for (i, c) in raw.checks.iter().enumerate() {
            let at = root.key("checks").index(i);
            let check = CheckName::new(&c.name)
                .map_err(|e| src.error(&at.key("name"), format!("{:?} {e}", c.name)))?;
            if !names.insert(check.clone()) {
                return Err(src.error(
                    &at.key("name"),
                    format!("check {check} is defined twice; names must be unique within an agent"),
                ));
            }
            probes.extend(build_probes(
                src,
                &at,
                c,
                check,
                &sites,
                &raw.defaults,
                default_interval,
                default_timeout,
            )?);
        }

        let mut dbcopy = Vec::new();
        let mut dbnames = BTreeSet::new();
        for (i, s) in raw.dbcopy.iter().enumerate() {
            let at = root.key("dbcopy").index(i);
            let name = CheckName::new(&s.name)
                .map_err(|e| src.error(&at.key("name"), format!("{:?} {e}", s.name)))?;
            if !dbnames.insert(name.clone()) {
                return Err(src.error(
                    &at.key("name"),
                    format!("collector {name} is defined twice"),
                ));
            }
            if s.command.is_none() && s.push_token.is_none() {
                return Err(src.error(&at, "give `command = [...]` to collect by running a script, or `push_token = { env = \"VAR\" }` to accept pushes (or both)"));
            }
            if let Some(cmd) = &s.command
                && cmd.first().is_none_or(|p| p.trim().is_empty())
            {
                return Err(src.error(&at.key("command"), "the command is empty; e.g. [\"pwsh\", \"-NoProfile\", \"-File\", \"Get-SitewardenDbCopyStatus.ps1\"]"));
            }
            let interval = s.interval.unwrap_or(DEFAULT_DBCOPY_INTERVAL);
            if interval < MIN_INTERVAL {
                return Err(src.error(&at.key("interval"), "use at least 500ms"));
            }
            let timeout = s.timeout.unwrap_or(DEFAULT_DBCOPY_TIMEOUT);
            if timeout.is_zero() {
                return Err(src.error(&at.key("timeout"), "use a positive timeout such as \"30s\""));
            }
            let push_token = match &s.push_token {
                None => None,
                Some(r) => Some(
                    r.resolve()
                        .map_err(|e| src.error(&at.key("push_token"), e))?,
                ),
            };
            if push_token.is_some() && listen.is_none() {
                return Err(src.error(
                    &at.key("push_token"),
                    "pushes need the HTTP server: set `[agent] listen = \"0.0.0.0:9464\"`",
                ));
            }
            dbcopy.push(DbCopySource {
                name,
                dag: s.dag.clone(),
                command: s.command.clone(),
                interval,
                timeout,
                push_token,
            });
        }

        let edge = match &raw.edge {
            None => None,
            Some(e) => Some(crate::edge::config::validate(src, &root.key("edge"), e)?),
        };

        Ok(AgentConfig {
            agent,
            site,
            listen,
            heartbeat_interval,
            nats,
            sites,
            probes,
            dbcopy,
            cert_expiry_warn_days: raw
                .defaults
                .cert_expiry_warn_days
                .unwrap_or(DEFAULT_CERT_WARN_DAYS),
            edge,
        })
    }
}

fn check_timeout(
    src: &Source,
    key: &KeyPath,
    timeout: Duration,
    interval: Duration,
) -> Result<(), ConfigError> {
    if timeout.is_zero() || timeout > interval {
        return Err(src.error(
            key,
            format!(
                "timeout {} must be positive and at most the interval {}",
                duration::format(timeout),
                duration::format(interval)
            ),
        ));
    }
    Ok(())
}

fn require_file(src: &Source, key: &KeyPath, p: &Path) -> Result<(), ConfigError> {
    if p.is_file() {
        Ok(())
    } else {
        Err(src.error(
            key,
            format!("{} does not exist or is not a file", p.display()),
        ))
    }
}

/// Parses `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
fn parse_server_addr(s: &str) -> Option<ServerAddr> {
    let s = s.trim();
    if s.is_empty() || s.contains('/') || s.contains(' ') {
        return None;
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(ServerAddr {
            host: sa.ip().to_string(),
            port: Some(sa.port()),
        });
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Some(ServerAddr {
            host: ip.to_string(),
            port: None,
        });
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => Some(ServerAddr {
            host: h.to_owned(),
            port: Some(p.parse().ok()?),
        }),
        Some(_) => None,
        None => Some(ServerAddr {
            host: s.to_owned(),
            port: None,
        }),
    }
}

fn kind_of(s: &str) -> Option<CheckKind> {
    match s {
        "exchange_healthcheck" => Some(CheckKind::ExchangeHealthcheck),
        "activesync" => Some(CheckKind::Activesync),
        "http" => Some(CheckKind::Http),
        "tcp" => Some(CheckKind::Tcp),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn build_probes(
    src: &Source,
    at: &KeyPath,
    c: &RawCheck,
    check: CheckName,
    sites: &BTreeMap<SiteId, Site>,
    defaults: &RawDefaults,
    default_interval: Duration,
    default_timeout: Duration,
) -> Result<Vec<Probe>, ConfigError> {
    let kind = kind_of(&c.kind).ok_or_else(|| {
        src.error(
            &at.key("kind"),
            format!("{:?} is not a check kind; use {KINDS}", c.kind),
        )
    })?;
    let site_id = SiteId::new(&c.site)
        .map_err(|e| src.error(&at.key("site"), format!("{:?} {e}", c.site)))?;
    let site = sites.get(&site_id).ok_or_else(|| {
        let known: Vec<&str> = sites.keys().map(|s| s.as_str()).collect();
        src.error(
            &at.key("site"),
            format!("site {site_id} is not defined under [[sites]]; known: {known:?}"),
        )
    })?;
    // Keys that belong to one kind only.
    let only =
        |present: bool, key: &str, kinds: &[CheckKind], what: &str| -> Result<(), ConfigError> {
            if present && !kinds.contains(&kind) {
                return Err(src.error(
                    &at.key(key),
                    format!(
                        "`{key}` is only for {what} checks (this one is kind = {:?})",
                        c.kind
                    ),
                ));
            }
            Ok(())
        };
    let http_kinds = [
        CheckKind::ExchangeHealthcheck,
        CheckKind::Activesync,
        CheckKind::Http,
    ];
    only(
        c.vdir.is_some(),
        "vdir",
        &[CheckKind::ExchangeHealthcheck],
        "exchange_healthcheck",
    )?;
    only(
        c.username.is_some(),
        "username",
        &[CheckKind::Activesync],
        "activesync",
    )?;
    only(
        c.password.is_some(),
        "password",
        &[CheckKind::Activesync],
        "activesync",
    )?;
    for (present, key) in [
        (c.method.is_some(), "method"),
        (c.path.is_some(), "path"),
        (c.expect_status.is_some(), "expect_status"),
        (c.body_contains.is_some(), "body_contains"),
        (c.headers.is_some(), "headers"),
    ] {
        only(present, key, &[CheckKind::Http], "http")?;
    }
    only(c.scheme.is_some(), "scheme", &http_kinds, "HTTP-based")?;
    only(c.ca_file.is_some(), "ca_file", &http_kinds, "HTTP-based")?;
    if kind == CheckKind::Tcp && c.port.is_none() {
        return Err(src.error(&at.key("port"), "a tcp check needs `port`, e.g. 443 or 25"));
    }

    let interval = c.interval.unwrap_or(default_interval);
    if interval < MIN_INTERVAL {
        return Err(src.error(
            &at.key("interval"),
            format!(
                "{} is too short; use at least 500ms",
                duration::format(interval)
            ),
        ));
    }
    let timeout = c.timeout.unwrap_or(default_timeout.min(interval));
    check_timeout(src, &at.key("timeout"), timeout, interval)?;

    let tls = match c.scheme.as_deref() {
        None | Some("https") => kind != CheckKind::Tcp,
        Some("http") => false,
        Some(other) => {
            return Err(src.error(
                &at.key("scheme"),
                format!("{other:?} is not a scheme; use \"https\" or \"http\""),
            ));
        }
    };
    let public_host = match (&c.host, &site.activesync_url) {
        (Some(h), _) => h.clone(),
        (None, Some(u)) => u.host_str().unwrap_or_default().to_owned(),
        (None, None) if kind == CheckKind::Tcp => String::new(),
        (None, None) => {
            return Err(src.error(&at.key("host"), format!("give the public name to send as Host/SNI, or set activesync_url on site {site_id}")));
        }
    };
    if let Some(ca) = &c.ca_file {
        require_file(src, &at.key("ca_file"), ca)?;
    }

    let spec = match kind {
        CheckKind::ExchangeHealthcheck => {
            let vdir = c.vdir.clone().unwrap_or_else(|| "owa".to_owned());
            if !VDIRS.iter().any(|v| v.eq_ignore_ascii_case(&vdir)) {
                return Err(src.error(
                    &at.key("vdir"),
                    format!("{vdir:?} has no healthcheck.htm; use one of {VDIRS:?}"),
                ));
            }
            ProbeSpec::Healthcheck { vdir }
        }
        CheckKind::Activesync => {
            let account = match (&c.username, &c.password) {
                (Some(u), Some(p)) => Some((
                    u.clone(),
                    p.resolve().map_err(|e| src.error(&at.key("password"), e))?,
                )),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(src.error(
                        &at.key("username"),
                        "a test account needs `password = { env = \"VAR\" }` too",
                    ));
                }
                (None, Some(_)) => {
                    return Err(src.error(&at.key("password"), "`password` needs `username`"));
                }
            };
            ProbeSpec::ActiveSync { account }
        }
        CheckKind::Http => {
            let method_text = c.method.clone().unwrap_or_else(|| "GET".to_owned());
            let method = reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes())
                .map_err(|_| {
                src.error(
                    &at.key("method"),
                    format!("{method_text:?} is not an HTTP method"),
                )
            })?;
            let path = c.path.clone().unwrap_or_else(|| "/".to_owned());
            if !path.starts_with('/') {
                return Err(src.error(&at.key("path"), format!("{path:?} must start with /")));
            }
            let expect_status = c.expect_status.clone().unwrap_or_else(|| vec![200]);
            if expect_status.is_empty() || expect_status.iter().any(|s| !(100..=599).contains(s)) {
                return Err(src.error(
                    &at.key("expect_status"),
                    "list HTTP statuses between 100 and 599, e.g. [200, 204]",
                ));
            }
            let headers: Vec<(String, String)> =
                c.headers.clone().unwrap_or_default().into_iter().collect();
            for (k, v) in &headers {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(v).is_err()
                {
                    return Err(src.error(
                        &at.key("headers").key(k),
                        "is not a valid HTTP header name and value",
                    ));
                }
            }
            ProbeSpec::Http {
                method,
                path,
                expect_status,
                body_contains: c.body_contains.clone(),
                headers,
            }
        }
        CheckKind::Tcp => ProbeSpec::Tcp,
    };
    if let Some(p) = &c.protocol {
        sitewarden_shared::ids::validate_id(p)
            .map_err(|e| src.error(&at.key("protocol"), format!("{p:?} {e}")))?;
    }
    let protocol = c.protocol.clone().unwrap_or_else(|| match &spec {
        ProbeSpec::Healthcheck { vdir }
            if vdir.eq_ignore_ascii_case("Microsoft-Server-ActiveSync") =>
        {
            "activesync".to_owned()
        }
        ProbeSpec::Healthcheck { vdir } => vdir.to_ascii_lowercase(),
        ProbeSpec::ActiveSync { .. } => "activesync".to_owned(),
        ProbeSpec::Http { .. } => "http".to_owned(),
        ProbeSpec::Tcp => "tcp".to_owned(),
    });

    let server_names: Vec<ServerId> = match &c.servers {
        None => site.servers.keys().cloned().collect(),
        Some(list) => {
            let mut out = Vec::new();
            for (j, s) in list.iter().enumerate() {
                let sid = ServerId::new(s)
                    .map_err(|e| src.error(&at.key("servers").index(j), format!("{s:?} {e}")))?;
                if !site.servers.contains_key(&sid) {
                    return Err(src.error(
                        &at.key("servers").index(j),
                        format!("server {sid} is not in site {site_id}'s servers"),
                    ));
                }
                out.push(sid);
            }
            out
        }
    };
    if server_names.is_empty() {
        return Err(src.error(
            &at.key("servers"),
            format!("nothing to check: site {site_id} has no servers, or `servers` is empty"),
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    Ok(server_names
        .into_iter()
        .map(|server| {
            let addr = &site.servers[&server];
            Probe {
                check: check.clone(),
                kind,
                protocol: protocol.clone(),
                target_site: site_id.clone(),
                connect_host: addr.host.clone(),
                port: c.port.or(addr.port).unwrap_or(default_port),
                server,
                public_host: public_host.clone(),
                tls,
                ca_file: c.ca_file.clone().or_else(|| defaults.ca_file.clone()),
                interval,
                timeout,
                spec: spec.clone(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[agent]
id = "site1-agent1"
site = "site1"

[[sites]]
name = "site1"
activesync_url = "https://mail-site1.example.com/Microsoft-Server-ActiveSync"
servers = [{ name = "cas1", address = "10.1.0.11" }, { name = "cas2", address = "10.1.0.12:8443" }]

[[checks]]
name = "eas"
kind = "activesync"
site = "site1"

[[checks]]
name = "smtp"
kind = "tcp"
site = "site1"
port = 25
interval = "5s"
"#;

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::from_source(&Source::inline("agent.toml", text))
    }

    #[test]
    fn expands_checks_per_server_with_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.probes.len(), 4);
        let eas2 = c
            .probes
            .iter()
            .find(|p| p.check.as_str() == "eas" && p.server.as_str() == "cas2")
            .unwrap();
        assert_eq!((eas2.connect_host.as_str(), eas2.port), ("10.1.0.12", 8443));
        assert_eq!(eas2.public_host, "mail-site1.example.com");
        assert_eq!(eas2.interval, DEFAULT_INTERVAL);
        assert_eq!(eas2.timeout, DEFAULT_TIMEOUT);
        assert_eq!(eas2.protocol, "activesync");
        assert!(eas2.tls);
        let smtp = c
            .probes
            .iter()
            .find(|p| p.check.as_str() == "smtp")
            .unwrap();
        assert_eq!(smtp.port, 25);
    }

    #[test]
    fn zero_interval_names_line_and_key() {
        let text = GOOD.replace("interval = \"5s\"", "interval = \"0s\"");
        let e = load(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("checks[1].interval"));
        assert_eq!(e.line, Some(21));
        assert!(e.to_string().contains("use at least 500ms"), "{e}");
    }

    #[test]
    fn typos_and_wrong_kind_keys_are_errors() {
        let e = load(&GOOD.replace("port = 25", "prot = 25")).unwrap_err();
        assert!(e.message.contains("unknown field `prot`"), "{e}");
        let e = load(&GOOD.replace("kind = \"tcp\"", "kind = \"tpc\"")).unwrap_err();
        assert!(e.to_string().contains("not a check kind"), "{e}");
        let e = load(&GOOD.replace("port = 25", "port = 25\nvdir = \"owa\"")).unwrap_err();
        assert!(
            e.to_string()
                .contains("`vdir` is only for exchange_healthcheck"),
            "{e}"
        );
        let e = load(&GOOD.replace(
            "site = \"site1\"\n\n[[checks]]\nname = \"smtp\"",
            "site = \"site9\"\n\n[[checks]]\nname = \"smtp\"",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("site site9 is not defined"), "{e}");
    }

    #[test]
    fn ids_that_would_break_subjects_are_refused() {
        let e = load(&GOOD.replace("id = \"site1-agent1\"", "id = \"site1.agent1\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("agent.id"));
        assert!(e.message.contains("'.'"), "{e}");
    }

    #[test]
    fn server_addresses() {
        assert_eq!(
            parse_server_addr("10.0.0.1"),
            Some(ServerAddr {
                host: "10.0.0.1".into(),
                port: None
            })
        );
        assert_eq!(
            parse_server_addr("cas1.corp:444"),
            Some(ServerAddr {
                host: "cas1.corp".into(),
                port: Some(444)
            })
        );
        assert_eq!(
            parse_server_addr("[::1]:443"),
            Some(ServerAddr {
                host: "::1".into(),
                port: Some(443)
            })
        );
        assert_eq!(parse_server_addr("a b"), None);
        assert_eq!(parse_server_addr("host:99999"), None);
    }
}
