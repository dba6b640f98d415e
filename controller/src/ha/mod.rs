//! High availability of the controller pair: the leader lease and its fencing epoch.
//!
//! Two controllers run at once; only the one holding the lease in a JetStream KV bucket acts
//! (writes DNS records and state). The rules are pure and live in [`clock`] (renewal,
//! step-down, takeover wait) and [`sightings`] (what the watch of the lease key showed);
//! [`lease`] is the I/O task that campaigns, renews, steps down and releases, publishing a
//! [`Leadership`] snapshot and answering [`LeaseHandle::is_acting_now`] right before each write.
//! [`kv`] creates buckets in a way that works on Debian's nats-server 2.9.10, [`record`] is what
//! the lease key holds, [`presence`] how each controller tells the other it is alive.
//! `docs/operations.md` ("Lease and epoch") explains it for operators.

pub mod clock;
pub mod kv;
pub mod kv_store;
pub mod leadership;
pub mod lease;
pub mod presence;
pub mod record;
pub mod sightings;

pub use clock::{LeaseClock, LeaseClockError, PreviousHolder, Term};
pub use kv::{BucketError, BucketSpec, ensure_bucket};
pub use leadership::{Leadership, LeaseHandle, Role};
pub use lease::{DEFAULT_BUCKET, DEFAULT_KEY, Lease, LeaseConfig};
