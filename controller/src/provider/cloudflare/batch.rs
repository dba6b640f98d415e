//! Many names in a few calls: the Cloudflare side of the batched compare-and-set
//! ([`crate::provider::batch`]).
//!
//! - **Read many** ([`BatchStore::fetch_many`]): list the zone's CNAMEs page by page,
//!   `GET dns_records?type=CNAME&per_page=5000&page=N` until `result_info.total_pages`, one
//!   budget token per page, and pick the names asked (case-insensitive, trailing dot ignored); a
//!   name without a CNAME reads as content `None`. Cloudflare documents `per_page` from 1 to
//!   5,000,000 (default 100); we ask for [`LIST_PAGE_SIZE`] (5,000) so that one answer stays a
//!   few megabytes, and follow whatever paging the answer reports. Reading up to
//!   [`ONE_NAME_READS_UP_TO`] names costs one call per name instead (`?type=CNAME&name=`): a
//!   re-read of a few names after a soft failure must not list a zone of 50,000 records.
//!   Records are seen once each (by id) even when a write between two pages shifts them; a name
//!   that a listing of several pages does not show is read on its own (up to
//!   [`ONE_NAME_READS_UP_TO`] of them), since a record deleted meanwhile may have shifted it out
//!   of the page it was on.
//! - **Write many** ([`BatchStore::write_many`]): one `POST dns_records/batch` with
//!   `{"patches": [{"id", "content", "comment"[, "ttl"]}, …]}`. Cloudflare runs a batch in one
//!   database transaction: any invalid item (an unknown id, bad content) refuses the whole batch
//!   and changes nothing, as does a batch above the zone plan's limit (200 records on Free,
//!   3,500 on paid plans) or a body too large (HTTP 413). Those answers are 4xx, which
//!   [`super::classify`] makes [`ProviderError::Rejected`], and the caller splits the batch in
//!   halves. A patch carries only the fields that change, exactly like the one-name PATCH:
//!   `proxied`, tags and the TTL (unless the namespace sets one) are kept.

use std::collections::HashMap;

use super::endpoints::{
    BatchBody, BatchPatch, BatchRecords, DnsRecord, ListCnamePage, PageInfo, PatchBody,
};
use super::{ZoneRecords, safe_segment, state_of};
use crate::provider::batch::BatchStore;
use crate::provider::budget::Budget;
use crate::provider::cas::RecordStore;
use crate::provider::decide::Patch;
use crate::provider::{ProviderError, RecordState};

/// Records one batch carries by default: the Free plan's limit.
pub const DEFAULT_BATCH_SIZE: usize = 200;

/// The most records one batch may carry on any plan (Pro, Business, Enterprise).
pub const MAX_BATCH_SIZE: usize = 3_500;

/// Records asked per listing page (Cloudflare allows up to 5,000,000; default 100).
pub const LIST_PAGE_SIZE: u32 = 5_000;

/// Up to this many names are read one by one instead of listing the zone.
pub const ONE_NAME_READS_UP_TO: usize = 3;

/// A listing longer than this many pages is refused: no zone of ours is that large
/// (50 million records at 5,000 a page), so an answer claiming it is garbled.
const MAX_PAGES: u32 = 10_000;

/// A name as a key: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl ZoneRecords<'_> {
    /// Reads `name` on its own (`?type=CNAME&name=`), retrying soft failures.
    async fn read_one(&self, budget: &Budget, name: &str) -> Result<RecordState, ProviderError> {
        budget.retrying(|| self.fetch(name)).await
    }

    /// One page of the zone's CNAMEs and how many pages there are.
    async fn page(&self, page: u32) -> Result<(Vec<DnsRecord>, u32), ProviderError> {
        let answer = self
            .api
            .call(&ListCnamePage {
                zone: self.zone,
                page,
                per_page: LIST_PAGE_SIZE,
            })
            .await?;
        // Without paging information the answer is the whole listing.
        let total_pages = match answer.result_info {
            None => page,
            Some(info) => {
                serde_json::from_value::<PageInfo>(info)
                    .map_err(|e| {
                        ProviderError::Transient(format!(
                            "Cloudflare sent a listing whose result_info cannot be read: {e}"
                        ))
                    })?
                    .total_pages
            }
        };
        Ok((answer.result.0, total_pages))
    }

    /// Every CNAME of the zone by name key, each record once; and how many pages it took.
    async fn list(
        &self,
        budget: &Budget,
    ) -> Result<(HashMap<String, Vec<DnsRecord>>, u32), ProviderError> {
        let mut by_name: HashMap<String, Vec<DnsRecord>> = HashMap::new();
        let mut page = 1;
        loop {
            let (records, total_pages) = budget.retrying(|| self.page(page)).await?;
            let empty = records.is_empty();
            for r in records {
                if !r.kind.eq_ignore_ascii_case("CNAME") {
                    continue;
                }
                let seen = by_name.entry(key(&r.name)).or_default();
                // A write between two pages can shift a record onto the next page too.
                if seen.iter().all(|s| s.id != r.id) {
                    seen.push(r);
                }
            }
            if empty || page >= total_pages {
                return Ok((by_name, page));
            }
            if page >= MAX_PAGES {
                return Err(ProviderError::Transient(format!(
                    "Cloudflare's listing claims more than {MAX_PAGES} pages of {LIST_PAGE_SIZE} \
                     records; refusing to read on"
                )));
            }
            page += 1;
        }
    }
}

impl BatchStore for ZoneRecords<'_> {
    fn limit(&self) -> usize {
        self.limit
    }

    /// The zone holds at least `names` CNAMEs: that many pages of [`LIST_PAGE_SIZE`].
    fn listing_calls(&self, names: usize) -> u32 {
        u32::try_from(names.div_ceil(LIST_PAGE_SIZE as usize)).unwrap_or(u32::MAX)
    }

    async fn fetch_many(
        &self,
        budget: &Budget,
        names: &[String],
    ) -> Result<Vec<RecordState>, ProviderError> {
        if names.len() <= ONE_NAME_READS_UP_TO {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                out.push(self.read_one(budget, name).await?);
            }
            return Ok(out);
        }
        let (by_name, pages) = self.list(budget).await?;
        let mut out = Vec::with_capacity(names.len());
        let mut absent = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match by_name.get(&key(name)).map(Vec::as_slice) {
                None | Some([]) => {
                    absent.push(i);
                    out.push(RecordState {
                        name: name.clone(),
                        ..RecordState::default()
                    });
                }
                Some([r]) => out.push(state_of(r.clone())),
                Some(_) => {
                    return Err(ProviderError::Rejected(format!(
                        "Cloudflare lists more than one CNAME for {name}"
                    )));
                }
            }
        }
        if pages > 1 && !absent.is_empty() && absent.len() <= ONE_NAME_READS_UP_TO {
            for i in absent {
                out[i] = self.read_one(budget, &names[i]).await?;
            }
        }
        Ok(out)
    }

    async fn write_many(&self, writes: &[(RecordState, Patch)]) -> Result<(), ProviderError> {
        let mut patches = Vec::with_capacity(writes.len());
        for (current, patch) in writes {
            // One unusable id refuses the batch as a whole; halving isolates the name.
            let id = current
                .provider_id
                .as_deref()
                .filter(|id| safe_segment(id))
                .ok_or_else(|| {
                    ProviderError::Rejected(format!("record {} has no usable id", current.name))
                })?;
            patches.push(BatchPatch {
                id,
                fields: PatchBody {
                    content: &patch.content,
                    comment: &patch.comment,
                    ttl: patch.ttl,
                },
            });
        }
        let body = serde_json::to_string(&BatchBody { patches })
            .map_err(|e| ProviderError::Rejected(format!("cannot encode the batch: {e}")))?;
        let answer = self
            .api
            .call(&BatchRecords {
                zone: self.zone,
                body,
            })
            .await?;
        let patched = answer.result.patches.len();
        if patched != writes.len() {
            // The listing that verifies the batch settles each name; this is only a clue.
            tracing::warn!(
                sent = writes.len(),
                patched,
                "Cloudflare's batch answer lists a different number of patched records"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_without_case_or_trailing_dot() {
        assert_eq!(key("Mail.Example.COM."), "mail.example.com");
        assert_eq!(key("mail.example.com"), key("MAIL.example.com."));
    }

    #[test]
    fn a_patch_in_a_batch_carries_only_the_fields_that_change() {
        let body = BatchBody {
            patches: vec![
                BatchPatch {
                    id: "r1",
                    fields: PatchBody {
                        content: "mail-site2.example.com",
                        comment: "sitewarden epoch=2 gen=2",
                        ttl: None,
                    },
                },
                BatchPatch {
                    id: "r2",
                    fields: PatchBody {
                        content: "owa-site2.example.com",
                        comment: "sitewarden epoch=2 gen=2",
                        ttl: Some(60),
                    },
                },
            ],
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"patches": [
                {"id": "r1", "content": "mail-site2.example.com", "comment": "sitewarden epoch=2 gen=2"},
                {"id": "r2", "content": "owa-site2.example.com", "comment": "sitewarden epoch=2 gen=2", "ttl": 60},
            ]})
        );
    }
}
