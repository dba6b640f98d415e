//! The controller's small HTTP surface: `/healthz`, `/readyz` and `/metrics`.
//!
//! `/healthz` answers while the process runs; `/readyz` answers 200 once the controller is
//! connected to NATS and has its streams and buckets (503 before); `/metrics` is the Prometheus
//! text exposition. The operator API and dashboard build on this server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Shared with the runtime.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set once the bus, streams and buckets are ready.
    pub ready: AtomicBool,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, readiness });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.readiness.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: connecting to NATS and setting up streams\n",
        )
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
async fn metrics_text(State(s): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = sitewarden_shared::exposition::negotiate(s.metrics.encode(), accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}
