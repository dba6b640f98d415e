//! Watches how full the events stream is and names the agent that fills it.
//!
//! The events stream drops its oldest events at its caps ([`super::bus_budget`]), so a flooding
//! agent cannot starve the lease, but it does push the other agents' recent results out of the
//! replay a starting controller relies on. Every [`WATCH_EVERY`] this task reads the stream's
//! bytes and messages against its caps, publishes them as metrics
//! (`sitewarden_controller_events_stream_bytes`, `…_max_bytes`, `…_messages`, `…_max_messages`),
//! and, when either passes [`NEAR_CAP_PERCENT`], logs a warning and writes an audit record
//! naming the top publisher: the site and agent whose live events took the most bytes since
//! the last look (intake counts them in a [`PublisherTally`]). It warns once per crossing and
//! re-arms when the stream falls back below half its caps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use super::bus_budget::NEAR_CAP_PERCENT;
use super::intake::{EVENTS_STREAM, RejectAudit};
use super::metrics::Metrics;

/// How often the stream's fill is read.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);
/// Publishers counted at most; beyond this, new ones share one bucket (bounds memory when
/// subjects are forged).
const MAX_PUBLISHERS: usize = 1024;

/// Bytes of live events per publisher (`<site>.<agent>` from the subject) since the last look.
#[derive(Debug, Default)]
pub struct PublisherTally {
    bytes: Mutex<HashMap<String, u64>>,
}

impl PublisherTally {
    /// Counts one live message on `subject` (`sitewarden.v1.<class>.<site>.<agent>…`).
    pub fn count(&self, subject: &str, len: usize) {
        let mut tokens = subject.split('.').skip(3);
        let (Some(site), Some(agent)) = (tokens.next(), tokens.next()) else {
            return;
        };
        let mut map = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.len() >= MAX_PUBLISHERS && !map.contains_key(&format!("{site}.{agent}")) {
            "(other publishers)".to_owned()
        } else {
            format!("{site}.{agent}")
        };
        *map.entry(key).or_insert(0) += len as u64;
    }

    /// The publisher with the most bytes and its bytes, then forgets everything.
    pub fn take_top(&self) -> Option<(String, u64)> {
        let mut map = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let top = map
            .iter()
            .max_by_key(|(_, b)| **b)
            .map(|(p, b)| (p.clone(), *b));
        map.clear();
        top
    }
}

/// How full the stream is, in percent of the nearer cap (0 when it has none).
pub fn fill_percent(bytes: u64, max_bytes: i64, messages: u64, max_messages: i64) -> i64 {
    let pct = |used: u64, cap: i64| {
        if cap <= 0 {
            0
        } else {
            i64::try_from(u128::from(used) * 100 / cap as u128).unwrap_or(i64::MAX)
        }
    };
    pct(bytes, max_bytes).max(pct(messages, max_messages))
}

/// Reads the events stream's fill until `shutdown`; see the module documentation.
pub async fn run(
    js: jetstream::Context,
    tally: Arc<PublisherTally>,
    metrics: Arc<Metrics>,
    audit: RejectAudit,
    shutdown: CancellationToken,
) {
    let mut near = false;
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let info = match js.get_stream(EVENTS_STREAM).await {
            Ok(mut s) => s.info().await.cloned().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!("cannot read stream {EVENTS_STREAM}: {e}");
                continue;
            }
        };
        let (bytes, messages) = (info.state.bytes, info.state.messages);
        let (max_bytes, max_messages) = (info.config.max_bytes, info.config.max_messages);
        metrics.events_stream(bytes, max_bytes, messages, max_messages);
        let pct = fill_percent(bytes, max_bytes, messages, max_messages);
        let top = tally.take_top();
        if pct >= NEAR_CAP_PERCENT && !near {
            near = true;
            metrics.events_stream_near_cap.inc();
            let (publisher, top_bytes) = top.unwrap_or_else(|| ("(none live)".to_owned(), 0));
            tracing::warn!(
                stream = EVENTS_STREAM,
                bytes,
                max_bytes,
                messages,
                max_messages,
                percent = pct,
                top_publisher = %publisher,
                top_publisher_bytes = top_bytes,
                "the events stream is at {pct}% of its cap; its oldest events are being dropped. \
                 Top publisher in the last {}s: {publisher} ({top_bytes} bytes). Check that \
                 agent, or raise [controller] events_max_bytes if the load is real",
                WATCH_EVERY.as_secs()
            );
            audit(serde_json::json!({
                "kind": "events_stream_near_cap",
                "stream": EVENTS_STREAM,
                "percent": pct,
                "bytes": bytes,
                "max_bytes": max_bytes,
                "messages": messages,
                "max_messages": max_messages,
                "top_publisher": publisher,
                "top_publisher_bytes": top_bytes,
            }));
        } else if pct < NEAR_CAP_PERCENT / 2 && near {
            near = false;
            tracing::info!(
                stream = EVENTS_STREAM,
                percent = pct,
                "the events stream is back under half its cap"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_publisher_is_the_agent_with_the_most_bytes() {
        let t = PublisherTally::default();
        t.count("sitewarden.v1.obs.site1.site1-agent1.junk1.x", 1_000_000);
        t.count("sitewarden.v1.obs.site1.site1-agent1.junk2.x", 1_000_000);
        t.count("sitewarden.v1.heartbeat.site2.site2-agent1", 300);
        t.count("short", 5);
        assert_eq!(
            t.take_top(),
            Some(("site1.site1-agent1".to_owned(), 2_000_000))
        );
        assert_eq!(t.take_top(), None, "forgotten after a look");
    }

    #[test]
    fn fill_is_the_nearer_cap() {
        assert_eq!(fill_percent(80, 100, 1, 1000), 80);
        assert_eq!(fill_percent(1, 100, 900, 1000), 90);
        assert_eq!(fill_percent(5, -1, 5, -1), 0);
    }
}
