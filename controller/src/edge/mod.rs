//! Edge proxies: the versioned notification the leader issues, and its signed webhooks.
//!
//! The engine emits [`EdgeNotice`](crate::engine::EdgeNotice) commands whose generation counts
//! per controller process. [`notification`] turns one into the wire type
//! [`EdgeNotification`](sitewarden_shared::EdgeNotification), adding the controller id and the
//! leader epoch so receivers can order notices across a leader change by `(epoch, generation)`.
//! The runtime publishes it on `sitewarden.v1.edge.notice`, keeps it in the KV bucket
//! `sitewarden-edge` (key `latest`, only ever moving forward: [`store`]) and hands it to the [`WebhookDeliverer`], which POSTs it to
//! every `[[edge.webhooks]]` endpoint signed with HMAC-SHA256 ([`signature`]), one worker per
//! endpoint, newest notice first, retrying with jittered exponential backoff. Configuration is in
//! [`config`]; `docs/edge.md` is the receiver's guide.

pub mod config;
pub mod deliver;
pub mod notification;
pub mod signature;
pub mod store;

pub use config::{EdgeConfig, RawEdge, RawWebhook, WebhookEndpoint, WebhookRetry, validate};
pub use deliver::{DeliveryOutcome, WebhookDeliverer, WebhookError};
pub use notification::{notification, site_verdict};
pub use signature::{
    DEFAULT_REPLAY_WINDOW, SIGNATURE_HEADER, TIMESTAMP_HEADER, VerifyError, sign, verify,
};
pub use store::{StoreError, Stored, bucket_spec, get_latest, put_latest};
