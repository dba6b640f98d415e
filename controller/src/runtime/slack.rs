//! The Slack slash command: `/sitewarden status | explain NAME | pin | drain | freeze | failback
//! | release`, served at `POST /slack/command` by both controllers.
//!
//! Every request is checked against Slack's signing secret (signature `v0`, HMAC-SHA256 of
//! `v0:{timestamp}:{body}`, compared in constant time) and refused when its timestamp is more
//! than five minutes off; inside those five minutes a signature this controller has answered is
//! refused the second time ([`super::slack_guard`]), so a captured request cannot be replayed to
//! it. Refusals are counted by cause and logged at most once per cause per minute. Reads are open to anyone in
//! the workspace who can run the command; writes only to the Slack user ids in
//! `allowed_users`, are recorded with the Slack user as the operator, and require `--reason`.
//! Answers come within Slack's 3-second limit: a write that takes longer is answered "accepted"
//! and finishes in the background. A write the engine refuses (releasing what is not held, a
//! duration out of range) is answered "Not done" with the reason, only to the caller.
//!
//! The headers are checked (a signature in the right form, a timestamp inside the window) before
//! the body is read, at most [`MAX_READERS`] bodies are read at once, and a request not answered
//! within [`REQUEST_DEADLINE`] (a body trickled in) gets 408.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State as AxState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sitewarden_shared::config::secret::SecretRef;
use sitewarden_shared::config::{ConfigError, KeyPath, Source};

use super::api::{self, Api, CreateOverride, ReleaseOverride};
use super::metrics::Metrics;
use super::slack_guard::{Admission, RefusalLog, ReplayCache};

/// Slack's replay window.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// Largest slash-command body accepted (Slack's are well under 4 KiB).
pub const MAX_BODY: usize = 16 * 1024;
/// How long a write may take before the answer is "accepted, still applying".
const ANSWER_WITHIN: Duration = Duration::from_millis(2500);
/// Longest a slash command may take, body included. Slack sends the body at once and gives up
/// after 3 s, so anything slower is not Slack.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Most slash-command bodies read at once; beyond it, 503 at once. The body must be read to check
/// its signature, so this bounds what forged requests can hold.
pub const MAX_READERS: usize = 16;

/// `[slack]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// The app's signing secret: `{ env = "…" }` or `{ file = "…" }`.
    pub signing_secret: Option<SecretRef>,
    /// Slack user ids (`U…`) that may pin, drain, freeze, fail back and release.
    #[serde(default)]
    pub allowed_users: Vec<String>,
}

/// Validated `[slack]`.
#[derive(Clone)]
pub struct SlackSettings {
    secret: SecretString,
    /// Who may write.
    pub allowed_users: Vec<String>,
}

impl std::fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSettings")
            .field("secret", &"[redacted]")
            .field("allowed_users", &self.allowed_users)
            .finish()
    }
}

impl SlackSettings {
    /// Settings from code (tests).
    pub fn new(secret: &str, allowed_users: Vec<String>) -> Self {
        Self {
            secret: SecretString::from(secret.to_owned()),
            allowed_users,
        }
    }
}

impl RawSlack {
    /// `None` when the section is absent (no endpoint is served).
    pub fn validate(&self, src: &Source, at: &KeyPath) -> Result<SlackSettings, ConfigError> {
        let secret = self
            .signing_secret
            .as_ref()
            .ok_or_else(|| {
                src.error(
                    &at.key("signing_secret"),
                    "required: the Slack app's signing secret, e.g. { env = \"SLACK_SIGNING_SECRET\" }",
                )
            })?
            .resolve()
            .map_err(|e| src.error(&at.key("signing_secret"), e))?;
        for (i, u) in self.allowed_users.iter().enumerate() {
            if u.is_empty() || !u.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(src.error(
                    &at.key("allowed_users").index(i),
                    format!("{u:?} is not a Slack user id (like \"U2CERLKJA\"; see the member's profile → Copy member ID)"),
                ));
            }
        }
        Ok(SlackSettings {
            secret,
            allowed_users: self.allowed_users.clone(),
        })
    }
}

/// Why a request was refused before it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackRefusal {
    /// Missing or unreadable `X-Slack-Request-Timestamp`.
    #[error("missing or malformed X-Slack-Request-Timestamp")]
    BadTimestamp,
    /// Outside the replay window.
    #[error("request timestamp is {0} s away from now; refusing a possible replay")]
    Stale(u64),
    /// Missing or malformed `X-Slack-Signature`.
    #[error("missing or malformed X-Slack-Signature (expected v0=<hex>)")]
    BadSignatureFormat,
    /// The signature does not match.
    #[error("signature does not match: check [slack] signing_secret")]
    Mismatch,
    /// A signed request this controller has already answered, sent again.
    #[error("this signed request was already answered; refusing a replay")]
    Replayed,
    /// Too many signed requests inside the replay window to remember them all.
    #[error(
        "too many signed requests in the last five minutes to check for replays; try again shortly"
    )]
    Busy,
}

impl SlackRefusal {
    /// Every cause, as counted in `sitewarden_controller_slack_refused_total{cause}`.
    pub const CAUSES: [&'static str; 6] = [
        "bad_timestamp",
        "stale",
        "bad_signature_format",
        "mismatch",
        "replayed",
        "busy",
    ];

    /// The cause's metric label.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::BadTimestamp => "bad_timestamp",
            Self::Stale(_) => "stale",
            Self::BadSignatureFormat => "bad_signature_format",
            Self::Mismatch => "mismatch",
            Self::Replayed => "replayed",
            Self::Busy => "busy",
        }
    }
}

/// What can be checked before the body is read: a timestamp inside the replay window and a
/// signature of the right form. Returns the signature's bytes.
pub fn check_headers(
    timestamp: &str,
    signature: &str,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, SlackRefusal> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SlackRefusal::BadTimestamp)?;
    let skew = now.timestamp().abs_diff(ts);
    if skew > REPLAY_WINDOW.as_secs() {
        return Err(SlackRefusal::Stale(skew));
    }
    signature
        .trim()
        .strip_prefix("v0=")
        .and_then(crate::edge::signature::decode_hex)
        .ok_or(SlackRefusal::BadSignatureFormat)
}

/// Verifies a request as Slack documents it.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: DateTime<Utc>,
) -> Result<(), SlackRefusal> {
    let tag = check_headers(timestamp, signature, now)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut base = format!("v0:{}:", timestamp.trim()).into_bytes();
    base.extend_from_slice(body);
    hmac::verify(&key, &base, &tag).map_err(|_| SlackRefusal::Mismatch)
}

/// Signs like Slack does (`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`); for tests and
/// tools that call the endpoint as Slack would.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut base = format!("v0:{timestamp}:").into_bytes();
    base.extend_from_slice(body);
    let tag = hmac::sign(&key, &base);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

#[derive(Clone)]
struct SlackState {
    api: Api,
    settings: Arc<SlackSettings>,
    /// One permit per body being read.
    readers: Arc<tokio::sync::Semaphore>,
    /// Signatures answered inside the replay window.
    replays: Arc<ReplayCache>,
    /// Refusals: counted, and logged once per cause per minute.
    refusals: Arc<RefusalLog>,
    metrics: Arc<Metrics>,
}

impl SlackState {
    /// Counts and (at most once a minute per cause) logs a refusal, and answers 401.
    fn refuse(&self, e: &SlackRefusal) -> Response {
        self.metrics.slack_refused(e.cause());
        self.refusals.note(e.cause(), &e.to_string());
        (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response()
    }
}

/// `POST /slack/command`.
pub fn router(api: Api, settings: SlackSettings, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/slack/command", post(command))
        .with_state(SlackState {
            api,
            settings: Arc::new(settings),
            readers: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            replays: Arc::default(),
            refusals: Arc::default(),
            metrics,
        })
        .layer(axum::middleware::from_fn(deadline))
}

async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("the command took longer than {REQUEST_DEADLINE:?} to arrive; Slack sends it at once\n"),
        )
            .into_response(),
    }
}

fn reply(text: impl Into<String>, in_channel: bool) -> Response {
    axum::Json(serde_json::json!({
        "response_type": if in_channel { "in_channel" } else { "ephemeral" },
        "text": text.into(),
    }))
    .into_response()
}

/// Checks a request as Slack signs it, in order of cost: the headers, then the body (bounded
/// in size and in how many are read at once), the signature, and the replay cache. Returns the
/// body, or the answer that refuses it.
async fn authenticate(s: &SlackState, req: Request) -> Result<axum::body::Bytes, Response> {
    let (parts, body) = req.into_parts();
    let h = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let tag = check_headers(
        h("x-slack-request-timestamp"),
        h("x-slack-signature"),
        Utc::now(),
    )
    .map_err(|e| s.refuse(&e))?;
    let body = {
        let Ok(_reading) = s.readers.clone().try_acquire_owned() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_READERS} slash commands are being read already; try again\n"),
            )
                .into_response());
        };
        axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body was cut off or over {MAX_BODY} bytes (a slash command's limit)\n"
                ),
            )
                .into_response()
        })?
    };
    verify(
        s.settings.secret.expose_secret().as_bytes(),
        h("x-slack-request-timestamp"),
        &body,
        h("x-slack-signature"),
        Utc::now(),
    )
    .map_err(|e| s.refuse(&e))?;
    let ts = h("x-slack-request-timestamp").trim().parse().unwrap_or(0);
    match s.replays.admit(&tag, ts, Utc::now().timestamp()) {
        Admission::Fresh => Ok(body),
        Admission::Replayed => Err(s.refuse(&SlackRefusal::Replayed)),
        Admission::Full => Err(s.refuse(&SlackRefusal::Busy)),
    }
}

async fn command(AxState(s): AxState<SlackState>, req: Request) -> Response {
    let body = match authenticate(&s, req).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let mut text = String::new();
    let mut user_id = String::new();
    let mut user_name = String::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "text" => text = v.into_owned(),
            "user_id" => user_id = v.into_owned(),
            "user_name" => user_name = v.into_owned(),
            _ => {}
        }
    }
    match parse(&text) {
        Err(usage) => reply(usage, false),
        Ok(Parsed::Status) => reply(status_text(&s.api).await, false),
        Ok(Parsed::Explain(name)) => {
            let snap = s.api.current().await;
            let found = sitewarden_contract::DnsName::new(&name)
                .ok()
                .and_then(|n| s.api.engine.explain(&snap.state, &n));
            match found {
                Some(x) => reply(format!("```{x}```"), false),
                None => reply(format!("`{name}` is not a managed name"), false),
            }
        }
        Ok(Parsed::Write(w)) => {
            if !s.settings.allowed_users.iter().any(|u| u == &user_id) {
                return reply(
                    format!(
                        "<@{user_id}> may read but not change anything: add the user id to [slack] allowed_users"
                    ),
                    false,
                );
            }
            let action = match &w {
                Write::Create(c) => api::create_action(c, Utc::now()),
                Write::Release(r) => api::release_action(r),
            };
            let (action, why) = match action.and_then(|a| Ok((a, api::reason(w.reason())?))) {
                Ok(x) => x,
                Err(e) => return reply(format!("Not done: {}", e.1), false),
            };
            let who = format!("slack:{user_name}({user_id})");
            let api = s.api.clone();
            // Chat-ops never force: a pin or drain onto a site that is not Up is refused with the
            // reason, and forcing one takes the CLI or the API.
            let job =
                tokio::spawn(async move { api::submit_as(&api, who, action, why, false).await });
            match tokio::time::timeout(ANSWER_WITHIN, job).await {
                Ok(Ok(Ok(done))) => match &done.verdict {
                    api::Verdict::Applied => reply(
                        format!(
                            "<@{user_id}>: {} ({}). `sitewarden status` shows the effect.",
                            describe(&done.message.request.action),
                            done.message.request.why
                        ),
                        true,
                    ),
                    api::Verdict::Refused(reason) => {
                        reply(format!("Not done: the engine refused it: {reason}"), false)
                    }
                    api::Verdict::Pending => reply(
                        format!(
                            "Accepted (override {}): stored but not yet applied — check with `/sitewarden status`",
                            done.message.id
                        ),
                        false,
                    ),
                },
                Ok(Ok(Err(e))) => reply(format!("Not done: {}", e.1), false),
                Ok(Err(_)) => reply("Not done: internal error; see the controller log", false),
                Err(_) => reply(
                    "Accepted; still being stored and applied — check with `/sitewarden status`",
                    false,
                ),
            }
        }
    }
}

fn describe(a: &crate::engine::OverrideAction) -> String {
    use crate::engine::{FreezeScope, OverrideAction, ReleaseTarget};
    let scope = |s: &FreezeScope| match s {
        FreezeScope::All => "everything".to_owned(),
        FreezeScope::Namespace(n) => format!("`{n}`"),
    };
    match a {
        OverrideAction::Pin {
            namespace, target, ..
        } => format!("pinned `{namespace}` to `{target}`"),
        OverrideAction::Drain { site, .. } => format!("drained site `{site}`"),
        OverrideAction::Freeze { scope: s, .. } => format!("froze {}", scope(s)),
        OverrideAction::Failback { namespace } => format!("failing `{namespace}` back"),
        OverrideAction::Release { what } => match what {
            ReleaseTarget::Pin { namespace } => format!("released the pin on `{namespace}`"),
            ReleaseTarget::Drain { site } => format!("released the drain of `{site}`"),
            ReleaseTarget::Freeze { scope: s } => format!("released the freeze of {}", scope(s)),
        },
    }
}

async fn status_text(api: &Api) -> String {
    let snap = api.current().await;
    let cfg = api.engine.config();
    let leader = api.leadership.borrow().clone();
    let mut out = format!(
        "*sitewarden* via {} ({})\n",
        api.controller,
        if leader.acting {
            format!("acting leader, epoch {}", leader.epoch.unwrap_or(0))
        } else {
            "standby".to_owned()
        }
    );
    for site in cfg.sites.keys() {
        let v = snap
            .state
            .sites
            .get(site)
            .map(|s| format!("{:?}", s.verdict))
            .unwrap_or_else(|| "Unknown".into());
        let drained = if snap.state.overrides.is_drained(site) {
            " (drained)"
        } else {
            ""
        };
        out.push_str(&format!("• site `{site}`: {v}{drained}\n"));
    }
    for name in cfg.namespaces.keys() {
        if let Some(x) = api.engine.explain(&snap.state, name) {
            out.push_str(&format!(
                "• `{name}` → `{}`\n",
                x.current.as_deref().unwrap_or("?")
            ));
        }
    }
    out
}

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Parsed {
    Status,
    Explain(String),
    Write(Write),
}

#[derive(Debug, PartialEq)]
enum Write {
    Create(CreateOverride),
    Release(ReleaseOverride),
}

impl Write {
    fn reason(&self) -> &str {
        match self {
            Write::Create(c) => &c.reason,
            Write::Release(r) => &r.reason,
        }
    }
}

const USAGE: &str = "Usage: `/sitewarden status` · `explain NAME` · `pin NAME TARGET [--for 4h] --reason …` · `drain SITE [--for 4h] --reason …` · `freeze [NAME] [--for 1h] --reason …` · `failback NAME --reason …` · `release pin NAME | drain SITE | freeze [NAME] --reason …`";

/// Splits `words… [--for D] --reason rest of line`.
fn split_flags(text: &str) -> Result<(Vec<&str>, Option<String>, String), String> {
    let (head, reason) = match text.split_once("--reason") {
        Some((h, r)) => (h, r.trim().to_owned()),
        None => (text, String::new()),
    };
    let mut words = Vec::new();
    let mut for_ = None;
    let mut it = head.split_whitespace();
    while let Some(w) = it.next() {
        if w == "--for" {
            for_ = Some(
                it.next()
                    .ok_or("`--for` needs a duration, e.g. `--for 4h`")?
                    .to_owned(),
            );
        } else if w.starts_with("--") {
            return Err(format!("unknown flag `{w}`. {USAGE}"));
        } else {
            words.push(w);
        }
    }
    Ok((words, for_, reason))
}

fn parse(text: &str) -> Result<Parsed, String> {
    let (words, for_, reason) = split_flags(text)?;
    let create =
        |action: &str, namespace: Option<&str>, target: Option<&str>, site: Option<&str>| {
            Ok(Parsed::Write(Write::Create(CreateOverride {
                action: action.to_owned(),
                namespace: namespace.map(str::to_owned),
                target: target.map(str::to_owned),
                site: site.map(str::to_owned),
                for_: for_.clone(),
                reason: reason.clone(),
                force: false,
            })))
        };
    match words.as_slice() {
        [] | ["help"] => Err(USAGE.to_owned()),
        ["status"] => Ok(Parsed::Status),
        ["explain", name] => Ok(Parsed::Explain((*name).to_owned())),
        ["pin", name, target] => create("pin", Some(name), Some(target), None),
        ["drain", site] => create("drain", None, None, Some(site)),
        ["freeze"] => create("freeze", None, None, None),
        ["freeze", name] => create("freeze", Some(name), None, None),
        ["failback", name] => create("failback", Some(name), None, None),
        ["release", kind, rest @ ..] if rest.len() <= 1 => {
            Ok(Parsed::Write(Write::Release(ReleaseOverride {
                kind: (*kind).to_owned(),
                subject: rest.first().map(|s| (*s).to_owned()),
                reason,
            })))
        }
        _ => Err(format!("I did not understand `{}`. {USAGE}", text.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Slack's "Verifying requests from Slack".
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TIMESTAMP: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    #[test]
    fn slacks_documented_example_verifies() {
        assert_eq!(
            verify(
                DOC_SECRET.as_bytes(),
                DOC_TIMESTAMP,
                DOC_BODY.as_bytes(),
                DOC_SIGNATURE,
                at(1531420618 + 10)
            ),
            Ok(())
        );
    }

    #[test]
    fn tampering_a_wrong_secret_and_replays_are_refused() {
        let v = |secret: &str, ts: &str, body: &str, sig: &str, now: i64| {
            verify(secret.as_bytes(), ts, body.as_bytes(), sig, at(now))
        };
        let now = 1531420618;
        let tampered = DOC_BODY.replace("text=", "text=pin");
        assert_eq!(
            v(DOC_SECRET, DOC_TIMESTAMP, &tampered, DOC_SIGNATURE, now),
            Err(SlackRefusal::Mismatch)
        );
        assert_eq!(
            v(
                "another-secret",
                DOC_TIMESTAMP,
                DOC_BODY,
                DOC_SIGNATURE,
                now
            ),
            Err(SlackRefusal::Mismatch)
        );
        assert_eq!(
            v(
                DOC_SECRET,
                DOC_TIMESTAMP,
                DOC_BODY,
                DOC_SIGNATURE,
                now + 301
            ),
            Err(SlackRefusal::Stale(301))
        );
        assert_eq!(
            v(DOC_SECRET, "soon", DOC_BODY, DOC_SIGNATURE, now),
            Err(SlackRefusal::BadTimestamp)
        );
        assert_eq!(
            v(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY, "a2114d57", now),
            Err(SlackRefusal::BadSignatureFormat)
        );
        assert_eq!(
            v(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY, "v0=zz", now),
            Err(SlackRefusal::BadSignatureFormat)
        );
    }

    #[test]
    fn commands_parse_with_flags_and_a_free_text_reason() {
        assert_eq!(parse("status"), Ok(Parsed::Status));
        assert_eq!(
            parse("explain mail.example.com"),
            Ok(Parsed::Explain("mail.example.com".into()))
        );
        let Ok(Parsed::Write(Write::Create(c))) = parse(
            "pin mail.example.com mail-site2.example.com --for 4h --reason site1 patching CHG-1042",
        ) else {
            panic!()
        };
        assert_eq!(
            (c.action.as_str(), c.target.as_deref(), c.for_.as_deref()),
            ("pin", Some("mail-site2.example.com"), Some("4h"))
        );
        assert_eq!(c.reason, "site1 patching CHG-1042");
        let Ok(Parsed::Write(Write::Release(r))) = parse("release drain site1 --reason done")
        else {
            panic!()
        };
        assert_eq!(
            (r.kind.as_str(), r.subject.as_deref()),
            ("drain", Some("site1"))
        );
        assert!(parse("").unwrap_err().contains("Usage"));
        assert!(
            parse("pin onlyone")
                .unwrap_err()
                .contains("did not understand")
        );
        assert!(
            parse("drain site1 --force")
                .unwrap_err()
                .contains("--force")
        );
        assert!(parse("drain site1 --for").unwrap_err().contains("--for"));
    }

    #[test]
    fn sign_reproduces_the_documented_signature() {
        assert_eq!(
            sign(DOC_SECRET.as_bytes(), 1531420618, DOC_BODY.as_bytes()),
            DOC_SIGNATURE
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Hostile headers and bodies never panic the check and never pass it.
        #[test]
        fn arbitrary_requests_are_refused_without_panicking(
            ts in ".{0,24}",
            sig in ".{0,80}",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            proptest::prop_assert!(verify(DOC_SECRET.as_bytes(), &ts, &body, &sig, at(1531420618)).is_err());
        }

        /// Command text never panics the parser.
        #[test]
        fn arbitrary_command_text_never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let s = SlackSettings::new(DOC_SECRET, vec!["U2CERLKJA".into()]);
        assert!(!format!("{s:?}").contains(DOC_SECRET));
    }
}
