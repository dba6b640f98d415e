//! `controller-memory`: resident memory of a `sitewarden-controller run` process tracking
//! `keys` observer × check keys; `controller-idle`: the CPU the same process spends while every
//! key reports healthy every 2 s and nothing happens, at a given `[controller] tick`.
//!
//! The config has two sites of `servers` servers each and 10 agents; every agent reports 10
//! checks of every server (protocol activesync), so agents × servers × checks = `keys`. For
//! memory, this process publishes three rounds of every key, waits until the controller's
//! `events_accepted` counter has them all, lets it settle and reads `VmRSS` from /proc. For
//! idle CPU it publishes a round every 2 s for a warm-up, then reads the process's user + system
//! time from /proc/<pid>/stat across a window of further rounds.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use sitewarden_tests::nats_server::NatsServer;
use tokio::process::Command;

use crate::rig;

const AGENTS: usize = 10;
const CHECKS: usize = 10;
const ROUNDS: usize = 3;

async fn accepted(http: std::net::SocketAddr) -> Option<u64> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("sitewarden_controller_events_accepted_total "))?;
    line.rsplit(' ')
        .next()?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// A running controller tracking `keys` keys, and what to publish for them.
struct Rig {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    child: tokio::process::Child,
    pid: u32,
    http: std::net::SocketAddr,
    nats_url: String,
    server_sites: Vec<(&'static str, String)>,
}

async fn start(keys: usize, binary: &PathBuf, controller_extra: &str) -> anyhow::Result<Rig> {
    let servers = keys.div_ceil(AGENTS * CHECKS).max(2);
    let per_site = servers.div_ceil(2);
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let http = rig::free_addr();
    let mut toml = rig::controller_head(
        "bench-memory",
        &nats.url(),
        &http.to_string(),
        "kind = \"memory\"",
    );
    toml = toml.replacen(
        "[controller]\n",
        &format!("[controller]\n{controller_extra}\n"),
        1,
    );
    toml.push_str("\n[policy]\n\n[[sites]]\nname = \"w\"\n\n");
    let mut server_sites = Vec::new();
    for site in ["site1", "site2"] {
        let names: Vec<String> = (0..per_site).map(|i| format!("{site}-cas{i}")).collect();
        toml.push_str(&format!(
            "[[sites]]\nname = \"{site}\"\nservers = [{}]\n\n",
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        server_sites.extend(names.into_iter().map(|n| (site, n)));
    }
    for a in 0..AGENTS {
        toml.push_str(&format!("[[agents]]\nname = \"mem-{a}\"\nsite = \"w\"\n\n"));
    }
    toml.push_str("[[namespaces]]\nname = \"mail.example.com\"\nttl = \"60s\"\ncandidates = [\n  { target = \"mail-rr.example.com\", requires = [\"site1\", \"site2\"] },\n  { target = \"mail-site1.example.com\", requires = [\"site1\"] },\n  { target = \"mail-site2.example.com\", requires = [\"site2\"] },\n]\n");
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, toml)?;
    let log = std::fs::File::create(dir.path().join("controller.log"))?;
    let child = Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("controller exited at once")?;
    sitewarden_tests::wait_for("the controller's metrics", Duration::from_secs(30), || {
        accepted(http)
    })
    .await?;
    Ok(Rig {
        nats_url: nats.url(),
        _nats: nats,
        _dir: dir,
        child,
        pid,
        http,
        server_sites,
    })
}

/// Publishes one round: every agent reports every check of every server, passing.
async fn publish_round(
    client: &async_nats::Client,
    seq: &mut [u64; AGENTS],
    server_sites: &[(&'static str, String)],
) -> anyhow::Result<()> {
    for (a, s) in seq.iter_mut().enumerate() {
        for (site, server) in server_sites {
            for c in 0..CHECKS {
                *s += 1;
                let (subject, payload) = rig::observation(
                    &format!("mem-{a}"),
                    "w",
                    *s,
                    site,
                    server,
                    &format!("chk{c}"),
                    true,
                );
                client.publish(subject, payload.into()).await?;
            }
        }
    }
    client.flush().await?;
    Ok(())
}

/// `controller-idle`: CPU share of one core while `keys` keys report healthy every 2 s.
pub async fn run_idle(
    keys: usize,
    seconds: u64,
    tick: &str,
    binary: PathBuf,
) -> anyhow::Result<()> {
    let mut rig = start(keys, &binary, &format!("tick = \"{tick}\"")).await?;
    let client = async_nats::connect(rig.nats_url.clone()).await?;
    let mut seq = [0u64; AGENTS];
    let mut every = tokio::time::interval(Duration::from_secs(2));
    // Warm-up: a few rounds so every key is known and the verdicts settle.
    for _ in 0..5 {
        every.tick().await;
        publish_round(&client, &mut seq, &rig.server_sites).await?;
    }
    let before = rig::cpu_seconds(rig.pid)?;
    let started = std::time::Instant::now();
    for _ in 0..seconds.div_ceil(2) {
        every.tick().await;
        publish_round(&client, &mut seq, &rig.server_sites).await?;
    }
    every.tick().await;
    let spent = rig::cpu_seconds(rig.pid)? - before;
    let window = started.elapsed().as_secs_f64();
    let _ = rig.child.kill().await;
    let keys = AGENTS * CHECKS * rig.server_sites.len();
    let mut out = serde_json::Map::new();
    out.insert("controller_idle_keys".into(), keys.into());
    out.insert(
        format!("controller_idle_cpu_percent_tick_{tick}"),
        rig::round(100.0 * spent / window, 2).into(),
    );
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

pub async fn run(keys: usize, binary: PathBuf) -> anyhow::Result<()> {
    let mut rig = start(keys, &binary, "").await?;
    let (pid, http, server_sites) = (rig.pid, rig.http, rig.server_sites.clone());
    let idle_kb = rig::rss_kb(pid)?;

    let client = async_nats::connect(rig.nats_url.clone()).await?;
    let mut seq = [0u64; AGENTS];
    let tracked = AGENTS * CHECKS * server_sites.len();
    for _ in 0..ROUNDS {
        publish_round(&client, &mut seq, &server_sites).await?;
    }
    let expected = (tracked * ROUNDS) as u64;
    sitewarden_tests::wait_for(
        "every observation taken in",
        Duration::from_secs(120),
        || async { accepted(http).await.filter(|n| *n >= expected) },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_kb = rig::rss_kb(pid)?;
    let _ = rig.child.kill().await;
    println!(
        "{}",
        serde_json::json!({
            "controller_keys": tracked,
            "controller_rss_mb_idle": rig::round(idle_kb as f64 / 1024.0, 1),
            "controller_rss_mb_10k_keys": rig::round(rss_kb as f64 / 1024.0, 1),
        })
    );
    Ok(())
}
