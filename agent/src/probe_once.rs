//! `sitewarden-agent probe-once`: run every check once and print a table an admin can read.
//!
//! This is the setup tool: it needs no NATS, runs all probes concurrently, prints one row per
//! probe (and one per database-copy collector) and reports whether everything passed.

use std::fmt::Write as _;

use futures::future::join_all;
use sitewarden_shared::{Observation, Outcome};

use crate::config::AgentConfig;
use crate::run::probers;

/// Runs every probe and collector once. Returns the table and whether everything passed.
pub async fn run(config: &AgentConfig) -> Result<(String, bool), String> {
    let probers = probers(config)?;
    let results: Vec<Observation> = join_all(probers.iter().map(|p| p.run_once())).await;
    let mut ok = true;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<10} {:<10} {:<12} {:<6} {:>6} {:>8}  DETAIL",
        "CHECK", "SITE", "SERVER", "PROTOCOL", "RESULT", "HTTP", "MS"
    );
    for o in &results {
        ok &= o.outcome == Outcome::Pass;
        let result = if o.outcome == Outcome::Pass {
            "PASS"
        } else {
            "FAIL"
        };
        let http = o
            .http_status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:<10} {:<12} {:<6} {:>6} {:>8}  {}",
            o.check.as_str(),
            o.target_site.as_str(),
            o.server.as_str(),
            o.protocol,
            result,
            http,
            o.latency_ms,
            detail(o)
        );
    }
    for src in config.dbcopy.iter().filter(|s| s.command.is_some()) {
        match crate::dbcopy::collect(src, &tokio_util::sync::CancellationToken::new()).await {
            Ok(copies) => {
                let mounted = copies.iter().filter(|c| c.is_active()).count();
                let _ = writeln!(
                    out,
                    "dbcopy {:<9} DAG {:<16} OK    {} copies, {} active",
                    src.name.as_str(),
                    src.dag,
                    copies.len(),
                    mounted
                );
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "dbcopy {:<9} DAG {:<16} FAIL  {e}",
                    src.name.as_str(),
                    src.dag
                );
            }
        }
    }
    Ok((out, ok))
}

fn detail(o: &Observation) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &o.error {
        parts.push(e.clone());
    }
    if let Some(n) = &o.details.note {
        parts.push(n.clone());
    }
    if let Some(f) = &o.details.backend_fqdn {
        parts.push(format!("backend {f}"));
    }
    if let Some(a) = &o.details.activesync
        && let Some(v) = a.protocol_versions.last()
    {
        parts.push(format!("EAS up to {v}"));
    }
    if let Some(t) = &o.details.tls {
        let mut s = format!("cert {}d left", t.days_left);
        if t.expiring_soon {
            s.push_str(" (EXPIRING)");
        }
        if !t.missing_names.is_empty() {
            let _ = write!(s, ", SANs miss {}", t.missing_names.join(","));
        }
        parts.push(s);
    }
    parts.join("; ")
}
