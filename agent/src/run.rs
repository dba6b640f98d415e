//! The agent's run loop: one task per probe, per collector and for the heartbeat, all feeding
//! the publisher, until the shutdown token fires; with `[[edge.haproxy]]`, one more task follows
//! edge notifications and steers HAProxy ([`crate::edge`]).
//!
//! Probes that share an interval fire together: one wake-up per interval runs them all
//! concurrently, with warm caches. Spreading 100 probes evenly over their interval cost six times
//! the CPU (2.5 % against 0.4 % of a core, BENCHMARKS.md) for no benefit — ten requests at once
//! are nothing to an Exchange server. `MissedTickBehavior::Delay` keeps a slow probe from causing
//! a burst of catch-up probes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sitewarden_shared::{CollectVia, Heartbeat, SCHEMA_VERSION};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::metrics::Metrics;
use crate::probe::{ProbeContext, Prober, tls::RootCache};
use crate::publish::{self, Outgoing, PublishStats};

/// Builds every prober; an error names the check and server.
pub fn probers(config: &AgentConfig) -> Result<Vec<Prober>, String> {
    let ctx = ProbeContext {
        agent: config.agent.clone(),
        site: config.site.clone(),
        sites: Arc::new(config.sites.clone()),
        cert_expiry_warn_days: config.cert_expiry_warn_days,
    };
    let mut roots = RootCache::default();
    config
        .probes
        .iter()
        .map(|p| Prober::new(p.clone(), ctx.clone(), &mut roots))
        .collect()
}

/// Runs the agent until `shutdown` is cancelled. Returns once the publisher has flushed.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let probers = probers(&config).map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::new());
    let stats = Arc::new(PublishStats::default());
    let client = config
        .nats
        .connect(&format!("sitewarden-agent {}", config.agent))
        .await
        .map_err(anyhow::Error::msg)?;
    let edge_client = client.clone();
    let nats = client.clone();
    let (tx, rx) = mpsc::channel::<Outgoing>(1024);
    let publisher_stop = CancellationToken::new();
    let publisher = tokio::spawn(publish::run(
        client,
        rx,
        stats.clone(),
        metrics.clone(),
        publisher_stop.clone(),
    ));

    let mut tasks = tokio::task::JoinSet::new();
    // systemd learns the agent is ready once the bus answers (the client keeps retrying a
    // first connection that failed); /readyz says the same.
    tasks.spawn(sitewarden_shared::service::ready_when_connected(
        nats.clone(),
        shutdown.clone(),
    ));
    if let Some(addr) = config.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        tracing::info!(%addr, "serving /metrics, /healthz and the push endpoint");
        let (c, m, t, s) = (
            config.clone(),
            metrics.clone(),
            tx.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = crate::server::serve(listener, c, m, t, nats, s).await {
                tracing::error!("HTTP server failed: {e}");
            }
        });
    }

    if let Some(edge) = config.edge.clone().filter(|e| !e.haproxy.is_empty()) {
        let js = config.nats.jetstream(edge_client.clone());
        tasks.spawn(crate::edge::run(
            edge,
            edge_client,
            js,
            metrics.clone(),
            shutdown.clone(),
        ));
    }

    let start = tokio::time::Instant::now();
    for prober in probers {
        let (tx, metrics, shutdown) = (tx.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(start, prober.probe.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let obs = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    o = prober.run_once() => o,
                };
                metrics.observe(&obs);
                if tx.send(Outgoing::Observation(Box::new(obs))).await.is_err() {
                    break;
                }
            }
        });
    }

    for src in config
        .dbcopy
        .iter()
        .filter(|s| s.command.is_some())
        .cloned()
    {
        let (tx, metrics, shutdown, cfg) = (
            tx.clone(),
            metrics.clone(),
            shutdown.clone(),
            config.clone(),
        );
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(src.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let result = crate::dbcopy::collect(&src, &shutdown).await;
                if shutdown.is_cancelled() {
                    break;
                }
                if let Err(e) = &result {
                    tracing::warn!(source = %src.name, "database-copy collection failed: {e}");
                }
                metrics.collected(src.name.as_str(), result.is_ok());
                let snap = crate::dbcopy::snapshot(
                    &cfg.agent,
                    &cfg.site,
                    &src,
                    CollectVia::Command,
                    result,
                );
                if tx.send(Outgoing::DbCopy(Box::new(snap))).await.is_err() {
                    break;
                }
            }
        });
    }

    {
        let (tx, shutdown, cfg) = (tx.clone(), shutdown.clone(), config.clone());
        let started_at = Utc::now();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(cfg.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let hb = Heartbeat {
                    schema_version: SCHEMA_VERSION,
                    agent: cfg.agent.clone(),
                    site: cfg.site.clone(),
                    seq: 0,
                    observed_at: Utc::now(),
                    started_at,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    interval_ms: u64::try_from(cfg.heartbeat_interval.as_millis())
                        .unwrap_or(u64::MAX),
                    checks: u32::try_from(cfg.probes.len()).unwrap_or(u32::MAX),
                    buffered: 0,
                    dropped_total: 0,
                };
                if tx.send(Outgoing::Heartbeat(Box::new(hb))).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    publisher_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), publisher).await;
    Ok(())
}
