//! The controller end to end on a real nats-server, fed by real agents probing emulated Exchange
//! sites: site1 dies and mail.example.com moves to mail-site2.example.com exactly once; in
//! dry-run the same decision is audited as "would apply" and nothing is written.

use std::sync::Arc;
use std::time::Duration;

use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::engine::{AuditEvent as EngineEvent, ProviderReport};
use sitewarden_controller::provider::DnsProvider;
use sitewarden_controller::provider::budget::RetryPolicy;
use sitewarden_controller::provider::memory::MemoryProvider;
use sitewarden_controller::runtime;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_shared::config::Source;
use sitewarden_tests::config_toml::{
    AlertSink, Api, ApiToken, ControllerTable, ControllerToml, Edge, EdgeWebhook, Ha, NatsTable,
    Provider, SecretFile,
};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::in_process::{RunningAgent, RunningController};
use sitewarden_tests::metrics_page::metric;
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::two_site::{self, TEST_POLICY};
use sitewarden_tests::{DEADLINE, wait_for};

const NAME: &str = "mail.example.com";

struct Lab {
    nats: NatsServer,
    cas: Vec<ExchangeServer>,
    _agents: Vec<RunningAgent>,
    // Agents and controllers with a 3 s lease in this process (sitewarden_tests::machine).
    _machine: tokio::sync::RwLockReadGuard<'static, ()>,
}

async fn lab() -> Lab {
    let machine = sitewarden_tests::machine::share().await;
    let nats = NatsServer::start().await.unwrap();
    let mut cas = Vec::new();
    for i in 0..4 {
        cas.push(
            ExchangeServer::start(ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL")))
                .await
                .unwrap(),
        );
    }
    let mut agents = Vec::new();
    for (id, site) in two_site::AGENTS {
        let mut toml = two_site::agent(
            id,
            site,
            NatsTable::servers([nats.url()]),
            &two_site::four(cas.iter().map(ExchangeServer::addr)),
            Duration::from_millis(500),
            Duration::from_millis(400),
        );
        toml.agent.heartbeat_interval = Some(Duration::from_millis(500));
        agents.push(RunningAgent::start(&toml.render()));
    }
    Lab {
        nats,
        cas,
        _agents: agents,
        _machine: machine,
    }
}

/// The controller of these stories: memory provider, 3 s lease, the fast test policy; its
/// HTTP server `listen`s (or `"off"`).
fn controller_toml(nats: &str, id: &str, dry_run: bool, listen: &str) -> ControllerToml {
    ControllerToml {
        controller: ControllerTable {
            id: id.into(),
            listen: listen.into(),
            dry_run: Some(dry_run),
            tick: Some(Duration::from_millis(100)),
            ..ControllerTable::default()
        },
        nats: NatsTable::servers([nats]),
        provider: Provider::Memory,
        ha: Some(Ha {
            lease: Duration::from_secs(3),
        }),
        decisions: two_site::decisions(Some(TEST_POLICY), NAME),
        ..ControllerToml::default()
    }
}

/// A local webhook receiver: every POST body is kept.
async fn receiver() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, bodies)
}

const EDGE_SECRET: &str = "edge-secret-3c9f0a1b7d2e";

/// A local edge-webhook receiver: every POST is kept as (timestamp, signature, body).
async fn signed_receiver() -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
) {
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let k = kept.clone();
    let app = axum::Router::new().route(
        "/edge",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let k = k.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                k.lock().unwrap().push((
                    h(sitewarden_controller::edge::TIMESTAMP_HEADER),
                    h(sitewarden_controller::edge::SIGNATURE_HEADER),
                    body,
                ));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, kept)
}

/// A controller of these stories and the records it writes.
struct Controller {
    provider: Arc<MemoryProvider>,
    running: RunningController,
}

impl std::ops::Deref for Controller {
    type Target = RunningController;
    fn deref(&self) -> &RunningController {
        &self.running
    }
}

fn start_controller(toml: &ControllerToml) -> Controller {
    let provider = Arc::new(MemoryProvider::new(RetryPolicy::default()));
    provider.insert(
        NAME,
        "mail-rr.example.com",
        Some("sitewarden epoch=0 gen=0"),
    );
    start_controller_with(toml, provider)
}

fn start_controller_with(toml: &ControllerToml, provider: Arc<MemoryProvider>) -> Controller {
    let running = RunningController::start(
        &toml.render(),
        Some(provider.clone() as Arc<dyn DnsProvider>),
    );
    Controller { provider, running }
}

fn content(p: &MemoryProvider) -> Option<String> {
    p.record(NAME).and_then(|r| r.content)
}

async fn audit_kinds(nats: &NatsServer) -> Vec<String> {
    sitewarden_tests::audit::records(&nats.url())
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.event.kind(),
                serde_json::to_value(&r.event).unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_two_healthy_sites_when_site1_dies_then_mail_moves_to_site2_once() {
    let lab = lab().await;
    let http = sitewarden_tests::free_addr();
    let (hook, alerts) = receiver().await;
    let url_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(url_file.path(), format!("http://{hook}/hook")).unwrap();
    let (edge_hook, notices) = signed_receiver().await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), EDGE_SECRET).unwrap();
    let mut toml = controller_toml(&lab.nats.url(), "ctl-a", false, &http.to_string());
    toml.alerts.push(AlertSink {
        kind: "webhook".into(),
        url: SecretFile::at(url_file.path()),
        min_severity: "warning".into(),
    });
    toml.edge = Some(Edge {
        webhooks: vec![EdgeWebhook {
            name: "haproxy-site2".into(),
            url: format!("http://{edge_hook}/edge"),
            secret: SecretFile::at(secret_file.path()),
        }],
    });
    let c = start_controller(&toml);
    wait_for("controller acting", DEADLINE, || async {
        (c.metrics.acting.get() == 1).then_some(())
    })
    .await
    .unwrap();
    let ready = reqwest::get(format!("http://{http}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        metric(http, "sitewarden_controller_acting", "").await,
        Some(1.0)
    );
    // Healthy: nothing to change.
    assert_eq!(content(&c.provider).as_deref(), Some("mail-rr.example.com"));

    for cas in &lab.cas[..2] {
        cas.set(Behaviour::Down).await.unwrap();
    }
    let moved = wait_for("mail moved to site2", DEADLINE, || async {
        (content(&c.provider).as_deref() == Some("mail-site2.example.com")).then_some(())
    })
    .await;
    assert!(moved.is_ok(), "audit: {:#?}", audit_kinds(&lab.nats).await);
    assert_eq!(c.provider.writes(), 1, "exactly one write");
    // The humans were told, through the configured webhook sink.
    wait_for("an alert about site1 at the webhook", DEADLINE, || async {
        alerts
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.contains("site1"))
            .then_some(())
    })
    .await
    .unwrap();
    let record = c.provider.record(NAME).unwrap();
    let marker = record.marker.expect("our marker on the record");
    assert!(marker.epoch > 0 && marker.generation > 0, "{marker:?}");

    // The edge heard it: a signed webhook, and the latest notification kept in KV.
    let site1_down = |n: &serde_json::Value| n["verdicts"]["site1"] == "down";
    let body = wait_for("a signed edge notice with site1 down", DEADLINE, || async {
        notices.lock().unwrap().iter().find_map(|(ts, sig, body)| {
            let n: serde_json::Value = serde_json::from_str(body).ok()?;
            site1_down(&n).then(|| (ts.clone(), sig.clone(), body.clone()))
        })
    })
    .await
    .unwrap();
    sitewarden_controller::edge::verify(
        EDGE_SECRET.as_bytes(),
        &body.0,
        body.2.as_bytes(),
        &body.1,
        chrono::Utc::now(),
        sitewarden_controller::edge::DEFAULT_REPLAY_WINDOW,
    )
    .unwrap();
    let kv = async_nats::jetstream::new(async_nats::connect(lab.nats.url()).await.unwrap())
        .get_key_value("sitewarden-edge")
        .await
        .unwrap();
    let latest: serde_json::Value =
        serde_json::from_slice(&kv.get("latest").await.unwrap().unwrap()).unwrap();
    assert!(site1_down(&latest), "{latest}");
    assert_eq!(latest["epoch"], marker.epoch, "{latest}");

    // More evidence keeps arriving; the decision does not flap or repeat.
    let seen = c.metrics.events_accepted.get();
    wait_for("more events", DEADLINE, || async {
        (c.metrics.events_accepted.get() > seen + 30).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(c.provider.writes(), 1, "no second write");
    let kinds = audit_kinds(&lab.nats).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.starts_with("apply_applied "))
            .count(),
        1,
        "{kinds:#?}"
    );
    assert!(
        kinds.iter().any(|k| k.starts_with("intent ")),
        "intent recorded before the apply"
    );
    c.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_dry_run_when_site1_dies_then_the_move_is_audited_and_nothing_is_written() {
    let lab = lab().await;
    let c = start_controller(&controller_toml(&lab.nats.url(), "ctl-dry", true, "off"));
    wait_for("controller acting", DEADLINE, || async {
        (c.metrics.acting.get() == 1).then_some(())
    })
    .await
    .unwrap();
    for cas in &lab.cas[..2] {
        cas.set(Behaviour::Down).await.unwrap();
    }
    let nats = &lab.nats;
    wait_for("would_apply audited", DEADLINE, || async {
        audit_kinds(nats)
            .await
            .into_iter()
            .any(|k| k.starts_with("would_apply ") && k.contains("mail-site2.example.com"))
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(c.provider.writes(), 0);
    // `plan` replays the same health picture and reads the same record: it would move mail to
    // site2 and says why, and it changes nothing.
    let src = Source::inline(
        "controller.toml",
        controller_toml(&lab.nats.url(), "ctl-plan", false, "off").render(),
    );
    let plan = runtime::plan::plan(
        ControllerConfig::load(&src).unwrap(),
        &RuntimeSettings::load(&src).unwrap(),
        c.provider.as_ref(),
    )
    .await
    .unwrap();
    assert!(plan.events > 0, "{plan:?}");
    assert_eq!(plan.changes.len(), 1, "{plan:?}");
    assert_eq!(plan.changes[0].target, "mail-site2.example.com");
    assert_eq!(
        plan.changes[0].current.as_deref(),
        Some("mail-rr.example.com")
    );
    assert!(
        plan.explanations.iter().any(|e| e.contains("site1")),
        "{plan:?}"
    );
    assert_eq!(c.provider.writes(), 0);
    assert_eq!(content(&c.provider).as_deref(), Some("mail-rr.example.com"));
    c.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_pair_when_the_leader_crashes_then_the_standby_takes_over_and_moves_mail_once() {
    let lab = lab().await;
    let provider = Arc::new(MemoryProvider::new(RetryPolicy::default()));
    provider.insert(
        NAME,
        "mail-rr.example.com",
        Some("sitewarden epoch=0 gen=0"),
    );
    let a = start_controller_with(
        &controller_toml(&lab.nats.url(), "ctl-a", false, "off"),
        provider.clone(),
    );
    let b = start_controller_with(
        &controller_toml(&lab.nats.url(), "ctl-b", false, "off"),
        provider.clone(),
    );
    let a_leads = wait_for("exactly one controller acting", DEADLINE, || async {
        match (a.metrics.acting.get(), b.metrics.acting.get()) {
            (1, 0) => Some(true),
            (0, 1) => Some(false),
            _ => None,
        }
    })
    .await
    .unwrap();
    let (leader, standby) = if a_leads { (a, b) } else { (b, a) };
    let first_epoch = leader.metrics.epoch.get();

    // Crash: the task is aborted, the lease is not released; it expires.
    leader.handle.abort();
    let crashed = tokio::time::Instant::now();
    wait_for("standby acting", DEADLINE, || async {
        (standby.metrics.acting.get() == 1).then_some(())
    })
    .await
    .unwrap();
    let takeover = crashed.elapsed();
    assert!(
        takeover <= Duration::from_secs(4),
        "takeover took {takeover:?} with a 3s lease"
    );
    assert!(
        standby.metrics.epoch.get() > first_epoch,
        "a new epoch fences the old leader"
    );

    for cas in &lab.cas[..2] {
        cas.set(Behaviour::Down).await.unwrap();
    }
    wait_for("mail moved by the new leader", DEADLINE, || async {
        (content(&provider).as_deref() == Some("mail-site2.example.com")).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(provider.writes(), 1);
    let marker = provider.record(NAME).and_then(|r| r.marker).unwrap();
    assert_eq!(
        i64::try_from(marker.epoch).unwrap(),
        standby.metrics.epoch.get(),
        "written under the new epoch"
    );
    standby.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_builtin_dns_when_site1_dies_then_dig_sees_mail_move_to_site2() {
    let lab = lab().await;
    let dns_addr = sitewarden_tests::free_addr();
    let fqdn = "mail.failover.example.com";
    let mut toml = controller_toml(&lab.nats.url(), "ctl-dns", false, "off");
    toml.provider = Provider::Builtin {
        zone: "failover.example.com".into(),
        listen: dns_addr.to_string(),
        nameservers: vec!["ns1.failover.example.com".into()],
        soa_email: "hostmaster@example.com".into(),
    };
    toml.decisions.namespaces[0].name = fqdn.into();
    // The record is created once, before the controller first starts, as docs/install.md does
    // it: `sitewarden-controller zone create` with the same config. Sitewarden then moves it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.toml");
    std::fs::write(&config, toml.render()).unwrap();
    let created =
        std::process::Command::new(sitewarden_tests::workspace_binary("sitewarden-controller"))
            .args(["zone", "create", "--config"])
            .arg(&config)
            .output()
            .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let c = RunningController::start(&toml.render(), None);
    let metrics = &c.metrics;
    wait_for("the built-in server answers", DEADLINE, || async {
        (sitewarden_tests::dig_cname(dns_addr, fqdn) == "mail-rr.example.com").then_some(())
    })
    .await
    .unwrap();
    wait_for("controller acting", DEADLINE, || async {
        (metrics.acting.get() == 1).then_some(())
    })
    .await
    .unwrap();
    for cas in &lab.cas[..2] {
        cas.set(Behaviour::Down).await.unwrap();
    }
    wait_for("dig sees mail on site2", DEADLINE, || async {
        (sitewarden_tests::dig_cname(dns_addr, fqdn) == "mail-site2.example.com").then_some(())
    })
    .await
    .unwrap();
    // The propagation watch asked the zone's server and recorded that it answers.
    let watched = wait_for("the propagation record", DEADLINE, || async {
        sitewarden_tests::audit::records(&lab.nats.url())
            .await
            .into_iter()
            .find_map(|r| match r.event.engine()? {
                EngineEvent::Provider(p @ ProviderReport::Propagation { .. }) => Some(p.clone()),
                _ => None,
            })
    })
    .await
    .unwrap();
    let ProviderReport::Propagation {
        converged, target, ..
    } = &watched
    else {
        unreachable!("found as a propagation report")
    };
    assert!(*converged, "{watched:?}");
    assert_eq!(target, "mail-site2.example.com", "{watched:?}");
    c.stop().await;
}

/// The names of the mass-move story: more than the engine announces one by one
/// (`sitewarden_engine::FOLD_AT`).
const MASS: usize = 24;

fn mass_name(i: usize) -> String {
    format!("svc{i}.example.com")
}

/// The read token of the mass-move story's API.
const READ_TOKEN: &str = "mass-move-reader-token-5d2a77";

/// `GET /api/v1/status?names=all` as JSON, as a read-only client asks it.
async fn status(http: std::net::SocketAddr) -> Option<serde_json::Value> {
    reqwest::Client::new()
        .get(format!("http://{http}/api/v1/status?names=all"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_many_names_when_site1_dies_into_a_rate_limit_then_status_lists_them_until_the_retry_moves_all()
 {
    use sitewarden_tests::cloudflare::{CloudflareEmulator, Fault, Match};
    const TOKEN: &str = "cf-mass-move-token-91c4";
    const BLOCK_S: u64 = 4;
    let lab = lab().await;
    let cf = CloudflareEmulator::start(TOKEN).await.unwrap();
    let zone = cf.add_zone("example.com");
    for i in 0..MASS {
        cf.add_cname(
            &zone,
            &mass_name(i),
            "mail-rr.example.com",
            60,
            false,
            Some("sitewarden epoch=0 gen=0"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("cloudflare.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let (hook, alerts) = receiver().await;
    let url_file = dir.path().join("hook.url");
    std::fs::write(&url_file, format!("http://{hook}/hook")).unwrap();
    let http = sitewarden_tests::free_addr();
    let mut toml = controller_toml(&lab.nats.url(), "ctl-mass", false, &http.to_string());
    // A call waits out a rate limit for a second at most: the block below outlasts it, so
    // the names fail and the engine's retry schedule takes over.
    toml.provider = Provider::Cloudflare {
        zone_id: zone,
        api_token: SecretFile::at(&token),
        api_url: cf.api_url(),
        request_timeout: None,
        retry_deadline: Some(Duration::from_secs(1)),
    };
    toml.decisions.namespaces = (0..MASS)
        .flat_map(|i| two_site::decisions(None, &mass_name(i)).namespaces)
        .collect();
    toml.alerts.push(AlertSink {
        kind: "webhook".into(),
        url: SecretFile::at(&url_file),
        min_severity: "info".into(),
    });
    let read_token = dir.path().join("read.token");
    std::fs::write(&read_token, READ_TOKEN).unwrap();
    toml.api = Some(Api {
        tokens: vec![ApiToken {
            name: "dashboard".into(),
            role: "read".into(),
            token: SecretFile::at(&read_token),
        }],
    });
    let c = RunningController::start(&toml.render(), None);
    // Every record read and both sites Up before site1 dies.
    wait_for("both sites Up", DEADLINE * 2, || async {
        sitewarden_tests::metrics_page::sites_up(&c.metrics.encode(), &["site1", "site2"])
            .then_some(())
    })
    .await
    .unwrap();
    wait_for("every name read", DEADLINE, || async {
        let s = status(http).await?;
        (s["namespaces_total"] == MASS && s["pending_total"] == 0).then_some(())
    })
    .await
    .unwrap();

    // The move's batch starts a rate-limit block: every request is refused for BLOCK_S.
    cf.clear_calls();
    cf.inject(
        Fault::RateLimited {
            retry_after_s: BLOCK_S,
        },
        Match::Batches,
        1,
    );
    for cas in &lab.cas[..2] {
        cas.set(Behaviour::Down).await.unwrap();
    }
    // The operator's view meanwhile: every name pending, waiting out the rate limit.
    let waiting = wait_for("every name waiting for its retry", DEADLINE, || async {
        let s = status(http).await?;
        let pending = s["pending"].as_array()?;
        (s["pending_total"] == MASS
            && pending.len() == MASS
            && pending.iter().all(|p| {
                p["state"] == "waiting"
                    && p["class"] == "rate_limited"
                    && p["target"] == "mail-site2.example.com"
                    && p["retry_at"].is_string()
            }))
        .then_some(s)
    })
    .await;
    let waiting = match waiting {
        Ok(s) => s,
        Err(e) => panic!("{e}; status: {:#}", status(http).await.unwrap_or_default()),
    };
    let error = waiting["pending"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("DNS provider rate limit hit (retry after "),
        "the error in words, not Rust's: {error}"
    );
    // The listing says where each waiting name is going, not only where it is.
    let svc0 = waiting["namespaces"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["name"] == mass_name(0)))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (svc0["current"].as_str(), svc0["desired"].as_str()),
        (Some("mail-rr.example.com"), Some("mail-site2.example.com")),
        "{svc0:#}"
    );
    for i in 0..MASS {
        assert_eq!(
            cf.record(&mass_name(i)).unwrap().content,
            "mail-rr.example.com",
            "nothing moved during the block"
        );
    }

    // The retry, once the block is over, moves every name in one batch.
    wait_for("every name on mail-site2", DEADLINE * 2, || async {
        (0..MASS)
            .all(|i| {
                cf.record(&mass_name(i))
                    .is_some_and(|r| r.content == "mail-site2.example.com")
            })
            .then_some(())
    })
    .await
    .unwrap();
    wait_for("nothing pending", DEADLINE, || async {
        let s = status(http).await?;
        (s["pending_total"] == 0).then_some(())
    })
    .await
    .unwrap();
    let batches: Vec<u16> = cf
        .calls()
        .iter()
        .filter(|call| call.method == "POST" && call.path.ends_with("/dns_records/batch"))
        .map(|call| call.status)
        .collect();
    // The names' retries fall due together (the block's Retry-After is every name's floor),
    // give or take the engine tick their failure reports straddle: a batch or two.
    let calls: Vec<String> = cf
        .calls()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}",
                c.method,
                c.path,
                c.status,
                c.body["patches"].as_array().map_or(0, Vec::len)
            )
        })
        .collect();
    assert!(
        batches.first() == Some(&429)
            && (2..=3).contains(&batches.len())
            && batches[1..].iter().all(|s| *s == 200),
        "one refused batch, then the retries in one or two: {calls:#?}"
    );

    // The channel heard of the move in a few alerts, not one per name: the move, its first
    // failure, and its end.
    let said = wait_for("the mass move's end at the webhook", DEADLINE, || async {
        let bodies = alerts.lock().unwrap().clone();
        bodies
            .iter()
            .any(|b| b.contains("mass move done"))
            .then_some(bodies)
    })
    .await
    .unwrap();
    let about = |what: &str| said.iter().filter(|b| b.contains(what)).count();
    assert_eq!(about(&format!("moving {MASS} names from")), 1, "{said:#?}");
    assert_eq!(about("changes are failing"), 1, "{said:#?}");
    assert_eq!(
        about(&format!("all {MASS} names applied and verified")),
        1,
        "{said:#?}"
    );
    // The move's own alerts are folded: none of its names is decided, applied, failed or
    // resolved on its own, the retries included. (While site1 goes down on a loaded machine the
    // names may pass through a moment of Unknown and alert fail-static one by one: not the
    // move's alerts, and not folded.)
    let per_name = said
        .iter()
        .filter(|b| {
            b.contains("\"subject\":\"svc")
                && ["dns_decided", "dns_applied", "apply_failed", "resolved"]
                    .iter()
                    .any(|kind| b.contains(&format!("\"kind\":\"{kind}\"")))
        })
        .count();
    assert_eq!(
        per_name, 0,
        "nothing of the move name by name, the retries included: {said:#?}"
    );
    c.stop().await;
}
