//! `sitewarden-bench`: the measurements behind BENCHMARKS.md, one reproducible command each.
//!
//! `sitewarden-bench agent --checks 100 --seconds 60` starts a real nats-server and emulated
//! Exchange servers in this process, runs the release `sitewarden-agent` binary as its own
//! process with `--checks` probes at the default 1 s interval, and samples that process's resident memory
//! and CPU time from /proc. The emulators and NATS run outside the measured process. The last
//! line printed is one JSON object, so results can be tracked over time.
//!
//! The controller measurements (`failover`, `decision`, `ingest`, `takeover`,
//! `controller-memory`, `controller-idle`, `dns-calls`, `mass-failover`) live in `bench/`; each also ends with one JSON line, and
//! `scripts/bench` merges them.

#[path = "bench/cf_log.rs"]
mod cf_log;
#[path = "bench/decision.rs"]
mod decision;
#[path = "bench/dns_calls.rs"]
mod dns_calls;
#[path = "bench/failover.rs"]
mod failover;
#[path = "bench/ingest.rs"]
mod ingest;
#[path = "bench/mass.rs"]
mod mass;
#[path = "bench/mass_process.rs"]
mod mass_process;
#[path = "bench/memory.rs"]
mod memory;
#[path = "bench/peers.rs"]
mod peers;
#[path = "bench/peers_conf.rs"]
mod peers_conf;
#[path = "bench/rig.rs"]
mod rig;
#[path = "bench/takeover.rs"]
mod takeover;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use sitewarden_tests::exchange::{ExchangeOptions, ExchangeServer, TestCa};
use sitewarden_tests::nats_server::NatsServer;

#[derive(Parser)]
#[command(about = "Reproducible measurements for BENCHMARKS.md")]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Agent resident memory and CPU with N checks at the default 1 s interval.
    Agent {
        /// Number of probes (checks × servers); rounded to a multiple of 10.
        #[arg(long, default_value_t = 100)]
        checks: usize,
        /// Measurement window after warm-up.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The agent binary (default: next to this binary).
        #[arg(long)]
        agent: Option<PathBuf>,
    },
    /// Site1's client access killed → provider change issued (real agents, default policy).
    Failover {
        /// Trials (each a fresh lab).
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Trials run at once.
        #[arg(long, default_value_t = 5)]
        parallel: usize,
    },
    /// The event completing the evidence → the provider call.
    Decision {
        /// Trials.
        #[arg(long, default_value_t = 100)]
        trials: usize,
        /// Site pairs the controller carries (the trials cycle through them).
        #[arg(long, default_value_t = decision::POOL)]
        pool: usize,
        /// Names more the controller carries, on a site pair of their own that never fails
        /// (`bystander{i}.example.com`): one name's decision while many exist.
        #[arg(long, default_value_t = 0)]
        names: usize,
    },
    /// Controller intake rate vs a plain subscriber on the same messages.
    Ingest {
        /// Messages published.
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        /// Agents they come from.
        #[arg(long, default_value_t = 10)]
        agents: usize,
    },
    /// Leader killed → the standby acts.
    Takeover {
        /// Trials (in parallel, each on its own bus).
        #[arg(long, default_value_t = 3)]
        trials: usize,
        /// `[ha] lease` in seconds (product default 10).
        #[arg(long, default_value_t = 10)]
        lease: u64,
        /// The controller binary (default: next to this binary).
        #[arg(long)]
        controller: Option<PathBuf>,
    },
    /// Controller resident memory with N observer × check keys.
    ControllerMemory {
        /// Observer × check keys to track.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// The controller binary (default: next to this binary).
        #[arg(long)]
        controller: Option<PathBuf>,
    },
    /// Controller CPU while N observer × check keys report healthy every 2 s.
    ControllerIdle {
        /// Observer × check keys to track.
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Measurement window after warm-up.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// `[controller] tick` of the measured controller (the longest idle sleep).
        #[arg(long, default_value = "1s")]
        tick: String,
        /// The controller binary (default: next to this binary).
        #[arg(long)]
        controller: Option<PathBuf>,
    },
    /// sitewarden against gdnsd and PowerDNS (LUA records) on the same servers and faults.
    Peers {
        /// Speed trials per system (interleaved).
        #[arg(long, default_value_t = 5)]
        trials: usize,
        /// sitewarden's probe interval in milliseconds (product default 1000).
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// sitewarden's `fall` (product default 4).
        #[arg(long, default_value_t = 4)]
        fall: u32,
        /// Skip the blips and the vantage cut.
        #[arg(long)]
        no_false_moves: bool,
        /// Skip the client behind a resolver.
        #[arg(long)]
        no_client: bool,
        /// sitewarden alone (no peers), e.g. to measure another probe policy.
        #[arg(long)]
        sitewarden_only: bool,
    },
    /// One site carries every name and dies: deciding event → last name applied and verified.
    MassFailover {
        /// Where the names live.
        #[arg(long, value_enum, default_value_t = mass::Kind::Memory)]
        provider: mass::Kind,
        /// Records per batch write (1: the one-name path).
        #[arg(long, default_value_t = 200)]
        batch: usize,
        /// Names on the site that dies.
        #[arg(long, default_value_t = 10_000)]
        names: usize,
        /// Site pairs in the deployment.
        #[arg(long, default_value_t = 20)]
        pairs: usize,
        /// Trials (alternating the failing side).
        #[arg(long, default_value_t = 5)]
        trials: usize,
        /// Where the controller runs: in this process, or as a `sitewarden-controller run`
        /// process of its own whose memory is measured alone (`--provider cloudflare` only).
        #[arg(long, value_enum, default_value_t = mass::Mode::InProcess)]
        controller: mass::Mode,
        /// The controller binary for `--controller process` (default: next to this binary).
        #[arg(long)]
        controller_bin: Option<PathBuf>,
    },
    /// Cloudflare API requests per namespace change.
    DnsCalls {
        /// Namespace changes to average over.
        #[arg(long, default_value_t = 3)]
        changes: usize,
    },
}

/// Reports of every probe before the agent's measurement window opens.
const WARM_UP_REPORTS: usize = 3;

const CHECK_KINDS: [(&str, &str); 10] = [
    ("eas", "kind = \"activesync\""),
    ("owa", "kind = \"exchange_healthcheck\"\nvdir = \"owa\""),
    ("ews", "kind = \"exchange_healthcheck\"\nvdir = \"ews\""),
    ("mapi", "kind = \"exchange_healthcheck\"\nvdir = \"mapi\""),
    (
        "autod",
        "kind = \"exchange_healthcheck\"\nvdir = \"autodiscover\"",
    ),
    ("oab", "kind = \"exchange_healthcheck\"\nvdir = \"oab\""),
    ("ecp", "kind = \"exchange_healthcheck\"\nvdir = \"ecp\""),
    ("rpc", "kind = \"exchange_healthcheck\"\nvdir = \"rpc\""),
    (
        "eas-hc",
        "kind = \"exchange_healthcheck\"\nvdir = \"Microsoft-Server-ActiveSync\"",
    ),
    (
        "root",
        "kind = \"http\"\npath = \"/\"\nexpect_status = [302]",
    ),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().what {
        What::Agent {
            checks,
            seconds,
            agent,
        } => bench_agent(checks, seconds, agent).await,
        What::Failover { trials, parallel } => failover::run(trials, parallel).await,
        What::Decision {
            trials,
            pool,
            names,
        } => decision::run(trials, pool, names).await,
        What::Ingest { messages, agents } => ingest::run(messages, agents).await,
        What::Takeover {
            trials,
            lease,
            controller,
        } => {
            let bin = controller.map_or_else(|| sibling("sitewarden-controller"), Ok)?;
            takeover::run(trials, lease, bin).await
        }
        What::ControllerMemory { keys, controller } => {
            let bin = controller.map_or_else(|| sibling("sitewarden-controller"), Ok)?;
            memory::run(keys, bin).await
        }
        What::ControllerIdle {
            keys,
            seconds,
            tick,
            controller,
        } => {
            let bin = controller.map_or_else(|| sibling("sitewarden-controller"), Ok)?;
            memory::run_idle(keys, seconds, &tick, bin).await
        }
        What::DnsCalls { changes } => dns_calls::run(changes).await,
        What::MassFailover {
            provider,
            batch,
            names,
            pairs,
            trials,
            controller,
            controller_bin,
        } => {
            let bin = controller_bin.map_or_else(|| sibling("sitewarden-controller"), Ok)?;
            mass::run(controller, bin, provider, batch, names, pairs, trials).await
        }
        What::Peers {
            trials,
            interval_ms,
            fall,
            no_false_moves,
            no_client,
            sitewarden_only,
        } => {
            peers::run(peers::Args {
                trials,
                policy: peers::Policy {
                    interval: Duration::from_millis(interval_ms),
                    fall,
                },
                false_moves: !no_false_moves,
                client: !no_client,
                sitewarden_only,
            })
            .await
        }
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("binary has no directory")?.join(name))
}

async fn bench_agent(checks: usize, seconds: u64, agent: Option<PathBuf>) -> anyhow::Result<()> {
    let servers = checks.div_ceil(CHECK_KINDS.len()).max(1);
    let nats = NatsServer::start().await?;
    let ca = TestCa::new()?;
    let dir = tempfile::tempdir()?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem())?;
    let mut emulators = Vec::new();
    for i in 0..servers {
        let id = ca.issue(&["mail-site1.example.com"], 365)?;
        emulators.push(
            ExchangeServer::start(
                ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL")).with_tls(id),
            )
            .await?,
        );
    }
    let mut toml = format!(
        "[agent]\nid = \"bench-agent\"\nsite = \"site1\"\n\n[nats]\nservers = [\"{}\"]\n\n[defaults]\ninterval = \"1s\"\ntimeout = \"1s\"\nca_file = \"{}\"\n\n[[sites]]\nname = \"site1\"\nactivesync_url = \"https://mail-site1.example.com/Microsoft-Server-ActiveSync\"\ntls_names = [\"mail-site1.example.com\"]\nservers = [\n",
        nats.url(),
        ca_path.display()
    );
    for (i, e) in emulators.iter().enumerate() {
        toml.push_str(&format!(
            "  {{ name = \"cas{i}\", address = \"{}\" }},\n",
            e.addr()
        ));
    }
    toml.push_str("]\n");
    for (name, kind) in CHECK_KINDS {
        toml.push_str(&format!(
            "\n[[checks]]\nname = \"{name}\"\nsite = \"site1\"\n{kind}\n"
        ));
    }
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, toml)?;

    let client = async_nats::connect(nats.url()).await?;
    let mut sub = client.subscribe("sitewarden.v1.obs.>").await?;
    let agent_bin = match agent {
        Some(p) => p,
        None => sibling("sitewarden-agent")?,
    };
    let mut child = tokio::process::Command::new(&agent_bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", agent_bin.display()))?;
    let pid = child.id().context("agent exited at once")?;

    // Warm-up: every probe has reported three times, so connections and TLS sessions are
    // established and the first-round allocations are behind; the window starts in steady state.
    let probes = servers * CHECK_KINDS.len();
    let mut reports: std::collections::HashMap<String, usize> = Default::default();
    while reports.len() < probes || reports.values().any(|n| *n < WARM_UP_REPORTS) {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(msg)) => *reports.entry(msg.subject.to_string()).or_default() += 1,
            _ => anyhow::bail!("agent stopped publishing during warm-up"),
        }
    }

    let clk_tck = clock_ticks()?;
    let start_cpu = cpu_ticks(pid)?;
    let start_split = cpu_split(pid)?;
    let start = Instant::now();
    let mut rss_max_kb = 0u64;
    let mut received = 0u64;
    let mut failed = 0u64;
    let mut next_sample = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        if Instant::now() >= next_sample {
            rss_max_kb = rss_max_kb.max(status_kb(pid, "VmRSS:")?);
            next_sample += Duration::from_secs(1);
        }
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            received += 1;
            if let Ok(o) = serde_json::from_slice::<sitewarden_shared::Observation>(&msg.payload)
                && o.outcome == sitewarden_shared::Outcome::Fail
            {
                failed += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_s = (cpu_ticks(pid)? - start_cpu) as f64 / clk_tck;
    let hwm_kb = status_kb(pid, "VmHWM:")?;
    let end_split = cpu_split(pid)?;
    println!(
        "user {:.2}s, system {:.2}s",
        (end_split.0 - start_split.0) as f64 / clk_tck,
        (end_split.1 - start_split.1) as f64 / clk_tck
    );
    // Stop gracefully (lets a profiler wrapper write its output), then make sure.
    sitewarden_tests::signals::send(pid, sitewarden_tests::signals::Signal::Term)
        .await
        .ok();
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        child.kill().await.ok();
    }
    let handshakes: usize = emulators.iter().map(|e| e.tls_handshakes().len()).sum();
    let requests: usize = emulators.iter().map(|e| e.request_count()).sum();
    println!("emulators saw {requests} requests over {handshakes} TLS handshakes");
    let cpu_pct = cpu_s / elapsed * 100.0;
    let rss_mb = rss_max_kb as f64 / 1024.0;
    println!(
        "agent with {probes} probes at 1s for {elapsed:.0}s: RSS max {rss_mb:.1} MB (peak {:.1} MB), CPU {cpu_pct:.2}% of one core, {received} observations ({failed} failed)",
        hwm_kb as f64 / 1024.0
    );
    println!(
        "{}",
        serde_json::json!({
            "agent_rss_mb_100_checks": (rss_mb * 10.0).round() / 10.0,
            "agent_rss_peak_mb": (hwm_kb as f64 / 102.4).round() / 10.0,
            "agent_cpu_pct_100_checks": (cpu_pct * 100.0).round() / 100.0,
            "probes": probes,
            "seconds": seconds,
            "observations_per_s": (received as f64 / elapsed * 10.0).round() / 10.0,
            "failed_observations": failed,
        })
    );
    Ok(())
}

fn clock_ticks() -> anyhow::Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let (u, s) = cpu_split(pid)?;
    Ok(u + s)
}

/// (utime, stime) of `pid`, in clock ticks.
fn cpu_split(pid: u32) -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "(comm)": state(0) ppid(1) ... utime(11) stime(12).
    Ok((
        f.get(11).context("utime")?.parse::<u64>()?,
        f.get(12).context("stime")?.parse::<u64>()?,
    ))
}

fn status_kb(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("{key} missing"))?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}
