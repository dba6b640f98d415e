//! Signed edge webhooks against local HTTP receivers (axum on 127.0.0.1:0).
//!
//! The stories: a notice arrives as the documented JSON, byte for byte, with a signature that
//! verifies, while a tampered body or an old timestamp does not; a receiver that answers 500 and
//! then hangs past the timeout gets the notice on the third attempt, and only once; a slow
//! receiver flooded with notices (some older, one from a deposed leader) never sees an older
//! `(epoch, generation)` after a newer one and ends on the newest; a receiver that refuses the
//! signature (401) is not retried.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use sitewarden_controller::edge::{
    DEFAULT_REPLAY_WINDOW, DeliveryOutcome, SIGNATURE_HEADER, TIMESTAMP_HEADER, VerifyError,
    WebhookDeliverer, WebhookEndpoint, WebhookError, WebhookRetry, verify,
};
use sitewarden_controller::provider::SecretString;
use sitewarden_shared::{EdgeNotification, SiteId, SiteVerdict};
use sitewarden_tests::{DEADLINE, wait_for};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "edge-test-secret-0123456789abcdef";

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Answer 200 after this long.
    Slow(Duration),
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    timestamp: String,
    signature: String,
    body: Bytes,
}

impl Request {
    fn notice(&self) -> EdgeNotification {
        EdgeNotification::decode(&self.body).expect("the body is an edge notification")
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Replies for the next requests, in order; 200 once it is empty.
    script: Vec<Reply>,
    /// Default reply once the script is used up.
    default: Option<Reply>,
    /// How many 2xx answers were given.
    ok_answers: usize,
}

#[derive(Clone, Default)]
struct Receiver {
    inner: Arc<Mutex<Inner>>,
    url: String,
}

impl Receiver {
    async fn start(script: Vec<Reply>, default: Option<Reply>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into_iter().rev().collect(),
            default,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/edge", post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            inner,
            url: format!("http://{addr}/edge"),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.inner.lock().expect("receiver lock").requests.clone()
    }

    fn ok_answers(&self) -> usize {
        self.inner.lock().expect("receiver lock").ok_answers
    }

    fn endpoint(&self, name: &str, timeout: Duration) -> WebhookEndpoint {
        let mut ep = WebhookEndpoint::new(
            name,
            self.url.parse().expect("receiver URL"),
            SecretString::from(SECRET),
        );
        ep.timeout = timeout;
        ep.retry = WebhookRetry {
            max_attempts: 5,
            base: Duration::from_millis(20),
            max: Duration::from_millis(50),
        };
        ep
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let reply = {
        let mut g = inner.lock().expect("receiver lock");
        g.requests.push(Request {
            timestamp: header(TIMESTAMP_HEADER),
            signature: header(SIGNATURE_HEADER),
            body,
        });
        g.script.pop().or(g.default).unwrap_or(Reply::Status(200))
    };
    let status = match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::OK),
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
    };
    if status.is_success() {
        inner.lock().expect("receiver lock").ok_answers += 1;
    }
    status
}

fn site(s: &str) -> SiteId {
    s.parse().expect("a test site id")
}

fn notice(epoch: u64, generation: u64) -> EdgeNotification {
    EdgeNotification {
        schema_version: 1,
        controller: "ctl-site3".into(),
        epoch,
        generation,
        issued_at: "2026-03-02T09:15:07.412093811Z"
            .parse()
            .expect("a test time"),
        active_sites: BTreeMap::from([
            ("DAG1".to_owned(), Some(site("site2"))),
            ("DAG2".to_owned(), None),
        ]),
        verdicts: BTreeMap::from([
            (site("site1"), SiteVerdict::Down),
            (site("site2"), SiteVerdict::Up),
        ]),
    }
}

async fn next_final_outcome(rx: &mut mpsc::Receiver<DeliveryOutcome>) -> DeliveryOutcome {
    loop {
        let o = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("an outcome within the deadline")
            .expect("the outcome channel is open");
        if !matches!(o.result, Err(WebhookError::Superseded { .. })) {
            return o;
        }
    }
}

#[tokio::test]
async fn a_notice_arrives_as_the_documented_json_with_a_signature_that_verifies() {
    let rx_http = Receiver::start(vec![], None).await;
    let stop = CancellationToken::new();
    let (deliverer, mut outcomes) = WebhookDeliverer::spawn(
        vec![rx_http.endpoint("f5-site1", Duration::from_secs(5))],
        stop.clone(),
    );
    assert_eq!(deliverer.notify(&notice(41, 7)), 1);

    let outcome = next_final_outcome(&mut outcomes).await;
    assert_eq!(outcome.endpoint, "f5-site1");
    assert_eq!((outcome.epoch, outcome.generation), (41, 7));
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.result, Ok(()));
    let reqs = rx_http.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];

    // Snapshot of the body, byte for byte (the example in docs/edge.md has the same shape).
    let expected = r#"{"schema_version":1,"controller":"ctl-site3","epoch":41,"generation":7,"issued_at":"2026-03-02T09:15:07.412093811Z","active_sites":{"DAG1":"site2","DAG2":null},"verdicts":{"site1":"down","site2":"up"}}"#;
    assert_eq!(
        std::str::from_utf8(&req.body).expect("UTF-8 body"),
        expected
    );

    let now = Utc::now();
    let ts: i64 = req.timestamp.parse().expect("Unix seconds");
    assert!((now.timestamp() - ts).abs() <= 5, "timestamp {ts} is now");
    assert!(req.signature.starts_with("v1=") && req.signature.len() == 67);
    let secret = SECRET.as_bytes();
    let window = DEFAULT_REPLAY_WINDOW;
    assert_eq!(
        verify(
            secret,
            &req.timestamp,
            &req.body,
            &req.signature,
            now,
            window
        ),
        Ok(())
    );
    let tampered = String::from_utf8(req.body.to_vec())
        .expect("UTF-8 body")
        .replace("\"site2\",\"DAG2\"", "\"site1\",\"DAG2\"");
    assert_ne!(tampered.as_bytes(), &req.body[..]);
    assert_eq!(
        verify(
            secret,
            &req.timestamp,
            tampered.as_bytes(),
            &req.signature,
            now,
            window
        ),
        Err(VerifyError::Mismatch)
    );
    let replayed_later = now + chrono::TimeDelta::minutes(6);
    assert!(matches!(
        verify(
            secret,
            &req.timestamp,
            &req.body,
            &req.signature,
            replayed_later,
            window
        ),
        Err(VerifyError::OutsideWindow { .. })
    ));
    assert_eq!(
        verify(
            b"some-other-receivers-secret",
            &req.timestamp,
            &req.body,
            &req.signature,
            now,
            window
        ),
        Err(VerifyError::Mismatch)
    );

    // The same notice again is a duplicate: nothing is queued, nothing is sent.
    assert_eq!(deliverer.notify(&notice(41, 7)), 0);
    assert_eq!(rx_http.requests().len(), 1);
    stop.cancel();
}

#[tokio::test]
async fn a_500_then_a_timeout_are_retried_and_the_notice_is_delivered_once() {
    let rx_http = Receiver::start(
        vec![Reply::Status(500), Reply::Slow(Duration::from_secs(5))],
        None,
    )
    .await;
    let stop = CancellationToken::new();
    let (deliverer, mut outcomes) = WebhookDeliverer::spawn(
        vec![rx_http.endpoint("haproxy-lab", Duration::from_millis(400))],
        stop.clone(),
    );
    deliverer.notify(&notice(3, 1));

    let outcome = next_final_outcome(&mut outcomes).await;
    assert_eq!(outcome.result, Ok(()), "{outcome:?}");
    assert_eq!(outcome.attempts, 3);
    assert!(outcome.latency >= Duration::from_millis(400), "{outcome:?}");
    let reqs = rx_http.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.notice().order_key() == (3, 1)));
    // Each attempt is signed afresh and verifies on its own.
    for r in &reqs {
        verify(
            SECRET.as_bytes(),
            &r.timestamp,
            &r.body,
            &r.signature,
            Utc::now(),
            DEFAULT_REPLAY_WINDOW,
        )
        .expect("every attempt verifies");
    }
    assert_eq!(rx_http.ok_answers(), 1, "delivered once");
    stop.cancel();
}

#[tokio::test]
async fn a_slow_receiver_never_sees_an_older_notice_after_a_newer_one() {
    let rx_http = Receiver::start(vec![], Some(Reply::Slow(Duration::from_millis(150)))).await;
    let stop = CancellationToken::new();
    let (deliverer, mut outcomes) = WebhookDeliverer::spawn(
        vec![rx_http.endpoint("slow", Duration::from_secs(5))],
        stop.clone(),
    );
    // Leader of epoch 1 issues 30 notices quickly, with stragglers re-offered out of order;
    // then a new leader (epoch 2) takes over and a message from the deposed one arrives late.
    let mut offered = Vec::new();
    for g in 1..=30u64 {
        offered.push(notice(1, g));
        if g % 5 == 0 {
            offered.push(notice(1, g - 3));
        }
        tokio::task::yield_now().await;
        if g % 10 == 0 {
            // Let the slow receiver take one in between, so some notices are in flight.
            wait_for("a request in flight", DEADLINE, || async {
                (!rx_http.requests().is_empty()).then_some(())
            })
            .await
            .expect("the receiver gets a request");
        }
        for n in offered.drain(..) {
            deliverer.notify(&n);
        }
    }
    deliverer.notify(&notice(2, 1));
    deliverer.notify(&notice(1, 31));

    wait_for("the newest notice delivered", DEADLINE, || async {
        rx_http
            .requests()
            .last()
            .filter(|r| r.notice().order_key() == (2, 1))
            .map(|_| ())
    })
    .await
    .expect("epoch 2 reaches the receiver");
    // Drain outcomes until the newest one is final; nothing after it may be sent.
    loop {
        let o = next_final_outcome(&mut outcomes).await;
        if (o.epoch, o.generation) == (2, 1) {
            assert_eq!(o.result, Ok(()));
            break;
        }
    }
    let keys: Vec<(u64, u64)> = rx_http
        .requests()
        .iter()
        .map(|r| r.notice().order_key())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "arrival order must be strictly increasing: {keys:?}"
    );
    assert_eq!(keys.last(), Some(&(2, 1)));
    assert!(
        !keys.contains(&(1, 31)),
        "the deposed leader's notice was sent"
    );
    assert!(keys.len() < 30, "queued notices were coalesced: {keys:?}");
    stop.cancel();
}

#[tokio::test]
async fn a_receiver_that_refuses_the_signature_is_not_retried() {
    let rx_http = Receiver::start(vec![Reply::Status(401)], None).await;
    let stop = CancellationToken::new();
    let (deliverer, mut outcomes) = WebhookDeliverer::spawn(
        vec![rx_http.endpoint("wrong-secret", Duration::from_secs(5))],
        stop.clone(),
    );
    deliverer.notify(&notice(5, 2));
    let outcome = next_final_outcome(&mut outcomes).await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.result, Err(WebhookError::Status { status: 401 }));
    assert_eq!(rx_http.requests().len(), 1);
    // Given up on, the same notice can be offered again (the runtime re-offers the latest).
    assert_eq!(deliverer.notify(&notice(5, 2)), 1);
    let again = next_final_outcome(&mut outcomes).await;
    assert_eq!(again.result, Ok(()));
    assert_eq!(rx_http.ok_answers(), 1);
    stop.cancel();
}
