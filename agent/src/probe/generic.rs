//! `http`: a plain HTTP(S) request with an expected status set and an optional body match.

use sitewarden_shared::ErrorClass;

use super::http::{self, base_url};
use super::{Finding, ProbeContext};
use crate::config::{Probe, ProbeSpec};

pub async fn probe(client: &reqwest::Client, probe: &Probe, ctx: &ProbeContext) -> Finding {
    let ProbeSpec::Http {
        method,
        path,
        expect_status,
        body_contains,
        headers,
    } = &probe.spec
    else {
        return Finding::fail(ErrorClass::Protocol, "internal: not an http check");
    };
    let mut req = client.request(method.clone(), format!("{}{path}", base_url(probe)));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = match http::execute(req, probe, ctx).await {
        Ok(r) => r,
        Err(f) => return f,
    };
    if !expect_status.contains(&r.status) {
        let expected: Vec<String> = expect_status.iter().map(u16::to_string).collect();
        return http::unexpected_status(&r, &expected.join(" or "));
    }
    let mut f = match body_contains {
        Some(needle) if !r.body.contains(needle.as_str()) => Finding::fail(
            ErrorClass::Body,
            format!("body does not contain {needle:?}"),
        ),
        _ => Finding {
            pass: true,
            ..Default::default()
        },
    };
    f.http_status = Some(r.status);
    f.details.tls = r.tls;
    f
}
