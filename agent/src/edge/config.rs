//! `[edge]` in the agent: which HAProxy backends follow which DAG's active site.
//!
//! ```toml
//! [edge]
//! resync_interval = "30s"          # re-read KV, re-check HAProxy, undo drift; default 30s
//!
//! [[edge.haproxy]]
//! socket = "/run/haproxy/admin.sock"   # Runtime API socket (`stats socket ... level admin`)
//! backend = "be_exchange"
//! dag = "DAG1"                         # follow this DAG's active site
//! servers = { "cas1-site1" = "site1", "cas1-site2" = "site2" }   # HAProxy server -> site
//! passive = "drain"                    # or "maint"; default "drain"
//! ```
//!
//! Backend and server names are interpolated into Runtime API commands, so they are limited to
//! HAProxy's own name alphabet (letters, digits, `-`, `_`, `.`, `:`); a space, `;` or newline
//! could otherwise smuggle in a second command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sitewarden_shared::SiteId;
use sitewarden_shared::config::{ConfigError, KeyPath, Source, duration};

/// Default period of the KV re-read and HAProxy re-check.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest resync period accepted.
pub const MIN_RESYNC_INTERVAL: Duration = Duration::from_millis(500);

/// `[edge]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// Period of the KV re-read and HAProxy re-check (default 30s).
    #[serde(default, with = "duration::option")]
    pub resync_interval: Option<Duration>,
    /// `[[edge.haproxy]]`: backends to steer.
    #[serde(default)]
    pub haproxy: Vec<RawHaproxy>,
}

/// One `[[edge.haproxy]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHaproxy {
    /// Path of HAProxy's Runtime API unix socket (admin level).
    pub socket: PathBuf,
    /// The backend whose servers are steered.
    pub backend: String,
    /// The DAG whose active site the backend follows.
    pub dag: String,
    /// HAProxy server name → the site it belongs to.
    pub servers: BTreeMap<String, String>,
    /// State of servers outside the active site: `"drain"` (default) or `"maint"`.
    #[serde(default)]
    pub passive: Option<String>,
}

/// What servers outside the active site are set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passive {
    /// `state drain`: no new connections, existing ones (and persistence) finish.
    Drain,
    /// `state maint`: no traffic at all; existing connections are cut by HAProxy's rules.
    Maint,
}

/// One validated backend to steer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyTarget {
    /// Runtime API socket.
    pub socket: PathBuf,
    /// Backend name.
    pub backend: String,
    /// DAG followed.
    pub dag: String,
    /// HAProxy server name → site.
    pub servers: BTreeMap<String, SiteId>,
    /// State for servers outside the active site.
    pub passive: Passive,
}

/// The validated `[edge]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSettings {
    /// KV re-read and HAProxy re-check period.
    pub resync_interval: Duration,
    /// Backends to steer.
    pub haproxy: Vec<HaproxyTarget>,
}

/// Whether `s` is a safe HAProxy proxy or server name.
fn haproxy_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

const NAME_RULE: &str = "use HAProxy's name alphabet: letters, digits, '-', '_', '.', ':'";

/// Validates `[edge]` at `key` (usually `edge`).
pub fn validate(src: &Source, key: &KeyPath, raw: &RawEdge) -> Result<EdgeSettings, ConfigError> {
    let resync_interval = raw.resync_interval.unwrap_or(DEFAULT_RESYNC_INTERVAL);
    if resync_interval < MIN_RESYNC_INTERVAL {
        return Err(src.error(
            &key.key("resync_interval"),
            format!(
                "{} is too short; use at least 500ms (default 30s)",
                duration::format(resync_interval)
            ),
        ));
    }
    let mut haproxy: Vec<HaproxyTarget> = Vec::with_capacity(raw.haproxy.len());
    for (i, h) in raw.haproxy.iter().enumerate() {
        let at = key.key("haproxy").index(i);
        if h.socket.as_os_str().is_empty() {
            return Err(src.error(
                &at.key("socket"),
                "give the Runtime API socket path, e.g. \"/run/haproxy/admin.sock\"",
            ));
        }
        if !haproxy_name_ok(&h.backend) {
            return Err(src.error(
                &at.key("backend"),
                format!("{:?} is not a backend name; {NAME_RULE}", h.backend),
            ));
        }
        if h.dag.trim().is_empty() {
            return Err(src.error(
                &at.key("dag"),
                "name the DAG to follow, as the collectors report it (e.g. \"DAG1\")",
            ));
        }
        if h.servers.is_empty() {
            return Err(src.error(
                &at.key("servers"),
                "map at least one HAProxy server to its site, e.g. { \"cas1-site1\" = \"site1\" }",
            ));
        }
        let mut servers = BTreeMap::new();
        for (name, site) in &h.servers {
            let sk = at.key("servers").key(name);
            if !haproxy_name_ok(name) {
                return Err(src.error(&sk, format!("{name:?} is not a server name; {NAME_RULE}")));
            }
            let site =
                SiteId::new(site).map_err(|e| src.error(&sk, format!("site {site:?} {e}")))?;
            servers.insert(name.clone(), site);
        }
        let passive = match h.passive.as_deref() {
            None | Some("drain") => Passive::Drain,
            Some("maint") => Passive::Maint,
            Some(other) => {
                return Err(src.error(
                    &at.key("passive"),
                    format!("{other:?} is not a passive state; use \"drain\" or \"maint\""),
                ));
            }
        };
        for other in &haproxy {
            if other.socket == h.socket
                && other.backend == h.backend
                && let Some(dup) = servers.keys().find(|s| other.servers.contains_key(*s))
            {
                return Err(src.error(
                    &at.key("servers").key(dup),
                    format!(
                        "server {}/{dup} is already steered by another [[edge.haproxy]] entry; each server may follow one DAG only",
                        h.backend
                    ),
                ));
            }
        }
        haproxy.push(HaproxyTarget {
            socket: h.socket.clone(),
            backend: h.backend.clone(),
            dag: h.dag.clone(),
            servers,
            passive,
        });
    }
    Ok(EdgeSettings {
        resync_interval,
        haproxy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<EdgeSettings, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            edge: RawEdge,
        }
        let src = Source::inline("agent.toml", text);
        let doc: Doc = src.parse()?;
        validate(&src, &KeyPath::root().key("edge"), &doc.edge)
    }

    const GOOD: &str = r#"
[[edge.haproxy]]
socket = "/run/haproxy/admin.sock"
backend = "be_exchange"
dag = "DAG1"
servers = { "cas1-site1" = "site1", "cas1-site2" = "site2" }

[[edge.haproxy]]
socket = "/run/haproxy/admin.sock"
backend = "be_smtp"
dag = "DAG1"
servers = { "smtp1" = "site1" }
passive = "maint"
"#;

    #[test]
    fn edge_haproxy_defaults() {
        let e = load(GOOD).unwrap();
        assert_eq!(e.resync_interval, DEFAULT_RESYNC_INTERVAL);
        assert_eq!(e.haproxy.len(), 2);
        assert_eq!(e.haproxy[0].passive, Passive::Drain);
        assert_eq!(e.haproxy[1].passive, Passive::Maint);
        assert_eq!(e.haproxy[0].servers["cas1-site2"].as_str(), "site2");
    }

    #[test]
    fn edge_haproxy_names_that_could_inject_commands_are_refused() {
        let e = load(&GOOD.replace("be_exchange", "be_exchange; shutdown sessions")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("edge.haproxy[0].backend"));
        assert_eq!(e.line, Some(4), "{e}");
        let e = load(&GOOD.replace("\"smtp1\"", "\"smtp1\\nset\"")).unwrap_err();
        assert!(e.to_string().contains("not a server name"), "{e}");
        let e = load(&GOOD.replace("\"maint\"", "\"off\"")).unwrap_err();
        assert!(e.to_string().contains("\"drain\" or \"maint\""), "{e}");
        let e = load(&GOOD.replace("= \"site2\"", "= \"site.2\"")).unwrap_err();
        assert!(e.to_string().contains("site \"site.2\""), "{e}");
        let e = load(
            &GOOD
                .replace("\"smtp1\" = \"site1\"", "\"cas1-site1\" = \"site1\"")
                .replace("be_smtp", "be_exchange"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("one DAG only"), "{e}");
        let e = load(&GOOD.replace(
            "dag = \"DAG1\"\nservers = { \"smtp1\"",
            "dga = 1\nservers = { \"smtp1\"",
        ))
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }
}
