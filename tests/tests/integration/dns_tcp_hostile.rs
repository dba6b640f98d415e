//! DNS over TCP under hostile load, against the built-in server with its records in a real
//! nats-server: one client holding far more connections than its cap, and a crowd of clients
//! filling the global cap, must not keep another client's TCP query or anyone's UDP query from
//! an answer; idle connections are closed by the server.
//!
//! Clients get distinct source addresses on loopback (127.0.0.1, 127.0.0.2, …: Linux routes all
//! of 127/8 to `lo`), so the per-client cap sees them as different hosts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use async_nats::jetstream;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use sitewarden_controller::dns::{self, DnsConfig, Server, TcpLimits};
use sitewarden_controller::ha::kv::ensure_bucket;
use sitewarden_controller::provider::builtin::BuiltinProvider;
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::{DEADLINE, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const ZONE: &str = "failover.example.com";
const MAIL: &str = "mail.failover.example.com";
/// How long a test client waits for one answer.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
    m.to_vec().expect("encode")
}

/// A server on a random loopback port with `limits`, `MAIL` answering; ready when this returns.
async fn start(nats: &NatsServer, limits: TcpLimits, stop: &CancellationToken) -> SocketAddr {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let store = ensure_bucket(&jetstream::new(client), dns::bucket_spec(1))
        .await
        .expect("DNS bucket");
    BuiltinProvider::new(store.clone())
        .create(MAIL, "mail-site1.example.com", 30)
        .await
        .expect("create record");
    let mut config = DnsConfig::new(
        ZONE,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        &["ns1.failover.example.com"],
        "hostmaster@example.com",
    );
    config.tcp = limits;
    let server = Server::bind(&config, store).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    tokio::spawn(server.run(stop.clone()));
    wait_for("the DNS server to load", DEADLINE, || async {
        let m = udp(addr).await?;
        (m.metadata.response_code == ResponseCode::NoError).then_some(())
    })
    .await
    .expect("server ready");
    addr
}

/// One UDP query for `MAIL`.
async fn udp(addr: SocketAddr) -> Option<Message> {
    let s = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    s.send_to(&query(MAIL, RecordType::A), addr).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(ANSWER_WAIT, s.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::from_vec(buf.get(..n)?).ok()
}

/// A TCP connection to `addr` from source address `from`.
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    s.connect(addr).await
}

/// Sends one query for `MAIL` on `s` and reads the answer, or `None` if the server closed the
/// connection or did not answer in time.
async fn ask(s: &mut TcpStream) -> Option<Message> {
    let q = query(MAIL, RecordType::A);
    let len = u16::try_from(q.len()).ok()?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.ok()?;
    let read = async {
        let mut l = [0u8; 2];
        s.read_exact(&mut l).await.ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
        s.read_exact(&mut buf).await.ok()?;
        Message::from_vec(&buf).ok()
    };
    tokio::time::timeout(ANSWER_WAIT, read).await.ok()?
}

/// Whether the server has closed `s` (EOF or reset); waits at most a moment.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
    }
}

/// Opens `n` connections from `from`, asks once on each, and returns the connections that got
/// an answer (still open) and how many did not.
async fn hold(from: Ipv4Addr, addr: SocketAddr, n: usize) -> (Vec<TcpStream>, usize) {
    let tries = (0..n).map(|_| async move {
        let mut s = connect_from(from, addr).await.ok()?;
        ask(&mut s).await.map(|_| s)
    });
    let results = futures::future::join_all(tries).await;
    let refused = results.iter().filter(|r| r.is_none()).count();
    (results.into_iter().flatten().collect(), refused)
}

fn cname_answered(m: &Message) -> bool {
    m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holding_140_connections_does_not_starve_other_tcp_or_udp_clients() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let nats = NatsServer::start().await.expect("nats-server");
    let stop = CancellationToken::new();
    let limits = TcpLimits::default();
    let addr = start(&nats, limits, &stop).await;

    // The attack from the issue: one host opens 140 connections and asks on each.
    let attacker = Ipv4Addr::new(127, 0, 0, 1);
    let (mut held, refused) = hold(attacker, addr, 140).await;
    assert_eq!(
        held.len(),
        limits.per_client,
        "exactly the per-client cap is served"
    );
    assert_eq!(refused, 140 - limits.per_client);

    // While the attacker holds its connections, another host's TCP query is answered at once,
    // and so is a UDP query from the attacker's own address.
    let started = Instant::now();
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr)
        .await
        .expect("connect");
    let answer = ask(&mut other).await.expect("the other client is answered");
    let took = started.elapsed();
    assert!(cname_answered(&answer), "{answer:?}");
    assert!(took < Duration::from_secs(1), "answered in {took:?}");
    println!("other client's TCP answer while the attacker holds its cap: {took:?}");
    let u = udp(addr).await.expect("UDP answered");
    assert!(cname_answered(&u), "{u:?}");

    // The attacker's admitted connections still work (the cap refuses, it does not punish).
    for s in &mut held {
        assert!(
            ask(s).await.is_some(),
            "an admitted connection keeps working"
        );
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_at_the_global_cap_gives_way_to_a_newcomer_and_idle_connections_close() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let nats = NatsServer::start().await.expect("nats-server");
    let stop = CancellationToken::new();
    let limits = TcpLimits {
        max_connections: 16,
        per_client: 4,
        idle: Duration::from_secs(2),
    };
    let addr = start(&nats, limits, &stop).await;

    // Four hosts at their per-client cap fill the server.
    let mut crowd = Vec::new();
    for host in 10..14 {
        let (held, refused) = hold(Ipv4Addr::new(127, 0, 0, host), addr, 6).await;
        assert_eq!((held.len(), refused), (4, 2), "host 127.0.0.{host}");
        crowd.extend(held);
    }
    assert_eq!(crowd.len(), limits.max_connections);

    // A newcomer is still answered: the longest-idle connection made room.
    let mut newcomer = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr)
        .await
        .expect("connect");
    let answer = ask(&mut newcomer).await.expect("the newcomer is answered");
    assert!(cname_answered(&answer), "{answer:?}");
    let u = udp(addr).await.expect("UDP answered");
    assert!(cname_answered(&u), "{u:?}");
    let mut evicted = 0;
    for s in &mut crowd {
        if closed(s).await {
            evicted += 1;
        }
    }
    assert_eq!(evicted, 1, "one idle connection was closed to make room");

    // Nobody asks again: the server closes every connection after the idle timeout.
    let started = Instant::now();
    let deadline = started + limits.idle * 3;
    let mut open = crowd;
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} connections still open after {:?}",
            open.len(),
            limits.idle * 3
        );
        let mut still = Vec::new();
        for mut s in open {
            if !closed(&mut s).await {
                still.push(s);
            }
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    assert!(took >= limits.idle / 2, "closed after {took:?}");
    println!(
        "idle connections closed {took:?} after their last answer (idle timeout {:?})",
        limits.idle
    );
    stop.cancel();
}
