//! The `sitewarden` CLI, the real built binary, against a real controller pair on a real
//! nats-server: tables and JSON, overrides that need a reason, exit codes for a refused token
//! and an unreachable controller, falling through to the second controller of the pair, and the
//! config file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sitewarden_tests::wait_for;
use sitewarden_tests::{DEADLINE, free_addr};

use sitewarden_tests::api_pair::{ADMIN, ApiPair, NAME, READER};

/// The `sitewarden` binary, built once per test process so it is never stale.
fn sitewarden() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "-p", "sitewarden-cli", "--bin", "sitewarden"]);
        // Cargo gives a test process its package's variables; build scripts (ring's) track
        // some of them, so passing them on would rebuild half the tree on every run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
                || key.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&key.as_ref())
            {
                build.env_remove(key.as_ref());
            }
        }
        let status = build.status().expect("cargo build runs");
        assert!(status.success(), "building sitewarden failed");
        // Test executables live in target/<profile>/deps; binaries one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join(format!("sitewarden{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// What one run of the CLI printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the CLI with a clean environment (no SITEWARDEN_*, HOME and XDG_CONFIG_HOME in `home`)
/// plus `env`.
async fn cli(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(sitewarden());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .expect("the CLI finishes within the deadline")
        .expect("the CLI runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The column where `word` starts on the first line that starts with `row`.
fn column(table: &str, row: &str, word: &str) -> usize {
    let line = table
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no line starting with {row:?} in\n{table}"));
    line.find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_as_a_table_or_json_and_falls_through_to_the_second_controller() {
    sitewarden();
    let pair = ApiPair::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = pair.url(0);

    let r = cli(h, &[], &["--url", &url, "--token", READER, "status"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    for word in [
        "site1",
        "site2",
        "witness",
        NAME,
        "mail-rr.example.com",
        "leader ctl-",
    ] {
        assert!(r.stdout.contains(word), "{word} missing:\n{}", r.stdout);
    }
    // Aligned columns: every site's verdict starts under VERDICT.
    let at = column(&r.stdout, "SITE", "VERDICT");
    for site in ["site1 ", "site2 "] {
        assert_eq!(column(&r.stdout, site, "up"), at, "\n{}", r.stdout);
    }
    assert!(!r.stdout.contains('\x1b'), "no colour when not a TTY");

    let r = cli(
        h,
        &[],
        &["--url", &url, "--token", READER, "--json", "status"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let s: serde_json::Value = serde_json::from_str(&r.stdout).expect("--json prints JSON");
    assert_eq!(s["namespaces"][0]["name"], NAME);
    assert_eq!(s["sites"].as_array().unwrap().len(), 3);

    let r = cli(h, &[], &["--url", &url, "--token", READER, "explain", NAME]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("{NAME} points at")), "{r:?}");
    let r = cli(
        h,
        &[],
        &[
            "--url",
            &url,
            "--token",
            READER,
            "explain",
            "owa.example.com",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "an error answer from the API: {r:?}");
    assert!(r.stderr.contains("no managed name"), "{r:?}");

    let r = cli(h, &[], &["--url", &url, "--token", READER, "plan"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("sitewarden-controller plan"), "{r:?}");
    assert!(r.stdout.contains(NAME), "{r:?}");

    // Nobody listens on the first URL: the second controller answers.
    let dead = format!("http://{}", free_addr());
    let r = cli(
        h,
        &[("SITEWARDEN_TOKEN", READER)],
        &["--url", &dead, "--url", &pair.url(1), "status"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(NAME), "{r:?}");
    // The same two URLs from the environment, comma-separated.
    let both = format!("{dead},{}", pair.url(1));
    let r = cli(
        h,
        &[("SITEWARDEN_TOKEN", READER), ("SITEWARDEN_URL", &both)],
        &["whoami"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("grafana (read)"), "{r:?}");

    // Nobody at all: exit 3 and a message that says what to check.
    let r = cli(h, &[], &["--url", &dead, "--token", READER, "status"]).await;
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("cannot reach the controller at {dead}"))
            && r.stderr.contains("check --url / SITEWARDEN_URL"),
        "{r:?}"
    );

    // A wrong token: exit 4, and no token is ever printed.
    let r = cli(
        h,
        &[],
        &["--url", &url, "--token", "wrong-token-0000000000", "status"],
    )
    .await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("refused the token"), "{r:?}");
    assert!(!r.stderr.contains("wrong-token-0000000000"), "{r:?}");
    let r = cli(h, &[], &["--url", &url, "status"]).await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("no token was given"), "{r:?}");

    // The config file: URL and token file; the environment still wins over it.
    let cfg = h.join(".config/sitewarden");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("cli.toml"),
        format!(
            "url = [{dead:?}, {:?}]\ntoken = {{ file = {:?} }}\n",
            pair.url(0),
            pair.dir.path().join("read.token")
        ),
    )
    .unwrap();
    let r = cli(h, &[], &["whoami"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("grafana"), "{r:?}");
    let r = cli(h, &[("SITEWARDEN_TOKEN", ADMIN)], &["whoami"]).await;
    assert!(r.stdout.contains("alice (admin)"), "{r:?}");
    std::fs::write(cfg.join("cli.toml"), "url = 42\n").unwrap();
    let r = cli(h, &[], &["status"]).await;
    assert_eq!(r.code, 2, "a broken config file is a config error: {r:?}");
    assert!(r.stderr.contains("cli.toml"), "{r:?}");
}

/// Which of the pair leads, from controller 0's status: `(leader url, standby url, leader id)`.
async fn roles(pair: &ApiPair) -> (String, String, String) {
    let leader = wait_for("a leader both controllers agree on", DEADLINE, || async {
        let s: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/status", pair.url(0)))
            .bearer_auth(READER)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        s["leader"]["leader"].as_str().map(str::to_owned)
    })
    .await
    .unwrap();
    let i = usize::from(leader != "ctl-a");
    (pair.url(i), pair.url(1 - i), leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_prefer_the_leader_and_remember_it_past_a_black_hole() {
    sitewarden();
    let pair = ApiPair::start().await;
    let (leader_url, standby_url, leader) = roles(&pair).await;
    let standby = if leader == "ctl-a" { "ctl-b" } else { "ctl-a" };

    // Asked first, the standby answers first; the leader's answer is the one printed.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let both = format!("{standby_url},{leader_url}");
    let env = [
        ("SITEWARDEN_TOKEN", READER),
        ("SITEWARDEN_URL", both.as_str()),
    ];
    let r = cli(h, &env, &["status"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!("answered by {leader} (leader)")),
        "{r:?}"
    );
    assert!(!r.stderr.contains("note:"), "{r:?}");
    let memory = h.join(".local/state/sitewarden/leaders");
    let remembered = std::fs::read_to_string(&memory).unwrap();
    assert_eq!(
        remembered.lines().next(),
        Some(format!("{leader_url}/").as_str())
    );

    // The standby alone: it names the leader and the leader's epoch (from the leader's
    // presence record), lists both controllers, and says on stderr that it is not the leader.
    let r = wait_for("the standby knows the leader's epoch", DEADLINE, || async {
        let r = cli(
            h,
            &[],
            &["--url", &standby_url, "--token", READER, "status"],
        )
        .await;
        (r.code == 0 && !r.stdout.contains("(epoch -)")).then_some(r)
    })
    .await
    .unwrap();
    let first = r.stdout.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("leader {leader} (epoch "))
            && first.contains(&format!("answered by {standby} (standby)")),
        "{r:?}"
    );
    let controllers = r
        .stdout
        .lines()
        .find(|l| l.starts_with("controllers: "))
        .unwrap_or_else(|| panic!("no controllers line: {r:?}"));
    assert!(
        controllers.contains(&format!("{leader} leader (epoch "))
            && controllers.contains(&format!("{standby} standby (")),
        "{controllers}"
    );
    assert!(
        r.stderr.contains(&format!(
            "note: answered by {standby} (standby), not the leader: only this controller"
        )),
        "{r:?}"
    );

    // A black hole in front of the pair: the first command waits for it a moment, finds the
    // leader behind it and remembers it; the next one does not go near the black hole.
    let hole = sitewarden_tests::fault_proxy::FaultProxy::start(pair.http[0])
        .await
        .unwrap();
    hole.set(sitewarden_tests::fault_proxy::Fault::Blackhole);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let urls = format!("http://{},{leader_url}", hole.addr());
    let env = [
        ("SITEWARDEN_TOKEN", READER),
        ("SITEWARDEN_URL", urls.as_str()),
    ];
    let r = cli(h, &env, &["history"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(hole.accepted(), 1, "the first command tried the black hole");
    for _ in 0..3 {
        let r = cli(h, &env, &["status"]).await;
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stdout.contains(&format!("answered by {leader} (leader)")),
            "{r:?}"
        );
    }
    assert_eq!(
        hole.accepted(),
        1,
        "later commands ask the remembered leader first and get its answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_needs_a_reason_and_an_admin_token_then_moves_the_record() {
    sitewarden();
    let pair = ApiPair::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = pair.url(0);
    let overrides = || async {
        let r = cli(
            h,
            &[],
            &["--url", &url, "--token", READER, "--json", "status"],
        )
        .await;
        let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        s["overrides"].clone()
    };
    let none = serde_json::json!({"pins": {}, "drains": {}, "freezes": {}});

    // No reason: a usage error, nothing is sent.
    let r = cli(
        h,
        &[],
        &[
            "--url",
            &url,
            "--token",
            ADMIN,
            "pin",
            NAME,
            "mail-site2.example.com",
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--reason"), "{r:?}");
    let r = cli(
        h,
        &[],
        &[
            "--url", &url, "--token", ADMIN, "drain", "site1", "--reason", "   ",
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(overrides().await, none);

    // A read-only token: refused with exit 4 and a message that says what to use instead.
    let r = cli(
        h,
        &[],
        &[
            "--url",
            &url,
            "--token",
            READER,
            "pin",
            NAME,
            "mail-site2.example.com",
            "--reason",
            "CHG-1042",
        ],
    )
    .await;
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("admin"), "{r:?}");
    assert!(
        !r.stderr.contains(READER) && !r.stdout.contains(READER),
        "{r:?}"
    );
    assert_eq!(overrides().await, none);
    assert_eq!(pair.content().as_deref(), Some("mail-rr.example.com"));

    // A target the name does not have: the engine refuses it, exit 1.
    let r = cli(
        h,
        &[],
        &[
            "--url",
            &url,
            "--token",
            ADMIN,
            "pin",
            NAME,
            "elsewhere.example.com",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("elsewhere.example.com"), "{r:?}");

    // With a reason and an admin token, through the second controller: the record moves.
    let r = cli(
        h,
        &[("SITEWARDEN_TOKEN", ADMIN)],
        &[
            "--url",
            &pair.url(1),
            "pin",
            NAME,
            "mail-site2.example.com",
            "--for",
            "30m",
            "--reason",
            "site1 maintenance CHG-1042",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("pin mail.example.com to mail-site2.example.com"),
        "{r:?}"
    );
    wait_for("the pinned target in DNS", DEADLINE, || async {
        (pair.content().as_deref() == Some("mail-site2.example.com")).then_some(())
    })
    .await
    .unwrap();
    let r = cli(h, &[], &["--url", &url, "--token", READER, "status"]).await;
    assert!(
        r.stdout.contains("site1 maintenance CHG-1042") && r.stdout.contains("alice"),
        "the pin shows with who and why:\n{}",
        r.stdout
    );
    let r = cli(
        h,
        &[],
        &[
            "--url", &url, "--token", READER, "history", "--since", "10m",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("override") && l.contains("by alice: site1 maintenance")),
        "{}",
        r.stdout
    );
    let r = cli(
        h,
        &[],
        &[
            "--url", &url, "--token", READER, "--json", "history", "--limit", "1000",
        ],
    )
    .await;
    let hist: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(hist["records"].as_array().is_some_and(|r| !r.is_empty()));

    let r = cli(
        h,
        &[],
        &[
            "--url", &url, "--token", ADMIN, "release", "pin", NAME, "--reason", "done",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("release the pin on mail.example.com"),
        "{r:?}"
    );
    assert_eq!(overrides().await["pins"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_out_of_range_are_refused_before_sending_and_refusals_exit_1() {
    sitewarden();
    let pair = ApiPair::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = pair.url(0);
    let admin = [
        ("SITEWARDEN_URL", url.as_str()),
        ("SITEWARDEN_TOKEN", ADMIN),
    ];

    // Out of range: a usage error in the API's words, nothing sent.
    for f in ["0s", "1ns", "1000000y"] {
        let r = cli(
            h,
            &admin,
            &["drain", "site1", "--for", f, "--reason", "CHG-1"],
        )
        .await;
        assert_eq!(r.code, 2, "{f}: {r:?}");
        assert!(
            r.stderr.contains(&format!("--for \"{f}\" is out of range"))
                && r.stderr.contains("from 1m to 366d"),
            "{f}: {r:?}"
        );
    }
    let r = cli(h, &admin, &["history", "--since", "1000000y"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--since \"1000000y\""), "{r:?}");

    // Refused by the engine: exit 1 with the engine's reason.
    let r = cli(h, &admin, &["release", "pin", NAME, "--reason", "nothing"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not pinned"), "{r:?}");
    assert!(!r.stdout.contains("done"), "{r:?}");
    let r = cli(h, &admin, &["failback", NAME, "--reason", "try"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("nothing to fail back to"), "{r:?}");

    // Nothing reached the engine; the controller still answers.
    let r = cli(h, &admin, &["--json", "status"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        s["overrides"],
        serde_json::json!({"pins": {}, "drains": {}, "freezes": {}})
    );
    assert_eq!(pair.content().as_deref(), Some("mail-rr.example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_override_reason_is_printed_escaped_on_one_line() {
    sitewarden();
    let pair = ApiPair::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = pair.url(0);
    // ESC (clear screen), NUL, a bidi override and a newline that would start a fake record:
    // sent straight to the API (a command line cannot carry NUL).
    let hostile = "CHG-7 \u{1b}[2J\u{0}\u{202e}gnirut\n2026-01-01 00:00:00Z  ctl-x  override  fake";
    let answer = reqwest::Client::new()
        .post(format!("{url}/api/v1/overrides"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"action": "freeze", "namespace": NAME, "reason": hostile}))
        .send()
        .await
        .expect("the API answers");
    assert!(answer.status().is_success(), "{answer:?}");

    let unsafe_char = |s: &str| {
        s.chars()
            .any(|c| c != '\n' && c.is_control() || c == '\u{202e}')
    };
    let escaped =
        "CHG-7 \\u{1b}[2J\\0\\u{202e}gnirut\\n2026-01-01 00:00:00Z  ctl-x  override  fake";
    let args = [
        "--url", &url, "--token", READER, "history", "--since", "10m",
    ];
    let r = wait_for("the freeze in the history", DEADLINE, || async {
        let r = cli(h, &[], &args).await;
        r.stdout.contains("freeze").then_some(r)
    })
    .await
    .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !unsafe_char(&r.stdout),
        "raw control characters:\n{:?}",
        r.stdout
    );
    let lines: Vec<&str> = r.stdout.lines().filter(|l| l.contains("CHG-7")).collect();
    // Each controller audits the override and its frozen decisions: every mention is whole.
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains(escaped)),
        "{}",
        r.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("override") && l.ends_with(&format!("by alice: {escaped}"))),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout
            .lines()
            .any(|l| l.starts_with("2026-01-01 00:00:00Z")),
        "a forged history line:\n{}",
        r.stdout
    );

    // The same in `status` (the override's WHY) and in `--json`, whose strings keep their value.
    let r = cli(h, &[], &["--url", &url, "--token", READER, "status"]).await;
    assert!(!unsafe_char(&r.stdout), "{:?}", r.stdout);
    assert!(r.stdout.contains(escaped), "{}", r.stdout);
    let r = cli(
        h,
        &[],
        &["--url", &url, "--token", READER, "--json", "status"],
    )
    .await;
    assert!(!unsafe_char(&r.stdout), "{:?}", r.stdout);
    let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(s["overrides"]["freezes"][NAME]["why"], hostile, "{s}");
}
