//! A real HAProxy for tests: Debian's `haproxy` in the foreground with an admin Runtime API
//! socket, one frontend and backends whose servers point at loopback ports.
//!
//! [`Haproxy::start`] writes `haproxy.cfg` into a temporary directory (`stats socket
//! <tmp>/admin.sock level admin`, no health checks, so a server's state only changes when
//! someone sets it), starts `haproxy -f <tmp>/haproxy.cfg -db`, and polls the socket until it
//! answers, with a deadline; errors include the tail of HAProxy's log. The process is killed when
//! the value is dropped. [`Haproxy::server_states`] reads `show servers state` with its own small
//! parser, independent of the agent's, so tests check HAProxy's view and not the code under test.
//!
//! The binary is `$HAPROXY_BIN`, else `/usr/sbin/haproxy` (the Debian package).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::nats_server::free_port;

/// How long start-up may take before it fails.
pub const START_DEADLINE: Duration = Duration::from_secs(15);

/// The haproxy binary the harness runs.
pub fn binary() -> PathBuf {
    std::env::var_os("HAPROXY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"))
}

/// A server's administrative state as HAProxy reports it (`srv_admin_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// No maintenance or drain flag.
    Ready,
    /// A drain flag (0x08 forced, 0x10 inherited) and no maintenance flag.
    Drain,
    /// Any maintenance flag.
    Maint,
}

/// One running HAProxy.
#[derive(Debug)]
pub struct Haproxy {
    dir: TempDir,
    frontend_port: u16,
    child: Mutex<Option<Child>>,
}

impl Haproxy {
    /// Starts HAProxy with these backends (`(backend, [server, ...])`), each server pointing
    /// at its own free loopback port, and waits until the Runtime API answers.
    pub async fn start(backends: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sw-haproxy-")
            .tempdir()
            .context("creating a temp dir for haproxy")?;
        let hp = Haproxy {
            dir,
            frontend_port: free_port(),
            child: Mutex::new(None),
        };
        std::fs::write(hp.config_path(), hp.config(backends)).context("writing haproxy.cfg")?;
        hp.spawn()?;
        hp.wait_ready().await?;
        Ok(hp)
    }

    fn config(&self, backends: &[(&str, &[&str])]) -> String {
        let mut c = format!(
            "global\n    stats socket {sock} level admin\n\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\n\
             frontend fe\n    bind 127.0.0.1:{port}\n",
            sock = self.socket().display(),
            port = self.frontend_port,
        );
        if let Some((first, _)) = backends.first() {
            c.push_str(&format!("    default_backend {first}\n"));
        }
        for (backend, servers) in backends {
            c.push_str(&format!("\nbackend {backend}\n"));
            for s in *servers {
                c.push_str(&format!("    server {s} 127.0.0.1:{}\n", free_port()));
            }
        }
        c
    }

    fn spawn(&self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the haproxy log")?;
        let log2 = log.try_clone().context("duplicating the log handle")?;
        let bin = binary();
        let child = Command::new(&bin)
            .arg("-f")
            .arg(self.config_path())
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}; install it with `apt-get install haproxy` or set HAPROXY_BIN",
                    bin.display()
                )
            })?;
        *self.lock() = Some(child);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            let exited = match self.lock().as_mut() {
                Some(child) => !matches!(child.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                return Err(self.failure("exited during start-up"));
            }
            if let Ok(info) = self.command("show info").await
                && info.contains("Name: HAProxy")
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(self.failure(&format!(
                    "did not answer on its admin socket within {START_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "haproxy {what}; log {}:\n{}",
            self.log_path().display(),
            self.log_tail(20)
        )
    }

    /// The admin Runtime API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// HAProxy's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.log")
    }

    /// The frontend's port on 127.0.0.1.
    pub fn frontend_port(&self) -> u16 {
        self.frontend_port
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends one Runtime API command and returns the answer.
    pub async fn command(&self, command: &str) -> anyhow::Result<String> {
        runtime_command(&self.socket(), command).await
    }

    /// Every server of `backend` and its admin state, from `show servers state`.
    pub async fn server_states(&self, backend: &str) -> anyhow::Result<BTreeMap<String, Admin>> {
        let answer = self
            .command(&format!("show servers state {backend}"))
            .await?;
        let mut lines = answer.lines().filter(|l| !l.trim().is_empty());
        if lines.next().map(str::trim) != Some("1") {
            bail!("unexpected answer to show servers state {backend}: {answer:?}");
        }
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix('#'))
            .ok_or_else(|| anyhow!("no header in {answer:?}"))?
            .split_whitespace()
            .collect();
        let col = |n: &str| {
            header
                .iter()
                .position(|c| *c == n)
                .ok_or_else(|| anyhow!("no {n} column"))
        };
        let (name, admin) = (col("srv_name")?, col("srv_admin_state")?);
        let mut out = BTreeMap::new();
        for l in lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            let bits: u32 = f
                .get(admin)
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| anyhow!("bad line {l:?}"))?;
            let state = if bits & 0x67 != 0 {
                Admin::Maint
            } else if bits & 0x18 != 0 {
                Admin::Drain
            } else {
                Admin::Ready
            };
            let n = f.get(name).ok_or_else(|| anyhow!("bad line {l:?}"))?;
            out.insert((*n).to_owned(), state);
        }
        Ok(out)
    }

    /// Sets a server's state by hand (`ready`, `drain` or `maint`), as an operator or a reload
    /// would; fails if HAProxy refuses.
    pub async fn set_state(&self, backend: &str, server: &str, state: &str) -> anyhow::Result<()> {
        let answer = self
            .command(&format!("set server {backend}/{server} state {state}"))
            .await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            bail!("haproxy refused: {answer}")
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(child) = self.lock().as_mut() {
            // tokio reaps the killed child in the background (kill_on_drop is also set).
            child.start_kill().ok();
        }
    }
}

/// One command on a Runtime API socket, answer read until HAProxy closes.
async fn runtime_command(socket: &Path, command: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(socket).await?;
        s.write_all(format!("{command}\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| anyhow!("no answer to {command:?} within 3s"))?
}
