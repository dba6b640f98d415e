//! `ingest`: how fast the controller takes in agent events, against a plain subscriber.
//!
//! One nats-server; an in-process controller whose config knows `agents` agents; a plain
//! async-nats subscriber on `sitewarden.v1.obs.>` on its own connection. This process builds
//! `messages` valid observations (per-agent increasing sequence numbers) before the clock
//! starts, then publishes them as fast as [`PUBLISHERS`] connections can (each agent's through one). Each side's rate is messages over
//! the time from its first to its last receipt: the subscriber timestamps every message, the
//! controller's `events_accepted` counter is sampled every millisecond.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sitewarden_controller::provider::DnsProvider;
use sitewarden_tests::nats_server::NatsServer;

use crate::rig::{self, InProcess, Recorder};

/// Times of the first and last receipt and how many arrived.
#[derive(Clone, Copy)]
struct Intake {
    first: Option<Instant>,
    last: Option<Instant>,
    count: u64,
}

impl Intake {
    fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) if b > a => self.count as f64 / b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Publishing connections.
const PUBLISHERS: usize = 4;

fn decisions(agents: usize) -> String {
    let mut s = String::from(
        "[policy]\n\n[[sites]]\nname = \"w\"\n\n[[sites]]\nname = \"site1\"\nservers = [\"cas1\", \"cas2\"]\n\n[[sites]]\nname = \"site2\"\nservers = [\"cas3\", \"cas4\"]\n\n",
    );
    for i in 0..agents {
        s.push_str(&format!("[[agents]]\nname = \"ing-{i}\"\nsite = \"w\"\n\n"));
    }
    s.push_str("[[namespaces]]\nname = \"mail.example.com\"\nttl = \"60s\"\ncandidates = [\n  { target = \"mail-rr.example.com\", requires = [\"site1\", \"site2\"] },\n  { target = \"mail-site1.example.com\", requires = [\"site1\"] },\n  { target = \"mail-site2.example.com\", requires = [\"site2\"] },\n]\n");
    s
}

pub async fn run(messages: usize, agents: usize) -> anyhow::Result<()> {
    let agents = agents.max(2);
    let nats = NatsServer::start().await?;
    let rec = Recorder::new();
    rec.inner.insert(
        "mail.example.com",
        "mail-rr.example.com",
        Some(rig::SEED_COMMENT),
    );
    let toml = rig::controller_head("bench-ingest", &nats.url(), "off", "kind = \"memory\"")
        + &decisions(agents);
    let mut ctl = InProcess::start(&toml, Some(rec.clone() as Arc<dyn DnsProvider>))?;
    ctl.acting(Duration::from_secs(30)).await?;

    // The messages, built before anything is timed.
    let servers = [
        ("site1", "cas1"),
        ("site1", "cas2"),
        ("site2", "cas3"),
        ("site2", "cas4"),
    ];
    let mut seqs = vec![0u64; agents];
    let batch: Vec<(String, Vec<u8>)> = (0..messages)
        .map(|i| {
            let a = i % agents;
            seqs[a] += 1;
            let (site, server) = servers[(i / agents) % servers.len()];
            let (subject, payload) =
                rig::observation(&format!("ing-{a}"), "w", seqs[a], site, server, "eas", true);
            (subject, payload)
        })
        .collect();

    let sub_client = async_nats::connect(nats.url()).await?;
    let mut sub = sub_client.subscribe("sitewarden.v1.obs.>").await?;
    sub_client.flush().await?;
    let plain = tokio::spawn(async move {
        let mut seen = Intake {
            first: None,
            last: None,
            count: 0,
        };
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            let now = Instant::now();
            seen.first.get_or_insert(now);
            seen.last = Some(now);
            seen.count += 1;
            if seen.count as usize == messages {
                break;
            }
        }
        seen
    });
    let metrics = ctl.metrics.clone();
    let base = metrics.events_accepted.get();
    let controller = tokio::spawn(async move {
        let mut seen = Intake {
            first: None,
            last: None,
            count: 0,
        };
        let mut idle_since = Instant::now();
        loop {
            let n = metrics.events_accepted.get() - base;
            let now = Instant::now();
            if n > seen.count {
                seen.first.get_or_insert(now);
                seen.last = Some(now);
                seen.count = n;
                idle_since = now;
            }
            if seen.count as usize >= messages || idle_since.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    });

    // Several publishing connections, so one publisher's speed does not cap both sides; each
    // agent's messages go through one connection, so their order (and sequence) is kept.
    let mut shares: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); PUBLISHERS];
    for (i, m) in batch.into_iter().enumerate() {
        shares[(i % agents) % PUBLISHERS].push(m);
    }
    let mut publishers = Vec::new();
    for _ in 0..PUBLISHERS {
        publishers.push(async_nats::connect(nats.url()).await?);
    }
    let started = Instant::now();
    let mut sending = Vec::new();
    for (publisher, share) in publishers.into_iter().zip(shares) {
        sending.push(tokio::spawn(async move {
            for (subject, payload) in share {
                publisher.publish(subject, payload.into()).await?;
            }
            publisher.flush().await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for s in sending {
        s.await??;
    }
    let published_in = started.elapsed().as_secs_f64();
    let plain = plain.await?;
    let controller = controller.await?;
    ctl.stop().await;
    let (c, p) = (controller.rate(), plain.rate());
    eprintln!(
        "ingest: published {messages} in {published_in:.3} s; plain subscriber got {} at {p:.0}/s, controller accepted {} at {c:.0}/s",
        plain.count, controller.count
    );
    println!(
        "{}",
        serde_json::json!({
            "ingest_messages": messages,
            "ingest_agents": agents,
            "ingest_events_per_s": c.round(),
            "ingest_plain_events_per_s": p.round(),
            "ingest_ratio": rig::round(if p > 0.0 { c / p } else { 0.0 }, 3),
            "ingest_controller_received": controller.count,
            "ingest_plain_received": plain.count,
            "ingest_publish_s": rig::round(published_in, 3),
        })
    );
    Ok(())
}
