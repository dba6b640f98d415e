//! The controllers' audit stream (`SITEWARDEN_AUDIT`) as the tests read it: every record in
//! stream order ([`records`], [`complete_records`]), filters by kind ([`of_kind`], [`alerts`])
//! and a one-line-per-record [`summary`] for failure messages.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// Every record in the controllers' audit stream so far (empty when there is none yet, or when
/// the node at `url` does not answer).
pub async fn records(url: &str) -> Vec<Value> {
    complete_records(url).await.unwrap_or_default()
}

/// The whole audit stream through the node at `url`, or `None` when it cannot be read to its
/// end now (the node is down, the stream has no leader yet, a read stalled midway): callers
/// that check invariants must not mistake part of the history for all of it.
pub async fn complete_records(url: &str) -> Option<Vec<Value>> {
    let client = async_nats::connect(url).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SITEWARDEN_AUDIT").await.ok()?;
    let total = stream.info().await.ok()?.state.messages;
    if total == 0 {
        return Some(Vec::new());
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .ok()?;
    let mut messages = consumer.messages().await.ok()?;
    let mut records = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(2), messages.next())
            .await
            .ok()??
            .ok()?;
        if let Ok(v) = serde_json::from_slice::<Value>(&m.payload) {
            records.push(v);
        }
        if m.info().map(|i| i.pending).unwrap_or(0) == 0 {
            return Some(records);
        }
    }
}

/// Records whose `event.kind` is `kind`.
pub fn of_kind<'a>(history: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    history.iter().filter(move |r| r["event"]["kind"] == kind)
}

/// Audited alerts of `kind` (the alert's own kind, e.g. `drift`).
pub fn alerts<'a>(history: &'a [Value], kind: &'a str) -> Vec<&'a Value> {
    of_kind(history, "alert")
        .map(|r| &r["event"]["alert"])
        .filter(|a| a["kind"] == kind)
        .collect()
}

/// One line per audit record (kind and the fields that matter), for failure messages.
pub fn summary(history: &[Value]) -> String {
    history
        .iter()
        .map(|r| {
            let e = &r["event"];
            format!(
                "{} {} epoch={} {} {}",
                r["controller"].as_str().unwrap_or("?"),
                r["role"].as_str().unwrap_or("?"),
                r["epoch"],
                e["kind"].as_str().unwrap_or("?"),
                compact(e)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn compact(e: &Value) -> String {
    let mut parts = Vec::new();
    for key in [
        "is_leader",
        "epoch",
        "site",
        "from",
        "to",
        "target",
        "generation",
        "intent_epoch",
        "reason",
        "cause",
    ] {
        if !e[key].is_null() {
            parts.push(format!("{key}={}", e[key]));
        }
    }
    if let Some(rule) = e["evidence"]["rule"].as_str() {
        parts.push(format!("rule={rule}"));
    }
    if let Some(a) = e["alert"].as_object() {
        parts.push(format!("alert={} {}", a["kind"], a["subject"]));
    }
    parts.join(" ")
}
