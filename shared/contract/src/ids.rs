//! Validated identifiers: site, agent, server and check names.
//!
//! These names become NATS subject tokens (`sitewarden.v1.obs.<site>.<agent>...`), metric labels
//! and KV keys, so they are restricted to a conservative alphabet at the edge of the system:
//! ASCII letters, digits, `-` and `_`, 1 to 64 characters. A dot, a wildcard (`*`, `>`), a space
//! or anything else is rejected with a message that names the offending character, so an id that
//! would split or widen a subject can never enter the program.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Longest id we accept; keeps subjects and metric labels short.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The empty string.
    #[error("is empty; use 1 to {MAX_ID_LEN} characters from A-Z a-z 0-9 - _")]
    Empty,
    /// Longer than [`MAX_ID_LEN`] (the length found).
    #[error("is {0} characters long; use at most {MAX_ID_LEN}")]
    TooLong(usize),
    /// A character a subject token cannot carry (the first one found).
    #[error(
        "contains {0:?}, which cannot appear in a NATS subject token; use only A-Z a-z 0-9 - _"
    )]
    BadChar(char),
}

/// Checks that `s` can be used as one NATS subject token and metric label.
pub fn validate_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(IdError::BadChar(c)),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
        #[serde(transparent)]
        #[schemars(transparent)]
        pub struct $name(
            #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] String,
        );

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate_id(&s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(|e| {
                    serde::de::Error::custom(format!(concat!(stringify!($name), " {}"), e))
                })
            }
        }
    };
}

id_type!(
    /// A datacenter (or witness location), e.g. `site1`.
    SiteId
);
id_type!(
    /// One agent process, unique across the deployment, e.g. `site1-agent1`.
    AgentId
);
id_type!(
    /// A client-access or mailbox server as named in the configuration, e.g. `cas1`.
    ServerId
);
id_type!(
    /// A configured check, unique within one agent, e.g. `eas` or `owa-health`.
    CheckName
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["site1", "site-2", "a_b", "X"] {
            assert!(SiteId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_subject_breakers_and_names_the_character() {
        assert_eq!(validate_id("a.b"), Err(IdError::BadChar('.')));
        assert_eq!(validate_id("a*"), Err(IdError::BadChar('*')));
        assert_eq!(validate_id(">"), Err(IdError::BadChar('>')));
        assert_eq!(validate_id("a b"), Err(IdError::BadChar(' ')));
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(validate_id(&"x".repeat(65)), Err(IdError::TooLong(65)));
        let err = SiteId::new("site.1").unwrap_err().to_string();
        assert!(err.contains("'.'"), "{err}");
    }

    #[test]
    fn deserialize_validates() {
        let bad: Result<SiteId, _> = serde_json::from_str("\"site.1\"");
        assert!(bad.unwrap_err().to_string().contains("SiteId"));
        let good: SiteId = serde_json::from_str("\"site1\"").unwrap();
        assert_eq!(good.as_str(), "site1");
    }
}
