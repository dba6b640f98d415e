//! Faults that need more than a switch: a flapping site paced by the agents' own probes
//! ([`Site1Probes`], [`flap_site1`]), and hostile events published raw on the bus
//! ([`hostile_events`], [`oversized_event`]).

use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;

use super::HaLab;
use crate::DEADLINE;
use crate::exchange::Behaviour;
/// Counts probes of site1's servers (cas1, cas2) seen on the bus: the lab's clock, paced by
/// the agents themselves (three agents × two servers every 500 ms: 12 a second).
pub struct Site1Probes {
    sub: async_nats::Subscriber,
    _client: async_nats::Client,
}

impl Site1Probes {
    /// Subscribes through `url`.
    pub async fn watch(url: &str) -> Self {
        let client = async_nats::connect(url).await.unwrap();
        let sub = client.subscribe("sitewarden.v1.obs.*.*.*.*").await.unwrap();
        client.flush().await.unwrap();
        Self {
            sub,
            _client: client,
        }
    }

    /// Waits for `n` more probes of cas1 or cas2.
    pub async fn wait(&mut self, n: usize) {
        let until = tokio::time::Instant::now() + DEADLINE * 2;
        let mut seen = 0;
        while seen < n {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.sub.next()).await {
                Ok(Some(m)) => {
                    let server = m.subject.split('.').nth(5).unwrap_or("");
                    if server == "cas1" || server == "cas2" {
                        seen += 1;
                    }
                }
                _ => panic!("only {seen} of {n} site1 probes seen"),
            }
        }
    }

    /// The next observation on `subject` (exactly), as JSON.
    pub async fn next_on(&mut self, subject: &str) -> Value {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.sub.next()).await {
                Ok(Some(m)) if m.subject.as_str() == subject => {
                    return serde_json::from_slice(&m.payload).unwrap();
                }
                Ok(Some(_)) => {}
                _ => panic!("no observation on {subject}"),
            }
        }
    }
}

/// A real observation padded (valid JSON) past `MAX_EVENT_BYTES`, NATS's default
/// `max_payload`: the bus itself refuses it, the controller's own size check is the backstop.
pub fn oversized_event(real: &Value) -> Vec<u8> {
    let mut big = serde_json::to_vec(real).unwrap();
    big.pop();
    big.extend(std::iter::repeat_n(
        b' ',
        sitewarden_shared::event::MAX_EVENT_BYTES,
    ));
    big.push(b'}');
    big
}

/// Flaps site1: each `(behaviour, probes)` step holds for that many site1 probes.
pub async fn flap_site1(lab: &HaLab, probes: &mut Site1Probes, schedule: &[(Behaviour, usize)]) {
    for (behaviour, n) in schedule {
        for cas in &lab.cas[..2] {
            cas.set(behaviour.clone()).await.unwrap();
        }
        probes.wait(*n).await;
    }
}

/// Hostile events for the intake and the engine, built from one real observation `real`
/// (published by `site2-agent1` about `cas1` on `subject`): (subject, payload, what it is).
pub fn hostile_events(subject: &str, real: &Value) -> Vec<(String, Vec<u8>, &'static str)> {
    let mut failing = real.clone();
    failing["outcome"] = "fail".into();
    let seq = real["seq"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    // Cut off mid-object.
    out.push((
        subject.to_owned(),
        br#"{"schema_version":1,"agent":"site2-agent1","site":"#.to_vec(),
        "malformed JSON",
    ));
    // The payload claims another site than the subject.
    let mut other_site = failing.clone();
    other_site["site"] = "site1".into();
    other_site["seq"] = (seq + 1_000).into();
    out.push((
        subject.to_owned(),
        serde_json::to_vec(&other_site).unwrap(),
        "wrong site in payload vs subject",
    ));
    // Payload and subject agree, but the agent lives in site2.
    out.push((
        subject.replacen(".site2.", ".site1.", 1),
        serde_json::to_vec(&other_site).unwrap(),
        "agent claims the wrong site",
    ));
    // A sequence number the agent has already used.
    out.push((
        subject.to_owned(),
        serde_json::to_vec(&failing).unwrap(),
        "replayed sequence",
    ));
    // A day ahead, with a sequence number that would otherwise pass.
    let mut future = failing;
    future["observed_at"] = (Utc::now() + chrono::TimeDelta::days(1))
        .to_rfc3339()
        .into();
    future["seq"] = (seq + 2_000).into();
    out.push((
        subject.to_owned(),
        serde_json::to_vec(&future).unwrap(),
        "future timestamp",
    ));
    out
}
