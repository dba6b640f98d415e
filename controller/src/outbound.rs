//! Outbound webhooks: what every HTTP POST the controller sends on its own shares — chat-ops
//! alerts (`notify`) and signed edge notices (`edge`). One place decides which URLs may be
//! configured (https, or http to loopback only), how the client is built (rustls, a timeout per
//! request), which answers are worth retrying, and how an error is told without its URL (a
//! webhook URL is a secret: Slack's and Teams' carry their token in the path).

use std::time::Duration;

/// Whether `url` may receive webhooks: https anywhere, http only to a loopback address (a local
/// relay). The error says what to change; it never repeats the URL.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("the URL read from this source is not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let ip = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || ip
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("the URL uses http to a non-loopback host; use https".into())
            }
        }
        other => Err(format!("the URL's scheme is {other:?}; use https")),
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and 5xx.
pub(crate) fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The HTTP client for outgoing webhooks: rustls, `timeout` per request. Falls back to
/// reqwest's defaults (and says so) if the builder fails.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!("webhook HTTP client with defaults: {e}");
            reqwest::Client::new()
        })
}

/// A reqwest error and its causes as one line, without the URL.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_may_receive_webhooks() {
        assert!(check_url("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://[::1]:8080/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        let e = check_url("http://relay.example.com/secret-token").unwrap_err();
        assert!(
            e.contains("use https") && !e.contains("secret-token"),
            "{e}"
        );
        let e = check_url("ftp://example.com/x").unwrap_err();
        assert!(e.contains("\"ftp\""), "{e}");
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn timeouts_rate_limits_and_server_errors_are_retried_the_rest_not() {
        for s in [408, 429, 500, 502, 503] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 410, 413] {
            assert!(!is_transient_status(s), "{s}");
        }
    }
}
