//! The HA lab: the controller pair as real `sitewarden-controller run` processes (killed on
//! drop) that write DNS through the Cloudflare emulator, each through its own [`FaultProxy`] so
//! one controller's API traffic can be delayed or cut without touching the other's; in-process
//! agents probing emulated Exchange servers; a real nats-server (one node or a 3-node cluster);
//! a loopback receiver for the alert webhook and one for the signed edge webhook; optionally a
//! DAG collected by the site1 agent with a name that follows it, and a fault proxy between each
//! controller and each NATS node.
//!
//! The fault suite and the HA stories run on it; after each story [`crate::invariants`] checks
//! what the lab recorded. Faults that need more than a switch live in [`faults`], the webhooks'
//! readers in [`webhooks`].

mod config;
mod controller_process;
pub mod faults;
mod webhooks;

pub use controller_process::ControllerProc;
use controller_process::spawn_controller;

use std::net::SocketAddr;
use std::time::Duration;

use tempfile::TempDir;

use crate::cloudflare::{Call, CloudflareEmulator};
use crate::config_toml::{Api, Slack};
use crate::dag::{DagEmulator, Shape};
use crate::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use crate::fault_proxy::FaultProxy;
use crate::in_process::RunningAgent;
use crate::metrics_page::metric;
use crate::nats_server::{NatsCluster, NatsServer};
use crate::receiver::Receiver;
use crate::two_site::{self, AGENTS};
use crate::{DEADLINE, free_addr, machine, wait_for};
use config::Wiring;

/// The managed name.
pub const NAME: &str = "mail.example.com";
/// The emulator's API token.
pub const TOKEN: &str = "cf-ha-token-8c21d4";
/// The marker the zone is seeded with.
pub const SEED_COMMENT: &str = "sitewarden epoch=0 gen=0";
/// The leader lease of the lab's controllers.
pub const LEASE: Duration = Duration::from_secs(2);
/// The name that follows DAG1's mailboxes (with [`LabOptions::dag`]).
pub const OWA: &str = "owa.example.com";
/// The edge webhook's HMAC key.
pub const EDGE_SECRET: &str = "lab-edge-secret-5f0c2a9e71d4";

/// The bus: one node or a cluster.
pub enum Bus {
    /// One JetStream node.
    Single(Box<NatsServer>),
    /// A JetStream cluster.
    Cluster(NatsCluster),
}

impl Bus {
    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        match self {
            Bus::Single(n) => vec![n.url()],
            Bus::Cluster(c) => c.urls(),
        }
    }
}

/// How to start the lab.
pub struct LabOptions {
    /// `[controller] replicas`.
    pub replicas: usize,
    /// How many controllers (1 or 2).
    pub controllers: usize,
    /// `[controller] reconcile_every` (the default when `None`).
    pub reconcile_every: Option<Duration>,
    /// `[provider] request_timeout` of the Cloudflare provider (the default when `None`).
    pub request_timeout: Option<Duration>,
    /// Route each site agent's probes of the *other* site through its own [`FaultProxy`]
    /// ([`HaLab::cross_site`]), so the path between the sites can be cut while the witness
    /// still sees both.
    pub cross_site_proxies: bool,
    /// Connect each controller to each NATS node through its own [`FaultProxy`]
    /// ([`ControllerProc::bus_path`]), so one controller can be cut off from the bus.
    pub nats_proxies: bool,
    /// DAG1 (DB01, DB02 on EX01, EX02 in site1 and EX03, EX04 in site2, active on EX01), collected
    /// by the site1 agent every 500 ms, and a second name [`OWA`] with `follow = "mailbox"`.
    pub dag: bool,
    /// Write through each controller's built-in authoritative DNS server (zone `example.com`,
    /// the record kept in the JetStream bucket) instead of the Cloudflare emulator; read the
    /// answers with [`HaLab::dig`]. The emulator then sees no calls.
    pub builtin_dns: bool,
    /// Start each controller under `prlimit --nofile=N:N`, as a unit with a lower
    /// `LimitNOFILE` would.
    pub file_handles: Option<u64>,
    /// `[api]` of each controller.
    pub api: Option<Api>,
    /// `[slack]` of each controller.
    pub slack: Option<Slack>,
    /// The story loads the machine on purpose: the lab waits for [`machine::alone`] instead
    /// of [`machine::share`].
    pub runs_alone: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            controllers: 2,
            reconcile_every: None,
            request_timeout: None,
            cross_site_proxies: false,
            nats_proxies: false,
            dag: false,
            builtin_dns: false,
            file_handles: None,
            api: None,
            slack: None,
            runs_alone: false,
        }
    }
}

/// The lab's hold on the machine ([`crate::machine`]), released when the lab drops.
enum MachineTurn {
    Shared {
        _guard: tokio::sync::RwLockReadGuard<'static, ()>,
    },
    Alone {
        _guard: tokio::sync::RwLockWriteGuard<'static, ()>,
    },
}

impl MachineTurn {
    async fn take(opts: &LabOptions) -> Self {
        if opts.runs_alone {
            Self::Alone {
                _guard: machine::alone().await,
            }
        } else {
            Self::Shared {
                _guard: machine::share().await,
            }
        }
    }
}

/// Everything one HA scenario needs.
pub struct HaLab {
    /// The bus.
    pub bus: Bus,
    /// The Cloudflare emulator.
    pub cf: CloudflareEmulator,
    /// Exchange servers: cas1, cas2 (site1), cas3, cas4 (site2).
    pub cas: Vec<ExchangeServer>,
    /// The controllers.
    pub controllers: Vec<ControllerProc>,
    /// With `cross_site_proxies`: the site1 agent's paths to cas3 and cas4, then the site2
    /// agent's paths to cas1 and cas2.
    pub cross_site: Vec<FaultProxy>,
    /// With [`LabOptions::dag`]: DAG1, as the site1 agent's collector reads it.
    pub dag: Option<DagEmulator>,
    /// The controllers' `[[alerts]]` webhook (every severity), at `/alerts`.
    pub alerts: Receiver,
    /// The controllers' `[[edge.webhooks]]` endpoint, at `/edge`, signed with [`EDGE_SECRET`].
    pub edge: Receiver,
    agents: Vec<RunningAgent>,
    _dir: TempDir,
    // Declared last: dropped after every process of the lab is gone.
    _machine: MachineTurn,
}

impl HaLab {
    /// Starts NATS (one node), the emulator, four Exchange servers, three agents and the
    /// controllers, and waits until exactly one controller acts and every controller has read
    /// the record once.
    pub async fn start(opts: LabOptions) -> Self {
        let turn = MachineTurn::take(&opts).await;
        let bus = Bus::Single(Box::new(NatsServer::start().await.unwrap()));
        Self::start_on(bus, opts, turn).await
    }

    /// Starts the lab on a 3-node JetStream cluster (site1, site2, witness) with every stream
    /// and bucket replicated three times (the harness retries a start that lost a port).
    pub async fn start_cluster(opts: LabOptions) -> Self {
        let turn = MachineTurn::take(&opts).await;
        let cluster = NatsCluster::start_named(&["site1", "site2", "witness"])
            .await
            .unwrap_or_else(|e| panic!("cluster start failed: {e:#}"));
        let lab = Self::start_on(
            Bus::Cluster(cluster),
            LabOptions {
                replicas: 3,
                ..opts
            },
            turn,
        )
        .await;
        lab.cluster()
            .wait_settled(DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
        lab
    }

    async fn start_on(bus: Bus, opts: LabOptions, turn: MachineTurn) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sitewarden-ha-")
            .tempdir()
            .unwrap();
        let cf = CloudflareEmulator::start(TOKEN).await.unwrap();
        let zone = cf.add_zone("example.com");
        cf.add_cname(
            &zone,
            NAME,
            "mail-rr.example.com",
            60,
            false,
            Some(SEED_COMMENT),
        );
        let dag = opts.dag.then(|| {
            cf.add_cname(
                &zone,
                OWA,
                "owa-site1.example.com",
                60,
                false,
                Some(SEED_COMMENT),
            );
            two_site::dag1_emulator()
        });
        let token = dir.path().join("cloudflare.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let alerts = Receiver::start().await.unwrap();
        let edge = Receiver::start().await.unwrap();
        let wiring = Wiring {
            zone: zone.clone(),
            token: token.clone(),
            alerts_url: dir.path().join("alerts.url"),
            edge_url: edge.url("/edge"),
            edge_secret: dir.path().join("edge.secret"),
        };
        std::fs::write(&wiring.alerts_url, alerts.url("/alerts")).unwrap();
        std::fs::write(&wiring.edge_secret, EDGE_SECRET).unwrap();
        let mut cas = Vec::new();
        for i in 0..4 {
            cas.push(
                ExchangeServer::start(ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL")))
                    .await
                    .unwrap(),
            );
        }
        let direct: Vec<SocketAddr> = cas.iter().map(ExchangeServer::addr).collect();
        let mut cross_site = Vec::new();
        let mut agents = Vec::new();
        for (id, site) in AGENTS {
            let mut addrs = direct.clone();
            let other = match site {
                "site1" => 2..4,
                "site2" => 0..2,
                _ => 0..0,
            };
            if opts.cross_site_proxies {
                for i in other {
                    let proxy = FaultProxy::start(direct[i]).await.unwrap();
                    addrs[i] = proxy.addr();
                    cross_site.push(proxy);
                }
            }
            let dag_command = match (&dag, site) {
                (Some(dag), "site1") => Some(dag.as_command(Shape::Ps7, dir.path()).unwrap()),
                _ => None,
            };
            let toml = config::agent(id, site, &bus.urls(), &addrs, dag_command);
            agents.push(RunningAgent::start(&toml.render()));
        }
        let cf_addr: SocketAddr = cf
            .api_url()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if opts.builtin_dns {
            // The record exists once, as with any provider; sitewarden only ever moves it.
            let client = async_nats::connect(bus.urls()).await.unwrap();
            let store = sitewarden_controller::ha::ensure_bucket(
                &async_nats::jetstream::new(client),
                sitewarden_controller::dns::bucket_spec(opts.replicas),
            )
            .await
            .unwrap();
            sitewarden_controller::provider::builtin::BuiltinProvider::new(store)
                .create(NAME, "mail-rr.example.com", 60)
                .await
                .unwrap();
        }
        let mut controllers = Vec::new();
        for id in ["ctl-a", "ctl-b"].iter().take(opts.controllers) {
            let proxy = FaultProxy::start(cf_addr).await.unwrap();
            let mut nats = Vec::new();
            if opts.nats_proxies {
                for url in bus.urls() {
                    let node: SocketAddr = url.trim_start_matches("nats://").parse().unwrap();
                    nats.push(FaultProxy::start(node).await.unwrap());
                }
            }
            let servers = if nats.is_empty() {
                bus.urls()
            } else {
                nats.iter()
                    .map(|p| format!("nats://{}", p.addr()))
                    .collect()
            };
            let http = free_addr();
            let dns = opts.builtin_dns.then(free_addr);
            let provider = match dns {
                Some(addr) => config::builtin(addr),
                None => config::cloudflare(&wiring, proxy.addr(), opts.request_timeout),
            };
            let toml = config::controller(id, http, servers, provider, &wiring, &opts);
            let config = dir.path().join(format!("{id}.toml"));
            std::fs::write(&config, toml.render()).unwrap();
            let log = dir.path().join(format!("{id}.log"));
            let (child, pid) = spawn_controller(&config, &log, opts.file_handles);
            controllers.push(ControllerProc {
                id: (*id).to_owned(),
                http,
                proxy,
                nats,
                dns,
                child,
                pid,
                log,
                config,
                file_handles: opts.file_handles,
            });
        }
        let lab = HaLab {
            bus,
            cf,
            cas,
            controllers,
            cross_site,
            dag,
            alerts,
            edge,
            agents,
            _dir: dir,
            _machine: turn,
        };
        lab.leader().await;
        // Every controller reads the record once at start; wait for those reads so that later
        // fault injections meet the calls the scenario means.
        let n = if opts.builtin_dns {
            0
        } else {
            lab.controllers.len()
        };
        let cf = &lab.cf;
        wait_for("each controller's first read", DEADLINE, || async {
            (record_reads(cf) >= n).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
        lab
    }

    /// `dig` for `name`'s CNAME at controller `i`'s built-in DNS server (with
    /// [`LabOptions::builtin_dns`]), without the trailing dot.
    pub fn dig(&self, i: usize, name: &str) -> String {
        let dns = self.controllers[i].dns.expect("started with builtin_dns");
        crate::dig_cname(dns, name)
    }

    /// Waits until exactly one controller acts (the others answer acting=0) and returns its
    /// index.
    pub async fn leader(&self) -> usize {
        let r = wait_for("exactly one acting controller", DEADLINE, || async {
            let mut acting = Vec::new();
            for c in &self.controllers {
                acting.push(c.acting().await?);
            }
            let leaders: Vec<usize> = (0..acting.len()).filter(|i| acting[*i]).collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
        .await;
        r.unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Takes site1's client-access servers down.
    pub async fn site1_dies(&self) {
        for cas in &self.cas[..2] {
            cas.set(Behaviour::Down).await.unwrap();
        }
    }

    /// The PATCH requests the emulator answered with success.
    pub fn successful_patches(&self) -> Vec<Call> {
        self.cf
            .calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.status == 200)
            .collect()
    }

    /// Every PATCH the emulator saw (failed, lost or not).
    pub fn patches(&self) -> Vec<Call> {
        self.cf
            .calls()
            .into_iter()
            .filter(|c| c.method == "PATCH")
            .collect()
    }

    /// The record's (content, comment).
    pub fn record(&self) -> (String, Option<String>) {
        self.record_of(NAME)
    }

    /// `name`'s (content, comment).
    pub fn record_of(&self, name: &str) -> (String, Option<String>) {
        let r = self.cf.record(name).expect("the record exists");
        (r.content, r.comment)
    }

    /// Waits until the record points at `target` and returns its marker's epoch.
    pub async fn wait_record(&self, target: &str) -> u64 {
        let r = wait_for(&format!("record -> {target}"), DEADLINE, || async {
            let (content, comment) = self.record();
            (content == target).then(|| marker_epoch(comment.as_deref()))
        })
        .await;
        r.unwrap_or_else(|e| panic!("{e}\ncalls: {:#?}\n{}", self.cf.calls(), self.logs()))
    }

    /// Every controller's log tail (40 lines, or `SITEWARDEN_TEST_LOG_LINES`).
    pub fn logs(&self) -> String {
        let lines = std::env::var("SITEWARDEN_TEST_LOG_LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(40);
        self.controllers
            .iter()
            .map(|c| format!("--- {} log ---\n{}", c.id, c.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The cluster under a lab started with [`HaLab::start_cluster`].
    pub fn cluster(&self) -> &NatsCluster {
        match &self.bus {
            Bus::Cluster(c) => c,
            Bus::Single(_) => panic!("not a cluster"),
        }
    }

    /// Stops every agent (they flush and exit).
    pub async fn stop_agents(&mut self) {
        for agent in self.agents.drain(..) {
            agent.stop().await;
        }
    }

    /// Sets every cross-site probe path (see [`LabOptions::cross_site_proxies`]).
    pub fn cross_site(&self, fault: crate::fault_proxy::Fault) {
        assert!(
            !self.cross_site.is_empty(),
            "started without cross_site_proxies"
        );
        for p in &self.cross_site {
            p.set(fault);
        }
    }

    /// Brings site1's client-access servers back.
    pub async fn site1_recovers(&self) {
        for cas in &self.cas[..2] {
            cas.set(Behaviour::Healthy).await.unwrap();
        }
    }

    /// Waits until controller `i` acts and returns its epoch.
    pub async fn wait_acting(&self, i: usize) -> u64 {
        let c = &self.controllers[i];
        wait_for("controller acting", DEADLINE, || async {
            if c.acting().await == Some(true) {
                c.epoch().await
            } else {
                None
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Waits for `n` more events accepted by controller `i`: proof that the engine had plenty
    /// of evidence and ticks to act on since the call.
    pub async fn more_events(&self, i: usize, n: f64) {
        let http = self.controllers[i].http;
        let name = "sitewarden_controller_events_accepted_total";
        let seen = metric(http, name, "").await.unwrap_or(0.0);
        wait_for("more agent events", DEADLINE, || async {
            (metric(http, name, "").await? >= seen + n).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// The whole audit stream so far, read through the first node that can give all of it;
    /// waits while none can (a node just lost, the stream electing a leader).
    pub async fn history(&self) -> Vec<crate::audit::AuditRecord> {
        let urls = self.bus.urls();
        wait_for("the whole audit history", DEADLINE * 2, || async {
            for url in &urls {
                if let Some(records) = crate::audit::complete_records(url).await
                    && !records.is_empty()
                {
                    return Some(records);
                }
            }
            None
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// The state bucket, through `url`.
    pub async fn state_bucket(url: &str) -> async_nats::jetstream::kv::Store {
        let client = async_nats::connect(url).await.unwrap();
        async_nats::jetstream::new(client)
            .get_key_value("sitewarden-state")
            .await
            .unwrap()
    }
}

/// The pending-or-not intent of [`NAME`] in the state bucket, as JSON.
pub async fn intent(store: &async_nats::jetstream::kv::Store) -> Option<serde_json::Value> {
    let entry = store.entry(format!("intent.{NAME}")).await.ok()??;
    serde_json::from_slice(&entry.value).ok()
}

/// GETs of the zone's DNS records (the controllers' reads).
pub fn record_reads(cf: &CloudflareEmulator) -> usize {
    cf.calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("/dns_records"))
        .count()
}

/// The epoch in a `sitewarden epoch=N gen=G` comment (0 when there is none).
pub fn marker_epoch(comment: Option<&str>) -> u64 {
    comment
        .and_then(|c| c.split_whitespace().find_map(|w| w.strip_prefix("epoch=")))
        .and_then(|e| e.parse().ok())
        .unwrap_or(0)
}
