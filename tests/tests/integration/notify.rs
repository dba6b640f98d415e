//! Chat-ops alert delivery against local HTTP receivers (axum on 127.0.0.1:0).
//!
//! Each sink's exact JSON is compared with a committed snapshot under `tests/fixtures/notify/`
//! (timestamps normalised); run with `SITEWARDEN_UPDATE_FIXTURES=1` to rewrite them after an
//! intended change. The stories: a critical site verdict and a resolution reach Slack, Teams and
//! a generic webhook; a Slack sink set to `critical` ignores warnings; fifty alerts from a
//! flapping observer become four messages (three at once, one summary); a receiver that never answers never blocks
//! `send`; and the webhook URL (a secret) never shows in `Debug`, `Display` or errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sitewarden_controller::engine::evidence::{
    ComponentEvidence, Evidence, ObserverEvidence, Rule, SiteEvidence,
};
use sitewarden_controller::engine::observer::CheckStatus;
use sitewarden_controller::engine::quorum::QuorumResult;
use sitewarden_controller::engine::{Alert, AlertKind, Severity, Verdict};
use sitewarden_controller::notify::render::Message;
use sitewarden_controller::notify::{Dispatcher, Sink, SinkConfig, SinkKind, Tuning, Windows};
use sitewarden_controller::provider::SecretString;
use sitewarden_shared::{AgentId, CheckName, ErrorClass, ServerId, SiteId};
use sitewarden_tests::{DEADLINE, wait_for};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "T0000-B0000-s3cr3t-token";

/// A receiver that records every body it gets, in order.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Self {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let app = Router::new()
            .route("/hook/{token}", post(record))
            .with_state(bodies.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook/{SECRET}"),
            bodies,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("receiver lock").clone()
    }

    fn sink(&self, name: &str, kind: SinkKind) -> SinkConfig {
        SinkConfig::new(name, kind, SecretString::from(self.url.clone()))
    }

    async fn wait_for_count(&self, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} bodies"), DEADLINE, || async {
            let b = self.bodies();
            (b.len() >= n).then_some(b)
        })
        .await
        .expect("bodies arrive")
    }
}

async fn record(State(bodies): State<Arc<Mutex<Vec<Value>>>>, body: String) -> &'static str {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    bodies.lock().expect("receiver lock").push(v);
    "ok"
}

fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, h, m, s)
        .single()
        .expect("a valid test time")
}

fn site(s: &str) -> SiteId {
    s.parse().expect("a test site id")
}

/// site1 Down at 03:00:20: ex1's imap failing from two observers.
fn site1_down_evidence() -> Evidence {
    let observer = |agent: &str, obs_site: &str| ObserverEvidence {
        agent: agent.parse::<AgentId>().expect("agent id"),
        site: site(obs_site),
        check: "imap".parse::<CheckName>().expect("check name"),
        status: CheckStatus::Failing,
        since: t(3, 0, 15),
        streak_started: t(3, 0, 5),
        streak: 3,
        streak_outcome: None,
        last_at: t(3, 0, 19),
        fresh: true,
        error: Some(ErrorClass::Timeout),
        http_status: None,
        latency_ms: None,
    };
    let mut sites = BTreeMap::new();
    sites.insert(
        site("site1"),
        Arc::new(SiteEvidence {
            verdict: Verdict::Down,
            since: Some(t(3, 0, 20)),
            routable_since: None,
            drained: false,
            falling: false,
            rising: false,
            components: vec![ComponentEvidence {
                server: "ex1".parse::<ServerId>().expect("server id"),
                protocol: "imap".into(),
                result: QuorumResult::Down,
                since: Some(t(3, 0, 20)),
                observers: vec![
                    observer("obs-site2", "site2"),
                    observer("obs-site3", "site3"),
                ],
            }],
        }),
    );
    Evidence {
        rule: Rule::MoveAwayFromDown,
        at: t(3, 0, 20),
        note: "a quorum of observers outside site1 sees imap Down on every server".into(),
        sites: Arc::new(sites),
        failback_eligible_at: None,
    }
}

fn site1_down() -> Alert {
    Alert {
        severity: Severity::Critical,
        kind: AlertKind::SiteVerdict,
        subject: "site1".into(),
        text: "site site1 is Down".into(),
        evidence: Some(site1_down_evidence()),
    }
}

fn site1_up() -> Alert {
    Alert {
        severity: Severity::Info,
        kind: AlertKind::SiteVerdict,
        subject: "site1".into(),
        text: "site site1 is Up".into(),
        evidence: None,
    }
}

fn pin_target_down() -> Alert {
    Alert {
        severity: Severity::Warning,
        kind: AlertKind::OverrideTargetDown,
        subject: "mail.example.com".into(),
        text: "mail.example.com: pinned to mail-site1.example.com by alice (maintenance)".into(),
        evidence: Some(site1_down_evidence()),
    }
}

fn resolved() -> Alert {
    Alert {
        severity: Severity::Info,
        kind: AlertKind::Resolved,
        subject: "agent-site2".into(),
        text: "agent agent-site2 is sending heartbeats again".into(),
        evidence: None,
    }
}

/// Short windows so stories finish in about a second; one post in flight per sink, so the
/// snapshots' order across subjects does not depend on which request finishes first.
fn quick() -> Tuning {
    Tuning {
        windows: Windows {
            dedup: Duration::from_secs(60),
            burst: Duration::from_secs(1),
        },
        backoff: Duration::from_millis(50),
        in_flight: 1,
        ..Tuning::default()
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/notify")
        .join(format!("{name}.json"))
}

/// Replaces the send time (the only clock-dependent value) with a placeholder.
fn normalise(mut bodies: Vec<Value>) -> Value {
    for b in &mut bodies {
        if let Some(at) = b.get_mut("at") {
            *at = Value::String("<timestamp>".into());
        }
    }
    Value::Array(bodies)
}

/// Compares with the committed snapshot, or rewrites it when asked to.
fn assert_snapshot(name: &str, bodies: Vec<Value>) {
    let got = normalise(bodies);
    let path = fixture(name);
    let pretty = serde_json::to_string_pretty(&got).expect("serialise") + "\n";
    if std::env::var_os("SITEWARDEN_UPDATE_FIXTURES").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("fixture dir")).expect("create fixture dir");
        std::fs::write(&path, pretty).expect("write fixture");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    let want: Value = serde_json::from_str(&want).unwrap_or(Value::Null);
    assert_eq!(
        got,
        want,
        "{} is stale; if the change is intended, rerun with SITEWARDEN_UPDATE_FIXTURES=1.\ngot:\n{pretty}",
        path.display()
    );
}

#[tokio::test]
async fn each_sink_posts_the_committed_json_shape() {
    let rx = Receiver::start().await;
    let stop = CancellationToken::new();
    let kinds = [
        ("slack", SinkKind::Slack),
        ("teams", SinkKind::Teams),
        ("webhook", SinkKind::Webhook),
    ];
    for (name, kind) in kinds {
        let d = Dispatcher::spawn_with(vec![rx.sink(name, kind)], quick(), stop.clone());
        let before = rx.bodies().len();
        d.send(&site1_down());
        d.send(&pin_target_down());
        d.send(&resolved());
        let all = rx.wait_for_count(before + 3).await;
        assert_snapshot(name, all[before..].to_vec());
    }
    stop.cancel();
}

#[tokio::test]
async fn a_burst_summary_and_a_resolution_read_as_such() {
    let rx = Receiver::start().await;
    let stop = CancellationToken::new();
    let d = Dispatcher::spawn_with(
        vec![rx.sink("slack", SinkKind::Slack)],
        quick(),
        stop.clone(),
    );
    // Down, Up and Down again go out at once (each is news to the channel); the three flaps
    // after them are folded into the summary.
    for _ in 0..3 {
        d.send(&site1_down());
        d.send(&site1_up());
    }
    d.send(&resolved());
    let bodies = rx.wait_for_count(5).await;
    assert_snapshot("slack-burst", bodies.clone());
    let texts: Vec<&str> = bodies.iter().filter_map(|b| b["text"].as_str()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Resolved: agent agent-site2")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("3 more alerts about site1 in the last 1 s")),
        "{texts:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_critical_only_sink_ignores_warnings() {
    let chat = Receiver::start().await;
    let hook = Receiver::start().await;
    let stop = CancellationToken::new();
    let mut slack = chat.sink("slack", SinkKind::Slack);
    slack.min_severity = Severity::Critical;
    let d = Dispatcher::spawn_with(
        vec![slack, hook.sink("webhook", SinkKind::Webhook)],
        quick(),
        stop.clone(),
    );
    d.send(&pin_target_down());
    d.send(&resolved());
    d.send(&site1_down());
    hook.wait_for_count(3).await;
    wait_for("4 deliveries", DEADLINE, || async {
        (d.stats().delivered >= 4).then_some(())
    })
    .await
    .expect("deliveries counted");
    let got = chat.bodies();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0]["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("[critical]")
    );
    stop.cancel();
}

#[tokio::test]
async fn fifty_alerts_from_a_flapping_observer_make_a_few_messages_and_one_summary() {
    let rx = Receiver::start().await;
    let stop = CancellationToken::new();
    let storm = Tuning {
        windows: Windows {
            dedup: Duration::from_secs(60),
            burst: Duration::from_secs(2),
        },
        ..quick()
    };
    let d = Dispatcher::spawn_with(
        vec![rx.sink("webhook", SinkKind::Webhook)],
        storm,
        stop.clone(),
    );
    // Given an observer whose imap check flaps every 20 ms for a second,
    for i in 0..50 {
        d.send(&if i % 2 == 0 { site1_down() } else { site1_up() });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // when its burst window has closed and the dispatcher is stopped (flushing what it holds),
    wait_for("the burst summary", DEADLINE, || async {
        (d.stats().delivered >= 2).then_some(())
    })
    .await
    .expect("the storm is summarised");
    stop.cancel();
    d.closed().await;
    let s = wait_for("every queued message delivered", DEADLINE, || async {
        let s = d.stats();
        (s.delivered + s.failed == s.queued).then_some(s)
    })
    .await
    .expect("deliveries settle");
    // then the channel got Down, Up, Down again (the channel showed Up) and one summary of the
    // rest: every alert was sent, folded or dropped as a duplicate, and far fewer messages
    // than alerts went out (more only if a slow machine stretched the storm past the window).
    let bodies = rx.bodies();
    let single = bodies.iter().filter(|b| b["burst"].is_null()).count() as u64;
    assert_eq!(s.accepted, 50, "{s:?}");
    assert_eq!(s.aggregated + s.deduplicated + single, 50, "{s:?}");
    assert!(
        (4..=7).contains(&bodies.len()),
        "{} messages: {bodies:#?}",
        bodies.len()
    );
    assert_eq!(bodies[0]["title"], "Critical: site verdict changed (site1)");
    let last = &bodies[bodies.len() - 1];
    assert!(
        last["title"]
            .as_str()
            .unwrap_or_default()
            .contains("more alerts about site1 in the last 2 s"),
        "{last:#?}"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_never_blocks_send() {
    // A receiver that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hang = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let stop = CancellationToken::new();
    let tuning = Tuning {
        queue: 8,
        sink_queue: 2,
        request_timeout: Duration::from_secs(300),
        ..quick()
    };
    let url = SecretString::from(format!("http://{addr}/hook/{SECRET}"));
    let d = Dispatcher::spawn_with(
        vec![SinkConfig::new("hung", SinkKind::Webhook, url)],
        tuning,
        stop.clone(),
    );
    let alert_about = |i: usize| Alert {
        subject: format!("agent-{i}"),
        ..resolved()
    };
    // On this single-threaded runtime nothing else runs during the loop: if `send` waited for
    // room, the loop could never finish.
    for i in 0..1000 {
        d.send(&alert_about(i));
    }
    let s = d.stats();
    assert_eq!((s.accepted, s.overflowed), (8, 992));
    // Let the dispatcher hand the queue to the hung sink, then send another thousand.
    wait_for("the alerts handed to the sink", DEADLINE, || async {
        let s = d.stats();
        (s.queued + s.sink_overflowed == 8).then_some(())
    })
    .await
    .expect("the shaper hands every alert on behind the hung requests");
    for i in 1000..2000 {
        d.send(&alert_about(i));
    }
    let s = d.stats();
    assert_eq!(s.accepted + s.overflowed, 2000);
    assert_eq!(
        s.delivered + s.failed,
        0,
        "nothing can have been delivered: {s:?}"
    );
    stop.cancel();
    hang.abort();
}

#[tokio::test]
async fn the_webhook_url_never_shows_in_debug_display_or_errors() {
    // A port with nothing listening: connection refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let url = format!("http://{addr}/hook/{SECRET}");
    let cfg = SinkConfig::new("refused", SinkKind::Slack, SecretString::from(url));
    assert!(!format!("{cfg:?}").contains(SECRET));
    let sink = Sink::new(cfg.clone(), reqwest::Client::new());
    assert!(!format!("{sink:?}").contains(SECRET));
    let err = sink
        .deliver(&Message::single(Utc::now(), site1_down()))
        .await
        .expect_err("nothing listens there");
    let shown = format!("{err} / {err:?}");
    assert!(shown.contains("refused"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("/hook/"), "{shown}");

    let stop = CancellationToken::new();
    let d = Dispatcher::spawn_with(vec![cfg], quick(), stop.clone());
    assert!(!format!("{d:?}").contains(SECRET));
    d.send(&site1_down());
    wait_for("the delivery to be given up", DEADLINE, || async {
        (d.stats().failed == 1).then_some(())
    })
    .await
    .expect("retries end");
    assert_eq!(d.stats().retried, 3);
    stop.cancel();
}

/// An alert about mail.example.com, as the engine raises them.
fn about_mail(kind: AlertKind, severity: Severity, text: &str) -> Alert {
    Alert {
        severity,
        kind,
        subject: "mail.example.com".into(),
        text: text.into(),
        evidence: None,
    }
}

#[tokio::test]
async fn new_conditions_after_start_up_noise_reach_the_webhook_within_seconds() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    // Given the default windows (a 60 s burst window) and a webhook sink beside a sink whose
    // receiver refuses every connection (retried with backoff 1 s, 2 s, 4 s),
    let hook = sitewarden_tests::receiver::Receiver::start()
        .await
        .expect("start the webhook receiver");
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let stop = CancellationToken::new();
    let d = Dispatcher::spawn_with(
        vec![
            SinkConfig::new(
                "refused",
                SinkKind::Webhook,
                SecretString::from(format!("http://{refused}/hook")),
            ),
            SinkConfig::new(
                "webhook",
                SinkKind::Webhook,
                SecretString::from(hook.url("/alerts")),
            ),
        ],
        Tuning::default(),
        stop.clone(),
    );
    // when start-up noise about mail.example.com (fail static and resolved, ten times over)
    // has opened its burst window,
    for _ in 0..10 {
        d.send(&about_mail(
            AlertKind::FailStatic,
            Severity::Warning,
            "mail.example.com fails static: site2 is Unknown",
        ));
        d.send(&about_mail(
            AlertKind::Resolved,
            Severity::Info,
            "mail.example.com: resolved",
        ));
    }
    wait_for("the noise's first messages", DEADLINE, || async {
        (hook.len() >= 3).then_some(())
    })
    .await
    .expect("the noise's first alerts are delivered");
    // then an Info, a Warning and a Critical of new conditions about the same namespace each
    // reach the webhook within seconds, not at the end of the window.
    let news = [
        about_mail(
            AlertKind::FailbackAvailable,
            Severity::Info,
            "mail.example.com: mail-rr.example.com is Up again; failback is manual",
        ),
        about_mail(
            AlertKind::Drift,
            Severity::Warning,
            "mail.example.com holds mail-old.example.com, which we did not write",
        ),
        about_mail(
            AlertKind::AllSitesDown,
            Severity::Critical,
            "every site is Down; mail.example.com is left as it is",
        ),
    ];
    let mut latencies = Vec::new();
    for alert in news {
        let raised = Utc::now();
        d.send(&alert);
        let arrived = wait_for(
            &format!("the {:?} alert at the webhook", alert.severity),
            DEADLINE,
            || async {
                hook.requests()
                    .into_iter()
                    .find(|r| r.json()["text"] == alert.text.as_str())
                    .map(|r| r.at)
            },
        )
        .await
        .expect("a new condition is delivered within 5 s");
        let latency = (arrived - raised).to_std().unwrap_or_default();
        eprintln!("raise -> delivery, {:?}: {latency:?}", alert.severity);
        latencies.push((alert.severity, latency));
    }
    for (severity, latency) in &latencies {
        assert!(
            *latency < Duration::from_secs(5),
            "{severity:?} took {latency:?}"
        );
    }
    // The noise itself went out as three messages (fail static, resolved, fail static again);
    // the rest waits for the window's summary.
    let noise = hook
        .requests()
        .iter()
        .filter(|r| {
            let kind = r.json()["kind"].clone();
            kind == "fail_static" || kind == "resolved"
        })
        .count();
    assert_eq!(noise, 3);
    assert!(d.stats().retried >= 1, "the refused sink is retrying");
    stop.cancel();
}
