//! Database-copy collection: run the configured command, parse its JSON, build a snapshot.
//!
//! The command (typically `pwsh -File Get-SitewardenDbCopyStatus.ps1`) runs with a timeout; on
//! timeout it is killed and reaped, so no zombie is left behind. Garbage output, a non-zero exit
//! or a timeout become a snapshot with `outcome = "error"` and the reason — the controller then
//! knows the collector is broken instead of seeing silence. Output is capped at
//! [`MAX_OUTPUT`] bytes.

use std::process::Stdio;

use chrono::Utc;
use sitewarden_shared::dbcopy::{DbCopy, parse_powershell_json};
use sitewarden_shared::{
    AgentId, CollectOutcome, CollectVia, DbCopySnapshot, SCHEMA_VERSION, SiteId,
};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::config::DbCopySource;

/// Largest collector output read; a DAG with hundreds of copies is well under this.
pub const MAX_OUTPUT: usize = 8 * 1024 * 1024;

/// Builds a snapshot from a collection result.
pub fn snapshot(
    agent: &AgentId,
    site: &SiteId,
    src: &DbCopySource,
    via: CollectVia,
    result: Result<Vec<DbCopy>, String>,
) -> DbCopySnapshot {
    let (outcome, error, copies) = match result {
        Ok(c) => (CollectOutcome::Ok, None, c),
        Err(e) => (CollectOutcome::Error, Some(e), Vec::new()),
    };
    DbCopySnapshot {
        schema_version: SCHEMA_VERSION,
        agent: agent.clone(),
        site: site.clone(),
        seq: 0,
        observed_at: Utc::now(),
        source: src.name.clone(),
        dag: src.dag.clone(),
        via,
        outcome,
        error,
        copies,
    }
}

/// Runs the collector command once and parses its output.
///
/// Returns early when `cancel` fires; the child is then killed and reaped before returning, as it
/// is on timeout, so neither shutdown nor a hung script leaves a process or a zombie behind.
pub async fn collect(
    src: &DbCopySource,
    cancel: &CancellationToken,
) -> Result<Vec<DbCopy>, String> {
    let Some((program, args)) = src.command.as_ref().and_then(|c| c.split_first()) else {
        return Err("no command configured".into());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut out_limited = (&mut stdout).take(MAX_OUTPUT as u64 + 1);
        let mut err_limited = (&mut stderr).take(64 * 1024);
        let (r1, r2, status) = tokio::join!(
            out_limited.read_to_end(&mut out),
            err_limited.read_to_end(&mut err),
            child.wait()
        );
        r1.map_err(|e| format!("reading output: {e}"))?;
        r2.map_err(|e| format!("reading stderr: {e}"))?;
        Ok::<_, String>((
            status.map_err(|e| format!("waiting for {program}: {e}"))?,
            out,
            err,
        ))
    };
    let finished = tokio::select! {
        r = tokio::time::timeout(src.timeout, run) => Some(r),
        _ = cancel.cancelled() => None,
    };
    // Past this point the `run` future is dropped, so `child` can be killed and reaped.
    let (status, out, err) = match finished {
        Some(Ok(r)) => r?,
        Some(Err(_)) => {
            let _ = child.kill().await;
            return Err(format!(
                "{program} did not finish within {}s; killed",
                src.timeout.as_secs_f32()
            ));
        }
        None => {
            let _ = child.kill().await;
            return Err("the agent is shutting down; collection abandoned".into());
        }
    };
    if !status.success() {
        let tail: String = String::from_utf8_lossy(&err)
            .trim()
            .chars()
            .rev()
            .take(300)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        return Err(format!("{program} exited with {status}: {tail}"));
    }
    if out.len() > MAX_OUTPUT {
        return Err(format!("{program} printed more than {MAX_OUTPUT} bytes"));
    }
    parse_powershell_json(&String::from_utf8_lossy(&out)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(command: &[&str], timeout_ms: u64) -> DbCopySource {
        DbCopySource {
            name: sitewarden_shared::CheckName::new("t").unwrap(),
            dag: "DAG1".into(),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(timeout_ms),
            push_token: None,
        }
    }

    /// Live or zombie children of this process running `sleep <arg>`.
    fn children_sleeping(arg: &str) -> usize {
        let me = std::process::id().to_string();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                let ppid = rest.split_whitespace().nth(1).unwrap_or("");
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                ppid == me
                    && (String::from_utf8_lossy(&cmd).contains(arg) || stat.contains("(sleep) Z"))
            })
            .count()
    }

    #[tokio::test]
    async fn a_hung_collector_is_killed_and_reaped_at_its_timeout() {
        let err = collect(&source(&["sleep", "41.5"], 200), &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.contains("did not finish within 0.2s"), "{err}");
        assert_eq!(children_sleeping("41.5"), 0);
    }

    #[tokio::test]
    async fn repeated_hung_collectors_are_all_reaped() {
        for _ in 0..4 {
            let _ = collect(&source(&["sleep", "43.5"], 150), &CancellationToken::new()).await;
            let _ = collect(
                &source(&["cat", "/etc/hostname"], 150),
                &CancellationToken::new(),
            )
            .await;
        }
        assert_eq!(children_sleeping("43.5"), 0);
    }

    #[tokio::test]
    async fn shutdown_kills_and_reaps_a_running_collector() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let task =
            tokio::spawn(async move { collect(&source(&["sleep", "42.5"], 60_000), &c2).await });
        while children_sleeping("42.5") == 0 {
            tokio::task::yield_now().await;
        }
        cancel.cancel();
        let err = task.await.unwrap().unwrap_err();
        assert!(err.contains("shutting down"), "{err}");
        assert_eq!(children_sleeping("42.5"), 0);
    }

    #[tokio::test]
    async fn failures_carry_exit_status_and_stderr() {
        let err = collect(
            &source(&["sh", "-c", "echo boom >&2; exit 4"], 5000),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            err.contains("exit status: 4") && err.contains("boom"),
            "{err}"
        );
        let err = collect(
            &source(&["/nonexistent/pwsh"], 5000),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(err.contains("cannot start /nonexistent/pwsh"), "{err}");
    }
}
