//! What the engine hears back from the world it acts on: provider reports (what a record holds,
//! an apply's outcome, propagation, candidate checks), the bus and leadership, and the alerts each
//! condition raises — once when it starts, once (`Resolved`) when it clears.
//!
//! Ownership is judged here: a record sitewarden did not write — no marker (unless the name
//! adopts unmarked records), content that is not a target of the name, or content other than what
//! the marker's generation wrote — is drift, left alone until an operator acts. A failed change
//! gets its retry schedule from [`super::retry`]; the runtime never decides when to try again.

use crate::order::Generation;
use chrono::{DateTime, SecondsFormat, Utc};
use sitewarden_contract::DnsName;

use super::command::{
    Alert, AlertKind, Audit, AuditEvent, BUS_SUBJECT, Command, EVENTS_SUBJECT, Severity,
};
use super::input::{
    BusReport, CallStats, EVENTS_NEAR_CAP_PERCENT, FailureClass, LeadershipChange, ProviderReport,
    StreamFill,
};
use super::namespace::DriftSeen;
use super::{Engine, State};
use crate::config::UnmarkedPolicy;

/// Subject of alerts about the DNS provider account as a whole.
pub const PROVIDER_SUBJECT: &str = "dns-provider";

fn alert(kind: AlertKind, severity: Severity, subject: &str, text: String) -> Command {
    Command::Alert(Alert {
        severity,
        kind,
        subject: subject.to_owned(),
        text,
        evidence: None,
    })
}

fn resolved(subject: &str, text: String) -> Command {
    alert(AlertKind::Resolved, Severity::Info, subject, text)
}

fn secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Engine {
    pub(super) fn on_provider(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        report: &ProviderReport,
        out: &mut Vec<Command>,
    ) {
        out.push(Command::Audit(Audit {
            at: now,
            event: AuditEvent::Provider(report.clone()),
        }));
        match report {
            ProviderReport::Current {
                namespace,
                target,
                generation,
                written,
            } => {
                self.on_current(state, now, namespace, target, *generation, written, out);
            }
            ProviderReport::Applied {
                namespace,
                generation,
                calls,
            } => self.on_applied(state, namespace, *generation, *calls, out),
            ProviderReport::Failed {
                namespace,
                generation,
                error,
                class,
                calls,
            } => self.on_failed(
                state,
                now,
                namespace,
                *generation,
                error,
                *class,
                out,
                *calls,
            ),
            ProviderReport::Propagation {
                namespace,
                target,
                converged,
                elapsed_ms,
                laggards,
            } => {
                let name = namespace;
                let Some(ns) = state.namespaces.get_mut(name) else {
                    return;
                };
                if !converged && !ns.propagation_slow {
                    ns.propagation_slow = true;
                    out.push(alert(
                        AlertKind::PropagationSlow,
                        Severity::Warning,
                        name,
                        format!(
                            "{name} → {target} is not served by every authoritative server after {} s: {}",
                            elapsed_ms / 1000,
                            laggards.join("; ")
                        ),
                    ));
                } else if *converged && ns.propagation_slow {
                    ns.propagation_slow = false;
                    out.push(resolved(
                        name,
                        format!("{name} → {target}: every authoritative server answers it now"),
                    ));
                }
            }
            ProviderReport::TargetCheck { target, problem } => match problem {
                Some(p) if state.unresolvable.get(target) != Some(p) => {
                    state.unresolvable.insert(target.clone(), p.clone());
                    out.push(alert(
                            AlertKind::TargetUnresolvable,
                            Severity::Warning,
                            target,
                            format!(
                                "candidate target {target} does not resolve: {p}; a failover there would send clients nowhere"
                            ),
                        ));
                }
                None if state.unresolvable.remove(target).is_some() => {
                    out.push(resolved(
                        target,
                        format!("candidate target {target} resolves again"),
                    ));
                }
                _ => {}
            },
        }
    }

    /// Why the content a record holds is not sitewarden's, if it is not.
    fn not_ours(
        &self,
        name: &DnsName,
        target: &DnsName,
        generation: Option<Generation>,
        written: Option<&DnsName>,
        ns: &super::namespace::NamespaceState,
    ) -> Option<String> {
        let cfg = self.config.namespaces.get(name)?;
        if generation.is_none() && cfg.on_unmarked == UnmarkedPolicy::Observe {
            return Some(
                "it carries no sitewarden marker; set on_unmarked = \"adopt\" to let sitewarden take it over".to_owned(),
            );
        }
        if cfg.sites_of(target).is_none() {
            return Some("it is not one of the name's targets".to_owned());
        }
        // What the marker's generation wrote: our books, or what this engine last accepted as
        // ours for that generation (every sitewarden write carries a new generation, so the
        // same marker over new content is a hand edit).
        let mine = ns
            .written
            .as_ref()
            .filter(|(g, _)| Some(*g) == generation)
            .map(|(_, t)| t);
        if let (Some(g), Some((ours, _))) = (generation, ns.written.as_ref())
            && g < *ours
        {
            return Some(format!(
                "its marker says generation {g}, older than generation {ours} sitewarden applied: restored or edited by hand"
            ));
        }
        match (generation, written.or(mine)) {
            (Some(g), Some(w)) if w != target => Some(format!(
                "generation {g} wrote {w}, the marker was kept and the content changed by hand"
            )),
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_current(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        namespace: &DnsName,
        target: &Option<DnsName>,
        generation: Option<Generation>,
        written: &Option<DnsName>,
        out: &mut Vec<Command>,
    ) {
        if let Some(g) = generation {
            state.generation = state.generation.max(g);
        }
        let name = namespace;
        let target = target.clone();
        let Some(ns) = state.namespaces.get(name) else {
            return;
        };
        let why = target
            .as_ref()
            .and_then(|t| self.not_ours(name, t, generation, written.as_ref(), ns));
        state.replan.mark(name);
        let Some(ns) = state.namespaces.get_mut(name) else {
            return;
        };
        let seen = (target.clone(), generation);
        let news = ns.seen.as_ref() != Some(&seen);
        ns.seen = Some(seen);
        if ns
            .pending
            .as_ref()
            .is_some_and(|p| Some(&p.target) == target.as_ref())
        {
            ns.pending = None;
        }
        ns.missing = target.is_none();
        ns.drift = match why {
            Some(why) => match ns.drift.take() {
                Some(d) if d.found == target => Some(d),
                _ => Some(DriftSeen {
                    found: target.clone(),
                    since: now,
                    why,
                }),
            },
            None => None,
        };
        if ns.drift.is_none()
            && let (Some(g), Some(t)) = (generation, &target)
        {
            // Content accepted as ours for this marker: a later change of it under the same
            // marker is a hand edit.
            ns.written = Some((g, t.clone()));
        }
        ns.current = target;
        ns.marked = generation.is_some();
        // New evidence: what the record holds changed, so a held-back change may go now
        // (unless the whole provider account is blocked).
        if news
            && let Some(r) = ns.retry.as_mut()
            && !r.class.provider_wide()
        {
            r.not_before = r.not_before.min(now);
        }
        self.evaluate(state, now, None, out);
    }

    fn provider_calls(
        &self,
        state: &mut State,
        calls: CallStats,
        name: &str,
        out: &mut Vec<Command>,
    ) {
        if calls.retries > 0 && !state.provider_degraded {
            state.provider_degraded = true;
            out.push(alert(
                AlertKind::ProviderDegraded,
                Severity::Warning,
                PROVIDER_SUBJECT,
                format!(
                    "changing {name}, the DNS API needed {} retr{} ({} rate-limited) over {} calls",
                    calls.retries,
                    if calls.retries == 1 { "y" } else { "ies" },
                    calls.rate_limited,
                    calls.calls
                ),
            ));
        } else if calls.retries == 0 && calls.calls > 0 && state.provider_degraded {
            state.provider_degraded = false;
            out.push(resolved(
                PROVIDER_SUBJECT,
                format!("the DNS API answered changing {name} without retries again"),
            ));
        }
    }

    fn on_applied(
        &self,
        state: &mut State,
        namespace: &DnsName,
        generation: Generation,
        calls: CallStats,
        out: &mut Vec<Command>,
    ) {
        let name = namespace;
        let Some(ns) = state.namespaces.get_mut(name) else {
            return;
        };
        let Some(p) = ns.pending.take_if(|p| p.generation == generation) else {
            return;
        };
        // Its next plan starts from the confirmed record (drift, a retry wait are gone).
        state.replan.names.insert(name.clone());
        let was = ns.current.replace(p.target.clone());
        ns.marked = true;
        ns.missing = false;
        ns.drift = None;
        ns.written = Some((generation, p.target.clone()));
        ns.seen = Some((Some(p.target.clone()), Some(generation)));
        ns.retry = None;
        let cleared = ns.apply_alert.take();
        out.push(alert(
            AlertKind::DnsApplied,
            Severity::Warning,
            name,
            format!(
                "{name} now points at {} (was {}); applied and verified in {} ms with {} API call{}",
                p.target,
                was.as_deref().unwrap_or("nothing"),
                calls.elapsed_ms,
                calls.calls,
                if calls.calls == 1 { "" } else { "s" },
            ),
        ));
        if cleared.is_some() {
            out.push(resolved(
                name,
                format!(
                    "{name}: the change to {} applied after earlier failures",
                    p.target
                ),
            ));
        }
        if std::mem::take(&mut state.provider_auth) {
            out.push(resolved(
                PROVIDER_SUBJECT,
                "the DNS provider accepts the credentials again".to_owned(),
            ));
        }
        self.provider_calls(state, calls, name, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_failed(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        namespace: &DnsName,
        generation: Generation,
        error: &str,
        class: FailureClass,
        out: &mut Vec<Command>,
        calls: CallStats,
    ) {
        let name = namespace;
        let Some(ns) = state.namespaces.get_mut(name) else {
            return;
        };
        let Some(p) = ns.pending.take_if(|p| p.generation == generation) else {
            return;
        };
        state.replan.names.insert(name.clone());
        let retry = super::retry::after_failure(
            &self.config.policy,
            ns.retry.as_ref(),
            &p.target,
            class,
            error,
            now,
            &mut state.jitter_seed,
        );
        let next = retry.not_before;
        ns.retry = Some(retry);
        ns.missing |= class == FailureClass::Missing;
        // The next plan issues the change again once the schedule allows.
        ns.decision = None;
        let condition = class.word().to_owned();
        let text = format!(
            "{name}: changing to {} failed ({condition}): {error}. {}. Next attempt at {}",
            p.target,
            class.fix(name),
            secs(next)
        );
        match class {
            FailureClass::NewerEpoch | FailureClass::LeaseLost | FailureClass::Auth
                if state.provider_auth || class != FailureClass::Auth => {}
            FailureClass::Auth => {
                state.provider_auth = true;
                out.push(alert(
                    AlertKind::ProviderAuth,
                    Severity::Critical,
                    PROVIDER_SUBJECT,
                    text,
                ));
            }
            _ if ns.apply_alert.as_deref() != Some(condition.as_str()) => {
                ns.apply_alert = Some(condition);
                out.push(alert(AlertKind::ApplyFailed, Severity::Warning, name, text));
            }
            _ => {}
        }
        self.provider_calls(state, calls, name, out);
        // Re-plan now, so the decision (and `explain`) says when the next attempt is due.
        self.evaluate(state, now, None, out);
    }

    pub(super) fn on_bus(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        bus: BusReport,
        out: &mut Vec<Command>,
    ) {
        if bus.reachable {
            state.bus.answered = true;
            if let Some(since) = state.bus.lost_since.take() {
                out.push(resolved(
                    BUS_SUBJECT,
                    format!("NATS answers again after {} s", (now - since).num_seconds()),
                ));
            }
        } else if state.bus.answered && state.bus.lost_since.is_none() {
            state.bus.lost_since = Some(now);
            out.push(alert(
                AlertKind::BusLost,
                Severity::Critical,
                BUS_SUBJECT,
                "NATS is unreachable or has no JetStream quorum; this controller does not act and no DNS change will be made until the bus answers".to_owned(),
            ));
        }
    }

    /// Alerts once when the events stream passes [`EVENTS_NEAR_CAP_PERCENT`] of a cap, naming
    /// the top publisher, and resolves once it is back under half of that.
    pub(super) fn on_events_stream(
        &self,
        state: &mut State,
        fill: &StreamFill,
        out: &mut Vec<Command>,
    ) {
        let pct = fill.percent();
        if pct >= EVENTS_NEAR_CAP_PERCENT && !state.bus.events_near_cap {
            state.bus.events_near_cap = true;
            let publisher = match &fill.top_publisher {
                Some((p, bytes)) => format!(
                    "the top publisher since the previous look is {p} ({bytes} bytes): check that agent"
                ),
                None => "no agent published live events since the previous look".to_owned(),
            };
            out.push(alert(
                AlertKind::EventsNearCap,
                Severity::Warning,
                EVENTS_SUBJECT,
                format!(
                    "the events stream is at {pct}% of its cap ({} of {} bytes, {} of {} messages) and drops its oldest events; {publisher}, or raise [controller] events_max_bytes if the load is real",
                    fill.bytes, fill.max_bytes, fill.messages, fill.max_messages
                ),
            ));
        } else if pct < EVENTS_NEAR_CAP_PERCENT / 2 && state.bus.events_near_cap {
            state.bus.events_near_cap = false;
            out.push(resolved(
                EVENTS_SUBJECT,
                format!("the events stream is back at {pct}% of its cap"),
            ));
        }
    }

    /// The alert a leadership change raises (none for the first lease at start-up).
    pub(super) fn leadership_alert(
        &self,
        state: &State,
        now: DateTime<Utc>,
        was: bool,
        l: LeadershipChange,
        out: &mut Vec<Command>,
    ) {
        if was == l.is_leader || (l.is_leader && self.in_startup_grace(state, now)) {
            return;
        }
        out.push(alert(
            AlertKind::Leadership,
            if l.is_leader {
                Severity::Warning
            } else {
                Severity::Info
            },
            "controller",
            if l.is_leader {
                format!("now the acting leader (epoch {})", l.epoch)
            } else {
                "no longer the acting leader".to_owned()
            },
        ));
    }
}
