//! A real moto server (`moto_server`, AWS service emulators in Python) for the Route 53 tests,
//! behind a thin front that adds the Route 53 semantics moto lacks.
//!
//! [`Moto::start`] runs `moto_server -H 127.0.0.1 -p PORT` (log in a temp dir, killed on drop)
//! and waits until it answers. moto 5 keeps Route 53 record sets but checks a DELETE only
//! against the *history* of earlier requests, not the current value, and reports every change
//! INSYNC at once. Real Route 53 refuses a batch whose DELETE does not match the current record
//! set exactly ("values provided do not match the current values") and answers PENDING until
//! the change reached every nameserver. The front ([`Moto::endpoint_url`]) enforces both: it
//! checks each DELETE (and each CREATE's absence) against moto's current record sets and
//! answers `InvalidChangeBatch` as Route 53 does, and it turns the INSYNC of a fresh change into
//! PENDING (GetChange then reports moto's INSYNC). moto also refuses a CREATE identical to an
//! earlier one in its journal (a name moved back to a target it held before) even when that set
//! is gone; the front, having checked each CREATE itself, forwards CREATEs as UPSERTs. It also
//! refuses, as Route 53 does, a change batch of more than 1,000 ResourceRecord elements or
//! 32,000 characters of values (moto accepts any size). It records every call it forwards
//! ([`Moto::calls`]) and can answer the next change with `Throttling` ([`Moto::throttle_next`]).
//!
//! Administrator-side helpers ([`Moto::create_zone`], [`Moto::change`], [`Moto::record`]) talk
//! to moto directly. moto routes requests by the SigV4 credential scope, so they send a
//! placeholder `Authorization` naming `route53` (moto does not verify signatures).
//!
//! The binary is `$MOTO_SERVER_BIN`, else `/opt/sitewarden-moto/bin/moto_server` (the venv
//! `scripts/install-deps` creates), else `moto_server` on `PATH`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::nats_server::free_port;

/// How long moto may take to start (Python imports are slow).
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// The XML namespace of the Route 53 API.
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// A placeholder SigV4 header: moto uses the credential scope to route to Route 53.
const PLACEHOLDER_AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=00";

/// One request the front forwarded (or answered itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, e.g. `/2013-04-01/hostedzone/Z…/rrset`.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Whether it carried a SigV4 `Authorization` with a `route53` scope and an `x-amz-date`.
    pub signed: bool,
    /// The status the front answered.
    pub status: u16,
}

/// State shared with the front's handler.
#[derive(Debug, Default)]
struct Front {
    calls: Mutex<Vec<Call>>,
    throttle: AtomicU32,
}

/// A running moto server and its Route 53 front.
#[derive(Debug)]
pub struct Moto {
    /// Holds moto's log; removed on drop.
    dir: TempDir,
    /// moto's port.
    port: u16,
    /// The front's address.
    front: SocketAddr,
    /// Shared with the front.
    state: Arc<Front>,
    /// moto itself.
    child: Mutex<Option<Child>>,
    /// The front's task.
    task: tokio::task::JoinHandle<()>,
    /// Talks to moto directly.
    http: reqwest::Client,
}

impl Moto {
    /// Starts moto and the front, and waits until moto answers.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sitewarden-moto-")
            .tempdir()
            .context("creating a temp dir for moto")?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).context("moto log")?;
        let log2 = log.try_clone()?;
        let bin = binary();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}; run scripts/install-deps (it installs moto[server] into \
                     /opt/sitewarden-moto) or set MOTO_SERVER_BIN",
                    bin.display()
                )
            })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let state = Arc::new(Front::default());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let front = listener.local_addr()?;
        let moto_url = format!("http://127.0.0.1:{port}");
        let handler_state = state.clone();
        let handler_http = http.clone();
        let app =
            axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let state = handler_state.clone();
                    let http = handler_http.clone();
                    let moto_url = moto_url.clone();
                    async move {
                        front_handle(&state, &http, &moto_url, method, uri, headers, body).await
                    }
                },
            );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        let moto = Moto {
            dir,
            port,
            front,
            state,
            child: Mutex::new(Some(child)),
            task,
            http,
        };
        moto.wait_answering().await?;
        Ok(moto)
    }

    async fn wait_answering(&self) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            let exited = match self.lock().as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                bail!("moto_server exited during start-up:\n{}", self.log_tail(20));
            }
            let probe = self
                .http
                .get(format!("{}/moto-api/", self.moto_url()))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                bail!(
                    "moto_server did not answer within {START_DEADLINE:?}:\n{}",
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(crate::POLL_INTERVAL * 4).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last `lines` lines of moto's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// moto itself, `http://127.0.0.1:PORT`.
    pub fn moto_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Route 53 endpoint the provider under test uses: the strict front.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.front)
    }

    /// Every call the front saw, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.state
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Answers the next `n` ChangeResourceRecordSets with HTTP 400 `Throttling`.
    pub fn throttle_next(&self, n: u32) {
        self.state.throttle.store(n, Ordering::SeqCst);
    }

    async fn moto(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
    ) -> anyhow::Result<String> {
        let mut r = self
            .http
            .request(method, format!("{}{path_and_query}", self.moto_url()))
            .header("authorization", PLACEHOLDER_AUTH);
        if let Some(b) = body {
            r = r.header("content-type", "text/xml").body(b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("moto answered {status}: {text}");
        }
        Ok(text)
    }

    /// Creates a public hosted zone and returns its id (without `/hostedzone/`).
    pub async fn create_zone(&self, name: &str) -> anyhow::Result<String> {
        let body = format!(
            "<CreateHostedZoneRequest xmlns=\"{XMLNS}\"><Name>{name}</Name>\
             <CallerReference>sitewarden-{}</CallerReference></CreateHostedZoneRequest>",
            free_port()
        );
        let text = self
            .moto(Method::POST, "/2013-04-01/hostedzone", Some(body))
            .await?;
        let doc = roxmltree::Document::parse(&text)?;
        let id = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Id")
            .and_then(|n| n.text())
            .ok_or_else(|| anyhow!("no zone id in {text}"))?;
        Ok(id.trim_start_matches("/hostedzone/").to_owned())
    }

    /// Applies `changes` (`(action, name, type, ttl, value)`) directly on moto, as an
    /// administrator (or another tool) would.
    pub async fn change(
        &self,
        zone: &str,
        changes: &[(&str, &str, &str, u32, &str)],
    ) -> anyhow::Result<()> {
        let mut x =
            format!("<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch><Changes>");
        for (action, name, kind, ttl, value) in changes {
            x.push_str(&format!(
                "<Change><Action>{action}</Action><ResourceRecordSet><Name>{name}</Name>\
                 <Type>{kind}</Type><TTL>{ttl}</TTL><ResourceRecords><ResourceRecord>\
                 <Value>{}</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change>",
                xml_escape(value)
            ));
        }
        x.push_str("</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>");
        self.moto(
            Method::POST,
            &format!("/2013-04-01/hostedzone/{zone}/rrset"),
            Some(x),
        )
        .await?;
        Ok(())
    }

    /// Every record set of the zone as moto holds it, by (name without the trailing dot, lower
    /// case; type): `(ttl, values)`. One listing, in pages.
    pub async fn record_sets(&self, zone: &str) -> anyhow::Result<RecordSets> {
        all_sets(&self.http, &self.moto_url(), zone).await
    }

    /// The record set `name`/`kind` as moto holds it: `(ttl, values)`, or `None`.
    pub async fn record(
        &self,
        zone: &str,
        name: &str,
        kind: &str,
    ) -> anyhow::Result<Option<(u32, Vec<String>)>> {
        current(&self.http, &self.moto_url(), zone, name, kind).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(child) = self.lock().as_mut() {
            child.start_kill().ok();
        }
    }
}

/// The moto_server binary the harness runs.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from("/opt/sitewarden-moto/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("moto_server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("moto_server")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bare(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Reads one record set from moto.
async fn current(
    http: &reqwest::Client,
    moto_url: &str,
    zone: &str,
    name: &str,
    kind: &str,
) -> anyhow::Result<Option<(u32, Vec<String>)>> {
    let text = http
        .get(format!(
            "{moto_url}/2013-04-01/hostedzone/{zone}/rrset?name={name}&type={kind}&maxitems=1"
        ))
        .header("authorization", PLACEHOLDER_AUTH)
        .send()
        .await?
        .text()
        .await?;
    let doc = roxmltree::Document::parse(&text)?;
    for set in doc
        .descendants()
        .filter(|n| n.tag_name().name() == "ResourceRecordSet")
    {
        let field = |f: &str| {
            set.children()
                .find(|c| c.tag_name().name() == f)
                .and_then(|c| c.text())
                .map(str::to_owned)
        };
        if field("Name").map(|n| bare(&n)) == Some(bare(name))
            && field("Type").as_deref() == Some(kind)
        {
            let ttl = field("TTL").and_then(|t| t.parse().ok()).unwrap_or(0);
            let values = set
                .descendants()
                .filter(|n| n.tag_name().name() == "Value")
                .filter_map(|n| n.text())
                .map(str::to_owned)
                .collect();
            return Ok(Some((ttl, values)));
        }
    }
    Ok(None)
}

/// A Route 53 error answer.
fn route53_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type>\
         <Code>{code}</Code><Message>{}</Message></Error><RequestId>front</RequestId></ErrorResponse>",
        xml_escape(message)
    );
    (status, [("content-type", "text/xml")], body).into_response()
}

/// A zone's record sets by (bare lower-case name, type): `(ttl, values)`.
pub type RecordSets = std::collections::HashMap<(String, String), (u32, Vec<String>)>;

/// Lists every record set of `zone` from moto, following `NextRecordName`/`NextRecordType`.
async fn all_sets(
    http: &reqwest::Client,
    moto_url: &str,
    zone: &str,
) -> anyhow::Result<RecordSets> {
    let mut out = RecordSets::new();
    let mut start: Option<(String, String)> = None;
    loop {
        let mut url =
            reqwest::Url::parse(&format!("{moto_url}/2013-04-01/hostedzone/{zone}/rrset"))?;
        url.query_pairs_mut().append_pair("maxitems", "300");
        if let Some((name, kind)) = &start {
            url.query_pairs_mut()
                .append_pair("name", name)
                .append_pair("type", kind);
        }
        let text = http
            .get(url)
            .header("authorization", PLACEHOLDER_AUTH)
            .send()
            .await?
            .text()
            .await?;
        let doc = roxmltree::Document::parse(&text)?;
        let field = |node: roxmltree::Node<'_, '_>, f: &str| {
            node.children()
                .find(|c| c.tag_name().name() == f)
                .and_then(|c| c.text())
                .map(str::to_owned)
        };
        for set in doc
            .descendants()
            .filter(|n| n.tag_name().name() == "ResourceRecordSet")
        {
            let (Some(name), Some(kind)) = (field(set, "Name"), field(set, "Type")) else {
                continue;
            };
            let ttl = field(set, "TTL").and_then(|t| t.parse().ok()).unwrap_or(0);
            let values = set
                .descendants()
                .filter(|n| n.tag_name().name() == "Value")
                .filter_map(|n| n.text())
                .map(str::to_owned)
                .collect();
            out.insert((bare(&name), kind), (ttl, values));
        }
        let root = doc.root_element();
        let truncated = field(root, "IsTruncated").as_deref() == Some("true");
        match (field(root, "NextRecordName"), field(root, "NextRecordType")) {
            (Some(name), Some(kind)) if truncated => {
                let next = Some((name, kind));
                if next == start {
                    bail!("moto listed the same page twice");
                }
                start = next;
            }
            _ => return Ok(out),
        }
    }
}

/// The change's record sets: `(action, name, type, ttl, values)`.
type Planned = Vec<(String, String, String, u32, Vec<String>)>;

fn planned(body: &str) -> anyhow::Result<Planned> {
    let doc = roxmltree::Document::parse(body)?;
    let mut out = Vec::new();
    for change in doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Change")
    {
        let text = |f: &str| {
            change
                .descendants()
                .find(|c| c.tag_name().name() == f)
                .and_then(|c| c.text())
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let values = change
            .descendants()
            .filter(|n| n.tag_name().name() == "Value")
            .filter_map(|n| n.text())
            .map(str::to_owned)
            .collect();
        out.push((
            text("Action"),
            text("Name"),
            text("Type"),
            text("TTL").parse().unwrap_or(0),
            values,
        ));
    }
    Ok(out)
}

/// Route 53's limits on one change batch: ResourceRecord elements and characters of values
/// (an UPSERT counts twice).
const MAX_RESOURCE_RECORDS: usize = 1_000;
const MAX_VALUE_CHARS: usize = 32_000;

/// Checks a batch as Route 53 would: within the size limits, each DELETE matches the current
/// set, each CREATE's set does not exist (after the batch's own DELETEs). `Some(message)` when
/// refused.
async fn refusal(
    http: &reqwest::Client,
    moto_url: &str,
    zone: &str,
    plan: &Planned,
) -> anyhow::Result<Option<String>> {
    let weight = |action: &str| if action == "UPSERT" { 2 } else { 1 };
    let records: usize = plan
        .iter()
        .map(|(action, .., values)| weight(action) * values.len())
        .sum();
    let chars: usize = plan
        .iter()
        .flat_map(|(action, .., values)| values.iter().map(|v| weight(action) * v.chars().count()))
        .sum();
    if records > MAX_RESOURCE_RECORDS {
        return Ok(Some(format!(
            "Number of records limit of {MAX_RESOURCE_RECORDS} exceeded."
        )));
    }
    if chars > MAX_VALUE_CHARS {
        return Ok(Some(format!(
            "Number of characters in values limit of {MAX_VALUE_CHARS} exceeded."
        )));
    }
    let sets = all_sets(http, moto_url, zone).await?;
    let mut deleted: Vec<(String, String)> = Vec::new();
    for (action, name, kind, ttl, values) in plan {
        let key = (bare(name), kind.clone());
        let now = sets.get(&key).cloned();
        match action.as_str() {
            "DELETE" => {
                let mut want = values.clone();
                want.sort();
                let matches = now.is_some_and(|(t, mut v)| {
                    v.sort();
                    t == *ttl && v == want
                });
                if !matches {
                    return Ok(Some(format!(
                        "[Tried to delete resource record set [name='{}.', type='{kind}'] but the \
                         values provided do not match the current values]",
                        bare(name)
                    )));
                }
                deleted.push(key);
            }
            "CREATE" if now.is_some() && !deleted.contains(&key) => {
                return Ok(Some(format!(
                    "[Tried to create resource record set [name='{}.', type='{kind}'] but it \
                     already exists]",
                    bare(name)
                )));
            }
            _ => {}
        }
    }
    Ok(None)
}

async fn front_handle(
    state: &Front,
    http: &reqwest::Client,
    moto_url: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signed = auth.starts_with("AWS4-HMAC-SHA256 Credential=")
        && auth.contains("/route53/aws4_request")
        && auth.contains("Signature=")
        && headers.contains_key("x-amz-date");
    let path = uri.path().to_owned();
    let response = forward(state, http, moto_url, &method, &uri, &headers, body).await;
    state
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Call {
            method: method.to_string(),
            path,
            query: uri.query().map(str::to_owned),
            signed,
            status: response.status().as_u16(),
        });
    response
}

async fn forward(
    state: &Front,
    http: &reqwest::Client,
    moto_url: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    mut body: Bytes,
) -> Response {
    let is_change = *method == Method::POST && uri.path().ends_with("/rrset");
    if is_change {
        if state
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return route53_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded");
        }
        let zone = uri
            .path()
            .trim_start_matches("/2013-04-01/hostedzone/")
            .trim_end_matches("/rrset")
            .to_owned();
        let plan = match planned(&String::from_utf8_lossy(&body)) {
            Ok(p) => p,
            Err(e) => {
                return route53_error(StatusCode::BAD_REQUEST, "InvalidInput", &e.to_string());
            }
        };
        match refusal(http, moto_url, &zone, &plan).await {
            Ok(Some(message)) => {
                return route53_error(StatusCode::BAD_REQUEST, "InvalidChangeBatch", &message);
            }
            Ok(None) => {}
            Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
        // moto refuses a CREATE identical to one in its journal whenever any record set sorts
        // at or after its name (it lists from the name instead of looking the name up), so a
        // name moved back to a target it held before with the same TTL would be refused. The
        // CREATEs were checked above against the current record sets, which is all Route 53
        // checks: moto gets them as UPSERTs.
        if plan.iter().any(|(action, ..)| action == "CREATE") {
            body = Bytes::from(
                String::from_utf8_lossy(&body)
                    .replace("<Action>CREATE</Action>", "<Action>UPSERT</Action>"),
            );
        }
    }
    let url = format!(
        "{moto_url}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = http.request(method.clone(), url).body(body);
    for name in [
        "authorization",
        "content-type",
        "x-amz-date",
        "x-amz-security-token",
    ] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.as_bytes());
        }
    }
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut text = answer.text().await.unwrap_or_default();
    if is_change && status.is_success() {
        // Route 53 answers PENDING; GetChange reports INSYNC later.
        text = text.replace("<Status>INSYNC</Status>", "<Status>PENDING</Status>");
    }
    (status, [("content-type", "text/xml")], text).into_response()
}
