//! Scoped re-planning against the full re-plan: an evaluation re-plans only the names whose
//! plan may have changed (see `replan`), and that must never show.
//!
//! Two engines on the same configuration — one scoped (the shipped engine), one that re-plans
//! every name on every evaluation (`Engine::with_full_replan`, the engine before scoping) —
//! take the same random inputs at random times: four sites fail, recover and cut each other
//! off, observers add noise and fall silent, two DAGs move, the provider acknowledges, fails and
//! reports drifted or missing records, operators pin, freeze, drain, release and fail back with
//! and without expiries, the lease comes and goes. The provider's answers are built from the
//! `SetRecord`s the engines issue, so they hit real pending changes. After every input both
//! must have issued the same commands and hold the same state; at the end every name's
//! explanation and the next wake-up time must agree too.

mod support;

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use sitewarden_contract::dbcopy::{CopyStatus, DbCopy};
use sitewarden_contract::{
    AgentId, CheckKind, CheckName, CollectOutcome, CollectVia, DbCopySnapshot, DnsName,
    Observation, ObservationDetails, Outcome, ServerId, SiteId,
};
use sitewarden_engine::config::ControllerConfig;
use sitewarden_engine::{
    Command, Engine, Epoch, FailureClass, FreezeScope, Generation, Input, LeadershipChange,
    OverrideAction, OverrideRequest, ProviderReport, ReleaseTarget, SetRecord, State,
};

const SITES: [&str; 4] = ["s1", "s2", "s3", "s4"];
/// Servers and their sites.
const SERVERS: [(&str, usize); 6] = [
    ("cas1", 0),
    ("cas2", 0),
    ("cas3", 1),
    ("cas4", 1),
    ("cas5", 2),
    ("cas6", 3),
];
/// Observers and their sites (`None`: the witness).
const AGENTS: [(&str, Option<usize>); 4] = [
    ("a1", Some(0)),
    ("a2", Some(1)),
    ("a3", Some(2)),
    ("w1", None),
];
/// The DAGs, their mailbox servers and sites.
const DAGS: [(&str, [(&str, usize); 2]); 2] = [
    ("DAG1", [("EX01", 0), ("EX02", 1)]),
    ("DAG2", [("EX05", 2), ("EX06", 3)]),
];

/// Two site pairs, names on each, names across them, both routing models and every
/// per-name policy, with windows short enough for random runs to cross them.
fn cfg() -> ControllerConfig {
    support::config_from(
        r#"
[policy]
interval = "2s"
fall = 2
rise = 2
stale_after = "10s"
hold_down = "20s"
failback_after = "30s"
startup_grace = "15s"
retry_initial = "1s"
retry_max = "40s"

[[sites]]
name = "s1"
servers = ["cas1", "cas2"]
[[sites]]
name = "s2"
servers = ["cas3", "cas4"]
[[sites]]
name = "s3"
servers = ["cas5"]
[[sites]]
name = "s4"
servers = ["cas6"]
[[sites]]
name = "witness"

[[agents]]
name = "a1"
site = "s1"
[[agents]]
name = "a2"
site = "s2"
[[agents]]
name = "a3"
site = "s3"
[[agents]]
name = "w1"
site = "witness"

[[dags]]
name = "DAG1"
servers = { EX01 = "s1", EX02 = "s2" }
[[dags]]
name = "DAG2"
servers = { EX05 = "s3", EX06 = "s4" }

[[namespaces]]
name = "mail.example.com"
candidates = [
  { target = "mail-rr.example.com", requires = ["s1", "s2"] },
  { target = "mail-s1.example.com", requires = ["s1"] },
  { target = "mail-s2.example.com", requires = ["s2"] },
]
[[namespaces]]
name = "a.p1.example.com"
candidates = [
  { target = "p1-s1.example.com", requires = ["s1"] },
  { target = "p1-s2.example.com", requires = ["s2"] },
]
[[namespaces]]
name = "manual.p1.example.com"
failback = "manual"
candidates = [
  { target = "p1-s1.example.com", requires = ["s1"] },
  { target = "p1-s2.example.com", requires = ["s2"] },
]
[[namespaces]]
name = "enforce.p1.example.com"
on_drift = "enforce"
candidates = [
  { target = "p1-s2.example.com", requires = ["s2"] },
  { target = "p1-s1.example.com", requires = ["s1"] },
]
[[namespaces]]
name = "a.p2.example.com"
hold_down = "8s"
failback_after = "12s"
candidates = [
  { target = "p2-s3.example.com", requires = ["s3"] },
  { target = "p2-s4.example.com", requires = ["s4"] },
]
[[namespaces]]
name = "adopt.p2.example.com"
on_unmarked = "adopt"
candidates = [
  { target = "p2-s4.example.com", requires = ["s4"] },
  { target = "p2-s3.example.com", requires = ["s3"] },
]
[[namespaces]]
name = "cross.example.com"
candidates = [
  { target = "cross-s1s3.example.com", requires = ["s1", "s3"] },
  { target = "cross-s3.example.com", requires = ["s3"] },
  { target = "cross-s1.example.com", requires = ["s1"] },
]
[[namespaces]]
name = "owa.example.com"
follow = "mailbox"
dag = "DAG1"
targets = { s1 = "owa-s1.example.com", s2 = "owa-s2.example.com" }
[[namespaces]]
name = "owa2.example.com"
follow = "mailbox"
dag = "DAG2"
hold_down = "6s"
failback_after = "6s"
targets = { s3 = "owa2-s3.example.com", s4 = "owa2-s4.example.com" }
"#,
    )
}

#[derive(Debug, Clone)]
enum Op {
    /// One observer probes every server; `noise` flips the outcome of one of them.
    Probe {
        agent: usize,
        noise: Option<usize>,
    },
    Tick,
    FlipSite(usize),
    /// Sites `i` and `i + 1` (s1/s2 or s3/s4) see each other fail while the witness sees both.
    Cut(usize),
    Dag {
        dag: usize,
        site: usize,
    },
    /// The provider confirms the oldest outstanding change.
    Ack,
    /// The provider fails the oldest outstanding change.
    Fail(usize),
    /// An `Applied` for a name and generation nobody asked about.
    StrayAck {
        name: usize,
        generation: u64,
    },
    /// The provider reads a record: one of its targets, a foreign one or none; marked or not.
    Current {
        name: usize,
        content: usize,
        marker: Option<u64>,
    },
    Pin {
        name: usize,
        target: usize,
        expires: Option<i64>,
        force: bool,
    },
    Freeze {
        name: Option<usize>,
        expires: Option<i64>,
    },
    Drain {
        site: usize,
        expires: Option<i64>,
        force: bool,
    },
    ReleasePin(usize),
    ReleaseFreeze(Option<usize>),
    ReleaseDrain(usize),
    Failback(usize),
    Leadership,
}

fn expiry() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(1..90i64)
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..9usize;
    prop_oneof![
        40 => (0..4usize, prop::option::weighted(0.1, 0..6usize))
            .prop_map(|(agent, noise)| Op::Probe { agent, noise }),
        10 => Just(Op::Tick),
        2 => (0..4usize).prop_map(Op::FlipSite),
        1 => (0..2usize).prop_map(|i| Op::Cut(2 * i)),
        2 => (0..2usize, 0..2usize).prop_map(|(dag, site)| Op::Dag { dag, site }),
        6 => Just(Op::Ack),
        1 => (0..6usize).prop_map(Op::Fail),
        1 => (name.clone(), 0..6u64).prop_map(|(name, generation)| Op::StrayAck { name, generation }),
        2 => (name.clone(), 0..5usize, prop::option::of(0..4u64))
            .prop_map(|(name, content, marker)| Op::Current { name, content, marker }),
        1 => (name.clone(), 0..3usize, expiry(), any::<bool>())
            .prop_map(|(name, target, expires, force)| Op::Pin { name, target, expires, force }),
        1 => (prop::option::weighted(0.7, name.clone()), expiry())
            .prop_map(|(name, expires)| Op::Freeze { name, expires }),
        1 => (0..4usize, expiry(), any::<bool>())
            .prop_map(|(site, expires, force)| Op::Drain { site, expires, force }),
        1 => name.clone().prop_map(Op::ReleasePin),
        1 => prop::option::weighted(0.7, name.clone()).prop_map(Op::ReleaseFreeze),
        1 => (0..4usize).prop_map(Op::ReleaseDrain),
        1 => name.prop_map(Op::Failback),
        1 => Just(Op::Leadership),
    ]
}

/// Milliseconds before an op: mostly within a probe interval, sometimes long enough for
/// results to go stale and windows to end.
fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 0..1_500i64, 1 => 1_500..40_000i64]
}

fn steps() -> impl Strategy<Value = Vec<(i64, Op)>> {
    prop::collection::vec((gap(), op()), 1..700)
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    match s.parse() {
        Ok(v) => v,
        Err(e) => panic!("{s}: {e:?}"),
    }
}

/// The world the engines watch, and the provider's memory of what they asked for.
struct World {
    engine: Engine,
    names: Vec<DnsName>,
    now: DateTime<Utc>,
    healthy: [bool; 4],
    cut: [bool; 4],
    seq: u64,
    epoch: u64,
    leader: bool,
    outstanding: VecDeque<SetRecord>,
}

impl World {
    fn new(engine: Engine) -> Self {
        let names = engine.config().namespaces.keys().cloned().collect();
        World {
            engine,
            names,
            now: support::t(0),
            healthy: [true; 4],
            cut: [false; 4],
            seq: 0,
            epoch: 1,
            leader: true,
            outstanding: VecDeque::new(),
        }
    }

    fn seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn request(&self, action: OverrideAction, force: bool) -> Input {
        Input::Override(OverrideRequest {
            who: "prop".into(),
            why: "test".into(),
            action,
            force,
        })
    }

    fn expires(&self, secs: Option<i64>) -> Option<DateTime<Utc>> {
        secs.map(|s| self.now + TimeDelta::seconds(s))
    }

    fn name(&self, i: usize) -> DnsName {
        self.names[i % self.names.len()].clone()
    }

    /// The inputs for one op at the current time (the world changes as the op says).
    fn inputs(&mut self, op: &Op) -> Vec<Input> {
        match op {
            Op::Probe { agent, noise } => self.probe(*agent, *noise),
            Op::Tick => vec![Input::Tick],
            Op::FlipSite(i) => {
                self.healthy[*i] = !self.healthy[*i];
                vec![]
            }
            Op::Cut(i) => {
                self.cut[*i] = !self.cut[*i];
                vec![]
            }
            Op::Dag { dag, site } => vec![self.dag(*dag, *site)],
            Op::Ack => self.outstanding.pop_front().map_or(vec![], |r| {
                vec![Input::Provider(ProviderReport::Applied {
                    namespace: r.namespace,
                    generation: r.generation,
                    calls: Default::default(),
                })]
            }),
            Op::Fail(class) => self.outstanding.pop_front().map_or(vec![], |r| {
                let class = [
                    FailureClass::Transient,
                    FailureClass::RateLimited {
                        retry_after_ms: Some(3_000),
                    },
                    FailureClass::Auth,
                    FailureClass::Missing,
                    FailureClass::Drift,
                    FailureClass::NewerEpoch,
                ][*class];
                vec![Input::Provider(ProviderReport::Failed {
                    namespace: r.namespace,
                    generation: r.generation,
                    error: "boom".into(),
                    class,
                    calls: Default::default(),
                })]
            }),
            Op::StrayAck { name, generation } => vec![Input::Provider(ProviderReport::Applied {
                namespace: self.name(*name),
                generation: Generation(*generation),
                calls: Default::default(),
            })],
            Op::Current {
                name,
                content,
                marker,
            } => vec![self.current(*name, *content, *marker)],
            _ => self.operator(op),
        }
    }

    fn operator(&mut self, op: &Op) -> Vec<Input> {
        let site = |i: &usize| id::<SiteId>(SITES[*i]);
        let scope = |w: &Self, n: &Option<usize>| match n {
            Some(n) => FreezeScope::Namespace(w.name(*n)),
            None => FreezeScope::All,
        };
        let (action, force) = match op {
            Op::Pin {
                name,
                target,
                expires,
                force,
            } => {
                let namespace = self.name(*name);
                let targets = self.engine.config().namespaces[&namespace].targets();
                let target = targets[*target % targets.len()].clone();
                let expires = self.expires(*expires);
                (
                    OverrideAction::Pin {
                        namespace,
                        target,
                        expires,
                    },
                    *force,
                )
            }
            Op::Freeze { name, expires } => (
                OverrideAction::Freeze {
                    scope: scope(self, name),
                    expires: self.expires(*expires),
                },
                false,
            ),
            Op::Drain {
                site: s,
                expires,
                force,
            } => (
                OverrideAction::Drain {
                    site: site(s),
                    expires: self.expires(*expires),
                },
                *force,
            ),
            Op::ReleasePin(n) => (
                OverrideAction::Release {
                    what: ReleaseTarget::Pin {
                        namespace: self.name(*n),
                    },
                },
                false,
            ),
            Op::ReleaseFreeze(n) => (
                OverrideAction::Release {
                    what: ReleaseTarget::Freeze {
                        scope: scope(self, n),
                    },
                },
                false,
            ),
            Op::ReleaseDrain(s) => (
                OverrideAction::Release {
                    what: ReleaseTarget::Drain { site: site(s) },
                },
                false,
            ),
            Op::Failback(n) => (
                OverrideAction::Failback {
                    namespace: self.name(*n),
                },
                false,
            ),
            Op::Leadership => {
                self.leader = !self.leader;
                self.epoch += 1;
                return vec![Input::Leadership(LeadershipChange {
                    is_leader: self.leader,
                    epoch: Epoch(self.epoch),
                })];
            }
            _ => return vec![],
        };
        vec![self.request(action, force)]
    }

    fn probe(&mut self, agent: usize, noise: Option<usize>) -> Vec<Input> {
        let (name, from) = AGENTS[agent];
        let mut out = Vec::new();
        for (i, (server, to)) in SERVERS.iter().enumerate() {
            // Across a cut, each side sees the other fail; the witness sees both.
            let cut = from.is_some_and(|f| {
                let pair = f.min(*to) / 2 * 2;
                f != *to && f / 2 == *to / 2 && self.cut[pair]
            });
            let ok = self.healthy[*to] && !cut;
            let ok = ok ^ (noise == Some(i));
            let site = from.map_or("witness", |f| SITES[f]);
            let seq = self.seq();
            out.push(Input::Observation(Observation {
                schema_version: 1,
                agent: id::<AgentId>(name),
                site: id::<SiteId>(site),
                seq,
                observed_at: self.now,
                target_site: id::<SiteId>(SITES[*to]),
                server: id::<ServerId>(server),
                check: id::<CheckName>("eas"),
                kind: CheckKind::Activesync,
                protocol: "activesync".into(),
                outcome: if ok { Outcome::Pass } else { Outcome::Fail },
                http_status: None,
                latency_ms: 5,
                error_class: None,
                error: None,
                details: ObservationDetails::default(),
            }));
        }
        out
    }

    fn dag(&mut self, dag: usize, site: usize) -> Input {
        let (name, servers) = DAGS[dag];
        let (server, _) = servers[site];
        let seq = self.seq();
        Input::DbCopy(DbCopySnapshot {
            schema_version: 1,
            agent: id("w1"),
            site: id("witness"),
            seq,
            observed_at: self.now,
            source: id("dag"),
            dag: name.into(),
            via: CollectVia::Command,
            outcome: CollectOutcome::Ok,
            error: None,
            copies: vec![DbCopy {
                name: format!("DB01\\{server}"),
                database: "DB01".into(),
                server: server.into(),
                status: CopyStatus::Mounted,
                active_database_copy: None,
                activation_suspended: false,
                copy_queue_length: 0,
                replay_queue_length: 0,
                content_index_state: None,
                last_inspected_log_time: None,
                activation_preference: None,
                error_message: None,
            }],
        })
    }

    fn current(&self, name: usize, content: usize, marker: Option<u64>) -> Input {
        let namespace = self.name(name);
        let targets = self.engine.config().namespaces[&namespace].targets();
        let target = match targets.get(content) {
            Some(t) => Some((*t).clone()),
            None if content.is_multiple_of(2) => Some(id("elsewhere.example.com")),
            None => None,
        };
        Input::Provider(ProviderReport::Current {
            namespace,
            target,
            generation: marker.map(Generation),
            written: None,
        })
    }
}

/// Every name's record holds its first target, marked, before anything else happens.
fn opening(world: &World) -> Vec<Input> {
    let mut out = vec![Input::Leadership(LeadershipChange {
        is_leader: true,
        epoch: Epoch(1),
    })];
    for name in &world.names {
        let first = world.engine.config().namespaces[name].targets()[0].clone();
        out.push(Input::Provider(ProviderReport::Current {
            namespace: name.clone(),
            target: Some(first),
            generation: Some(Generation(0)),
            written: None,
        }));
    }
    out
}

fn step_both(
    scoped: &Engine,
    full: &Engine,
    a: &mut State,
    b: &mut State,
    now: DateTime<Utc>,
    input: &Input,
) -> Result<Vec<Command>, TestCaseError> {
    let out_a = scoped.step(a, now, input);
    let out_b = full.step(b, now, input);
    if out_a != out_b {
        let at = out_a.iter().zip(&out_b).position(|(x, y)| x != y);
        let first = at.unwrap_or(out_a.len().min(out_b.len()));
        return Err(TestCaseError::fail(format!(
            "at {now} after {input:?}: {} commands scoped, {} in full; the first that differs \
             (#{first}):\nscoped: {:?}\nfull:   {:?}",
            out_a.len(),
            out_b.len(),
            out_a.get(first),
            out_b.get(first)
        )));
    }
    prop_assert!(a == b, "states differ at {now} after {input:?}");
    Ok(out_a)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn scoped_re_planning_says_exactly_what_a_full_re_plan_says(ops in steps()) {
        let scoped = Engine::new(cfg());
        let full = Engine::new(cfg()).with_full_replan();
        let mut world = World::new(Engine::new(cfg()));
        let mut a = scoped.initial_state();
        let mut b = full.initial_state();
        for input in opening(&world) {
            step_both(&scoped, &full, &mut a, &mut b, world.now, &input)?;
        }
        for (i, (gap, op)) in ops.iter().enumerate() {
            world.now += TimeDelta::milliseconds(*gap);
            for input in world.inputs(op) {
                let out = step_both(&scoped, &full, &mut a, &mut b, world.now, &input)?;
                for c in out {
                    if let Command::SetRecord(r) = c {
                        world.outstanding.push_back(r);
                    }
                }
            }
            if i.is_multiple_of(16) {
                nothing_happens_before_the_wake_up(&scoped, &a, world.now)?;
            }
        }
        for name in &world.names {
            prop_assert_eq!(scoped.explain(&a, name), full.explain(&b, name));
        }
        prop_assert_eq!(scoped.next_wake(&a, world.now), full.next_wake(&b, world.now));
    }
}

/// With the names' due times kept per plan, `next_wake` still misses nothing: once ticks have
/// taken what is due now, a tick just before the wake-up time it names changes nothing.
fn nothing_happens_before_the_wake_up(
    engine: &Engine,
    state: &State,
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let mut state = state.clone();
    // The first tick takes what is due now; a name it moves is re-planned once more by the
    // next evaluation (to say why it stays), which the second one is.
    engine.step(&mut state, now, &Input::Tick);
    engine.step(&mut state, now, &Input::Tick);
    let wake = engine.next_wake(&state, now);
    let before = wake.map_or(now + TimeDelta::hours(1), |w| {
        w - TimeDelta::milliseconds(1)
    });
    let out = engine.step(&mut state, before, &Input::Tick);
    prop_assert!(
        out.is_empty(),
        "a tick at {before}, before the wake-up at {wake:?} (now {now}), said {out:?}"
    );
    Ok(())
}
