//! Reading the Cloudflare emulator's request log for `mass-failover --controller process`: when
//! a mass apply's first request came, when its last name was verified, how many requests it
//! took, and when the applier's reconciliation reads ran.
//!
//! The controller's batched apply ([`sitewarden_controller::provider::batch`]) is, on the wire:
//! one listing of the zone's CNAMEs (`GET dns_records?type=CNAME&per_page=5000&page=1…N`), the
//! writes (`POST dns_records/batch`, or `PATCH dns_records/{id}` on the one-name path), then one
//! more listing that verifies them; the applier takes a name as applied when that listing shows
//! it. A reconciliation read is a listing alone. So, in arrival order:
//! - the apply's **first request** is the page 1 of the last listing before the first write (its
//!   pre-read), or the first request at all when no listing precedes the writes (the one-name
//!   path reads by name);
//! - its **end** is the moment the emulator had its answer to the last page of the first
//!   listing after the last write ready (that listing verifies every name written; the client's
//!   transfer and parsing of that page, milliseconds, are not in it), or, without such a
//!   listing, the latest answer to anything after the last write;
//! - a listing is a **reconciliation read** when neither the write-or-listing-start before it
//!   nor the one after it is a write (an apply's listings sit right next to its writes).
//!
//! These are pure functions over [`Request`]s, the part of each logged call they need.

use std::time::Instant;

use sitewarden_tests::cloudflare::{Call, CloudflareEmulator, Endpoint};

/// What a logged request was, as far as a mass apply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One page of a listing of the zone's CNAMEs: its page number and records per page.
    Listing { page: u64, per_page: u64 },
    /// A write: a batch, or one record's PATCH, PUT, POST or DELETE.
    Write,
    /// Anything else: one name's records (`?name=`), one record's GET, the zones.
    Other,
}

/// One logged request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// What it was.
    pub kind: Kind,
    /// When it arrived.
    pub at: Instant,
    /// When its answer was ready (`None`: never answered).
    pub answered_at: Option<Instant>,
    /// The status answered.
    pub status: u16,
}

impl Request {
    /// The part of `call` a mass apply is read from.
    pub fn of(call: &Call) -> Self {
        let param = |key: &str| {
            call.query.as_deref().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            })
        };
        let kind = match call.endpoint() {
            Endpoint::Batch | Endpoint::CreateRecord => Kind::Write,
            Endpoint::OneRecord if call.is_write() => Kind::Write,
            Endpoint::ListRecords if param("name").is_none() => Kind::Listing {
                page: param("page").and_then(|p| p.parse().ok()).unwrap_or(1),
                per_page: param("per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(100),
            },
            _ => Kind::Other,
        };
        Self {
            kind,
            at: call.at.into_std(),
            answered_at: call.answered_at.map(tokio::time::Instant::into_std),
            status: call.status,
        }
    }

    fn is_write(&self) -> bool {
        self.kind == Kind::Write
    }

    /// Page 1 of a listing: a listing starts here.
    fn starts_listing(&self) -> bool {
        matches!(self.kind, Kind::Listing { page: 1, .. })
    }
}

/// The emulator's log as read so far, in arrival order, fetched a little at a time.
#[derive(Default)]
pub struct Log {
    /// Every request read so far, sorted by arrival.
    pub requests: Vec<Request>,
    /// How many calls of the emulator's log have been read.
    read: usize,
}

impl Log {
    /// Reads the calls logged since the last refresh.
    pub fn refresh(&mut self, cf: &CloudflareEmulator) {
        let new = cf.calls_from(self.read);
        self.read += new.len();
        self.requests.extend(new.iter().map(Request::of));
        // The emulator logs a request once answered: keep arrival order.
        self.requests.sort_by_key(|r| r.at);
    }

    /// The requests that arrived at or after `since`.
    pub fn since(&self, since: Instant) -> &[Request] {
        let first = self.requests.partition_point(|r| r.at < since);
        &self.requests[first..]
    }
}

/// The last reconciliation read in `requests` (sorted by arrival): when its first page arrived,
/// and when the answer to its last page was ready.
pub fn last_reconcile_read(requests: &[Request]) -> Option<(Instant, Option<Instant>)> {
    // Writes and listing starts, in order: an apply's listing has a write right before or after.
    let marks: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].is_write() || requests[i].starts_listing())
        .collect();
    let pos = (0..marks.len()).rev().find(|&k| {
        let here = &requests[marks[k]];
        let write_before = k > 0 && requests[marks[k - 1]].is_write();
        let write_after = marks.get(k + 1).is_some_and(|&j| requests[j].is_write());
        here.starts_listing() && !write_before && !write_after
    })?;
    let start = marks[pos];
    let end = marks.get(pos + 1).copied().unwrap_or(requests.len());
    let ended = requests[start..end]
        .iter()
        .filter(|r| matches!(r.kind, Kind::Listing { .. }))
        .filter_map(|r| r.answered_at)
        .max();
    Some((requests[start].at, ended))
}

/// One mass apply read from the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Apply {
    /// When its first request arrived (the pre-read's page 1, or the first request).
    pub first: Instant,
    /// When the answer to the last page of the verifying listing was ready.
    pub end: Instant,
    /// Requests from the first to the end, both included.
    pub requests: usize,
    /// Write requests among them.
    pub writes: usize,
    /// Listings among them other than the first pre-read and the last verifying listing: those
    /// of a second group of changes (a retry of names whose intent was not stored in time) or a
    /// reconciliation read that overlapped; the figure holds their cost too.
    pub stray_listings: usize,
    /// Requests among them answered with a status other than 2xx.
    pub refused: usize,
}

/// The apply in `requests` (those since a trial began, sorted by arrival), on a zone of
/// `records` CNAMEs; `None` before it has written and verified.
pub fn apply(requests: &[Request], records: u64) -> Option<Apply> {
    let first_write = requests.iter().position(Request::is_write)?;
    let last_write = requests.iter().rposition(Request::is_write)?;
    let first = requests[..first_write]
        .iter()
        .rposition(Request::starts_listing)
        .unwrap_or(0);
    let end = match requests[last_write..]
        .iter()
        .position(Request::starts_listing)
    {
        Some(offset) => {
            let verify = last_write + offset;
            let Kind::Listing { per_page, .. } = requests[verify].kind else {
                return None;
            };
            let pages = records.div_ceil(per_page.max(1)).max(1);
            verify
                + requests[verify..].iter().position(|r| {
                    r.kind
                        == Kind::Listing {
                            page: pages,
                            per_page,
                        }
                })?
        }
        None => {
            // No listing after the writes: names read back one by one; the latest answer.
            let (i, _) = requests
                .iter()
                .enumerate()
                .skip(last_write + 1)
                .filter_map(|(i, r)| Some((i, r.answered_at?)))
                .max_by_key(|(_, t)| *t)?;
            i
        }
    };
    let span = &requests[first..=end];
    let listings = span.iter().filter(|r| r.starts_listing()).count();
    // The pre-read (when there is one) and the verifying listing are the apply's own.
    let own = usize::from(requests[first].starts_listing())
        + usize::from(
            requests[last_write..=end]
                .iter()
                .any(Request::starts_listing),
        );
    Some(Apply {
        first: requests[first].at,
        end: requests[end].answered_at?,
        requests: span.len(),
        writes: span.iter().filter(|r| r.is_write()).count(),
        stray_listings: listings.saturating_sub(own),
        refused: span
            .iter()
            .filter(|r| !(200..300).contains(&r.status))
            .count(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Requests one after another 10 ms apart, each answered 5 ms after it arrived.
    fn log(kinds: &[Kind]) -> Vec<Request> {
        let t0 = Instant::now();
        kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let at = t0 + Duration::from_millis(10 * i as u64);
                Request {
                    kind: *kind,
                    at,
                    answered_at: Some(at + Duration::from_millis(5)),
                    status: 200,
                }
            })
            .collect()
    }

    fn page(page: u64) -> Kind {
        Kind::Listing {
            page,
            per_page: 5000,
        }
    }

    const W: Kind = Kind::Write;

    #[test]
    fn an_apply_runs_from_its_pre_read_to_the_last_page_of_the_listing_after_its_last_write() {
        // A reconciliation read, then the apply: pre-read, three batches, verifying listing,
        // then another reconciliation read that is not the apply's.
        let r = log(&[
            page(1),
            page(2),
            page(3),
            page(1),
            page(2),
            page(3),
            W,
            W,
            W,
            page(1),
            page(2),
            page(3),
            page(1),
        ]);
        let a = apply(&r, 10_019).unwrap();
        assert_eq!(a.first, r[3].at);
        assert_eq!(Some(a.end), r[11].answered_at);
        assert_eq!(
            (a.requests, a.writes, a.stray_listings, a.refused),
            (9, 3, 0, 0)
        );
    }

    #[test]
    fn no_apply_until_the_verifying_listing_has_reached_its_last_page() {
        let r = log(&[page(1), page(2), page(3), W, page(1), page(2)]);
        assert_eq!(apply(&r, 10_019), None);
        assert_eq!(apply(&r[..3], 10_019), None, "no write yet");
    }

    #[test]
    fn a_reconciliation_read_between_the_writes_is_counted_as_stray() {
        let r = log(&[page(1), page(2), W, page(1), page(2), W, page(1), page(2)]);
        let a = apply(&r, 8_000).unwrap();
        assert_eq!((a.requests, a.writes, a.stray_listings), (8, 2, 1));
        assert_eq!(Some(a.end), r[7].answered_at);
    }

    #[test]
    fn the_one_name_path_ends_at_the_last_answer_after_the_last_write() {
        let r = log(&[Kind::Other, Kind::Other, W, W, Kind::Other, Kind::Other]);
        let a = apply(&r, 10).unwrap();
        assert_eq!(a.first, r[0].at);
        assert_eq!(Some(a.end), r[5].answered_at);
        assert_eq!(a.requests, 6);
    }

    #[test]
    fn a_reconciliation_read_is_a_listing_with_no_write_beside_it() {
        // Start-up read, an apply (pre-read, write, verify), a reconciliation read, an apply.
        let r = log(&[
            page(1),
            page(2),
            page(1),
            W,
            page(1),
            page(2),
            page(1),
            page(2),
            page(1),
            W,
            page(1),
        ]);
        let (began, ended) = last_reconcile_read(&r).unwrap();
        assert_eq!(began, r[6].at);
        assert_eq!(ended, r[7].answered_at);
        assert_eq!(last_reconcile_read(&r[..2]).unwrap().0, r[0].at);
        assert_eq!(last_reconcile_read(&r[2..6]), None, "an apply alone");
    }

    #[test]
    fn a_call_is_read_by_its_endpoint_and_query() {
        let call = |method: &str, path: &str, query: Option<&str>| Call {
            method: method.into(),
            path: format!("/client/v4/zones/z1/{path}"),
            query: query.map(str::to_owned),
            body: serde_json::Value::Null,
            status: 200,
            answered: true,
            at: tokio::time::Instant::now(),
            answered_at: None,
            retry_after_s: None,
        };
        let kind = |c: Call| Request::of(&c).kind;
        assert_eq!(
            kind(call(
                "GET",
                "dns_records",
                Some("type=CNAME&per_page=5000&page=3")
            )),
            Kind::Listing {
                page: 3,
                per_page: 5000
            }
        );
        assert_eq!(
            kind(call(
                "GET",
                "dns_records",
                Some("type=CNAME&name=m1.example.com")
            )),
            Kind::Other
        );
        assert_eq!(kind(call("POST", "dns_records/batch", None)), Kind::Write);
        assert_eq!(kind(call("PATCH", "dns_records/r1", None)), Kind::Write);
        assert_eq!(kind(call("GET", "dns_records/r1", None)), Kind::Other);
    }
}
