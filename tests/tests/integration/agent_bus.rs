//! The agent against a real nats-server: what it publishes, and what it does while the bus is
//! gone. TCP checks against local listeners stand in for servers here; the Exchange-specific
//! probes are covered in `agent_probes.rs`.

use std::time::Duration;

use sitewarden_shared::{CollectOutcome, CollectVia, ErrorClass, Outcome};
use sitewarden_tests::agent_events::{collect, dbcopy, observation};
use sitewarden_tests::config_toml::{
    AgentSite, AgentTable, AgentToml, Check, DbCopy, NatsTable, SecretFile, ServerAddress,
};
use sitewarden_tests::in_process::RunningAgent;
use sitewarden_tests::metrics_page::metric;
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::wait_for;
use sitewarden_tests::{DEADLINE, free_addr};

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dbcopy")
}

/// An agent in site1 with TCP checks of cas1 (127.0.0.1) on the given ports, every 500 ms,
/// and the database-copy collectors `dbcopy`.
fn tcp_agent(
    nats: &str,
    listen: std::net::SocketAddr,
    ports: &[u16],
    dbcopy: Vec<DbCopy>,
) -> String {
    AgentToml {
        agent: AgentTable {
            id: "site1-agent1".into(),
            site: "site1".into(),
            listen: Some(listen),
            heartbeat_interval: Some(Duration::from_millis(500)),
        },
        nats: NatsTable {
            ping_interval: Some(Duration::from_millis(500)),
            ..NatsTable::servers([nats])
        },
        sites: vec![AgentSite {
            name: "site1".into(),
            servers: vec![ServerAddress {
                name: "cas1".into(),
                address: "127.0.0.1".into(),
            }],
            ..AgentSite::default()
        }],
        checks: ports
            .iter()
            .enumerate()
            .map(|(i, port)| Check {
                name: format!("tcp{i}"),
                kind: "tcp".into(),
                site: "site1".into(),
                port: Some(*port),
                interval: Some(Duration::from_millis(500)),
                timeout: Some(Duration::from_millis(400)),
                ..Check::default()
            })
            .collect(),
        dbcopy,
        ..AgentToml::default()
    }
    .render()
}

#[tokio::test]
async fn given_a_listening_and_a_closed_port_when_probed_then_pass_and_connect_refused_are_published()
 {
    let nats = NatsServer::start().await.unwrap();
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = sitewarden_tests::nats_server::free_port();
    let mut rx = collect(&nats.url()).await;
    let agent = RunningAgent::start(&tcp_agent(
        &nats.url(),
        free_addr(),
        &[open.local_addr().unwrap().port(), closed_port],
        Vec::new(),
    ));

    let pass = observation(&mut rx, "tcp0", "cas1", |_| true).await;
    assert_eq!(pass.outcome, Outcome::Pass);
    assert_eq!(pass.schema_version, 1);
    assert_eq!(
        (
            pass.agent.as_str(),
            pass.site.as_str(),
            pass.target_site.as_str()
        ),
        ("site1-agent1", "site1", "site1")
    );
    assert_eq!(pass.protocol, "tcp");
    let fail = observation(&mut rx, "tcp1", "cas1", |_| true).await;
    assert_eq!(fail.outcome, Outcome::Fail);
    assert_eq!(fail.error_class, Some(ErrorClass::ConnectRefused));
    assert!(
        fail.error
            .as_deref()
            .unwrap_or_default()
            .contains("refused")
    );
    agent.stop().await;
}

#[tokio::test]
async fn given_nats_restarts_when_the_agent_kept_probing_then_the_latest_results_arrive_in_sequence_and_drops_are_counted()
 {
    let nats = NatsServer::start().await.unwrap();
    // A file-backed stream records everything that reaches the server, across the restart, so
    // the test sees what the agent delivered without racing its own reconnect.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(nats.url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "CAPTURE".into(),
            subjects: vec!["sitewarden.v1.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let http = free_addr();
    let agent = RunningAgent::start(&tcp_agent(&nats.url(), http, &[port, port], Vec::new()));
    wait_for("agent connected", DEADLINE, || async {
        metric(http, "sitewarden_agent_nats_connected", "")
            .await
            .filter(|v| *v == 1.0)
    })
    .await
    .unwrap();

    nats.stop().await.unwrap();
    wait_for("agent notices the outage", DEADLINE, || async {
        metric(http, "sitewarden_agent_nats_connected", "")
            .await
            .filter(|v| *v == 0.0)
    })
    .await
    .unwrap();
    let outage_start = chrono::Utc::now();
    // Several results per check are superseded while the bus is gone, and probing goes on.
    wait_for("drops counted", DEADLINE, || async {
        metric(http, "sitewarden_agent_dropped_events_total", "")
            .await
            .filter(|v| *v >= 6.0)
    })
    .await
    .unwrap();
    nats.restart().await.unwrap();
    let outage_end = wait_for("agent reconnects", DEADLINE, || async {
        metric(http, "sitewarden_agent_nats_connected", "")
            .await
            .filter(|v| *v == 1.0)
            .map(|_| chrono::Utc::now())
    })
    .await
    .unwrap();

    // After reconnect the stream holds each check's buffered result from the outage and a
    // heartbeat that reports the drops.
    let read_all = || async {
        let mut s = stream.clone();
        let last = s.info().await.ok()?.state.last_sequence;
        let mut events = Vec::new();
        for n in 1..=last {
            let m = s.get_raw_message(n).await.ok()?;
            let v: serde_json::Value = serde_json::from_slice(&m.payload).ok()?;
            events.push((m.subject.to_string(), v));
        }
        Some(events)
    };
    wait_for(
        "buffered results and drop count delivered",
        DEADLINE,
        || async {
            let events = read_all().await?;
            let hb_drops = events.iter().any(|(subj, v)| {
                subj.contains(".heartbeat.") && v["dropped_total"].as_u64() >= Some(6)
            });
            let checks: std::collections::BTreeSet<&str> = events
                .iter()
                .filter(|(subj, v)| {
                    subj.contains(".obs.") && in_window(v, outage_start, outage_end)
                })
                .filter_map(|(_, v)| v["check"].as_str())
                .collect();
            (hb_drops && checks.len() == 2).then_some(())
        },
    )
    .await
    .unwrap();

    // Everything the agent counted as published reached the server: the only losses are the
    // documented, counted drops. The agent's sequence strictly increases in arrival order.
    let published = metric(http, "sitewarden_agent_published_events_total", "")
        .await
        .unwrap();
    agent.stop().await;
    let events = read_all().await.unwrap();
    assert!(
        events.len() as f64 >= published,
        "{} events stored, {published} published",
        events.len()
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|(_, v)| v["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence must increase in arrival order: {seqs:?}"
    );
}

fn in_window(
    v: &serde_json::Value,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> bool {
    v["observed_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t >= from && t < to)
}

#[tokio::test]
async fn given_nats_is_down_at_start_when_it_appears_then_the_agent_connects_and_publishes() {
    let nats = NatsServer::start().await.unwrap();
    nats.stop().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = free_addr();
    let agent = RunningAgent::start(&tcp_agent(
        &nats.url(),
        http,
        &[listener.local_addr().unwrap().port()],
        Vec::new(),
    ));
    wait_for("probing without a bus", DEADLINE, || async {
        metric(http, "sitewarden_agent_probes_total", "")
            .await
            .filter(|v| *v >= 2.0)
    })
    .await
    .unwrap();
    assert_eq!(
        metric(http, "sitewarden_agent_nats_connected", "").await,
        Some(0.0)
    );
    nats.restart().await.unwrap();
    let mut rx = collect(&nats.url()).await;
    observation(&mut rx, "tcp0", "cas1", |o| o.outcome == Outcome::Pass).await;
    assert!(!agent.handle.is_finished());
    agent.stop().await;
}

/// A collector of DAG1 named `name` that runs `command` every 500 ms.
fn collector(name: &str, command: &[&str], timeout: Duration) -> DbCopy {
    DbCopy {
        name: name.into(),
        dag: "DAG1".into(),
        command: command.iter().map(|c| (*c).to_owned()).collect(),
        interval: Some(Duration::from_millis(500)),
        timeout: Some(timeout),
        push_token: None,
    }
}
// The agent binary runs a multi-thread runtime; so does this test (docs/testing.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_collector_commands_when_they_succeed_or_misbehave_then_snapshots_carry_copies_or_the_error()
 {
    let nats = NatsServer::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let f = fixtures();
    let ps7 = f.join("ps7.json");
    let ps51 = f.join("ps51.json");
    let bare = f.join("bare-integer.json");
    let garbage = f.join("garbage.txt");
    let five = Duration::from_secs(5);
    let collectors = vec![
        collector("ps7", &["cat", ps7.to_str().unwrap()], five),
        collector("ps51", &["cat", ps51.to_str().unwrap()], five),
        collector("bare", &["cat", bare.to_str().unwrap()], five),
        collector("garbage", &["cat", garbage.to_str().unwrap()], five),
        collector(
            "failing",
            &[
                "sh",
                "-c",
                "echo 'Get-MailboxDatabaseCopyStatus: access denied' >&2; exit 3",
            ],
            five,
        ),
        collector("hanging", &["sleep", "37.25"], Duration::from_millis(600)),
    ];
    let mut rx = collect(&nats.url()).await;
    let agent = RunningAgent::start(&tcp_agent(
        &nats.url(),
        free_addr(),
        &[listener.local_addr().unwrap().port()],
        collectors,
    ));

    let ok7 = dbcopy(&mut rx, |d| d.source.as_str() == "ps7").await;
    assert_eq!(
        (ok7.outcome, ok7.via, ok7.dag.as_str()),
        (CollectOutcome::Ok, CollectVia::Command, "DAG1")
    );
    assert!(!ok7.copies.is_empty());
    assert!(ok7.copies.iter().any(|c| c.is_active()));
    let ok51 = dbcopy(&mut rx, |d| d.source.as_str() == "ps51").await;
    assert_eq!(ok51.outcome, CollectOutcome::Ok);
    assert_eq!(
        ok51.copies.len(),
        ok7.copies.len(),
        "both shapes describe the same DAG"
    );

    let bare = dbcopy(&mut rx, |d| d.source.as_str() == "bare").await;
    assert_eq!(bare.outcome, CollectOutcome::Error);
    assert!(
        bare.error.as_deref().unwrap().contains("bare integer"),
        "{:?}",
        bare.error
    );
    assert!(bare.copies.is_empty());
    let garbage = dbcopy(&mut rx, |d| d.source.as_str() == "garbage").await;
    assert!(
        garbage.error.as_deref().unwrap().contains("not JSON"),
        "{:?}",
        garbage.error
    );
    let failing = dbcopy(&mut rx, |d| d.source.as_str() == "failing").await;
    let err = failing.error.unwrap();
    assert!(
        err.contains("exit status: 3") && err.contains("access denied"),
        "{err}"
    );
    let hanging = dbcopy(&mut rx, |d| d.source.as_str() == "hanging").await;
    assert!(
        hanging.error.as_deref().unwrap().contains("did not finish"),
        "{:?}",
        hanging.error
    );
    // Every collector it killed was reaped, and so is the one running at shutdown: no
    // `sleep 37.25` is left, not even as a zombie.
    agent.stop().await;
    wait_for("hung collectors reaped", DEADLINE, || async {
        (count_processes("37.25") == 0).then_some(())
    })
    .await
    .unwrap();
}

/// Children of this test process (zombies included) that are `sleep` or mention `needle`.
fn count_processes(needle: &str) -> usize {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // stat: "pid (comm) state ppid ..."
            let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let ppid = after_comm.split_whitespace().nth(1).unwrap_or("");
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            ppid == me
                && (stat.contains("(sleep)") || String::from_utf8_lossy(&cmd).contains(needle))
        })
        .count()
}

#[tokio::test]
async fn given_the_push_endpoint_when_a_task_posts_copy_status_then_only_authenticated_valid_pushes_are_published()
 {
    let nats = NatsServer::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = free_addr();
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), "s3cret-push-token\n").unwrap();
    let push = DbCopy {
        name: "dag1".into(),
        dag: "DAG1".into(),
        push_token: Some(SecretFile::at(token_file.path())),
        ..DbCopy::default()
    };
    let mut rx = collect(&nats.url()).await;
    let agent = RunningAgent::start(&tcp_agent(
        &nats.url(),
        http,
        &[listener.local_addr().unwrap().port()],
        vec![push],
    ));
    let url = format!("http://{http}/api/v1/dbcopy/dag1");
    let body = std::fs::read_to_string(fixtures().join("ps51.json")).unwrap();
    let client = reqwest::Client::new();
    let up = wait_for("agent HTTP server", DEADLINE, || async {
        reqwest::get(format!("http://{http}/healthz")).await.ok()
    })
    .await
    .unwrap();
    assert_eq!(up.status(), 200);

    let wrong = client
        .post(&url)
        .bearer_auth("guess")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let garbage = client
        .post(&url)
        .bearer_auth("s3cret-push-token")
        .body("<html>")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert!(garbage.text().await.unwrap().contains("not JSON"));
    let unknown = client
        .post(format!("http://{http}/api/v1/dbcopy/nope"))
        .bearer_auth("s3cret-push-token")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        401,
        "unknown sources look like bad tokens"
    );
    let huge = client
        .post(&url)
        .bearer_auth("s3cret-push-token")
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    let ok = client
        .post(&url)
        .bearer_auth("s3cret-push-token")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let snap = dbcopy(&mut rx, |_| true).await;
    assert_eq!(
        (snap.via, snap.outcome),
        (CollectVia::Push, CollectOutcome::Ok)
    );
    assert!(!snap.copies.is_empty());
    // Only the valid push was published.
    assert_eq!(
        metric(http, "sitewarden_agent_published_events_total", "dbcopy").await,
        Some(1.0)
    );
    assert_eq!(
        metric(http, "sitewarden_agent_push_rejected_total", "unauthorized").await,
        Some(2.0),
        "the wrong token and the unknown source"
    );
    assert_eq!(
        metric(http, "sitewarden_agent_push_rejected_total", "unparsable").await,
        Some(1.0)
    );
    agent.stop().await;
}
