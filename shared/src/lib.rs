//! sitewarden's shared crate: the v1 event contract, configuration building blocks and NATS glue.
//!
//! Agents and controllers link this crate so both sides of the bus agree on subjects, payloads
//! and connection behaviour. Nothing here decides anything about site health.

pub mod config;
pub mod dbcopy;
pub mod edge;
pub mod event;
pub mod exposition;
#[cfg(feature = "http-server")]
pub mod http_server;
pub mod ids;
pub mod nats;
pub mod schema;
pub mod shutdown;
pub mod subject;
pub mod terminal;

pub use edge::{EdgeNotification, SiteVerdict};
pub use event::{
    ActiveSyncDetails, CheckKind, CollectOutcome, CollectVia, DbCopySnapshot, ErrorClass, Event,
    EventMeta, Heartbeat, Observation, ObservationDetails, Outcome, SCHEMA_VERSION, TlsDetails,
};
pub use ids::{AgentId, CheckName, IdError, ServerId, SiteId};
