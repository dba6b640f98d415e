//! A mass move: many names leave a dead site in one step. The operator's channel gets one alert
//! for the decision per (from, to, rule) and one when the move has settled, not one per name;
//! the names still pending are in the state, the per-name settlements in the audit trail.

mod support;

use sitewarden_engine::fold::{FOLD_AT, MASS_SUBJECT};
use sitewarden_engine::{
    AlertKind, CallStats, Command, FailureClass, Input, ProviderReport, SetRecord,
};
use support::{Story, config_from, config_text, sites_dead, t};

/// The story's configuration with `n` more names on the two sites.
fn with_names(n: usize) -> String {
    let mut text = config_text("");
    for i in 0..n {
        text.push_str(&format!(
            "\n[[namespaces]]\nname = \"svc{i}.example.com\"\ncandidates = [\n  {{ target = \"svc-rr.example.com\", requires = [\"site1\", \"site2\"] }},\n  {{ target = \"svc-site2.example.com\", requires = [\"site2\"] }},\n]\n"
        ));
    }
    text
}

/// A healthy story with `n` extra names on their round robin, acknowledged by hand from now on.
fn story(n: usize) -> Story {
    let mut story = Story::healthy(config_from(&with_names(n)));
    for i in 0..n {
        story.report_current(&format!("svc{i}.example.com"), "svc-rr.example.com");
    }
    story.log.clear();
    story.auto_ack = false;
    story
}

fn mass_alerts(story: &Story) -> Vec<(AlertKind, String)> {
    story
        .alerts()
        .into_iter()
        .filter(|a| a.subject == MASS_SUBJECT)
        .map(|a| (a.kind, a.text.clone()))
        .collect()
}

fn per_name_alerts(story: &Story, kind: AlertKind) -> usize {
    story
        .alerts()
        .iter()
        .filter(|a| a.kind == kind && a.subject.starts_with("svc"))
        .count()
}

fn applied(r: &SetRecord) -> Input {
    Input::Provider(ProviderReport::Applied {
        namespace: r.namespace.clone(),
        generation: r.generation,
        calls: CallStats::default(),
    })
}

#[test]
fn when_site1_dies_under_forty_names_then_one_alert_says_the_move_and_one_its_end() {
    let mut story = story(40);
    story.run_until(t(30), sites_dead(&["site1"]));
    let moves: Vec<SetRecord> = story
        .set_records()
        .into_iter()
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(moves.len(), 41, "forty names and mail leave site1 together");
    assert_eq!(per_name_alerts(&story, AlertKind::DnsDecided), 0);
    let decided = mass_alerts(&story);
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert!(
        decided.iter().any(|(k, text)| *k == AlertKind::DnsDecided
            && text.starts_with("moving 40 names from svc-rr.example.com to svc-site2.example.com (move_away_from_down): svc0.example.com, svc1.example.com")
            && text.ends_with("and 35 more")),
        "{decided:?}"
    );
    assert!(story.state.mass.is_some(), "the move is in progress");
    for r in &moves {
        story.input(applied(r));
    }
    assert_eq!(per_name_alerts(&story, AlertKind::DnsApplied), 0);
    let all = mass_alerts(&story);
    let (kind, end) = all.last().expect("an alert ends the move");
    assert_eq!(*kind, AlertKind::DnsApplied);
    assert!(
        end.starts_with("mass move done: all 41 names applied and verified in"),
        "{end}"
    );
    assert!(story.state.mass.is_none());
}

#[test]
fn when_some_names_of_a_mass_move_fail_then_one_alert_says_so_and_the_end_names_them() {
    let mut story = story(20);
    story.run_until(t(30), sites_dead(&["site1"]));
    let moves: Vec<SetRecord> = story
        .set_records()
        .into_iter()
        .map(|(_, r)| r.clone())
        .collect();
    for (i, r) in moves.iter().enumerate() {
        if i % 7 == 3 {
            story.input(Input::Provider(ProviderReport::Failed {
                namespace: r.namespace.clone(),
                generation: r.generation,
                error: "the record points elsewhere".into(),
                class: FailureClass::Drift,
                calls: CallStats::default(),
            }));
        } else {
            story.input(applied(r));
        }
    }
    assert_eq!(per_name_alerts(&story, AlertKind::ApplyFailed), 0);
    let all = mass_alerts(&story);
    let failing: Vec<_> = all
        .iter()
        .filter(|(k, t)| *k == AlertKind::ApplyFailed && t.contains("changes are failing"))
        .collect();
    assert_eq!(failing.len(), 1, "one alert for the first failure: {all:?}");
    let (kind, end) = all.last().expect("an alert ends the move");
    assert_eq!(*kind, AlertKind::ApplyFailed);
    assert!(
        end.contains("18 of 21 names applied and verified, 3 not:"),
        "{end}"
    );
}

#[test]
fn a_move_of_a_few_names_alerts_name_by_name() {
    let mut story = story(FOLD_AT - 1);
    story.run_until(t(30), sites_dead(&["site1"]));
    assert!(mass_alerts(&story).is_empty());
    assert_eq!(per_name_alerts(&story, AlertKind::DnsDecided), FOLD_AT - 1);
    assert!(story.state.mass.is_none());
    let decided: Vec<_> = story
        .log
        .iter()
        .filter(|(_, c)| matches!(c, Command::Alert(a) if a.kind == AlertKind::DnsDecided))
        .collect();
    assert_eq!(decided.len(), FOLD_AT, "mail's and each svc name's");
}

#[test]
fn when_a_mass_move_hits_a_rate_limit_then_it_stays_one_move_until_the_retries_land() {
    let mut story = story(24);
    story.run_until(t(30), sites_dead(&["site1"]));
    let moves: Vec<SetRecord> = story
        .set_records()
        .into_iter()
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(moves.len(), 25);
    let decided_at = story.now;
    // The batch met a rate-limit block of 4 s: every name fails, each reported on its own.
    for r in &moves {
        story.input(Input::Provider(ProviderReport::Failed {
            namespace: r.namespace.clone(),
            generation: r.generation,
            error: "DNS provider rate limit hit (retry after 4 s); backing off".into(),
            class: FailureClass::RateLimited {
                retry_after_ms: Some(4_000),
            },
            calls: CallStats::default(),
        }));
    }
    let all = mass_alerts(&story);
    assert_eq!(
        all.iter()
            .filter(|(k, t)| *k == AlertKind::ApplyFailed && t.contains("changes are failing"))
            .count(),
        1,
        "{all:?}"
    );
    assert!(
        all.iter().all(|(k, _)| *k != AlertKind::DnsApplied),
        "waiting out a rate limit does not end the move: {all:?}"
    );
    assert!(story.state.mass.is_some(), "the move is still under way");

    // The retries fall due after the block and are decided again; the provider answers them
    // in two parts, the second a few seconds later.
    let before = story.set_records().len();
    story.run_until(t(40), sites_dead(&["site1"]));
    let retries: Vec<SetRecord> = story.set_records()[before..]
        .iter()
        .map(|(_, r)| (*r).clone())
        .collect();
    assert_eq!(retries.len(), 25, "every name is tried again");
    let (first, rest) = retries.split_at(20);
    for r in first {
        story.input(applied(r));
    }
    assert!(story.state.mass.is_some(), "five names still under way");
    story.run_until(t(42), sites_dead(&["site1"]));
    for r in rest {
        story.input(applied(r));
    }

    // One move, told in a few alerts: decided (mail and the svc names go to different
    // targets: two), failing, done; nothing name by name, the retries not announced again.
    for kind in [
        AlertKind::DnsDecided,
        AlertKind::DnsApplied,
        AlertKind::ApplyFailed,
        AlertKind::Resolved,
    ] {
        assert_eq!(per_name_alerts(&story, kind), 0, "{kind:?}");
    }
    let all = mass_alerts(&story);
    assert_eq!(all.len(), 4, "{all:?}");
    let (kind, end) = all.last().expect("an alert ends the move");
    assert_eq!(*kind, AlertKind::DnsApplied);
    let took = (story.now - decided_at).num_seconds();
    assert!(
        end.starts_with("mass move done: all 25 names applied and verified in") && took >= 10,
        "{end} ({took} s after the decision)"
    );
    assert!(story.state.mass.is_none());
}
