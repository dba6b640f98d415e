//! No secret the controller is given — DNS provider token, TSIG key, NATS password, API tokens,
//! Slack signing secret, edge webhook secret — shows in `Debug` output of its settings or in the
//! error messages of a configuration that is wrong around them.

use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_shared::config::Source;

const CLOUDFLARE: &str = "cf-secret-token-91d0c2aa7e";
const TSIG: &str = "c2l0ZXdhcmRlbi10c2lnLXNlY3JldC0xMjM0NTY3ODkw";
const NATS_PASSWORD: &str = "nats-password-55e1f0b7c3";
const ADMIN: &str = "api-admin-token-0b7a4c19e2d8";
const SLACK: &str = "slack-signing-secret-3f8e1d";
const EDGE: &str = "edge-webhook-secret-7c2a9e5b";

const ALL: [&str; 6] = [CLOUDFLARE, TSIG, NATS_PASSWORD, ADMIN, SLACK, EDGE];

fn write(dir: &std::path::Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    p.display().to_string()
}

fn config(dir: &std::path::Path, provider: &str) -> String {
    format!(
        r#"
[controller]
id = "ctl-a"

[nats]
servers = ["nats://127.0.0.1:4222"]
user = "controller-site1"
password = {{ file = "{nats}" }}

{provider}

[api]
tokens = [{{ name = "alice", role = "admin", token = {{ file = "{admin}" }} }}]

[slack]
signing_secret = {{ file = "{slack}" }}
allowed_users = ["U0OPS1"]

[[edge.webhooks]]
name = "haproxy-site1"
url = "http://127.0.0.1:9/edge"
secret = {{ file = "{edge}" }}

{decisions}"#,
        nats = write(dir, "nats.pw", NATS_PASSWORD),
        admin = write(dir, "admin.token", ADMIN),
        slack = write(dir, "slack.secret", SLACK),
        edge = write(dir, "edge.secret", EDGE),
        decisions = DECISIONS,
    )
}

const DECISIONS: &str = r#"
[[sites]]
name = "site1"
servers = ["cas1"]

[[sites]]
name = "site2"
servers = ["cas2"]

[[agents]]
name = "a1"
site = "site1"

[[agents]]
name = "a2"
site = "site2"

[[namespaces]]
name = "mail.example.com"
candidates = [
  { target = "mail-site1.example.com", requires = ["site1"] },
  { target = "mail-site2.example.com", requires = ["site2"] },
]
"#;

fn assert_clean(what: &str, text: &str) {
    for s in ALL {
        assert!(!text.contains(s), "{what} shows a secret: {text}");
    }
}

#[test]
fn settings_debug_shows_no_secret_for_any_provider() {
    let dir = tempfile::tempdir().unwrap();
    let cf = write(dir.path(), "cf.token", CLOUDFLARE);
    let tsig = write(dir.path(), "tsig.key", TSIG);
    for provider in [
        format!(
            "[provider]\nkind = \"cloudflare\"\nzone_id = \"023e105f4ecef8ad9ca31a8372d0c353\"\napi_token = {{ file = \"{cf}\" }}"
        ),
        format!(
            "[provider]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nzone = \"example.com\"\ntsig_key_name = \"sitewarden\"\ntsig_secret = {{ file = \"{tsig}\" }}"
        ),
    ] {
        let src = Source::inline("controller.toml", config(dir.path(), &provider));
        let settings = RuntimeSettings::load(&src).unwrap_or_else(|e| panic!("{e}"));
        assert_clean("RuntimeSettings Debug", &format!("{settings:?}"));
        assert_clean("RuntimeSettings pretty Debug", &format!("{settings:#?}"));
    }
}

#[test]
fn errors_around_secrets_name_the_key_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    // A too-short API token: the error names the key and what to do, never the value.
    let short = write(dir.path(), "short.token", "tiny-tok");
    let text = config(dir.path(), "[provider]\nkind = \"memory\"").replace(
        &dir.path().join("admin.token").display().to_string(),
        &short,
    );
    let err = RuntimeSettings::load(&Source::inline("controller.toml", text))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("api.tokens[0].token") || err.contains("token"),
        "{err}"
    );
    assert!(!err.contains("tiny-tok"), "{err}");
    // A Slack allow-list typo next to the secret.
    let text = config(dir.path(), "[provider]\nkind = \"memory\"").replace("U0OPS1", "not a user");
    let err = RuntimeSettings::load(&Source::inline("controller.toml", text))
        .unwrap_err()
        .to_string();
    assert!(err.contains("allowed_users"), "{err}");
    assert_clean("error", &err);
}
