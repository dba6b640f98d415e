//! The agent's local HTTP server: `/healthz`, `/metrics` and the database-copy push endpoint.
//!
//! `POST /api/v1/dbcopy/<source>` lets a scheduled task on an Exchange server push the same
//! JSON the collector script prints. It requires `Authorization: Bearer <push_token>` of that
//! source (compared in constant time), accepts at most [`MAX_PUSH_BYTES`], and answers 202 with
//! the number of copies, or a 4xx whose text says what was wrong. A bad push publishes nothing.
//! A request that has not been answered within [`REQUEST_TIMEOUT`] (a body that trickles in or
//! never comes) gets 408 and holds nothing open.
//!
//! The token is checked before a byte of the body is read, and at most [`MAX_PUSH_READERS`]
//! bodies are read at once (503 beyond), so the memory pushes can take is bounded whoever sends
//! them. Connections go through [`sitewarden_shared::http_server`] (header-read timeout, a cap
//! sized from the file-handle limit, a per-client cap).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use sitewarden_shared::CollectVia;
use sitewarden_shared::dbcopy::parse_powershell_json;
use sitewarden_shared::http_server::{self, Limits};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, DbCopySource};
use crate::metrics::{KindLabel, Metrics};
use crate::publish::{Outgoing, PublishSender};

/// Largest push body accepted (PowerShell 5.1's indented enum objects are verbose). Larger
/// bodies get 413 before authentication is checked.
pub const MAX_PUSH_BYTES: usize = 4 * 1024 * 1024;

/// Longest a request may take, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most push bodies read at once: at most this × [`MAX_PUSH_BYTES`] of memory is held by pushes.
/// A handful of Exchange servers push every minute or so; one that finds the agent busy gets 503
/// and tries again at its next run.
pub const MAX_PUSH_READERS: usize = 4;

#[derive(Clone)]
struct AppState {
    config: Arc<AgentConfig>,
    sources: Arc<BTreeMap<String, DbCopySource>>,
    metrics: Arc<Metrics>,
    tx: PublishSender,
    /// One permit per push body being read.
    readers: Arc<tokio::sync::Semaphore>,
    /// The bus connection, for `/readyz`.
    nats: async_nats::Client,
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<AgentConfig>,
    metrics: Arc<Metrics>,
    tx: PublishSender,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let sources = config
        .dbcopy
        .iter()
        .filter(|s| s.push_token.is_some())
        .map(|s| (s.name.to_string(), s.clone()))
        .collect();
    let state = AppState {
        config,
        sources: Arc::new(sources),
        metrics,
        tx,
        readers: Arc::new(tokio::sync::Semaphore::new(MAX_PUSH_READERS)),
        nats,
    };
    let (limits, file_handles) = Limits::for_this_process();
    tracing::info!(
        file_handles,
        max_connections = limits.max_connections,
        max_per_client = limits.max_per_client,
        "HTTP connection limits"
    );
    http_server::serve(listener, router(state, REQUEST_TIMEOUT), limits, shutdown).await
}

/// `/readyz`: 200 while the agent's bus connection is up (its events reach the controllers),
/// 503 while it is down or still being made (events wait in the buffer meanwhile).
async fn readyz(State(state): State<AppState>) -> Response {
    if state.nats.connection_state() == async_nats::connection::State::Connected {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to NATS; events are buffered until it answers\n",
        )
            .into_response()
    }
}

fn router(state: AppState, limit: Duration) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/dbcopy/{source}", post(push))
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| time_limit(limit, req, next),
        ))
}

async fn time_limit(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the request took longer than {limit:?}; send the whole body at once\n"),
        )
            .into_response(),
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
async fn metrics_text(State(s): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = sitewarden_shared::exposition::negotiate(s.metrics.encode(), accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}

fn reject(s: &AppState, cause: &str, status: StatusCode, text: String) -> (StatusCode, String) {
    s.metrics
        .push_rejected
        .get_or_create(&KindLabel { kind: cause.into() })
        .inc();
    (status, text + "\n")
}

async fn push(
    State(s): State<AppState>,
    Path(source): Path<String>,
    req: Request,
) -> (StatusCode, String) {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_PUSH_BYTES as u64) {
        return reject(
            &s,
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a push body is at most {MAX_PUSH_BYTES} bytes"),
        );
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or("");
    // An unknown source answers exactly like a wrong token, so collector names cannot be probed.
    let src = s.sources.get(&source);
    let expected = src
        .and_then(|src| src.push_token.as_ref())
        .map(|t| t.expose_secret().as_bytes())
        .unwrap_or(&[]);
    let Some(src) =
        src.filter(|_| !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected)))
    else {
        return reject(
            &s,
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        );
    };
    let Ok(_reading) = s.readers.clone().try_acquire_owned() else {
        return reject(
            &s,
            "busy",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_PUSH_READERS} pushes are being read already; push again later"),
        );
    };
    let body = match axum::body::to_bytes(body, MAX_PUSH_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return reject(
                &s,
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body was cut off or over {MAX_PUSH_BYTES} bytes"),
            );
        }
    };
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => {
            return reject(
                &s,
                "not_utf8",
                StatusCode::BAD_REQUEST,
                "body is not UTF-8 JSON".into(),
            );
        }
    };
    let copies = match parse_powershell_json(text) {
        Ok(c) => c,
        Err(e) => return reject(&s, "unparsable", StatusCode::BAD_REQUEST, e.to_string()),
    };
    let n = copies.len();
    let snap = crate::dbcopy::snapshot(
        &s.config.agent,
        &s.config.site,
        src,
        CollectVia::Push,
        Ok(copies),
    );
    s.metrics.collected(&source, true);
    if s.tx.send(Outgoing::DbCopy(Box::new(snap))).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "agent is shutting down\n".into(),
        );
    }
    (StatusCode::ACCEPTED, format!("accepted {n} copies\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitewarden_shared::config::Source;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_push_whose_body_never_arrives_is_answered_408_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("push.token");
        std::fs::write(&token, "push-token-for-the-test").unwrap();
        let toml = format!(
            "[agent]\nid = \"site1-agent1\"\nsite = \"site1\"\nlisten = \"127.0.0.1:0\"\n\n\
             [[dbcopy]]\nname = \"dag1\"\ndag = \"DAG1\"\npush_token = {{ file = {:?} }}\n",
            token.display().to_string()
        );
        let config =
            Arc::new(AgentConfig::from_source(&Source::inline("agent.toml", toml)).unwrap());
        let sources = config
            .dbcopy
            .iter()
            .map(|s| (s.name.to_string(), s.clone()))
            .collect();
        let (tx, mut published) = tokio::sync::mpsc::channel(8);
        let state = AppState {
            config,
            sources: Arc::new(sources),
            metrics: Arc::new(Metrics::new()),
            tx,
            readers: Arc::new(tokio::sync::Semaphore::new(MAX_PUSH_READERS)),
            nats: unconnected_client().await,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state, Duration::from_millis(200));
        tokio::spawn(async move { axum::serve(listener, app).await });

        // Headers promise 1000 bytes; one arrives, then nothing.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /api/v1/dbcopy/dag1 HTTP/1.1\r\nhost: agent\r\n\
              authorization: Bearer push-token-for-the-test\r\ncontent-length: 1000\r\n\r\n[",
        )
        .await
        .unwrap();
        let mut answer = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
            .await
            .expect("answered well before 5 s")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("send the whole body at once"), "{answer}");
        assert!(published.try_recv().is_err(), "nothing published");
    }

    /// A NATS client still trying its first connection (to a closed loopback port).
    async fn unconnected_client() -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("a client that keeps retrying")
    }

    #[tokio::test]
    async fn readyz_is_503_until_the_bus_answers() {
        let config = Arc::new(
            AgentConfig::from_source(&Source::inline(
                "agent.toml",
                "[agent]\nid = \"site1-agent1\"\nsite = \"site1\"\n",
            ))
            .unwrap(),
        );
        let (tx, _published) = tokio::sync::mpsc::channel(8);
        let state = AppState {
            config,
            sources: Arc::new(BTreeMap::new()),
            metrics: Arc::new(Metrics::new()),
            tx,
            readers: Arc::new(tokio::sync::Semaphore::new(MAX_PUSH_READERS)),
            nats: unconnected_client().await,
        };
        let answer = readyz(State(state)).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
