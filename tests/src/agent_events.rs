//! What the agents publish, as a test subscriber on the bus sees it: every `sitewarden.v1.>`
//! event decoded by subject ([`collect`]), and waits for the first observation or
//! database-copy snapshot that matches ([`observation`], [`dbcopy`]).

use std::time::Duration;

use futures::StreamExt;
use sitewarden_shared::{DbCopySnapshot, Heartbeat, Observation};
use tokio::sync::mpsc;

use crate::DEADLINE;

/// One event received from the bus, decoded by subject.
#[derive(Debug, Clone)]
pub enum Received {
    /// `sitewarden.v1.obs.…`
    Obs(Box<Observation>),
    /// `sitewarden.v1.dbcopy.…`
    DbCopy(Box<DbCopySnapshot>),
    /// `sitewarden.v1.heartbeat.…`
    Heartbeat(Box<Heartbeat>),
}

/// Events as they arrive: (subject, decoded event).
pub type Events = mpsc::UnboundedReceiver<(String, Received)>;

/// Subscribes to every sitewarden event through `url` (retrying until the server answers) and
/// forwards decoded events to the returned channel.
pub async fn collect(url: &str) -> Events {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(url)
        .await
        .expect("test subscriber connects");
    let mut sub = client
        .subscribe("sitewarden.v1.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _keep = client;
        while let Some(msg) = sub.next().await {
            let subject = msg.subject.to_string();
            let ev = if subject.starts_with("sitewarden.v1.obs.") {
                Received::Obs(Box::new(
                    serde_json::from_slice(&msg.payload).expect("observation decodes"),
                ))
            } else if subject.starts_with("sitewarden.v1.dbcopy.") {
                Received::DbCopy(Box::new(
                    serde_json::from_slice(&msg.payload).expect("dbcopy decodes"),
                ))
            } else if subject.starts_with("sitewarden.v1.heartbeat.") {
                Received::Heartbeat(Box::new(
                    serde_json::from_slice(&msg.payload).expect("heartbeat decodes"),
                ))
            } else {
                continue;
            };
            if tx.send((subject, ev)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (up to [`DEADLINE`]) for the first observation of `check` on `server` that satisfies
/// `pred`.
pub async fn observation(
    rx: &mut Events,
    check: &str,
    server: &str,
    pred: impl Fn(&Observation) -> bool,
) -> Observation {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((_, Received::Obs(o))))
                if o.check.as_str() == check && o.server.as_str() == server && pred(&o) =>
            {
                return *o;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("event stream ended while waiting for {check} on {server}"),
            Err(_) => panic!("no matching observation of {check} on {server} within {DEADLINE:?}"),
        }
    }
}

/// Waits (up to [`DEADLINE`]) for the first database-copy snapshot that satisfies `pred`.
pub async fn dbcopy(rx: &mut Events, pred: impl Fn(&DbCopySnapshot) -> bool) -> DbCopySnapshot {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((_, Received::DbCopy(d)))) if pred(&d) => return *d,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event stream ended while waiting for a dbcopy snapshot"),
            Err(_) => panic!("no matching dbcopy snapshot within {DEADLINE:?}"),
        }
    }
}
