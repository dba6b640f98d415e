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
pub async fn collect(src: &DbCopySource) -> Result<Vec<DbCopy>, String> {
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
    let (status, out, err) = match tokio::time::timeout(src.timeout, run).await {
        Ok(r) => r?,
        Err(_) => {
            // Dropping the future released the borrows; kill and reap so nothing lingers.
            let _ = child.kill().await;
            return Err(format!(
                "{program} did not finish within {}s; killed",
                src.timeout.as_secs_f32()
            ));
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
