//! A controller pair with `[api]` tokens and `[slack]`, in-process on a real nats-server, with
//! one memory DNS provider holding `mail.example.com → mail-rr`: what the operator-surface tests
//! (API, CLI, Slack) drive. The three agents of the two-site layout probe four healthy emulated
//! Exchange servers, and the pair is ready once both controllers see site1 and site2 Up, so an
//! override passes the engine's safety check (a pin onto a site that is not Up is refused).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sitewarden_controller::provider::DnsProvider;
use sitewarden_controller::provider::budget::RetryPolicy;
use sitewarden_controller::provider::memory::MemoryProvider;
use tokio::sync::RwLockReadGuard;

use crate::config_toml::{
    Api, ApiToken, ControllerTable, ControllerToml, Ha, NatsTable, Provider, SecretFile, Slack,
};
use crate::exchange::{ExchangeOptions, ExchangeServer};
use crate::in_process::{RunningAgent, RunningController};
use crate::nats_server::NatsServer;
use crate::two_site::{self, TEST_POLICY, decisions};
use crate::{DEADLINE, free_addr, machine, wait_for};

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
pub struct ApiPair {
    /// Holds the token files; tests may put more files here.
    pub dir: tempfile::TempDir,
    /// The DNS records both controllers write.
    pub provider: Arc<MemoryProvider>,
    /// Each controller's HTTP address.
    pub http: Vec<SocketAddr>,
    _controllers: Vec<RunningController>,
    _agents: Vec<RunningAgent>,
    /// The four emulated client-access servers (site1: 0 and 1, site2: 2 and 3).
    pub exchange: Vec<ExchangeServer>,
    _nats: NatsServer,
    // A pair with a 3 s lease takes its share of the machine (crate::machine).
    _machine: RwLockReadGuard<'static, ()>,
}

impl ApiPair {
    /// Starts the pair and waits until both serve the API and exactly one acts.
    pub async fn start() -> Self {
        let machine = machine::share().await;
        let nats = NatsServer::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| SecretFile::at(dir.path().join(name));
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
        let mut controllers = Vec::new();
        for id in ["ctl-a", "ctl-b"] {
            let addr = free_addr();
            let toml = ControllerToml {
                controller: ControllerTable {
                    id: id.into(),
                    listen: addr.to_string(),
                    tick: Some(Duration::from_millis(100)),
                    ..ControllerTable::default()
                },
                nats: NatsTable::servers([nats.url()]),
                provider: Provider::Memory,
                ha: Some(Ha {
                    lease: Duration::from_secs(3),
                }),
                api: Some(Api {
                    tokens: vec![
                        ApiToken {
                            name: "alice".into(),
                            role: "admin".into(),
                            token: file("admin.token"),
                        },
                        ApiToken {
                            name: "grafana".into(),
                            role: "read".into(),
                            token: file("read.token"),
                        },
                    ],
                }),
                slack: Some(Slack {
                    signing_secret: file("slack.secret"),
                    allowed_users: vec![SLACK_OPERATOR.into()],
                }),
                decisions: decisions(Some(TEST_POLICY), NAME),
                ..ControllerToml::default()
            };
            controllers.push(RunningController::start(
                &toml.render(),
                Some(provider.clone() as Arc<dyn DnsProvider>),
            ));
            http.push(addr);
        }
        let mut exchange = Vec::new();
        for i in 0..4 {
            let name = format!("EXCH-{i}.CONTOSO.LOCAL");
            exchange.push(
                ExchangeServer::start(ExchangeOptions::new(&name))
                    .await
                    .unwrap(),
            );
        }
        let agents = two_site::AGENTS
            .iter()
            .map(|(id, site)| {
                let mut toml = two_site::agent(
                    id,
                    site,
                    NatsTable::servers([nats.url()]),
                    &two_site::four(exchange.iter().map(ExchangeServer::addr)),
                    Duration::from_millis(500),
                    Duration::from_millis(400),
                );
                toml.agent.heartbeat_interval = Some(Duration::from_millis(500));
                RunningAgent::start(&toml.render())
            })
            .collect();
        let pair = Self {
            dir,
            provider,
            http,
            _controllers: controllers,
            _agents: agents,
            exchange,
            _nats: nats,
            _machine: machine,
        };
        wait_for(
            "a leader with the API up on both, seeing both sites Up",
            DEADLINE,
            || async {
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
                    let up = |site: &str| {
                        s["sites"].as_array().is_some_and(|sites| {
                            sites
                                .iter()
                                .any(|x| x["site"] == site && x["evidence"]["verdict"] == "up")
                        })
                    };
                    if !(up("site1") && up("site2")) {
                        return None;
                    }
                    acting += usize::from(s["leader"]["acting"] == true);
                }
                (acting == 1).then_some(())
            },
        )
        .await
        .unwrap();
        pair
    }

    /// Controller `i`'s base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.http[i])
    }

    /// What the record of [`NAME`] points at.
    pub fn content(&self) -> Option<String> {
        self.provider.record(NAME).and_then(|r| r.content)
    }
}
