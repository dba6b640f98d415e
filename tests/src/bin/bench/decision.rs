//! `decision`: the event that completes the evidence is published → the provider `apply` call.
//!
//! One nats-server and one in-process controller (default policy) watching `trials + 1` site
//! pairs through three synthetic witness agents; this process publishes every observation
//! itself (each server is refreshed every second so nothing goes stale). A calibration run on
//! pair 0 publishes the failing observations of one server slowly to learn which one completes
//! the evidence; each trial then publishes all but that one, waits 50 ms for the controller to
//! take them in, notes the time and publishes the completing one. The figure includes the NATS
//! hop, so it bounds the controller's own receipt → apply time from above.
//!
//! A refresh round is a burst of 3 × 2 × pairs observations (246 with 40 trials). Trials and
//! rounds exclude each other (a round holds the fleet's quiet lock until the controller has
//! accepted its events): a completing event published just behind a round waits in the bus and
//! the controller's intake queue for the whole burst to be taken in first (about 20 µs per event
//! on the 2-core bench machine), which is queueing before receipt, not decision time. Before
//! this, one trial in about 40 landed behind a burst and read 7–9 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sitewarden_controller::provider::DnsProvider;
use sitewarden_tests::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::rig::{self, FLEET_AGENTS, FleetPublisher, InProcess, Recorder};

pub async fn run(trials: usize) -> anyhow::Result<()> {
    let pairs = trials + 1;
    let nats = NatsServer::start().await?;
    let rec = Recorder::new();
    for k in 0..pairs {
        rec.inner.insert(
            &rig::fleet_name(k),
            &rig::fleet_rr(k),
            Some(rig::SEED_COMMENT),
        );
    }
    let http = rig::free_addr();
    let toml = rig::controller_head(
        "bench-decision",
        &nats.url(),
        &http.to_string(),
        "kind = \"memory\"",
    ) + &rig::fleet_decisions(pairs);
    let ctl = InProcess::start(&toml, Some(rec.clone() as Arc<dyn DnsProvider>))?;
    ctl.acting(Duration::from_secs(30)).await?;
    let fleet = FleetPublisher::connect(&nats.url(), pairs).await?;
    let stop = CancellationToken::new();
    fleet.spawn_refresh(
        Duration::from_secs(1),
        stop.clone(),
        Some(ctl.metrics.clone()),
    );
    // Six refresh rounds (3 agents × 2 servers per pair each): every observer has risen
    // (rise 3) and both sites of every pair are Up before the first failure.
    rig::accepted(&ctl.metrics, (36 * pairs) as u64, Duration::from_secs(60)).await?;

    // The failing observations of one server, in publication order.
    let order: Vec<(&str, &str)> = (0..3).flat_map(|_| FLEET_AGENTS).collect();
    let completing = calibrate(&fleet, &rec, &order).await?;
    eprintln!(
        "decision: observation {} of {} completes the evidence",
        completing + 1,
        order.len()
    );

    let mut samples = Vec::new();
    for k in 1..pairs {
        let (site, server, name) = (format!("p{k}a"), format!("cas-{k}-a"), rig::fleet_name(k));
        fleet.set(&server, None);
        // No refresh burst is queued ahead of the trial's events or starts during the trial.
        let quiet = fleet.quiet().await;
        for (agent, agent_site) in &order[..completing] {
            fleet
                .publish(agent, agent_site, &site, &server, false)
                .await?;
        }
        fleet.flush().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        anyhow::ensure!(
            rec.first_apply(&name).is_none(),
            "pair {k} changed before the completing observation"
        );
        let (agent, agent_site) = order[completing];
        let sent = Instant::now();
        fleet
            .publish(agent, agent_site, &site, &server, false)
            .await?;
        fleet.flush().await?;
        let (applied, target) =
            sitewarden_tests::wait_for("the decision's apply", Duration::from_secs(10), || async {
                rec.first_apply(&name)
            })
            .await?;
        anyhow::ensure!(
            target == format!("b{k}.example.com"),
            "pair {k} went to {target}"
        );
        samples.push(applied.duration_since(sent).as_secs_f64() * 1000.0);
        fleet.set(&server, Some(false));
        drop(quiet);
    }
    stop.cancel();
    ctl.stop().await;
    let s = rig::summary(&mut samples)?;
    println!(
        "{}",
        serde_json::json!({
            "decision_trials": trials,
            "decision_min_ms": rig::round(s.min, 3),
            "decision_p50_ms": rig::round(s.p50, 3),
            "decision_p99_ms": rig::round(s.p99, 3),
            "decision_max_ms": rig::round(s.max, 3),
        })
    );
    Ok(())
}

/// Publishes pair 0's failing observations 200 ms apart; returns the index of the one after
/// which the controller applied.
async fn calibrate(
    fleet: &FleetPublisher,
    rec: &Recorder,
    order: &[(&str, &str)],
) -> anyhow::Result<usize> {
    fleet.set("cas-0-a", None);
    let name = rig::fleet_name(0);
    for (i, (agent, agent_site)) in order.iter().enumerate() {
        fleet
            .publish(agent, agent_site, "p0a", "cas-0-a", false)
            .await?;
        fleet.flush().await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if rec.first_apply(&name).is_some() {
            fleet.set("cas-0-a", Some(false));
            return Ok(i);
        }
    }
    anyhow::bail!("nine failing observations did not move {name}")
}
