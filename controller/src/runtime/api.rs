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
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sitewarden_api::audit::{AuditEvent as RecordEvent, EngineAudit, RecentEvent, RuntimeEvent};
use sitewarden_api::bounds::{DurationRefused, hold_duration, shifted, since_time};
pub use sitewarden_api::wire::{
    AgentStatus, CONTROLLER_HEADER, ControllerPresence, CreateOverride, DagStatus, ExplainAnswer,
    HistoryAnswer, LeaderView, NamespaceStatus, OverridesAnswer, PENDING_LISTED, PendingName,
    ROLE_HEADER, ReleaseOverride, STATUS_NAMES, SiteStatus, Status,
};
use sitewarden_contract::DnsName;
use sitewarden_shared::SiteId;
use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, watch};

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
impl From<DurationRefused> for ApiError {
    fn from(e: DurationRefused) -> Self {
        let status = if e.is_unreadable() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError(status, e.to_string())
    }
}

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
    /// The engine's verdict on the overrides it took most recently (newest last): what a
    /// submitted override waits for, so the API answers what the engine decided.
    pub overrides_taken: VecDeque<Taken>,
    /// The latest decisions, changes, overrides and alerts (newest last).
    pub recent: VecDeque<RecentEvent>,
}

/// How many recent events the snapshot keeps.
pub const RECENT_KEPT: usize = 50;

/// One override the engine took, and whether it accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The override message's id.
    pub id: String,
    /// The engine's reason when it refused the override (its `override_rejected` audit event);
    /// `None` when it accepted it.
    pub refused: Option<String>,
}

impl Snapshot {
    /// These notes with a copy of `state`.
    pub fn with_state(&self, state: &State) -> Snapshot {
        Snapshot {
            state: state.clone(),
            overrides_taken: self.overrides_taken.clone(),
            recent: self.recent.clone(),
        }
    }

    /// Remembers the engine's verdict on override `id`, from the commands of the step that
    /// took it: refused when the step emitted `override_rejected`, accepted otherwise.
    pub fn took_override(&mut self, id: String, commands: &[Command]) {
        let refused = commands.iter().find_map(|c| match c {
            Command::Audit(a) => match &a.event {
                AuditEvent::OverrideRejected { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            _ => None,
        });
        if self.overrides_taken.len() == RECENT_KEPT {
            self.overrides_taken.pop_front();
        }
        self.overrides_taken.push_back(Taken { id, refused });
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
                    | AuditEvent::Leadership { .. } => Some(RecentEvent {
                        at: a.at,
                        event: RecordEvent::Engine(EngineAudit {
                            event: a.event.clone(),
                            engine_at: a.at,
                        }),
                    }),
                    _ => None,
                },
                Command::Alert(a) => Some(RecentEvent {
                    at,
                    event: RecordEvent::Runtime(RuntimeEvent::Alert { alert: a.clone() }),
                }),
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
    /// The pair's presence records ([`crate::ha::presence`]).
    pub presence: watch::Receiver<crate::ha::presence::Presences>,
    /// A presence record older than this is not fresh (the lease).
    pub stale_after: std::time::Duration,
    /// When this process started.
    pub started_at: DateTime<Utc>,
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
        .layer(axum::middleware::from_fn_with_state(api.clone(), identify))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api);
    routes.layer(axum::middleware::from_fn(time_limit))
}

/// Names the answering controller and its role on the answer (after authentication, so an
/// anonymous caller learns nothing).
async fn identify(AxState(api): AxState<Api>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let view = leader_view(&api);
    let headers = response.headers_mut();
    for (name, value) in [
        (CONTROLLER_HEADER, view.controller),
        (ROLE_HEADER, view.role),
    ] {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    response
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

fn leader_view(api: &Api) -> LeaderView {
    let l = api.leadership.borrow().clone();
    let (role, leader) = match &l.role {
        Role::Leader { .. } => ("leader", Some(api.controller.clone())),
        Role::Standby { holder } => ("standby", holder.clone()),
        Role::Unknown => ("unknown", None),
    };
    let leader_epoch = l.epoch.or_else(|| {
        let holder = leader.as_deref()?;
        api.presence.borrow().get(holder)?.record.epoch
    });
    LeaderView {
        controller: api.controller.clone(),
        role: role.to_owned(),
        acting: l.acting,
        leader,
        epoch: l.epoch,
        leader_epoch,
    }
}

/// The pair as the presence records say, this controller included even when its own record
/// has not come back through the bus (which is then down: it shows as `unknown`).
fn controllers(api: &Api) -> Vec<ControllerPresence> {
    let now = tokio::time::Instant::now();
    let mut out = crate::ha::presence::view(&api.presence.borrow(), now, api.stale_after);
    if !out.iter().any(|c| c.controller == api.controller) {
        let view = leader_view(api);
        out.push(ControllerPresence {
            controller: api.controller.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            role: view.role,
            acting: view.acting,
            epoch: view.epoch,
            started_at: api.started_at,
            last_seen: Utc::now(),
            age_ms: 0,
            fresh: true,
        });
        out.sort_by(|a, b| a.controller.cmp(&b.controller));
    }
    out
}

/// `GET /api/v1/status?names=N|all`.
#[derive(Debug, Deserialize)]
struct StatusQuery {
    names: Option<String>,
}

async fn status(
    AxState(api): AxState<Api>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Status>, ApiError> {
    let listed = match q.names.as_deref() {
        None => STATUS_NAMES,
        Some("all") => usize::MAX,
        Some(n) => n.parse::<usize>().map_err(|_| {
            bad(format!(
                "names={n}: give a number of names to list, or all (default {STATUS_NAMES})"
            ))
        })?,
    };
    let snap = api.current().await;
    let cfg = api.engine.config();
    let now = snap.state.clock.unwrap_or_else(Utc::now);
    let stale =
        chrono::TimeDelta::from_std(cfg.policy.stale_after).unwrap_or(chrono::TimeDelta::MAX);
    let sites = cfg
        .sites
        .keys()
        .map(|id| SiteStatus {
            site: id.clone(),
            // Every observer of every component: the dashboard's per-server table shows the
            // passing ones' latest results too.
            evidence: site_evidence(cfg, &snap.state, id, now, stale, true),
        })
        .collect();
    let pending = pending_names(&snap.state);
    let off_preferred = |name: &DnsName, ns: &crate::engine::config::NamespaceConfig| {
        let current = snap
            .state
            .namespaces
            .get(name)
            .and_then(|s| s.current.as_ref());
        current != ns.targets().first().copied()
    };
    let off_preferred_total = cfg
        .namespaces
        .iter()
        .filter(|(name, ns)| off_preferred(name, ns))
        .count();
    // Pending first, then off preferred, then the rest, each by name; only `listed` of them
    // are explained, so a status of 10,000 names stays small unless asked for all.
    let pending_set: std::collections::BTreeSet<&DnsName> =
        pending.iter().map(|p| &p.name).collect();
    let mut order: Vec<(u8, &DnsName, &crate::engine::config::NamespaceConfig)> = cfg
        .namespaces
        .iter()
        .map(|(name, ns)| {
            let rank = if pending_set.contains(name) {
                0
            } else if off_preferred(name, ns) {
                1
            } else {
                2
            };
            (rank, name, ns)
        })
        .collect();
    order.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let namespaces = order
        .into_iter()
        .take(listed)
        .filter_map(|(_, name, ns)| {
            let x = api.engine.explain(&snap.state, name)?;
            // Where it is going: a change in flight, a failed one waiting for its retry, the
            // latest decision's target; else where it is.
            let desired = x
                .pending
                .as_ref()
                .map(|p| p.target.clone())
                .or_else(|| x.retry.as_ref().map(|r| r.target.clone()))
                .or_else(|| x.decision.as_ref().and_then(|d| d.to.clone()))
                .or_else(|| x.current.clone());
            Some(NamespaceStatus {
                name: name.clone(),
                targets: ns.targets().into_iter().cloned().collect(),
                preferred: ns.targets().first().map(|t| (*t).clone()),
                current: x.current.clone(),
                desired,
                explanation: x,
            })
        })
        .collect();
    let dags = snap
        .state
        .dags
        .iter()
        .map(|(name, d)| DagStatus {
            dag: name.clone(),
            active_site: d.active_site.clone(),
            split: d.split.clone(),
        })
        .collect();
    Ok(Json(Status {
        at: now,
        leader: leader_view(&api),
        sites,
        namespaces,
        namespaces_total: cfg.namespaces.len(),
        off_preferred_total,
        pending_total: pending.len(),
        pending: pending.into_iter().take(PENDING_LISTED).collect(),
        dags,
        controllers: controllers(&api),
        overrides: snap.state.overrides.clone(),
        recent: snap.recent.iter().cloned().collect(),
        agents: agents(cfg, &snap.state, now),
    }))
}

/// Every name with a change decided and not yet applied and verified, oldest first: in flight
/// at the provider (`pending`) or failed and waiting for its retry (`retry`).
fn pending_names(state: &State) -> Vec<PendingName> {
    let mut out: Vec<PendingName> = state
        .namespaces
        .iter()
        .filter_map(|(name, ns)| {
            if let Some(p) = &ns.pending {
                return Some(PendingName {
                    name: name.clone(),
                    target: p.target.clone(),
                    since: p.issued_at,
                    state: "in_flight".to_owned(),
                    retry_at: None,
                    attempts: ns.retry.as_ref().map_or(0, |r| r.attempts),
                    class: None,
                    error: None,
                });
            }
            // A failed change whose target the record holds by now (applied after all, or set
            // by hand) is not waiting for anything.
            let r = ns
                .retry
                .as_ref()
                .filter(|r| ns.current.as_ref() != Some(&r.target))?;
            Some(PendingName {
                name: name.clone(),
                target: r.target.clone(),
                since: r.since,
                state: "waiting".to_owned(),
                retry_at: Some(r.not_before),
                attempts: r.attempts,
                class: Some(r.class.word().to_owned()),
                error: Some(r.error.clone()),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.since, &a.name).cmp(&(b.since, &b.name)));
    out
}

/// Every configured agent with what the engine keeps from its heartbeats, ages measured at
/// `now` (the status's engine time).
fn agents(
    cfg: &crate::engine::config::ControllerConfig,
    state: &State,
    now: DateTime<Utc>,
) -> Vec<AgentStatus> {
    cfg.agents
        .iter()
        .map(|(id, a)| {
            let seen = state.agents.get(id).cloned().unwrap_or_default();
            AgentStatus {
                agent: id.clone(),
                site: a.site.clone(),
                version: seen.version,
                started_at: seen.started_at,
                last_heartbeat: seen.last_heartbeat,
                age_ms: seen
                    .last_heartbeat
                    .and_then(|t| u64::try_from((now - t).num_milliseconds()).ok()),
                heartbeat_interval_ms: seen.heartbeat_interval_ms,
                buffered: seen.buffered,
                dropped_total: seen.dropped_total,
                silent: seen.silent,
            }
        })
        .collect()
}

async fn explain(
    AxState(api): AxState<Api>,
    Path(name): Path<String>,
) -> Result<Json<ExplainAnswer>, ApiError> {
    let snap = api.current().await;
    let found = DnsName::new(&name)
        .ok()
        .and_then(|n| api.engine.explain(&snap.state, &n));
    let x = found.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no managed name {name:?}; managed names: {}",
                api.engine
                    .config()
                    .namespaces
                    .keys()
                    .map(DnsName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let text = x.to_string();
    Ok(Json(ExplainAnswer {
        explanation: x,
        text,
    }))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    since: Option<String>,
    limit: Option<usize>,
    before: Option<u64>,
    after: Option<u64>,
    kind: Option<String>,
    name: Option<String>,
    site: Option<String>,
    severity: Option<String>,
    controller: Option<String>,
    all: Option<bool>,
}

/// `since` as an RFC 3339 time (not in the future) or a duration back from now (`15m`, `2h`,
/// at most [`SINCE_MAX`]); default an hour back.
fn parse_since(s: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    match s {
        None => Ok(shifted(now, Duration::from_secs(3600), true, "since")?),
        Some(s) => Ok(since_time("since", s, now)?),
    }
}

async fn history(
    AxState(api): AxState<Api>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let since = parse_since(q.since.as_deref(), Utc::now())?;
    let limit = q.limit.unwrap_or(200);
    if limit == 0 || limit > MAX_HISTORY {
        return Err(bad(format!("limit={limit}: give 1 to {MAX_HISTORY}")));
    }
    if let Some(s) = q.severity.as_deref()
        && !["critical", "warning", "info"].contains(&s)
    {
        return Err(bad(format!("severity={s}: give critical, warning or info")));
    }
    let filter = super::history::Filter {
        kinds: q
            .kind
            .as_deref()
            .map(|k| {
                k.split(',')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        name: q.name,
        site: q.site,
        severity: q.severity,
        controller: q.controller,
        all: q.all.unwrap_or(false),
    };
    let page = super::history::Page {
        since,
        before: q.before,
        after: q.after,
        limit,
    };
    let read = super::history::read(&api.js, page, &filter)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(Json(HistoryAnswer {
        since,
        records: read.records,
        truncated: read.truncated,
        next: read.next_before.map(|b| format!("before={b}")),
    }))
}

async fn list_overrides(AxState(api): AxState<Api>) -> Json<OverridesAnswer> {
    let snap = api.current().await;
    Json(OverridesAnswer {
        overrides: snap.state.overrides.clone(),
    })
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

/// A managed name or target from a request body, checked and normalised at the edge.
fn dns_name(field: &str, s: &str) -> Result<DnsName, ApiError> {
    DnsName::new(s.trim()).map_err(|e| bad(format!("`{field}`: {s:?} {e}")))
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

/// What a create request asks the engine to do, with `for` taken from `now`.
pub(crate) fn create_action(
    req: &CreateOverride,
    now: DateTime<Utc>,
) -> Result<OverrideAction, ApiError> {
    let expires = match &req.for_ {
        None => None,
        Some(f) => Some(shifted(now, hold_duration("for", f)?, false, "for")?),
    };
    Ok(match req.action.as_str() {
        "pin" => OverrideAction::Pin {
            namespace: dns_name("namespace", need(&req.namespace, "namespace", "pin")?)?,
            target: dns_name("target", need(&req.target, "target", "pin")?)?,
            expires,
        },
        "drain" => OverrideAction::Drain {
            site: site(need(&req.site, "site", "drain")?)?,
            expires,
        },
        "freeze" => OverrideAction::Freeze {
            scope: match &req.namespace {
                Some(n) if !n.trim().is_empty() => {
                    FreezeScope::Namespace(dns_name("namespace", n)?)
                }
                _ => FreezeScope::All,
            },
            expires,
        },
        "failback" => OverrideAction::Failback {
            namespace: dns_name("namespace", need(&req.namespace, "namespace", "failback")?)?,
        },
        other => {
            return Err(bad(format!(
                "unknown action {other:?}; use pin, drain, freeze or failback"
            )));
        }
    })
}

/// What a release request asks the engine to do.
pub(crate) fn release_action(req: &ReleaseOverride) -> Result<OverrideAction, ApiError> {
    {
        let what = match req.kind.as_str() {
            "pin" => ReleaseTarget::Pin {
                namespace: dns_name("subject", need(&req.subject, "subject", "releasing a pin")?)?,
            },
            "drain" => ReleaseTarget::Drain {
                site: site(need(&req.subject, "subject", "releasing a drain")?)?,
            },
            "freeze" => ReleaseTarget::Freeze {
                scope: match &req.subject {
                    Some(n) if !n.trim().is_empty() && n != "*" => {
                        FreezeScope::Namespace(dns_name("subject", n)?)
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
    let action = create_action(&body, Utc::now())?;
    let why = reason(&body.reason)?;
    submit(&api, caller, action, why, body.force).await
}

async fn release_override(
    AxState(api): AxState<Api>,
    axum::Extension(caller): axum::Extension<Option<Caller>>,
    body: Result<Json<ReleaseOverride>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(body) = body.map_err(rejected)?;
    let action = release_action(&body)?;
    submit(&api, caller, action, reason(&body.reason)?, false).await
}

/// Checks the request against the engine (on a copy of the state), stores it on the bus, and
/// waits until this controller's engine has applied it.
async fn submit(
    api: &Api,
    caller: Option<Caller>,
    action: OverrideAction,
    why: String,
    force: bool,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let who = caller.map(|c| c.name).unwrap_or_else(|| "anonymous".into());
    let done = submit_as(api, who, action, why, force).await?;
    Ok(answer(&done))
}

/// The answer to a stored override: `201` applied, `409` refused by the engine (with its
/// reason), `202` not yet taken within [`APPLY_WAIT`].
fn answer(done: &Submitted) -> (StatusCode, Json<serde_json::Value>) {
    let mut body = serde_json::json!({
        "id": done.message.id,
        "applied": done.verdict == Verdict::Applied,
        "request": done.message.request,
        "overrides": done.overrides,
    });
    let status = match &done.verdict {
        Verdict::Applied => StatusCode::CREATED,
        Verdict::Pending => StatusCode::ACCEPTED,
        Verdict::Refused(reason) => {
            body["error"] = serde_json::json!(format!("the engine refused the override: {reason}"));
            body["refused"] = serde_json::json!(reason);
            StatusCode::CONFLICT
        }
    };
    (status, Json(body))
}

/// How long a submitted override waits for this controller's engine to take it.
pub const APPLY_WAIT: Duration = Duration::from_secs(5);

/// What this controller's engine did with a stored override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Accepted and applied.
    Applied,
    /// Refused, with the engine's reason (the request stays in the stream and the audit trail
    /// as `override_rejected`, and changes nothing).
    Refused(String),
    /// Not taken within [`APPLY_WAIT`]; stored, so it will be.
    Pending,
}

/// What [`submit_as`] did.
pub(crate) struct Submitted {
    /// The stored message.
    pub message: OverrideMessage,
    /// What this controller's engine decided within [`APPLY_WAIT`].
    pub verdict: Verdict,
    /// The overrides after it.
    pub overrides: crate::engine::overrides::Overrides,
}

/// Checks an override against the engine, stores it on the bus and waits (up to
/// [`APPLY_WAIT`]) for this controller's engine's verdict on it; `who` is recorded as the
/// operator; `force` overrides the engine's safety check (a pin or drain that would point a name
/// at a site that is not Up).
pub(crate) async fn submit_as(
    api: &Api,
    who: String,
    action: OverrideAction,
    why: String,
    force: bool,
) -> Result<Submitted, ApiError> {
    let request = OverrideRequest {
        who,
        why,
        action,
        force,
    };
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
    let verdict = tokio::time::timeout(APPLY_WAIT, async {
        loop {
            let taken = snap
                .borrow_and_update()
                .overrides_taken
                .iter()
                .find(|t| t.id == message.id)
                .map(|t| t.refused.clone());
            match taken {
                Some(None) => return Verdict::Applied,
                Some(Some(reason)) => return Verdict::Refused(reason),
                None => {}
            }
            if snap.changed().await.is_err() {
                return Verdict::Pending;
            }
        }
    })
    .await
    .unwrap_or(Verdict::Pending);
    let overrides = api.current().await.state.overrides.clone();
    Ok(Submitted {
        message,
        verdict,
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
    fn pending_names_list_changes_in_flight_and_retries_oldest_first() {
        use crate::engine::namespace::{NamespaceState, Pending};
        let mut state = State::default();
        let name = |s: &str| s.parse::<DnsName>().unwrap();
        state.namespaces.insert(
            name("b.example.com"),
            NamespaceState {
                pending: Some(Pending {
                    target: name("b-site2.example.com"),
                    generation: crate::engine::Generation(5),
                    issued_at: at("2026-12-06T03:00:02Z"),
                }),
                ..NamespaceState::default()
            },
        );
        let retry = serde_json::json!({
            "target": "a-site2.example.com",
            "class": {"class": "rate_limited", "retry_after_ms": 60000},
            "error": "DNS provider rate limit hit",
            "attempts": 2,
            "since": "2026-12-06T03:00:01Z",
            "not_before": "2026-12-06T03:01:01Z"
        });
        state.namespaces.insert(
            name("a.example.com"),
            NamespaceState {
                retry: Some(serde_json::from_value(retry).unwrap()),
                ..NamespaceState::default()
            },
        );
        state
            .namespaces
            .insert(name("c.example.com"), NamespaceState::default());
        let pending = pending_names(&state);
        let summary: Vec<(&str, &str, Option<&str>)> = pending
            .iter()
            .map(|p| (p.name.as_str(), p.state.as_str(), p.class.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a.example.com", "waiting", Some("rate_limited")),
                ("b.example.com", "in_flight", None),
            ]
        );
        assert_eq!(pending[0].retry_at, Some(at("2026-12-06T03:01:01Z")));
        assert_eq!(pending[0].attempts, 2);
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn pin_for(f: &str) -> CreateOverride {
        CreateOverride {
            action: "pin".into(),
            namespace: Some("mail.example.com".into()),
            target: Some("mail-site2.example.com".into()),
            site: None,
            for_: Some(f.into()),
            reason: "r".into(),
            force: false,
        }
    }

    #[test]
    fn a_hold_outside_one_minute_to_366_days_is_a_422_naming_field_value_and_range() {
        let now = at("2026-11-24T03:00:00Z");
        for f in ["0s", "1ns", "59s", "367d", "1000000y", "500000000y"] {
            let e = create_action(&pin_for(f), now).unwrap_err();
            assert_eq!(e.0, StatusCode::UNPROCESSABLE_ENTITY, "{f}: {}", e.1);
            assert!(
                e.1.contains("for") && e.1.contains(f) && e.1.contains("from 1m to 366d"),
                "{f}: {}",
                e.1
            );
        }
        let e = create_action(&pin_for("soon"), now).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST, "{}", e.1);
        for (f, secs) in [("1m", 60), ("4h", 4 * 3600), ("366d", 366 * 86_400)] {
            let OverrideAction::Pin { expires, .. } = create_action(&pin_for(f), now).unwrap()
            else {
                panic!("{f}")
            };
            assert_eq!(expires, Some(now + chrono::TimeDelta::seconds(secs)), "{f}");
        }
    }

    #[test]
    fn a_pin_takes_names_in_any_case_and_refuses_a_non_name_with_a_400_naming_the_field() {
        let now = at("2026-11-24T03:00:00Z");
        let mut req = pin_for("1h");
        req.namespace = Some("Mail.Example.COM.".into());
        req.target = Some("MAIL-site2.example.com".into());
        let OverrideAction::Pin {
            namespace, target, ..
        } = create_action(&req, now).unwrap()
        else {
            panic!("not a pin")
        };
        assert_eq!(namespace.as_str(), "mail.example.com");
        assert_eq!(target.as_str(), "mail-site2.example.com");
        for (field, bad) in [
            ("namespace", "mail example.com"),
            ("target", "mail..example.com"),
        ] {
            let mut req = pin_for("1h");
            if field == "namespace" {
                req.namespace = Some(bad.into());
            } else {
                req.target = Some(bad.into());
            }
            let e = create_action(&req, now).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{}", e.1);
            assert!(
                e.1.contains(&format!("`{field}`")) && e.1.contains("mail.example.com"),
                "{}",
                e.1
            );
        }
    }

    #[test]
    fn since_beyond_400_days_or_in_the_future_is_a_422_and_never_overflows() {
        let now = at("2026-11-24T03:00:00Z");
        for s in ["401d", "1000000y", "500000000y"] {
            let e = parse_since(Some(s), now).unwrap_err();
            assert_eq!(e.0, StatusCode::UNPROCESSABLE_ENTITY, "{s}: {}", e.1);
            assert!(
                e.1.contains("since") && e.1.contains(s) && e.1.contains("400d"),
                "{s}: {}",
                e.1
            );
        }
        let e = parse_since(Some("2026-11-25T00:00:00Z"), now).unwrap_err();
        assert_eq!(e.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", e.1);
        assert!(e.1.contains("future"), "{}", e.1);
        assert_eq!(
            parse_since(Some("400d"), now).unwrap(),
            now - chrono::TimeDelta::days(400)
        );
        assert_eq!(parse_since(Some("0s"), now).unwrap(), now);
        assert_eq!(
            parse_since(Some("9999-01-01T00:00:00Z"), at("9999-06-01T00:00:00Z")).unwrap(),
            at("9999-01-01T00:00:00Z")
        );
        // The CLI's flag is named in the same words.
        let e = since_time("--since", "1000000y", now).unwrap_err();
        assert!(
            e.to_string().starts_with("--since \"1000000y\""),
            "{}",
            e.to_string()
        );
    }

    #[test]
    fn every_configured_agent_is_listed_with_its_latest_heartbeat_and_its_age() {
        let cfg = crate::engine::config::ControllerConfig::load(
            &sitewarden_shared::config::Source::inline(
                "controller.toml",
                include_str!("../../../examples/controller.toml"),
            ),
        )
        .unwrap();
        let engine = Engine::new(cfg.clone());
        let mut state = engine.initial_state();
        let id = cfg.agents.keys().next().unwrap().clone();
        let heard = state.agents.get_mut(&id).unwrap();
        heard.version = Some("0.4.2".into());
        heard.last_heartbeat = Some(at("2026-11-24T02:59:58Z"));
        heard.heartbeat_interval_ms = Some(5000);
        heard.buffered = 7;
        heard.dropped_total = 2;
        let list = agents(&cfg, &state, at("2026-11-24T03:00:00.500Z"));
        assert_eq!(list.len(), cfg.agents.len(), "{list:?}");
        let first = &list[0];
        assert_eq!(first.agent, id);
        assert_eq!(first.site, cfg.agents[&id].site);
        assert_eq!(first.version.as_deref(), Some("0.4.2"));
        assert_eq!(first.age_ms, Some(2500));
        assert_eq!((first.buffered, first.dropped_total), (7, 2));
        assert_eq!(first.heartbeat_interval_ms, Some(5000));
        // An agent never heard from is listed, with nothing to show.
        assert!(
            list[1..]
                .iter()
                .all(|a| a.version.is_none() && a.last_heartbeat.is_none() && a.age_ms.is_none())
        );
        // A status from a controller that predates the list reads with none.
        let mut json = serde_json::to_value(Status {
            at: at("2026-11-24T03:00:00Z"),
            leader: LeaderView {
                controller: "ctl-a".into(),
                role: "leader".into(),
                acting: true,
                leader: Some("ctl-a".into()),
                epoch: Some(7),
                leader_epoch: Some(7),
            },
            sites: Vec::new(),
            namespaces: Vec::new(),
            namespaces_total: 0,
            off_preferred_total: 0,
            pending: Vec::new(),
            pending_total: 0,
            dags: Vec::new(),
            controllers: Vec::new(),
            overrides: Default::default(),
            recent: Vec::new(),
            agents: list,
        })
        .unwrap();
        json.as_object_mut().unwrap().remove("agents");
        let old: Status = serde_json::from_value(json).unwrap();
        assert!(old.agents.is_empty());
    }

    fn rejected_in_step(reason: &str) -> Vec<Command> {
        vec![Command::Audit(crate::engine::Audit {
            at: at("2026-11-24T03:00:00Z"),
            event: AuditEvent::OverrideRejected {
                request: OverrideRequest {
                    who: "alice".into(),
                    why: "r".into(),
                    action: OverrideAction::Release {
                        what: ReleaseTarget::Drain {
                            site: SiteId::new("site1").unwrap(),
                        },
                    },
                    force: false,
                },
                reason: reason.into(),
            },
        })]
    }

    #[test]
    fn the_snapshot_records_the_engines_verdict_on_each_override() {
        let mut notes = Snapshot::default();
        notes.took_override("ovr-1".into(), &[]);
        notes.took_override("ovr-2".into(), &rejected_in_step("site1 is not drained"));
        assert_eq!(
            notes.overrides_taken.iter().cloned().collect::<Vec<_>>(),
            vec![
                Taken {
                    id: "ovr-1".into(),
                    refused: None
                },
                Taken {
                    id: "ovr-2".into(),
                    refused: Some("site1 is not drained".into())
                },
            ]
        );
        for i in 0..RECENT_KEPT {
            notes.took_override(format!("more-{i}"), &[]);
        }
        assert_eq!(notes.overrides_taken.len(), RECENT_KEPT, "bounded");
    }

    #[test]
    fn a_refused_override_is_answered_409_with_the_reason_and_never_applied() {
        let message = OverrideMessage {
            id: "ovr-1".into(),
            at: at("2026-11-24T03:00:00Z"),
            via: "ctl-a".into(),
            request: OverrideRequest {
                who: "alice".into(),
                why: "r".into(),
                action: OverrideAction::Failback {
                    namespace: "mail.example.com".parse().unwrap(),
                },
                force: false,
            },
        };
        let done = |verdict| Submitted {
            message: message.clone(),
            verdict,
            overrides: Default::default(),
        };
        let (status, Json(body)) =
            answer(&done(Verdict::Refused("nothing to fail back to".into())));
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["applied"], false);
        assert_eq!(body["refused"], "nothing to fail back to");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("nothing to fail back to")
        );
        let (status, Json(body)) = answer(&done(Verdict::Applied));
        assert_eq!(
            (status, &body["applied"]),
            (StatusCode::CREATED, &serde_json::json!(true))
        );
        assert!(body.get("error").is_none());
        let (status, Json(body)) = answer(&done(Verdict::Pending));
        assert_eq!(
            (status, &body["applied"]),
            (StatusCode::ACCEPTED, &serde_json::json!(false))
        );
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
