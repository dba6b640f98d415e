//! POSIX signals for fault injection: pause (SIGSTOP), resume (SIGCONT), terminate or kill any
//! process the harness started, by pid.
//!
//! The workspace forbids unsafe code, so signals are sent by running `kill(1)` rather than
//! calling `libc::kill`. That costs a process spawn per signal, which is nothing next to the
//! seconds a fault scenario lasts.

use anyhow::Context;

/// A signal the harness sends to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGSTOP: freeze the process (it keeps its sockets but answers nothing).
    Stop,
    /// SIGCONT: resume a stopped process.
    Cont,
    /// SIGTERM: ask the process to shut down.
    Term,
    /// SIGKILL: end the process at once.
    Kill,
}

impl Signal {
    /// The name `kill -s` takes.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// Sends `signal` to process `pid` and fails if `kill(1)` reports an error (e.g. no such pid).
pub async fn send(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let kill = if std::path::Path::new("/bin/kill").exists() {
        "/bin/kill"
    } else {
        "kill"
    };
    let out = tokio::process::Command::new(kill)
        .arg("-s")
        .arg(signal.name())
        .arg(pid.to_string())
        .output()
        .await
        .with_context(|| format!("running {kill} -s {} {pid}", signal.name()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{kill} -s {} {pid} failed ({}): {}",
            signal.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
