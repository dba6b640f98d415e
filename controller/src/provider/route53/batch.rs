//! Many Route 53 changes in one change batch: the [`BatchStore`] behind the provider's
//! [`apply_many`](crate::provider::DnsProvider::apply_many).
//!
//! **Reading.** One listing of the hosted zone (ListResourceRecordSets, 300 record sets a page,
//! following `NextRecordName`/`NextRecordType`; one call and one budget token a page) finds every
//! asked name's CNAME and its `_sitewarden` TXT marker at once. A listing costs as many calls as
//! the zone has pages, so a handful of names is read one by one instead (one page from the name
//! on, rarely two): whenever there are no more names than the last listing took pages — three
//! before the first listing.
//!
//! **Writing.** One ChangeResourceRecordSets carries, for every name of the batch, the DELETE of
//! its CNAME and of its marker exactly as listed and the CREATE of the new ones. Route 53 applies
//! a batch all or nothing, and a DELETE that no longer matches the current values refuses the
//! whole batch (`InvalidChangeBatch`): that is the compare-and-set. [`batch::apply_many`] splits
//! a refused batch into halves down to the name that changed, which is then settled by reading it
//! again ([`conditional`]). The batch is the zone's only change in flight, followed with GetChange
//! until INSYNC before the next goes out.
//!
//! **Limits.** Route 53 accepts at most 1,000 ResourceRecord elements and 32,000 characters of
//! values in one request. A name costs [`RECORDS_PER_NAME`] elements, so a batch holds at most
//! [`MAX_BATCH_SIZE`] names; the default [`DEFAULT_BATCH_SIZE`] leaves room for values averaging
//! 80 characters. A batch whose values are longer than Route 53 allows is not sent: it is refused
//! here, as Route 53 would refuse it, and halved like any refused batch.
//!
//! [`batch::apply_many`]: crate::provider::batch::apply_many
//! [`conditional`]: crate::provider::conditional

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::api::{Action, RecordSet, Start};
use super::{Held, MARKER_LABEL, Route53Provider, fq};
use crate::provider::batch::BatchStore;
use crate::provider::budget::Budget;
use crate::provider::conditional::{ConditionalStore, Reads};
use crate::provider::decide::Patch;
use crate::provider::{ProviderError, RecordState};

/// Route 53's limit on ResourceRecord elements in one ChangeResourceRecordSets request.
pub const MAX_RESOURCE_RECORDS: usize = 1_000;

/// Route 53's limit on the characters of all `Value` elements in one request.
pub const MAX_VALUE_CHARS: usize = 32_000;

/// ResourceRecord elements one name costs: the DELETE and CREATE of its CNAME and its marker.
pub const RECORDS_PER_NAME: usize = 4;

/// The most names one change batch can carry: 1,000 elements at 4 a name.
pub const MAX_BATCH_SIZE: usize = MAX_RESOURCE_RECORDS / RECORDS_PER_NAME;

/// Names per change batch by default: 400 elements, and 32,000 characters for values averaging
/// 80 characters.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// Record sets per page of a zone listing (Route 53 returns at most 300).
pub const LIST_PAGE_ITEMS: u32 = 300;

/// Up to this many names are read one by one before the first listing has shown the zone's size.
pub const ONE_BY_ONE_AT_MOST: u32 = 3;

/// One batched apply (or read) on Route 53: the provider and every raw record set it read.
pub(super) struct Pass<'a> {
    provider: &'a Route53Provider,
    reads: Reads<Held>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(provider: &'a Route53Provider) -> Self {
        Self {
            provider,
            reads: Reads::default(),
        }
    }
}

impl Route53Provider {
    /// Whether reading `names` names one by one costs fewer calls than listing the zone.
    fn reads_one_by_one(&self, names: usize) -> bool {
        let pages = self
            .zone_pages
            .load(Ordering::Relaxed)
            .max(ONE_BY_ONE_AT_MOST);
        u32::try_from(names).is_ok_and(|n| n <= pages)
    }

    /// Reads `names` one by one; a name that cannot be managed (an alias…) is its error.
    async fn read_each(
        &self,
        names: &[String],
    ) -> Result<Vec<Result<Held, ProviderError>>, ProviderError> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.read_held(name).await {
                Ok(held) => out.push(Ok(held)),
                Err(e @ ProviderError::Rejected(_)) => out.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Lists the whole zone and keeps the CNAME and marker of each of `names`.
    async fn list_for(
        &self,
        budget: &Budget,
        names: &[String],
    ) -> Result<Vec<Result<Held, ProviderError>>, ProviderError> {
        let mut records: HashMap<String, Vec<usize>> = HashMap::new();
        let mut markers: HashMap<String, Vec<usize>> = HashMap::new();
        let mut held: Vec<Held> = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let name = fq(name);
            records.entry(name.clone()).or_default().push(i);
            markers
                .entry(format!("{MARKER_LABEL}.{name}"))
                .or_default()
                .push(i);
            held.push(Held {
                name,
                cname: None,
                marker: None,
            });
        }
        let mut routing = vec![false; names.len()];
        let mut start: Option<Start> = None;
        let mut pages = 0u32;
        loop {
            let page = budget
                .retrying(|| async {
                    Ok(self
                        .api
                        .list_from(&self.zone, start.as_ref(), LIST_PAGE_ITEMS)
                        .await?)
                })
                .await?;
            pages = pages.saturating_add(1);
            for set in page.sets {
                let name = fq(&set.name);
                match set.kind.as_str() {
                    "CNAME" | "CNAME+routing" => {
                        for &i in records.get(&name).into_iter().flatten() {
                            if set.kind == "CNAME" {
                                held[i].cname = Some(set.clone());
                            } else {
                                routing[i] = true;
                            }
                        }
                    }
                    "TXT" => {
                        for &i in markers.get(&name).into_iter().flatten() {
                            held[i].marker = Some(set.clone());
                        }
                    }
                    _ => {}
                }
            }
            match page.next {
                Some(next) if page.truncated => {
                    if start.as_ref() == Some(&next) {
                        return Err(ProviderError::Transient(format!(
                            "Route 53 listed the page from {} {} twice",
                            next.name, next.kind
                        )));
                    }
                    start = Some(next);
                }
                _ => break,
            }
        }
        self.zone_pages.store(pages, Ordering::Relaxed);
        Ok(held
            .into_iter()
            .zip(routing)
            .map(|(h, routing)| {
                if routing {
                    Err(ProviderError::Rejected(format!(
                        "{} is an alias or uses a routing policy (weighted, latency, failover…); \
                         sitewarden manages simple CNAME records only",
                        h.name
                    )))
                } else {
                    Ok(h)
                }
            })
            .collect())
    }
}

/// The change batch for `writes`: each name's DELETEs of exactly what was read and its CREATEs.
fn compose(
    reads: &Reads<Held>,
    writes: &[(RecordState, Patch)],
) -> Result<Vec<(Action, RecordSet)>, ProviderError> {
    let mut changes = Vec::with_capacity(writes.len() * RECORDS_PER_NAME);
    for (state, patch) in writes {
        let held = reads.for_write(state, |h| h.state(&state.name))?;
        changes.extend(Route53Provider::batch(&held, patch)?);
    }
    Ok(changes)
}

/// Refuses, as Route 53 would, a batch over its limits on elements and characters.
pub fn within_limits(changes: &[(Action, RecordSet)]) -> Result<(), ProviderError> {
    let values = changes.iter().flat_map(|(_, set)| &set.values);
    let records = values.clone().count();
    let chars: usize = values.map(|v| v.chars().count()).sum();
    if records > MAX_RESOURCE_RECORDS || chars > MAX_VALUE_CHARS {
        return Err(ProviderError::Rejected(format!(
            "a change batch of {records} ResourceRecord elements and {chars} characters of \
             values is over Route 53's limits ({MAX_RESOURCE_RECORDS} and {MAX_VALUE_CHARS}); it \
             was not sent"
        )));
    }
    Ok(())
}

impl BatchStore for Pass<'_> {
    fn limit(&self) -> usize {
        self.provider.batch_size
    }

    /// Each name has a CNAME and a marker TXT: at least two record sets a name, in pages of
    /// [`LIST_PAGE_ITEMS`].
    fn listing_calls(&self, names: usize) -> u32 {
        u32::try_from(names.saturating_mul(2).div_ceil(LIST_PAGE_ITEMS as usize))
            .unwrap_or(u32::MAX)
    }

    async fn fetch_many(
        &self,
        budget: &Budget,
        names: &[String],
    ) -> Result<Vec<RecordState>, ProviderError> {
        let read = if self.provider.reads_one_by_one(names.len()) {
            self.provider.read_each(names).await?
        } else {
            self.provider.list_for(budget, names).await?
        };
        let mut states = Vec::with_capacity(names.len());
        for (name, read) in names.iter().zip(read) {
            states.push(match &read {
                Ok(held) => held.state(name),
                Err(_) => RecordState {
                    name: name.clone(),
                    ..RecordState::default()
                },
            });
            self.reads.put(name, read);
        }
        Ok(states)
    }

    async fn write_many(&self, writes: &[(RecordState, Patch)]) -> Result<(), ProviderError> {
        let changes = compose(&self.reads, writes)?;
        within_limits(&changes)?;
        let comment = format!("sitewarden: {} names", writes.len());
        match self.provider.send_change(&comment, &changes, false).await? {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(
                    names = writes.len(),
                    timeout = ?self.provider.insync_timeout,
                    "Route 53 accepted the change batch but did not report it INSYNC in time"
                );
                Ok(())
            }
            // Applied, as a whole: reading back shows it.
            Err(e) => Err(ProviderError::Transient(format!(
                "Route 53 accepted the change batch but following it to INSYNC failed: {e}"
            ))),
        }
    }
}

impl ConditionalStore for Pass<'_> {
    type Held = Held;

    fn reads(&self) -> &Reads<Held> {
        &self.reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Marker;

    fn held(i: usize, target: &str, marker: Option<&str>) -> Held {
        let name = format!("svc{i}.example.com.");
        Held {
            cname: Some(RecordSet {
                name: name.clone(),
                kind: "CNAME".into(),
                ttl: 300,
                values: vec![format!("{target}.")],
            }),
            marker: marker.map(|m| RecordSet {
                name: format!("_sitewarden.{name}"),
                kind: "TXT".into(),
                ttl: 300,
                values: vec![format!("\"{m}\"")],
            }),
            name,
        }
    }

    fn patch(target: &str) -> Patch {
        Patch {
            content: target.into(),
            comment: Marker {
                epoch: 2,
                generation: 2,
            }
            .to_string(),
            ttl: None,
        }
    }

    #[test]
    fn a_batch_deletes_every_name_as_listed_and_creates_the_new_pairs() {
        let reads = Reads::default();
        let mut writes = Vec::new();
        for (i, marker) in [(0, Some("sitewarden epoch=1 gen=1")), (1, None)] {
            let h = held(i, "site1.example.com", marker);
            let name = format!("svc{i}.example.com");
            writes.push((h.state(&name), patch("site2.example.com")));
            reads.put(&name, Ok(h));
        }
        let changes = compose(&reads, &writes).unwrap();
        let shape: Vec<(Action, &str, &str)> = changes
            .iter()
            .map(|(a, s)| (*a, s.name.as_str(), s.kind.as_str()))
            .collect();
        assert_eq!(
            shape,
            [
                (Action::Delete, "svc0.example.com", "CNAME"),
                (Action::Create, "svc0.example.com", "CNAME"),
                (Action::Delete, "_sitewarden.svc0.example.com", "TXT"),
                (Action::Create, "_sitewarden.svc0.example.com", "TXT"),
                (Action::Delete, "svc1.example.com", "CNAME"),
                (Action::Create, "svc1.example.com", "CNAME"),
                // No marker was there: CREATE alone, which fails if one appeared meanwhile.
                (Action::Create, "_sitewarden.svc1.example.com", "TXT"),
            ]
        );
        assert_eq!(changes[0].1.values, ["site1.example.com."], "verbatim");
        assert_eq!(changes[2].1.values, ["\"sitewarden epoch=1 gen=1\""]);
        assert_eq!(changes[3].1.values, ["\"sitewarden epoch=2 gen=2\""]);
        assert!(within_limits(&changes).is_ok());
    }

    #[test]
    fn a_write_decided_on_another_read_than_the_last_is_read_again_not_sent() {
        let reads = Reads::default();
        let h = held(0, "site1.example.com", Some("sitewarden epoch=1 gen=1"));
        let decided_on = h.state("svc0.example.com");
        reads.put(
            "svc0.example.com",
            Ok(held(0, "elsewhere.example.com", None)),
        );
        let err = compose(&reads, &[(decided_on, patch("site2.example.com"))]).unwrap_err();
        assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    }

    /// A full batch of `names` names whose four values are each `chars` characters long.
    fn full_batch(names: usize, chars: usize) -> Vec<(Action, RecordSet)> {
        let set = RecordSet {
            name: "svc.example.com".into(),
            kind: "CNAME".into(),
            ttl: 60,
            values: vec!["x".repeat(chars)],
        };
        (0..names * RECORDS_PER_NAME)
            .map(|_| (Action::Create, set.clone()))
            .collect()
    }

    #[test]
    fn batches_stay_within_route53s_limits_on_elements_and_characters() {
        assert_eq!(MAX_BATCH_SIZE, 250);
        assert!(within_limits(&full_batch(MAX_BATCH_SIZE, 20)).is_ok());
        let err = within_limits(&full_batch(MAX_BATCH_SIZE + 1, 20)).unwrap_err();
        assert!(matches!(&err, ProviderError::Rejected(m) if m.contains("1004 ResourceRecord")));
        // The default batch fits values averaging 80 characters, not more.
        assert!(within_limits(&full_batch(DEFAULT_BATCH_SIZE, 80)).is_ok());
        let err = within_limits(&full_batch(DEFAULT_BATCH_SIZE, 81)).unwrap_err();
        assert!(matches!(&err, ProviderError::Rejected(m) if m.contains("32400 characters")));
    }
}
