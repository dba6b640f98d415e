//! `controller-memory`: resident memory of a `sitewarden-controller run` process tracking
//! `keys` observer × check keys.
//!
//! The config has two sites of `servers` servers each and 10 agents; every agent reports 10
//! checks of every server (protocol activesync), so agents × servers × checks = `keys`. This
//! process publishes three rounds of every key, waits until the controller's
//! `events_accepted` counter has them all, lets it settle and reads `VmRSS` from /proc.

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

pub async fn run(keys: usize, binary: PathBuf) -> anyhow::Result<()> {
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
    let mut child = Command::new(&binary)
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
    let idle_kb = rig::rss_kb(pid)?;

    let client = async_nats::connect(nats.url()).await?;
    let mut seq = [0u64; AGENTS];
    let tracked = AGENTS * CHECKS * server_sites.len();
    for _ in 0..ROUNDS {
        for (a, s) in seq.iter_mut().enumerate() {
            for (site, server) in &server_sites {
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
    let _ = child.kill().await;
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
