//! sitewarden's bus and server glue: NATS connections, credentials, the capped HTTP/1 accept
//! loop, the metrics both `/metrics` pages share (build and process) and the shutdown signal,
//! for the processes that do I/O (agent and controller runtime).
//!
//! The pure event contract lives in `sitewarden-contract` and is re-exported here, so code that
//! already talks to the bus names one crate. Nothing here decides anything about site health.

// Documentation is part of the API; product code never unwraps.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "http-server")]
pub mod http_server;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod nats;
pub mod pacing;
pub mod service;
pub mod shutdown;

pub use sitewarden_contract::{
    ActiveSyncDetails, AgentId, CheckKind, CheckName, CollectOutcome, CollectVia, DbCopySnapshot,
    EdgeNotification, ErrorClass, Event, EventMeta, Heartbeat, IdError, Observation,
    ObservationDetails, Outcome, SCHEMA_VERSION, ServerId, SiteId, SiteVerdict, TlsDetails, config,
    dbcopy, edge, event, exposition, ids, schema, subject, terminal,
};
