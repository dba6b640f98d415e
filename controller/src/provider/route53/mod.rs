//! The Amazon Route 53 provider: CNAMEs in one hosted zone, changed with one
//! ChangeResourceRecordSets batch per change.
//!
//! Route 53's batches are all-or-nothing and a DELETE must match the current record set
//! exactly, so a batch that DELETEs the CNAME as read and CREATEs the new one is a
//! compare-and-set. The ownership marker is a TXT record at `_sitewarden.<name>` holding the same
//! text as a Cloudflare comment (`sitewarden epoch=7 gen=42`); it is replaced in the same batch
//! by DELETE-as-read and CREATE (or CREATE alone when there was none, which fails if one
//! appeared) — stronger than an UPSERT, because a newer leader's marker written since our read
//! also fails the batch. A change is: read (ListResourceRecordSets from the name on: the CNAME
//! and, just after it in Route 53's order, its marker), [`decide`] by the same rules as every
//! provider, check the lease [fence](super::fenced), send the batch, then poll GetChange until
//! INSYNC (bounded by `insync_timeout`) — three calls when the first poll finds it INSYNC. The
//! batch being atomic and conditional, the state after it is known; INSYNC confirms every Route
//! 53 nameserver serves it.
//!
//! A refused batch (`InvalidChangeBatch`: the values no longer match) is followed by a read: if
//! the record changed since our read, the outcome is the refusal the new state calls for, or
//! [`Refusal::Drift`] — never a second write over someone else's change; if nothing changed, the
//! batch was invalid for another reason and that error is returned. Throttling and
//! `PriorRequestNotComplete` are `RateLimited`, retried with backoff; 403 is `Auth`.
//!
//! Why not the AWS SDK: `aws-sdk-route53` brings the Smithy runtime, its own HTTP stack and
//! credential chain (hundreds of crates, minutes of build) for three calls whose XML fits on a
//! page. The `aws-sigv4` crate alone signs requests exactly as the SDK does, over the reqwest
//! the controller already uses. Credentials come from the config, the AWS environment or the
//! shared credentials file ([`credentials`]), and are read again when Route 53 refuses them
//! (the request is then retried once with the fresh ones) or shortly before they expire.
//!
//! Route 53 allows 5 requests per second per account. Calls are paced at least `min_interval`
//! apart (250 ms: 4 per second at most, leaving room for other tools in the account), and every
//! call spends a token of the client-side budget. Route 53 refuses a change batch while the
//! zone's previous one is still being applied (`PriorRequestNotComplete`), so the provider sends
//! one change batch at a time and follows it to INSYNC before the next goes out.
//!
//! Many changes at once ([`DnsProvider::apply_many`]) go out as few change batches of up to
//! `batch_size` names each, read and verified with listings of the zone ([`batch`]).
//!
//! [`decide`]: super::decide::decide

pub mod api;
pub mod batch;
pub mod config;
pub mod credentials;

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::{Budget, RateBudget, RetryPolicy, StatsSnapshot};
use super::cas::CALLS_PER_CHANGE;
use super::conditional::{self, after_failed_comparison};
use super::decide::{Decision, Patch, decide};
use super::{
    ApplyOutcome, BatchFuture, Change, DnsProvider, Marker, ProviderError, ProviderFuture,
    RecordState, Refusal,
};
use api::{Action, Api, ChangeInfo, RecordSet};
use credentials::LiveCredentials;

/// Route 53's public API endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://route53.amazonaws.com";

/// The SigV4 region of Route 53's global endpoint.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Route 53's documented limit: 5 requests per second per AWS account.
pub const ROUTE53_LIMIT: RateBudget = RateBudget {
    requests: 5,
    per: Duration::from_secs(1),
};

/// The default client-side budget: 120 calls per minute (2 per second on average).
pub const DEFAULT_BUDGET: RateBudget = RateBudget {
    requests: 120,
    per: Duration::from_secs(60),
};

/// The least time between two calls: 4 per second at most.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// How long a change is followed with GetChange until INSYNC, by default.
pub const DEFAULT_INSYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// How often GetChange is polled while a change is PENDING.
pub const DEFAULT_INSYNC_POLL: Duration = Duration::from_secs(2);

/// The label in front of a managed name that holds its ownership marker.
pub const MARKER_LABEL: &str = "_sitewarden";

/// Record sets read per ListResourceRecordSets page: the CNAME, then names that sort between
/// it and its marker (`mail-rr`, `mail-site1`… sort before `mail._sitewarden`).
const PAGE_ITEMS: u32 = 20;

/// Everything the provider needs.
pub struct Route53Options {
    /// API endpoint, e.g. [`DEFAULT_ENDPOINT`] or moto's.
    pub endpoint_url: String,
    /// SigV4 region, [`DEFAULT_REGION`] for the global endpoint.
    pub region: String,
    /// The hosted zone id (`Z…`, with or without `/hostedzone/`).
    pub hosted_zone_id: String,
    /// The credentials, already read, with their source for reading them again.
    pub credentials: LiveCredentials,
    /// Client-side budget.
    pub budget: RateBudget,
    /// Retries of soft failures.
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Least time between two calls.
    pub min_interval: Duration,
    /// How long to follow a change until INSYNC.
    pub insync_timeout: Duration,
    /// GetChange polling interval.
    pub insync_poll: Duration,
    /// Names per change batch when many change at once (1: one name at a time, each with its
    /// own read); at most [`batch::MAX_BATCH_SIZE`].
    pub batch_size: usize,
}

/// The Route 53 provider. Deliberately without `Debug`: it holds the credentials.
pub struct Route53Provider {
    api: Api,
    zone: String,
    budget: Budget,
    insync_timeout: Duration,
    insync_poll: Duration,
    /// Names per change batch (see [`Route53Options::batch_size`]).
    batch_size: usize,
    /// Held while a change batch is in flight: one at a time per hosted zone.
    changing: tokio::sync::Mutex<()>,
    /// Pages the last listing of the whole zone took (0 before the first): what reading names
    /// one by one is weighed against.
    zone_pages: AtomicU32,
}

/// What Route 53 holds for one managed name: the record sets the batch repeats in its DELETEs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// The managed name, lower case, with the trailing dot.
    name: String,
    /// Its CNAME record set, as returned.
    cname: Option<RecordSet>,
    /// Its marker TXT record set, as returned.
    marker: Option<RecordSet>,
}

impl Held {
    fn marker_name(&self) -> String {
        format!("{MARKER_LABEL}.{}", self.name)
    }

    fn state(&self, name: &str) -> RecordState {
        let text = self
            .marker
            .as_ref()
            .map(|m| m.values.iter().map(|v| txt_text(v)).collect::<Vec<_>>());
        let carrying = text
            .iter()
            .flatten()
            .filter_map(|t| Marker::parse(t).map(|m| (m, t)))
            .max_by_key(|(m, _)| *m);
        RecordState {
            name: name.to_owned(),
            content: self
                .cname
                .as_ref()
                .and_then(|c| c.values.first())
                .map(|v| v.trim_end_matches('.').to_ascii_lowercase()),
            ttl: self.cname.as_ref().map(|c| c.ttl),
            proxied: None,
            marker: carrying.map(|(m, _)| m),
            provider_id: None,
            comment: carrying
                .map(|(_, t)| t.clone())
                .or_else(|| text.and_then(|t| t.into_iter().next())),
        }
    }
}

/// A name as Route 53 writes it: lower case, fully qualified.
fn fq(name: &str) -> String {
    format!(
        "{}.",
        name.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

/// The text of a TXT value: its quoted strings joined, escapes resolved.
fn txt_text(value: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', _) => quoted = !quoted,
            ('\\', true) => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (c, true) => out.push(c),
            (_, false) => {}
        }
    }
    if !value.contains('"') {
        return value.to_owned();
    }
    out
}

/// A TXT value holding `text`, quoted and split into strings of at most 255 characters.
fn txt_value(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let strings: Vec<String> = if chars.is_empty() {
        vec![String::new()]
    } else {
        chars.chunks(255).map(|c| c.iter().collect()).collect()
    };
    strings
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Route53Provider {
    /// Builds the provider; fails on an unusable endpoint or hosted zone id.
    pub fn new(options: Route53Options) -> Result<Self, ProviderError> {
        let zone = options
            .hosted_zone_id
            .trim()
            .trim_start_matches("/hostedzone/")
            .to_owned();
        if zone.is_empty() || !zone.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ProviderError::Rejected(format!(
                "hosted_zone_id {:?} is not a hosted zone id like \"Z0123456789ABCDEFGHIJ\"",
                options.hosted_zone_id
            )));
        }
        Ok(Self {
            api: Api::new(
                &options.endpoint_url,
                &options.region,
                options.credentials,
                options.request_timeout,
                options.min_interval,
            )?,
            zone,
            budget: Budget::new(options.budget, options.retry),
            insync_timeout: options.insync_timeout,
            insync_poll: options.insync_poll,
            batch_size: options.batch_size.clamp(1, batch::MAX_BATCH_SIZE),
            changing: tokio::sync::Mutex::new(()),
            zone_pages: AtomicU32::new(0),
        })
    }

    /// Reads the CNAME and the marker of `name`: one page, rarely two.
    async fn read_held(&self, name: &str) -> Result<Held, ProviderError> {
        let name = fq(name);
        let marker_name = format!("{MARKER_LABEL}.{name}");
        let page = self
            .budget
            .retrying(|| async {
                Ok(self
                    .api
                    .list(&self.zone, &name, "CNAME", PAGE_ITEMS)
                    .await?)
            })
            .await?;
        let at = |sets: &[RecordSet], n: &str, kind: &str| {
            sets.iter()
                .find(|s| super::same_host(&s.name, n) && s.kind == kind)
                .cloned()
        };
        if at(&page.sets, &name, "CNAME+routing").is_some() {
            return Err(ProviderError::Rejected(format!(
                "{name} is an alias or uses a routing policy (weighted, latency, failover…); \
                 sitewarden manages simple CNAME records only"
            )));
        }
        let cname = at(&page.sets, &name, "CNAME");
        let mut marker = at(&page.sets, &marker_name, "TXT");
        if marker.is_none() && page.truncated {
            let next = self
                .budget
                .retrying(|| async { Ok(self.api.list(&self.zone, &marker_name, "TXT", 1).await?) })
                .await?;
            marker = at(&next.sets, &marker_name, "TXT");
        }
        Ok(Held {
            name,
            cname,
            marker,
        })
    }

    /// The batch that moves `held` to `patch`.
    fn batch(held: &Held, patch: &Patch) -> Result<Vec<(Action, RecordSet)>, ProviderError> {
        let Some(cname) = &held.cname else {
            return Err(ProviderError::Rejected(format!(
                "{} has no CNAME to compare against",
                held.name
            )));
        };
        let ttl = patch.ttl.unwrap_or(cname.ttl);
        // Names go out without the trailing dot (Route 53 accepts both; moto matches DELETEs
        // against earlier requests textually).
        let bare = |s: &RecordSet| RecordSet {
            name: s.name.trim_end_matches('.').to_owned(),
            ..s.clone()
        };
        let mut changes = vec![
            (Action::Delete, bare(cname)),
            (
                Action::Create,
                RecordSet {
                    name: held.name.trim_end_matches('.').to_owned(),
                    kind: "CNAME".into(),
                    ttl,
                    values: vec![patch.content.trim_end_matches('.').to_owned()],
                },
            ),
        ];
        if let Some(m) = &held.marker {
            changes.push((Action::Delete, bare(m)));
        }
        changes.push((
            Action::Create,
            RecordSet {
                name: held.marker_name().trim_end_matches('.').to_owned(),
                kind: "TXT".into(),
                ttl,
                values: vec![txt_value(&patch.comment)],
            },
        ));
        Ok(changes)
    }

    /// Sends one change batch — the zone's only one in flight — and follows it until INSYNC.
    /// Spends a token of the budget for the batch when `spend` (the batched path spends it in
    /// [`super::batch::apply_many`]). `Ok(Err(_))`: the batch was accepted (it is applied) but
    /// following it failed; `Ok(Ok(false))`: not INSYNC within `insync_timeout`.
    async fn send_change(
        &self,
        comment: &str,
        changes: &[(Action, RecordSet)],
        spend: bool,
    ) -> Result<Result<bool, ProviderError>, ProviderError> {
        let _in_flight = self.changing.lock().await;
        let call = async { Ok(self.api.change(&self.zone, comment, changes).await?) };
        let info = if spend {
            self.budget.once(true, call).await?
        } else {
            call.await?
        };
        Ok(self.wait_insync(info).await)
    }

    /// Polls GetChange until INSYNC or `insync_timeout`; true when INSYNC was seen.
    async fn wait_insync(&self, mut info: ChangeInfo) -> Result<bool, ProviderError> {
        let deadline = Instant::now() + self.insync_timeout;
        while !info.insync {
            if Instant::now() + self.insync_poll > deadline {
                return Ok(false);
            }
            tokio::time::sleep(self.insync_poll).await;
            let id = info.id.clone();
            info = self
                .budget
                .retrying(|| async { Ok(self.api.get_change(&id).await?) })
                .await?;
        }
        Ok(true)
    }

    /// The verified compare-and-set: read, decide, fence, one batch, GetChange until INSYNC.
    async fn apply_change(&self, change: &Change) -> Result<ApplyOutcome, ProviderError> {
        self.budget.ensure(CALLS_PER_CHANGE)?;
        let mut held = self.read_held(&change.name).await?;
        let before = held.state(&change.name);
        let started = Instant::now();
        let mut writes = 0;
        loop {
            let current = held.state(&change.name);
            let patch = match decide(change, &current) {
                Decision::InPlace if writes == 0 => {
                    return Ok(ApplyOutcome::AlreadyInPlace { state: current });
                }
                Decision::InPlace => {
                    return Ok(ApplyOutcome::Applied {
                        before,
                        after: current,
                    });
                }
                Decision::Refuse(r) => return Ok(ApplyOutcome::Refused(r)),
                Decision::Write(patch) => patch,
            };
            let changes = Self::batch(&held, &patch)?;
            // The lease may have lapsed while we read (a frozen process): check right before.
            if super::fenced() {
                return Ok(ApplyOutcome::Refused(Refusal::LeaseLost));
            }
            writes += 1;
            let sent = self.send_change(&patch.comment, &changes, true).await;
            match sent {
                Ok(insync) => {
                    if !insync? {
                        tracing::warn!(
                            name = %change.name,
                            timeout = ?self.insync_timeout,
                            "Route 53 accepted the change but did not report it INSYNC in time"
                        );
                    }
                    // The batch was applied as a whole: the record now is what it created.
                    let after = Held {
                        name: held.name.clone(),
                        cname: changes.get(1).map(|(_, set)| set.clone()),
                        marker: changes.last().map(|(_, set)| set.clone()),
                    }
                    .state(&change.name);
                    return Ok(ApplyOutcome::Applied { before, after });
                }
                // The batch was refused: a DELETE no longer matches (someone changed the record
                // or its marker since our read) or the batch is invalid. Reading tells which.
                Err(ProviderError::Rejected(why)) => {
                    let now = self.read_held(&change.name).await?;
                    if now == held {
                        return Err(ProviderError::Rejected(why));
                    }
                    tracing::warn!(name = %change.name, "Route 53 refused the batch: the record changed since it was read");
                    return Ok(after_failed_comparison(change, now.state(&change.name)));
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(name = %change.name, "Route 53 change failed, reading back before any retry: {e}");
                    let retry = self.budget.back_off(started, writes, e.clone()).await;
                    held = self.read_held(&change.name).await?;
                    if retry.is_err() {
                        let now = held.state(&change.name);
                        return match decide(change, &now) {
                            Decision::InPlace => Ok(ApplyOutcome::Applied { before, after: now }),
                            Decision::Refuse(r) => Ok(ApplyOutcome::Refused(r)),
                            Decision::Write(_) => Err(e),
                        };
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl DnsProvider for Route53Provider {
    fn kind(&self) -> &'static str {
        "route53"
    }

    fn read<'a>(&'a self, name: &'a str) -> ProviderFuture<'a, RecordState> {
        Box::pin(async move { Ok(self.read_held(name).await?.state(name)) })
    }

    fn apply<'a>(&'a self, change: &'a Change) -> ProviderFuture<'a, ApplyOutcome> {
        Box::pin(self.apply_change(change))
    }

    fn stats(&self) -> StatsSnapshot {
        self.budget.snapshot()
    }

    fn batch_limit(&self) -> usize {
        self.batch_size
    }

    fn read_many<'a>(&'a self, names: &'a [String]) -> BatchFuture<'a, RecordState> {
        if self.batch_size <= 1 {
            return conditional::one_by_one(names, |n| self.read(n));
        }
        Box::pin(async move {
            let pass = batch::Pass::new(self);
            conditional::read_many(&pass, &self.budget, names).await
        })
    }

    fn apply_many<'a>(&'a self, changes: &'a [Change]) -> BatchFuture<'a, ApplyOutcome> {
        if self.batch_size <= 1 {
            return conditional::one_by_one(changes, |c| self.apply(c));
        }
        Box::pin(async move {
            let pass = batch::Pass::new(self);
            conditional::apply_many(&pass, &self.budget, changes).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_round_trip() {
        for text in ["sitewarden epoch=1 gen=2", "say \"hi\" \\ there", ""] {
            assert_eq!(txt_text(&txt_value(text)), text, "{text:?}");
        }
        assert_eq!(txt_text("\"a\" \"b\""), "ab");
        assert_eq!(txt_text("bare"), "bare");
        let long = "x".repeat(300);
        assert_eq!(txt_value(&long).matches('"').count(), 4);
        assert_eq!(txt_text(&txt_value(&long)), long);
    }

    #[test]
    fn the_batch_deletes_exactly_what_was_read_and_creates_the_new_pair() {
        let held = Held {
            name: "mail.example.com.".into(),
            cname: Some(RecordSet {
                name: "mail.example.com.".into(),
                kind: "CNAME".into(),
                ttl: 300,
                values: vec!["mail-rr.example.com.".into()],
            }),
            marker: Some(RecordSet {
                name: "_sitewarden.mail.example.com.".into(),
                kind: "TXT".into(),
                ttl: 300,
                values: vec!["\"sitewarden epoch=1 gen=1\"".into()],
            }),
        };
        let patch = Patch {
            content: "mail-site2.example.com".into(),
            comment: "sitewarden epoch=2 gen=2".into(),
            ttl: Some(60),
        };
        let b = Route53Provider::batch(&held, &patch).unwrap();
        let actions: Vec<_> = b
            .iter()
            .map(|(a, s)| (*a, s.kind.as_str(), s.ttl))
            .collect();
        assert_eq!(
            actions,
            [
                (Action::Delete, "CNAME", 300),
                (Action::Create, "CNAME", 60),
                (Action::Delete, "TXT", 300),
                (Action::Create, "TXT", 60),
            ]
        );
        assert_eq!(b[0].1.values, ["mail-rr.example.com."], "verbatim");
        assert_eq!(b[3].1.values, ["\"sitewarden epoch=2 gen=2\""]);
        let state = held.state("mail.example.com");
        assert_eq!(state.content.as_deref(), Some("mail-rr.example.com"));
        assert_eq!(
            state.marker,
            Some(Marker {
                epoch: 1,
                generation: 1
            })
        );
        let unmarked = Held {
            marker: None,
            ..held
        };
        let b = Route53Provider::batch(&unmarked, &patch).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[2].0, Action::Create);
    }
}
