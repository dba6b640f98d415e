//! Provider reports, generations and agent liveness: what happens around a change, not the
//! choice itself.

mod support;

use sitewarden_contract::{AgentId, Heartbeat, Outcome};
use sitewarden_engine::Generation;
use sitewarden_engine::{AlertKind, Command, FailureClass, Input, ProviderReport, Rule, Severity};
use support::{Story, config, sites_dead, t};

const MAIL: &str = "mail.example.com";

#[test]
fn a_failed_apply_is_alerted_once_and_retried_on_the_backoff_schedule_with_a_newer_generation() {
    let mut story = Story::healthy(config(""));
    story.auto_ack = false;
    story.run_until(t(6), sites_dead(&["site1"]));
    let first = story.set_records_for(MAIL)[0].1.clone();
    assert_eq!(first.reason, Rule::MoveAwayFromDown);
    // While pending, nothing is issued again.
    story.run_until(t(12), sites_dead(&["site1"]));
    assert_eq!(story.set_records_for(MAIL).len(), 1);
    let failed_at = story.now;
    story.input(Input::Provider(ProviderReport::Failed {
        namespace: MAIL.parse().unwrap(),
        generation: first.generation,
        error: "HTTP 502".into(),
        class: FailureClass::Transient,
        calls: Default::default(),
    }));
    assert_eq!(
        story.alerts_of(AlertKind::ApplyFailed, Severity::Warning),
        1
    );
    assert_eq!(story.rule(MAIL), Some(Rule::RetryWait));
    // The first retry waits 0.5–1 s (retry_initial 1 s with jitter): the next round issues it.
    story.run_until(t(16), sites_dead(&["site1"]));
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 2, "{moves:?}");
    let retry = moves[1].1.clone();
    assert!(moves[1].0 - failed_at >= chrono::TimeDelta::milliseconds(500));
    assert_eq!(retry.target, first.target);
    assert!(retry.generation > first.generation);
    // A late acknowledgement of the failed generation changes nothing; the retry's does.
    story.input(Input::Provider(ProviderReport::Applied {
        namespace: MAIL.parse().unwrap(),
        generation: first.generation,
        calls: Default::default(),
    }));
    assert!(story.state.namespaces[MAIL].pending.is_some());
    story.input(Input::Provider(ProviderReport::Applied {
        namespace: MAIL.parse().unwrap(),
        generation: retry.generation,
        calls: Default::default(),
    }));
    assert!(story.state.namespaces[MAIL].pending.is_none());
    assert!(story.state.namespaces[MAIL].retry.is_none());
    assert_eq!(
        story.state.namespaces[MAIL].current.as_deref(),
        Some("mail-site2.example.com")
    );
    // The condition cleared: one Resolved for the one alert.
    assert_eq!(story.alerts_of(AlertKind::Resolved, Severity::Info), 1);
}

#[test]
fn a_record_changed_by_hand_is_observed_not_fought() {
    let mut story = Story::healthy(config(""));
    story.report_current(MAIL, "somewhere-else.example.com");
    story.run_until(t(60), sites_dead(&["site1"]));
    assert!(story.set_records_for(MAIL).is_empty());
    assert_eq!(story.rule(MAIL), Some(Rule::Drift));
    assert_eq!(story.alerts_of(AlertKind::Drift, Severity::Warning), 1);
}

fn enforcing() -> sitewarden_engine::config::ControllerConfig {
    let mut cfg = config("");
    if let Some(ns) = cfg.namespaces.get_mut(MAIL) {
        ns.on_drift = sitewarden_engine::config::DriftPolicy::Enforce;
    }
    cfg
}

#[test]
fn with_on_drift_enforce_a_hand_edit_of_our_record_is_put_back() {
    let mut story = Story::healthy(enforcing());
    // Someone points our record elsewhere but leaves the marker comment in place.
    story.input(Input::Provider(ProviderReport::Current {
        namespace: MAIL.parse().unwrap(),
        target: Some("somewhere-else.example.com".parse().unwrap()),
        generation: Some(Generation(7)),
        written: None,
    }));
    story.run_until(t(10), |_| Outcome::Pass);
    let sets = story.set_records_for(MAIL);
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].1.target, "mail-rr.example.com");
    assert_eq!(sets[0].1.reason, Rule::Drift);
}

#[test]
fn with_on_drift_enforce_a_record_without_our_marker_is_still_only_observed() {
    let mut story = Story::healthy(enforcing());
    story.report_unmarked(MAIL, "somewhere-else.example.com");
    story.run_until(t(10), |_| Outcome::Pass);
    assert!(story.set_records_for(MAIL).is_empty());
    assert_eq!(story.alerts_of(AlertKind::Drift, Severity::Warning), 1);
}

#[test]
fn a_marker_generation_from_the_provider_raises_ours() {
    let mut story = Story::healthy(config(""));
    story.input(Input::Provider(ProviderReport::Current {
        namespace: MAIL.parse().unwrap(),
        target: Some("mail-rr.example.com".parse().unwrap()),
        generation: Some(Generation(41)),
        written: None,
    }));
    story.run_until(t(10), sites_dead(&["site1"]));
    assert_eq!(story.set_records_for(MAIL)[0].1.generation, Generation(42));
}

#[test]
fn an_agent_that_stops_sending_heartbeats_is_alerted_once() {
    let mut story = Story::healthy(config(""));
    let hb = |seq: u64, at| Heartbeat {
        schema_version: 1,
        agent: AgentId::new("site1-agent1").unwrap_or_else(|e| panic!("{e}")),
        site: "site1".parse().unwrap_or_else(|e| panic!("{e:?}")),
        seq,
        observed_at: at,
        started_at: t(-100),
        version: "0.1.0".into(),
        interval_ms: 5000,
        checks: 4,
        buffered: 0,
        dropped_total: 0,
    };
    let seq = story.next_seq("site1-agent1");
    let now = story.now;
    story.input(Input::Heartbeat(hb(seq, now)));
    story.run_until(t(60), |_| Outcome::Pass);
    assert_eq!(
        story.alerts_of(AlertKind::AgentSilent, Severity::Warning),
        1
    );
    let seq = story.next_seq("site1-agent1");
    let now = story.now;
    let cmds = story.input(Input::Heartbeat(hb(seq, now)));
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Alert(a) if a.kind == AlertKind::Resolved))
    );
}

#[test]
fn an_agents_heartbeat_keeps_its_version_and_its_bus_buffer_counters() {
    let mut story = Story::healthy(config(""));
    let seq = story.next_seq("site1-agent1");
    let now = story.now;
    story.input(Input::Heartbeat(Heartbeat {
        schema_version: 1,
        agent: AgentId::new("site1-agent1").unwrap_or_else(|e| panic!("{e}")),
        site: "site1".parse().unwrap_or_else(|e| panic!("{e:?}")),
        seq,
        observed_at: now,
        started_at: t(-100),
        version: "0.4.2".into(),
        interval_ms: 5000,
        checks: 4,
        buffered: 17,
        dropped_total: 3,
    }));
    let a = &story.state.agents["site1-agent1"];
    assert_eq!(a.version.as_deref(), Some("0.4.2"));
    assert_eq!((a.buffered, a.dropped_total), (17, 3));
    assert_eq!(a.heartbeat_interval_ms, Some(5000));
    assert_eq!(a.last_heartbeat, Some(now));
    assert!(!a.silent);
}

#[test]
fn a_state_written_before_versions_and_latencies_were_kept_still_reads() {
    let agent: sitewarden_engine::state::AgentState = serde_json::from_str(
        r#"{"last_seq": 4, "started_at": null, "last_heartbeat": null, "heartbeat_interval_ms": null, "silent": false}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(agent.version, None);
    assert_eq!((agent.buffered, agent.dropped_total), (0, 0));
    let check: sitewarden_engine::observer::CheckState = serde_json::from_str(
        r#"{"status": "passing", "since": "2026-11-24T03:00:00Z", "last_outcome": "pass", "streak": 5,
            "streak_started": "2026-11-24T02:59:50Z", "last_at": "2026-11-24T03:00:00Z", "last_error": null}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (check.last_http_status, check.last_latency_ms),
        (None, None)
    );
}
