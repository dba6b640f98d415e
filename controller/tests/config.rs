//! The controller configuration loader: the shipped example loads, and nonsense is refused with
//! the file, line and key named.

use std::path::Path;
use std::time::Duration;

use sitewarden_controller::config::{ControllerConfig, FailbackMode, Routing};

fn example() -> ControllerConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/controller.toml");
    match ControllerConfig::load_file(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_example_loads_with_the_briefs_two_site_layout() {
    let c = example();
    assert_eq!(c.sites.len(), 3);
    assert!(!c.sites["witness"].has_client_access());
    assert_eq!(c.agents.len(), 3);
    assert_eq!(c.policy.fall, 4);
    assert_eq!(c.policy.rise, 10);
    assert_eq!(c.policy.stale_after, Duration::from_secs(3));
    assert_eq!(c.policy.failback, FailbackMode::Auto);
    let mail = &c.namespaces["mail.example.com"];
    assert_eq!(mail.ttl, Duration::from_secs(60));
    let Routing::Candidates(list) = &mail.routing else {
        panic!("mail is ordered")
    };
    let targets: Vec<&str> = list.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "mail-rr.example.com",
            "mail-site1.example.com",
            "mail-site2.example.com"
        ]
    );
    assert_eq!(list[0].requires.len(), 2);
    assert!(
        matches!(&c.namespaces["owa.example.com"].routing, Routing::FollowMailbox { dag, .. } if dag == "DAG1")
    );
    assert_eq!(c.dags["DAG1"].servers["ex03"].as_str(), "site2");
}

#[test]
fn defaults_apply_when_policy_is_omitted() {
    let c = ControllerConfig::from_toml(
        "c.toml",
        "[[sites]]\nname = \"a\"\nservers = [\"s1\"]\n[[agents]]\nname = \"x\"\nsite = \"a\"\n[[agents]]\nname = \"y\"\nsite = \"a\"\n[[namespaces]]\nname = \"m.example.com\"\ncandidates = [{ target = \"a.example.com\", requires = [\"a\"] }]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.policy.min_observers, 2);
    assert_eq!(c.policy.hold_down, Duration::from_secs(300));
    assert_eq!(c.policy.failback_after, Duration::from_secs(600));
    // Interval 1 s, fall 4, rise 10: Down about 4 s after a site dies, a 3 s blip sat out.
    assert_eq!(c.policy.interval, Duration::from_secs(1));
    assert_eq!(c.policy.fall, 4);
    assert_eq!(c.policy.rise, 10);
    assert_eq!(c.policy.stale_after, Duration::from_secs(3));
    assert!(c.sites["a"].protocols.contains("activesync"));
}

const BASE: &str = r#"[policy]
min_observers = 1

[[sites]]
name = "site1"
servers = ["cas1"]

[[sites]]
name = "witness"

[[agents]]
name = "agent1"
site = "site1"
"#;

fn refused(extra: &str) -> String {
    match ControllerConfig::from_toml("controller.toml", &format!("{BASE}{extra}")) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_namespace_naming_an_unknown_site_is_refused_with_its_line() {
    let err = refused(
        "\n[[namespaces]]\nname = \"mail.example.com\"\ncandidates = [\n  { target = \"a.example.com\", requires = [\"site9\"] },\n]\n",
    );
    assert!(err.starts_with("config controller.toml line 17"), "{err}");
    assert!(
        err.contains("namespaces[0].candidates[0].requires[0]"),
        "{err}"
    );
    assert!(err.contains("unknown site \"site9\""), "{err}");
}

#[test]
fn a_namespace_without_candidates_is_refused() {
    let err = refused("\n[[namespaces]]\nname = \"mail.example.com\"\ncandidates = []\n");
    assert!(
        err.contains("`namespaces[0].candidates`: is empty"),
        "{err}"
    );
    let err = refused("\n[[namespaces]]\nname = \"mail.example.com\"\n");
    assert!(err.contains("has no candidates"), "{err}");
}

#[test]
fn a_witness_cannot_be_required() {
    let err = refused(
        "\n[[namespaces]]\nname = \"m.example.com\"\ncandidates = [{ target = \"a.example.com\", requires = [\"witness\"] }]\n",
    );
    assert!(err.contains("witness"), "{err}");
}

#[test]
fn nonsensical_hold_down_and_failback_are_refused() {
    let ns = "\n[[namespaces]]\nname = \"m.example.com\"\ncandidates = [{ target = \"a.example.com\", requires = [\"site1\"] }]\n";
    let err = refused(&format!("{ns}hold_down = \"0s\"\n"));
    assert!(err.contains("hold_down"), "{err}");
    let err = refused(&format!(
        "{ns}failback_after = \"1m\"\nhold_down = \"5m\"\n"
    ));
    assert!(err.contains("`namespaces[0].failback_after`"), "{err}");
    assert!(err.contains("hold_down is 5m"), "{err}");
    let err = ControllerConfig::from_toml(
        "c.toml",
        &BASE.replace(
            "min_observers = 1",
            "min_observers = 1\nhold_down = \"500ms\"",
        ),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("`policy.hold_down`"), "{err}");
}

#[test]
fn more_min_observers_than_agents_is_refused() {
    let err = ControllerConfig::from_toml(
        "c.toml",
        &BASE.replace("min_observers = 1", "min_observers = 3"),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("min_observers"), "{err}");
}

#[test]
fn follow_needs_a_known_dag_and_targets() {
    let err = refused(
        "\n[[namespaces]]\nname = \"owa.example.com\"\nfollow = \"mailbox\"\ndag = \"DAG9\"\ntargets = { site1 = \"owa1.example.com\" }\n",
    );
    assert!(err.contains("unknown DAG \"DAG9\""), "{err}");
    let err = refused(
        "\n[[dags]]\nname = \"DAG1\"\nservers = { EX01 = \"site1\" }\n[[namespaces]]\nname = \"owa.example.com\"\nfollow = \"mailbox\"\ndag = \"DAG1\"\n",
    );
    assert!(err.contains("needs `targets"), "{err}");
}

#[test]
fn unknown_keys_and_bad_ids_are_refused() {
    let err = refused("\n[[namespaces]]\nname = \"m.example.com\"\ncandidate = []\n");
    assert!(err.contains("unknown field `candidate`"), "{err}");
    let err = ControllerConfig::from_toml(
        "c.toml",
        &BASE.replace("name = \"agent1\"", "name = \"agent.1\""),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("agents[0].name"), "{err}");
}

#[test]
fn on_drift_accepts_observe_and_enforce_and_refuses_anything_else() {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/controller.toml"
    ))
    .unwrap();
    let with = |line: &str| {
        base.replacen(
            "name = \"mail.example.com\"\n",
            &format!("name = \"mail.example.com\"\n{line}\n"),
            1,
        )
    };
    assert!(ControllerConfig::from_toml("c.toml", &with("on_drift = \"enforce\"")).is_ok());
    let err = ControllerConfig::from_toml("c.toml", &with("on_drift = \"fight\"")).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("namespaces[0].on_drift"), "{err}");
    let follow = base.replacen(
        "follow = \"mailbox\"\n",
        "follow = \"mailbox\"\non_drift = \"enforce\"\n",
        1,
    );
    let err = ControllerConfig::from_toml("c.toml", &follow).unwrap_err();
    assert!(err.message.contains("only observes drift"), "{err}");
}

#[test]
fn a_js_api_prefix_is_refused_for_a_controller_with_the_key_and_why() {
    let text = "[controller]\nid = \"c1\"\n\n[provider]\nkind = \"memory\"\n\n[nats]\n\
                js_api_prefix = \"$JS.sitewarden.API\"\n";
    let err = sitewarden_controller::runtime::settings::RuntimeSettings::load(
        &sitewarden_shared::config::Source::inline("controller.toml", text),
    )
    .expect_err("refused")
    .to_string();
    assert!(err.contains("nats.js_api_prefix"), "{err}");
    assert!(err.contains("for agents"), "{err}");
}

#[test]
fn the_default_ttl_is_10s_with_the_builtin_dns_and_60s_elsewhere() {
    let ns = "\n[[namespaces]]\nname = \"mail.example.com\"\ncandidates = [\n  { target = \"a.example.com\", requires = [\"site1\"] },\n]\n";
    let ttl = |extra: &str| {
        let c = ControllerConfig::from_toml("controller.toml", &format!("{BASE}{ns}{extra}"))
            .unwrap_or_else(|e| panic!("{e}"));
        c.namespaces["mail.example.com"].ttl
    };
    assert_eq!(ttl(""), Duration::from_secs(60));
    assert_eq!(
        ttl("\n[provider]\nkind = \"cloudflare\"\n"),
        Duration::from_secs(60)
    );
    assert_eq!(
        ttl("\n[provider]\nkind = \"builtin\"\nzone = \"failover.example.com\"\n"),
        Duration::from_secs(10)
    );
    // An explicit TTL wins either way.
    let explicit = format!(
        "{}\n[provider]\nkind = \"builtin\"\n",
        ns.replace("name = ", "ttl = \"30s\"\nname = ")
    );
    let c = ControllerConfig::from_toml("controller.toml", &format!("{BASE}{explicit}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.namespaces["mail.example.com"].ttl,
        Duration::from_secs(30)
    );
}

/// `validate` by hand reads the secrets from controller.env beside the config, as systemd
/// would from the unit's EnvironmentFile, and never prints a value of it.
#[test]
fn validate_reads_the_env_file_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/controller.toml"),
        &config,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sitewarden-controller"))
            .arg("validate")
            .arg("--config")
            .arg(&config)
            .args(extra)
            .env_remove("SITEWARDEN_NATS_PASSWORD")
            .output()
            .unwrap()
    };
    let without = run(&[]);
    assert_eq!(without.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without.stderr).contains("SITEWARDEN_NATS_PASSWORD"));
    std::fs::write(
        dir.path().join("controller.env"),
        "# as install.md writes it\nSITEWARDEN_NATS_PASSWORD=pw-one-two-three-four\n\
         CLOUDFLARE_API_TOKEN=cf-token-one-two-three\n\
         SITEWARDEN_API_TOKEN=\"api-token-one-two-three-four\"\n\
         SITEWARDEN_ALERT_WEBHOOK=https://hooks.example.com/x\n",
    )
    .unwrap();
    let with = run(&[]);
    let out = String::from_utf8_lossy(&with.stdout);
    assert_eq!(
        with.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(out.contains("valid"), "{out}");
    let bad = dir.path().join("bad.env");
    std::fs::write(&bad, "this-line-holds-a-secret\n").unwrap();
    let refused = run(&["--env-file", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        err.contains("line 1") && !err.contains("holds-a-secret"),
        "{err}"
    );
}

#[test]
fn metrics_per_name_defaults_to_on_and_can_be_turned_off() {
    use sitewarden_controller::runtime::settings::RuntimeSettings;
    let load = |text: &str| {
        RuntimeSettings::load(&sitewarden_shared::config::Source::inline(
            "controller.toml",
            format!("[controller]\nid = \"c1\"\n\n[provider]\nkind = \"memory\"\n{text}"),
        ))
    };
    let per_name = |text: &str| {
        load(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .metrics
            .per_name
    };
    assert!(per_name(""));
    assert!(per_name("\n[metrics]\n"));
    assert!(!per_name("\n[metrics]\nper_name = false\n"));
    let err = load("\n[metrics]\nper_namespace = false\n")
        .expect_err("an unknown key is refused")
        .to_string();
    assert!(err.contains("per_namespace"), "{err}");
}
