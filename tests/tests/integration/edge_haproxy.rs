//! The agent steers a real HAProxy from edge notifications on a real nats-server.
//!
//! HAProxy (Debian's binary, admin socket in a temp dir) has two backends: `be_mail` follows
//! DAG1 with servers in site1 and site2 and drains the passive ones; `be_owa` follows DAG2 and
//! puts passive servers in maintenance. The agent runs in-process from TOML, exactly as the
//! daemon does. The stories: the latest notice in KV is applied at start-up before anything is
//! published; a newer notice on the bus moves the backend; an older notice, one from a deposed
//! leader, and one whose active site is unknown change nothing; a new leader's epoch wins over
//! a higher generation; a server set by hand is put back at the next resync; and a notice
//! published while the agent was cut off from NATS is applied when the connection returns
//! (from KV, with the resync far away so only the reconnect path can do it).
//!
//! "Nothing changed" is never checked by sleeping: each such notice also moves `be_owa`, and the
//! test waits for that, so the agent has provably processed the notice when `be_mail` is checked.

use std::collections::BTreeMap;
use std::time::Duration;

use sitewarden_controller::edge::{Stored, bucket_spec, get_latest, put_latest};
use sitewarden_controller::ha::ensure_bucket;
use sitewarden_shared::edge::SUBJECT;
use sitewarden_shared::{EdgeNotification, SiteId, SiteVerdict};
use sitewarden_tests::config_toml::{
    AgentTable, AgentToml, EdgeAdapter, HaproxyBackend, NatsTable,
};
use sitewarden_tests::fault_proxy::{Fault, FaultProxy};
use sitewarden_tests::haproxy::{Admin, Haproxy};
use sitewarden_tests::in_process::RunningAgent;
use sitewarden_tests::metrics_page::metric;
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::wait_for;
use sitewarden_tests::{DEADLINE, free_addr};

const MAIL: &str = "be_mail";
const OWA: &str = "be_owa";
const MAIL_SERVERS: &[&str] = &["cas1-site1", "cas2-site1", "cas1-site2", "cas2-site2"];
const OWA_SERVERS: &[&str] = &["owa-site1", "owa-site2"];

async fn haproxy() -> Haproxy {
    Haproxy::start(&[(MAIL, MAIL_SERVERS), (OWA, OWA_SERVERS)])
        .await
        .expect("haproxy starts")
}

/// An edge agent steering `be_mail` (DAG1, passive servers drained) and `be_owa` (DAG2,
/// passive servers in maintenance) of `hp`, re-reading the latest notice every `resync`.
fn agent_toml(nats: &str, listen: std::net::SocketAddr, hp: &Haproxy, resync: Duration) -> String {
    let servers = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(server, site)| ((*server).to_owned(), (*site).to_owned()))
            .collect()
    };
    AgentToml {
        agent: AgentTable {
            id: "edge-agent1".into(),
            site: "site1".into(),
            listen: Some(listen),
            ..AgentTable::default()
        },
        nats: NatsTable {
            ping_interval: Some(Duration::from_millis(500)),
            ..NatsTable::servers([nats])
        },
        edge: Some(EdgeAdapter {
            resync_interval: resync,
            haproxy: vec![
                HaproxyBackend {
                    socket: hp.socket(),
                    backend: MAIL.into(),
                    dag: "DAG1".into(),
                    servers: servers(&[
                        ("cas1-site1", "site1"),
                        ("cas2-site1", "site1"),
                        ("cas1-site2", "site2"),
                        ("cas2-site2", "site2"),
                    ]),
                    passive: None,
                },
                HaproxyBackend {
                    socket: hp.socket(),
                    backend: OWA.into(),
                    dag: "DAG2".into(),
                    servers: servers(&[("owa-site1", "site1"), ("owa-site2", "site2")]),
                    passive: Some("maint".into()),
                },
            ],
        }),
        ..AgentToml::default()
    }
    .render()
}

fn site(s: &str) -> SiteId {
    s.parse().expect("a test site id")
}

/// A notice from leader `epoch`: DAG1 and DAG2 active where given (`None`: unknown).
fn notice(epoch: u64, generation: u64, dag1: Option<&str>, dag2: Option<&str>) -> EdgeNotification {
    EdgeNotification {
        schema_version: 1,
        controller: format!("ctl-epoch{epoch}"),
        epoch,
        generation,
        issued_at: chrono::Utc::now(),
        active_sites: BTreeMap::from([
            ("DAG1".to_owned(), dag1.map(site)),
            ("DAG2".to_owned(), dag2.map(site)),
        ]),
        verdicts: BTreeMap::from([
            (site("site1"), SiteVerdict::Up),
            (site("site2"), SiteVerdict::Up),
        ]),
    }
}

/// The controller's side of the bus: publishes notices and keeps the latest in KV.
struct Leader {
    client: async_nats::Client,
    kv: async_nats::jetstream::kv::Store,
}

impl Leader {
    async fn connect(url: &str) -> Self {
        let client = async_nats::connect(url)
            .await
            .expect("test leader connects");
        let js = async_nats::jetstream::new(client.clone());
        let kv = ensure_bucket(&js, bucket_spec(1))
            .await
            .expect("the edge KV bucket");
        Self { client, kv }
    }

    async fn store(&self, n: &EdgeNotification) {
        assert_eq!(
            put_latest(&self.kv, n).await.expect("KV put"),
            Stored::Written
        );
    }

    async fn publish(&self, n: &EdgeNotification) {
        let body = serde_json::to_vec(n).expect("serialize");
        self.client
            .publish(SUBJECT, body.into())
            .await
            .expect("publish");
        self.client.flush().await.expect("flush");
    }
}

fn expect(pairs: &[(&str, Admin)]) -> BTreeMap<String, Admin> {
    pairs.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect()
}

fn mail_active(site: &str) -> BTreeMap<String, Admin> {
    MAIL_SERVERS
        .iter()
        .map(|s| {
            let a = if s.ends_with(site) {
                Admin::Ready
            } else {
                Admin::Drain
            };
            ((*s).to_owned(), a)
        })
        .collect()
}

fn owa_active(site: &str) -> BTreeMap<String, Admin> {
    let other = if site == "site1" { "site2" } else { "site1" };
    expect(&[
        (&format!("owa-{site}"), Admin::Ready),
        (&format!("owa-{other}"), Admin::Maint),
    ])
}

async fn wait_states(hp: &Haproxy, backend: &str, want: BTreeMap<String, Admin>, what: &str) {
    let last = std::sync::Mutex::new(BTreeMap::new());
    let result = wait_for(what, DEADLINE, || async {
        let now = hp.server_states(backend).await.ok()?;
        let done = now == want;
        *last.lock().expect("lock") = now;
        done.then_some(())
    })
    .await;
    if let Err(e) = result {
        panic!(
            "{e}; {backend} is {:?}, want {want:?}",
            last.lock().expect("lock")
        );
    }
}

#[tokio::test]
async fn haproxy_follows_the_active_site_from_kv_and_bus_and_ignores_stale_or_unknown_notices() {
    let nats = NatsServer::start().await.expect("nats-server starts");
    let hp = haproxy().await;
    let all_ready = hp.server_states(MAIL).await.expect("states");
    assert!(
        all_ready.values().all(|a| *a == Admin::Ready),
        "{all_ready:?}"
    );
    let leader = Leader::connect(&nats.url()).await;

    // Given the latest notice in KV says DAG1 is active in site1 and DAG2 in site2,
    // when the agent starts, then HAProxy follows it before anything is published.
    leader
        .store(&notice(5, 2, Some("site1"), Some("site2")))
        .await;
    // The KV only moves forward: a late write of an older notice is refused.
    assert_eq!(
        put_latest(&leader.kv, &notice(5, 1, Some("site2"), None))
            .await
            .expect("KV"),
        Stored::NotNewer((5, 2))
    );
    let stored = get_latest(&leader.kv).await.expect("KV").expect("a notice");
    assert_eq!(stored.order_key(), (5, 2));
    let listen = free_addr();
    let agent = RunningAgent::start(&agent_toml(
        &nats.url(),
        listen,
        &hp,
        Duration::from_secs(30),
    ));
    wait_states(
        &hp,
        MAIL,
        mail_active("site1"),
        "be_mail follows site1 from KV",
    )
    .await;
    wait_states(
        &hp,
        OWA,
        owa_active("site2"),
        "be_owa follows site2 from KV",
    )
    .await;

    // When DAG1's databases move to site2, then site1's servers drain and site2's take traffic.
    leader
        .publish(&notice(5, 3, Some("site2"), Some("site2")))
        .await;
    wait_states(&hp, MAIL, mail_active("site2"), "be_mail moves to site2").await;

    // An older notice (5,1) is ignored; (5,4) then moves only be_owa, proving (5,1) was seen.
    leader
        .publish(&notice(5, 1, Some("site1"), Some("site2")))
        .await;
    leader
        .publish(&notice(5, 4, Some("site2"), Some("site1")))
        .await;
    wait_states(&hp, OWA, owa_active("site1"), "be_owa moves to site1").await;
    assert_eq!(
        hp.server_states(MAIL).await.expect("states"),
        mail_active("site2")
    );
    let ignored = wait_for("the not_newer counter", DEADLINE, || async {
        metric(listen, "sitewarden_agent_edge_notices_total", "not_newer").await
    })
    .await
    .expect("metric");
    assert_eq!(ignored, 1.0);

    // DAG1's active site becomes unknown: be_mail fails static while be_owa still moves.
    leader.publish(&notice(5, 5, None, Some("site2"))).await;
    wait_states(&hp, OWA, owa_active("site2"), "be_owa moves back to site2").await;
    assert_eq!(
        hp.server_states(MAIL).await.expect("states"),
        mail_active("site2")
    );

    // A new leader (epoch 6) restarts generations; its first notice wins.
    leader
        .publish(&notice(6, 1, Some("site1"), Some("site2")))
        .await;
    wait_states(
        &hp,
        MAIL,
        mail_active("site1"),
        "be_mail follows the new leader",
    )
    .await;

    // A late notice from the deposed leader (5,99) changes nothing.
    leader
        .publish(&notice(5, 99, Some("site2"), Some("site2")))
        .await;
    leader
        .publish(&notice(6, 2, Some("site1"), Some("site1")))
        .await;
    wait_states(&hp, OWA, owa_active("site1"), "be_owa follows (6,2)").await;
    assert_eq!(
        hp.server_states(MAIL).await.expect("states"),
        mail_active("site1")
    );
    let epoch = metric(listen, "sitewarden_agent_edge_epoch", "").await;
    assert_eq!(epoch, Some(6.0));
    let ready = metric(
        listen,
        "sitewarden_agent_edge_server_ready",
        "server=\"cas1-site1\"",
    )
    .await;
    assert_eq!(ready, Some(1.0));

    agent.stop().await;
}

#[tokio::test]
async fn a_server_changed_by_hand_is_put_back_at_the_next_resync() {
    let nats = NatsServer::start().await.expect("nats-server starts");
    let hp = haproxy().await;
    let leader = Leader::connect(&nats.url()).await;
    leader
        .store(&notice(2, 1, Some("site2"), Some("site1")))
        .await;
    let listen = free_addr();
    let agent = RunningAgent::start(&agent_toml(
        &nats.url(),
        listen,
        &hp,
        Duration::from_secs(1),
    ));
    wait_states(
        &hp,
        MAIL,
        mail_active("site2"),
        "be_mail follows site2 from KV",
    )
    .await;

    // Someone sets a site2 server to maintenance by hand (or a reload resets it): the next
    // resync puts it back and counts the drift.
    hp.set_state(MAIL, "cas1-site2", "maint")
        .await
        .expect("manual change");
    assert_eq!(
        hp.server_states(MAIL).await.expect("states")["cas1-site2"],
        Admin::Maint
    );
    wait_states(&hp, MAIL, mail_active("site2"), "the drift is undone").await;
    let drift = wait_for("the drift counter", DEADLINE, || async {
        metric(
            listen,
            "sitewarden_agent_edge_backend_updates_total",
            "drift",
        )
        .await
    })
    .await
    .expect("metric");
    assert!(drift >= 1.0);
    agent.stop().await;
}

#[tokio::test]
async fn a_notice_missed_while_cut_off_from_nats_is_applied_on_reconnect() {
    let nats = NatsServer::start().await.expect("nats-server starts");
    let hp = haproxy().await;
    let leader = Leader::connect(&nats.url()).await;
    leader
        .store(&notice(2, 1, Some("site2"), Some("site1")))
        .await;

    // The agent reaches NATS through a proxy we can cut. The resync is far beyond the test's
    // deadline, so only the reconnect path can bring the missed notice.
    let proxy = FaultProxy::start(nats.addr()).await.expect("fault proxy");
    let listen = free_addr();
    let agent = RunningAgent::start(&agent_toml(
        &format!("nats://{}", proxy.addr()),
        listen,
        &hp,
        Duration::from_secs(600),
    ));
    wait_states(
        &hp,
        MAIL,
        mail_active("site2"),
        "be_mail follows site2 from KV",
    )
    .await;

    // The agent is cut off; meanwhile the leader moves DAG1 to site1. Core NATS does not
    // replay the message to the agent, so only the KV read after reconnecting can bring it.
    proxy.set(Fault::Reset);
    wait_for(
        "the agent to notice it is disconnected",
        DEADLINE,
        || async {
            (metric(listen, "sitewarden_agent_nats_connected", "").await == Some(0.0)).then_some(())
        },
    )
    .await
    .expect("agent disconnected");
    let moved = notice(2, 2, Some("site1"), Some("site1"));
    leader.store(&moved).await;
    leader.publish(&moved).await;
    assert_eq!(
        hp.server_states(MAIL).await.expect("states"),
        mail_active("site2")
    );
    proxy.set(Fault::Pass);
    wait_states(
        &hp,
        MAIL,
        mail_active("site1"),
        "be_mail catches up after reconnecting",
    )
    .await;
    wait_states(
        &hp,
        OWA,
        owa_active("site1"),
        "be_owa catches up after reconnecting",
    )
    .await;

    agent.stop().await;
}
