//! Real `nats-server` processes for tests and the lab: one JetStream node ([`NatsServer`]) or a
//! JetStream cluster on loopback ([`NatsCluster`]).
//!
//! Each node gets random free loopback ports (client and monitoring), a generated config file, a
//! JetStream store and a log file (the server's stdout and stderr) in its own temporary
//! directory. Start-up and restart poll until the node answers, with a deadline; errors include
//! the tail of the node's log. Nodes are killed when dropped. `stop`/`restart` keep the ports
//! and the store, so clients reconnect to the same URL and JetStream data survives, and
//! `pause`/`resume` freeze a node with SIGSTOP/SIGCONT to make it hang rather than vanish.
//!
//! [`NatsServer::start_with`] adds to a standalone node's config what a security test needs
//! ([`NodeOptions`]): auth blocks, TLS, `include`s of shipped files (linked, not copied, into the
//! node's directory, since nats-server resolves includes relative to the including file) and
//! environment variables for credentials the config references as `$VAR`.
//!
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH`, else `/usr/sbin/nats-server`
//! (the Debian package).

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::signals::{self, Signal};

/// How long start-up and restart may take before they fail.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a cluster may take to elect a JetStream meta leader.
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(40);

/// A free TCP port on 127.0.0.1: binds port 0, reads the port and releases it.
///
/// Another process could take the port before it is used; that is rare enough for tests.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port for a test: {e}"))
}

/// The nats-server binary the harness runs.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/sbin/nats-server")
}

/// Cluster membership of a node: the cluster's name, this node's route port, its peers' ports.
#[derive(Debug, Clone)]
struct ClusterRole {
    name: String,
    port: u16,
    peers: Vec<u16>,
}

/// Additions to a standalone node's generated config, for [`NatsServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Config text appended after the generated `server_name`, `listen`, `http` and
    /// `jetstream` lines (an `authorization` or `accounts` block, `tls`, `include`s). Relative
    /// paths in it are relative to [`NatsServer::dir`].
    pub extra_config: String,
    /// Environment variables of the nats-server process, e.g. the credentials a shipped
    /// config references as `$VAR`.
    pub env: Vec<(String, String)>,
    /// Symbolic links made in the node's directory before it starts: `(name, target)`, so the
    /// config can `include "name/…"` a shipped file itself rather than a copy.
    pub links: Vec<(String, PathBuf)>,
    /// Files written into the node's directory before it starts: `(name, contents)`, e.g. TLS
    /// certificates.
    pub files: Vec<(String, Vec<u8>)>,
}

/// One running (or stopped) nats-server with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    /// Holds the config, the store and the log; removed on drop after the process is killed.
    dir: TempDir,
    /// `server_name`, also the JetStream peer name.
    name: String,
    /// Client port on 127.0.0.1.
    port: u16,
    /// Monitoring (HTTP) port on 127.0.0.1.
    http_port: u16,
    /// The process while it runs; `None` after [`NatsServer::stop`].
    child: Mutex<Option<Child>>,
    /// Environment variables for every run of the process ([`NodeOptions::env`]).
    env: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts a standalone node with JetStream and waits until JetStream is ready.
    pub async fn start() -> anyhow::Result<Self> {
        retry_port_clash(|| async {
            let server = Self::spawn_node("sitewarden-test".into(), None)?;
            server.wait_accepting(START_DEADLINE).await?;
            server.wait_healthy(START_DEADLINE).await?;
            Ok(server)
        })
        .await
    }

    /// Starts a standalone node with JetStream plus `opts` (auth, TLS, included files,
    /// environment) and waits until it accepts connections and JetStream is ready.
    pub async fn start_with(opts: NodeOptions) -> anyhow::Result<Self> {
        let server = Self::spawn_node_with("sitewarden-test".into(), None, opts)?;
        server.wait_accepting(START_DEADLINE).await?;
        server.wait_healthy(START_DEADLINE).await?;
        Ok(server)
    }

    /// Writes a node's config and starts it, without waiting.
    fn spawn_node(name: String, cluster: Option<ClusterRole>) -> anyhow::Result<Self> {
        Self::spawn_node_with(name, cluster, NodeOptions::default())
    }

    /// Writes a node's config (with `opts` added) and starts it, without waiting.
    fn spawn_node_with(
        name: String,
        cluster: Option<ClusterRole>,
        opts: NodeOptions,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sitewarden-nats-")
            .tempdir()
            .context("creating a temp dir for nats-server")?;
        let server = NatsServer {
            name,
            port: free_port(),
            http_port: free_port(),
            child: Mutex::new(None),
            env: opts.env,
            dir,
        };
        std::fs::create_dir_all(server.store_dir()).context("creating the JetStream store dir")?;
        for (name, target) in &opts.links {
            let link = server.dir().join(name);
            std::os::unix::fs::symlink(target, &link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        }
        for (name, contents) in &opts.files {
            let path = server.dir().join(name);
            std::fs::write(&path, contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let mut config = server.config(cluster.as_ref());
        config.push_str(&opts.extra_config);
        config.push('\n');
        std::fs::write(server.config_path(), config).context("writing nats-server config")?;
        server.spawn()?;
        Ok(server)
    }

    fn config(&self, cluster: Option<&ClusterRole>) -> String {
        let mut c = format!(
            "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{http}\"\n\
             jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n",
            name = self.name,
            port = self.port,
            http = self.http_port,
            store = self.store_dir().display(),
        );
        if let Some(cl) = cluster {
            let routes: Vec<String> = cl
                .peers
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            c.push_str(&format!(
                // no_advertise: clients use only the URLs they were given, so a fault proxy in
                // front of a node really cuts a client off (no discovered way around it).
                "cluster {{\n  name: \"{}\"\n  listen: \"127.0.0.1:{}\"\n  no_advertise: true\n  routes: [{}]\n}}\n",
                cl.name,
                cl.port,
                routes.join(", ")
            ));
        }
        c
    }

    fn spawn(&self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the nats-server log")?;
        let log2 = log.try_clone().context("duplicating the log handle")?;
        let bin = binary();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(self.config_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // Relative paths in the config (TLS files) resolve against the node's directory.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}; install it with `apt-get install nats-server` or set NATS_SERVER_BIN",
                    bin.display()
                )
            })?;
        *self.lock() = Some(child);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port (unchanged across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client address, for a [`crate::fault_proxy::FaultProxy`] upstream.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `http://127.0.0.1:HTTP_PORT`, the monitoring endpoint (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The node's `server_name` (its JetStream peer name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().and_then(|c| c.id())
    }

    /// The node's directory: its config, store, log and any [`NodeOptions`] files and links.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The generated config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.conf")
    }

    /// The node's log: stdout and stderr of every run, appended.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// Kills the node (SIGKILL, like a crash) and waits for it to exit. Ports and store are kept.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let child = self.lock().take();
        if let Some(mut child) = child {
            child.start_kill().ok();
            child
                .wait()
                .await
                .context("waiting for nats-server to exit")?;
        }
        Ok(())
    }

    /// Stops the node if it runs, starts it again on the same ports with the same store, and
    /// waits until it accepts client connections.
    ///
    /// A clustered node may not have JetStream quorum yet when this returns; use
    /// [`NatsCluster::wait_for_meta_leader`] when that matters.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await?;
        let until = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            self.spawn()?;
            match self.wait_accepting(START_DEADLINE).await {
                Ok(()) => return Ok(()),
                // The port may still be held briefly by the old process; try again.
                Err(e) if self.has_exited() && tokio::time::Instant::now() < until => {
                    tracing::debug!("nats-server restart retry: {e:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Freezes the node with SIGSTOP: connections stay open but nothing is answered.
    pub async fn pause(&self) -> anyhow::Result<()> {
        signals::send(self.running_pid()?, Signal::Stop).await
    }

    /// Resumes a paused node with SIGCONT.
    pub async fn resume(&self) -> anyhow::Result<()> {
        signals::send(self.running_pid()?, Signal::Cont).await
    }

    fn running_pid(&self) -> anyhow::Result<u32> {
        self.pid()
            .ok_or_else(|| anyhow!("nats-server {} is not running", self.name))
    }

    fn has_exited(&self) -> bool {
        match self.lock().as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "nats-server {} (port {}) {what}; log {}:\n{}",
            self.name,
            self.port,
            self.log_path().display(),
            self.log_tail(20)
        )
    }

    /// Waits until the client port answers with the protocol's `INFO` line.
    async fn wait_accepting(&self, deadline: Duration) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if self.has_exited() {
                return Err(self.failure("exited during start-up"));
            }
            if self.answers_info().await && self.listening() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(
                    self.failure(&format!("did not accept connections within {deadline:?}"))
                );
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    /// Whether this node's process says in the log that it listens on its client port. An
    /// INFO on the port alone is not enough: a node that lost its port to another test's
    /// server (picked between [`free_port`] and the bind) would take that server's INFO for
    /// its own, until it exits with "address already in use".
    fn listening(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let (who, port) = (format!("[{pid}] "), format!(":{}", self.port));
        std::fs::read_to_string(self.log_path()).is_ok_and(|log| {
            log.lines().any(|l| {
                l.starts_with(&who)
                    && l.contains("Listening for client connections on")
                    && l.trim_end().ends_with(&port)
            })
        })
    }

    async fn answers_info(&self) -> bool {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(self.addr()).await.ok()?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"INFO ").then_some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(()))
        )
    }

    /// Waits until `/healthz` reports ok (for JetStream: the node is ready to serve streams).
    pub async fn wait_healthy(&self, deadline: Duration) -> anyhow::Result<()> {
        let client = monitor_client()?;
        let url = format!("{}/healthz", self.monitor_url());
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if self.has_exited() {
                return Err(self.failure("exited while waiting for /healthz"));
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(self.failure(&format!("/healthz not ok within {deadline:?}")));
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    /// The node that leads stream `stream`, as this node reports it (from `/jsz`), if any.
    pub async fn stream_leader(&self, stream: &str) -> Option<String> {
        let client = monitor_client().ok()?;
        let jsz: serde_json::Value = client
            .get(format!("{}/jsz?streams=1", self.monitor_url()))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        jsz.pointer("/account_details")?
            .as_array()?
            .iter()
            .filter_map(|a| a.get("stream_detail")?.as_array())
            .flatten()
            .find(|d| d.get("name").and_then(|n| n.as_str()) == Some(stream))?
            .pointer("/cluster/leader")?
            .as_str()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    }

    /// The JetStream meta leader this node knows of (from `/jsz`), if any.
    pub async fn meta_leader(&self) -> Option<String> {
        let client = monitor_client().ok()?;
        let jsz: serde_json::Value = client
            .get(format!("{}/jsz", self.monitor_url()))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        jsz.pointer("/meta_cluster/leader")
            .and_then(|l| l.as_str())
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.lock().as_mut() {
            // tokio reaps the killed child in the background (kill_on_drop is also set).
            child.start_kill().ok();
        }
    }
}

fn monitor_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .context("building an HTTP client for the nats monitor")
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        use std::io::Read;
        f.read_to_string(&mut text).ok();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A JetStream cluster of nodes on loopback, fully meshed by routes.
/// Runs `start` again (with fresh ports) when a node lost a port picked by [`free_port`] to
/// another test between the pick and its bind — a race no port picker can close — up to three
/// times. Any other failure is returned at once.
async fn retry_port_clash<T, F, Fut>(mut start: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match start().await {
            Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, in the order of the names given at start.
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes named `n1`..`nN` and waits for a JetStream meta leader.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::start_named(&refs).await
    }

    /// Starts one node per name (e.g. `["site1", "site2", "witness"]`) and waits until every
    /// node agrees on a JetStream meta leader and reports healthy.
    pub async fn start_named(names: &[&str]) -> anyhow::Result<Self> {
        Self::start_named_with(names, NodeOptions::default()).await
    }

    /// [`NatsCluster::start_named`] with `opts` added to every node's config (the shipped
    /// accounts, a smaller store, …).
    pub async fn start_named_with(names: &[&str], opts: NodeOptions) -> anyhow::Result<Self> {
        if names.is_empty() {
            bail!("a NATS cluster needs at least one node");
        }
        retry_port_clash(|| Self::start_once(names, &opts)).await
    }

    async fn start_once(names: &[&str], opts: &NodeOptions) -> anyhow::Result<Self> {
        let route_ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
        let mut nodes = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let role = ClusterRole {
                name: "sitewarden".into(),
                port: route_ports[i],
                peers: route_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| *p)
                    .collect(),
            };
            nodes.push(NatsServer::spawn_node_with(
                (*name).to_owned(),
                Some(role),
                opts.clone(),
            )?);
        }
        let cluster = NatsCluster { nodes };
        for node in &cluster.nodes {
            node.wait_accepting(START_DEADLINE).await?;
        }
        cluster.wait_for_meta_leader(CLUSTER_DEADLINE).await?;
        for node in &cluster.nodes {
            node.wait_healthy(CLUSTER_DEADLINE).await?;
        }
        Ok(cluster)
    }

    /// Node `i` (0-based, in start order). Panics when out of range, like indexing.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// Every node's client URL, for a client's server list.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Waits until every JetStream stream of the default account has a leader and every
    /// replica is current and online, so a fault injected next hits a settled cluster: on
    /// nats-server 2.9 a stream created a second before a node dies can stay without a leader
    /// ("no responders") for longer than a story waits, which is the cluster's start-up, not
    /// what a story tests. Fails naming the unsettled streams after `deadline`.
    pub async fn wait_settled(&self, deadline: Duration) -> anyhow::Result<()> {
        use futures::StreamExt;
        let client = async_nats::connect(self.urls().as_slice()).await?;
        let js = async_nats::jetstream::new(client);
        let mut unsettled = Vec::new();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            unsettled.clear();
            let mut streams = js.streams();
            let mut seen = 0;
            while let Some(info) = streams.next().await {
                let Ok(info) = info else {
                    unsettled.push("(listing failed)".to_owned());
                    break;
                };
                seen += 1;
                let settled = info.cluster.as_ref().is_some_and(|c| {
                    c.leader.is_some() && c.replicas.iter().all(|p| p.current && !p.offline)
                });
                if !settled {
                    unsettled.push(info.config.name.clone());
                }
            }
            if seen > 0 && unsettled.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                bail!("streams not settled within {deadline:?}: {unsettled:?}");
            }
            tokio::time::sleep(crate::POLL_INTERVAL * 4).await;
        }
    }

    /// Waits until every running node reports the same JetStream meta leader, and returns it.
    pub async fn wait_for_meta_leader(&self, deadline: Duration) -> anyhow::Result<String> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let mut leaders = Vec::new();
            for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
                leaders.push(node.meta_leader().await);
            }
            if let Some(Some(first)) = leaders.first()
                && leaders.iter().all(|l| l.as_deref() == Some(first.as_str()))
            {
                return Ok(first.clone());
            }
            if tokio::time::Instant::now() >= until {
                let tails: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- {} ---\n{}", n.name, n.log_tail(10)))
                    .collect();
                bail!(
                    "no JetStream meta leader agreed within {deadline:?} (seen {leaders:?}):\n{}",
                    tails.join("\n")
                );
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn publish_subscribe_and_restart_on_the_same_port() {
        let server = NatsServer::start().await.unwrap();
        let port = server.port();
        let client = async_nats::connect(server.url()).await.unwrap();
        let mut sub = client.subscribe("t.>").await.unwrap();
        client.publish("t.a", "hello".into()).await.unwrap();
        client.flush().await.unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&msg.payload[..], b"hello");

        server.stop().await.unwrap();
        assert!(server.pid().is_none());
        assert!(
            tokio::net::TcpStream::connect(server.addr()).await.is_err(),
            "a stopped server refuses connections"
        );
        server.restart().await.unwrap();
        assert_eq!(server.port(), port);
        assert!(server.pid().is_some());
        let again = async_nats::connect(server.url()).await.unwrap();
        again.publish("t.b", "x".into()).await.unwrap();
        again.flush().await.unwrap();
    }

    #[tokio::test]
    async fn jetstream_stream_survives_a_restart() {
        let server = NatsServer::start().await.unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "AUDIT".into(),
            subjects: vec!["audit.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("audit.x", "1".into())
            .await
            .unwrap()
            .await
            .unwrap();
        drop(js);

        server.restart().await.unwrap();
        server.wait_healthy(START_DEADLINE).await.unwrap();
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let mut stream = js.get_stream("AUDIT").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 1);
    }

    #[tokio::test]
    async fn pause_freezes_and_resume_thaws() {
        let server = NatsServer::start().await.unwrap();
        server.pause().await.unwrap();
        assert!(
            !server.answers_info().await,
            "a paused server answers nothing"
        );
        server.resume().await.unwrap();
        server.wait_accepting(START_DEADLINE).await.unwrap();
    }

    #[tokio::test]
    async fn three_node_cluster_elects_a_leader_and_replicates() {
        let cluster = NatsCluster::start_named(&["site1", "site2", "witness"])
            .await
            .unwrap();
        assert_eq!(cluster.urls().len(), 3);
        let leader = cluster.node(2).meta_leader().await.unwrap();
        assert!(["site1", "site2", "witness"].contains(&leader.as_str()));
        let client = async_nats::connect(cluster.node(0).url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "R3".into(),
            subjects: vec!["r3.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("r3.x", "1".into()).await.unwrap().await.unwrap();
        // A client on another node sees the replicated stream.
        let other =
            async_nats::jetstream::new(async_nats::connect(cluster.node(1).url()).await.unwrap());
        let mut stream = other.get_stream("R3").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 1);
    }
}
