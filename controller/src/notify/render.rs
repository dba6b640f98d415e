//! Words for one alert message, shared by every sink: a title, what happened, why (the evidence
//! in one or two lines), what sitewarden did, and the exact CLI command to act.
//!
//! Sinks only arrange these words in their own JSON, so Slack, Teams and the generic webhook
//! always say the same thing.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::engine::evidence::Evidence;
use crate::engine::quorum::QuorumResult;
use crate::engine::{Alert, AlertKind, Severity, Verdict};

/// One message leaving the shaper for the sinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// When the dispatcher emitted it (wall clock, for display only).
    pub at: DateTime<Utc>,
    /// The alert, or for a burst summary the latest alert of the burst.
    pub alert: Alert,
    /// Present when this message summarises a burst.
    pub burst: Option<BurstSummary>,
}

/// How many alerts a summary stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BurstSummary {
    /// Alerts folded into this message (not counting the one sent at the burst's start).
    pub count: u32,
    /// Length of the burst window in seconds.
    pub window_secs: u64,
    /// The highest severity among them.
    pub severity: Severity,
}

impl Message {
    /// A message for one alert.
    pub fn single(at: DateTime<Utc>, alert: Alert) -> Self {
        Self {
            at,
            alert,
            burst: None,
        }
    }

    /// A burst summary.
    pub fn summary(
        at: DateTime<Utc>,
        latest: Alert,
        count: u32,
        window: Duration,
        severity: Severity,
    ) -> Self {
        Self {
            at,
            alert: latest,
            burst: Some(BurstSummary {
                count,
                window_secs: window.as_secs().max(1),
                severity,
            }),
        }
    }

    /// The severity sinks filter on.
    pub fn severity(&self) -> Severity {
        self.burst.map_or(self.alert.severity, |b| b.severity)
    }
}

/// A message in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// One line, at most 150 characters (Slack's header limit).
    pub title: String,
    /// What happened.
    pub happened: String,
    /// Why: the evidence in one or two lines.
    pub why: Option<String>,
    /// What sitewarden did about it.
    pub did: String,
    /// The exact CLI command to act, when there is one.
    pub command: Option<String>,
    /// Severity word: `info`, `warning`, `critical`.
    pub severity: &'static str,
    /// A condition cleared.
    pub resolved: bool,
}

/// Title length limit (Slack's header block takes 150 characters).
const TITLE_MAX: usize = 150;

/// The severity's word.
pub fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// The alert kind in words.
pub fn kind_words(k: AlertKind) -> &'static str {
    match k {
        AlertKind::SiteVerdict => "site verdict changed",
        AlertKind::DagSplit => "DAG active in more than one site",
        AlertKind::FailStatic => "failing static",
        AlertKind::AllSitesDown => "every site is Down",
        AlertKind::Partition => "sites partitioned",
        AlertKind::FailbackAvailable => "failback available",
        AlertKind::OverrideTargetDown => "override points at a Down site",
        AlertKind::Drift => "record drift",
        AlertKind::ApplyFailed => "DNS change failed",
        AlertKind::AgentSilent => "agent silent",
        AlertKind::DnsDecided => "DNS change decided",
        AlertKind::DnsApplied => "DNS change applied",
        AlertKind::ProviderDegraded => "DNS provider needed retries",
        AlertKind::ProviderAuth => "DNS provider refused the credentials",
        AlertKind::Leadership => "leadership changed",
        AlertKind::BusLost => "NATS lost",
        AlertKind::CopyTrouble => "database copy trouble",
        AlertKind::Certificate => "certificate problem",
        AlertKind::PropagationSlow => "DNS change not yet served everywhere",
        AlertKind::TargetUnresolvable => "candidate target does not resolve",
        AlertKind::EventsNearCap => "events stream near its cap",
        AlertKind::Resolved => "resolved",
    }
}

/// Renders a message.
pub fn render(m: &Message) -> Rendered {
    let a = &m.alert;
    let resolved = a.kind == AlertKind::Resolved;
    let headline = if resolved {
        format!("Resolved: {}", strip_subject(&a.text, &a.subject))
    } else {
        a.text.clone()
    };
    let title = match m.burst {
        Some(b) => format!(
            "{} more alerts about {} in the last {} s",
            b.count, a.subject, b.window_secs
        ),
        None if resolved => headline.clone(),
        None => format!(
            "{}: {} ({})",
            capitalised(severity_word(a.severity)),
            kind_words(a.kind),
            a.subject
        ),
    };
    let happened = match m.burst {
        Some(_) => format!("Latest: {headline}"),
        None => headline,
    };
    let did = if m.burst.is_some() {
        format!(
            "Folded these alerts into this one message so a flapping check does not flood the channel; {}",
            lower_first(did(a.kind))
        )
    } else {
        did(a.kind).to_owned()
    };
    Rendered {
        title: truncate(&title, TITLE_MAX),
        happened,
        why: a.evidence.as_ref().map(why),
        did,
        command: command(a),
        severity: severity_word(m.severity()),
        resolved,
    }
}

/// What sitewarden does when it raises this kind.
fn did(k: AlertKind) -> &'static str {
    match k {
        AlertKind::SiteVerdict => {
            "Re-evaluated every name that needs this site; any record change is reported separately."
        }
        AlertKind::FailStatic => {
            "Left the record as it is (fail static) until the evidence is clear."
        }
        AlertKind::AllSitesDown => {
            "Changed nothing: with every site Down the observers are the likelier fault."
        }
        AlertKind::Partition => "Changed nothing while the sites disagree.",
        AlertKind::FailbackAvailable => {
            "Stayed on the current target: failback is manual for this name."
        }
        AlertKind::OverrideTargetDown => "Kept the operator's override in force.",
        AlertKind::Drift => "Observed the record and left it alone (on_drift = \"observe\").",
        AlertKind::ApplyFailed => {
            "Holds the change back and retries on its backoff schedule (a refusal that needs a human: every 5 minutes, or at once when the record changes)."
        }
        AlertKind::DagSplit => {
            "Names following the DAG follow the site holding most databases; sitewarden never moves databases."
        }
        AlertKind::AgentSilent => "Stops counting the agent's observations once they are stale.",
        AlertKind::EventsNearCap => {
            "Keeps deciding on live events; the stream drops its oldest events, so a controller starting now replays less history."
        }
        AlertKind::DnsDecided => {
            "Recorded the intent and is changing the record through the provider now."
        }
        AlertKind::DnsApplied => {
            "Changed the record with a compare-and-set and verified it by reading it back."
        }
        AlertKind::ProviderDegraded => {
            "Retried with backoff inside the rate budget; the change was applied at most once."
        }
        AlertKind::ProviderAuth => {
            "No record was changed; the change is retried every 5 minutes until the credentials work. Fix the token and its scopes."
        }
        AlertKind::Leadership => "Took over (or handed over) deciding and changing records.",
        AlertKind::CopyTrouble => {
            "Nothing: sitewarden follows mailboxes and never moves databases; a failover of this DAG may have no good copy to go to."
        }
        AlertKind::Certificate => {
            "Nothing yet: clients will fail TLS on this server when it expires or is reached by an uncovered name."
        }
        AlertKind::PropagationSlow => {
            "Kept the change; the lagging servers are named so their transfers can be checked."
        }
        AlertKind::TargetUnresolvable => {
            "Still counts the target as a candidate; a move there would send clients nowhere."
        }
        AlertKind::BusLost => {
            "Stopped acting: no DNS change is made and nothing fails over because of the bus."
        }
        AlertKind::Resolved => "Nothing more; back to normal operation.",
    }
}

/// The CLI command that acts on this alert.
fn command(a: &Alert) -> Option<String> {
    let s = quote(&a.subject);
    let reason = "--reason \"…\"";
    if a.subject == crate::engine::fold::MASS_SUBJECT {
        // A mass move's alerts are about many names: the status lists those still pending.
        return Some("sitewarden status".to_owned());
    }
    Some(match a.kind {
        AlertKind::SiteVerdict if a.severity == Severity::Info => return None,
        AlertKind::SiteVerdict => format!("sitewarden drain {s} {reason}"),
        AlertKind::FailStatic | AlertKind::AllSitesDown | AlertKind::Partition => {
            format!("sitewarden pin {s} <target> {reason}")
        }
        AlertKind::FailbackAvailable => format!("sitewarden failback {s} {reason}"),
        AlertKind::OverrideTargetDown => format!("sitewarden release {s} {reason}"),
        AlertKind::Drift | AlertKind::ApplyFailed => format!("sitewarden explain {s}"),
        AlertKind::AgentSilent | AlertKind::Leadership | AlertKind::BusLost => {
            "sitewarden status".to_owned()
        }
        AlertKind::DnsDecided | AlertKind::DnsApplied | AlertKind::ProviderDegraded => {
            format!("sitewarden explain {s}")
        }
        AlertKind::ProviderAuth => "sitewarden-controller validate --config FILE".to_owned(),
        AlertKind::DagSplit => {
            "Get-MailboxDatabaseCopyStatus -Server * | ? Status -eq Mounted".to_owned()
        }
        AlertKind::CopyTrouble => {
            format!("Get-MailboxDatabaseCopyStatus -Server * | ? DatabaseName -like '*' # DAG {s}")
        }
        AlertKind::Certificate => format!(
            "Get-ExchangeCertificate -Server {s} | fl Thumbprint,NotAfter,CertificateDomains"
        ),
        AlertKind::PropagationSlow => format!("dig @<lagging server> {s} CNAME"),
        AlertKind::TargetUnresolvable => format!("dig {s}"),
        AlertKind::EventsNearCap => format!("nats stream info {s}"),
        AlertKind::Resolved => return None,
    })
}

/// The evidence in one or two lines: the rule and its note, then the sites that are not Up.
fn why(e: &Evidence) -> String {
    let first = format!("{} (rule `{}`, {})", e.note, rule_word(e), stamp(e.at));
    let mut sites = Vec::new();
    for (id, s) in e.sites.iter() {
        if s.verdict == Verdict::Up && !s.drained {
            continue;
        }
        let mut line = format!("{id} {:?}", s.verdict);
        if let Some(since) = s.since {
            line.push_str(&format!(" since {}", stamp(since)));
        }
        if s.drained {
            line.push_str(" (drained)");
        }
        let broken: Vec<String> = s
            .components
            .iter()
            .filter(|c| c.result != QuorumResult::Up)
            .take(3)
            .map(|c| {
                let failing: Vec<String> = c
                    .observers
                    .iter()
                    .filter(|o| o.error.is_some())
                    .take(3)
                    .map(|o| match o.error {
                        Some(err) => format!("{} {}", o.agent, snake(&err)),
                        None => o.agent.to_string(),
                    })
                    .collect();
                let result = format!("{:?}", c.result).to_lowercase();
                if failing.is_empty() {
                    format!("{} {} {result}", c.server, c.protocol)
                } else {
                    format!(
                        "{} {} {result} ({})",
                        c.server,
                        c.protocol,
                        failing.join(", ")
                    )
                }
            })
            .collect();
        if !broken.is_empty() {
            line.push_str(": ");
            line.push_str(&broken.join("; "));
        }
        sites.push(line);
    }
    if sites.is_empty() {
        first
    } else {
        format!("{first}\n{}", sites.join(" · "))
    }
}

fn rule_word(e: &Evidence) -> String {
    snake(&e.rule)
}

/// A serde enum's snake_case word.
fn snake<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `mail.example.com: resolved; …` reads better as `mail.example.com resolved; …`.
fn strip_subject(text: &str, subject: &str) -> String {
    let prefix = format!("{subject}: resolved; ");
    match text.strip_prefix(&prefix) {
        Some(rest) => format!("{subject}: {rest}"),
        None => text.to_owned(),
    }
}

/// Quotes a CLI argument when it holds anything beyond a DNS name's characters.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
