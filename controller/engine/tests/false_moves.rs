//! Stories of the moves sitewarden must never make: two observers' short failures that never
//! overlap, every site recovering at once after a total outage, a cold start with one site slow
//! to report, and an agent whose clock is off by less than the skew tolerance.

mod support;

use chrono::TimeDelta;
use sitewarden_contract::{Outcome, SiteId};
use sitewarden_engine::Epoch;
use sitewarden_engine::{
    AlertKind, Command, Engine, Input, LeadershipChange, ProviderReport, Rule, Severity, Verdict,
};
use support::{Story, config, t};

const MAIL: &str = "mail.example.com";

fn site(s: &str) -> SiteId {
    SiteId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn when_two_observers_lose_site1_one_after_the_other_then_site1_is_never_down() {
    let mut story = Story::healthy(config(""));
    // The witness loses its view of site1 for 8 s (4 rounds, past fall = 3) and recovers; a round
    // later site2's agent loses it for 8 s. Never two failing at the same time.
    let mut round = 0u32;
    let mut verdicts = Vec::new();
    while story.now < t(120) {
        let witness_blind = (0..4).contains(&round);
        let site2_blind = (5..9).contains(&round);
        story.round(&|p| {
            let blind = (p.agent == "witness-agent1" && witness_blind)
                || (p.agent == "site2-agent1" && site2_blind);
            if blind && p.to == "site1" {
                Outcome::Fail
            } else {
                Outcome::Pass
            }
        });
        verdicts.push(story.state.sites[&site("site1")].verdict);
        round += 1;
    }
    assert!(verdicts.iter().all(|v| *v != Verdict::Down), "{verdicts:?}");
    assert!(
        story.set_records_for(MAIL).is_empty(),
        "{:?}",
        story.set_records()
    );
    assert_eq!(story.target(MAIL).as_deref(), Some("mail-rr.example.com"));
}

#[test]
fn when_every_site_recovers_at_once_after_a_total_outage_then_mail_stays_on_mail_rr() {
    for phase in 0..3 {
        let mut story = Story::healthy(config(""));
        story.run_until(t(60), |_| Outcome::Fail);
        assert_eq!(story.rule(MAIL), Some(Rule::FailStaticAllDown));
        assert!(story.set_records_for(MAIL).is_empty());
        // Every server comes back in the same round; `phase` shifts which site's first pass the
        // engine hears first.
        story.run_until(t(60 + 2 * phase), |p| {
            if p.to == "site1" {
                Outcome::Pass
            } else {
                Outcome::Fail
            }
        });
        story.run_until(t(900), |_| Outcome::Pass);
        assert!(
            story.set_records_for(MAIL).is_empty(),
            "phase {phase}: {:?}",
            story.set_records_for(MAIL)
        );
        assert_eq!(story.target(MAIL).as_deref(), Some("mail-rr.example.com"));
    }
}

#[test]
fn when_site2_recovers_ten_seconds_after_site1_then_mail_does_not_move() {
    // Both sites dead, site1 back at t=60, site2 at t=70: site2 is waited for while it rises.
    let mut story = Story::healthy(config(""));
    story.run_until(t(60), |_| Outcome::Fail);
    story.run_until(t(70), |p| {
        if p.to == "site1" {
            Outcome::Pass
        } else {
            Outcome::Fail
        }
    });
    story.run_until(t(900), |_| Outcome::Pass);
    // site2 was Down (seen so from outside) while site1 was Up for a moment: a real outage of
    // site2, so a move is allowed — but only to a target whose sites are all Up.
    for (_, r) in story.set_records_for(MAIL) {
        assert_ne!(r.target, "mail-site2.example.com", "{r:?}");
    }
}

/// A fresh leader whose agents start reporting at different times.
fn cold_start(site2_reports_from: i64, content_known: bool) -> Story {
    let engine = Engine::new(config(""));
    let state = engine.initial_state();
    let mut story = Story {
        engine,
        state,
        now: t(0),
        seq: Default::default(),
        log: Vec::new(),
        auto_ack: true,
        silent: vec!["site2-agent1".to_owned()],
        dag_site: "site1".to_owned(),
        skew_ms: Default::default(),
    };
    story.input(Input::Leadership(LeadershipChange {
        is_leader: true,
        epoch: Epoch(3),
    }));
    if content_known {
        story.report_current(MAIL, "mail-rr.example.com");
        story.report_current("owa.example.com", "owa-site1.example.com");
    }
    // Until site2's agent reports, the witness cannot see site2 either (it starts late too).
    let late = t(site2_reports_from);
    while story.now < t(600) {
        let now = story.now;
        if now >= late {
            story.silent.clear();
        }
        story.round_partial(&|p| {
            if p.to == "site2" && now < late {
                None
            } else {
                Some(Outcome::Pass)
            }
        });
    }
    story
}

#[test]
fn given_a_cold_start_with_the_record_unread_then_nothing_is_written_until_it_is_read() {
    // Every site reports from t=40 s but the provider never answers a read: without the
    // record's content the engine cannot tell its own write from a human's edit, so it writes
    // nothing, and says so once the start-up grace is over (here when every site is first Up,
    // just after t=40 s).
    let mut story = cold_start(40, false);
    assert!(story.set_records().is_empty(), "{:?}", story.set_records());
    assert_eq!(story.rule(MAIL), Some(Rule::AwaitingRecord));
    let unread: Vec<_> = story
        .alerts()
        .into_iter()
        .filter(|a| a.kind == AlertKind::FailStatic && a.subject == MAIL)
        .map(|a| (a.severity, a.text.clone()))
        .collect();
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert_eq!(unread[0].0, Severity::Warning);
    assert!(unread[0].1.contains("has not been read yet"), "{unread:?}");
    let raised_at = story
        .log
        .iter()
        .find(|(_, c)| matches!(c, Command::Alert(a) if a.kind == AlertKind::FailStatic && a.subject == MAIL))
        .map(|(at, _)| *at);
    assert!(
        raised_at.is_some_and(|at| at >= t(40)),
        "alerted at {raised_at:?}, inside the start-up grace"
    );
    // The read arrives: the record already holds the preferred target; nothing moves and the
    // warning is resolved.
    let logged = story.log.len();
    story.report_current(MAIL, "mail-rr.example.com");
    story.round(&|_| Outcome::Pass);
    assert!(story.set_records_for(MAIL).is_empty());
    assert_eq!(story.rule(MAIL), Some(Rule::Steady));
    assert!(
        story.log[logged..].iter().any(
            |(_, c)| matches!(c, Command::Alert(a) if a.kind == AlertKind::Resolved && a.subject == MAIL)
        ),
        "{:?}",
        &story.log[logged..]
    );
}

#[test]
fn given_a_cold_start_with_site2_slow_then_no_transitional_alert_is_raised() {
    let story = cold_start(40, true);
    assert!(story.set_records_for(MAIL).is_empty());
    let alerts: Vec<_> = story
        .alerts()
        .into_iter()
        .map(|a| (a.kind, a.subject.clone(), a.text.clone()))
        .collect();
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn given_a_cold_start_where_site2_never_reports_then_mail_stays_and_one_alert_says_why() {
    let story = cold_start(10_000, true);
    assert!(story.set_records_for(MAIL).is_empty());
    assert_eq!(story.rule(MAIL), Some(Rule::FailStaticUnknown));
    // After the start-up grace: site2 is Unknown (one alert) and mail fails static (one alert).
    assert_eq!(
        story.alerts_of(AlertKind::SiteVerdict, Severity::Warning),
        1
    );
    assert_eq!(story.alerts_of(AlertKind::FailStatic, Severity::Warning), 1);
}

#[test]
fn when_the_record_is_missing_then_nothing_is_issued_and_one_alert_names_the_fix() {
    let mut story = Story::healthy(config(""));
    story.input(Input::Provider(ProviderReport::Current {
        namespace: MAIL.parse().unwrap(),
        target: None,
        generation: None,
        written: None,
    }));
    story.run_until(t(3600), support::sites_dead(&["site1"]));
    assert!(story.set_records_for(MAIL).is_empty());
    assert_eq!(story.rule(MAIL), Some(Rule::RecordMissing));
    let fails: Vec<_> = story
        .alerts()
        .into_iter()
        .filter(|a| a.subject == MAIL && a.kind == AlertKind::FailStatic)
        .map(|a| a.text.clone())
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].contains("create it once"), "{}", fails[0]);
    // Created by hand (marker generation 0): the next failover works at once.
    story.report_current(MAIL, "mail-rr.example.com");
    story.run_until(t(3610), support::sites_dead(&["site1"]));
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].1.target, "mail-site2.example.com");
}

#[test]
fn given_agents_whose_clocks_are_off_within_the_tolerance_then_nothing_changes() {
    for skew in [-4_900i64, -3_000, 4_000, 4_900] {
        let mut story = Story::healthy(config(""));
        story.skew_ms.insert("site1-agent1".to_owned(), skew);
        story.skew_ms.insert("witness-agent1".to_owned(), -skew);
        story.run_until(t(600), |_| Outcome::Pass);
        let troubles: Vec<_> = story
            .log
            .iter()
            .filter_map(|(_, c)| match c {
                Command::Alert(a) => Some(a.text.clone()),
                Command::SetRecord(r) => Some(format!("set {}", r.target)),
                Command::Audit(a) => match &a.event {
                    sitewarden_engine::AuditEvent::InputRejected { cause, .. } => {
                        Some(format!("rejected {cause:?}"))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert!(troubles.is_empty(), "skew {skew} ms: {troubles:?}");
        assert_eq!(story.state.sites[&site("site1")].verdict, Verdict::Up);
        // And a real outage is still seen in time.
        let dead_from = story.now;
        story.run_until(t(660), support::sites_dead(&["site1"]));
        let moves = story.set_records_for(MAIL);
        assert_eq!(moves.len(), 1, "skew {skew}: {moves:?}");
        assert!(
            moves[0].0 - dead_from <= TimeDelta::seconds(8),
            "skew {skew}"
        );
    }
}

#[test]
fn when_a_site_fails_again_soon_after_it_recovered_then_the_name_leaves_it_at_once() {
    // A long stale_after keeps site2's recovery "recent" while it fails again: its fresh,
    // simultaneous failures are evidence like any other, not a recovery to wait for.
    let mut story = Story::healthy(config(
        "stale_after = \"30s\"\nfailback_after = \"4s\"\nhold_down = \"4s\"",
    ));
    story.run_until(t(20), support::sites_dead(&["site2"]));
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site1.example.com")
    );
    // site2 recovers; mail fails back to the round-robin target.
    let mut back_at = None;
    while back_at.is_none() && story.now < t(80) {
        story.round(&|_| Outcome::Pass);
        if story.target(MAIL).as_deref() == Some("mail-rr.example.com") {
            back_at = Some(story.now);
        }
    }
    let back_at = back_at.unwrap_or_else(|| panic!("no failback: {:?}", story.rule(MAIL)));
    // site2 dies again at once: down after `fall` rounds, and mail leaves it in the same round.
    while story.now < back_at + TimeDelta::seconds(20) {
        story.round(&support::sites_dead(&["site2"]));
    }
    let moves = story.set_records_for(MAIL);
    let (left_at, last) = moves.last().copied().unwrap_or_else(|| panic!("{moves:?}"));
    assert_eq!(last.target, "mail-site1.example.com", "{moves:?}");
    assert_eq!(last.reason, Rule::MoveAwayFromDown);
    assert!(
        left_at <= back_at + TimeDelta::seconds(8),
        "left site2 {}s after it failed again",
        (left_at - back_at).num_seconds()
    );
}
