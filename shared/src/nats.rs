//! NATS connection glue shared by agent and controller.
//!
//! One place decides how sitewarden talks to the bus: every auth method NATS offers
//! (user/password, token, nkey seed, creds file), TLS with a custom CA and client certificate,
//! a short ping interval (the client default of 60 s would hide a dead link for minutes),
//! retry on the initial connect and reconnect forever with a capped backoff. Connection events
//! and each backoff step are logged, so an operator sees the bus state in the journal.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::secret::SecretRef;
use crate::config::{ConfigError, KeyPath, Source};

/// Default ping interval; a dead TCP link is noticed within about two of these.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(2);
/// Longest ping interval we allow.
pub const MAX_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait between reconnect attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// `[nats]` as written in TOML.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs, e.g. `["nats://nats1:4222", "tls://nats2:4222"]`.
    #[serde(default = "default_servers")]
    pub servers: Vec<String>,
    /// Connection name shown in the server's monitoring (default: the process's id).
    #[serde(default)]
    pub name: Option<String>,
    /// User name for user/password auth (password from `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// Password source for user/password auth.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Token source for token auth.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// NKey seed source (the `SU...` seed) for nkey auth.
    #[serde(default)]
    pub nkey_seed: Option<SecretRef>,
    /// Path of a `.creds` file (JWT + seed) for decentralized auth.
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<NatsTls>,
    /// Keepalive ping interval (default 2s, at most 5s).
    #[serde(default, with = "crate::config::duration::option")]
    #[schemars(with = "Option<String>")]
    pub ping_interval: Option<Duration>,
    /// Timeout of one connect attempt (default 2s).
    #[serde(default, with = "crate::config::duration::option")]
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<Duration>,
}

/// `[nats.tls]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    /// Require TLS even if the URL says `nats://`.
    #[serde(default)]
    pub required: bool,
    /// PEM file of the CA that signed the servers' certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

fn default_servers() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".to_owned()]
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            servers: default_servers(),
            name: None,
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls: None,
            ping_interval: None,
            connect_timeout: None,
        }
    }
}

/// The checked connection settings, with secrets resolved.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    servers: Vec<String>,
    name: Option<String>,
    auth: Auth,
    tls: Option<NatsTls>,
    ping_interval: Duration,
    connect_timeout: Duration,
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    UserPassword(String, secrecy::SecretString),
    Token(secrecy::SecretString),
    NKey(secrecy::SecretString),
    CredsFile(PathBuf),
}

impl NatsConfig {
    /// Checks the settings and reads secrets; `at` is where `[nats]` stands in `src`.
    pub fn validate(&self, src: &Source, at: &KeyPath) -> Result<NatsSettings, ConfigError> {
        if self.servers.is_empty() {
            return Err(src.error(
                &at.key("servers"),
                "list at least one server URL, e.g. [\"nats://127.0.0.1:4222\"]",
            ));
        }
        for (i, s) in self.servers.iter().enumerate() {
            let ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|p| s.starts_with(p))
                || !s.contains("://");
            if !ok {
                return Err(src.error(
                    &at.key("servers").index(i),
                    format!("{s:?} is not a NATS URL; use nats://host:port or tls://host:port"),
                ));
            }
        }
        let methods = [
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.creds_file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if methods > 1 {
            return Err(src.error(
                at,
                "choose one auth method: user+password, token, nkey_seed or creds_file",
            ));
        }
        let secret = |key: &str, r: &SecretRef| r.resolve().map_err(|e| src.error(&at.key(key), e));
        let auth = match (
            &self.user,
            &self.password,
            &self.token,
            &self.nkey_seed,
            &self.creds_file,
        ) {
            (Some(u), Some(p), ..) => Auth::UserPassword(u.clone(), secret("password", p)?),
            (Some(_), None, ..) => {
                return Err(src.error(
                    &at.key("user"),
                    "`user` needs `password = { env = \"VAR\" }` or `{ file = \"...\" }`",
                ));
            }
            (None, Some(_), ..) => {
                return Err(src.error(&at.key("password"), "`password` needs `user`"));
            }
            (_, _, Some(t), ..) => Auth::Token(secret("token", t)?),
            (_, _, _, Some(s), _) => Auth::NKey(secret("nkey_seed", s)?),
            (_, _, _, _, Some(path)) => {
                if !path.is_file() {
                    return Err(src.error(
                        &at.key("creds_file"),
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
                Auth::CredsFile(path.clone())
            }
            _ => Auth::None,
        };
        if let Some(tls) = &self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(src.error(
                    &at.key("tls"),
                    "give both cert_file and key_file for a client certificate",
                ));
            }
            for (key, p) in [
                ("ca_file", &tls.ca_file),
                ("cert_file", &tls.cert_file),
                ("key_file", &tls.key_file),
            ] {
                if let Some(p) = p
                    && !p.is_file()
                {
                    return Err(src.error(
                        &at.key("tls").key(key),
                        format!("{} does not exist or is not a file", p.display()),
                    ));
                }
            }
        }
        let ping_interval = self.ping_interval.unwrap_or(DEFAULT_PING_INTERVAL);
        if ping_interval > MAX_PING_INTERVAL || ping_interval < Duration::from_millis(100) {
            return Err(src.error(
                &at.key("ping_interval"),
                "use 100ms to 5s; a longer interval hides a dead link",
            ));
        }
        let connect_timeout = self.connect_timeout.unwrap_or(Duration::from_secs(2));
        if connect_timeout < Duration::from_millis(100) || connect_timeout > Duration::from_secs(60)
        {
            return Err(src.error(&at.key("connect_timeout"), "use 100ms to 60s"));
        }
        Ok(NatsSettings {
            servers: self.servers.clone(),
            name: self.name.clone(),
            auth,
            tls: self.tls.clone(),
            ping_interval,
            connect_timeout,
        })
    }
}

impl NatsSettings {
    /// Settings for an unauthenticated local server (tests, the demo).
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            servers: vec![url.into()],
            name: None,
            auth: Auth::None,
            tls: None,
            ping_interval: DEFAULT_PING_INTERVAL,
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// The server URLs.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Connects. With retry on initial connect, this returns at once and the client keeps
    /// trying in the background; publishes wait in the client's buffer until connected.
    pub async fn connect(&self, default_name: &str) -> Result<async_nats::Client, String> {
        let mut opts = match &self.auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::UserPassword(u, p) => async_nats::ConnectOptions::with_user_and_password(
                u.clone(),
                p.expose_secret().to_owned(),
            ),
            Auth::Token(t) => async_nats::ConnectOptions::with_token(t.expose_secret().to_owned()),
            Auth::NKey(s) => async_nats::ConnectOptions::with_nkey(s.expose_secret().to_owned()),
            Auth::CredsFile(p) => async_nats::ConnectOptions::with_credentials_file(p)
                .await
                .map_err(|e| format!("cannot read NATS creds file {}: {e}", p.display()))?,
        };
        if let Some(tls) = &self.tls {
            opts = opts.require_tls(tls.required);
            if let Some(ca) = &tls.ca_file {
                opts = opts.add_root_certificates(ca.clone());
            }
            if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
                opts = opts.add_client_certificate(c.clone(), k.clone());
            }
        }
        let name = self.name.clone().unwrap_or_else(|| default_name.to_owned());
        opts = opts
            .name(name)
            .ping_interval(self.ping_interval)
            .connection_timeout(self.connect_timeout)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting")
                    }
                    async_nats::Event::ServerError(e) => tracing::warn!("NATS server error: {e}"),
                    async_nats::Event::ClientError(e) => tracing::warn!("NATS client error: {e}"),
                    other => tracing::info!("NATS {other}"),
                }
            });
        opts.connect(self.servers.clone())
            .await
            .map_err(|e| format!("cannot connect to NATS {:?}: {e}", self.servers))
    }
}

/// Backoff between reconnect attempts: 100 ms doubling to 5 s. Each step is logged once (and,
/// at the cap, every 60th attempt, about every 5 minutes), so the journal shows the bus is being
/// retried without a line per attempt.
pub fn reconnect_delay(attempts: usize) -> Duration {
    let step = |n: usize| {
        let exp = n.saturating_sub(1).min(16) as u32;
        Duration::from_millis(100)
            .saturating_mul(2u32.saturating_pow(exp))
            .min(MAX_RECONNECT_DELAY)
    };
    // async-nats asks before the very first attempt too; that one is not a retry.
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let delay = step(attempts - 1);
    let first_at_this_step = attempts <= 2 || step(attempts - 2) != delay;
    if first_at_this_step || attempts.is_multiple_of(60) {
        tracing::warn!(
            attempt = attempts,
            delay_ms = delay.as_millis() as u64,
            "NATS unreachable; retrying with backoff"
        );
    }
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<NatsSettings, ConfigError> {
        #[derive(Deserialize)]
        struct Doc {
            nats: NatsConfig,
        }
        let src = Source::inline("t.toml", text);
        let doc: Doc = src.parse()?;
        doc.nats.validate(&src, &KeyPath::root().key("nats"))
    }

    #[test]
    fn defaults_are_a_short_ping_and_local_server() {
        let s = load("[nats]\n").unwrap();
        assert_eq!(s.ping_interval, DEFAULT_PING_INTERVAL);
        assert_eq!(s.servers, vec!["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn rejects_long_ping_and_mixed_auth_with_the_key() {
        let e = load("[nats]\nping_interval = \"60s\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("nats.ping_interval"));
        assert_eq!(e.line, Some(2));
        let e = load("[nats]\ntoken = { env = \"A\" }\ncreds_file = \"/x\"\n").unwrap_err();
        assert!(e.message.contains("choose one auth method"));
    }

    #[test]
    fn backoff_caps_at_five_seconds() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(4), Duration::from_millis(400));
        assert_eq!(reconnect_delay(100), MAX_RECONNECT_DELAY);
    }
}
