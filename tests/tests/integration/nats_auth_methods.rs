//! Every way sitewarden can authenticate to NATS, through `NatsSettings::connect` against a real
//! nats-server: user/password, token, NKey, a creds file (operator, account and user JWTs made
//! offline with the nkeys crate) and TLS with a test CA and a client certificate. A refused
//! credential or a failed handshake comes back as an error that names the servers and the
//! credential and contains no secret.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use sitewarden_shared::config::{KeyPath, Source};
use sitewarden_shared::nats::{NatsConfig, NatsError, NatsSettings};
use sitewarden_tests::nats_server::{NatsServer, NodeOptions};

/// Loads a `[nats]` section as the agent and controller do.
fn settings(nats_toml: &str) -> NatsSettings {
    #[derive(serde::Deserialize)]
    struct Doc {
        nats: NatsConfig,
    }
    let src = Source::inline("test.toml", format!("[nats]\n{nats_toml}"));
    let doc: Doc = src.parse().unwrap();
    doc.nats
        .validate(&src, &KeyPath::root().key("nats"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A standalone node with `auth` added to its config.
async fn server(auth: &str, files: Vec<(String, Vec<u8>)>) -> NatsServer {
    NatsServer::start_with(NodeOptions {
        extra_config: auth.into(),
        files,
        ..NodeOptions::default()
    })
    .await
    .unwrap()
}

/// Writes `secret` to a file in `dir` and returns the TOML `{ file = … }` for it.
fn secret_file(dir: &Path, name: &str, secret: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, secret).unwrap();
    format!("{{ file = {:?} }}", p.to_str().unwrap())
}

/// Connects and proves the connection works with a request-free round trip.
async fn round_trip(settings: &NatsSettings) {
    let client = settings
        .connect("auth method test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client.flush().await.unwrap();
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
}

/// The error of a connect that must fail, checked for leaked secrets in Display and Debug.
async fn refused(settings: &NatsSettings, secrets: &[&str]) -> NatsError {
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        settings.connect("auth method test"),
    )
    .await
    .expect("the refusal is reported at once, not retried forever")
    .expect_err("the server must refuse");
    for s in secrets {
        assert!(!e.to_string().contains(s), "secret in error: {e}");
        assert!(!format!("{e:?}").contains(s), "secret in error: {e:?}");
    }
    e
}

#[tokio::test]
async fn user_and_password_connect_and_a_wrong_password_is_named_without_secrets() {
    let nats = server(
        "authorization { user: \"site1-agent1\", password: \"right-Pw-83hd\" }",
        vec![],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let right = secret_file(dir.path(), "right", "right-Pw-83hd");
    let wrong = secret_file(dir.path(), "wrong", "wrong-Pw-19xk");
    round_trip(&settings(&format!(
        "servers = [\"{}\"]\nuser = \"site1-agent1\"\npassword = {right}",
        nats.url()
    )))
    .await;

    let e = refused(
        &settings(&format!(
            "servers = [\"{}\"]\nuser = \"site1-agent1\"\npassword = {wrong}",
            nats.url()
        )),
        &["right-Pw-83hd", "wrong-Pw-19xk"],
    )
    .await;
    assert!(matches!(e, NatsError::Refused { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("user \"site1-agent1\" (user/password)"),
        "{text}"
    );
    assert!(text.contains("authorization violation"), "{text}");
    assert!(text.contains(&nats.url()), "{text}");

    // No credentials at all against a server that wants them.
    let e = refused(&settings(&format!("servers = [\"{}\"]", nats.url())), &[]).await;
    assert!(e.to_string().contains("anonymous"), "{e}");
}

#[tokio::test]
async fn a_token_connects_and_a_wrong_token_is_not_shown() {
    let nats = server("authorization { token: \"tok-Qz81-right\" }", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let right = secret_file(dir.path(), "right", "tok-Qz81-right");
    let wrong = secret_file(dir.path(), "wrong", "tok-Qz81-wrong");
    round_trip(&settings(&format!(
        "servers = [\"{}\"]\ntoken = {right}",
        nats.url()
    )))
    .await;
    let e = refused(
        &settings(&format!("servers = [\"{}\"]\ntoken = {wrong}", nats.url())),
        &["tok-Qz81"],
    )
    .await;
    assert!(e.to_string().contains("token auth"), "{e}");
}

#[tokio::test]
async fn an_nkey_seed_connects_and_a_foreign_key_is_named_by_its_public_key() {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let nats = server(
        &format!(
            "authorization {{ users: [ {{ nkey: \"{}\" }} ] }}",
            user.public_key()
        ),
        vec![],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let seed = user.seed().unwrap();
    let right = secret_file(dir.path(), "right.nk", &seed);
    round_trip(&settings(&format!(
        "servers = [\"{}\"]\nnkey_seed = {right}",
        nats.url()
    )))
    .await;
    let other_seed = stranger.seed().unwrap();
    let wrong = secret_file(dir.path(), "wrong.nk", &other_seed);
    let e = refused(
        &settings(&format!(
            "servers = [\"{}\"]\nnkey_seed = {wrong}",
            nats.url()
        )),
        &[&seed, &other_seed],
    )
    .await;
    assert!(e.to_string().contains(&stranger.public_key()), "{e}");
}

/// A JWT as nsc writes it: `ed25519-nkey` header, claims, signature by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("{name}-{iat}"),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = issuer.sign(format!("{header}.{body}").as_bytes()).unwrap();
    format!("{header}.{body}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[tokio::test]
async fn a_creds_file_connects_to_a_server_in_operator_mode() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "sitewarden-test",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "SITEWARDEN",
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    // JetStream in operator mode needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "site1-agent1",
        serde_json::json!({
            "type": "user", "version": 2, "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1
        }),
    );
    let nats = server(
        &format!(
            "operator: \"{operator_jwt}\"\nsystem_account: \"{sys}\"\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}",
            acc = account.public_key(),
            sys = system.public_key(),
        ),
        vec![],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let seed = user.seed().unwrap();
    let creds = dir.path().join("site1-agent1.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )
    .unwrap();
    round_trip(&settings(&format!(
        "servers = [\"{}\"]\ncreds_file = {:?}",
        nats.url(),
        creds.to_str().unwrap()
    )))
    .await;

    // A user signed by an account the server does not know is refused, and named by file.
    let rogue = nkeys::KeyPair::new_account();
    let rogue_jwt = jwt(
        &rogue,
        &user.public_key(),
        "site1-agent1",
        serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {}}),
    );
    let rogue_creds = dir.path().join("rogue.creds");
    std::fs::write(
        &rogue_creds,
        std::fs::read_to_string(&creds)
            .unwrap()
            .replace(&user_jwt, &rogue_jwt),
    )
    .unwrap();
    let e = refused(
        &settings(&format!(
            "servers = [\"{}\"]\ncreds_file = {:?}",
            nats.url(),
            rogue_creds.to_str().unwrap()
        )),
        &[&seed],
    )
    .await;
    assert!(e.to_string().contains("rogue.creds"), "{e}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "sitewarden NATS test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("nats-site1", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf("site1-agent1", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let pki = pki();
    let nats = server(
        "tls {\n  cert_file: \"server.pem\"\n  key_file: \"server-key.pem\"\n  \
         ca_file: \"ca.pem\"\n  verify: true\n  timeout: 2\n}",
        vec![
            ("server.pem".into(), pki.server_cert.clone().into_bytes()),
            ("server-key.pem".into(), pki.server_key.clone().into_bytes()),
            ("ca.pem".into(), pki.ca.clone().into_bytes()),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let ca = write("ca.pem", &pki.ca);
    let cert = write("client.pem", &pki.client_cert);
    let key = write("client-key.pem", &pki.client_key);
    let tls_url = format!("tls://127.0.0.1:{}", nats.port());

    // tls:// URL, our CA, our client certificate.
    round_trip(&settings(&format!(
        "servers = [\"{tls_url}\"]\n[nats.tls]\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}"
    )))
    .await;
    // nats:// URL upgraded because TLS is required.
    round_trip(&settings(&format!(
        "servers = [\"{}\"]\n[nats.tls]\nrequired = true\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}",
        nats.url()
    )))
    .await;

    // A server certificate from another CA: the handshake fails and says so.
    let stranger = write("other-ca.pem", &pki_ca_only());
    let e = refused(
        &settings(&format!(
            "servers = [\"{tls_url}\"]\n[nats.tls]\nca_file = {stranger:?}\ncert_file = {cert:?}\nkey_file = {key:?}"
        )),
        &[],
    )
    .await;
    assert!(matches!(e, NatsError::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("ca_file"), "{e}");

    // No client certificate, but the server verifies clients: refused, and said to be TLS.
    let e = refused(
        &settings(&format!(
            "servers = [\"{tls_url}\"]\n[nats.tls]\nca_file = {ca:?}"
        )),
        &[],
    )
    .await;
    assert!(matches!(e, NatsError::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("fatal alert"), "{e}");

    // A key file that went missing after the config was loaded is named by path.
    let gone = settings(&format!(
        "servers = [\"{tls_url}\"]\n[nats.tls]\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}"
    ));
    std::fs::remove_file(&key).unwrap();
    let e = refused(&gone, &[&pki.client_key]).await;
    assert!(
        matches!(
            e,
            NatsError::File {
                key: "key_file",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("client-key.pem"), "{e}");
}

/// The PEM of a CA that signed nothing here.
fn pki_ca_only() -> String {
    pki().ca
}
