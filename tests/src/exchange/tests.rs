//! The emulator observed from outside with a real HTTP client, for every behaviour.

use super::*;
use reqwest::{Client, Method, StatusCode};

const EAS: &str = "/Microsoft-Server-ActiveSync";

fn plain_client() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn plain_server() -> ExchangeServer {
    ExchangeServer::start(
        ExchangeOptions::new("EXCH-SVR-1.CONTOSO.LOCAL").with_account("CONTOSO\\probe", "s3cret"),
    )
    .await
    .unwrap()
}

async fn options(c: &Client, s: &ExchangeServer, creds: Option<(&str, &str)>) -> reqwest::Response {
    let mut r = c.request(Method::OPTIONS, format!("{}{EAS}", s.base_url()));
    if let Some((u, p)) = creds {
        r = r.basic_auth(u, Some(p));
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn healthy_server_answers_like_exchange() {
    let s = plain_server().await;
    let c = plain_client();
    for vdir in HEALTHCHECK_VDIRS {
        let r = c
            .get(format!("{}/{vdir}/healthcheck.htm", s.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.text().await.unwrap(),
            "200 OK<br/>EXCH-SVR-1.CONTOSO.LOCAL"
        );
    }
    let r = c
        .get(format!("{}/OWA/HealthCheck.htm", s.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "paths are case-insensitive");

    let r = options(&c, &s, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    let r = options(&c, &s, Some(("CONTOSO\\probe", "wrong"))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = options(&c, &s, Some(("CONTOSO\\probe", "s3cret"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ms-asprotocolversions"], AS_PROTOCOL_VERSIONS);
    assert_eq!(r.headers()["ms-asprotocolcommands"], AS_PROTOCOL_COMMANDS);
    assert_eq!(r.headers()["ms-server-activesync"], AS_SERVER_VERSION);

    let r = c.get(format!("{}/", s.base_url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], "/owa");
    let r = c
        .get(format!("{}/nothing", s.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let reqs = s.requests();
    assert_eq!(reqs.len(), s.request_count());
    let authed: Vec<_> = reqs.iter().filter(|r| r.auth_present).collect();
    assert_eq!(authed.len(), 2);
    assert_eq!(authed[1].credentials, Credentials::Valid);
    assert!(
        reqs.iter()
            .all(|r| !r.tls && r.sni.is_none() && r.host.is_some())
    );
}

#[tokio::test]
async fn error_garbage_and_activesync_faults() {
    let s = plain_server().await;
    let c = plain_client();
    let hc = format!("{}/owa/healthcheck.htm", s.base_url());
    let good = Some(("CONTOSO\\probe", "s3cret"));

    s.set(Behaviour::Error500).await.unwrap();
    assert_eq!(c.get(&hc).send().await.unwrap().status(), 500);
    assert_eq!(options(&c, &s, good).await.status(), 500);

    s.set(Behaviour::Garbage).await.unwrap();
    let r = c.get(&hc).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(!body.starts_with("200 OK"), "{body}");
    let r = options(&c, &s, good).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("ms-asprotocolversions").is_none());

    let to = "https://mail-site2.example.com/Microsoft-Server-ActiveSync";
    s.set(Behaviour::Redirect451 {
        location: to.into(),
    })
    .await
    .unwrap();
    let r = options(&c, &s, good).await;
    assert_eq!(r.status(), 451);
    assert_eq!(r.headers()["x-ms-location"], to);
    assert_eq!(options(&c, &s, None).await.status(), 401);
    assert_eq!(c.get(&hc).send().await.unwrap().status(), 200);

    s.set(Behaviour::Throttled {
        retry_after: "30".into(),
    })
    .await
    .unwrap();
    let r = options(&c, &s, good).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "30");

    s.set(Behaviour::ProvisioningRequired).await.unwrap();
    assert_eq!(options(&c, &s, good).await.status(), 449);
    s.set(Behaviour::Forbidden).await.unwrap();
    assert_eq!(options(&c, &s, good).await.status(), 403);
    s.set(Behaviour::Healthy).await.unwrap();
    assert_eq!(s.behaviour(), Behaviour::Healthy);
    assert_eq!(options(&c, &s, good).await.status(), 200);
}

#[tokio::test]
async fn hang_accepts_but_never_answers() {
    let s = plain_server().await;
    s.set(Behaviour::Hang).await.unwrap();
    let c = Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = c
        .get(format!("{}/owa/healthcheck.htm", s.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(s.request_count(), 1, "the request arrived");
}

#[tokio::test]
async fn down_refuses_then_comes_back_on_the_same_port() {
    let s = plain_server().await;
    let addr = s.addr();
    let c = plain_client();
    let hc = format!("{}/owa/healthcheck.htm", s.base_url());
    assert_eq!(c.get(&hc).send().await.unwrap().status(), 200);

    s.set(Behaviour::Down).await.unwrap();
    let e = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = c.get(&hc).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    s.set(Behaviour::Healthy).await.unwrap();
    assert_eq!(s.addr(), addr);
    assert_eq!(c.get(&hc).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn https_sends_sni_and_host_and_serves_the_chosen_certificate() {
    let id = TlsIdentity::new(&["mail-site1.example.com", "mail.example.com"], 5).unwrap();
    let left = id.not_after() - chrono::Utc::now();
    assert!(left > chrono::Duration::days(4) && left <= chrono::Duration::days(5));
    let s = ExchangeServer::start(ExchangeOptions::new("EX1.CONTOSO.LOCAL").with_tls(id.clone()))
        .await
        .unwrap();
    assert!(s.base_url().starts_with("https://"));
    let dir = tempfile::tempdir().unwrap();
    let ca_path = id.write_ca(dir.path()).unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_path).unwrap()).unwrap();
    let c = Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .resolve("mail.example.com", s.addr())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!(
        "https://mail.example.com:{}/Microsoft-Server-ActiveSync/healthcheck.htm",
        s.addr().port()
    );
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "200 OK<br/>EX1.CONTOSO.LOCAL");
    let req = &s.requests()[0];
    assert!(req.tls);
    assert_eq!(req.sni.as_deref(), Some("mail.example.com"));
    assert_eq!(
        req.host.as_deref(),
        Some(format!("mail.example.com:{}", s.addr().port()).as_str())
    );
    assert_eq!(
        s.tls_handshakes(),
        vec![Some("mail.example.com".to_owned())]
    );

    // A name outside the SANs is refused by a verifying client.
    let other = Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(id.ca_pem().as_bytes()).unwrap())
        .resolve("autodiscover.example.com", s.addr())
        .build()
        .unwrap();
    let url = format!("https://autodiscover.example.com:{}/", s.addr().port());
    assert!(other.get(&url).send().await.is_err());
}

#[tokio::test]
async fn an_expired_certificate_is_served_and_rejected_by_clients() {
    let id = TlsIdentity::new(&["mail-site2.example.com"], -1).unwrap();
    assert!(id.not_after() < chrono::Utc::now());
    let s = ExchangeServer::start(ExchangeOptions::default().with_tls(id.clone()))
        .await
        .unwrap();
    let c = Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(id.ca_pem().as_bytes()).unwrap())
        .resolve("mail-site2.example.com", s.addr())
        .build()
        .unwrap();
    let url = format!(
        "https://mail-site2.example.com:{}/owa/healthcheck.htm",
        s.addr().port()
    );
    let err = c.get(&url).send().await.unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("expired"),
        "{err:?}"
    );
    assert_eq!(s.tls_handshakes().len(), 0);
}

#[tokio::test]
async fn two_identities_from_one_ca() {
    let ca = TestCa::new().unwrap();
    let a = ca.issue(&["mail-site1.example.com"], 30).unwrap();
    let b = ca.issue(&["mail-site2.example.com"], 30).unwrap();
    assert_eq!(a.ca_pem(), b.ca_pem());
    assert_eq!(a.ca_pem(), ca.pem());
    assert_ne!(a.cert_pem(), b.cert_pem());
}
