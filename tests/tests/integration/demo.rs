//! The demo (`./scripts/demo`, the `sitewarden-demo` binary) as an operator runs it: the whole
//! mission on loopback. Given the two-site lab with DAG1 mounted in site1, when the Exchange
//! admins move DAG1's active copies to site2, then the edge is told site2 and
//! `owa.failover.example.com` follows to owa-site2; when site1's client-access servers die,
//! `mail.failover.example.com` moves to mail-site2 and fails back once site1 is back. The test
//! reads the demo's JSON summary and its narration, so the demo cannot quietly stop showing a
//! part of the mission.

use std::process::Stdio;
use std::time::Duration;

use sitewarden_controller::runtime::EDGE_SUBJECT;
use sitewarden_shared::{EdgeNotification, SiteVerdict};
use sitewarden_tests::DEADLINE;
use sitewarden_tests::demo::Summary;
use sitewarden_tests::machine;
use sitewarden_tests::two_site::DAG1;

/// The whole demo: about a minute on an idle machine (the failback alone waits out a 15 s
/// stable window); sized for a loaded one.
const DEMO_DEADLINE: Duration = Duration::from_secs(300);

/// The index of the first line at or after `from` that contains `text`.
fn line_with(lines: &[&str], from: usize, text: &str, out: &str) -> usize {
    lines
        .iter()
        .skip(from)
        .position(|l| l.contains(text))
        .map(|i| from + i)
        .unwrap_or_else(|| panic!("no line with {text:?} after line {from}:\n{out}"))
}

/// The edge notice printed on line `i` (`  EDGE sitewarden.v1.edge: {…}`).
fn notice_on(lines: &[&str], i: usize, out: &str) -> EdgeNotification {
    let prefix = format!("EDGE {EDGE_SUBJECT}: ");
    let json = lines[i]
        .split_once(&prefix)
        .map(|(_, json)| json)
        .unwrap_or_else(|| panic!("line {i} is no edge notice: {}\n{out}", lines[i]));
    EdgeNotification::decode(json.as_bytes())
        .unwrap_or_else(|e| panic!("line {i}: {e}: {json}\n{out}"))
}

fn active_site(n: &EdgeNotification) -> Option<&str> {
    n.active_site(DAG1).map(|s| s.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_the_edge_and_a_name_following_dag1_to_site2_and_the_failover() {
    // Three NATS nodes, a controller pair, three agents and four servers: a share of the machine.
    let _turn = machine::share().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sitewarden-demo"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the demo starts");
    let run = tokio::time::timeout(DEMO_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the demo did not finish within {DEMO_DEADLINE:?}"))
        .expect("the demo's output is read");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}\n{out}\n{err}", run.status);

    let summary = Summary::from_output(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(summary.ok, "{summary:?}");
    assert_eq!(summary.flipped_to, "mail-site2.example.com");
    assert_eq!(summary.dag, DAG1);
    assert_eq!(
        (
            summary.mailbox_site_before.as_str(),
            summary.mailbox_site_after.as_str()
        ),
        ("site1", "site2"),
        "{summary:?}"
    );
    assert_eq!(summary.follow_name, "owa.failover.example.com");
    assert_eq!(
        (
            summary.follow_target_before.as_str(),
            summary.follow_target_after.as_str()
        ),
        ("owa-site1.example.com", "owa-site2.example.com"),
        "{summary:?}"
    );
    // Both follow within a few collector runs (every 1 s); a wait that never ended would have
    // failed the demo instead.
    let bound = DEADLINE.as_secs_f64();
    for (what, s) in [
        ("switchover_to_edge_s", summary.switchover_to_edge_s),
        ("switchover_to_follow_s", summary.switchover_to_follow_s),
    ] {
        assert!(s > 0.0 && s < bound, "{what} = {s}: {summary:?}");
    }

    // The narration, in order: the edge names site1, the switchover, the edge names site2, the
    // name follows, then the site failure (whose notice still names site2).
    let lines: Vec<&str> = out.lines().collect();
    let mailboxes = line_with(
        &lines,
        0,
        "MAILBOXES: DAG1's databases are active in site1",
        &out,
    );
    let before = line_with(&lines, mailboxes, "EDGE sitewarden.", &out);
    let n = notice_on(&lines, before, &out);
    assert_eq!(active_site(&n), Some("site1"), "{n:?}");
    assert!(
        n.verdicts.values().all(|v| *v == SiteVerdict::Up),
        "the story starts with both sites Up: {n:?}"
    );
    line_with(
        &lines,
        before,
        "owa.failover.example.com CNAME +short  ->  owa-site1.example.com",
        &out,
    );
    let switchover = line_with(&lines, before, "SWITCHOVER: ", &out);
    let told = line_with(
        &lines,
        switchover,
        "EDGE TOLD: DAG1's mailboxes are active in site2",
        &out,
    );
    let after = line_with(&lines, told, "EDGE sitewarden.", &out);
    assert_eq!(active_site(&notice_on(&lines, after, &out)), Some("site2"));
    let followed = line_with(
        &lines,
        switchover,
        "DNS FOLLOWED: owa.failover.example.com -> owa-site2.example.com",
        &out,
    );
    let fault = line_with(&lines, followed.max(after), "FAULT: ", &out);
    let failover_notice = line_with(&lines, fault, "EDGE sitewarden.", &out);
    let n = notice_on(&lines, failover_notice, &out);
    assert_eq!(active_site(&n), Some("site2"), "{n:?}");
    line_with(&lines, fault, "DNS FAILED BACK: ", &out);
}
