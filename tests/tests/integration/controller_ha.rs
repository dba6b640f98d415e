//! The controller HA pair as real processes against the Cloudflare emulator, real nats-server,
//! real agents and emulated Exchange sites: the leader crashes, freezes, dies between intent and
//! apply or between apply and "applied"; the DNS API rate-limits and fails; NATS loses nodes.
//! In every story the record moves at most once and never under an old epoch, and the recorded
//! history keeps the fault suite's invariants ([`check_invariants`]).

use std::time::Duration;

use sitewarden_controller::engine::{Alert, AlertKind};
use sitewarden_tests::DEADLINE;
use sitewarden_tests::audit::{RuntimeEvent, all_alerts};
use sitewarden_tests::cloudflare::{Fault, Match};
use sitewarden_tests::fault_proxy::Fault as ProxyFault;
use sitewarden_tests::ha_lab::{HaLab, LEASE, LabOptions, intent, marker_epoch, record_reads};
use sitewarden_tests::invariants::check_invariants;
use sitewarden_tests::metrics_page::metric;
use sitewarden_tests::signals::Signal;
use sitewarden_tests::wait_for;
use tokio::time::Instant;

const SITE2: &str = "mail-site2.example.com";

/// Checks the fault suite's invariants on the lab's recorded history.
async fn invariants_hold(lab: &HaLab) {
    check_invariants(&lab.history().await, &lab.cf.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_pair_when_the_leader_is_killed_then_the_standby_acts_within_a_lease_and_moves_mail_once()
 {
    let mut lab = HaLab::start(LabOptions::default()).await;
    let leader = lab.leader().await;
    let standby = 1 - leader;
    let old_epoch = lab.controllers[leader].epoch().await.unwrap();

    // kill -9: no release, the lease has to expire.
    lab.controllers[leader].kill().await;
    let killed = Instant::now();
    let s = &lab.controllers[standby];
    wait_for("standby acting", DEADLINE, || async {
        let acting = s.acting().await == Some(true);
        if !acting {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acting.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL: {takeover:?} (lease {LEASE:?})");
    assert!(
        takeover <= LEASE + Duration::from_secs(1),
        "takeover took {takeover:?} with a {LEASE:?} lease"
    );
    let new_epoch = s.epoch().await.unwrap();
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");

    lab.site1_dies().await;
    let written = lab.wait_record(SITE2).await;
    assert_eq!(written, new_epoch, "written under the standby's epoch");
    // Evidence keeps arriving: the engine runs many more ticks and events; the record is read
    // again by the next change only. Wait for more agent evidence by way of the standby's
    // intake counter, then check nothing was written twice.
    let seen = metric(s.http, "sitewarden_controller_events_accepted_total", "")
        .await
        .unwrap();
    wait_for("30 more events", DEADLINE, || async {
        let now = metric(s.http, "sitewarden_controller_events_accepted_total", "").await?;
        (now >= seen + 30.0).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        lab.patches().len(),
        1,
        "exactly one PATCH: {:#?}",
        lab.patches()
    );
    assert_eq!(lab.successful_patches()[0].body["content"], SITE2);
    invariants_hold(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_leader_that_dies_between_intent_and_apply_then_the_new_leader_applies_exactly_once()
 {
    let mut lab = HaLab::start(LabOptions::default()).await;
    let leader = lab.leader().await;
    let standby = 1 - leader;
    let old_epoch = lab.controllers[leader].epoch().await.unwrap();
    let kv = HaLab::state_bucket(&lab.bus.urls()[0]).await;

    // The leader's DNS API traffic vanishes: its read before the write hangs.
    lab.controllers[leader].proxy.set(ProxyFault::Blackhole);
    lab.site1_dies().await;
    let pending = wait_for("the leader's pending intent", DEADLINE, || async {
        let i = intent(&kv).await?;
        (i["status"] == "pending" && i["epoch"] == old_epoch).then_some(i)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    assert_eq!(pending["target"], SITE2);
    lab.controllers[leader].kill().await;
    assert!(lab.patches().is_empty(), "the crashed leader wrote nothing");

    let new_epoch = lab.wait_acting(standby).await;
    assert!(new_epoch > old_epoch);
    let written = lab.wait_record(SITE2).await;
    assert_eq!(written, new_epoch, "applied under the new leader's epoch");
    lab.more_events(standby, 30.0).await;
    assert_eq!(lab.patches().len(), 1, "{:#?}", lab.patches());
    let done = intent(&kv).await.unwrap();
    assert_eq!(
        (done["status"].as_str(), done["epoch"].as_u64()),
        (Some("applied"), Some(new_epoch)),
        "the new leader's change is recorded as applied: {done}"
    );
    let settled: Vec<_> = sitewarden_tests::audit::records(&lab.bus.urls()[0])
        .await
        .into_iter()
        .filter(|r| {
            matches!(
                r.event.runtime(),
                Some(RuntimeEvent::IntentApplied(i) | RuntimeEvent::IntentSuperseded(i))
                    if i.intent_epoch.0 == old_epoch
            )
        })
        .map(|r| r.event.kind())
        .collect();
    assert_eq!(
        settled,
        vec!["intent_superseded"],
        "the dead leader's pending intent is explicitly superseded, once"
    );
    invariants_hold(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_leader_that_dies_after_its_write_landed_then_the_new_leader_does_not_write_again()
{
    let mut lab = HaLab::start(LabOptions::default()).await;
    let leader = lab.leader().await;
    let standby = 1 - leader;
    let old_epoch = lab.controllers[leader].epoch().await.unwrap();
    let kv = HaLab::state_bucket(&lab.bus.urls()[0]).await;

    // The leader's API traffic is slow (each chunk 1.5 s late), and its write is applied but
    // the answer is lost: it cannot have read back before it is killed.
    lab.controllers[leader]
        .proxy
        .set(ProxyFault::Delay(Duration::from_millis(1500)));
    lab.cf.inject(Fault::LoseResponse, Match::Writes, 1);
    lab.site1_dies().await;
    wait_for("the lost PATCH", DEADLINE, || async {
        lab.patches().iter().any(|c| !c.answered).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    lab.controllers[leader].kill().await;
    let (content, comment) = lab.record();
    assert_eq!(content, SITE2, "the write landed");
    assert_eq!(marker_epoch(comment.as_deref()), old_epoch);
    let left = intent(&kv).await.unwrap();
    assert_eq!(
        left["status"], "pending",
        "crashed before marking it: {left}"
    );

    let reads = record_reads(&lab.cf);
    let new_epoch = lab.wait_acting(standby).await;
    assert!(new_epoch > old_epoch);
    // The new leader reads the record at takeover and finds the change in place.
    let cf = &lab.cf;
    wait_for("the new leader's read", DEADLINE, || async {
        (record_reads(cf) > reads).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    lab.more_events(standby, 30.0).await;
    assert_eq!(
        lab.patches().len(),
        1,
        "no second write: {:#?}",
        lab.patches()
    );
    let (content, comment) = lab.record();
    assert_eq!(content, SITE2);
    assert_eq!(
        marker_epoch(comment.as_deref()),
        old_epoch,
        "the landed change is not re-stamped: the engine sees the target in place and issues no change"
    );
    let settled = intent(&kv).await.unwrap();
    assert_eq!(
        (settled["status"].as_str(), settled["epoch"].as_u64()),
        (Some("applied"), Some(new_epoch)),
        "the new leader settled the pending intent from the record's marker: {settled}"
    );
    assert!(
        settled["note"].as_str().unwrap_or("").contains("landed"),
        "{settled}"
    );
    invariants_hold(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_cloudflare_answers_429_then_500_then_the_leader_retries_and_moves_mail_once() {
    let lab = HaLab::start(LabOptions {
        controllers: 1,
        ..LabOptions::default()
    })
    .await;
    lab.cf
        .inject(Fault::RateLimited { retry_after_s: 1 }, Match::Writes, 1);
    lab.cf.inject(Fault::ServerError, Match::Writes, 1);
    lab.site1_dies().await;
    let epoch = lab.wait_record(SITE2).await;
    lab.more_events(0, 30.0).await;
    let statuses: Vec<u16> = lab.patches().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 500, 200], "{:#?}", lab.patches());
    assert_eq!(lab.controllers[0].acting().await, Some(true));
    assert_eq!(lab.controllers[0].epoch().await, Some(epoch));
    // Humans hear that the provider struggled, and that the change landed.
    let history = sitewarden_tests::audit::records(&lab.bus.urls()[0]).await;
    let alerts: Vec<&Alert> = all_alerts(&history).collect();
    let degraded: Vec<_> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::ProviderDegraded)
        .collect();
    assert_eq!(degraded.len(), 1, "{alerts:#?}");
    let text = &degraded[0].text;
    assert!(
        text.contains("2 retries") && text.contains("1 rate-limited"),
        "{text}"
    );
    assert!(
        alerts.iter().any(|a| a.kind == AlertKind::DnsApplied),
        "{alerts:#?}"
    );
    invariants_hold(&lab).await;
}

/// The frozen-leader story up to the resume: the leader records its intent, its read of the
/// record is held up (`proxy_fault`), it is frozen with SIGSTOP, the standby takes over and moves
/// the record. Returns (leader index, old epoch, new epoch).
async fn freeze_leader_mid_change(lab: &HaLab, proxy_fault: ProxyFault) -> (usize, u64, u64) {
    let leader = lab.leader().await;
    let standby = 1 - leader;
    let old_epoch = lab.controllers[leader].epoch().await.unwrap();
    let kv = HaLab::state_bucket(&lab.bus.urls()[0]).await;
    lab.controllers[leader].proxy.set(proxy_fault);
    lab.site1_dies().await;
    wait_for("the leader's pending intent", DEADLINE, || async {
        let i = intent(&kv).await?;
        (i["status"] == "pending" && i["epoch"] == old_epoch).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    lab.controllers[leader].signal(Signal::Stop).await;
    let new_epoch = lab.wait_acting(standby).await;
    assert!(new_epoch > old_epoch);
    let written = lab.wait_record(SITE2).await;
    assert_eq!(written, new_epoch);
    (leader, old_epoch, new_epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_leader_frozen_past_its_lease_mid_change_when_it_resumes_then_it_writes_nothing() {
    let lab = HaLab::start(LabOptions {
        request_timeout: Some(Duration::from_secs(3)),
        ..LabOptions::default()
    })
    .await;
    // The leader's read before its write is in flight (swallowed) when it freezes.
    let (leader, _old, new_epoch) = freeze_leader_mid_change(&lab, ProxyFault::Blackhole).await;
    assert_eq!(lab.successful_patches().len(), 1);

    // Thaw it, with its API path healed: its read times out, it reads again, finds the newer
    // epoch on the record and is refused.
    let old = &lab.controllers[leader];
    old.proxy.set(ProxyFault::Pass);
    old.signal(Signal::Cont).await;
    // It either finds the newer epoch on the record (refused), or — frozen before its read went
    // out (the intent's audit record is stored first) — finds its lease gone before the write
    // (not_acting). Either way it writes nothing.
    wait_for("the resumed leader's apply refused", DEADLINE, || async {
        let m = |outcome| metric(old.http, "sitewarden_controller_applies_total", outcome);
        let refused = m("refused").await.unwrap_or(0.0);
        let not_acting = m("not_acting").await.unwrap_or(0.0);
        (refused + not_acting >= 1.0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    assert_eq!(old.acting().await, Some(false));
    assert!(old.epoch().await.unwrap() <= new_epoch);
    lab.more_events(1 - leader, 20.0).await;
    assert_eq!(
        lab.patches().len(),
        1,
        "the thawed leader wrote nothing: {:#?}",
        lab.patches()
    );
    let (content, comment) = lab.record();
    assert_eq!(content, SITE2);
    assert_eq!(marker_epoch(comment.as_deref()), new_epoch);
    invariants_hold(&lab).await;
}

/// Worst case of the frozen leader: its read was answered *before* the new leader wrote, and it
/// resumes between that read and its write. The lease fence in `provider::cas::apply` is
/// checked right before the PATCH, so the thawed process refuses to write (`LeaseLost`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_leader_frozen_between_its_read_and_its_write_when_it_resumes_then_it_writes_nothing()
 {
    let lab = HaLab::start(LabOptions::default()).await;
    // Every chunk 700 ms late: the read is answered ~1.4 s after the intent, before takeover.
    let (leader, _old, new_epoch) =
        freeze_leader_mid_change(&lab, ProxyFault::Delay(Duration::from_millis(700))).await;
    let old = &lab.controllers[leader];
    old.signal(Signal::Cont).await;
    wait_for("the resumed leader's apply finished", DEADLINE, || async {
        let n = metric(old.http, "sitewarden_controller_applies_total", "").await?;
        (n >= 1.0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    lab.more_events(1 - leader, 20.0).await;
    assert_eq!(
        lab.patches().len(),
        1,
        "the thawed leader wrote nothing: {:#?}",
        lab.patches()
    );
    let (_, comment) = lab.record();
    assert_eq!(marker_epoch(comment.as_deref()), new_epoch);
    invariants_hold(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_three_site_bus_when_two_nodes_die_then_nobody_acts_and_no_dns_change_is_made() {
    let lab = HaLab::start_cluster(LabOptions::default()).await;
    lab.leader().await;
    // Both controllers past their JetStream setup and hearing agents: a loss before that is
    // part of starting up and raises no bus_lost alert.
    for i in 0..lab.controllers.len() {
        lab.more_events(i, 10.0).await;
    }
    let c = lab.cluster();
    c.node(0).stop().await.unwrap();
    c.node(1).stop().await.unwrap();
    // Without JetStream quorum the lease cannot be renewed: within a lease nobody acts.
    let lost = Instant::now();
    wait_for("nobody acting", DEADLINE, || async {
        let mut any = false;
        for ctl in &lab.controllers {
            any |= ctl.acting().await == Some(true);
        }
        (!any).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    assert!(
        lost.elapsed() <= LEASE + Duration::from_secs(1),
        "stopped acting after {:?}",
        lost.elapsed()
    );
    // Site1 dies while the bus has no quorum; the agents keep reporting on the surviving node.
    lab.site1_dies().await;
    let survivor = async_nats::connect(c.node(2).url()).await.unwrap();
    let mut sub = survivor.subscribe("sitewarden.v1.obs.>").await.unwrap();
    let mut failures = 0;
    let until = Instant::now() + DEADLINE;
    while failures < 12 {
        use futures::StreamExt;
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.next()).await {
            Ok(Some(m)) if String::from_utf8_lossy(&m.payload).contains("\"outcome\":\"fail\"") => {
                failures += 1
            }
            Ok(Some(_)) => {}
            _ => panic!(
                "only {failures} failing probes within {DEADLINE:?}\n{}",
                lab.logs()
            ),
        }
    }
    assert!(
        lab.successful_patches().is_empty(),
        "no DNS change without the bus: {:#?}",
        lab.patches()
    );
    for ctl in &lab.controllers {
        assert_ne!(ctl.acting().await, Some(true));
    }
    // Each controller told humans (journal and chat sinks; the audit stream is out of reach).
    for ctl in &lab.controllers {
        wait_for("the bus_lost alert", DEADLINE, || async {
            ctl.log_tail(400)
                .contains("ALERT critical bus_lost")
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    }
    // The history is checked once the bus has its quorum back (the audit stream lives on it).
    c.node(0).restart().await.unwrap();
    c.node(1).restart().await.unwrap();
    // With its quorum back the bus lets the leader act on what the agents saw meanwhile.
    lab.wait_record(SITE2).await;
    let leader = lab.leader().await;
    lab.more_events(leader, 20.0).await;
    assert_eq!(
        lab.successful_patches().len(),
        1,
        "{:#?}\n{}",
        lab.patches(),
        lab.logs()
    );
    invariants_hold(&lab).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_three_site_bus_when_one_node_dies_then_nothing_flips_and_a_site_failure_still_moves_mail_once()
 {
    let lab = HaLab::start_cluster(LabOptions::default()).await;
    lab.leader().await;
    // The hardest node to lose: the one leading the events stream (and holding any consumer
    // placed with it).
    let nodes = lab.cluster().nodes();
    let leader_name = wait_for("the events stream's leader", DEADLINE, || async {
        nodes[0].stream_leader("SITEWARDEN_EVENTS").await
    })
    .await
    .unwrap();
    let victim = nodes.iter().position(|n| n.name() == leader_name).unwrap();
    nodes[victim].stop().await.unwrap();
    // Work goes on: an actor remains (the same leader, or one clean handover) and hears agents.
    let leader = lab.leader().await;
    lab.more_events(leader, 20.0).await;
    assert!(
        lab.successful_patches().is_empty(),
        "a lost NATS node alone moved nothing"
    );
    lab.site1_dies().await;
    lab.wait_record(SITE2).await;
    let leader = lab.leader().await;
    lab.more_events(leader, 20.0).await;
    assert_eq!(
        lab.successful_patches().len(),
        1,
        "{:#?}\n{}",
        lab.patches(),
        lab.logs()
    );
    invariants_hold(&lab).await;
}
