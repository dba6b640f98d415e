//! The site verdict rules as tables of inputs → result (issue 17), like raft-rs's
//! `quorum/testdata`.
//!
//! Four tables. `verdict`: per server × protocol of `site1` (servers `cas1`, `cas2`) the
//! component's quorum result and flags → the site's verdict and its `falling` and `rising` flags
//! (`verdict::judge`). `seen_by`: the observer sites behind each component → which observer sites
//! see the site entirely Down or entirely Up (what partition detection reads). `routing`: a
//! verdict, its flags and a drain → whether routing may keep a name on the site, move a name to
//! it, or move a name away from it (`namespace::World`; the verdict itself knows nothing of
//! drains). `engine`: what each observer sees of site1 for a while, driven through
//! `Engine::step` → site1's verdict, so the tables above are the rules the engine really runs.
//! Each table fails once, naming every row that differs and its inputs.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeDelta;
use sitewarden_contract::{Outcome, ServerId, SiteId};
use sitewarden_engine::config::SiteConfig;
use sitewarden_engine::namespace::World;
use sitewarden_engine::overrides::{Hold, Overrides};
use sitewarden_engine::quorum::{Component, QuorumResult};
use sitewarden_engine::verdict::{SiteState, judge};
use sitewarden_engine::{OverrideAction, Verdict};
use support::table::{Table, assert_unique_names};
use support::{Probe, Story, config, t};

fn site_id(s: &str) -> SiteId {
    SiteId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn server_id(s: &str) -> ServerId {
    ServerId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn site_set(names: &[&str]) -> BTreeSet<SiteId> {
    names.iter().map(|s| site_id(s)).collect()
}

// ---------------------------------------------------------------------------------------------
// Table 1: a site's components → its verdict, falling and rising.
// ---------------------------------------------------------------------------------------------

/// One server × protocol as its quorum left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum C {
    /// Up.
    Up,
    /// Up, but a quorum's latest results are failures.
    UpFalling,
    /// Unknown (too few observers or a split).
    Unknown,
    /// Unknown, and a quorum's latest results are failures.
    UnknownFalling,
    /// Down, with a failing observer outside the site.
    Down,
    /// Down, seen failing only from inside the site.
    DownInside,
    /// Down from outside, and a failing observer passes again.
    DownRising,
    /// Nobody has reported on it: no entry at all.
    Missing,
}

fn component(c: C) -> Option<Component> {
    let (result, outside, falling, rising) = match c {
        C::Up => (QuorumResult::Up, false, false, false),
        C::UpFalling => (QuorumResult::Up, false, true, false),
        C::Unknown => (QuorumResult::Unknown, false, false, false),
        C::UnknownFalling => (QuorumResult::Unknown, false, true, false),
        C::Down => (QuorumResult::Down, true, false, false),
        C::DownInside => (QuorumResult::Down, false, false, false),
        C::DownRising => (QuorumResult::Down, true, false, true),
        C::Missing => return None,
    };
    Some(Component {
        result,
        down_seen_outside: outside,
        falling,
        rising,
        ..Component::new()
    })
}

/// One row: `site1`'s counted protocols and, per protocol, `[cas1, cas2]`.
#[derive(Debug)]
struct Row {
    name: &'static str,
    /// Protocol → its components on cas1 and cas2. Every protocol listed is counted, unless
    /// it is in `uncounted`.
    components: &'static [(&'static str, [C; 2])],
    /// Protocols reported on but not in the site's `protocols`.
    uncounted: &'static [&'static str],
    want: Judged,
}

/// A judgement's verdict and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Judged {
    verdict: Verdict,
    falling: bool,
    rising: bool,
}

const fn is(verdict: Verdict) -> Judged {
    Judged {
        verdict,
        falling: false,
        rising: false,
    }
}

const fn falling(verdict: Verdict) -> Judged {
    Judged {
        falling: true,
        ..is(verdict)
    }
}

const fn rising(verdict: Verdict) -> Judged {
    Judged {
        rising: true,
        ..is(verdict)
    }
}

const EAS: &str = "activesync";
const OWA: &str = "owa";

const ROWS: &[Row] = &[
    // --- one protocol ---
    Row {
        name: "every server Up: Up",
        components: &[(EAS, [C::Up, C::Up])],
        uncounted: &[],
        want: is(Verdict::Up),
    },
    Row {
        name: "one server Down, one Up: Degraded (clients still served)",
        components: &[(EAS, [C::Down, C::Up])],
        uncounted: &[],
        want: is(Verdict::Degraded),
    },
    Row {
        name: "one server Unknown, one Up: Degraded",
        components: &[(EAS, [C::Unknown, C::Up])],
        uncounted: &[],
        want: is(Verdict::Degraded),
    },
    Row {
        name: "every server Down, seen from outside: Down",
        components: &[(EAS, [C::Down, C::Down])],
        uncounted: &[],
        want: is(Verdict::Down),
    },
    Row {
        name: "every server Down, one seen failing only from inside: Unknown, never Down",
        components: &[(EAS, [C::Down, C::DownInside])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "every server Down seen only from inside: Unknown, never Down",
        components: &[(EAS, [C::DownInside, C::DownInside])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "one server Down, the other Unknown: Unknown (silence is not Down)",
        components: &[(EAS, [C::Down, C::Unknown])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "every server Unknown (cold start): Unknown",
        components: &[(EAS, [C::Unknown, C::Unknown])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "no component reported at all: Unknown",
        components: &[(EAS, [C::Missing, C::Missing])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "one server Down, the other never reported: Unknown",
        components: &[(EAS, [C::Down, C::Missing])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    // --- two protocols: Degraded is per protocol, Down needs one protocol Down everywhere ---
    Row {
        name: "two protocols, each with one server Down: Degraded",
        components: &[(EAS, [C::Down, C::Up]), (OWA, [C::Up, C::Down])],
        uncounted: &[],
        want: is(Verdict::Degraded),
    },
    Row {
        name: "two protocols, one with one server Down: Degraded",
        components: &[(EAS, [C::Up, C::Up]), (OWA, [C::Up, C::Down])],
        uncounted: &[],
        want: is(Verdict::Degraded),
    },
    Row {
        name: "one protocol Down on every server, the other Up: Down",
        components: &[(EAS, [C::Up, C::Up]), (OWA, [C::Down, C::Down])],
        uncounted: &[],
        want: is(Verdict::Down),
    },
    Row {
        name: "one protocol Down on every server, the other Unknown: Down",
        components: &[(EAS, [C::Unknown, C::Unknown]), (OWA, [C::Down, C::Down])],
        uncounted: &[],
        want: is(Verdict::Down),
    },
    Row {
        name: "one protocol Unknown on every server, the other Up: Unknown",
        components: &[(EAS, [C::Up, C::Up]), (OWA, [C::Unknown, C::Unknown])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "no protocol Down everywhere but one not served: Unknown",
        components: &[(EAS, [C::Down, C::Unknown]), (OWA, [C::Down, C::Up])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "a protocol the site does not count is ignored, even Down everywhere",
        components: &[(EAS, [C::Up, C::Up]), ("imap", [C::Down, C::Down])],
        uncounted: &["imap"],
        want: is(Verdict::Up),
    },
    // --- falling: serving, but a protocol has every server Down or falling ---
    Row {
        name: "every server Up and falling: Up, falling",
        components: &[(EAS, [C::UpFalling, C::UpFalling])],
        uncounted: &[],
        want: falling(Verdict::Up),
    },
    Row {
        name: "one server Down, the other Up and falling: Degraded, falling",
        components: &[(EAS, [C::Down, C::UpFalling])],
        uncounted: &[],
        want: falling(Verdict::Degraded),
    },
    Row {
        name: "one server of two falling: Up, not falling",
        components: &[(EAS, [C::UpFalling, C::Up])],
        uncounted: &[],
        want: is(Verdict::Up),
    },
    Row {
        name: "falling servers spread over two protocols: Up, not falling",
        components: &[(EAS, [C::UpFalling, C::Up]), (OWA, [C::Up, C::UpFalling])],
        uncounted: &[],
        want: is(Verdict::Up),
    },
    Row {
        name: "one protocol falling on every server: Up, falling",
        components: &[(EAS, [C::Up, C::Up]), (OWA, [C::UpFalling, C::UpFalling])],
        uncounted: &[],
        want: falling(Verdict::Up),
    },
    Row {
        name: "falling only marks a serving site: Unknown, not falling",
        components: &[(EAS, [C::Down, C::UnknownFalling])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    // --- rising: Down, but a server it is Down for is coming back ---
    Row {
        name: "every server Down, one rising: Down, rising",
        components: &[(EAS, [C::DownRising, C::Down])],
        uncounted: &[],
        want: rising(Verdict::Down),
    },
    Row {
        name: "every server Down, both rising: Down, rising",
        components: &[(EAS, [C::DownRising, C::DownRising])],
        uncounted: &[],
        want: rising(Verdict::Down),
    },
    Row {
        name: "rising only marks a Down site: Degraded, not rising",
        components: &[(EAS, [C::DownRising, C::Up])],
        uncounted: &[],
        want: is(Verdict::Degraded),
    },
    Row {
        name: "rising beside an inside-only Down: Unknown, not rising",
        components: &[(EAS, [C::DownRising, C::DownInside])],
        uncounted: &[],
        want: is(Verdict::Unknown),
    },
    Row {
        name: "a rising server of another protocol marks a Down site rising",
        components: &[(EAS, [C::DownRising, C::Up]), (OWA, [C::Down, C::Down])],
        uncounted: &[],
        want: rising(Verdict::Down),
    },
];

fn site1(protocols: impl IntoIterator<Item = &'static str>) -> SiteConfig {
    SiteConfig {
        servers: [server_id("cas1"), server_id("cas2")].into(),
        protocols: protocols.into_iter().map(str::to_owned).collect(),
    }
}

fn judge_row(row: &Row) -> Judged {
    let counted = row
        .components
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !row.uncounted.contains(p));
    let site = site1(counted);
    let mut components: BTreeMap<ServerId, BTreeMap<String, Component>> = BTreeMap::new();
    for (protocol, per_server) in row.components {
        for (server, c) in ["cas1", "cas2"].iter().zip(per_server) {
            if let Some(c) = component(*c) {
                components
                    .entry(server_id(server))
                    .or_default()
                    .insert((*protocol).to_owned(), c);
            }
        }
    }
    let j = judge(&site, &components);
    Judged {
        verdict: j.verdict,
        falling: j.falling,
        rising: j.rising,
    }
}

#[test]
fn verdict_table() {
    assert_unique_names("verdict", ROWS.iter().map(|r| r.name));
    let mut table = Table::new("verdict");
    for row in ROWS {
        table.check(row.name, row, &row.want, &judge_row(row));
    }
    table.finish();
}

#[test]
fn a_witness_without_servers_is_never_down_and_has_no_verdict_in_the_engine() {
    // `judge` on a site without servers: nothing is counted, so nothing can be Down.
    let witness = SiteConfig {
        servers: BTreeSet::new(),
        protocols: [EAS.to_owned()].into(),
    };
    let j = judge(&witness, &BTreeMap::new());
    assert_ne!(j.verdict, Verdict::Down, "{j:?}");
    assert!(!j.falling && !j.rising, "{j:?}");
    // And the engine keeps no verdict for it at all: it only hosts observers.
    let story = Story::healthy(config(""));
    assert!(
        !story.state.sites.contains_key(&site_id("witness")),
        "{:?}",
        story.state.sites.keys().collect::<Vec<_>>()
    );
    assert!(story.state.sites.contains_key(&site_id("site1")));
}

// ---------------------------------------------------------------------------------------------
// Table 2: which observer sites see the site entirely Down or entirely Up.
// ---------------------------------------------------------------------------------------------

/// One component's observer sites whose opinions all fail / all pass.
type Sides = (&'static [&'static str], &'static [&'static str]);

#[derive(Debug)]
struct SeenRow {
    name: &'static str,
    /// Protocol → (failing sites, passing sites) on cas1 and cas2.
    components: &'static [(&'static str, [Sides; 2])],
    /// Observer sites that see some protocol Down on every server.
    want_down_by: &'static [&'static str],
    /// Observer sites that see every component passing.
    want_up_by: &'static [&'static str],
}

const NONE: &[&str] = &[];

const SEEN_ROWS: &[SeenRow] = &[
    SeenRow {
        name: "everyone sees every server failing",
        components: &[(
            EAS,
            [
                (&["site1", "site2", "witness"], NONE),
                (&["site1", "site2", "witness"], NONE),
            ],
        )],
        want_down_by: &["site1", "site2", "witness"],
        want_up_by: NONE,
    },
    SeenRow {
        name: "everyone sees every server passing",
        components: &[(
            EAS,
            [
                (NONE, &["site1", "site2", "witness"]),
                (NONE, &["site1", "site2", "witness"]),
            ],
        )],
        want_down_by: NONE,
        want_up_by: &["site1", "site2", "witness"],
    },
    SeenRow {
        name: "partition: site2 sees site1 down, site1 and the witness see it up",
        components: &[(
            EAS,
            [
                (&["site2"], &["site1", "witness"]),
                (&["site2"], &["site1", "witness"]),
            ],
        )],
        want_down_by: &["site2"],
        want_up_by: &["site1", "witness"],
    },
    SeenRow {
        name: "down for a protocol means failing on every server of it",
        components: &[(
            EAS,
            [
                (&["site2", "witness"], &["site1"]),
                (&["site2"], &["site1", "witness"]),
            ],
        )],
        want_down_by: &["site2"],
        want_up_by: &["site1"],
    },
    SeenRow {
        name: "down by is the union over protocols",
        components: &[
            (EAS, [(&["site2"], NONE), (&["site2"], NONE)]),
            (OWA, [(&["witness"], NONE), (&["witness"], NONE)]),
        ],
        want_down_by: &["site2", "witness"],
        want_up_by: NONE,
    },
    SeenRow {
        name: "up by is the intersection over every component",
        components: &[
            (
                EAS,
                [(NONE, &["site1", "site2"]), (NONE, &["site1", "site2"])],
            ),
            (OWA, [(NONE, &["site1", "witness"]), (NONE, &["site1"])]),
        ],
        want_down_by: NONE,
        want_up_by: &["site1"],
    },
];

/// What a judgement says about observer sites, as names.
#[derive(Debug, PartialEq, Eq)]
struct SeenBy {
    down_by: Vec<String>,
    up_by: Vec<String>,
}

fn names(s: &BTreeSet<SiteId>) -> Vec<String> {
    s.iter().map(ToString::to_string).collect()
}

fn seen_row(row: &SeenRow) -> SeenBy {
    let site = site1(row.components.iter().map(|(p, _)| *p));
    let mut components: BTreeMap<ServerId, BTreeMap<String, Component>> = BTreeMap::new();
    for (protocol, per_server) in row.components {
        for (server, (failing, passing)) in ["cas1", "cas2"].iter().zip(per_server) {
            // The result does not matter to who sees what; the sets do.
            let c = Component {
                failing_sites: site_set(failing),
                passing_sites: site_set(passing),
                ..Component::new()
            };
            components
                .entry(server_id(server))
                .or_default()
                .insert((*protocol).to_owned(), c);
        }
    }
    let j = judge(&site, &components);
    SeenBy {
        down_by: names(&j.seen_down_by),
        up_by: names(&j.seen_up_by),
    }
}

#[test]
fn seen_by_table() {
    assert_unique_names("seen_by", SEEN_ROWS.iter().map(|r| r.name));
    let mut table = Table::new("seen_by");
    for row in SEEN_ROWS {
        let want = SeenBy {
            down_by: row.want_down_by.iter().map(|s| (*s).to_owned()).collect(),
            up_by: row.want_up_by.iter().map(|s| (*s).to_owned()).collect(),
        };
        table.check(row.name, row, &want, &seen_row(row));
    }
    table.finish();
}

// ---------------------------------------------------------------------------------------------
// Table 3: what routing makes of a verdict, its flags and a drain.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct RouteRow {
    name: &'static str,
    verdict: Verdict,
    falling: bool,
    rising: bool,
    drained: bool,
    want: Routing,
}

/// How namespace rules see the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Routing {
    /// A name may stay on it (serving and not drained).
    routable: bool,
    /// A name may be moved to it (routable and not falling).
    destination: bool,
    /// A name may be moved away from it (Down and not rising, or drained).
    down: bool,
}

const STAY_OR_MOVE_TO: Routing = Routing {
    routable: true,
    destination: true,
    down: false,
};
const STAY_ONLY: Routing = Routing {
    routable: true,
    destination: false,
    down: false,
};
const LEAVE: Routing = Routing {
    routable: false,
    destination: false,
    down: true,
};
const FAIL_STATIC: Routing = Routing {
    routable: false,
    destination: false,
    down: false,
};

const fn route(
    name: &'static str,
    verdict: Verdict,
    flags: (bool, bool, bool),
    want: Routing,
) -> RouteRow {
    RouteRow {
        name,
        verdict,
        falling: flags.0,
        rising: flags.1,
        drained: flags.2,
        want,
    }
}

// Flags: (falling, rising, drained).
const ROUTE_ROWS: &[RouteRow] = &[
    route(
        "Up: stay or move to",
        Verdict::Up,
        (false, false, false),
        STAY_OR_MOVE_TO,
    ),
    route(
        "Degraded is serving like Up",
        Verdict::Degraded,
        (false, false, false),
        STAY_OR_MOVE_TO,
    ),
    route(
        "Up and falling: stay, but no move to it",
        Verdict::Up,
        (true, false, false),
        STAY_ONLY,
    ),
    route(
        "Degraded and falling: stay, but no move to it",
        Verdict::Degraded,
        (true, false, false),
        STAY_ONLY,
    ),
    route(
        "Unknown: neither stay-worthy nor a reason to leave (fail static)",
        Verdict::Unknown,
        (false, false, false),
        FAIL_STATIC,
    ),
    route("Down: leave", Verdict::Down, (false, false, false), LEAVE),
    route(
        "Down and rising: no move away on this evidence",
        Verdict::Down,
        (false, true, false),
        FAIL_STATIC,
    ),
    route(
        "Up and drained: leave (a drain is Down for routing)",
        Verdict::Up,
        (false, false, true),
        LEAVE,
    ),
    route(
        "Degraded, falling and drained: leave",
        Verdict::Degraded,
        (true, false, true),
        LEAVE,
    ),
    route(
        "Unknown and drained: leave",
        Verdict::Unknown,
        (false, false, true),
        LEAVE,
    ),
    route(
        "Down, rising and drained: leave (the drain wins over rising)",
        Verdict::Down,
        (false, true, true),
        LEAVE,
    ),
];

fn route_row(row: &RouteRow) -> Routing {
    let engine_config = config("");
    let site = site_id("site1");
    let sites = BTreeMap::from([(
        site.clone(),
        SiteState {
            verdict: row.verdict,
            falling: row.falling,
            rising: row.rising,
            ..SiteState::new()
        },
    )]);
    let mut overrides = Overrides::default();
    if row.drained {
        overrides.drains.insert(
            site.clone(),
            Hold {
                who: "alice".to_owned(),
                why: "table".to_owned(),
                since: t(0),
                expires: None,
                forced: false,
            },
        );
    }
    let world = World {
        config: &engine_config,
        sites: &sites,
        overrides: &overrides,
        dags: &BTreeMap::new(),
        partitions: &BTreeSet::new(),
        now: t(0),
        startup: false,
        settling: None,
    };
    Routing {
        routable: world.routable(&site),
        destination: world.destination(&site),
        down: world.down(&site),
    }
}

#[test]
fn routing_table() {
    assert_unique_names("routing", ROUTE_ROWS.iter().map(|r| r.name));
    let mut table = Table::new("routing");
    for row in ROUTE_ROWS {
        table.check(row.name, row, &row.want, &route_row(row));
    }
    table.finish();
}

// ---------------------------------------------------------------------------------------------
// Table 4: the same rules through `Engine::step`.
// ---------------------------------------------------------------------------------------------

/// What one observer does about site1's servers during the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sees {
    Pass,
    Fail,
    /// Publishes nothing at all (its results age past `stale_after`).
    Silent,
}

#[derive(Debug)]
struct EngineRow {
    name: &'static str,
    /// Extra `[policy]` lines.
    policy: &'static str,
    /// What site1-agent1, site2-agent1 and witness-agent1 see of site1, for 30 s after 20 s
    /// of health. Everyone keeps seeing site2 pass.
    sees: [Sees; 3],
    /// Whether an operator drains site1 before the incident.
    drained: bool,
    want: Verdict,
}

use Sees::{Fail, Pass, Silent};

const ENGINE_ROWS: &[EngineRow] = &[
    EngineRow {
        name: "nobody fails: Up",
        policy: "",
        sees: [Pass, Pass, Pass],
        drained: false,
        want: Verdict::Up,
    },
    EngineRow {
        name: "every observer fails site1: Down",
        policy: "",
        sees: [Fail, Fail, Fail],
        drained: false,
        want: Verdict::Down,
    },
    EngineRow {
        name: "site2 and the witness fail site1, its own observer passes: Down",
        policy: "",
        sees: [Pass, Fail, Fail],
        drained: false,
        want: Verdict::Down,
    },
    EngineRow {
        name: "only site1's own observer fails: Up (outvoted)",
        policy: "",
        sees: [Fail, Pass, Pass],
        drained: false,
        want: Verdict::Up,
    },
    EngineRow {
        name: "only the witness fails: Up (outvoted)",
        policy: "",
        sees: [Pass, Pass, Fail],
        drained: false,
        want: Verdict::Up,
    },
    EngineRow {
        name: "site1's own observer and the witness fail, site2 passes: Down",
        policy: "",
        sees: [Fail, Pass, Fail],
        drained: false,
        want: Verdict::Down,
    },
    EngineRow {
        name: "only site1's own observer is left and fails, min_observers 1: Unknown, never Down",
        policy: "min_observers = 1",
        sees: [Fail, Silent, Silent],
        drained: false,
        want: Verdict::Unknown,
    },
    EngineRow {
        name: "only the witness is left and fails, min_observers 1: Down",
        policy: "min_observers = 1",
        sees: [Silent, Silent, Fail],
        drained: false,
        want: Verdict::Down,
    },
    EngineRow {
        name: "only the witness is left and fails, min_observers 2: Unknown (too few observers)",
        policy: "",
        sees: [Silent, Silent, Fail],
        drained: false,
        want: Verdict::Unknown,
    },
    EngineRow {
        name: "every observer silent: Unknown (silence is never Down)",
        policy: "",
        sees: [Silent, Silent, Silent],
        drained: false,
        want: Verdict::Unknown,
    },
    EngineRow {
        name: "two observers fail, the third is silent: Down",
        policy: "",
        sees: [Silent, Fail, Fail],
        drained: false,
        want: Verdict::Down,
    },
    EngineRow {
        name: "a drained healthy site keeps its verdict Up (a drain is routing, not a verdict)",
        policy: "",
        sees: [Pass, Pass, Pass],
        drained: true,
        want: Verdict::Up,
    },
];

const AGENTS: [&str; 3] = ["site1-agent1", "site2-agent1", "witness-agent1"];

fn engine_row(row: &EngineRow) -> Verdict {
    let mut story = Story::healthy(config(row.policy));
    if row.drained {
        story.operator(OverrideAction::Drain {
            site: site_id("site1"),
            expires: None,
        });
        assert!(
            story.state.overrides.is_drained(&site_id("site1")),
            "row `{}`: the drain was refused",
            row.name
        );
    }
    let sees = row.sees;
    let world = move |p: Probe<'_>| {
        let i = AGENTS.iter().position(|a| *a == p.agent).unwrap_or(0);
        match (p.to, sees[i]) {
            ("site1", Fail) => Some(Outcome::Fail),
            // A silent observer is silent about every site.
            (_, Silent) => None,
            _ => Some(Outcome::Pass),
        }
    };
    let end = story.now + TimeDelta::seconds(30);
    while story.now < end {
        story.round_partial(&world);
    }
    story.state.sites[&site_id("site1")].verdict
}

#[test]
fn engine_table() {
    assert_unique_names("engine", ENGINE_ROWS.iter().map(|r| r.name));
    let mut table = Table::new("engine");
    for row in ENGINE_ROWS {
        table.check(row.name, row, &row.want, &engine_row(row));
    }
    table.finish();
}
