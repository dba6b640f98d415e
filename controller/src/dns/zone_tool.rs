//! `sitewarden-controller zone list|check|create|remove`: the built-in zone's records, managed
//! with the controller's own config and NATS credentials, before or after the controllers start.
//!
//! [`super::manage`] decides what to write or report; this module reads the bucket
//! `sitewarden-dns` and writes. Every write is safe beside a running leader. A create is a KV
//! `create`, which fails if the key appeared meanwhile. A repair or a removal is a
//! compare-and-set on the revision that was read. `create` makes the bucket when it is missing,
//! with the settings the controllers would use; the other actions only read it.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, kv};

use super::manage::{self, Bucket, Finding, Origin, Present, Write};
use super::records::{self, BUCKET, Records, parse_value};
use super::{DnsConfig, bucket_spec};
use crate::config::ControllerConfig;
use crate::ha::kv::{ensure_bucket, open_bucket};
use crate::provider::config::ProviderKind;
use crate::runtime::settings::RuntimeSettings;
use sitewarden_shared::terminal;

/// How long one request to NATS may take before the tool gives up.
const BUS_WAIT: Duration = Duration::from_secs(10);

/// Why an action failed; the exit code tells the two apart.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The input is wrong (the config's provider, a zone file, a managed name to remove):
    /// nothing was written. Exit code 2.
    #[error("{0}")]
    Input(String),
    /// NATS could not be reached or refused a request. Exit code 1.
    #[error("{0}")]
    Bus(String),
}

/// What one action printed, and whether the zone needs work (`check` only).
#[derive(Debug, Default)]
pub struct Report {
    /// The text for standard output, already escaped.
    pub text: String,
    /// `check` found a problem.
    pub problems: bool,
}

/// The zone tool for one config.
pub struct ZoneTool<'a> {
    config: &'a ControllerConfig,
    dns: &'a DnsConfig,
    settings: &'a RuntimeSettings,
    js: jetstream::Context,
}

impl<'a> ZoneTool<'a> {
    /// Connects with the config's `[nats]` settings; refuses a provider other than `builtin`.
    pub async fn connect(
        config: &'a ControllerConfig,
        settings: &'a RuntimeSettings,
    ) -> Result<Self, ZoneError> {
        let ProviderKind::Builtin(dns) = &settings.provider.kind else {
            return Err(ZoneError::Input(format!(
                "[provider] kind is {:?}: the zone command manages the built-in DNS only; create the records at your DNS host (docs/dns.md)",
                settings.provider.kind.name()
            )));
        };
        let client = settings
            .nats
            .connect("sitewarden-controller zone")
            .await
            .map_err(|e| ZoneError::Bus(e.to_string()))?;
        Ok(Self {
            config,
            dns,
            settings,
            js: jetstream::new(client),
        })
    }

    /// Opens the bucket: `None` when it does not exist yet.
    async fn open(&self) -> Result<Option<kv::Store>, ZoneError> {
        bounded(open_bucket(&self.js, BUCKET))
            .await?
            .map_err(|e| ZoneError::Bus(e.to_string()))
    }

    /// Reads what the bucket holds.
    async fn read(store: &kv::Store) -> Result<(Records, Bucket), ZoneError> {
        let entries = bounded(records::read_all(store))
            .await?
            .map_err(|e| ZoneError::Bus(format!("cannot read the bucket {BUCKET}: {e}")))?;
        let mut shown = Records::default();
        let mut bucket = Bucket::new();
        for e in &entries {
            shown.apply(e);
            if e.operation != kv::Operation::Put {
                continue;
            }
            let present = match (parse_value(&e.value), serde_json::from_slice(&e.value)) {
                (Some(_), Ok(record)) => Present::Record {
                    record,
                    revision: e.revision,
                },
                _ => Present::Unreadable {
                    why: "not {\"content\", \"ttl\", ...} with a DNS name".into(),
                    revision: e.revision,
                },
            };
            bucket.insert(e.key.clone(), present);
        }
        Ok((shown, bucket))
    }

    /// `zone list`: the whole zone as a zone file, then what is missing.
    pub async fn list(&self) -> Result<Report, ZoneError> {
        let zone = self
            .dns
            .compile()
            .map_err(|e| ZoneError::Input(e.to_string()))?;
        let mut text = format!(
            "; zone {}: SOA, NS and addresses from [provider]; CNAMEs from the bucket {BUCKET}\n",
            terminal::line(&self.dns.zone)
        );
        let Some(store) = self.open().await? else {
            let _ = writeln!(text, "; {}", Finding::NoBucket);
            return Ok(Report {
                text,
                problems: true,
            });
        };
        let (shown, bucket) = Self::read(&store).await?;
        for r in super::answer::zone_records(&zone, &shown) {
            let _ = writeln!(text, "{}", terminal::line(&r.to_string()));
        }
        for f in manage::check(self.config, Some(&bucket)) {
            let _ = writeln!(text, "; {}", terminal::line(&f.to_string()));
        }
        Ok(Report {
            text,
            problems: false,
        })
    }

    /// `zone check`: every finding with its fix; `problems` unless only unmanaged names remain.
    pub async fn check(&self) -> Result<Report, ZoneError> {
        let bucket = match self.open().await? {
            Some(store) => Some(Self::read(&store).await?.1),
            None => None,
        };
        let findings = manage::check(self.config, bucket.as_ref());
        let mut text = String::new();
        for f in &findings {
            let _ = writeln!(text, "{}", terminal::line(&f.to_string()));
        }
        let problems = findings.iter().any(Finding::is_problem);
        if !problems {
            let _ = writeln!(
                text,
                "ok: all {} managed names have a record the built-in DNS answers",
                self.config.namespaces.len()
            );
        }
        Ok(Report { text, problems })
    }

    /// `zone create`: creates every missing managed name (starting where the zone file or the
    /// config says), rewrites unreadable values, and makes the bucket if needed. Every input is
    /// checked before the first write.
    pub async fn create(
        &self,
        zone_file: Option<&Path>,
        dry_run: bool,
    ) -> Result<Report, ZoneError> {
        let file = match zone_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ZoneError::Input(format!("cannot read the zone file {}: {e}", path.display()))
                })?;
                Some(manage::parse_zone_file(&text, path, &self.dns.zone).map_err(input)?)
            }
            None => None,
        };
        let wanted = manage::wanted(self.config, &self.dns.zone, file.as_ref()).map_err(input)?;
        let store = match self.open().await? {
            Some(store) => Some(store),
            None if dry_run => None,
            None => Some(
                bounded(ensure_bucket(&self.js, bucket_spec(self.settings.replicas)))
                    .await?
                    .map_err(|e| ZoneError::Bus(e.to_string()))?,
            ),
        };
        let bucket = match &store {
            Some(s) => Self::read(s).await?.1,
            None => Bucket::new(),
        };
        let plan = manage::plan_create(&wanted, &bucket);
        let mut text = String::new();
        if let Some(f) = &file
            && f.ignored > 0
        {
            let _ = writeln!(
                text,
                "note: {} records of the zone file other than CNAMEs are not stored; SOA, NS and addresses come from [provider]",
                f.ignored
            );
        }
        for w in &wanted {
            if let Some(Present::Record { record, .. }) = bucket.get(&w.key) {
                let line = format!(
                    "exists {} CNAME {} (left as it is: the leader may have moved it)",
                    w.key, record.content
                );
                let _ = writeln!(text, "{}", terminal::line(&line));
            }
        }
        for write in &plan {
            let line = describe(write, dry_run);
            if let Some(store) = store.as_ref().filter(|_| !dry_run) {
                perform(store, write).await?;
            }
            let _ = writeln!(text, "{}", terminal::line(&line));
        }
        Ok(Report {
            text,
            problems: false,
        })
    }

    /// `zone remove NAME`: deletes a record no namespace manages.
    pub async fn remove(&self, name: &str) -> Result<Report, ZoneError> {
        let key = records::record_key(name)
            .ok_or_else(|| ZoneError::Input(format!("{name:?} is not a DNS name")))?;
        manage::may_remove(self.config, &key).map_err(input)?;
        let Some(store) = self.open().await? else {
            return Err(ZoneError::Input(format!(
                "{key}: the bucket {BUCKET} does not exist"
            )));
        };
        let Some(entry) = bounded(store.entry(key.as_str()))
            .await?
            .map_err(|e| ZoneError::Bus(format!("cannot read {key}: {e}")))?
            .filter(|e| e.operation == kv::Operation::Put)
        else {
            return Err(ZoneError::Input(format!("{key}: no such record")));
        };
        bounded(store.delete_expect_revision(key.as_str(), Some(entry.revision)))
            .await?
            .map_err(|e| {
                ZoneError::Bus(format!("cannot remove {key} (changed meanwhile?): {e}"))
            })?;
        Ok(Report {
            text: format!("removed {}\n", terminal::line(&key)),
            problems: false,
        })
    }
}

fn input(e: manage::InputError) -> ZoneError {
    ZoneError::Input(e.0)
}

fn describe(write: &Write, dry_run: bool) -> String {
    let (verb, w, note) = match write {
        Write::Create(w) => ("create", w, String::new()),
        Write::Repair { wanted, why, .. } => {
            ("rewrite", wanted, format!("; was unreadable: {why}"))
        }
    };
    let from = match w.origin {
        Origin::Config => "its first target in the config",
        Origin::ZoneFile => "the zone file",
    };
    let would = if dry_run { "would " } else { "" };
    format!(
        "{would}{verb} {} CNAME {} ttl {} ({from}{note})",
        w.key, w.content, w.ttl
    )
}

async fn perform(store: &kv::Store, write: &Write) -> Result<(), ZoneError> {
    let (w, revision) = match write {
        Write::Create(w) => (w, None),
        Write::Repair {
            wanted, revision, ..
        } => (wanted, Some(*revision)),
    };
    let value = serde_json::to_vec(&w.record())
        .map_err(|e| ZoneError::Bus(format!("cannot encode {}: {e}", w.key)))?;
    let result = match revision {
        None => bounded(store.create(w.key.as_str(), value.into()))
            .await?
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Some(r) => bounded(store.update(w.key.as_str(), value.into(), r))
            .await?
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    result.map_err(|e| {
        ZoneError::Bus(format!(
            "cannot write {} ({e}); if a controller wrote it meanwhile, run `zone check`",
            w.key
        ))
    })
}

/// Bounds one NATS request, so an unreachable bus is an error, not a hang.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> Result<T, ZoneError> {
    tokio::time::timeout(BUS_WAIT, f).await.map_err(|_| {
        ZoneError::Bus(format!(
            "NATS did not answer within {}s; check [nats] servers and that the bus is up",
            BUS_WAIT.as_secs()
        ))
    })
}
