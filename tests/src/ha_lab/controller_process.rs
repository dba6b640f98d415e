//! One controller of the HA lab as a real `sitewarden-controller run` process: started from its
//! configuration file, its output appended to a log the lab prints on failure, killed on drop;
//! signals, restarts and its own fault proxies to the DNS API and to each NATS node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::fault_proxy::{Fault, FaultProxy};
use crate::metrics_page::metric;
use crate::signals::{self, Signal};

/// One `sitewarden-controller run` process.
pub struct ControllerProc {
    /// `[controller] id`.
    pub id: String,
    /// Its `/metrics` address.
    pub http: SocketAddr,
    /// Its Cloudflare API traffic goes through this proxy.
    pub proxy: FaultProxy,
    /// With [`super::LabOptions::nats_proxies`]: its path to each NATS node.
    pub nats: Vec<FaultProxy>,
    /// With [`super::LabOptions::builtin_dns`]: where its DNS server answers.
    pub dns: Option<SocketAddr>,
    pub(super) child: Child,
    pub(super) pid: u32,
    pub(super) log: PathBuf,
    pub(super) config: PathBuf,
    pub(super) file_handles: Option<u64>,
}

impl ControllerProc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `sitewarden_controller_acting` (None while /metrics does not answer).
    pub async fn acting(&self) -> Option<bool> {
        metric(self.http, "sitewarden_controller_acting", "")
            .await
            .map(|v| v == 1.0)
    }

    /// `sitewarden_controller_epoch`.
    pub async fn epoch(&self) -> Option<u64> {
        metric(self.http, "sitewarden_controller_epoch", "")
            .await
            .map(|v| v as u64)
    }

    /// Sends a signal to the process.
    pub async fn signal(&self, s: Signal) {
        signals::send(self.pid, s).await.unwrap();
    }

    /// SIGKILL, then reap.
    pub async fn kill(&mut self) {
        self.signal(Signal::Kill).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Starts the process again with the same configuration (after [`ControllerProc::kill`]);
    /// its log continues in the same file.
    pub fn restart(&mut self) {
        let (child, pid) = spawn_controller(&self.config, &self.log, self.file_handles);
        self.child = child;
        self.pid = pid;
    }

    /// Sets this controller's path to every NATS node (needs [`super::LabOptions::nats_proxies`]).
    pub fn bus_path(&self, fault: Fault) {
        assert!(!self.nats.is_empty(), "started without nats_proxies");
        for p in &self.nats {
            p.set(fault);
        }
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Starts `sitewarden-controller run --config CONFIG`, appending its output to `log`; with
/// `file_handles`, under `prlimit` (which execs it, so the pid is the controller's).
pub(super) fn spawn_controller(
    config: &Path,
    log: &Path,
    file_handles: Option<u64>,
) -> (Child, u32) {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let err = out.try_clone().unwrap();
    let controller = crate::workspace_binary("sitewarden-controller");
    let mut command = match file_handles {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(controller);
            c
        }
        None => Command::new(controller),
    };
    let child = command
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    (child, pid)
}
