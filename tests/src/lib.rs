//! Test harness: real nats-server processes, Exchange and DAG emulators, fault injection.
//!
//! Integration tests, the lab and the demo start real parts through this crate and clean up on
//! drop: [`nats_server`] runs the Debian `nats-server` binary (one node or a 3-node JetStream
//! cluster), [`exchange`] emulates an Exchange client-access server (healthcheck.htm and
//! ActiveSync, HTTP or HTTPS with a generated CA) whose behaviour can be switched at run time,
//! [`dag`] emulates a database availability group and renders `Get-MailboxDatabaseCopyStatus`
//! JSON in the shapes PowerShell really emits, [`fault_proxy`] is a TCP proxy that makes
//! partitions (blackhole, reset, delay), [`haproxy`] runs a real HAProxy with an admin Runtime API
//! socket, [`receiver`] records webhook POSTs (alerts, edge notices), and [`signals`] pauses, resumes or kills any process by
//! pid. Fixture files live under `tests/fixtures/` ([`fixture_path`]). Tests never sleep for a fixed time to wait for a
//! condition: they poll with a deadline through [`wait_for`].

pub mod bind;
pub mod cloudflare;
pub mod dag;
pub mod exchange;
pub mod fault_proxy;
pub mod haproxy;
pub mod lab;
pub mod moto;
pub mod nats_server;
pub mod receiver;
pub mod signals;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A file under `tests/fixtures/` (e.g. `fixture_path("dbcopy/ps51.json")`).
pub fn fixture_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

/// `dig @server -p PORT name CNAME +short +norecurse` with a 1 s timeout and one try: the
/// answer without the trailing dot, or "" when there is none (or dig is missing: Debian's
/// bind9-dnsutils, installed by `scripts/install-deps`).
pub fn dig_cname(server: std::net::SocketAddr, name: &str) -> String {
    std::process::Command::new("dig")
        .args([
            format!("@{}", server.ip()),
            "-p".into(),
            server.port().to_string(),
            name.into(),
            "CNAME".into(),
            "+short".into(),
            "+norecurse".into(),
            "+time=1".into(),
            "+tries=1".into(),
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_end_matches('.')
                .to_owned()
        })
        .unwrap_or_default()
}

/// How often [`wait_for`] polls its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Some`, and returns that value.
///
/// Fails with an error naming `what` when `deadline` passes first. Use it instead of a fixed
/// sleep whenever a test waits for something to happen.
pub async fn wait_for<F, Fut, T>(what: &str, deadline: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= until {
            anyhow::bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn wait_for_returns_the_value_once_ready() {
        let calls = AtomicU32::new(0);
        let v = wait_for("third call", Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n >= 3).then_some(n)
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn wait_for_names_what_it_waited_for() {
        let err = wait_for("the impossible", Duration::from_millis(60), || async {
            None::<()>
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("the impossible"), "{err}");
    }
}
