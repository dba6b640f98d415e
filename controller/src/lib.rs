//! sitewarden's controller: consumes agent events, decides each site's state and where every
//! managed name should point. The decision engine (`engine`) is pure; the runtime around it
//! does the I/O. `config` loads and validates the controller's TOML configuration.

pub mod cli;
pub mod config;
pub mod dns;
pub mod edge;
pub mod engine;
pub mod ha;
pub mod notify;
pub mod provider;
pub mod runtime;
