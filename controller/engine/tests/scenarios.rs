//! Incident stories with virtual time: what the engine does when sites, observers and operators
//! misbehave. Each test reads "given …, when …, then …"; the clock is a value, so ten minutes of
//! incident take milliseconds.

mod support;

use sitewarden_contract::{Outcome, SiteId};
use sitewarden_engine::Epoch;
use sitewarden_engine::{
    AlertKind, AuditEvent, Command, FreezeScope, OverrideAction, ReleaseTarget, Rule, Severity,
    Verdict,
};
use support::{Story, config, config_from, config_text, sites_dead, t};

const MAIL: &str = "mail.example.com";
const OWA: &str = "owa.example.com";

fn site(s: &str) -> SiteId {
    SiteId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn verdict(story: &Story, s: &str) -> Verdict {
    story.state.sites[&site(s)].verdict
}

#[test]
fn given_two_healthy_sites_then_both_are_up_and_nothing_changes() {
    let mut story = Story::healthy(config(""));
    story.run_until(t(600), |_| Outcome::Pass);
    assert_eq!(verdict(&story, "site1"), Verdict::Up);
    assert_eq!(verdict(&story, "site2"), Verdict::Up);
    assert!(story.set_records().is_empty());
    assert_eq!(story.target(MAIL).as_deref(), Some("mail-rr.example.com"));
}

#[test]
fn when_one_observer_flaps_then_nothing_changes() {
    let mut story = Story::healthy(config(""));
    // site2's agent sees site1 fail three times, pass five times, over and over.
    let mut round = 0u32;
    while story.now < t(900) {
        let failing = round % 8 < 3;
        story.round(&|p| {
            if p.agent == "site2-agent1" && p.to == "site1" && failing {
                Outcome::Fail
            } else {
                Outcome::Pass
            }
        });
        round += 1;
    }
    assert!(story.set_records().is_empty(), "{:?}", story.set_records());
    assert_eq!(verdict(&story, "site1"), Verdict::Up);
}

#[test]
fn when_one_of_two_cas_servers_dies_then_site_is_degraded_and_nothing_changes() {
    let mut story = Story::healthy(config(""));
    story.run_until(t(600), |p| {
        if p.server == "cas1" {
            Outcome::Fail
        } else {
            Outcome::Pass
        }
    });
    assert_eq!(verdict(&story, "site1"), Verdict::Degraded);
    assert!(story.set_records().is_empty());
    assert_eq!(
        story.alerts_of(AlertKind::SiteVerdict, Severity::Warning),
        1
    );
}

#[test]
fn when_cas1_answers_500_then_the_evidence_shows_each_observers_status_code_and_latency() {
    let mut story = Story::healthy(config(""));
    for _ in 0..3 {
        for (agent, from) in [
            ("site1-agent1", "site1"),
            ("site2-agent1", "site2"),
            ("witness-agent1", "witness"),
        ] {
            let mut o = story.observation(agent, from, "site1", "cas1", Outcome::Fail);
            o.http_status = Some(500);
            o.latency_ms = 2345;
            o.error_class = Some(sitewarden_contract::ErrorClass::HttpStatus);
            story.input(sitewarden_engine::Input::Observation(o));
        }
        story.now += chrono::TimeDelta::seconds(2);
    }
    let x = story
        .engine
        .explain(&story.state, &MAIL.parse().unwrap())
        .unwrap_or_else(|| panic!("explained"));
    let cas1 = x.sites[&site("site1")]
        .components
        .iter()
        .find(|c| c.server.as_str() == "cas1")
        .unwrap_or_else(|| panic!("cas1"));
    assert_eq!(cas1.observers.len(), 3, "{cas1:?}");
    for o in &cas1.observers {
        assert_eq!(o.http_status, Some(500), "{o:?}");
        assert_eq!(o.latency_ms, Some(2345), "{o:?}");
    }
    // The passing servers show their latest result too (the story's probes carry no status).
    let cas2 = x.sites[&site("site1")]
        .components
        .iter()
        .find(|c| c.server.as_str() == "cas2")
        .unwrap_or_else(|| panic!("cas2"));
    assert!(
        cas2.observers
            .iter()
            .all(|o| o.http_status.is_none() && o.latency_ms == Some(12)),
        "{cas2:?}"
    );
}

#[test]
fn given_a_mixed_case_name_and_target_in_config_when_site1_dies_then_mail_moves_by_its_lowercase_name()
 {
    // The operator wrote the name and a target in mixed case with a trailing dot; the provider
    // and the API speak lowercase. All of them must mean the same record.
    let text = config_text("")
        .replace(
            "name = \"mail.example.com\"",
            "name = \"Mail.Example.COM.\"",
        )
        .replace("\"mail-site2.example.com\"", "\"MAIL-Site2.Example.com\"");
    let cfg = config_from(&text);
    assert!(
        cfg.namespaces.contains_key(MAIL),
        "{:?}",
        cfg.namespaces.keys()
    );
    let mut story = Story::healthy(cfg);
    assert_eq!(story.target(MAIL).as_deref(), Some("mail-rr.example.com"));
    story.run_until(t(60), sites_dead(&["site1"]));
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].1.namespace, MAIL);
    assert_eq!(moves[0].1.target, "mail-site2.example.com");
    // The provider confirms in lowercase: the change settles, nothing is seen as drift.
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site2.example.com")
    );
    let explained = story
        .engine
        .explain(&story.state, &"MAIL.example.com".parse().unwrap());
    assert!(explained.is_some_and(|e| e.drift.is_none()));
}

#[test]
fn when_a_check_fails_fewer_times_than_fall_then_explain_says_passing_but_the_last_results_failed()
{
    let mut story = Story::healthy(config(""));
    for _ in 0..2 {
        let o = story.observation("witness-agent1", "witness", "site1", "cas1", Outcome::Fail);
        story.input(sitewarden_engine::Input::Observation(o));
        story.now += chrono::TimeDelta::seconds(1);
    }
    let text = story
        .engine
        .explain(&story.state, &MAIL.parse().unwrap())
        .map(|e| e.to_string())
        .unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("witness-agent1 (witness) check eas: passing since"))
        .unwrap_or_else(|| panic!("no witness line for cas1:\n{text}"));
    assert!(
        line.contains("(but the last 2 result(s) failed, since "),
        "a streak short of fall is not called a run of passes: {line}"
    );
}

#[test]
fn when_site1_dies_seen_inside_and_outside_then_mail_moves_within_fall_times_interval() {
    let mut story = Story::healthy(config(""));
    let first_failed_probe = story.now;
    story.run_until(t(60), sites_dead(&["site1"]));
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 1, "{moves:?}");
    let (at, rec) = moves[0];
    assert_eq!(rec.target, "mail-site2.example.com");
    assert_eq!(rec.reason, Rule::MoveAwayFromDown);
    assert_eq!(rec.ttl_secs, 60);
    assert_eq!(rec.epoch, Epoch(7));
    assert!(
        at - first_failed_probe <= chrono::TimeDelta::seconds(6),
        "moved at {at}"
    );
    assert_eq!(verdict(&story, "site1"), Verdict::Down);
    assert_eq!(
        story.alerts_of(AlertKind::SiteVerdict, Severity::Critical),
        1
    );
    // The servers fell one by one within a round: the passing Degraded is not news, and a
    // "clients are still served" warning beside the Down would contradict it.
    assert_eq!(
        story.alerts_of(AlertKind::SiteVerdict, Severity::Warning),
        0,
        "{:?}",
        story.alerts()
    );
    // The decision carries its evidence: site1 Down, with observers outside the site failing.
    let site1 = &rec.evidence.sites[&site("site1")];
    assert_eq!(site1.verdict, Verdict::Down);
    assert!(
        site1
            .components
            .iter()
            .all(|c| c.observers.iter().any(|o| o.site.as_str() != "site1"))
    );
    // And explain says why in words.
    let text = story
        .engine
        .explain(&story.state, &MAIL.parse().unwrap())
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("rule move_away_from_down: "), "{text}");
    assert!(
        text.contains("next: it returns to its preferred target once"),
        "{text}"
    );
    assert!(
        text.contains("witness-agent1 (witness) check eas: failing since "),
        "{text}"
    );
    assert!(text.contains("site site1: Down"), "{text}");
    // Times to the second, as an operator reads them: no nanoseconds, no `+00:00`.
    assert!(!text.contains("+00:00") && !text.contains(".000"), "{text}");
    // Once moved, the name says why it is off its preferred target, and since when.
    story.run_until(t(70), sites_dead(&["site1"]));
    assert_eq!(story.rule(MAIL), Some(Rule::FailedOver));
    let note = story.note(MAIL);
    assert!(
        note.contains("instead of mail-rr.example.com: site1 Down since 2023-"),
        "{note}"
    );
    // explain sums up each server's quorum in a line and says what happens next.
    let text = story
        .engine
        .explain(&story.state, &MAIL.parse().unwrap())
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("cas1 activesync: down since"), "{text}");
    assert!(
        text.contains("observers failing (2 outside site1), quorum 2"),
        "{text}"
    );
    assert!(
        text.contains("  next: it returns to its preferred target"),
        "{text}"
    );
}

#[test]
fn when_site1_agent_falls_silent_while_outside_observers_see_site1_healthy_then_nothing_changes() {
    let mut story = Story::healthy(config(""));
    story.silent.push("site1-agent1".to_owned());
    story.run_until(t(600), |_| Outcome::Pass);
    assert!(story.set_records().is_empty());
    assert_eq!(verdict(&story, "site1"), Verdict::Up);
}

#[test]
fn when_only_site1_itself_sees_site1_fail_then_it_is_not_down() {
    let mut story = Story::healthy(config("min_observers = 1"));
    story.silent.push("site2-agent1".to_owned());
    story.silent.push("witness-agent1".to_owned());
    story.run_until(t(120), sites_dead(&["site1"]));
    assert_ne!(verdict(&story, "site1"), Verdict::Down);
    assert!(story.set_records_for(MAIL).is_empty());
}

#[test]
fn when_sites_are_partitioned_and_the_witness_sees_both_up_then_nothing_changes() {
    let mut story = Story::healthy(config(""));
    story.run_until(t(600), |p| {
        let cross =
            (p.from == "site1" && p.to == "site2") || (p.from == "site2" && p.to == "site1");
        if cross { Outcome::Fail } else { Outcome::Pass }
    });
    assert!(story.set_records().is_empty());
    assert_eq!(verdict(&story, "site1"), Verdict::Up);
    assert_eq!(verdict(&story, "site2"), Verdict::Up);
    assert_eq!(story.rule(MAIL), Some(Rule::Partition));
    assert!(story.alerts_of(AlertKind::Partition, Severity::Warning) >= 1);
}

#[test]
fn when_sites_are_partitioned_without_a_witness_then_nothing_changes() {
    let mut story = Story::healthy(config(""));
    story.silent.push("witness-agent1".to_owned());
    story.run_until(t(600), |p| {
        let cross =
            (p.from == "site1" && p.to == "site2") || (p.from == "site2" && p.to == "site1");
        if cross { Outcome::Fail } else { Outcome::Pass }
    });
    assert!(story.set_records().is_empty());
    assert_eq!(verdict(&story, "site1"), Verdict::Unknown);
}

#[test]
fn when_both_sites_die_then_nothing_changes_and_a_critical_alert_is_raised() {
    let mut story = Story::healthy(config(""));
    story.run_until(t(600), sites_dead(&["site1", "site2"]));
    assert!(story.set_records().is_empty(), "{:?}", story.set_records());
    assert_eq!(verdict(&story, "site1"), Verdict::Down);
    assert_eq!(verdict(&story, "site2"), Verdict::Down);
    assert_eq!(story.rule(MAIL), Some(Rule::FailStaticAllDown));
    assert!(story.alerts_of(AlertKind::AllSitesDown, Severity::Critical) >= 1);
}

#[test]
fn when_site1_returns_then_mail_fails_back_after_the_stable_window_and_not_before() {
    let mut story = Story::healthy(config(""));
    story.run_until(t(30), sites_dead(&["site1"]));
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site2.example.com")
    );
    // The explanation holds the incident as data: off mail-rr, on mail-site2 since the move,
    // kept off by site1 Down, no failback time yet.
    let moved_at = story.set_records_for(MAIL)[0].0;
    let off = off_preferred(&story).unwrap_or_else(|| panic!("off its preferred target"));
    assert_eq!(off.preferred, "mail-rr.example.com");
    assert_eq!(off.target, "mail-site2.example.com");
    assert_eq!(off.since, Some(moved_at));
    assert_eq!(off.unroutable.len(), 1, "{off:?}");
    assert_eq!(off.unroutable[0].site, site("site1"));
    assert_eq!(off.unroutable[0].verdict, Verdict::Down);
    assert_eq!(
        off.unroutable[0].since,
        story.state.sites[&site("site1")].since
    );
    assert_eq!(off.failback_eligible_at, None);
    // site1 comes back at t=30; five passes later (t=38) it is Up again.
    story.run_until(t(637), |_| Outcome::Pass);
    assert_eq!(
        story.set_records_for(MAIL).len(),
        1,
        "no failback before 10 min of Up"
    );
    assert_eq!(story.rule(MAIL), Some(Rule::FailbackPending));
    // Nothing keeps it off any more but the wait, and the wait ends at the time the note says.
    let off = off_preferred(&story).unwrap_or_else(|| panic!("still off its preferred target"));
    assert_eq!(
        off.since,
        Some(moved_at),
        "the move is still the one at {moved_at}"
    );
    assert!(off.unroutable.is_empty(), "{off:?}");
    let eligible = off
        .failback_eligible_at
        .unwrap_or_else(|| panic!("a failback time: {off:?}"));
    assert!(
        eligible >= t(636) && eligible <= t(640),
        "eligible at {eligible}"
    );
    let words = eligible.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        story
            .note(MAIL)
            .ends_with(&format!("failback eligible at {words}")),
        "{}",
        story.note(MAIL)
    );
    story.run_until(t(700), |_| Outcome::Pass);
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 2);
    let (at, rec) = moves[1];
    assert_eq!(rec.target, "mail-rr.example.com");
    assert_eq!(rec.reason, Rule::Failback);
    assert!(at >= t(638) && at <= t(640), "failback at {at}");
    assert!(at >= eligible, "failback at {at}, eligible at {eligible}");
    assert_eq!(off_preferred(&story), None, "back on its preferred target");
}

fn off_preferred(story: &Story) -> Option<sitewarden_engine::explain::OffPreferred> {
    story
        .engine
        .explain(&story.state, &MAIL.parse().unwrap())
        .and_then(|x| x.off_preferred)
}

#[test]
fn given_manual_failback_then_only_an_operator_moves_mail_back() {
    let mut story = Story::healthy(config("failback = \"manual\""));
    story.run_until(t(30), sites_dead(&["site1"]));
    story.run_until(t(1800), |_| Outcome::Pass);
    assert_eq!(story.set_records_for(MAIL).len(), 1);
    assert_eq!(story.rule(MAIL), Some(Rule::FailbackManual));
    assert_eq!(
        story.alerts_of(AlertKind::FailbackAvailable, Severity::Info),
        1
    );
    story.operator(OverrideAction::Failback {
        namespace: MAIL.parse().unwrap(),
    });
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].1.target, "mail-rr.example.com");
    assert_eq!(moves[1].1.reason, Rule::ManualFailback);
    // Asking again is refused and audited, not acted on.
    let cmds = story.operator(OverrideAction::Failback {
        namespace: MAIL.parse().unwrap(),
    });
    assert!(cmds.iter().any(
        |c| matches!(c, Command::Audit(a) if matches!(a.event, AuditEvent::OverrideRejected { .. }))
    ));
}

#[test]
fn when_an_operator_pins_with_expiry_then_the_pin_wins_until_it_lapses() {
    let mut story = Story::healthy(config(""));
    story.operator(OverrideAction::Pin {
        namespace: MAIL.parse().unwrap(),
        target: "mail-site1.example.com".parse().unwrap(),
        expires: Some(t(120)),
    });
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].1.reason, Rule::Pinned);
    // Even site1 dying does not move a pinned name; it raises an alert instead.
    story.run_until(t(60), sites_dead(&["site1"]));
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site1.example.com")
    );
    assert!(story.alerts_of(AlertKind::OverrideTargetDown, Severity::Warning) >= 1);
    story.run_until(t(100), |_| Outcome::Pass);
    assert_eq!(story.set_records_for(MAIL).len(), 1);
    // At t=120 the pin lapses; site1 has been Up only since ~t=68, so failback waits, and
    // says until when.
    story.run_until(t(130), |_| Outcome::Pass);
    assert_eq!(story.rule(MAIL), Some(Rule::FailbackPending));
    assert!(
        story.note(MAIL).contains("failback eligible at 2023-"),
        "{}",
        story.note(MAIL)
    );
    story.run_until(t(700), |_| Outcome::Pass);
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].1.target, "mail-rr.example.com");
    assert_eq!(moves[1].1.reason, Rule::Failback);
}

#[test]
fn when_an_operator_drains_site1_then_mail_leaves_at_once_and_returns_after_release() {
    let mut story = Story::healthy(config(""));
    story.operator(OverrideAction::Drain {
        site: site("site1"),
        expires: None,
    });
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].1.target, "mail-site2.example.com");
    // The move says it is the drain, not an outage.
    assert_eq!(moves[0].1.reason, Rule::Drained);
    assert!(moves[0].1.evidence.sites[&site("site1")].drained);
    assert!(
        moves[0]
            .1
            .evidence
            .note
            .starts_with("mail-rr.example.com needs site1 drained by alice (story);"),
        "{}",
        moves[0].1.evidence.note
    );
    story.run_until(t(1000), |_| Outcome::Pass);
    assert_eq!(story.rule(MAIL), Some(Rule::Drained));
    let next = story
        .engine
        .explain(&story.state, &MAIL.parse().unwrap())
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        next.contains("next: it stays off its preferred target while the drain holds"),
        "{next}"
    );
    assert!(
        story.note(MAIL).contains("site1 drained by alice (story)"),
        "{}",
        story.note(MAIL)
    );
    assert_eq!(
        story.set_records_for(MAIL).len(),
        1,
        "a drained site is not failed back to"
    );
    story.operator(OverrideAction::Release {
        what: ReleaseTarget::Drain {
            site: site("site1"),
        },
    });
    let released = story.now;
    story.run_until(released + chrono::TimeDelta::seconds(590), |_| {
        Outcome::Pass
    });
    assert_eq!(
        story.set_records_for(MAIL).len(),
        1,
        "failback waits failback_after from the release"
    );
    story.run_until(released + chrono::TimeDelta::seconds(620), |_| {
        Outcome::Pass
    });
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].1.target, "mail-rr.example.com");
}

#[test]
fn when_frozen_then_even_a_dead_site_does_not_move_mail_until_release() {
    let mut story = Story::healthy(config(""));
    story.operator(OverrideAction::Freeze {
        scope: FreezeScope::All,
        expires: None,
    });
    story.run_until(t(120), sites_dead(&["site1"]));
    assert!(story.set_records().is_empty());
    assert_eq!(story.rule(MAIL), Some(Rule::Frozen));
    assert!(story.alerts_of(AlertKind::OverrideTargetDown, Severity::Critical) >= 1);
    story.operator(OverrideAction::Release {
        what: ReleaseTarget::Freeze {
            scope: FreezeScope::All,
        },
    });
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].1.target, "mail-site2.example.com");
    assert_eq!(moves[0].0, t(120));
}

#[test]
fn when_dag_fails_over_to_site2_then_owa_follows_only_once_site2_client_access_is_up() {
    let mut story = Story::healthy(config(""));
    // site2's servers go unobserved (its probes are lost): site2 becomes Unknown.
    let unobserved = |p: support::Probe<'_>| {
        if p.to == "site2" {
            None
        } else {
            Some(Outcome::Pass)
        }
    };
    while story.now < t(30) {
        story.round_partial(&unobserved);
    }
    assert_eq!(verdict(&story, "site2"), Verdict::Unknown);
    story.dag_site = "site2".to_owned();
    while story.now < t(60) {
        story.round_partial(&unobserved);
    }
    assert!(story.set_records_for(OWA).is_empty());
    assert_eq!(story.rule(OWA), Some(Rule::FollowTargetNotUp));
    // site2's probes come back; after `rise` passes it is Up and owa follows.
    story.run_until(t(90), |_| Outcome::Pass);
    let moves = story.set_records_for(OWA);
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].1.target, "owa-site2.example.com");
    assert_eq!(moves[0].1.reason, Rule::FollowMailbox);
    assert!(moves[0].0 <= t(72), "followed at {}", moves[0].0);
    // mail never moved: site2 was Unknown, not Down.
    assert!(story.set_records_for(MAIL).is_empty());
}

#[test]
fn when_the_dag_moves_back_during_hold_down_then_owa_waits_for_the_hold_down() {
    let mut story = Story::healthy(config(""));
    story.dag_site = "site2".to_owned();
    story.run_until(t(20), |_| Outcome::Pass);
    let moves = story.set_records_for(OWA);
    assert_eq!(moves.len(), 1);
    let first = moves[0].0;
    story.dag_site = "site1".to_owned();
    story.run_until(first + chrono::TimeDelta::seconds(298), |_| Outcome::Pass);
    assert_eq!(story.set_records_for(OWA).len(), 1);
    assert_eq!(story.rule(OWA), Some(Rule::HoldDown));
    story.run_until(first + chrono::TimeDelta::seconds(310), |_| Outcome::Pass);
    let moves = story.set_records_for(OWA);
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].1.target, "owa-site1.example.com");
    assert!(moves[1].0 - first >= chrono::TimeDelta::seconds(300));
}

#[test]
fn when_site1_comes_back_while_the_hold_down_runs_then_mail_stays_until_both_windows_pass() {
    let mut story = Story::healthy(config("failback_after = \"5m\"\nhold_down = \"5m\""));
    story.run_until(t(10), sites_dead(&["site1"]));
    let moved = story.set_records_for(MAIL)[0].0;
    // site1 is back at t=10, Up at ~t=18: inside the hold-down that started at `moved`.
    story.run_until(t(300), |_| Outcome::Pass);
    assert_eq!(story.set_records_for(MAIL).len(), 1);
    story.run_until(t(330), |_| Outcome::Pass);
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 2);
    assert!(moves[1].0 - moved >= chrono::TimeDelta::seconds(300));
    // site2 now dies: moving away from a Down target is an emergency and ignores the hold-down.
    let start = story.now;
    story.run_until(
        start + chrono::TimeDelta::seconds(10),
        sites_dead(&["site2"]),
    );
    let moves = story.set_records_for(MAIL);
    assert_eq!(moves.len(), 3);
    assert_eq!(moves[2].1.target, "mail-site1.example.com");
    assert_eq!(moves[2].1.reason, Rule::MoveAwayFromDown);
}

#[test]
fn given_a_standby_then_it_decides_the_same_but_only_records_what_it_would_do() {
    let mut story = Story::healthy(config(""));
    story.input(sitewarden_engine::Input::Leadership(
        sitewarden_engine::LeadershipChange {
            is_leader: false,
            epoch: Epoch(8),
        },
    ));
    story.run_until(t(30), sites_dead(&["site1"]));
    assert!(story.set_records().is_empty());
    let would = story.log.iter().filter(|(_, c)| matches!(c, Command::Audit(a) if matches!(&a.event, AuditEvent::Standby { command } if matches!(**command, Command::SetRecord(_))))).count();
    assert_eq!(would, 1);
    // Only what the controller says about itself (its role) goes out as an alert.
    assert!(story.log.iter().all(|(_, c)| match c {
        Command::Audit(_) => true,
        Command::Alert(a) => a.is_about_this_controller(),
        _ => false,
    }));
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site2.example.com")
    );
}

#[test]
fn when_the_events_stream_nears_its_cap_then_one_warning_names_the_publisher_and_is_resolved() {
    use sitewarden_engine::{Input, StreamFill};
    let mut story = Story::healthy(config(""));
    let fill = |bytes: u64, top: Option<(&str, u64)>| {
        Input::EventsStream(StreamFill {
            bytes,
            max_bytes: 1000,
            messages: 10,
            max_messages: 100_000,
            top_publisher: top.map(|(p, b)| (p.to_owned(), b)),
        })
    };
    // Below the mark, at it, while it stays above, while it sinks only a little: one alert.
    for (bytes, top) in [
        (500, None),
        (850, Some(("site1.site1-agent1", 900_000))),
        (990, Some(("site1.site1-agent1", 950_000))),
        (600, None),
    ] {
        story.input(fill(bytes, top));
    }
    let raised: Vec<_> = story
        .alerts()
        .into_iter()
        .filter(|a| a.kind == AlertKind::EventsNearCap)
        .map(|a| (a.severity, a.text.clone()))
        .collect();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].0, Severity::Warning);
    assert!(raised[0].1.contains("85%"), "{raised:?}");
    assert!(raised[0].1.contains("site1.site1-agent1"), "{raised:?}");
    assert_eq!(story.alerts_of(AlertKind::Resolved, Severity::Info), 0);
    // Back under half the mark: resolved once; a new crossing alerts again.
    story.input(fill(300, None));
    story.input(fill(200, None));
    assert_eq!(story.alerts_of(AlertKind::Resolved, Severity::Info), 1);
    story.input(fill(900, None));
    assert_eq!(
        story.alerts_of(AlertKind::EventsNearCap, Severity::Warning),
        2
    );
    // A standby's engine only audits it.
    let mut standby = Story::healthy(config(""));
    standby.input(Input::Leadership(sitewarden_engine::LeadershipChange {
        is_leader: false,
        epoch: Epoch(7),
    }));
    standby.log.clear();
    standby.input(fill(950, None));
    assert!(standby.alerts().is_empty());
}

#[test]
fn when_an_operator_pins_mail_to_a_down_site_then_it_is_refused_unless_forced() {
    let mut story = Story::healthy(config(""));
    story.run_until(t(60), sites_dead(&["site1"]));
    assert_eq!(verdict(&story, "site1"), Verdict::Down);
    let moves_before = story.set_records_for(MAIL).len();
    let pin = OverrideAction::Pin {
        namespace: MAIL.parse().unwrap(),
        target: "mail-site1.example.com".parse().unwrap(),
        expires: None,
    };
    let out = story.operator(pin.clone());
    let refused = out.iter().find_map(|c| match c {
        Command::Audit(a) => match &a.event {
            AuditEvent::OverrideRejected { reason, .. } => Some(reason.clone()),
            _ => None,
        },
        _ => None,
    });
    let reason = refused.expect("a pin to a Down site is refused");
    assert!(reason.contains("site1 is Down"), "{reason}");
    assert!(reason.contains("--force"), "says how to insist: {reason}");
    assert_eq!(
        story.set_records_for(MAIL).len(),
        moves_before,
        "nothing moved"
    );

    // Forced: done, marked in the audit (the request's force) and in a FORCED alert.
    let out = story.operator_forced(pin);
    assert!(out.iter().any(|c| matches!(c, Command::Audit(a)
        if matches!(&a.event, AuditEvent::Override(r) if r.force))));
    assert!(
        out.iter().any(|c| matches!(c, Command::Alert(a)
            if a.kind == AlertKind::OverrideTargetDown && a.text.starts_with("FORCED by alice"))),
        "{out:?}"
    );
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site1.example.com")
    );
}

#[test]
fn when_site2_is_down_a_drain_of_site1_that_strands_mail_is_refused_unless_forced() {
    let mut story = Story::healthy(config(""));
    story.run_until(t(60), sites_dead(&["site2"]));
    assert_eq!(verdict(&story, "site2"), Verdict::Down);
    let drain = OverrideAction::Drain {
        site: site("site1"),
        expires: None,
    };
    let out = story.operator(drain.clone());
    let refused = out.iter().any(|c| {
        matches!(c, Command::Audit(a)
        if matches!(&a.event, AuditEvent::OverrideRejected { reason, .. }
            if reason.contains("draining site1 would leave") && reason.contains(MAIL)))
    });
    assert!(refused, "{out:?}");
    assert!(!story.state.overrides.is_drained(&site("site1")));
    story.operator_forced(drain);
    assert!(story.state.overrides.is_drained(&site("site1")));

    // With both sites Up, the same drain is safe and needs no force.
    let mut healthy = Story::healthy(config(""));
    let out = healthy.operator(OverrideAction::Drain {
        site: site("site1"),
        expires: None,
    });
    assert!(!out.iter().any(|c| matches!(c, Command::Alert(_))
        && matches!(c, Command::Alert(a) if a.text.starts_with("FORCED"))));
    assert!(healthy.state.overrides.is_drained(&site("site1")));
}
