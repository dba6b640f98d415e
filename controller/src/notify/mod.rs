//! Chat-ops alert delivery: tell humans what happened, why, what sitewarden did and how to act.
//!
//! The engine emits [`Alert`](crate::engine::Alert) commands; the runtime hands each one to a
//! [`Dispatcher`], whose `send` never blocks (a bounded queue; overflow is counted). Behind it a
//! [`Shaper`] de-duplicates repeats and folds repeats of a condition (subject, kind, severity)
//! inside a burst window into one summary, never holding back a condition's first alert or an
//! escalation; one task per sink filters by minimum severity, orders its [`outbox`] (most severe
//! first, each subject in order), rate-limits all but criticals with a token bucket and retries
//! failed deliveries with backoff without holding back other subjects. [`render`] turns a message into words once; `slack`, `teams`
//! and `webhook` shape those words into each sink's JSON. Webhook URLs are secrets
//! ([`secrecy::SecretString`]): they never reach logs, `Debug` output or error messages.
//! Configuration (`[[alerts]]`) is in [`config`]; the message format is in `docs/alerts.md`.

pub mod config;
pub mod dispatcher;
pub mod outbox;
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
