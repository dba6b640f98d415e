//! The pure rule: from an edge notification to the state each steered server should have.
//!
//! Servers of the DAG's active site are `ready`; every other server is the target's passive
//! state (`drain` or `maint`). When the notification does not name an active site for the DAG,
//! or names a site none of the backend's servers belong to, nothing changes (fail static):
//! draining every server of a backend would turn an unknown into an outage.

use std::collections::BTreeMap;

use sitewarden_shared::{EdgeNotification, SiteId};

use super::config::{HaproxyTarget, Passive};
use super::runtime_api::AdminState;

/// What to do with one backend for one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Set these servers to these states.
    Apply {
        /// The active site followed.
        site: SiteId,
        /// Server → wanted state, for every steered server.
        states: BTreeMap<String, AdminState>,
    },
    /// Change nothing, for this reason.
    FailStatic(String),
}

/// The plan for `target` under `n`.
pub fn plan(target: &HaproxyTarget, n: &EdgeNotification) -> Plan {
    let site = match n.active_sites.get(&target.dag) {
        None => {
            return Plan::FailStatic(format!(
                "the notification does not mention DAG {}",
                target.dag
            ));
        }
        Some(None) => {
            return Plan::FailStatic(format!(
                "DAG {}'s active site is unknown to the controller",
                target.dag
            ));
        }
        Some(Some(site)) => site,
    };
    if !target.servers.values().any(|s| s == site) {
        return Plan::FailStatic(format!(
            "DAG {} is active in {site}, but no server of backend {} belongs to {site}",
            target.dag, target.backend
        ));
    }
    let passive = match target.passive {
        Passive::Drain => AdminState::Drain,
        Passive::Maint => AdminState::Maint,
    };
    let states = target
        .servers
        .iter()
        .map(|(server, s)| {
            let state = if s == site {
                AdminState::Ready
            } else {
                passive
            };
            (server.clone(), state)
        })
        .collect();
    Plan::Apply {
        site: site.clone(),
        states,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn site(s: &str) -> SiteId {
        SiteId::new(s).unwrap()
    }

    fn target(passive: Passive) -> HaproxyTarget {
        HaproxyTarget {
            socket: PathBuf::from("/run/haproxy/admin.sock"),
            backend: "be".into(),
            dag: "DAG1".into(),
            servers: BTreeMap::from([
                ("a1".to_owned(), site("site1")),
                ("a2".to_owned(), site("site1")),
                ("b1".to_owned(), site("site2")),
            ]),
            passive,
        }
    }

    fn notice(active: Option<&str>) -> EdgeNotification {
        EdgeNotification {
            schema_version: 1,
            controller: "c".into(),
            epoch: 1,
            generation: 1,
            issued_at: "2026-03-02T09:15:07Z".parse().unwrap(),
            active_sites: BTreeMap::from([("DAG1".to_owned(), active.map(site))]),
            verdicts: BTreeMap::new(),
        }
    }

    #[test]
    fn the_active_site_is_ready_and_the_others_passive() {
        let Plan::Apply { site: s, states } = plan(&target(Passive::Drain), &notice(Some("site2")))
        else {
            panic!("expected a plan");
        };
        assert_eq!(s, site("site2"));
        assert_eq!(states["a1"], AdminState::Drain);
        assert_eq!(states["a2"], AdminState::Drain);
        assert_eq!(states["b1"], AdminState::Ready);
        let Plan::Apply { states, .. } = plan(&target(Passive::Maint), &notice(Some("site1")))
        else {
            panic!("expected a plan");
        };
        assert_eq!(states["b1"], AdminState::Maint);
        assert_eq!(states["a1"], AdminState::Ready);
    }

    #[test]
    fn unknown_missing_or_foreign_active_sites_change_nothing() {
        let t = target(Passive::Drain);
        assert!(matches!(plan(&t, &notice(None)), Plan::FailStatic(_)));
        assert!(matches!(
            plan(&t, &notice(Some("site3"))),
            Plan::FailStatic(why) if why.contains("no server of backend be")
        ));
        let mut other_dag = notice(Some("site1"));
        other_dag.active_sites = BTreeMap::from([("DAG2".to_owned(), Some(site("site1")))]);
        assert!(matches!(plan(&t, &other_dag), Plan::FailStatic(_)));
    }
}
