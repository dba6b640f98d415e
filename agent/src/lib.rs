//! `sitewarden-agent`: probes client-access servers and database copies from inside a site and
//! across sites, and publishes every result to NATS. It judges nothing; the controller does.
//!
//! Entry points: [`run::run`] (the daemon, given a config and a shutdown token) and
//! [`probe_once::run`] (every check once, as a table, for setting up).

// Documentation is part of the API; product code never unwraps.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod dbcopy;
pub mod edge;
pub mod metrics;
pub mod probe;
pub mod probe_once;
pub mod publish;
pub mod run;
pub mod server;

pub use config::AgentConfig;
