//! A controller pair with `[api]` tokens and `[slack]`, on a real nats-server, with one memory
//! DNS provider holding `mail.example.com → mail-rr`: what the operator-surface tests (API, CLI,
//! Slack) drive.

#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;

use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::provider::DnsProvider;
use sitewarden_controller::provider::budget::RetryPolicy;
use sitewarden_controller::provider::memory::MemoryProvider;
use sitewarden_controller::runtime::metrics::Metrics;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_controller::runtime::{self, Runtime};
use sitewarden_shared::config::Source;
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::wait_for;
use tokio_util::sync::CancellationToken;

use super::{DEADLINE, free_addr};

/// The managed name.
pub const NAME: &str = "mail.example.com";
/// The admin token (holder "alice").
pub const ADMIN: &str = "admin-token-4b1d8e0c9a7f2e11";
/// The read-only token (holder "grafana").
pub const READER: &str = "read-token-77c3a9d04e5b6f20";
/// The Slack app's signing secret.
pub const SLACK_SECRET: &str = "slack-signing-secret-5e0b7c1d";
/// The one Slack user allowed to write.
pub const SLACK_OPERATOR: &str = "U0OPS1";

/// Two running controllers; stopped on drop.
pub struct Pair {
    _nats: NatsServer,
    /// Holds the token files; tests may put more files here.
    pub dir: tempfile::TempDir,
    /// The DNS records both controllers write.
    pub provider: Arc<MemoryProvider>,
    /// Each controller's HTTP address.
    pub http: Vec<SocketAddr>,
    stops: Vec<CancellationToken>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for s in &self.stops {
            s.cancel();
        }
    }
}

impl Pair {
    /// Controller `i`'s base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.http[i])
    }

    /// What the record of [`NAME`] points at.
    pub fn content(&self) -> Option<String> {
        self.provider.record(NAME).and_then(|r| r.content)
    }
}

/// Starts the pair and waits until both serve the API and exactly one acts.
pub async fn pair() -> Pair {
    let nats = NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), format!("{ADMIN}\n")).unwrap();
    std::fs::write(dir.path().join("read.token"), format!("{READER}\n")).unwrap();
    std::fs::write(dir.path().join("slack.secret"), SLACK_SECRET).unwrap();
    let provider = Arc::new(MemoryProvider::new(RetryPolicy::default()));
    provider.insert(
        NAME,
        "mail-rr.example.com",
        Some("sitewarden epoch=0 gen=0"),
    );
    let mut http = Vec::new();
    let mut stops = Vec::new();
    for id in ["ctl-a", "ctl-b"] {
        let addr = free_addr();
        let toml = format!(
            r#"
[controller]
id = "{id}"
listen = "{addr}"
tick = "100ms"

[nats]
servers = ["{nats}"]

[provider]
kind = "memory"

[ha]
lease = "3s"

[api]
tokens = [
  {{ name = "alice", role = "admin", token = {{ file = "{dir}/admin.token" }} }},
  {{ name = "grafana", role = "read", token = {{ file = "{dir}/read.token" }} }},
]

[slack]
signing_secret = {{ file = "{dir}/slack.secret" }}
allowed_users = ["{SLACK_OPERATOR}"]

{decisions}"#,
            nats = nats.url(),
            dir = dir.path().display(),
            decisions =
                sitewarden_tests::lab::two_site_decisions(sitewarden_tests::lab::TEST_POLICY, NAME),
        );
        let src = Source::inline("controller.toml", &toml);
        let rt = Runtime {
            config: ControllerConfig::load(&src).unwrap(),
            settings: RuntimeSettings::load(&src).unwrap(),
            provider: Some(provider.clone() as Arc<dyn DnsProvider>),
            metrics: Arc::new(Metrics::new()),
        };
        let stop = CancellationToken::new();
        tokio::spawn(runtime::run(rt, stop.clone()));
        http.push(addr);
        stops.push(stop);
    }
    let pair = Pair {
        _nats: nats,
        dir,
        provider,
        http,
        stops,
    };
    wait_for("a leader with the API up on both", DEADLINE, || async {
        let mut acting = 0;
        for addr in &pair.http {
            let r = reqwest::Client::new()
                .get(format!("http://{addr}/api/v1/status"))
                .bearer_auth(READER)
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            let s: serde_json::Value = r.json().await.ok()?;
            acting += usize::from(s["leader"]["acting"] == true);
        }
        (acting == 1).then_some(())
    })
    .await
    .unwrap();
    pair
}
