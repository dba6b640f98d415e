//! NATS connection glue shared by agent and controller.
//!
//! One place decides how sitewarden talks to the bus: every auth method NATS offers
//! (user/password, token, nkey seed, creds file), TLS with a custom CA and client certificate,
//! a short ping interval (the client default of 60 s would hide a dead link for minutes),
//! retry on the initial connect and reconnect forever with a capped backoff. Connection events
//! and each backoff step are logged, so an operator sees the bus state in the journal.
//!
//! Mistakes show up early and by name: [`NatsConfig::validate`] reads the TLS PEM files, the
//! creds file and the NKey seed the way the client will; [`NatsSettings::connect`] makes its
//! first attempt in the foreground, so a refused credential or a failed TLS handshake is
//! returned as a [`NatsError`] naming the servers and the credential (never the secret), while an
//! unreachable bus is retried in the background. Permission violations reported by the server
//! later are logged once per subject with the credential that caused them.

mod credentials;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::secret::SecretRef;
use crate::config::{ConfigError, KeyPath, Source};
pub use credentials::NatsError;
use credentials::{Auth, TlsFile, check_tls_file, nkey_public_key, read_creds_file};

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
    /// Subject prefix of this client's reply inboxes (default `_INBOX`), e.g.
    /// `_INBOX.site1-agent1`, so the server can let each user subscribe to its own replies only.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
    /// Subject prefix of the JetStream API (default `$JS.API`). An agent in an account of its
    /// own, as in the shipped `deploy/nats`, reads the `sitewarden-edge` bucket through the
    /// controllers' account under `$JS.sitewarden.API`. Agents only: controllers refuse it.
    #[serde(default)]
    pub js_api_prefix: Option<String>,
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
            inbox_prefix: None,
            js_api_prefix: None,
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
    inbox_prefix: Option<String>,
    js_api_prefix: Option<String>,
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
            (_, _, _, Some(s), _) => {
                let seed = secret("nkey_seed", s)?;
                let public = nkey_public_key(&seed)
                    .map_err(|e| src.error(&at.key("nkey_seed"), format!("the seed {e}")))?;
                Auth::NKey { seed, public }
            }
            (_, _, _, _, Some(path)) => {
                if !path.is_file() {
                    return Err(src.error(
                        &at.key("creds_file"),
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
                read_creds_file(path).map_err(|e| src.error(&at.key("creds_file"), e))?;
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
            for (kind, p) in tls_files(tls) {
                if !p.is_file() {
                    return Err(src.error(
                        &at.key("tls").key(kind.key()),
                        format!("{} does not exist or is not a file", p.display()),
                    ));
                }
                check_tls_file(kind, p)
                    .map_err(|e| src.error(&at.key("tls").key(kind.key()), e))?;
            }
        }
        if let Some(prefix) = &self.inbox_prefix
            && let Err(e) = check_inbox_prefix(prefix)
        {
            return Err(src.error(&at.key("inbox_prefix"), e));
        }
        if let Some(prefix) = &self.js_api_prefix
            && let Err(e) =
                check_subject_prefix(prefix, "JetStream API prefix", "$JS.sitewarden.API")
        {
            return Err(src.error(&at.key("js_api_prefix"), e));
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
            inbox_prefix: self.inbox_prefix.clone(),
            js_api_prefix: self.js_api_prefix.clone(),
        })
    }
}

/// The TLS files a `[nats.tls]` names, with their kind.
fn tls_files(tls: &NatsTls) -> impl Iterator<Item = (TlsFile, &PathBuf)> {
    [
        (TlsFile::Ca, &tls.ca_file),
        (TlsFile::Cert, &tls.cert_file),
        (TlsFile::Key, &tls.key_file),
    ]
    .into_iter()
    .filter_map(|(kind, p)| p.as_ref().map(|p| (kind, p)))
}

/// What nats-server answers (`-ERR`) to a connection beyond its account's `max_connections`.
const ACCOUNT_CONNECTIONS_EXCEEDED: &str = "maximum account active connections exceeded";

/// An inbox prefix must be a literal subject: dot-separated non-empty tokens without
/// wildcards or white space.
fn check_inbox_prefix(prefix: &str) -> Result<(), String> {
    check_subject_prefix(prefix, "inbox prefix", "_INBOX.site1-agent1")
}

/// A subject prefix (`what`, with an `example`) must be a literal subject: dot-separated
/// non-empty tokens without wildcards or white space.
fn check_subject_prefix(prefix: &str, what: &str, example: &str) -> Result<(), String> {
    let bad_token = prefix.split('.').any(|t| {
        t.is_empty()
            || t == "*"
            || t == ">"
            || t.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if prefix.is_empty() || bad_token || prefix.contains(['*', '>']) {
        return Err(format!(
            "{prefix:?} is not a usable {what}; use dot-separated tokens without wildcards or \
             spaces, e.g. {example:?}"
        ));
    }
    Ok(())
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
            inbox_prefix: None,
            js_api_prefix: None,
        }
    }

    /// The JetStream API prefix set by `js_api_prefix`, if any.
    pub fn js_api_prefix(&self) -> Option<&str> {
        self.js_api_prefix.as_deref()
    }

    /// A JetStream context on `client`, under `js_api_prefix` when set.
    pub fn jetstream(&self, client: async_nats::Client) -> async_nats::jetstream::Context {
        match &self.js_api_prefix {
            Some(prefix) => async_nats::jetstream::with_prefix(client, prefix),
            None => async_nats::jetstream::new(client),
        }
    }

    /// The server URLs.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The credential in words (user name, public key or file; never the secret).
    pub fn credential(&self) -> String {
        self.auth.describe()
    }

    /// Connects.
    ///
    /// The first attempt runs in the foreground (bounded by `connect_timeout`): if a server
    /// refuses the credential, the client cannot sign with its seed, or the TLS handshake fails,
    /// that is returned as an error naming the servers and the credential. If no server answers,
    /// this returns a client that keeps trying in the background (publishes wait in its buffer
    /// until it connects), so a process can start before the bus does. TLS and creds files are
    /// read again here, so a file that changed since the config was loaded is reported by path.
    pub async fn connect(&self, default_name: &str) -> Result<async_nats::Client, NatsError> {
        let servers = self.servers.join(", ");
        self.check_files()?;
        let attempt = tokio::time::timeout(
            self.connect_timeout,
            self.options(default_name, false)
                .await?
                .connect(self.servers.clone()),
        )
        .await;
        match attempt {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => {
                use async_nats::ConnectErrorKind as Kind;
                match e.kind() {
                    Kind::AuthorizationViolation => {
                        return Err(NatsError::Refused {
                            servers,
                            credential: self.auth.describe(),
                            hint: self.auth.refusal_hint(),
                        });
                    }
                    Kind::Authentication => {
                        return Err(NatsError::Signing {
                            servers,
                            credential: self.auth.describe(),
                        });
                    }
                    Kind::Tls => {
                        return Err(NatsError::Tls {
                            servers,
                            detail: e.to_string(),
                        });
                    }
                    // The client reports a failed handshake, or an alert the server sends
                    // after it (a refused client certificate), as an I/O error.
                    _ if let Some(detail) = tls_failure(&e) => {
                        return Err(NatsError::Tls { servers, detail });
                    }
                    _ if e.to_string().contains(ACCOUNT_CONNECTIONS_EXCEEDED) => {
                        return Err(NatsError::ConnectionLimit {
                            servers,
                            credential: self.auth.describe(),
                        });
                    }
                    Kind::ServerParse => {
                        return Err(NatsError::Connect {
                            servers,
                            detail: e.to_string(),
                        });
                    }
                    _ => tracing::warn!(
                        servers = %servers,
                        "NATS not reachable yet ({e}); retrying in the background"
                    ),
                }
            }
            Err(_) => tracing::warn!(
                servers = %servers,
                "NATS did not answer within {:?}; retrying in the background",
                self.connect_timeout
            ),
        }
        self.options(default_name, true)
            .await?
            .connect(self.servers.clone())
            .await
            .map_err(|e| NatsError::Connect {
                servers,
                detail: e.to_string(),
            })
    }

    /// Reads every TLS file and the creds file again.
    fn check_files(&self) -> Result<(), NatsError> {
        if let Some(tls) = &self.tls {
            for (kind, p) in tls_files(tls) {
                check_tls_file(kind, p).map_err(|problem| NatsError::File {
                    section: ".tls",
                    key: kind.key(),
                    problem,
                })?;
            }
        }
        if let Auth::CredsFile(p) = &self.auth {
            read_creds_file(p).map_err(|problem| NatsError::File {
                section: "",
                key: "creds_file",
                problem,
            })?;
        }
        Ok(())
    }

    /// The client options; `retry` makes the client keep trying the initial connect.
    async fn options(
        &self,
        default_name: &str,
        retry: bool,
    ) -> Result<async_nats::ConnectOptions, NatsError> {
        let mut opts = match &self.auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::UserPassword(u, p) => async_nats::ConnectOptions::with_user_and_password(
                u.clone(),
                p.expose_secret().to_owned(),
            ),
            Auth::Token(t) => async_nats::ConnectOptions::with_token(t.expose_secret().to_owned()),
            Auth::NKey { seed, .. } => {
                async_nats::ConnectOptions::with_nkey(seed.expose_secret().to_owned())
            }
            Auth::CredsFile(p) => {
                let text = read_creds_file(p).map_err(|problem| NatsError::File {
                    section: "",
                    key: "creds_file",
                    problem,
                })?;
                async_nats::ConnectOptions::with_credentials(&text).map_err(|_| {
                    NatsError::File {
                        section: "",
                        key: "creds_file",
                        problem: format!("{} is not a NATS creds file", p.display()),
                    }
                })?
            }
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
        if let Some(prefix) = &self.inbox_prefix {
            opts = opts.custom_inbox_prefix(prefix);
        }
        if retry {
            opts = opts.retry_on_initial_connect();
        }
        let name = self.name.clone().unwrap_or_else(|| default_name.to_owned());
        let credential: Arc<str> = self.auth.describe().into();
        let logged = Arc::new(Mutex::new(HashSet::new()));
        Ok(opts
            .name(name)
            .ping_interval(self.ping_interval)
            .connection_timeout(self.connect_timeout)
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let credential = credential.clone();
                let logged = logged.clone();
                async move { log_event(&event, &credential, &logged) }
            }))
    }
}

/// The TLS error inside a connect error, if the failure was TLS (handshake, certificate or a
/// TLS alert from the server).
fn tls_failure(e: &async_nats::ConnectError) -> Option<String> {
    let io = std::error::Error::source(e)?.downcast_ref::<std::io::Error>()?;
    let tls = io.get_ref()?.downcast_ref::<async_nats::rustls::Error>()?;
    Some(tls.to_string())
}

/// At most this many distinct permission violations are remembered (each is logged once).
const MAX_LOGGED_VIOLATIONS: usize = 256;

/// Logs one client event. Refusals and permission violations name the credential and say
/// what to check; each distinct violation is logged once.
fn log_event(event: &async_nats::Event, credential: &str, logged: &Mutex<HashSet<String>>) {
    use async_nats::{ClientError, Event, ServerError};
    match event {
        Event::Connected => tracing::info!("NATS connected"),
        Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
        Event::ClientError(ClientError::Other(e)) if e == "authorization violation" => {
            tracing::error!(
                "NATS refused {credential} (authorization violation) on reconnect; check the \
                 server's users and this process's [nats] credentials; retrying"
            )
        }
        Event::ServerError(ServerError::Other(e)) if is_permission_violation(e) => {
            let first = {
                let mut seen = logged.lock().unwrap_or_else(|p| p.into_inner());
                seen.len() < MAX_LOGGED_VIOLATIONS && seen.insert(e.clone())
            };
            if first {
                tracing::error!(
                    "NATS refused an operation by {credential}: {e}; this user's permissions do \
                     not allow it (see docs/security.md, bus permissions); logged once"
                );
            }
        }
        Event::ServerError(e) => tracing::warn!("NATS server error: {e}"),
        Event::ClientError(e) => tracing::warn!("NATS client error: {e}"),
        other => tracing::info!("NATS {other}"),
    }
}

/// Whether a server error is a permissions violation (`Permissions Violation for Publish to …`).
pub fn is_permission_violation(server_error: &str) -> bool {
    server_error
        .to_ascii_lowercase()
        .contains("permissions violation")
}

/// Backoff between reconnect attempts: 100 ms doubling to 5 s. Each step is logged once (and,
/// at the cap, every 60th attempt, about every 5 minutes), so the journal shows the bus is being
/// retried without a line per attempt.
pub fn reconnect_delay(attempts: usize) -> Duration {
    let backoff = crate::pacing::Backoff::new(Duration::from_millis(100), MAX_RECONNECT_DELAY);
    let step = |n: usize| backoff.step(u32::try_from(n).unwrap_or(u32::MAX));
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
    fn a_bad_seed_or_pem_file_is_reported_at_load_by_key_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seed");
        std::fs::write(&seed, "SAMYSECRETACCOUNTSEED\n").unwrap();
        let e = load(&format!(
            "[nats]\nnkey_seed = {{ file = {:?} }}\n",
            seed.to_str().unwrap()
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("nats.nkey_seed"));
        assert!(!e.to_string().contains("MYSECRET"), "{e}");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "not a certificate").unwrap();
        let e = load(&format!(
            "[nats]\n[nats.tls]\nca_file = {:?}\n",
            pem.to_str().unwrap()
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("nats.tls.ca_file"));
        assert!(e.message.contains("ca.pem"), "{e}");
    }

    #[test]
    fn js_api_prefix_must_be_a_literal_subject() {
        let ok = load("[nats]\njs_api_prefix = \"$JS.sitewarden.API\"\n").unwrap();
        assert_eq!(ok.js_api_prefix(), Some("$JS.sitewarden.API"));
        assert_eq!(load("[nats]\n").unwrap().js_api_prefix(), None);
        for bad in ["", "$JS.*.API", "$JS.>", "$JS..API", "$JS.API.", "$JS API"] {
            let e = load(&format!("[nats]\njs_api_prefix = {bad:?}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("nats.js_api_prefix"), "{bad:?}");
            assert!(e.message.contains("$JS.sitewarden.API"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn inbox_prefix_must_be_a_literal_subject() {
        assert!(load("[nats]\ninbox_prefix = \"_INBOX.site1-agent1\"\n").is_ok());
        for bad in ["", "_INBOX.>", "_INBOX.*.x", "_INBOX..a", "_INBOX.", "a b"] {
            let e = load(&format!("[nats]\ninbox_prefix = {bad:?}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("nats.inbox_prefix"), "{bad:?}");
        }
    }

    #[test]
    fn permission_violations_are_recognised() {
        assert!(is_permission_violation(
            "Permissions Violation for Publish to \"sitewarden.v1.obs.site2.a.b.c\""
        ));
        assert!(!is_permission_violation("Authorization Violation"));
    }

    #[tokio::test]
    async fn a_tls_file_gone_since_load_is_named_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client-key.pem");
        // Any PEM certificate and key will do for the load-time check.
        std::fs::write(&cert, TEST_CERT).unwrap();
        std::fs::write(&key, TEST_KEY).unwrap();
        let s = load(&format!(
            "[nats]\nservers = [\"nats://127.0.0.1:9\"]\n[nats.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.to_str().unwrap(),
            key.to_str().unwrap()
        ))
        .unwrap();
        std::fs::remove_file(&cert).unwrap();
        let e = s.connect("test").await.unwrap_err();
        assert!(
            matches!(
                e,
                NatsError::File {
                    key: "cert_file",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("client.pem"), "{e}");
    }

    /// PEM-shaped fixtures: well-formed PEM sections, not a real certificate or key. Enough for
    /// the load-time check, which reads PEM sections; never used in a handshake.
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBbzCCARWgAwIBAgIUQz5x1x8b4t2pJk6Gq0b7aJ3bCk0wCgYIKoZIzj0EAwIw
DTELMAkGA1UEAwwCeDAeFw0yNjAxMDEwMDAwMDBaFw0yNzAxMDEwMDAwMDBaMA0x
CzAJBgNVBAMMAngwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT1Jd1W2eQmYk0n
-----END CERTIFICATE-----
";
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg
-----END PRIVATE KEY-----
";

    #[test]
    fn backoff_caps_at_five_seconds() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(4), Duration::from_millis(400));
        assert_eq!(reconnect_delay(100), MAX_RECONNECT_DELAY);
    }
}
