//! The bound model: a namespace that follows the site where a DAG's mailboxes are active.
//!
//! The name points at the target of the DAG's active site, but only once that site's client
//! access is Up (and not falling or drained). If the current site is down the move is an
//! emergency; otherwise it waits for the hold-down. An unknown or stale DAG, or an active site
//! that is not Up, fails static with an alert. Failback settings do not apply: the DAG decides.

use std::collections::BTreeMap;

use sitewarden_contract::{DnsName, SiteId};

use super::command::{AlertKind, Severity};
use super::evidence::Rule;
use super::namespace::{NamespaceState, Plan, World, alerting, change, hold_down_over, stay};
use crate::config::NamespaceConfig;

/// Plans a `follow = "mailbox"` namespace.
pub(super) fn follow(
    name: &str,
    cfg: &NamespaceConfig,
    ns: &NamespaceState,
    w: &World<'_>,
    dag: &str,
    targets: &BTreeMap<SiteId, DnsName>,
) -> Plan {
    let active = w.dags.get(dag).and_then(|d| d.active_site.as_ref());
    let active_target = active.and_then(|a| targets.get(a).map(|t| (a, t)));
    let Some(cur) = ns.effective() else {
        return super::namespace::unread(name, w);
    };
    let Some(cur_site) = targets.iter().find(|(_, t)| *t == cur).map(|(s, _)| s) else {
        return alerting(
            Rule::Drift,
            Severity::Warning,
            AlertKind::Drift,
            format!("the record holds {cur}, which is not a target; observed, not fought"),
        );
    };
    let cur_down = w.down(cur_site);
    let Some((a, t)) = active_target else {
        let sev = if cur_down {
            Severity::Critical
        } else {
            Severity::Warning
        };
        return alerting(
            Rule::FollowDagUnknown,
            sev,
            AlertKind::FailStatic,
            format!("{dag}'s active site is unknown (stale or no target); staying on {cur}"),
        );
    };
    if a == cur_site {
        return if cur_down {
            alerting(
                Rule::FollowTargetNotUp,
                Severity::Critical,
                AlertKind::FailStatic,
                format!("{dag} is active in {a}, whose client access is Down; waiting for the DAG"),
            )
        } else {
            stay(
                Rule::Steady,
                format!("{dag} is active in {a} and {cur} points there"),
            )
        };
    }
    if !w.destination(a) {
        return alerting(
            Rule::FollowTargetNotUp,
            Severity::Warning,
            AlertKind::FailStatic,
            format!("{dag} is active in {a}, whose client access is not Up; staying on {cur}"),
        );
    }
    if cur_down && let Some(until) = w.settling {
        return stay(
            Rule::AwaitingVerdicts,
            format!(
                "every site was Down a moment ago; {cur} stays until {} while the sites report their recovery",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        );
    }
    if cur_down {
        if let Some(h) = w.overrides.drains.get(cur_site) {
            return change(
                Rule::Drained,
                t,
                format!(
                    "{cur} is in {cur_site}, drained by {} ({}); {dag} is active in {a}, which is Up",
                    h.who, h.why
                ),
            );
        }
        return change(
            Rule::MoveAwayFromDown,
            t,
            format!("{cur} is in Down site {cur_site}; {dag} is active in {a}, which is Up"),
        );
    }
    if !hold_down_over(ns, cfg, w.now) {
        return stay(
            Rule::HoldDown,
            format!("{dag} is active in {a} but the last change is within hold_down"),
        );
    }
    change(
        Rule::FollowMailbox,
        t,
        format!("{dag} is active in {a}, which is Up"),
    )
}
