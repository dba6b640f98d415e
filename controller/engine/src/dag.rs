//! Per DAG: where its mailboxes are active, from database-copy snapshots.
//!
//! The newest successful snapshot of a DAG wins. A database's active site is the site of the
//! server whose copy is `Mounted`; the DAG's active site is the site holding the most mounted
//! databases (a tie keeps the previous site, else the first by name). Copy health follows
//! Active Manager's criteria (activatable status, copy queue < 10, replay queue < 50, content
//! index healthy) and is kept for the edge and for `explain`. Sitewarden never moves databases;
//! it only follows them. A DAG whose newest good snapshot is older than `dbcopy_stale_after`
//! has no known active site, and names that follow it fail static.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::dbcopy::CopyStatus;
use sitewarden_contract::{CollectOutcome, DbCopySnapshot, SiteId};

use crate::config::DagConfig;

/// One database as the newest snapshot showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseState {
    /// Server holding the mounted copy, if any.
    pub mounted_on: Option<String>,
    /// That server's site, if configured.
    pub active_site: Option<SiteId>,
    /// Passive copies Active Manager could activate.
    pub activatable_copies: u32,
    /// Activatable copies that are also "good" (short queues, healthy index).
    pub good_copies: u32,
}

/// A DAG's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagState {
    /// The site holding most mounted databases (`None`: unknown or stale).
    pub active_site: Option<SiteId>,
    /// When `active_site` took its value.
    pub since: Option<DateTime<Utc>>,
    /// `observed_at` of the newest successful snapshot.
    pub last_good_at: Option<DateTime<Utc>>,
    /// The latest collector error, cleared by a successful snapshot.
    pub last_error: Option<String>,
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseState>,
    /// Copy problems last alerted (see [`crate::trouble`]).
    #[serde(default)]
    pub trouble: std::collections::BTreeSet<String>,
    /// Databases by the site they are mounted in, when they are mounted in more than one site
    /// (a split DAG: clients of the minority databases cross sites); empty otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub split: BTreeMap<SiteId, Vec<String>>,
}

impl DagState {
    /// The split in words, e.g. `site1 (DB01), site2 (DB02)`.
    pub fn split_text(&self) -> String {
        self.split
            .iter()
            .map(|(s, dbs)| format!("{s} ({})", dbs.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Folds a snapshot into `dag`; returns whether the active site changed.
pub fn absorb(
    cfg: &DagConfig,
    dag: &mut DagState,
    snap: &DbCopySnapshot,
    now: DateTime<Utc>,
) -> bool {
    if snap.outcome == CollectOutcome::Error {
        dag.last_error = snap
            .error
            .clone()
            .or_else(|| Some("collector failed".to_owned()));
        return false;
    }
    if dag.last_good_at.is_some_and(|t| t > snap.observed_at) {
        return false;
    }
    dag.last_good_at = Some(snap.observed_at);
    dag.last_error = None;
    let mut databases: BTreeMap<String, DatabaseState> = BTreeMap::new();
    for copy in &snap.copies {
        let db = databases
            .entry(copy.database.clone())
            .or_insert(DatabaseState {
                mounted_on: None,
                active_site: None,
                activatable_copies: 0,
                good_copies: 0,
            });
        if copy.status == CopyStatus::Mounted {
            db.mounted_on = Some(copy.server.clone());
            db.active_site = cfg.servers.get(&copy.server.to_ascii_lowercase()).cloned();
        } else if copy.is_activatable() {
            db.activatable_copies += 1;
            if copy.is_good() {
                db.good_copies += 1;
            }
        }
    }
    let mut per_site: BTreeMap<&SiteId, usize> = BTreeMap::new();
    for db in databases.values() {
        if let Some(s) = &db.active_site {
            *per_site.entry(s).or_default() += 1;
        }
    }
    let best = per_site.values().copied().max().unwrap_or(0);
    let active = if best == 0 {
        None
    } else if dag
        .active_site
        .as_ref()
        .is_some_and(|prev| per_site.get(prev) == Some(&best))
    {
        dag.active_site.clone()
    } else {
        per_site
            .iter()
            .find(|(_, n)| **n == best)
            .map(|(s, _)| (*s).clone())
    };
    let mut by_site: BTreeMap<SiteId, Vec<String>> = BTreeMap::new();
    for (name, db) in &databases {
        if let Some(s) = &db.active_site {
            by_site.entry(s.clone()).or_default().push(name.clone());
        }
    }
    dag.split = if by_site.len() > 1 {
        by_site
    } else {
        BTreeMap::new()
    };
    dag.databases = databases;
    set_active(dag, active, now)
}

/// Forgets the active site of a DAG whose newest good snapshot is too old.
pub fn expire(dag: &mut DagState, now: DateTime<Utc>, stale_after: TimeDelta) -> bool {
    let stale = dag.last_good_at.is_none_or(|t| now - t > stale_after);
    stale && set_active(dag, None, now)
}

fn set_active(dag: &mut DagState, active: Option<SiteId>, now: DateTime<Utc>) -> bool {
    if dag.active_site == active {
        return false;
    }
    dag.active_site = active;
    dag.since = Some(now);
    true
}
