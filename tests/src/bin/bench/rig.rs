//! Pieces every controller benchmark uses: a provider that timestamps each `apply` call, an
//! in-process controller started from TOML text, a `sitewarden-controller run` process started
//! from TOML text, a synthetic fleet of site pairs whose observations the benchmark publishes
//! itself, a process's memory and CPU from /proc, and summary statistics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sitewarden_agent::AgentConfig;
use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::provider::budget::RetryPolicy;
use sitewarden_controller::provider::{
    ApplyOutcome, Change, DnsProvider, MemoryProvider, ProviderFuture, RecordState,
};
use sitewarden_controller::runtime::metrics::Metrics;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_controller::runtime::{self, Runtime};
use sitewarden_shared::config::Source;
use sitewarden_tests::config_toml::NatsTable;
use sitewarden_tests::two_site;
use tokio_util::sync::CancellationToken;

/// The marker every seeded record carries, so the controller may change it.
pub const SEED_COMMENT: &str = "sitewarden epoch=0 gen=0";

/// A [`MemoryProvider`] that notes when each `apply` is called (before it runs).
pub struct Recorder {
    /// The store behind it.
    pub inner: Arc<MemoryProvider>,
    applies: Mutex<Vec<(Instant, String, String)>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(MemoryProvider::new(RetryPolicy::default())),
            applies: Mutex::new(Vec::new()),
        })
    }

    /// When `apply` was first called for `name` after `after`, and with which target.
    pub fn apply_after(&self, name: &str, after: Instant) -> Option<(Instant, String)> {
        let applies = self.applies.lock().ok()?;
        applies
            .iter()
            .find(|(t, n, _)| n == name && *t >= after)
            .map(|(t, _, target)| (*t, target.clone()))
    }

    /// When `apply` was first called for `name`, and with which target.
    pub fn first_apply(&self, name: &str) -> Option<(Instant, String)> {
        let applies = self.applies.lock().ok()?;
        applies
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(t, _, target)| (*t, target.clone()))
    }
}

impl DnsProvider for Recorder {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn read<'a>(&'a self, name: &'a str) -> ProviderFuture<'a, RecordState> {
        self.inner.read(name)
    }

    fn apply<'a>(&'a self, change: &'a Change) -> ProviderFuture<'a, ApplyOutcome> {
        let at = Instant::now();
        if let Ok(mut applies) = self.applies.lock() {
            applies.push((at, change.name.clone(), change.target.clone()));
        }
        self.inner.apply(change)
    }
}

/// A controller running inside this process.
pub struct InProcess {
    /// Its metrics (intake counters, acting).
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// Starts `runtime::run` with `toml` and `provider`.
    pub fn start(toml: &str, provider: Option<Arc<dyn DnsProvider>>) -> anyhow::Result<Self> {
        let src = Source::inline("bench-controller.toml", toml);
        let config = ControllerConfig::load(&src).map_err(|e| anyhow::anyhow!("{e}\n{toml}"))?;
        let settings = RuntimeSettings::load(&src).map_err(|e| anyhow::anyhow!("{e}"))?;
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let rt = Runtime {
            config,
            settings,
            provider,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(runtime::run(rt, shutdown.clone()));
        Ok(Self {
            metrics,
            shutdown,
            task,
        })
    }

    /// Waits until it holds the lease; a controller that stopped first (a port taken, the bus
    /// refused) is reported with its error instead of a timeout.
    pub async fn acting(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let waited = sitewarden_tests::wait_for("the controller to act", deadline, || async {
            (self.metrics.acting.get() == 1 || self.task.is_finished()).then_some(())
        })
        .await;
        if self.task.is_finished() {
            let ended = (&mut self.task).await;
            anyhow::bail!("the controller stopped before it acted: {ended:?}");
        }
        waited
    }

    /// Stops it and waits briefly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Waits until the controller has accepted `events` agent events (the evidence every site
/// needs to be judged: the engine takes a first passing result as up). The operator status API
/// would say so directly, but it needs a token.
pub async fn accepted(metrics: &Metrics, events: u64, deadline: Duration) -> anyhow::Result<()> {
    sitewarden_tests::wait_for("the first rounds of evidence", deadline, || async {
        (metrics.events_accepted.get() >= events).then_some(())
    })
    .await
}

/// Waits until the controller's verdict for every site of `sites` is Up (after `rise`
/// passing rounds): a fault struck before would hit a site that is still rising, which a real
/// site that has served for hours never is.
pub async fn sites_up(metrics: &Metrics, sites: &[&str], deadline: Duration) -> anyhow::Result<()> {
    sitewarden_tests::wait_for("every site Up", deadline, || async {
        sitewarden_tests::metrics_page::sites_up(&metrics.encode(), sites).then_some(())
    })
    .await
}

/// [`sites_up`] for a controller of its own, read from its `/metrics` at `http`.
pub async fn sites_up_at(
    http: SocketAddr,
    sites: &[&str],
    deadline: Duration,
) -> anyhow::Result<()> {
    sitewarden_tests::wait_for("every site Up", deadline, || async {
        sitewarden_tests::metrics_page::sites_up(&metrics_page(http).await?, sites).then_some(())
    })
    .await
}

/// The `/metrics` page of the controller listening at `http`, `None` while it does not answer.
pub async fn metrics_page(http: SocketAddr) -> Option<String> {
    reqwest::get(format!("http://{http}/metrics"))
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of the sample `series` (name and labels exactly as exposed, e.g.
/// `sitewarden_controller_acting` or `…_applies_total{outcome="applied"}`) on the page `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The two-site layout's three agents (site1, site2 and the witness) running in this process:
/// ActiveSync probes of the four servers every `interval`.
pub struct Agents {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Agents {
    /// Starts them on `nats`; `view(site)` is the four servers' addresses as the agent of
    /// `site` reaches them (directly, or through proxies).
    pub fn start(
        nats: &str,
        interval: Duration,
        timeout: Duration,
        view: impl Fn(&str) -> [SocketAddr; 4],
    ) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for (id, site) in two_site::AGENTS {
            let toml = two_site::agent(
                id,
                site,
                NatsTable::servers([nats]),
                &view(site),
                interval,
                timeout,
            )
            .render();
            let config = AgentConfig::from_source(&Source::inline("bench-agent.toml", &toml))
                .map_err(|e| anyhow::anyhow!("agent config: {e}"))?;
            tasks.push(tokio::spawn(sitewarden_agent::run::run(
                config,
                stop.child_token(),
            )));
        }
        Ok(Self { stop, tasks })
    }

    /// Stops them and waits briefly for each.
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// A free loopback address.
pub use sitewarden_tests::free_addr;

/// `[controller]`, `[nats]`, `[provider]` and `[ha]` for an in-process controller.
pub fn controller_head(id: &str, nats: &str, listen: &str, provider: &str) -> String {
    format!(
        "[controller]\nid = \"{id}\"\nlisten = \"{listen}\"\n\n[nats]\nservers = [\"{nats}\"]\n\n[provider]\n{provider}\n"
    )
}

/// Agents of the synthetic fleet: one per witness site.
pub const FLEET_AGENTS: [(&str, &str); 3] =
    [("w1-agent", "w1"), ("w2-agent", "w2"), ("w3-agent", "w3")];

/// A fleet of `pairs` site pairs (`p{k}a`, `p{k}b`, one server each: `cas-{k}-a`, `cas-{k}-b`)
/// watched by three witness agents, one namespace `n{k}.example.com` per pair with the
/// round-robin / a / b candidates. Default policy (interval 2 s, fall 3, min_observers 2).
pub fn fleet_decisions(pairs: usize) -> String {
    let mut s = String::from("[policy]\n\n");
    for (_, site) in FLEET_AGENTS {
        s.push_str(&format!("[[sites]]\nname = \"{site}\"\n\n"));
    }
    for (agent, site) in FLEET_AGENTS {
        s.push_str(&format!(
            "[[agents]]\nname = \"{agent}\"\nsite = \"{site}\"\n\n"
        ));
    }
    for k in 0..pairs {
        for half in ["a", "b"] {
            s.push_str(&format!(
                "[[sites]]\nname = \"p{k}{half}\"\nservers = [\"cas-{k}-{half}\"]\n\n"
            ));
        }
        s.push_str(&format!(
            "[[namespaces]]\nname = \"{}\"\nttl = \"60s\"\ncandidates = [\n  {{ target = \"rr{k}.example.com\", requires = [\"p{k}a\", \"p{k}b\"] }},\n  {{ target = \"a{k}.example.com\", requires = [\"p{k}a\"] }},\n  {{ target = \"b{k}.example.com\", requires = [\"p{k}b\"] }},\n]\n\n",
            fleet_name(k)
        ));
    }
    s
}

/// [`fleet_decisions`] of `pairs` pairs where pair `carrier` carries `names` instead of its
/// one namespace (candidates `rr{carrier}` on both sites, `a{carrier}`, `b{carrier}`).
pub fn fleet_with_names(
    pairs: usize,
    carrier: usize,
    names: impl ExactSizeIterator<Item = String>,
) -> String {
    let fleet = fleet_decisions(pairs);
    if names.len() == 0 {
        return fleet;
    }
    let mut s = String::with_capacity(fleet.len() + names.len() * 220);
    let own = format!("[[namespaces]]\nname = \"{}\"\n", fleet_name(carrier));
    for block in fleet.split("\n\n") {
        if !block.is_empty() && !block.starts_with(&own) {
            s.push_str(block);
            s.push_str("\n\n");
        }
    }
    let k = carrier;
    for name in names {
        s.push_str(&format!(
            "[[namespaces]]\nname = \"{name}\"\nttl = \"60s\"\ncandidates = [\n  {{ target = \"rr{k}.example.com\", requires = [\"p{k}a\", \"p{k}b\"] }},\n  {{ target = \"a{k}.example.com\", requires = [\"p{k}a\"] }},\n  {{ target = \"b{k}.example.com\", requires = [\"p{k}b\"] }},\n]\n\n"
        ));
    }
    s
}

/// The namespace of pair `k`.
pub fn fleet_name(k: usize) -> String {
    format!("n{k}.example.com")
}

/// The round-robin target of pair `k` (what the record holds at start).
pub fn fleet_rr(k: usize) -> String {
    format!("rr{k}.example.com")
}

/// One observation as an agent would publish it: (subject, JSON payload).
pub fn observation(
    agent: &str,
    agent_site: &str,
    seq: u64,
    target_site: &str,
    server: &str,
    check: &str,
    pass: bool,
) -> (String, Vec<u8>) {
    let mut v = serde_json::json!({
        "schema_version": 1,
        "agent": agent,
        "site": agent_site,
        "seq": seq,
        "observed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "target_site": target_site,
        "server": server,
        "check": check,
        "kind": "activesync",
        "protocol": "activesync",
        "outcome": if pass { "pass" } else { "fail" },
        "latency_ms": 3,
        "details": {},
    });
    if !pass {
        v["error_class"] = "connect_refused".into();
        v["error"] = "connection refused".into();
    }
    (
        format!("sitewarden.v1.obs.{agent_site}.{agent}.{server}.{check}"),
        v.to_string().into_bytes(),
    )
}

/// Publishes the fleet's observations with per-agent increasing sequence numbers; a server is
/// reported passing, failing, or left alone while a benchmark drives it by hand.
pub struct FleetPublisher {
    client: async_nats::Client,
    seqs: tokio::sync::Mutex<HashMap<String, u64>>,
    /// Per server: Some(pass) to refresh, None while a trial drives it.
    servers: Mutex<Vec<(String, String, Option<bool>)>>,
    /// Held by a refresh round until the controller has taken its events in, and by a timed
    /// trial while it runs, so a trial never measures the queue behind a refresh burst.
    quiet: Arc<tokio::sync::Mutex<()>>,
    /// Refresh rounds published so far.
    rounds: std::sync::atomic::AtomicU64,
}

impl FleetPublisher {
    /// A publisher for `pairs` pairs, every server passing.
    pub async fn connect(nats: &str, pairs: usize) -> anyhow::Result<Arc<Self>> {
        let client = async_nats::connect(nats).await?;
        let mut servers = Vec::new();
        for k in 0..pairs {
            for half in ["a", "b"] {
                servers.push((format!("p{k}{half}"), format!("cas-{k}-{half}"), Some(true)));
            }
        }
        Ok(Arc::new(Self {
            client,
            seqs: tokio::sync::Mutex::new(HashMap::new()),
            servers: Mutex::new(servers),
            quiet: Arc::default(),
            rounds: Default::default(),
        }))
    }

    /// Publishes one observation of `server` (in `site`) by `agent`, in sequence order.
    pub async fn publish(
        &self,
        agent: &str,
        agent_site: &str,
        site: &str,
        server: &str,
        pass: bool,
    ) -> anyhow::Result<()> {
        let mut seqs = self.seqs.lock().await;
        let seq = seqs.entry(agent.to_owned()).or_insert(0);
        *seq += 1;
        let (subject, payload) = observation(agent, agent_site, *seq, site, server, "eas", pass);
        self.client.publish(subject, payload.into()).await?;
        Ok(())
    }

    /// Flushes the connection.
    pub async fn flush(&self) -> anyhow::Result<()> {
        self.client.flush().await?;
        Ok(())
    }

    /// Sets how `server` is refreshed (None: not at all).
    pub fn set(&self, server: &str, state: Option<bool>) {
        if let Ok(mut s) = self.servers.lock() {
            for e in s.iter_mut().filter(|e| e.1 == server) {
                e.2 = state;
            }
        }
    }

    /// Waits until no refresh round is in flight and holds rounds off until the guard drops.
    pub async fn quiet(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.quiet.clone().lock_owned().await
    }

    /// One round: every agent reports every refreshed server. Returns how many it published.
    pub async fn round(&self) -> anyhow::Result<u64> {
        let servers: Vec<_> = self
            .servers
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let mut n = 0;
        for (agent, agent_site) in FLEET_AGENTS {
            for (site, server, state) in &servers {
                if let Some(pass) = state {
                    self.publish(agent, agent_site, site, server, *pass).await?;
                    n += 1;
                }
            }
        }
        self.flush().await?;
        self.rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    /// Refresh rounds published so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refreshes every `every` until `stop`. With `settle`, each round holds [`Self::quiet`]
    /// until that controller's intake has accepted the round's events (or a second passed).
    pub fn spawn_refresh(
        self: &Arc<Self>,
        every: Duration,
        stop: CancellationToken,
        settle: Option<Arc<Metrics>>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let _quiet = me.quiet().await;
                        let before = settle.as_ref().map(|m| m.events_accepted.get());
                        match me.round().await {
                            Ok(n) => {
                                if let (Some(m), Some(before)) = (&settle, before) {
                                    let _ = accepted(m, before + n, Duration::from_secs(1)).await;
                                }
                            }
                            Err(e) => eprintln!("refresh failed: {e}"),
                        }
                    }
                }
            }
        });
    }
}

/// Min, median, p99 and max of `v` (sorted in place), by nearest rank.
pub struct Summary {
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Summarises `v`; fails when it is empty.
pub fn summary(v: &mut [f64]) -> anyhow::Result<Summary> {
    anyhow::ensure!(!v.is_empty(), "no samples");
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = |q: f64| {
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    };
    Ok(Summary {
        min: v[0],
        p50: rank(0.5),
        p99: rank(0.99),
        max: v[v.len() - 1],
    })
}

/// Rounds to `digits` decimals for the JSON output.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Resident memory of `pid` in kB (`VmRSS`).
pub fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    status_kb(pid, "VmRSS:")
}

/// The most resident memory `pid` has had since it started, in kB (`VmHWM`, the kernel's
/// high-water mark): a peak no sampling can miss.
pub fn rss_peak_kb(pid: u32) -> anyhow::Result<u64> {
    status_kb(pid, "VmHWM:")
}

/// The kB value of the line starting with `field` in /proc/`pid`/status.
fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (has the process exited?)"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} missing from /proc/{pid}/status"))?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// User + system CPU time of `pid` so far, in seconds (/proc/<pid>/stat, clock ticks of 10 ms).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("stat without a command")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / 100.0)
}

/// Writes `text` to a new file at `path` readable by this user only (0600): configs and token
/// files of a benchmark's controller.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A `sitewarden-controller run` process, its config in a temporary directory of its own;
/// killed when dropped.
pub struct ControllerProcess {
    /// Its process id, for /proc.
    pub pid: u32,
    /// Where its HTTP API and `/metrics` listen.
    pub http: SocketAddr,
    child: tokio::process::Child,
    /// Holds `controller.toml` (0600) and `controller.log`, whatever else the config names.
    dir: tempfile::TempDir,
}

impl ControllerProcess {
    /// Starts `binary` with the config `toml` (written 0600 into `dir`, which the config may
    /// also refer to, e.g. for a token file); its output goes to `controller.log` there, at
    /// `RUST_LOG=warn`. `http` is the `[controller] listen` address in `toml`.
    pub fn start(
        binary: &Path,
        dir: tempfile::TempDir,
        toml: &str,
        http: SocketAddr,
    ) -> anyhow::Result<Self> {
        let config = dir.path().join("controller.toml");
        write_private(&config, toml)?;
        let log = std::fs::File::create(dir.path().join("controller.log"))?;
        let child = tokio::process::Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(log.try_clone()?))
            .stderr(std::process::Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it: cargo build --release -p sitewarden-controller)",
                    binary.display()
                )
            })?;
        let pid = child.id().context("the controller exited at once")?;
        Ok(Self {
            pid,
            http,
            child,
            dir,
        })
    }

    /// Waits until it holds the lease (`sitewarden_controller_acting 1`); a controller that
    /// exited first is reported with the end of its log instead of a timeout.
    pub async fn acting(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let http = self.http;
        let started = Instant::now();
        loop {
            self.alive()?;
            if let Some(page) = metrics_page(http).await
                && sample(&page, "sitewarden_controller_acting") == Some(1.0)
            {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "the controller did not act within {deadline:?}; its log ends:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(sitewarden_tests::POLL_INTERVAL).await;
        }
    }

    /// Fails, with the end of its log, if it has exited.
    pub fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "the controller exited ({status}); its log ends:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("controller.log"))
            .unwrap_or_else(|e| format!("(no log: {e})"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops it with SIGTERM (a profiler wrapping it, e.g. valgrind's massif, then writes its
    /// output), killing it after 30 s.
    pub async fn stop(mut self) {
        use sitewarden_tests::signals::{self, Signal};
        if signals::send(self.pid, Signal::Term).await.is_ok()
            && tokio::time::timeout(Duration::from_secs(30), self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        let _ = self.child.kill().await;
    }
}
