//! The controller's small HTTP surface: `/healthz`, `/readyz` and `/metrics`.
//!
//! `/healthz` answers while the process runs; `/readyz` answers 200 once the controller is
//! connected to NATS and has its streams and buckets (503 before); `/metrics` is the Prometheus
//! text exposition. The operator API ([`super::api`]) and the dashboard are installed into the
//! same server once the controller is connected.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Shared with the runtime.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set once the bus, streams and buckets are ready.
    pub ready: AtomicBool,
}

/// The routes that need the bus and the engine (API, dashboard), installed once they exist.
pub type LateRoutes = Arc<std::sync::OnceLock<Router>>;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    late: LateRoutes,
}

/// Serves until `shutdown`. `/healthz`, `/readyz` and `/metrics` answer at once; everything else
/// goes to `late` once the runtime has installed it (503 before).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    late: LateRoutes,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(late_routes)
        .with_state(AppState {
            metrics,
            readiness,
            late,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn late_routes(State(s): State<AppState>, req: axum::extract::Request) -> Response {
    use tower::ServiceExt;
    match s.late.get() {
        Some(router) => match router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: connecting to NATS and loading state\n",
        )
            .into_response(),
    }
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
    let (content_type, body) = s.metrics.exposition(accept);
    ([(header::CONTENT_TYPE, content_type)], body)
}
