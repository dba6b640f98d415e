//! The configuration files of the HA lab's controllers and agents, built on the two-site layout
//! ([`crate::two_site`]) with the lab's fast policy, its wiring (provider, alert and edge
//! webhooks) and, with [`LabOptions::dag`], DAG1 and the name that follows it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{LEASE, LabOptions, NAME, OWA};
use crate::config_toml::{
    AgentToml, AlertSink, ControllerTable, ControllerToml, Edge, EdgeWebhook, Ha, NatsTable,
    Provider, SecretFile,
};
use crate::two_site::{self, TEST_POLICY};

/// What every controller of the lab is wired to: the provider, and where alerts and edge
/// notices go.
pub(super) struct Wiring {
    /// The Cloudflare emulator's zone id.
    pub zone: String,
    /// A file holding the Cloudflare token.
    pub token: PathBuf,
    /// A file holding the alert webhook's URL (a secret, as in production).
    pub alerts_url: PathBuf,
    /// The edge webhook's URL.
    pub edge_url: String,
    /// A file holding [`super::EDGE_SECRET`].
    pub edge_secret: PathBuf,
}

/// An agent of the lab: 500 ms probes with a 400 ms timeout and 500 ms heartbeats; with
/// `dag_command`, the DAG1 collector (every 500 ms).
pub(super) fn agent(
    id: &str,
    site: &str,
    nats: &[String],
    cas: &[SocketAddr],
    dag_command: Option<Vec<String>>,
) -> AgentToml {
    let mut agent = two_site::agent(
        id,
        site,
        NatsTable::servers(nats.iter().cloned()),
        &two_site::four(cas.iter().copied()),
        Duration::from_millis(500),
        Duration::from_millis(400),
    );
    agent.agent.heartbeat_interval = Some(Duration::from_millis(500));
    if let Some(command) = dag_command {
        agent.dbcopy.push(two_site::dag1_collector(
            command,
            Duration::from_millis(500),
        ));
    }
    agent
}

/// A controller of the lab: `id`, serving `/metrics` on `http`, on the bus at `nats`, writing
/// through `provider`.
pub(super) fn controller(
    id: &str,
    http: SocketAddr,
    nats: Vec<String>,
    provider: Provider,
    wiring: &Wiring,
    opts: &LabOptions,
) -> ControllerToml {
    let mut decisions = two_site::decisions(Some(TEST_POLICY), NAME);
    if opts.dag {
        decisions.dags.push(two_site::dag1());
        decisions.namespaces.push(two_site::follows_dag1(OWA));
    }
    ControllerToml {
        controller: ControllerTable {
            id: id.into(),
            listen: http.to_string(),
            tick: Some(Duration::from_millis(100)),
            replicas: Some(opts.replicas),
            reconcile_every: opts.reconcile_every,
            ..ControllerTable::default()
        },
        nats: NatsTable::servers(nats),
        provider,
        ha: Some(Ha { lease: LEASE }),
        api: opts.api.clone(),
        slack: opts.slack.clone(),
        alerts: vec![AlertSink {
            kind: "webhook".into(),
            url: SecretFile::at(&wiring.alerts_url),
            min_severity: "info".into(),
        }],
        edge: Some(Edge {
            webhooks: vec![EdgeWebhook {
                name: "lab-edge".into(),
                url: wiring.edge_url.clone(),
                secret: SecretFile::at(&wiring.edge_secret),
            }],
        }),
        decisions,
    }
}

/// The Cloudflare emulator as the provider, reached through `proxy`.
pub(super) fn cloudflare(
    wiring: &Wiring,
    proxy: SocketAddr,
    request_timeout: Option<Duration>,
) -> Provider {
    Provider::Cloudflare {
        zone_id: wiring.zone.clone(),
        api_token: SecretFile::at(&wiring.token),
        api_url: format!("http://{proxy}{}", crate::cloudflare::API_PREFIX),
        request_timeout,
        retry_deadline: None,
    }
}

/// The controller's built-in DNS server on `listen`, for the zone `example.com`.
pub(super) fn builtin(listen: SocketAddr) -> Provider {
    Provider::Builtin {
        zone: "example.com".into(),
        listen: listen.to_string(),
        nameservers: vec!["ns1.example.com".into()],
        soa_email: "hostmaster@example.com".into(),
    }
}
