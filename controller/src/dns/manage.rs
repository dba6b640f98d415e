//! What `sitewarden-controller zone` does with the built-in zone's records, decided without I/O.
//!
//! The zone has two halves. SOA, NS and the nameservers' addresses come from `[provider]` in
//! controller.toml and are never stored. The managed names' CNAMEs live in the KV bucket
//! `sitewarden-dns`, and someone has to create each one once, because sitewarden changes
//! records but never invents them. This module works out that second half from three inputs:
//! the config (which names are managed, with which targets and TTL), an optional zone file
//! (which target each name starts at) and what the bucket holds now. From them it derives:
//! - [`wanted`]: the record each managed name should start with;
//! - [`plan_create`]: what `zone create` writes. It creates missing names and repairs values
//!   nothing can answer. It leaves any readable record alone, since the leader may have moved it;
//! - [`check`]: what `zone check` reports, each finding with the command that fixes it.
//!
//! [`crate::dns::zone_tool`] reads the bucket and writes the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::txt::Parser;

use super::records::{StoredRecord, record_key};
use crate::config::ControllerConfig;
use sitewarden_contract::DnsName;

/// The command that creates missing records, as printed in fixes.
pub const CREATE_COMMAND: &str = "sitewarden-controller zone create";

/// Where a wanted record's first target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The namespace's first target in controller.toml.
    Config,
    /// A CNAME in the zone file given with `--zone-file`.
    ZoneFile,
}

/// The record a managed name should be created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The bucket key: the name, lower case, no trailing dot.
    pub key: String,
    /// The CNAME target it starts at.
    pub content: String,
    /// The namespace's TTL, in seconds.
    pub ttl: u32,
    /// Where `content` came from.
    pub origin: Origin,
}

impl Wanted {
    /// The value stored in the bucket: stamped epoch 0, generation 0, so any leader may change it.
    pub fn record(&self) -> StoredRecord {
        StoredRecord {
            content: self.content.clone(),
            ttl: self.ttl,
            epoch: Some(0),
            generation: Some(0),
        }
    }
}

/// One key as the bucket holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Present {
    /// A value the DNS server answers.
    Record {
        /// The stored value.
        record: StoredRecord,
        /// The key's revision (for a compare-and-set).
        revision: u64,
    },
    /// A value nothing can answer (not `{"content", "ttl", ...}` with a DNS name).
    Unreadable {
        /// Why it cannot be read.
        why: String,
        /// The key's revision (for a compare-and-set).
        revision: u64,
    },
}

/// What the bucket holds, by key.
pub type Bucket = BTreeMap<String, Present>;

/// Why the zone tool cannot go on with the given input. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The record every managed name starts with: the namespace's first target (its first
/// candidate, or for `follow = "mailbox"` the first site's target), unless `zone_file` gives it
/// a CNAME. Names outside `zone` are refused: the built-in server would never answer them.
pub fn wanted(
    config: &ControllerConfig,
    zone: &str,
    zone_file: Option<&ZoneFile>,
) -> Result<Vec<Wanted>, InputError> {
    let apex = name(zone).ok_or_else(|| InputError(format!("zone {zone:?} is not a DNS name")))?;
    let mut out = Vec::with_capacity(config.namespaces.len());
    for (ns_name, ns) in &config.namespaces {
        let key = record_key(ns_name).ok_or_else(|| {
            InputError(format!(
                "namespace {ns_name:?} cannot be a key of the bucket (letters, digits, '-', '_' and dots only)"
            ))
        })?;
        if !name(&key).is_some_and(|n| apex.zone_of(&n)) {
            return Err(InputError(format!(
                "namespace {ns_name:?} is outside the zone {zone}: the built-in server only answers names inside it; rename it or change [provider] zone"
            )));
        }
        let targets = ns.targets();
        let from_file = zone_file.and_then(|f| f.cnames.get(&key));
        let (content, origin) = match from_file {
            Some(t) => (t.clone(), Origin::ZoneFile),
            None => {
                let Some(first) = targets.first() else {
                    return Err(InputError(format!(
                        "namespace {ns_name:?} has no target to start at"
                    )));
                };
                ((*first).clone(), Origin::Config)
            }
        };
        if !targets.contains(&&content) {
            let listed: Vec<&str> = targets.iter().map(|t| t.as_str()).collect();
            return Err(InputError(format!(
                "the zone file points {key} at {content}, which is none of its targets in controller.toml ({}); sitewarden would treat it as changed by hand",
                listed.join(", ")
            )));
        }
        out.push(Wanted {
            key,
            content: content.to_string(),
            ttl: u32::try_from(ns.ttl.as_secs()).unwrap_or(u32::MAX),
            origin,
        });
    }
    if let Some(f) = zone_file {
        let managed: BTreeSet<&str> = out.iter().map(|w| w.key.as_str()).collect();
        let unmanaged: Vec<&str> = f
            .cnames
            .keys()
            .map(String::as_str)
            .filter(|k| !managed.contains(k))
            .collect();
        if !unmanaged.is_empty() {
            return Err(InputError(format!(
                "the zone file has CNAMEs for names no namespace in controller.toml manages: {}; sitewarden only creates the names it moves (add a [[namespaces]] entry, or drop the line)",
                unmanaged.join(", ")
            )));
        }
    }
    Ok(out)
}

/// The managed CNAMEs of a zone file, by bucket key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneFile {
    /// CNAME owner key → target.
    pub cnames: BTreeMap<String, DnsName>,
    /// Records of other types, which the built-in server answers from `[provider]` instead.
    pub ignored: usize,
}

/// Parses a zone file (RFC 1035 master file syntax, `$ORIGIN` defaulting to `zone`) into its
/// CNAMEs. Other record types are counted and ignored: SOA, NS and the nameserver addresses come
/// from `[provider]`. TTLs are ignored too: each name is stored with its namespace's `ttl`.
pub fn parse_zone_file(text: &str, path: &Path, zone: &str) -> Result<ZoneFile, InputError> {
    let origin =
        name(zone).ok_or_else(|| InputError(format!("zone {zone:?} is not a DNS name")))?;
    // The file's TTLs are not used (each name gets its namespace's `ttl`), but the parser
    // needs one: a file without `$TTL` or a SOA gets a default it may override.
    let text = format!("$TTL 60\n{text}");
    let (_, sets) = Parser::new(text, Some(path.to_path_buf()), Some(origin.clone()))
        .parse()
        .map_err(|e| InputError(format!("{}: not a zone file: {e}", path.display())))?;
    let mut out = ZoneFile::default();
    for set in sets.values() {
        if set.record_type() != RecordType::CNAME {
            out.ignored += set.records_without_rrsigs().count();
            continue;
        }
        let owner = set.name();
        if !origin.zone_of(owner) {
            return Err(InputError(format!(
                "{}: {owner} is outside the zone {zone}",
                path.display()
            )));
        }
        let key = record_key(&owner.to_ascii()).ok_or_else(|| {
            InputError(format!(
                "{}: {owner} cannot be a key of the bucket",
                path.display()
            ))
        })?;
        let mut targets = set.records_without_rrsigs().filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            _ => None,
        });
        let (Some(target), None) = (targets.next(), targets.next()) else {
            return Err(InputError(format!(
                "{}: {owner} has more than one CNAME",
                path.display()
            )));
        };
        let target = DnsName::new(&target).map_err(|e| {
            InputError(format!(
                "{}: {owner} points at {target:?}, which is not a DNS name: it {e}",
                path.display()
            ))
        })?;
        out.cnames.insert(key, target);
    }
    Ok(out)
}

/// One write of `zone create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Create the key; fails if someone created it meanwhile.
    Create(Wanted),
    /// Overwrite an unreadable value, only if the key is still at `revision`.
    Repair {
        /// The record to write.
        wanted: Wanted,
        /// The revision of the unreadable value.
        revision: u64,
        /// Why the old value could not be read.
        why: String,
    },
}

/// What `zone create` writes: every wanted name that is missing, and every unreadable value.
/// A readable record is never touched: it may be where the leader has moved the name.
pub fn plan_create(wanted: &[Wanted], bucket: &Bucket) -> Vec<Write> {
    wanted
        .iter()
        .filter_map(|w| match bucket.get(&w.key) {
            None => Some(Write::Create(w.clone())),
            Some(Present::Unreadable { why, revision }) => Some(Write::Repair {
                wanted: w.clone(),
                revision: *revision,
                why: why.clone(),
            }),
            Some(Present::Record { .. }) => None,
        })
        .collect()
}

/// Something `zone check` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The bucket does not exist yet.
    NoBucket,
    /// A managed name has no record: the leader cannot move it, and the server answers NXDOMAIN.
    Missing {
        /// The name.
        key: String,
    },
    /// A managed name's value cannot be read, so the server does not answer it.
    Unreadable {
        /// The name.
        key: String,
        /// Why.
        why: String,
    },
    /// A managed name points at none of its targets: sitewarden treats it as changed by hand.
    NotATarget {
        /// The name.
        key: String,
        /// What it points at.
        content: String,
    },
    /// A key no namespace manages: answered, but nothing moves it.
    Unmanaged {
        /// The name.
        key: String,
    },
}

impl Finding {
    /// Whether the zone can work with it: only unmanaged names are harmless.
    pub fn is_problem(&self) -> bool {
        !matches!(self, Self::Unmanaged { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBucket => write!(
                f,
                "the bucket sitewarden-dns does not exist yet; run `{CREATE_COMMAND}` (or start a controller)"
            ),
            Self::Missing { key } => write!(
                f,
                "{key}: no record; the server answers NXDOMAIN and the leader cannot move it; run `{CREATE_COMMAND}`"
            ),
            Self::Unreadable { key, why } => write!(
                f,
                "{key}: the stored value cannot be read ({why}), so it is not answered; run `{CREATE_COMMAND}` to rewrite it"
            ),
            Self::NotATarget { key, content } => write!(
                f,
                "{key}: points at {content}, none of its targets; sitewarden leaves it alone as changed by hand (see docs/dns.md, \"drift\")"
            ),
            Self::Unmanaged { key } => write!(
                f,
                "{key}: answered, but no namespace manages it; remove it with `sitewarden-controller zone remove {key}` if it is no longer used"
            ),
        }
    }
}

/// What `zone check` finds: `None` for the bucket means it does not exist.
pub fn check(config: &ControllerConfig, bucket: Option<&Bucket>) -> Vec<Finding> {
    let Some(bucket) = bucket else {
        return vec![Finding::NoBucket];
    };
    let mut findings = Vec::new();
    let mut managed = BTreeSet::new();
    for (ns_name, ns) in &config.namespaces {
        let Some(key) = record_key(ns_name) else {
            continue;
        };
        managed.insert(key.clone());
        match bucket.get(&key) {
            None => findings.push(Finding::Missing { key }),
            Some(Present::Unreadable { why, .. }) => findings.push(Finding::Unreadable {
                key,
                why: why.clone(),
            }),
            Some(Present::Record { record, .. }) => {
                let content = record.content.trim_end_matches('.');
                let is_target =
                    DnsName::new(content).is_ok_and(|c| ns.targets().iter().any(|t| **t == c));
                if !is_target {
                    findings.push(Finding::NotATarget {
                        key,
                        content: content.to_owned(),
                    });
                }
            }
        }
    }
    findings.extend(
        bucket
            .keys()
            .filter(|k| !managed.contains(*k))
            .map(|k| Finding::Unmanaged { key: k.clone() }),
    );
    findings
}

/// Whether `key` may be removed by `zone remove`: only names no namespace manages (removing a
/// managed one would leave the leader nothing to move).
pub fn may_remove(config: &ControllerConfig, key: &str) -> Result<(), InputError> {
    let managed = config
        .namespaces
        .keys()
        .filter_map(|n| record_key(n))
        .any(|k| k == key);
    if managed {
        return Err(InputError(format!(
            "{key} is managed by a [[namespaces]] entry in controller.toml; remove the entry first, then the record"
        )));
    }
    Ok(())
}

fn name(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s.trim()).ok()?;
    n.set_fqdn(true);
    Some(n.to_lowercase())
}

#[cfg(test)]
mod tests;
