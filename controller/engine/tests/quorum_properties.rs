//! Properties of the quorum over arbitrary timings: failures of single observers that never
//! overlap in time never make a Down verdict or move a name, whatever the probe phases, the order
//! results arrive in, `fall` and `rise`; and a name leaves its preferred target only on
//! quorum-confirmed Down evidence (or a drain) for a site that target needs; and agents whose
//! clocks are off by less than `skew_tolerance` change nothing the engine says.

mod support;

use chrono::TimeDelta;
use proptest::prelude::*;
use sitewarden_contract::{Outcome, SiteId};
use sitewarden_engine::config::Routing;
use sitewarden_engine::{Command, Input, Rule, Verdict};
use support::{Story, config, t};

const OBSERVERS: [&str; 3] = ["site1-agent1", "site2-agent1", "witness-agent1"];

/// Per round, which observer (if any) cannot see site1; runs of different observers are
/// separated by at least one round in which nobody fails.
fn schedule() -> impl Strategy<Value = Vec<Option<usize>>> {
    prop::collection::vec(prop::option::weighted(0.6, 0..3usize), 20..160).prop_map(|mut v| {
        for i in 1..v.len() {
            if let (Some(a), Some(b)) = (v[i - 1], v[i])
                && a != b
            {
                v[i] = None;
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn failures_of_single_observers_that_never_overlap_never_make_site1_down(
        plan in schedule(),
        fall in 1u32..5,
        rise in 1u32..6,
        phases in prop::collection::vec(0i64..1900, 3),
        reversed in any::<bool>(),
    ) {
        let mut story = Story::healthy(config(&format!("fall = {fall}\nrise = {rise}")));
        let start = story.now;
        for (round, blind) in plan.iter().enumerate() {
            let base = start + TimeDelta::seconds(2 * round as i64);
            // Each observer probes at its own phase within the round, in either order.
            let mut order: Vec<usize> = (0..3).collect();
            order.sort_by_key(|i| phases[*i]);
            if reversed {
                order.reverse();
            }
            for i in order {
                story.now = base + TimeDelta::milliseconds(phases[i]);
                let agent = OBSERVERS[i];
                let from = agent.split('-').next().unwrap_or("witness");
                for (to, server) in [("site1", "cas1"), ("site1", "cas2"), ("site2", "cas3"), ("site2", "cas4")] {
                    let outcome = if *blind == Some(i) && to == "site1" { Outcome::Fail } else { Outcome::Pass };
                    let o = story.observation(agent, from, to, server, outcome);
                    story.input(Input::Observation(o));
                }
            }
            story.now = base + TimeDelta::milliseconds(1950);
            story.input(Input::Tick);
            let site1 = &story.state.sites[&SiteId::new("site1").unwrap_or_else(|e| panic!("{e}"))];
            prop_assert_ne!(site1.verdict, Verdict::Down, "round {}", round);
        }
        prop_assert!(story.set_records().is_empty(), "{:?}", story.set_records());
    }

    #[test]
    fn a_name_leaves_its_preferred_target_only_for_a_down_or_drained_site(
        dead in prop::collection::vec((0u8..4, 0u8..4), 1..40),
        rise in 1u32..6,
    ) {
        // Sites die and recover at random, alone or together, with random observers blind.
        let mut story = Story::healthy(config(&format!("rise = {rise}\nfailback_after = \"30s\"\nhold_down = \"10s\"")));
        let mut end = t(0);
        for (what, rounds) in dead {
            end += TimeDelta::seconds(2 * i64::from(rounds) + 2);
            let world = move |p: support::Probe<'_>| match what {
                0 if p.to == "site1" => Outcome::Fail,
                1 if p.to == "site2" => Outcome::Fail,
                2 => Outcome::Fail,
                _ => Outcome::Pass,
            };
            while story.now < end {
                let before: Vec<(sitewarden_contract::DnsName, Option<sitewarden_contract::DnsName>)> = story.state.namespaces.iter()
                    .map(|(n, ns)| (n.clone(), ns.effective().cloned())).collect();
                let logged = story.log.len();
                story.round(&world);
                for (_, c) in &story.log[logged..] {
                    let Command::SetRecord(r) = c else { continue };
                    let cfg = &story.engine.config().namespaces[&r.namespace];
                    let Routing::Candidates(list) = &cfg.routing else { continue };
                    let from = before.iter().find(|(n, _)| *n == r.namespace).and_then(|(_, f)| f.clone());
                    // Nothing is written to a record whose content the engine does not know.
                    prop_assert!(from.is_some(), "{} written unread at {}", r.namespace, story.now);
                    if r.reason != Rule::MoveAwayFromDown {
                        continue;
                    }
                    // The target it leaves needs a site that is Down or drained right now.
                    for c in list.iter().filter(|c| Some(&c.target) == from.as_ref()) {
                        let down = c.requires.iter().any(|s| {
                            story.state.sites.get(s).is_some_and(|st| st.verdict == Verdict::Down)
                                || story.state.overrides.is_drained(s)
                        });
                        prop_assert!(down, "{} left {} for {} at {} without a Down site", r.namespace, c.target, r.target, story.now);
                    }
                }
            }
        }
    }

    #[test]
    fn agent_clock_skew_inside_the_tolerance_changes_nothing(
        skews in prop::collection::vec(-4_900i64..4_900, 3),
        dies_at in 0i64..120,
        heals_after in 0i64..120,
        dead in 0usize..2,
    ) {
        let play = |skewed: bool| {
            let mut story = Story::healthy(config(""));
            if skewed {
                for (agent, skew) in OBSERVERS.iter().zip(&skews) {
                    story.skew_ms.insert((*agent).to_owned(), *skew);
                }
            }
            let site = ["site1", "site2"][dead];
            story.run_until(t(dies_at), |_| Outcome::Pass);
            story.run_until(t(dies_at + heals_after), move |p| {
                if p.to == site { Outcome::Fail } else { Outcome::Pass }
            });
            story.run_until(t(dies_at + heals_after + 60), |_| Outcome::Pass);
            // Everything but the events' own stamps: commands, in order, as bytes.
            let out: Vec<String> = story
                .log
                .iter()
                .map(|(at, c)| format!("{at} {}", serde_json::to_string(c).unwrap_or_default()))
                .collect();
            (out, serde_json::to_string(&story.state.sites).unwrap_or_default())
        };
        let (plain, plain_sites) = play(false);
        let (skewed, skewed_sites) = play(true);
        prop_assert_eq!(plain.len(), skewed.len());
        for (a, b) in plain.iter().zip(&skewed) {
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(plain_sites, skewed_sites);
    }
}
