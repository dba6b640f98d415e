//! Configuration shared by the lab, the demo and the controller tests: the brief's two-site
//! layout with a witness, as the decision part of a controller's TOML.

/// `[policy]` (with `policy` as its body), the sites, the three agents and one namespace `name`
/// with the round-robin / site1 / site2 candidates.
pub fn two_site_decisions(policy: &str, name: &str) -> String {
    format!(
        r#"
[policy]
{policy}

[[sites]]
name = "site1"
servers = ["cas1", "cas2"]

[[sites]]
name = "site2"
servers = ["cas3", "cas4"]

[[sites]]
name = "witness"

[[agents]]
name = "site1-agent1"
site = "site1"

[[agents]]
name = "site2-agent1"
site = "site2"

[[agents]]
name = "witness-agent1"
site = "witness"

[[namespaces]]
name = "{name}"
ttl = "60s"
candidates = [
  {{ target = "mail-rr.example.com", requires = ["site1", "site2"] }},
  {{ target = "mail-site1.example.com", requires = ["site1"] }},
  {{ target = "mail-site2.example.com", requires = ["site2"] }},
]
"#
    )
}

/// The fast policy of the controller tests: 500 ms probes, fall 3, rise 3, short windows.
pub const TEST_POLICY: &str = "fall = 3\nrise = 3\ninterval = \"500ms\"\nmin_observers = 2\nhold_down = \"5s\"\nfailback_after = \"30s\"";

/// An agent of the two-site lab (`id` in `site`) that probes site1's cas1/cas2 and site2's
/// cas3/cas4 (`cas`, in that order) over plain-HTTP ActiveSync every `interval`.
/// `servers` is the TOML list of NATS URLs (`"nats://…", "nats://…"`); `agent_extra` adds lines
/// to `[agent]` (e.g. `heartbeat_interval = "500ms"`). Append further tables to the result.
pub fn two_site_agent(
    id: &str,
    site: &str,
    servers: &str,
    cas: &[std::net::SocketAddr; 4],
    interval: &str,
    timeout: &str,
    agent_extra: &str,
) -> String {
    two_site_agent_with_nats(
        id,
        site,
        &format!("servers = [{servers}]"),
        cas,
        interval,
        timeout,
        agent_extra,
    )
}

/// [`two_site_agent`] with a whole `[nats]` table body (`nats`: servers, credentials, TLS,
/// inbox prefix), for labs that run the shipped permissions.
pub fn two_site_agent_with_nats(
    id: &str,
    site: &str,
    nats: &str,
    cas: &[std::net::SocketAddr; 4],
    interval: &str,
    timeout: &str,
    agent_extra: &str,
) -> String {
    format!(
        r#"
[agent]
id = "{id}"
site = "{site}"
{agent_extra}

[nats]
{nats}

[defaults]
interval = "{interval}"
timeout = "{timeout}"

[[sites]]
name = "site1"
activesync_url = "http://mail-site1.example.com/Microsoft-Server-ActiveSync"
servers = [{{ name = "cas1", address = "{a0}" }}, {{ name = "cas2", address = "{a1}" }}]

[[sites]]
name = "site2"
activesync_url = "http://mail-site2.example.com/Microsoft-Server-ActiveSync"
servers = [{{ name = "cas3", address = "{a2}" }}, {{ name = "cas4", address = "{a3}" }}]

[[checks]]
name = "eas"
kind = "activesync"
site = "site1"
scheme = "http"

[[checks]]
name = "eas-x"
kind = "activesync"
site = "site2"
scheme = "http"
"#,
        a0 = cas[0],
        a1 = cas[1],
        a2 = cas[2],
        a3 = cas[3],
    )
}

/// The addresses of four servers, in order, for [`two_site_agent`].
pub fn four(addrs: impl IntoIterator<Item = std::net::SocketAddr>) -> [std::net::SocketAddr; 4] {
    let v: Vec<std::net::SocketAddr> = addrs.into_iter().collect();
    assert!(
        v.len() >= 4,
        "the two-site lab has four client-access servers"
    );
    [v[0], v[1], v[2], v[3]]
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
