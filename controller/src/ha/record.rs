//! What the lease key holds: who holds the lease, which run of that controller, and whether it
//! was released.
//!
//! The value is small JSON, `{"holder":"ctl-a","incarnation":"5f0c…","released":false}`. The
//! holder id is what operators and the standby see; the incarnation tells this run of a
//! controller apart from an earlier run with the same id, so a restarted controller never
//! mistakes its predecessor's lease for its own. A graceful release is written as a record with
//! `released: true` (compare-and-set on the holder's revision), which proves that the holder
//! stopped acting before it wrote it. A value that is not such JSON (someone wrote the key by
//! hand) is kept as raw text and treated as held by an unknown holder.

use serde::{Deserialize, Serialize};

/// The lease key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The controller's configured id (e.g. `ctl-site1`).
    pub holder: String,
    /// Unique per run of the controller process.
    pub incarnation: String,
    /// The holder gave the lease up after it stopped acting.
    #[serde(default)]
    pub released: bool,
}

/// A decoded lease value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseValue {
    /// A record written by a sitewarden controller.
    Record(LeaseRecord),
    /// Anything else, as lossy UTF-8 text.
    Foreign(String),
}

impl LeaseRecord {
    /// The value to write when holding the lease.
    pub fn held(holder: &str, incarnation: &str) -> Self {
        Self {
            holder: holder.to_owned(),
            incarnation: incarnation.to_owned(),
            released: false,
        }
    }

    /// The value to write when releasing the lease.
    pub fn release(&self) -> Self {
        Self {
            released: true,
            ..self.clone()
        }
    }

    /// The bytes written to the key.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of strings and a bool cannot fail; fall back to an empty object
        // rather than panic.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl LeaseValue {
    /// Decodes the key's value; never fails.
    pub fn decode(raw: &[u8]) -> Self {
        match serde_json::from_slice::<LeaseRecord>(raw) {
            Ok(r) => Self::Record(r),
            Err(_) => Self::Foreign(String::from_utf8_lossy(raw).into_owned()),
        }
    }

    /// Who holds the lease according to this value; `None` once released.
    pub fn holder(&self) -> Option<String> {
        match self {
            Self::Record(r) if r.released => None,
            Self::Record(r) => Some(r.holder.clone()),
            Self::Foreign(text) => Some(format!("unknown ({text:?})")),
        }
    }

    /// Whether this is a graceful release.
    pub fn is_release(&self) -> bool {
        matches!(self, Self::Record(r) if r.released)
    }

    /// Whether this value (held or released) was written by the given run of a controller.
    pub fn is_written_by(&self, incarnation: &str) -> bool {
        matches!(self, Self::Record(r) if r.incarnation == incarnation)
    }

    /// Whether this value was written by the given run of a controller while holding the lease.
    pub fn is_held_by(&self, incarnation: &str) -> bool {
        matches!(self, Self::Record(r) if !r.released && r.incarnation == incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_names_its_holder() {
        let held = LeaseRecord::held("ctl-a", "i1");
        let v = LeaseValue::decode(&held.encode());
        assert_eq!(v, LeaseValue::Record(held.clone()));
        assert_eq!(v.holder().as_deref(), Some("ctl-a"));
        assert!(v.is_held_by("i1"));
        assert!(
            !v.is_held_by("i2"),
            "a restarted controller is another holder"
        );
        assert!(!v.is_release());

        let released = LeaseValue::decode(&held.release().encode());
        assert!(released.is_release());
        assert_eq!(released.holder(), None);
        assert!(!released.is_held_by("i1"));
        assert!(released.is_written_by("i1") && !released.is_written_by("i2"));
    }

    #[test]
    fn a_foreign_value_is_held_by_an_unknown_holder() {
        let v = LeaseValue::decode(b"written by hand");
        assert!(matches!(v, LeaseValue::Foreign(_)));
        assert!(v.holder().is_some_and(|h| h.contains("written by hand")));
        assert!(!v.is_release());
        let v = LeaseValue::decode(&[0xff, 0xfe]);
        assert!(v.holder().is_some());
    }
}
