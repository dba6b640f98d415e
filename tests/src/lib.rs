//! Test harness: real nats-server processes, Exchange and DAG emulators, fault injection, the HA
//! lab and the invariants every fault story must keep.
//!
//! Integration tests (`tests/tests/integration`, one test binary), the benchmarks and the demo
//! start real parts through this crate and clean up on drop.
//!
//! Real parts and emulators: [`nats_server`] runs the Debian `nats-server` binary (one node or
//! a 3-node JetStream cluster), [`exchange`] emulates an Exchange client-access server
//! (healthcheck.htm and ActiveSync, HTTP or HTTPS with a generated CA) whose behaviour can be
//! switched at run time, [`dag`] emulates a database availability group and renders
//! `Get-MailboxDatabaseCopyStatus` JSON in the shapes PowerShell really emits, [`cloudflare`],
//! [`moto`] and [`bind`] stand in for the DNS providers, [`fault_proxy`] is a TCP proxy that
//! makes partitions (blackhole, reset, delay), [`haproxy`] runs a real HAProxy with an admin
//! Runtime API socket, [`receiver`] records webhook POSTs (alerts, edge notices), and
//! [`signals`] pauses, resumes or kills any process by pid.
//!
//! Configuration: [`config_toml`] builds the controller's and the agent's TOML from typed
//! structs, [`two_site`] is the brief's two-site layout on it, [`shipped_nats`] the shipped bus
//! permissions.
//!
//! The demo (`src/bin/sitewarden-demo.rs`) prints a [`demo::Summary`] as its last line.
//!
//! Running sitewarden: [`in_process`] runs an agent inside the test process, [`api_pair`] a
//! controller pair in-process with the operator API, [`ha_lab`] the controller pair as real
//! processes with agents, emulated sites and fault switches; [`agent_events`], [`audit`] and
//! [`metrics_page`] read what they publish, and [`invariants`] checks a recorded history.
//! [`machine`] makes the stories that load the whole machine take turns.
//!
//! Fixture files live under `tests/fixtures/` ([`fixture_path`]). Tests never sleep for a fixed
//! time to wait for a condition: they poll with a deadline through [`wait_for`].

pub mod agent_events;
pub mod api_pair;
pub mod audit;
pub mod bind;
pub mod cloudflare;
pub mod config_toml;
pub mod dag;
pub mod demo;
pub mod exchange;
pub mod fault_proxy;
pub mod ha_lab;
pub mod haproxy;
pub mod in_process;
pub mod invariants;
pub mod machine;
pub mod metrics_page;
pub mod moto;
pub mod nats_server;
pub mod receiver;
pub mod shipped_nats;
pub mod signals;
pub mod two_site;

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

/// How long a test waits for something that takes a few probe intervals when the machine is
/// idle: a leader elected, a site judged Down, a record moved, an event seen.
///
/// Sized for a loaded 2-core machine, not an idle one: the suite runs its stories two at a time
/// beside other builds, and a story that takes 3 s alone has been seen to take over 15 s there.
/// A deadline costs nothing when the condition holds early; a test that asserts *how fast*
/// something happens uses its own bound (a lease, a window) instead.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A free loopback address (for a listener the test starts a component on).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], nats_server::free_port()))
}

/// The path of a workspace binary (`sitewarden-agent`, `sitewarden-controller`), built by
/// `cargo test --workspace`; when it is missing (`cargo test -p sitewarden-tests`), this builds
/// it first.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Test executables live in target/<profile>/deps; binaries one level up.
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", name, "--bin", name])
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building {name} failed");
    }
    path
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
