//! `exchange_healthcheck`: `GET /<vdir>/healthcheck.htm` (Exchange 2013 and later).
//!
//! Healthy is exactly a 200 whose body starts with `200 OK`; the text after `<br/>` is the
//! backend server's FQDN, recorded so an operator can see which mailbox server answered.
//! Never probe `/`: after 2013 CU6 it redirects and proves nothing.

use sitewarden_shared::ErrorClass;

use super::http::{self, base_url};
use super::{Finding, ProbeContext};
use crate::config::Probe;

pub async fn probe(
    client: &reqwest::Client,
    probe: &Probe,
    ctx: &ProbeContext,
    vdir: &str,
) -> Finding {
    let url = format!("{}/{vdir}/healthcheck.htm", base_url(probe));
    let r = match http::execute(client.get(url), probe, ctx).await {
        Ok(r) => r,
        Err(f) => return f,
    };
    if r.status != 200 {
        return http::unexpected_status(&r, "200");
    }
    let body = r.body.trim();
    let mut f = if body.starts_with("200 OK") {
        Finding {
            pass: true,
            ..Default::default()
        }
    } else {
        let shown: String = body.chars().take(80).collect();
        Finding::fail(
            ErrorClass::Body,
            format!("200 without \"200 OK\" body (got {shown:?})"),
        )
    };
    f.http_status = Some(r.status);
    f.details.backend_fqdn = body
        .split_once("<br/>")
        .or_else(|| body.split_once("<br>"))
        .map(|(_, fqdn)| fqdn.trim().to_owned())
        .filter(|s| !s.is_empty() && f.pass);
    f.details.tls = r.tls;
    f
}
