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
pub mod history;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod overrides;
pub mod plan;
pub mod replaying;
pub mod settings;
pub mod slack;
pub mod slack_guard;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::ControllerConfig;
use crate::engine::{Command, Engine, Epoch, Input, LeadershipChange, State};
use crate::ha;
use crate::ha::kv::{BucketSpec, ensure_bucket};
use crate::ha::leadership::{LeaseHandle, Role};
use crate::ha::lease::{Lease, LeaseConfig};
use crate::provider::DnsProvider;
use crate::provider::config::ProviderKind;
use apply::Applier;
use audit::{AuditRecord, AuditSink};
use metrics::Metrics;
use settings::RuntimeSettings;
use sitewarden_api::audit::{AuditEvent, EngineAudit, Role as AuditRole, RuntimeEvent};
use tasks::{TaskScope, Tasks};

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

/// Runs the controller until `shutdown`: wires the pieces together, runs the engine loop, then
/// stops them in order (deciding first, then the lease, so the standby can act at once).
pub async fn run(rt: Runtime, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Runtime {
        config,
        settings,
        provider,
        metrics,
    } = rt;
    // Every task started here dies with `run`, whether it returns or is dropped (see `tasks`).
    let scope = TaskScope::default();
    let tasks = scope.tasks();
    let http = serve_http(&settings, &metrics, &tasks).await?;
    let client = settings
        .nats
        .connect(&format!("sitewarden-controller {}", settings.id))
        .await
        .map_err(anyhow::Error::msg)?;
    let js = jetstream::new(client.clone());
    let Some(buckets) = set_up_bus(&js, &settings, &config, &shutdown).await else {
        return Ok(());
    };
    // Everything below stops on `stop`; a dropped `run` cancels it too.
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let provider = match provider {
        Some(p) => p,
        None => build_provider(&settings, &js, &tasks, &stop).await?,
    };
    // Ready once every stream and bucket exists, the built-in zone's included: an operator who
    // waits for /readyz (or systemd for READY=1) can create records right away.
    http.ready();
    let (audit_sink, audit_task) = audit::spawn(
        js.clone(),
        settings.id.clone(),
        metrics.clone(),
        stop.clone(),
        config.namespaces.len(),
    );
    let audit_task = tasks.track(audit_task);
    let (lease, lease_handle) = Lease::new(
        buckets.lease.clone(),
        settings.id.clone(),
        LeaseConfig::new(settings.lease),
    );
    let lease_stop = CancellationToken::new();
    let lease_task = tasks.spawn(lease.run(lease_stop.clone()));
    let (tx, rx) = mpsc::channel::<Input>(16_384);
    let intake_task = spawn_inputs(
        &tasks,
        &js,
        &tx,
        &metrics,
        &audit_sink,
        &settings,
        &lease_handle,
        &stop,
    );
    let applier = spawn_applier(
        &tasks,
        &config,
        &settings,
        Applied {
            provider: provider.clone(),
            store: buckets.state,
            lease: lease_handle.clone(),
            audit: audit_sink.clone(),
            metrics: metrics.clone(),
            reports: tx.clone(),
        },
        &stop,
    );
    let engine = Arc::new(Engine::new(config));
    let edge = spawn_edge(
        &tasks,
        &settings,
        client.clone(),
        buckets.edge,
        &audit_sink,
        &stop,
    );
    // Operator overrides: from the bus (whichever controller's API took them) into the engine.
    let (override_tx, override_rx) = mpsc::channel::<overrides::OverrideMessage>(256);
    tasks.spawn(overrides::run(js.clone(), override_tx, stop.clone()));
    let presence = spawn_presence(&tasks, buckets.lease, &settings, &lease_handle, &stop);
    let surface = (&http.late_routes, &metrics, presence);
    let (api_link, fresh_rx) = start_api(&engine, &lease_handle, &js, &settings, surface);
    EngineLoop {
        state: engine.initial_state(),
        engine,
        alerts: crate::notify::Dispatcher::spawn(settings.alerts.clone(), stop.clone()),
        controller: settings.id.clone(),
        tick: settings.tick,
        metrics,
        provider,
        lease: lease_handle,
        apply_tx: applier.apply_tx,
        refresh_tx: applier.refresh_tx,
        issued: applier.issued,
        audit: audit_sink,
        edge,
        api: api_link,
        edge_told_in: None,
    }
    .run(
        Inbox {
            inputs: rx,
            overrides: override_rx,
            fresh: fresh_rx,
        },
        &shutdown,
    )
    .await;

    // Stop deciding and applying first, then release the lease so the standby can act at once.
    stop.cancel();
    let wait = |d, task| async move {
        let _ = tokio::time::timeout(Duration::from_secs(d), task).await;
    };
    wait(5, applier.task).await;
    lease_stop.cancel();
    wait(5, lease_task).await;
    wait(2, intake_task).await;
    wait(2, audit_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(())
}

/// The HTTP surface while `run` lives: readiness to set, routes to add once the API exists.
struct HttpSurface {
    readiness: Arc<http::Readiness>,
    late_routes: http::LateRoutes,
    /// Stops the server when `run` ends.
    _stop: tokio_util::sync::DropGuard,
}

impl HttpSurface {
    /// `/readyz` answers ready from now on, and systemd is told (`READY=1`).
    fn ready(&self) {
        self.readiness
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        sitewarden_shared::service::notify_ready();
    }
}

/// Starts `/healthz`, `/readyz` and `/metrics` (and later the API) on `[controller] listen`.
async fn serve_http(
    settings: &RuntimeSettings,
    metrics: &Arc<Metrics>,
    tasks: &Tasks,
) -> anyhow::Result<HttpSurface> {
    let readiness = Arc::new(http::Readiness::default());
    let late_routes: http::LateRoutes = Default::default();
    let stop = CancellationToken::new();
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
        tasks.spawn(http::serve(
            listener,
            limits,
            metrics.clone(),
            readiness.clone(),
            late_routes.clone(),
            stop.clone(),
        ));
    }
    Ok(HttpSurface {
        readiness,
        late_routes,
        _stop: stop.drop_guard(),
    })
}

/// The KV buckets `run` works with.
struct Buckets {
    lease: jetstream::kv::Store,
    state: jetstream::kv::Store,
    edge: jetstream::kv::Store,
}

/// Creates (or checks) the streams and buckets. The bus may be starting too: retries every
/// second until it answers; `None` when told to stop first.
async fn set_up_bus(
    js: &jetstream::Context,
    settings: &RuntimeSettings,
    config: &ControllerConfig,
    shutdown: &CancellationToken,
) -> Option<Buckets> {
    let replicas = settings.replicas;
    let events_caps = bus_budget::EventsCaps::for_deployment(
        config,
        intake::EVENTS_HISTORY,
        settings.events_max_bytes,
    );
    loop {
        let setup = async {
            intake::ensure_stream(js, replicas, settings.events_max_age, &events_caps).await?;
            audit::ensure_stream(
                js,
                replicas,
                settings.audit_max_age,
                settings.audit_max_bytes,
            )
            .await?;
            overrides::ensure_stream(js, replicas).await?;
            let bucket =
                |spec| async move { ensure_bucket(js, spec).await.map_err(|e| e.to_string()) };
            Ok::<_, String>(Buckets {
                lease: bucket(BucketSpec::lease(
                    LEASE_BUCKET,
                    settings.lease.lease(),
                    replicas,
                ))
                .await?,
                state: bucket(BucketSpec::state(STATE_BUCKET, 5, replicas)).await?,
                edge: bucket(crate::edge::bucket_spec(replicas)).await?,
            })
        };
        match setup.await {
            Ok(b) => return Some(b),
            Err(e) => {
                tracing::warn!("JetStream setup failed ({e}); retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// The provider from the settings; the built-in one also starts its DNS server.
async fn build_provider(
    settings: &RuntimeSettings,
    js: &jetstream::Context,
    tasks: &Tasks,
    stop: &CancellationToken,
) -> anyhow::Result<Arc<dyn DnsProvider>> {
    match &settings.provider.kind {
        ProviderKind::Builtin(dns_config) => {
            let store = ensure_bucket(js, crate::dns::bucket_spec(settings.replicas))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Both controllers serve the zone from the same bucket: identical answers.
            let server = crate::dns::Server::bind(dns_config, store.clone())
                .await
                .map_err(|e| anyhow::anyhow!("built-in DNS: {e}"))?;
            tracing::info!(zone = %dns_config.zone, listen = %dns_config.listen, "serving the delegated zone");
            tasks.spawn(server.run(stop.clone()));
            Ok(
                Arc::new(crate::provider::builtin::BuiltinProvider::new(store))
                    as Arc<dyn DnsProvider>,
            )
        }
        _ => settings
            .provider
            .build()
            .map_err(|e| anyhow::anyhow!("{e}")),
    }
}

/// Starts what turns the outside into engine inputs: the events watch, the intake (agent
/// events) and the leadership watch (lease and bus changes; the engine decides what to alert,
/// the applier checks the lease itself before every write). Returns the intake's task, which
/// `run` waits for at the end.
#[allow(clippy::too_many_arguments)] // the wiring's shared handles, each used once
fn spawn_inputs(
    tasks: &Tasks,
    js: &jetstream::Context,
    tx: &mpsc::Sender<Input>,
    metrics: &Arc<Metrics>,
    audit: &AuditSink,
    settings: &RuntimeSettings,
    lease: &LeaseHandle,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let reject_audit: intake::RejectAudit = {
        let (sink, id, lease) = (audit.clone(), settings.id.clone(), lease.clone());
        Arc::new(move |event| {
            let epoch = lease.is_acting_now().map(Epoch);
            sink.record(AuditRecord {
                at: Utc::now(),
                controller: id.clone(),
                role: AuditRole::of_epoch(epoch),
                epoch,
                event: AuditEvent::Runtime(event),
                seq: None,
            });
        })
    };
    let publishers = Arc::new(events_watch::PublisherTally::default());
    tasks.spawn(events_watch::run(
        js.clone(),
        publishers.clone(),
        metrics.clone(),
        tx.clone(),
        stop.clone(),
    ));
    tasks.spawn(watch_leadership(
        lease.leadership(),
        tx.clone(),
        metrics.clone(),
        stop.clone(),
    ));
    tasks.spawn(intake::run(
        js.clone(),
        tx.clone(),
        metrics.clone(),
        reject_audit,
        publishers,
        stop.clone(),
    ))
}

/// What the applier works with, from the wiring.
struct Applied {
    provider: Arc<dyn DnsProvider>,
    store: jetstream::kv::Store,
    lease: LeaseHandle,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    reports: mpsc::Sender<Input>,
}

/// The engine loop's ends of the applier.
struct ApplierLink {
    apply_tx: mpsc::Sender<Vec<crate::engine::SetRecord>>,
    refresh_tx: mpsc::Sender<()>,
    issued: apply::Issued,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the applier task: record changes from the engine, reads at takeover and on the
/// reconcile interval, candidate checks.
fn spawn_applier(
    tasks: &Tasks,
    config: &ControllerConfig,
    settings: &RuntimeSettings,
    with: Applied,
    stop: &CancellationToken,
) -> ApplierLink {
    let (apply_tx, apply_rx) = mpsc::channel(1024);
    // A controller that becomes leader re-reads every record: as standby its engine assumed the
    // old leader carried out every decision, which is wrong when the old leader died between
    // intent and apply. The read tells the engine what is really there, so it completes or
    // supersedes the change under the new epoch instead of waiting for the next reconcile.
    let (refresh_tx, refresh_rx) = mpsc::channel::<()>(1);
    let issued = apply::Issued::default();
    let lease = with.lease;
    let applier = Applier {
        provider: with.provider,
        store: Some(Arc::new(with.store)),
        acting: Arc::new(move || lease.is_acting_now().map(Epoch)),
        dry_run: settings.dry_run,
        adopt_unmarked: Arc::new(
            config
                .namespaces
                .iter()
                .map(|(name, ns)| {
                    let adopt = ns.on_unmarked == crate::config::UnmarkedPolicy::Adopt;
                    (name.clone(), adopt)
                })
                .collect(),
        ),
        audit: with.audit,
        controller: settings.id.clone(),
        metrics: with.metrics,
        reports: with.reports,
        last_seen: Default::default(),
        shadow: Default::default(),
        propagation: Some(settings.propagation.clone()),
        issued: issued.clone(),
        tasks: tasks.clone(),
        intent_locks: Default::default(),
    };
    let mut targets: Vec<sitewarden_contract::DnsName> = config
        .namespaces
        .values()
        .flat_map(|ns| ns.targets().into_iter().cloned())
        .collect();
    targets.sort();
    targets.dedup();
    let schedule = apply::Schedule {
        names: config.namespaces.keys().cloned().collect(),
        targets,
        reconcile_every: settings.reconcile_every,
        candidate_check: settings
            .propagation
            .resolver
            .map(|r| (r, settings.propagation.check_every)),
    };
    let task = tasks.spawn(applier.run(schedule, apply_rx, refresh_rx, stop.clone()));
    ApplierLink {
        apply_tx,
        refresh_tx,
        issued,
        task,
    }
}

/// Starts the edge publisher and the webhook deliverer; webhook outcomes go to the journal and
/// the audit trail.
fn spawn_edge(
    tasks: &Tasks,
    settings: &RuntimeSettings,
    client: async_nats::Client,
    store: jetstream::kv::Store,
    audit: &AuditSink,
    stop: &CancellationToken,
) -> EdgeOut {
    let (deliverer, mut deliveries) =
        crate::edge::WebhookDeliverer::spawn(settings.edge.webhooks.clone(), stop.clone());
    let (sink, id) = (audit.clone(), settings.id.clone());
    tasks.spawn(async move {
        while let Some(o) = deliveries.recv().await {
            if let Err(e) = &o.result {
                tracing::warn!(endpoint = %o.endpoint, attempts = o.attempts, "edge webhook not delivered: {e}");
            }
            sink.record(AuditRecord {
                at: Utc::now(),
                controller: id.clone(),
                role: AuditRole::Leader,
                epoch: Some(Epoch(o.epoch)),
                event: AuditEvent::Runtime(RuntimeEvent::EdgeWebhook {
                    delivered: o.result.is_ok(),
                    error: o.result.as_ref().err().map(|e| e.to_string()),
                    endpoint: o.endpoint,
                    generation: o.generation,
                    attempts: o.attempts,
                    latency_ms: u64::try_from(o.latency.as_millis()).unwrap_or(u64::MAX),
                }),
                seq: None,
            });
        }
    });
    EdgeOut {
        client,
        store,
        deliverer,
        tasks: tasks.clone(),
    }
}

/// What the engine loop keeps for the operator API.
struct ApiLink {
    /// What the API reads after an override (what a submitted override waits for).
    snapshot_tx: tokio::sync::watch::Sender<Arc<api::Snapshot>>,
    /// Recent decisions, alerts and overrides, carried into every snapshot.
    notes: api::Snapshot,
}

/// Starts writing this controller's presence record and watching the pair's (see
/// [`ha::presence`]); both tasks stop with `stop`.
fn spawn_presence(
    tasks: &Tasks,
    bucket: jetstream::kv::Store,
    settings: &RuntimeSettings,
    lease: &LeaseHandle,
    stop: &CancellationToken,
) -> watch::Receiver<ha::presence::Presences> {
    let timing = ha::presence::PresenceTiming {
        every: settings.lease.renew_every(),
        stale_after: settings.lease.lease(),
    };
    let (rx, handles) = ha::presence::spawn(
        bucket,
        settings.id.clone(),
        lease.leadership(),
        timing,
        stop.clone(),
    );
    for h in handles {
        tasks.track(h);
    }
    rx
}

/// A handler's request for a copy of the state made now.
type FreshRequest = tokio::sync::oneshot::Sender<Arc<api::Snapshot>>;

/// Adds the operator API, the dashboard and the Slack endpoint to the HTTP surface. Reads
/// come from a copy of the state made when a handler asks (`fresh`) and one published after
/// every override, not one per tick: copying a large deployment's state takes milliseconds
/// the events would wait for.
fn start_api(
    engine: &Arc<Engine>,
    lease: &LeaseHandle,
    js: &jetstream::Context,
    settings: &RuntimeSettings,
    (late_routes, metrics, presence): (
        &http::LateRoutes,
        &Arc<Metrics>,
        watch::Receiver<ha::presence::Presences>,
    ),
) -> (ApiLink, mpsc::Receiver<FreshRequest>) {
    let (snapshot_tx, snapshot_rx) =
        tokio::sync::watch::channel(Arc::new(api::Snapshot::default()));
    let (fresh_tx, fresh_rx) = mpsc::channel::<FreshRequest>(64);
    let operator_api = api::Api {
        engine: engine.clone(),
        snapshot: snapshot_rx,
        fresh: fresh_tx,
        leadership: lease.leadership(),
        presence,
        stale_after: settings.lease.lease(),
        started_at: Utc::now(),
        js: js.clone(),
        settings: Arc::new(settings.api.clone()),
        controller: settings.id.clone(),
    };
    let mut routes = api::router(operator_api.clone()).merge(dashboard::routes());
    if let Some(slack) = settings.slack.clone() {
        routes = routes.merge(slack::router(operator_api, slack, metrics.clone()));
    }
    let _ = late_routes.set(routes);
    (
        ApiLink {
            snapshot_tx,
            notes: api::Snapshot::default(),
        },
        fresh_rx,
    )
}

/// Where the engine loop's inputs come from.
struct Inbox {
    /// Agent events, ticks' companions, provider reports, leadership and bus changes.
    inputs: mpsc::Receiver<Input>,
    /// Operator overrides from the bus.
    overrides: mpsc::Receiver<overrides::OverrideMessage>,
    /// API handlers asking for a copy of the state.
    fresh: mpsc::Receiver<FreshRequest>,
}

/// The one task that owns the engine and its state.
struct EngineLoop {
    engine: Arc<Engine>,
    state: State,
    alerts: crate::notify::Dispatcher,
    controller: String,
    /// Longest sleep between ticks.
    tick: Duration,
    metrics: Arc<Metrics>,
    provider: Arc<dyn DnsProvider>,
    lease: LeaseHandle,
    apply_tx: mpsc::Sender<Vec<crate::engine::SetRecord>>,
    refresh_tx: mpsc::Sender<()>,
    issued: apply::Issued,
    audit: AuditSink,
    edge: EdgeOut,
    api: ApiLink,
    /// The epoch in which the edge was last told how things stand.
    edge_told_in: Option<Epoch>,
}

impl EngineLoop {
    /// Feeds inputs to the engine one at a time until `shutdown` or the inputs end. The engine
    /// says when it must be woken next (staleness, windows, retries, expiries); the loop sleeps
    /// until then, never longer than `tick`, or until the next input.
    async fn run(mut self, mut inbox: Inbox, shutdown: &CancellationToken) {
        let mut wake = tokio::time::Instant::now();
        loop {
            let mut override_id = None;
            let input = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => Input::Tick,
                Some(o) = inbox.overrides.recv() => {
                    override_id = Some(o.id);
                    Input::Override(o.request)
                }
                i = inbox.inputs.recv() => match i { Some(i) => i, None => break },
                Some(reply) = inbox.fresh.recv() => {
                    // One copy answers every handler waiting right now.
                    let snap = Arc::new(self.api.notes.with_state(&self.state));
                    let _ = reply.send(snap.clone());
                    while let Ok(more) = inbox.fresh.try_recv() {
                        let _ = more.send(snap.clone());
                    }
                    continue;
                }
            };
            if let Some(next) = self.step(&input, override_id).await {
                wake = next;
            }
        }
    }

    /// One input through the engine and its commands out; the new wake-up time when the input
    /// may have moved it.
    async fn step(
        &mut self,
        input: &Input,
        override_id: Option<String>,
    ) -> Option<tokio::time::Instant> {
        let now = Utc::now();
        let mut commands = self.engine.step(&mut self.state, now, input);
        self.metrics.observation(&self.state, input);
        // Events only push deadlines later (or start one no earlier than `tick` away).
        let wake = (!matches!(
            input,
            Input::Observation(_) | Input::Heartbeat(_) | Input::DbCopy(_)
        ))
        .then(|| {
            let due = self
                .engine
                .next_wake(&self.state, now)
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or(self.tick);
            tokio::time::Instant::now() + due.min(self.tick)
        });
        if matches!(input, Input::Tick) {
            self.metrics.observe(&self.engine, &self.state, now);
            self.metrics
                .observe_provider(self.provider.kind(), &self.provider.stats());
            self.metrics.observe_alerts(&self.alerts.stats());
        }
        // Only after the engine knows it leads, so the read's report is not taken as a standby's.
        if matches!(input, Input::Leadership(l) if l.is_leader) {
            let _ = self.refresh_tx.try_send(());
        }
        self.api.notes.note(now, &commands);
        if let Some(id) = override_id {
            self.api.notes.took_override(id, &commands);
        }
        if matches!(input, Input::Override(_)) {
            let snap = Arc::new(self.api.notes.with_state(&self.state));
            self.api.snapshot_tx.send_replace(snap);
        }
        let epoch = self.lease.is_acting_now().map(Epoch);
        if epoch.is_some() && epoch != self.edge_told_in {
            // A new term: tell the edge how things stand under this epoch, even if the engine
            // decided everything while we were still standby (or before we led at all).
            self.edge_told_in = epoch;
            if !commands.iter().any(|c| matches!(c, Command::NotifyEdge(_))) {
                commands.push(Command::NotifyEdge(Engine::edge_notice(&self.state)));
            }
        }
        // The record changes of one step go to the applier together, as one group.
        let mut group = Vec::new();
        for cmd in commands {
            if let Command::Alert(a) = &cmd {
                // The engine decided this alert is ours to send: a standby's alerts about
                // names and sites come back wrapped as audit records, never as alerts.
                self.alerts.send(a);
            }
            if let Command::SetRecord(set) = cmd {
                self.issued.note(&set.namespace, set.generation);
                group.push(set);
                continue;
            }
            dispatch(cmd, epoch, &self.controller, &self.audit, &self.edge).await;
        }
        if !group.is_empty() && self.apply_tx.send(group).await.is_err() {
            tracing::error!("applier stopped; record changes dropped");
        }
        wake
    }
}

async fn dispatch(
    cmd: Command,
    epoch: Option<Epoch>,
    controller: &str,
    audit: &AuditSink,
    edge: &EdgeOut,
) {
    let record = |event: AuditEvent| AuditRecord {
        at: Utc::now(),
        controller: controller.to_owned(),
        role: AuditRole::of_epoch(epoch),
        epoch,
        event,
        seq: None,
    };
    match cmd {
        // Sent by the caller, a step's changes together.
        Command::SetRecord(_) => {}
        Command::Alert(alert) => {
            log_alert(&alert);
            audit.record(record(AuditEvent::Runtime(RuntimeEvent::Alert { alert })));
        }
        Command::Audit(a) => {
            // Flat like the runtime's own records: `event.kind` names what happened.
            audit.record(record(AuditEvent::Engine(EngineAudit {
                event: a.event,
                engine_at: a.at,
            })));
        }
        Command::NotifyEdge(notice) => {
            if let Some(epoch) = epoch {
                let n = crate::edge::notification(&notice, controller, epoch.get(), Utc::now());
                edge.deliverer.notify(&n);
                // Off the engine loop: a slow bus must not hold decisions up. Receivers and the
                // KV order notices by (epoch, generation), so a late one changes nothing.
                let (client, store) = (edge.client.clone(), edge.store.clone());
                edge.tasks.spawn(async move {
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
            audit.record(record(AuditEvent::Runtime(RuntimeEvent::EdgeNotice {
                notice,
            })));
        }
    }
}

/// Where the leader's edge notifications go: NATS, the KV bucket, the webhooks.
struct EdgeOut {
    client: async_nats::Client,
    store: async_nats::jetstream::kv::Store,
    deliverer: crate::edge::WebhookDeliverer,
    /// Where the publishes run, tracked with the rest of `run`'s tasks.
    tasks: Tasks,
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
                epoch: Epoch(view.1),
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
