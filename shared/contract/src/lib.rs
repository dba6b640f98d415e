//! sitewarden's event contract: what agents, controllers and edge proxies say to each other,
//! and the building blocks every configuration file is parsed with.
//!
//! This crate is pure: no tokio, no sockets, no clock reads. The agent, the controller's
//! decision engine and the operator CLI all link it, so both sides of the bus agree on
//! identifiers, subjects and payloads, and a config error reads the same in every binary.
//! The NATS and HTTP glue that moves these values lives beside it in `sitewarden-shared`.

// Documentation is part of the API; product code never unwraps.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod dbcopy;
pub mod dns_name;
pub mod edge;
pub mod event;
pub mod exposition;
pub mod ids;
#[cfg(feature = "manual")]
pub mod manual;
pub mod schema;
pub mod subject;
pub mod terminal;

pub use dns_name::{DnsName, DnsNameError};
pub use edge::{EdgeNotification, SiteVerdict};
pub use event::{
    ActiveSyncDetails, CheckKind, CollectOutcome, CollectVia, DbCopySnapshot, ErrorClass, Event,
    EventMeta, Heartbeat, Observation, ObservationDetails, Outcome, SCHEMA_VERSION, TlsDetails,
};
pub use ids::{AgentId, CheckName, IdError, ServerId, SiteId};
