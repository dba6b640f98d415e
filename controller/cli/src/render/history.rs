//! `sitewarden history`: audit records ([`AuditRecord`](sitewarden_api::AuditRecord)) in words,
//! one line each. Every kind the controller writes has its own sentence, read from the typed
//! event; a kind from a newer controller is shown as its fields.

use serde_json::Value;
use sitewarden_api::audit::{AuditEvent, EngineAudit, RuntimeEvent, Settlement};
use sitewarden_api::wire::HistoryAnswer;
use sitewarden_contract::terminal;
use sitewarden_engine::{
    Alert, AuditEvent as EngineEvent, Command as EngineCommand, FreezeScope, OverrideAction,
    ProviderReport, ReleaseTarget, Severity,
};

use super::{at, opt, text, word};
use crate::table::{Cell, Table, Tone};

/// One sentence for an audit event.
pub fn event_summary(e: &AuditEvent) -> String {
    match e {
        AuditEvent::Engine(a) => engine_summary(a),
        AuditEvent::Runtime(r) => runtime_summary(r),
        AuditEvent::Unknown(v) => fields(v),
    }
}

/// The fields of an event this CLI has no sentence for, as compact JSON (without `kind` and
/// `evidence`), at most 160 characters.
fn fields(v: &Value) -> String {
    let mut rest = v.clone();
    if let Some(m) = rest.as_object_mut() {
        m.remove("kind");
        m.remove("evidence");
    }
    let s = text(&rest);
    if s.chars().count() > 160 {
        s.chars().take(157).collect::<String>() + "..."
    } else {
        s
    }
}

/// An optional name, escaped, or `-`.
fn opt_word<T: serde::Serialize>(v: Option<&T>) -> String {
    v.map_or_else(|| "-".to_owned(), word)
}

/// One sentence for an event the engine decided.
fn engine_summary(a: &EngineAudit) -> String {
    match &a.event {
        EngineEvent::Decision {
            namespace,
            from,
            to,
            evidence,
        } if from == to => format!(
            "{}: stays on {} (rule {}: {})",
            terminal::line(namespace),
            opt(to.as_deref()),
            evidence.rule.word(),
            terminal::line(&evidence.note)
        ),
        EngineEvent::Decision {
            namespace,
            from,
            to,
            evidence,
        } => format!(
            "{}: {} -> {} (rule {}: {})",
            terminal::line(namespace),
            opt(from.as_deref()),
            opt(to.as_deref()),
            evidence.rule.word(),
            terminal::line(&evidence.note)
        ),
        EngineEvent::Verdict { site, from, to, .. } => {
            format!("site {}: {} -> {}", word(site), word(from), word(to))
        }
        EngineEvent::DagActiveSite { dag, from, to } => format!(
            "DAG {}: active site {} -> {}",
            terminal::line(dag),
            opt_word(from.as_ref()),
            opt_word(to.as_ref())
        ),
        EngineEvent::Override(r) => format!(
            "{} by {}: {}",
            action_words(&r.action),
            terminal::line(&r.who),
            terminal::line(&r.why)
        ),
        EngineEvent::OverrideRejected { request, reason } => format!(
            "refused {} by {}: {}",
            action_words(&request.action),
            terminal::line(&request.who),
            terminal::line(reason)
        ),
        EngineEvent::OverrideExpired { what } => format!("expired: {}", terminal::line(what)),
        EngineEvent::Leadership { is_leader, epoch } => format!(
            "{} (epoch {epoch})",
            if *is_leader {
                "became leader"
            } else {
                "stopped leading"
            }
        ),
        EngineEvent::InputRejected { cause, agent } => {
            format!("refused an event from {} ({})", word(agent), word(cause))
        }
        EngineEvent::Provider(r) => provider_summary(r),
        EngineEvent::Standby { command } => format!("would have: {}", command_summary(command)),
    }
}

/// One sentence for a provider report.
fn provider_summary(r: &ProviderReport) -> String {
    match r {
        ProviderReport::Current {
            namespace,
            target,
            generation,
            ..
        } => format!(
            "{} holds {} ({})",
            terminal::line(namespace),
            opt(target.as_deref()),
            generation.map_or_else(|| "no marker".to_owned(), |g| format!("generation {g}"))
        ),
        ProviderReport::Applied {
            namespace,
            generation,
            calls,
        } => format!(
            "{} generation {generation} applied ({} call(s), {} retries)",
            terminal::line(namespace),
            calls.calls,
            calls.retries
        ),
        ProviderReport::Failed {
            namespace,
            generation,
            error,
            class,
            ..
        } => format!(
            "{} generation {generation} failed ({}): {}",
            terminal::line(namespace),
            class.word(),
            terminal::line(error)
        ),
        ProviderReport::Propagation {
            namespace,
            target,
            converged: true,
            elapsed_ms,
            ..
        } => format!(
            "{} -> {}: every watched server answers it ({elapsed_ms} ms after the apply)",
            terminal::line(namespace),
            terminal::line(target)
        ),
        ProviderReport::Propagation {
            namespace,
            target,
            elapsed_ms,
            laggards,
            ..
        } => format!(
            "{} -> {}: not every watched server answers it after {elapsed_ms} ms; still answering otherwise: {}",
            terminal::line(namespace),
            terminal::line(target),
            terminal::line(&laggards.join(", "))
        ),
        ProviderReport::TargetCheck {
            target,
            problem: None,
        } => format!("target {} resolves", terminal::line(target)),
        ProviderReport::TargetCheck {
            target,
            problem: Some(problem),
        } => format!(
            "target {} does not resolve: {}",
            terminal::line(target),
            terminal::line(problem)
        ),
    }
}

/// What a command would have done, in words.
fn command_summary(c: &EngineCommand) -> String {
    match c {
        EngineCommand::SetRecord(s) => format!(
            "point {} at {} (generation {}, rule {})",
            terminal::line(&s.namespace),
            terminal::line(&s.target),
            s.generation,
            s.reason.word()
        ),
        EngineCommand::Alert(a) => alert_summary(a),
        EngineCommand::NotifyEdge(n) => format!("notify the edge (notice {})", n.generation),
        EngineCommand::Audit(a) => fields(&serde_json::to_value(&a.event).unwrap_or(Value::Null)),
    }
}

/// An alert as `[severity] subject: text`, or `[severity] text` when the text already names
/// its subject.
fn alert_summary(a: &Alert) -> String {
    if a.text.contains(&a.subject) {
        return format!("[{}] {}", word(&a.severity), terminal::line(&a.text));
    }
    format!(
        "[{}] {}: {}",
        word(&a.severity),
        terminal::line(&a.subject),
        terminal::line(&a.text)
    )
}

/// One sentence for an event the runtime wrote.
fn runtime_summary(r: &RuntimeEvent) -> String {
    match r {
        RuntimeEvent::Intent {
            namespace,
            target,
            generation,
            reason,
            ..
        } => format!(
            "{} -> {} (generation {generation}, rule {})",
            terminal::line(namespace),
            terminal::line(target),
            reason.word()
        ),
        RuntimeEvent::WouldApply {
            namespace,
            target,
            generation,
            reason,
        } => format!(
            "dry run: would point {} at {} (generation {generation}, rule {})",
            terminal::line(namespace),
            terminal::line(target),
            reason.word()
        ),
        RuntimeEvent::ApplyApplied(s)
        | RuntimeEvent::ApplyRefused(s)
        | RuntimeEvent::ApplyFailed(s)
        | RuntimeEvent::ApplySuperseded(s)
        | RuntimeEvent::ApplySkipped(s) => settlement_summary(s),
        RuntimeEvent::IntentApplied(s) | RuntimeEvent::IntentSuperseded(s) => format!(
            "{} -> {} (generation {}, epoch {}'s intent): {}",
            terminal::line(&s.namespace),
            terminal::line(&s.target),
            s.generation,
            s.intent_epoch,
            terminal::line(&s.why)
        ),
        RuntimeEvent::Alert { alert } => alert_summary(alert),
        RuntimeEvent::EdgeNotice { notice } => {
            let sites: Vec<String> = notice
                .verdicts
                .iter()
                .map(|(site, v)| format!("{} {}", word(site), word(v)))
                .collect();
            format!("notice {}: {}", notice.generation, sites.join(", "))
        }
        RuntimeEvent::EdgeWebhook {
            endpoint,
            generation,
            attempts,
            delivered,
            error,
            latency_ms,
        } => format!(
            "notice {generation} to {}: {} after {attempts} attempt(s), {latency_ms} ms{}",
            terminal::line(endpoint),
            if *delivered {
                "delivered"
            } else {
                "not delivered"
            },
            error
                .as_deref()
                .map(|e| format!(": {}", terminal::line(e)))
                .unwrap_or_default()
        ),
        RuntimeEvent::IntakeRejected { cause, example, .. } => format!(
            "refused an event at intake ({}): {}",
            terminal::line(cause),
            terminal::line(example)
        ),
    }
}

/// A write's settlement: name, target and generation, then what happened.
fn settlement_summary(s: &Settlement) -> String {
    let target = s
        .target
        .as_deref()
        .map(|t| format!(" -> {}", terminal::line(t)))
        .unwrap_or_default();
    let said: Vec<String> = [&s.outcome, &s.why]
        .into_iter()
        .flatten()
        .map(|w| terminal::line(w))
        .collect();
    format!(
        "{}{target} (generation {}): {}",
        terminal::line(&s.namespace),
        s.generation,
        if said.is_empty() {
            "-".to_owned()
        } else {
            said.join("; ")
        }
    )
}

/// An override action in words (`pin mail.example.com to mail-site2.example.com`).
pub fn action_words(a: &OverrideAction) -> String {
    let until = |expires: &Option<chrono::DateTime<chrono::Utc>>| {
        expires.map_or_else(String::new, |t| format!(" until {}", at(t)))
    };
    let scope = |s: &FreezeScope| match s {
        FreezeScope::All => "every namespace".to_owned(),
        FreezeScope::Namespace(n) => terminal::line(n),
    };
    match a {
        OverrideAction::Pin {
            namespace,
            target,
            expires,
        } => format!(
            "pin {} to {}{}",
            terminal::line(namespace),
            terminal::line(target),
            until(expires)
        ),
        OverrideAction::Drain { site, expires } => {
            format!("drain {}{}", word(site), until(expires))
        }
        OverrideAction::Freeze { scope: s, expires } => {
            format!("freeze {}{}", scope(s), until(expires))
        }
        OverrideAction::Failback { namespace } => {
            format!("fail back {}", terminal::line(namespace))
        }
        OverrideAction::Release { what } => match what {
            ReleaseTarget::Pin { namespace } => {
                format!("release the pin on {}", terminal::line(namespace))
            }
            ReleaseTarget::Drain { site } => format!("release the drain of {}", word(site)),
            ReleaseTarget::Freeze { scope: s } => format!("release the freeze of {}", scope(s)),
        },
    }
}

/// The tone of an event line.
fn event_tone(e: &AuditEvent) -> Tone {
    match e {
        AuditEvent::Engine(a) => match &a.event {
            EngineEvent::Verdict { to, .. } => Tone::of_verdict(&word(to)),
            EngineEvent::Override(_) | EngineEvent::OverrideExpired { .. } => Tone::Warn,
            EngineEvent::OverrideRejected { .. } => Tone::Bad,
            _ => Tone::Plain,
        },
        AuditEvent::Runtime(RuntimeEvent::Alert { alert }) => match alert.severity {
            Severity::Critical => Tone::Bad,
            Severity::Warning => Tone::Warn,
            Severity::Info => Tone::Plain,
        },
        _ => Tone::Plain,
    }
}

/// `sitewarden history`: one line per record, oldest first.
pub fn history(h: &HistoryAnswer, colour: bool) -> String {
    let mut t = Table::new(&["AT", "CONTROLLER", "EVENT", "WHAT"]);
    for r in &h.records {
        t.row(vec![
            at(r.at).into(),
            terminal::line(&r.controller).into(),
            Cell::toned(terminal::line(&r.event.kind()), event_tone(&r.event)),
            event_summary(&r.event).into(),
        ]);
    }
    let more = match (
        h.truncated,
        h.next.as_deref().and_then(|n| n.strip_prefix("before=")),
    ) {
        (true, Some(seq)) => format!(
            "more records match: sitewarden history --before {} (same filters)\n",
            terminal::line(seq)
        ),
        _ => String::new(),
    };
    if t.is_empty() {
        format!("no audit records since {}\n{more}", at(h.since))
    } else {
        t.render(colour) + &more
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_and_verdicts_read_as_sentences() {
        let e = event(json!({"kind": "override", "who": "alice", "why": "CHG-1",
            "action": {"action": "release", "what": {"kind": "freeze", "scope": "all"}},
            "engine_at": "2026-01-01T00:00:00Z"}));
        assert_eq!(
            event_summary(&e),
            "release the freeze of every namespace by alice: CHG-1"
        );
        let v = event(
            json!({"kind": "verdict", "site": "site1", "from": "up", "to": "down",
            "evidence": {"rule": "steady", "at": "2026-01-01T00:00:00Z", "note": "", "sites": {}},
            "engine_at": "2026-01-01T00:00:00Z"}),
        );
        assert_eq!(event_summary(&v), "site site1: up -> down");
    }

    fn event(v: Value) -> AuditEvent {
        let e: AuditEvent = serde_json::from_value(v).unwrap();
        assert!(!matches!(e, AuditEvent::Unknown(_)), "{e:?}");
        e
    }

    #[test]
    fn history_reads_every_documented_kind_in_words_to_the_second() {
        let doc = include_str!("../../../../docs/api.md");
        let records: Vec<sitewarden_api::AuditRecord> = doc
            .lines()
            .filter(|l| l.starts_with("{\"at\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let h = HistoryAnswer {
            since: records[0].at,
            records,
            truncated: true,
            next: Some("before=1234".into()),
        };
        let page = history(&h, false);
        assert!(
            page.ends_with("more records match: sitewarden history --before 1234 (same filters)\n"),
            "{page}"
        );
        let page: String = page
            .lines()
            .filter(|l| !l.starts_with("more records"))
            .map(|l| format!("{l}\n"))
            .collect();
        for line in page.lines().skip(1) {
            assert!(line.starts_with("2026-11-24 03:00:12Z"), "{line}");
        }
        for expected in [
            "mail.example.com: mail-rr.example.com -> mail-site2.example.com (rule move_away_from_down: site1 is down",
            "would have: point mail.example.com at mail-site2.example.com (generation 42, rule move_away_from_down)",
            "would have: [critical] site1 is down",
            "mail.example.com -> mail-site2.example.com (generation 42, rule move_away_from_down)",
            "mail.example.com (generation 42): generation 43 already applied",
            "pin mail.example.com to mail-site2.example.com until 2026-11-24 07:00:12Z by alice",
            "refused release the pin on mail.example.com by bob: mail.example.com is not pinned",
            "became leader (epoch 7)",
            "notice 12 to https://edge1.example.com/sitewarden: delivered after 1 attempt(s), 35 ms",
            "refused an event at intake (schema_version)",
            "mail.example.com generation 42 failed (transient): HTTP 503 from the provider",
        ] {
            assert!(page.contains(expected), "{expected}\n{page}");
        }
        assert!(!page.contains("engine_at"), "{page}");
    }
}
