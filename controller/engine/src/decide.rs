//! Turning plans into commands: namespace evaluation, ticks, overrides, provider and leadership.
//!
//! `evaluate` plans the namespaces whose plan may have changed (see `replan` for which, and
//! `namespace::plan` for the rules) and, for each, issues a `SetRecord` when the target must
//! change, audits every new decision with its evidence, and raises or clears the namespace's
//! alert once per condition. Provider reports move a pending
//! change to applied (or drop it on failure, to be retried on the next tick); leadership changes
//! switch between acting and recording what would have been done.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sitewarden_contract::{DnsName, SiteId};

use super::command::{Alert, AlertKind, Audit, AuditEvent, Command, SetRecord, Severity};
use super::evidence::{Evidence, Rule, SiteEvidence};
use super::explain::site_evidence;
use super::input::{LeadershipChange, OverrideAction, OverrideRequest};
use super::namespace::{Decision, NamespaceState, Pending, Plan, World, plan};
use super::overrides::Effect;
use super::replan::due_at;
use super::verdict::Verdict;
use super::{Engine, State};
use crate::config::NamespaceConfig;

/// The evidence built during one evaluation: each site's once, and each set of sites (the
/// sites a name needs) once, shared by every decision that needs it.
#[derive(Default)]
struct EvidenceCache<'c> {
    per_site: BTreeMap<SiteId, Arc<SiteEvidence>>,
    per_set: BTreeMap<Vec<&'c SiteId>, Arc<BTreeMap<SiteId, Arc<SiteEvidence>>>>,
}

impl Engine {
    /// Plans the namespaces whose plan may have changed (see `replan`) and emits commands;
    /// returns the rule chosen for `manual_failback`.
    pub(super) fn evaluate(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        manual_failback: Option<&str>,
        out: &mut Vec<Command>,
    ) -> Option<Rule> {
        let shared = self.shared(state, now);
        if let Some(name) = manual_failback {
            state.replan.name(name);
        }
        let scope = self.scope(state, now, &shared);
        // Each site's evidence as of now, built once for every decision of this evaluation.
        let mut evidence = EvidenceCache::default();
        let mut manual_rule = None;
        for name in scope {
            let Some(cfg) = self.config.namespaces.get(name) else {
                continue;
            };
            let Some(ns) = state.namespaces.get(name) else {
                continue;
            };
            let manual = manual_failback == Some(name.as_str());
            let world = World {
                config: &self.config,
                sites: &state.sites,
                overrides: &state.overrides,
                dags: &state.dags,
                partitions: &shared.partitions,
                now,
                startup: shared.startup,
                settling: shared.settling,
            };
            let plan = plan(name, cfg, ns, &world, manual);
            if manual {
                manual_rule = Some(plan.rule);
            }
            let plan = held_back(plan, ns.retry.as_ref(), now);
            match Speech::of(ns, &plan) {
                Some(speech) => {
                    self.apply_plan(state, now, (name, cfg), plan, speech, &mut evidence, out)
                }
                // Nothing to say; the name may have been due, so when is it due next?
                None => state.replan.schedule(name, due_at(cfg, ns, now)),
            }
        }
        state.replan.shared = Some(shared);
        manual_rule
    }

    /// The evidence of the sites `cfg`'s targets need, from `cache` (filled as needed).
    fn evidence_sites<'c>(
        &'c self,
        cfg: &'c NamespaceConfig,
        state: &State,
        now: DateTime<Utc>,
        cache: &mut EvidenceCache<'c>,
    ) -> Arc<BTreeMap<SiteId, Arc<SiteEvidence>>> {
        let needed = super::namespace_sites(cfg);
        if let Some(sites) = cache.per_set.get(&needed) {
            return Arc::clone(sites);
        }
        let mut sites = BTreeMap::new();
        for site in needed.iter().copied() {
            if sites.contains_key(site) {
                continue;
            }
            let ev = match cache.per_site.get(site) {
                Some(ev) => Arc::clone(ev),
                None => {
                    let ev = Arc::new(site_evidence(
                        &self.config,
                        state,
                        site,
                        now,
                        self.stale_after,
                        false,
                    ));
                    cache.per_site.insert(site.clone(), Arc::clone(&ev));
                    ev
                }
            };
            sites.insert(site.clone(), ev);
        }
        let sites = Arc::new(sites);
        cache.per_set.insert(needed, Arc::clone(&sites));
        sites
    }

    /// Turns a plan that speaks into commands and the namespace's new state.
    #[allow(clippy::too_many_arguments)]
    fn apply_plan<'c>(
        &'c self,
        state: &mut State,
        now: DateTime<Utc>,
        (name, cfg): (&DnsName, &'c NamespaceConfig),
        plan: Plan,
        speech: Speech,
        cache: &mut EvidenceCache<'c>,
        out: &mut Vec<Command>,
    ) {
        let Speech {
            from,
            to,
            new_decision,
            alert_changed,
        } = speech;
        let evidence = Evidence {
            rule: plan.rule,
            at: now,
            note: plan.note.clone(),
            sites: self.evidence_sites(cfg, state, now, cache),
            failback_eligible_at: plan.failback_eligible_at,
        };
        if let Some(target) = &plan.to {
            state.generation = state.generation.next();
            let generation = state.generation;
            out.push(Command::Alert(Alert {
                severity: Severity::Info,
                kind: AlertKind::DnsDecided,
                subject: name.to_string(),
                text: format!(
                    "{name}: moving from {} to {target} ({}; generation {generation}, epoch {})",
                    from.as_deref().unwrap_or("nothing"),
                    plan.rule.word(),
                    state.leadership.epoch
                ),
                evidence: Some(evidence.clone()),
            }));
            out.push(Command::SetRecord(SetRecord {
                namespace: name.clone(),
                target: target.clone(),
                ttl_secs: cfg.ttl.as_secs(),
                reason: plan.rule,
                generation,
                epoch: state.leadership.epoch,
                evidence: evidence.clone(),
            }));
        }
        let leader = state.leadership.is_leader;
        let Some(ns) = state.namespaces.get_mut(name) else {
            return;
        };
        if plan.to.is_some() {
            // The next evaluation plans from the new target (and says why the name stays).
            state.replan.mark(name);
        }
        if let Some(target) = &plan.to {
            ns.last_change_at = Some(now);
            if leader {
                ns.pending = Some(Pending {
                    target: target.clone(),
                    generation: state.generation,
                    issued_at: now,
                });
            } else {
                // The standby assumes the leader did the same; provider reports correct it.
                ns.current = Some(target.clone());
                ns.pending = None;
            }
        }
        if alert_changed {
            match &plan.alert {
                Some(a) => out.push(Command::Alert(Alert {
                    severity: a.severity,
                    kind: a.kind,
                    subject: name.to_string(),
                    text: format!("{name}: {}", plan.note),
                    evidence: Some(evidence.clone()),
                })),
                None if ns.alert.is_some() => out.push(Command::Alert(Alert {
                    severity: Severity::Info,
                    kind: AlertKind::Resolved,
                    subject: name.to_string(),
                    text: format!("{name}: resolved; {}", plan.note),
                    evidence: Some(evidence.clone()),
                })),
                None => {}
            }
            ns.alert = plan.alert.as_ref().map(|_| plan.rule);
        }
        if new_decision {
            out.push(Command::Audit(Audit {
                at: now,
                event: AuditEvent::Decision {
                    namespace: name.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    evidence: evidence.clone(),
                },
            }));
            let decision = Decision { from, to, evidence };
            if plan.to.is_some() {
                ns.last_change = Some(decision.clone());
            }
            ns.decision = Some(decision);
        }
        state.replan.schedule(name, due_at(cfg, ns, now));
    }

    pub(super) fn on_tick(&self, state: &mut State, now: DateTime<Utc>, out: &mut Vec<Command>) {
        state.replan.expiring(&state.overrides, now);
        let (expired, undrained) = state.overrides.expire(now);
        for what in expired {
            out.push(Command::Audit(Audit {
                at: now,
                event: AuditEvent::OverrideExpired { what },
            }));
        }
        for site in undrained {
            if let Some(s) = state.sites.get_mut(&site) {
                s.undrained_at = Some(now);
            }
        }
        self.tick_health(state, now, out);
        self.evaluate(state, now, None, out);
    }

    pub(super) fn on_override(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        req: &OverrideRequest,
        out: &mut Vec<Command>,
    ) {
        let danger = self.unsafe_override(state, req);
        let checked = match &danger {
            Some(danger) if !req.force => Err(format!(
                "{danger}; nothing was changed. To do it anyway, repeat it with --force (API: \"force\": true)"
            )),
            _ => state.overrides.apply(&self.config, req, now),
        };
        if let (Ok(_), Some(danger)) = (&checked, danger) {
            let subject = match &req.action {
                OverrideAction::Drain { site, .. } => site.to_string(),
                a => a.namespace().unwrap_or_default().to_owned(),
            };
            out.push(Command::Alert(Alert {
                severity: Severity::Warning,
                kind: AlertKind::OverrideTargetDown,
                subject,
                text: format!("FORCED by {} ({}): {danger}", req.who, req.why),
                evidence: None,
            }));
        }
        let effect = match checked {
            Ok(e) => e,
            Err(reason) => {
                out.push(Command::Audit(Audit {
                    at: now,
                    event: AuditEvent::OverrideRejected {
                        request: req.clone(),
                        reason,
                    },
                }));
                return;
            }
        };
        if let Effect::Undrained(site) = &effect
            && let Some(s) = state.sites.get_mut(site)
        {
            s.undrained_at = Some(now);
        }
        state.replan.override_action(&req.action);
        // An operator acting on a name hands it back to sitewarden: what the record holds now
        // becomes the starting point, and a failed change may be tried at once.
        if let Some(name) = req.action.namespace()
            && let Some(ns) = state.namespaces.get_mut(name)
        {
            if ns.drift.take().is_some()
                && let Some((Some(content), Some(g))) = ns.seen.clone()
            {
                ns.written = Some((g, content));
            }
            if let Some(r) = ns.retry.as_mut() {
                r.not_before = now;
            }
        }
        let manual = match &effect {
            Effect::Failback(ns) => Some(ns.as_str()),
            _ => None,
        };
        let mut planned = Vec::new();
        let rule = self.evaluate(state, now, manual, &mut planned);
        if manual.is_some() && rule != Some(Rule::ManualFailback) {
            let reason = format!(
                "nothing to fail back to (rule {:?}): the name is already on its most preferred Up candidate, or that candidate is not Up, or an override holds it",
                rule.unwrap_or(Rule::Steady)
            );
            out.push(Command::Audit(Audit {
                at: now,
                event: AuditEvent::OverrideRejected {
                    request: req.clone(),
                    reason,
                },
            }));
        } else {
            out.push(Command::Audit(Audit {
                at: now,
                event: AuditEvent::Override(req.clone()),
            }));
        }
        out.extend(planned);
    }

    /// Why `req` would point a name at a target whose sites are not all serving and
    /// undrained, if it would: a pin to such a target, or a drain that leaves a name served from
    /// the drained site with no other such target. `None` when it is safe (AWS ARC's rule:
    /// refuse a change that leaves clients on a dead site unless told to).
    fn unsafe_override(&self, state: &State, req: &OverrideRequest) -> Option<String> {
        let not_serving = |site: &SiteId, drained: Option<&SiteId>| -> Option<String> {
            let verdict = state
                .sites
                .get(site)
                .map_or(Verdict::Unknown, |s| s.verdict);
            if drained == Some(site) || state.overrides.is_drained(site) {
                Some(format!("{site} is drained"))
            } else if !verdict.is_serving() {
                Some(format!("{site} is {verdict}"))
            } else {
                None
            }
        };
        match &req.action {
            OverrideAction::Pin {
                namespace, target, ..
            } => {
                let cfg = self.config.namespaces.get(namespace)?;
                let sites = cfg.sites_of(target)?;
                let why: Vec<String> = sites.iter().filter_map(|s| not_serving(s, None)).collect();
                (!why.is_empty()).then(|| {
                    format!(
                        "pinning {namespace} to {target} would send its clients to a site that is not Up: {}",
                        why.join(", ")
                    )
                })
            }
            OverrideAction::Drain { site, .. } => {
                // Only names whose targets need the site can stand on it.
                let stranded: Vec<&str> = self
                    .dependents
                    .of_site(site)
                    .iter()
                    .filter_map(|name| self.config.namespaces.get_key_value(name))
                    .filter(|(name, cfg)| {
                        let current = state.namespaces.get(*name).and_then(|n| n.current.as_ref());
                        let on_site = current
                            .and_then(|c| cfg.sites_of(c))
                            .is_some_and(|s| s.contains(site));
                        on_site
                            && !cfg.targets().iter().any(|t| {
                                cfg.sites_of(t).is_some_and(|need| {
                                    need.iter().all(|s| not_serving(s, Some(site)).is_none())
                                })
                            })
                    })
                    .map(|(name, _)| name.as_str())
                    .collect();
                (!stranded.is_empty()).then(|| {
                    format!(
                        "draining {site} would leave {} with nowhere to go: none of their other targets has every site it needs Up and undrained",
                        stranded.join(", ")
                    )
                })
            }
            _ => None,
        }
    }

    pub(super) fn on_leadership(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        l: LeadershipChange,
        out: &mut Vec<Command>,
    ) {
        let was = state.leadership.is_leader;
        self.leadership_alert(state, now, was, l, out);
        state.leadership = super::state::Leadership {
            is_leader: l.is_leader,
            epoch: l.epoch,
        };
        out.push(Command::Audit(Audit {
            at: now,
            event: AuditEvent::Leadership {
                is_leader: l.is_leader,
                epoch: l.epoch,
            },
        }));
        if was && !l.is_leader {
            // The new leader completes or supersedes what we left pending.
            for (name, ns) in state.namespaces.iter_mut() {
                if ns.pending.take().is_some() {
                    state.replan.names.insert(name.clone());
                }
            }
        }
    }
}

/// What a plan says beyond what the namespace's latest decision already says, if anything.
struct Speech {
    /// Where the name points (or is about to) before the plan.
    from: Option<DnsName>,
    /// Where it points after.
    to: Option<DnsName>,
    /// The rule, target or failback time differ from the latest decision, or the record moves.
    new_decision: bool,
    /// The condition to alert on differs from the one alerted.
    alert_changed: bool,
}

impl Speech {
    fn of(ns: &NamespaceState, plan: &Plan) -> Option<Self> {
        let from = ns.effective();
        let to = plan.to.as_ref().or(from);
        let new_decision = ns.decision.as_ref().is_none_or(|d| {
            d.evidence.rule != plan.rule
                || d.to.as_ref() != to
                || plan.to.is_some()
                || d.evidence.failback_eligible_at != plan.failback_eligible_at
        });
        let alert_changed = ns.alert != plan.alert.as_ref().map(|_| plan.rule);
        (new_decision || alert_changed).then(|| Speech {
            from: from.cloned(),
            to: to.cloned(),
            new_decision,
            alert_changed,
        })
    }
}

/// A change the retry schedule holds back waits: the plan becomes "stay", and the decision
/// says until when.
fn held_back(plan: Plan, retry: Option<&crate::retry::Retry>, now: DateTime<Utc>) -> Plan {
    match (&plan.to, retry) {
        (Some(to), Some(r)) if r.holds(to, now) => super::namespace::stay(
            Rule::RetryWait,
            format!(
                "{}: moving to {to} failed {} time{} ({}: {}); next attempt at {}",
                plan.note,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.class.word(),
                r.error,
                r.not_before
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        _ => plan,
    }
}
