//! What the lab's webhook receivers got: the controllers' alerts and their signed edge notices,
//! each edge notice verified against [`EDGE_SECRET`] as an edge proxy would.

use chrono::Utc;
use serde_json::Value;
use sitewarden_controller::edge::signature;
use sitewarden_shared::edge::EdgeNotification;

use super::{EDGE_SECRET, HaLab};
use crate::{DEADLINE, wait_for};

impl HaLab {
    /// The alerts the lab's webhook sink received (`sitewarden.alert.v1` bodies), in order.
    pub fn webhook_alerts(&self) -> Vec<Value> {
        self.alerts.requests().iter().map(|r| r.json()).collect()
    }

    /// The edge notices the lab's edge endpoint received, in order; panics if one does not
    /// carry a valid signature by [`EDGE_SECRET`] or is not a v1 notice.
    pub fn edge_notices(&self) -> Vec<EdgeNotification> {
        self.edge
            .requests()
            .iter()
            .map(|r| {
                let header = |name: &str| r.header(&name.to_ascii_lowercase()).to_owned();
                signature::verify(
                    EDGE_SECRET.as_bytes(),
                    &header(signature::TIMESTAMP_HEADER),
                    &r.body,
                    &header(signature::SIGNATURE_HEADER),
                    Utc::now(),
                    signature::DEFAULT_REPLAY_WINDOW,
                )
                .unwrap_or_else(|e| panic!("an edge notice that does not verify ({e}): {r:?}"));
                EdgeNotification::decode(&r.body)
                    .unwrap_or_else(|e| panic!("an edge body that is not a notice ({e}): {r:?}"))
            })
            .collect()
    }

    /// Waits until the edge endpoint has received a verified notice naming `site` as `dag`'s
    /// active site and returns it.
    pub async fn edge_says(&self, dag: &str, site: &str) -> EdgeNotification {
        wait_for(
            &format!("an edge notice: {dag} active in {site}"),
            DEADLINE,
            || async {
                self.edge_notices()
                    .into_iter()
                    .rev()
                    .find(|n| n.active_site(dag).is_some_and(|s| s.as_str() == site))
            },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nreceived: {:#?}\n{}",
                self.edge.requests(),
                self.logs()
            )
        })
    }
}
