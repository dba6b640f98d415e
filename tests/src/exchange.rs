//! An Exchange client-access server emulator: `healthcheck.htm` on every vdir, the ActiveSync
//! `OPTIONS` probe with Basic auth, over HTTP or HTTPS, on a random loopback port.
//!
//! A test (or the lab) switches its [`Behaviour`] at run time to reproduce the failures the
//! agent must tell apart: connection refused (the listener is really closed, and reopened on
//! the same port), a hang, a 500, a garbage body, and ActiveSync's 451 redirect, 503 throttling,
//! 449 provisioning and 403. Every request is recorded with its Host header and TLS SNI, so a
//! test can check the agent sent the public name while connecting to the server's address.
//!
//! What is answered (see [`respond`]): `GET /<vdir>/healthcheck.htm` → `200 OK<br/>FQDN`;
//! `OPTIONS /Microsoft-Server-ActiveSync` → 401 anonymous or with wrong credentials, 200 with the
//! `MS-AS*` headers for the test account; `GET /` → 302 to `/owa`; anything else → 404.

pub mod respond;
pub mod tls;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::http::{Request, header};
use base64::Engine;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use respond::{
    AS_PROTOCOL_COMMANDS, AS_PROTOCOL_VERSIONS, AS_SERVER_VERSION, Credentials, GARBAGE_BODY,
    HEALTHCHECK_VDIRS,
};
pub use tls::{TestCa, TlsIdentity};

/// How long switching back from [`Behaviour::Down`] may retry binding the old port.
pub const REBIND_DEADLINE: Duration = Duration::from_secs(10);

/// What the emulated server does, switchable at run time with [`ExchangeServer::set`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Answers like a healthy Exchange 2019 server.
    #[default]
    Healthy,
    /// Connection refused: the listener is closed and open connections are dropped.
    Down,
    /// Accepts connections and reads requests but never responds.
    Hang,
    /// `500` for every request.
    Error500,
    /// `200` with an HTML error page for every request (not `200 OK<br/>…`, no `MS-AS*` headers).
    Garbage,
    /// ActiveSync requests with valid credentials get `451` with this `X-MS-Location`
    /// (the mailbox moved to another site). Healthchecks stay healthy; anonymous gets 401.
    Redirect451 {
        /// The URL clients should use instead, e.g.
        /// `https://mail-site2.example.com/Microsoft-Server-ActiveSync`.
        location: String,
    },
    /// ActiveSync requests with valid credentials get `503` with this `Retry-After`.
    Throttled {
        /// The header's value, e.g. `"30"`.
        retry_after: String,
    },
    /// ActiveSync requests with valid credentials get `449` (device must provision).
    ProvisioningRequired,
    /// ActiveSync requests with valid credentials get `403` (user not enabled for ActiveSync).
    Forbidden,
}

/// The test account ActiveSync accepts with Basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAccount {
    /// User name as sent, e.g. `CONTOSO\svc-probe` or a UPN.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// How to start an [`ExchangeServer`].
#[derive(Debug, Clone)]
pub struct ExchangeOptions {
    /// The backend server's FQDN, reported in healthcheck bodies, e.g. `EXCH-SVR-1.CONTOSO.LOCAL`.
    pub backend_fqdn: String,
    /// Serve HTTPS with this identity; `None` serves plain HTTP.
    pub tls: Option<TlsIdentity>,
    /// The account ActiveSync accepts; `None` accepts any Basic credentials.
    pub account: Option<TestAccount>,
    /// Where to listen; `None` is 127.0.0.1 on a random port.
    pub bind: Option<SocketAddr>,
}

impl ExchangeOptions {
    /// Plain HTTP, no test account, the given backend FQDN.
    pub fn new(backend_fqdn: &str) -> Self {
        ExchangeOptions {
            backend_fqdn: backend_fqdn.to_owned(),
            tls: None,
            account: None,
            bind: None,
        }
    }

    /// Listen on `addr` (e.g. `127.0.0.11:18080`, for checkers that take an address and one
    /// port for every server) instead of a random loopback port.
    pub fn with_bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Serve HTTPS with `identity`.
    pub fn with_tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// Accept only this account for ActiveSync.
    pub fn with_account(mut self, user: &str, password: &str) -> Self {
        self.account = Some(TestAccount {
            user: user.to_owned(),
            password: password.to_owned(),
        });
        self
    }
}

impl Default for ExchangeOptions {
    fn default() -> Self {
        ExchangeOptions::new("EXCH-SVR-1.CONTOSO.LOCAL")
    }
}

/// One request as the emulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `OPTIONS`.
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The TLS SNI server name the client sent (`None` over HTTP or without SNI).
    pub sni: Option<String>,
    /// Whether the connection was TLS.
    pub tls: bool,
    /// Whether an `Authorization` header was present.
    pub auth_present: bool,
    /// The outcome of checking the credentials.
    pub credentials: Credentials,
    /// The behaviour in force when the request arrived.
    pub behaviour: Behaviour,
}

/// State shared with the connection tasks.
#[derive(Debug)]
struct Shared {
    /// Start options.
    options: ExchangeOptions,
    /// The current behaviour.
    behaviour: Mutex<Behaviour>,
    /// Every request so far.
    requests: Mutex<Vec<RecordedRequest>>,
    /// SNI of every completed TLS handshake, in order.
    handshakes: Mutex<Vec<Option<String>>>,
    /// TLS config when serving HTTPS.
    acceptor: Option<Arc<rustls::ServerConfig>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open listener: cancel `stop` to close it and its connections.
#[derive(Debug)]
struct Listening {
    /// Closes the listener and every connection it accepted.
    stop: CancellationToken,
    /// The accept loop; joined so the port is really released.
    task: JoinHandle<()>,
}

/// A running emulated client-access server. Stops when dropped.
#[derive(Debug)]
pub struct ExchangeServer {
    /// The bound address (kept across [`Behaviour::Down`]).
    addr: SocketAddr,
    /// Shared with connections.
    shared: Arc<Shared>,
    /// The listener while not `Down`; also serialises [`ExchangeServer::set`].
    listening: tokio::sync::Mutex<Option<Listening>>,
    /// Cancelled on drop: ends everything.
    shutdown: CancellationToken,
}

impl ExchangeServer {
    /// Binds 127.0.0.1 on a random port (or [`ExchangeOptions::bind`]) and starts serving,
    /// [`Behaviour::Healthy`].
    pub async fn start(options: ExchangeOptions) -> anyhow::Result<Self> {
        let acceptor = match &options.tls {
            Some(id) => Some(Arc::new(id.server_config()?)),
            None => None,
        };
        let at = options
            .bind
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let listener = TcpListener::bind(at)
            .await
            .with_context(|| format!("binding the Exchange emulator on {at}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            behaviour: Mutex::new(Behaviour::Healthy),
            requests: Mutex::new(Vec::new()),
            handshakes: Mutex::new(Vec::new()),
            acceptor,
        });
        let shutdown = CancellationToken::new();
        let listening = spawn_listener(listener, shared.clone(), shutdown.child_token());
        Ok(ExchangeServer {
            addr,
            shared,
            listening: tokio::sync::Mutex::new(Some(listening)),
            shutdown,
        })
    }

    /// The address to connect to (127.0.0.1 and the port, the same after `Down`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        let scheme = if self.shared.acceptor.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The backend FQDN in healthcheck bodies.
    pub fn backend_fqdn(&self) -> &str {
        &self.shared.options.backend_fqdn
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        lock(&self.shared.behaviour).clone()
    }

    /// Switches behaviour. Switching to [`Behaviour::Down`] returns once the port refuses
    /// connections; switching away from it returns once the same port accepts again.
    pub async fn set(&self, behaviour: Behaviour) -> anyhow::Result<()> {
        let mut listening = self.listening.lock().await;
        let down = behaviour == Behaviour::Down;
        *lock(&self.shared.behaviour) = behaviour;
        match (down, listening.take()) {
            (true, Some(l)) => {
                l.stop.cancel();
                l.task.await.ok();
            }
            (true, None) => {}
            (false, Some(l)) => *listening = Some(l),
            (false, None) => {
                let listener = self.rebind().await?;
                *listening = Some(spawn_listener(
                    listener,
                    self.shared.clone(),
                    self.shutdown.child_token(),
                ));
            }
        }
        Ok(())
    }

    async fn rebind(&self) -> anyhow::Result<TcpListener> {
        let until = tokio::time::Instant::now() + REBIND_DEADLINE;
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => return Ok(l),
                Err(e) if tokio::time::Instant::now() >= until => {
                    bail!(
                        "Exchange emulator could not re-bind {} within {REBIND_DEADLINE:?}: {e}",
                        self.addr
                    )
                }
                Err(_) => tokio::time::sleep(crate::POLL_INTERVAL).await,
            }
        }
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Forgets recorded requests and handshakes.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
        lock(&self.shared.handshakes).clear();
    }

    /// The SNI of every TLS handshake so far (also those that sent no request).
    pub fn tls_handshakes(&self) -> Vec<Option<String>> {
        lock(&self.shared.handshakes).clone()
    }
}

impl Drop for ExchangeServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn spawn_listener(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Listening {
    let token = stop.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        tokio::spawn(serve_connection(stream, shared.clone(), token.clone()));
                    }
                    Err(e) => {
                        tracing::debug!("Exchange emulator accept: {e}");
                        tokio::time::sleep(crate::POLL_INTERVAL).await;
                    }
                },
            }
        }
    });
    Listening { stop, task }
}

/// What a connection knows about itself, for recording.
#[derive(Debug, Clone)]
struct ConnInfo {
    /// SNI sent in the handshake.
    sni: Option<String>,
    /// TLS or plain.
    tls: bool,
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    match shared.acceptor.clone() {
        Some(config) => {
            let acceptor = TlsAcceptor::from(config);
            let tls = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)) => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!("Exchange emulator TLS handshake: {e}");
                        return;
                    }
                    Err(_) => return,
                },
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            lock(&shared.handshakes).push(sni.clone());
            serve_http(tls, ConnInfo { sni, tls: true }, shared, stop).await;
        }
        None => {
            let info = ConnInfo {
                sni: None,
                tls: false,
            };
            serve_http(stream, info, shared, stop).await
        }
    }
}

async fn serve_http<I>(io: I, info: ConnInfo, shared: Arc<Shared>, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let token = stop.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let info = info.clone();
        let token = token.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared, &info, &token).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::select! {
        // Dropping the connection closes the socket: what a dead server looks like.
        _ = stop.cancelled() => {}
        r = conn => if let Err(e) = r {
            tracing::debug!("Exchange emulator connection: {e}");
        },
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    info: &ConnInfo,
    stop: &CancellationToken,
) -> axum::http::Response<axum::body::Body> {
    let behaviour = lock(&shared.behaviour).clone();
    let auth = req.headers().get(header::AUTHORIZATION);
    let credentials = check_credentials(auth, shared.options.account.as_ref());
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    lock(&shared.requests).push(RecordedRequest {
        method: req.method().to_string(),
        path: path.clone(),
        host: req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
        sni: info.sni.clone(),
        tls: info.tls,
        auth_present: auth.is_some(),
        credentials,
        behaviour: behaviour.clone(),
    });
    if behaviour == Behaviour::Hang {
        // Never answer; the connection is closed when the server goes down or is dropped.
        stop.cancelled().await;
    }
    respond::respond(
        req.method(),
        &path,
        credentials,
        &behaviour,
        &shared.options.backend_fqdn,
    )
}

fn check_credentials(
    auth: Option<&header::HeaderValue>,
    account: Option<&TestAccount>,
) -> Credentials {
    let Some(value) = auth else {
        return Credentials::Anonymous;
    };
    let decoded = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some(pair) = decoded else {
        return Credentials::Invalid;
    };
    let Some((user, password)) = pair.split_once(':') else {
        return Credentials::Invalid;
    };
    match account {
        None => Credentials::Valid,
        Some(a) if a.user == user && a.password == password => Credentials::Valid,
        Some(_) => Credentials::Invalid,
    }
}

#[cfg(test)]
mod tests;
