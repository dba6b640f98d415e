//! sitewarden's controller runtime: consumes agent events, feeds them to the pure decision
//! engine (`sitewarden-engine`, re-exported as `engine`) and performs the commands it returns —
//! DNS changes through a provider, edge notices, alerts, audit — while holding the leader lease.
//! `settings_file` parses the configuration file once, at the composition root, into the
//! engine's decision config and the runtime's settings.

// Functions stay short enough to read and test on their own (threshold in clippy.toml);
// documentation is part of the API; product code never unwraps.
#![warn(clippy::too_many_lines, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dns;
pub mod edge;
pub mod env_file;
pub mod ha;
pub mod notify;
pub mod outbound;
pub mod provider;
pub mod runtime;
pub mod settings_file;

/// The decision engine (`sitewarden-engine`), re-exported so the runtime's paths read as before.
pub use sitewarden_engine as engine;
/// The decision configuration (`sitewarden_engine::config`).
pub use sitewarden_engine::config;
