//! `mass-failover`: one site carries every name; it dies; how long until the last name is
//! applied and verified, and how many API requests that took.
//!
//! One nats-server, one in-process controller (default policy) and the synthetic fleet of
//! `--pairs` site pairs watched by three witness agents (this process publishes every
//! observation; each server is refreshed every 500 ms). Pair 0 carries `--names` names
//! (`m{i}.example.com`, candidates `rr0` on both sites, `a0`, `b0`), every other pair one name. A
//! trial stops refreshing one side of pair 0 and publishes its failing observations one at a
//! time, 200 ms apart; the observation after which the provider's first `apply_many` call is seen
//! is the deciding event. The figure is from that publish to the moment the provider returned
//! the last name's outcome as applied (written and read back). Trials alternate the failing
//! side: a → every name moves to `b0`; once a has risen again, b fails and every name moves to
//! `a0` (moving away from a Down site waits for no hold-down). A side fails only between two of
//! the applier's reconciliation reads (every 60 s by default). A failover no longer waits for a
//! read (the change starts at once and the read's result for its names is dropped), but a
//! listing of 10,000 records and the books looked up for each compete with the move for the
//! provider and the two cores; trials stay clear of them so that each measures the move alone.
//!
//! Providers: `memory` (in-process, batching like a provider with a batch API; `--batch 1` is the
//! one-name path), `builtin` (the JetStream KV bucket the built-in DNS serves from),
//! `cloudflare` (the strict emulator in `tests/src/cloudflare.rs`; requests counted by the
//! emulator), `route53` (a moto hosted zone `example.com` behind the strict front of
//! `tests/src/moto.rs`, through the Route 53 provider with its shipped pacing, budget and 2 s
//! GetChange poll; moto answers INSYNC at the first poll, so real Route 53 takes longer; the
//! front's count of the requests it saw is reported next to the provider's) and `rfc2136` (a real
//! BIND primary for `example.com`, see `tests/src/bind.rs`, updated with TSIG through the RFC 2136
//! provider). Route 53 and RFC 2136 names are seeded with their `_sitewarden.<name>` TXT marker
//! of epoch 0, and after each trial the first and last name are looked up on the server itself.
//! The provider is wrapped to time its calls, so the controller runs in this process and its
//! resident memory is this process's (an upper bound: the fleet publisher and, for `cloudflare`,
//! the emulator are in it too; moto and `named` are processes of their own). With
//! `--controller process` (Cloudflare only) the controller is a `sitewarden-controller run`
//! process of its own and its memory is measured alone: see [`crate::mass_process`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sitewarden_controller::provider::config::DEFAULT_REQUEST_TIMEOUT;
use sitewarden_controller::provider::{
    ApplyOutcome, BatchFuture, Change, DnsProvider, MemoryProvider, ProviderFuture, RateBudget,
    RecordState, RetryPolicy, SecretString, StatsSnapshot,
};
use sitewarden_tests::bind::{self, Bind};
use sitewarden_tests::cloudflare::CloudflareEmulator;
use sitewarden_tests::moto::Moto;
use sitewarden_tests::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::rig::{self, FLEET_AGENTS, FleetPublisher, InProcess};

/// How long a trial waits after each failing observation for the provider's first call.
pub const PAUSE: Duration = Duration::from_secs(1);

/// Where the controller runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// In this process, its provider wrapped to time its calls; the memory figure is this
    /// process's (the emulator and the fleet publisher included).
    InProcess,
    /// A `sitewarden-controller run` process of its own (`--provider cloudflare` only): timed
    /// from its audit records and the emulator's request log, its memory measured alone.
    Process,
}

/// Which provider the names live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// In-process, batching (or one by one with `--batch 1`).
    Memory,
    /// The built-in DNS's JetStream KV bucket.
    Builtin,
    /// The strict Cloudflare emulator, through the Cloudflare provider (default budget: 300
    /// requests per 5 minutes).
    Cloudflare,
    /// A moto hosted zone through the Route 53 provider (default budget, pacing and GetChange
    /// poll).
    Route53,
    /// A BIND primary updated with TSIG through the RFC 2136 provider.
    Rfc2136,
}

/// The zone the names live in (every bench name is under it).
pub const ZONE: &str = "example.com";

/// TTL of the seeded records (the namespaces' `ttl`).
const SEED_TTL: u32 = 60;

/// Record changes per administrator request when seeding moto.
const MOTO_SEED_CHUNK: usize = 500;

/// Whatever the names live in outside the provider, kept running for the whole run.
enum Backend {
    /// Nothing apart from this process and its NATS server (memory, builtin; rfc2136 until
    /// `named` is started with the seeded zone).
    None,
    Cloudflare(CloudflareEmulator),
    /// moto and the id of its hosted zone `example.com`.
    Route53 {
        moto: Moto,
        zone: String,
    },
    Bind(Bind),
}

impl Backend {
    /// Starts the emulator the names will be seeded into, if it runs apart from them (`named`
    /// loads its zone when it starts: [`seeded`] starts it).
    async fn start(kind: Kind) -> anyhow::Result<Self> {
        Ok(match kind {
            Kind::Cloudflare => Backend::Cloudflare(CloudflareEmulator::start(TOKEN).await?),
            Kind::Route53 => {
                let moto = Moto::start().await?;
                let zone = moto.create_zone(ZONE).await?;
                Backend::Route53 { moto, zone }
            }
            Kind::Memory | Kind::Builtin | Kind::Rfc2136 => Backend::None,
        })
    }

    /// Requests the backend itself counted so far, when it counts them.
    fn requests(&self) -> Option<usize> {
        match self {
            Backend::Route53 { moto, .. } => Some(moto.calls().len()),
            _ => None,
        }
    }

    /// The CNAME target of `name` as the server itself holds it (asked directly, not through
    /// the provider), when the bench checks it there: `None` for the kinds it does not.
    async fn cname(&self, name: &str) -> anyhow::Result<Option<Option<String>>> {
        Ok(match self {
            Backend::Route53 { moto, zone } => Some(
                moto.record(zone, name, "CNAME")
                    .await?
                    .and_then(|(_, values)| values.into_iter().next())
                    .map(|v| v.trim_end_matches('.').to_ascii_lowercase()),
            ),
            Backend::Bind(server) => Some(server.cname(name).await?),
            Backend::None | Backend::Cloudflare(_) => None,
        })
    }
}

/// The Cloudflare emulator's API token.
pub const TOKEN: &str = "cf-bench-token-mass-7d1e";

/// A provider whose many-name calls are timed: when the first began, and when the count of
/// applied outcomes last grew; and whose many-name reads (the applier's reconciliation) are
/// followed.
struct Timed {
    inner: Arc<dyn DnsProvider>,
    log: Mutex<Log>,
    reads: Mutex<Reads>,
}

/// The many-name reads: how many are in flight, and when the last one began and ended.
#[derive(Default)]
struct Reads {
    in_flight: usize,
    last_began: Option<Instant>,
    last_ended: Option<Instant>,
}

/// The controller's default `reconcile_every`: every record is read back this often.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// A trial fails a side no closer than this to the next reconciliation read.
pub const RECONCILE_GUARD: Duration = Duration::from_secs(10);

/// How long after a reconciliation read a trial waits before failing a side: the applier looks
/// up its books for each name read and tells the engine (seconds for 1,000 names on a loaded
/// machine).
pub const READ_SETTLE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Log {
    first_call: Option<Instant>,
    applied: usize,
    last_applied: Option<Instant>,
    refused: usize,
    /// The last outcome that was not `Applied`, for the error when a trial times out.
    last_refusal: Option<String>,
}

impl Timed {
    fn reset(&self) {
        if let Ok(mut l) = self.log.lock() {
            *l = Log::default();
        }
    }

    /// What the calls so far came to, for an error: applied and other outcomes, and the last
    /// of those.
    fn progress(&self) -> String {
        self.log
            .lock()
            .map(|l| {
                format!(
                    "{} names applied, {} not (last: {})",
                    l.applied,
                    l.refused,
                    l.last_refusal.as_deref().unwrap_or("none")
                )
            })
            .unwrap_or_default()
    }

    fn first_call(&self) -> Option<Instant> {
        self.log.lock().ok()?.first_call
    }

    /// No reconciliation read is in flight or ended within [`READ_SETTLE`], and the next is
    /// not due within [`RECONCILE_GUARD`].
    fn reads_quiet(&self) -> bool {
        self.reads.lock().is_ok_and(|r| {
            r.in_flight == 0
                && r.last_ended.is_none_or(|t| t.elapsed() >= READ_SETTLE)
                && r.last_began
                    .is_none_or(|t| t.elapsed() < RECONCILE_EVERY - RECONCILE_GUARD)
        })
    }

    fn read_began(&self) {
        if let Ok(mut r) = self.reads.lock() {
            r.in_flight += 1;
            r.last_began = Some(Instant::now());
        }
    }

    fn read_ended(&self) {
        if let Ok(mut r) = self.reads.lock() {
            r.in_flight = r.in_flight.saturating_sub(1);
            r.last_ended = Some(Instant::now());
        }
    }

    fn applied(&self) -> (usize, Option<Instant>, usize) {
        self.log
            .lock()
            .map(|l| (l.applied, l.last_applied, l.refused))
            .unwrap_or_default()
    }
}

impl DnsProvider for Timed {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn read<'a>(&'a self, name: &'a str) -> ProviderFuture<'a, RecordState> {
        self.inner.read(name)
    }

    fn apply<'a>(&'a self, change: &'a Change) -> ProviderFuture<'a, ApplyOutcome> {
        Box::pin(async move {
            self.began();
            let outcome = self.inner.apply(change).await;
            self.ended(std::slice::from_ref(&outcome));
            outcome
        })
    }

    fn stats(&self) -> StatsSnapshot {
        self.inner.stats()
    }

    fn batch_limit(&self) -> usize {
        self.inner.batch_limit()
    }

    fn read_many<'a>(&'a self, names: &'a [String]) -> BatchFuture<'a, RecordState> {
        Box::pin(async move {
            self.read_began();
            let states = self.inner.read_many(names).await;
            self.read_ended();
            states
        })
    }

    fn apply_many<'a>(&'a self, changes: &'a [Change]) -> BatchFuture<'a, ApplyOutcome> {
        Box::pin(async move {
            self.began();
            let outcomes = self.inner.apply_many(changes).await;
            self.ended(&outcomes);
            outcomes
        })
    }
}

impl Timed {
    fn began(&self) {
        if let Ok(mut l) = self.log.lock() {
            l.first_call.get_or_insert_with(Instant::now);
        }
    }

    fn ended(
        &self,
        outcomes: &[Result<ApplyOutcome, sitewarden_controller::provider::ProviderError>],
    ) {
        let applied = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(ApplyOutcome::Applied { .. })))
            .count();
        let refusal = outcomes
            .iter()
            .rfind(|o| !matches!(o, Ok(ApplyOutcome::Applied { .. })))
            .map(|o| match o {
                Ok(outcome) => format!("{outcome:?}"),
                Err(e) => e.to_string(),
            });
        if let Ok(mut l) = self.log.lock() {
            l.refused += outcomes.len() - applied;
            if refusal.is_some() {
                l.last_refusal = refusal;
            }
            if applied > 0 {
                l.applied += applied;
                l.last_applied = Some(Instant::now());
            }
        }
    }
}

/// The mass name `i` of pair 0.
pub fn mass_name(i: usize) -> String {
    format!("m{i}.example.com")
}

/// The fleet's configuration with pair 0's one name replaced by `names` names.
pub fn config(pairs: usize, names: usize) -> String {
    rig::fleet_with_names(pairs, 0, (0..names).map(mass_name))
}

/// The trial's survivor (the sides alternate, a failing first), and the failing side's server
/// and site.
pub fn sides(trial: usize) -> (&'static str, String, String) {
    let (fail, survivor) = if trial.is_multiple_of(2) {
        ("a", "b")
    } else {
        ("b", "a")
    };
    (survivor, format!("cas-0-{fail}"), format!("p0{fail}"))
}

/// The names' store, seeded: every mass name and every other pair's name on its round robin.
async fn seeded(
    kind: Kind,
    batch: usize,
    nats: &NatsServer,
    backend: Backend,
    pairs: usize,
    names: usize,
) -> anyhow::Result<(Arc<dyn DnsProvider>, Backend)> {
    let all = seed_list(pairs, names);
    match kind {
        Kind::Memory => {
            let p = MemoryProvider::new(RetryPolicy::default()).with_batches(if batch <= 1 {
                0
            } else {
                batch
            });
            for (name, target) in &all {
                p.insert(name, target, Some(rig::SEED_COMMENT));
            }
            Ok((Arc::new(p), backend))
        }
        Kind::Builtin => {
            use futures::StreamExt;
            let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
            let store = sitewarden_controller::ha::ensure_bucket(
                &js,
                sitewarden_controller::dns::bucket_spec(1),
            )
            .await?;
            let p = sitewarden_controller::provider::builtin::BuiltinProvider::new(store);
            let created: Vec<_> = futures::stream::iter(&all)
                .map(|(name, target)| p.create(name, target, 60))
                .buffer_unordered(256)
                .collect()
                .await;
            for c in created {
                c.map_err(|e| anyhow::anyhow!("seeding the bucket: {e}"))?;
            }
            Ok((Arc::new(p), backend))
        }
        Kind::Cloudflare => {
            use sitewarden_controller::provider::cloudflare::{
                CloudflareOptions, CloudflareProvider, Zone,
            };
            let Backend::Cloudflare(cf) = &backend else {
                anyhow::bail!("no Cloudflare emulator");
            };
            let zone = seed_cloudflare(cf, batch, &all);
            let p = CloudflareProvider::new(CloudflareOptions {
                api_url: cf.api_url(),
                zone: Zone::Id(zone),
                token: TOKEN.to_owned().into(),
                budget: RateBudget::default(),
                retry: RetryPolicy::default(),
                request_timeout: Duration::from_secs(30),
                batch_size: batch.max(1),
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((Arc::new(p), backend))
        }
        Kind::Route53 => {
            use sitewarden_controller::provider::route53::credentials::{
                AwsCredentials, LiveCredentials,
            };
            use sitewarden_controller::provider::route53::{
                DEFAULT_BUDGET, DEFAULT_INSYNC_POLL, DEFAULT_INSYNC_TIMEOUT, MIN_INTERVAL,
                Route53Options, Route53Provider,
            };
            let Backend::Route53 { moto, zone } = &backend else {
                anyhow::bail!("no moto server");
            };
            let marker = format!("\"{}\"", rig::SEED_COMMENT);
            let marker_names: Vec<String> = all
                .iter()
                .map(|(name, _)| format!("_sitewarden.{name}"))
                .collect();
            let mut changes = Vec::with_capacity(all.len() * 2);
            for ((name, target), marker_name) in all.iter().zip(&marker_names) {
                changes.push(("CREATE", name.as_str(), "CNAME", SEED_TTL, target.as_str()));
                changes.push(("CREATE", marker_name.as_str(), "TXT", SEED_TTL, &*marker));
            }
            for chunk in changes.chunks(MOTO_SEED_CHUNK) {
                moto.change(zone, chunk).await?;
            }
            let p = Route53Provider::new(Route53Options {
                endpoint_url: moto.endpoint_url(),
                region: "us-east-1".into(),
                hosted_zone_id: zone.clone(),
                credentials: LiveCredentials::fixed(AwsCredentials::new(
                    SecretString::from("AKIASITEWARDENBENCH".to_owned()),
                    SecretString::from("bench-secret-access-key-for-moto".to_owned()),
                )),
                budget: DEFAULT_BUDGET,
                retry: RetryPolicy::default(),
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                min_interval: MIN_INTERVAL,
                insync_timeout: DEFAULT_INSYNC_TIMEOUT,
                insync_poll: DEFAULT_INSYNC_POLL,
                batch_size: batch.max(1),
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((Arc::new(p), backend))
        }
        Kind::Rfc2136 => {
            use sitewarden_controller::provider::rfc2136::{
                Rfc2136Options, Rfc2136Provider, TsigAlgorithm, TsigKey,
            };
            // Absolute names: the zone file's origin is `example.com.`.
            let mut records = Vec::with_capacity(all.len() * 2 + pairs * 4);
            for (name, target) in &all {
                records.push(format!("{name}. {SEED_TTL} IN CNAME {target}."));
                records.push(format!(
                    "_sitewarden.{name}. {SEED_TTL} IN TXT \"{}\"",
                    rig::SEED_COMMENT
                ));
            }
            // The candidates' targets exist, as they would in a real zone.
            for k in 0..pairs {
                records.push(format!("rr{k}.{ZONE}. {SEED_TTL} IN A 192.0.2.1"));
                records.push(format!("rr{k}.{ZONE}. {SEED_TTL} IN A 198.51.100.1"));
                records.push(format!("a{k}.{ZONE}. {SEED_TTL} IN A 192.0.2.1"));
                records.push(format!("b{k}.{ZONE}. {SEED_TTL} IN A 198.51.100.1"));
            }
            let refs: Vec<&str> = records.iter().map(String::as_str).collect();
            let server = Bind::start(ZONE, &refs).await?;
            let p = Rfc2136Provider::new(Rfc2136Options {
                server: server.addr(),
                zone: ZONE.into(),
                key: TsigKey {
                    name: server.key_name().into(),
                    algorithm: TsigAlgorithm::HmacSha256,
                    secret: SecretString::from(bind::KEY_SECRET.to_owned()),
                },
                retry: RetryPolicy::default(),
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                batch_size: batch.max(1),
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((Arc::new(p), Backend::Bind(server)))
        }
    }
}

/// Every seeded name with the target it starts on: the mass names and every other pair's name,
/// each on its round robin.
pub fn seed_list(pairs: usize, names: usize) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = (0..names)
        .map(|i| (mass_name(i), rig::fleet_rr(0)))
        .collect();
    all.extend((1..pairs).map(|k| (rig::fleet_name(k), rig::fleet_rr(k))));
    all
}

/// Adds the zone to `cf` with every name of `all`, its batch limit fit for `batch`; returns the
/// zone's id.
pub fn seed_cloudflare(cf: &CloudflareEmulator, batch: usize, all: &[(String, String)]) -> String {
    let zone = cf.add_zone(ZONE);
    // A paid plan's batch limit when asked for more than the Free plan's 200.
    cf.set_batch_limit(batch.max(200));
    for (name, target) in all {
        cf.add_cname(
            &zone,
            name,
            target,
            SEED_TTL,
            false,
            Some(rig::SEED_COMMENT),
        );
    }
    zone
}

/// How the trials of `--provider kind --batch batch` are labelled in the JSON fields
/// (`mass_<label>_…`).
pub fn label(kind: Kind, batch: usize) -> String {
    match (kind, batch) {
        (Kind::Memory, b) if b <= 1 => "memory_one_by_one".to_owned(),
        (Kind::Memory, _) => "memory".to_owned(),
        (Kind::Builtin, _) => "builtin".to_owned(),
        (Kind::Cloudflare, b) if b <= 1 => "cloudflare_one_by_one".to_owned(),
        (Kind::Cloudflare, b) => format!("cloudflare_batch{b}"),
        (Kind::Route53, b) if b <= 1 => "route53_one_by_one".to_owned(),
        (Kind::Route53, _) => "route53".to_owned(),
        (Kind::Rfc2136, b) if b <= 1 => "rfc2136_one_by_one".to_owned(),
        (Kind::Rfc2136, _) => "rfc2136".to_owned(),
    }
}

/// Runs the benchmark with the controller in this process, or as a process of its own
/// (`binary`, Cloudflare only).
pub async fn run(
    mode: Mode,
    binary: std::path::PathBuf,
    kind: Kind,
    batch: usize,
    names: usize,
    pairs: usize,
    trials: usize,
) -> anyhow::Result<()> {
    match (mode, kind) {
        (Mode::InProcess, _) => run_in_process(kind, batch, names, pairs, trials).await,
        (Mode::Process, Kind::Cloudflare) => {
            crate::mass_process::run(binary, batch, names, pairs, trials).await
        }
        (Mode::Process, other) => anyhow::bail!(
            "mass-failover --controller process runs with --provider cloudflare only (it times \
             the controller from the emulator's request log); run --provider {} with \
             --controller in-process",
            clap::ValueEnum::to_possible_value(&other)
                .map_or_else(|| format!("{other:?}"), |v| v.get_name().to_owned())
        ),
    }
}

/// The trials with the controller in this process, its provider wrapped in [`Timed`].
async fn run_in_process(
    kind: Kind,
    batch: usize,
    names: usize,
    pairs: usize,
    trials: usize,
) -> anyhow::Result<()> {
    let pairs = pairs.max(1);
    let nats = NatsServer::start().await?;
    let backend = Backend::start(kind).await?;
    let seed_started = Instant::now();
    let (inner, backend) = seeded(kind, batch, &nats, backend, pairs, names).await?;
    let provider = Arc::new(Timed {
        inner,
        log: Mutex::default(),
        reads: Mutex::default(),
    });
    eprintln!(
        "mass-failover: {names} names seeded in {:.1} s",
        seed_started.elapsed().as_secs_f64()
    );
    let http = rig::free_addr();
    let toml = rig::controller_head(
        "bench-mass",
        &nats.url(),
        &http.to_string(),
        "kind = \"memory\"",
    ) + &config(pairs, names);
    let mut ctl = InProcess::start(&toml, Some(provider.clone() as Arc<dyn DnsProvider>))?;
    ctl.acting(Duration::from_secs(60)).await?;
    let fleet = FleetPublisher::connect(&nats.url(), pairs).await?;
    let stop = CancellationToken::new();
    fleet.spawn_refresh(
        Duration::from_millis(500),
        stop.clone(),
        Some(ctl.metrics.clone()),
    );
    rig::sites_up(&ctl.metrics, &["p0a", "p0b"], Duration::from_secs(120)).await?;
    let idle = idle_cpu(Duration::from_secs(5)).await?;
    let mut samples = Vec::new();
    let mut requests = Vec::new();
    let mut backend_requests = Vec::new();
    let mut rss_peak = rig::rss_kb(std::process::id())?;
    let mut recovered = 0;
    for trial in 0..trials {
        let (survivor, server, site) = sides(trial);
        if trial > 0 {
            // The side that failed last time has risen again (its observers have seen `rise`
            // passes, and the verdict gauge, refreshed on the engine's ticks, says Up) before
            // the other one fails.
            sitewarden_tests::wait_for(
                "the failed side to rise again",
                Duration::from_secs(60),
                || async { (fleet.rounds() >= recovered).then_some(()) },
            )
            .await?;
            rig::sites_up(&ctl.metrics, &["p0a", "p0b"], Duration::from_secs(120)).await?;
        }
        // A reconciliation read competes with the move for the provider and the cores (it no
        // longer holds the move up): fail the side between two reads.
        sitewarden_tests::wait_for(
            "no reconciliation read in flight or due",
            RECONCILE_EVERY * 2,
            || async { provider.reads_quiet().then_some(()) },
        )
        .await?;
        provider.reset();
        let calls_before = provider.stats().calls;
        let backend_before = backend.requests();
        fleet.set(&server, None);
        let mut deciding = None;
        let mut sent = Instant::now();
        // One failing observation at a time, a second apart (at 10,000 names the deciding step
        // and the grouping take a good part of a second): the one after which the provider's
        // first call is seen is the deciding event.
        'publish: for _ in 0..=sitewarden_controller::config::DEFAULT_FALL {
            for (agent, agent_site) in FLEET_AGENTS {
                sent = Instant::now();
                fleet
                    .publish(agent, agent_site, &site, &server, false)
                    .await?;
                fleet.flush().await?;
                let seen = sitewarden_tests::wait_for("the first provider call", PAUSE, || async {
                    provider.first_call()
                })
                .await;
                if seen.is_ok() {
                    deciding = Some(sent);
                    break 'publish;
                }
            }
        }
        if deciding.is_none() {
            // Every observation is out; the last one decided, later than the pause.
            sitewarden_tests::wait_for(
                "the first provider call",
                Duration::from_secs(30),
                || async { provider.first_call() },
            )
            .await
            .map_err(|_| anyhow::anyhow!("trial {trial}: {site} failed, nothing moved"))?;
            deciding = Some(sent);
        }
        let deciding =
            deciding.ok_or_else(|| anyhow::anyhow!("trial {trial}: no deciding event"))?;
        let lag = provider
            .first_call()
            .map_or(0.0, |c| c.duration_since(deciding).as_secs_f64());
        eprintln!("trial {trial}: the provider's first call {lag:.3} s after the deciding event");
        let last = sitewarden_tests::wait_for(
            "every name applied and verified",
            apply_deadline(kind, batch, names),
            || async {
                let (applied, last, _) = provider.applied();
                (applied >= names).then_some(last).flatten()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("trial {trial}: {e}; {}", provider.progress()))?;
        let (applied, _, refused) = provider.applied();
        anyhow::ensure!(refused == 0, "trial {trial}: {refused} names not applied");
        let secs = last.duration_since(deciding).as_secs_f64();
        let used = provider.stats().calls - calls_before;
        let seen = backend
            .requests()
            .zip(backend_before)
            .map(|(after, before)| after.saturating_sub(before));
        let seen_note = seen
            .map(|n| format!(", {n} requests seen by the server"))
            .unwrap_or_default();
        eprintln!(
            "trial {trial}: {site} died; {applied} names on {survivor} in {secs:.2} s, {used} provider calls{seen_note}"
        );
        samples.push(secs * 1000.0);
        requests.push(used as f64);
        if let Some(n) = seen {
            backend_requests.push(n as f64);
        }
        // The server itself holds the move (first and last name, asked past the provider).
        let want = format!("{survivor}0.{ZONE}");
        for name in [mass_name(0), mass_name(names.saturating_sub(1))] {
            if let Some(held) = backend.cname(&name).await? {
                anyhow::ensure!(
                    held.as_deref() == Some(want.as_str()),
                    "trial {trial}: the server holds {name} → {held:?}, not {want}"
                );
            }
        }
        rss_peak = rss_peak.max(rig::rss_kb(std::process::id())?);
        fleet.set(&server, Some(true));
        recovered = fleet.rounds() + u64::from(sitewarden_controller::config::DEFAULT_RISE) + 4;
    }
    stop.cancel();
    ctl.stop().await;
    let s = rig::summary(&mut samples)?;
    let r = rig::summary(&mut requests)?;
    let label = label(kind, batch);
    let mut line = serde_json::json!({
        format!("mass_{label}_names"): names,
        format!("mass_{label}_site_pairs"): pairs,
        format!("mass_{label}_trials"): trials,
        format!("mass_{label}_p50_s"): rig::round(s.p50 / 1000.0, 3),
        format!("mass_{label}_p99_s"): rig::round(s.p99 / 1000.0, 3),
        format!("mass_{label}_max_s"): rig::round(s.max / 1000.0, 3),
        format!("mass_{label}_requests_max"): r.max,
        format!("mass_{label}_rss_peak_mb"): rig::round(rss_peak as f64 / 1024.0, 1),
        format!("mass_{label}_idle_cpu_percent"): rig::round(idle, 2),
    });
    if !backend_requests.is_empty()
        && let Some(fields) = line.as_object_mut()
    {
        let seen = rig::summary(&mut backend_requests)?;
        fields.insert(
            format!("mass_{label}_server_requests_max"),
            serde_json::json!(seen.max),
        );
    }
    println!("{line}");
    Ok(())
}

/// How long the last name may take once the first batch went out: five minutes, more for
/// Route 53 one name at a time (each name a read, a change and a 2 s GetChange poll, the calls
/// 250 ms apart).
pub fn apply_deadline(kind: Kind, batch: usize, names: usize) -> Duration {
    let floor = Duration::from_secs(300);
    match kind {
        Kind::Route53 if batch <= 1 => {
            floor + Duration::from_secs(4u64.saturating_mul(names as u64))
        }
        _ => floor,
    }
}

/// This process's CPU use over `window`, in percent of one core.
async fn idle_cpu(window: Duration) -> anyhow::Result<f64> {
    let ticks = || -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(utime + stime)
    };
    let before = ticks()?;
    let started = Instant::now();
    // A measuring window, not a wait for something to happen: CPU is averaged over it.
    tokio::time::sleep(window).await;
    let used = ticks()? - before;
    // Linux clock ticks are 100 per second.
    Ok(used as f64 / 100.0 / started.elapsed().as_secs_f64() * 100.0)
}
