//! Serialize → parse is the identity for every event type: what an agent publishes is exactly
//! what the controller reads, for any ids, counters, times, texts and optional parts.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use sitewarden_contract::dbcopy::{CopyStatus, DbCopy};
use sitewarden_contract::{
    ActiveSyncDetails, AgentId, CheckKind, CheckName, CollectOutcome, CollectVia, DbCopySnapshot,
    ErrorClass, Heartbeat, Observation, ObservationDetails, Outcome, ServerId, SiteId, TlsDetails,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid id: 1 to 64 of `A-Za-z0-9-_`.
fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// Any instant chrono can write and read back, at nanosecond precision.
fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // Years 1 to 9999: RFC 3339 without an expanded year.
    (-62_135_596_800i64..253_402_300_799i64, 0u32..1_000_000_000)
        .prop_map(|(s, ns)| Utc.timestamp_opt(s, ns).single().unwrap())
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn tls() -> impl Strategy<Value = TlsDetails> {
    (
        time(),
        any::<i64>(),
        any::<bool>(),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(
            |(not_after, days_left, expiring_soon, sans, missing_names)| TlsDetails {
                not_after,
                days_left,
                expiring_soon,
                sans,
                missing_names,
            },
        )
}

fn activesync() -> impl Strategy<Value = ActiveSyncDetails> {
    (
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(text(), 0..4),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(id().prop_map(|s| SiteId::new(s).unwrap())),
        prop::option::of(text()),
        any::<bool>(),
    )
        .prop_map(
            |(
                protocol_versions,
                protocol_commands,
                server_version,
                redirect_location,
                redirect_site,
                retry_after,
                authenticated,
            )| ActiveSyncDetails {
                protocol_versions,
                protocol_commands,
                server_version,
                redirect_location,
                redirect_site,
                retry_after,
                authenticated,
            },
        )
}

fn details() -> impl Strategy<Value = ObservationDetails> {
    (
        prop::option::of(text()),
        prop::option::of(activesync()),
        prop::option::of(tls()),
        prop::option::of(text()),
    )
        .prop_map(|(backend_fqdn, activesync, tls, note)| ObservationDetails {
            backend_fqdn,
            activesync,
            tls,
            note,
        })
}

fn observation() -> impl Strategy<Value = Observation> {
    let head = (
        any::<u32>(),
        id(),
        id(),
        any::<u64>(),
        time(),
        id(),
        id(),
        id(),
    );
    let body = (
        prop::sample::select(vec![
            CheckKind::ExchangeHealthcheck,
            CheckKind::Activesync,
            CheckKind::Http,
            CheckKind::Tcp,
        ]),
        text(),
        prop::sample::select(vec![Outcome::Pass, Outcome::Fail]),
        prop::option::of(any::<u16>()),
        any::<u64>(),
        prop::option::of(prop::sample::select(vec![
            ErrorClass::ConnectRefused,
            ErrorClass::Timeout,
            ErrorClass::Connect,
            ErrorClass::Tls,
            ErrorClass::HttpStatus,
            ErrorClass::Body,
            ErrorClass::Header,
            ErrorClass::RedirectLoop,
            ErrorClass::RedirectUnknown,
            ErrorClass::Throttled,
            ErrorClass::Protocol,
        ])),
        prop::option::of(text()),
        details(),
    );
    (head, body).prop_map(
        |(
            (schema_version, agent, site, seq, observed_at, target_site, server, check),
            (kind, protocol, outcome, http_status, latency_ms, error_class, error, details),
        )| Observation {
            schema_version,
            agent: AgentId::new(agent).unwrap(),
            site: SiteId::new(site).unwrap(),
            seq,
            observed_at,
            target_site: SiteId::new(target_site).unwrap(),
            server: ServerId::new(server).unwrap(),
            check: CheckName::new(check).unwrap(),
            kind,
            protocol,
            outcome,
            http_status,
            latency_ms,
            error_class,
            error,
            details,
        },
    )
}

fn copy() -> impl Strategy<Value = DbCopy> {
    (
        (text(), text(), text()),
        // Statuses as parsing makes them: a known name (any case) or verbatim other text.
        text().prop_map(CopyStatus::from),
        prop::option::of(text()),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        prop::option::of(text()),
        prop::option::of(time()),
        prop::option::of(any::<u32>()),
        prop::option::of(text()),
    )
        .prop_map(
            |(
                (name, database, server),
                status,
                active_database_copy,
                activation_suspended,
                copy_queue_length,
                replay_queue_length,
                content_index_state,
                last_inspected_log_time,
                activation_preference,
                error_message,
            )| DbCopy {
                name,
                database,
                server,
                status,
                active_database_copy,
                activation_suspended,
                copy_queue_length,
                replay_queue_length,
                content_index_state,
                last_inspected_log_time,
                activation_preference,
                error_message,
            },
        )
}

fn snapshot() -> impl Strategy<Value = DbCopySnapshot> {
    (
        (any::<u32>(), id(), id(), any::<u64>(), time(), id(), text()),
        prop::sample::select(vec![CollectVia::Command, CollectVia::Push]),
        prop::sample::select(vec![CollectOutcome::Ok, CollectOutcome::Error]),
        prop::option::of(text()),
        prop::collection::vec(copy(), 0..4),
    )
        .prop_map(
            |(
                (schema_version, agent, site, seq, observed_at, source, dag),
                via,
                outcome,
                error,
                copies,
            )| {
                DbCopySnapshot {
                    schema_version,
                    agent: AgentId::new(agent).unwrap(),
                    site: SiteId::new(site).unwrap(),
                    seq,
                    observed_at,
                    source: CheckName::new(source).unwrap(),
                    dag,
                    via,
                    outcome,
                    error,
                    copies,
                }
            },
        )
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        (any::<u32>(), id(), id(), any::<u64>(), time(), time()),
        (
            text(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (schema_version, agent, site, seq, observed_at, started_at),
                (version, interval_ms, checks, buffered, dropped_total),
            )| Heartbeat {
                schema_version,
                agent: AgentId::new(agent).unwrap(),
                site: SiteId::new(site).unwrap(),
                seq,
                observed_at,
                started_at,
                version,
                interval_ms,
                checks,
                buffered,
                dropped_total,
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn observations_round_trip(o in observation()) {
        let json = serde_json::to_vec(&o).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Observation>(&json).unwrap(), o);
    }

    #[test]
    fn dbcopy_snapshots_round_trip(s in snapshot()) {
        let json = serde_json::to_vec(&s).unwrap();
        prop_assert_eq!(serde_json::from_slice::<DbCopySnapshot>(&json).unwrap(), s);
    }

    #[test]
    fn heartbeats_round_trip(h in heartbeat()) {
        let json = serde_json::to_vec(&h).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Heartbeat>(&json).unwrap(), h);
    }
}
