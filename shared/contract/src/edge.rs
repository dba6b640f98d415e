//! The v1 edge-notification contract: what the controller tells edge proxies.
//!
//! When a DAG's active site or a site's verdict changes, the acting leader publishes one
//! [`EdgeNotification`] on [`SUBJECT`] and keeps the latest in the JetStream KV bucket
//! [`KV_BUCKET`] under [`KV_KEY`], so a receiver that starts (or reconnects) later reads the
//! current state at once instead of waiting for the next change. The same JSON is the body of
//! the controller's signed edge webhooks.
//!
//! Receivers order notifications by `(epoch, generation)` ([`EdgeNotification::is_newer_than`]):
//! the epoch is the leader lease revision, strictly increasing across leaders, and the
//! generation counts notices within one leader's term. A notification that is not newer than
//! the last one applied must be ignored, whatever order the bus or a webhook retry delivered
//! them in. `docs/events.md` documents every field; `shared/contract/schemas/edge.v1.schema.json` is the
//! generated JSON Schema.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{MAX_EVENT_BYTES, SCHEMA_VERSION};
use crate::ids::SiteId;

/// NATS subject of edge notifications (plain core NATS publish).
pub const SUBJECT: &str = "sitewarden.v1.edge.notice";
/// JetStream KV bucket that keeps the latest edge notification.
pub const KV_BUCKET: &str = "sitewarden-edge";
/// Key of the latest edge notification in [`KV_BUCKET`].
pub const KV_KEY: &str = "latest";

/// A site's client-access verdict as the controller judged it.
///
/// The same four words, in the same serialization, as the controller engine's verdict.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SiteVerdict {
    /// Every counted server × protocol is up.
    Up,
    /// Some are not up, but every counted protocol still has an up server: clients are served.
    Degraded,
    /// A counted protocol is down on every server, confirmed from outside the site.
    Down,
    /// Not enough evidence either way. Never treat Unknown as Down.
    Unknown,
}

impl SiteVerdict {
    /// Up or Degraded: the site serves clients.
    pub fn is_serving(self) -> bool {
        matches!(self, SiteVerdict::Up | SiteVerdict::Degraded)
    }
}

/// Where mailboxes are active and how every site is doing, as the acting leader sees it.
///
/// Subject: `sitewarden.v1.edge.notice`; latest kept in KV `sitewarden-edge` key `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EdgeNotification {
    /// Always 1 for this contract.
    pub schema_version: u32,
    /// Id of the controller that issued it (`[controller] id`).
    pub controller: String,
    /// The issuing leader's lease revision (fencing token); strictly increases across leaders.
    pub epoch: u64,
    /// Notice number within the epoch; increases with every notice of one leader.
    pub generation: u64,
    /// When the leader issued it, in UTC (RFC 3339).
    pub issued_at: DateTime<Utc>,
    /// Per DAG, the site holding its mounted databases; `null` when that is unknown (then
    /// change nothing: fail static).
    pub active_sites: BTreeMap<String, Option<SiteId>>,
    /// Every site with client access and its verdict.
    pub verdicts: BTreeMap<SiteId, SiteVerdict>,
}

/// Why bytes from the bus or a webhook are not a usable edge notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeDecodeError {
    /// Larger than [`MAX_EVENT_BYTES`].
    #[error("edge notification of {0} bytes is larger than the 1 MiB limit; ignored")]
    TooLarge(usize),
    /// Not JSON of the expected shape.
    #[error("edge notification is not valid v1 JSON: {0}")]
    Json(String),
    /// A schema version this build does not understand.
    #[error("edge notification has schema_version {0}; this build understands 1 only")]
    Version(u32),
}

impl EdgeNotification {
    /// The ordering key: `(epoch, generation)`, compared lexicographically.
    pub fn order_key(&self) -> (u64, u64) {
        (self.epoch, self.generation)
    }

    /// Whether `self` supersedes `other`: a higher epoch, or the same epoch and a higher
    /// generation. Equal keys are not newer (a duplicate).
    pub fn is_newer_than(&self, other: &EdgeNotification) -> bool {
        self.order_key() > other.order_key()
    }

    /// The site where `dag`'s databases are active, when the notification names one.
    pub fn active_site(&self, dag: &str) -> Option<&SiteId> {
        self.active_sites.get(dag).and_then(Option::as_ref)
    }

    /// Decodes and checks one notification: size, JSON shape, schema version. Unknown fields
    /// are ignored (additive changes stay in v1).
    pub fn decode(bytes: &[u8]) -> Result<Self, EdgeDecodeError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EdgeDecodeError::TooLarge(bytes.len()));
        }
        let n: EdgeNotification =
            serde_json::from_slice(bytes).map_err(|e| EdgeDecodeError::Json(e.to_string()))?;
        if n.schema_version != SCHEMA_VERSION {
            return Err(EdgeDecodeError::Version(n.schema_version));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(s: &str) -> SiteId {
        SiteId::new(s).unwrap()
    }

    fn notice(epoch: u64, generation: u64) -> EdgeNotification {
        EdgeNotification {
            schema_version: 1,
            controller: "ctl-a".into(),
            epoch,
            generation,
            issued_at: "2026-03-02T09:15:07Z".parse().unwrap(),
            active_sites: BTreeMap::from([
                ("DAG1".to_owned(), Some(site("site2"))),
                ("DAG2".to_owned(), None),
            ]),
            verdicts: BTreeMap::from([
                (site("site1"), SiteVerdict::Down),
                (site("site2"), SiteVerdict::Up),
            ]),
        }
    }

    #[test]
    fn a_new_epoch_beats_any_generation_of_the_old_one() {
        assert!(notice(8, 1).is_newer_than(&notice(7, 900)));
        assert!(notice(7, 3).is_newer_than(&notice(7, 2)));
        assert!(!notice(7, 2).is_newer_than(&notice(7, 2)));
        assert!(!notice(7, 900).is_newer_than(&notice(8, 1)));
    }

    #[test]
    fn unknown_active_site_is_none_and_unknown_fields_are_ignored() {
        let n = notice(1, 1);
        assert_eq!(n.active_site("DAG1"), Some(&site("site2")));
        assert_eq!(n.active_site("DAG2"), None);
        assert_eq!(n.active_site("DAG9"), None);
        let mut v = serde_json::to_value(&n).unwrap();
        v["later_field"] = serde_json::json!({"x": 1});
        let back = EdgeNotification::decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn decode_refuses_other_versions_bad_ids_and_huge_payloads() {
        let mut v = serde_json::to_value(notice(1, 1)).unwrap();
        v["schema_version"] = 2.into();
        assert_eq!(
            EdgeNotification::decode(&serde_json::to_vec(&v).unwrap()),
            Err(EdgeDecodeError::Version(2))
        );
        let mut v = serde_json::to_value(notice(1, 1)).unwrap();
        v["active_sites"]["DAG1"] = "site.2".into();
        let err = EdgeNotification::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("SiteId"), "{err}");
        let huge = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(
            EdgeNotification::decode(&huge),
            Err(EdgeDecodeError::TooLarge(_))
        ));
    }

    /// The JSON example of a markdown section (the first ```json block after `heading`).
    fn example_after(doc: &str, heading: &str) -> serde_json::Value {
        let at = doc
            .find(heading)
            .unwrap_or_else(|| panic!("no {heading:?} in the doc"));
        let rest = &doc[at..];
        let start = rest.find("```json\n").expect("a json block") + "```json\n".len();
        let end = rest[start..].find("```").expect("the block ends") + start;
        serde_json::from_str(&rest[start..end]).expect("the example is JSON")
    }

    fn check_example(example: serde_json::Value) {
        let n: EdgeNotification =
            EdgeNotification::decode(&serde_json::to_vec(&example).unwrap()).unwrap();
        // Nothing in the example is unknown to the type, and nothing the type writes is missing.
        assert_eq!(serde_json::to_value(&n).unwrap(), example);
        let schema = serde_json::to_value(schemars::schema_for!(EdgeNotification)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for key in example.as_object().unwrap().keys() {
            assert!(props.contains_key(key), "{key} is not in the schema");
        }
        for req in schema["required"].as_array().unwrap() {
            assert!(
                example.get(req.as_str().unwrap()).is_some(),
                "{req} missing"
            );
        }
    }

    #[test]
    fn the_documented_examples_match_the_contract() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let events = std::fs::read_to_string(root.join("docs/events.md")).unwrap();
        check_example(example_after(&events, "### EdgeNotification"));
        let edge = std::fs::read_to_string(root.join("docs/edge.md")).unwrap();
        check_example(example_after(&edge, "## Payload"));
    }
}
