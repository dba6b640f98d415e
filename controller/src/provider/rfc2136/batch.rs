//! Many RFC 2136 changes in one UPDATE: the [`BatchStore`] behind the provider's
//! [`apply_many`](crate::provider::DnsProvider::apply_many).
//!
//! **Reading.** Every name still takes its two queries (its CNAME and its `_sitewarden` TXT
//! marker), but they are pipelined: the queries of up to [`NAMES_PER_CONNECTION`] names go out
//! at once over one TCP connection and their answers are matched by id, on up to
//! [`CONNECTIONS`] connections at a time. Each connection counts as one call, and is retried as
//! a whole when it fails softly.
//!
//! **Writing.** One TSIG-signed UPDATE carries every name's prerequisites — its CNAME and its
//! marker TXT exactly as read (RFC 2136 §2.4.2, "RRset exists, value dependent"), or that no
//! marker exists (§2.4.5) — and its changes. The primary applies all of them or none: when
//! anyone changed one name's record or marker since our read, its prerequisite fails (NXRRSET,
//! YXRRSET), nothing at all is written, and the batch is returned as rejected so that
//! [`batch::apply_many`] splits it into halves down to that name, which is then settled by
//! reading it again ([`conditional`]).
//!
//! **Size.** A DNS message over TCP carries at most 65,535 bytes, TSIG included. A name costs
//! six records (two prerequisites, two deletions, two additions): about 320 bytes for names of 20
//! characters, about 650 for names of 60, so the default [`DEFAULT_BATCH_SIZE`] of 100 names fits
//! names of up to about 60 characters. An UPDATE that would not fit is not sent: it is refused
//! here, as the server would refuse it, and halved like any refused batch.
//!
//! [`batch::apply_many`]: crate::provider::batch::apply_many
//! [`conditional`]: crate::provider::conditional

use futures::StreamExt;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::message::{self, Held, Item, Names};
use super::{DEFAULT_TTL, Rfc2136Provider, Sent, soft, transport};
use crate::provider::batch::BatchStore;
use crate::provider::budget::Budget;
use crate::provider::conditional::{ConditionalStore, Reads};
use crate::provider::decide::Patch;
use crate::provider::{ProviderError, RecordState};

/// Names per UPDATE by default (about 32 KB for names of 20 characters).
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// The most names `batch_size` allows: more never fit in 65,535 bytes.
pub const MAX_BATCH_SIZE: usize = 250;

/// Names whose queries share one pipelined TCP connection (two queries a name).
pub const NAMES_PER_CONNECTION: usize = 256;

/// Pipelined connections open at once while reading many names.
pub const CONNECTIONS: usize = 4;

/// One name as read: its DNS names and its RRsets.
type Read = (Names, Held);

/// One batched apply (or read) over RFC 2136: the provider and every RRset it read.
pub(super) struct Pass<'a> {
    provider: &'a Rfc2136Provider,
    reads: Reads<Read>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(provider: &'a Rfc2136Provider) -> Self {
        Self {
            provider,
            reads: Reads::default(),
        }
    }
}

impl Rfc2136Provider {
    /// Reads the CNAME and the marker of every one of `names` over one TCP connection, the
    /// queries pipelined. A name whose answers cannot be used as the zone's content is its error.
    async fn fetch_pipelined(
        &self,
        names: &[&Names],
    ) -> Result<Vec<Result<Held, ProviderError>>, ProviderError> {
        let base: u16 = rand::random();
        let mut queries = Vec::with_capacity(names.len() * 2);
        for (offset, n) in (0u16..).step_by(2).zip(names) {
            let mut cname = transport::query_message(&n.record, RecordType::CNAME, false);
            cname.metadata.id = base.wrapping_add(offset);
            let mut txt = transport::query_message(&n.marker, RecordType::TXT, false);
            txt.metadata.id = base.wrapping_add(offset).wrapping_add(1);
            queries.push(cname);
            queries.push(txt);
        }
        let bytes = queries
            .iter()
            .map(Message::to_vec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProviderError::Rejected(format!("cannot encode a query: {e}")))?;
        let raw = transport::tcp_pipelined(self.server, &bytes, self.timeout)
            .await
            .map_err(soft)?;
        let mut out = Vec::with_capacity(names.len());
        for ((n, asked), answers) in names.iter().zip(queries.chunks(2)).zip(raw.chunks(2)) {
            let [cname_q, txt_q] = asked else {
                return Err(ProviderError::Transient("a query went missing".into()));
            };
            let [cname_raw, txt_raw] = answers else {
                return Err(ProviderError::Transient(format!(
                    "{} closed the connection early",
                    self.server
                )));
            };
            let cname = transport::parse_matching(self.server, cname_q, cname_raw).map_err(soft)?;
            let txt = transport::parse_matching(self.server, txt_q, txt_raw).map_err(soft)?;
            match Held::from_answers(n, &cname, &txt) {
                Ok(held) => out.push(Ok(held)),
                Err(e @ ProviderError::Rejected(_)) => out.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// The items of one UPDATE: each write's names and RRsets exactly as read, its patch and TTL.
fn items(reads: &Reads<Read>, writes: &[(RecordState, Patch)]) -> Result<Vec<Item>, ProviderError> {
    writes
        .iter()
        .map(|(state, patch)| {
            let (names, held) = reads.for_write(state, |(_, h)| h.state(&state.name))?;
            Ok(Item {
                names,
                held,
                patch: patch.clone(),
                ttl: patch.ttl.or(state.ttl).unwrap_or(DEFAULT_TTL),
            })
        })
        .collect()
}

impl BatchStore for Pass<'_> {
    fn limit(&self) -> usize {
        self.provider.batch_size
    }

    async fn fetch_many(
        &self,
        budget: &Budget,
        names: &[String],
    ) -> Result<Vec<RecordState>, ProviderError> {
        let zone = &self.provider.zone;
        let dns: Vec<Result<Names, ProviderError>> =
            names.iter().map(|n| message::names(zone, n)).collect();
        let valid: Vec<usize> = (0..names.len()).filter(|i| dns[*i].is_ok()).collect();
        let chunks: Vec<&[usize]> = valid.chunks(NAMES_PER_CONNECTION).collect();
        // One connection's reads per chunk, made eagerly so the stream holds plain futures.
        let connections: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let asked: Vec<&Names> =
                    chunk.iter().filter_map(|i| dns[*i].as_ref().ok()).collect();
                async move {
                    budget
                        .retrying(|| self.provider.fetch_pipelined(&asked))
                        .await
                }
            })
            .collect();
        let answers: Vec<Result<Vec<Result<Held, ProviderError>>, ProviderError>> =
            futures::stream::iter(connections)
                .buffered(CONNECTIONS)
                .collect()
                .await;
        let mut read: Vec<Result<Held, ProviderError>> = dns
            .iter()
            .map(|d| d.as_ref().map(|_| Held::default()).map_err(Clone::clone))
            .collect();
        for (chunk, answer) in chunks.iter().zip(answers) {
            for (i, held) in chunk.iter().zip(answer?) {
                read[*i] = held;
            }
        }
        let mut states = Vec::with_capacity(names.len());
        for ((name, names_of), held) in names.iter().zip(dns.iter()).zip(read) {
            let state = match &held {
                Ok(h) => h.state(name),
                Err(_) => RecordState {
                    name: name.clone(),
                    ..RecordState::default()
                },
            };
            let entry = match (names_of, held) {
                (Ok(n), Ok(h)) => Ok((n.clone(), h)),
                (_, Err(e)) => Err(e),
                (Err(e), Ok(_)) => Err(e.clone()),
            };
            self.reads.put(name, entry);
            states.push(state);
        }
        Ok(states)
    }

    async fn write_many(&self, writes: &[(RecordState, Patch)]) -> Result<(), ProviderError> {
        let update = message::update_many(&self.provider.zone, &items(&self.reads, writes)?)?;
        match self.provider.send_update(update).await? {
            Sent::Applied => Ok(()),
            Sent::PrerequisiteFailed(rcode) => Err(ProviderError::Rejected(format!(
                "{} refused the UPDATE of {} names: a prerequisite failed ({rcode}), so a record \
                 or its marker changed since it was read; nothing was written",
                self.provider.server,
                writes.len()
            ))),
        }
    }
}

impl ConditionalStore for Pass<'_> {
    type Held = Read;

    fn reads(&self) -> &Reads<Read> {
        &self.reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Marker;
    use crate::provider::rfc2136::message::fqdn;
    use hickory_proto::rr::rdata::TXT;

    /// The writes of `n` names `{label}{i}.example.com` from `site1` to `site2`, with their reads.
    fn writes(n: usize, label: &str) -> (Reads<Read>, Vec<(RecordState, Patch)>) {
        let zone = fqdn("example.com").unwrap();
        let reads = Reads::default();
        let mut out = Vec::new();
        for i in 0..n {
            let name = format!("{label}{i}.example.com");
            let held = Held {
                cname: Some((fqdn("site1.example.com").unwrap(), 300)),
                marker_txt: vec![TXT::new(vec!["sitewarden epoch=1 gen=1".into()])],
            };
            let patch = Patch {
                content: "site2.example.com".into(),
                comment: Marker {
                    epoch: 2,
                    generation: 2,
                }
                .to_string(),
                ttl: None,
            };
            out.push((held.state(&name), patch));
            reads.put(&name, Ok((message::names(&zone, &name).unwrap(), held)));
        }
        (reads, out)
    }

    fn encoded_size(n: usize, label: &str) -> Result<usize, String> {
        let (reads, w) = writes(n, label);
        let items = items(&reads, &w).map_err(|e| e.to_string())?;
        let update = message::update_many(&fqdn("example.com").unwrap(), &items)
            .map_err(|e| e.to_string())?;
        let bytes = update.to_vec().map_err(|e| e.to_string())?;
        assert_eq!(bytes[2] & 0x02, 0, "encoded whole, not cut short");
        Ok(bytes.len())
    }

    #[test]
    fn the_default_batch_fits_one_message_with_room_for_tsig() {
        // Names of about 20 characters: some 320 bytes a name.
        let size = encoded_size(DEFAULT_BATCH_SIZE, "svc").unwrap();
        assert!((25_000..40_000).contains(&size), "{size}");
        // Names of about 60 characters still fit, below the 65,535 bytes less a TSIG record.
        let long = format!("{}-", "x".repeat(44));
        let size = encoded_size(DEFAULT_BATCH_SIZE, &long).unwrap();
        assert!(size < 65_535 - 200, "{size}");
    }

    fn provider() -> Rfc2136Provider {
        Rfc2136Provider::new(super::super::Rfc2136Options {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: "example.com".into(),
            key: super::super::TsigKey {
                name: "sitewarden-update".into(),
                algorithm: super::super::TsigAlgorithm::HmacSha256,
                secret: "c2l0ZXdhcmRlbg==".to_owned().into(),
            },
            retry: crate::provider::RetryPolicy::default(),
            request_timeout: std::time::Duration::from_secs(1),
            batch_size: MAX_BATCH_SIZE,
        })
        .unwrap()
    }

    #[test]
    fn an_update_too_large_for_a_dns_message_is_never_sent_cut_short() {
        let zone = fqdn("example.com").unwrap();
        let p = provider();
        // hickory encodes it cut short, with TC set, instead of failing.
        let (reads, w) = writes(MAX_BATCH_SIZE, &"y".repeat(40));
        let mut update = message::update_many(&zone, &items(&reads, &w).unwrap()).unwrap();
        let err = p.signed(&mut update).err().unwrap();
        assert!(
            matches!(&err, ProviderError::Rejected(m) if m.contains("65,535 bytes")),
            "{err:?}"
        );
        // A batch that fits goes out whole, signed.
        let (reads, w) = writes(DEFAULT_BATCH_SIZE, "svc");
        let mut update = message::update_many(&zone, &items(&reads, &w).unwrap()).unwrap();
        let (bytes, verifier) = p.signed(&mut update).unwrap();
        assert!(verifier.is_some());
        let back = Message::from_vec(&bytes).unwrap();
        assert_eq!(back.authorities.len(), 4 * DEFAULT_BATCH_SIZE);
        assert!(back.signature().is_some(), "TSIG included");
    }

    #[test]
    fn a_write_decided_on_another_read_than_the_last_is_read_again_not_sent() {
        let (reads, w) = writes(2, "svc");
        let (state, patch) = w[1].clone();
        let mut other = state.clone();
        other.content = Some("elsewhere.example.com".into());
        let err = items(&reads, &[(other, patch)]).unwrap_err();
        assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
        assert_eq!(items(&reads, &w).unwrap().len(), 2);
    }
}
