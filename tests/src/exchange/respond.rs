//! What the emulated client-access server answers: a pure function from the request line,
//! credentials and the current [`Behaviour`] to a response, so the rules read in one place.
//!
//! Connection-level behaviours (`Down`, `Hang`) are handled by the server loop before this is
//! called.

use axum::body::Body;
use axum::http::{Method, Response, StatusCode, header};

use super::Behaviour;

/// Virtual directories that serve `healthcheck.htm` on Exchange 2013 and later.
pub const HEALTHCHECK_VDIRS: [&str; 8] = [
    "Microsoft-Server-ActiveSync",
    "owa",
    "ews",
    "autodiscover",
    "mapi",
    "oab",
    "ecp",
    "rpc",
];

/// `MS-ASProtocolVersions` of an Exchange 2019 server.
pub const AS_PROTOCOL_VERSIONS: &str = "2.0,2.1,2.5,12.0,12.1,14.0,14.1,16.0,16.1";
/// `MS-ASProtocolCommands` of an Exchange 2019 server.
pub const AS_PROTOCOL_COMMANDS: &str = "Sync,SendMail,SmartForward,SmartReply,GetAttachment,GetHierarchy,CreateCollection,DeleteCollection,MoveCollection,FolderSync,FolderCreate,FolderDelete,FolderUpdate,MoveItems,GetItemEstimate,MeetingResponse,Search,Settings,Ping,ItemOperations,Provision,ResolveRecipients,ValidateCert,Find";
/// `MS-Server-ActiveSync` (the server build).
pub const AS_SERVER_VERSION: &str = "15.20.7452.000";

/// The body a broken server returns with a 200 for [`Behaviour::Garbage`].
pub const GARBAGE_BODY: &str = "<!DOCTYPE html>\r\n<html><head><title>Runtime Error</title></head>\
<body><h1>Server Error in '/' Application.</h1><h2><i>Runtime Error</i></h2></body></html>\r\n";

/// How the request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    Anonymous,
    /// Basic credentials that match the test account (or any, when none is configured).
    Valid,
    /// Credentials that do not match, or an unsupported scheme.
    Invalid,
}

/// The response for one request. `host` names the server in headers and realms.
pub fn respond(
    method: &Method,
    path: &str,
    credentials: Credentials,
    behaviour: &Behaviour,
    backend_fqdn: &str,
) -> Response<Body> {
    let fe_server = backend_fqdn.split('.').next().unwrap_or(backend_fqdn);
    let mut resp = route(method, path, credentials, behaviour, backend_fqdn);
    if let Ok(v) = header::HeaderValue::from_str(fe_server) {
        resp.headers_mut().insert("X-FEServer", v);
    }
    resp
}

fn route(
    method: &Method,
    path: &str,
    credentials: Credentials,
    behaviour: &Behaviour,
    backend_fqdn: &str,
) -> Response<Body> {
    match behaviour {
        Behaviour::Error500 => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 - Internal server error.",
            );
        }
        Behaviour::Garbage => {
            return build(
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "text/html"),
                GARBAGE_BODY.to_owned(),
            );
        }
        _ => {}
    }
    let path = path.split('?').next().unwrap_or(path);
    let lower = path.to_ascii_lowercase();
    if lower == "/" && (method == Method::GET || method == Method::HEAD) {
        return build(
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, "/owa"),
            String::new(),
        );
    }
    if let Some(vdir) = lower
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/healthcheck.htm"))
        && HEALTHCHECK_VDIRS
            .iter()
            .any(|v| v.eq_ignore_ascii_case(vdir))
        && (method == Method::GET || method == Method::HEAD)
    {
        return build(
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/html"),
            format!("200 OK<br/>{backend_fqdn}"),
        );
    }
    if lower.trim_end_matches('/') == "/microsoft-server-activesync" {
        return activesync(method, credentials, behaviour, backend_fqdn);
    }
    text(StatusCode::NOT_FOUND, "404 - File or directory not found.")
}

fn activesync(
    method: &Method,
    credentials: Credentials,
    behaviour: &Behaviour,
    backend_fqdn: &str,
) -> Response<Body> {
    if credentials != Credentials::Valid {
        return build(
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(
                    header::WWW_AUTHENTICATE,
                    format!("Basic realm=\"{backend_fqdn}\""),
                )
                .header(header::CONTENT_TYPE, "text/html"),
            "401 - Unauthorized: Access is denied due to invalid credentials.".to_owned(),
        );
    }
    match behaviour {
        Behaviour::Redirect451 { location } => build(
            Response::builder()
                .status(451)
                .header("X-MS-Location", location.as_str()),
            String::new(),
        ),
        Behaviour::Throttled { retry_after } => build(
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header(header::RETRY_AFTER, retry_after.as_str()),
            String::new(),
        ),
        Behaviour::ProvisioningRequired => build(Response::builder().status(449), String::new()),
        Behaviour::Forbidden => text(StatusCode::FORBIDDEN, "403 - Forbidden: Access is denied."),
        _ if method == Method::OPTIONS => build(
            Response::builder()
                .status(StatusCode::OK)
                .header(header::ALLOW, "OPTIONS,POST")
                .header("Public", "OPTIONS,POST")
                .header("MS-Server-ActiveSync", AS_SERVER_VERSION)
                .header("MS-ASProtocolVersions", AS_PROTOCOL_VERSIONS)
                .header("MS-ASProtocolCommands", AS_PROTOCOL_COMMANDS),
            String::new(),
        ),
        // The emulator does not speak WBXML commands.
        _ => text(StatusCode::BAD_REQUEST, "400 - Bad Request"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    build(
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/html"),
        body.to_owned(),
    )
}

fn build(builder: axum::http::response::Builder, body: String) -> Response<Body> {
    builder.body(Body::from(body)).unwrap_or_else(|e| {
        // Only reachable through a header value the emulator's user supplied (e.g. a location
        // with a newline); answer 500 so the test sees something is off.
        let mut r = Response::new(Body::from(format!("emulator response error: {e}")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: Method, path: &str, c: Credentials, b: &Behaviour) -> u16 {
        respond(&method, path, c, b, "EX1.CONTOSO.LOCAL")
            .status()
            .as_u16()
    }

    #[test]
    fn healthy_routes() {
        let h = &Behaviour::Healthy;
        for vdir in HEALTHCHECK_VDIRS {
            let p = format!("/{vdir}/healthcheck.htm");
            assert_eq!(status(Method::GET, &p, Credentials::Anonymous, h), 200);
            assert_eq!(
                status(Method::GET, &p.to_uppercase(), Credentials::Anonymous, h),
                200
            );
        }
        assert_eq!(
            status(
                Method::GET,
                "/nope/healthcheck.htm",
                Credentials::Anonymous,
                h
            ),
            404
        );
        assert_eq!(status(Method::GET, "/", Credentials::Anonymous, h), 302);
        let a = "/Microsoft-Server-ActiveSync";
        assert_eq!(status(Method::OPTIONS, a, Credentials::Anonymous, h), 401);
        assert_eq!(status(Method::OPTIONS, a, Credentials::Invalid, h), 401);
        assert_eq!(status(Method::OPTIONS, a, Credentials::Valid, h), 200);
    }

    #[test]
    fn activesync_faults_need_a_signed_in_user() {
        let b = Behaviour::Redirect451 {
            location: "https://mail-site2.example.com/Microsoft-Server-ActiveSync".into(),
        };
        let a = "/Microsoft-Server-ActiveSync";
        assert_eq!(status(Method::OPTIONS, a, Credentials::Anonymous, &b), 401);
        let r = respond(&Method::OPTIONS, a, Credentials::Valid, &b, "EX1");
        assert_eq!(r.status().as_u16(), 451);
        assert_eq!(
            r.headers()["X-MS-Location"],
            "https://mail-site2.example.com/Microsoft-Server-ActiveSync"
        );
        assert_eq!(
            status(
                Method::GET,
                "/owa/healthcheck.htm",
                Credentials::Anonymous,
                &b
            ),
            200,
            "a 451 is about the mailbox, not the server"
        );
    }
}
