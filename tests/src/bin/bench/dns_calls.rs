//! `dns-calls`: Cloudflare API requests per namespace change, verification included.
//!
//! One nats-server, the Cloudflare emulator (which records every request) and an in-process
//! controller with the real Cloudflare provider pointed at the emulator, watching `changes`
//! site pairs through synthetic witness agents. After start-up reads, the emulator's log is
//! cleared; then one site of each pair fails in turn, each namespace moves once, and after a
//! settling pause every request the emulator saw is counted.

use std::time::Duration;

use sitewarden_tests::cloudflare::CloudflareEmulator;
use sitewarden_tests::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::rig::{self, FleetPublisher, InProcess};

const TOKEN: &str = "cf-bench-token-51c0e2";

pub async fn run(changes: usize) -> anyhow::Result<()> {
    let changes = changes.max(1);
    let nats = NatsServer::start().await?;
    let cf = CloudflareEmulator::start(TOKEN).await?;
    let zone = cf.add_zone("example.com");
    for k in 0..changes {
        cf.add_cname(
            &zone,
            &rig::fleet_name(k),
            &rig::fleet_rr(k),
            60,
            false,
            Some(rig::SEED_COMMENT),
        );
    }
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("cloudflare.token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    let http = rig::free_addr();
    let provider = format!(
        "kind = \"cloudflare\"\nzone_id = \"{zone}\"\napi_token = {{ file = \"{}\" }}\napi_url = \"{}\"\n",
        token.display(),
        cf.api_url()
    );
    let toml = rig::controller_head("bench-dns", &nats.url(), &http.to_string(), &provider)
        + &rig::fleet_decisions(changes);
    let mut ctl = InProcess::start(&toml, None)?;
    ctl.acting(Duration::from_secs(30)).await?;
    let fleet = FleetPublisher::connect(&nats.url(), changes).await?;
    let stop = CancellationToken::new();
    fleet.spawn_refresh(Duration::from_secs(1), stop.clone(), None);
    // Two refresh rounds: 3 agents × 2 servers per pair.
    rig::accepted(&ctl.metrics, (12 * changes) as u64, Duration::from_secs(30)).await?;
    // Start-up reads are done once every site is up and a moment has passed; count from here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let startup = cf.calls().len();
    cf.clear_calls();

    for k in 0..changes {
        fleet.set(&format!("cas-{k}-a"), Some(false));
        let name = rig::fleet_name(k);
        let want = format!("b{k}.example.com");
        sitewarden_tests::wait_for(
            &format!("{name} -> {want}"),
            Duration::from_secs(30),
            || async { cf.record(&name).filter(|r| r.content == want).map(|_| ()) },
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = cf.calls();
    stop.cancel();
    ctl.stop().await;
    let writes = calls.iter().filter(|c| c.is_write()).count();
    for c in &calls {
        eprintln!("dns call: {} {} -> {}", c.method, c.path, c.status);
    }
    println!(
        "{}",
        serde_json::json!({
            "dns_changes": changes,
            "dns_startup_calls": startup,
            "dns_api_calls_total": calls.len(),
            "dns_api_writes_per_change": rig::round(writes as f64 / changes as f64, 2),
            "dns_api_calls_per_change": rig::round(calls.len() as f64 / changes as f64, 2),
        })
    );
    Ok(())
}
