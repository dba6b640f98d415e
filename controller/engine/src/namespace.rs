//! Per namespace: where a managed name should point, by ordered candidates or by following a DAG.
//!
//! [`plan`] is a pure function of the namespace's configuration and state, the site verdicts,
//! the overrides and the DAGs. In order: a pin wins; a freeze stops everything automatic; all
//! sites Down or an inter-site partition fail static; a target that needs a Down (or drained)
//! site is left at once for the most preferred candidate whose sites are all Up; a target that
//! needs an Unknown site fails static; a more preferred candidate is taken back only after
//! `failback_after` of continuous Up (or by hand with `failback = "manual"`), and never sooner
//! than `hold_down` after the previous change. Bound names follow their DAG's active site when
//! that site is Up (see `follow`). The caller turns the plan into commands.

use crate::order::Generation;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::{DnsName, SiteId};

use super::command::{AlertKind, Severity};
use super::dag::DagState;
use super::evidence::{Evidence, Rule};
use super::overrides::Overrides;
use super::verdict::{SiteState, Verdict};
use crate::config::{ControllerConfig, FailbackMode, NamespaceConfig, Routing};

/// A `SetRecord` issued and not yet confirmed by the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The target asked for.
    pub target: DnsName,
    /// Its generation.
    pub generation: Generation,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// The latest decision about a namespace, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Where the name pointed (or was about to) before.
    pub from: Option<DnsName>,
    /// Where it points after.
    pub to: Option<DnsName>,
    /// The rule and the facts.
    pub evidence: Evidence,
}

/// A namespace's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceState {
    /// What the record holds, as last reported or applied (`None`: not known yet).
    pub current: Option<DnsName>,
    /// A change issued and not yet confirmed.
    pub pending: Option<Pending>,
    /// When the latest change was issued (automatic or manual); starts the hold-down.
    pub last_change_at: Option<DateTime<Utc>>,
    /// The latest decision (a move, or a new reason to stay).
    pub decision: Option<Decision>,
    /// The latest decision that changed the record.
    pub last_change: Option<Decision>,
    /// The rule whose alert is active, so each condition is alerted once.
    pub alert: Option<Rule>,
    /// The record carried our ownership marker when last reported (or we wrote it since).
    #[serde(default)]
    pub marked: bool,
    /// The provider reported that there is no record for the name.
    #[serde(default)]
    pub missing: bool,
    /// The record holds content sitewarden did not write: left alone until an operator acts.
    #[serde(default)]
    pub drift: Option<DriftSeen>,
    /// A failed change and when it may be tried again.
    #[serde(default)]
    pub retry: Option<super::retry::Retry>,
    /// The apply condition whose alert is out (`apply_failed`, `provider_auth`), so each is
    /// alerted once and resolved once.
    #[serde(default)]
    pub apply_alert: Option<String>,
    /// A `propagation_slow` alert is out for this name.
    #[serde(default)]
    pub propagation_slow: bool,
    /// The latest generation this engine saw applied, and the target it wrote.
    #[serde(default)]
    pub written: Option<(Generation, DnsName)>,
    /// The latest (content, marker generation) a provider reported, to tell news from repeats.
    #[serde(default)]
    pub seen: Option<(Option<DnsName>, Option<Generation>)>,
}

/// Content found in a record that sitewarden did not write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftSeen {
    /// What the record holds (`None`: the record was deleted).
    pub found: Option<DnsName>,
    /// When it was first seen.
    pub since: DateTime<Utc>,
    /// Why it counts as drift, in words.
    pub why: String,
}

impl NamespaceState {
    /// Where the name points or is about to point.
    pub fn effective(&self) -> Option<&DnsName> {
        self.pending
            .as_ref()
            .map(|p| &p.target)
            .or(self.current.as_ref())
    }
}

/// An alert a plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanAlert {
    /// How urgent.
    pub severity: Severity,
    /// What about.
    pub kind: AlertKind,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The rule that fired.
    pub rule: Rule,
    /// The new target, when the record must change.
    pub to: Option<DnsName>,
    /// A condition to alert on.
    pub alert: Option<PlanAlert>,
    /// One sentence.
    pub note: String,
    /// When failback becomes eligible (`failback_pending`): the time in the note, as data.
    pub failback_eligible_at: Option<DateTime<Utc>>,
}

/// A site a target needs that cannot be routed to now, and why: its verdict since when, or
/// the drain that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unroutable {
    /// The site.
    pub site: SiteId,
    /// Its verdict.
    pub verdict: Verdict,
    /// Since when it has had that verdict (`None`: never judged).
    pub since: Option<DateTime<Utc>>,
    /// Who drained it, when a drain holds it (the verdict may be Up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_by: Option<String>,
}

/// Every site of `required` that cannot be routed to now (not Up or Degraded, or drained), in
/// name order: what keeps a target needing them from being used.
pub fn unroutable(
    sites: &BTreeMap<SiteId, SiteState>,
    overrides: &Overrides,
    required: &BTreeSet<SiteId>,
) -> Vec<Unroutable> {
    required
        .iter()
        .filter_map(|s| {
            let st = sites.get(s);
            let verdict = st.map_or(Verdict::Unknown, |st| st.verdict);
            let drain = overrides.drains.get(s);
            (drain.is_some() || !verdict.is_serving()).then(|| Unroutable {
                site: s.clone(),
                verdict,
                since: st.and_then(|st| st.since),
                drained_by: drain.map(|h| h.who.clone()),
            })
        })
        .collect()
}

/// Everything outside the namespace that a plan reads.
pub struct World<'a> {
    /// The configuration.
    pub config: &'a ControllerConfig,
    /// Site verdicts.
    pub sites: &'a BTreeMap<SiteId, SiteState>,
    /// Overrides.
    pub overrides: &'a Overrides,
    /// DAGs.
    pub dags: &'a BTreeMap<String, DagState>,
    /// Site pairs that see each other Down while each sees itself Up.
    pub partitions: &'a BTreeSet<(SiteId, SiteId)>,
    /// Engine time.
    pub now: DateTime<Utc>,
    /// Inside the start-up grace: sites without a verdict are waited for without alerts.
    pub startup: bool,
    /// A total outage ended a moment ago: no move away from a Down site before this time.
    pub settling: Option<DateTime<Utc>>,
}

impl World<'_> {
    fn verdict(&self, site: &SiteId) -> Verdict {
        self.sites.get(site).map_or(Verdict::Unknown, |s| s.verdict)
    }

    /// Up or Degraded, and not drained.
    pub fn routable(&self, site: &SiteId) -> bool {
        self.verdict(site).is_serving() && !self.overrides.is_drained(site)
    }

    /// Routable and not falling: a site a name may be moved to.
    pub fn destination(&self, site: &SiteId) -> bool {
        self.routable(site) && !self.sites.get(site).is_some_and(|s| s.falling)
    }

    /// Down (and not rising), or drained: positive evidence a name may move away on.
    pub fn down(&self, site: &SiteId) -> bool {
        let rising = self.sites.get(site).is_some_and(|s| s.rising);
        (self.verdict(site) == Verdict::Down && !rising) || self.overrides.is_drained(site)
    }

    /// Why each of `sites` cannot be routed to now, with since when ("site1 Down since
    /// 2026-11-24T02:48:30Z", "site1 drained by alice"); and whether every reason is a drain.
    fn unavailable(&self, sites: &BTreeSet<SiteId>) -> (Vec<String>, bool) {
        let mut why = Vec::new();
        let mut all_drained = true;
        for u in unroutable(self.sites, self.overrides, sites) {
            let s = &u.site;
            if let Some(h) = self.overrides.drains.get(s) {
                why.push(format!("{s} drained by {} ({})", h.who, h.why));
                continue;
            }
            all_drained = false;
            let since = u
                .since
                .map(|t| {
                    format!(
                        " since {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                })
                .unwrap_or_default();
            why.push(format!("{s} {}{since}", u.verdict));
        }
        (why, all_drained && !sites.is_empty())
    }

    fn all_routable(&self, sites: &BTreeSet<SiteId>) -> bool {
        sites.iter().all(|s| self.routable(s))
    }

    fn all_destinations(&self, sites: &BTreeSet<SiteId>) -> bool {
        sites.iter().all(|s| self.destination(s))
    }

    fn any_down(&self, sites: &BTreeSet<SiteId>) -> bool {
        sites.iter().any(|s| self.down(s))
    }

    /// Latest start of continuous routability among `sites`.
    fn routable_since(&self, sites: &BTreeSet<SiteId>) -> Option<DateTime<Utc>> {
        let mut latest = None;
        for s in sites {
            let since = self.sites.get(s).and_then(SiteState::routable_since)?;
            latest = latest.max(Some(since));
        }
        latest
    }

    /// Whether every site with client access is Down.
    pub fn all_sites_down(&self) -> bool {
        let mut any = false;
        for (id, cfg) in &self.config.sites {
            if cfg.has_client_access() {
                any = true;
                if self.verdict(id) != Verdict::Down {
                    return false;
                }
            }
        }
        any
    }
}

pub(super) fn stay(rule: Rule, note: String) -> Plan {
    Plan {
        rule,
        to: None,
        alert: None,
        note,
        failback_eligible_at: None,
    }
}

pub(super) fn alerting(rule: Rule, severity: Severity, kind: AlertKind, note: String) -> Plan {
    Plan {
        rule,
        to: None,
        alert: Some(PlanAlert { severity, kind }),
        note,
        failback_eligible_at: None,
    }
}

/// During the start-up grace a plan's non-critical alert is held back: a site or DAG without a
/// verdict yet is start-up, not news. The rule and note stay, so explain says why.
pub(super) fn quiet_at_start(w: &World<'_>, mut plan: Plan) -> Plan {
    if w.startup
        && plan
            .alert
            .as_ref()
            .is_some_and(|a| a.severity != Severity::Critical)
    {
        plan.alert = None;
    }
    plan
}

pub(super) fn change(rule: Rule, to: &DnsName, note: String) -> Plan {
    Plan {
        rule,
        to: Some(to.clone()),
        alert: None,
        note,
        failback_eligible_at: None,
    }
}

pub(super) fn hold_down_over(
    ns: &NamespaceState,
    cfg: &NamespaceConfig,
    now: DateTime<Utc>,
) -> bool {
    let hold = TimeDelta::from_std(cfg.hold_down).unwrap_or(TimeDelta::MAX);
    ns.last_change_at.is_none_or(|t| now - t >= hold)
}

/// Decides where `name` should point now.
pub fn plan(
    name: &str,
    cfg: &NamespaceConfig,
    ns: &NamespaceState,
    w: &World<'_>,
    manual_failback: bool,
) -> Plan {
    let cur = ns.effective();
    if let Some(pin) = w.overrides.pins.get(name) {
        let sites = cfg.sites_of(&pin.target).unwrap_or_default();
        let forced = if pin.hold.forced {
            ", forced over the safety check"
        } else {
            ""
        };
        let note = format!(
            "pinned to {} by {} ({}){forced}",
            pin.target, pin.hold.who, pin.hold.why
        );
        let mut p = if cur == Some(&pin.target) {
            stay(Rule::Pinned, note)
        } else {
            change(Rule::Pinned, &pin.target, note)
        };
        if w.any_down(&sites) {
            p.alert = Some(PlanAlert {
                severity: Severity::Warning,
                kind: AlertKind::OverrideTargetDown,
            });
        }
        return p;
    }
    if let Some(h) = w.overrides.freeze_of(name) {
        let note = format!("automatic changes frozen by {} ({})", h.who, h.why);
        let down = cur
            .and_then(|c| cfg.sites_of(c))
            .is_some_and(|s| w.any_down(&s));
        return if down {
            alerting(
                Rule::Frozen,
                Severity::Critical,
                AlertKind::OverrideTargetDown,
                format!("{note}; the target needs a Down site"),
            )
        } else {
            stay(Rule::Frozen, note)
        };
    }
    if let Some(p) = drift_or_missing(name, cfg, ns) {
        return p;
    }
    if w.all_sites_down() {
        return alerting(
            Rule::FailStaticAllDown,
            Severity::Critical,
            AlertKind::AllSitesDown,
            "every site is Down; the observers are the likelier fault, so nothing changes"
                .to_owned(),
        );
    }
    if let Some((a, b)) = w.partitions.iter().next() {
        return alerting(
            Rule::Partition,
            Severity::Warning,
            AlertKind::Partition,
            format!("{a} and {b} see each other Down while each sees itself Up; no change"),
        );
    }
    match &cfg.routing {
        Routing::Candidates(list) => candidates(name, cfg, ns, w, list, manual_failback),
        Routing::FollowMailbox { dag, targets } => {
            quiet_at_start(w, super::follow::follow(name, cfg, ns, w, dag, targets))
        }
    }
}

/// A record that is missing, or holds content sitewarden did not write, is left alone.
fn drift_or_missing(name: &str, cfg: &NamespaceConfig, ns: &NamespaceState) -> Option<Plan> {
    if ns.missing && ns.pending.is_none() {
        return Some(alerting(
            Rule::RecordMissing,
            Severity::Warning,
            AlertKind::FailStatic,
            super::input::FailureClass::Missing.fix(name),
        ));
    }
    let d = ns.drift.as_ref()?;
    if cfg.on_drift == crate::config::DriftPolicy::Enforce && ns.marked {
        // The name opted in to enforcement: the rules below put the preferred candidate back.
        return None;
    }
    Some(alerting(
        Rule::Drift,
        Severity::Warning,
        AlertKind::Drift,
        format!(
            "the record holds {}, which sitewarden did not write ({}); observed, not fought: pin, release or fail back {name} to hand it back to sitewarden",
            d.found.as_deref().unwrap_or("nothing"),
            d.why
        ),
    ))
}

/// A name whose record has not been read yet is not written: without its content the engine
/// cannot tell its own last write from a human's edit, nor whether a move is needed at all. The
/// runtime reads every record at start and at every reconcile; the name waits for that read,
/// quietly during the start-up grace and with a warning after it (the provider is not
/// answering reads).
pub(super) fn unread(name: &str, w: &World<'_>) -> Plan {
    let note =
        format!("the record of {name} has not been read yet; nothing is written before it is");
    if w.startup {
        stay(Rule::AwaitingRecord, note)
    } else {
        alerting(
            Rule::AwaitingRecord,
            Severity::Warning,
            AlertKind::FailStatic,
            format!(
                "{note}: the DNS provider is not answering reads (see the controller log and sitewarden_controller_dns_operation_duration_seconds_count{{operation=\"read\",result=\"error\"}})"
            ),
        )
    }
}

/// Waiting for `target` to have been Up for `failback_after`, which it will have at `eligible`.
fn failback_pending(target: &str, cur: &str, eligible: Option<DateTime<Utc>>) -> Plan {
    let words = eligible
        .map(|t| {
            format!(
                "; failback eligible at {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_default();
    Plan {
        failback_eligible_at: eligible,
        ..stay(
            Rule::FailbackPending,
            format!("{target} is Up but not yet for failback_after; staying on {cur}{words}"),
        )
    }
}

/// Staying on `cur`, the most preferred candidate that can serve: `Steady` when it is the
/// most preferred of all, else `FailedOver` (or `Drained`) naming what keeps the name off the
/// preferred target, since when.
fn standing(cur: &str, ci: usize, list: &[crate::config::Candidate], w: &World<'_>) -> Plan {
    let Some(top) = list.first().filter(|_| ci > 0) else {
        return stay(
            Rule::Steady,
            format!("{cur} is the most preferred Up candidate"),
        );
    };
    let (why, drained) = w.unavailable(&top.requires);
    let rule = if drained {
        Rule::Drained
    } else {
        Rule::FailedOver
    };
    let why = if why.is_empty() {
        "its sites are not all Up".to_owned()
    } else {
        why.join(", ")
    };
    stay(
        rule,
        format!(
            "on {cur} instead of {}: {why}; {cur} is the most preferred candidate that can serve",
            top.target
        ),
    )
}

fn candidates(
    name: &str,
    cfg: &NamespaceConfig,
    ns: &NamespaceState,
    w: &World<'_>,
    list: &[crate::config::Candidate],
    manual_failback: bool,
) -> Plan {
    let preferred = list.iter().position(|c| w.all_destinations(&c.requires));
    let Some(cur) = ns.effective() else {
        return unread(name, w);
    };
    let Some(ci) = list.iter().position(|c| &c.target == cur) else {
        if cfg.on_drift == crate::config::DriftPolicy::Enforce
            && ns.marked
            && let Some(p) = preferred.and_then(|p| list.get(p))
        {
            return change(
                Rule::Drift,
                &p.target,
                format!(
                    "the record holds {cur}, which is not a candidate, and still carries our marker; on_drift = \"enforce\" restores {}",
                    p.target
                ),
            );
        }
        return alerting(
            Rule::Drift,
            Severity::Warning,
            AlertKind::Drift,
            format!("the record holds {cur}, which is not a candidate; observed, not fought"),
        );
    };
    let cc = &list[ci];
    if w.any_down(&cc.requires)
        && let Some(until) = w.settling
    {
        return stay(
            Rule::AwaitingVerdicts,
            format!(
                "every site was Down a moment ago; {cur} stays until {} while the sites report their recovery",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        );
    }
    if w.any_down(&cc.requires) {
        // Say which site and why: a drain is the operator's, not an outage.
        let (why, drained) = w.unavailable(&cc.requires);
        let (rule, why) = if drained {
            (Rule::Drained, why.join(", "))
        } else {
            (Rule::MoveAwayFromDown, why.join(", "))
        };
        return match preferred.and_then(|p| list.get(p)) {
            Some(p) => change(
                rule,
                &p.target,
                format!(
                    "{cur} needs {why}; {} is the most preferred candidate that can serve",
                    p.target
                ),
            ),
            None => alerting(
                Rule::FailStaticNoCandidate,
                Severity::Critical,
                AlertKind::FailStatic,
                format!("{cur} needs a Down site and no candidate is Up"),
            ),
        };
    }
    if !w.all_routable(&cc.requires) {
        if w.startup {
            return stay(
                Rule::AwaitingVerdicts,
                format!("{cur} needs a site without a verdict yet; waiting (start-up)"),
            );
        }
        return alerting(
            Rule::FailStaticUnknown,
            Severity::Warning,
            AlertKind::FailStatic,
            format!("{cur} needs a site whose verdict is Unknown; failing static"),
        );
    }
    let Some(pi) = preferred.filter(|p| *p < ci) else {
        return standing(cur, ci, list, w);
    };
    let p = &list[pi];
    if manual_failback {
        return change(
            Rule::ManualFailback,
            &p.target,
            format!("operator asked to fail back to {}", p.target),
        );
    }
    if cfg.failback == FailbackMode::Manual {
        return alerting(
            Rule::FailbackManual,
            Severity::Info,
            AlertKind::FailbackAvailable,
            format!("{} is Up; failback is manual", p.target),
        );
    }
    let window = TimeDelta::from_std(cfg.failback_after).unwrap_or(TimeDelta::MAX);
    let since = w.routable_since(&p.requires);
    if since.is_none_or(|s| w.now - s < window) {
        return failback_pending(
            &p.target,
            cur,
            since.and_then(|s| s.checked_add_signed(window)),
        );
    }
    if !hold_down_over(ns, cfg, w.now) {
        return stay(
            Rule::HoldDown,
            format!(
                "{} is ready but the last change is within hold_down",
                p.target
            ),
        );
    }
    change(
        Rule::Failback,
        &p.target,
        format!("{} has been Up for failback_after; failing back", p.target),
    )
}
