//! The fault suite: the whole system — a 3-node JetStream cluster (site1, site2, witness), two
//! emulated Exchange sites, agents in site1, site2 and the witness, the controller pair as
//! processes, the Cloudflare emulator as provider — under one fault per story. After every
//! story the recorded history (audit stream and the emulator's call log) must keep the
//! invariants of `common/lab.rs` ([`lab::check_invariants`]). Stories the HA suite
//! (`controller_ha.rs`) already tells in depth (leader crash, freeze, API faults) are not
//! repeated here.

mod common;
#[path = "common/controllers.rs"]
mod controllers;
#[path = "common/lab.rs"]
mod lab;

use common::DEADLINE;
use controllers::{HaLab, LabOptions, NAME, record_reads};
use lab::{Site1Probes, alerts, check_invariants, of_kind};
use serde_json::Value;
use sitewarden_tests::exchange::Behaviour;
use sitewarden_tests::fault_proxy::Fault as ProxyFault;
use sitewarden_tests::wait_for;

const RR: &str = "mail-rr.example.com";
const SITE2: &str = "mail-site2.example.com";

/// Reads the history and checks every invariant on it; returns it for the story's own checks.
async fn invariants_hold(lab: &HaLab) -> Vec<Value> {
    let history = lab.history().await;
    check_invariants(&history, &lab.cf.calls());
    history
}

/// Waits until the audit history satisfies `pred`.
async fn history_until(lab: &HaLab, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait_for(what, DEADLINE, || async {
        let h = lab.history().await;
        pred(&h).then_some(h)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()))
}

fn has_decision(h: &[Value], rule: &str) -> bool {
    of_kind(h, "decision").any(|r| r["event"]["evidence"]["rule"] == rule)
}

/// Verdict changes away from Up, or to Down or Unknown (the start brings every site from
/// Unknown to Up, possibly by way of Degraded while the first results come in).
fn bad_verdicts(h: &[Value]) -> Vec<&Value> {
    of_kind(h, "verdict")
        .filter(|r| {
            let e = &r["event"];
            e["from"] == "up" || e["to"] == "down" || e["to"] == "unknown"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_given_site1_dies_then_mail_flips_once_and_does_not_fail_back_before_the_window() {
    let lab = HaLab::start_cluster(LabOptions::default()).await;
    let leader = lab.leader().await;
    lab.site1_dies().await;
    lab.wait_record(SITE2).await;
    // Site1 comes back at once: it is Up again, but not for `failback_after` (30 s) yet.
    lab.site1_recovers().await;
    history_until(&lab, "site1 Up again, failback pending", |h| {
        has_decision(h, "failback_pending")
    })
    .await;
    lab.more_events(leader, 60.0).await;
    assert_eq!(
        lab.successful_patches().len(),
        1,
        "one flip: {:#?}",
        lab.patches()
    );
    assert_eq!(lab.record().0, SITE2, "no failback before the window");
    invariants_hold(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_given_site1_flaps_every_few_seconds_then_mail_flips_at_most_once() {
    let lab = HaLab::start_cluster(LabOptions::default()).await;
    let leader = lab.leader().await;
    let mut probes = Site1Probes::watch(&lab.bus.urls()[0]).await;
    // 12 site1 probes a second: down 5 s, up 8 s, down 5 s, up 6 s.
    lab::flap_site1(
        &lab,
        &mut probes,
        &[
            (Behaviour::Down, 60),
            (Behaviour::Healthy, 96),
            (Behaviour::Down, 60),
            (Behaviour::Healthy, 72),
        ],
    )
    .await;
    lab.more_events(leader, 30.0).await;
    let flips = lab.successful_patches();
    assert!(flips.len() <= 1, "at most one flip: {flips:#?}");
    let h = invariants_hold(&lab).await;
    assert!(
        of_kind(&h, "verdict").any(|r| r["event"]["site"] == "site1" && r["event"]["to"] == "down"),
        "the flapping was seen: {}",
        lab::summary(&h)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_given_site1_and_site2_cut_apart_while_the_witness_sees_both_then_nothing_flips() {
    let lab = HaLab::start_cluster(LabOptions {
        cross_site_proxies: true,
        ..LabOptions::default()
    })
    .await;
    let leader = lab.leader().await;
    let mut probes = Site1Probes::watch(&lab.bus.urls()[0]).await;
    lab.cross_site(ProxyFault::Blackhole);
    // Each site's agent now sees the other site fail (probe timeouts): wait for twice `fall`.
    let subject = "sitewarden.v1.obs.site2.site2-agent1.cas1.eas";
    let mut failed = 0;
    while failed < 6 {
        if probes.next_on(subject).await["outcome"] == "fail" {
            failed += 1;
        }
    }
    lab.more_events(leader, 60.0).await;
    assert!(
        lab.patches().is_empty(),
        "no flip on a partition: {:#?}",
        lab.patches()
    );
    assert_eq!(lab.record().0, RR);
    let h = invariants_hold(&lab).await;
    assert!(bad_verdicts(&h).is_empty(), "{}", lab::summary(&h));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_given_someone_edits_the_record_by_hand_then_drift_is_alerted_and_not_fought() {
    let lab = HaLab::start_cluster(LabOptions {
        controller_extra: "reconcile_every = \"5s\"".into(),
        ..LabOptions::default()
    })
    .await;
    let leader = lab.leader().await;
    let by_hand = "mail-legacy.example.net";
    assert!(
        lab.cf
            .set_record_content(NAME, by_hand, Some("edited by hand"))
    );
    history_until(&lab, "the drift alert", |h| !alerts(h, "drift").is_empty()).await;
    // Two more reconcile reads after the alert: the controllers looked again and left it.
    let reads = record_reads(&lab.cf);
    let cf = &lab.cf;
    wait_for("two more reads of the record", DEADLINE, || async {
        (record_reads(cf) >= reads + 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    lab.more_events(leader, 20.0).await;
    assert!(lab.patches().is_empty(), "no fight: {:#?}", lab.patches());
    assert_eq!(lab.record().0, by_hand);
    invariants_hold(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_given_both_controllers_start_at_the_same_moment_then_exactly_one_leads() {
    // HaLab spawns both processes back to back, before either has reached the bus.
    let lab = HaLab::start_cluster(LabOptions::default()).await;
    let leader = lab.leader().await;
    lab.more_events(leader, 30.0).await;
    assert_eq!(lab.leader().await, leader, "the same single leader");
    let epoch = lab.controllers[leader].epoch().await.unwrap();
    let seen_by_standby = lab.controllers[1 - leader].epoch().await.unwrap();
    assert!(
        seen_by_standby <= epoch,
        "standby {seen_by_standby} vs leader {epoch}"
    );
    let h = invariants_hold(&lab).await;
    let terms: Vec<(String, u64)> = of_kind(&h, "leadership")
        .filter(|r| r["event"]["is_leader"] == true)
        .map(|r| {
            (
                r["controller"].as_str().unwrap_or("").to_owned(),
                r["event"]["epoch"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(!terms.is_empty(), "{}", lab::summary(&h));
    for t in &terms {
        assert_eq!(
            t,
            &(lab.controllers[leader].id.clone(), epoch),
            "one term only: {terms:?}"
        );
    }
    assert!(lab.patches().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_given_hostile_events_on_the_bus_then_they_are_refused_and_nothing_changes() {
    let lab = HaLab::start_cluster(LabOptions::default()).await;
    let leader = lab.leader().await;
    let url = lab.bus.urls()[0].clone();
    let mut probes = Site1Probes::watch(&url).await;
    let subject = "sitewarden.v1.obs.site2.site2-agent1.cas1.eas";
    let real = probes.next_on(subject).await;
    let client = async_nats::connect(&url).await.unwrap();
    assert!(
        client
            .publish(subject, lab::oversized_event(&real).into())
            .await
            .is_err(),
        "the bus refuses an event over max_payload"
    );
    for (subject, payload, what) in lab::hostile_events(subject, &real) {
        client
            .publish(subject, payload.into())
            .await
            .unwrap_or_else(|e| panic!("publishing {what}: {e}"));
    }
    client.flush().await.unwrap();
    let http = lab.controllers[leader].http;
    for cause in ["undecodable", "subject_mismatch"] {
        wait_for(cause, DEADLINE, || async {
            let n =
                common::metric(http, "sitewarden_controller_events_rejected_total", cause).await?;
            (n >= 1.0).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    }
    let refused = |h: &[Value], cause: &str| {
        of_kind(h, "input_rejected").any(|r| r["event"]["cause"] == cause)
    };
    history_until(&lab, "every refusal audited", |h| {
        [
            "undecodable",
            "subject_mismatch",
            "agent_site_mismatch",
            "out_of_order",
            "future",
        ]
        .iter()
        .all(|c| refused(h, c))
    })
    .await;
    lab.more_events(leader, 30.0).await;
    assert!(lab.patches().is_empty(), "{:#?}", lab.patches());
    let h = invariants_hold(&lab).await;
    assert!(bad_verdicts(&h).is_empty(), "{}", lab::summary(&h));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_given_every_agent_stops_then_the_controllers_fail_static_and_say_so() {
    let mut lab = HaLab::start_cluster(LabOptions::default()).await;
    let leader = lab.leader().await;
    lab.more_events(leader, 20.0).await;
    lab.stop_agents().await;
    let h = history_until(
        &lab,
        "agent_silent for every agent, then fail static",
        |h| {
            let silent = alerts(h, "agent_silent");
            ["site1-agent1", "site2-agent1", "witness-agent1"]
                .iter()
                .all(|a| silent.iter().any(|s| s["subject"] == *a))
                && !alerts(h, "fail_static").is_empty()
        },
    )
    .await;
    assert!(
        of_kind(&h, "verdict").any(|r| r["event"]["to"] == "unknown"),
        "sites went Unknown, not Down: {}",
        lab::summary(&h)
    );
    assert!(
        !of_kind(&h, "verdict").any(|r| r["event"]["to"] == "down"),
        "{}",
        lab::summary(&h)
    );
    assert!(lab.patches().is_empty(), "{:#?}", lab.patches());
    assert_eq!(lab.record().0, RR);
    invariants_hold(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_given_nats_nodes_die_then_one_loss_flips_nothing_and_two_freeze_dns() {
    let lab = HaLab::start_cluster(LabOptions::default()).await;
    lab.leader().await;
    // Both controllers past their JetStream setup and hearing agents: only a loss after that
    // is news (a controller still setting up raises no bus_lost alert).
    for i in 0..lab.controllers.len() {
        lab.more_events(i, 10.0).await;
    }
    let c = lab.cluster();
    c.node(2).stop().await.unwrap();
    let leader = lab.leader().await;
    lab.more_events(leader, 20.0).await;
    assert!(lab.patches().is_empty(), "one lost node moved nothing");

    c.node(1).stop().await.unwrap();
    wait_for("nobody acting", DEADLINE, || async {
        let mut any = false;
        for ctl in &lab.controllers {
            any |= ctl.acting().await == Some(true);
        }
        (!any).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    for ctl in &lab.controllers {
        wait_for("the bus_lost alert", DEADLINE, || async {
            ctl.log_tail(400)
                .contains("ALERT Critical BusLost")
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    }
    assert!(lab.patches().is_empty(), "no DNS change without the bus");

    c.node(1).restart().await.unwrap();
    c.node(2).restart().await.unwrap();
    let leader = lab.leader().await;
    lab.more_events(leader, 20.0).await;
    assert!(lab.patches().is_empty(), "{:#?}", lab.patches());
    assert_eq!(lab.record().0, RR);
    invariants_hold(&lab).await;
}
