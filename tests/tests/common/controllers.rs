//! An HA lab for the controller pair as real processes: `sitewarden-controller run` processes
//! (killed on drop) that write DNS through the Cloudflare emulator, each through its own
//! [`FaultProxy`] so one controller's API traffic can be delayed or cut without touching the
//! other's; in-process agents probing emulated Exchange servers; a real nats-server (one node or
//! a 3-node cluster); a loopback receiver for the alert webhook and one for the signed edge
//! webhook; optionally a DAG collected by the site1 agent with a name that follows it, and a
//! fault proxy between each controller and each NATS node.

#![allow(dead_code)] // not every scenario uses every helper

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sitewarden_tests::cloudflare::{Call, CloudflareEmulator};
use sitewarden_tests::dag::{DagEmulator, Shape};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::fault_proxy::FaultProxy;
use sitewarden_tests::nats_server::{NatsCluster, NatsServer};
use sitewarden_tests::receiver::Receiver;
use sitewarden_tests::signals::{self, Signal};
use sitewarden_tests::wait_for;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::common::{DEADLINE, RunningAgent, free_addr, metric};

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
    /// Extra lines for the `[provider]` table.
    pub provider_extra: String,
    /// How many controllers (1 or 2).
    pub controllers: usize,
    /// Extra lines for the `[controller]` table (e.g. `reconcile_every = "5s"`).
    pub controller_extra: String,
    /// Route each site agent's probes of the *other* site through its own [`FaultProxy`]
    /// (`HaLab::cross_site`), so the path between the sites can be cut while the witness still
    /// sees both.
    pub cross_site_proxies: bool,
    /// Connect each controller to each NATS node through its own [`FaultProxy`]
    /// (`HaLab::cut_from_bus`), so one controller can be cut off from the bus.
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
    /// Appended to each controller's configuration (e.g. an `[api]` table).
    pub extra_toml: String,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            provider_extra: String::new(),
            controllers: 2,
            controller_extra: String::new(),
            cross_site_proxies: false,
            nats_proxies: false,
            dag: false,
            builtin_dns: false,
            file_handles: None,
            extra_toml: String::new(),
        }
    }
}

/// One `sitewarden-controller run` process.
pub struct ControllerProc {
    /// `[controller] id`.
    pub id: String,
    /// Its `/metrics` address.
    pub http: SocketAddr,
    /// Its Cloudflare API traffic goes through this proxy.
    pub proxy: FaultProxy,
    /// With [`LabOptions::nats_proxies`]: its path to each NATS node.
    pub nats: Vec<FaultProxy>,
    /// With [`LabOptions::builtin_dns`]: where its DNS server answers.
    pub dns: Option<SocketAddr>,
    child: Child,
    pid: u32,
    log: PathBuf,
    config: PathBuf,
    file_handles: Option<u64>,
}

impl ControllerProc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `sitewarden_controller_acting` (None while /metrics does not answer).
    pub async fn acting(&self) -> Option<bool> {
        metric(self.http, "sitewarden_controller_acting", "")
            .await
            .map(|v| v == 1.0)
    }

    /// `sitewarden_controller_epoch`.
    pub async fn epoch(&self) -> Option<u64> {
        metric(self.http, "sitewarden_controller_epoch", "")
            .await
            .map(|v| v as u64)
    }

    /// Sends a signal to the process.
    pub async fn signal(&self, s: Signal) {
        signals::send(self.pid, s).await.unwrap();
    }

    /// SIGKILL, then reap.
    pub async fn kill(&mut self) {
        self.signal(Signal::Kill).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Starts the process again with the same configuration (after [`ControllerProc::kill`]);
    /// its log continues in the same file.
    pub fn restart(&mut self) {
        let (child, pid) = spawn_controller(&self.config, &self.log, self.file_handles);
        self.child = child;
        self.pid = pid;
    }

    /// Sets this controller's path to every NATS node (needs [`LabOptions::nats_proxies`]).
    pub fn bus_path(&self, fault: sitewarden_tests::fault_proxy::Fault) {
        assert!(!self.nats.is_empty(), "started without nats_proxies");
        for p in &self.nats {
            p.set(fault);
        }
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
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
    dir: TempDir,
}

impl HaLab {
    /// Starts NATS (one node), the emulator, four Exchange servers, three agents and the
    /// controllers, and waits until exactly one controller acts and every controller has read
    /// the record once.
    pub async fn start(opts: LabOptions) -> Self {
        let bus = Bus::Single(Box::new(NatsServer::start().await.unwrap()));
        Self::start_on(bus, opts).await
    }

    /// Like [`HaLab::start`] on a given bus.
    pub async fn start_on(bus: Bus, opts: LabOptions) -> Self {
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
            DagEmulator::two_sites(&["DB01", "DB02"], &["EX01", "EX02"], &["EX03", "EX04"])
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
        let servers = toml_list(&bus.urls());
        let direct: Vec<SocketAddr> = cas.iter().map(ExchangeServer::addr).collect();
        let mut cross_site = Vec::new();
        let mut agents = Vec::new();
        for (id, site) in [
            ("site1-agent1", "site1"),
            ("site2-agent1", "site2"),
            ("witness-agent1", "witness"),
        ] {
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
            let mut toml = agent_toml(id, site, &servers, &addrs);
            if let (Some(dag), "site1") = (&dag, site) {
                let command = dag.as_command(Shape::Ps7, dir.path()).unwrap();
                toml.push_str(&format!(
                    "\n[[dbcopy]]\nname = \"dag1\"\ndag = \"DAG1\"\ncommand = [{}]\ninterval = \"500ms\"\ntimeout = \"5s\"\n",
                    toml_list(&command)
                ));
            }
            agents.push(RunningAgent::start(&toml));
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
                servers.clone()
            } else {
                toml_list(
                    &nats
                        .iter()
                        .map(|p| format!("nats://{}", p.addr()))
                        .collect::<Vec<_>>(),
                )
            };
            let http = free_addr();
            let dns = opts.builtin_dns.then(free_addr);
            let provider = match dns {
                Some(addr) => format!(
                    "kind = \"builtin\"\nzone = \"example.com\"\nlisten = \"{addr}\"\nnameservers = [\"ns1.example.com\"]\nsoa_email = \"hostmaster@example.com\""
                ),
                None => format!(
                    "kind = \"cloudflare\"\nzone_id = \"{zone}\"\napi_token = {{ file = \"{token}\" }}\napi_url = \"http://{proxy}{prefix}\"",
                    zone = wiring.zone,
                    token = wiring.token.display(),
                    proxy = proxy.addr(),
                    prefix = sitewarden_tests::cloudflare::API_PREFIX
                ),
            };
            let config = dir.path().join(format!("{id}.toml"));
            std::fs::write(
                &config,
                controller_toml(id, http, &servers, &provider, &wiring, &opts),
            )
            .unwrap();
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
        let opts_builtin = opts.builtin_dns;
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
            dir,
        };
        lab.leader().await;
        // Every controller reads the record once at start; wait for those reads so that later
        // fault injections meet the calls the scenario means.
        let n = if opts_builtin {
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
        sitewarden_tests::dig_cname(dns, name)
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

    /// Starts the lab on a 3-node JetStream cluster (site1, site2, witness) with every stream
    /// and bucket replicated three times (the harness retries a start that lost a port).
    pub async fn start_cluster(opts: LabOptions) -> Self {
        let cluster = NatsCluster::start_named(&["site1", "site2", "witness"])
            .await
            .unwrap_or_else(|e| panic!("cluster start failed: {e:#}"));
        let lab = Self::start_on(
            Bus::Cluster(cluster),
            LabOptions {
                replicas: 3,
                ..opts
            },
        )
        .await;
        lab.cluster()
            .wait_settled(DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
        lab
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
    pub fn cross_site(&self, fault: sitewarden_tests::fault_proxy::Fault) {
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
    pub async fn history(&self) -> Vec<serde_json::Value> {
        let urls = self.bus.urls();
        wait_for("the whole audit history", DEADLINE * 2, || async {
            for url in &urls {
                if let Some(records) = crate::common::audit_records_complete(url).await
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

fn toml_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn agent_toml(id: &str, site: &str, servers: &str, cas: &[SocketAddr]) -> String {
    sitewarden_tests::lab::two_site_agent(
        id,
        site,
        servers,
        &sitewarden_tests::lab::four(cas.iter().copied()),
        "500ms",
        "400ms",
        "heartbeat_interval = \"500ms\"",
    )
}

/// What every controller of the lab is wired to: the provider, and where alerts and edge
/// notices go.
struct Wiring {
    zone: String,
    /// A file holding the Cloudflare token.
    token: PathBuf,
    /// A file holding the alert webhook's URL (a secret, as in production).
    alerts_url: PathBuf,
    edge_url: String,
    /// A file holding [`EDGE_SECRET`].
    edge_secret: PathBuf,
}

/// Starts `sitewarden-controller run --config CONFIG`, appending its output to `log`; with
/// `file_handles`, under `prlimit` (which execs it, so the pid is the controller's).
fn spawn_controller(config: &Path, log: &Path, file_handles: Option<u64>) -> (Child, u32) {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let err = out.try_clone().unwrap();
    let controller = crate::common::binary("sitewarden-controller");
    let mut command = match file_handles {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(controller);
            c
        }
        None => Command::new(controller),
    };
    let child = command
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    (child, pid)
}

/// DAG1's mailbox servers and the name that follows it (with [`LabOptions::dag`]).
const DAG_TOML: &str = r#"
[[dags]]
name = "DAG1"
servers = { EX01 = "site1", EX02 = "site1", EX03 = "site2", EX04 = "site2" }

[[namespaces]]
name = "owa.example.com"
ttl = "60s"
follow = "mailbox"
dag = "DAG1"
targets = { site1 = "owa-site1.example.com", site2 = "owa-site2.example.com" }
"#;

fn controller_toml(
    id: &str,
    http: SocketAddr,
    servers: &str,
    provider: &str,
    wiring: &Wiring,
    opts: &LabOptions,
) -> String {
    format!(
        r#"
[controller]
id = "{id}"
listen = "{http}"
tick = "100ms"
replicas = {replicas}
{controller_extra}

[nats]
servers = [{servers}]

[provider]
{provider}
{extra}

[ha]
lease = "{lease}ms"

[[alerts]]
kind = "webhook"
url = {{ file = "{alerts_url}" }}
min_severity = "info"

[[edge.webhooks]]
name = "lab-edge"
url = "{edge_url}"
secret = {{ file = "{edge_secret}" }}

{decisions}{dag}{extra_toml}"#,
        decisions =
            sitewarden_tests::lab::two_site_decisions(sitewarden_tests::lab::TEST_POLICY, NAME),
        dag = if opts.dag { DAG_TOML } else { "" },
        extra_toml = opts.extra_toml,
        alerts_url = wiring.alerts_url.display(),
        edge_url = wiring.edge_url,
        edge_secret = wiring.edge_secret.display(),
        replicas = opts.replicas,
        controller_extra = opts.controller_extra,
        extra = opts.provider_extra,
        lease = LEASE.as_millis(),
    )
}
