//! A strict Cloudflare v4 API emulator for DNS records, on a random loopback port.
//!
//! It answers the calls sitewarden's Cloudflare provider makes, and the ones around them, the
//! way the documented API does, and refuses what the real API would refuse:
//! - `GET /client/v4/zones?name=` — zones by name;
//! - `GET|POST /client/v4/zones/{zone}/dns_records` — list (filters `type`, `name`, `content`;
//!   `page` from 1 and `per_page` from 1 to 5,000,000, default 100, with `result_info` `{page,
//!   per_page, count, total_count, total_pages}`) and create (one CNAME per name, alone);
//! - `GET|PATCH|PUT|DELETE /client/v4/zones/{zone}/dns_records/{id}` — one record; PATCH changes
//!   only the fields sent, PUT replaces the record (an omitted `proxied` becomes `false`, an
//!   omitted `ttl` becomes 1, an omitted `comment` is removed);
//! - `POST /client/v4/zones/{zone}/dns_records/batch` — deletes, patches, puts and posts in one
//!   all-or-nothing transaction, in that order, at most [`DEFAULT_BATCH_LIMIT`] records unless
//!   changed (see [`batch`]).
//!
//! Checks (see [`validate`]): the method and path; `Authorization: Bearer <token>` (missing →
//! 401 code 10000 "Authentication error", not Bearer → 400 code 6003/6111, wrong token → 403 code
//! 9109 "Invalid access token"); `Content-Type: application/json` on writes (400 6003/6105); the
//! body is a JSON object whose fields are all known, `type` is `CNAME`, `content` a host name,
//! `ttl` 1 (automatic) or 60–86400, `proxied` a boolean, `comment` a string of at most
//! [`COMMENT_MAX_FREE`] characters (the Free plan's limit; paid plans allow 500). Every answer
//! uses the documented envelope `{success, errors: [{code, message}], messages, result,
//! result_info}`.
//!
//! Rate limiting is modelled as Cloudflare documents it: over the limit, *every* call is refused
//! with `429` (code 971) for the block's length, each answer carrying `retry-after` with the
//! whole seconds left (rounded up). A request made during a block is refused too (it does not
//! count against injected faults), and it stays in the call log for tests to find.
//!
//! Tests steer it: [`CloudflareEmulator::set_record_content`] is a human editing in the dashboard;
//! [`CloudflareEmulator::inject`] makes the next matching requests fail ([`Fault`]: a 429 that
//! starts a block, a 500, a slow answer, or a write applied and its response lost by dropping the
//! connection, or a record deleted by hand just before the request is answered);
//! [`CloudflareEmulator::calls`] records every request with its status, its arrival time and
//! when its answer was ready ([`CloudflareEmulator::calls_from`] reads only the newest, and
//! [`CloudflareEmulator::in_flight`] tells how many are being answered right now), and
//! [`CloudflareEmulator::count`] counts them by [`Endpoint`]. A batch's limit can be lowered at
//! runtime ([`CloudflareEmulator::set_batch_limit`]), bodies above a size answered 413 like an
//! edge proxy would ([`CloudflareEmulator::reject_bodies_over`]), and listings paged smaller than
//! asked ([`CloudflareEmulator::page_at_most`]). Stops when dropped.

mod batch;
mod validate;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use batch::{DEFAULT_BATCH_LIMIT, OVER_LIMIT_CODE};
use validate::{ApiError, RecordFields};
pub use validate::{COMMENT_MAX_FREE, PER_PAGE_MAX};

/// The path prefix of the v4 API.
pub const API_PREFIX: &str = "/client/v4";

/// The largest body the emulator reads at all (beyond it: 413).
const BODY_READ_MAX: usize = 64 << 20;

/// A failure to inject into the next matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `429 Too Many Requests` with `retry-after: retry_after_s` and error code 971
    /// ("Please wait and consider throttling your request speed"), which starts a block: every
    /// request in the next `retry_after_s` seconds gets the same 429 with the seconds left.
    /// Nothing is applied.
    RateLimited {
        /// Seconds in the `retry-after` header: the block's length.
        retry_after_s: u64,
    },
    /// `500` with an error envelope. Nothing is applied.
    ServerError,
    /// Waits this long, then answers normally (the client may have timed out by then).
    Slow(Duration),
    /// Applies the request, then closes the connection without answering.
    LoseResponse,
    /// Deletes the record of this name (a human in the dashboard), then answers normally: a
    /// record gone between a client's read and its write.
    DeleteRecord(String),
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Every request.
    Any,
    /// `GET` requests.
    Reads,
    /// `POST`, `PUT`, `PATCH` and `DELETE` requests.
    Writes,
    /// `POST …/dns_records/batch` requests.
    Batches,
}

impl Match {
    fn covers(self, method: &Method, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Reads => method == Method::GET,
            Self::Writes => method != Method::GET,
            Self::Batches => Endpoint::of(method.as_str(), path) == Endpoint::Batch,
        }
    }
}

/// Which API call a request was, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /zones`.
    ListZones,
    /// `GET /zones/{zone}/dns_records` (one page of a listing, or one name's records).
    ListRecords,
    /// `POST /zones/{zone}/dns_records`.
    CreateRecord,
    /// `GET|PATCH|PUT|DELETE /zones/{zone}/dns_records/{id}`.
    OneRecord,
    /// `POST /zones/{zone}/dns_records/batch`.
    Batch,
    /// Anything else.
    Other,
}

impl Endpoint {
    fn of(method: &str, path: &str) -> Self {
        let rest = path.strip_prefix(API_PREFIX).unwrap_or(path);
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["zones"]) => Self::ListZones,
            ("GET", ["zones", _, "dns_records"]) => Self::ListRecords,
            ("POST", ["zones", _, "dns_records"]) => Self::CreateRecord,
            ("POST", ["zones", _, "dns_records", "batch"]) => Self::Batch,
            (_, ["zones", _, "dns_records", _]) => Self::OneRecord,
            _ => Self::Other,
        }
    }
}

/// One request as the emulator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/client/v4/zones/…/dns_records`.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
    /// The status answered (or that would have been, for a lost response).
    pub status: u16,
    /// Whether a response was sent (`false` for [`Fault::LoseResponse`]).
    pub answered: bool,
    /// When the request arrived (its body read).
    pub at: Instant,
    /// When its answer was complete and handed to the HTTP server to send (`None` for a lost
    /// response). A listing's records are serialized by then; only the transfer is left.
    pub answered_at: Option<Instant>,
    /// The `retry-after` seconds answered, on a 429.
    pub retry_after_s: Option<u64>,
}

impl Call {
    /// Whether the request was a write (anything but `GET`).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }

    /// Which API call it was.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::of(&self.method, &self.path)
    }
}

/// A DNS record held by the emulator.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Record id.
    pub id: String,
    /// Zone id.
    pub zone_id: String,
    /// Fully qualified name.
    pub name: String,
    /// Record type (`CNAME`; others only by [`CloudflareEmulator::add_record`]).
    pub kind: String,
    /// Target host name.
    pub content: String,
    /// TTL, 1 = automatic.
    pub ttl: u32,
    /// Proxied through Cloudflare.
    pub proxied: bool,
    /// Free-text comment.
    pub comment: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
}

#[derive(Debug)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Debug)]
struct Injected {
    fault: Fault,
    when: Match,
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    zones: Vec<Zone>,
    records: BTreeMap<String, Record>,
    faults: Vec<Injected>,
    calls: Vec<Call>,
    next_id: u64,
    /// While set and in the future, every request is refused with 429 (a rate-limit block).
    blocked_until: Option<Instant>,
    /// Edits made "by hand" (outside the API): when, and the record's id.
    hand_edits: Vec<(Instant, String)>,
    /// Records one batch may carry.
    batch_limit: usize,
    /// Bodies longer than this are answered 413 (`None`: up to [`BODY_READ_MAX`]).
    max_body: Option<usize>,
    /// Listings answer at most this many records per page, whatever `per_page` asks.
    page_at_most: Option<u64>,
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        id_for(self.next_id)
    }
}

/// The record or zone id numbered `n`: 32 hex digits, like Cloudflare's.
fn id_for(n: u64) -> String {
    format!("{:032x}", 0x5117_ea7d_0000_0000_u64 + n)
}

#[derive(Debug)]
struct Shared {
    token: String,
    state: Mutex<State>,
    /// Requests received and not yet answered (or dropped).
    in_flight: AtomicUsize,
}

/// Counts one request in [`Shared::in_flight`] for as long as it lives: a request whose
/// connection is dropped mid-answer is counted out too.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running emulator. Stops when dropped.
#[derive(Debug)]
pub struct CloudflareEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for CloudflareEmulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl CloudflareEmulator {
    /// Starts an emulator that accepts `token`, with no zones.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the Cloudflare emulator")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            state: Mutex::new(State {
                batch_limit: DEFAULT_BATCH_LIMIT,
                ..State::default()
            }),
            in_flight: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        Ok(Self { addr, shared, stop })
    }

    /// The base URL to configure as `api_url`, e.g. `http://127.0.0.1:40000/client/v4`.
    pub fn api_url(&self) -> String {
        format!("http://{}{API_PREFIX}", self.addr)
    }

    /// Adds a zone and returns its id.
    pub fn add_zone(&self, name: &str) -> String {
        let mut s = self.shared.lock();
        let id = s.new_id();
        s.zones.push(Zone {
            id: id.clone(),
            name: name.to_owned(),
        });
        id
    }

    /// Adds a CNAME record to the zone `zone_id` and returns its id.
    pub fn add_cname(
        &self,
        zone_id: &str,
        name: &str,
        content: &str,
        ttl: u32,
        proxied: bool,
        comment: Option<&str>,
    ) -> String {
        let mut s = self.shared.lock();
        let id = s.new_id();
        s.records.insert(
            id.clone(),
            Record {
                id: id.clone(),
                zone_id: zone_id.to_owned(),
                name: name.to_owned(),
                kind: "CNAME".into(),
                content: content.to_owned(),
                ttl,
                proxied,
                comment: comment.map(str::to_owned),
                tags: Vec::new(),
            },
        );
        id
    }

    /// Adds a record of another type (`A`, `TXT`…; TTL 300, not proxied, no comment), for
    /// listings that must filter by type. Returns its id.
    pub fn add_record(&self, zone_id: &str, kind: &str, name: &str, content: &str) -> String {
        let id = self.add_cname(zone_id, name, content, 300, false, None);
        if let Some(r) = self.shared.lock().records.get_mut(&id) {
            kind.clone_into(&mut r.kind);
        }
        id
    }

    /// Deletes the record named `name` (the CNAME if there are several), as a human in the
    /// dashboard would. Returns false when there is none.
    pub fn delete_record(&self, name: &str) -> bool {
        delete_by_name(&mut self.shared.lock(), name).is_some()
    }

    /// Every record of the zone `zone_id`, in listing order.
    pub fn records(&self, zone_id: &str) -> Vec<Record> {
        self.shared
            .lock()
            .records
            .values()
            .filter(|r| r.zone_id == zone_id)
            .cloned()
            .collect()
    }

    /// Sets how many records one batch may carry from now on (the zone's plan changed, or
    /// Cloudflare lowered it); [`DEFAULT_BATCH_LIMIT`] at start.
    pub fn set_batch_limit(&self, records: usize) {
        self.shared.lock().batch_limit = records;
    }

    /// Answers 413 to every request whose body is longer than `bytes` (an edge proxy's limit);
    /// `None` lifts it.
    pub fn reject_bodies_over(&self, bytes: Option<usize>) {
        self.shared.lock().max_body = bytes;
    }

    /// Answers listings with at most `records` per page whatever `per_page` asks, reporting the
    /// size used in `result_info` (`None`: as asked).
    pub fn page_at_most(&self, records: Option<u64>) {
        self.shared.lock().page_at_most = records;
    }

    /// How many requests so far were calls to `endpoint` (refused ones included).
    pub fn count(&self, endpoint: Endpoint) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.endpoint() == endpoint)
            .count()
    }

    /// Changes a record's content and comment, as a human editing in the dashboard would.
    /// Returns false when there is no record with that name.
    pub fn set_record_content(&self, name: &str, content: &str, comment: Option<&str>) -> bool {
        let mut s = self.shared.lock();
        match s
            .records
            .values_mut()
            .find(|r| r.name.eq_ignore_ascii_case(name))
        {
            Some(r) => {
                r.content = content.to_owned();
                r.comment = comment.map(str::to_owned);
                let edit = (Instant::now(), r.id.clone());
                s.hand_edits.push(edit);
                true
            }
            None => false,
        }
    }

    /// Every edit made with [`Self::set_record_content`]: when, and the record's id.
    pub fn hand_edits(&self) -> Vec<(Instant, String)> {
        self.shared.lock().hand_edits.clone()
    }

    /// The record named `name`, if any.
    pub fn record(&self, name: &str) -> Option<Record> {
        self.shared
            .lock()
            .records
            .values()
            .find(|r| r.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    /// Makes the next `times` requests matching `when` fail with `fault`.
    pub fn inject(&self, fault: Fault, when: Match, times: usize) {
        self.shared.lock().faults.push(Injected {
            fault,
            when,
            remaining: times,
        });
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The requests from the `first`-th on (0-based, in arrival order; cleared by
    /// [`Self::clear_calls`]): what a caller polling a long log has not seen yet, without
    /// copying the whole log (a batch request keeps its body of thousands of records).
    pub fn calls_from(&self, first: usize) -> Vec<Call> {
        self.shared
            .lock()
            .calls
            .get(first..)
            .map(<[Call]>::to_vec)
            .unwrap_or_default()
    }

    /// How many requests the log holds (see [`Self::calls_from`]).
    pub fn call_count(&self) -> usize {
        self.shared.lock().calls.len()
    }

    /// Requests received and not answered yet: they are in the log only once answered.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The write requests so far (POST, PUT, PATCH, DELETE).
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_write).collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::debug!("Cloudflare emulator accept: {e}");
                    tokio::time::sleep(crate::POLL_INTERVAL).await;
                }
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    // Cancelling `drop_conn` closes this connection without an answer (Fault::LoseResponse).
    let drop_conn = CancellationToken::new();
    let kill = drop_conn.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let kill = kill.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared, &kill).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = drop_conn.cancelled() => {}
        r = conn => if let Err(e) = r {
            tracing::debug!("Cloudflare emulator connection: {e}");
        },
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    kill: &CancellationToken,
) -> Response<Body> {
    let _in_flight = InFlight::enter(&shared.in_flight);
    let (parts, body) = req.into_parts();
    // `None`: longer than the emulator reads at all.
    let bytes = axum::body::to_bytes(Body::new(body), BODY_READ_MAX)
        .await
        .ok();
    let too_large = {
        let max = shared.lock().max_body.unwrap_or(BODY_READ_MAX);
        bytes.as_ref().is_none_or(|b| b.len() > max)
    };
    let bytes = bytes.unwrap_or_default();
    let mut call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        status: 0,
        answered: true,
        at: Instant::now(),
        answered_at: None,
        retry_after_s: None,
    };
    // A block in force refuses every request; otherwise the next matching fault applies.
    let (blocked, fault) = {
        let mut s = shared.lock();
        let left = s
            .blocked_until
            .map(|until| until.saturating_duration_since(call.at))
            .filter(|left| !left.is_zero());
        match left {
            Some(left) => (
                Some(left.as_secs() + u64::from(left.subsec_nanos() > 0)),
                None,
            ),
            // An edge proxy refuses an oversized body before the API sees it.
            None if too_large => (None, None),
            None => {
                let path = parts.uri.path();
                let hit = s
                    .faults
                    .iter_mut()
                    .find(|f| f.remaining > 0 && f.when.covers(&parts.method, path));
                let fault = hit.map(|f| {
                    f.remaining -= 1;
                    f.fault.clone()
                });
                if let Some(Fault::RateLimited { retry_after_s }) = fault {
                    s.blocked_until = Some(call.at + Duration::from_secs(retry_after_s));
                    (Some(retry_after_s), fault)
                } else {
                    (None, fault)
                }
            }
        }
    };
    call.retry_after_s = blocked;
    let response = match (&fault, blocked) {
        (_, Some(retry_after_s)) => rate_limited(retry_after_s),
        (_, None) if too_large => payload_too_large(),
        (Some(Fault::ServerError), None) => envelope_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ApiError::new(10000, "Internal server error (injected by the emulator)"),
        ),
        (Some(Fault::Slow(d)), None) => {
            tokio::time::sleep(*d).await;
            respond(&parts, &bytes, shared)
        }
        (Some(Fault::DeleteRecord(name)), None) => {
            let mut s = shared.lock();
            if let Some(id) = delete_by_name(&mut s, name) {
                s.hand_edits.push((Instant::now(), id));
            }
            drop(s);
            respond(&parts, &bytes, shared)
        }
        // A `RateLimited` fault always starts a block, so it never gets here.
        (Some(Fault::LoseResponse | Fault::RateLimited { .. }) | None, None) => {
            respond(&parts, &bytes, shared)
        }
    };
    call.status = response.status().as_u16();
    if fault == Some(Fault::LoseResponse) {
        call.answered = false;
        shared.lock().calls.push(call);
        kill.cancel();
        // The connection is dropped; this answer is never sent.
        let never: Infallible = std::future::pending().await;
        match never {}
    }
    call.answered_at = Some(Instant::now());
    shared.lock().calls.push(call);
    response
}

/// Deletes the record named `name` (its CNAME first); its id, or `None` when there is none.
fn delete_by_name(s: &mut State, name: &str) -> Option<String> {
    let mut named = s
        .records
        .values()
        .filter(|r| r.name.eq_ignore_ascii_case(name))
        .map(|r| (r.kind.eq_ignore_ascii_case("CNAME"), r.id.clone()))
        .collect::<Vec<_>>();
    named.sort();
    let (_, id) = named.pop()?;
    s.records.remove(&id).map(|r| r.id)
}

/// What an edge proxy answers to a body over its limit: 413, an HTML page, no envelope.
fn payload_too_large() -> Response<Body> {
    let mut r = Response::new(Body::from(
        "<html><head><title>413 Request Entity Too Large</title></head>\
         <body><center><h1>413 Request Entity Too Large</h1></center></body></html>",
    ));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html"),
    );
    r
}

/// The 429 of a rate-limit block with `retry_after_s` seconds left.
fn rate_limited(retry_after_s: u64) -> Response<Body> {
    let mut r = envelope_error(
        StatusCode::TOO_MANY_REQUESTS,
        &ApiError::new(
            971,
            "Please wait and consider throttling your request speed",
        ),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(retry_after_s),
    );
    r
}

/// Authenticates, routes and answers one request.
fn respond(parts: &axum::http::request::Parts, body: &[u8], shared: &Shared) -> Response<Body> {
    match route(parts, body, shared) {
        Ok((status, result, info)) => envelope_ok(status, result, info),
        Err((status, error)) => envelope_error(status, &error),
    }
}

type Answer = Result<(StatusCode, Value, Option<Value>), (StatusCode, ApiError)>;

fn route(parts: &axum::http::request::Parts, body: &[u8], shared: &Shared) -> Answer {
    validate::authorization(parts.headers.get(header::AUTHORIZATION), &shared.token)?;
    let Some(rest) = parts.uri.path().strip_prefix(API_PREFIX) else {
        return Err(no_route(parts.uri.path()));
    };
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let query = validate::query(&parts.uri)?;
    let method = &parts.method;
    if method != Method::GET {
        validate::json_content_type(parts.headers.get(header::CONTENT_TYPE))?;
    }
    let mut s = shared.lock();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["zones"]) => {
            validate::only_params(&query, &["name", "status", "page", "per_page"])?;
            let name = validate::param(&query, "name");
            let paging = validate::paging(&query)?;
            let zones: Vec<Value> = s
                .zones
                .iter()
                .filter(|z| name.is_none_or(|n| z.name.eq_ignore_ascii_case(n)))
                .map(|z| json!({"id": z.id, "name": z.name, "status": "active"}))
                .collect();
            Ok(list(zones, paging, None))
        }
        (Method::GET, ["zones", zone, "dns_records"]) => {
            zone_exists(&s, zone, parts.uri.path())?;
            validate::only_params(&query, &["type", "name", "content", "page", "per_page"])?;
            let kind = validate::param(&query, "type");
            let name = validate::param(&query, "name");
            let content = validate::param(&query, "content");
            let paging = validate::paging(&query)?;
            let found: Vec<&Record> = s
                .records
                .values()
                .filter(|r| r.zone_id == *zone)
                .filter(|r| kind.is_none_or(|k| r.kind.eq_ignore_ascii_case(k)))
                .filter(|r| name.is_none_or(|n| r.name.eq_ignore_ascii_case(n)))
                .filter(|r| content.is_none_or(|c| r.content.eq_ignore_ascii_case(c)))
                .collect();
            let (page, per_page, total) = page_of(found.len(), paging, s.page_at_most);
            let found: Vec<Value> = page.map(|i| record_json(found[i], &s)).collect();
            Ok(list_page(found, per_page, paging.0, total))
        }
        (Method::POST, ["zones", zone, "dns_records", "batch"]) => {
            zone_exists(&s, zone, parts.uri.path())?;
            validate::only_params(&query, &[])?;
            let result = batch::run(&mut s, zone, body)?;
            Ok((StatusCode::OK, result, None))
        }
        (_, ["zones", _, "dns_records", "batch"]) => Err(method_not_allowed()),
        (Method::POST, ["zones", zone, "dns_records"]) => {
            zone_exists(&s, zone, parts.uri.path())?;
            validate::only_params(&query, &[])?;
            let f = RecordFields::parse(body)?;
            let zone_name = zone_name(&s, zone);
            f.require_full()?;
            let id = s.new_id();
            let r = f.to_record(id.clone(), (*zone).to_owned());
            validate::in_zone(&r.name, &zone_name)?;
            batch::name_free(&s.records, zone, &r.name, &r.kind, None)?;
            let v = record_json(&r, &s);
            s.records.insert(id, r);
            Ok((StatusCode::OK, v, None))
        }
        (m, ["zones", zone, "dns_records", id]) => {
            zone_exists(&s, zone, parts.uri.path())?;
            validate::only_params(&query, &[])?;
            let zone_name = zone_name(&s, zone);
            let Some(mut r) = s.records.get(*id).filter(|r| r.zone_id == *zone).cloned() else {
                return Err((
                    StatusCode::NOT_FOUND,
                    ApiError::new(81044, "Record does not exist."),
                ));
            };
            match m {
                Method::GET => Ok((StatusCode::OK, record_json(&r, &s), None)),
                Method::DELETE => {
                    s.records.remove(*id);
                    Ok((StatusCode::OK, json!({"id": id}), None))
                }
                Method::PATCH => {
                    let f = RecordFields::parse(body)?;
                    f.apply_to(&mut r);
                    validate::in_zone(&r.name, &zone_name)?;
                    let v = record_json(&r, &s);
                    s.records.insert(r.id.clone(), r);
                    Ok((StatusCode::OK, v, None))
                }
                Method::PUT => {
                    let f = RecordFields::parse(body)?;
                    f.require_full()?;
                    let replaced = f.to_record(r.id.clone(), r.zone_id.clone());
                    validate::in_zone(&replaced.name, &zone_name)?;
                    batch::name_free(&s.records, zone, &replaced.name, "CNAME", Some(&r.id))?;
                    let v = record_json(&replaced, &s);
                    s.records.insert(replaced.id.clone(), replaced);
                    Ok((StatusCode::OK, v, None))
                }
                _ => Err(method_not_allowed()),
            }
        }
        (_, ["zones"] | ["zones", _, "dns_records"]) => Err(method_not_allowed()),
        _ => Err(no_route(parts.uri.path())),
    }
}

fn zone_exists(s: &State, zone: &str, path: &str) -> Result<(), (StatusCode, ApiError)> {
    if s.zones.iter().any(|z| z.id == zone) {
        Ok(())
    } else {
        Err(no_route(path))
    }
}

fn zone_name(s: &State, zone: &str) -> String {
    s.zones
        .iter()
        .find(|z| z.id == zone)
        .map(|z| z.name.clone())
        .unwrap_or_default()
}

fn no_route(path: &str) -> (StatusCode, ApiError) {
    (
        StatusCode::NOT_FOUND,
        ApiError::new(
            7003,
            &format!("Could not route to {path}, perhaps your object identifier is invalid?"),
        ),
    )
}

fn method_not_allowed() -> (StatusCode, ApiError) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        ApiError::new(10405, "Method not allowed for this endpoint"),
    )
}

/// The indices of page `paging.0` of `total` items at `paging.1` per page (at most
/// `page_at_most`), the page size used, and `total`.
fn page_of(
    total: usize,
    (page, per_page): (u64, u64),
    page_at_most: Option<u64>,
) -> (std::ops::Range<usize>, u64, usize) {
    let per_page = page_at_most.map_or(per_page, |most| per_page.min(most.max(1)));
    let size = usize::try_from(per_page).unwrap_or(usize::MAX);
    let start = usize::try_from(page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(size)
        .min(total);
    (
        start..start.saturating_add(size).min(total),
        per_page,
        total,
    )
}

/// A listing of all of `items`, paged by `paging`.
fn list(
    items: Vec<Value>,
    paging: (u64, u64),
    page_at_most: Option<u64>,
) -> (StatusCode, Value, Option<Value>) {
    let (page, per_page, total) = page_of(items.len(), paging, page_at_most);
    let items = items[page].to_vec();
    list_page(items, per_page, paging.0, total)
}

/// One page of a listing with its `result_info`.
fn list_page(
    items: Vec<Value>,
    per_page: u64,
    page: u64,
    total: usize,
) -> (StatusCode, Value, Option<Value>) {
    let total_pages = (total as u64).div_ceil(per_page.max(1));
    let info = json!({
        "page": page,
        "per_page": per_page,
        "count": items.len(),
        "total_count": total,
        "total_pages": total_pages,
    });
    (StatusCode::OK, Value::Array(items), Some(info))
}

fn record_json(r: &Record, s: &State) -> Value {
    json!({
        "id": r.id,
        "zone_id": r.zone_id,
        "zone_name": zone_name(s, &r.zone_id),
        "name": r.name,
        "type": r.kind,
        "content": r.content,
        "proxiable": true,
        "proxied": r.proxied,
        "ttl": r.ttl,
        "locked": false,
        "settings": {},
        "meta": {"auto_added": false, "source": "primary"},
        "comment": r.comment,
        "tags": r.tags,
        "created_on": "2024-01-01T00:00:00.000000Z",
        "modified_on": "2024-01-01T00:00:00.000000Z",
    })
}

fn envelope_ok(status: StatusCode, result: Value, info: Option<Value>) -> Response<Body> {
    let mut v = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let (Some(info), Some(obj)) = (info, v.as_object_mut()) {
        obj.insert("result_info".into(), info);
    }
    json_response(status, &v)
}

fn envelope_error(status: StatusCode, error: &ApiError) -> Response<Body> {
    let v = json!({"success": false, "errors": [error.to_json()], "messages": [], "result": null});
    json_response(status, &v)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "cf-emulator-log-test-token";

    /// A listing of the zone's CNAMEs, page 1, as the batch path asks for it.
    fn listing(cf: &CloudflareEmulator, zone: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .get(format!(
                "{}/zones/{zone}/dns_records?type=CNAME&page=1&per_page=5000",
                cf.api_url()
            ))
            .bearer_auth(TOKEN)
    }

    #[tokio::test]
    async fn a_request_is_in_flight_until_answered_then_logged_with_when_it_was_ready() {
        let cf = CloudflareEmulator::start(TOKEN).await.unwrap();
        let zone = cf.add_zone("example.com");
        cf.add_cname(
            &zone,
            "mail.example.com",
            "mail-site1.example.com",
            60,
            false,
            None,
        );
        cf.inject(Fault::Slow(Duration::from_millis(300)), Match::Reads, 1);

        let slow = tokio::spawn(listing(&cf, &zone).send());
        crate::wait_for(
            "the slow listing in flight",
            Duration::from_secs(5),
            || async { (cf.in_flight() == 1).then_some(()) },
        )
        .await
        .unwrap();
        assert_eq!(cf.call_count(), 0, "a request is logged once answered");
        assert_eq!(slow.await.unwrap().unwrap().status(), 200);
        assert_eq!(listing(&cf, &zone).send().await.unwrap().status(), 200);

        assert_eq!(cf.in_flight(), 0);
        assert_eq!(cf.call_count(), 2);
        let first = &cf.calls_from(0)[0];
        let ready = first.answered_at.unwrap();
        assert!(ready >= first.at + Duration::from_millis(300), "{first:?}");
        let newest = cf.calls_from(1);
        assert_eq!(newest.len(), 1);
        assert!(newest[0].answered_at.unwrap() >= newest[0].at);
        assert!(newest[0].at >= ready);
        assert!(cf.calls_from(2).is_empty());
        assert!(cf.calls_from(9).is_empty());
    }
}
