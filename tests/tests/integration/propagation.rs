//! The propagation watch and the start-up target check against real BIND servers: two
//! independent authoritative servers of one zone stand in for a primary and its secondary.
//!
//! Stories: after a change reaches both servers the watch reports both converged; when one lags,
//! the report names it and what it still answers, and the watch gives up at its deadline; a
//! server updated while the watch runs converges before the deadline; a dead server is reported
//! with its error; candidate targets that resolve are listed with their addresses, and those
//! that do not are reported with the reason.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sitewarden_controller::provider::propagation::{self, Answer, WatchOptions};
use sitewarden_tests::bind::{self, Bind};

const ZONE: &str = "example.com";
const NAME: &str = "mail.example.com";
const RR: &str = "mail-rr.example.com";
const SITE2: &str = "mail-site2.example.com";

async fn server() -> Bind {
    Bind::start(
        ZONE,
        &[
            "mail 60 IN CNAME mail-rr",
            "mail-rr IN A 192.0.2.1",
            "mail-site1 IN A 192.0.2.1",
            "mail-site2 IN A 198.51.100.1",
            "mail-site2 IN AAAA 2001:db8::2",
            "broken IN CNAME nowhere",
        ],
    )
    .await
    .expect("named starts")
}

async fn move_to_site2(b: &Bind) {
    b.nsupdate(
        bind::KEY_SECRET,
        &format!("update delete {NAME} CNAME\nupdate add {NAME} 60 CNAME {SITE2}"),
    )
    .await
    .unwrap();
}

fn quick(deadline_ms: u64) -> WatchOptions {
    WatchOptions {
        deadline: Duration::from_millis(deadline_ms),
        poll_interval: Duration::from_millis(50),
        query_timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn every_server_answering_the_new_target_is_converged() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let (a, b) = (server().await, server().await);
    move_to_site2(&a).await;
    move_to_site2(&b).await;
    let r = propagation::watch(NAME, SITE2, &[a.addr(), b.addr()], quick(5_000))
        .await
        .unwrap();
    assert!(r.converged(), "{r:?}");
    assert!(
        r.converged_after()
            .is_some_and(|d| d < Duration::from_secs(5))
    );
    assert!(r.servers.iter().all(|s| s.queries == 1), "{r:?}");
    assert_eq!(r.target, SITE2);
}

#[tokio::test]
async fn a_lagging_server_is_named_with_what_it_still_answers() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let (a, b) = (server().await, server().await);
    move_to_site2(&a).await;
    let r = propagation::watch(NAME, SITE2, &[a.addr(), b.addr()], quick(400))
        .await
        .unwrap();
    assert!(!r.converged(), "{r:?}");
    assert!(r.servers[0].converged());
    let lagging: Vec<_> = r.laggards().collect();
    assert_eq!(lagging.len(), 1);
    assert_eq!(lagging[0].server, b.addr());
    assert_eq!(lagging[0].last_answer, Some(Answer::Cname(RR.into())));
    assert!(
        lagging[0].queries > 1,
        "it was asked again until the deadline"
    );
    assert!(r.elapsed < Duration::from_secs(3), "{r:?}");
}

#[tokio::test]
async fn a_server_updated_during_the_watch_converges_before_the_deadline() {
    let (a, b) = (server().await, server().await);
    move_to_site2(&a).await;
    let servers = [a.addr(), b.addr()];
    let watching = propagation::watch(NAME, SITE2, &servers, quick(15_000));
    let (report, ()) = tokio::join!(watching, move_to_site2(&b));
    let r = report.unwrap();
    assert!(r.converged(), "{r:?}");
}

#[tokio::test]
async fn a_dead_server_is_reported_with_its_error() {
    let a = server().await;
    let dead: SocketAddr = {
        let b = server().await;
        b.addr()
    };
    move_to_site2(&a).await;
    let r = propagation::watch(NAME, SITE2, &[a.addr(), dead], quick(300))
        .await
        .unwrap();
    assert!(r.servers[0].converged());
    let d = &r.servers[1];
    assert!(!d.converged());
    assert!(d.last_error.is_some(), "{d:?}");
    assert_eq!(d.last_answer, None);
}

#[tokio::test]
async fn candidate_targets_that_do_not_resolve_are_reported() {
    let b = server().await;
    let targets: Vec<String> = [
        "mail-site2.example.com",
        "mail-rr.example.com",
        "nowhere.example.com",
        "www.example.org",
    ]
    .map(String::from)
    .to_vec();
    let checks = propagation::check_targets(b.addr(), &targets, Duration::from_secs(2)).await;
    assert_eq!(checks.len(), 4);
    assert!(checks[0].resolves());
    assert!(
        checks[0]
            .addresses
            .contains(&"198.51.100.1".parse::<IpAddr>().unwrap())
    );
    assert!(
        checks[0]
            .addresses
            .contains(&"2001:db8::2".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        checks[1].addresses,
        ["192.0.2.1".parse::<IpAddr>().unwrap()]
    );
    for c in &checks[2..] {
        assert!(!c.resolves(), "{c:?}");
        let why = c.problem.as_deref().unwrap_or_default();
        assert!(why.contains(&c.target), "{why}");
    }
    // An in-zone name without records is NXDOMAIN; an out-of-zone one is refused (no recursion).
    let nx = checks[2].problem.as_deref().unwrap_or_default();
    assert!(
        nx.contains("Non-Existent") || nx.contains("NXDomain"),
        "{nx}"
    );
    let refused = checks[3].problem.as_deref().unwrap_or_default();
    assert!(refused.contains("Refused"), "{refused}");
}
