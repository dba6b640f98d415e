//! The controller runtime: the thin imperative shell around the pure engine.
//!
//! One task owns the [`Engine`] and its [`State`] and feeds it inputs one at a time: agent events
//! from [`intake`], ticks, leadership changes from the lease, provider reports from [`apply`].
//! The commands it returns are dispatched: record changes to the applier (which acts only while
//! this controller holds the lease, re-checked on the monotonic clock before every write),
//! alerts to the log and the audit trail, audit records to [`audit`], edge notices to NATS.
//! Both controllers of the pair run all of this; the standby's engine records what it would do.
//! If the bus is unreachable the lease lapses and nothing is applied: sitewarden never fails
//! over because NATS is down.

pub mod api;
pub mod apply;
pub mod audit;
pub mod bus_budget;
pub mod dashboard;
pub mod events_watch;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod overrides;
pub mod plan;
pub mod settings;
pub mod slack;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ControllerConfig;
use crate::engine::{Command, Engine, Input, LeadershipChange, State};
use crate::ha::kv::{BucketSpec, ensure_bucket};
use crate::ha::leadership::Role;
use crate::ha::lease::{Lease, LeaseConfig};
use crate::provider::DnsProvider;
use crate::provider::config::ProviderKind;
use apply::Applier;
use audit::{AuditRecord, AuditSink};
use metrics::Metrics;
use settings::RuntimeSettings;

/// The lease bucket.
pub const LEASE_BUCKET: &str = "sitewarden-lease";
/// The state bucket (intents, applied generations).
pub const STATE_BUCKET: &str = "sitewarden-state";
/// Subject of edge notifications.
pub const EDGE_SUBJECT: &str = sitewarden_shared::edge::SUBJECT;

/// Everything `run` needs from outside, so tests can hand in their own provider.
pub struct Runtime {
    /// The decision configuration.
    pub config: ControllerConfig,
    /// The runtime settings.
    pub settings: RuntimeSettings,
    /// The DNS provider; `None` builds it from `settings.provider` (the built-in one needs the
    /// bus, so it is always built here, with its DNS server).
    pub provider: Option<Arc<dyn DnsProvider>>,
    /// Metrics shared with the HTTP surface.
    pub metrics: Arc<Metrics>,
}

/// Runs the controller until `shutdown`.
pub async fn run(rt: Runtime, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Runtime {
        config,
        settings,
        provider,
        metrics,
    } = rt;
    // Every task this function spawns dies with it: if `run` is dropped (aborted, as a crash is
    // emulated in tests), nothing it started keeps renewing the lease or writing records.
    let mut tasks = TaskGuard::default();
    let readiness = Arc::new(http::Readiness::default());
    let late_routes: http::LateRoutes = Default::default();
    let http_stop = CancellationToken::new();
    if let Some(addr) = settings.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ([controller] listen): {e}"))?;
        let (limits, file_handles) = sitewarden_shared::http_server::Limits::for_this_process();
        tracing::info!(
            %addr,
            file_handles,
            max_connections = limits.max_connections,
            max_per_client = limits.max_per_client,
            "serving /healthz, /readyz and /metrics"
        );
        tasks.track(tokio::spawn(http::serve(
            listener,
            limits,
            metrics.clone(),
            readiness.clone(),
            late_routes.clone(),
            http_stop.clone(),
        )));
    }
    let _http_guard = http_stop.drop_guard();
    let client = settings
        .nats
        .connect(&format!("sitewarden-controller {}", settings.id))
        .await
        .map_err(anyhow::Error::msg)?;
    let js = jetstream::new(client.clone());
    let replicas = settings.replicas;
    let events_caps = bus_budget::EventsCaps::for_deployment(
        &config,
        intake::EVENTS_HISTORY,
        settings.events_max_bytes,
    );
    // The bus may be starting too: retry setup until it answers or we are told to stop.
    let (lease_store, state_store, edge_store) = loop {
        let setup = async {
            intake::ensure_stream(&js, replicas, settings.events_max_age, &events_caps).await?;
            audit::ensure_stream(
                &js,
                replicas,
                settings.audit_max_age,
                settings.audit_max_bytes,
            )
            .await?;
            overrides::ensure_stream(&js, replicas).await?;
            let lease = ensure_bucket(
                &js,
                BucketSpec::lease(LEASE_BUCKET, settings.lease.lease(), replicas),
            )
            .await
            .map_err(|e| e.to_string())?;
            let state = ensure_bucket(&js, BucketSpec::state(STATE_BUCKET, 5, replicas))
                .await
                .map_err(|e| e.to_string())?;
            let edge = ensure_bucket(&js, crate::edge::bucket_spec(replicas))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((lease, state, edge))
        };
        match setup.await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!("JetStream setup failed ({e}); retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };

    readiness
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let tasks_stop = CancellationToken::new();
    let provider = match provider {
        Some(p) => p,
        None => match &settings.provider.kind {
            ProviderKind::Builtin(dns_config) => {
                let store = ensure_bucket(&js, crate::dns::bucket_spec(replicas))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                // Both controllers serve the zone from the same bucket: identical answers.
                let server = crate::dns::Server::bind(dns_config, store.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("built-in DNS: {e}"))?;
                tracing::info!(zone = %dns_config.zone, listen = %dns_config.listen, "serving the delegated zone");
                tasks.track(tokio::spawn(server.run(tasks_stop.clone())));
                Arc::new(crate::provider::builtin::BuiltinProvider::new(store))
                    as Arc<dyn DnsProvider>
            }
            _ => settings
                .provider
                .build()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        },
    };
    let (audit_sink, audit_task) = audit::spawn(
        js.clone(),
        settings.id.clone(),
        metrics.clone(),
        tasks_stop.clone(),
    );
    let audit_task = tasks.track(audit_task);
    let (lease, lease_handle) = Lease::new(
        lease_store,
        settings.id.clone(),
        LeaseConfig::new(settings.lease),
    );
    let lease_stop = CancellationToken::new();
    let lease_task = tasks.track(tokio::spawn(lease.run(lease_stop.clone())));

    let alerts = crate::notify::Dispatcher::spawn(settings.alerts.clone(), tasks_stop.clone());
    let (tx, mut rx) = mpsc::channel::<Input>(16_384);
    let reject_audit: intake::RejectAudit = {
        let (sink, id, lease) = (
            audit_sink.clone(),
            settings.id.clone(),
            lease_handle.clone(),
        );
        Arc::new(move |event| {
            let epoch = lease.is_acting_now();
            sink.record(AuditRecord {
                at: Utc::now(),
                controller: id.clone(),
                role: if epoch.is_some() { "leader" } else { "standby" },
                epoch,
                event,
            });
        })
    };
    let publishers = Arc::new(events_watch::PublisherTally::default());
    tasks.track(tokio::spawn(events_watch::run(
        js.clone(),
        publishers.clone(),
        metrics.clone(),
        tx.clone(),
        tasks_stop.clone(),
    )));
    let intake_task = tasks.track(tokio::spawn(intake::run(
        js.clone(),
        tx.clone(),
        metrics.clone(),
        reject_audit,
        publishers,
        tasks_stop.clone(),
    )));

    // Leadership and bus changes become engine inputs (the engine decides what to alert); the
    // applier checks the lease itself before every write.
    tasks.track(tokio::spawn(watch_leadership(
        lease_handle.leadership(),
        tx.clone(),
        metrics.clone(),
        tasks_stop.clone(),
    )));

    let acting_handle = lease_handle.clone();
    let (apply_tx, mut apply_rx) = mpsc::channel(1024);
    // A controller that becomes leader re-reads every record: as standby its engine assumed the
    // old leader carried out every decision, which is wrong when the old leader died between
    // intent and apply. The read tells the engine what is really there, so it completes or
    // supersedes the change under the new epoch instead of waiting for the next reconcile.
    let (refresh_tx, mut refresh_rx) = mpsc::channel::<()>(1);
    let issued = apply::Issued::default();
    let mut applier = Applier {
        provider: provider.clone(),
        store: Some(state_store),
        acting: Arc::new(move || acting_handle.is_acting_now()),
        dry_run: settings.dry_run,
        adopt_unmarked: config
            .namespaces
            .iter()
            .map(|(name, ns)| {
                let adopt = ns.on_unmarked == crate::config::UnmarkedPolicy::Adopt;
                (name.clone(), adopt)
            })
            .collect(),
        audit: audit_sink.clone(),
        controller: settings.id.clone(),
        metrics: metrics.clone(),
        reports: tx.clone(),
        last_seen: Default::default(),
        shadow: Default::default(),
        propagation: Some(settings.propagation.clone()),
        issued: issued.clone(),
    };
    let names: Vec<String> = config.namespaces.keys().cloned().collect();
    let mut targets: Vec<String> = config
        .namespaces
        .values()
        .flat_map(|ns| ns.targets().into_iter().map(str::to_owned))
        .collect();
    targets.sort();
    targets.dedup();
    let reconcile_every = settings.reconcile_every;
    let candidate_check = settings
        .propagation
        .resolver
        .map(|r| (r, settings.propagation.check_every));
    let applier_stop = tasks_stop.clone();
    let applier_task = tasks.track(tokio::spawn(async move {
        // Read every record once at start, then periodically (within the rate budget).
        let mut reconcile = tokio::time::interval(reconcile_every);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut candidates = tokio::time::interval(
            candidate_check.map_or(Duration::from_secs(3600), |(_, every)| every),
        );
        candidates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = applier_stop.cancelled() => break,
                _ = candidates.tick(), if candidate_check.is_some() => {
                    if let Some((resolver, _)) = candidate_check {
                        applier.check_candidates(resolver, &targets).await;
                    }
                }
                cmd = apply_rx.recv() => match cmd {
                    Some(cmd) => applier.apply(cmd).await,
                    None => break,
                },
                Some(()) = refresh_rx.recv() => {
                    for name in &names {
                        if let Err(e) = applier.refresh(name).await {
                            tracing::warn!(namespace = %name, "cannot read the record at takeover: {e}");
                        }
                    }
                }
                _ = reconcile.tick() => {
                    for name in &names {
                        if let Err(e) = applier.refresh(name).await {
                            tracing::warn!(namespace = %name, "cannot read the record: {e}");
                        }
                    }
                }
            }
        }
    }));

    let engine = Arc::new(Engine::new(config));
    let mut state: State = engine.initial_state();
    // The engine says when it must be woken next (staleness, windows, retries, expiries); the
    // loop sleeps until then, never longer than `tick`, or until the next input.
    let mut wake = tokio::time::Instant::now();
    let (deliverer, mut deliveries) =
        crate::edge::WebhookDeliverer::spawn(settings.edge.webhooks.clone(), tasks_stop.clone());
    {
        // Webhook outcomes go to the journal and the audit trail.
        let (sink, id) = (audit_sink.clone(), settings.id.clone());
        tasks.track(tokio::spawn(async move {
            while let Some(o) = deliveries.recv().await {
                if let Err(e) = &o.result {
                    tracing::warn!(endpoint = %o.endpoint, attempts = o.attempts, "edge webhook not delivered: {e}");
                }
                sink.record(AuditRecord {
                    at: Utc::now(),
                    controller: id.clone(),
                    role: "leader",
                    epoch: Some(o.epoch),
                    event: serde_json::json!({
                        "kind": "edge_webhook",
                        "endpoint": o.endpoint,
                        "generation": o.generation,
                        "attempts": o.attempts,
                        "delivered": o.result.is_ok(),
                        "error": o.result.as_ref().err().map(|e| e.to_string()),
                        "latency_ms": o.latency.as_millis() as u64,
                    }),
                });
            }
        }));
    }
    let edge = EdgeOut {
        client: client.clone(),
        store: edge_store,
        deliverer,
    };

    // Operator overrides: from the bus (whichever controller's API took them) into the engine.
    let (override_tx, mut override_rx) = mpsc::channel::<overrides::OverrideMessage>(256);
    tasks.track(tokio::spawn(overrides::run(
        js.clone(),
        override_tx,
        tasks_stop.clone(),
    )));
    // What the API reads: a copy of the state made when a handler asks (`fresh`), and one
    // published after every override (what a submitted override waits for). Not one per tick:
    // copying a large deployment's state takes milliseconds the events would wait for.
    let mut notes = api::Snapshot::default();
    let (snapshot_tx, snapshot_rx) =
        tokio::sync::watch::channel(Arc::new(api::Snapshot::default()));
    let (fresh_tx, mut fresh_rx) =
        mpsc::channel::<tokio::sync::oneshot::Sender<Arc<api::Snapshot>>>(64);
    let operator_api = api::Api {
        engine: engine.clone(),
        snapshot: snapshot_rx,
        fresh: fresh_tx,
        leadership: lease_handle.leadership(),
        js: js.clone(),
        settings: Arc::new(settings.api.clone()),
        controller: settings.id.clone(),
    };
    let mut routes = api::router(operator_api.clone()).merge(dashboard::routes());
    if let Some(slack) = settings.slack.clone() {
        routes = routes.merge(slack::router(operator_api, slack));
    }
    let _ = late_routes.set(routes);
    // The epoch in which the edge was last told how things stand.
    let mut edge_told_in: Option<u64> = None;
    loop {
        let mut override_id = None;
        let input = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => Input::Tick,
            Some(o) = override_rx.recv() => {
                override_id = Some(o.id);
                Input::Override(o.request)
            }
            i = rx.recv() => match i { Some(i) => i, None => break },
            Some(reply) = fresh_rx.recv() => {
                // One copy answers every handler waiting right now.
                let snap = Arc::new(notes.with_state(&state));
                let _ = reply.send(snap.clone());
                while let Ok(more) = fresh_rx.try_recv() {
                    let _ = more.send(snap.clone());
                }
                continue;
            }
        };
        let now = Utc::now();
        let commands = engine.step(&mut state, now, &input);
        metrics.observation(&state, &input);
        if !matches!(
            input,
            Input::Observation(_) | Input::Heartbeat(_) | Input::DbCopy(_)
        ) {
            // Events only push deadlines later (or start one no earlier than `tick` away).
            let due = engine
                .next_wake(&state, now)
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or(settings.tick);
            wake = tokio::time::Instant::now() + due.min(settings.tick);
        }
        if matches!(input, Input::Tick) {
            metrics.observe(&engine, &state, now);
            metrics.observe_provider(provider.kind(), &provider.stats());
            metrics.observe_alerts(&alerts.stats());
        }
        // Only after the engine knows it leads, so the read's report is not taken as a standby's.
        if matches!(&input, Input::Leadership(l) if l.is_leader) {
            let _ = refresh_tx.try_send(());
        }
        notes.note(now, &commands);
        if let Some(id) = override_id {
            notes.took_override(id, &commands);
        }
        if matches!(input, Input::Override(_)) {
            snapshot_tx.send_replace(Arc::new(notes.with_state(&state)));
        }
        let epoch = lease_handle.is_acting_now();
        let mut commands = commands;
        if epoch.is_some() && epoch != edge_told_in {
            // A new term: tell the edge how things stand under this epoch, even if the engine
            // decided everything while we were still standby (or before we led at all).
            edge_told_in = epoch;
            if !commands.iter().any(|c| matches!(c, Command::NotifyEdge(_))) {
                commands.push(Command::NotifyEdge(Engine::edge_notice(&state)));
            }
        }
        for cmd in commands {
            if let Command::Alert(a) = &cmd {
                // The engine decided this alert is ours to send: a standby's alerts about
                // names and sites come back wrapped as audit records, never as alerts.
                alerts.send(a);
            }
            if let Command::SetRecord(set) = &cmd {
                issued.note(&set.namespace, set.generation);
            }
            dispatch(cmd, epoch, &settings.id, &audit_sink, &apply_tx, &edge).await;
        }
    }

    // Stop deciding first, then release the lease so the standby can act at once.
    tasks_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), applier_task).await;
    lease_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), intake_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), audit_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(())
}

async fn dispatch(
    cmd: Command,
    epoch: Option<u64>,
    controller: &str,
    audit: &AuditSink,
    apply_tx: &mpsc::Sender<crate::engine::SetRecord>,
    edge: &EdgeOut,
) {
    let record = |event: serde_json::Value| AuditRecord {
        at: Utc::now(),
        controller: controller.to_owned(),
        role: if epoch.is_some() { "leader" } else { "standby" },
        epoch,
        event,
    };
    match cmd {
        Command::SetRecord(set) => {
            if apply_tx.send(set).await.is_err() {
                tracing::error!("applier stopped; record change dropped");
            }
        }
        Command::Alert(alert) => {
            log_alert(&alert);
            audit.record(record(serde_json::json!({"kind": "alert", "alert": alert})));
        }
        Command::Audit(a) => {
            // Flat like the runtime's own records: `event.kind` names what happened.
            if let Ok(mut v) = serde_json::to_value(&a.event) {
                if let Some(o) = v.as_object_mut() {
                    o.insert("engine_at".into(), serde_json::json!(a.at));
                }
                audit.record(record(v));
            }
        }
        Command::NotifyEdge(notice) => {
            if let Some(epoch) = epoch {
                let n = crate::edge::notification(&notice, controller, epoch, Utc::now());
                edge.deliverer.notify(&n);
                // Off the engine loop: a slow bus must not hold decisions up. Receivers and the
                // KV order notices by (epoch, generation), so a late one changes nothing.
                let (client, store) = (edge.client.clone(), edge.store.clone());
                tokio::spawn(async move {
                    if let Ok(body) = serde_json::to_vec(&n)
                        && let Err(e) = client.publish(EDGE_SUBJECT, body.into()).await
                    {
                        tracing::warn!("edge notice not published: {e}");
                    }
                    if let Err(e) = crate::edge::put_latest(&store, &n).await {
                        tracing::warn!("edge notice not kept in KV: {e}");
                    }
                });
            }
            audit.record(record(
                serde_json::json!({"kind": "edge_notice", "notice": notice}),
            ));
        }
    }
}

/// Where the leader's edge notifications go: NATS, the KV bucket, the webhooks.
struct EdgeOut {
    client: async_nats::Client,
    store: async_nats::jetstream::kv::Store,
    deliverer: crate::edge::WebhookDeliverer,
}

/// Writes an alert to the journal at the level its severity says (critical as an error,
/// warning as a warning, info as info).
pub(crate) fn log_alert(alert: &crate::engine::Alert) {
    let kind = serde_json::to_value(alert.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let line = format!("{kind}: {}", alert.text);
    match alert.severity {
        crate::engine::Severity::Critical => tracing::error!("ALERT critical {line}"),
        crate::engine::Severity::Warning => tracing::warn!("ALERT warning {line}"),
        crate::engine::Severity::Info => tracing::info!("ALERT info {line}"),
    }
}

/// Turns the lease's view into engine inputs: `Bus` when reachability changes, `Leadership`
/// when the acting role or epoch does; keeps the role and epoch gauges current.
async fn watch_leadership(
    mut watch: tokio::sync::watch::Receiver<crate::ha::leadership::Leadership>,
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut last: Option<(bool, u64)> = None;
    let mut last_bus: Option<bool> = None;
    loop {
        let now = watch.borrow_and_update().clone();
        let reachable = now.role != Role::Unknown;
        if last_bus != Some(reachable) {
            last_bus = Some(reachable);
            let bus = crate::engine::BusReport { reachable };
            if tx.send(Input::Bus(bus)).await.is_err() {
                break;
            }
        }
        let view = (now.acting, now.epoch.unwrap_or(0));
        metrics.acting.set(i64::from(now.acting));
        metrics.epoch.set(i64::try_from(view.1).unwrap_or(i64::MAX));
        if last != Some(view) {
            last = Some(view);
            let change = LeadershipChange {
                is_leader: view.0,
                epoch: view.1,
            };
            if tx.send(Input::Leadership(change)).await.is_err() {
                break;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            r = watch.changed() => if r.is_err() { break },
        }
    }
}

/// Aborts the tracked tasks when dropped, so a dropped `run` leaves nothing behind.
#[derive(Default)]
struct TaskGuard(Vec<tokio::task::AbortHandle>);

impl TaskGuard {
    fn track<T>(&mut self, handle: tokio::task::JoinHandle<T>) -> tokio::task::JoinHandle<T> {
        self.0.push(handle.abort_handle());
        handle
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// The provider `plan` reads from: built from the settings, or for the built-in provider opened
/// read-only on its bucket (plan never serves DNS and never writes).
pub async fn plan_provider(settings: &RuntimeSettings) -> anyhow::Result<Arc<dyn DnsProvider>> {
    match &settings.provider.kind {
        ProviderKind::Builtin(_) => {
            let client = settings
                .nats
                .connect("sitewarden-controller plan")
                .await
                .map_err(anyhow::Error::msg)?;
            let js = jetstream::new(client);
            let store =
                tokio::time::timeout(Duration::from_secs(5), js.get_key_value(crate::dns::BUCKET))
                    .await
                    .map_err(|_| anyhow::anyhow!("NATS did not answer within 5s"))?
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "no bucket {} yet (is a controller running?): {e}",
                            crate::dns::BUCKET
                        )
                    })?;
            Ok(Arc::new(crate::provider::builtin::BuiltinProvider::new(
                store,
            )))
        }
        _ => settings
            .provider
            .build()
            .map_err(|e| anyhow::anyhow!("{e}")),
    }
}
