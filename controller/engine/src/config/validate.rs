//! Raw configuration to domain types, with one located error per problem.
//!
//! Rules checked here (also listed in `docs/configuration-controller.md`): ids are valid and
//! unique; a server belongs to one site; agents stand in known sites; `fall`, `rise`,
//! `min_observers` are at least 1 and `min_observers` does not exceed the number of agents;
//! `stale_after` is at least `interval`; `hold_down` is at least `interval` and `failback_after`
//! at least `hold_down` (a failback window shorter than the hold-down would silently be stretched
//! by it); TTLs are 1 s to 1 h; a namespace has either a non-empty candidate list or
//! `follow = "mailbox"` with a known DAG and targets; every referenced site exists and has
//! client-access servers (a witness cannot serve clients).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use sitewarden_contract::config::{ConfigError, KeyPath, Source, duration};
use sitewarden_contract::{AgentId, CheckName, ServerId, SiteId};

use super::raw::{RawDecision, RawPolicy};
use super::*;

/// Longest accepted TTL.
const MAX_TTL: Duration = Duration::from_secs(3600);

fn id<T: FromStr<Err = sitewarden_contract::IdError>>(
    src: &Source,
    key: &KeyPath,
    s: &str,
) -> Result<T, ConfigError> {
    T::from_str(s).map_err(|e| src.error(key, format!("{s:?} {e}")))
}

pub(super) fn failback_mode(
    src: &Source,
    key: &KeyPath,
    s: &str,
) -> Result<FailbackMode, ConfigError> {
    match s {
        "auto" => Ok(FailbackMode::Auto),
        "manual" => Ok(FailbackMode::Manual),
        other => Err(src.error(
            key,
            format!("{other:?} is not a failback mode; use \"auto\" or \"manual\""),
        )),
    }
}

fn policy(src: &Source, raw: &RawPolicy, agents: usize) -> Result<Policy, ConfigError> {
    let k = KeyPath::root().key("policy");
    let fall = raw.fall.unwrap_or(DEFAULT_FALL);
    if fall == 0 || fall > 10 {
        return Err(src.error(
            &k.key("fall"),
            format!("is {fall}; use 1 to 10 (default {DEFAULT_FALL})"),
        ));
    }
    let rise = raw.rise.unwrap_or(DEFAULT_RISE);
    if rise == 0 || rise > 10 {
        return Err(src.error(
            &k.key("rise"),
            format!("is {rise}; use 1 to 10 (default {DEFAULT_RISE})"),
        ));
    }
    let interval = raw.interval.unwrap_or(DEFAULT_INTERVAL);
    if interval.is_zero() {
        return Err(src.error(
            &k.key("interval"),
            "is 0s; use the agents' probe interval, e.g. \"2s\"",
        ));
    }
    let stale_after = raw.stale_after.unwrap_or(interval * 3);
    if stale_after < interval {
        return Err(src.error(
            &k.key("stale_after"),
            format!(
                "is {} but interval is {}; use at least the interval (default 3 × interval)",
                duration::format(stale_after),
                duration::format(interval)
            ),
        ));
    }
    let min_observers = raw.min_observers.unwrap_or(DEFAULT_MIN_OBSERVERS);
    if min_observers == 0 || min_observers > agents.max(1) {
        return Err(src.error(
            &k.key("min_observers"),
            format!("is {min_observers}; use 1 to the number of agents ({agents}); default 2"),
        ));
    }
    let failback = match &raw.failback {
        Some(s) => failback_mode(src, &k.key("failback"), s)?,
        None => FailbackMode::Auto,
    };
    let hold_down = raw.hold_down.unwrap_or(DEFAULT_HOLD_DOWN);
    let failback_after = raw.failback_after.unwrap_or(DEFAULT_FAILBACK_AFTER);
    timing(src, &k, hold_down, failback_after, interval)?;
    let skew_tolerance = raw.skew_tolerance.unwrap_or(DEFAULT_SKEW_TOLERANCE);
    let dbcopy_stale_after = raw.dbcopy_stale_after.unwrap_or(DEFAULT_DBCOPY_STALE_AFTER);
    if dbcopy_stale_after.is_zero() {
        return Err(src.error(&k.key("dbcopy_stale_after"), "is 0s; use e.g. \"1m\""));
    }
    let startup_grace = raw.startup_grace.unwrap_or(DEFAULT_STARTUP_GRACE);
    let retry_initial = raw.retry_initial.unwrap_or(DEFAULT_RETRY_INITIAL);
    if retry_initial < Duration::from_millis(100) {
        return Err(src.error(
            &k.key("retry_initial"),
            format!(
                "is {}; use at least 100ms (default 1s)",
                duration::format(retry_initial)
            ),
        ));
    }
    let retry_max = raw.retry_max.unwrap_or(DEFAULT_RETRY_MAX);
    if retry_max < retry_initial || retry_max > Duration::from_secs(3600) {
        return Err(src.error(
            &k.key("retry_max"),
            format!(
                "is {}; use from retry_initial ({}) to 1h (default 5m)",
                duration::format(retry_max),
                duration::format(retry_initial)
            ),
        ));
    }
    Ok(Policy {
        startup_grace,
        retry_initial,
        retry_max,
        fall,
        rise,
        interval,
        stale_after,
        min_observers,
        failback,
        failback_after,
        hold_down,
        skew_tolerance,
        dbcopy_stale_after,
    })
}

/// The hold-down / failback rule shared by `[policy]` and each namespace.
pub(super) fn timing(
    src: &Source,
    k: &KeyPath,
    hold_down: Duration,
    failback_after: Duration,
    interval: Duration,
) -> Result<(), ConfigError> {
    if hold_down < interval {
        return Err(src.error(
            &k.key("hold_down"),
            format!(
                "is {}; use at least the probe interval ({}); default 5m",
                duration::format(hold_down),
                duration::format(interval)
            ),
        ));
    }
    if failback_after < hold_down {
        return Err(src.error(
            &k.key("failback_after"),
            format!(
                "is {} but hold_down is {}; use at least the hold-down (default 10m), \
                 otherwise the hold-down silently stretches it",
                duration::format(failback_after),
                duration::format(hold_down)
            ),
        ));
    }
    Ok(())
}

pub(super) fn ttl(
    src: &Source,
    key: &KeyPath,
    ttl: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let ttl = ttl.unwrap_or(default);
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL || ttl.subsec_nanos() != 0 {
        return Err(src.error(
            key,
            format!(
                "is {}; use whole seconds from 1s to 1h (≤ 5m recommended; default 60s, 10s with \
                 the built-in DNS)",
                duration::format(ttl)
            ),
        ));
    }
    Ok(ttl)
}

/// Checks `site` exists and can serve clients.
pub(super) fn serving_site(
    src: &Source,
    key: &KeyPath,
    sites: &BTreeMap<SiteId, SiteConfig>,
    name: &str,
) -> Result<SiteId, ConfigError> {
    let site: SiteId = id(src, key, name)?;
    match sites.get(&site) {
        None => Err(src.error(
            key,
            format!("names unknown site {name:?}; declare it under [[sites]]"),
        )),
        Some(s) if !s.has_client_access() => Err(src.error(
            key,
            format!("site {name:?} has no servers (a witness) and cannot serve clients"),
        )),
        Some(_) => Ok(site),
    }
}

/// Validates the raw file into a [`ControllerConfig`].
pub(super) fn validate(src: &Source, raw: RawDecision) -> Result<ControllerConfig, ConfigError> {
    let root = KeyPath::root();
    let policy = policy(src, &raw.policy, raw.agents.len())?;
    let builtin = raw.builtin_dns;
    let default_ttl = ttl(
        src,
        &root.key("policy").key("ttl"),
        raw.policy.ttl,
        if builtin {
            BUILTIN_DEFAULT_TTL
        } else {
            DEFAULT_TTL
        },
    )?;

    if raw.sites.is_empty() {
        return Err(src.error(
            &root.key("sites"),
            "no sites; declare at least one [[sites]]",
        ));
    }
    let mut sites = BTreeMap::new();
    let mut all_servers: BTreeSet<ServerId> = BTreeSet::new();
    for (i, s) in raw.sites.iter().enumerate() {
        let k = root.key("sites").index(i);
        let site: SiteId = id(src, &k.key("name"), &s.name)?;
        let mut servers = BTreeSet::new();
        for (j, name) in s.servers.iter().enumerate() {
            let server: ServerId = id(src, &k.key("servers").index(j), name)?;
            if !all_servers.insert(server.clone()) {
                return Err(src.error(
                    &k.key("servers").index(j),
                    format!("server {name:?} is listed twice; a server belongs to one site"),
                ));
            }
            servers.insert(server);
        }
        let protocols: BTreeSet<String> = match &s.protocols {
            Some(p) if p.is_empty() || p.iter().any(|p| p.trim().is_empty()) => {
                return Err(src.error(
                    &k.key("protocols"),
                    "must list at least one non-empty protocol, e.g. [\"activesync\"]",
                ));
            }
            Some(p) => p.iter().map(|p| p.to_ascii_lowercase()).collect(),
            None => BTreeSet::from([DEFAULT_PROTOCOL.to_owned()]),
        };
        if sites
            .insert(site, SiteConfig { servers, protocols })
            .is_some()
        {
            return Err(src.error(
                &k.key("name"),
                format!("site {:?} is declared twice", s.name),
            ));
        }
    }

    let agents = agents(src, &root, &raw.agents, &sites)?;
    let dags = dags(src, &root, &raw.dags, &sites)?;

    let mut namespaces = BTreeMap::new();
    for (i, n) in raw.namespaces.iter().enumerate() {
        let k = root.key("namespaces").index(i);
        let (name, ns) =
            super::namespaces::namespace(src, &k, n, &policy, default_ttl, &sites, &dags)?;
        if namespaces.insert(name, ns).is_some() {
            return Err(src.error(
                &k.key("name"),
                format!("namespace {:?} is declared twice", n.name),
            ));
        }
    }
    Ok(ControllerConfig {
        policy,
        sites,
        agents,
        dags,
        namespaces,
    })
}

/// `[[agents]]`: each in a declared site, declared once, with an optional allow-list of checks.
fn agents(
    src: &Source,
    root: &KeyPath,
    raw: &[super::raw::RawAgent],
    sites: &BTreeMap<SiteId, SiteConfig>,
) -> Result<BTreeMap<AgentId, AgentConfig>, ConfigError> {
    let mut agents = BTreeMap::new();
    for (i, a) in raw.iter().enumerate() {
        let k = root.key("agents").index(i);
        let agent: AgentId = id(src, &k.key("name"), &a.name)?;
        let site: SiteId = id(src, &k.key("site"), &a.site)?;
        if !sites.contains_key(&site) {
            return Err(src.error(&k.key("site"), format!("names unknown site {:?}", a.site)));
        }
        let checks = match &a.checks {
            None => None,
            Some(list) => {
                let mut set = BTreeSet::new();
                for (j, c) in list.iter().enumerate() {
                    set.insert(id::<CheckName>(src, &k.key("checks").index(j), c)?);
                }
                Some(set)
            }
        };
        if agents.insert(agent, AgentConfig { site, checks }).is_some() {
            return Err(src.error(
                &k.key("name"),
                format!("agent {:?} is declared twice", a.name),
            ));
        }
    }
    Ok(agents)
}

/// `[[dags]]`: each named, declared once, mapping every mailbox server to a declared site.
fn dags(
    src: &Source,
    root: &KeyPath,
    raw: &[super::raw::RawDag],
    sites: &BTreeMap<SiteId, SiteConfig>,
) -> Result<BTreeMap<String, DagConfig>, ConfigError> {
    let mut dags = BTreeMap::new();
    for (i, d) in raw.iter().enumerate() {
        let k = root.key("dags").index(i);
        if d.name.trim().is_empty() {
            return Err(src.error(&k.key("name"), "is empty; use the DAG's name"));
        }
        if d.servers.is_empty() {
            return Err(src.error(
                &k.key("servers"),
                "is empty; map each mailbox server to its site, e.g. { EX01 = \"site1\" }",
            ));
        }
        let mut servers = BTreeMap::new();
        for (server, site) in &d.servers {
            let site: SiteId = id(src, &k.key("servers").key(server), site)?;
            if !sites.contains_key(&site) {
                return Err(src.error(
                    &k.key("servers").key(server),
                    format!("names unknown site {site}"),
                ));
            }
            servers.insert(server.to_ascii_lowercase(), site);
        }
        if dags.insert(d.name.clone(), DagConfig { servers }).is_some() {
            return Err(src.error(
                &k.key("name"),
                format!("DAG {:?} is declared twice", d.name),
            ));
        }
    }
    Ok(dags)
}
