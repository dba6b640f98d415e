//! The HTTP machinery shared by the HTTP-based probes.
//!
//! Each probe gets a reqwest client that connects to the server's own address while sending the
//! public name as Host and TLS SNI (`ClientBuilder::resolve`), never follows redirects (a
//! redirect is data, e.g. Exchange's 451), reads at most [`MAX_BODY`] bytes, and exposes the
//! peer certificate so `tls` can report expiry and SAN coverage. Errors are classified into the
//! contract's coarse [`ErrorClass`] by walking the error's source chain.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use reqwest::header::HeaderMap;
use sitewarden_shared::{ErrorClass, TlsDetails};

use super::tls;
use super::{Finding, ProbeContext};
use crate::config::Probe;

/// Most body bytes a probe reads; healthcheck.htm is a few dozen bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Builds the client for one probe. `tls` comes from [`RootCache::client_config`].
pub fn client_for(
    probe: &Probe,
    tls: Option<&rustls::ClientConfig>,
) -> Result<reqwest::Client, String> {
    let addr = resolve_server(&probe.connect_host, probe.port)?;
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(probe.timeout)
        .connect_timeout(probe.timeout)
        .pool_idle_timeout(probe.interval * 3)
        .pool_max_idle_per_host(1)
        .user_agent(concat!("sitewarden-agent/", env!("CARGO_PKG_VERSION")))
        .tls_info(true)
        .resolve(&probe.public_host, addr);
    if let Some(tls) = tls {
        b = b.use_preconfigured_tls(tls.clone());
    }
    b.build().map_err(|e| {
        format!(
            "cannot build HTTP client for check {} on {}: {e}",
            probe.check, probe.server
        )
    })
}

fn resolve_server(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve server address {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("server address {host} resolved to nothing"))
}

/// The probe's base URL: `https://<public name>:<port>`.
pub fn base_url(probe: &Probe) -> String {
    let scheme = if probe.tls { "https" } else { "http" };
    format!("{scheme}://{}:{}", probe.public_host, probe.port)
}

/// A response, read within the limits.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Up to [`MAX_BODY`] bytes of body, lossily decoded.
    pub body: String,
    /// Certificate findings for HTTPS.
    pub tls: Option<TlsDetails>,
}

/// Sends `req` and reads the response, classifying any failure.
pub async fn execute(
    req: reqwest::RequestBuilder,
    probe: &Probe,
    ctx: &ProbeContext,
) -> Result<Response, Finding> {
    let mut resp = req.send().await.map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let tls = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .and_then(|der| tls::details(der, &probe.target_site, ctx, chrono::Utc::now()));
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_BODY.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_BODY {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let mut f = classify(&e);
                f.http_status = Some(status);
                return Err(f);
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        tls,
    })
}

/// Maps a reqwest error to an error class and a short text without secrets or URLs' userinfo.
pub fn classify(e: &reqwest::Error) -> Finding {
    let chain = chain_text(e);
    let class = if e.is_timeout() {
        ErrorClass::Timeout
    } else if has_io_kind(e, std::io::ErrorKind::ConnectionRefused) {
        ErrorClass::ConnectRefused
    } else if has_rustls_error(e) || tls_in_sources(e) {
        ErrorClass::Tls
    } else if e.is_connect() {
        ErrorClass::Connect
    } else if e.is_body() || e.is_decode() || e.is_request() {
        ErrorClass::Protocol
    } else {
        ErrorClass::Connect
    };
    Finding::fail(class, chain)
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == kind
        {
            return true;
        }
        cur = s.source();
    }
    false
}

/// TLS failures named by the error's sources. The top-level reqwest message is skipped because
/// it contains the URL, and a host named `mail-tls.example.com` must not look like a TLS error.
fn tls_in_sources(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string().to_ascii_lowercase();
        if ["certificate", "tls", "handshake", "received fatal alert"]
            .iter()
            .any(|w| text.contains(w))
        {
            return true;
        }
        cur = s.source();
    }
    false
}

fn has_rustls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    // rustls errors reach us wrapped in io::Error, whose `source()` skips the wrapped error
    // itself; look inside each io::Error too.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && inner.downcast_ref::<rustls::Error>().is_some()
        {
            return true;
        }
        cur = s.source();
    }
    false
}

/// Builds a finding from a response whose status was not what the check expects.
pub fn unexpected_status(r: &Response, expected: &str) -> Finding {
    let mut f = Finding::fail(
        ErrorClass::HttpStatus,
        format!("HTTP {} (expected {expected})", r.status),
    );
    f.http_status = Some(r.status);
    f.details.tls = r.tls.clone();
    f
}
