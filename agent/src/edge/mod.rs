//! Edge proxies in the agent: steer HAProxy backends to the site where mailboxes are active.
//!
//! The controller's acting leader publishes edge notifications (`sitewarden.v1.edge.notice`,
//! latest kept in KV `sitewarden-edge`/`latest`). With `[[edge.haproxy]]` configured, the agent
//! follows them ([`follow`]): for each backend it sets the servers of the followed DAG's active
//! site `ready` and the others `drain` (or `maint`) through HAProxy's Runtime API
//! ([`runtime_api`]), verifies the result, and keeps it so across reconnects and HAProxy
//! reloads. The rule itself is pure ([`plan`]); an unknown active site changes nothing.
//! Configuration is in [`config`], metrics in [`metrics`]; `docs/edge.md` has the guide.

pub mod config;
pub mod follow;
pub mod metrics;
pub mod plan;
pub mod runtime_api;

pub use config::{EdgeSettings, HaproxyTarget, Passive, RawEdge};
pub use follow::{Follower, Origin, run};
pub use runtime_api::{AdminState, RuntimeApi, RuntimeApiError, ServerState};
