//! Audit records built in Rust, one or more of every kind, provider report, command, override
//! action and failure class, for the schema tests (`schema_tests.rs` checks the coverage
//! against the schema, so a new variant without a record here fails there).

use chrono::{DateTime, Utc};
use serde_json::json;
use sitewarden_contract::{AgentId, DnsName, SiteId};
use sitewarden_engine::intake::RejectCause;
use sitewarden_engine::{
    Alert, AlertKind, Audit, AuditEvent as Engine, CallStats, Command, EdgeNotice, Epoch, Evidence,
    FailureClass, FreezeScope, Generation, OverrideAction, OverrideRequest, ProviderReport,
    ReleaseTarget, Rule, SetRecord, Severity, Verdict,
};

use crate::audit::{
    AuditEvent, AuditRecord, EngineAudit, IntentSettlement, RejectStage, Role, RuntimeEvent,
    Settlement,
};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn site(s: &str) -> SiteId {
    SiteId::new(s).unwrap()
}

fn dns(s: &str) -> DnsName {
    DnsName::new(s).unwrap()
}

const NAME: &str = "mail.example.com";
const TARGET: &str = "mail-site2.example.com";

/// Evidence with a site, a component and an observer. Read from JSON rather than built field by
/// field: the evidence types grow fields (an observer's HTTP status and latency), and a record
/// here should not have to follow each one.
fn evidence(rule: Rule) -> Evidence {
    let t = "2026-11-24T03:00:05Z";
    serde_json::from_value(json!({
        "rule": rule, "at": "2026-11-24T03:00:11Z",
        "note": "site1 is down; mail-site2.example.com is the most preferred up candidate",
        "sites": {"site1": {
            "verdict": "down", "since": t, "routable_since": null,
            "drained": false, "falling": false, "rising": true,
            "components": [{"server": "cas1", "protocol": "eas", "result": "down", "since": t,
                "observers": [{"agent": "site2-agent1", "site": "site2", "check": "eas",
                    "status": "failing", "since": t, "streak_started": "2026-11-24T03:00:01Z",
                    "streak": 3, "last_at": t, "fresh": true, "error": "timeout"}]}]}}
    }))
    .unwrap()
}

fn request(action: OverrideAction, force: bool) -> OverrideRequest {
    OverrideRequest {
        who: "alice".to_owned(),
        why: "CHG-1042 site1 maintenance".to_owned(),
        action,
        force,
    }
}

fn alert() -> Alert {
    Alert {
        severity: Severity::Critical,
        kind: AlertKind::SiteVerdict,
        subject: "site1".to_owned(),
        text: "site1 is down".to_owned(),
        evidence: Some(evidence(Rule::MoveAwayFromDown)),
    }
}

fn notice() -> EdgeNotice {
    EdgeNotice {
        generation: 12,
        active_sites: [
            ("DAG1".to_owned(), Some(site("site2"))),
            ("DAG2".to_owned(), None),
        ]
        .into(),
        verdicts: [(site("site1"), Verdict::Down), (site("site2"), Verdict::Up)].into(),
    }
}

/// Every override action, a release of every override among them.
fn overrides() -> Vec<Engine> {
    let expires = Some(at("2026-11-24T07:00:12Z"));
    let ns = || dns(NAME);
    [
        OverrideAction::Pin {
            namespace: ns(),
            target: dns(TARGET),
            expires,
        },
        OverrideAction::Drain {
            site: site("site1"),
            expires: None,
        },
        OverrideAction::Freeze {
            scope: FreezeScope::All,
            expires,
        },
        OverrideAction::Freeze {
            scope: FreezeScope::Namespace(ns()),
            expires: None,
        },
        OverrideAction::Release {
            what: ReleaseTarget::Pin { namespace: ns() },
        },
        OverrideAction::Release {
            what: ReleaseTarget::Drain {
                site: site("site1"),
            },
        },
        OverrideAction::Release {
            what: ReleaseTarget::Freeze {
                scope: FreezeScope::All,
            },
        },
        OverrideAction::Failback { namespace: ns() },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, action)| Engine::Override(request(action, i == 1)))
    .collect()
}

/// Every provider report, a failure of every class among them.
fn provider_reports() -> Vec<Engine> {
    let calls = CallStats {
        calls: 3,
        retries: 2,
        rate_limited: 1,
        elapsed_ms: 1200,
    };
    let failed = |class| ProviderReport::Failed {
        namespace: dns(NAME),
        generation: Generation(42),
        error: "HTTP 503 from the provider".to_owned(),
        class,
        calls,
    };
    let classes = [
        FailureClass::Unmarked,
        FailureClass::Missing,
        FailureClass::NewerEpoch,
        FailureClass::OlderGeneration,
        FailureClass::Drift,
        FailureClass::LeaseLost,
        FailureClass::Auth,
        FailureClass::Budget,
        FailureClass::RateLimited {
            retry_after_ms: Some(2000),
        },
        FailureClass::RateLimited {
            retry_after_ms: None,
        },
        FailureClass::Transient,
        FailureClass::Rejected,
    ];
    let mut reports: Vec<ProviderReport> = classes.into_iter().map(failed).collect();
    reports.extend([
        ProviderReport::Current {
            namespace: dns(NAME),
            target: Some(dns(TARGET)),
            generation: Some(Generation(41)),
            written: Some(dns("mail-rr.example.com")),
        },
        ProviderReport::Current {
            namespace: dns(NAME),
            target: None,
            generation: None,
            written: None,
        },
        ProviderReport::Applied {
            namespace: dns(NAME),
            generation: Generation(42),
            calls,
        },
        ProviderReport::Propagation {
            namespace: dns(NAME),
            target: dns(TARGET),
            converged: false,
            elapsed_ms: 30_000,
            laggards: vec!["ns2.example.net answers mail-rr.example.com".to_owned()],
        },
        ProviderReport::TargetCheck {
            target: dns(TARGET),
            problem: Some("NXDOMAIN".to_owned()),
        },
    ]);
    reports.into_iter().map(Engine::Provider).collect()
}

/// Every command, as a standby records it.
fn standby_commands() -> Vec<Engine> {
    let set_record = SetRecord {
        namespace: dns(NAME),
        target: dns(TARGET),
        ttl_secs: 60,
        reason: Rule::MoveAwayFromDown,
        generation: Generation(42),
        epoch: Epoch(7),
        evidence: evidence(Rule::MoveAwayFromDown),
    };
    let audit = Audit {
        at: at("2026-11-24T03:00:11Z"),
        event: Engine::OverrideExpired {
            what: "the drain of site1".to_owned(),
        },
    };
    [
        Command::SetRecord(set_record),
        Command::NotifyEdge(notice()),
        Command::Alert(alert()),
        Command::Audit(audit),
    ]
    .into_iter()
    .map(|c| Engine::Standby {
        command: Box::new(c),
    })
    .collect()
}

/// Every event the engine writes.
fn engine_events() -> Vec<Engine> {
    let mut events = vec![
        Engine::Decision {
            namespace: dns(NAME),
            from: Some(dns("mail-rr.example.com")),
            to: Some(dns(TARGET)),
            evidence: evidence(Rule::MoveAwayFromDown),
        },
        Engine::Decision {
            namespace: dns(NAME),
            from: None,
            to: None,
            evidence: evidence(Rule::AwaitingRecord),
        },
        Engine::Verdict {
            site: site("site1"),
            from: Verdict::Up,
            to: Verdict::Down,
            evidence: evidence(Rule::Steady),
        },
        Engine::DagActiveSite {
            dag: "DAG1".to_owned(),
            from: None,
            to: Some(site("site2")),
        },
        Engine::OverrideRejected {
            request: request(
                OverrideAction::Failback {
                    namespace: dns(NAME),
                },
                false,
            ),
            reason: "unknown namespace \"mail.example.com\"".to_owned(),
        },
        Engine::OverrideExpired {
            what: "pin of mail.example.com on mail-site2.example.com set by alice".to_owned(),
        },
        Engine::InputRejected {
            cause: RejectCause::Future,
            agent: AgentId::new("site1-agent1").unwrap(),
        },
        Engine::Leadership {
            is_leader: true,
            epoch: Epoch(7),
        },
    ];
    events.extend(overrides());
    events.extend(provider_reports());
    events.extend(standby_commands());
    events
}

/// Every event the runtime writes.
fn runtime_events() -> Vec<RuntimeEvent> {
    let settlement = |target: Option<&str>, outcome: Option<&str>, why: Option<&str>| Settlement {
        namespace: dns(NAME),
        target: target.map(dns),
        generation: Generation(42),
        outcome: outcome.map(str::to_owned),
        why: why.map(str::to_owned),
    };
    let intent = IntentSettlement {
        namespace: dns(NAME),
        target: dns(TARGET),
        generation: Generation(42),
        intent_epoch: Epoch(6),
        why: "the record carries epoch 6's marker for generation 42".to_owned(),
    };
    vec![
        RuntimeEvent::Intent {
            namespace: dns(NAME),
            target: dns(TARGET),
            generation: Generation(42),
            reason: Rule::Failback,
            evidence: evidence(Rule::Failback),
        },
        RuntimeEvent::WouldApply {
            namespace: dns(NAME),
            target: dns(TARGET),
            generation: Generation(42),
            reason: Rule::Pinned,
        },
        RuntimeEvent::ApplyApplied(settlement(Some(TARGET), Some("applied"), None)),
        RuntimeEvent::ApplyRefused(settlement(None, None, Some("generation 43 applied"))),
        RuntimeEvent::ApplyFailed(settlement(Some(TARGET), Some("HTTP 503"), None)),
        RuntimeEvent::ApplySuperseded(settlement(Some(TARGET), Some("overtaken"), None)),
        RuntimeEvent::ApplySkipped(settlement(None, None, Some("not the acting leader"))),
        RuntimeEvent::IntentApplied(intent.clone()),
        RuntimeEvent::IntentSuperseded(intent),
        RuntimeEvent::Alert { alert: alert() },
        RuntimeEvent::EdgeNotice { notice: notice() },
        RuntimeEvent::EdgeWebhook {
            endpoint: "https://edge1.example.com/sitewarden".to_owned(),
            generation: 12,
            attempts: 4,
            delivered: false,
            error: Some("HTTP 502".to_owned()),
            latency_ms: 10_035,
        },
        RuntimeEvent::IntakeRejected {
            stage: RejectStage::Intake,
            cause: "too_large".to_owned(),
            example: "an event of 2 MiB; the limit is 1 MiB".to_owned(),
        },
    ]
}

/// Every event, alternately as the leader's record (with its epoch and a history `seq`) and a
/// standby's (with neither).
pub(super) fn records() -> Vec<AuditRecord> {
    let engine_at = at("2026-11-24T03:00:11Z");
    let events = engine_events()
        .into_iter()
        .map(|event| AuditEvent::Engine(EngineAudit { event, engine_at }))
        .chain(runtime_events().into_iter().map(AuditEvent::Runtime));
    events
        .enumerate()
        .map(|(i, event)| {
            let leader = i % 2 == 0;
            AuditRecord {
                at: at("2026-11-24T03:00:12Z"),
                controller: if leader { "ctl-a" } else { "ctl-b" }.to_owned(),
                role: if leader { Role::Leader } else { Role::Standby },
                epoch: leader.then_some(Epoch(7)),
                event,
                seq: leader.then_some(1234 + i as u64),
            }
        })
        .collect()
}
