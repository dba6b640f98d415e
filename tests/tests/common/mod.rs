//! Shared pieces of the agent integration tests: start an in-process agent from TOML text,
//! collect the events it publishes, read its metrics, and find the built binaries.

#![allow(dead_code)] // each test file uses a different subset

pub mod api_pair;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use sitewarden_agent::AgentConfig;
use sitewarden_shared::config::Source;
use sitewarden_shared::{DbCopySnapshot, Heartbeat, Observation};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should take a few probe intervals.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// An agent running inside the test process.
pub struct RunningAgent {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningAgent {
    /// Loads `toml` and runs the agent until dropped or stopped.
    pub fn start(toml: &str) -> Self {
        let config = AgentConfig::from_source(&Source::inline("test-agent.toml", toml))
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(sitewarden_agent::run::run(config, shutdown.clone()));
        Self { shutdown, handle }
    }

    /// Stops the agent and waits for it to flush.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.handle).await;
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One event received from the bus, decoded by subject.
#[derive(Debug, Clone)]
pub enum Received {
    Obs(Box<Observation>),
    DbCopy(Box<DbCopySnapshot>),
    Heartbeat(Box<Heartbeat>),
}

impl Received {
    pub fn seq(&self) -> u64 {
        match self {
            Received::Obs(o) => o.seq,
            Received::DbCopy(d) => d.seq,
            Received::Heartbeat(h) => h.seq,
        }
    }
}

/// Subscribes to every sitewarden event and forwards decoded events to a channel.
pub async fn collect(url: &str) -> mpsc::UnboundedReceiver<(String, Received)> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(url)
        .await
        .expect("test subscriber connects");
    let mut sub = client
        .subscribe("sitewarden.v1.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _keep = client;
        while let Some(msg) = sub.next().await {
            let subject = msg.subject.to_string();
            let ev = if subject.starts_with("sitewarden.v1.obs.") {
                Received::Obs(Box::new(
                    serde_json::from_slice(&msg.payload).expect("observation decodes"),
                ))
            } else if subject.starts_with("sitewarden.v1.dbcopy.") {
                Received::DbCopy(Box::new(
                    serde_json::from_slice(&msg.payload).expect("dbcopy decodes"),
                ))
            } else if subject.starts_with("sitewarden.v1.heartbeat.") {
                Received::Heartbeat(Box::new(
                    serde_json::from_slice(&msg.payload).expect("heartbeat decodes"),
                ))
            } else {
                continue;
            };
            if tx.send((subject, ev)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the first observation of `check` on `server` that satisfies `pred`.
pub async fn observation(
    rx: &mut mpsc::UnboundedReceiver<(String, Received)>,
    check: &str,
    server: &str,
    pred: impl Fn(&Observation) -> bool,
) -> Observation {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((_, Received::Obs(o))))
                if o.check.as_str() == check && o.server.as_str() == server && pred(&o) =>
            {
                return *o;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("event stream ended while waiting for {check} on {server}"),
            Err(_) => panic!("no matching observation of {check} on {server} within {DEADLINE:?}"),
        }
    }
}

/// Waits for the first database-copy snapshot that satisfies `pred`.
pub async fn dbcopy(
    rx: &mut mpsc::UnboundedReceiver<(String, Received)>,
    pred: impl Fn(&DbCopySnapshot) -> bool,
) -> DbCopySnapshot {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((_, Received::DbCopy(d)))) if pred(&d) => return *d,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event stream ended while waiting for a dbcopy snapshot"),
            Err(_) => panic!("no matching dbcopy snapshot within {DEADLINE:?}"),
        }
    }
}

/// Reads one metric's value (summed over label sets matching `label_filter`) from `/metrics`.
pub async fn metric(addr: std::net::SocketAddr, name: &str, label_filter: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric_name = key.split('{').next().unwrap_or(key);
        if metric_name == name && key.contains(label_filter) {
            *total.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    total
}

/// A free loopback address for the agent's HTTP server.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], sitewarden_tests::nats_server::free_port()))
}

/// Path of a workspace binary (built by `cargo test --workspace`; built here if missing).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
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

/// Every record in the controllers' audit stream so far (empty when there is none yet, or when
/// the node at `url` does not answer).
pub async fn audit_records(url: &str) -> Vec<serde_json::Value> {
    audit_records_complete(url).await.unwrap_or_default()
}

/// The whole audit stream through the node at `url`, or `None` when it cannot be read to its
/// end now (the node is down, the stream has no leader yet, a read stalled midway): callers
/// that check invariants must not mistake part of the history for all of it.
pub async fn audit_records_complete(url: &str) -> Option<Vec<serde_json::Value>> {
    use futures::StreamExt;
    let client = async_nats::connect(url).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SITEWARDEN_AUDIT").await.ok()?;
    let total = stream.info().await.ok()?.state.messages;
    if total == 0 {
        return Some(Vec::new());
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .ok()?;
    let mut messages = consumer.messages().await.ok()?;
    let mut records = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(2), messages.next())
            .await
            .ok()??
            .ok()?;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) {
            records.push(v);
        }
        if m.info().map(|i| i.pending).unwrap_or(0) == 0 {
            return Some(records);
        }
    }
}
