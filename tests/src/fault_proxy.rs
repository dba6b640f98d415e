//! A TCP proxy that injects network faults between two components, for partition tests.
//!
//! The lab has no `tc netem`: a component that should be cut off from another connects through
//! a [`FaultProxy`] instead of directly. [`FaultProxy::set`] changes the [`Fault`] for new *and*
//! live connections at once: `Blackhole` swallows bytes in both directions (like a dropped
//! link; nothing errors until the peers' own timeouts fire), `Reset` closes every connection
//! with a TCP RST and refuses new ones, `Delay` adds latency to every chunk, `DropReplies` is
//! one-way loss (requests reach the upstream, answers vanish), `Pass` heals.
//! Bytes swallowed by a blackhole are lost, so a protocol stream may be corrupt after healing;
//! NATS and HTTP clients notice and reconnect.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward everything.
    #[default]
    Pass,
    /// Accept connections, read and discard everything in both directions, forward nothing.
    Blackhole,
    /// Close every connection with a reset, and reset new ones at once.
    Reset,
    /// Forward everything, each chunk after this delay.
    Delay(Duration),
    /// One-way loss: forward what clients send, discard every reply. Requests land upstream,
    /// their answers are lost (the classic "did my write happen?").
    DropReplies,
}

/// A running proxy on a random loopback port. Closes everything when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// Where traffic goes.
    upstream: SocketAddr,
    /// The current fault, watched by every connection.
    fault: watch::Sender<Fault>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Cancelled on drop.
    shutdown: CancellationToken,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (random port) and forwards to `upstream`, starting with
    /// [`Fault::Pass`].
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        Self::start_at(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), upstream).await
    }

    /// Like [`FaultProxy::start`], listening on `bind` (e.g. `127.0.0.13:18080`, for a checker
    /// that takes an address and one port for every server).
    pub async fn start_at(bind: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding the fault proxy on {bind}"))?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            upstream,
            fault.clone(),
            accepted.clone(),
            shutdown.clone(),
        ));
        Ok(FaultProxy {
            addr,
            upstream,
            fault,
            accepted,
            shutdown,
        })
    }

    /// The address clients connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxied address.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the fault for new and live connections.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    accepted: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::debug!("fault proxy accept: {e}");
                    tokio::time::sleep(crate::POLL_INTERVAL).await;
                    continue;
                }
            },
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(connection(
            client,
            upstream,
            fault.subscribe(),
            shutdown.child_token(),
        ));
    }
}

async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    stop: CancellationToken,
) {
    // While blackholed, swallow what the client sends and do not reach the upstream yet.
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let current = *fault.borrow_and_update();
        match current {
            Fault::Reset => return reset(&client),
            Fault::Blackhole => {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = fault.changed() => {}
                    r = client.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
                }
            }
            Fault::Pass | Fault::Delay(_) | Fault::DropReplies => break,
        }
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return reset(&client);
    };
    let reset_seen = CancellationToken::new();
    {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let link = stop.child_token();
        tokio::join!(
            pump(
                cr,
                sw,
                Direction::Request,
                fault.clone(),
                &link,
                &reset_seen
            ),
            pump(sr, cw, Direction::Reply, fault, &link, &reset_seen),
        );
    }
    if reset_seen.is_cancelled() {
        reset(&client);
        reset(&server);
    }
}

/// Closes `s` with an RST instead of a FIN once dropped.
fn reset(s: &TcpStream) {
    s.set_zero_linger().ok();
}

/// Which way a [`pump`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client → upstream.
    Request,
    /// Upstream → client.
    Reply,
}

/// Copies `from` → `to` under the current fault until EOF, an error, a reset or `link` ends.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    mut fault: watch::Receiver<Fault>,
    link: &CancellationToken,
    reset_seen: &CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            _ = link.cancelled() => return,
            r = fault.wait_for(|f| *f == Fault::Reset) => match r {
                Ok(_) => None,
                // The proxy is gone; `link` is being cancelled too.
                Err(_) => return,
            },
            r = from.read(&mut buf) => Some(r),
        };
        let n = match read {
            None => {
                reset_seen.cancel();
                link.cancel();
                return;
            }
            Some(Ok(0)) => {
                // Half-close: pass the EOF on and let the other direction finish.
                to.shutdown().await.ok();
                return;
            }
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                link.cancel();
                return;
            }
        };
        let current = *fault.borrow_and_update();
        let delay = match current {
            Fault::Blackhole => continue,
            Fault::DropReplies if direction == Direction::Reply => continue,
            Fault::DropReplies => None,
            Fault::Reset => {
                reset_seen.cancel();
                link.cancel();
                return;
            }
            Fault::Pass => None,
            Fault::Delay(d) => Some(d),
        };
        let forward = async {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            to.write_all(&buf[..n]).await
        };
        tokio::select! {
            _ = link.cancelled() => return,
            r = forward => if r.is_err() {
                link.cancel();
                return;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    tokio::io::copy(&mut r, &mut w).await.ok();
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut buf = vec![0u8; msg.len()];
        match tokio::time::timeout(within, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            _ => None,
        }
    }

    #[tokio::test]
    async fn pass_and_blackhole_apply_to_live_and_new_connections() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
        let ok = Duration::from_secs(5);
        let stalled = Duration::from_millis(300);
        assert_eq!(round_trip(&mut live, b"ping", ok).await.unwrap(), b"ping");

        proxy.set(Fault::Blackhole);
        assert_eq!(round_trip(&mut live, b"lost", stalled).await, None);
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut fresh, b"lost", stalled).await, None);

        proxy.set(Fault::Pass);
        let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut healed, b"back", ok).await.unwrap(), b"back");
        assert_eq!(proxy.accepted(), 3);
    }

    #[tokio::test]
    async fn reset_closes_live_connections_and_refuses_new_ones() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            round_trip(&mut live, b"x", Duration::from_secs(5))
                .await
                .is_some()
        );
        proxy.set(Fault::Reset);
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), live.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");

        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), fresh.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");

        proxy.set(Fault::Pass);
        let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            round_trip(&mut healed, b"y", Duration::from_secs(5))
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn drop_replies_lets_requests_land_and_loses_the_answers() {
        // An upstream that counts what it received and answers each byte.
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let upstream = l.local_addr().unwrap();
        let landed = Arc::new(AtomicUsize::new(0));
        let count = landed.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        count.fetch_add(n, Ordering::SeqCst);
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = FaultProxy::start(upstream).await.unwrap();
        proxy.set(Fault::DropReplies);
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut s, b"write", Duration::from_millis(300)).await,
            None,
            "the answer is lost"
        );
        crate::wait_for("the request upstream", Duration::from_secs(5), || async {
            (landed.load(Ordering::SeqCst) == 5).then_some(())
        })
        .await
        .unwrap();
        proxy.set(Fault::Pass);
        let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut healed, b"again", Duration::from_secs(5))
                .await
                .unwrap(),
            b"again"
        );
    }

    #[tokio::test]
    async fn delay_adds_latency() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        proxy.set(Fault::Delay(Duration::from_millis(150)));
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let t0 = tokio::time::Instant::now();
        assert!(
            round_trip(&mut s, b"slow", Duration::from_secs(5))
                .await
                .is_some()
        );
        // One delay each way.
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn nats_messages_stop_flowing_through_a_blackhole() {
        use futures::StreamExt;
        let nats = crate::nats_server::NatsServer::start().await.unwrap();
        let proxy = FaultProxy::start(nats.addr()).await.unwrap();
        let client = async_nats::connect(format!("nats://{}", proxy.addr()))
            .await
            .unwrap();
        let mut sub = client.subscribe("p").await.unwrap();
        client.publish("p", "1".into()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
        assert!(matches!(got, Ok(Some(_))));

        proxy.set(Fault::Blackhole);
        client.publish("p", "2".into()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(got.is_err(), "nothing crosses a blackhole");
    }
}
