//! `sitewarden-demo`: the README's first command — a real two-site failover, end to end, on
//! loopback and embedded defaults.
//!
//! Starts a 3-node NATS JetStream cluster (one node per location: site1, site2, witness), two
//! emulated Exchange sites (two HTTPS client-access servers each, certificates from a throw-away
//! CA), three agents (site1, site2, witness), the controller pair (one per site, leader lease in
//! JetStream KV), each serving the built-in authoritative DNS for `failover.example.com`, and
//! local receivers for the alert webhook and the signed edge webhook. Then it narrates: both
//! sites healthy (`dig` shows
//! mail.failover.example.com → mail-rr), site1's client-access servers die, the controller
//! confirms and moves the CNAME to mail-site2 (timed from the fault to the DNS answer), the
//! alert and the edge notification are shown, site1 recovers and the name fails back after the
//! (shortened) stable window. Before the fault, the mailbox act ([`mailbox`]): DAG1 runs in the
//! DAG emulator behind the site1 agent's copy-status collector, the edge is told its mailboxes
//! are active in site1, the Exchange admins move them to site2, and the edge notice and
//! `owa.failover.example.com` (`follow = "mailbox"`) follow, timed from the switchover.
//! Everything is cleaned up on exit; the last line is a JSON summary ([`Summary`]).

#[path = "demo/mailbox.rs"]
mod mailbox;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mailbox::{EdgeLog, FOLLOW_NAME, FOLLOW_TARGETS};
use sitewarden_agent::AgentConfig;
use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::runtime::metrics::Metrics;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_controller::runtime::{self, Runtime};
use sitewarden_shared::config::Source;
use sitewarden_tests::dag::Shape;
use sitewarden_tests::demo::{Summary, hundredths};
use sitewarden_tests::dig_cname as dig;
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer, TestCa};
use sitewarden_tests::nats_server::{NatsCluster, free_port};
use sitewarden_tests::receiver::Receiver;
use tokio_util::sync::CancellationToken;

const NAME: &str = "mail.failover.example.com";
const SANS: [&str; 4] = [
    "mail.example.com",
    "mail-rr.example.com",
    "mail-site1.example.com",
    "mail-site2.example.com",
];
const INTERVAL_S: f64 = 1.0;
const FALL: u32 = 4;

fn say(start: Instant, text: &str) {
    println!("[{:>6.2}s] {text}", start.elapsed().as_secs_f64());
}

/// Polls `dig` of `name` on `server` every 50 ms until it answers `want`; returns how long that
/// took, or fails after `deadline`.
async fn until_dns(
    server: SocketAddr,
    name: &str,
    want: &str,
    deadline: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if dig(server, name) == want {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < deadline,
            "{name} did not become {want} within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(severity, text)` of every alert in the audit stream recorded at or after `since`.
async fn audit_alerts(
    urls: &[String],
    since: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    let Ok(client) = async_nats::connect(urls).await else {
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
        if let Ok(r) = serde_json::from_slice::<sitewarden_tests::audit::AuditRecord>(&m.payload)
            && let Some(sitewarden_tests::audit::RuntimeEvent::Alert { alert }) = r.event.runtime()
            && r.at >= since
        {
            let severity = serde_json::to_value(alert.severity).unwrap_or_default();
            out.push((
                severity.as_str().unwrap_or("?").to_owned(),
                alert.text.clone(),
            ));
        }
        if m.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    out
}

/// `urls` as a TOML list, the node of `site` first (each process talks to its own site's node
/// and fails over to the others).
fn nats_list(urls: &[String], sites: &[&str], site: &str) -> String {
    let mut ordered: Vec<(&str, &String)> = sites.iter().copied().zip(urls).collect();
    ordered.sort_by_key(|(s, _)| *s != site);
    ordered
        .iter()
        .map(|(_, u)| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The current verdict code of `site` in a controller's metrics (1 = up).
fn verdict_code(metrics: &Metrics, site: &str) -> Option<f64> {
    let prefix = format!("sitewarden_controller_site_verdict_code{{site=\"{site}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

/// Polls `f` every 50 ms until it holds, or fails naming `what` after `deadline`.
async fn until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !f() {
        anyhow::ensure!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn agent_toml(id: &str, site: &str, nats: &str, ca: &str, cas: &[ExchangeServer]) -> String {
    format!(
        r#"
[agent]
id = "{id}"
site = "{site}"

[nats]
servers = [{nats}]

[defaults]
interval = "1s"
timeout = "1s"
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

/// Where a controller of the demo listens and what it is wired to.
struct Wiring {
    id: String,
    nats: String,
    dns: SocketAddr,
    http: SocketAddr,
    hook_file: String,
    edge_url: String,
    edge_secret_file: String,
    token_file: String,
}

fn controller_toml(w: &Wiring) -> String {
    format!(
        r#"
[controller]
id = "{id}"
listen = "{http}"
replicas = 3

[api]
tokens = [{{ name = "demo", role = "admin", token = {{ file = "{token_file}" }} }}]

[nats]
servers = [{nats}]

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

[[edge.webhooks]]
name = "demo-edge"
url = "{edge_url}"
secret = {{ file = "{edge_secret_file}" }}

{decisions}"#,
        id = w.id,
        http = w.http,
        token_file = w.token_file,
        nats = w.nats,
        dns = w.dns,
        hook_file = w.hook_file,
        edge_url = w.edge_url,
        edge_secret_file = w.edge_secret_file,
        decisions = sitewarden_tests::two_site::two_site_decisions_with_dag1(
            &format!(
                "interval = \"1s\"\nfall = {FALL}\nrise = 3\nhold_down = \"10s\"\nfailback_after = \"15s\"  # shortened for the demo (default 10m)"
            ),
            NAME,
            FOLLOW_NAME,
        )
        // The built-in DNS's default TTL (10 s), not the hosted-provider lab's 60 s.
        .replace("ttl = \"60s\"\n", ""),
    )
}

/// The record's TTL: the built-in DNS's default.
fn ttl_secs() -> u64 {
    sitewarden_controller::config::BUILTIN_DEFAULT_TTL.as_secs()
}

/// One controller of the pair, running in this process.
struct Controller {
    id: String,
    dns: SocketAddr,
    http: SocketAddr,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

const SITES: [&str; 3] = ["site1", "site2", "witness"];

/// The lab's directory for its secrets (admin token, edge secret, webhook URL, CA): mode 0700,
/// so other users of a shared host can neither list nor read it while `--keep` runs.
fn private_dir() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("sitewarden-demo-")
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Writes a secret file readable by its owner only (0600 from creation, whatever the umask).
fn write_secret(path: &std::path::Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(contents.as_ref())?;
    Ok(())
}

/// Checks that `dir` is 0700 and every file in it 0600; refuses to go on otherwise.
fn check_private(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    let m = mode(dir)?;
    anyhow::ensure!(
        m == 0o700,
        "{} has mode {m:o}, not 700: other users could list the lab's secrets",
        dir.display()
    );
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        let m = mode(&p)?;
        anyhow::ensure!(
            m == 0o600,
            "{} has mode {m:o}, not 600: other users could read it",
            p.display()
        );
    }
    Ok(())
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
        "starting a 3-node NATS JetStream cluster (site1, site2, witness) and two emulated Exchange sites on 127.0.0.1",
    );
    let cluster = NatsCluster::start_named(&SITES).await?;
    let urls = cluster.urls();
    let ca = TestCa::new()?;
    let dir = private_dir()?;
    let ca_path = dir.path().join("ca.pem");
    write_secret(&ca_path, ca.pem())?;
    // DAG1, read by the site1 agent's collector from a file the emulator rewrites on every
    // change. Not a secret: it lives beside the private directory, not in it.
    let dag = sitewarden_tests::two_site::dag1_emulator();
    let dag_dir = tempfile::Builder::new()
        .prefix("sitewarden-demo-dag1-")
        .tempdir()?;
    let dag_command = dag.as_command(Shape::Ps7, dag_dir.path())?;
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

    // The records exist once, as with any DNS provider; sitewarden only ever moves them.
    {
        let js = async_nats::jetstream::new(async_nats::connect(urls.as_slice()).await?);
        let store = sitewarden_controller::ha::ensure_bucket(
            &js,
            sitewarden_controller::dns::bucket_spec(3),
        )
        .await?;
        let provider = sitewarden_controller::provider::builtin::BuiltinProvider::new(store);
        for (name, target) in [
            (NAME, "mail-rr.example.com"),
            (FOLLOW_NAME, FOLLOW_TARGETS[0]),
        ] {
            provider
                .create(name, target, u32::try_from(ttl_secs()).unwrap_or(60))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let alerts = Receiver::start().await?;
    let edge_hook = Receiver::start().await?;
    let hook_file = dir.path().join("webhook.url");
    write_secret(&hook_file, alerts.url("/alerts"))?;
    let edge_secret_file = dir.path().join("edge.secret");
    write_secret(
        &edge_secret_file,
        format!("demo-edge-{:016x}", rand::random::<u64>()),
    )?;
    // A throw-away admin token for the dashboard and the API of this lab only.
    let token = format!(
        "demo-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let token_file = dir.path().join("api.token");
    write_secret(&token_file, &token)?;
    check_private(dir.path())?;

    let shutdown = CancellationToken::new();
    let ca_str = ca_path.display().to_string();
    let mut agents = Vec::new();
    for (id, site) in [
        ("site1-agent1", "site1"),
        ("site2-agent1", "site2"),
        ("witness-agent1", "witness"),
    ] {
        let mut toml = agent_toml(id, site, &nats_list(&urls, &SITES, site), &ca_str, &cas);
        if site == "site1" {
            toml.push_str(&mailbox::dbcopy_toml(dag_command.clone()));
        }
        let cfg = AgentConfig::from_source(&Source::inline(&format!("{id}.toml"), toml))?;
        agents.push(tokio::spawn(sitewarden_agent::run::run(
            cfg,
            shutdown.clone(),
        )));
    }
    say(
        start,
        &format!(
            "agents started in site1, site2 and the witness; each probes both sites every {INTERVAL_S}s, \
             the site1 agent also reads DAG1's database copy status (DAG emulator) every 1s"
        ),
    );
    // Every edge notice from here on, with when it arrived (before any controller can act).
    let edge_client = async_nats::connect(urls.as_slice()).await?;
    let edge = EdgeLog::subscribe(&edge_client).await?;

    let mut controllers = Vec::new();
    for site in ["site1", "site2"] {
        let w = Wiring {
            id: format!("controller-{site}"),
            nats: nats_list(&urls, &SITES, site),
            dns: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            hook_file: hook_file.display().to_string(),
            edge_url: edge_hook.url("/edge"),
            edge_secret_file: edge_secret_file.display().to_string(),
            token_file: token_file.display().to_string(),
        };
        let src = Source::inline(&format!("{}.toml", w.id), controller_toml(&w));
        let metrics = Arc::new(Metrics::new());
        let task = tokio::spawn(runtime::run(
            Runtime {
                config: ControllerConfig::load(&src)?,
                settings: RuntimeSettings::load(&src)?,
                provider: None,
                metrics: metrics.clone(),
            },
            shutdown.clone(),
        ));
        controllers.push(Controller {
            id: w.id,
            dns: w.dns,
            http: w.http,
            metrics,
            task,
        });
    }

    let dns = controllers[0].dns;
    // Both controllers answer for the zone before the story starts, the standby too.
    for c in &mut controllers {
        if let Err(e) = until_dns(c.dns, NAME, "mail-rr.example.com", Duration::from_secs(30)).await
        {
            let why = if c.task.is_finished() {
                match (&mut c.task).await {
                    Ok(Ok(())) => "the controller stopped".to_owned(),
                    Ok(Err(e)) => format!("the controller stopped: {e:#}"),
                    Err(e) => format!("the controller stopped: {e}"),
                }
            } else {
                "the controller is still starting".to_owned()
            };
            anyhow::bail!("{}'s built-in DNS on {}: {e}; {why}", c.id, c.dns);
        }
    }
    until("one acting controller", Duration::from_secs(30), || {
        controllers
            .iter()
            .filter(|c| c.metrics.acting.get() == 1)
            .count()
            == 1
    })
    .await?;
    let leader = controllers
        .iter()
        .position(|c| c.metrics.acting.get() == 1)
        .unwrap_or(0);
    // Both sites Up (rise) in the leader's eyes before the fault.
    let lm = controllers[leader].metrics.clone();
    until("both sites Up", Duration::from_secs(30), || {
        verdict_code(&lm, "site1") == Some(1.0) && verdict_code(&lm, "site2") == Some(1.0)
    })
    .await?;
    say(
        start,
        &format!(
            "{} acting (epoch {}), {} standing by; both serve DNS: {} and {}",
            controllers[leader].id,
            lm.epoch.get(),
            controllers[1 - leader].id,
            controllers[0].dns,
            controllers[1].dns
        ),
    );
    say(start, "both sites Up in the leader's view");
    say(
        start,
        &format!(
            "$ dig @{} -p {} {NAME} CNAME +short  ->  {}",
            dns.ip(),
            dns.port(),
            dig(dns, NAME)
        ),
    );

    let mailboxes = mailbox::act(&mailbox::Stage {
        start,
        dag: &dag,
        edge: &edge,
        dns: &controllers
            .iter()
            .map(|c| (c.id.clone(), c.dns))
            .collect::<Vec<_>>(),
        urls: &urls,
    })
    .await?;

    say(
        start,
        "FAULT: site1's client-access servers stop answering (connection refused)",
    );
    let killed = Instant::now();
    cas[0].set(Behaviour::Down).await?;
    cas[1].set(Behaviour::Down).await?;
    let failover = killed.elapsed()
        + until_dns(dns, NAME, "mail-site2.example.com", Duration::from_secs(60)).await?;
    say(
        start,
        &format!(
            "DNS MOVED: {NAME} -> mail-site2.example.com, {:.2}s after the fault (fall {FALL} failed probes {INTERVAL_S}s apart: {:.0}-{:.0}s)",
            failover.as_secs_f64(),
            INTERVAL_S * f64::from(FALL - 1),
            INTERVAL_S * f64::from(FALL)
        ),
    );
    // What a client behind a caching resolver sees: the resolver keeps the old answer for at
    // most the record's TTL after the authoritative change (measured behind unbound in
    // BENCHMARKS.md, "Peers").
    let client_worst = failover.as_secs_f64() + ttl_secs() as f64;
    say(
        start,
        &format!(
            "CLIENTS: behind a caching resolver, within {client_worst:.2}s of the fault at worst \
             ({:.2}s authoritative + the record's TTL of {}s)",
            failover.as_secs_f64(),
            ttl_secs()
        ),
    );
    for c in &controllers {
        say(
            start,
            &format!(
                "$ dig @{} -p {} {NAME} CNAME +short  ->  {}   ({})",
                c.dns.ip(),
                c.dns.port(),
                dig(c.dns, NAME),
                c.id
            ),
        );
    }

    // What the humans were told: every alert the leader raised since the fault, from the audit
    // stream (the webhook sink receives the same alerts, de-duplicated and aggregated).
    let fault_at =
        chrono::Utc::now() - chrono::TimeDelta::from_std(killed.elapsed()).unwrap_or_default();
    let raised = audit_alerts(&urls, fault_at).await;
    for (severity, text) in &raised {
        say(start, &format!("  ALERT [{severity}] {text}"));
    }
    if let Some(e) = edge.latest() {
        say(start, &format!("  EDGE {}: {e}", runtime::EDGE_SUBJECT));
    }
    say(
        start,
        &format!(
            "  EDGE webhook: {} signed notices delivered to {}",
            edge_hook.len(),
            edge_hook.url("/edge")
        ),
    );

    say(
        start,
        "RECOVERY: site1 comes back; failback waits for the stable window (15s in this demo)",
    );
    let recovered = Instant::now();
    cas[0].set(Behaviour::Healthy).await?;
    cas[1].set(Behaviour::Healthy).await?;
    let failback = recovered.elapsed()
        + until_dns(dns, NAME, "mail-rr.example.com", Duration::from_secs(90)).await?;
    say(
        start,
        &format!(
            "DNS FAILED BACK: {NAME} -> mail-rr.example.com, {:.2}s after recovery",
            failback.as_secs_f64()
        ),
    );

    say(
        start,
        &format!(
            "{} alerts raised since the fault; {} webhook deliveries (bursts are aggregated)",
            raised.len(),
            alerts.len()
        ),
    );
    let summary = Summary {
        ok: true,
        name: NAME.into(),
        failover_s: hundredths(failover.as_secs_f64()),
        ttl_s: ttl_secs(),
        client_visible_worst_s: hundredths(client_worst),
        // The first failed probe comes 0-1 interval after the fault, the fall-th one fall - 1
        // intervals later: no failover can be faster than this.
        floor_s: INTERVAL_S * f64::from(FALL - 1),
        flipped_to: "mail-site2.example.com".into(),
        failback_s: hundredths(failback.as_secs_f64()),
        alerts: raised.len(),
        leader: controllers[leader].id.clone(),
        nats_nodes: urls.len(),
        edge_webhooks: edge_hook.len(),
        dag: sitewarden_tests::two_site::DAG1.into(),
        mailbox_site_before: mailboxes.site_before,
        mailbox_site_after: mailboxes.site_after,
        follow_name: FOLLOW_NAME.into(),
        follow_target_before: FOLLOW_TARGETS[0].into(),
        follow_target_after: FOLLOW_TARGETS[1].into(),
        switchover_to_edge_s: hundredths(mailboxes.to_edge.as_secs_f64()),
        switchover_to_follow_s: hundredths(mailboxes.to_follow.as_secs_f64()),
    };
    let summary = serde_json::to_string(&summary)?;
    if keep {
        let http = controllers[leader].http;
        println!("{summary}");
        println!();
        println!("The lab keeps running (Ctrl-C stops it and cleans up). Explore:");
        println!("  dashboard:  http://{http}/#token={token}");
        for c in &controllers {
            for name in [NAME, FOLLOW_NAME] {
                println!(
                    "  DNS:        dig @{} -p {} {name} CNAME +short   ({})",
                    c.dns.ip(),
                    c.dns.port(),
                    c.id
                );
            }
        }
        println!(
            "  API:        curl -s -H 'Authorization: Bearer {token}' http://{http}/api/v1/status"
        );
        println!(
            "  CLI:        SITEWARDEN_TOKEN={token} ./target/release/sitewarden --url http://{} --url http://{} status",
            controllers[0].http, controllers[1].http
        );
        println!("  metrics:    curl -s http://{http}/metrics");
        println!(
            "  secrets:    {} (mode 0700; token, edge secret, webhook URL 0600)",
            dir.path().display()
        );
        println!("  NATS:       {}", urls.join(" "));
        println!(
            "  DAG1:       {}   (the copy status the site1 agent reads)",
            dag_command.last().map_or("", String::as_str)
        );
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
    for c in controllers {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.task).await;
    }
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    drop(edge);
    drop(cas);
    drop(dag);
    drop(cluster);
    say(start, "lab stopped and cleaned up");
    println!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_0600_in_a_0700_directory_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir().unwrap();
        for (name, secret) in [("api.token", "demo-token"), ("edge.secret", "demo-edge")] {
            write_secret(&dir.path().join(name), secret).unwrap();
        }
        check_private(dir.path()).unwrap();
        // A file written the ordinary way (0644 under the usual umask) is caught.
        let loose = dir.path().join("loose");
        std::fs::write(&loose, "x").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_private(dir.path()).unwrap_err().to_string();
        assert!(err.contains("loose") && err.contains("644"), "{err}");
        // Writing a secret never follows or reuses an existing file.
        assert!(write_secret(&loose, "y").is_err());
    }
}
