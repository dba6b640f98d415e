//! The operator's metrics, validated by Prometheus's own linter: a real nats-server, three real
//! `sitewarden-agent` processes probing emulated Exchange sites, and a real
//! `sitewarden-controller` process writing through the Cloudflare emulator. Once the controller
//! has admitted events, judged site1 Up and called the DNS API, both `/metrics` pages pass
//! `promtool check metrics` without a single complaint, the names they expose are exactly
//! the ones `docs/metrics.md` documents, and each page names its build and reports a live
//! process (`build_info`, the unprefixed `process_*` families).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sitewarden_tests::cloudflare::CloudflareEmulator;
use sitewarden_tests::config_toml::{
    AgentToml, ControllerTable, ControllerToml, DbCopy, NatsTable, Provider, SecretFile,
};
use sitewarden_tests::exchange::{ExchangeOptions, ExchangeServer};
use sitewarden_tests::metrics_page::metric;
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::two_site::{self, TEST_POLICY};
use sitewarden_tests::wait_for;
use sitewarden_tests::{DEADLINE, free_addr, workspace_binary as binary};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

const NAME: &str = "mail.example.com";
const TOKEN: &str = "cf-metrics-token-5e1f";

/// A process killed on drop, with its log for failure messages.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(bin: &Path, config: &Path, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn agent_toml(
    id: &str,
    site: &str,
    listen: SocketAddr,
    nats: &str,
    cas: &[ExchangeServer],
) -> AgentToml {
    let mut toml = two_site::agent(
        id,
        site,
        NatsTable::servers([nats]),
        &two_site::four(cas.iter().map(ExchangeServer::addr)),
        Duration::from_millis(500),
        Duration::from_millis(400),
    );
    toml.agent.listen = Some(listen);
    toml.agent.heartbeat_interval = Some(Duration::from_millis(500));
    // One agent also runs a database-copy collector that fails (its outcome is counted).
    if id == "site1-agent1" {
        toml.dbcopy.push(DbCopy {
            name: "dag1".into(),
            dag: "DAG1".into(),
            command: vec!["false".into()],
            interval: Some(Duration::from_secs(1)),
            ..DbCopy::default()
        });
    }
    toml
}

fn controller_toml(
    listen: SocketAddr,
    nats: &str,
    zone: &str,
    token: &Path,
    api: &str,
) -> ControllerToml {
    ControllerToml {
        controller: ControllerTable {
            id: "ctl-metrics".into(),
            listen: listen.to_string(),
            tick: Some(Duration::from_millis(100)),
            ..ControllerTable::default()
        },
        nats: NatsTable::servers([nats]),
        provider: Provider::Cloudflare {
            zone_id: zone.into(),
            api_token: SecretFile::at(token),
            api_url: api.into(),
            request_timeout: None,
            retry_deadline: None,
        },
        decisions: two_site::decisions(Some(TEST_POLICY), NAME),
        ..ControllerToml::default()
    }
}

/// Documented label families this lab never gives a first series, and why.
const NOT_FED_HERE: &[(&str, &str)] = &[
    (
        "sitewarden_agent_cert_expiry_timestamp_seconds",
        "set by HTTPS probes only; the lab's Exchange servers speak HTTP",
    ),
    (
        "sitewarden_agent_edge_notices_total",
        "HAProxy adapter only (the `edge_haproxy` tests); this lab's agents steer no HAProxy",
    ),
    (
        "sitewarden_agent_edge_backend_updates_total",
        "HAProxy adapter only; see above",
    ),
    (
        "sitewarden_agent_edge_server_ready",
        "HAProxy adapter only; see above",
    ),
];

/// `GET /metrics` with an optional `Accept` header: (content type, body).
async fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut req = reqwest::Client::new().get(format!("http://{addr}/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (kind, resp.text().await.unwrap())
}

/// Runs `promtool check metrics` on `text`: (exit code, everything it printed).
async fn promtool(text: &str) -> (Option<i32>, String) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed; install it with `sudo apt-get install prometheus` \
             (or run scripts/install-deps)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// Sample names a classic exposition can contain, from its `# TYPE` lines (histograms expand to
/// `_bucket`, `_sum` and `_count`).
fn exposed_families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Metric names in the first column of `docs/metrics.md`'s tables that start with one of
/// `prefixes`.
fn documented(prefixes: &[&str]) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

/// The value of the series written exactly `series` (name and labels) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(key, _)| *key == series)
        .and_then(|(_, value)| value.parse().ok())
}

/// What is wrong with a page's build and process families: `{prefix}build_info` must name this
/// build's version with the value 1, and the `process_*` values must be those of a live process
/// (memory in use, started within the last day, threads, open files below the limit).
fn build_and_process_problems(who: &str, prefix: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let build = format!(
        "{prefix}build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    if sample(text, &build) != Some(1.0) {
        problems.push(format!("{who}: no `{build} 1`"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let value = |name: &str| sample(text, name).unwrap_or(f64::NAN);
    let resident = value("process_resident_memory_bytes");
    let open = value("process_open_fds");
    let started = value("process_start_time_seconds");
    for (sane, what) in [
        (resident > 0.0, "resident memory > 0"),
        (
            value("process_virtual_memory_bytes") >= resident,
            "virtual memory >= resident memory",
        ),
        (
            started > now - 86_400.0 && started <= now + 5.0,
            "started within the last day",
        ),
        (
            value("process_cpu_seconds_total") >= 0.0,
            "CPU seconds >= 0",
        ),
        (value("process_threads") >= 1.0, "at least one thread"),
        (
            open > 0.0 && open <= value("process_max_fds"),
            "0 < open files <= the limit",
        ),
    ] {
        if !sane {
            problems.push(format!("{who}: process metrics not sane: {what}"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_running_agent_and_controller_then_promtool_finds_nothing_to_complain_about() {
    let dir = tempfile::Builder::new()
        .prefix("sitewarden-metrics-")
        .tempdir()
        .unwrap();
    let nats = NatsServer::start().await.unwrap();
    let cf = CloudflareEmulator::start(TOKEN).await.unwrap();
    // The managed record exists (created by hand, marker generation 0) and site2's servers are
    // down from the start: the controller moves the name to mail-site1 at once, which feeds the
    // change and apply counters without waiting out a failback window.
    let zone = cf.add_zone("example.com");
    cf.add_cname(
        &zone,
        NAME,
        "mail-rr.example.com",
        60,
        false,
        Some("sitewarden epoch=0 gen=0"),
    );
    let token = dir.path().join("cloudflare.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut cas = Vec::new();
    for i in 0..4 {
        cas.push(
            ExchangeServer::start(ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL")))
                .await
                .unwrap(),
        );
    }
    for down in &cas[2..] {
        down.set(sitewarden_tests::exchange::Behaviour::Down)
            .await
            .unwrap();
    }

    let agent_bin = binary("sitewarden-agent");
    let mut procs = Vec::new();
    let mut agent_http = Vec::new();
    for (id, site) in two_site::AGENTS {
        let listen = free_addr();
        let config = dir.path().join(format!("{id}.toml"));
        let toml = agent_toml(id, site, listen, &nats.url(), &cas);
        std::fs::write(&config, toml.render()).unwrap();
        procs.push(Proc::spawn(
            &agent_bin,
            &config,
            dir.path().join(format!("{id}.log")),
        ));
        agent_http.push(listen);
    }
    let ctl_http = free_addr();
    let config = dir.path().join("controller.toml");
    let api = cf.api_url();
    std::fs::write(
        &config,
        controller_toml(ctl_http, &nats.url(), &zone, &token, &api).render(),
    )
    .unwrap();
    procs.push(Proc::spawn(
        &binary("sitewarden-controller"),
        &config,
        dir.path().join("controller.log"),
    ));
    let logs = || {
        procs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.log.display(), p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Populated: events admitted, site1 judged Up, the record read through the API, checks
    // counted per observer, and the agent's probes counted.
    let c = |name: &'static str, filter: &'static str| metric(ctl_http, name, filter);
    let populated = wait_for("populated metrics", DEADLINE * 2, || async {
        let accepted = c("sitewarden_controller_events_accepted_total", "").await?;
        let site1 = c("sitewarden_controller_site_verdict_code", "site=\"site1\"").await?;
        let calls = c("sitewarden_controller_dns_api_calls_total", "").await?;
        let checks = c("sitewarden_controller_check_results_total", "pass").await?;
        let probes = metric(agent_http[0], "sitewarden_agent_probes_total", "").await?;
        let runs = metric(
            agent_http[0],
            "sitewarden_agent_dbcopy_collections_total",
            "",
        )
        .await?;
        let changes = c("sitewarden_controller_namespace_changes_total", "").await?;
        let applies = c("sitewarden_controller_applies_total", "").await?;
        (accepted > 0.0
            && site1 == 1.0
            && calls > 0.0
            && checks > 0.0
            && probes > 0.0
            && runs > 0.0
            && changes > 0.0
            && applies > 0.0)
            .then_some(())
    })
    .await;
    if let Err(e) = populated {
        panic!("{e}\n{}", logs());
    }
    // A push for a source nobody configured is refused (and counted by cause).
    let refused = reqwest::Client::new()
        .post(format!("http://{}/api/v1/dbcopy/nobody", agent_http[0]))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());

    let mut problems = Vec::new();

    for (who, addr, prefix) in [
        ("agent", agent_http[0], "sitewarden_agent_"),
        ("controller", ctl_http, "sitewarden_controller_"),
    ] {
        let (kind, text) = scrape(addr, None).await;
        assert!(
            kind.starts_with("text/plain; version=0.0.4"),
            "{who}: {kind}"
        );
        let (code, printed) = promtool(&text).await;
        if (code, printed.trim()) != (Some(0), "") {
            problems.push(format!(
                "promtool check metrics on the {who}'s /metrics exited {code:?}:\n{printed}\n\
                 --- exposition ---\n{text}"
            ));
        }

        problems.extend(build_and_process_problems(who, prefix, &text));

        // Every exposed family (the program's own and the process ones) is documented, and
        // every documented one is exposed (a label family appears with its first series; the
        // few this lab never feeds are named above).
        let exposed = exposed_families(&text);
        let docs = documented(&[prefix, "process_"]);
        let undocumented: Vec<_> = exposed.difference(&docs).collect();
        let missing: Vec<_> = docs
            .difference(&exposed)
            .filter(|n| !NOT_FED_HERE.iter().any(|(name, _)| name == n))
            .collect();
        if !undocumented.is_empty() || !missing.is_empty() {
            problems.push(format!(
                "{who}: exposed but not in docs/metrics.md: {undocumented:?}; \
                 documented but not exposed: {missing:?}"
            ));
        }

        // Prometheus itself asks for OpenMetrics and gets it.
        let (kind, text) = scrape(
            addr,
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        )
        .await;
        assert!(
            kind.starts_with("application/openmetrics-text"),
            "{who}: {kind}"
        );
        assert!(text.ends_with("# EOF\n"), "{who}: no # EOF");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The alerting rules in `docs/metrics.md`.
fn documented_rules() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("```yaml\ngroups:")
        .expect("docs/metrics.md has a ```yaml block of rules starting with `groups:`");
    let body = &text[start + "```yaml\n".len()..];
    body[..body.find("```").unwrap()].to_owned()
}

#[test]
fn the_documented_alerting_rules_pass_promtool_and_use_documented_metrics_only() {
    let rules = documented_rules();
    let file = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::fs::write(file.path(), &rules).unwrap();
    let out = match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(file.path())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed; install it with `sudo apt-get install prometheus` \
             (or run scripts/install-deps)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let known = documented(&["sitewarden_"]);
    let used: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("sitewarden_"))
        .map(str::to_owned)
        .collect();
    assert!(used.len() >= 10, "rules use {used:?}");
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "rules use undocumented metrics: {unknown:?}"
    );
    // Every rule waits (`for:`) and points at a runbook section that exists.
    let operations = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    for rule in rules.split("      - alert: ").skip(1) {
        let name = rule.lines().next().unwrap_or_default();
        assert!(rule.contains("\n        for: "), "{name} has no `for:`");
        let anchor = rule
            .split("operations.md#")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("{name} has no runbook_url into docs/operations.md"));
        assert!(
            anchors.contains(anchor),
            "{name}: docs/operations.md has no section #{anchor}"
        );
    }
}
