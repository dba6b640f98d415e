//! The shipped bus permissions, `deploy/nats/sitewarden-auth.conf`, as the tests run them: the
//! users it names with the passwords the tests give them, the directory to include it from, and
//! each user's `[nats]` table as the agent and the controller load it.

use std::path::Path;

use serde::Serialize;
use sitewarden_shared::config::{KeyPath, Source};
use sitewarden_shared::nats::{NatsConfig, NatsSettings};

use crate::config_toml::{NatsTable, SecretFile};

/// The JetStream API prefix the agents' account imports (`[nats] js_api_prefix` of an agent).
pub const AGENT_JS_API_PREFIX: &str = "$JS.sitewarden.API";

/// Writes each shipped user's password to `{dir}/{user}.pass`, for [`nats_table`].
pub fn write_passwords(dir: &Path) {
    for (user, _, password, _) in SHIPPED_USERS {
        std::fs::write(dir.join(format!("{user}.pass")), password).unwrap();
    }
}

/// `[nats]` for `user` on the nodes at `urls`, its password read from `{secrets}/{user}.pass`
/// ([`write_passwords`]); an agent adds [`AGENT_JS_API_PREFIX`].
pub fn nats_table(urls: Vec<String>, user: &str, secrets: &Path) -> NatsTable {
    NatsTable {
        servers: urls,
        user: Some(user.into()),
        password: Some(SecretFile::at(secrets.join(format!("{user}.pass")))),
        ..NatsTable::default()
    }
}

/// `nats` validated as the agent and the controller load their `[nats]` table.
pub fn settings(nats: &NatsTable) -> NatsSettings {
    #[derive(Serialize)]
    struct Doc<'a> {
        nats: &'a NatsTable,
    }
    let text = toml::to_string(&Doc { nats }).unwrap();
    #[derive(serde::Deserialize)]
    struct Parsed {
        nats: NatsConfig,
    }
    let src = Source::inline("test.toml", text);
    let doc: Parsed = src.parse().unwrap();
    doc.nats
        .validate(&src, &KeyPath::root().key("nats"))
        .unwrap()
}

/// The users of the shipped `deploy/nats/sitewarden-auth.conf`: the environment variable holding
/// each one's bcrypt hash, the password the tests give them and its hash (cost 10, made with
/// `python3 -c 'import crypt; print(crypt.crypt(PW, "$2b$10$" + SALT))'`), as production
/// deploys them.
pub const SHIPPED_USERS: [(&str, &str, &str, &str); 5] = [
    (
        "controller-site1",
        "CONTROLLER_SITE1_PASSWORD",
        "ctl1-Vb7q2",
        "$2b$10$NU1vwQVkDm4Kj7cuIwKEoO3uY7xmLUBh9LFreCiT6/4nRGSMUlOam",
    ),
    (
        "controller-site2",
        "CONTROLLER_SITE2_PASSWORD",
        "ctl2-Pz4k9",
        "$2b$10$FWA0//fxAa48SDmVgiQwlusSpeRkml9xvj9Z7i5BoyuQSelmqeVYC",
    ),
    (
        "site1-agent1",
        "SITE1_AGENT1_PASSWORD",
        "a1-Hx8m3w",
        "$2b$10$7JNbbJYl8frxTbW.lHDkpuOGkKwhmi3P2ri8vd3ys219qqfMhcRvC",
    ),
    (
        "site2-agent1",
        "SITE2_AGENT1_PASSWORD",
        "a2-Lq5t7e",
        "$2b$10$EtnBHr87suQPxsmbCa9OX.TNASUG1kctev4K8Cu2FTT/MarRTR4WC",
    ),
    (
        "witness-agent1",
        "WITNESS_AGENT1_PASSWORD",
        "w1-Rn2c6y",
        "$2b$10$vKxK4c064Jj5gjDouRSgaevgt8aXoMtYtX1yMyr7frSAwSQ3DjTnC",
    ),
];

/// The shipped NATS configuration directory, `deploy/nats`, resolved.
pub fn deploy_nats_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/nats")
        .canonicalize()
        .expect("deploy/nats exists")
}
