//! Who of the pair is alive, as each controller tells the other: a small presence record under
//! `presence.<id>` in the lease bucket, rewritten every `renew_every` and whenever this
//! controller's leadership changes, and a watch of every `presence.*` key.
//!
//! The lease key says only who holds the lease. Operators also need to see the standby (is it
//! there to take over? which version does it run?) and a standby answering `status` needs the
//! leader's epoch, which only the leader knows. Both come from here. The records are for
//! display: nothing acts on them, so a lost write costs only a stale line on the dashboard.
//! The bucket's `max_age` (the lease) removes the key of a controller that stopped writing;
//! since a watch is not told of such an expiry, freshness is judged from when a record
//! *arrived* on the reader's monotonic clock, never from the writer's wall clock.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sitewarden_api::wire::ControllerPresence;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ha::leadership::{Leadership, Role};

/// The key prefix of presence records in the lease bucket.
pub const KEY_PREFIX: &str = "presence.";

/// What one controller writes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// Its configured id.
    pub controller: String,
    /// Its version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// `leader`, `standby`, `unknown` (its bus did not answer) or `stopped` (its last words).
    pub role: String,
    /// Whether it acted when it wrote this.
    #[serde(default)]
    pub acting: bool,
    /// Its epoch while leader.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// When its process started.
    pub started_at: DateTime<Utc>,
    /// When it wrote this (its wall clock; shown, never compared).
    pub at: DateTime<Utc>,
}

impl PresenceRecord {
    /// This controller's record for `leadership`.
    pub fn of(
        controller: &str,
        leadership: &Leadership,
        started_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let role = match leadership.role {
            Role::Leader { .. } => "leader",
            Role::Standby { .. } => "standby",
            Role::Unknown => "unknown",
        };
        Self {
            controller: controller.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            role: role.to_owned(),
            acting: leadership.acting,
            epoch: leadership.epoch,
            started_at,
            at,
        }
    }
}

/// A record as a reader has it: what was written and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The record.
    pub record: PresenceRecord,
    /// Its arrival on the reader's monotonic clock.
    pub arrived: Instant,
}

/// Every controller's latest record, by id.
pub type Presences = BTreeMap<String, Sighting>;

/// The records as the API shows them at `now`: how long ago each arrived, and whether that is
/// within `stale_after` (the lease). Sorted by controller id.
pub fn view(presences: &Presences, now: Instant, stale_after: Duration) -> Vec<ControllerPresence> {
    presences
        .values()
        .map(|s| {
            let age = now.saturating_duration_since(s.arrived);
            ControllerPresence {
                controller: s.record.controller.clone(),
                version: s.record.version.clone(),
                role: s.record.role.clone(),
                acting: s.record.acting,
                epoch: s.record.epoch,
                started_at: s.record.started_at,
                last_seen: s.record.at,
                age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                fresh: age <= stale_after,
            }
        })
        .collect()
}

/// The presence key of controller `id`.
pub fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// How often the record is rewritten and when a silent one counts as gone.
#[derive(Debug, Clone, Copy)]
pub struct PresenceTiming {
    /// Rewrite interval (the lease's `renew_every`).
    pub every: Duration,
    /// A record older than this on arrival time is stale (the lease).
    pub stale_after: Duration,
}

/// Starts the writer and the reader; the receiver holds every controller's latest record.
/// Both stop on `stop`; the caller tracks the returned tasks.
pub fn spawn(
    store: kv::Store,
    controller: String,
    leadership: watch::Receiver<Leadership>,
    timing: PresenceTiming,
    stop: CancellationToken,
) -> (watch::Receiver<Presences>, [tokio::task::JoinHandle<()>; 2]) {
    let (tx, rx) = watch::channel(Presences::new());
    let writer = tokio::spawn(write_loop(
        store.clone(),
        controller,
        leadership,
        timing.every,
        stop.clone(),
    ));
    let reader = tokio::spawn(read_loop(store, tx, timing.every, stop));
    (rx, [writer, reader])
}

async fn write_loop(
    store: kv::Store,
    controller: String,
    mut leadership: watch::Receiver<Leadership>,
    every: Duration,
    stop: CancellationToken,
) {
    let started_at = Utc::now();
    let key = key(&controller);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            _ = tick.tick() => false,
            changed = leadership.changed() => changed.is_err(),
        };
        let mut record =
            PresenceRecord::of(&controller, &leadership.borrow(), started_at, Utc::now());
        if stopping {
            // Say so on the way out, so the other controller shows "stopped", not a silence.
            record.role = "stopped".to_owned();
            record.acting = false;
        }
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        match tokio::time::timeout(every, store.put(&key, bytes.into())).await {
            Ok(Ok(_)) => {}
            // The bus is down or slow: the lease reports that; the next tick tries again.
            Ok(Err(e)) => tracing::debug!("presence write failed: {e}"),
            Err(_) => tracing::debug!("presence write timed out after {every:?}"),
        }
        if stopping {
            return;
        }
    }
}

async fn read_loop(
    store: kv::Store,
    tx: watch::Sender<Presences>,
    retry: Duration,
    stop: CancellationToken,
) {
    let filter = format!("{KEY_PREFIX}>");
    loop {
        let opened = tokio::select! {
            () = stop.cancelled() => return,
            w = tokio::time::timeout(retry, store.watch_with_history(&filter)) => w,
        };
        match opened {
            Ok(Ok(mut watch)) => loop {
                let item = tokio::select! {
                    () = stop.cancelled() => return,
                    item = watch.next() => item,
                };
                match item {
                    Some(Ok(entry)) => apply(&tx, &entry, Instant::now()),
                    Some(Err(e)) => {
                        tracing::debug!("presence watch broke: {e}");
                        break;
                    }
                    None => break,
                }
            },
            Ok(Err(e)) => tracing::debug!("cannot watch presence records: {e}"),
            Err(_) => tracing::debug!("opening the presence watch timed out"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

/// Folds one watched entry into the map: a put replaces the controller's record, a delete or
/// purge removes it, an unreadable value is ignored (someone wrote the key by hand).
fn apply(tx: &watch::Sender<Presences>, entry: &kv::Entry, now: Instant) {
    let Some(id) = entry.key.strip_prefix(KEY_PREFIX) else {
        return;
    };
    match entry.operation {
        kv::Operation::Put => {
            let Ok(record) = serde_json::from_slice::<PresenceRecord>(&entry.value) else {
                tracing::debug!("presence record {} is not readable", entry.key);
                return;
            };
            tx.send_modify(|m| {
                m.insert(
                    id.to_owned(),
                    Sighting {
                        record,
                        arrived: now,
                    },
                );
            });
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            tx.send_modify(|m| {
                m.remove(id);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_says_role_epoch_and_version() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let leader = Leadership {
            role: Role::Leader { epoch: 12 },
            acting: true,
            epoch: Some(12),
        };
        let r = PresenceRecord::of("ctl-a", &leader, at, at);
        assert_eq!(
            (r.role.as_str(), r.epoch, r.acting),
            ("leader", Some(12), true)
        );
        assert_eq!(r.version, env!("CARGO_PKG_VERSION"));
        let back: PresenceRecord =
            serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let standby = PresenceRecord::of(
            "ctl-b",
            &Leadership {
                role: Role::Standby {
                    holder: Some("ctl-a".into()),
                },
                acting: false,
                epoch: None,
            },
            at,
            at,
        );
        assert_eq!((standby.role.as_str(), standby.epoch), ("standby", None));
        assert_eq!(key("ctl-b"), "presence.ctl-b");
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_not_renewed_within_the_lease_is_shown_silent() {
        let at = Utc::now();
        let lease = Duration::from_secs(10);
        let leadership = |role| Leadership {
            role,
            acting: false,
            epoch: None,
        };
        let mut seen = Presences::new();
        seen.insert(
            "ctl-a".into(),
            Sighting {
                record: PresenceRecord::of("ctl-a", &leadership(Role::Unknown), at, at),
                arrived: Instant::now(),
            },
        );
        tokio::time::advance(Duration::from_secs(8)).await;
        seen.insert(
            "ctl-b".into(),
            Sighting {
                record: PresenceRecord::of(
                    "ctl-b",
                    &leadership(Role::Standby { holder: None }),
                    at,
                    at,
                ),
                arrived: Instant::now(),
            },
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let v = view(&seen, Instant::now(), lease);
        let facts: Vec<_> = v
            .iter()
            .map(|c| (c.controller.as_str(), c.age_ms, c.fresh))
            .collect();
        assert_eq!(facts, [("ctl-a", 10_000, true), ("ctl-b", 2_000, true)]);
        tokio::time::advance(Duration::from_millis(1)).await;
        let v = view(&seen, Instant::now(), lease);
        assert!(!v[0].fresh, "one lease and a bit without a word: silent");
        assert!(v[1].fresh);
    }
}
