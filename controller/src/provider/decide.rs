//! The compare half of the emulated compare-and-set: given the record as read and a change,
//! write, do nothing, or refuse. Pure, so every rule has a plain unit test.
//!
//! The rules, in order:
//! 1. no CNAME record → [`Refusal::Missing`] (records are created by hand, once);
//! 2. the marker shows a newer epoch → [`Refusal::NewerEpoch`] (fencing: a newer leader wrote it);
//! 3. the marker shows a newer generation → [`Refusal::OlderGeneration`] (generations are
//!    monotonic per namespace across epochs, persisted with the leader state);
//! 4. target, TTL and marker already exactly as the change would write them → nothing to do;
//! 5. no marker and the change does not adopt unmarked records → [`Refusal::NotOurs`];
//! 6. content differs from the change's `expected` → [`Refusal::Drift`] (someone else changed it),
//!    unless the record already points at the target (then only the marker is restamped);
//! 7. otherwise write content, marker and (when the namespace sets one) TTL.
//!
//! When the target is in place under an older marker of ours, the record is still written: the
//! new epoch must be stamped on it, or a deposed leader could later overwrite it.

use super::{Change, RecordState, Refusal};

/// What to send in the write: only these fields change; `proxied` and anything else is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// The new CNAME target.
    pub content: String,
    /// The new comment, carrying the change's marker.
    pub comment: String,
    /// The new TTL, when the namespace sets one.
    pub ttl: Option<u32>,
}

/// The decision for one change against one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this write.
    Write(Patch),
    /// The record already shows the change.
    InPlace,
    /// Do not write.
    Refuse(Refusal),
}

/// Decides what to do with `change` given the record `current`.
pub fn decide(change: &Change, current: &RecordState) -> Decision {
    let Some(content) = current.content.as_deref() else {
        return Decision::Refuse(Refusal::Missing);
    };
    let ours = change.marker();
    if let Some(found) = current.marker {
        if found.epoch > ours.epoch {
            return Decision::Refuse(Refusal::NewerEpoch { found });
        }
        if found.generation > ours.generation {
            return Decision::Refuse(Refusal::OlderGeneration { found });
        }
    }
    let points_at_target = current.points_at(&change.target);
    let ttl_ok = change.ttl.is_none() || change.ttl == current.ttl;
    if points_at_target && ttl_ok && current.marker == Some(ours) {
        return Decision::InPlace;
    }
    if current.marker.is_none() && !change.adopt_unmarked {
        return Decision::Refuse(Refusal::NotOurs {
            found: current.clone(),
        });
    }
    if let Some(expected) = change.expected.as_deref()
        && !points_at_target
        && !super::same_host(content, expected)
    {
        return Decision::Refuse(Refusal::Drift {
            found: current.clone(),
        });
    }
    Decision::Write(Patch {
        content: change.target.clone(),
        comment: ours.stamp(current.comment.as_deref()),
        ttl: change.ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Marker;

    fn record(content: &str, marker: Option<(u64, u64)>) -> RecordState {
        let marker = marker.map(|(epoch, generation)| Marker { epoch, generation });
        RecordState {
            name: "mail.example.com".into(),
            content: Some(content.into()),
            ttl: Some(60),
            proxied: Some(false),
            marker,
            provider_id: Some("r1".into()),
            comment: marker.map(|m| m.to_string()),
        }
    }

    fn change(target: &str, epoch: u64, generation: u64) -> Change {
        Change {
            name: "mail.example.com".into(),
            target: target.into(),
            ttl: None,
            expected: Some("mail-rr.example.com".into()),
            epoch,
            generation,
            adopt_unmarked: false,
        }
    }

    #[test]
    fn a_marked_record_at_the_expected_target_is_written() {
        let d = decide(
            &change("mail-site2.example.com", 7, 43),
            &record("mail-rr.example.com", Some((7, 42))),
        );
        assert_eq!(
            d,
            Decision::Write(Patch {
                content: "mail-site2.example.com".into(),
                comment: "sitewarden epoch=7 gen=43".into(),
                ttl: None,
            })
        );
    }

    #[test]
    fn a_newer_epoch_fences_the_change_off() {
        let d = decide(
            &change("mail-site2.example.com", 7, 50),
            &record("mail-rr.example.com", Some((8, 1))),
        );
        assert!(matches!(d, Decision::Refuse(Refusal::NewerEpoch { found }) if found.epoch == 8));
    }

    #[test]
    fn an_older_generation_is_never_applied() {
        let d = decide(
            &change("mail-site2.example.com", 7, 41),
            &record("mail-rr.example.com", Some((7, 42))),
        );
        assert!(matches!(
            d,
            Decision::Refuse(Refusal::OlderGeneration { .. })
        ));
    }

    #[test]
    fn the_same_change_again_is_already_in_place() {
        let d = decide(
            &change("mail-site2.example.com.", 7, 43),
            &record("MAIL-SITE2.example.com", Some((7, 43))),
        );
        assert_eq!(d, Decision::InPlace);
    }

    #[test]
    fn the_target_under_an_older_marker_is_restamped_with_the_new_epoch() {
        let d = decide(
            &change("mail-rr.example.com", 8, 43),
            &record("mail-rr.example.com", Some((7, 42))),
        );
        assert!(matches!(d, Decision::Write(p) if p.comment == "sitewarden epoch=8 gen=43"));
    }

    #[test]
    fn a_namespace_ttl_that_differs_is_written() {
        let mut c = change("mail-site2.example.com", 7, 43);
        c.ttl = Some(120);
        let d = decide(&c, &record("mail-site2.example.com", Some((7, 43))));
        assert!(matches!(d, Decision::Write(p) if p.ttl == Some(120)));
    }

    #[test]
    fn a_manual_edit_is_drift() {
        let d = decide(
            &change("mail-site2.example.com", 7, 43),
            &record("mail-site1.example.com", Some((7, 42))),
        );
        assert!(matches!(d, Decision::Refuse(Refusal::Drift { .. })));
        let mut no_expectation = change("mail-site2.example.com", 7, 43);
        no_expectation.expected = None;
        let d = decide(
            &no_expectation,
            &record("mail-site1.example.com", Some((7, 42))),
        );
        assert!(matches!(d, Decision::Write(_)));
    }

    #[test]
    fn an_unmarked_record_is_not_ours_unless_adopted() {
        let rec = record("mail-rr.example.com", None);
        let c = change("mail-site2.example.com", 7, 43);
        assert!(matches!(
            decide(&c, &rec),
            Decision::Refuse(Refusal::NotOurs { .. })
        ));
        let adopt = Change {
            adopt_unmarked: true,
            ..c
        };
        assert!(matches!(decide(&adopt, &rec), Decision::Write(_)));
    }

    #[test]
    fn a_missing_record_is_refused() {
        let mut rec = record("x", None);
        rec.content = None;
        assert_eq!(
            decide(&change("mail-site2.example.com", 7, 43), &rec),
            Decision::Refuse(Refusal::Missing)
        );
    }
}
