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
//! `a0` (moving away from a Down site waits for no hold-down).
//!
//! Providers: `memory` (in-process, batching like a provider with a batch API; `--batch 1` is the
//! one-name path), `builtin` (the JetStream KV bucket the built-in DNS serves from) and
//! `cloudflare` (the strict emulator in `tests/src/cloudflare.rs`; requests counted by the
//! emulator). The provider is wrapped to time its calls, so the controller runs in this process
//! and its resident memory is this process's (an upper bound: the fleet publisher and, for
//! `cloudflare`, the emulator are in it too).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sitewarden_controller::provider::{
    ApplyOutcome, BatchFuture, Change, DnsProvider, MemoryProvider, ProviderFuture, RateBudget,
    RecordState, RetryPolicy, StatsSnapshot,
};
use sitewarden_tests::cloudflare::CloudflareEmulator;
use sitewarden_tests::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::rig::{self, FLEET_AGENTS, FleetPublisher, InProcess};

/// How long a trial waits after each failing observation for the provider's first call.
const PAUSE: Duration = Duration::from_secs(1);

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
}

const TOKEN: &str = "cf-bench-token-mass-7d1e";

/// A provider whose many-name calls are timed: when the first began, and when the count of
/// applied outcomes last grew.
struct Timed {
    inner: Arc<dyn DnsProvider>,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    first_call: Option<Instant>,
    applied: usize,
    last_applied: Option<Instant>,
    refused: usize,
}

impl Timed {
    fn reset(&self) {
        if let Ok(mut l) = self.log.lock() {
            *l = Log::default();
        }
    }

    fn first_call(&self) -> Option<Instant> {
        self.log.lock().ok()?.first_call
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
        self.inner.read_many(names)
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
        if let Ok(mut l) = self.log.lock() {
            l.refused += outcomes.len() - applied;
            if applied > 0 {
                l.applied += applied;
                l.last_applied = Some(Instant::now());
            }
        }
    }
}

/// The mass name `i` of pair 0.
fn mass_name(i: usize) -> String {
    format!("m{i}.example.com")
}

/// The fleet's configuration with pair 0's one name replaced by `names` names.
fn config(pairs: usize, names: usize) -> String {
    let fleet = rig::fleet_decisions(pairs);
    let mut s = String::with_capacity(fleet.len() + names * 220);
    let pair0 = format!("[[namespaces]]\nname = \"{}\"\n", rig::fleet_name(0));
    // Every block of the fleet but pair 0's namespace.
    for block in fleet.split("\n\n") {
        if !block.is_empty() && !block.starts_with(&pair0) {
            s.push_str(block);
            s.push_str("\n\n");
        }
    }
    for i in 0..names {
        s.push_str(&format!(
            "[[namespaces]]\nname = \"{}\"\nttl = \"60s\"\ncandidates = [\n  {{ target = \"rr0.example.com\", requires = [\"p0a\", \"p0b\"] }},\n  {{ target = \"a0.example.com\", requires = [\"p0a\"] }},\n  {{ target = \"b0.example.com\", requires = [\"p0b\"] }},\n]\n\n",
            mass_name(i)
        ));
    }
    s
}

/// The names' store, seeded: every mass name and every other pair's name on its round robin.
async fn seeded(
    kind: Kind,
    batch: usize,
    nats: &NatsServer,
    cf: Option<&CloudflareEmulator>,
    pairs: usize,
    names: usize,
) -> anyhow::Result<Arc<dyn DnsProvider>> {
    let mut all: Vec<(String, String)> = (0..names)
        .map(|i| (mass_name(i), rig::fleet_rr(0)))
        .collect();
    all.extend((1..pairs).map(|k| (rig::fleet_name(k), rig::fleet_rr(k))));
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
            Ok(Arc::new(p))
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
            Ok(Arc::new(p))
        }
        Kind::Cloudflare => {
            use sitewarden_controller::provider::cloudflare::{
                CloudflareOptions, CloudflareProvider, Zone,
            };
            let cf = cf.ok_or_else(|| anyhow::anyhow!("no emulator"))?;
            let zone = cf.add_zone("example.com");
            // A paid plan's batch limit when asked for more than the Free plan's 200.
            cf.set_batch_limit(batch.max(200));
            for (name, target) in &all {
                cf.add_cname(&zone, name, target, 60, false, Some(rig::SEED_COMMENT));
            }
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
            Ok(Arc::new(p))
        }
    }
}

pub async fn run(
    kind: Kind,
    batch: usize,
    names: usize,
    pairs: usize,
    trials: usize,
) -> anyhow::Result<()> {
    let pairs = pairs.max(1);
    let nats = NatsServer::start().await?;
    let cf = match kind {
        Kind::Cloudflare => Some(CloudflareEmulator::start(TOKEN).await?),
        _ => None,
    };
    let seed_started = Instant::now();
    let provider = Arc::new(Timed {
        inner: seeded(kind, batch, &nats, cf.as_ref(), pairs, names).await?,
        log: Mutex::default(),
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
    let mut rss_peak = rig::rss_kb(std::process::id())?;
    let mut recovered = 0;
    for trial in 0..trials {
        let (fail, survivor) = if trial % 2 == 0 {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let server = format!("cas-0-{fail}");
        let site = format!("p0{fail}");
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
        provider.reset();
        let calls_before = provider.stats().calls;
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
            Duration::from_secs(300),
            || async {
                let (applied, last, _) = provider.applied();
                (applied >= names).then_some(last).flatten()
            },
        )
        .await?;
        let (applied, _, refused) = provider.applied();
        anyhow::ensure!(refused == 0, "trial {trial}: {refused} names not applied");
        let secs = last.duration_since(deciding).as_secs_f64();
        let used = provider.stats().calls - calls_before;
        eprintln!(
            "trial {trial}: {site} died; {applied} names on {survivor} in {secs:.2} s, {used} provider calls"
        );
        samples.push(secs * 1000.0);
        requests.push(used as f64);
        rss_peak = rss_peak.max(rig::rss_kb(std::process::id())?);
        fleet.set(&server, Some(true));
        recovered = fleet.rounds() + u64::from(sitewarden_controller::config::DEFAULT_RISE) + 4;
    }
    stop.cancel();
    ctl.stop().await;
    let s = rig::summary(&mut samples)?;
    let r = rig::summary(&mut requests)?;
    let label = match (kind, batch) {
        (Kind::Memory, b) if b <= 1 => "memory_one_by_one".to_owned(),
        (Kind::Memory, _) => "memory".to_owned(),
        (Kind::Builtin, _) => "builtin".to_owned(),
        (Kind::Cloudflare, b) if b <= 1 => "cloudflare_one_by_one".to_owned(),
        (Kind::Cloudflare, b) => format!("cloudflare_batch{b}"),
    };
    println!(
        "{}",
        serde_json::json!({
            format!("mass_{label}_names"): names,
            format!("mass_{label}_site_pairs"): pairs,
            format!("mass_{label}_trials"): trials,
            format!("mass_{label}_p50_s"): rig::round(s.p50 / 1000.0, 3),
            format!("mass_{label}_p99_s"): rig::round(s.p99 / 1000.0, 3),
            format!("mass_{label}_max_s"): rig::round(s.max / 1000.0, 3),
            format!("mass_{label}_requests_max"): r.max,
            format!("mass_{label}_rss_peak_mb"): rig::round(rss_peak as f64 / 1024.0, 1),
            format!("mass_{label}_idle_cpu_percent"): rig::round(idle, 2),
        })
    );
    Ok(())
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
    tokio::time::sleep(window).await;
    let used = ticks()? - before;
    // Linux clock ticks are 100 per second.
    Ok(used as f64 / 100.0 / started.elapsed().as_secs_f64() * 100.0)
}
