//! The built-in authoritative DNS (`[provider] kind = "builtin"`) against a real nats-server:
//! records in the `sitewarden-dns` KV bucket, two server instances on loopback watching it (the
//! two controllers), queried with `dig` (Debian `bind9-dnsutils`) and with hickory as a library
//! (its resolver, and raw hickory-proto messages over UDP and TCP).
//!
//! Checked: SOA and NS at the apex, a managed name's CNAME and TTL, NXDOMAIN vs NODATA, REFUSED
//! outside the zone, AXFR refused, TCP, truncation with TC and dig's TCP fallback, garbage bytes
//! answered or dropped without harm, a change applied through the provider answered at once and
//! identically by both servers, and an apply with an older epoch or generation refused.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use sitewarden_controller::dns::{self, DnsConfig, Server};
use sitewarden_controller::ha::kv::ensure_bucket;
use sitewarden_controller::provider::builtin::BuiltinProvider;
use sitewarden_controller::provider::{ApplyOutcome, Change, DnsProvider, Refusal};
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::{DEADLINE, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const ZONE: &str = "failover.example.com";
const MAIL: &str = "mail.failover.example.com";

async fn bucket(nats: &NatsServer) -> kv::Store {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    ensure_bucket(&jetstream::new(client), dns::bucket_spec(1))
        .await
        .expect("DNS bucket")
}

fn config() -> DnsConfig {
    let mut c = DnsConfig::new(
        ZONE,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        &["ns1.failover.example.com", "ns2.failover.example.com"],
        "hostmaster@example.com",
    );
    c.addresses.insert(
        "ns1.failover.example.com".into(),
        vec!["192.0.2.1".parse().expect("ip")],
    );
    c
}

/// Starts a server on a random loopback port; stops with `stop`.
async fn start(config: &DnsConfig, store: kv::Store, stop: &CancellationToken) -> SocketAddr {
    let server = Server::bind(config, store).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    tokio::spawn(server.run(stop.clone()));
    // Ready once the records are loaded (SERVFAIL until then).
    wait_for("the DNS server to load", DEADLINE, || async move {
        let m = udp(addr, &query(ZONE, RecordType::SOA)).await?;
        (m.metadata.response_code == ResponseCode::NoError).then_some(())
    })
    .await
    .expect("server ready");
    addr
}

fn query(name: &str, t: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
    m.to_vec().expect("encode")
}

async fn udp(addr: SocketAddr, bytes: &[u8]) -> Option<Message> {
    let s = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    s.send_to(bytes, addr).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buf[..n]).ok()
}

async fn tcp(addr: SocketAddr, bytes: &[u8]) -> Message {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    let len = u16::try_from(bytes.len()).expect("len");
    s.write_all(&len.to_be_bytes()).await.expect("write");
    s.write_all(bytes).await.expect("write");
    let mut l = [0u8; 2];
    s.read_exact(&mut l).await.expect("read len");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(l))];
    s.read_exact(&mut buf).await.expect("read");
    Message::from_vec(&buf).expect("decode")
}

/// Runs `dig @127.0.0.1 -p PORT args... +norecurse` and returns its output.
async fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(addr.port().to_string())
        .args(args)
        .args(["+norecurse", "+time=2", "+tries=1"])
        .output()
        .await
        .expect("run dig (Debian: apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `;; flags: ...;` set of a dig answer.
fn flags(out: &str) -> Vec<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|l| l.split(';').next())
        .map(|f| f.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn change(target: &str, expected: &str, epoch: u64, generation: u64) -> Change {
    Change {
        name: MAIL.into(),
        target: target.into(),
        ttl: Some(30),
        expected: Some(expected.into()),
        epoch,
        generation,
        adopt_unmarked: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zone_answers_dig_and_hickory_correctly() {
    let nats = NatsServer::start().await.expect("nats-server");
    let store = bucket(&nats).await;
    let provider = BuiltinProvider::new(store.clone());
    provider
        .create(MAIL, "mail-site1.example.com", 30)
        .await
        .expect("create record");
    let stop = CancellationToken::new();
    let addr = start(&config(), store.clone(), &stop).await;

    // Apex SOA and NS: authoritative, no recursion offered.
    let soa = dig(addr, &[ZONE, "SOA"]).await;
    assert!(soa.contains("status: NOERROR"), "{soa}");
    let f = flags(&soa);
    assert!(
        f.contains(&"aa".into()) && !f.contains(&"ra".into()),
        "{soa}"
    );
    assert!(
        soa.contains("IN\tSOA\tns1.failover.example.com. hostmaster.example.com."),
        "{soa}"
    );
    let ns = dig(addr, &["+noall", "+answer", ZONE, "NS"]).await;
    assert!(ns.contains("NS\tns1.failover.example.com."), "{ns}");
    assert!(ns.contains("NS\tns2.failover.example.com."), "{ns}");
    let glue = dig(addr, &["+short", "ns1.failover.example.com", "A"]).await;
    assert_eq!(glue.trim(), "192.0.2.1");

    // A managed name: its CNAME with the namespace TTL, for CNAME and A questions alike.
    let cname = dig(addr, &["+noall", "+answer", MAIL, "CNAME"]).await;
    assert_eq!(
        cname.trim(),
        "mail.failover.example.com. 30\tIN\tCNAME\tmail-site1.example.com."
    );
    let a = dig(addr, &["+noall", "+answer", MAIL, "A"]).await;
    assert!(a.contains("CNAME\tmail-site1.example.com."), "{a}");

    // NXDOMAIN for an unknown name, NODATA for a name without the type; SOA in authority.
    let nx = dig(addr, &["nope.failover.example.com", "A"]).await;
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains("AUTHORITY: 1"), "{nx}");
    let nodata = dig(addr, &[ZONE, "MX"]).await;
    assert!(nodata.contains("status: NOERROR"), "{nodata}");
    assert!(nodata.contains("ANSWER: 0, AUTHORITY: 1"), "{nodata}");

    // Outside the zone: refused, never recursed.
    let out = dig(addr, &["www.example.org", "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    // Zone transfer refused.
    let axfr = dig(addr, &[ZONE, "AXFR"]).await;
    assert!(axfr.contains("Transfer failed"), "{axfr}");
    let m = tcp(addr, &query(ZONE, RecordType::AXFR)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // TCP.
    let t = dig(addr, &["+tcp", "+short", MAIL, "CNAME"]).await;
    assert_eq!(t.trim(), "mail-site1.example.com.");
    let m = tcp(addr, &query(MAIL, RecordType::CNAME)).await;
    assert!(m.metadata.authoritative);
    // EDNS is answered (dig sends it by default); a client without EDNS gets none back.
    assert!(soa.contains("OPT PSEUDOSECTION"), "{soa}");
    let plain = dig(addr, &["+noedns", ZONE, "SOA"]).await;
    assert!(!plain.contains("OPT PSEUDOSECTION"), "{plain}");

    // hickory's resolver as a client.
    let mut ns = NameServerConfig::udp_and_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for c in &mut ns.connections {
        c.port = addr.port();
    }
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    );
    builder.options_mut().recursion_desired = false;
    builder.options_mut().cache_size = 0;
    let resolver = builder.build().expect("resolver");
    let lookup = resolver
        .lookup(format!("{MAIL}."), RecordType::CNAME)
        .await
        .expect("CNAME lookup");
    let r = &lookup.answers()[0];
    assert_eq!(r.ttl, 30);
    assert!(matches!(&r.data, RData::CNAME(c) if c.0.to_ascii() == "mail-site1.example.com."));
    let err = resolver
        .lookup("nope.failover.example.com.", RecordType::A)
        .await
        .expect_err("NXDOMAIN");
    assert!(err.is_nx_domain(), "{err:?}");

    // Garbage over UDP: FORMERR or silence, and the next query is answered.
    let junk: [&[u8]; 4] = [
        b"",
        b"\x01",
        b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff\xff",
        &[0xff; 300],
    ];
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for j in junk {
        s.send_to(j, addr).await.expect("send junk");
    }
    let m = udp(addr, &query(MAIL, RecordType::CNAME))
        .await
        .expect("answered after garbage");
    assert_eq!(m.answers.len(), 1);
    // Garbage over TCP: the connection is dropped, the server keeps serving.
    {
        let mut c = TcpStream::connect(addr).await.expect("tcp");
        c.write_all(b"\x00\x05hello").await.expect("write");
        let _ = tokio::time::timeout(Duration::from_secs(2), c.read(&mut [0u8; 64])).await;
    }
    let m = tcp(addr, &query(MAIL, RecordType::CNAME)).await;
    assert_eq!(m.answers.len(), 1);

    // Truncation: an NS set too big for 512 bytes sets TC over UDP; dig then retries over TCP.
    let mut big = config();
    for i in 0..30 {
        big.nameservers.push(format!(
            "ns-{i}.a-rather-long-label-to-fill-the-packet.example.net"
        ));
    }
    let big_addr = start(&big, store.clone(), &stop).await;
    let tc = dig(big_addr, &["+noedns", "+ignore", ZONE, "NS"]).await;
    assert!(flags(&tc).contains(&"tc".into()), "{tc}");
    let full = dig(big_addr, &["+noedns", "+noall", "+answer", ZONE, "NS"]).await;
    assert_eq!(
        full.lines().filter(|l| l.contains("\tNS\t")).count(),
        32,
        "{full}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_answered_at_once_by_both_controllers_and_stale_leaders_are_refused() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let nats = NatsServer::start().await.expect("nats-server");
    let store = bucket(&nats).await;
    let provider = BuiltinProvider::new(store.clone());
    provider
        .create(MAIL, "mail-site1.example.com", 60)
        .await
        .expect("create record");
    let stop = CancellationToken::new();
    // Two controllers, each with its own connection to the bus.
    let a = start(&config(), bucket(&nats).await, &stop).await;
    let b = start(&config(), bucket(&nats).await, &stop).await;
    for addr in [a, b] {
        let s = dig(addr, &["+short", MAIL, "CNAME"]).await;
        assert_eq!(s.trim(), "mail-site1.example.com.");
    }

    let out = provider
        .apply(&change(
            "mail-site2.example.com",
            "mail-site1.example.com",
            5,
            1,
        ))
        .await
        .expect("apply");
    let ApplyOutcome::Applied { before, after } = out else {
        panic!("{out:?}")
    };
    assert_eq!(before.content.as_deref(), Some("mail-site1.example.com"));
    assert_eq!(after.content.as_deref(), Some("mail-site2.example.com"));
    let committed = tokio::time::Instant::now();
    for addr in [a, b] {
        wait_for(
            "the new target to be answered",
            Duration::from_secs(2),
            || async move {
                let m = udp(addr, &query(MAIL, RecordType::CNAME)).await?;
                let r = m.answers.first()?;
                matches!(&r.data, RData::CNAME(c) if c.0.to_ascii() == "mail-site2.example.com.")
                    .then_some(())
            },
        )
        .await
        .expect("both servers answer the change");
    }
    assert!(
        committed.elapsed() < Duration::from_secs(1),
        "live at once, took {:?}",
        committed.elapsed()
    );
    // Identical answers, SOA serial included.
    let da = dig(a, &["+noall", "+answer", MAIL, "CNAME"]).await;
    let db = dig(b, &["+noall", "+answer", MAIL, "CNAME"]).await;
    assert_eq!(da, db);
    assert!(
        da.contains("30\tIN\tCNAME\tmail-site2.example.com."),
        "{da}"
    );
    let sa = dig(a, &["+short", ZONE, "SOA"]).await;
    let sb = dig(b, &["+short", ZONE, "SOA"]).await;
    assert_eq!(sa, sb);

    // A deposed leader (older epoch) is refused; so is an older plan.
    let stale = provider
        .apply(&change(
            "mail-site1.example.com",
            "mail-site2.example.com",
            4,
            2,
        ))
        .await
        .expect("apply");
    assert!(
        matches!(stale, ApplyOutcome::Refused(Refusal::NewerEpoch { found }) if found.epoch == 5),
        "{stale:?}"
    );
    let older = provider
        .apply(&change(
            "mail-site1.example.com",
            "mail-site2.example.com",
            5,
            0,
        ))
        .await
        .expect("apply");
    assert!(
        matches!(
            older,
            ApplyOutcome::Refused(Refusal::OlderGeneration { .. })
        ),
        "{older:?}"
    );
    // Drift: someone wrote the key by hand; the leader's change is refused, not fought.
    store
        .put(
            MAIL,
            r#"{"content":"mail-manual.example.com","ttl":30,"epoch":5,"generation":1}"#.into(),
        )
        .await
        .expect("manual put");
    let drift = provider
        .apply(&change(
            "mail-site1.example.com",
            "mail-site2.example.com",
            5,
            2,
        ))
        .await
        .expect("apply");
    assert!(
        matches!(drift, ApplyOutcome::Refused(Refusal::Drift { .. })),
        "{drift:?}"
    );
    // The same change again is in place; a missing name is refused.
    let missing = provider
        .apply(&Change {
            name: "nope.failover.example.com".into(),
            ..change("x.example.com", "y.example.com", 5, 3)
        })
        .await
        .expect("apply");
    assert_eq!(missing, ApplyOutcome::Refused(Refusal::Missing));
    for addr in [a, b] {
        let s = dig(addr, &["+short", MAIL, "CNAME"]).await;
        assert_eq!(s.trim(), "mail-manual.example.com.");
    }
    stop.cancel();
}

/// Two leaders racing on one record: the KV revision check lets exactly one write land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_write_loses_the_compare_and_set_and_decides_again() {
    let nats = NatsServer::start().await.expect("nats-server");
    let store = bucket(&nats).await;
    let old = BuiltinProvider::new(store.clone());
    let new = BuiltinProvider::new(bucket(&nats).await);
    old.create(MAIL, "mail-site1.example.com", 60)
        .await
        .expect("create");
    let c_old = change("mail-site2.example.com", "mail-site1.example.com", 7, 1);
    let c_new = change("mail-site3.example.com", "mail-site1.example.com", 8, 1);
    let (r_old, r_new) = tokio::join!(old.apply(&c_old), new.apply(&c_new));
    let (r_old, r_new) = (r_old.expect("old"), r_new.expect("new"));
    let rec = new.read(MAIL).await.expect("read");
    // Whatever the interleaving, the newest epoch's target is what stays, or the older leader's
    // write landed first and the newer one saw it as drift; never the stale one over the new one.
    match (&r_old, &r_new) {
        (_, ApplyOutcome::Applied { .. }) => {
            assert!(
                matches!(r_old, ApplyOutcome::Refused(Refusal::NewerEpoch { .. })),
                "{r_old:?}"
            );
            assert_eq!(rec.content.as_deref(), Some("mail-site3.example.com"));
        }
        (ApplyOutcome::Applied { .. }, ApplyOutcome::Refused(Refusal::Drift { .. })) => {
            assert_eq!(rec.content.as_deref(), Some("mail-site2.example.com"));
        }
        other => panic!("{other:?}"),
    }
}

/// The bus goes away: both servers keep answering the last committed target (nothing fails over
/// because NATS is down), and once it is back they follow the next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_outage_keeps_the_last_answers_and_changes_follow_after_it() {
    let nats = NatsServer::start().await.expect("nats-server");
    let store = bucket(&nats).await;
    let provider = BuiltinProvider::new(store.clone());
    provider
        .create(MAIL, "mail-site1.example.com", 60)
        .await
        .expect("create record");
    let stop = CancellationToken::new();
    let a = start(&config(), bucket(&nats).await, &stop).await;
    let b = start(&config(), bucket(&nats).await, &stop).await;

    // A client of our own shows when the outage is visible to the bus's clients.
    let watcher = async_nats::connect(nats.url())
        .await
        .expect("watcher connects");
    nats.stop().await.expect("stop nats");
    sitewarden_tests::wait_for("clients see the bus gone", DEADLINE, || async {
        (watcher.connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await
    .expect("outage visible");
    for addr in [a, b] {
        let s = dig(addr, &["+short", MAIL, "CNAME"]).await;
        assert_eq!(
            s.trim(),
            "mail-site1.example.com.",
            "answers during the outage"
        );
    }
    nats.restart().await.expect("restart nats");

    let c = change("mail-site2.example.com", "mail-site1.example.com", 3, 1);
    let out = wait_for("the bus to take the change", DEADLINE, || {
        let (p, c) = (&provider, &c);
        async move { p.apply(c).await.ok() }
    })
    .await
    .expect("apply after the outage");
    // A retry after a write whose answer was lost finds the change already in place.
    assert!(
        matches!(
            out,
            ApplyOutcome::Applied { .. } | ApplyOutcome::AlreadyInPlace { .. }
        ),
        "{out:?}"
    );
    for addr in [a, b] {
        wait_for("the change after the outage", DEADLINE, || async move {
            let s = dig(addr, &["+short", MAIL, "CNAME"]).await;
            (s.trim() == "mail-site2.example.com.").then_some(())
        })
        .await
        .expect("both servers follow the bucket again");
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_secondary_transfers_the_zone_with_dig() {
    let nats = NatsServer::start().await.expect("nats-server");
    let store = bucket(&nats).await;
    BuiltinProvider::new(store.clone())
        .create(MAIL, "mail-site1.example.com", 30)
        .await
        .expect("create record");
    let stop = CancellationToken::new();
    let mut allowed = config();
    allowed.allow_transfer = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let addr = start(&allowed, store.clone(), &stop).await;
    let axfr = dig(addr, &[ZONE, "AXFR"]).await;
    assert!(!axfr.contains("Transfer failed"), "{axfr}");
    let lines: Vec<&str> = axfr
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    assert!(
        lines.first().is_some_and(|l| l.contains("\tSOA\t")),
        "{axfr}"
    );
    assert!(
        lines.last().is_some_and(|l| l.contains("\tSOA\t")),
        "{axfr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(MAIL) && l.contains("CNAME\tmail-site1.example.com.")),
        "{axfr}"
    );
    // Over UDP the same client is refused (transfers are TCP only).
    let m = udp(addr, &query(ZONE, RecordType::AXFR))
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    stop.cancel();
}

/// A mass failover on the built-in DNS: 2,000 names move in one `apply_many`; a name edited by
/// hand is refused as drift, a name whose record is gone is refused as missing, and neither
/// holds up the others; the DNS server answers the new targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_names_move_in_one_burst_and_a_bad_name_holds_up_none() {
    const N: usize = 2000;
    let nats = NatsServer::start().await.expect("nats-server");
    let store = bucket(&nats).await;
    let provider = BuiltinProvider::new(store.clone());
    let name = |i: usize| format!("svc{i}.{ZONE}");
    for i in 0..N {
        provider
            .create(&name(i), "svc-site1.example.com", 60)
            .await
            .expect("create");
    }
    // A human points one name elsewhere; another record is deleted.
    store
        .put(
            name(11),
            br#"{"content":"elsewhere.example.com","ttl":60,"epoch":0,"generation":0}"#
                .to_vec()
                .into(),
        )
        .await
        .expect("hand edit");
    store.delete(name(12)).await.expect("delete");
    let changes: Vec<Change> = (0..N)
        .map(|i| Change {
            name: name(i),
            target: "svc-site2.example.com".into(),
            ttl: None,
            expected: Some("svc-site1.example.com".into()),
            epoch: 3,
            generation: 1,
            adopt_unmarked: false,
        })
        .collect();
    let outcomes = provider.apply_many(&changes).await;
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ApplyOutcome::Applied { .. })))
        .count();
    assert_eq!(applied, N - 2);
    assert!(
        matches!(
            &outcomes[11],
            Ok(ApplyOutcome::Refused(Refusal::Drift { .. }))
        ),
        "{:?}",
        outcomes[11]
    );
    assert!(
        matches!(&outcomes[12], Ok(ApplyOutcome::Refused(Refusal::Missing))),
        "{:?}",
        outcomes[12]
    );
    let stats = provider.stats();
    assert_eq!(
        stats.writes,
        (N - 2) as u64,
        "one compare-and-set per moved name"
    );
    let stop = CancellationToken::new();
    let addr = start(&config(), store, &stop).await;
    let last = name(N - 1);
    wait_for("the server to answer the new target", DEADLINE, || {
        let last = last.clone();
        async move {
            let m = udp(addr, &query(&last, RecordType::CNAME)).await?;
            let r = m.answers.first()?;
            matches!(&r.data, RData::CNAME(c) if c.0.to_ascii() == "svc-site2.example.com.")
                .then_some(())
        }
    })
    .await
    .expect("the server answers the new target");
    stop.cancel();
}
