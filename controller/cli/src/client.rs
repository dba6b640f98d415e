//! The CLI's HTTP client: one request, tried against each controller of the pair in order.
//!
//! A controller that cannot be reached (connection refused, no route, connect timeout) is
//! skipped and the next one is tried; a read that gets a 503 (a controller still starting or
//! without its bus) is also tried on the next one. A write that was sent and timed out is not
//! repeated: it may have been stored. Answers are sorted into the CLI's exit codes: 401/403 →
//! [`Exit::Auth`], other errors → [`Exit::Refused`], nobody reachable → [`Exit::Unreachable`].

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;

use super::connection::Connection;
use super::{Exit, Failure};

/// How long connecting to one controller may take before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole request may take (the API gives up after 10 s itself).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// The controller that answered.
    pub controller: Url,
    /// 200, 201 or 202.
    pub status: StatusCode,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// Talks to the controllers.
pub struct Client {
    http: reqwest::Client,
    connection: Connection,
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

impl Client {
    /// A client for `connection`.
    pub fn new(connection: Connection) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("sitewarden-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot set up HTTP: {}", chain(&e))))?;
        Ok(Self { http, connection })
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
        self.send(Method::GET, segments, query, None).await
    }

    /// `POST` `body` as JSON to the API path made of `segments`.
    pub async fn post(
        &self,
        segments: &[&str],
        body: &serde_json::Value,
    ) -> Result<Answer, Failure> {
        self.send(Method::POST, segments, &[], Some(body)).await
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, Failure> {
        let read = method == Method::GET;
        let mut unreachable: Vec<(&Url, String)> = Vec::new();
        let mut refused: Option<Failure> = None;
        for base in &self.connection.urls {
            let url = Self::url(base, segments, query);
            let mut req = self.http.request(method.clone(), url);
            if let Some(t) = &self.connection.token {
                req = req.bearer_auth(t.expose_secret());
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let response = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() || (read && e.is_timeout()) => {
                    unreachable.push((base, root_cause(&e)));
                    continue;
                }
                Err(e) if e.is_timeout() => {
                    return Err(Failure::new(
                        Exit::Unreachable,
                        format!(
                            "the controller at {base} did not answer within {REQUEST_TIMEOUT:?}; the change may or may not be stored — check `sitewarden status` before retrying"
                        ),
                    ));
                }
                Err(e) => {
                    unreachable.push((base, chain(&e.without_url())));
                    continue;
                }
            };
            let status = response.status();
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    unreachable.push((
                        base,
                        format!("the answer broke off: {}", chain(&e.without_url())),
                    ));
                    continue;
                }
            };
            if status.is_success() {
                let body = serde_json::from_str(&text).map_err(|e| {
                    Failure::new(
                        Exit::Refused,
                        format!(
                            "{base} answered {status} with something that is not JSON ({e}); is this a sitewarden controller?"
                        ),
                    )
                })?;
                return Ok(Answer {
                    controller: base.clone(),
                    status,
                    body,
                });
            }
            let why = error_text(&text);
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let hint = if !self.has_token() {
                    "; no token was given: pass --token, set SITEWARDEN_TOKEN or add `token` to ~/.config/sitewarden/cli.toml"
                } else if status == StatusCode::FORBIDDEN {
                    "; use a token with the admin role for changes"
                } else {
                    ""
                };
                return Err(Failure::new(
                    Exit::Auth,
                    format!(
                        "the controller at {base} refused the token (HTTP {status}): {why}{hint}"
                    ),
                ));
            }
            let failure = Failure::new(
                Exit::Refused,
                format!("the controller at {base} answered HTTP {status}: {why}"),
            );
            if read && status == StatusCode::SERVICE_UNAVAILABLE {
                refused = Some(failure);
                continue;
            }
            return Err(failure);
        }
        if let Some(f) = refused {
            return Err(f);
        }
        let what = match unreachable.as_slice() {
            [(url, cause)] => format!("the controller at {url}: {cause}"),
            many => format!(
                "any controller ({})",
                many.iter()
                    .map(|(url, cause)| format!("{url}: {cause}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        Err(Failure::new(
            Exit::Unreachable,
            format!("cannot reach {what}; is it running? check --url / SITEWARDEN_URL"),
        ))
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
