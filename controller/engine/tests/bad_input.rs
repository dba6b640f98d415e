//! Bad input is ignored, counted by cause, and never moves a verdict.

mod support;

use chrono::TimeDelta;
use sitewarden_contract::{AgentId, CheckName, Outcome, ServerId, SiteId};
use sitewarden_engine::{AuditEvent, Command, Input, Verdict};
use support::{Story, config, t};

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    match s.parse() {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn events_contradicting_the_config_or_out_of_order_or_from_the_future_never_count() {
    let mut story = Story::healthy(config(""));
    let before = story.state.sites.clone();
    let mut sent = 0;
    let mut audits = 0;
    for round in 0..20 {
        let mut bad = Vec::new();
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.agent = id::<AgentId>("intruder");
        bad.push(o);
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.site = id::<SiteId>("site1");
        bad.push(o);
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.target_site = id::<SiteId>("site9");
        bad.push(o);
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.server = id::<ServerId>("cas9");
        bad.push(o);
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.target_site = id::<SiteId>("site2");
        bad.push(o);
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.observed_at = story.now + TimeDelta::seconds(60);
        bad.push(o);
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.seq = 1;
        bad.push(o);
        let mut o = story.observation("site2-agent1", "site2", "site1", "cas1", Outcome::Fail);
        o.schema_version = 2;
        bad.push(o);
        for o in bad {
            sent += 1;
            let cmds = story.input(Input::Observation(o));
            audits += cmds.iter().filter(|c| matches!(c, Command::Audit(a) if matches!(a.event, AuditEvent::InputRejected { .. }))).count();
        }
        if round == 0 {
            assert_eq!(
                audits, 7,
                "the first of each cause is audited (two cases share unknown_server)"
            );
        }
        story.round(&|_| Outcome::Pass);
    }
    assert_eq!(audits, 7, "later ones are only counted");
    let c = &story.state.counters;
    assert_eq!(c.rejected(), sent);
    assert_eq!(c.unknown_agent, 20);
    assert_eq!(c.agent_site_mismatch, 20);
    assert_eq!(c.unknown_site, 20);
    assert_eq!(c.unknown_server, 40);
    assert_eq!(c.future, 20);
    assert_eq!(c.out_of_order, 20);
    assert_eq!(c.schema_version, 20);
    assert_eq!(
        story.state.sites[&id::<SiteId>("site1")].verdict,
        Verdict::Up
    );
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        story.state.sites.keys().collect::<Vec<_>>()
    );
    assert!(story.set_records().is_empty());
}

#[test]
fn checks_outside_an_agents_allow_list_are_refused() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/controller.toml"
    ))
    .unwrap_or_else(|e| panic!("examples/controller.toml: {e}"));
    let cfg = sitewarden_engine::config::ControllerConfig::from_toml("example", &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut story = Story::healthy(cfg);
    // The story's observers all report a check named "eas", which the example's witness
    // allow-list (its own checks, eas-site1 and eas-site2) already refuses: count from here.
    let before = story.state.counters.unknown_check;
    let mut o = story.observation("witness-agent1", "witness", "site1", "cas1", Outcome::Fail);
    o.check = id::<CheckName>("rogue");
    story.input(Input::Observation(o));
    assert_eq!(story.state.counters.unknown_check, before + 1);
}

#[test]
fn an_agent_restart_resets_its_sequence_floor() {
    let mut story = Story::healthy(config(""));
    let hb = |seq: u64, started: i64, at| sitewarden_contract::Heartbeat {
        schema_version: 1,
        agent: id("site1-agent1"),
        site: id("site1"),
        seq,
        observed_at: at,
        started_at: t(started),
        version: "0.1.0".to_owned(),
        interval_ms: 2000,
        checks: 4,
        buffered: 0,
        dropped_total: 0,
    };
    let now = story.now;
    story.input(Input::Heartbeat(hb(10_000, -100, now)));
    story.input(Input::Heartbeat(hb(1, -100, now)));
    assert_eq!(story.state.counters.out_of_order, 1);
    story.input(Input::Heartbeat(hb(1, -1, now)));
    assert_eq!(
        story.state.counters.out_of_order, 1,
        "a restarted agent numbers from 1 again"
    );
    story.run_until(t(60), |_| Outcome::Pass);
    assert_eq!(story.state.counters.out_of_order, 1);
}
