//! `sitewarden-demo`: the README's first command — a real two-site failover, end to end, on
//! loopback and embedded defaults.
//!
//! Starts a real nats-server, two emulated Exchange sites (two HTTPS client-access servers each,
//! certificates from a throw-away CA), three agents (site1, site2, witness), the controller
//! with its built-in authoritative DNS server for `failover.example.com`, and a local webhook
//! that receives the alerts. Then it narrates: both sites healthy (`dig` shows
//! mail.failover.example.com → mail-rr), site1's client-access servers die, the controller
//! confirms and moves the CNAME to mail-site2 (timed from the fault to the DNS answer), the
//! alert and the edge notification are shown, site1 recovers and the name fails back after the
//! (shortened) stable window. Everything is cleaned up on exit; the last line is a JSON summary.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sitewarden_agent::AgentConfig;
use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::runtime::metrics::Metrics;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_controller::runtime::{self, Runtime};
use sitewarden_shared::config::Source;
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer, TestCa};
use sitewarden_tests::nats_server::{NatsServer, free_port};
use tokio_util::sync::CancellationToken;

const NAME: &str = "mail.failover.example.com";
const SANS: [&str; 4] = [
    "mail.example.com",
    "mail-rr.example.com",
    "mail-site1.example.com",
    "mail-site2.example.com",
];
const INTERVAL_S: f64 = 2.0;
const FALL: u32 = 3;

fn say(start: Instant, text: &str) {
    println!("[{:>6.2}s] {text}", start.elapsed().as_secs_f64());
}

fn dig(server: SocketAddr, name: &str) -> String {
    std::process::Command::new("dig")
        .args([
            format!("@{}", server.ip()),
            "-p".into(),
            server.port().to_string(),
            name.into(),
            "CNAME".into(),
            "+short".into(),
            "+norecurse".into(),
            "+time=1".into(),
            "+tries=1".into(),
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_end_matches('.')
                .to_owned()
        })
        .unwrap_or_default()
}

async fn until_dns(server: SocketAddr, want: &str, deadline: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if dig(server, NAME) == want {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < deadline,
            "{NAME} did not become {want} within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn webhook() -> anyhow::Result<(SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>)> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                if let Ok(v) = serde_json::from_str(&body) {
                    kept.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, got))
}

/// `(severity, text)` of every alert in the audit stream recorded at or after `since`.
async fn audit_alerts(url: &str, since: chrono::DateTime<chrono::Utc>) -> Vec<(String, String)> {
    let Ok(client) = async_nats::connect(url).await else {
        return Vec::new();
    };
    let js = async_nats::jetstream::new(client);
    let Ok(stream) = js.get_stream(runtime::audit::AUDIT_STREAM).await else {
        return Vec::new();
    };
    let Ok(consumer) = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
    else {
        return Vec::new();
    };
    let Ok(mut messages) = consumer.messages().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await
    {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) {
            let at = v["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if v["event"]["kind"] == "alert" && at.is_some_and(|t| t >= since) {
                let a = &v["event"]["alert"];
                out.push((
                    a["severity"].as_str().unwrap_or("?").to_owned(),
                    a["text"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        if m.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    out
}

fn agent_toml(id: &str, site: &str, nats: &str, ca: &str, cas: &[ExchangeServer]) -> String {
    format!(
        r#"
[agent]
id = "{id}"
site = "{site}"

[nats]
servers = ["{nats}"]

[defaults]
interval = "2s"
timeout = "1500ms"
ca_file = "{ca}"

[[sites]]
name = "site1"
activesync_url = "https://mail-site1.example.com/Microsoft-Server-ActiveSync"
tls_names = ["mail.example.com", "mail-site1.example.com"]
servers = [{{ name = "cas1", address = "{a1}" }}, {{ name = "cas2", address = "{a2}" }}]

[[sites]]
name = "site2"
activesync_url = "https://mail-site2.example.com/Microsoft-Server-ActiveSync"
tls_names = ["mail.example.com", "mail-site2.example.com"]
servers = [{{ name = "cas3", address = "{a3}" }}, {{ name = "cas4", address = "{a4}" }}]

[[checks]]
name = "eas"
kind = "activesync"
site = "site1"

[[checks]]
name = "eas-x"
kind = "activesync"
site = "site2"
"#,
        a1 = cas[0].addr(),
        a2 = cas[1].addr(),
        a3 = cas[2].addr(),
        a4 = cas[3].addr(),
    )
}

fn controller_toml(
    nats: &str,
    dns: SocketAddr,
    hook_file: &str,
    http: SocketAddr,
    token_file: &str,
) -> String {
    format!(
        r#"
[controller]
id = "controller-site1"
listen = "{http}"

[api]
tokens = [{{ name = "demo", role = "admin", token = {{ file = "{token_file}" }} }}]

[nats]
servers = ["{nats}"]

[provider]
kind = "builtin"
zone = "failover.example.com"
listen = "{dns}"
nameservers = ["ns1.failover.example.com"]
soa_email = "hostmaster@example.com"

[ha]
lease = "3s"

[[alerts]]
kind = "webhook"
url = {{ file = "{hook_file}" }}
min_severity = "warning"

{decisions}"#,
        decisions = sitewarden_tests::lab::two_site_decisions(
            &format!(
                "interval = \"2s\"\nfall = {FALL}\nrise = 3\nhold_down = \"10s\"\nfailback_after = \"15s\"  # shortened for the demo (default 10m)"
            ),
            NAME
        ),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let keep = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--keep") => true,
        Some(other) => {
            eprintln!("unknown argument {other:?}; usage: sitewarden-demo [--keep]");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    say(
        start,
        "starting nats-server (JetStream) and two emulated Exchange sites on 127.0.0.1",
    );
    let nats = NatsServer::start().await?;
    let ca = TestCa::new()?;
    let dir = tempfile::tempdir()?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem())?;
    let mut cas = Vec::new();
    for (i, site) in ["site1", "site1", "site2", "site2"].iter().enumerate() {
        let fqdn = format!("EXCH-{}-{}.CONTOSO.LOCAL", site.to_uppercase(), i % 2 + 1);
        cas.push(
            ExchangeServer::start(ExchangeOptions::new(&fqdn).with_tls(ca.issue(&SANS, 365)?))
                .await?,
        );
        say(
            start,
            &format!("  {site} cas{} https://{} ({fqdn})", i + 1, cas[i].addr()),
        );
    }

    // The record exists once, as with any DNS provider; sitewarden only ever moves it.
    {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
        let store = sitewarden_controller::ha::ensure_bucket(
            &js,
            sitewarden_controller::dns::bucket_spec(1),
        )
        .await?;
        sitewarden_controller::provider::builtin::BuiltinProvider::new(store)
            .create(NAME, "mail-rr.example.com", 60)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let (hook, alerts) = webhook().await?;
    let hook_file = dir.path().join("webhook.url");
    std::fs::write(&hook_file, format!("http://{hook}/alerts"))?;
    let dns: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // A throw-away admin token for the dashboard and the API of this lab only.
    let token = format!(
        "demo-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, &token)?;

    let shutdown = CancellationToken::new();
    let ca_str = ca_path.display().to_string();
    let mut agents = Vec::new();
    for (id, site) in [
        ("site1-agent1", "site1"),
        ("site2-agent1", "site2"),
        ("witness-agent1", "witness"),
    ] {
        let cfg = AgentConfig::from_source(&Source::inline(
            &format!("{id}.toml"),
            agent_toml(id, site, &nats.url(), &ca_str, &cas),
        ))?;
        agents.push(tokio::spawn(sitewarden_agent::run::run(
            cfg,
            shutdown.clone(),
        )));
    }
    say(
        start,
        "agents started in site1, site2 and the witness; each probes both sites every 2s",
    );

    let src = Source::inline(
        "controller.toml",
        controller_toml(
            &nats.url(),
            dns,
            &hook_file.display().to_string(),
            http,
            &token_file.display().to_string(),
        ),
    );
    let metrics = Arc::new(Metrics::new());
    let controller = tokio::spawn(runtime::run(
        Runtime {
            config: ControllerConfig::load(&src)?,
            settings: RuntimeSettings::load(&src)?,
            provider: None,
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    ));
    let edge_client = async_nats::connect(nats.url()).await?;
    let mut edge = edge_client.subscribe(runtime::EDGE_SUBJECT).await?;

    until_dns(dns, "mail-rr.example.com", Duration::from_secs(20)).await?;
    while metrics.acting.get() != 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the controller see both sites Up (rise) before the fault.
    tokio::time::sleep(Duration::from_secs(7)).await;
    say(
        start,
        &format!(
            "controller acting (epoch {}); built-in DNS at {dns}",
            metrics.epoch.get()
        ),
    );
    say(
        start,
        &format!(
            "$ dig @{} -p {} {NAME} CNAME +short  ->  {}",
            dns.ip(),
            dns.port(),
            dig(dns, NAME)
        ),
    );

    say(
        start,
        "FAULT: site1's client-access servers stop answering (connection refused)",
    );
    let killed = Instant::now();
    cas[0].set(Behaviour::Down).await?;
    cas[1].set(Behaviour::Down).await?;
    let failover = killed.elapsed()
        + until_dns(dns, "mail-site2.example.com", Duration::from_secs(60)).await?;
    say(
        start,
        &format!(
            "DNS MOVED: {NAME} -> mail-site2.example.com, {:.2}s after the fault (floor: interval {INTERVAL_S}s x fall {FALL} = {:.0}s)",
            failover.as_secs_f64(),
            INTERVAL_S * f64::from(FALL)
        ),
    );
    say(
        start,
        &format!(
            "$ dig @{} -p {} {NAME} CNAME +short  ->  {}",
            dns.ip(),
            dns.port(),
            dig(dns, NAME)
        ),
    );

    // What the humans were told: every alert the leader raised since the fault, from the audit
    // stream (the webhook sink receives the same alerts, de-duplicated and aggregated).
    let fault_at =
        chrono::Utc::now() - chrono::TimeDelta::from_std(killed.elapsed()).unwrap_or_default();
    let raised = audit_alerts(&nats.url(), fault_at).await;
    for (severity, text) in &raised {
        say(start, &format!("  ALERT [{severity}] {text}"));
    }
    let mut last_edge = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), edge.next()).await {
        last_edge = Some(String::from_utf8_lossy(&msg.payload).into_owned());
    }
    if let Some(e) = &last_edge {
        say(start, &format!("  EDGE {}: {e}", runtime::EDGE_SUBJECT));
    }

    say(
        start,
        "RECOVERY: site1 comes back; failback waits for the stable window (15s in this demo)",
    );
    let recovered = Instant::now();
    cas[0].set(Behaviour::Healthy).await?;
    cas[1].set(Behaviour::Healthy).await?;
    let failback = recovered.elapsed()
        + until_dns(dns, "mail-rr.example.com", Duration::from_secs(90)).await?;
    say(
        start,
        &format!(
            "DNS FAILED BACK: {NAME} -> mail-rr.example.com, {:.2}s after recovery",
            failback.as_secs_f64()
        ),
    );

    let delivered = alerts.lock().unwrap_or_else(|p| p.into_inner()).len();
    say(
        start,
        &format!(
            "{} alerts raised since the fault; {delivered} webhook deliveries (bursts are aggregated)",
            raised.len()
        ),
    );
    let alert_count = raised.len();
    let summary = serde_json::json!({
        "ok": true,
        "failover_s": (failover.as_secs_f64() * 100.0).round() / 100.0,
        "floor_s": INTERVAL_S * f64::from(FALL),
        "flipped_to": "mail-site2.example.com",
        "failback_s": (failback.as_secs_f64() * 100.0).round() / 100.0,
        "alerts": alert_count,
    });
    if keep {
        println!("{summary}");
        println!();
        println!("The lab keeps running (Ctrl-C stops it and cleans up). Explore:");
        println!("  dashboard:  http://{http}/#token={token}");
        println!(
            "  DNS:        dig @{} -p {} {NAME} CNAME +short",
            dns.ip(),
            dns.port()
        );
        println!(
            "  API:        curl -s -H 'Authorization: Bearer {token}' http://{http}/api/v1/status"
        );
        println!(
            "  CLI:        SITEWARDEN_URL=http://{http} SITEWARDEN_TOKEN={token} ./target/release/sitewarden status"
        );
        println!("  metrics:    curl -s http://{http}/metrics");
        println!("  NATS:       {}", nats.url());
        for (i, c) in cas.iter().enumerate() {
            println!(
                "  cas{}:       https://{} (site{})",
                i + 1,
                c.addr(),
                i / 2 + 1
            );
        }
        tokio::signal::ctrl_c().await?;
        say(start, "Ctrl-C: stopping the lab");
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    drop(cas);
    drop(nats);
    say(start, "lab stopped and cleaned up");
    println!("{summary}");
    Ok(())
}
