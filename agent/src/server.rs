//! The agent's local HTTP server: `/healthz`, `/metrics` and the database-copy push endpoint.
//!
//! `POST /api/v1/dbcopy/<source>` lets a scheduled task on an Exchange server push the same
//! JSON the collector script prints. It requires `Authorization: Bearer <push_token>` of that
//! source (compared in constant time), accepts at most [`MAX_PUSH_BYTES`], and answers 202 with
//! the number of copies, or a 4xx whose text says what was wrong. A bad push publishes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use sitewarden_shared::CollectVia;
use sitewarden_shared::dbcopy::parse_powershell_json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, DbCopySource};
use crate::metrics::{KindLabel, Metrics};
use crate::publish::{Outgoing, PublishSender};

/// Largest push body accepted (PowerShell 5.1's indented enum objects are verbose). Larger
/// bodies get 413 before authentication is checked.
pub const MAX_PUSH_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
struct AppState {
    config: Arc<AgentConfig>,
    sources: Arc<BTreeMap<String, DbCopySource>>,
    metrics: Arc<Metrics>,
    tx: PublishSender,
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<AgentConfig>,
    metrics: Arc<Metrics>,
    tx: PublishSender,
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
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/dbcopy/{source}", post(push))
        .layer(DefaultBodyLimit::max(MAX_PUSH_BYTES))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
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
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
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
