//! The agent binary as an admin meets it: `validate`, `probe-once`, and every example config.

use std::process::Command;

use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::workspace_binary as binary;

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn validate_accepts_every_example_and_exits_2_with_file_line_key_on_a_typo() {
    let agent = binary("sitewarden-agent");
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bin = if name.starts_with("agent-") {
            agent.clone()
        } else if name.starts_with("controller") {
            binary("sitewarden-controller")
        } else {
            panic!(
                "examples/{name}: no test knows how to load it; name it agent-*.toml or controller*.toml"
            );
        };
        seen += 1;
        let out = Command::new(&bin)
            .args(["validate", "--config"])
            .arg(&path)
            .env("SITEWARDEN_NATS_PASSWORD", "example-only")
            .env("SITEWARDEN_API_TOKEN", "example-only-api-token")
            .env(
                "SITEWARDEN_ALERT_WEBHOOK",
                "https://hooks.example.invalid/example-only",
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(seen >= 4, "examples found: {seen}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(examples().join("agent-site1.toml"))
        .unwrap()
        .replace("interval = \"5s\"", "interval = \"0s\"");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(&agent)
        .args(["validate", "--config"])
        .arg(&bad)
        .env("SITEWARDEN_NATS_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.toml line ")
            && err.contains("`checks[3].interval`")
            && err.contains("at least 500ms"),
        "{err}"
    );
}

#[test]
fn run_refuses_an_invalid_config_with_exit_2_and_probes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("agent.toml");
    std::fs::write(&bad, "[agent]\nid = \"a.b\"\nsite = \"site1\"\n").unwrap();
    let out = Command::new(binary("sitewarden-agent"))
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`agent.id`"));
}

#[tokio::test]
async fn probe_once_prints_a_table_and_exits_1_when_a_check_fails() {
    let cas = ExchangeServer::start(ExchangeOptions::new("EXCH-SVR-1.CONTOSO.LOCAL"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[agent]
id = "site1-agent1"
site = "site1"

[[sites]]
name = "site1"
activesync_url = "http://mail-site1.example.com/Microsoft-Server-ActiveSync"
servers = [{{ name = "cas1", address = "{}" }}]

[[checks]]
name = "owa"
kind = "exchange_healthcheck"
site = "site1"
scheme = "http"

[[checks]]
name = "eas"
kind = "activesync"
site = "site1"
scheme = "http"
"#,
            cas.addr()
        ),
    )
    .unwrap();
    let run = |cfg: std::path::PathBuf| async move {
        let agent = binary("sitewarden-agent");
        tokio::task::spawn_blocking(move || {
            Command::new(agent)
                .args(["probe-once", "--config"])
                .arg(cfg)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let healthy = run(cfg.clone()).await;
    let table = String::from_utf8_lossy(&healthy.stdout).to_string();
    assert!(healthy.status.success(), "{table}");
    assert!(
        table.contains("CHECK") && table.contains("owa") && table.contains("PASS"),
        "{table}"
    );
    assert!(
        table.contains("backend EXCH-SVR-1.CONTOSO.LOCAL"),
        "{table}"
    );

    cas.set(Behaviour::Error500).await.unwrap();
    let failing = run(cfg).await;
    let table = String::from_utf8_lossy(&failing.stdout).to_string();
    assert_eq!(failing.status.code(), Some(1), "{table}");
    assert!(
        table.contains("FAIL") && table.contains("HTTP 500"),
        "{table}"
    );
}
