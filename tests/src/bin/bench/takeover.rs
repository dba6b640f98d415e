//! `takeover`: the leader is killed (SIGKILL) → the standby acts.
//!
//! Each trial: a nats-server and two `sitewarden-controller run` processes (memory provider,
//! default lease 10 s unless `--lease` is given). Once exactly one acts, it is killed; the
//! figure is the time until the standby's `sitewarden_controller_acting` gauge reads 1
//! (sampled every 10 ms), the moment it may issue its first provider write. Trials run in
//! parallel, each on its own bus.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::signals::{self, Signal};
use tokio::process::{Child, Command};

use crate::rig;

pub async fn run(trials: usize, lease_s: u64, binary: PathBuf) -> anyhow::Result<()> {
    let results = futures::future::join_all((0..trials).map(|_| trial(lease_s, &binary))).await;
    let mut samples = Vec::new();
    for r in results {
        let s = r?;
        eprintln!("takeover trial: {s:.3} s");
        samples.push(s);
    }
    let s = rig::summary(&mut samples)?;
    println!(
        "{}",
        serde_json::json!({
            "takeover_trials": trials,
            "lease_s": lease_s,
            "takeover_min_s": rig::round(s.min, 3),
            "takeover_s": rig::round(s.p50, 3),
            "takeover_max_s": rig::round(s.max, 3),
            "takeover_target_s": lease_s + 1,
        })
    );
    Ok(())
}

struct Proc {
    http: SocketAddr,
    child: Child,
}

async fn acting(http: SocketAddr) -> Option<bool> {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("sitewarden_controller_acting "))?;
    Some(line.ends_with(" 1"))
}

async fn trial(lease_s: u64, binary: &Path) -> anyhow::Result<f64> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let mut procs = Vec::new();
    for id in ["ctl-a", "ctl-b"] {
        let http = rig::free_addr();
        let toml = rig::controller_head(id, &nats.url(), &http.to_string(), "kind = \"memory\"")
            + &format!("\n[ha]\nlease = \"{lease_s}s\"\n")
            + &sitewarden_tests::two_site::decisions(None, "mail.example.com").render();
        let path = dir.path().join(format!("{id}.toml"));
        std::fs::write(&path, toml)?;
        let log = std::fs::File::create(dir.path().join(format!("{id}.log")))?;
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
        procs.push(Proc { http, child });
    }
    let leader =
        sitewarden_tests::wait_for("one acting controller", Duration::from_secs(60), || async {
            let a = acting(procs[0].http).await?;
            let b = acting(procs[1].http).await?;
            match (a, b) {
                (true, false) => Some(0usize),
                (false, true) => Some(1),
                _ => None,
            }
        })
        .await?;
    let standby = 1 - leader;
    let pid = procs[leader].child.id().context("leader exited")?;
    let killed = Instant::now();
    signals::send(pid, Signal::Kill).await?;
    let http = procs[standby].http;
    let deadline = Duration::from_secs(lease_s * 3 + 10);
    loop {
        if acting(http).await == Some(true) {
            break;
        }
        anyhow::ensure!(
            killed.elapsed() < deadline,
            "the standby did not take over within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = killed.elapsed().as_secs_f64();
    for p in &mut procs {
        let _ = p.child.kill().await;
    }
    Ok(took)
}
