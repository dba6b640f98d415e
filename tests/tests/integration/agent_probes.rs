//! Every Exchange-facing probe against the emulator, over HTTPS with a test CA, as the events
//! the agent publishes on a real nats-server. Each test switches the emulator's behaviour and
//! waits (with a deadline) for the observation that describes it.

use sitewarden_shared::{ErrorClass, Observation, Outcome};
use sitewarden_tests::agent_events::{Events, collect, observation};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer, TlsIdentity};
use sitewarden_tests::in_process::RunningAgent;
use sitewarden_tests::nats_server::NatsServer;

const FQDN: &str = "EXCH-SVR-1.CONTOSO.LOCAL";
const SITE1_EAS: &str = "https://mail-site1.example.com/Microsoft-Server-ActiveSync";
const SITE2_EAS: &str = "https://mail-site2.example.com/Microsoft-Server-ActiveSync";

struct Lab {
    _nats: NatsServer,
    exchange: ExchangeServer,
    rx: Events,
    agent: RunningAgent,
    _dir: tempfile::TempDir,
}

/// One HTTPS Exchange server for site1 whose certificate covers `sans` and lives `days` more
/// days, and an agent running `checks` against it.
async fn lab(sans: &[&str], days: i64, checks: &str) -> Lab {
    let nats = NatsServer::start().await.unwrap();
    let identity = TlsIdentity::new(sans, days).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = identity.write_ca(dir.path()).unwrap();
    let pw = dir.path().join("probe.pass");
    std::fs::write(&pw, "Pa55w0rd!\n").unwrap();
    std::fs::write(
        dir.path().join("probe.pass.wrong"),
        "not-the-password-xyz\n",
    )
    .unwrap();
    let exchange = ExchangeServer::start(
        ExchangeOptions::new(FQDN)
            .with_tls(identity)
            .with_account("CONTOSO\\svc-probe", "Pa55w0rd!"),
    )
    .await
    .unwrap();
    let toml = format!(
        r#"
[agent]
id = "witness-agent1"
site = "witness"

[nats]
servers = ["{nats}"]

[defaults]
interval = "500ms"
timeout = "400ms"
cert_expiry_warn_days = 14

[[sites]]
name = "site1"
activesync_url = "{SITE1_EAS}"
tls_names = ["mail-site1.example.com", "mail.example.com", "autodiscover.example.com"]
servers = [{{ name = "cas1", address = "{addr}" }}]

[[sites]]
name = "site2"
activesync_url = "{SITE2_EAS}"
servers = [{{ name = "cas3", address = "127.0.0.2:9" }}]
{checks}
"#,
        nats = nats.url(),
        addr = exchange.addr(),
        checks = checks
            .replace("@CA@", ca.to_str().unwrap())
            .replace("@PW@", pw.to_str().unwrap()),
    );
    let rx = collect(&nats.url()).await;
    let agent = RunningAgent::start(&toml);
    Lab {
        _nats: nats,
        exchange,
        rx,
        agent,
        _dir: dir,
    }
}

fn failed_with(class: ErrorClass) -> impl Fn(&Observation) -> bool {
    move |o| o.outcome == Outcome::Fail && o.error_class == Some(class)
}

#[tokio::test]
async fn healthcheck_passes_with_backend_fqdn_and_reports_certificate_findings_then_each_failure_mode_is_classified()
 {
    let checks = r#"
[[checks]]
name = "owa"
kind = "exchange_healthcheck"
site = "site1"
vdir = "owa"
ca_file = "@CA@"
"#;
    // The certificate misses autodiscover.example.com and expires in 5 days (warning at 14).
    let mut lab = lab(&["mail-site1.example.com", "mail.example.com"], 5, checks).await;

    let ok = observation(&mut lab.rx, "owa", "cas1", |o| o.outcome == Outcome::Pass).await;
    assert_eq!(ok.kind, sitewarden_shared::CheckKind::ExchangeHealthcheck);
    assert_eq!(ok.protocol, "owa");
    assert_eq!(ok.http_status, Some(200));
    assert_eq!(ok.details.backend_fqdn.as_deref(), Some(FQDN));
    let tls = ok.details.tls.expect("certificate findings");
    assert!(
        tls.expiring_soon && (3..=5).contains(&tls.days_left),
        "{tls:?}"
    );
    assert_eq!(
        tls.missing_names,
        vec!["autodiscover.example.com".to_owned()]
    );
    assert!(tls.sans.contains(&"mail-site1.example.com".to_owned()));
    // Connected to the server's address, but spoke to it as the public name.
    let req = lab
        .exchange
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("healthcheck.htm"))
        .unwrap();
    assert!(
        req.host
            .as_deref()
            .unwrap_or_default()
            .starts_with("mail-site1.example.com"),
        "{req:?}"
    );
    assert_eq!(req.sni.as_deref(), Some("mail-site1.example.com"));

    lab.exchange.set(Behaviour::Error500).await.unwrap();
    let e500 = observation(
        &mut lab.rx,
        "owa",
        "cas1",
        failed_with(ErrorClass::HttpStatus),
    )
    .await;
    assert_eq!(e500.http_status, Some(500));
    lab.exchange.set(Behaviour::Garbage).await.unwrap();
    let garbage = observation(&mut lab.rx, "owa", "cas1", failed_with(ErrorClass::Body)).await;
    assert_eq!(garbage.http_status, Some(200));
    lab.exchange.set(Behaviour::Hang).await.unwrap();
    let hang = observation(&mut lab.rx, "owa", "cas1", failed_with(ErrorClass::Timeout)).await;
    assert!(
        hang.latency_ms >= 350 && hang.latency_ms < 1500,
        "timeout honoured: {}ms",
        hang.latency_ms
    );
    lab.exchange.set(Behaviour::Down).await.unwrap();
    observation(
        &mut lab.rx,
        "owa",
        "cas1",
        failed_with(ErrorClass::ConnectRefused),
    )
    .await;
    lab.exchange.set(Behaviour::Healthy).await.unwrap();
    observation(&mut lab.rx, "owa", "cas1", |o| o.outcome == Outcome::Pass).await;
    lab.agent.stop().await;
}

#[tokio::test]
async fn activesync_anonymous_and_authenticated_probes_judge_401_200_451_449_403_and_503() {
    let checks = r#"
[[checks]]
name = "eas"
kind = "activesync"
site = "site1"
ca_file = "@CA@"

[[checks]]
name = "eas-auth"
kind = "activesync"
site = "site1"
ca_file = "@CA@"
username = "CONTOSO\\svc-probe"
password = { file = "@PW@" }
"#;
    let mut lab = lab(&["mail-site1.example.com"], 90, checks).await;

    let anon = observation(&mut lab.rx, "eas", "cas1", |_| true).await;
    assert_eq!(
        (anon.outcome, anon.http_status),
        (Outcome::Pass, Some(401)),
        "{anon:?}"
    );
    let auth = observation(&mut lab.rx, "eas-auth", "cas1", |_| true).await;
    assert_eq!(
        (auth.outcome, auth.http_status),
        (Outcome::Pass, Some(200)),
        "{auth:?}"
    );
    let eas = auth.details.activesync.expect("activesync details");
    assert!(eas.authenticated);
    assert!(
        eas.protocol_versions.contains(&"16.1".to_owned())
            && eas.protocol_versions.contains(&"14.0".to_owned())
    );
    assert!(eas.protocol_commands.contains(&"FolderSync".to_owned()));
    assert!(eas.server_version.is_some());

    // 451 to a known site's URL: the mailbox lives in site2; fine, noted.
    lab.exchange
        .set(Behaviour::Redirect451 {
            location: SITE2_EAS.into(),
        })
        .await
        .unwrap();
    let moved = observation(&mut lab.rx, "eas-auth", "cas1", |o| {
        o.http_status == Some(451)
    })
    .await;
    assert_eq!(moved.outcome, Outcome::Pass);
    let d = moved.details.activesync.unwrap();
    assert_eq!(d.redirect_site.as_ref().map(|s| s.as_str()), Some("site2"));
    assert_eq!(d.redirect_location.as_deref(), Some(SITE2_EAS));
    // 451 to the host we asked: clients would loop.
    lab.exchange
        .set(Behaviour::Redirect451 {
            location: SITE1_EAS.into(),
        })
        .await
        .unwrap();
    observation(
        &mut lab.rx,
        "eas-auth",
        "cas1",
        failed_with(ErrorClass::RedirectLoop),
    )
    .await;
    // 451 to a host no site owns.
    lab.exchange
        .set(Behaviour::Redirect451 {
            location: "https://evil.example.net/Microsoft-Server-ActiveSync".into(),
        })
        .await
        .unwrap();
    observation(
        &mut lab.rx,
        "eas-auth",
        "cas1",
        failed_with(ErrorClass::RedirectUnknown),
    )
    .await;
    // 449: provisioning is configuration, not an outage.
    lab.exchange
        .set(Behaviour::ProvisioningRequired)
        .await
        .unwrap();
    let prov = observation(&mut lab.rx, "eas-auth", "cas1", |o| {
        o.http_status == Some(449)
    })
    .await;
    assert_eq!(prov.outcome, Outcome::Pass);
    assert!(prov.details.note.unwrap().contains("provisioning"));
    // 403: the test account is not enabled.
    lab.exchange.set(Behaviour::Forbidden).await.unwrap();
    let forbidden = observation(
        &mut lab.rx,
        "eas-auth",
        "cas1",
        failed_with(ErrorClass::HttpStatus),
    )
    .await;
    assert!(forbidden.error.unwrap().contains("not enabled"));
    // 503 with Retry-After: throttled, and the header is kept.
    lab.exchange
        .set(Behaviour::Throttled {
            retry_after: "30".into(),
        })
        .await
        .unwrap();
    let throttled = observation(
        &mut lab.rx,
        "eas-auth",
        "cas1",
        failed_with(ErrorClass::Throttled),
    )
    .await;
    assert_eq!(
        throttled.details.activesync.unwrap().retry_after.as_deref(),
        Some("30")
    );
    // Anonymous probes still see a live service throughout.
    let anon = observation(&mut lab.rx, "eas", "cas1", |_| true).await;
    assert_eq!(anon.outcome, Outcome::Pass);
    lab.agent.stop().await;
}

#[tokio::test]
async fn wrong_test_password_fails_and_is_never_published() {
    let checks = r#"
[[checks]]
name = "eas-badpw"
kind = "activesync"
site = "site1"
ca_file = "@CA@"
username = "CONTOSO\\svc-probe"
password = { file = "@PW@.wrong" }
"#;
    let mut lab = lab(&["mail-site1.example.com"], 90, checks).await;
    let bad = observation(&mut lab.rx, "eas-badpw", "cas1", |_| true).await;
    assert_eq!((bad.outcome, bad.http_status), (Outcome::Fail, Some(401)));
    assert!(bad.error.as_deref().unwrap().contains("rejected"));
    let json = serde_json::to_string(&bad).unwrap();
    assert!(
        !json.contains("not-the-password-xyz"),
        "the password leaked into an event"
    );
    lab.agent.stop().await;
}

#[tokio::test]
async fn generic_http_checks_match_status_and_body_and_untrusted_certificates_fail_as_tls() {
    let checks = r#"
[[checks]]
name = "root-redirect"
kind = "http"
site = "site1"
ca_file = "@CA@"
path = "/"
expect_status = [302]

[[checks]]
name = "body-match"
kind = "http"
site = "site1"
ca_file = "@CA@"
path = "/owa/healthcheck.htm"
body_contains = "EXCH-SVR-9"

[[checks]]
name = "untrusted"
kind = "exchange_healthcheck"
site = "site1"
"#;
    let mut lab = lab(&["mail-site1.example.com"], 90, checks).await;
    let redirect = observation(&mut lab.rx, "root-redirect", "cas1", |_| true).await;
    assert_eq!(
        (redirect.outcome, redirect.http_status),
        (Outcome::Pass, Some(302)),
        "{redirect:?}"
    );
    let body = observation(&mut lab.rx, "body-match", "cas1", |_| true).await;
    assert_eq!(body.error_class, Some(ErrorClass::Body));
    let untrusted = observation(&mut lab.rx, "untrusted", "cas1", |_| true).await;
    assert_eq!(
        untrusted.error_class,
        Some(ErrorClass::Tls),
        "{untrusted:?}"
    );
    lab.agent.stop().await;
}
