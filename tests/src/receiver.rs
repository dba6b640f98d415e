//! A loopback HTTP receiver that records every POST and answers 200: the lab's alert webhook
//! sink and edge-webhook endpoint, and the demo's. Tests read what arrived, in arrival order,
//! with the headers and the exact body bytes (so signatures can be checked afterwards).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// The path, e.g. `/alerts`.
    pub path: String,
    /// Header name (lowercase) → value, for headers with a text value.
    pub headers: BTreeMap<String, String>,
    /// The exact body.
    pub body: Bytes,
    /// When it arrived (the receiver's clock).
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Request {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// A header's value (name in lowercase), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

type Log = Arc<Mutex<Vec<Request>>>;

/// A running receiver on `127.0.0.1`; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    log: Log,
    stop: CancellationToken,
}

impl Receiver {
    /// Binds a free loopback port and starts answering every POST with 200.
    pub async fn start() -> anyhow::Result<Self> {
        let log: Log = Arc::default();
        let app = axum::Router::new()
            .fallback(axum::routing::post(record))
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await
        });
        Ok(Self { addr, log, stop })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests arrived.
    pub fn len(&self) -> usize {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True before the first request.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn record(
    State(log): State<Log>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    log.lock().unwrap_or_else(|p| p.into_inner()).push(Request {
        path: uri.path().to_owned(),
        headers,
        body,
        at: chrono::Utc::now(),
    });
    "ok"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_posts_in_order_with_headers_and_exact_bodies() {
        let r = Receiver::start().await.unwrap();
        let http = reqwest::Client::new();
        for (i, body) in ["{\"a\":1}", "not json"].iter().enumerate() {
            let resp = http
                .post(r.url(&format!("/p{i}")))
                .header("X-Test", format!("v{i}"))
                .body(*body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        let got = r.requests();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].path, "/p0");
        assert_eq!(got[0].header("x-test"), "v0");
        assert_eq!(got[0].json()["a"], 1);
        assert_eq!(&got[1].body[..], b"not json");
        assert!(got[1].json().is_null());
        let get = http.get(r.url("/p0")).send().await.unwrap();
        assert_eq!(get.status(), 405, "only POSTs are recorded");
        assert_eq!(r.len(), 2);
    }
}
