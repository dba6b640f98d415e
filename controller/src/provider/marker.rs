//! The ownership marker sitewarden writes on every record it changes.
//!
//! On Cloudflare the marker lives in the record's `comment` as `sitewarden epoch=7 gen=42`. The
//! epoch is the leader lease revision (a fencing token): a record showing a newer epoch than the
//! change's was written by a newer leader, and the change is refused. The generation orders the
//! plans for one namespace: an older generation is never applied over a newer one. A record
//! without a marker is not ours: it is observed, and only adopted when the namespace opts in.
//!
//! Parsing is tolerant: the marker may sit inside a longer comment an administrator wrote
//! ("failover name, do not edit by hand — sitewarden epoch=7 gen=42"), and writing one keeps that
//! text where it fits.

use std::fmt;

/// The longest comment Cloudflare accepts on the Free plan (paid plans allow 500).
pub const COMMENT_MAX_CHARS: usize = 100;

/// The word that starts a marker.
const PREFIX: &str = "sitewarden";

/// Who last wrote a record, as far as sitewarden is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Marker {
    /// The leader lease revision of the controller that wrote the record.
    pub epoch: u64,
    /// The per-namespace plan generation that the write carried out.
    pub generation: u64,
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX} epoch={} gen={}", self.epoch, self.generation)
    }
}

impl Marker {
    /// Finds a marker anywhere inside `comment`; `None` when there is none (the record is not ours).
    pub fn parse(comment: &str) -> Option<Self> {
        Self::locate(comment).map(|(marker, _, _)| marker)
    }

    /// The comment to write: `existing` with its marker replaced by this one, or this marker
    /// appended to an administrator's text when both fit, or this marker alone.
    pub fn stamp(&self, existing: Option<&str>) -> String {
        let own = self.to_string();
        let Some(existing) = existing.map(str::trim).filter(|e| !e.is_empty()) else {
            return own;
        };
        let stamped = match Self::locate(existing) {
            Some((_, start, end)) => format!("{}{own}{}", &existing[..start], &existing[end..]),
            None => format!("{existing} {own}"),
        };
        if stamped.chars().count() <= COMMENT_MAX_CHARS {
            stamped
        } else {
            own
        }
    }

    /// The marker in `text` and its byte range.
    fn locate(text: &str) -> Option<(Self, usize, usize)> {
        let mut from = 0;
        while let Some(found) = text[from..].find(PREFIX) {
            let start = from + found;
            if let Some((marker, len)) = Self::parse_at(&text[start..]) {
                return Some((marker, start, start + len));
            }
            from = start + PREFIX.len();
        }
        None
    }

    /// Parses `sitewarden epoch=N gen=M` at the start of `text`; returns it and its length.
    fn parse_at(text: &str) -> Option<(Self, usize)> {
        let rest = text.strip_prefix(PREFIX)?;
        let rest_trimmed = rest.trim_start();
        if rest_trimmed.len() == rest.len() {
            return None;
        }
        let (epoch, rest2) = number_after(rest_trimmed, "epoch=")?;
        let rest2_trimmed = rest2.trim_start();
        if rest2_trimmed.len() == rest2.len() {
            return None;
        }
        let (generation, tail) = number_after(rest2_trimmed, "gen=")?;
        Some((Self { epoch, generation }, text.len() - tail.len()))
    }
}

/// `key=123…` at the start of `text`: the number and what follows it.
fn number_after<'a>(text: &'a str, key: &str) -> Option<(u64, &'a str)> {
    let rest = text.strip_prefix(key)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let value = rest[..digits].parse().ok()?;
    Some((value, &rest[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Marker = Marker {
        epoch: 7,
        generation: 42,
    };

    #[test]
    fn formats_and_parses_back() {
        assert_eq!(M.to_string(), "sitewarden epoch=7 gen=42");
        assert_eq!(Marker::parse("sitewarden epoch=7 gen=42"), Some(M));
    }

    #[test]
    fn finds_the_marker_inside_a_longer_comment() {
        let c = "failover name, do not edit - sitewarden epoch=7 gen=42 (ops)";
        assert_eq!(Marker::parse(c), Some(M));
        let twice = "sitewarden is great; sitewarden epoch=7 gen=42";
        assert_eq!(Marker::parse(twice), Some(M));
    }

    #[test]
    fn a_comment_without_a_marker_is_not_ours() {
        for c in [
            "",
            "managed by hand",
            "sitewarden",
            "sitewarden epoch= gen=1",
            "sitewarden epoch=1",
            "sitewarden epoch=1gen=2",
            "sitewardenepoch=1 gen=2",
            "sitewarden epoch=99999999999999999999999 gen=1",
        ] {
            assert_eq!(Marker::parse(c), None, "{c:?}");
        }
    }

    #[test]
    fn stamping_replaces_our_marker_and_keeps_the_admins_text() {
        let newer = Marker {
            epoch: 8,
            generation: 43,
        };
        assert_eq!(newer.stamp(None), "sitewarden epoch=8 gen=43");
        assert_eq!(
            newer.stamp(Some("do not edit - sitewarden epoch=7 gen=42 (ops)")),
            "do not edit - sitewarden epoch=8 gen=43 (ops)"
        );
        assert_eq!(
            newer.stamp(Some("failover name")),
            "failover name sitewarden epoch=8 gen=43"
        );
        let long = "x".repeat(90);
        assert_eq!(newer.stamp(Some(&long)), "sitewarden epoch=8 gen=43");
        let max = Marker {
            epoch: u64::MAX,
            generation: u64::MAX,
        };
        assert!(max.stamp(None).len() <= COMMENT_MAX_CHARS);
        assert_eq!(Marker::parse(&max.stamp(None)), Some(max));
    }
}
