//! The quorum rules as tables of inputs → result (issue 17), like raft-rs's `quorum/testdata`.
//!
//! Two tables. `hysteresis`: a sequence of results for one observer × check, with `fall` and
//! `rise` → its status, its vote and whether it is recovering (`observer.rs`, `quorum::vote`).
//! `quorum`: per observer (its site, and per check its state and age), `min_observers` and the
//! observers that are configured but silent → the component's result, whether an observer
//! outside the server's site saw it failing, the `falling` and `rising` flags and which observer
//! sites agree (`quorum::tally`). The server is always `cas1` of `site1`; `stale_after` is 6 s.
//! Each table fails once, naming every row that differs and its inputs.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use sitewarden_contract::{AgentId, CheckName, Outcome, SiteId};
use sitewarden_engine::config::AgentConfig;
use sitewarden_engine::observer::{CheckState, CheckStatus};
use sitewarden_engine::quorum::{Component, QuorumResult, QuorumRules, tally, vote};
use support::t;
use support::table::{Table, assert_unique_names};

// ---------------------------------------------------------------------------------------------
// Table 1: one observer × check — fall, rise and its vote.
// ---------------------------------------------------------------------------------------------

/// One row of the hysteresis table.
#[derive(Debug)]
struct Streak {
    name: &'static str,
    /// Results in arrival order, one per second: `P` pass, `F` fail.
    results: &'static str,
    fall: u32,
    rise: u32,
    want: Check1,
}

/// What a check says after its results, judged one second after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Check1 {
    status: CheckStatus,
    /// Its vote in the quorum (`None`: neither way).
    vote: Option<CheckStatus>,
    /// Was failing and passes again (makes a Down component `rising`).
    recovering: bool,
}

const fn check1(status: CheckStatus, vote: Option<CheckStatus>, recovering: bool) -> Check1 {
    Check1 {
        status,
        vote,
        recovering,
    }
}

use CheckStatus::{Failing as FAILING, Passing as PASSING, Pending as PENDING};

const STREAKS: &[Streak] = &[
    Streak {
        name: "a new check is pending after one pass",
        results: "P",
        fall: 3,
        rise: 5,
        want: check1(PENDING, None, false),
    },
    Streak {
        name: "rise-1 passes are still pending",
        results: "PPPP",
        fall: 3,
        rise: 5,
        want: check1(PENDING, None, false),
    },
    Streak {
        name: "rise passes make a new check passing",
        results: "PPPPP",
        fall: 3,
        rise: 5,
        want: check1(PASSING, Some(PASSING), false),
    },
    Streak {
        name: "fall-1 failures of a new check are still pending, no Down vote",
        results: "FF",
        fall: 3,
        rise: 5,
        want: check1(PENDING, None, false),
    },
    Streak {
        name: "fall failures make a new check failing",
        results: "FFF",
        fall: 3,
        rise: 5,
        want: check1(FAILING, Some(FAILING), false),
    },
    Streak {
        name: "fall 1: one failure is failing",
        results: "F",
        fall: 1,
        rise: 5,
        want: check1(FAILING, Some(FAILING), false),
    },
    Streak {
        name: "a passing check with fall-1 failures still votes passing",
        results: "PPPPPFF",
        fall: 3,
        rise: 5,
        want: check1(PASSING, Some(PASSING), false),
    },
    Streak {
        name: "a passing check turns failing after fall failures",
        results: "PPPPPFFF",
        fall: 3,
        rise: 5,
        want: check1(FAILING, Some(FAILING), false),
    },
    Streak {
        name: "failures that are not consecutive never reach fall",
        results: "PPPPPFFPFFPFF",
        fall: 3,
        rise: 5,
        want: check1(PASSING, Some(PASSING), false),
    },
    Streak {
        name: "a failing check that passes once is recovering and votes neither way",
        results: "FFFP",
        fall: 3,
        rise: 5,
        want: check1(FAILING, None, true),
    },
    Streak {
        name: "recovering with rise-1 passes still votes neither way",
        results: "FFFPPPP",
        fall: 3,
        rise: 5,
        want: check1(FAILING, None, true),
    },
    Streak {
        name: "rise passes make a failing check passing, still recovering for stale_after",
        results: "FFFPPPPP",
        fall: 3,
        rise: 5,
        want: check1(PASSING, Some(PASSING), true),
    },
    Streak {
        name: "rise 1: one pass recovers at once, still recovering for stale_after",
        results: "FFFP",
        fall: 3,
        rise: 1,
        want: check1(PASSING, Some(PASSING), true),
    },
    Streak {
        name: "a recovering check that fails again votes failing at once (no new fall streak)",
        results: "FFFPF",
        fall: 3,
        rise: 5,
        want: check1(FAILING, Some(FAILING), false),
    },
    Streak {
        name: "a recovered check that fails once is passing, no longer recovering",
        results: "FFFPPPPPF",
        fall: 3,
        rise: 5,
        want: check1(PASSING, Some(PASSING), false),
    },
    Streak {
        name: "recovered more than stale_after ago is no longer recovering",
        results: "FFFPPPPPPPPPPPPP",
        fall: 3,
        rise: 5,
        want: check1(PASSING, Some(PASSING), false),
    },
    Streak {
        name: "alternating results never leave pending",
        results: "FPFPFPFPFP",
        fall: 3,
        rise: 5,
        want: check1(PENDING, None, false),
    },
];

fn play(row: &Streak) -> Check1 {
    let stale_after = TimeDelta::seconds(6);
    let mut check: Option<CheckState> = None;
    let mut at = t(0);
    for (i, r) in row.results.chars().enumerate() {
        let outcome = if r == 'F' {
            Outcome::Fail
        } else {
            Outcome::Pass
        };
        at = t(i64::try_from(i).unwrap_or(0));
        // As the engine does: a first result creates the check, then is recorded.
        let c = check.get_or_insert_with(|| CheckState::first(outcome, at, None));
        c.record(outcome, at, None, row.fall, row.rise);
    }
    let now = at + TimeDelta::seconds(1);
    match check {
        Some(c) => Check1 {
            status: c.status,
            vote: vote(&c),
            recovering: c.is_recovering(now, stale_after),
        },
        None => panic!("row `{}` has no results", row.name),
    }
}

#[test]
fn hysteresis_table() {
    assert_unique_names("hysteresis", STREAKS.iter().map(|r| r.name));
    let mut table = Table::new("hysteresis");
    for row in STREAKS {
        table.check(row.name, row, &row.want, &play(row));
    }
    table.finish();
}

// ---------------------------------------------------------------------------------------------
// Table 2: one server × protocol — the quorum of fresh observers.
// ---------------------------------------------------------------------------------------------

/// One observer × check's state, as the hysteresis table above produces it.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Passing, latest result a pass.
    Passing,
    /// Failing, latest result a failure: a Down vote.
    Failing,
    /// Pending (fewer than `fall` failures since it started): no vote; latest result a failure.
    NewFailing,
    /// Pending (fewer than `rise` passes since it started): no vote; latest result a pass.
    NewPassing,
    /// Passing, but its latest result is a failure (fewer than `fall` yet): votes passing.
    Slipping,
    /// Failing, but its latest result is a pass (fewer than `rise` yet): no vote, recovering.
    Recovering,
    /// Passing again, since a moment ago (within `stale_after`): votes passing, recovering.
    JustRecovered,
    /// Passing again, for longer than `stale_after`: votes passing, not recovering.
    RecoveredLongAgo,
    /// Recovered a moment ago and failing again: a Down vote, not recovering.
    Relapsed,
}

/// One check of an observer: its state and the age of its latest result.
#[derive(Clone, Copy)]
struct Seen {
    state: State,
    /// Seconds since its latest result (`stale_after` is 6 s: 6 is fresh, 7 is stale).
    age_secs: i64,
}

const STALE_AFTER_SECS: i64 = 6;

const fn fresh(state: State) -> Seen {
    Seen { state, age_secs: 1 }
}

const fn stale(state: State) -> Seen {
    Seen {
        state,
        age_secs: STALE_AFTER_SECS + 1,
    }
}

const fn aged(state: State, age_secs: i64) -> Seen {
    Seen { state, age_secs }
}

/// An observer: the site it stands in (`None`: not a configured agent) and its checks.
struct Observer {
    site: Option<&'static str>,
    checks: &'static [Seen],
}

// Rows print compactly when they fail: `witness [Failing 1s ago, Passing 7s ago (stale)]`.
impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stale = if self.age_secs > STALE_AFTER_SECS {
            " (stale)"
        } else {
            ""
        };
        write!(f, "{:?} {}s ago{stale}", self.state, self.age_secs)
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}",
            self.site.unwrap_or("(not configured)"),
            self.checks
        )
    }
}

const fn at(site: &'static str, checks: &'static [Seen]) -> Observer {
    Observer {
        site: Some(site),
        checks,
    }
}

/// One row of the quorum table. The server is in `site1`.
#[derive(Debug)]
struct Case {
    name: &'static str,
    min_observers: usize,
    /// Observers with results for the server.
    observers: &'static [Observer],
    /// Configured agents (by site) that never reported on the server.
    silent: &'static [&'static str],
    want: Want,
}

/// What the tally says.
#[derive(Debug)]
struct Want {
    result: QuorumResult,
    /// Down with a failing observer outside `site1`.
    down_seen_outside: bool,
    /// Not Down, but a quorum of fresh observers' latest results are failures.
    falling: bool,
    /// Down, and some fresh observer's check is recovering.
    rising: bool,
    /// Observer sites whose opinions all fail / all pass (`None`: not checked in this row).
    sites: Option<(&'static [&'static str], &'static [&'static str])>,
}

use QuorumResult::{Down, Unknown, Up};
use State::{
    Failing, JustRecovered, NewFailing, NewPassing, Passing, RecoveredLongAgo, Recovering,
    Relapsed, Slipping,
};

const fn want(result: QuorumResult) -> Want {
    Want {
        result,
        down_seen_outside: false,
        falling: false,
        rising: false,
        sites: None,
    }
}

/// Down, seen failing from outside the site.
const fn down_outside() -> Want {
    Want {
        down_seen_outside: true,
        ..want(Down)
    }
}

const fn falling(result: QuorumResult) -> Want {
    Want {
        falling: true,
        ..want(result)
    }
}

const fn rising(w: Want) -> Want {
    Want { rising: true, ..w }
}

const fn sites(
    w: Want,
    failing: &'static [&'static str],
    passing: &'static [&'static str],
) -> Want {
    Want {
        sites: Some((failing, passing)),
        ..w
    }
}

const CASES: &[Case] = &[
    // --- every observer fresh ---
    Case {
        name: "all three fresh observers failing: Down, seen from outside",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Failing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: sites(down_outside(), &["site1", "site2", "witness"], &[]),
    },
    Case {
        name: "all three fresh observers passing: Up",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Passing)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &[],
        want: sites(want(Up), &[], &["site1", "site2", "witness"]),
    },
    Case {
        name: "two of three failing is a majority: Down",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Failing)]),
            at("site2", &[fresh(Passing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: sites(down_outside(), &["site1", "witness"], &["site2"]),
    },
    Case {
        name: "one of three failing: Up",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &[],
        want: sites(want(Up), &["site2"], &["site1", "witness"]),
    },
    Case {
        name: "three of five failing: Down",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Failing)]),
            at("site3", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
            at("site4", &[fresh(Passing)]),
        ],
        silent: &[],
        want: down_outside(),
    },
    // --- ties ---
    Case {
        name: "tie two against two: Unknown (quorum of four is three)",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Failing)]),
            at("site3", &[fresh(Passing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: want(Unknown),
    },
    Case {
        name: "tie one against one with min_observers 1: Unknown",
        min_observers: 1,
        observers: &[
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &[],
        want: want(Unknown),
    },
    // --- too few observers, the min_observers floor ---
    Case {
        name: "one fresh failing observer under min_observers 2: Unknown, never Down",
        min_observers: 2,
        observers: &[at("witness", &[fresh(Failing)])],
        silent: &["site1", "site2"],
        want: want(Unknown),
    },
    Case {
        name: "one fresh passing observer under min_observers 2: Unknown, not Up either",
        min_observers: 2,
        observers: &[at("witness", &[fresh(Passing)])],
        silent: &["site1", "site2"],
        want: want(Unknown),
    },
    Case {
        name: "no observer at all: Unknown",
        min_observers: 2,
        observers: &[],
        silent: &["site1", "site2", "witness"],
        want: want(Unknown),
    },
    Case {
        name: "one outside observer failing with min_observers 1: Down",
        min_observers: 1,
        observers: &[at("witness", &[fresh(Failing)])],
        silent: &["site1", "site2"],
        want: down_outside(),
    },
    Case {
        name: "min_observers 3 over three observers: two failing are not enough",
        min_observers: 3,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: want(Unknown),
    },
    Case {
        name: "min_observers 3 over three observers: all three failing are Down",
        min_observers: 3,
        observers: &[
            at("site1", &[fresh(Failing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: down_outside(),
    },
    Case {
        name: "min_observers 2 with two of two failing: Down",
        min_observers: 2,
        observers: &[
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &["site1"],
        want: down_outside(),
    },
    // --- stale observers ---
    Case {
        name: "stale failures never count: two stale failing, one fresh passing is Unknown",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[stale(Failing)]),
            at("witness", &[stale(Failing)]),
        ],
        silent: &[],
        want: sites(want(Unknown), &[], &["site1"]),
    },
    Case {
        name: "every observer stale and failing: Unknown, not even falling",
        min_observers: 2,
        observers: &[
            at("site1", &[stale(Failing)]),
            at("site2", &[stale(Failing)]),
            at("witness", &[stale(Failing)]),
        ],
        silent: &[],
        want: sites(want(Unknown), &[], &[]),
    },
    Case {
        name: "a stale failure beside two fresh passes: Up",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[stale(Failing)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &[],
        want: want(Up),
    },
    Case {
        name: "a stale pass does not hold off two fresh failures: Down",
        min_observers: 2,
        observers: &[
            at("site1", &[stale(Passing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: down_outside(),
    },
    Case {
        name: "a result exactly stale_after old is still fresh",
        min_observers: 2,
        observers: &[
            at("site2", &[aged(Failing, STALE_AFTER_SECS)]),
            at("witness", &[aged(Failing, STALE_AFTER_SECS)]),
        ],
        silent: &["site1"],
        want: down_outside(),
    },
    Case {
        name: "a result one second past stale_after is stale",
        min_observers: 2,
        observers: &[
            at("site2", &[aged(Failing, STALE_AFTER_SECS + 1)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &["site1"],
        want: want(Unknown),
    },
    Case {
        name: "an observer's stale failing check is ignored beside its fresh passing one",
        min_observers: 2,
        observers: &[
            at("site2", &[fresh(Passing), stale(Failing)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &["site1"],
        want: want(Up),
    },
    // --- inside and outside the site ---
    Case {
        name: "the site's own two observers failing: Down, but not seen from outside",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Failing)]),
            at("site1", &[fresh(Failing)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &["site2"],
        want: sites(want(Down), &["site1"], &["witness"]),
    },
    Case {
        name: "the site's own observer alone with min_observers 1: Down, not seen from outside",
        min_observers: 1,
        observers: &[at("site1", &[fresh(Failing)])],
        silent: &["site2", "witness"],
        want: want(Down),
    },
    Case {
        name: "outside observers failing while the site's own passes: Down, seen from outside",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: sites(down_outside(), &["site2", "witness"], &["site1"]),
    },
    Case {
        name: "an observer that is not a configured agent never counts as outside",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Failing)]),
            Observer {
                site: None,
                checks: &[fresh(Failing)],
            },
        ],
        silent: &[],
        want: sites(want(Down), &["site1"], &[]),
    },
    Case {
        name: "observers of one site that disagree are in neither site set",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site1", &[fresh(Failing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &[],
        want: sites(want(Unknown), &["site2"], &["witness"]),
    },
    // --- several checks per observer ---
    Case {
        name: "one failing check makes the observer's opinion failing",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Passing), fresh(Failing)]),
            at("witness", &[fresh(Failing), fresh(Passing)]),
        ],
        silent: &[],
        want: down_outside(),
    },
    Case {
        name: "a passing check beside a pending one makes the opinion passing",
        min_observers: 2,
        observers: &[
            at("site2", &[fresh(Passing), fresh(NewFailing)]),
            at("witness", &[fresh(NewPassing), fresh(Passing)]),
        ],
        silent: &["site1"],
        want: want(Up),
    },
    // --- pending checks, falling ---
    Case {
        name: "new observers failing fewer than fall times: not Down, but falling",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(NewFailing)]),
            at("site2", &[fresh(NewFailing)]),
            at("witness", &[fresh(NewFailing)]),
        ],
        silent: &[],
        want: sites(falling(Unknown), &[], &[]),
    },
    Case {
        name: "new observers passing fewer than rise times: Unknown (cold start)",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(NewPassing)]),
            at("site2", &[fresh(NewPassing)]),
            at("witness", &[fresh(NewPassing)]),
        ],
        silent: &[],
        want: want(Unknown),
    },
    Case {
        name: "two of three passing observers' latest results fail: Up and falling",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Slipping)]),
            at("witness", &[fresh(Slipping)]),
        ],
        silent: &[],
        want: falling(Up),
    },
    Case {
        name: "one of three passing observers' latest result fails: Up, not falling",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Passing)]),
            at("site2", &[fresh(Slipping)]),
            at("witness", &[fresh(Passing)]),
        ],
        silent: &[],
        want: want(Up),
    },
    Case {
        name: "one fresh latest failure under min_observers 2 is not falling",
        min_observers: 2,
        observers: &[
            at("site1", &[stale(Passing)]),
            at("site2", &[stale(Passing)]),
            at("witness", &[fresh(Slipping)]),
        ],
        silent: &[],
        want: want(Unknown),
    },
    Case {
        name: "a Down component is never falling",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Failing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Slipping)]),
        ],
        silent: &[],
        want: down_outside(),
    },
    // --- recovering observers, rising ---
    Case {
        name: "one failing, two recovering: no quorum (failures that do not overlap)",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Recovering)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Recovering)]),
        ],
        silent: &[],
        want: want(Unknown),
    },
    Case {
        name: "two failing, one recovering: Down and rising",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Failing)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Recovering)]),
        ],
        silent: &[],
        want: rising(down_outside()),
    },
    Case {
        name: "recovering observers are left out of the majority: two failing of five is Down",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Recovering)]),
            at("site2", &[fresh(Failing)]),
            at("site3", &[fresh(Recovering)]),
            at("site4", &[fresh(Recovering)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: rising(down_outside()),
    },
    Case {
        name: "two failing, one just recovered and passing: Down and rising",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(JustRecovered)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: rising(down_outside()),
    },
    Case {
        name: "two failing, one recovered longer than stale_after ago: Down, not rising",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(RecoveredLongAgo)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: down_outside(),
    },
    Case {
        name: "observers that relapsed after recovering: Down, not rising",
        min_observers: 2,
        observers: &[
            at("site1", &[fresh(Relapsed)]),
            at("site2", &[fresh(Relapsed)]),
            at("witness", &[fresh(Relapsed)]),
        ],
        silent: &[],
        want: down_outside(),
    },
    Case {
        name: "a stale recovering check does not make a Down component rising",
        min_observers: 2,
        observers: &[
            at("site1", &[stale(Recovering)]),
            at("site2", &[fresh(Failing)]),
            at("witness", &[fresh(Failing)]),
        ],
        silent: &[],
        want: down_outside(),
    },
];

/// The check state a row means, at `now`.
fn check_state(seen: Seen, now: DateTime<Utc>) -> CheckState {
    let last_at = now - TimeDelta::seconds(seen.age_secs);
    let (status, last_outcome, recovered_at) = match seen.state {
        State::Passing => (CheckStatus::Passing, Outcome::Pass, None),
        State::Failing => (CheckStatus::Failing, Outcome::Fail, None),
        State::NewFailing => (CheckStatus::Pending, Outcome::Fail, None),
        State::NewPassing => (CheckStatus::Pending, Outcome::Pass, None),
        State::Slipping => (CheckStatus::Passing, Outcome::Fail, None),
        State::Recovering => (CheckStatus::Failing, Outcome::Pass, None),
        State::JustRecovered => (CheckStatus::Passing, Outcome::Pass, Some(last_at)),
        State::RecoveredLongAgo => (
            CheckStatus::Passing,
            Outcome::Pass,
            Some(last_at - TimeDelta::seconds(10 * STALE_AFTER_SECS)),
        ),
        State::Relapsed => (CheckStatus::Failing, Outcome::Fail, Some(last_at)),
    };
    CheckState {
        status,
        since: last_at,
        last_outcome,
        streak: 1,
        streak_started: last_at,
        last_at,
        last_error: None,
        last_http_status: None,
        last_latency_ms: None,
        recovered_at,
    }
}

fn site_id(s: &str) -> SiteId {
    SiteId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn agent_id(s: &str) -> AgentId {
    AgentId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn run(case: &Case) -> Tally {
    let now = t(100);
    let mut agents = BTreeMap::new();
    let mut component = Component::new();
    for (i, o) in case.observers.iter().enumerate() {
        let agent = agent_id(&format!("{}-observer{i}", o.site.unwrap_or("stranger")));
        if let Some(site) = o.site {
            agents.insert(
                agent.clone(),
                AgentConfig {
                    site: site_id(site),
                    checks: None,
                },
            );
        }
        let checks = component.observers.entry(agent).or_default();
        for (j, seen) in o.checks.iter().enumerate() {
            let name = CheckName::new(format!("check{j}")).unwrap_or_else(|e| panic!("{e}"));
            checks.insert(name, check_state(*seen, now));
        }
    }
    for (i, site) in case.silent.iter().enumerate() {
        agents.insert(
            agent_id(&format!("{site}-silent{i}")),
            AgentConfig {
                site: site_id(site),
                checks: None,
            },
        );
    }
    let server_site = site_id("site1");
    let rules = QuorumRules {
        agents: &agents,
        server_site: &server_site,
        stale_after: TimeDelta::seconds(STALE_AFTER_SECS),
        min_observers: case.min_observers,
    };
    tally(&mut component, &rules, now);
    let names = |s: &BTreeSet<SiteId>| -> Vec<String> { s.iter().map(|x| x.to_string()).collect() };
    Tally {
        result: component.result,
        down_seen_outside: component.down_seen_outside,
        falling: component.falling,
        rising: component.rising,
        // Compared only where the row states them.
        sites: case.want.sites.map(|_| {
            (
                names(&component.failing_sites),
                names(&component.passing_sites),
            )
        }),
    }
}

/// A tally's result in comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    result: QuorumResult,
    down_seen_outside: bool,
    falling: bool,
    rising: bool,
    sites: Option<(Vec<String>, Vec<String>)>,
}

impl From<&Want> for Tally {
    fn from(w: &Want) -> Self {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Tally {
            result: w.result,
            down_seen_outside: w.down_seen_outside,
            falling: w.falling,
            rising: w.rising,
            sites: w.sites.map(|(f, p)| (owned(f), owned(p))),
        }
    }
}

#[test]
fn quorum_table() {
    assert_unique_names("quorum", CASES.iter().map(|r| r.name));
    let mut table = Table::new("quorum");
    for case in CASES {
        table.check(case.name, case, &Tally::from(&case.want), &run(case));
    }
    table.finish();
}
