//! `mass-failover --controller process`: the failover of [`crate::mass`] with the controller as
//! a process of its own, so that its resident memory is measured alone.
//!
//! This process keeps the nats-server, the Cloudflare emulator (seeded with every name) and the
//! fleet publisher; the controller is the release `sitewarden-controller run` binary. Its config
//! (0600, in a temporary directory, the API token in a 0600 file beside it) points `api_url` at
//! the emulator with `batch_size` from `--batch` and the in-process run's 30 s request timeout,
//! sets `[metrics] per_name = false` (what docs/configuration-controller.md advises with
//! thousands of names; the bench scrapes a page of a few dozen KB) and carries the same fleet
//! and default policy as the in-process run.
//!
//! Timing comes from the controller's audit records and the emulator's request log
//! ([`crate::cf_log`]), not from a provider wrapper. A trial publishes the failing observations
//! one at a time, a second apart, until the controller's audit record of the step that judged the
//! site Down arrives (or, failing that, the controller has sent the emulator a request); the
//! deciding event is the last observation published before that record arrived. That step is the
//! one that moves every name (moving away from a Down site waits for no hold-down), and its
//! record comes milliseconds after it, so the deciding observation is told even when the apply's
//! first request (the listing its batched compare-and-set reads the records with) comes more
//! than a second later — which the in-process run, taking the observation after which the
//! provider's first call is seen, would credit to the next observation. The end is the moment the emulator had its answer ready to the last page of the
//! listing that follows the last write: the provider verifies the written names with that
//! listing and returns them as applied once it shows them, so this is "applied and verified",
//! short only of the controller's transfer and parsing of that one page (milliseconds). Before
//! reading the log, the trial waits until the controller's own
//! `sitewarden_controller_applies_total{outcome="applied"}` has grown by `--names` (any other
//! outcome counted meanwhile, such as `audit_not_stored`, is printed and reported as
//! `other_outcomes`) and then checks every name in the emulator. Requests are those the emulator
//! saw from the apply's first to its end.
//!
//! Memory: the controller's `VmRSS` after each trial, and its `VmHWM` (the kernel's high-water
//! mark since it started: configuration, start-up reads and every trial) at the end — the
//! `rss_peak_mb` of this mode. Idle CPU: the controller's user + system time over 5 s while the
//! fleet refreshes and no reconciliation read is in flight or due.
//!
//! Once the deciding event is known, the failed server is reported failing every 500 ms like
//! the others are reported passing (the in-process run leaves it silent), as a dead site's
//! observers would. As in-process, a side fails only between two reconciliation reads; they are told from the
//! emulator's log ([`crate::cf_log::last_reconcile_read`]) and its count of requests in flight.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sitewarden_api::audit::AuditRecord;
use sitewarden_controller::config::{DEFAULT_FALL, DEFAULT_RISE};
use sitewarden_controller::engine::{AuditEvent as EngineEvent, Verdict};
use sitewarden_controller::runtime::audit::AUDIT_SUBJECT_PREFIX;
use sitewarden_tests::cloudflare::CloudflareEmulator;
use sitewarden_tests::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::cf_log::{self, Log};
use crate::mass::{self, Kind, PAUSE, READ_SETTLE, RECONCILE_EVERY, RECONCILE_GUARD};
use crate::rig::{self, ControllerProcess, FLEET_AGENTS, FleetPublisher};

/// How often the controller's `/metrics` is read while a failover is applied. The figure comes
/// from the emulator's log, so this only decides when to look; it stays light on the process
/// being measured.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

/// The window idle CPU is averaged over.
const IDLE_WINDOW: Duration = Duration::from_secs(5);

/// The provider's request timeout, as the in-process run sets it.
const REQUEST_TIMEOUT: &str = "30s";

/// How long the controller may take to load 10,000 names, read them and take the lease.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// The benchmark controller's id (its audit subject ends with it).
const CONTROLLER_ID: &str = "bench-mass";

/// The series counting record changes by outcome.
const APPLIES: &str = "sitewarden_controller_applies_total";

/// Runs the trials against the controller `binary`.
pub async fn run(
    binary: PathBuf,
    batch: usize,
    names: usize,
    pairs: usize,
    trials: usize,
) -> anyhow::Result<()> {
    let pairs = pairs.max(1);
    let nats = NatsServer::start().await?;
    let cf = CloudflareEmulator::start(mass::TOKEN).await?;
    let seed_started = Instant::now();
    let all = mass::seed_list(pairs, names);
    let zone = mass::seed_cloudflare(&cf, batch, &all);
    let records = all.len() as u64;
    drop(all);
    eprintln!(
        "mass-failover: {names} names seeded in {:.1} s",
        seed_started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let token = dir.path().join("cloudflare.token");
    rig::write_private(&token, &format!("{}\n", mass::TOKEN))?;
    let http = rig::free_addr();
    let provider = format!(
        "kind = \"cloudflare\"\nzone_id = \"{zone}\"\napi_token = {{ file = \"{}\" }}\napi_url = \"{}\"\nrequest_timeout = \"{REQUEST_TIMEOUT}\"\nbatch_size = {}\n",
        token.display(),
        cf.api_url(),
        batch.max(1)
    );
    let toml = rig::controller_head(CONTROLLER_ID, &nats.url(), &http.to_string(), &provider)
        + "\n[metrics]\nper_name = false\n\n"
        + &mass::config(pairs, names);
    let mut ctl = ControllerProcess::start(&binary, dir, &toml, http)?;
    drop(toml);
    ctl.acting(START_DEADLINE).await?;
    eprintln!(
        "mass-failover: controller pid {} acting, RSS {:.1} MB",
        ctl.pid,
        rig::rss_kb(ctl.pid)? as f64 / 1024.0
    );
    let fleet = FleetPublisher::connect(&nats.url(), pairs).await?;
    let audit = async_nats::connect(nats.url()).await?;
    let stop = CancellationToken::new();
    fleet.spawn_refresh(Duration::from_millis(500), stop.clone(), None);
    rig::sites_up_at(http, &["p0a", "p0b"], START_DEADLINE).await?;
    let mut log = Log::default();
    quiet(&mut log, &cf).await?;
    let idle = idle_cpu(ctl.pid).await?;
    let mut samples = Vec::new();
    let mut requests = Vec::new();
    let mut rss_after = Vec::new();
    // Per trial: outcomes the controller counted besides one `applied` per name.
    let mut other_outcomes = Vec::new();
    let mut recovered = 0;
    for trial in 0..trials {
        let (survivor, server, site) = mass::sides(trial);
        if trial > 0 {
            // The side that failed last time has risen again before the other one fails.
            sitewarden_tests::wait_for(
                "the failed side to rise again",
                Duration::from_secs(60),
                || async { (fleet.rounds() >= recovered).then_some(()) },
            )
            .await?;
            rig::sites_up_at(http, &["p0a", "p0b"], START_DEADLINE).await?;
        }
        quiet(&mut log, &cf).await?;
        ctl.alive()?;
        let before = applies(
            &rig::metrics_page(http)
                .await
                .context("the controller's /metrics did not answer")?,
        );
        let (down, watching) = watch_verdict(
            audit
                .subscribe(format!("{AUDIT_SUBJECT_PREFIX}.{CONTROLLER_ID}"))
                .await?,
            site.clone(),
        );
        audit.flush().await?;
        let began = Instant::now();
        let logged = cf.call_count();
        fleet.set(&server, None);
        let mut published = Vec::new();
        // One failing observation at a time, a second apart; the trial stops publishing once
        // the controller has judged the site Down or asked the emulator anything (see the
        // module docs).
        'publish: for _ in 0..=DEFAULT_FALL {
            for (agent, agent_site) in FLEET_AGENTS {
                let sent = Instant::now();
                fleet
                    .publish(agent, agent_site, &site, &server, false)
                    .await?;
                fleet.flush().await?;
                published.push(sent);
                let asked = sitewarden_tests::wait_for("the site judged Down", PAUSE, || async {
                    (down.get().is_some() || cf.in_flight() > 0 || cf.call_count() > logged)
                        .then_some(())
                })
                .await;
                if asked.is_ok() {
                    break 'publish;
                }
            }
        }
        // A dead site's observers go on reporting it failing. Left silent after the deciding
        // event (as the in-process run leaves it), two runs kept 52 and 67 names unmoved for
        // 300 s: names whose intent record the audit stream had not stored in time, retried
        // while the controller's log said the site was Unknown and names fail static.
        fleet.set(&server, Some(false));
        let deadline = mass::apply_deadline(Kind::Cloudflare, batch, names);
        let grown = applied(&mut ctl, &before, names, deadline)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "trial {trial}: {site} failed: {e}; the controller's log ends:\n{}",
                    ctl.log_tail()
                )
            })?;
        // Every name was applied; anything else counted meanwhile (an audit record stored late,
        // a change re-planned) is reported with the controller's own words.
        let others: Vec<String> = grown
            .iter()
            .filter(|(outcome, n)| outcome.as_str() != "applied" && **n > 0.0)
            .map(|(outcome, n)| format!("{n} {outcome}"))
            .collect();
        if !others.is_empty() {
            eprintln!(
                "trial {trial}: warning: besides the names applied, the controller counted {}; \
                 its log ends:\n{}",
                others.join(", "),
                ctl.log_tail()
            );
        }
        other_outcomes.push(
            grown.get("applied").map_or(0.0, |n| n - names as f64)
                + grown
                    .iter()
                    .filter(|(outcome, _)| outcome.as_str() != "applied")
                    .map(|(_, n)| n.max(0.0))
                    .sum::<f64>(),
        );
        log.refresh(&cf);
        let apply = cf_log::apply(log.since(began), records).with_context(|| {
            format!(
                "trial {trial}: the controller counts every name applied, but the emulator's \
                 log shows no write followed by a listing of all {records} records"
            )
        })?;
        watching.abort();
        let judged = down.get().copied();
        if judged.is_none() {
            eprintln!(
                "trial {trial}: warning: no audit record of {site} judged Down came; the deciding \
                 event is the observation before the controller's first request"
            );
        }
        let decided_by = judged.unwrap_or(apply.first).min(apply.first);
        let deciding = published
            .iter()
            .rev()
            .find(|sent| **sent <= decided_by)
            .copied()
            .with_context(|| {
                format!("trial {trial}: the controller judged {site} Down or wrote before any failing observation")
            })?;
        eprintln!(
            "trial {trial}: {site} judged Down {} s and the controller's first request {:.3} s \
             after the deciding event ({} failing observations published)",
            judged.map_or_else(
                || "?".to_owned(),
                |t| format!("{:.3}", t.duration_since(deciding).as_secs_f64())
            ),
            apply.first.duration_since(deciding).as_secs_f64(),
            published.len()
        );
        anyhow::ensure!(
            apply.refused == 0,
            "trial {trial}: the emulator refused {} of the apply's requests",
            apply.refused
        );
        if apply.stray_listings > 0 {
            eprintln!(
                "trial {trial}: {} listing(s) besides the first read and the last verification: \
                 a second group of changes (a retry) or a reconciliation read; the figure \
                 includes them",
                apply.stray_listings
            );
        }
        let secs = apply.end.duration_since(deciding).as_secs_f64();
        let rss_mb = rig::rss_kb(ctl.pid)? as f64 / 1024.0;
        eprintln!(
            "trial {trial}: {site} died; {names} names on {survivor} in {secs:.2} s, {} requests ({} writes); controller RSS {rss_mb:.1} MB",
            apply.requests, apply.writes
        );
        samples.push(secs * 1000.0);
        requests.push(apply.requests as f64);
        rss_after.push(rig::round(rss_mb, 1));
        // The emulator holds the move, every name of it.
        let want = format!("{survivor}0.{}", mass::ZONE);
        let moved = cf
            .records(&zone)
            .iter()
            .filter(|r| r.name.starts_with('m') && r.content == want)
            .count();
        anyhow::ensure!(
            moved == names,
            "trial {trial}: the emulator holds {moved} of {names} names on {want}"
        );
        fleet.set(&server, Some(true));
        recovered = fleet.rounds() + u64::from(DEFAULT_RISE) + 4;
    }
    let peak_mb = rig::rss_peak_kb(ctl.pid)? as f64 / 1024.0;
    stop.cancel();
    ctl.stop().await;
    let s = rig::summary(&mut samples)?;
    let r = rig::summary(&mut requests)?;
    let label = format!("{}_process", mass::label(Kind::Cloudflare, batch));
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
            format!("mass_{label}_rss_peak_mb"): rig::round(peak_mb, 1),
            format!("mass_{label}_controller_rss_peak_mb"): rig::round(peak_mb, 1),
            format!("mass_{label}_controller_rss_after_trial_mb"): rss_after,
            format!("mass_{label}_idle_cpu_percent"): rig::round(idle, 2),
            format!("mass_{label}_other_outcomes"): other_outcomes,
        })
    );
    Ok(())
}

/// Watches the controller's audit records (`sub`) for the one saying `site`'s verdict became
/// Down, and notes when it arrived; the task ends there, unsubscribing.
fn watch_verdict(
    mut sub: async_nats::Subscriber,
    site: String,
) -> (Arc<OnceLock<Instant>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(OnceLock::new());
    let mark = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let arrived = Instant::now();
            let Ok(record) = serde_json::from_slice::<AuditRecord>(&msg.payload) else {
                continue;
            };
            if let Some(EngineEvent::Verdict {
                site: judged,
                to: Verdict::Down,
                ..
            }) = record.event.engine()
                && judged.as_str() == site
            {
                let _ = mark.set(arrived);
                return;
            }
        }
    });
    (seen, task)
}

/// Waits until no reconciliation read is in flight or ended within [`READ_SETTLE`], and the
/// next is not due within [`RECONCILE_GUARD`] (see [`crate::mass`] for why).
async fn quiet(log: &mut Log, cf: &CloudflareEmulator) -> anyhow::Result<()> {
    sitewarden_tests::wait_for(
        "no reconciliation read in flight or due",
        RECONCILE_EVERY * 2,
        || {
            let quiet = reads_quiet(log, cf);
            async move { quiet.then_some(()) }
        },
    )
    .await
}

/// Whether a side may fail now, from the emulator's log read up to now.
fn reads_quiet(log: &mut Log, cf: &CloudflareEmulator) -> bool {
    log.refresh(cf);
    if cf.in_flight() > 0 {
        return false;
    }
    cf_log::last_reconcile_read(&log.requests).is_none_or(|(began, ended)| {
        ended.unwrap_or(began).elapsed() >= READ_SETTLE
            && began.elapsed() < RECONCILE_EVERY - RECONCILE_GUARD
    })
}

/// `sitewarden_controller_applies_total` on a metrics page, by outcome.
fn applies(page: &str) -> BTreeMap<String, f64> {
    let prefix = format!("{APPLIES}{{outcome=\"");
    page.lines()
        .filter_map(|line| {
            let (outcome, value) = line.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((outcome.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Waits until the controller's applied count has grown by `names` since `before`, reading its
/// metrics every [`SCRAPE_EVERY`]; returns how much each outcome grew.
async fn applied(
    ctl: &mut ControllerProcess,
    before: &BTreeMap<String, f64>,
    names: usize,
    deadline: Duration,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let started = Instant::now();
    let mut every = tokio::time::interval(SCRAPE_EVERY);
    let mut grown = BTreeMap::new();
    loop {
        every.tick().await;
        ctl.alive()?;
        if let Some(page) = rig::metrics_page(ctl.http).await {
            grown = applies(&page)
                .into_iter()
                .map(|(outcome, n)| {
                    let was = before.get(&outcome).copied().unwrap_or(0.0);
                    (outcome, n - was)
                })
                .collect();
            if grown.get("applied").is_some_and(|n| *n >= names as f64) {
                return Ok(grown);
            }
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "not every name applied within {deadline:?}; since the trial began the controller \
             counted {grown:?}"
        );
    }
}

/// The controller's CPU use over [`IDLE_WINDOW`], in percent of one core.
async fn idle_cpu(pid: u32) -> anyhow::Result<f64> {
    let before = rig::cpu_seconds(pid)?;
    let started = Instant::now();
    // A measuring window, not a wait for something to happen: CPU is averaged over it.
    tokio::time::sleep(IDLE_WINDOW).await;
    let spent = rig::cpu_seconds(pid)? - before;
    Ok(100.0 * spent / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_are_read_by_outcome() {
        let page = "# TYPE sitewarden_controller_applies counter\n\
                    sitewarden_controller_applies_total{outcome=\"applied\"} 10000\n\
                    sitewarden_controller_applies_total{outcome=\"refused\"} 2\n\
                    sitewarden_controller_acting 1\n";
        let got = applies(page);
        assert_eq!(got.get("applied"), Some(&10000.0));
        assert_eq!(got.get("refused"), Some(&2.0));
        assert_eq!(got.len(), 2);
    }
}
