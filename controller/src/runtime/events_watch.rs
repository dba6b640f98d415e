//! Watches how full the events stream is and names the agent that fills it.
//!
//! The events stream drops its oldest events at its caps ([`super::bus_budget`]), so a flooding
//! agent cannot starve the lease, but it does push the other agents' recent results out of the
//! replay a starting controller relies on. Every [`WATCH_EVERY`] this task reads the stream's
//! bytes and messages against its caps, publishes them as metrics
//! (`sitewarden_controller_events_stream_bytes`, `…_max_bytes`, `…_messages`, `…_max_messages`),
//! and reports them to the engine with the top publisher: the site and agent whose live events
//! took the most bytes since the last look (intake counts them in a [`PublisherTally`]). The
//! engine decides the `events_near_cap` alert (once per crossing of 80 %, resolved under 40 %).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::intake::EVENTS_STREAM;
use super::metrics::Metrics;
use crate::engine::{Input, StreamFill};

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

/// Reads the events stream's fill until `shutdown` and reports it to the engine; see the
/// module documentation.
pub async fn run(
    js: jetstream::Context,
    tally: Arc<PublisherTally>,
    metrics: Arc<Metrics>,
    engine: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
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
        let fill = StreamFill {
            bytes: info.state.bytes,
            max_bytes: info.config.max_bytes,
            messages: info.state.messages,
            max_messages: info.config.max_messages,
            top_publisher: tally.take_top(),
        };
        metrics.events_stream(fill.bytes, fill.max_bytes, fill.messages, fill.max_messages);
        if engine.send(Input::EventsStream(fill)).await.is_err() {
            return;
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
}
