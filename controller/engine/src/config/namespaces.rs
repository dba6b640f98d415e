//! Validation of `[[namespaces]]`: ordered candidates or `follow = "mailbox"`, TTL and timing.
//!
//! A namespace has exactly one routing model. Ordered candidates must be non-empty, with unique
//! targets, each requiring at least one declared site that has client-access servers. A bound
//! namespace names a declared DAG and one target per such site. Per-name `failback`,
//! `failback_after` and `hold_down` default to `[policy]` and obey the same rules.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sitewarden_contract::config::{ConfigError, KeyPath, Source};
use sitewarden_contract::{DnsName, SiteId};

use super::raw::RawNamespace;
use super::validate::{failback_mode, serving_site, timing, ttl};
use super::{Candidate, DagConfig, NamespaceConfig, Policy, Routing, SiteConfig};

/// Parses a managed name or target; stored lowercase without a trailing dot.
fn dns_name(src: &Source, key: &KeyPath, s: &str) -> Result<DnsName, ConfigError> {
    DnsName::new(s).map_err(|e| src.error(key, format!("{s:?} is not a DNS name: it {e}")))
}

/// Validates one namespace: its normalised name and configuration.
pub(super) fn namespace(
    src: &Source,
    k: &KeyPath,
    n: &RawNamespace,
    policy: &Policy,
    default_ttl: Duration,
    sites: &BTreeMap<SiteId, SiteConfig>,
    dags: &BTreeMap<String, DagConfig>,
) -> Result<(DnsName, NamespaceConfig), ConfigError> {
    let name = dns_name(src, &k.key("name"), &n.name)?;
    let ttl = ttl(src, &k.key("ttl"), n.ttl, default_ttl)?;
    let failback = match &n.failback {
        Some(s) => failback_mode(src, &k.key("failback"), s)?,
        None => policy.failback,
    };
    let hold_down = n.hold_down.unwrap_or(policy.hold_down);
    let failback_after = n.failback_after.unwrap_or(policy.failback_after);
    timing(src, k, hold_down, failback_after, policy.interval)?;
    let routing = match (&n.candidates, &n.follow) {
        (Some(_), Some(_)) => {
            return Err(src.error(
                &k.key("follow"),
                "a namespace has either `candidates` or `follow`, not both",
            ));
        }
        (None, None) => {
            return Err(src.error(
                &k.key("name"),
                "has no candidates; add `candidates = [...]` or `follow = \"mailbox\"`",
            ));
        }
        (Some(list), None) => candidates(src, k, n, list, sites)?,
        (None, Some(follow)) => follow_mailbox(src, k, n, follow, sites, dags)?,
    };
    let on_drift = match n.on_drift.as_deref() {
        None | Some("observe") => super::DriftPolicy::Observe,
        Some("enforce") if matches!(routing, Routing::Candidates(_)) => super::DriftPolicy::Enforce,
        Some("enforce") => {
            return Err(src.error(
                &k.key("on_drift"),
                "\"enforce\" is for names with candidates; a follow = \"mailbox\" name only observes drift",
            ));
        }
        Some(other) => {
            return Err(src.error(
                &k.key("on_drift"),
                format!(
                    "{other:?} is not a drift policy; use \"observe\" (default) or \"enforce\""
                ),
            ));
        }
    };
    let on_unmarked = match n.on_unmarked.as_deref() {
        None | Some("observe") => super::UnmarkedPolicy::Observe,
        Some("adopt") => super::UnmarkedPolicy::Adopt,
        Some(other) => {
            return Err(src.error(
                &k.key("on_unmarked"),
                format!(
                    "{other:?} is not an unmarked-record policy; use \"observe\" (default) or \"adopt\""
                ),
            ));
        }
    };
    Ok((
        name,
        NamespaceConfig {
            on_unmarked,
            ttl,
            routing,
            failback,
            failback_after,
            hold_down,
            on_drift,
        },
    ))
}

/// The ordered model: `candidates = [...]`, each target a DNS name listed once, each needing
/// at least one serving site.
fn candidates(
    src: &Source,
    k: &KeyPath,
    n: &RawNamespace,
    list: &[super::raw::RawCandidate],
    sites: &BTreeMap<SiteId, SiteConfig>,
) -> Result<Routing, ConfigError> {
    if n.dag.is_some() || n.targets.is_some() {
        return Err(src.error(
            &k.key("candidates"),
            "`dag` and `targets` belong to `follow = \"mailbox\"` namespaces",
        ));
    }
    if list.is_empty() {
        return Err(src.error(
            &k.key("candidates"),
            "is empty; list at least one candidate",
        ));
    }
    let mut out: Vec<Candidate> = Vec::new();
    for (j, c) in list.iter().enumerate() {
        let ck = k.key("candidates").index(j);
        let target = dns_name(src, &ck.key("target"), &c.target)?;
        if out.iter().any(|o| o.target == target) {
            return Err(src.error(
                &ck.key("target"),
                format!("target \"{target}\" is listed twice"),
            ));
        }
        if c.requires.is_empty() {
            return Err(src.error(
                &ck.key("requires"),
                "is empty; name the sites this target needs Up",
            ));
        }
        let mut requires = BTreeSet::new();
        for (r, site) in c.requires.iter().enumerate() {
            requires.insert(serving_site(
                src,
                &ck.key("requires").index(r),
                sites,
                site,
            )?);
        }
        out.push(Candidate { target, requires });
    }
    Ok(Routing::Candidates(out))
}

/// The bound model: `follow = "mailbox"` with a known `dag` and one target per serving site.
fn follow_mailbox(
    src: &Source,
    k: &KeyPath,
    n: &RawNamespace,
    follow: &str,
    sites: &BTreeMap<SiteId, SiteConfig>,
    dags: &BTreeMap<String, DagConfig>,
) -> Result<Routing, ConfigError> {
    if follow != "mailbox" {
        return Err(src.error(
            &k.key("follow"),
            format!("{follow:?} cannot be followed; the only value is \"mailbox\""),
        ));
    }
    let Some(dag) = &n.dag else {
        return Err(src.error(
            &k.key("follow"),
            "needs `dag = \"<name>\"` naming a [[dags]] entry",
        ));
    };
    if !dags.contains_key(dag) {
        return Err(src.error(
            &k.key("dag"),
            format!("names unknown DAG {dag:?}; declare it under [[dags]]"),
        ));
    }
    let raw_targets = n.targets.as_ref().filter(|t| !t.is_empty());
    let Some(raw_targets) = raw_targets else {
        return Err(src.error(
            &k.key("follow"),
            "needs `targets = { site1 = \"...\" }`, one target per site",
        ));
    };
    let mut targets = BTreeMap::new();
    for (site, target) in raw_targets {
        let tk = k.key("targets").key(site);
        let site = serving_site(src, &tk, sites, site)?;
        let target = dns_name(src, &tk, target)?;
        if targets.values().any(|t| *t == target) {
            return Err(src.error(&tk, format!("target \"{target}\" is used for two sites")));
        }
        targets.insert(site, target);
    }
    Ok(Routing::FollowMailbox {
        dag: dag.clone(),
        targets,
    })
}
