//! The controller's small HTTP surface: `/healthz`, `/readyz` and `/metrics`.
//!
//! `/healthz` answers while the process runs; `/readyz` answers 200 once the controller is
//! connected to NATS and has its streams and buckets (503 before); `/metrics` is the Prometheus
//! text exposition. The operator API ([`super::api`]) and the dashboard are installed into the
//! same server once the controller is connected.
//!
//! Connections go through [`sitewarden_shared::http_server`]: a header-read timeout, a cap on
//! open connections sized from the file-handle limit read at start (a quarter of it, so the NATS
//! connection and the DNS sockets always find handles), and a per-client cap. Every route has a
//! whole-request deadline: the API's and Slack's own, and [`REQUEST_DEADLINE`] as a backstop
//! over everything (dashboard, /metrics, anything installed later).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sitewarden_shared::http_server::{self, Limits};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Longest any request may take, headers and body included, on any route. The API's own limit
/// ([`super::api::REQUEST_TIMEOUT`]) and Slack's ([`super::slack::REQUEST_DEADLINE`]) are
/// shorter and answer first on their routes.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(12);

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

/// Serves until `shutdown` within `limits` (see [`Limits::for_this_process`]). `/healthz`,
/// `/readyz` and `/metrics` answer at once; everything else goes to `late` once the runtime has
/// installed it (503 before).
pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: Limits,
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
        })
        .layer(axum::middleware::from_fn(deadline));
    http_server::serve(listener, app, limits, shutdown).await
}

async fn deadline(req: axum::extract::Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request took longer than {REQUEST_DEADLINE:?}; send it whole and at once\n"
            ),
        )
            .into_response(),
    }
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
