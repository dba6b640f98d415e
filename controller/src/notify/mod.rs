//! Chat-ops alert delivery: tell humans what happened, why, what sitewarden did and how to act.
//!
//! The engine emits [`Alert`](crate::engine::Alert) commands; the runtime hands each one to a
//! [`Dispatcher`], whose `send` never blocks (a bounded queue; overflow is counted). Behind it a
//! [`Shaper`] de-duplicates repeats and folds bursts about one subject into a single summary, and
//! one task per sink filters by minimum severity, rate-limits with a token bucket and retries
//! failed deliveries with backoff. [`render`] turns a message into words once; `slack`, `teams`
//! and `webhook` shape those words into each sink's JSON. Webhook URLs are secrets
//! ([`secrecy::SecretString`]): they never reach logs, `Debug` output or error messages.
//! Configuration (`[[alerts]]`) is in [`config`]; the message format is in `docs/alerts.md`.

pub mod config;
pub mod dispatcher;
pub mod render;
pub mod shaper;
pub mod sink;
pub mod slack;
pub mod teams;
pub mod webhook;

pub use config::{Rate, RawAlerts, RawSink, SinkConfig, SinkKind};
pub use dispatcher::{Dispatcher, Stats, Tuning};
pub use render::{Message, Rendered};
pub use shaper::{Shaped, Shaper, Windows};
pub use sink::{DeliveryError, Sink};
