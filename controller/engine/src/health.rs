//! Health inputs: observations, heartbeats, database-copy snapshots and the health half of a tick.
//!
//! This is the hot path. An observation is admitted (see `intake`), folded into its observer ×
//! check, and only when that check changes status or becomes fresh again is its server ×
//! protocol recounted; only when that changes is the site re-judged; only when a verdict changes
//! is the edge notified and are the names that need the site re-planned. A tick recounts
//! everything, because staleness is a matter of time, not of events.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::event::Event;
use sitewarden_contract::{AgentId, DbCopySnapshot, Heartbeat, Observation, SiteId};

use super::command::{Alert, AlertKind, Audit, AuditEvent, Command, EdgeNotice, Severity};
use super::evidence::{Evidence, Rule};
use super::explain::site_evidence;
use super::intake::{self, RejectCause};
use super::observer::CheckState;
use super::quorum::{QuorumRules, tally};
use super::verdict::{Verdict, judge};
use super::{Engine, State, dag};

impl Engine {
    pub(super) fn reject(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        cause: RejectCause,
        agent: &AgentId,
        out: &mut Vec<Command>,
    ) {
        if state.counters.bump(cause) == 1 {
            out.push(Command::Audit(Audit {
                at: now,
                event: AuditEvent::InputRejected {
                    cause,
                    agent: agent.clone(),
                },
            }));
        }
    }

    pub(super) fn on_observation(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        o: &Observation,
        out: &mut Vec<Command>,
    ) {
        if let Err(cause) = self.admit_observation(state, now, o) {
            return self.reject(state, now, cause, &o.agent, out);
        }
        state.counters.accepted += 1;
        super::trouble::certificate(state, o, out);
        let Some(component) = state
            .components
            .get_mut(o.server.as_str())
            .and_then(|m| m.get_mut(o.protocol.as_str()))
        else {
            state.counters.ignored_protocol += 1;
            return;
        };
        let p = &self.config.policy;
        // Freshness is judged on the controller's clock: a result counts from its arrival, or
        // from `observed_at + skew_tolerance` if that is earlier (a result replayed from the
        // stream at start-up is as old as it is), so an agent's skew inside the tolerance
        // changes nothing.
        let arrived = now.min(o.observed_at.checked_add_signed(self.skew).unwrap_or(now));
        let retally = match component
            .observers
            .get_mut(o.agent.as_str())
            .and_then(|m| m.get_mut(o.check.as_str()))
        {
            Some(check) => {
                let was_fresh = check.is_fresh(now, self.stale_after);
                let changed = check.record(o.outcome, arrived, o.error_class, p.fall, p.rise);
                check.saw(o.http_status, o.latency_ms);
                changed || (!was_fresh && check.is_fresh(now, self.stale_after))
            }
            None => {
                let mut check = CheckState::first(o.outcome, arrived, o.error_class);
                check.record(o.outcome, arrived, o.error_class, p.fall, p.rise);
                check.saw(o.http_status, o.latency_ms);
                component
                    .observers
                    .entry(o.agent.clone())
                    .or_default()
                    .insert(o.check.clone(), check);
                true
            }
        };
        if !retally {
            return;
        }
        let Some(site) = self.server_site.get(o.server.as_str()) else {
            return;
        };
        let rules = QuorumRules {
            agents: &self.config.agents,
            server_site: site,
            stale_after: self.stale_after,
            min_observers: p.min_observers,
        };
        if tally(component, &rules, now) {
            let site = site.clone();
            if self.rejudge(state, now, &site, out) {
                state.replan.site(&site);
                self.after_health_change(state, now, out);
            }
        }
    }

    fn admit_observation(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        o: &Observation,
    ) -> Result<(), RejectCause> {
        let agent = intake::check_meta(&self.config, &o.meta(), now, self.skew)?;
        if !self.config.sites.contains_key(o.target_site.as_str()) {
            return Err(RejectCause::UnknownSite);
        }
        if self.server_site.get(o.server.as_str()) != Some(&o.target_site) {
            return Err(RejectCause::UnknownServer);
        }
        let allowed = agent
            .checks
            .as_ref()
            .is_none_or(|c| c.contains(o.check.as_str()));
        if !allowed {
            return Err(RejectCause::UnknownCheck);
        }
        // Looked up before inserting: the entry API would clone the agent's id on every event.
        match state.agents.get_mut(o.agent.as_str()) {
            Some(agent) => intake::check_seq(agent, o.seq),
            None => intake::check_seq(state.agents.entry(o.agent.clone()).or_default(), o.seq),
        }
    }

    pub(super) fn on_heartbeat(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        h: &Heartbeat,
        out: &mut Vec<Command>,
    ) {
        if let Err(cause) = intake::check_meta(&self.config, &h.meta(), now, self.skew) {
            return self.reject(state, now, cause, &h.agent, out);
        }
        let agent = state.agents.entry(h.agent.clone()).or_default();
        if agent.started_at.is_some_and(|s| h.started_at > s) {
            // A new agent process numbers its events from the start again.
            agent.last_seq = None;
        }
        if let Err(cause) = intake::check_seq(agent, h.seq) {
            return self.reject(state, now, cause, &h.agent, out);
        }
        agent.started_at = Some(h.started_at);
        // Liveness on the controller's clock (see `on_observation`): skew inside the tolerance
        // can never make an agent look silent.
        agent.last_heartbeat =
            Some(now.min(h.observed_at.checked_add_signed(self.skew).unwrap_or(now)));
        agent.heartbeat_interval_ms = Some(h.interval_ms);
        if agent.version.as_deref() != Some(h.version.as_str()) {
            agent.version = Some(h.version.clone());
        }
        agent.buffered = h.buffered;
        agent.dropped_total = h.dropped_total;
        state.counters.accepted += 1;
        if agent.silent {
            agent.silent = false;
            out.push(Command::Alert(Alert {
                severity: Severity::Info,
                kind: AlertKind::Resolved,
                subject: h.agent.to_string(),
                text: format!("agent {} is sending heartbeats again", h.agent),
                evidence: None,
            }));
        }
    }

    pub(super) fn on_dbcopy(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        s: &DbCopySnapshot,
        out: &mut Vec<Command>,
    ) {
        if let Err(cause) = intake::check_meta(&self.config, &s.meta(), now, self.skew) {
            return self.reject(state, now, cause, &s.agent, out);
        }
        let Some(cfg) = self.config.dags.get(&s.dag) else {
            return self.reject(state, now, RejectCause::UnknownDag, &s.agent, out);
        };
        let agent = state.agents.entry(s.agent.clone()).or_default();
        if let Err(cause) = intake::check_seq(agent, s.seq) {
            return self.reject(state, now, cause, &s.agent, out);
        }
        state.counters.accepted += 1;
        let d = state.dags.entry(s.dag.clone()).or_default();
        let from = d.active_site.clone();
        let was_split = !d.split.is_empty();
        let changed = dag::absorb(cfg, d, s, now);
        match (was_split, d.split.is_empty()) {
            (false, false) => out.push(Command::Alert(Alert {
                severity: Severity::Warning,
                kind: AlertKind::DagSplit,
                subject: s.dag.clone(),
                text: format!(
                    "DAG {}: databases are active in more than one site: {}; names following it follow {} (most databases), so clients of the others cross sites",
                    s.dag,
                    d.split_text(),
                    d.active_site.as_ref().map_or("no site".to_owned(), |x| x.to_string())
                ),
                evidence: None,
            })),
            (true, true) => out.push(Command::Alert(Alert {
                severity: Severity::Info,
                kind: AlertKind::Resolved,
                subject: s.dag.clone(),
                text: format!("DAG {}: every database is active in one site again", s.dag),
                evidence: None,
            })),
            _ => {}
        }
        // Only a snapshot the DAG accepted (not an older one arriving late) says what is wrong now.
        if s.outcome == sitewarden_contract::CollectOutcome::Ok
            && d.last_good_at == Some(s.observed_at)
        {
            super::trouble::copies(&s.dag, d, s, out);
        }
        if changed {
            let to = d.active_site.clone();
            out.push(Command::Audit(Audit {
                at: now,
                event: AuditEvent::DagActiveSite {
                    dag: s.dag.clone(),
                    from,
                    to,
                },
            }));
            state.replan.dag(&s.dag);
            self.after_health_change(state, now, out);
        }
    }

    /// Re-judges `site`; emits verdict audits and alerts; returns whether anything routing
    /// reads changed (verdict or partition signals).
    pub(super) fn rejudge(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        site: &SiteId,
        out: &mut Vec<Command>,
    ) -> bool {
        let Some(cfg) = self.config.sites.get(site) else {
            return false;
        };
        let j = judge(cfg, &state.components);
        let Some(st) = state.sites.get_mut(site) else {
            return false;
        };
        let signals = st.seen_down_by != j.seen_down_by
            || st.seen_up_by != j.seen_up_by
            || st.falling != j.falling
            || st.rising != j.rising;
        st.falling = j.falling;
        st.rising = j.rising;
        st.seen_down_by = j.seen_down_by;
        st.seen_up_by = j.seen_up_by;
        let from = st.verdict;
        let was_judged = st.since.is_some();
        if from == j.verdict && was_judged {
            return signals;
        }
        st.verdict = j.verdict;
        st.since = Some(now);
        if !state.started_up && state.sites.values().all(|s| s.verdict == Verdict::Up) {
            state.started_up = true;
        }
        let Some(st) = state.sites.get_mut(site) else {
            return false;
        };
        match (
            from.is_serving() && st.serving_since.is_some(),
            j.verdict.is_serving(),
        ) {
            (false, true) => st.serving_since = Some(now),
            (_, false) => st.serving_since = None,
            _ => {}
        }
        if from == j.verdict {
            return true;
        }
        let ev = site_evidence(&self.config, state, site, now, self.stale_after, false);
        let evidence = Evidence {
            rule: Rule::Steady,
            at: now,
            note: format!("site {site} is {} (was {from})", j.verdict),
            sites: Arc::new(BTreeMap::from([(site.clone(), Arc::new(ev))])),
            failback_eligible_at: None,
        };
        // Start-up is quiet: a site that has not been alerted about yet and is not Down raises
        // no alert inside the start-up grace (servers coming Up one at a time are not news);
        // a site still not Up when the grace ends is alerted then (`tick_health`).
        let quiet = self.in_startup_grace(state, now)
            && j.verdict != Verdict::Down
            && state.sites.get(site).is_some_and(|s| s.alerted.is_none());
        let already = state.sites.get(site).and_then(|s| s.alerted);
        let alert =
            !quiet && already != Some(j.verdict) && (already.is_some() || j.verdict != Verdict::Up);
        // Down and Up are news at once; Degraded and Unknown once they have held (`alert_settled`).
        let settles = matches!(j.verdict, Verdict::Degraded | Verdict::Unknown);
        if alert && !settles {
            out.push(verdict_alert(site, j.verdict, evidence.clone()));
        }
        if let Some(st) = state.sites.get_mut(site) {
            st.alert_pending = (alert && settles).then_some(now);
            if alert && !settles {
                st.alerted = Some(j.verdict);
            }
        }
        out.push(Command::Audit(Audit {
            at: now,
            event: AuditEvent::Verdict {
                site: site.clone(),
                from,
                to: j.verdict,
                evidence,
            },
        }));
        true
    }

    /// Alerts each Degraded or Unknown verdict that has held for one probe interval (see
    /// [`crate::verdict::SiteState::alert_pending`]).
    fn alert_settled(&self, state: &mut State, now: DateTime<Utc>, out: &mut Vec<Command>) {
        let settle = self.settle();
        let due: Vec<SiteId> = state
            .sites
            .iter()
            .filter(|(_, s)| s.alert_pending.is_some_and(|at| now - at >= settle))
            .map(|(id, _)| id.clone())
            .collect();
        for site in due {
            let ev = site_evidence(&self.config, state, &site, now, self.stale_after, false);
            let Some(st) = state.sites.get_mut(&site) else {
                continue;
            };
            st.alert_pending = None;
            if st.alerted == Some(st.verdict) {
                continue;
            }
            let since = st.since.unwrap_or(now);
            let evidence = Evidence {
                rule: Rule::Steady,
                at: now,
                note: format!(
                    "site {site} is {} since {}",
                    st.verdict,
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                sites: Arc::new(BTreeMap::from([(site.clone(), Arc::new(ev))])),
                failback_eligible_at: None,
            };
            st.alerted = Some(st.verdict);
            out.push(verdict_alert(&site, st.verdict, evidence));
        }
    }

    /// How long a Degraded or Unknown verdict holds before it is alerted: one probe interval.
    pub(crate) fn settle(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.policy.interval).unwrap_or(TimeDelta::seconds(10))
    }

    /// Alerts, once, every site still not Up when the start-up grace has ended.
    fn alert_after_grace(&self, state: &mut State, now: DateTime<Utc>, out: &mut Vec<Command>) {
        if self.in_startup_grace(state, now) {
            return;
        }
        let due: Vec<SiteId> = state
            .sites
            .iter()
            .filter(|(_, s)| s.alerted.is_none() && s.verdict != Verdict::Up)
            .map(|(id, _)| id.clone())
            .collect();
        let settle = self.settle();
        for site in due {
            let ev = site_evidence(&self.config, state, &site, now, self.stale_after, false);
            let Some(st) = state.sites.get_mut(&site) else {
                continue;
            };
            // A Degraded or Unknown that has not held for a probe interval yet settles first.
            let since = st.since.unwrap_or(now);
            if st.verdict != Verdict::Down && now - since < settle {
                st.alert_pending = Some(since);
                continue;
            }
            let evidence = Evidence {
                rule: Rule::Steady,
                at: now,
                note: format!(
                    "site {site} is {} at the end of the start-up grace",
                    st.verdict
                ),
                sites: Arc::new(BTreeMap::from([(site.clone(), Arc::new(ev))])),
                failback_eligible_at: None,
            };
            st.alerted = Some(st.verdict);
            out.push(verdict_alert(&site, st.verdict, evidence));
        }
    }

    /// After a verdict or DAG change: notify the edge and re-plan the names that read it.
    pub(super) fn after_health_change(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        self.notify_edge(state, out);
        self.evaluate(state, now, None, out);
    }

    fn notify_edge(&self, state: &mut State, out: &mut Vec<Command>) {
        state.edge_generation += 1;
        out.push(Command::NotifyEdge(Self::edge_notice(state)));
    }

    /// The edge notice for how things stand, under the latest notice generation (no new one):
    /// what a controller that has just become the acting leader publishes, so the edge hears
    /// from the new epoch even when nothing changed since the last notice.
    pub fn edge_notice(state: &State) -> EdgeNotice {
        EdgeNotice {
            generation: state.edge_generation,
            active_sites: state
                .dags
                .iter()
                .map(|(d, s)| (d.clone(), s.active_site.clone()))
                .collect(),
            verdicts: state
                .sites
                .iter()
                .map(|(s, st)| (s.clone(), st.verdict))
                .collect(),
        }
    }

    /// The health half of a tick: recount every component, re-judge every site, expire DAGs,
    /// flag silent agents. Returns whether anything routing reads changed.
    pub(super) fn tick_health(
        &self,
        state: &mut State,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> bool {
        let p = &self.config.policy;
        for (server, protos) in state.components.iter_mut() {
            let Some(site) = self.server_site.get(server) else {
                continue;
            };
            let rules = QuorumRules {
                agents: &self.config.agents,
                server_site: site,
                stale_after: self.stale_after,
                min_observers: p.min_observers,
            };
            for c in protos.values_mut() {
                tally(c, &rules, now);
            }
        }
        self.alert_after_grace(state, now, out);
        let mut changed = false;
        let sites: Vec<SiteId> = state.sites.keys().cloned().collect();
        let before: Vec<Verdict> = state.sites.values().map(|s| s.verdict).collect();
        for site in &sites {
            if self.rejudge(state, now, site, out) {
                state.replan.site(site);
                changed = true;
            }
        }
        self.alert_settled(state, now, out);
        let verdicts_changed = state.sites.values().map(|s| s.verdict).ne(before);
        let mut dags_changed = false;
        for (name, d) in state.dags.iter_mut() {
            if dag::expire(d, now, self.dbcopy_stale_after) {
                state.replan.dag(name);
                dags_changed = true;
            }
        }
        if verdicts_changed || dags_changed {
            self.notify_edge(state, out);
        }
        for (id, a) in state.agents.iter_mut() {
            let (Some(last), Some(ms)) = (a.last_heartbeat, a.heartbeat_interval_ms) else {
                continue;
            };
            let limit =
                TimeDelta::milliseconds(i64::try_from(ms.saturating_mul(3)).unwrap_or(i64::MAX))
                    .max(self.stale_after);
            if !a.silent && now - last > limit {
                a.silent = true;
                out.push(Command::Alert(Alert {
                    severity: Severity::Warning,
                    kind: AlertKind::AgentSilent,
                    subject: id.to_string(),
                    text: format!(
                        "agent {id} sent no heartbeat since {}",
                        last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    evidence: None,
                }));
            }
        }
        changed || dags_changed
    }
}

/// The alert for a site's verdict.
fn verdict_alert(site: &SiteId, verdict: Verdict, evidence: Evidence) -> Command {
    let (severity, text) = match verdict {
        Verdict::Down => (
            Severity::Critical,
            format!("site {site} is Down, confirmed from outside the site"),
        ),
        Verdict::Unknown => (
            Severity::Warning,
            format!(
                "site {site} is Unknown (silence, too few observers or disagreement); names fail static"
            ),
        ),
        Verdict::Degraded => (
            Severity::Warning,
            format!("site {site} is Degraded: some servers are not Up, clients are still served"),
        ),
        Verdict::Up => (Severity::Info, format!("site {site} is Up")),
    };
    Command::Alert(Alert {
        severity,
        kind: AlertKind::SiteVerdict,
        subject: site.to_string(),
        text,
        evidence: Some(evidence),
    })
}
