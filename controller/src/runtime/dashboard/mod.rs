//! The operator dashboard: one page served at `/` and `/dashboard`, every asset compiled into
//! the binary (`include_str!`), nothing fetched from anywhere else.
//!
//! The page itself is public (it holds no data); it asks for a token, keeps it in the tab's
//! `sessionStorage` (or takes it from the URL fragment `#token=…`, which browsers never send to
//! the server) and calls the operator API ([`super::api`]) with it every 2 s. Every asset is
//! served with `Cache-Control: no-store`, a `Content-Security-Policy` that allows only this
//! origin (no inline script or style, no framing), `X-Content-Type-Options: nosniff` and
//! `X-Frame-Options: DENY`. The script inserts every value from the API with `textContent`,
//! so a site name, a reason or an alert text can never become markup.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
const APP_JS: &str = include_str!("app.js");
/// The panels the script draws (banner, servers, agents, controllers, timeline).
const PANELS_JS: &str = include_str!("panels.js");
/// Its style sheet.
const STYLE_CSS: &str = include_str!("style.css");

/// The policy sent with every asset: this origin only, no framing, no plugins, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The dashboard's routes; they need no token (the API calls the page makes do).
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/panels.js",
            get(|| async { asset("text/javascript; charset=utf-8", PANELS_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_the_security_headers() {
        for (path, kind) in [
            ("/", "text/html"),
            ("/dashboard", "text/html"),
            ("/dashboard/app.js", "text/javascript"),
            ("/dashboard/panels.js", "text/javascript"),
            ("/dashboard/style.css", "text/css"),
        ] {
            let r = routes()
                .oneshot(
                    axum::http::Request::get(path)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let h = r.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind));
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            assert!(
                h[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .starts_with("default-src 'self'")
            );
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_never_uses_inner_html() {
        for text in [INDEX_HTML, APP_JS, PANELS_JS, STYLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("@import"));
        }
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(banned), "app.js uses {banned}");
            assert!(!PANELS_JS.contains(banned), "panels.js uses {banned}");
        }
        assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("style="));
    }
}
