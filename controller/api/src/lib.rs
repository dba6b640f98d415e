//! The operator API's contract (`/api/v1/…`): one typed definition of every request and
//! response, used by the controller that serves them, the `sitewarden` CLI that sends them and
//! the tests that check them, so a renamed field is a compile error, not a silent `null`.
//!
//! [`bounds`] holds the limits on durations both sides check (`for`, `since`), so the CLI
//! refuses a bad flag before sending, in the API's own words. `docs/api.md` documents the wire
//! format; this crate is its source of truth.

// Functions stay short enough to read and test on their own (threshold in clippy.toml);
// documentation is part of the API; product code never unwraps.
#![warn(clippy::too_many_lines, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod bounds;
pub mod schema;
pub mod wire;

#[cfg(test)]
mod documented;

pub use audit::{AuditEvent, AuditRecord, EngineAudit, RecentEvent, Role, RuntimeEvent};
pub use bounds::{DurationRefused, HOLD_MAX, HOLD_MIN, SINCE_MAX, hold_duration, since_time};
