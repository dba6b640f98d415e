//! The built-in authoritative DNS server (`[provider] kind = "builtin"`).
//!
//! The controllers themselves serve a zone delegated to them (e.g. `failover.example.com`) over
//! UDP and TCP. Each managed name answers with its current CNAME target, read from the replicated
//! state in the JetStream KV bucket [`records::BUCKET`] (`sitewarden-dns`): every controller
//! watches the bucket and keeps an in-memory map current ([`records::watch`]), so both controllers
//! answer identically and a change is live the instant the leader commits it to the bucket
//! (through [`crate::provider::builtin::BuiltinProvider`], a true compare-and-set on the key's
//! revision). The zone has a SOA (serial = the bucket revision) and NS records at the apex, with
//! A/AAAA for in-zone nameservers; unknown names get NXDOMAIN, a name that exists asked for a type
//! it does not have gets NODATA (NOERROR, SOA in the authority section); a managed name answers
//! its CNAME (with the namespace's TTL) for every type. Answers are authoritative (AA), never
//! recursive (RA clear; names outside the zone are REFUSED), zone transfers (AXFR/IXFR) are
//! REFUSED, EDNS(0) is answered with a 1,232-byte UDP size (other EDNS versions get BADVERS),
//! and a UDP answer larger than the client accepts is truncated (TC) so the client retries over
//! TCP. Messages are parsed and built with `hickory-proto` ([`answer`], pure and unit-tested) on
//! plain tokio sockets ([`Server`]); malformed packets are answered FORMERR or dropped, never a
//! panic. TCP is bounded per client, by an idle timeout and by a global cap that evicts idle
//! connections first ([`tcp`]), so no client can starve the others; UDP never waits on TCP.

pub mod answer;
pub mod config;
pub mod manage;
pub mod records;
pub mod tcp;
pub mod zone_tool;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_nats::jetstream::kv;
use hickory_proto::rr::Name;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use answer::{Transport, Zone};
pub use records::{BUCKET, Records, StoredRecord, bucket_spec, record_key};
pub use tcp::TcpLimits;

/// Default TTL of the SOA and NS records.
pub const DEFAULT_ZONE_TTL: u32 = 3600;
/// Default negative-caching TTL (SOA MINIMUM): short, so a name created later is seen soon.
pub const DEFAULT_NEGATIVE_TTL: u32 = 60;

/// The built-in server's settings (from `[provider] kind = "builtin"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The delegated zone, e.g. `failover.example.com`.
    pub zone: String,
    /// Where to listen, UDP and TCP on the same address, e.g. `0.0.0.0:53`.
    pub listen: SocketAddr,
    /// The zone's nameservers (its NS records), e.g. `ns1.failover.example.com`.
    pub nameservers: Vec<String>,
    /// The zone contact, e.g. `hostmaster@example.com` (the SOA RNAME).
    pub soa_email: String,
    /// Addresses of in-zone nameservers, answered as A/AAAA (match the glue at the parent).
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
    /// TTL of SOA and NS.
    pub zone_ttl: u32,
    /// Negative-caching TTL.
    pub negative_ttl: u32,
    /// Addresses allowed to transfer the zone (AXFR over TCP); empty: transfers are refused.
    pub allow_transfer: Vec<IpAddr>,
    /// Limits of DNS over TCP: per client, idle timeout, global cap ([`TcpLimits`]).
    pub tcp: TcpLimits,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The zone settings are not usable.
    #[error("built-in DNS: {0}")]
    Config(String),
    /// A socket could not be bound.
    #[error("built-in DNS: cannot listen on {addr} (UDP and TCP): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
}

fn fqdn(what: &str, s: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(s.trim())
        .map_err(|e| DnsError::Config(format!("{what} {s:?} is not a DNS name: {e}")))?;
    if n.is_root() {
        return Err(DnsError::Config(format!("{what} must not be the root")));
    }
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

impl DnsConfig {
    /// Settings with the default TTLs and no nameserver addresses.
    pub fn new(zone: &str, listen: SocketAddr, nameservers: &[&str], soa_email: &str) -> Self {
        Self {
            zone: zone.to_owned(),
            listen,
            nameservers: nameservers.iter().map(|s| (*s).to_owned()).collect(),
            soa_email: soa_email.to_owned(),
            addresses: BTreeMap::new(),
            zone_ttl: DEFAULT_ZONE_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            allow_transfer: Vec::new(),
            tcp: TcpLimits::default(),
        }
    }

    /// Checks the settings and compiles the zone the responder answers from.
    pub fn compile(&self) -> Result<Zone, DnsError> {
        let apex = fqdn("zone", &self.zone)?;
        if self.nameservers.is_empty() {
            return Err(DnsError::Config(
                "give at least one nameserver (one per controller)".into(),
            ));
        }
        let nameservers = self
            .nameservers
            .iter()
            .map(|n| fqdn("nameserver", n))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((local, domain)) = self.soa_email.split_once('@') else {
            return Err(DnsError::Config(format!(
                "soa_email {:?} is not an address like hostmaster@example.com",
                self.soa_email
            )));
        };
        if local.is_empty() || local.contains('.') {
            return Err(DnsError::Config(format!(
                "soa_email {:?}: use a mailbox without dots before the @",
                self.soa_email
            )));
        }
        let rname = fqdn("soa_email", &format!("{local}.{domain}"))?;
        let mut addresses = BTreeMap::new();
        for (name, ips) in &self.addresses {
            let n = fqdn("nameserver address name", name)?;
            if !apex.zone_of(&n) {
                return Err(DnsError::Config(format!(
                    "address for {name:?}: only names inside {} are answered",
                    self.zone
                )));
            }
            addresses.insert(n, ips.clone());
        }
        Ok(Zone {
            apex,
            nameservers,
            rname,
            ttl: self.zone_ttl,
            negative_ttl: self.negative_ttl,
            addresses,
            allow_transfer: self.allow_transfer.clone(),
        })
    }
}

/// A bound server: sockets open, not yet answering.
#[derive(Debug)]
pub struct Server {
    zone: Arc<Zone>,
    udp: UdpSocket,
    tcp: TcpListener,
    tcp_limits: TcpLimits,
    store: kv::Store,
}

impl Server {
    /// Checks `config` and binds UDP and TCP on `config.listen`. With port 0, one free port is
    /// picked for both.
    pub async fn bind(config: &DnsConfig, store: kv::Store) -> Result<Self, DnsError> {
        let zone = Arc::new(config.compile()?);
        let addr = config.listen;
        let bind_err = |source| DnsError::Bind { addr, source };
        let mut attempts = 0;
        let (udp, tcp) = loop {
            attempts += 1;
            let udp = UdpSocket::bind(addr).await.map_err(bind_err)?;
            let port = udp.local_addr().map_err(bind_err)?.port();
            match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if addr.port() == 0 && attempts < 20 => {
                    tracing::debug!("TCP port {port} taken ({e}); trying another");
                }
                Err(e) => return Err(bind_err(e)),
            }
        };
        Ok(Self {
            zone,
            udp,
            tcp,
            tcp_limits: config.tcp,
            store,
        })
    }

    /// The address both sockets listen on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Answers until `shutdown`, keeping the records current from the bucket.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            zone,
            udp,
            tcp,
            tcp_limits,
            store,
        } = self;
        let shared = records::Shared::default();
        let stop = shutdown.child_token();
        let watcher = tokio::spawn(records::watch(store, shared.clone(), stop.clone()));
        let udp_task = tokio::spawn(serve_udp(udp, zone.clone(), shared.clone(), stop.clone()));
        let tcp_task = tokio::spawn(tcp::serve(tcp, zone, shared, tcp_limits, stop.clone()));
        stop.cancelled().await;
        for t in [watcher, udp_task, tcp_task] {
            let _ = t.await;
        }
    }
}

/// Serves the zone in `config` from the bucket `store` until `shutdown`: the entry point for the
/// runtime. `store` is [`records::bucket_spec`] opened with [`crate::ha::kv::ensure_bucket`].
pub async fn serve(
    config: DnsConfig,
    store: kv::Store,
    shutdown: CancellationToken,
) -> Result<(), DnsError> {
    let server = Server::bind(&config, store).await?;
    tracing::info!(zone = %config.zone, addr = %config.listen, "serving the built-in DNS zone (UDP and TCP)");
    server.run(shutdown).await;
    Ok(())
}

fn answer(
    zone: &Zone,
    shared: &records::Shared,
    bytes: &[u8],
    t: Transport,
    peer: IpAddr,
) -> Option<Vec<u8>> {
    records::snapshot(shared, |r| {
        answer::respond_to(zone, r, bytes, t, Some(peer))
    })
}

async fn serve_udp(
    socket: UdpSocket,
    zone: Arc<Zone>,
    shared: records::Shared,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = tokio::select! {
            () = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems; keep serving.
                    tracing::debug!("DNS UDP receive: {e}");
                    continue;
                }
            },
        };
        let Some(request) = buf.get(..len) else {
            continue;
        };
        if let Some(out) = answer(&zone, &shared, request, Transport::Udp, peer.ip())
            && let Err(e) = socket.send_to(&out, peer).await
        {
            tracing::debug!(%peer, "DNS UDP send: {e}");
        }
    }
}
