//! Stories of a provider that will not take a change: credentials refused for ten minutes, the
//! client-side budget empty for an hour, a rate limit with a long Retry-After, a record without
//! our marker, a record a human edited, a slow propagation. Each counts the provider calls and
//! the alerts an hour of it costs: retries follow the engine's schedule, each condition is
//! alerted once and resolved once.

mod support;

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::Outcome;
use sitewarden_engine::Generation;
use sitewarden_engine::{
    AlertKind, Command, FailureClass, Input, OverrideAction, ProviderReport, Rule, Severity,
};
use support::{Probe, Story, config, sites_dead, t};

const MAIL: &str = "mail.example.com";

/// Plays rounds until `end`, answering every new `SetRecord` for mail with `answer(now)`:
/// `Some(class)` fails it, `None` applies it. Returns the times of the attempts.
fn play(
    story: &mut Story,
    end: DateTime<Utc>,
    world: impl Fn(Probe<'_>) -> Outcome,
    answer: impl Fn(DateTime<Utc>) -> Option<FailureClass>,
) -> Vec<DateTime<Utc>> {
    story.auto_ack = false;
    let mut answered = story.set_records().len();
    let mut attempts = Vec::new();
    while story.now < end {
        story.round(&world);
        let new: Vec<(
            DateTime<Utc>,
            sitewarden_engine::Generation,
            sitewarden_contract::DnsName,
        )> = story.set_records()[answered..]
            .iter()
            .map(|(at, r)| (*at, r.generation, r.namespace.clone()))
            .collect();
        answered += new.len();
        for (at, generation, ns) in new {
            if ns != MAIL {
                continue;
            }
            attempts.push(at);
            let report = match answer(at) {
                Some(class) => ProviderReport::Failed {
                    namespace: ns,
                    generation,
                    error: format!("{class:?}"),
                    class,
                    calls: Default::default(),
                },
                None => ProviderReport::Applied {
                    namespace: ns,
                    generation,
                    calls: Default::default(),
                },
            };
            story.input(Input::Provider(report));
        }
    }
    attempts
}

fn alerts(story: &Story, kind: AlertKind) -> usize {
    story.alerts().iter().filter(|a| a.kind == kind).count()
}

#[test]
fn when_the_provider_refuses_the_credentials_for_ten_minutes_then_a_few_attempts_and_one_page() {
    let mut story = Story::healthy(config(""));
    let attempts = play(&mut story, t(1200), sites_dead(&["site1"]), |now| {
        (now < t(600)).then_some(FailureClass::Auth)
    });
    let failing = attempts.iter().filter(|a| **a < t(600)).count();
    // First attempt at once, then the slow schedule (retry_max 5 min, jittered 2.5–5 min).
    assert!((2..=5).contains(&failing), "{attempts:?}");
    assert_eq!(
        story.alerts_of(AlertKind::ProviderAuth, Severity::Critical),
        1
    );
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site2.example.com")
    );
    assert!(
        attempts.last().is_some_and(|a| *a <= t(900)),
        "{attempts:?}"
    );
    let resolved = story
        .alerts()
        .iter()
        .filter(|a| a.kind == AlertKind::Resolved && a.subject == "dns-provider")
        .count();
    assert_eq!(resolved, 1);
}

#[test]
fn when_the_budget_is_empty_for_an_hour_then_retries_back_off_to_once_a_minute_or_less() {
    let mut story = Story::healthy(config(""));
    let attempts = play(&mut story, t(3600), sites_dead(&["site1"]), |_| {
        Some(FailureClass::Budget)
    });
    let start = attempts[0];
    let late: Vec<_> = attempts
        .iter()
        .filter(|a| **a - start >= TimeDelta::seconds(60))
        .collect();
    for pair in late.windows(2) {
        assert!(
            *pair[1] - *pair[0] >= TimeDelta::seconds(60),
            "{attempts:?}"
        );
    }
    assert!(
        attempts.len() <= 8 + 59,
        "{} attempts in an hour",
        attempts.len()
    );
    assert!(
        attempts.len() <= 30,
        "{} attempts in an hour: {attempts:?}",
        attempts.len()
    );
    assert_eq!(alerts(&story, AlertKind::ApplyFailed), 1);
    assert_eq!(story.rule(MAIL), Some(Rule::RetryWait));
}

#[test]
fn when_rate_limited_with_a_long_retry_after_then_no_call_before_it() {
    let mut story = Story::healthy(config(""));
    let attempts = play(&mut story, t(900), sites_dead(&["site1"]), |now| {
        (now < t(30)).then_some(FailureClass::RateLimited {
            retry_after_ms: Some(300_000),
        })
    });
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(
        attempts[1] - attempts[0] >= TimeDelta::seconds(300),
        "{attempts:?}"
    );
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site2.example.com")
    );
}

#[test]
fn when_the_record_has_no_marker_then_no_call_is_made_and_one_alert_says_how_to_adopt() {
    let mut story = Story::healthy(config(""));
    story.report_unmarked(MAIL, "mail-rr.example.com");
    let attempts = play(&mut story, t(3600), sites_dead(&["site1"]), |_| None);
    assert!(attempts.is_empty(), "{attempts:?}");
    let drift: Vec<_> = story
        .alerts()
        .into_iter()
        .filter(|a| a.kind == AlertKind::Drift)
        .map(|a| a.text.clone())
        .collect();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(drift[0].contains("on_unmarked = \"adopt\""), "{}", drift[0]);
}

#[test]
fn when_a_name_adopts_unmarked_records_then_the_failover_goes_ahead() {
    let mut cfg = config("");
    if let Some(ns) = cfg.namespaces.get_mut(MAIL) {
        ns.on_unmarked = sitewarden_engine::config::UnmarkedPolicy::Adopt;
    }
    let mut story = Story::healthy(cfg);
    story.report_unmarked(MAIL, "mail-rr.example.com");
    let attempts = play(&mut story, t(60), sites_dead(&["site1"]), |_| None);
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        story.target(MAIL).as_deref(),
        Some("mail-site2.example.com")
    );
}

#[test]
fn when_a_human_moves_mail_to_another_candidate_then_it_is_never_moved_back_by_itself() {
    let mut story = Story::healthy(config(""));
    // Up for longer than failback_after; a human points mail at mail-site2 in the provider's
    // dashboard and keeps our comment (generation 0's marker, which wrote mail-rr).
    story.run_until(t(700), |_| Outcome::Pass);
    story.input(Input::Provider(ProviderReport::Current {
        namespace: MAIL.parse().unwrap(),
        target: Some("mail-site2.example.com".parse().unwrap()),
        generation: Some(Generation(0)),
        written: Some("mail-rr.example.com".parse().unwrap()),
    }));
    let attempts = play(&mut story, t(700 + 3600), |_| Outcome::Pass, |_| None);
    assert!(attempts.is_empty(), "{attempts:?}");
    assert_eq!(story.rule(MAIL), Some(Rule::Drift));
    assert_eq!(alerts(&story, AlertKind::Drift), 1);
    // Even a site failure does not make sitewarden fight the human's choice.
    let attempts = play(&mut story, t(4400), sites_dead(&["site2"]), |_| None);
    assert!(attempts.is_empty(), "{attempts:?}");
    // An operator hands the name back: a failback moves it to the preferred candidate.
    story.run_until(t(4500), |_| Outcome::Pass);
    story.operator(OverrideAction::Failback {
        namespace: MAIL.parse().unwrap(),
    });
    let moves = story.set_records_for(MAIL);
    assert_eq!(
        moves.last().map(|(_, r)| r.target.as_str()),
        Some("mail-rr.example.com")
    );
}

#[test]
fn when_a_human_edits_the_content_under_the_same_marker_then_it_is_drift_without_any_book() {
    // No book in the state bucket (`written: None`): the engine remembers what it last accepted
    // for marker generation 0 (mail-rr) and sees the content change under the same marker.
    let mut story = Story::healthy(config(""));
    story.run_until(t(700), |_| Outcome::Pass);
    story.report_current(MAIL, "mail-site2.example.com");
    assert_eq!(story.rule(MAIL), Some(Rule::Drift));
    story.report_current(MAIL, "mail-site2.example.com");
    assert_eq!(alerts(&story, AlertKind::Drift), 1);
    // Put back by the human: sitewarden's again, one Resolved.
    story.report_current(MAIL, "mail-rr.example.com");
    assert!(story.state.namespaces[MAIL].drift.is_none());
    assert_eq!(story.rule(MAIL), Some(Rule::Steady));
}

#[test]
fn when_propagation_is_slow_then_one_alert_and_one_resolved() {
    let mut story = Story::healthy(config(""));
    let slow = |converged| {
        Input::Provider(ProviderReport::Propagation {
            namespace: MAIL.parse().unwrap(),
            target: "mail-rr.example.com".parse().unwrap(),
            converged,
            elapsed_ms: 120_000,
            laggards: vec!["ns2.example.net (last answer mail-site1)".into()],
        })
    };
    story.input(slow(false));
    story.input(slow(false));
    story.input(slow(true));
    story.input(slow(true));
    assert_eq!(alerts(&story, AlertKind::PropagationSlow), 1);
    let resolved: Vec<&Command> = story
        .log
        .iter()
        .map(|(_, c)| c)
        .filter(|c| matches!(c, Command::Alert(a) if a.kind == AlertKind::Resolved))
        .collect();
    assert_eq!(resolved.len(), 1);
}
