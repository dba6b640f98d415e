//! `activesync`: `OPTIONS /Microsoft-Server-ActiveSync`, the probe that works on every Exchange.
//!
//! Anonymous: a 401 means the service is alive. With a test account (Basic): a 200 that carries
//! `MS-ASProtocolVersions` passes. A 451 is a cross-site redirect: it passes when
//! `X-MS-Location` names a configured site's ActiveSync URL, and fails when it points back at
//! the host we asked (clients would loop) or at a host no site owns. 449 means the device must
//! provision — configuration, not an outage — so it passes with a note. 503 is throttling and
//! records `Retry-After`; 403 means the test account is not enabled for ActiveSync.

use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sitewarden_shared::{ActiveSyncDetails, ErrorClass};

use super::http::{self, base_url};
use super::{Finding, ProbeContext};
use crate::config::Probe;

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
}

fn list(h: &HeaderMap, name: &str) -> Vec<String> {
    header(h, name)
        .map(|s| {
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn probe(
    client: &reqwest::Client,
    probe: &Probe,
    ctx: &ProbeContext,
    account: Option<&(String, SecretString)>,
) -> Finding {
    let url = format!("{}/Microsoft-Server-ActiveSync", base_url(probe));
    let mut req = client.request(reqwest::Method::OPTIONS, url);
    if let Some((user, pass)) = account {
        req = req.basic_auth(user, Some(pass.expose_secret()));
    }
    let r = match http::execute(req, probe, ctx).await {
        Ok(r) => r,
        Err(f) => return f,
    };
    let mut d = ActiveSyncDetails {
        protocol_versions: list(&r.headers, "ms-asprotocolversions"),
        protocol_commands: list(&r.headers, "ms-asprotocolcommands"),
        server_version: header(&r.headers, "ms-server-activesync"),
        authenticated: account.is_some(),
        ..Default::default()
    };
    let mut f = match (r.status, account.is_some()) {
        (200, true) if !d.protocol_versions.is_empty() => Finding {
            pass: true,
            ..Default::default()
        },
        (200, true) => Finding::fail(
            ErrorClass::Header,
            "200 without MS-ASProtocolVersions: not an ActiveSync endpoint",
        ),
        (200, false) | (401, false) => Finding {
            pass: true,
            ..Default::default()
        },
        (401, true) => Finding::fail(
            ErrorClass::HttpStatus,
            "HTTP 401: the test account was rejected (check its password)",
        ),
        (403, _) => Finding::fail(
            ErrorClass::HttpStatus,
            "HTTP 403: the test account is not enabled for ActiveSync",
        ),
        (449, _) => {
            let mut f = Finding {
                pass: true,
                ..Default::default()
            };
            f.details.note =
                Some("449: device provisioning required (configuration, not an outage)".into());
            f
        }
        (451, _) => judge_redirect(&r.headers, probe, ctx, &mut d),
        (503, _) => {
            d.retry_after = header(&r.headers, "retry-after");
            let after = d
                .retry_after
                .as_deref()
                .map(|s| format!(", Retry-After {s}"))
                .unwrap_or_default();
            Finding::fail(ErrorClass::Throttled, format!("HTTP 503: throttled{after}"))
        }
        (s, _) => Finding::fail(
            ErrorClass::HttpStatus,
            format!("HTTP {s} (expected 401 anonymous or 200 with a test account)"),
        ),
    };
    f.http_status = Some(r.status);
    f.details.tls = r.tls;
    f.details.activesync = Some(d);
    f
}

fn judge_redirect(
    h: &HeaderMap,
    probe: &Probe,
    ctx: &ProbeContext,
    d: &mut ActiveSyncDetails,
) -> Finding {
    let Some(location) = header(h, "x-ms-location") else {
        return Finding::fail(ErrorClass::Header, "451 without X-MS-Location");
    };
    d.redirect_location = Some(location.clone());
    let Ok(url) = reqwest::Url::parse(&location) else {
        return Finding::fail(
            ErrorClass::RedirectUnknown,
            format!("451 to an unparsable X-MS-Location {location:?}"),
        );
    };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if host == probe.public_host.to_ascii_lowercase() {
        return Finding::fail(
            ErrorClass::RedirectLoop,
            format!("451 redirects to the same host {host}: clients would loop"),
        );
    }
    let site = ctx.sites.iter().find(|(_, s)| {
        s.activesync_url.as_ref().is_some_and(|u| {
            u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(&host))
                && u.path()
                    .trim_end_matches('/')
                    .eq_ignore_ascii_case(url.path().trim_end_matches('/'))
        })
    });
    match site {
        Some((id, _)) => {
            d.redirect_site = Some(id.clone());
            let mut f = Finding {
                pass: true,
                ..Default::default()
            };
            f.details.note = Some(format!("451 to known site {id}"));
            f
        }
        None => Finding::fail(
            ErrorClass::RedirectUnknown,
            format!("451 to {location}, which is no configured site's activesync_url"),
        ),
    }
}
