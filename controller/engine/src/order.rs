//! The two counters that order record changes, as types that cannot be swapped.
//!
//! An [`Epoch`] is the leader lease's fencing token: the revision at which a controller won the
//! lease, written into every change it makes, so a record or a bookkeeping entry of a newer
//! epoch fences an older leader off. A [`Generation`] numbers the engine's record plans: every
//! `SetRecord` carries the next one, and nothing older than the newest applied is ever written.
//! Both travel as plain numbers on the wire and in markers (`serde(transparent)`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The leader lease's fencing token (0: no lease held yet).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
#[derive(JsonSchema)]
pub struct Epoch(pub u64);

/// The number of a record plan (0: none issued yet).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
#[derive(JsonSchema)]
pub struct Generation(pub u64);

impl Epoch {
    /// The number, for the wire, a marker or a metric.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl Generation {
    /// The number, for the wire, a marker or a metric.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The generation after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
