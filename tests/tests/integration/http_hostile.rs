//! Hostile load on the HTTP surfaces, against real processes: a controller started with only
//! 256 file handles and held by hundreds of slow, half-open connections from many client
//! addresses still answers its API, keeps its lease and DNS service, answers a trickled Slack
//! command with 408, and fails a name over; an agent flooded with unauthenticated 4 MiB pushes
//! keeps its memory. Every attack is bounded in connections and in time, and prints its figures
//! (run with `--nocapture` to read them).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sitewarden_tests::config_toml::{
    AgentSite, AgentTable, AgentToml, Api, ApiToken, Check, DbCopy, NatsTable, SecretFile,
    ServerAddress, Slack,
};
use sitewarden_tests::ha_lab::{HaLab, LabOptions, NAME};
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::wait_for;
use sitewarden_tests::{DEADLINE, free_addr, workspace_binary as binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The controller's read token.
const READER: &str = "read-token-hostile-6d2f90a1";
/// The controller's Slack signing secret.
const SLACK_SECRET: &str = "slack-secret-hostile-0b7e";
/// The agent's push token.
const PUSH_TOKEN: &str = "push-token-hostile-93c1";

/// Connects to `to` from the loopback address `127.0.0.<from>`, so each attacker looks like
/// its own client to the per-client cap.
async fn connect_from(from: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, from), 0)))?;
    socket.connect(to).await
}

/// What the slow clients achieved.
#[derive(Default)]
struct SlowStats {
    /// Connections opened.
    opened: AtomicU64,
    /// Connections the server closed (refused at once, evicted, or timed out).
    closed: AtomicU64,
}

/// `clients` addresses × `per_client` connections, each sending a request head one header a
/// second and never finishing it, reopened when the server closes it (at most every 500 ms,
/// at most 40 times each), until `stop`.
fn slowloris(
    to: SocketAddr,
    clients: u8,
    per_client: usize,
    stop: CancellationToken,
) -> Arc<SlowStats> {
    let stats = Arc::new(SlowStats::default());
    for c in 0..clients {
        for _ in 0..per_client {
            let (stats, stop) = (stats.clone(), stop.clone());
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(Duration::from_millis(500));
                for _ in 0..40 {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = pace.tick() => {}
                    }
                    let Ok(mut s) = connect_from(10 + c, to).await else {
                        continue;
                    };
                    stats.opened.fetch_add(1, Ordering::Relaxed);
                    let _ = s
                        .write_all(b"GET /api/v1/status HTTP/1.1\r\nhost: x\r\n")
                        .await;
                    let mut trickle = tokio::time::interval(Duration::from_secs(1));
                    let mut buf = [0u8; 256];
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = trickle.tick() => {
                                if s.write_all(b"x-slow: 1\r\n").await.is_err() {
                                    break;
                                }
                            }
                            r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) {
                                break;
                            }
                        }
                    }
                    stats.closed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    stats
}

/// Open file handles of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples `f` every 20 ms until `stop` and returns the largest value seen.
fn peak_of(
    stop: CancellationToken,
    f: impl Fn() -> u64 + Send + 'static,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        let mut every = tokio::time::interval(Duration::from_millis(20));
        while !stop.is_cancelled() {
            every.tick().await;
            peak = peak.max(f());
        }
        peak
    })
}

/// Sends a slash command whose body (100 bytes promised) arrives one byte a second; returns
/// the status line and how long the answer took (None if none came within `within`).
async fn trickled_slack_command(to: SocketAddr, within: Duration) -> Option<(String, Duration)> {
    let mut s = TcpStream::connect(to).await.ok()?;
    let now = chrono::Utc::now().timestamp();
    let head = format!(
        "POST /slack/command HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         x-slack-request-timestamp: {now}\r\nx-slack-signature: v0={sig}\r\ncontent-length: 100\r\n\r\n",
        sig = "ab".repeat(32)
    );
    s.write_all(head.as_bytes()).await.ok()?;
    let start = Instant::now();
    let mut trickle = tokio::time::interval(Duration::from_secs(1));
    let mut buf = vec![0u8; 1024];
    let answer = tokio::time::timeout(within, async {
        loop {
            tokio::select! {
                _ = trickle.tick() => { let _ = s.write_all(b"t").await; }
                r = s.read(&mut buf) => return r.ok().filter(|n| *n > 0),
            }
        }
    })
    .await
    .ok()??;
    let text = String::from_utf8_lossy(&buf[..answer]);
    Some((text.lines().next()?.to_owned(), start.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_controller_with_256_file_handles_when_300_slow_clients_hold_it_then_it_answers_stays_on_the_bus_and_fails_over()
 {
    let secrets = tempfile::tempdir().unwrap();
    let read_token = secrets.path().join("read.token");
    std::fs::write(&read_token, READER).unwrap();
    let slack_secret = secrets.path().join("slack.secret");
    std::fs::write(&slack_secret, SLACK_SECRET).unwrap();
    let lab = HaLab::start(LabOptions {
        controllers: 1,
        builtin_dns: true,
        file_handles: Some(256),
        api: Some(Api {
            tokens: vec![ApiToken {
                name: "grafana".into(),
                role: "read".into(),
                token: SecretFile::at(&read_token),
            }],
        }),
        slack: Some(Slack {
            signing_secret: SecretFile::at(&slack_secret),
            allowed_users: Vec::new(),
        }),
        // Hundreds of slow clients load the machine on purpose (sitewarden_tests::machine).
        runs_alone: true,
        ..LabOptions::default()
    })
    .await;
    let ctl = &lab.controllers[0];
    let (http, pid) = (ctl.http, ctl.pid());
    assert_eq!(lab.dig(0, NAME), "mail-rr.example.com");
    let idle_files = open_files(pid);

    // 20 client addresses × 15 connections: more than the 64 connections a quarter of 256
    // handles allows, and more than the 8 one client may hold.
    let stop = CancellationToken::new();
    let stats = slowloris(http, 20, 15, stop.clone());
    let peak_files = peak_of(stop.clone(), move || open_files(pid) as u64);
    wait_for("every slow client connected once", DEADLINE, || async {
        (stats.opened.load(Ordering::Relaxed) >= 300).then_some(())
    })
    .await
    .unwrap();

    // A legitimate client, from its own address, is served throughout.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let start = Instant::now();
        let r = client
            .get(format!("http://{http}/api/v1/status"))
            .bearer_auth(READER)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the API did not answer under load: {e:?}\n{}", lab.logs()));
        assert_eq!(r.status(), 200);
        let ready = client
            .get(format!("http://{http}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "still on the bus");
        slowest = slowest.max(start.elapsed());
    }
    assert_eq!(ctl.acting().await, Some(true), "still holds the lease");
    assert_eq!(
        lab.dig(0, NAME),
        "mail-rr.example.com",
        "DNS over UDP answers"
    );

    // A Slack command trickled at 1 byte/s is cut off at Slack's deadline.
    let deadline = sitewarden_controller::runtime::slack::REQUEST_DEADLINE;
    let (status, took) = trickled_slack_command(http, deadline + Duration::from_secs(3))
        .await
        .expect("the trickled Slack command is answered");
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(took <= deadline + Duration::from_secs(1), "took {took:?}");

    // And the controller still does its job: site1 dies, the name moves.
    let died = Instant::now();
    lab.site1_dies().await;
    wait_for("mail moves to site2 under load", DEADLINE, || async {
        (lab.dig(0, NAME) == "mail-site2.example.com").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let failover = died.elapsed();
    assert_eq!(
        ctl.acting().await,
        Some(true),
        "the lease was kept throughout"
    );

    stop.cancel();
    let peak_files = peak_files.await.unwrap();
    eprintln!(
        "controller under 300 slow clients (nofile 256): {} connections opened, {} closed by \
         the controller; open files idle {idle_files}, peak {peak_files}; slowest legitimate \
         API+readyz pair {slowest:?}; trickled Slack answered {status:?} after {took:?}; \
         failover after {failover:?}",
        stats.opened.load(Ordering::Relaxed),
        stats.closed.load(Ordering::Relaxed),
    );
    // The listener holds at most the cap and a quarter (80 at 256 handles); a few more for a
    // socket being refused and the lab's own polling.
    let ceiling = sitewarden_shared::http_server::Limits::from_file_handles(256).hard_ceiling();
    assert!(
        peak_files as usize <= idle_files + ceiling + 8,
        "HTTP stayed inside its share of the 256 handles: idle {idle_files}, peak {peak_files}"
    );
    assert!(
        failover <= Duration::from_secs(8),
        "failover took {failover:?}"
    );
}

/// Sends a 4 MiB push as fast as the agent takes it: headers, then the body in 64 KiB writes
/// until the agent answers or closes. Returns the status code (0 when closed without one).
async fn push_4_mib(from: u8, to: SocketAddr, token: &str, body: Arc<Vec<u8>>) -> u16 {
    let Ok(s) = connect_from(from, to).await else {
        return 0;
    };
    let (mut rd, mut wr) = s.into_split();
    let head = format!(
        "POST /api/v1/dbcopy/dag1 HTTP/1.1\r\nhost: agent\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
        // Dropping the write half would half-close the connection, which the server takes
        // as the client leaving; hold it until the answer is read.
        std::future::pending::<()>().await;
    });
    let mut buf = [0u8; 64];
    let status = match tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0),
        _ => 0,
    };
    writer.abort();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_agent_when_200_unauthenticated_4_mib_pushes_arrive_at_once_then_its_memory_stays_bounded()
 {
    // 200 pushes of 4 MiB at once load the machine on purpose (sitewarden_tests::machine).
    let _alone = sitewarden_tests::machine::alone().await;
    let nats = NatsServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("push.token");
    std::fs::write(&token, PUSH_TOKEN).unwrap();
    let http = free_addr();
    let config = dir.path().join("agent.toml");
    let toml = AgentToml {
        agent: AgentTable {
            id: "site1-agent1".into(),
            site: "site1".into(),
            listen: Some(http),
            ..AgentTable::default()
        },
        nats: NatsTable::servers([nats.url()]),
        sites: vec![AgentSite {
            name: "site1".into(),
            servers: vec![ServerAddress {
                name: "cas1".into(),
                address: "127.0.0.1".into(),
            }],
            ..AgentSite::default()
        }],
        checks: vec![Check {
            name: "tcp".into(),
            kind: "tcp".into(),
            site: "site1".into(),
            port: Some(sitewarden_tests::nats_server::free_port()),
            interval: Some(Duration::from_secs(1)),
            ..Check::default()
        }],
        dbcopy: vec![DbCopy {
            name: "dag1".into(),
            dag: "DAG1".into(),
            push_token: Some(SecretFile::at(&token)),
            ..DbCopy::default()
        }],
        ..AgentToml::default()
    };
    std::fs::write(&config, toml.render()).unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = tokio::process::Command::new(binary("sitewarden-agent"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = agent.id().unwrap();
    wait_for("the agent's HTTP server", DEADLINE, || async {
        reqwest::get(format!("http://{http}/healthz")).await.ok()
    })
    .await
    .unwrap();
    let idle = rss_kib(pid);

    let stop = CancellationToken::new();
    let peak = peak_of(stop.clone(), move || rss_kib(pid));
    let body = Arc::new(vec![b' '; sitewarden_agent::server::MAX_PUSH_BYTES]);
    // 200 without a token (10 addresses × 20) and 40 with the token but junk bodies, all at once.
    let mut pushes = Vec::new();
    for i in 0..240u16 {
        let (from, token) = if i < 200 {
            (20 + (i % 10) as u8, "guessed-token")
        } else {
            (40 + (i % 10) as u8, PUSH_TOKEN)
        };
        pushes.push(tokio::spawn(push_4_mib(from, http, token, body.clone())));
    }
    // Status by group (0 = closed without an answer, e.g. reset while the body was still
    // being sent): without a token, then with the token.
    let mut statuses = [
        std::collections::BTreeMap::<u16, usize>::new(),
        Default::default(),
    ];
    for (i, p) in pushes.into_iter().enumerate() {
        *statuses[usize::from(i >= 200)]
            .entry(p.await.unwrap())
            .or_default() += 1;
    }
    stop.cancel();
    let peak = peak.await.unwrap();

    // A real push still goes through.
    let ps51 = std::fs::read_to_string(sitewarden_tests::fixture_path("dbcopy/ps51.json")).unwrap();
    let ok = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/dbcopy/dag1"))
        .bearer_auth(PUSH_TOKEN)
        .body(ps51)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let after = rss_kib(pid);
    eprintln!(
        "agent under 240 concurrent 4 MiB pushes (200 unauthenticated): VmRSS idle {} MiB, \
         peak {} MiB, after {} MiB; answers by status (0 = closed) without / with the token: {statuses:?}",
        idle / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        statuses[0].keys().all(|s| [0, 401].contains(s)) && statuses[0].contains_key(&401),
        "without a token: refused before the body, {statuses:?}"
    );
    assert!(
        statuses[1].keys().all(|s| [0, 400, 503].contains(s)) && statuses[1].contains_key(&400),
        "with the token: junk read by a few at a time and refused, the rest busy, {statuses:?}"
    );
    assert!(
        peak.saturating_sub(idle) < 64 * 1024,
        "memory grew by {} MiB",
        peak.saturating_sub(idle) / 1024
    );
    agent.kill().await.unwrap();
}
