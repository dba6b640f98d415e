//! `failover`: site1's client access dies → the provider change is issued.
//!
//! Each trial is a fresh lab: a nats-server, four emulated Exchange servers (cas1, cas2 in site1;
//! cas3, cas4 in site2), three real agents (library, in this process) probing every server each
//! second, and an in-process controller with the default policy (interval 1 s, fall 4,
//! min_observers 2) writing through a [`Recorder`]. Once the controller acts and its verdict
//! for both sites is Up (after `rise` passing rounds, as in production where a site has been up
//! long before it fails), and after a random pause of up to one probe interval (so the kill falls anywhere in the
//! probe cycle), site1's servers stop listening; the figure is the time from that moment to the
//! controller's `apply` call for `mail.example.com`. Trials run `parallel` at a time (a lab
//! starts in about a second, so labs are not reused).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sitewarden_controller::provider::DnsProvider;
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::nats_server::NatsServer;

use crate::rig::{self, InProcess, Recorder};

const NAME: &str = "mail.example.com";
/// The agents' probe interval and the policy's (the product default).
const INTERVAL_S: f64 = 1.0;
/// The policy's `fall` (the product default).
const FALL: f64 = 4.0;

pub async fn run(trials: usize, parallel: usize) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    let mut left = trials;
    while left > 0 {
        let n = left.min(parallel.max(1));
        let batch = futures::future::join_all((0..n).map(|_| trial())).await;
        for r in batch {
            let s = r?;
            eprintln!("failover trial: {s:.3} s");
            samples.push(s);
        }
        left -= n;
    }
    let s = rig::summary(&mut samples)?;
    let floor = INTERVAL_S * FALL;
    println!(
        "{}",
        serde_json::json!({
            "failover_trials": trials,
            "failover_min_s": rig::round(s.min, 3),
            "failover_p50_s": rig::round(s.p50, 3),
            "failover_p99_s": rig::round(s.p99, 3),
            "failover_max_s": rig::round(s.max, 3),
            "floor_s": floor,
            "failover_target_p99_s": rig::round(1.15 * floor + 1.0, 3),
        })
    );
    Ok(())
}

/// One fresh lab; returns seconds from the kill to the `apply` call.
async fn trial() -> anyhow::Result<f64> {
    let nats = NatsServer::start().await?;
    let mut cas = Vec::new();
    for i in 0..4 {
        cas.push(
            ExchangeServer::start(ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL"))).await?,
        );
    }
    let addrs = sitewarden_tests::two_site::four(cas.iter().map(ExchangeServer::addr));
    let agents = rig::Agents::start(
        &nats.url(),
        Duration::from_secs(1),
        Duration::from_secs(1),
        |_| addrs,
    )?;
    let rec = Recorder::new();
    rec.inner
        .insert(NAME, "mail-rr.example.com", Some(rig::SEED_COMMENT));
    let http = rig::free_addr();
    let toml = rig::controller_head(
        "bench-failover",
        &nats.url(),
        &http.to_string(),
        "kind = \"memory\"",
    ) + &sitewarden_tests::two_site::decisions(None, NAME).render();
    let mut ctl = InProcess::start(&toml, Some(rec.clone() as Arc<dyn DnsProvider>))?;
    ctl.acting(Duration::from_secs(30)).await?;
    rig::sites_up(&ctl.metrics, &["site1", "site2"], Duration::from_secs(60)).await?;
    // A real failure strikes at any point of the probe cycle. Killed right after the second
    // round, every trial would start at the same phase (the agents start together) and read
    // about the same figure; a uniform delay of up to one interval spreads the kill over it.
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL_S * rand::random::<f64>())).await;
    let killed = Instant::now();
    for c in &cas[..2] {
        c.set(Behaviour::Down).await?;
    }
    let (applied, target) =
        sitewarden_tests::wait_for("the failover apply", Duration::from_secs(60), || async {
            rec.first_apply(NAME)
        })
        .await?;
    anyhow::ensure!(
        target == "mail-site2.example.com",
        "failover went to {target}, not mail-site2.example.com"
    );
    ctl.stop().await;
    agents.stop().await;
    Ok(applied.duration_since(killed).as_secs_f64())
}
