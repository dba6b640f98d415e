//! Property tests for the shared parsers that take input from outside: bus payloads, subjects,
//! collector JSON, ids and durations. Arbitrary bytes and strings never make
//! them panic, and JSON-looking input built from the grammar the parsers expect (not only
//! random noise) reaches their deeper branches. The same parsers are fuzzed with cargo-fuzz
//! (`scripts/fuzz`); this is the short version that runs in every `cargo test`.

use proptest::prelude::*;
use sitewarden_contract::config::duration;
use sitewarden_contract::dbcopy::{parse_date, parse_powershell_json};
use sitewarden_contract::ids::validate_id;
use sitewarden_contract::{DbCopySnapshot, Heartbeat, Observation, subject};

/// A few hundred cases per property keeps the whole file well under a few seconds.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// JSON values whose keys and leaves come from the vocabulary of events and PowerShell output,
/// so generated documents hit real fields with wrong, odd or extreme values.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop::sample::select(vec![
        "schema_version",
        "agent",
        "site",
        "seq",
        "observed_at",
        "target_site",
        "server",
        "check",
        "kind",
        "protocol",
        "outcome",
        "latency_ms",
        "details",
        "copies",
        "status",
        "Status",
        "Name",
        "DatabaseName",
        "MailboxServer",
        "CopyQueueLength",
        "ReplayQueueLength",
        "LastInspectedLogTime",
        "ActivationPreference",
        "value",
        "Value",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "site1",
            "a.b",
            ">",
            "",
            "pass",
            "Healthy",
            "Mounted",
            "/Date(1700000000000)/",
            "/Date(-99999999999999999)/",
            "/Date(1700000000000+0100)/",
            "2026-11-24T03:00:00Z",
            "+275760-09-13T00:00:00Z",
            "9999-12-31T23:59:60Z",
        ])
        .prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn event_payloads_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<Observation>(&bytes);
        let _ = serde_json::from_slice::<DbCopySnapshot>(&bytes);
        let _ = serde_json::from_slice::<Heartbeat>(&bytes);
    }

    #[test]
    fn event_shaped_json_never_panics(doc in json_value()) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        let _ = serde_json::from_slice::<Observation>(&bytes);
        let _ = serde_json::from_slice::<DbCopySnapshot>(&bytes);
        let _ = serde_json::from_slice::<Heartbeat>(&bytes);
        let _ = parse_powershell_json(&doc.to_string());
    }

    #[test]
    fn collector_output_never_panics(text in ".{0,400}") {
        let _ = parse_powershell_json(&text);
        let _ = parse_date(&text);
    }

    #[test]
    fn dates_never_panic(ms in any::<i64>(), tz in "[+-][0-9]{4}", tail in ".{0,4}") {
        let _ = parse_date(&format!("/Date({ms})/"));
        let _ = parse_date(&format!("/Date({ms}{tz})/{tail}"));
    }

    #[test]
    fn subjects_and_ids_never_panic(text in ".{0,120}") {
        let _ = subject::parse(&text);
        let _ = subject::parse(&format!("sitewarden.v1.{text}"));
        let _ = validate_id(&text);
        let _ = duration::parse(&text);
    }
}
