//! `decision`: the event that completes the evidence is published → the provider `apply` call.
//!
//! One nats-server and one in-process controller (default policy) watching `--pool` (default [`POOL`]) + 1 site
//! pairs through three synthetic witness agents; this process publishes every observation
//! itself (each server is refreshed every 500 ms so nothing goes stale). A calibration run on
//! pair 0 publishes the failing observations of one server slowly to learn which one completes
//! the evidence; each trial then takes the next pair of the pool, publishes all but that one
//! for one side, waits 50 ms for the controller to take them in, notes the time and publishes
//! the completing one. The figure includes the NATS hop, so it bounds the controller's own
//! receipt → apply time from above. The failed side then recovers; the pair's next trial fails
//! the other side once every observer has risen again, and the name moves back
//! (move-away-from-down is an emergency: no hold-down or failback wait).
//!
//! `--names N` adds N names on one more site pair (`pb`, never failed), so a trial measures
//! one name's decision while N + 41 names exist: the engine re-plans only the names an input
//! can change, and the runtime's per-tick work (metrics, the API snapshot) grows with N. Their
//! fields are `decision_names_*` instead of `decision_*`.
//!
//! The pool keeps the deployment at 40 pairs however many trials run. Before, every trial had a
//! fresh pair, so 200 trials meant 201 pairs (402 sites, 201 names), and the engine loop's tick
//! (every 250 ms: engine recount 2–2.6 ms, metrics 1 ms, the API's state snapshot about 4 ms)
//! held events up to 8 ms: p99 10.4 ms at 200 trials against 3.1 ms at 40.
//!
//! A refresh round is a burst of 3 × 2 × pairs observations (246 with the pool of 40). Trials
//! and rounds exclude each other (a round holds the fleet's quiet lock until the controller has
//! accepted its events): a completing event published just behind a round waits in the bus and
//! the controller's intake queue for the whole burst to be taken in first (about 20 µs per event
//! on the 2-core bench machine), which is queueing before receipt, not decision time. Before
//! this, one trial in about 40 landed behind a burst and read 7–9 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sitewarden_controller::config::{DEFAULT_FALL, DEFAULT_RISE};
use sitewarden_controller::provider::DnsProvider;
use sitewarden_tests::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::rig::{self, FLEET_AGENTS, FleetPublisher, InProcess, Recorder};

/// Site pairs the trials cycle through by default (plus pair 0 for the calibration), whatever
/// the number of trials: the deployment the controller carries stays the same size, so more
/// trials give a finer distribution of the same figure rather than a figure of a larger
/// deployment. `--pool` measures another size.
pub const POOL: usize = 40;
/// Refresh rounds after a failed side recovers before its pair is used again: the default
/// `rise` and two to spare.
const RECOVERY_ROUNDS: u64 = DEFAULT_RISE as u64 + 2;

/// The bystander name `i` of `--names`.
fn bystander(i: usize) -> String {
    format!("bystander{i}.example.com")
}

pub async fn run(trials: usize, pool: usize, names: usize) -> anyhow::Result<()> {
    let pairs = pool.max(1).min(trials.max(1)) + 1;
    // The bystanders' pair is the last of the fleet, after the pool; its own one-name
    // namespace is replaced by the bystanders.
    let fleet_pairs = pairs + usize::from(names > 0);
    let nats = NatsServer::start().await?;
    let rec = Recorder::new();
    for k in 0..pairs {
        rec.inner.insert(
            &rig::fleet_name(k),
            &rig::fleet_rr(k),
            Some(rig::SEED_COMMENT),
        );
    }
    for i in 0..names {
        rec.inner.insert(
            &bystander(i),
            &rig::fleet_rr(pairs),
            Some(rig::SEED_COMMENT),
        );
    }
    let http = rig::free_addr();
    let toml = rig::controller_head(
        "bench-decision",
        &nats.url(),
        &http.to_string(),
        "kind = \"memory\"",
    ) + &rig::fleet_with_names(fleet_pairs, pairs, (0..names).map(bystander));
    let mut ctl = InProcess::start(&toml, Some(rec.clone() as Arc<dyn DnsProvider>))?;
    ctl.acting(Duration::from_secs(60)).await?;
    let fleet = FleetPublisher::connect(&nats.url(), fleet_pairs).await?;
    let stop = CancellationToken::new();
    fleet.spawn_refresh(
        Duration::from_millis(500),
        stop.clone(),
        Some(ctl.metrics.clone()),
    );
    // Six refresh rounds (3 agents × 2 servers per pair each): every observer has risen
    // (the engine takes a first passing result as up) and both sites of every pair are Up before the first failure.
    rig::accepted(
        &ctl.metrics,
        (36 * fleet_pairs) as u64,
        Duration::from_secs(60),
    )
    .await?;

    // The failing observations of one server, in publication order: enough rounds for every
    // agent to reach the default `fall` and one to spare (the calibration finds where the
    // evidence completes).
    let order: Vec<(&str, &str)> = (0..=DEFAULT_FALL).flat_map(|_| FLEET_AGENTS).collect();
    // Every site Up, as the controller sees it: with many names it is still taking up the
    // records it read at start a while after the first rounds are in.
    let sites: Vec<String> = (0..fleet_pairs)
        .flat_map(|k| [format!("p{k}a"), format!("p{k}b")])
        .collect();
    let sites: Vec<&str> = sites.iter().map(String::as_str).collect();
    rig::sites_up(&ctl.metrics, &sites, Duration::from_secs(120)).await?;
    // Spaced so the controller has decided on each observation before the next: a second
    // with many names (its per-tick work grows with them), 200 ms without.
    let spacing = Duration::from_millis(if names > 0 { 1000 } else { 200 });
    let completing = calibrate(&fleet, &rec, &order, spacing).await?;
    eprintln!(
        "decision: observation {} of {} completes the evidence",
        completing + 1,
        order.len()
    );

    let mut samples = Vec::new();
    // Per pool pair: the side that is down and the refresh round from which the other side,
    // recovered after the previous trial, has risen again (every observer passing).
    let mut pool: Vec<(Option<&str>, u64)> = vec![(None, 0); pairs];
    for trial in 0..trials {
        let k = 1 + trial % (pairs - 1);
        let (down, ready) = pool[k];
        let (fail, other) = if down == Some("b") || down.is_none() {
            ("a", "b")
        } else {
            ("b", "a")
        };
        sitewarden_tests::wait_for(
            &format!("pair {k}'s side {other} to rise again"),
            Duration::from_secs(30),
            || async { (fleet.rounds() >= ready).then_some(()) },
        )
        .await?;
        let (site, server, name) = (
            format!("p{k}{fail}"),
            format!("cas-{k}-{fail}"),
            rig::fleet_name(k),
        );
        fleet.set(&server, None);
        // No refresh burst is queued ahead of the trial's events or starts during the trial.
        let quiet = fleet.quiet().await;
        let began = Instant::now();
        for (agent, agent_site) in &order[..completing] {
            fleet
                .publish(agent, agent_site, &site, &server, false)
                .await?;
        }
        fleet.flush().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        anyhow::ensure!(
            rec.apply_after(&name, began).is_none(),
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
                rec.apply_after(&name, began)
            })
            .await?;
        anyhow::ensure!(
            target == format!("{other}{k}.example.com"),
            "pair {k} went to {target}, not {other}{k}.example.com"
        );
        samples.push(applied.duration_since(sent).as_secs_f64() * 1000.0);
        // The failed side passes again from now on; the pair's next trial fails the other side
        // and moves the name back, once every observer has seen `rise` passes.
        fleet.set(&server, Some(true));
        pool[k] = (Some(fail), fleet.rounds() + RECOVERY_ROUNDS);
        drop(quiet);
    }
    stop.cancel();
    ctl.stop().await;
    let s = rig::summary(&mut samples)?;
    let label = if names > 0 {
        "decision_names"
    } else {
        "decision"
    };
    let mut line = serde_json::json!({
        format!("{label}_trials"): trials,
        format!("{label}_site_pairs"): fleet_pairs,
        format!("{label}_min_ms"): rig::round(s.min, 3),
        format!("{label}_p50_ms"): rig::round(s.p50, 3),
        format!("{label}_p99_ms"): rig::round(s.p99, 3),
        format!("{label}_max_ms"): rig::round(s.max, 3),
    });
    if names > 0
        && let Some(fields) = line.as_object_mut()
    {
        fields.insert(
            "decision_names_total".into(),
            serde_json::json!(names + pairs),
        );
    }
    println!("{line}");
    Ok(())
}

/// Publishes pair 0's failing observations `spacing` apart; returns the index of the one
/// after which the controller applied.
async fn calibrate(
    fleet: &FleetPublisher,
    rec: &Recorder,
    order: &[(&str, &str)],
    spacing: Duration,
) -> anyhow::Result<usize> {
    fleet.set("cas-0-a", None);
    let name = rig::fleet_name(0);
    for (i, (agent, agent_site)) in order.iter().enumerate() {
        fleet
            .publish(agent, agent_site, "p0a", "cas-0-a", false)
            .await?;
        fleet.flush().await?;
        tokio::time::sleep(spacing).await;
        if rec.first_apply(&name).is_some() {
            fleet.set("cas-0-a", Some(false));
            return Ok(i);
        }
    }
    anyhow::bail!("{} failing observations did not move {name}", order.len())
}
