//! Operator overrides: pin, drain, freeze, release and manual failback.
//!
//! Overrides win over automatic choices. A pin points a namespace at one of its targets; a
//! drain treats a site as Down for routing (planned maintenance: names move away at once); a
//! freeze stops automatic changes for one namespace or all; a release removes any of them.
//! Each carries who and why and may expire; expiry is checked on every tick. Requests that name
//! unknown namespaces, targets or sites are refused with a reason, never half-applied.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sitewarden_contract::{DnsName, SiteId};

use super::input::{FreezeScope, OverrideAction, OverrideRequest, ReleaseTarget};
use crate::config::ControllerConfig;

/// Key used for a freeze of everything.
pub const FREEZE_ALL: &str = "*";

/// Who set an override, why, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The operator.
    pub who: String,
    /// The reason.
    pub why: String,
    /// When it was set.
    pub since: DateTime<Utc>,
    /// When it lapses by itself.
    pub expires: Option<DateTime<Utc>>,
    /// Set with `force` over the safety check (its target's sites were not all Up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

/// A pin: a namespace held on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The pinned target.
    pub target: DnsName,
    /// Who, why, until when.
    pub hold: Hold,
}

/// Every active override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    /// Pins by namespace.
    pub pins: BTreeMap<DnsName, Pin>,
    /// Drains by site.
    pub drains: BTreeMap<SiteId, Hold>,
    /// Freezes by namespace, or [`FREEZE_ALL`].
    pub freezes: BTreeMap<String, Hold>,
}

/// What an accepted override asks of the engine next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Re-evaluate namespaces.
    Reevaluate,
    /// Re-evaluate, and fail `namespace` back to its most preferred Up candidate.
    Failback(DnsName),
    /// A drain of this site was released: failback windows restart from now.
    Undrained(SiteId),
}

fn scope_key(scope: &FreezeScope) -> String {
    match scope {
        FreezeScope::All => FREEZE_ALL.to_owned(),
        FreezeScope::Namespace(n) => n.to_string(),
    }
}

impl Overrides {
    /// Whether `site` is drained.
    pub fn is_drained(&self, site: &SiteId) -> bool {
        self.drains.contains_key(site)
    }

    /// The freeze that applies to `namespace`, if any.
    pub fn freeze_of(&self, namespace: &str) -> Option<&Hold> {
        self.freezes
            .get(namespace)
            .or_else(|| self.freezes.get(FREEZE_ALL))
    }

    /// Applies a request, or says why it is refused.
    pub fn apply(
        &mut self,
        config: &ControllerConfig,
        req: &OverrideRequest,
        now: DateTime<Utc>,
    ) -> Result<Effect, String> {
        let hold = |expires: &Option<DateTime<Utc>>| -> Result<Hold, String> {
            if expires.is_some_and(|e| e <= now) {
                return Err("expiry is not in the future".to_owned());
            }
            Ok(Hold {
                who: req.who.clone(),
                why: req.why.clone(),
                since: now,
                expires: *expires,
                forced: req.force,
            })
        };
        let known_ns = |n: &DnsName| -> Result<DnsName, String> {
            if config.namespaces.contains_key(n) {
                Ok(n.clone())
            } else {
                Err(format!("unknown namespace \"{n}\""))
            }
        };
        match &req.action {
            OverrideAction::Pin {
                namespace,
                target,
                expires,
            } => {
                let ns = known_ns(namespace)?;
                let ok = config
                    .namespaces
                    .get(&ns)
                    .is_some_and(|c| c.targets().contains(&target));
                if !ok {
                    return Err(format!("\"{target}\" is not a configured target of {ns}"));
                }
                let hold = hold(expires)?;
                let target = target.clone();
                self.pins.insert(ns, Pin { target, hold });
                Ok(Effect::Reevaluate)
            }
            OverrideAction::Drain { site, expires } => {
                if !config
                    .sites
                    .get(site)
                    .is_some_and(|s| s.has_client_access())
                {
                    return Err(format!("{site} is not a site with client access"));
                }
                let hold = hold(expires)?;
                self.drains.insert(site.clone(), hold);
                Ok(Effect::Reevaluate)
            }
            OverrideAction::Freeze { scope, expires } => {
                if let FreezeScope::Namespace(n) = scope {
                    known_ns(n)?;
                }
                let hold = hold(expires)?;
                self.freezes.insert(scope_key(scope), hold);
                Ok(Effect::Reevaluate)
            }
            OverrideAction::Release { what } => match what {
                ReleaseTarget::Pin { namespace } => self
                    .pins
                    .remove(namespace)
                    .map(|_| Effect::Reevaluate)
                    .ok_or_else(|| format!("{namespace} is not pinned")),
                ReleaseTarget::Drain { site } => self
                    .drains
                    .remove(site)
                    .map(|_| Effect::Undrained(site.clone()))
                    .ok_or_else(|| format!("{site} is not drained")),
                ReleaseTarget::Freeze { scope } => self
                    .freezes
                    .remove(&scope_key(scope))
                    .map(|_| Effect::Reevaluate)
                    .ok_or_else(|| "no such freeze".to_owned()),
            },
            OverrideAction::Failback { namespace } => Ok(Effect::Failback(known_ns(namespace)?)),
        }
    }

    /// Removes overrides whose expiry has passed; describes each, and lists released drains.
    pub fn expire(&mut self, now: DateTime<Utc>) -> (Vec<String>, Vec<SiteId>) {
        let due = |h: &Hold| h.expires.is_some_and(|e| e <= now);
        let mut gone = Vec::new();
        let mut undrained = Vec::new();
        self.pins.retain(|ns, p| {
            let keep = !due(&p.hold);
            if !keep {
                gone.push(format!("pin of {ns} on {} set by {}", p.target, p.hold.who));
            }
            keep
        });
        self.drains.retain(|site, h| {
            let keep = !due(h);
            if !keep {
                gone.push(format!("drain of {site} set by {}", h.who));
                undrained.push(site.clone());
            }
            keep
        });
        self.freezes.retain(|scope, h| {
            let keep = !due(h);
            if !keep {
                gone.push(format!("freeze of {scope} set by {}", h.who));
            }
            keep
        });
        (gone, undrained)
    }
}
