//! The bus permission model of `deploy/nats/sitewarden-auth.conf`, proven on a real nats-server.
//!
//! The node under test includes the shipped file itself (its directory is linked into the
//! node's directory, because nats-server resolves includes relative to the including file), and
//! the users' passwords reach it as environment variables, exactly as in production. So what
//! passes here is what ships:
//!
//! - an agent holding site1 credentials publishes its own observation subject, but a message on
//!   site2's subject (or another agent's, or an edge notice, or an audit record) never arrives
//!   at a subscriber, and the client is told "Permissions Violation";
//! - that agent, alone in its own account without JetStream, cannot read, watch or write the
//!   controllers' KV buckets (`sitewarden-lease`, `sitewarden-state`) nor delete their streams,
//!   under the plain API or the imported prefix; it can read `sitewarden-edge` (under
//!   `$JS.sitewarden.API`, as `[nats] js_api_prefix` says) and the edge notice subject, without
//!   writing either or creating a consumer;
//! - its credential opens at most four connections (its account's cap); the controllers and
//!   the other agents connect and publish meanwhile;
//! - the controller user runs the real controller against real agents with their own
//!   credentials: streams and buckets are created, the lease is taken, events are consumed, and
//!   when site1 dies mail moves to site2.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use sitewarden_controller::ha::{BucketSpec, ensure_bucket};
use sitewarden_controller::provider::DnsProvider;
use sitewarden_controller::provider::budget::RetryPolicy;
use sitewarden_controller::provider::memory::MemoryProvider;
use sitewarden_controller::runtime::{EDGE_SUBJECT, LEASE_BUCKET, STATE_BUCKET};
use sitewarden_shared::nats::{NatsSettings, is_permission_violation};
use sitewarden_tests::config_toml::{ControllerTable, ControllerToml, Ha, NatsTable, Provider};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::in_process::{RunningAgent, RunningController};
use sitewarden_tests::nats_server::{NatsServer, NodeOptions};
use sitewarden_tests::shipped_nats::{self, AGENT_JS_API_PREFIX, SHIPPED_USERS as USERS};
use sitewarden_tests::two_site::{self, TEST_POLICY};
use sitewarden_tests::{DEADLINE, wait_for};
use tempfile::TempDir;

/// The edge bucket agents may read.
const EDGE_BUCKET: &str = "sitewarden-edge";
/// The managed name of the end-to-end story.
const NAME: &str = "mail.example.com";

/// An environment value for nats-server: it parses the value as config, where a bare `$2b$…`
/// would be read as another variable reference, so a bcrypt hash goes in double quotes.
fn quoted(hash: &str) -> String {
    format!("\"{hash}\"")
}

/// A nats-server that includes the shipped accounts and permissions, with the users' bcrypt
/// hashes in its environment, plus a directory holding each user's password file.
struct Bus {
    nats: NatsServer,
    secrets: TempDir,
}

impl Bus {
    async fn start() -> Self {
        let secrets = tempfile::tempdir().unwrap();
        shipped_nats::write_passwords(secrets.path());
        let nats = NatsServer::start_with(NodeOptions {
            extra_config: "include \"deploy/sitewarden-auth.conf\"".into(),
            env: USERS
                .iter()
                .map(|(_, var, _, hash)| ((*var).to_owned(), quoted(hash)))
                .collect(),
            links: vec![("deploy".into(), shipped_nats::deploy_nats_dir())],
            files: Vec::new(),
        })
        .await
        .unwrap();
        Bus { nats, secrets }
    }

    /// `[nats]` for `user` of the shipped permissions.
    fn nats_table(&self, user: &str) -> NatsTable {
        shipped_nats::nats_table(vec![self.nats.url()], user, self.secrets.path())
    }

    /// Validated settings for `user`, as the agent and controller load them.
    fn settings(&self, user: &str) -> NatsSettings {
        shipped_nats::settings(&self.nats_table(user))
    }

    /// A client for `user` through `NatsSettings::connect`.
    async fn client(&self, user: &str) -> async_nats::Client {
        self.settings(user)
            .connect("nats_auth test")
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"))
    }

    /// An agent's JetStream context as the agent makes it: `[nats] js_api_prefix` as the shipped
    /// accounts expect, requests given up after a second.
    async fn agent_js(&self, user: &str) -> jetstream::Context {
        let settings = shipped_nats::settings(&NatsTable {
            js_api_prefix: Some(AGENT_JS_API_PREFIX.into()),
            ..self.nats_table(user)
        });
        let client = settings
            .connect("nats_auth test")
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"));
        let mut js = settings.jetstream(client);
        js.set_timeout(Duration::from_secs(1));
        js
    }

    /// A raw client for `user` that reports every server error on a channel.
    async fn client_with_errors(
        &self,
        user: &str,
    ) -> (
        async_nats::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let password = USERS.iter().find(|u| u.0 == user).unwrap().2;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .event_callback(move |event| {
                    let tx = tx.clone();
                    async move {
                        if let async_nats::Event::ServerError(e) = event {
                            let _ = tx.send(e.to_string());
                        }
                    }
                })
                .connect(self.nats.url())
                .await
                .unwrap();
        (client, rx)
    }
}

/// A JetStream context that gives up on an unanswered request after a second: a request the
/// server refuses is dropped, not answered.
fn js(client: async_nats::Client) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(1));
    js
}

/// Publishes `forbidden` then an allowed `marker` from `publisher`; returns every subject the
/// subscribers saw up to the marker. Messages from one connection are delivered in order and
/// the client hands each to its subscription before reading the next, so a forbidden message
/// that got through is already queued when the marker arrives.
async fn seen_until_marker(
    publisher: &async_nats::Client,
    subs: &mut [async_nats::Subscriber],
    forbidden: &[&str],
    marker: &str,
) -> Vec<String> {
    for subject in forbidden {
        publisher
            .publish(subject.to_string(), "forged".into())
            .await
            .unwrap();
    }
    publisher
        .publish(marker.to_owned(), "ok".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let mut seen = Vec::new();
    loop {
        let mut all = futures::stream::select_all(subs.iter_mut());
        let msg = tokio::time::timeout(DEADLINE, all.next())
            .await
            .expect("the marker arrives")
            .expect("subscriptions open");
        seen.push(msg.subject.to_string());
        if msg.subject.as_str() == marker {
            break;
        }
    }
    for sub in subs.iter_mut() {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::ZERO, sub.next()).await {
            seen.push(msg.subject.to_string());
        }
    }
    seen
}

#[tokio::test]
async fn an_agent_publishes_its_own_subjects_and_nothing_else() {
    let bus = Bus::start().await;
    let controller = bus.client("controller-site1").await;
    let mut events = Vec::new();
    for class in ["obs", "dbcopy", "heartbeat"] {
        events.push(
            controller
                .subscribe(format!("sitewarden.v1.{class}.>"))
                .await
                .unwrap(),
        );
    }
    let mut notices = controller.subscribe(EDGE_SUBJECT).await.unwrap();
    controller.flush().await.unwrap();
    let agent = bus.client("site1-agent1").await;

    let own = "sitewarden.v1.obs.site1.site1-agent1.cas1.eas";
    let seen = seen_until_marker(
        &agent,
        &mut events[..],
        &[
            "sitewarden.v1.obs.site2.site2-agent1.cas3.eas",
            "sitewarden.v1.obs.site1.site1-agent2.cas1.eas",
            "sitewarden.v1.heartbeat.site2.site2-agent1",
            "sitewarden.v1.dbcopy.witness.witness-agent1.dag1",
        ],
        own,
    )
    .await;
    assert_eq!(
        seen,
        vec![own.to_owned()],
        "only the agent's own subject arrives"
    );
    let seen = seen_until_marker(
        &agent,
        &mut events[..],
        &["sitewarden.v1.obs.site2.site2-agent1.cas3.eas"],
        "sitewarden.v1.heartbeat.site1.site1-agent1",
    )
    .await;
    assert_eq!(seen, vec!["sitewarden.v1.heartbeat.site1.site1-agent1"]);
    let seen = seen_until_marker(
        &agent,
        &mut events[..],
        &[],
        "sitewarden.v1.dbcopy.site1.site1-agent1.dag1",
    )
    .await;
    assert_eq!(seen, vec!["sitewarden.v1.dbcopy.site1.site1-agent1.dag1"]);

    // A forged edge notice never reaches the edge; the controller's own one does.
    agent.publish(EDGE_SUBJECT, "forged".into()).await.unwrap();
    agent.flush().await.unwrap();
    controller
        .publish(EDGE_SUBJECT, "real".into())
        .await
        .unwrap();
    let first = tokio::time::timeout(DEADLINE, notices.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first.payload[..], b"real");

    // The client is told why, for every forgery.
    let (raw, mut errors) = bus.client_with_errors("site1-agent1").await;
    for forged in [
        "sitewarden.v1.obs.site2.site2-agent1.cas3.eas",
        "sitewarden.v1.audit.controller-site1",
        EDGE_SUBJECT,
    ] {
        raw.publish(forged, "x".into()).await.unwrap();
        raw.flush().await.unwrap();
        let error = tokio::time::timeout(DEADLINE, errors.recv())
            .await
            .expect("a server error arrives")
            .unwrap();
        assert!(is_permission_violation(&error), "{error}");
        assert!(error.contains(forged), "{error}");
    }
}

#[tokio::test]
async fn an_agent_cannot_read_or_write_the_controllers_buckets() {
    let bus = Bus::start().await;
    let controller = js(bus.client("controller-site1").await);
    let lease = ensure_bucket(
        &controller,
        BucketSpec::lease(LEASE_BUCKET, Duration::from_secs(30), 1),
    )
    .await
    .unwrap();
    let state = ensure_bucket(&controller, BucketSpec::state(STATE_BUCKET, 5, 1))
        .await
        .unwrap();
    lease
        .put("leader", "controller-site1".into())
        .await
        .unwrap();
    state.put("intent", "{}".into()).await.unwrap();

    // The agent's own account has no JetStream, and only the edge bucket's reads are imported
    // from the controllers' account: neither the plain API nor the imported prefix reaches the
    // lease or state buckets.
    let agent_client = bus.client("site1-agent1").await;
    let plain = js(agent_client.clone());
    let prefixed = bus.agent_js("site1-agent1").await;
    for agent in [&plain, &prefixed] {
        for bucket in [LEASE_BUCKET, STATE_BUCKET] {
            assert!(
                agent.get_key_value(bucket).await.is_err(),
                "the agent opened {bucket}"
            );
            let stream = format!("KV_{bucket}");
            assert!(
                agent.get_stream(&stream).await.is_err(),
                "read {stream} info"
            );
            assert!(
                agent.delete_stream(&stream).await.is_err(),
                "deleted {stream}"
            );
            // A KV write is a publish on $KV.<bucket>.<key>: refused, never stored.
            let ack = agent
                .publish(format!("$KV.{bucket}.leader"), "site1-agent1".into())
                .await;
            let stored = match ack {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            assert!(!stored, "the agent wrote {bucket}");
        }
    }
    for prefix in ["$JS.API", "$JS.sitewarden.API"] {
        for bucket in [LEASE_BUCKET, STATE_BUCKET] {
            let got = tokio::time::timeout(
                Duration::from_secs(1),
                agent_client.request(
                    format!("{prefix}.DIRECT.GET.KV_{bucket}.$KV.{bucket}.leader"),
                    "".into(),
                ),
            )
            .await;
            assert!(
                !matches!(got, Ok(Ok(ref m)) if m.payload.windows(10).any(|w| w == b"controller")),
                "direct get of {bucket} under {prefix} answered with the value: {got:?}"
            );
        }
    }
    // Nor can it purge them through the API, or create a stream of its own: only the
    // controllers may fill the JetStream store.
    for prefix in ["$JS.API", "$JS.sitewarden.API"] {
        for bucket in [LEASE_BUCKET, STATE_BUCKET] {
            let purged = tokio::time::timeout(
                Duration::from_secs(1),
                agent_client.request(format!("{prefix}.STREAM.PURGE.KV_{bucket}"), "".into()),
            )
            .await;
            assert!(
                !matches!(purged, Ok(Ok(ref m)) if m.payload.windows(7).any(|w| w == b"success")),
                "purge of {bucket} under {prefix} answered: {purged:?}"
            );
        }
    }
    for agent in [&plain, &prefixed] {
        assert!(
            agent
                .create_stream(jetstream::stream::Config {
                    name: "EVIL".into(),
                    subjects: vec!["sitewarden.v1.obs.>".into()],
                    ..Default::default()
                })
                .await
                .is_err(),
            "the agent created a stream"
        );
    }
    assert!(controller.get_stream("EVIL").await.is_err());
    // The streams survived and hold the controller's values only.
    assert_eq!(
        lease.get("leader").await.unwrap().as_deref(),
        Some(&b"controller-site1"[..])
    );
    assert_eq!(
        state.get("intent").await.unwrap().as_deref(),
        Some(&b"{}"[..])
    );

    // Listening on the bucket's subjects directly is refused too: a lease write published
    // before the marker notice would have reached the agent first.
    let mut sneaky = agent_client
        .subscribe("$KV.sitewarden-lease.>")
        .await
        .unwrap();
    let mut notices = agent_client.subscribe(EDGE_SUBJECT).await.unwrap();
    agent_client.flush().await.unwrap();
    lease
        .put("leader", "controller-site2".into())
        .await
        .unwrap();
    let ctl = bus.client("controller-site1").await;
    ctl.publish(EDGE_SUBJECT, "marker".into()).await.unwrap();
    ctl.flush().await.unwrap();
    let marker = tokio::time::timeout(DEADLINE, notices.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&marker.payload[..], b"marker");
    assert!(
        tokio::time::timeout(Duration::ZERO, sneaky.next())
            .await
            .map(|m| m.is_none())
            .unwrap_or(true),
        "the agent received a lease write"
    );
}

#[tokio::test]
async fn an_agent_reads_the_edge_bucket_from_its_own_account_and_nothing_more() {
    let bus = Bus::start().await;
    let controller = js(bus.client("controller-site1").await);
    let edge = ensure_bucket(&controller, BucketSpec::state(EDGE_BUCKET, 1, 1))
        .await
        .unwrap();
    edge.put("notice", "generation 1".into()).await.unwrap();

    // Through the imported prefix, as the agent reads it (any inbox: the account is its own).
    let agent = bus.agent_js("site1-agent1").await;
    let store = agent.get_key_value(EDGE_BUCKET).await.unwrap();
    assert_eq!(
        store.get("notice").await.unwrap().as_deref(),
        Some(&b"generation 1"[..])
    );
    edge.put("notice", "generation 2".into()).await.unwrap();
    assert_eq!(
        store.get("notice").await.unwrap().as_deref(),
        Some(&b"generation 2"[..])
    );

    // It cannot write the bucket, nor make consumers on it (no consumer request is imported,
    // so an agent credential cannot fill the controllers' account with consumers).
    assert!(store.put("notice", "forged".into()).await.is_err());
    assert!(store.watch_with_history("notice").await.is_err());
    assert_eq!(
        edge.get("notice").await.unwrap().as_deref(),
        Some(&b"generation 2"[..])
    );
    let info = controller
        .get_stream(format!("KV_{EDGE_BUCKET}"))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .consumer_count;
    assert_eq!(info, 0, "no consumer was created");

    // Without the prefix nothing answers: its own account has no JetStream, and its
    // permissions name only the prefixed requests.
    let plain = js(bus.client("site1-agent1").await);
    assert!(plain.get_key_value(EDGE_BUCKET).await.is_err());
}

#[tokio::test]
async fn an_agent_credential_opens_four_connections_and_cannot_lock_anyone_else_out() {
    let bus = Bus::start().await;
    let mut held = Vec::new();
    let mut refused = None;
    for i in 0..8 {
        match async_nats::ConnectOptions::with_user_and_password(
            "site1-agent1".into(),
            USERS[2].2.into(),
        )
        .connection_timeout(Duration::from_secs(2))
        .connect(bus.nats.url())
        .await
        {
            Ok(c) => held.push(c),
            Err(e) => {
                refused = Some((i, e.to_string()));
                break;
            }
        }
    }
    let (at, why) = refused.expect("the fifth connection is refused");
    assert_eq!(at, 4, "{why}");
    assert_eq!(held.len(), 4);
    // The controllers and the other agents still connect, and the bus still carries events.
    let controller = bus.client("controller-site1").await;
    let mut events = controller
        .subscribe("sitewarden.v1.heartbeat.>")
        .await
        .unwrap();
    controller.flush().await.unwrap();
    let _second = bus.client("controller-site2").await;
    let other = bus.client("site2-agent1").await;
    other
        .publish("sitewarden.v1.heartbeat.site2.site2-agent1", "hb".into())
        .await
        .unwrap();
    other.flush().await.unwrap();
    let got = tokio::time::timeout(DEADLINE, events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.subject.as_str(),
        "sitewarden.v1.heartbeat.site2.site2-agent1"
    );
    // Through the sitewarden client the refusal names the credential.
    let e = bus
        .settings("site1-agent1")
        .connect("nats_auth test")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("site1-agent1"), "{e}");
    assert!(e.contains("most connections it allows"), "{e}");
    // One of the four goes away; the agent can connect again.
    drop(held.pop());
    wait_for("a connection slot frees up", DEADLINE, || async {
        bus.settings("site1-agent1")
            .connect("nats_auth test")
            .await
            .ok()
    })
    .await
    .unwrap();
}

/// Agents on the shipped permissions, each with its own credentials, probing `cas`.
fn agents(bus: &Bus, cas: &[ExchangeServer]) -> Vec<RunningAgent> {
    let addrs = two_site::four(cas.iter().map(ExchangeServer::addr));
    two_site::AGENTS
        .iter()
        .map(|(id, site)| {
            let nats = NatsTable {
                js_api_prefix: Some(AGENT_JS_API_PREFIX.into()),
                ..bus.nats_table(id)
            };
            let mut toml = two_site::agent(
                id,
                site,
                nats,
                &addrs,
                Duration::from_millis(500),
                Duration::from_millis(400),
            );
            toml.agent.heartbeat_interval = Some(Duration::from_millis(500));
            RunningAgent::start(&toml.render())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_user_runs_the_real_controller_and_mail_moves_when_site1_dies() {
    // Agents and a controller with a 3 s lease in this process (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let bus = Bus::start().await;
    let mut cas = Vec::new();
    for i in 0..4 {
        cas.push(
            ExchangeServer::start(ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL")))
                .await
                .unwrap(),
        );
    }
    let _agents = agents(&bus, &cas);
    let toml = ControllerToml {
        controller: ControllerTable {
            id: "controller-site1".into(),
            listen: "off".into(),
            tick: Some(Duration::from_millis(100)),
            ..ControllerTable::default()
        },
        nats: bus.nats_table("controller-site1"),
        provider: Provider::Memory,
        ha: Some(Ha {
            lease: Duration::from_secs(3),
        }),
        decisions: two_site::decisions(Some(TEST_POLICY), NAME),
        ..ControllerToml::default()
    };
    let provider = Arc::new(MemoryProvider::new(RetryPolicy::default()));
    provider.insert(
        NAME,
        "mail-rr.example.com",
        Some("sitewarden epoch=0 gen=0"),
    );
    let controller = RunningController::start(
        &toml.render(),
        Some(provider.clone() as Arc<dyn DnsProvider>),
    );
    let metrics = &controller.metrics;

    wait_for(
        "the controller acts on the permissioned bus",
        DEADLINE,
        || async { (metrics.acting.get() == 1 && metrics.events_accepted.get() > 0).then_some(()) },
    )
    .await
    .unwrap();
    for c in &cas[..2] {
        c.set(Behaviour::Down).await.unwrap();
    }
    let content = || provider.record(NAME).and_then(|r| r.content);
    wait_for("mail moved to site2", DEADLINE, || async {
        (content().as_deref() == Some("mail-site2.example.com")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; record {:?}", content()));
    assert_eq!(provider.writes(), 1);
    assert!(
        !controller.handle.is_finished(),
        "the controller is still running"
    );

    // The built-in DNS bucket and the audit stream work for the controller user too.
    let js = js(bus.client("controller-site2").await);
    let dns = ensure_bucket(&js, sitewarden_controller::dns::bucket_spec(1))
        .await
        .unwrap();
    dns.put("mail.example.com", "{}".into()).await.unwrap();
    let mut watch = dns.watch_all().await.unwrap();
    dns.put("mail.example.com", "{\"v\":2}".into())
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut audit = js
        .get_stream(sitewarden_controller::runtime::audit::AUDIT_STREAM)
        .await
        .unwrap();
    assert!(audit.info().await.unwrap().state.messages > 0);

    // Presence: the controller writes its record into the lease bucket, and a controller user
    // can watch every presence key (as the other controller of a pair does).
    let lease = ensure_bucket(
        &js,
        BucketSpec::lease(LEASE_BUCKET, Duration::from_secs(3), 1),
    )
    .await
    .unwrap();
    let mut presence = lease.watch_with_history("presence.>").await.unwrap();
    let seen = tokio::time::timeout(DEADLINE, presence.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.key, "presence.controller-site1");
    let record: serde_json::Value = serde_json::from_slice(&seen.value).unwrap();
    assert_eq!(record["role"], "leader", "{record}");

    // Nobody was refused anything: the shipped permissions cover all the agents and the
    // controller do.
    let log = std::fs::read_to_string(bus.nats.log_path()).unwrap();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(
        refused.is_empty(),
        "refused operations:\n{}",
        refused.join("\n")
    );
}

/// Runs `nats-server -t -c config` with `env`; returns whether it passed and what it said.
fn check_config(config: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(sitewarden_tests::nats_server::binary())
        .arg("-t")
        .arg("-c")
        .arg(config)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("nats-server runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_shipped_node_configs_are_valid_for_nats_server() {
    let values: Vec<(&str, String)> = USERS.iter().map(|u| (u.1, quoted(u.3))).collect();
    let env: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for node in ["site1", "site2", "witness"] {
        let shipped = shipped_nats::deploy_nats_dir().join(format!("nats-{node}.conf"));
        let text = std::fs::read_to_string(&shipped).unwrap();
        // Point the deployment paths at a temp dir holding a test certificate; nothing else
        // changes, and the accounts file is the shipped one, linked.
        let dir = tempfile::tempdir().unwrap();
        let root = format!("{}/", dir.path().display());
        let settings: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        let count = |p: &str| settings.iter().filter(|l| l.contains(p)).count();
        assert_eq!(count("/etc/nats/tls/"), 6, "{node}: TLS files");
        assert_eq!(count("/var/lib/nats/"), 1, "{node}: store");
        let local = text
            .replace("/etc/nats/", &root)
            .replace("/var/lib/nats/", &root);
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        let cert =
            rcgen::generate_simple_self_signed(vec![format!("nats-{node}.example.com")]).unwrap();
        std::fs::write(dir.path().join("tls/node.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls/ca.pem"), cert.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join("tls/node-key.pem"),
            cert.signing_key.serialize_pem(),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            shipped_nats::deploy_nats_dir().join("sitewarden-auth.conf"),
            dir.path().join("sitewarden-auth.conf"),
        )
        .unwrap();
        let config = dir.path().join(format!("nats-{node}.conf"));
        std::fs::write(&config, local).unwrap();

        let (ok, said) = check_config(&config, &env);
        assert!(ok, "{} is not valid: {said}", shipped.display());
        assert!(said.contains("is valid"), "{said}");
        // Without the users' credentials in its environment the node refuses to start, naming
        // the missing variable.
        let (ok, said) = check_config(&config, &env[1..]);
        assert!(!ok, "started without credentials: {said}");
        assert!(said.contains(USERS[0].1), "{said}");
    }
}
