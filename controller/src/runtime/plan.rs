//! `sitewarden-controller plan`: what the leader would change right now, and why. Changes nothing.
//!
//! Plan replays the live health picture from the events stream (the recent events of every
//! subject, enough to rebuild the fall/rise counters), reads every managed record from the provider, runs the same engine as the leader
//! (with leadership forced on, epoch 0, so it decides), and prints each change it would make
//! with the explanation. It never writes to the provider or to any bucket.

use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use futures::StreamExt;

use super::intake::{self, EVENTS_STREAM};
use super::settings::RuntimeSettings;
use crate::config::ControllerConfig;
use crate::engine::{Command, Engine, Input, LeadershipChange, ProviderReport};
use crate::provider::DnsProvider;

/// The plan: changes the leader would issue, and the explanation of every namespace.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// Events replayed from the stream.
    pub events: usize,
    /// `(namespace, current, would_set, rule)` for every change.
    pub changes: Vec<PlannedChange>,
    /// Text explanation per namespace.
    pub explanations: Vec<String>,
}

/// One change the leader would make.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedChange {
    /// The managed name.
    pub namespace: String,
    /// What the record holds now.
    pub current: Option<String>,
    /// What the leader would set.
    pub target: String,
    /// The rule that decided it.
    pub rule: String,
}

/// Builds the plan.
pub async fn plan(
    config: ControllerConfig,
    settings: &RuntimeSettings,
    provider: &dyn DnsProvider,
) -> anyhow::Result<Plan> {
    let client = settings
        .nats
        .connect("sitewarden-controller plan")
        .await
        .map_err(anyhow::Error::msg)?;
    let js = jetstream::new(client);
    let engine = Engine::new(config.clone());
    let mut state = engine.initial_state();
    let now = Utc::now();
    let mut commands = engine.step(
        &mut state,
        now,
        &Input::Leadership(LeadershipChange {
            is_leader: true,
            epoch: crate::engine::Epoch(0),
        }),
    );

    // The records first, so the replay is judged against what they really hold.
    let mut current = std::collections::BTreeMap::new();
    for name in config.namespaces.keys() {
        let record = provider
            .read(name)
            .await
            .map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
        let content = crate::runtime::apply::record_content(name, &record)
            .map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
        current.insert(name.clone(), content.clone());
        let report = ProviderReport::Current {
            written: None,
            namespace: name.clone(),
            target: content,
            generation: record
                .marker
                .map(|m| crate::engine::Generation(m.generation)),
        };
        commands.extend(engine.step(&mut state, now, &Input::Provider(report)));
    }
    let mut events = 0;
    let stream = tokio::time::timeout(Duration::from_secs(5), js.get_stream(EVENTS_STREAM))
        .await
        .map_err(|_| anyhow::anyhow!("NATS did not answer within 5s"))?
        .map_err(|e| {
            anyhow::anyhow!("no events stream {EVENTS_STREAM} yet (is a controller running?): {e}")
        })?;
    let pending = stream.cached_info().state.messages;
    if pending > 0 {
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: "sitewarden.v1.>".into(),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_secs(2), messages.next()).await
        {
            if let Ok(input) = intake::decode(msg.subject.as_str(), &msg.payload) {
                commands.extend(engine.step(&mut state, now, &input));
            }
            events += 1;
            let left = msg.info().map(|i| i.pending).unwrap_or(0);
            if left == 0 {
                break;
            }
        }
    }
    commands.extend(engine.step(&mut state, now, &Input::Tick));
    // The net change per name: the last decision of the replay, if it differs from the record.
    let mut last = std::collections::BTreeMap::new();
    for c in commands {
        if let Command::SetRecord(s) = c {
            last.insert(s.namespace.clone(), s);
        }
    }
    let changes = last
        .into_values()
        .filter(|s| current.get(&s.namespace).cloned().flatten().as_ref() != Some(&s.target))
        .map(|s| PlannedChange {
            current: current
                .get(&s.namespace)
                .cloned()
                .flatten()
                .map(|c| c.to_string()),
            namespace: s.namespace.to_string(),
            target: s.target.to_string(),
            rule: format!("{:?}", s.reason),
        })
        .collect();
    let explanations = config
        .namespaces
        .keys()
        .filter_map(|n| engine.explain(&state, n))
        .map(|e| e.to_string())
        .collect();
    Ok(Plan {
        events,
        changes,
        explanations,
    })
}
