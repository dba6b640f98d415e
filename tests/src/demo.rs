//! The demo's JSON summary: the last line `sitewarden-demo` (`./scripts/demo`) prints. One typed
//! definition, written by the demo and read by its test (`integration::demo`) and by anyone who
//! pipes the demo into `jq`, so a figure cannot be renamed on one side only.

use serde::{Deserialize, Serialize};

/// What one run of the demo measured. Times are seconds, rounded to hundredths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The demo ran to the end (it exits non-zero with an error otherwise).
    pub ok: bool,
    /// The managed name the site failure moves (`mail.failover.example.com`).
    pub name: String,
    /// From site1's client-access servers dying to the authoritative DNS answer moving.
    pub failover_s: f64,
    /// The record's TTL: how long a caching resolver may keep the old answer.
    pub ttl_s: u64,
    /// `failover_s` + `ttl_s`: the worst case for a client behind a caching resolver.
    pub client_visible_worst_s: f64,
    /// The fastest any failover can be with the demo's probe interval and `fall`.
    pub floor_s: f64,
    /// Where the site failure moved `name`.
    pub flipped_to: String,
    /// From site1 recovering to `name` failing back (includes the stable window).
    pub failback_s: f64,
    /// Alerts the leader raised from the fault on (audit stream).
    pub alerts: usize,
    /// The controller that was acting.
    pub leader: String,
    /// NATS cluster nodes.
    pub nats_nodes: usize,
    /// Signed edge notices the edge webhook received over the whole run.
    pub edge_webhooks: usize,
    /// The DAG the mailbox act moves (`DAG1`).
    pub dag: String,
    /// The site the edge was told holds the DAG's active copies before the switchover.
    pub mailbox_site_before: String,
    /// The site the edge was told holds them after the switchover.
    pub mailbox_site_after: String,
    /// The name with `follow = "mailbox"` on the DAG (`owa.failover.example.com`).
    pub follow_name: String,
    /// Where `follow_name` pointed before the switchover.
    pub follow_target_before: String,
    /// Where it pointed after.
    pub follow_target_after: String,
    /// From the switchover to the first edge notice on the bus naming the new site.
    pub switchover_to_edge_s: f64,
    /// From the switchover to the authoritative DNS answer for `follow_name` moving.
    pub switchover_to_follow_s: f64,
}

impl Summary {
    /// The summary in the demo's output: its last non-empty line.
    pub fn from_output(stdout: &str) -> anyhow::Result<Self> {
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| anyhow::anyhow!("the demo printed nothing"))?;
        serde_json::from_str(last)
            .map_err(|e| anyhow::anyhow!("the demo's last line is not its summary ({e}): {last}"))
    }
}

/// `seconds` rounded to hundredths, as the summary gives times.
pub fn hundredths(seconds: f64) -> f64 {
    (seconds * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_read_back_from_the_last_line() {
        let summary = Summary {
            ok: true,
            name: "mail.failover.example.com".into(),
            failover_s: 4.2,
            ttl_s: 10,
            client_visible_worst_s: 14.2,
            floor_s: 3.0,
            flipped_to: "mail-site2.example.com".into(),
            failback_s: 18.9,
            alerts: 3,
            leader: "controller-site1".into(),
            nats_nodes: 3,
            edge_webhooks: 6,
            dag: "DAG1".into(),
            mailbox_site_before: "site1".into(),
            mailbox_site_after: "site2".into(),
            follow_name: "owa.failover.example.com".into(),
            follow_target_before: "owa-site1.example.com".into(),
            follow_target_after: "owa-site2.example.com".into(),
            switchover_to_edge_s: hundredths(1.2345),
            switchover_to_follow_s: 1.5,
        };
        let out = format!(
            "[  1.00s] starting\n{}\n\n",
            serde_json::to_string(&summary).unwrap()
        );
        assert_eq!(Summary::from_output(&out).unwrap(), summary);
        assert_eq!(summary.switchover_to_edge_s, 1.23);
        let err = Summary::from_output("[  1.00s] lab stopped\n").unwrap_err();
        assert!(err.to_string().contains("lab stopped"), "{err}");
    }
}
