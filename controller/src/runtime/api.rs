//! The operator API (`/api/v1/…`): what sitewarden believes and why, and the overrides that
//! steer it. Both controllers serve it; reads come from this controller's own engine state
//! (the standby is hot, so it answers the same), writes go through the bus (see
//! [`super::overrides`]) and are safe from either.
//!
//! | method | path | role |
//! |---|---|---|
//! | GET | `/api/v1/status` | read |
//! | GET | `/api/v1/namespaces/{name}/explain` | read |
//! | GET | `/api/v1/history?since=…&limit=…` | read |
//! | GET | `/api/v1/overrides` | read |
//! | POST | `/api/v1/overrides` | admin |
//! | POST | `/api/v1/overrides/release` | admin |
//!
//! Every request carries `Authorization: Bearer <token>`; tokens come from `[api] tokens` with
//! a role (`read` or `admin`) and are compared in constant time. Bodies are limited to
//! [`MAX_BODY`], every request to [`REQUEST_TIMEOUT`]; errors are JSON `{"error": "…"}` with a
//! 4xx status that says what to fix. `docs/api.md` and `docs/openapi.json` describe it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use axum::extract::{Path, Query, Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sitewarden_shared::SiteId;
use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source, duration};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, watch};

use super::audit::AUDIT_STREAM;
use super::overrides::{self, OverrideMessage};
use crate::engine::explain::site_evidence;
use crate::engine::{
    AuditEvent, Command, Engine, FreezeScope, Input, OverrideAction, OverrideRequest,
    ReleaseTarget, State,
};
use crate::ha::leadership::{Leadership, Role};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most history records one request returns.
pub const MAX_HISTORY: usize = 1000;
/// Shortest token accepted in the configuration.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Read status, explanations, history and overrides.
    Read,
    /// Also create and release overrides.
    Admin,
}

/// `[api]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Bearer tokens.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// Serve `GET` endpoints and the dashboard without a token (default false).
    #[serde(default)]
    pub anonymous_read: bool,
}

/// One `[[api.tokens]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds it (recorded as the operator of overrides made with it).
    pub name: String,
    /// `read` or `admin`.
    pub role: String,
    /// Where the token comes from: `{ env = "…" }` or `{ file = "…" }`.
    pub token: SecretRef,
}

/// One configured token.
#[derive(Clone)]
pub struct ApiToken {
    /// Its holder.
    pub name: String,
    /// Its role.
    pub role: TokenRole,
    secret: SecretString,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl ApiToken {
    /// A token from code (tests, the lab).
    pub fn new(name: &str, role: TokenRole, secret: &str) -> Self {
        Self {
            name: name.to_owned(),
            role,
            secret: SecretString::from(secret.to_owned()),
        }
    }
}

/// Validated `[api]`.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// The tokens.
    pub tokens: Vec<ApiToken>,
    /// `GET`s without a token.
    pub anonymous_read: bool,
}

impl RawApi {
    /// Validates and reads every token.
    pub fn validate(&self, src: &Source, at: &KeyPath) -> Result<ApiSettings, ConfigError> {
        let mut tokens = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let here = at.key("tokens").index(i);
            let role = match t.role.as_str() {
                "read" => TokenRole::Read,
                "admin" => TokenRole::Admin,
                other => {
                    return Err(src.error(
                        &here.key("role"),
                        format!("unknown role {other:?}; use \"read\" or \"admin\""),
                    ));
                }
            };
            if t.name.trim().is_empty() {
                return Err(src.error(&here.key("name"), "name the token's holder"));
            }
            let secret = t
                .token
                .resolve()
                .map_err(|e| src.error(&here.key("token"), e.to_string()))?;
            if secret.expose_secret().len() < MIN_TOKEN_LEN {
                return Err(src.error(
                    &here.key("token"),
                    format!(
                        "the token is shorter than {MIN_TOKEN_LEN} characters; generate one with `openssl rand -hex 32`"
                    ),
                ));
            }
            if tokens.iter().any(|o: &ApiToken| o.name == t.name) {
                return Err(src.error(
                    &here.key("name"),
                    format!("a second token named {:?}; names must be unique", t.name),
                ));
            }
            tokens.push(ApiToken {
                name: t.name.clone(),
                role,
                secret,
            });
        }
        Ok(ApiSettings {
            tokens,
            anonymous_read: self.anonymous_read,
        })
    }
}

/// What the engine loop publishes for the API after it changes something.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The engine state.
    pub state: State,
    /// Ids of the overrides applied most recently (newest last).
    pub applied_overrides: VecDeque<String>,
    /// The latest decisions, changes, overrides and alerts (newest last).
    pub recent: VecDeque<serde_json::Value>,
}

/// How many recent events the snapshot keeps.
pub const RECENT_KEPT: usize = 50;

impl Snapshot {
    /// These notes with a copy of `state`.
    pub fn with_state(&self, state: &State) -> Snapshot {
        Snapshot {
            state: state.clone(),
            applied_overrides: self.applied_overrides.clone(),
            recent: self.recent.clone(),
        }
    }

    /// Remembers the interesting commands of one engine step.
    pub fn note(&mut self, at: DateTime<Utc>, commands: &[Command]) {
        for c in commands {
            let v = match c {
                Command::Audit(a) => match &a.event {
                    AuditEvent::Decision { .. }
                    | AuditEvent::Verdict { .. }
                    | AuditEvent::DagActiveSite { .. }
                    | AuditEvent::Override(_)
                    | AuditEvent::OverrideRejected { .. }
                    | AuditEvent::OverrideExpired { .. }
                    | AuditEvent::Leadership { .. } => serde_json::to_value(&a.event)
                        .ok()
                        .map(|e| serde_json::json!({"at": a.at, "event": e})),
                    _ => None,
                },
                Command::Alert(a) => {
                    Some(serde_json::json!({"at": at, "event": {"kind": "alert", "alert": a}}))
                }
                _ => None,
            };
            if let Some(v) = v {
                if self.recent.len() == RECENT_KEPT {
                    self.recent.pop_front();
                }
                self.recent.push_back(v);
            }
        }
    }
}

/// Everything the API handlers share.
#[derive(Clone)]
pub struct Api {
    /// The engine (configuration and pure views).
    pub engine: Arc<Engine>,
    /// The snapshot the engine loop publishes after every override (what
    /// [`submit_as`] waits on); reads go through [`Api::current`].
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Asks the engine loop for a fresh snapshot: the state is copied when someone asks, not
    /// on every tick (a copy of a large deployment's state costs milliseconds of the loop).
    pub fresh: mpsc::Sender<oneshot::Sender<Arc<Snapshot>>>,
    /// This controller's view of the lease.
    pub leadership: watch::Receiver<Leadership>,
    /// JetStream, for overrides and history.
    pub js: jetstream::Context,
    /// Tokens and options.
    pub settings: Arc<ApiSettings>,
    /// This controller's id.
    pub controller: String,
}

impl Api {
    /// How things stand now, from the engine loop; the last published snapshot if the loop
    /// does not answer (shutting down).
    pub async fn current(&self) -> Arc<Snapshot> {
        let (tx, rx) = oneshot::channel();
        if self.fresh.send(tx).await.is_ok()
            && let Ok(snap) = rx.await
        {
            return snap;
        }
        self.snapshot.borrow().clone()
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    role: TokenRole,
}

/// A JSON error with a status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"sitewarden\""),
            );
        }
        r
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// The API routes, with authentication, body limit and timeout.
pub fn router(api: Api) -> Router {
    let routes = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/namespaces/{name}/explain", get(explain))
        .route("/api/v1/history", get(history))
        .route(
            "/api/v1/overrides",
            get(list_overrides).post(create_override),
        )
        .route("/api/v1/overrides/release", post(release_override))
        .route("/api/v1/whoami", get(whoami))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api);
    routes.layer(axum::middleware::from_fn(time_limit))
}

async fn time_limit(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {REQUEST_TIMEOUT:?}; try again"),
        )
        .into_response(),
    }
}

/// Finds the token's holder; compares against every token in constant time.
fn check_token(settings: &ApiSettings, presented: &str) -> Option<Caller> {
    let mut found = None;
    for t in &settings.tokens {
        let secret = t.secret.expose_secret().as_bytes();
        let same: bool = secret.ct_eq(presented.as_bytes()).into();
        if same && found.is_none() {
            found = Some(Caller {
                name: t.name.clone(),
                role: t.role,
            });
        }
    }
    found
}

async fn authenticate(
    AxState(api): AxState<Api>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let write = req.method() != axum::http::Method::GET;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::UNAUTHORIZED,
                        "malformed Authorization header; send `Authorization: Bearer <token>`"
                            .into(),
                    )
                })
        })
        .transpose()?;
    let caller = match presented {
        Some(p) => Some(check_token(&api.settings, p).ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "unknown token; check the token (SITEWARDEN_TOKEN or --token) against [api] tokens"
                    .into(),
            )
        })?),
        None if !write && api.settings.anonymous_read => None,
        None => {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs a token: send `Authorization: Bearer <token>`".into(),
            ));
        }
    };
    if write && caller.as_ref().map(|c| c.role) != Some(TokenRole::Admin) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "this token may only read; changing overrides needs an admin token".into(),
        ));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

async fn whoami(req: Request) -> Json<serde_json::Value> {
    let caller = req.extensions().get::<Option<Caller>>().cloned().flatten();
    Json(serde_json::json!({
        "name": caller.as_ref().map(|c| c.name.clone()),
        "role": caller.map(|c| c.role),
    }))
}

/// The lease as this controller sees it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderView {
    /// This controller's id.
    pub controller: String,
    /// `leader`, `standby` or `unknown` (bus unreachable).
    pub role: &'static str,
    /// Whether this controller acts now.
    pub acting: bool,
    /// The leader's id, when known.
    pub leader: Option<String>,
    /// This controller's epoch while leader.
    pub epoch: Option<u64>,
}

fn leader_view(api: &Api) -> LeaderView {
    let l = api.leadership.borrow().clone();
    let (role, leader) = match &l.role {
        Role::Leader { .. } => ("leader", Some(api.controller.clone())),
        Role::Standby { holder } => ("standby", holder.clone()),
        Role::Unknown => ("unknown", None),
    };
    LeaderView {
        controller: api.controller.clone(),
        role,
        acting: l.acting,
        leader,
        epoch: l.epoch,
    }
}

async fn status(AxState(api): AxState<Api>) -> Json<serde_json::Value> {
    let snap = api.current().await;
    let cfg = api.engine.config();
    let now = snap.state.clock.unwrap_or_else(Utc::now);
    let stale =
        chrono::TimeDelta::from_std(cfg.policy.stale_after).unwrap_or(chrono::TimeDelta::MAX);
    let sites: Vec<serde_json::Value> = cfg
        .sites
        .keys()
        .map(|id| {
            let e = site_evidence(cfg, &snap.state, id, now, stale, false);
            serde_json::json!({"site": id, "evidence": e})
        })
        .collect();
    let namespaces: Vec<serde_json::Value> = cfg
        .namespaces
        .iter()
        .filter_map(|(name, ns)| {
            let x = api.engine.explain(&snap.state, name)?;
            let desired = x
                .decision
                .as_ref()
                .and_then(|d| d.to.clone())
                .or_else(|| x.current.clone());
            Some(serde_json::json!({
                "name": name,
                "targets": ns.targets(),
                "preferred": ns.targets().first(),
                "current": x.current,
                "desired": desired,
                "explanation": x,
            }))
        })
        .collect();
    let dags: Vec<serde_json::Value> = snap
        .state
        .dags
        .iter()
        .map(|(name, d)| serde_json::json!({"dag": name, "active_site": d.active_site}))
        .collect();
    Json(serde_json::json!({
        "at": now,
        "leader": leader_view(&api),
        "sites": sites,
        "namespaces": namespaces,
        "dags": dags,
        "overrides": snap.state.overrides,
        "recent": snap.recent,
    }))
}

async fn explain(
    AxState(api): AxState<Api>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let snap = api.current().await;
    let x = api.engine.explain(&snap.state, &name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no managed name {name:?}; managed names: {}",
                api.engine
                    .config()
                    .namespaces
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    Ok(Json(
        serde_json::json!({"explanation": x, "text": x.to_string()}),
    ))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    since: Option<String>,
    limit: Option<usize>,
}

/// `since` as an RFC 3339 time or a duration back from now (`15m`, `2h`).
fn parse_since(s: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let Some(s) = s else {
        return Ok(now - chrono::TimeDelta::hours(1));
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = duration::parse(s).map_err(|e| {
        bad(format!(
            "since={s:?}: {e}; give an RFC 3339 time (2026-11-24T03:00:00Z) or a duration (15m, 2h)"
        ))
    })?;
    let d = chrono::TimeDelta::from_std(d).map_err(|_| bad(format!("since={s:?} is too long")))?;
    Ok(now - d)
}

async fn history(
    AxState(api): AxState<Api>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let since = parse_since(q.since.as_deref(), Utc::now())?;
    let limit = q.limit.unwrap_or(200);
    if limit == 0 || limit > MAX_HISTORY {
        return Err(bad(format!("limit={limit}: give 1 to {MAX_HISTORY}")));
    }
    let records = read_history(&api.js, since, limit)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(Json(
        serde_json::json!({"since": since, "records": records}),
    ))
}

/// Audit records from `since` on, at most `limit` (the oldest first).
pub async fn read_history(
    js: &jetstream::Context,
    since: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<serde_json::Value>, String> {
    let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
        since.timestamp_nanos_opt().unwrap_or(0),
    ))
    .map_err(|e| e.to_string())?;
    let stream = js
        .get_stream(AUDIT_STREAM)
        .await
        .map_err(|e| format!("the audit stream is not readable: {e}"))?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartTime { start_time: start },
            max_expires: super::intake::ORDERED_PULL_EXPIRES,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read the audit stream: {e}"))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read the audit stream: {e}"))?;
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), messages.next()).await {
        let m = m.map_err(|e| e.to_string())?;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) {
            out.push(v);
        }
        if out.len() >= limit || m.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    Ok(out)
}

async fn list_overrides(AxState(api): AxState<Api>) -> Json<serde_json::Value> {
    let snap = api.current().await;
    Json(serde_json::json!({"overrides": snap.state.overrides}))
}

/// `POST /api/v1/overrides`.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOverride {
    /// `pin`, `drain`, `freeze` or `failback`.
    pub action: String,
    /// The managed name (pin, failback, freeze of one name).
    pub namespace: Option<String>,
    /// The target (pin).
    pub target: Option<String>,
    /// The site (drain).
    pub site: Option<String>,
    /// How long it holds (`30m`, `4h`); none = until released.
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// Why (required, audited).
    pub reason: String,
}

/// `POST /api/v1/overrides/release`.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseOverride {
    /// `pin`, `drain` or `freeze`.
    pub kind: String,
    /// The namespace (pin, freeze of one name), the site (drain); absent for a freeze of all.
    pub subject: Option<String>,
    /// Why (required, audited).
    pub reason: String,
}

/// A body that is not the JSON asked for: the extractor's status (400, 413, 415, 422 → 400).
fn rejected(e: axum::extract::rejection::JsonRejection) -> ApiError {
    let status = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError(status, format!("body: {}", e.body_text()))
}

fn need<'a>(v: &'a Option<String>, field: &str, action: &str) -> Result<&'a str, ApiError> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad(format!("`{field}` is required for {action}")))
}

fn site(s: &str) -> Result<SiteId, ApiError> {
    SiteId::new(s).map_err(|e| bad(format!("`site`: {e}")))
}

pub(crate) fn reason(r: &str) -> Result<String, ApiError> {
    let r = r.trim();
    if r.is_empty() {
        return Err(bad(
            "`reason` is required: say why, it goes into the audit trail",
        ));
    }
    if r.chars().count() > 500 {
        return Err(bad("`reason` is longer than 500 characters"));
    }
    Ok(r.to_owned())
}

impl CreateOverride {
    pub(crate) fn action(&self, now: DateTime<Utc>) -> Result<OverrideAction, ApiError> {
        let expires = match &self.for_ {
            None => None,
            Some(f) => {
                let d = duration::parse(f)
                    .map_err(|e| bad(format!("`for` = {f:?}: {e}; e.g. \"30m\" or \"4h\"")))?;
                let d = chrono::TimeDelta::from_std(d)
                    .map_err(|_| bad(format!("`for` = {f:?} is too long")))?;
                Some(now + d)
            }
        };
        Ok(match self.action.as_str() {
            "pin" => OverrideAction::Pin {
                namespace: need(&self.namespace, "namespace", "pin")?.to_owned(),
                target: need(&self.target, "target", "pin")?.to_owned(),
                expires,
            },
            "drain" => OverrideAction::Drain {
                site: site(need(&self.site, "site", "drain")?)?,
                expires,
            },
            "freeze" => OverrideAction::Freeze {
                scope: match &self.namespace {
                    Some(n) if !n.trim().is_empty() => FreezeScope::Namespace(n.clone()),
                    _ => FreezeScope::All,
                },
                expires,
            },
            "failback" => OverrideAction::Failback {
                namespace: need(&self.namespace, "namespace", "failback")?.to_owned(),
            },
            other => {
                return Err(bad(format!(
                    "unknown action {other:?}; use pin, drain, freeze or failback"
                )));
            }
        })
    }
}

impl ReleaseOverride {
    pub(crate) fn action(&self) -> Result<OverrideAction, ApiError> {
        let what = match self.kind.as_str() {
            "pin" => ReleaseTarget::Pin {
                namespace: need(&self.subject, "subject", "releasing a pin")?.to_owned(),
            },
            "drain" => ReleaseTarget::Drain {
                site: site(need(&self.subject, "subject", "releasing a drain")?)?,
            },
            "freeze" => ReleaseTarget::Freeze {
                scope: match &self.subject {
                    Some(n) if !n.trim().is_empty() && n != "*" => {
                        FreezeScope::Namespace(n.clone())
                    }
                    _ => FreezeScope::All,
                },
            },
            other => {
                return Err(bad(format!(
                    "unknown kind {other:?}; use pin, drain or freeze"
                )));
            }
        };
        Ok(OverrideAction::Release { what })
    }
}

async fn create_override(
    AxState(api): AxState<Api>,
    axum::Extension(caller): axum::Extension<Option<Caller>>,
    body: Result<Json<CreateOverride>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(rejected)?;
    let action = body.action(Utc::now())?;
    submit(&api, caller, action, reason(&body.reason)?).await
}

async fn release_override(
    AxState(api): AxState<Api>,
    axum::Extension(caller): axum::Extension<Option<Caller>>,
    body: Result<Json<ReleaseOverride>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(rejected)?;
    let action = body.action()?;
    submit(&api, caller, action, reason(&body.reason)?).await
}

/// Checks the request against the engine (on a copy of the state), stores it on the bus, and
/// waits until this controller's engine has applied it.
async fn submit(
    api: &Api,
    caller: Option<Caller>,
    action: OverrideAction,
    why: String,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let who = caller.map(|c| c.name).unwrap_or_else(|| "anonymous".into());
    let done = submit_as(api, who, action, why).await?;
    Ok((
        if done.applied {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        },
        Json(serde_json::json!({
            "id": done.message.id,
            "applied": done.applied,
            "request": done.message.request,
            "overrides": done.overrides,
        })),
    ))
}

/// What [`submit_as`] did.
pub(crate) struct Submitted {
    /// The stored message.
    pub message: OverrideMessage,
    /// Whether this controller's engine applied it within 5 s.
    pub applied: bool,
    /// The overrides after it.
    pub overrides: crate::engine::overrides::Overrides,
}

/// Checks an override against the engine, stores it on the bus and waits (up to 5 s) until
/// this controller's engine applied it; `who` is recorded as the operator.
pub(crate) async fn submit_as(
    api: &Api,
    who: String,
    action: OverrideAction,
    why: String,
) -> Result<Submitted, ApiError> {
    let request = OverrideRequest { who, why, action };
    // The engine's own checks, on a copy: an unknown name, target or site is refused here with
    // the engine's reason, before anything is stored.
    let mut trial = api.current().await.state.clone();
    let now = trial.clock.unwrap_or_else(Utc::now);
    for c in api
        .engine
        .step(&mut trial, now, &Input::Override(request.clone()))
    {
        if let Command::Audit(a) = &c
            && let AuditEvent::OverrideRejected { reason, .. } = &a.event
        {
            return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, reason.clone()));
        }
    }
    let message = OverrideMessage {
        id: new_id(),
        at: Utc::now(),
        via: api.controller.clone(),
        request,
    };
    overrides::publish(&api.js, &message)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let mut snap = api.snapshot.clone();
    let applied = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if snap
                .borrow_and_update()
                .applied_overrides
                .contains(&message.id)
            {
                return;
            }
            if snap.changed().await.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok();
    let overrides = api.current().await.state.overrides.clone();
    Ok(Submitted {
        message,
        applied,
        overrides,
    })
}

fn new_id() -> String {
    format!(
        "ovr-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_lists_exactly_the_served_routes() {
        let spec: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap();
        let documented: std::collections::BTreeSet<String> =
            spec["paths"].as_object().unwrap().keys().cloned().collect();
        let source = include_str!("api.rs");
        let served: std::collections::BTreeSet<String> = source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| rest.trim_start().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .filter(|p| p.starts_with("/api/"))
            .map(str::to_owned)
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn since_takes_a_time_or_a_duration_and_names_itself_when_wrong() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since(Some("15m"), now).unwrap(),
            now - chrono::TimeDelta::minutes(15)
        );
        assert_eq!(
            parse_since(Some("2026-11-24T01:00:00Z"), now).unwrap(),
            now - chrono::TimeDelta::hours(2)
        );
        let e = parse_since(Some("yesterday"), now).unwrap_err();
        assert!(e.1.contains("since"), "{}", e.1);
    }

    #[test]
    fn tokens_never_show_in_debug_and_match_only_exactly() {
        let settings = ApiSettings {
            tokens: vec![
                ApiToken::new("alice", TokenRole::Admin, "0123456789abcdef-admin"),
                ApiToken::new("ro", TokenRole::Read, "0123456789abcdef-read"),
            ],
            anonymous_read: false,
        };
        assert!(!format!("{settings:?}").contains("0123456789abcdef"));
        assert_eq!(
            check_token(&settings, "0123456789abcdef-read").map(|c| c.role),
            Some(TokenRole::Read)
        );
        assert!(check_token(&settings, "0123456789abcdef-rea").is_none());
        assert!(check_token(&settings, "").is_none());
    }
}
