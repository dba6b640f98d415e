//! The HTTP/1 accept loop every sitewarden listener runs (controller API, dashboard, /metrics,
//! Slack; agent /metrics and database-copy pushes), built so that clients nobody authenticated
//! cannot hold the process's resources.
//!
//! - **Header-read timeout**: a connection that has not sent a whole request head within
//!   [`Limits::header_read_timeout`] is closed, for the first request and for every keep-alive
//!   one after it (hyper's own timeout, driven by tokio's timer).
//! - **Connection cap**: at most [`Limits::max_connections`] connections are open at once. When
//!   a new one arrives at the cap, a connection with no request in flight (an idle keep-alive,
//!   or one still dribbling its headers) is closed to make room: the oldest of the client that
//!   holds the most such connections. If every connection is busy with a request, the new one
//!   waits [`RELEASE_WAIT`] for room, then is closed. A legitimate client, which holds a
//!   connection or two and sends its request at once, is served while an attacker's half-open
//!   connections rotate.
//!   A connection told to close counts until its task has let go of its handle, and the listener
//!   never holds more than [`Limits::hard_ceiling`] (the cap and a quarter).
//! - **Per-client cap**: one client address holds at most [`Limits::max_per_client`] connections;
//!   beyond it, new connections from that address are closed at once.
//!
//! The cap is sized from the process's file-handle limit (`RLIMIT_NOFILE`) read at start, see
//! [`Limits::from_file_handles`], so HTTP cannot take the handles the NATS connection, the DNS
//! sockets and the providers need. Whole-request deadlines and authentication belong to the
//! routes (each binary adds them as a layer); this loop only bounds connections.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a client may take to send a request head (request line and headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The file-handle limit assumed when `/proc/self/limits` cannot be read (systemd's default).
pub const ASSUMED_FILE_HANDLES: u64 = 1024;
/// How long a newcomer waits, at the ceiling, for a connection told to close to let go of its
/// handle before it is refused. The accept loop waits too, so further clients queue in the
/// kernel's backlog (which holds no file handle) rather than being refused.
pub const RELEASE_WAIT: Duration = Duration::from_millis(250);
/// Fewest connections the cap allows, however low the file-handle limit.
pub const MIN_CONNECTIONS: usize = 16;
/// Most connections the cap allows, however high the file-handle limit.
pub const MAX_CONNECTIONS: usize = 4096;

/// Bounds on the connections one listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most, all clients together.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_per_client: usize,
    /// Longest a request head may take to arrive.
    pub header_read_timeout: Duration,
}

impl Limits {
    /// The limits for a process allowed `file_handles` open files: HTTP gets a quarter of them
    /// (at least [`MIN_CONNECTIONS`], at most [`MAX_CONNECTIONS`]) and one client an eighth of
    /// that (between 4 and 64). The other three quarters stay for the bus, DNS (including its
    /// TCP connections), providers, webhooks and the runtime itself. At systemd's default of
    /// 1,024 that is 256 connections and 32 per client; at the units' `LimitNOFILE=65536`, 4,096
    /// and 64.
    pub fn from_file_handles(file_handles: u64) -> Self {
        let quarter = usize::try_from(file_handles / 4).unwrap_or(usize::MAX);
        let max_connections = quarter.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS);
        Limits {
            max_connections,
            max_per_client: (max_connections / 8).clamp(4, 64),
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }

    /// Handles the listener holds at most: the cap plus connections told to close (to make
    /// room) whose tasks have not yet let go of them, a quarter of the cap at most.
    pub fn hard_ceiling(&self) -> usize {
        self.max_connections + self.max_connections / 4
    }

    /// [`Limits::from_file_handles`] with this process's soft `RLIMIT_NOFILE`
    /// ([`ASSUMED_FILE_HANDLES`] when it cannot be read). Returns the limit it used too.
    pub fn for_this_process() -> (Self, u64) {
        let handles = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| open_files_soft_limit(&text))
            .unwrap_or(ASSUMED_FILE_HANDLES);
        (Limits::from_file_handles(handles), handles)
    }
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text; `unlimited` reads as `u64::MAX`.
pub fn open_files_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// One open connection, as the cap sees it.
struct Open {
    /// Its client's address.
    client: IpAddr,
    /// Requests being answered on it; 0 means it may be closed to make room.
    busy: usize,
    /// Cancelled to close it; its handle counts until its task has let go of it.
    close: CancellationToken,
}

#[derive(Default)]
struct Table {
    /// Next connection id; ids grow, so the smallest is the oldest.
    next: u64,
    /// Every open connection by id.
    open: BTreeMap<u64, Open>,
    /// Open connections per client address.
    per_client: HashMap<IpAddr, usize>,
    /// How many of `open` were told to close and have not let go yet.
    closing: usize,
    /// Whether the cap was hit since the last warning, so a flood is logged once, not per
    /// connection.
    saturated: bool,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Its client already holds [`Limits::max_per_client`] connections.
    PerClient,
    /// The cap is reached and every connection has a request in flight.
    Full,
}

struct Registry {
    limits: Limits,
    table: Mutex<Table>,
    /// Woken whenever a connection lets go of its handle.
    released: tokio::sync::Notify,
}

impl Registry {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere cannot leave the table half-written (every update is one step).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(&self, client: IpAddr) -> Result<(u64, CancellationToken), Refusal> {
        let mut t = self.table();
        if t.per_client.get(&client).copied().unwrap_or(0) >= self.limits.max_per_client {
            return Err(Refusal::PerClient);
        }
        // Connections told to close still hold their handle until their task lets go; they
        // count until then, within a hard ceiling a quarter above the cap.
        let live = t.open.len().saturating_sub(t.closing);
        if live >= self.limits.max_connections {
            if !t.saturated {
                t.saturated = true;
                tracing::warn!(
                    cap = self.limits.max_connections,
                    "HTTP connection cap reached: closing idle connections to make room"
                );
            }
            match Self::victim(&t) {
                Some(o) if t.open.len() < self.limits.hard_ceiling() => {
                    o.close.cancel();
                    t.closing += 1;
                }
                _ => return Err(Refusal::Full),
            }
        } else if live < self.limits.max_connections / 2 {
            t.saturated = false;
        }
        let id = t.next;
        t.next += 1;
        let close = CancellationToken::new();
        t.open.insert(
            id,
            Open {
                client,
                busy: 0,
                close: close.clone(),
            },
        );
        *t.per_client.entry(client).or_default() += 1;
        Ok((id, close))
    }

    /// The connection to close to make room: the oldest idle one of the client holding the
    /// most idle connections. A client with a few connections (a browser, a scraper, the CLI)
    /// keeps them while anyone holds more; an attacker's connections go first.
    fn victim(t: &Table) -> Option<&Open> {
        // Per client: idle connections and the oldest of them (ids grow with age).
        let mut idle: HashMap<IpAddr, (usize, &Open)> = HashMap::new();
        for o in t.open.values() {
            if o.busy == 0 && !o.close.is_cancelled() {
                idle.entry(o.client).or_insert((0, o)).0 += 1;
            }
        }
        idle.into_values().max_by_key(|(n, _)| *n).map(|(_, o)| o)
    }

    /// Removes `id` once its task has let go of it.
    fn forget(t: &mut Table, id: u64) {
        let Some(o) = t.open.remove(&id) else {
            return;
        };
        if o.close.is_cancelled() {
            t.closing = t.closing.saturating_sub(1);
        }
        if let Some(n) = t.per_client.get_mut(&o.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_client.remove(&o.client);
            }
        }
    }

    fn busy(&self, id: u64, start: bool) {
        let mut t = self.table();
        if let Some(o) = t.open.get_mut(&id) {
            o.busy = if start {
                o.busy + 1
            } else {
                o.busy.saturating_sub(1)
            };
        }
    }
}

/// Frees a connection's place when its task ends, however it ends.
struct Admitted {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        Registry::forget(&mut self.registry.table(), self.id);
        self.registry.released.notify_waiters();
    }
}

/// Marks a request in flight on its connection while alive.
struct InFlight {
    registry: Arc<Registry>,
    id: u64,
}

impl InFlight {
    fn start(registry: Arc<Registry>, id: u64) -> Self {
        registry.busy(id, true);
        InFlight { registry, id }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.registry.busy(self.id, false);
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown`, then lets requests in flight
/// finish (their routes' deadlines bound that) and returns. Handlers can read the client's
/// address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry {
        limits,
        table: Mutex::default(),
        released: tokio::sync::Notify::new(),
    });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file handles (EMFILE) or a connection reset before accept: wait a
                    // moment rather than spin, and keep serving.
                    tracing::warn!("HTTP accept failed: {e}; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let client = peer.ip().to_canonical();
        let released = registry.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        let mut admission = registry.admit(client);
        if matches!(admission, Err(Refusal::Full)) {
            let _ = tokio::time::timeout(RELEASE_WAIT, released).await;
            admission = registry.admit(client);
        }
        let (id, close) = match admission {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::debug!(%peer, ?refusal, "HTTP connection refused");
                drop(stream);
                continue;
            }
        };
        let admitted = Admitted {
            registry: registry.clone(),
            id,
        };
        connections.spawn(connection(
            stream,
            peer,
            app.clone(),
            admitted,
            close,
            shutdown.clone(),
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    admitted: Admitted,
    close: CancellationToken,
    shutdown: CancellationToken,
) {
    let registry = admitted.registry.clone();
    let id = admitted.id;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(registry.clone(), id);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(req.map(Body::new)).await;
            drop(in_flight);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(admitted.registry.limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let done: Result<(), hyper::Error> = tokio::select! {
        r = conn.as_mut() => r,
        _ = close.cancelled() => Ok(()),
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = close.cancelled() => Ok(()),
            }
        }
    };
    if let Err(e) = done {
        tracing::debug!(%peer, "HTTP connection ended: {e}");
    }
    drop(admitted);
}

/// Keeps the compiler honest about the service's error type: routers never fail.
const _: fn() = || {
    fn infallible<S: tower::Service<hyper::Request<Body>, Error = Infallible>>() {}
    infallible::<Router>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_quarter_of_the_file_handles_within_bounds() {
        let l = Limits::from_file_handles(1024);
        assert_eq!((l.max_connections, l.max_per_client), (256, 32));
        let l = Limits::from_file_handles(256);
        assert_eq!((l.max_connections, l.max_per_client), (64, 8));
        let l = Limits::from_file_handles(65536);
        assert_eq!((l.max_connections, l.max_per_client), (4096, 64));
        let l = Limits::from_file_handles(10);
        assert_eq!((l.max_connections, l.max_per_client), (16, 4));
        let l = Limits::from_file_handles(u64::MAX);
        assert_eq!(l.max_connections, MAX_CONNECTIONS);
    }

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63459                63459                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_soft_limit(text), Some(1024));
        let text = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_soft_limit(text), Some(u64::MAX));
        assert_eq!(open_files_soft_limit("nothing here"), None);
        assert!(Limits::for_this_process().1 > 0);
    }

    fn registry(max: usize, per_client: usize) -> Registry {
        Registry {
            limits: Limits {
                max_connections: max,
                max_per_client: per_client,
                header_read_timeout: HEADER_READ_TIMEOUT,
            },
            table: Mutex::default(),
            released: tokio::sync::Notify::new(),
        }
    }

    #[test]
    fn one_client_is_held_to_its_share() {
        let r = registry(10, 2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 1].into();
        assert!(r.admit(a).is_ok());
        let (second, _) = r.admit(a).unwrap();
        assert_eq!(r.admit(a).err(), Some(Refusal::PerClient));
        assert!(r.admit(b).is_ok(), "another client is not affected");
        Registry::forget(&mut r.table(), second);
        assert!(r.admit(a).is_ok(), "a closed connection frees its place");
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let r = registry(4, 4);
        let c: IpAddr = [127, 0, 0, 2].into();
        let (first, first_close) = r.admit(c).unwrap();
        let (second, second_close) = r.admit(c).unwrap();
        let (third, _) = r.admit(c).unwrap();
        let (fourth, _) = r.admit(c).unwrap();
        r.busy(first, true);
        let other: IpAddr = [127, 0, 0, 1].into();
        let (fifth, _) = r.admit(other).unwrap();
        assert!(
            !first_close.is_cancelled(),
            "a connection with a request in flight stays"
        );
        assert!(
            second_close.is_cancelled(),
            "the oldest idle one was told to close"
        );
        r.busy(third, true);
        r.busy(fourth, true);
        r.busy(fifth, true);
        assert_eq!(
            r.admit(other).err(),
            Some(Refusal::Full),
            "all busy: refused"
        );
        Registry::forget(&mut r.table(), second);
        r.busy(fifth, false);
        assert!(r.admit(other).is_ok(), "the closed one let go: room again");
    }

    #[test]
    fn the_client_holding_the_most_idle_connections_makes_room_first() {
        let r = registry(8, 8);
        let scraper: IpAddr = [127, 0, 0, 1].into();
        let (attacker, newcomer): (IpAddr, IpAddr) =
            ([127, 0, 0, 9].into(), [127, 0, 0, 10].into());
        let (_, scrapers_close) = r.admit(scraper).unwrap();
        let closes: Vec<_> = (0..5).map(|_| r.admit(attacker).unwrap().1).collect();
        for _ in 0..4 {
            r.admit(newcomer).unwrap();
        }
        assert!(
            !scrapers_close.is_cancelled(),
            "the oldest, but its client holds one"
        );
        assert_eq!(closes.iter().filter(|c| c.is_cancelled()).count(), 2);
    }

    #[test]
    fn connections_told_to_close_count_until_they_let_go() {
        let r = registry(4, 8);
        let c: IpAddr = [127, 0, 0, 2].into();
        for _ in 0..4 {
            r.admit(c).unwrap();
        }
        // Each newcomer at the cap closes an idle one; the ones closing still hold handles,
        // so at the ceiling (4 + 1) newcomers are refused until they let go.
        assert!(r.admit(c).is_ok());
        assert_eq!(r.admit(c).err(), Some(Refusal::Full));
        assert_eq!(r.table().open.len(), r.limits.hard_ceiling());
    }
}
