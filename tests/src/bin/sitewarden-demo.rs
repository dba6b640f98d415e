//! `sitewarden-demo`: the README's first command, end to end on embedded defaults.
//!
//! Starts, on loopback only, a real nats-server and two emulated Exchange sites (two HTTPS
//! client-access servers each, certificates from a throw-away CA), runs the agent's `probe-once`
//! table, then runs the agent and narrates what it publishes while site1's client-access servers
//! die and recover. Everything is cleaned up on exit. The last line is a JSON summary.
//! (The controller pair, DNS and alerts join this demo as they land.)

use std::time::{Duration, Instant};

use futures::StreamExt;
use sitewarden_agent::AgentConfig;
use sitewarden_shared::config::Source;
use sitewarden_shared::{Observation, Outcome};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer, TestCa};
use sitewarden_tests::nats_server::NatsServer;
use tokio_util::sync::CancellationToken;

const NAMES: [&str; 4] = [
    "mail.example.com",
    "mail-rr.example.com",
    "mail-site1.example.com",
    "mail-site2.example.com",
];

fn say(start: Instant, text: &str) {
    println!("[{:>6.2}s] {text}", start.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let start = Instant::now();
    say(
        start,
        "starting nats-server (JetStream) and two emulated Exchange sites on 127.0.0.1",
    );
    let nats = NatsServer::start().await?;
    let ca = TestCa::new()?;
    let dir = tempfile::tempdir()?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem())?;
    let mut cas = Vec::new();
    for (i, site) in ["site1", "site1", "site2", "site2"].iter().enumerate() {
        let fqdn = format!("EXCH-{}-{}.CONTOSO.LOCAL", site.to_uppercase(), i % 2 + 1);
        let server =
            ExchangeServer::start(ExchangeOptions::new(&fqdn).with_tls(ca.issue(&NAMES, 365)?))
                .await?;
        say(
            start,
            &format!(
                "  {site} cas{} at https://{} ({fqdn})",
                i + 1,
                server.addr()
            ),
        );
        cas.push(server);
    }
    let config = format!(
        r#"
[agent]
id = "witness-agent1"
site = "witness"

[nats]
servers = ["{nats}"]

[defaults]
interval = "2s"
timeout = "1500ms"
ca_file = "{ca}"

[[sites]]
name = "site1"
activesync_url = "https://mail-site1.example.com/Microsoft-Server-ActiveSync"
tls_names = ["mail.example.com", "mail-rr.example.com", "mail-site1.example.com"]
servers = [{{ name = "cas1", address = "{a1}" }}, {{ name = "cas2", address = "{a2}" }}]

[[sites]]
name = "site2"
activesync_url = "https://mail-site2.example.com/Microsoft-Server-ActiveSync"
tls_names = ["mail.example.com", "mail-rr.example.com", "mail-site2.example.com"]
servers = [{{ name = "cas3", address = "{a3}" }}, {{ name = "cas4", address = "{a4}" }}]

[[checks]]
name = "eas-site1"
kind = "activesync"
site = "site1"

[[checks]]
name = "eas-site2"
kind = "activesync"
site = "site2"

[[checks]]
name = "owa-site1"
kind = "exchange_healthcheck"
site = "site1"
vdir = "owa"
"#,
        nats = nats.url(),
        ca = ca_path.display(),
        a1 = cas[0].addr(),
        a2 = cas[1].addr(),
        a3 = cas[2].addr(),
        a4 = cas[3].addr(),
    );
    let agent = AgentConfig::from_source(&Source::inline("demo-agent.toml", config))?;

    say(
        start,
        "sitewarden-agent probe-once: what the witness agent sees",
    );
    let (table, all_ok) = sitewarden_agent::probe_once::run(&agent)
        .await
        .map_err(anyhow::Error::msg)?;
    print!("{table}");
    anyhow::ensure!(all_ok, "a healthy lab should pass every check");

    let client = async_nats::connect(nats.url()).await?;
    let mut sub = client.subscribe("sitewarden.v1.obs.>").await?;
    let shutdown = CancellationToken::new();
    let agent_task = tokio::spawn(sitewarden_agent::run::run(agent, shutdown.clone()));
    wait_obs(&mut sub, |o| {
        o.check.as_str() == "eas-site1" && o.outcome == Outcome::Pass
    })
    .await?;
    say(
        start,
        "agent running: both sites pass; events flow on sitewarden.v1.obs.>",
    );

    say(
        start,
        "FAULT: site1's client-access servers stop (connection refused)",
    );
    let killed = Instant::now();
    cas[0].set(Behaviour::Down).await?;
    cas[1].set(Behaviour::Down).await?;
    let mut failures = 0;
    let mut first_fail = None;
    while failures < 3 {
        let o = wait_obs(&mut sub, |o| {
            o.server.as_str() == "cas1"
                && o.check.as_str() == "eas-site1"
                && o.outcome == Outcome::Fail
        })
        .await?;
        failures += 1;
        first_fail.get_or_insert(killed.elapsed());
        let why = o
            .error
            .as_deref()
            .and_then(|e| e.rsplit(": ").next())
            .unwrap_or_default()
            .to_owned();
        say(
            start,
            &format!(
                "  failure {failures} of {} on {}: {:?} ({why})",
                o.check,
                o.server,
                o.error_class
                    .unwrap_or(sitewarden_shared::ErrorClass::Connect)
            ),
        );
    }
    let fall_seen = killed.elapsed();
    say(
        start,
        &format!(
            "third consecutive failure of cas1 {:.1}s after the fault: enough for the controller's fall = 3 (floor: interval 2s × fall 3 = 6s)",
            fall_seen.as_secs_f64()
        ),
    );
    let site2 = wait_obs(&mut sub, |o| {
        o.target_site.as_str() == "site2" && o.outcome == Outcome::Pass
    })
    .await?;
    say(
        start,
        &format!(
            "  site2 still passes: {} on {} HTTP {}",
            site2.check,
            site2.server,
            site2.http_status.unwrap_or(0)
        ),
    );

    say(start, "RECOVERY: site1 comes back");
    let recovered = Instant::now();
    cas[0].set(Behaviour::Healthy).await?;
    cas[1].set(Behaviour::Healthy).await?;
    wait_obs(&mut sub, |o| {
        o.target_site.as_str() == "site1" && o.outcome == Outcome::Pass
    })
    .await?;
    let recovery = recovered.elapsed();
    say(
        start,
        &format!(
            "site1 passes again {:.1}s after recovery",
            recovery.as_secs_f64()
        ),
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), agent_task).await;
    drop(cas);
    drop(nats);
    say(start, "lab stopped and cleaned up");
    println!(
        "{}",
        serde_json::json!({
            "ok": true,
            "stage": "agent",
            "first_failure_s": first_fail.map(|d| (d.as_secs_f64() * 100.0).round() / 100.0),
            "three_failures_s": (fall_seen.as_secs_f64() * 100.0).round() / 100.0,
            "floor_s": 6.0,
            "recovery_s": (recovery.as_secs_f64() * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

async fn wait_obs(
    sub: &mut async_nats::Subscriber,
    pred: impl Fn(&Observation) -> bool,
) -> anyhow::Result<Observation> {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(until, sub.next())
            .await
            .map_err(|_| anyhow::anyhow!("no matching observation within 20s"))?
            .ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        if let Ok(o) = serde_json::from_slice::<Observation>(&msg.payload)
            && pred(&o)
        {
            return Ok(o);
        }
    }
}
