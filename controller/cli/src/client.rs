//! The CLI's HTTP client: one request to the controller pair, preferring the leader.
//!
//! Every authenticated answer names the controller and its role (headers
//! [`CONTROLLER_HEADER`] and [`ROLE_HEADER`]). A read goes first to the leader the CLI found
//! last time ([`crate::leader_memory`]), else to the first URL; if that has not answered
//! within [`STAGGER`], the next URL is asked too. A leader's answer wins at once; a standby's
//! is kept while the other controller gets [`LEADER_GRACE`] to answer as the leader, and is
//! used (and says so) when it does not. So a dead or black-holed URL costs at most `STAGGER`
//! once, and nothing after the leader has been found and remembered.
//!
//! A write goes to the remembered leader first and then the others in order, one at a time: a
//! write that was sent and timed out is not repeated, since it may have been stored. A
//! controller that cannot be reached (connection refused, no route, connect timeout) is
//! skipped; a read that gets a 503 (a controller still starting or without its bus) is also
//! tried on the next one. Answers are sorted into the CLI's exit codes: 401/403 →
//! [`Exit::Auth`], other errors → [`Exit::Refused`], nobody reachable → [`Exit::Unreachable`].

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use sitewarden_api::wire::{CONTROLLER_HEADER, ROLE_HEADER};
use tokio::task::JoinSet;

use super::connection::Connection;
use super::leader_memory;
use super::{Exit, Failure};

/// How long connecting to one controller may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a whole request may take (the API gives up after 10 s itself).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a read waits for one controller before asking the next one as well.
pub const STAGGER: Duration = Duration::from_millis(750);
/// How long a read that has a standby's answer waits for the leader's.
pub const LEADER_GRACE: Duration = Duration::from_secs(2);

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// The controller that answered.
    pub controller: Url,
    /// 200, 201 or 202.
    pub status: StatusCode,
    /// The JSON body.
    pub body: serde_json::Value,
    /// The answering controller's id and role, from the answer's headers (a controller older
    /// than these headers sends none).
    pub identity: Option<(String, String)>,
}

impl Answer {
    fn is_the_leaders(&self) -> bool {
        self.identity
            .as_ref()
            .is_none_or(|(_, role)| role == "leader")
    }

    /// A line for stderr when the answer did not come from the leader; `alone` when no other
    /// controller was given to ask.
    pub fn not_the_leader(&self, alone: bool) -> Option<String> {
        let (id, role) = self.identity.as_ref()?;
        let why = if alone {
            "only this controller was given; name both with --url to read from the leader"
        } else {
            "the leader did not answer"
        };
        (role != "leader").then(|| {
            format!(
                "note: answered by {} ({}), not the leader: {why}",
                sitewarden_contract::terminal::line(id),
                sitewarden_contract::terminal::line(role)
            )
        })
    }
}

/// Talks to the controllers.
pub struct Client {
    http: reqwest::Client,
    connection: Connection,
    /// The leader memory file, when there is a home to keep it in.
    memory: Option<PathBuf>,
}

/// The innermost cause of an error ("Connection refused (os error 111)").
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    inner.to_string()
}

/// The message of an error and everything that caused it, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The `error` of a JSON error body, or the start of a text body.
fn error_text(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let t = text.trim();
            if t.is_empty() {
                "no details".to_owned()
            } else {
                t.chars().take(300).collect()
            }
        })
}

/// What asking one controller came to.
enum Attempt {
    /// A 2xx answer.
    Answered(Answer),
    /// Not reached (or, for a read, no answer in time): try another.
    Unreachable(String),
    /// A 503 to a read: another controller may do better.
    Unavailable(Failure),
    /// An answer that settles it (an error the other controller would give too).
    Settled(Failure),
}

/// One request, ready to send to any of the pair.
#[derive(Clone)]
struct Request {
    http: reqwest::Client,
    token: Option<SecretString>,
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<serde_json::Value>,
}

impl Request {
    async fn send(self, base: Url) -> (Url, Attempt) {
        let attempt = self.attempt(&base).await;
        (base, attempt)
    }

    async fn attempt(&self, base: &Url) -> Attempt {
        let read = self.method == Method::GET;
        let segments: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        let query: Vec<(&str, String)> = self
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let url = Client::url(base, &segments, &query);
        let mut req = self.http.request(self.method.clone(), url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose_secret());
        }
        if let Some(b) = &self.body {
            req = req.json(b);
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || (read && e.is_timeout()) => {
                return Attempt::Unreachable(root_cause(&e));
            }
            Err(e) if e.is_timeout() => {
                return Attempt::Settled(Failure::new(
                    Exit::Unreachable,
                    format!(
                        "the controller at {base} did not answer within {REQUEST_TIMEOUT:?}; the change may or may not be stored — check `sitewarden status` before retrying"
                    ),
                ));
            }
            Err(e) => return Attempt::Unreachable(chain(&e.without_url())),
        };
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let identity = header(CONTROLLER_HEADER).zip(header(ROLE_HEADER));
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Unreachable(format!(
                    "the answer broke off: {}",
                    chain(&e.without_url())
                ));
            }
        };
        if status.is_success() {
            return match serde_json::from_str(&text) {
                Ok(body) => Attempt::Answered(Answer {
                    controller: base.clone(),
                    status,
                    body,
                    identity,
                }),
                Err(e) => Attempt::Settled(Failure::new(
                    Exit::Refused,
                    format!(
                        "{base} answered {status} with something that is not JSON ({e}); is this a sitewarden controller?"
                    ),
                )),
            };
        }
        let why = error_text(&text);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let hint = if self.token.is_none() {
                "; no token was given: pass --token, set SITEWARDEN_TOKEN or add `token` to ~/.config/sitewarden/cli.toml"
            } else if status == StatusCode::FORBIDDEN {
                "; use a token with the admin role for changes"
            } else {
                ""
            };
            return Attempt::Settled(Failure::new(
                Exit::Auth,
                format!("the controller at {base} refused the token (HTTP {status}): {why}{hint}"),
            ));
        }
        let failure = Failure::new(
            Exit::Refused,
            format!("the controller at {base} answered HTTP {status}: {why}"),
        );
        if read && status == StatusCode::SERVICE_UNAVAILABLE {
            Attempt::Unavailable(failure)
        } else {
            Attempt::Settled(failure)
        }
    }
}

/// What the attempts so far came to, for the final message when nobody answered.
#[derive(Default)]
struct Misses {
    unreachable: Vec<(Url, String)>,
    unavailable: Option<Failure>,
}

impl Misses {
    fn note(&mut self, base: Url, attempt: Attempt) {
        match attempt {
            Attempt::Unreachable(cause) => self.unreachable.push((base, cause)),
            Attempt::Unavailable(f) => self.unavailable = Some(f),
            Attempt::Answered(_) | Attempt::Settled(_) => {}
        }
    }

    fn into_failure(self) -> Failure {
        if let Some(f) = self.unavailable {
            return f;
        }
        let what = match self.unreachable.as_slice() {
            [(url, cause)] => format!("the controller at {url}: {cause}"),
            many => format!(
                "any controller ({})",
                many.iter()
                    .map(|(url, cause)| format!("{url}: {cause}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        Failure::new(
            Exit::Unreachable,
            format!("cannot reach {what}; is it running? check --url / SITEWARDEN_URL"),
        )
    }
}

impl Client {
    /// A client for `connection`, remembering leaders in the default place.
    pub fn new(connection: Connection) -> Result<Self, Failure> {
        Self::with_memory(connection, leader_memory::default_path())
    }

    /// A client for `connection` that remembers leaders in `memory` (none: not at all).
    pub fn with_memory(connection: Connection, memory: Option<PathBuf>) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("sitewarden-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot set up HTTP: {}", chain(&e))))?;
        Ok(Self {
            http,
            connection,
            memory,
        })
    }

    /// Whether a token was given.
    pub fn has_token(&self) -> bool {
        self.connection.token.is_some()
    }

    fn url(base: &Url, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `GET` the API path made of `segments` (each percent-encoded) with `query`.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Answer, Failure> {
        let req = self.request(Method::GET, segments, query, None);
        let answer = self.read(req).await?;
        self.remember(&answer);
        if let Some(note) = answer.not_the_leader(self.connection.urls.len() < 2) {
            eprintln!("{note}");
        }
        Ok(answer)
    }

    /// `POST` `body` as JSON to the API path made of `segments`.
    pub async fn post(
        &self,
        segments: &[&str],
        body: &serde_json::Value,
    ) -> Result<Answer, Failure> {
        let req = self.request(Method::POST, segments, &[], Some(body));
        let mut misses = Misses::default();
        for base in self.ordered() {
            match req.attempt(&base).await {
                Attempt::Answered(a) => {
                    self.remember(&a);
                    return Ok(a);
                }
                Attempt::Settled(f) => return Err(f),
                other => misses.note(base, other),
            }
        }
        Err(misses.into_failure())
    }

    fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Request {
        Request {
            http: self.http.clone(),
            token: self.connection.token.clone(),
            method,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            body: body.cloned(),
        }
    }

    /// The URLs, the remembered leader first.
    fn ordered(&self) -> Vec<Url> {
        let remembered = self
            .memory
            .as_deref()
            .map(leader_memory::read)
            .unwrap_or_default();
        leader_memory::order(&self.connection.urls, &remembered)
    }

    /// Remembers where a leader answered (best effort: a read-only home only costs speed).
    fn remember(&self, answer: &Answer) {
        let (Some(path), Some((_, role))) = (self.memory.as_deref(), &answer.identity) else {
            return;
        };
        if role != "leader" {
            return;
        }
        let remembered = leader_memory::read(path);
        if remembered.first().map(String::as_str) == Some(answer.controller.as_str()) {
            return;
        }
        let _ = leader_memory::write(
            path,
            &leader_memory::remember(&remembered, &answer.controller),
        );
    }

    /// A read: the URLs asked one after another [`STAGGER`] apart (at once after a miss), the
    /// first leader's answer taken, a standby's kept for when no leader answers within
    /// [`LEADER_GRACE`].
    async fn read(&self, req: Request) -> Result<Answer, Failure> {
        let mut waiting = self.ordered().into_iter();
        let mut running = JoinSet::new();
        let mut misses = Misses::default();
        let mut standby: Option<Answer> = None;
        let mut grace: Option<tokio::time::Instant> = None;
        if let Some(first) = waiting.next() {
            running.spawn(req.clone().send(first));
        }
        loop {
            let stagger = tokio::time::sleep(STAGGER);
            let grace_over = async {
                match grace {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = running.join_next() => {
                    let Some(joined) = joined else { break };
                    let Ok((base, attempt)) = joined else { continue };
                    match attempt {
                        Attempt::Answered(a) if a.is_the_leaders() => return Ok(a),
                        Attempt::Answered(a) => {
                            standby.get_or_insert(a);
                            grace.get_or_insert_with(|| tokio::time::Instant::now() + LEADER_GRACE);
                            for next in waiting.by_ref() {
                                running.spawn(req.clone().send(next));
                            }
                        }
                        Attempt::Settled(f) => return Err(f),
                        other => {
                            misses.note(base, other);
                            if let Some(next) = waiting.next() {
                                running.spawn(req.clone().send(next));
                            }
                        }
                    }
                }
                () = stagger, if waiting.len() > 0 => {
                    if let Some(next) = waiting.next() {
                        running.spawn(req.clone().send(next));
                    }
                }
                () = grace_over => break,
            }
            if running.is_empty() && waiting.len() == 0 {
                break;
            }
        }
        standby.ok_or_else(|| misses.into_failure())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_and_keep_a_base_prefix() {
        let base = Url::parse("http://ctl:9465/sw/").unwrap();
        let u = Client::url(
            &base,
            &["api", "v1", "namespaces", "a/b c", "explain"],
            &[("since", "1h".into())],
        );
        assert_eq!(
            u.as_str(),
            "http://ctl:9465/sw/api/v1/namespaces/a%2Fb%20c/explain?since=1h"
        );
    }

    #[test]
    fn error_bodies_are_read_as_json_or_text() {
        assert_eq!(error_text(r#"{"error":"no such name"}"#), "no such name");
        assert_eq!(error_text("starting\n"), "starting");
        assert_eq!(error_text(""), "no details");
    }
}
