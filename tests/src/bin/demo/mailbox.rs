//! The demo's mailbox act: where DAG1's mailboxes are active, and the names and edge proxies
//! that follow them.
//!
//! DAG1 (DB01, DB02 on EX01, EX02 in site1 and EX03, EX04 in site2) runs in the DAG emulator;
//! the site1 agent's copy-status collector reads it every second, as it would run
//! `Get-SitewardenDbCopyStatus.ps1` on Exchange. [`FOLLOW_NAME`] has `follow = "mailbox"` on
//! DAG1. The act shows the edge notice naming site1, moves DAG1's active copies to site2 as the
//! Exchange admins would (sitewarden never moves a database), and times the edge notice naming
//! site2 and the name following them there.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sitewarden_controller::runtime::EDGE_SUBJECT;
use sitewarden_shared::{EdgeNotification, SiteVerdict};
use sitewarden_tests::dag::DagEmulator;
use sitewarden_tests::dig_cname as dig;
use sitewarden_tests::two_site::{self, DAG1, DAG1_SERVERS};

use crate::{NAME, audit_alerts, say, until_dns};

/// The name that follows DAG1's mailboxes.
pub const FOLLOW_NAME: &str = "owa.failover.example.com";

/// Where [`FOLLOW_NAME`] points while DAG1 is active in site1, and in site2.
pub const FOLLOW_TARGETS: [&str; 2] = ["owa-site1.example.com", "owa-site2.example.com"];

/// How often the site1 agent reads DAG1's copy status.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// How long the act waits for any one step.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// The site1 agent's `[[dbcopy]]` table: DAG1's copy status printed by `command`.
pub fn dbcopy_toml(command: Vec<String>) -> String {
    two_site::dag1_collector(command, COLLECT_EVERY).render()
}

/// Every edge notice published on the bus since the demo subscribed, with when it arrived.
pub struct EdgeLog {
    /// `(arrival, notice text)`, in arrival order.
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    /// Copies notices from the subscription into `seen`.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EdgeLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EdgeLog {
    /// Subscribes to the edge subject; call before the controllers start so no notice is missed.
    pub async fn subscribe(client: &async_nats::Client) -> anyhow::Result<Self> {
        let mut sub = client.subscribe(EDGE_SUBJECT).await?;
        client.flush().await?;
        let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let text = String::from_utf8_lossy(&msg.payload).into_owned();
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Instant::now(), text));
            }
        });
        Ok(Self { seen, task })
    }

    /// The newest notice's text.
    pub fn latest(&self) -> Option<String> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.last().map(|(_, text)| text.clone())
    }

    /// Waits for the first notice that arrived at or after `since`, names `site` as DAG1's
    /// active site and, with `all_up`, every site Up; returns when it arrived and its text.
    async fn until_naming(
        &self,
        site: &str,
        all_up: bool,
        since: Instant,
    ) -> anyhow::Result<(Instant, String)> {
        let naming = |text: &str| {
            EdgeNotification::decode(text.as_bytes()).is_ok_and(|n| {
                n.active_site(DAG1).is_some_and(|s| s.as_str() == site)
                    && (!all_up || n.verdicts.values().all(|v| *v == SiteVerdict::Up))
            })
        };
        let what = format!(
            "an edge notice naming {site} as {DAG1}'s active site{}",
            if all_up { " with every site Up" } else { "" }
        );
        sitewarden_tests::wait_for(&what, STEP_DEADLINE, || async {
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|(at, text)| *at >= since && naming(text))
                .cloned()
        })
        .await
    }
}

/// What the act needs from the running lab.
pub struct Stage<'a> {
    /// When the demo started (for the timestamps of its lines).
    pub start: Instant,
    /// DAG1.
    pub dag: &'a DagEmulator,
    /// The edge notices on the bus.
    pub edge: &'a EdgeLog,
    /// Each controller's id and built-in DNS server; the first one is timed.
    pub dns: &'a [(String, SocketAddr)],
    /// The NATS cluster (for the alerts in the audit stream).
    pub urls: &'a [String],
}

/// What the act measured.
pub struct Figures {
    /// DAG1's active site the edge was told before the switchover.
    pub site_before: String,
    /// The one it was told after.
    pub site_after: String,
    /// From the switchover to the first edge notice naming `site_after`.
    pub to_edge: Duration,
    /// From the switchover to [`FOLLOW_NAME`]'s answer pointing at site2's target.
    pub to_follow: Duration,
}

/// `DB01, DB02 on EX01`: each server holding active copies and its databases.
fn mounted(dag: &DagEmulator) -> String {
    let mut by_server: Vec<(String, Vec<String>)> = Vec::new();
    for copy in dag.copies() {
        if dag.active_server(&copy.database).as_deref() != Some(copy.server.as_str()) {
            continue;
        }
        match by_server.iter_mut().find(|(s, _)| *s == copy.server) {
            Some((_, dbs)) => dbs.push(copy.database),
            None => by_server.push((copy.server, vec![copy.database])),
        }
    }
    by_server
        .iter()
        .map(|(server, dbs)| format!("{} on {server}", dbs.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Prints `dig` of `name` on every controller's DNS server.
fn dig_all(stage: &Stage<'_>, name: &str) {
    for (id, dns) in stage.dns {
        say(
            stage.start,
            &format!(
                "$ dig @{} -p {} {name} CNAME +short  ->  {}   ({id})",
                dns.ip(),
                dns.port(),
                dig(*dns, name)
            ),
        );
    }
}

/// Runs the act: the edge notice naming site1, the switchover to site2, the edge notice naming
/// site2 and [`FOLLOW_NAME`] following. Fails when a step does not happen within 30 s.
pub async fn act(stage: &Stage<'_>) -> anyhow::Result<Figures> {
    let start = stage.start;
    let (_, dns) = stage
        .dns
        .first()
        .ok_or_else(|| anyhow::anyhow!("no controller serves DNS"))?;
    let [site1_target, site2_target] = FOLLOW_TARGETS;
    // How things stand before the switchover: DAG1 mounted in site1 (from the start), both
    // sites Up (the demo waited for the leader's verdicts; the notice may follow a moment later).
    let (_, before) = stage.edge.until_naming("site1", true, start).await?;
    say(
        start,
        &format!(
            "MAILBOXES: {DAG1}'s databases are active in site1 ({}); the edge is told so, and \
             {FOLLOW_NAME} follows them (follow = \"mailbox\")",
            mounted(stage.dag)
        ),
    );
    say(start, &format!("  EDGE {EDGE_SUBJECT}: {before}"));
    until_dns(*dns, FOLLOW_NAME, site1_target, STEP_DEADLINE).await?;
    dig_all(stage, FOLLOW_NAME);

    let [_, site2_servers] = DAG1_SERVERS;
    let to = site2_servers[0];
    say(
        start,
        &format!(
            "SWITCHOVER: the Exchange admins move {DAG1}'s active copies to {to} in site2 \
             (Move-ActiveMailboxDatabase); sitewarden never moves databases, it follows them"
        ),
    );
    let switched = Instant::now();
    let since = chrono::Utc::now();
    stage.dag.activate_all(to)?;
    let to_follow =
        switched.elapsed() + until_dns(*dns, FOLLOW_NAME, site2_target, STEP_DEADLINE).await?;
    let (told_at, told) = stage.edge.until_naming("site2", false, switched).await?;
    let to_edge = told_at.duration_since(switched);
    say(
        start,
        &format!(
            "EDGE TOLD: {DAG1}'s mailboxes are active in site2, {:.2}s after the switchover \
             (the site1 agent reads copy status every {}s)",
            to_edge.as_secs_f64(),
            COLLECT_EVERY.as_secs()
        ),
    );
    say(start, &format!("  EDGE {EDGE_SUBJECT}: {told}"));
    say(
        start,
        &format!(
            "DNS FOLLOWED: {FOLLOW_NAME} -> {site2_target}, {:.2}s after the switchover \
             (it follows DAG1 to a site whose client access is Up)",
            to_follow.as_secs_f64()
        ),
    );
    dig_all(stage, FOLLOW_NAME);
    for (severity, text) in &audit_alerts(stage.urls, since).await {
        say(start, &format!("  ALERT [{severity}] {text}"));
    }
    // mail's candidates require sites whose client access is Up; where mailboxes are mounted
    // does not move it.
    let mail = dig(*dns, NAME);
    anyhow::ensure!(
        mail == "mail-rr.example.com",
        "{NAME} moved to {mail:?} on a DAG switchover; its candidates follow client access only"
    );
    say(
        start,
        &format!("{NAME} stays on {mail}: its candidates follow client access, not mailboxes"),
    );
    Ok(Figures {
        site_before: "site1".into(),
        site_after: "site2".into(),
        to_edge,
        to_follow,
    })
}
