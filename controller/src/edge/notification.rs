//! The engine's edge notice, stamped with the controller id and leader epoch for the wire.
//!
//! The shared crate cannot see the engine's [`Verdict`], so the wire has its own
//! [`SiteVerdict`]; [`site_verdict`] maps one onto the other with an exhaustive match (a new
//! verdict fails to compile here) and a test checks both serialize to the same words.

use chrono::{DateTime, Utc};
use sitewarden_shared::{EdgeNotification, SCHEMA_VERSION, SiteVerdict};

use crate::engine::EdgeNotice;
use crate::engine::verdict::Verdict;

/// The wire form of an engine verdict.
pub fn site_verdict(v: Verdict) -> SiteVerdict {
    match v {
        Verdict::Up => SiteVerdict::Up,
        Verdict::Degraded => SiteVerdict::Degraded,
        Verdict::Down => SiteVerdict::Down,
        Verdict::Unknown => SiteVerdict::Unknown,
    }
}

/// The v1 edge notification for `notice`, issued by `controller` as leader of `epoch` at
/// `issued_at`.
pub fn notification(
    notice: &EdgeNotice,
    controller: &str,
    epoch: u64,
    issued_at: DateTime<Utc>,
) -> EdgeNotification {
    EdgeNotification {
        schema_version: SCHEMA_VERSION,
        controller: controller.to_owned(),
        epoch,
        generation: notice.generation,
        issued_at,
        active_sites: notice.active_sites.clone(),
        verdicts: notice
            .verdicts
            .iter()
            .map(|(site, v)| (site.clone(), site_verdict(*v)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sitewarden_shared::SiteId;

    use super::*;

    #[test]
    fn engine_and_wire_verdicts_serialize_the_same() {
        for v in [
            Verdict::Up,
            Verdict::Degraded,
            Verdict::Down,
            Verdict::Unknown,
        ] {
            let engine = serde_json::to_string(&v).unwrap();
            let wire = serde_json::to_string(&site_verdict(v)).unwrap();
            assert_eq!(engine, wire);
            let back: SiteVerdict = serde_json::from_str(&engine).unwrap();
            assert_eq!(back, site_verdict(v));
        }
    }

    #[test]
    fn a_notice_keeps_its_generation_and_gains_the_epoch() {
        let site = |s: &str| SiteId::new(s).unwrap();
        let notice = EdgeNotice {
            generation: 7,
            active_sites: BTreeMap::from([("DAG1".to_owned(), Some(site("site2")))]),
            verdicts: BTreeMap::from([(site("site1"), Verdict::Down)]),
        };
        let at = "2026-03-02T09:15:07Z".parse().unwrap();
        let n = notification(&notice, "ctl-a", 41, at);
        assert_eq!(n.order_key(), (41, 7));
        assert_eq!(n.controller, "ctl-a");
        assert_eq!(n.verdicts[&site("site1")], SiteVerdict::Down);
        assert_eq!(n.active_site("DAG1"), Some(&site("site2")));
        // The engine's notice and the wire agree on the shared fields, word for word.
        let engine = serde_json::to_value(&notice).unwrap();
        let wire = serde_json::to_value(&n).unwrap();
        assert_eq!(engine["active_sites"], wire["active_sites"]);
        assert_eq!(engine["verdicts"], wire["verdicts"]);
    }
}
