//! A validated DNS name: a managed name (namespace) or a CNAME target.
//!
//! DNS compares names without regard to ASCII case, and a trailing dot only says the name is
//! fully qualified. [`DnsName`] settles both once, on construction: the name is checked
//! (1 to 253 characters, dot-separated labels of 1 to 63 ASCII letters, digits, `-` or `_`),
//! then stored lowercase without a trailing dot. Equality, ordering, hashing and map lookups
//! are therefore case-insensitive by construction, and no caller needs to fold case again.
//! On the wire it is a plain JSON string, exactly as before the type existed.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Longest name accepted, without the trailing dot (RFC 1035's 255 octets on the wire).
pub const MAX_DNS_NAME_LEN: usize = 253;
/// Longest label accepted.
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a valid DNS name. Every message ends with the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    /// The empty string (or a lone dot).
    #[error("is empty; write a DNS name like \"mail.example.com\"")]
    Empty,
    /// Longer than [`MAX_DNS_NAME_LEN`] (the length found).
    #[error(
        "is {0} characters long; a DNS name has at most {MAX_DNS_NAME_LEN}, like \"mail.example.com\""
    )]
    TooLong(usize),
    /// Two dots in a row, or a leading dot.
    #[error(
        "has an empty label (two dots in a row or a leading dot); write it like \"mail.example.com\""
    )]
    EmptyLabel,
    /// A label longer than [`MAX_LABEL_LEN`] (the label found).
    #[error(
        "has label {0:?} longer than {MAX_LABEL_LEN} characters; write it like \"mail.example.com\""
    )]
    LabelTooLong(String),
    /// A character outside the accepted alphabet (the first one found).
    #[error(
        "contains {0:?}; a DNS name has labels of A-Z a-z 0-9 - _ separated by dots, like \"mail.example.com\""
    )]
    BadChar(char),
}

/// A managed name or target: validated, lowercase, without a trailing dot. Read in any case,
/// with or without a trailing dot; always written lowercase without one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct DnsName(
    #[schemars(
        length(min = 1, max = 254),
        regex(pattern = r"^[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?$")
    )]
    String,
);

impl DnsName {
    /// Validates `s` and stores it lowercase, without a trailing dot: `Mail.Example.COM.`
    /// becomes `mail.example.com`.
    pub fn new(s: &str) -> Result<Self, DnsNameError> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(DnsNameError::Empty);
        }
        if s.len() > MAX_DNS_NAME_LEN {
            return Err(DnsNameError::TooLong(s.len()));
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(DnsNameError::EmptyLabel);
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(DnsNameError::BadChar(c));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(DnsNameError::LabelTooLong(label.to_owned()));
            }
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// The name as a string slice (lowercase, no trailing dot).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads as the normalised string, so `&DnsName` goes wherever a `&str` is read; the reverse
/// always goes through [`DnsName::new`].
impl std::ops::Deref for DnsName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for DnsName {
    type Err = DnsNameError;
    fn from_str(s: &str) -> Result<Self, DnsNameError> {
        Self::new(s)
    }
}

/// Sound because the stored string is already normalised: a lookup with `&str` finds the entry
/// only when given the lowercase form without a trailing dot (parse outside input first).
impl std::borrow::Borrow<str> for DnsName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for DnsName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for DnsName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de> Deserialize<'de> for DnsName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(|e| serde::de::Error::custom(format!("DNS name {s:?} {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_trailing_dot() {
        let n = DnsName::new("Mail.Example.COM.").unwrap();
        assert_eq!(n.as_str(), "mail.example.com");
        assert_eq!(n, DnsName::new("mail.example.com").unwrap());
        assert_eq!(n.to_string(), "mail.example.com");
        let parsed: DnsName = "MAIL-site1.example.com".parse().unwrap();
        assert_eq!(parsed.as_str(), "mail-site1.example.com");
    }

    #[test]
    fn map_lookup_is_case_insensitive_by_construction() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(DnsName::new("Mail.Example.com").unwrap(), 1);
        assert_eq!(m.get("mail.example.com"), Some(&1));
        assert_eq!(m.get(&DnsName::new("MAIL.EXAMPLE.COM.").unwrap()), Some(&1));
    }

    #[test]
    fn rejects_with_a_message_naming_the_problem_and_the_form() {
        assert_eq!(DnsName::new(""), Err(DnsNameError::Empty));
        assert_eq!(DnsName::new("."), Err(DnsNameError::Empty));
        assert_eq!(DnsName::new("a..b"), Err(DnsNameError::EmptyLabel));
        assert_eq!(DnsName::new(".a"), Err(DnsNameError::EmptyLabel));
        assert_eq!(DnsName::new("a b.com"), Err(DnsNameError::BadChar(' ')));
        assert_eq!(
            DnsName::new("*.example.com"),
            Err(DnsNameError::BadChar('*'))
        );
        let long_label = "x".repeat(64);
        assert_eq!(
            DnsName::new(&format!("{long_label}.com")),
            Err(DnsNameError::LabelTooLong(long_label))
        );
        let long = vec!["y".repeat(63); 4].join(".");
        assert_eq!(DnsName::new(&long), Err(DnsNameError::TooLong(255)));
        assert!(DnsName::new(&long[..253]).is_ok());
        let msg = DnsName::new("mail/example").unwrap_err().to_string();
        assert!(
            msg.contains("'/'") && msg.contains("mail.example.com"),
            "{msg}"
        );
    }

    #[test]
    fn serde_is_a_plain_string_and_deserialize_validates() {
        let n: DnsName = serde_json::from_str("\"Mail.Example.com.\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"mail.example.com\"");
        let back: DnsName = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back, n);
        let err = serde_json::from_str::<DnsName>("\"bad name\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DNS name \\\"bad name\\\"") || err.contains("\"bad name\""),
            "{err}"
        );
        assert!(err.contains("mail.example.com"), "{err}");
    }
}
