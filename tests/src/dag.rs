//! A database availability group (DAG) emulator: mailbox database copies whose active copy can
//! be moved and whose health can be changed, rendered as `Get-MailboxDatabaseCopyStatus` JSON.
//!
//! sitewarden only reads copy status (it never mounts or moves databases), so the emulator is
//! the source of what the agent's `dbcopy` collector sees. Tests hand the agent a command
//! ([`DagEmulator::as_command`]: `cat` of a file rewritten on every change) or an HTTP URL
//! ([`DagEmulator::serve`]: `GET /copystatus?shape=ps7`), in any [`Shape`] PowerShell really
//! produces. Mutators take `&self`, so a test can move databases while collectors poll.

pub mod render;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, anyhow};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, TimeZone, Utc};
use sitewarden_shared::dbcopy::CopyStatus;
use tokio_util::sync::CancellationToken;

pub use render::{Shape, iso_round_trip};

/// One database copy's state (the fields `Get-MailboxDatabaseCopyStatus` reports).
#[derive(Debug, Clone, PartialEq)]
pub struct CopyState {
    /// `DatabaseName`, e.g. `DB01`.
    pub database: String,
    /// `MailboxServer`, e.g. `EX1`.
    pub server: String,
    /// `Status`; `Other("...")` renders an unknown status verbatim.
    pub status: CopyStatus,
    /// `ActivationSuspended`.
    pub activation_suspended: bool,
    /// `CopyQueueLength`.
    pub copy_queue_length: u64,
    /// `ReplayQueueLength`.
    pub replay_queue_length: u64,
    /// `ContentIndexState`, e.g. `Healthy`, `NotApplicable`, `Failed`.
    pub content_index_state: String,
    /// `LastInspectedLogTime` (rendered only for passive copies, as Exchange does).
    pub last_inspected_log_time: Option<DateTime<Utc>>,
    /// `ActivationPreference` (1 = most preferred).
    pub activation_preference: u32,
    /// `ErrorMessage`.
    pub error_message: Option<String>,
}

impl CopyState {
    /// `Name`: `DB\SERVER`.
    pub fn name(&self) -> String {
        format!("{}\\{}", self.database, self.server)
    }
}

/// The log time fresh copies start with; fixed so rendered output is reproducible.
pub fn default_log_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Everything the emulator holds.
#[derive(Debug, Default)]
struct DagState {
    /// Copies in insertion order (database-major).
    copies: Vec<CopyState>,
    /// Database → the server holding its active copy (as given; rendered lowercase).
    active: BTreeMap<String, String>,
    /// Files [`DagEmulator::as_command`] handed out, rewritten on every change.
    files: Vec<(PathBuf, Shape)>,
}

impl DagState {
    fn find(&mut self, db: &str, server: &str) -> anyhow::Result<&mut CopyState> {
        self.copies
            .iter_mut()
            .find(|c| c.database.eq_ignore_ascii_case(db) && c.server.eq_ignore_ascii_case(server))
            .ok_or_else(|| anyhow!("the DAG emulator has no copy {db}\\{server}"))
    }

    /// Moves `db`'s active copy to `server`; see [`DagEmulator::activate`].
    fn activate(&mut self, db: &str, server: &str) -> anyhow::Result<()> {
        let target = self.find(db, server)?;
        target.status = CopyStatus::Mounted;
        target.copy_queue_length = 0;
        target.replay_queue_length = 0;
        let new_active = target.server.clone();
        let database = target.database.clone();
        if let Some(old) = self.active.insert(database.clone(), new_active.clone())
            && !old.eq_ignore_ascii_case(&new_active)
            && let Ok(old_copy) = self.find(&database, &old)
        {
            old_copy.status = CopyStatus::Healthy;
        }
        Ok(())
    }

    fn rendered(&self, shape: Shape) -> String {
        let rows: Vec<(CopyState, Option<String>)> = self
            .copies
            .iter()
            .map(|c| {
                let active = self.active.get(&c.database).map(|s| s.to_ascii_lowercase());
                (c.clone(), active)
            })
            .collect();
        render::render(&rows, shape)
    }
}

/// A DAG emulator. Stops its HTTP server (if any) when dropped.
#[derive(Debug, Default)]
pub struct DagEmulator {
    /// Shared with the HTTP server.
    state: Arc<Mutex<DagState>>,
    /// Ends the HTTP server.
    shutdown: CancellationToken,
}

impl Drop for DagEmulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl DagEmulator {
    /// An empty DAG; add copies with [`DagEmulator::add_copy`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Every database has a copy on every server; all are mounted on `site1[0]`, the other
    /// copies are healthy passives. Activation preference: site1's servers first, in order,
    /// then site2's.
    pub fn two_sites(databases: &[&str], site1: &[&str], site2: &[&str]) -> Self {
        let dag = Self::new();
        {
            let mut st = dag.lock();
            for db in databases {
                for (i, server) in site1.iter().chain(site2).enumerate() {
                    let active = i == 0;
                    st.copies.push(CopyState {
                        database: (*db).to_owned(),
                        server: (*server).to_owned(),
                        status: if active {
                            CopyStatus::Mounted
                        } else {
                            CopyStatus::Healthy
                        },
                        activation_suspended: false,
                        copy_queue_length: 0,
                        replay_queue_length: 0,
                        content_index_state: "Healthy".into(),
                        last_inspected_log_time: Some(default_log_time()),
                        activation_preference: u32::try_from(i + 1).unwrap_or(u32::MAX),
                        error_message: None,
                    });
                    if active {
                        st.active.insert((*db).to_owned(), (*server).to_owned());
                    }
                }
            }
        }
        dag
    }

    /// Adds a copy; a copy whose status is active (`Mounted`…) becomes its database's active one.
    pub fn add_copy(&self, copy: CopyState) {
        self.change(|st| {
            if copy.status.is_active() {
                st.active.insert(copy.database.clone(), copy.server.clone());
            }
            st.copies.push(copy);
            Ok(())
        })
        .ok();
    }

    fn lock(&self) -> MutexGuard<'_, DagState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f`, then rewrites the files handed out by `as_command`.
    fn change(&self, f: impl FnOnce(&mut DagState) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut st = self.lock();
        f(&mut st)?;
        for (path, shape) in &st.files {
            write_atomically(path, &st.rendered(*shape))?;
        }
        Ok(())
    }

    /// A snapshot of every copy.
    pub fn copies(&self) -> Vec<CopyState> {
        self.lock().copies.clone()
    }

    /// The server holding `db`'s active copy.
    pub fn active_server(&self, db: &str) -> Option<String> {
        self.lock().active.get(db).cloned()
    }

    /// Moves `db`'s active copy to `server` (what Active Manager or `Move-ActiveMailboxDatabase`
    /// does): the old active copy becomes `Healthy`, the new one `Mounted` with empty queues,
    /// and every copy's `ActiveDatabaseCopy` names `server`.
    pub fn activate(&self, db: &str, server: &str) -> anyhow::Result<()> {
        self.change(|st| st.activate(db, server))
    }

    /// Activates every database on `server` (a datacenter switchover, when all copies exist)
    /// in one change: a collector reading meanwhile sees all databases before or all after,
    /// never a DAG split across sites half-way (which the controller would rightly alert on).
    pub fn activate_all(&self, server: &str) -> anyhow::Result<()> {
        self.change(|st| {
            let dbs: Vec<String> = st.active.keys().cloned().collect();
            dbs.iter().try_for_each(|db| st.activate(db, server))
        })
    }

    /// Sets one copy's `Status` (does not move the active copy; use [`DagEmulator::activate`]).
    pub fn set_status(&self, db: &str, server: &str, status: CopyStatus) -> anyhow::Result<()> {
        self.change(|st| {
            st.find(db, server)?.status = status;
            Ok(())
        })
    }

    /// Sets one copy's `CopyQueueLength` and `ReplayQueueLength`.
    pub fn set_queues(&self, db: &str, server: &str, copy: u64, replay: u64) -> anyhow::Result<()> {
        self.change(|st| {
            let c = st.find(db, server)?;
            c.copy_queue_length = copy;
            c.replay_queue_length = replay;
            Ok(())
        })
    }

    /// Sets one copy's `ActivationSuspended`.
    pub fn suspend_activation(
        &self,
        db: &str,
        server: &str,
        suspended: bool,
    ) -> anyhow::Result<()> {
        self.change(|st| {
            st.find(db, server)?.activation_suspended = suspended;
            Ok(())
        })
    }

    /// Sets one copy's `ContentIndexState`.
    pub fn set_content_index(&self, db: &str, server: &str, state: &str) -> anyhow::Result<()> {
        self.change(|st| {
            st.find(db, server)?.content_index_state = state.to_owned();
            Ok(())
        })
    }

    /// Sets one copy's `ErrorMessage`.
    pub fn set_error(&self, db: &str, server: &str, message: Option<&str>) -> anyhow::Result<()> {
        self.change(|st| {
            st.find(db, server)?.error_message = message.map(str::to_owned);
            Ok(())
        })
    }

    /// Sets every copy's `LastInspectedLogTime`.
    pub fn set_log_time(&self, t: DateTime<Utc>) -> anyhow::Result<()> {
        self.change(|st| {
            for c in &mut st.copies {
                c.last_inspected_log_time = Some(t);
            }
            Ok(())
        })
    }

    /// The copy status JSON in `shape`.
    pub fn render(&self, shape: Shape) -> String {
        self.lock().rendered(shape)
    }

    /// Writes the JSON in `shape` to `path` once.
    pub fn write(&self, path: &Path, shape: Shape) -> anyhow::Result<()> {
        write_atomically(path, &self.render(shape))
    }

    /// A collector command (`["cat", FILE]`) printing the copies in `shape`. The file
    /// (`dir/copystatus-SHAPE.json`) is rewritten atomically on every later change, so the
    /// command always prints the current state.
    pub fn as_command(&self, shape: Shape, dir: &Path) -> anyhow::Result<Vec<String>> {
        let path = dir.join(format!("copystatus-{}.json", shape.name()));
        let mut st = self.lock();
        write_atomically(&path, &st.rendered(shape))?;
        if !st.files.iter().any(|(p, _)| p == &path) {
            st.files.push((path.clone(), shape));
        }
        Ok(vec!["cat".into(), path.display().to_string()])
    }

    /// Serves `GET /copystatus?shape=ps7|ps7-unwrapped|ps51|bare-integer` (default `ps7`) on a
    /// random loopback port until the emulator is dropped, and returns the address.
    pub async fn serve(&self) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the DAG emulator")?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/copystatus", axum::routing::get(copy_status))
            .with_state(self.state.clone());
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::debug!("DAG emulator server: {e}");
            }
        });
        Ok(addr)
    }
}

/// Query of `GET /copystatus`.
#[derive(Debug, serde::Deserialize)]
struct CopyStatusQuery {
    /// A [`Shape::name`].
    shape: Option<String>,
}

async fn copy_status(
    State(state): State<Arc<Mutex<DagState>>>,
    Query(q): Query<CopyStatusQuery>,
) -> axum::response::Response {
    let name = q.shape.as_deref().unwrap_or("ps7");
    let Some(shape) = Shape::from_name(name) else {
        let names: Vec<&str> = Shape::ALL.iter().map(|s| s.name()).collect();
        return (
            StatusCode::BAD_REQUEST,
            format!("unknown shape {name:?}; use one of {names:?}"),
        )
            .into_response();
    };
    let body = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .rendered(shape);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests;
