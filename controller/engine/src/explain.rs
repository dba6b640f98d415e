//! "Why does mail.example.com point there?": evidence builders and the explanation type.
//!
//! [`site_evidence`] gathers a site's verdict with its components and observers from the state;
//! decisions keep a short form (observers only for components that are not Up), `explain` the
//! full one. [`Explanation`] renders as plain text for the CLI and serializes for the API.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::{DnsName, SiteId};

use super::evidence::{ComponentEvidence, ObserverEvidence, SiteEvidence};
use super::namespace::{Decision, NamespaceState, Pending, Unroutable, unroutable};
use super::overrides::{Hold, Pin};
use super::quorum::QuorumResult;
use super::state::State;
use super::verdict::Verdict;
use crate::config::ControllerConfig;

/// Builds the evidence for one site; `full` includes observers of Up components too.
pub fn site_evidence(
    config: &ControllerConfig,
    state: &State,
    site: &SiteId,
    now: DateTime<Utc>,
    stale_after: TimeDelta,
    full: bool,
) -> SiteEvidence {
    let st = state.sites.get(site);
    let mut components = Vec::new();
    if let Some(cfg) = config.sites.get(site) {
        for server in &cfg.servers {
            for protocol in &cfg.protocols {
                let Some(c) = state.components.get(server).and_then(|m| m.get(protocol)) else {
                    continue;
                };
                let mut observers = Vec::new();
                if full || c.result != QuorumResult::Up {
                    for (agent, checks) in &c.observers {
                        let agent_site = config.agents.get(agent).map(|a| a.site.clone());
                        for (check, cs) in checks {
                            observers.push(ObserverEvidence {
                                agent: agent.clone(),
                                site: agent_site.clone().unwrap_or_else(|| site.clone()),
                                check: check.clone(),
                                status: cs.status,
                                since: cs.since,
                                streak_started: cs.streak_started,
                                streak: cs.streak,
                                streak_outcome: Some(cs.last_outcome),
                                last_at: cs.last_at,
                                fresh: cs.is_fresh(now, stale_after),
                                error: cs.last_error,
                                http_status: cs.last_http_status,
                                latency_ms: cs.last_latency_ms,
                            });
                        }
                    }
                }
                components.push(ComponentEvidence {
                    server: server.clone(),
                    protocol: protocol.clone(),
                    result: c.result,
                    since: c.since,
                    observers,
                });
            }
        }
    }
    SiteEvidence {
        verdict: st.map_or(Verdict::Unknown, |s| s.verdict),
        since: st.and_then(|s| s.since),
        routable_since: st.and_then(|s| s.routable_since()),
        drained: state.overrides.is_drained(site),
        falling: st.is_some_and(|s| s.falling),
        rising: st.is_some_and(|s| s.rising),
        components,
    }
}

/// A name that stands off its most preferred candidate: where it points, since when, what keeps
/// it off, and when it may return. It is the incident an operator must see first (the
/// dashboard's banner); every field is the engine's, so a reader formats it and decides nothing.
/// Only names routed by candidates have one: a name following a DAG's mailboxes has no
/// preferred target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffPreferred {
    /// The most preferred candidate.
    pub preferred: DnsName,
    /// Where the name points, or is about to (a pending change's target).
    pub target: DnsName,
    /// Since when it has pointed there: the time of the change this engine decided. `None` when
    /// this engine did not make that change (the record already held it when this controller
    /// started, or someone else wrote it).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// The sites the preferred candidate needs that cannot be routed to now (not Up or
    /// Degraded, or drained). Empty once they can: the name then waits for failback (see
    /// `failback_eligible_at`), for an operator, or for an override to end.
    #[serde(default)]
    pub unroutable: Vec<Unroutable>,
    /// When failback becomes eligible, if the sites stay Up until then: the latest decision's
    /// (rule `failback_pending`).
    #[serde(default)]
    pub failback_eligible_at: Option<DateTime<Utc>>,
}

/// The [`OffPreferred`] of a name routed by `candidates`, when it stands off the first of them.
pub fn off_preferred(
    state: &State,
    ns: &NamespaceState,
    candidates: &[crate::config::Candidate],
) -> Option<OffPreferred> {
    let preferred = candidates.first()?;
    let target = ns.effective()?;
    if *target == preferred.target {
        return None;
    }
    let since = ns
        .last_change
        .as_ref()
        .filter(|c| c.to.as_ref() == Some(target))
        .map(|c| c.evidence.at);
    Some(OffPreferred {
        preferred: preferred.target.clone(),
        target: target.clone(),
        since,
        unroutable: unroutable(&state.sites, &state.overrides, &preferred.requires),
        failback_eligible_at: ns
            .decision
            .as_ref()
            .and_then(|d| d.evidence.failback_eligible_at),
    })
}

/// Everything known about why a namespace points where it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The managed name.
    pub namespace: DnsName,
    /// Engine time of the explanation.
    pub at: Option<DateTime<Utc>>,
    /// What the record holds.
    pub current: Option<DnsName>,
    /// A change issued and not yet confirmed.
    pub pending: Option<Pending>,
    /// An active pin.
    pub pin: Option<Pin>,
    /// An active freeze.
    pub freeze: Option<Hold>,
    /// The latest decision with its evidence.
    pub decision: Option<Decision>,
    /// The latest change of the record with its evidence.
    pub last_change: Option<Decision>,
    /// Live evidence for every site the namespace depends on.
    pub sites: BTreeMap<SiteId, SiteEvidence>,
    /// Observers that must agree for a server to count Down (`[policy] min_observers`).
    #[serde(default)]
    pub quorum: usize,
    /// Content the record holds that sitewarden did not write, and why it counts as drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<super::namespace::DriftSeen>,
    /// A failed change and when it is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::retry::Retry>,
    /// For a name following a DAG whose databases are active in more than one site: the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag_split: Option<String>,
    /// Set while the name stands off its most preferred candidate: the incident in one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_preferred: Option<OffPreferred>,
}

/// "N results in a row", or, when the streak's results disagree with the status (a check on
/// its way down or up, short of `fall` or `rise`), "but the last N results failed since T".
fn streak_words(o: &ObserverEvidence) -> String {
    use sitewarden_contract::Outcome;
    let against = match (o.streak_outcome, o.status) {
        (Some(Outcome::Fail), s) if s != crate::observer::CheckStatus::Failing => Some("failed"),
        (Some(Outcome::Pass), crate::observer::CheckStatus::Failing) => Some("passed"),
        _ => None,
    };
    match against {
        Some(how) => format!(
            "but the last {} result(s) {how}, since {}",
            o.streak,
            secs(o.streak_started)
        ),
        None => format!("{} results in a row", o.streak),
    }
}

/// A time as an operator reads it: RFC 3339 to the second (`2026-11-24T03:00:12Z`).
fn secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "never".to_owned(), secs)
}

/// An enum as the API writes it (`move_away_from_down`, `failing`, `connect_refused`), not as
/// Rust's `Debug` spells it.
fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} points at {} (as of {})",
            self.namespace,
            self.current.as_deref().unwrap_or("<unknown>"),
            ts(self.at)
        )?;
        if let Some(p) = &self.pending {
            writeln!(
                f,
                "  pending: {} (generation {}, issued {})",
                p.target,
                p.generation,
                secs(p.issued_at)
            )?;
        }
        if let Some(p) = &self.pin {
            writeln!(
                f,
                "  pinned to {} by {} ({}), until {}",
                p.target,
                p.hold.who,
                p.hold.why,
                ts(p.hold.expires)
            )?;
        }
        if let Some(h) = &self.freeze {
            writeln!(
                f,
                "  frozen by {} ({}), until {}",
                h.who,
                h.why,
                ts(h.expires)
            )?;
        }
        if let Some(d) = &self.drift {
            writeln!(
                f,
                "  drift since {}: the record holds {}, which sitewarden did not write ({})",
                secs(d.since),
                d.found.as_deref().unwrap_or("nothing"),
                d.why
            )?;
        }
        if let Some(r) = &self.retry {
            writeln!(
                f,
                "  retry: moving to {} failed {} time(s) since {} ({}: {}); next attempt at {}",
                r.target,
                r.attempts,
                secs(r.since),
                r.class.word(),
                r.error,
                secs(r.not_before)
            )?;
        }
        if let Some(split) = &self.dag_split {
            writeln!(
                f,
                "  DAG split: databases are active in more than one site: {split}"
            )?;
        }
        for (label, d) in [
            ("last change", &self.last_change),
            ("decision", &self.decision),
        ] {
            if let Some(d) = d {
                writeln!(
                    f,
                    "  {label} at {}: rule {}: {} ({} -> {})",
                    secs(d.evidence.at),
                    d.evidence.rule.word(),
                    d.evidence.note,
                    d.from.as_deref().unwrap_or("<unknown>"),
                    d.to.as_deref().unwrap_or("<unknown>")
                )?;
            }
        }
        self.write_sites(f)?;
        if let Some(next) = self.next() {
            writeln!(f, "  next: {next}")?;
        }
        Ok(())
    }
}

impl Explanation {
    /// "— 2 of 3 observers failing (2 outside site1), quorum 2"; empty without observers.
    fn quorum_summary(&self, site: &SiteId, c: &crate::evidence::ComponentEvidence) -> String {
        if c.observers.is_empty() {
            return String::new();
        }
        let failing: Vec<_> = c
            .observers
            .iter()
            .filter(|o| o.fresh && word(&o.status) == "failing")
            .collect();
        let outside = failing.iter().filter(|o| o.site != *site).count();
        format!(
            " — {} of {} observers failing ({outside} outside {site}), quorum {}",
            failing.len(),
            c.observers.len(),
            self.quorum
        )
    }

    /// What would change the name next, and when, from the latest decision.
    fn next(&self) -> Option<String> {
        use crate::evidence::Rule;
        if let Some(r) = &self.retry {
            return Some(format!(
                "another attempt to move to {} at {}",
                r.target,
                secs(r.not_before)
            ));
        }
        if let Some(p) = &self.pending {
            return Some(format!(
                "the provider confirms {} (or the change is retried)",
                p.target
            ));
        }
        let d = self.decision.as_ref()?;
        Some(match d.evidence.rule {
            Rule::Steady => "nothing while its sites stay Up; a site the target needs going Down moves it at once".to_owned(),
            Rule::FailedOver | Rule::MoveAwayFromDown => "it returns to its preferred target once that target's sites have been Up for failback_after (failback = \"auto\"), or when an operator fails it back (failback = \"manual\")".to_owned(),
            Rule::Drained => "it stays off its preferred target while the drain holds (`sitewarden overrides` shows until when); once the drain is released or lapses, it returns after failback_after (failback = \"auto\") or when an operator fails it back".to_owned(),
            Rule::FailbackPending => "it fails back at the time in the note above, if the sites stay Up until then".to_owned(),
            Rule::FailbackManual => "an operator fails it back: sitewarden failback NAME --reason …".to_owned(),
            Rule::HoldDown => "the change is made once hold_down has passed since the last one".to_owned(),
            Rule::Pinned => format!(
                "nothing automatic until the pin is released or lapses ({})",
                ts(self.pin.as_ref().and_then(|p| p.hold.expires))
            ),
            Rule::Frozen => format!(
                "nothing automatic until the freeze is released or lapses ({})",
                ts(self.freeze.as_ref().and_then(|h| h.expires))
            ),
            Rule::FailStaticUnknown | Rule::AwaitingVerdicts | Rule::FollowDagUnknown => {
                "it waits for the missing verdicts; Unknown never moves a name".to_owned()
            }
            Rule::FailStaticNoCandidate | Rule::FailStaticAllDown => {
                "it moves as soon as a candidate's sites are Up again".to_owned()
            }
            Rule::FollowTargetNotUp => "it follows the mailboxes once that site's client access is Up".to_owned(),
            Rule::Drift => "nothing until an operator pins, releases or fails it back".to_owned(),
            Rule::RecordMissing => "nothing until the record exists (docs/dns.md)".to_owned(),
            _ => return None,
        })
    }

    /// The evidence per site, component and observer (the tail of the text form).
    fn write_sites(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (site, s) in &self.sites {
            writeln!(
                f,
                "  site {site}: {} since {}{}",
                s.verdict,
                ts(s.since),
                if s.drained { " (drained)" } else { "" },
            )?;
            if s.rising {
                writeln!(
                    f,
                    "    rising: an observer that saw it fail passes again; names are not moved away on this evidence"
                )?;
            }
            if s.falling {
                writeln!(
                    f,
                    "    falling: a quorum's latest results are failures; not a destination"
                )?;
            }
            for c in &s.components {
                writeln!(
                    f,
                    "    {} {}: {} since {}{}",
                    c.server,
                    c.protocol,
                    word(&c.result),
                    ts(c.since),
                    self.quorum_summary(site, c)
                )?;
                for o in &c.observers {
                    writeln!(
                        f,
                        "      {} ({}) check {}: {} since {} ({}, the last at {}){}{}",
                        o.agent,
                        o.site,
                        o.check,
                        word(&o.status),
                        secs(o.since),
                        streak_words(o),
                        secs(o.last_at),
                        if o.fresh { "" } else { " (stale)" },
                        o.error
                            .map(|e| format!(", error {}", word(&e)))
                            .unwrap_or_default()
                    )?;
                }
            }
        }
        Ok(())
    }
}
