//! The documented audit records (docs/api.md, "`GET /api/v1/history`") read back as their typed
//! kinds and serialize to the same JSON. That every kind has an example there, and that the
//! examples validate against the published schema, is checked beside the schema
//! (`schema_tests.rs`).

use serde_json::Value;

use super::*;

/// The example records of docs/api.md, one of every kind.
fn documented() -> Vec<Value> {
    crate::documented::audit_records()
}

#[test]
fn every_documented_record_reads_as_its_kind_and_writes_back_the_same_json() {
    let examples = documented();
    assert!(examples.len() > 20, "{} examples", examples.len());
    for v in examples {
        let r: AuditRecord =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
        assert!(
            !matches!(r.event, AuditEvent::Unknown(_)),
            "not read as a known kind (a field is misnamed or missing): {v}"
        );
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
        assert_eq!(r.event.kind(), v["event"]["kind"].as_str().unwrap());
    }
}

#[test]
fn the_intake_and_the_engine_refusals_share_a_kind_and_keep_their_own_fields() {
    let engine = documented()
        .into_iter()
        .filter(|v| v["event"]["kind"] == "input_rejected")
        .map(|v| serde_json::from_value::<AuditRecord>(v).unwrap().event)
        .collect::<Vec<_>>();
    assert!(matches!(
        engine.as_slice(),
        [
            AuditEvent::Engine(EngineAudit {
                event: sitewarden_engine::AuditEvent::InputRejected { .. },
                ..
            }),
            AuditEvent::Runtime(RuntimeEvent::IntakeRejected {
                stage: RejectStage::Intake,
                ..
            })
        ]
    ));
}

#[test]
fn a_kind_from_a_newer_controller_is_kept_whole_not_refused() {
    let v = serde_json::json!({"at": "2026-11-24T03:00:12Z", "controller": "ctl-a",
        "role": "leader", "epoch": 8, "event": {"kind": "quorum_vote", "votes": 3}});
    let r: AuditRecord = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(r.role, Role::Leader);
    assert!(matches!(&r.event, AuditEvent::Unknown(e) if e["votes"] == 3));
    assert_eq!(r.event.kind(), "quorum_vote");
    assert_eq!(serde_json::to_value(&r).unwrap(), v);
}

#[test]
fn a_recent_event_is_the_documented_event_with_its_engine_time() {
    for v in documented()
        .into_iter()
        .filter(|v| matches!(v["event"]["kind"].as_str(), Some("decision" | "alert")))
    {
        let recent = serde_json::json!({"at": v["event"]["engine_at"].as_str().unwrap_or("2026-11-24T03:00:12Z"),
            "event": v["event"]});
        let r: RecentEvent = serde_json::from_value(recent.clone()).unwrap();
        assert!(!matches!(r.event, AuditEvent::Unknown(_)), "{recent}");
        assert_eq!(serde_json::to_value(&r).unwrap(), recent);
    }
}
