//! DNS over TCP for the built-in server, bounded so that no client can take it from the others.
//!
//! TCP connections cost the server a file handle and a task each, and a client can hold one open
//! for as long as it keeps asking. Three limits ([`TcpLimits`]) keep one client — or a crowd —
//! from starving everyone else:
//!
//! - **per client**: at most `per_client` connections from one address (an IPv6 client counts
//!   by its /64, the block one host usually owns); a connection over the cap is closed at once,
//!   before anything is read, so the client falls back to its other connections or UDP;
//! - **idle**: a connection with no complete query for `idle` is closed (RFC 7766 §6.2.3), and
//!   a query or an answer that does not finish within `idle` closes it too (a slow sender or a
//!   client that never reads its answers);
//! - **global**: at most `max_connections` at once. A new connection at the cap closes the
//!   connection that has been idle longest (RFC 7766 lets a server close idle connections under
//!   load), so clients that hold connections open cannot lock newcomers out; only when every
//!   connection is in the middle of a query is the newcomer closed.
//!
//! UDP is served by its own task and socket and never waits on any of this. Accepting never
//! stops: a full server closes connections, it does not leave them queued in the kernel.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::answer::{Transport, Zone};
use super::records;

/// Default cap on TCP connections served at once.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// Default cap on TCP connections from one client address (IPv6: one /64).
pub const MAX_TCP_PER_CLIENT: usize = 8;
/// Default idle timeout: a connection without a complete query for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);

/// The limits of DNS over TCP (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections served at once; at the cap the longest-idle connection makes room.
    pub max_connections: usize,
    /// Connections from one client address (IPv6: one /64); more are closed at once.
    pub per_client: usize,
    /// How long a connection may wait for (or take to send) a query, or take to read an answer.
    pub idle: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: MAX_TCP_CONNECTIONS,
            per_client: MAX_TCP_PER_CLIENT,
            idle: TCP_IDLE,
        }
    }
}

/// Whom a connection is counted against: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(IpAddr);

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

/// One open connection, as the admission check sees it.
#[derive(Debug)]
struct Open {
    client: ClientKey,
    /// When the connection last finished an answer (or opened): the eviction order.
    idle_since: Instant,
    /// Whether a query is being read or answered right now (never evicted then).
    busy: bool,
    /// Cancelled to close the connection (eviction).
    close: CancellationToken,
}

/// Every open connection, and how many each client holds.
#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Open>,
    per_client: HashMap<ClientKey, usize>,
}

/// Why a new connection was not admitted (logged at debug; counted by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// The client already holds `per_client` connections.
    ClientCap,
    /// The server is at `max_connections` and every connection is mid-query.
    Full,
}

/// The shared connection table with the limits that govern it.
#[derive(Debug, Clone)]
struct Admission {
    limits: TcpLimits,
    table: Arc<Mutex<Table>>,
}

impl Admission {
    fn new(limits: TcpLimits) -> Self {
        Self {
            limits,
            table: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain counters behind; keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip` (evicting the longest-idle one when full) or says why not.
    fn admit(&self, ip: IpAddr, now: Instant) -> Result<(u64, CancellationToken), Refused> {
        let client = ClientKey::of(ip);
        let mut t = self.lock();
        if t.per_client.get(&client).copied().unwrap_or(0) >= self.limits.per_client {
            return Err(Refused::ClientCap);
        }
        if t.open.len() >= self.limits.max_connections {
            let victim = t
                .open
                .iter()
                .filter(|(_, o)| !o.busy)
                .min_by_key(|(_, o)| o.idle_since)
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Err(Refused::Full);
            };
            if let Some(o) = Self::forget(&mut t, victim) {
                o.close.cancel();
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let close = CancellationToken::new();
        t.open.insert(
            id,
            Open {
                client,
                idle_since: now,
                busy: false,
                close: close.clone(),
            },
        );
        *t.per_client.entry(client).or_insert(0) += 1;
        Ok((id, close))
    }

    /// Marks connection `id` busy (a query is arriving) or idle (its answer was sent).
    fn set_busy(&self, id: u64, busy: bool) {
        let mut t = self.lock();
        if let Some(o) = t.open.get_mut(&id) {
            o.busy = busy;
            if !busy {
                o.idle_since = Instant::now();
            }
        }
    }

    /// Removes connection `id` from the table (closed or evicted).
    fn release(&self, id: u64) {
        let mut t = self.lock();
        Self::forget(&mut t, id);
    }

    fn forget(t: &mut Table, id: u64) -> Option<Open> {
        let o = t.open.remove(&id)?;
        if let Some(n) = t.per_client.get_mut(&o.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_client.remove(&o.client);
            }
        }
        Some(o)
    }
}

/// Accepts and answers TCP connections on `listener` within `limits` until `stop`.
pub(super) async fn serve(
    listener: TcpListener,
    zone: Arc<Zone>,
    shared: records::Shared,
    limits: TcpLimits,
    stop: CancellationToken,
) {
    let admission = Admission::new(limits);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file handles (EMFILE) lands here: back off a little and go on.
                    tracing::debug!("DNS TCP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (id, close) = match admission.admit(peer.ip(), Instant::now()) {
            Ok(x) => x,
            Err(why) => {
                tracing::debug!(%peer, ?why, "DNS TCP connection closed at once");
                drop(stream);
                continue;
            }
        };
        let (zone, shared, stop, admission) = (
            zone.clone(),
            shared.clone(),
            stop.clone(),
            admission.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = close.cancelled() => {
                    tracing::debug!(%peer, "DNS TCP connection closed to make room");
                }
                r = connection(stream, &zone, &shared, peer, id, &admission) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "DNS TCP connection: {e}");
                    }
                }
            }
            admission.release(id);
        });
    }
}

/// Answers length-prefixed messages on one connection until the client closes it, goes idle,
/// is too slow, or sends something we drop.
async fn connection(
    mut stream: TcpStream,
    zone: &Zone,
    shared: &records::Shared,
    peer: SocketAddr,
    id: u64,
    admission: &Admission,
) -> io::Result<()> {
    let idle = admission.limits.idle;
    let slow = |what: &'static str| io::Error::new(io::ErrorKind::TimedOut, what);
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        admission.set_busy(id, true);
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(idle, stream.read_exact(&mut request))
            .await
            .map_err(|_| slow("query not completed in time"))??;
        let Some(out) = super::answer(zone, shared, &request, Transport::Tcp, peer.ip()) else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(out.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        tokio::time::timeout(idle, stream.write_all(&framed))
            .await
            .map_err(|_| slow("answer not read in time"))??;
        admission.set_busy(id, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_client_is_capped_and_others_still_get_in() {
        let a = Admission::new(TcpLimits {
            max_connections: 10,
            per_client: 3,
            idle: TCP_IDLE,
        });
        let now = Instant::now();
        for _ in 0..3 {
            a.admit(ip("192.0.2.1"), now).unwrap();
        }
        assert_eq!(
            a.admit(ip("192.0.2.1"), now).unwrap_err(),
            Refused::ClientCap
        );
        a.admit(ip("192.0.2.2"), now).unwrap();
        // An IPv6 client counts by its /64; an IPv4-mapped address as the IPv4 one.
        for host in 1..=3 {
            a.admit(ip(&format!("2001:db8::{host}")), now).unwrap();
        }
        assert_eq!(
            a.admit(ip("2001:db8::ffff"), now).unwrap_err(),
            Refused::ClientCap
        );
        assert_eq!(
            a.admit(ip("::ffff:192.0.2.1"), now).unwrap_err(),
            Refused::ClientCap
        );
    }

    #[test]
    fn at_the_global_cap_the_longest_idle_connection_makes_room() {
        let a = Admission::new(TcpLimits {
            max_connections: 2,
            per_client: 2,
            idle: TCP_IDLE,
        });
        let t0 = Instant::now();
        let (old, old_close) = a.admit(ip("192.0.2.1"), t0).unwrap();
        let (busy, busy_close) = a
            .admit(ip("192.0.2.2"), t0 + Duration::from_secs(1))
            .unwrap();
        a.set_busy(busy, true);
        let (_, new_close) = a
            .admit(ip("192.0.2.3"), t0 + Duration::from_secs(2))
            .unwrap();
        assert!(old_close.is_cancelled(), "the idle one was closed");
        assert!(!busy_close.is_cancelled() && !new_close.is_cancelled());
        a.release(old);
        // The evicted client's count was given back: it may connect again.
        assert_eq!(
            a.lock().per_client.get(&ClientKey::of(ip("192.0.2.1"))),
            None
        );
        // Every remaining connection busy: the newcomer is refused, nobody is evicted.
        for o in a.lock().open.values_mut() {
            o.busy = true;
        }
        assert_eq!(
            a.admit(ip("192.0.2.4"), t0 + Duration::from_secs(3))
                .unwrap_err(),
            Refused::Full
        );
    }
}
