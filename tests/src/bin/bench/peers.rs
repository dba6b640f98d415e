//! `peers`: sitewarden, gdnsd and PowerDNS (LUA records) race on the same emulated servers.
//!
//! Four emulated Exchange servers listen on their own loopback addresses and one port (site1:
//! 127.0.0.11 and .12, site2: .21 and .22), because gdnsd's `http_status` monitor and PowerDNS's
//! `ifurlup` take addresses and one URL for every server. Each system watches them as it would
//! in production and answers `mail` from its own authoritative server on loopback:
//!
//! - **sitewarden**: a nats-server, three real agents (site1, site2, witness; ActiveSync probes
//!   every `interval`, by default 1 s with `fall` 4), an in-process controller with the built-in DNS
//!   answering `mail.failover.example.com` as a CNAME (`mail-rr` while both sites are up,
//!   `mail-site2` after site1 is lost).
//! - **gdnsd** (Debian's): `http_status` on `/owa/healthcheck.htm` and `metafo` over two
//!   datacenters (site1's addresses while any is up, else site2's).
//! - **PowerDNS Authoritative** (Debian's, bind backend, `enable-lua-records`): an `ifurlup`
//!   LUA record with site1's and site2's addresses as two groups (the first group with an
//!   address up wins).
//!
//! Peers run twice: at their packaged defaults, and tuned to a 2 s interval and 3 failures (the
//! fastest gdnsd allows) with whatever knobs the packaged version has.
//!
//! Measured, each by polling every system's authoritative answer every 50 ms:
//! - **speed**: site1's servers refuse connections at a random point of each system's probe
//!   cycle; the time until the answer names site2 only. Trials are interleaved (trial 1 of
//!   every system, then trial 2 …), each on a freshly started system;
//! - **blips**: all systems at once watch five 3-second site1 outages about 20 s apart (each
//!   start moved by up to 10 s at random, so the blips meet every probe cycle at random
//!   phases); how often each one's answer moved;
//! - **vantage cut**: one vantage point loses its view of site1 for 30 s (sitewarden: the
//!   witness agent's; a peer has one vantage point, its own); how often each answer moved;
//! - **client**: a real recursive resolver (unbound) in front of each system, a client asking
//!   it every 100 ms: the time from the fault until the client gets the new target, at the
//!   record's TTL (60 s and 5 s; sitewarden also at its built-in default of 10 s).
//!
//! The last line is one JSON object with every figure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::fault_proxy::{Fault, FaultProxy};
use sitewarden_tests::nats_server::NatsServer;
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::rig::{self, InProcess};

/// How often every system's answer is read.
const POLL: Duration = Duration::from_millis(50);
/// How far each blip's start is moved at random (the longest probe interval raced).
const BLIP_JITTER: Duration = Duration::from_secs(10);
/// The built-in DNS's default TTL, seconds.
const BUILTIN_TTL: u32 = sitewarden_controller::config::BUILTIN_DEFAULT_TTL.as_secs() as u32;
/// How often the client behind the resolver asks.
const CLIENT_POLL: Duration = Duration::from_millis(100);
/// The built-in DNS zone and the managed name in it.
const ZONE: &str = "failover.example.com";
const NAME: &str = "mail.failover.example.com";
/// The peers' zone and name.
const PEER_ZONE: &str = "example.com";
const PEER_NAME: &str = "mail.example.com";
/// Site1's and site2's server addresses.
const SITE1: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12)];
const SITE2: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 21), Ipv4Addr::new(127, 0, 0, 22)];
/// Where a peer's vantage point sees site1 in the vantage-cut story (proxies to SITE1).
const SITE1_SEEN: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 13), Ipv4Addr::new(127, 0, 0, 14)];
/// Where the witness agent sees site1 in the vantage-cut story (proxies to SITE1).
const SITE1_WITNESS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 15), Ipv4Addr::new(127, 0, 0, 16)];

/// What an answer says about where clients go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// Site1 only, or both sites (sitewarden's round-robin name).
    Site1,
    /// Site2 only: the failover happened.
    Site2,
    /// No usable answer (SERVFAIL, timeout, empty).
    Nothing,
}

/// One system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// sitewarden with its defaults (or `--interval-ms`/`--fall`), built-in DNS.
    Sitewarden,
    /// gdnsd at its packaged defaults.
    Gdnsd,
    /// gdnsd tuned to a 2 s interval and 3 failures.
    GdnsdTuned,
    /// PowerDNS with LUA records at the packaged defaults.
    Pdns,
    /// PowerDNS tuned as far as 4.7's knobs go.
    PdnsTuned,
}

impl System {
    const ALL: [System; 5] = [
        System::Sitewarden,
        System::Gdnsd,
        System::GdnsdTuned,
        System::Pdns,
        System::PdnsTuned,
    ];

    fn key(self) -> &'static str {
        match self {
            System::Sitewarden => "sitewarden",
            System::Gdnsd => "gdnsd_default",
            System::GdnsdTuned => "gdnsd_tuned",
            System::Pdns => "pdns_default",
            System::PdnsTuned => "pdns_tuned",
        }
    }
}

/// The probe policy sitewarden runs with.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Agents' probe interval and the policy's.
    pub interval: Duration,
    /// The policy's `fall`.
    pub fall: u32,
}

impl Policy {
    /// `[policy]`: the interval and `fall`; `rise` and `stale_after` keep their defaults.
    fn table(&self) -> sitewarden_tests::config_toml::Policy {
        sitewarden_tests::config_toml::Policy {
            interval: Some(self.interval),
            fall: Some(self.fall),
            ..Default::default()
        }
    }
}

/// What to run.
pub struct Args {
    /// Speed trials per system.
    pub trials: usize,
    /// sitewarden's probe policy.
    pub policy: Policy,
    /// Run the blips and the vantage cut.
    pub false_moves: bool,
    /// Run the resolver measurements.
    pub client: bool,
    /// Race no peer: sitewarden's figures only (e.g. for another policy).
    pub sitewarden_only: bool,
}

/// The four emulated servers at their fixed addresses.
struct Servers {
    port: u16,
    site1: Vec<ExchangeServer>,
    _site2: Vec<ExchangeServer>,
}

impl Servers {
    async fn start() -> anyhow::Result<Self> {
        let port = free_port_on(&[SITE1[0], SITE1[1], SITE2[0], SITE2[1]])?;
        let mut site1 = Vec::new();
        let mut site2 = Vec::new();
        for (i, ip) in SITE1.iter().chain(SITE2.iter()).enumerate() {
            let server = ExchangeServer::start(
                ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL"))
                    .with_bind(SocketAddr::from((*ip, port))),
            )
            .await?;
            if i < 2 {
                site1.push(server);
            } else {
                site2.push(server);
            }
        }
        Ok(Self {
            port,
            site1,
            _site2: site2,
        })
    }

    /// Site1's servers refuse connections (`up = false`) or serve again.
    async fn site1(&self, up: bool) -> anyhow::Result<()> {
        let b = if up {
            Behaviour::Healthy
        } else {
            Behaviour::Down
        };
        for s in &self.site1 {
            s.set(b.clone()).await?;
        }
        Ok(())
    }

    fn addr(&self, ip: Ipv4Addr) -> SocketAddr {
        SocketAddr::from((ip, self.port))
    }
}

/// A port free on every one of `ips` (and on 127.0.0.1).
fn free_port_on(ips: &[Ipv4Addr]) -> anyhow::Result<u16> {
    for _ in 0..50 {
        let port = sitewarden_tests::nats_server::free_port();
        let free = ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok());
        if free {
            return Ok(port);
        }
    }
    bail!("no port free on {ips:?}")
}

/// One running system: where to ask, and what keeps it alive.
struct Running {
    system: System,
    dns: SocketAddr,
    qname: &'static str,
    qtype: RecordType,
    /// The system's probe interval, over which the fault's moment is spread.
    interval: Duration,
    /// What runs it; dropped (processes killed) when done.
    parts: Parts,
}

enum Parts {
    Sitewarden(Box<SitewardenLab>),
    Process {
        child: Box<Child>,
        dir: tempfile::TempDir,
    },
}

impl Running {
    async fn stop(self) {
        match self.parts {
            Parts::Sitewarden(lab) => lab.stop().await,
            Parts::Process { mut child, dir } => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                drop(dir);
            }
        }
    }

    /// Where the system's answer points now.
    async fn answer(&self) -> Where {
        classify(&ask(self.dns, self.qname, self.qtype, false).await)
    }
}

/// sitewarden's lab: a nats-server, three agents, an in-process controller with the built-in
/// DNS, and (for the vantage cut) proxies between the witness agent and site1.
struct SitewardenLab {
    _nats: NatsServer,
    controller: InProcess,
    agents: rig::Agents,
    witness_proxies: Vec<FaultProxy>,
}

impl SitewardenLab {
    async fn stop(self) {
        self.controller.stop().await;
        self.agents.stop().await;
    }
}

/// Starts sitewarden on `servers` with the record at `ttl` seconds; with `witness_cut` the
/// witness agent sees site1 through proxies (returned in the lab).
async fn start_sitewarden(
    servers: &Servers,
    policy: Policy,
    ttl: u32,
    witness_cut: bool,
) -> anyhow::Result<Running> {
    let nats = NatsServer::start().await?;
    {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
        let store = sitewarden_controller::ha::ensure_bucket(
            &js,
            sitewarden_controller::dns::bucket_spec(1),
        )
        .await?;
        sitewarden_controller::provider::builtin::BuiltinProvider::new(store)
            .create(NAME, "mail-rr.example.com", ttl)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let direct = [
        servers.addr(SITE1[0]),
        servers.addr(SITE1[1]),
        servers.addr(SITE2[0]),
        servers.addr(SITE2[1]),
    ];
    let mut witness_proxies = Vec::new();
    let mut witness_view = direct;
    if witness_cut {
        for (i, ip) in SITE1_WITNESS.iter().enumerate() {
            let p = FaultProxy::start_at(servers.addr(*ip), direct[i]).await?;
            witness_view[i] = p.addr();
            witness_proxies.push(p);
        }
    }
    // The agent's default timeout: 1 s, at most the interval.
    let timeout = policy.interval.min(Duration::from_secs(1));
    let agents = rig::Agents::start(&nats.url(), policy.interval, timeout, |site| {
        if site == "witness" {
            witness_view
        } else {
            direct
        }
    })?;
    let dns = rig::free_addr();
    let provider = format!(
        "kind = \"builtin\"\nzone = \"{ZONE}\"\nlisten = \"{dns}\"\nnameservers = [\"ns1.{ZONE}\"]\nsoa_email = \"hostmaster@example.com\"\n"
    );
    let toml = rig::controller_head("bench-peers", &nats.url(), "off", &provider)
        + &{
            let mut decisions = sitewarden_tests::two_site::decisions(Some(policy.table()), NAME);
            decisions.namespaces[0].ttl = Some(Duration::from_secs(ttl.into()));
            decisions.render()
        };
    let mut controller = InProcess::start(&toml, None)?;
    controller.acting(Duration::from_secs(30)).await?;
    // Both sites Up (after `rise` passing rounds), as a site that has served for a while is.
    rig::sites_up(
        &controller.metrics,
        &["site1", "site2"],
        Duration::from_secs(60),
    )
    .await?;
    Ok(Running {
        system: System::Sitewarden,
        dns,
        qname: NAME,
        qtype: RecordType::CNAME,
        interval: policy.interval,
        parts: Parts::Sitewarden(Box::new(SitewardenLab {
            _nats: nats,
            controller,
            agents,
            witness_proxies,
        })),
    })
}

/// The peers' view of site1: the servers themselves, or (vantage cut) proxies to them.
fn peer_site1(servers: &Servers, seen: Option<&[FaultProxy]>) -> [SocketAddr; 2] {
    match seen {
        Some(p) => [p[0].addr(), p[1].addr()],
        None => [servers.addr(SITE1[0]), servers.addr(SITE1[1])],
    }
}

/// Starts a peer (not sitewarden) on `servers`, its site1 seen at `site1`.
async fn start_peer(
    system: System,
    servers: &Servers,
    site1: [SocketAddr; 2],
    ttl: u32,
) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let dns = rig::free_addr();
    let site2 = [servers.addr(SITE2[0]), servers.addr(SITE2[1])];
    let (mut command, interval) = match system {
        System::Gdnsd | System::GdnsdTuned => {
            let tuned = system == System::GdnsdTuned;
            let interval = crate::peers_conf::gdnsd(dir.path(), dns, site1, site2, ttl, tuned)?;
            (crate::peers_conf::gdnsd_command(dir.path()), interval)
        }
        System::Pdns | System::PdnsTuned => {
            let tuned = system == System::PdnsTuned;
            let interval = crate::peers_conf::pdns(dir.path(), dns, site1, site2, ttl, tuned)?;
            (crate::peers_conf::pdns_command(dir.path()), interval)
        }
        System::Sitewarden => bail!("sitewarden is not a peer"),
    };
    let log = std::fs::File::create(dir.path().join("daemon.log"))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", system.key()))?;
    let running = Running {
        system,
        dns,
        qname: PEER_NAME,
        qtype: RecordType::A,
        interval,
        parts: Parts::Process {
            child: Box::new(child),
            dir,
        },
    };
    // Ready once it answers site1's addresses only: PowerDNS starts its health checks at the
    // first query and answers every address (its backup selector) until one has run.
    let ready = sitewarden_tests::wait_for(
        "the peer to answer site1 only",
        Duration::from_secs(60),
        || async {
            let answer = ask(running.dns, running.qname, running.qtype, false).await;
            site1_only(&answer).then_some(())
        },
    )
    .await;
    if let Err(e) = ready {
        let log = match &running.parts {
            Parts::Process { dir, .. } => {
                std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
            }
            Parts::Sitewarden(_) => String::new(),
        };
        running.stop().await;
        bail!("{}: {e}\n{log}", system.key());
    }
    Ok(running)
}

/// Asks `server` for `name`/`qtype` once over UDP (1 s timeout); the answer's records as text.
async fn ask(server: SocketAddr, name: &str, qtype: RecordType, recurse: bool) -> Vec<String> {
    let Ok(name) = Name::from_ascii(name) else {
        return Vec::new();
    };
    let mut m = Message::query();
    m.add_query(Query::query(name, qtype));
    m.metadata.recursion_desired = recurse;
    let Ok(bytes) = m.to_vec() else {
        return Vec::new();
    };
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await else {
        return Vec::new();
    };
    if socket.send_to(&bytes, server).await.is_err() {
        return Vec::new();
    }
    let mut buf = vec![0u8; 4096];
    let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
    else {
        return Vec::new();
    };
    let Ok(reply) = Message::from_vec(&buf[..n]) else {
        return Vec::new();
    };
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::CNAME(c) => Some(c.0.to_ascii().trim_end_matches('.').to_owned()),
            _ => None,
        })
        .collect()
}

/// Where an answer sends clients.
fn classify(answer: &[String]) -> Where {
    let site = |s: &str| -> Option<u8> {
        if s.starts_with("mail-site2") {
            return Some(2);
        }
        if s.starts_with("mail-site1") || s.starts_with("mail-rr") {
            return Some(1);
        }
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if ip.octets()[3] / 10 == 2 => Some(2),
            Ok(IpAddr::V4(ip)) if ip.octets()[3] / 10 == 1 => Some(1),
            _ => None,
        }
    };
    let sites: Vec<u8> = answer.iter().filter_map(|s| site(s)).collect();
    if sites.is_empty() {
        Where::Nothing
    } else if sites.iter().all(|s| *s == 2) {
        Where::Site2
    } else {
        Where::Site1
    }
}

/// Whether an answer names site1 and nothing else: the systems' state once their first checks
/// ran with every server up.
fn site1_only(answer: &[String]) -> bool {
    !answer.is_empty()
        && answer.iter().all(|s| {
            s.parse::<Ipv4Addr>().map_or(
                s.starts_with("mail-rr") || s.starts_with("mail-site1"),
                |ip| ip.octets()[3] / 10 == 1,
            )
        })
}

/// Polls every [`POLL`] until `running` answers site2; the instant it first did.
async fn until_site2(running: &Running, deadline: Duration) -> anyhow::Result<Instant> {
    let until = Instant::now() + deadline;
    loop {
        let asked = Instant::now();
        if running.answer().await == Where::Site2 {
            return Ok(asked);
        }
        if Instant::now() >= until {
            bail!(
                "{} did not move to site2 within {deadline:?}",
                running.system.key()
            );
        }
        tokio::time::sleep(POLL.saturating_sub(asked.elapsed())).await;
    }
}

/// One speed trial of `system`: seconds from site1's death to an answer naming site2 only.
async fn speed_trial(system: System, servers: &Servers, policy: Policy) -> anyhow::Result<f64> {
    let running = match system {
        System::Sitewarden => start_sitewarden(servers, policy, 60, false).await?,
        _ => start_peer(system, servers, peer_site1(servers, None), 60).await?,
    };
    // Let the peer see every server up at least once more, then strike at a random point of
    // its probe cycle.
    tokio::time::sleep(running.interval).await;
    tokio::time::sleep(running.interval.mul_f64(rand::random::<f64>())).await;
    let killed = Instant::now();
    servers.site1(false).await?;
    let moved = until_site2(&running, Duration::from_secs(180)).await;
    servers.site1(true).await?;
    running.stop().await;
    Ok(moved?.duration_since(killed).as_secs_f64())
}

/// Counts how often each of `running`'s answers changed while `story` runs.
async fn count_moves<F>(running: &[Running], story: F) -> anyhow::Result<Vec<(usize, bool)>>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let stop = CancellationToken::new();
    let watchers: Vec<_> = running
        .iter()
        .map(|r| {
            let (dns, qname, qtype, stop) = (r.dns, r.qname, r.qtype, stop.clone());
            tokio::spawn(async move {
                let mut last = classify(&ask(dns, qname, qtype, false).await);
                let (mut moves, mut nothing) = (0usize, false);
                while !stop.is_cancelled() {
                    tokio::time::sleep(POLL).await;
                    let now = classify(&ask(dns, qname, qtype, false).await);
                    if now == Where::Nothing {
                        nothing = true;
                        continue;
                    }
                    if now != last {
                        moves += 1;
                        last = now;
                    }
                }
                (moves, nothing)
            })
        })
        .collect();
    let result = story.await;
    stop.cancel();
    let mut counts = Vec::new();
    for w in watchers {
        counts.push(w.await?);
    }
    result.map(|()| counts)
}

/// Five 3-second site1 outages, 20 s apart, under every system at once.
async fn blips(
    servers: &Servers,
    policy: Policy,
    systems: &[System],
) -> anyhow::Result<serde_json::Value> {
    let mut running = vec![start_sitewarden(servers, policy, 60, false).await?];
    for system in &systems[1..] {
        running.push(start_peer(*system, servers, peer_site1(servers, None), 60).await?);
    }
    let counts = count_moves(&running, async {
        let start = Instant::now();
        for i in 0..5u32 {
            // 20 s apart, each shifted by up to BLIP_JITTER at random: with a fixed 20 s period
            // every blip would meet a 2, 5 or 10 s probe cycle at the same phase, so one run
            // would say "always caught" or "never caught".
            let at =
                start + Duration::from_secs(20) * i + BLIP_JITTER.mul_f64(rand::random::<f64>());
            tokio::time::sleep_until(at.into()).await;
            eprintln!("blip {}: site1 down for 3 s", i + 1);
            servers.site1(false).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            servers.site1(true).await?;
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
        Ok(())
    })
    .await?;
    let mut out = serde_json::Map::new();
    for (r, (moves, nothing)) in running.iter().zip(&counts) {
        eprintln!("blips: {} answer moved {moves} times", r.system.key());
        out.insert(format!("blips_moves_{}", r.system.key()), (*moves).into());
        if *nothing {
            out.insert(format!("blips_unanswered_{}", r.system.key()), true.into());
        }
    }
    for r in running {
        r.stop().await;
    }
    Ok(out.into())
}

/// One vantage point loses its view of site1 for 30 s.
async fn vantage_cut(
    servers: &Servers,
    policy: Policy,
    systems: &[System],
) -> anyhow::Result<serde_json::Value> {
    let mut running = vec![start_sitewarden(servers, policy, 60, true).await?];
    let mut seen = Vec::new();
    for (i, ip) in SITE1_SEEN.iter().enumerate() {
        seen.push(FaultProxy::start_at(servers.addr(*ip), servers.addr(SITE1[i])).await?);
    }
    for system in &systems[1..] {
        running.push(start_peer(*system, servers, peer_site1(servers, Some(&seen)), 60).await?);
    }
    let witness: Vec<&FaultProxy> = match &running[0].parts {
        Parts::Sitewarden(lab) => lab.witness_proxies.iter().collect(),
        Parts::Process { .. } => Vec::new(),
    };
    let counts = count_moves(&running, async {
        eprintln!("vantage cut: the witness agent and each peer lose site1 for 30 s");
        for p in witness.iter().copied().chain(seen.iter()) {
            p.set(Fault::Reset);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        for p in witness.iter().copied().chain(seen.iter()) {
            p.set(Fault::Pass);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(())
    })
    .await?;
    let mut out = serde_json::Map::new();
    for (r, (moves, _)) in running.iter().zip(&counts) {
        eprintln!("vantage cut: {} answer moved {moves} times", r.system.key());
        out.insert(format!("cut_moves_{}", r.system.key()), (*moves).into());
    }
    for r in running {
        r.stop().await;
    }
    Ok(out.into())
}

/// Runs every measurement and prints the JSON line.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let servers = Servers::start().await?;
    let mut out = serde_json::Map::new();
    out.insert(
        "peers_policy".into(),
        format!(
            "interval {} ms, fall {}",
            args.policy.interval.as_millis(),
            args.policy.fall
        )
        .into(),
    );
    out.insert(
        "peers_versions".into(),
        crate::peers_conf::versions().into(),
    );
    let systems: &[System] = if args.sitewarden_only {
        &System::ALL[..1]
    } else {
        &System::ALL
    };
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    for trial in 0..args.trials {
        for (i, system) in systems.iter().enumerate() {
            let s = speed_trial(*system, &servers, args.policy).await?;
            eprintln!("speed trial {}: {} {s:.3} s", trial + 1, system.key());
            samples[i].push(s);
        }
    }
    if args.trials > 0 {
        let ours = rig::summary(&mut samples[0].clone())?;
        for (i, system) in systems.iter().enumerate() {
            let s = rig::summary(&mut samples[i])?;
            let k = system.key();
            out.insert(format!("speed_{k}_min_s"), rig::round(s.min, 3).into());
            out.insert(format!("speed_{k}_median_s"), rig::round(s.p50, 3).into());
            out.insert(format!("speed_{k}_max_s"), rig::round(s.max, 3).into());
            out.insert(
                format!("speed_{k}_median_vs_sitewarden"),
                rig::round(s.p50 / ours.p50, 2).into(),
            );
        }
    }
    if args.false_moves {
        merge(&mut out, blips(&servers, args.policy, systems).await?);
        merge(&mut out, vantage_cut(&servers, args.policy, systems).await?);
    }
    if args.client {
        merge(&mut out, client(&servers, args.policy, systems).await?);
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

fn merge(out: &mut serde_json::Map<String, serde_json::Value>, v: serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        out.extend(m);
    }
}

/// A real recursive resolver (Debian's unbound) with a stub zone for the system's zone.
struct Resolver {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Resolver {
    async fn start(zone: &str, authoritative: SocketAddr) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let addr = rig::free_addr();
        let conf = format!(
            r#"server:
  interface: {ip}@{port}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  verbosity: 0
  num-threads: 1
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  prefetch: no
remote-control:
  control-enable: no
stub-zone:
  name: "{zone}"
  stub-addr: {aip}@{aport}
"#,
            ip = addr.ip(),
            port = addr.port(),
            dir = dir.path().display(),
            aip = authoritative.ip(),
            aport = authoritative.port(),
        );
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf)?;
        let log = std::fs::File::create(dir.path().join("unbound.log"))?;
        let child = Command::new(crate::peers_conf::UNBOUND)
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting unbound (Debian package unbound)")?;
        Ok(Self {
            addr,
            child,
            _dir: dir,
        })
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A client behind unbound: for each system and TTL, seconds from site1's death until the
/// authoritative answer and the client's answer name site2.
async fn client(
    servers: &Servers,
    policy: Policy,
    systems: &[System],
) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    let short = crate::peers_conf::SHORT_TTL;
    let runs = [
        (System::Sitewarden, 60),
        (System::Sitewarden, BUILTIN_TTL),
        (System::Sitewarden, short),
        (System::GdnsdTuned, 60),
        (System::GdnsdTuned, short),
        (System::PdnsTuned, 60),
        (System::PdnsTuned, short),
    ];
    for (system, ttl) in runs.into_iter().filter(|(s, _)| systems.contains(s)) {
        let running = match system {
            System::Sitewarden => start_sitewarden(servers, policy, ttl, false).await?,
            _ => start_peer(system, servers, peer_site1(servers, None), ttl).await?,
        };
        let zone = if system == System::Sitewarden {
            ZONE
        } else {
            PEER_ZONE
        };
        let resolver = Resolver::start(zone, running.dns).await?;
        let (qname, qtype, via) = (running.qname, running.qtype, resolver.addr);
        let client_answer = || async move { classify(&ask(via, qname, qtype, true).await) };
        sitewarden_tests::wait_for(
            "the client to resolve site1",
            Duration::from_secs(30),
            || async move { (client_answer().await == Where::Site1).then_some(()) },
        )
        .await?;
        // The client has been asking for a while: its answer is cached, anywhere in its TTL.
        tokio::time::sleep(Duration::from_secs_f64(
            f64::from(ttl).min(30.0) * rand::random::<f64>(),
        ))
        .await;
        tokio::time::sleep(running.interval.mul_f64(rand::random::<f64>())).await;
        let killed = Instant::now();
        servers.site1(false).await?;
        let (mut authoritative, mut client_at) = (None, None);
        let until = killed + Duration::from_secs(240);
        while (authoritative.is_none() || client_at.is_none()) && Instant::now() < until {
            let asked = Instant::now();
            if authoritative.is_none() && running.answer().await == Where::Site2 {
                authoritative = Some(asked);
            }
            if client_at.is_none() && client_answer().await == Where::Site2 {
                client_at = Some(asked);
            }
            tokio::time::sleep(CLIENT_POLL.saturating_sub(asked.elapsed())).await;
        }
        servers.site1(true).await?;
        resolver.stop().await;
        running.stop().await;
        let (Some(a), Some(c)) = (authoritative, client_at) else {
            bail!("{} at TTL {ttl}: no move within 240 s", system.key());
        };
        let (a, c) = (
            a.duration_since(killed).as_secs_f64(),
            c.duration_since(killed).as_secs_f64(),
        );
        eprintln!(
            "client behind unbound: {} TTL {ttl} s: authoritative {a:.3} s, client {c:.3} s",
            system.key()
        );
        let k = format!("client_{}_ttl{ttl}", system.key());
        out.insert(format!("{k}_authoritative_s"), rig::round(a, 3).into());
        out.insert(format!("{k}_client_s"), rig::round(c, 3).into());
        out.insert(format!("{k}_resolver_cache_s"), rig::round(c - a, 3).into());
    }
    Ok(out.into())
}
