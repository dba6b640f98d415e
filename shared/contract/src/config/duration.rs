//! Human-friendly durations in configuration files: `"2s"`, `"500ms"`, `"10m"`, `"1h 30m"`.
//!
//! Use as `#[serde(with = "sitewarden_shared::config::duration")]` on a `Duration` field, or
//! `duration::option` on an `Option<Duration>`. Bounds (e.g. an interval of at least 500 ms) are
//! checked by the validating code, which knows the key and can say what is allowed.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `"2s"`, `"1500ms"`, `"5m"`.
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write it like \"500ms\", \"2s\", \"10m\" or \"1h\"")
    })
}

/// Formats a duration the way `parse` reads it.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde deserializer for a `Duration` field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// Serde serializer for a `Duration` field.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// The same for `Option<Duration>`.
pub mod option {
    use super::*;

    /// Serde deserializer for an `Option<Duration>` field.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }

    /// Serde serializer for an `Option<Duration>` field.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_common_forms() {
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse("2 parsecs").unwrap_err().contains("\"2s\""));
    }
}
