//! A mass move says itself in a few alerts, not one per name.
//!
//! When one step decides to move more than [`FOLD_AT`] names, their `dns_decided` alerts are
//! folded into one per (from, to, rule): "moving 10,000 names from rr0 to b0 (move away from
//! down): m0, m1, m2, m3, m4 and 9,995 more". The names form the step's *mass move*. Until every
//! name of it has settled (its change applied, overtaken, or failed in a way only a human can
//! fix: nothing pending, no retry of its own scheduled — a rate limit waited out is still under
//! way, and the retries are not announced again), the
//! per-name `dns_applied`, `apply_failed` and `resolved` alerts of those names are folded too —
//! each is still in the audit trail as the applier's settlement — and the first failure raises
//! one alert for the lot. When the last name settles, one alert says how it ended: how many were
//! applied and verified in how long, and which were not, with the first failure's fix. A name that
//! failed stays alerted once (its condition is noted), so its retries do not alert again; its
//! next failure of another kind alerts on its own. `sitewarden status` lists the names still
//! pending at any moment.
//!
//! Pure and post-processing: the rules that decide each alert are untouched, only how many
//! messages carry them changes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::DnsName;

use super::command::{Alert, AlertKind, Command, Severity};
use super::evidence::Rule;
use super::{Engine, State};

/// More `dns_decided` alerts than this in one step are folded into a mass move.
pub const FOLD_AT: usize = 10;

/// Names listed by name in a folded alert; the rest are counted.
const LISTED: usize = 5;

/// The subject of a mass move's alerts.
pub const MASS_SUBJECT: &str = "dns-mass-move";

/// A mass move in progress (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassMove {
    /// When it was decided.
    pub started: Option<DateTime<Utc>>,
    /// Every name of it.
    pub names: BTreeSet<DnsName>,
    /// Names whose change has not settled (applied or failed) since it was last issued.
    pub unsettled: BTreeSet<DnsName>,
    /// Names whose change was applied and verified.
    pub applied: usize,
    /// Names whose change failed, with the first failure's text.
    pub failed: BTreeMap<DnsName, String>,
    /// Whether the alert about its first failure is out.
    pub failure_alerted: bool,
}

impl Engine {
    /// Folds the alerts of a mass move in `out` (see the module docs). On a `tick`, names whose
    /// change ended without an alert (overtaken, or found in place) count as settled too.
    pub(super) fn fold_alerts(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        tick: bool,
        out: &mut Vec<Command>,
    ) {
        if !state.leadership.is_leader {
            // A standby moves nothing; a deposed leader's mass move is its successor's now.
            state.mass = None;
            return;
        }
        let decided = out
            .iter()
            .filter(|c| matches!(c, Command::Alert(a) if a.kind == AlertKind::DnsDecided))
            .count();
        if decided > FOLD_AT {
            fold_decisions(state, now, out);
        }
        let namespaces = &state.namespaces;
        let Some(mass) = state.mass.as_mut() else {
            return;
        };
        for c in out.iter() {
            if let Command::SetRecord(set) = c
                && mass.names.contains(&set.namespace)
            {
                mass.unsettled.insert(set.namespace.clone());
            }
        }
        let mut first_failure = None;
        out.retain(|c| {
            let Command::Alert(a) = c else {
                return true;
            };
            // A name's alerts carry it as their subject, as the engine writes names.
            let Some(name) = mass.names.get(a.subject.as_str()).cloned() else {
                return true;
            };
            match a.kind {
                AlertKind::DnsApplied => {
                    mass.applied += 1;
                    mass.failed.remove(&name);
                    mass.unsettled.remove(&name);
                    false
                }
                AlertKind::ApplyFailed => {
                    // A change the schedule will try again is still under way.
                    if !namespaces.get(&name).is_some_and(retrying) {
                        mass.unsettled.remove(&name);
                    }
                    if !mass.failure_alerted && first_failure.is_none() {
                        first_failure = Some(a.clone());
                    }
                    mass.failed.entry(name).or_insert_with(|| a.text.clone());
                    false
                }
                AlertKind::Resolved | AlertKind::DnsDecided => false,
                _ => true,
            }
        });
        if let Some(first) = first_failure {
            mass.failure_alerted = true;
            out.push(Command::Alert(Alert {
                severity: Severity::Warning,
                kind: AlertKind::ApplyFailed,
                subject: MASS_SUBJECT.to_owned(),
                text: format!(
                    "mass move of {} names: changes are failing, the first: {}; retried by the schedule, `sitewarden status` lists the names still pending",
                    mass.names.len(),
                    first.text
                ),
                evidence: first.evidence,
            }));
        }
        if tick {
            mass.unsettled.retain(|n| {
                namespaces
                    .get(n)
                    .is_some_and(|ns| ns.pending.is_some() || retrying(ns))
            });
        }
        let settled = mass.unsettled.is_empty();
        if settled && let Some(mass) = state.mass.take() {
            out.push(Command::Alert(ended(&mass, now)));
        }
    }
}

/// What a group of a mass move has in common: where from, where to, by which rule.
type Move = (String, DnsName, Rule);

/// Replaces the step's `dns_decided` alerts by one per (from, to, rule) and opens (or widens)
/// the mass move. Linear in the step's commands: each group keeps the first of its names'
/// alerts (for its evidence), found by name.
fn fold_decisions(state: &mut State, now: DateTime<Utc>, out: &mut Vec<Command>) {
    // Each group's index in `names` and `firsts`, in the order the alerts go out.
    let mut groups: BTreeMap<Move, usize> = BTreeMap::new();
    let mut names: Vec<Vec<DnsName>> = Vec::new();
    for c in out.iter() {
        let Command::SetRecord(set) = c else {
            continue;
        };
        let from = state
            .namespaces
            .get(&set.namespace)
            .and_then(|ns| ns.current.as_ref())
            .map_or_else(|| "nothing".to_owned(), DnsName::to_string);
        let i = *groups
            .entry((from, set.target.clone(), set.reason))
            .or_insert_with(|| {
                names.push(Vec::new());
                names.len() - 1
            });
        if let Some(group) = names.get_mut(i) {
            group.push(set.namespace.clone());
        }
    }
    let group_of: std::collections::HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .flat_map(|(i, group)| group.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let mut firsts: Vec<Option<Alert>> = vec![None; names.len()];
    let mut missing = names.len();
    out.retain(|c| match c {
        Command::Alert(a) if a.kind == AlertKind::DnsDecided => {
            if missing > 0
                && let Some(first) = group_of
                    .get(a.subject.as_str())
                    .and_then(|i| firsts.get_mut(*i))
                && first.is_none()
            {
                *first = Some(a.clone());
                missing -= 1;
            }
            false
        }
        _ => true,
    });
    drop(group_of);
    let mass = state.mass.get_or_insert_with(|| MassMove {
        started: Some(now),
        ..MassMove::default()
    });
    for ((from, to, rule), i) in groups {
        let (Some(group), Some(first)) = (names.get_mut(i), firsts.get_mut(i)) else {
            continue;
        };
        mass.unsettled.extend(group.iter().cloned());
        // A name already in the move is being retried: it was announced when it was decided.
        group.retain(|n| !mass.names.contains(n));
        if group.is_empty() {
            continue;
        }
        mass.names.extend(group.iter().cloned());
        out.push(Command::Alert(Alert {
            severity: Severity::Info,
            kind: AlertKind::DnsDecided,
            subject: MASS_SUBJECT.to_owned(),
            text: format!(
                "moving {} names from {from} to {to} ({}): {}",
                group.len(),
                rule.word(),
                listed(group)
            ),
            evidence: first.take().and_then(|a| a.evidence),
        }));
    }
}

/// Whether `ns`'s failed change waits for a retry the schedule will make on its own (not one
/// that needs a human first): a name of a mass move so waiting has not settled.
fn retrying(ns: &crate::namespace::NamespaceState) -> bool {
    ns.retry.as_ref().is_some_and(|r| !r.class.needs_human())
}

/// The alert that ends a mass move.
fn ended(mass: &MassMove, now: DateTime<Utc>) -> Alert {
    let took = mass
        .started
        .map(|s| (now - s).num_milliseconds() as f64 / 1000.0)
        .unwrap_or_default();
    let total = mass.names.len();
    if mass.failed.is_empty() {
        return Alert {
            severity: Severity::Info,
            kind: AlertKind::DnsApplied,
            subject: MASS_SUBJECT.to_owned(),
            text: format!("mass move done: all {total} names applied and verified in {took:.1} s"),
            evidence: None,
        };
    }
    let failed: Vec<DnsName> = mass.failed.keys().cloned().collect();
    let first = mass.failed.values().next().cloned().unwrap_or_default();
    Alert {
        severity: Severity::Warning,
        kind: AlertKind::ApplyFailed,
        subject: MASS_SUBJECT.to_owned(),
        text: format!(
            "mass move settled in {took:.1} s: {} of {total} names applied and verified, {} not: {}; the first: {first}",
            mass.applied,
            failed.len(),
            listed(&failed)
        ),
        evidence: None,
    }
}

/// The first names by name, the rest counted.
fn listed(names: &[DnsName]) -> String {
    let shown: Vec<String> = names.iter().take(LISTED).map(DnsName::to_string).collect();
    match names.len().saturating_sub(LISTED) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}
