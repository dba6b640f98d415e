//! The RFC 2136 provider: CNAMEs in a zone on a primary that accepts dynamic UPDATE signed with
//! TSIG (BIND, Knot, PowerDNS).
//!
//! Unlike hosted APIs, DNS UPDATE has a true compare-and-set: one UPDATE per change carries
//! prerequisites on the CNAME and the ownership marker exactly as read, deletes both and adds the
//! new ones ([`message::update`]); the server applies all of it or nothing. A change therefore is:
//! read (one TCP connection, two queries: the CNAME and the TXT marker at
//! `_sitewarden.<name>`), [`decide`] by the same rules as every provider, check the lease
//! [fence](super::fenced) right before sending, send the signed UPDATE, read back to verify.
//!
//! Outcomes of the UPDATE map to the trait: NOERROR → read back and report `Applied`; a failed
//! prerequisite (NXRRSET/YXRRSET: someone changed the target or the marker since our read) →
//! read again and report what the record now shows — a refusal by the usual rules, or
//! [`Refusal::Drift`] (never a second write over someone else's change); NOTAUTH with TSIG error
//! BADKEY/BADSIG/BADTIME and REFUSED → [`ProviderError::Auth`] naming the key (never the
//! secret); timeouts, resets and SERVFAIL → [`ProviderError::Transient`], after which the record
//! is read again before anything else is sent (a lost answer may hide an applied update).
//! Queries are unsigned (most primaries allow them); only UPDATEs are signed, with HMAC-SHA256 by
//! default. Responses to UPDATEs are verified against the key.
//!
//! Many changes at once ([`DnsProvider::apply_many`]) go out as few UPDATEs of up to
//! `batch_size` names each, every name's prerequisites in the same message ([`batch`]).
//!
//! [`decide`]: super::decide::decide

pub mod batch;
pub mod config;
pub mod message;
pub mod transport;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hickory_proto::ProtoError;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as HickoryAlgorithm, TsigError};
use hickory_proto::rr::{Name, RecordType, TSigVerifier, TSigner};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::budget::{Budget, RetryPolicy, StatsSnapshot};
use super::conditional::{self, after_failed_comparison};
use super::decide::{Decision, decide};
use super::{
    ApplyOutcome, BatchFuture, Change, DnsProvider, ProviderError, ProviderFuture, RecordState,
    Refusal,
};
use message::{Held, Names};
use transport::ExchangeError;

/// Seconds of clock difference a TSIG signature tolerates (RFC 8945 recommends 300).
pub const TSIG_FUDGE: u16 = 300;

/// TTL written when neither the namespace nor the existing record gives one.
pub const DEFAULT_TTL: u32 = 300;

/// The TSIG algorithms the provider signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    /// `hmac-sha256`, the default and RFC 8945's recommendation.
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// Parses the name used in BIND, Knot and PowerDNS configurations (`hmac-sha256`, …).
    pub fn parse(name: &str) -> Option<Self> {
        match name
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase()
            .as_str()
        {
            "hmac-sha256" => Some(Self::HmacSha256),
            "hmac-sha384" => Some(Self::HmacSha384),
            "hmac-sha512" => Some(Self::HmacSha512),
            _ => None,
        }
    }

    /// The algorithm's name, as servers write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn hickory(self) -> HickoryAlgorithm {
        match self {
            Self::HmacSha256 => HickoryAlgorithm::HmacSha256,
            Self::HmacSha384 => HickoryAlgorithm::HmacSha384,
            Self::HmacSha512 => HickoryAlgorithm::HmacSha512,
        }
    }
}

/// A TSIG key: its name as the server knows it, the algorithm and the base64 secret.
pub struct TsigKey {
    /// The key's name, e.g. `sitewarden-update` (as in `key "sitewarden-update" { … }`).
    pub name: String,
    /// The HMAC algorithm.
    pub algorithm: TsigAlgorithm,
    /// The secret, base64 as `tsig-keygen` prints it. Never logged.
    pub secret: SecretString,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Everything the provider needs.
#[derive(Debug)]
pub struct Rfc2136Options {
    /// The zone's primary, e.g. `192.0.2.53:53`.
    pub server: SocketAddr,
    /// The zone the managed names are in, e.g. `example.com`.
    pub zone: String,
    /// The key UPDATEs are signed with.
    pub key: TsigKey,
    /// Retries of soft failures.
    pub retry: RetryPolicy,
    /// Per-exchange timeout (connect, send, answer).
    pub request_timeout: Duration,
    /// Names per UPDATE when many change at once (1: one name at a time, each with its own
    /// read); at most [`batch::MAX_BATCH_SIZE`].
    pub batch_size: usize,
}

/// The RFC 2136 provider. Deliberately without `Debug`: it holds the TSIG key.
pub struct Rfc2136Provider {
    server: SocketAddr,
    zone: Name,
    key_name: String,
    algorithm: TsigAlgorithm,
    signer: TSigner,
    budget: Budget,
    timeout: Duration,
    /// Names per UPDATE (see [`Rfc2136Options::batch_size`]).
    batch_size: usize,
}

/// What the server did with an UPDATE it accepted as authentic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// NOERROR: applied.
    Applied,
    /// A prerequisite failed (the RCODE says which kind); nothing was written.
    PrerequisiteFailed(ResponseCode),
}

impl Rfc2136Provider {
    /// Builds the provider; fails on a zone that is not a DNS name or a secret that is not base64.
    pub fn new(options: Rfc2136Options) -> Result<Self, ProviderError> {
        let zone = message::fqdn(&options.zone)
            .map_err(|e| ProviderError::Rejected(format!("zone: {e} is not a zone name")))?;
        let key_name = options.key.name.trim().trim_end_matches('.').to_owned();
        let signer_name = message::fqdn(&key_name).map_err(|e| {
            ProviderError::Rejected(format!("tsig_key_name: {e} is not a key name"))
        })?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(options.key.secret.expose_secret().trim())
            .map_err(|_| {
                ProviderError::Rejected(format!(
                    "the secret of TSIG key {key_name} is not base64; copy the `secret \"…\"` \
                     value that tsig-keygen printed"
                ))
            })?;
        if secret.is_empty() {
            return Err(ProviderError::Rejected(format!(
                "the secret of TSIG key {key_name} is empty"
            )));
        }
        let signer = TSigner::new(
            secret,
            options.key.algorithm.hickory(),
            signer_name,
            TSIG_FUDGE,
        )
        .map_err(|e| ProviderError::Rejected(format!("TSIG key {key_name}: {e}")))?;
        Ok(Self {
            server: options.server,
            zone,
            key_name,
            algorithm: options.key.algorithm,
            signer,
            budget: Budget::unlimited(options.retry),
            timeout: options.request_timeout,
            batch_size: options.batch_size.clamp(1, batch::MAX_BATCH_SIZE),
        })
    }

    /// The primary this provider talks to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Reads the CNAME and the marker TXT of one name: one TCP connection, two queries.
    async fn fetch(&self, names: &Names) -> Result<Held, ProviderError> {
        let cname = transport::query_message(&names.record, RecordType::CNAME, false);
        let txt = transport::query_message(&names.marker, RecordType::TXT, false);
        let encode = |m: &Message| {
            m.to_vec()
                .map_err(|e| ProviderError::Rejected(format!("cannot encode a query: {e}")))
        };
        let raw = transport::tcp_many(self.server, &[encode(&cname)?, encode(&txt)?], self.timeout)
            .await
            .map_err(soft)?;
        let [raw_cname, raw_txt] = raw.as_slice() else {
            return Err(ProviderError::Transient(format!(
                "{} closed the connection early",
                self.server
            )));
        };
        let cname_answer =
            transport::parse_matching(self.server, &cname, raw_cname).map_err(soft)?;
        let txt_answer = transport::parse_matching(self.server, &txt, raw_txt).map_err(soft)?;
        Held::from_answers(names, &cname_answer, &txt_answer)
    }

    async fn read_held(&self, names: &Names) -> Result<Held, ProviderError> {
        self.budget.retrying(|| self.fetch(names)).await
    }

    /// Signs `update` and encodes it whole. An UPDATE larger than a DNS message can carry is
    /// refused here, as the server would refuse it (a batch is then halved): hickory's encoder
    /// does not fail on it but drops the records that do not fit and sets TC, and an UPDATE
    /// missing some of its records must never be sent.
    fn signed(
        &self,
        update: &mut Message,
    ) -> Result<(Vec<u8>, Option<TSigVerifier>), ProviderError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let records = update.authorities.len();
        let too_large = || {
            ProviderError::Rejected(format!(
                "the UPDATE of {records} records is larger than the 65,535 bytes a DNS message \
                 can carry; it was not sent"
            ))
        };
        let verifier = match update.finalize(&self.signer, now) {
            Ok(v) => v,
            Err(ProtoError::MaxBufferSizeExceeded(_)) => return Err(too_large()),
            Err(e) => {
                return Err(ProviderError::Rejected(format!(
                    "cannot sign the UPDATE: {e}"
                )));
            }
        };
        let bytes = match update.to_vec() {
            Ok(b) => b,
            Err(ProtoError::MaxBufferSizeExceeded(_)) => return Err(too_large()),
            Err(e) => {
                return Err(ProviderError::Rejected(format!(
                    "cannot encode the UPDATE: {e}"
                )));
            }
        };
        // The header's TC bit (byte 2, 0x02): set when the encoder left records out.
        let truncated = bytes.get(2).is_none_or(|flags| flags & 0x02 != 0);
        if truncated {
            return Err(too_large());
        }
        Ok((bytes, verifier))
    }

    /// Signs and sends one UPDATE over TCP and classifies the answer.
    async fn send_update(&self, mut update: Message) -> Result<Sent, ProviderError> {
        let (bytes, verifier) = self.signed(&mut update)?;
        let raw = transport::tcp(self.server, &bytes, self.timeout)
            .await
            .map_err(soft)?;
        let response = transport::parse_matching(self.server, &update, &raw).map_err(soft)?;
        let tsig_error = response.signature().and_then(|s| s.data.error);
        let rcode = response.metadata.response_code;
        if let Some(e) = tsig_error {
            return Err(self.tsig_refused(e));
        }
        match rcode {
            ResponseCode::NoError => {
                // Only a signed, verifying answer proves the primary applied our UPDATE; any
                // doubt is soft, and the read that follows tells what happened.
                match verifier {
                    Some(mut v) => v.verify(&raw).map(|_| Sent::Applied).map_err(|e| {
                        ProviderError::Transient(format!(
                            "the answer from {} to our UPDATE does not verify with TSIG key {}: {e}",
                            self.server, self.key_name
                        ))
                    }),
                    None => Ok(Sent::Applied),
                }
            }
            ResponseCode::NXRRSet
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::YXDomain => Ok(Sent::PrerequisiteFailed(rcode)),
            ResponseCode::NotAuth => Err(ProviderError::Rejected(format!(
                "{} is not authoritative for zone {} (NOTAUTH); point `server` at the zone's primary",
                self.server, self.zone
            ))),
            ResponseCode::Refused => Err(ProviderError::Auth(format!(
                "{} refused the UPDATE to zone {} signed with TSIG key {} (REFUSED); grant the key \
                 in the zone's allow-update or update-policy",
                self.server, self.zone, self.key_name
            ))),
            ResponseCode::NotZone => Err(ProviderError::Rejected(format!(
                "{} says the name is outside zone {} (NOTZONE)",
                self.server, self.zone
            ))),
            ResponseCode::ServFail => Err(ProviderError::Transient(format!(
                "{} answered SERVFAIL to the UPDATE",
                self.server
            ))),
            other => Err(ProviderError::Rejected(format!(
                "{} answered {other} to the UPDATE",
                self.server
            ))),
        }
    }

    fn tsig_refused(&self, error: TsigError) -> ProviderError {
        let (code, what) = match error {
            TsigError::BadKey => (
                "BADKEY",
                format!(
                    "the server does not know key {} with algorithm {}; check `tsig_key_name` and \
                     `tsig_algorithm` match the key in the server's configuration",
                    self.key_name,
                    self.algorithm.name()
                ),
            ),
            TsigError::BadSig => (
                "BADSIG",
                format!(
                    "the signature made with key {} does not verify; `tsig_secret` differs from \
                     the server's secret for that key",
                    self.key_name
                ),
            ),
            TsigError::BadTime => (
                "BADTIME",
                format!(
                    "the controller's clock and the server's differ by more than {TSIG_FUDGE}s; \
                     synchronise them (NTP) — key {}",
                    self.key_name
                ),
            ),
            other => ("TSIG error", format!("key {}: {other:?}", self.key_name)),
        };
        ProviderError::Auth(format!(
            "{} rejected the TSIG-signed UPDATE ({code}): {what}",
            self.server
        ))
    }

    /// The verified compare-and-set: read, decide, fence, one UPDATE, read back.
    async fn apply_change(&self, change: &Change) -> Result<ApplyOutcome, ProviderError> {
        let names = message::names(&self.zone, &change.name)?;
        let before_held = self.read_held(&names).await?;
        let before = before_held.state(&change.name);
        let started = Instant::now();
        let mut held = before_held;
        let mut writes = 0;
        loop {
            let current = held.state(&change.name);
            let patch = match decide(change, &current) {
                Decision::InPlace if writes == 0 => {
                    return Ok(ApplyOutcome::AlreadyInPlace { state: current });
                }
                // An UPDATE whose answer was lost did land: the read shows it.
                Decision::InPlace => {
                    return Ok(ApplyOutcome::Applied {
                        before,
                        after: current,
                    });
                }
                Decision::Refuse(r) => return Ok(ApplyOutcome::Refused(r)),
                Decision::Write(patch) => patch,
            };
            let ttl = patch.ttl.or(current.ttl).unwrap_or(DEFAULT_TTL);
            let update = message::update(&names, &held, &patch, ttl)?;
            // The lease may have lapsed while we read (a frozen process): check right before.
            if super::fenced() {
                return Ok(ApplyOutcome::Refused(Refusal::LeaseLost));
            }
            writes += 1;
            match self.budget.once(true, self.send_update(update)).await {
                Ok(Sent::Applied) => {
                    let after = self.read_held(&names).await?.state(&change.name);
                    return match decide(change, &after) {
                        Decision::InPlace => Ok(ApplyOutcome::Applied { before, after }),
                        Decision::Refuse(r) => Ok(ApplyOutcome::Refused(r)),
                        Decision::Write(_) => Err(ProviderError::Transient(format!(
                            "the UPDATE of {} was accepted but reading back shows {:?}",
                            change.name, after.content
                        ))),
                    };
                }
                Ok(Sent::PrerequisiteFailed(rcode)) => {
                    // Someone changed the target or the marker between our read and our UPDATE.
                    tracing::warn!(name = %change.name, %rcode, "RFC 2136 prerequisite failed: the record changed since it was read");
                    let now = self.read_held(&names).await?.state(&change.name);
                    return Ok(after_failed_comparison(change, now));
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(name = %change.name, "RFC 2136 UPDATE failed, reading back before any retry: {e}");
                    let retry = self.budget.back_off(started, writes, e.clone()).await;
                    held = self.read_held(&names).await?;
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

/// Socket and parse failures are soft: retried, and an UPDATE is followed by a read.
fn soft(e: ExchangeError) -> ProviderError {
    ProviderError::Transient(e.to_string())
}

impl DnsProvider for Rfc2136Provider {
    fn kind(&self) -> &'static str {
        "rfc2136"
    }

    fn read<'a>(&'a self, name: &'a str) -> ProviderFuture<'a, RecordState> {
        Box::pin(async move {
            let names = message::names(&self.zone, name)?;
            Ok(self.read_held(&names).await?.state(name))
        })
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

    fn options(secret: &str) -> Rfc2136Options {
        Rfc2136Options {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: "example.com".into(),
            key: TsigKey {
                name: "sitewarden-update".into(),
                algorithm: TsigAlgorithm::HmacSha256,
                secret: SecretString::from(secret.to_owned()),
            },
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(1),
            batch_size: 100,
        }
    }

    #[test]
    fn a_secret_that_is_not_base64_is_named_by_key_not_shown() {
        let err = Rfc2136Provider::new(options("not base64 !!s3cr3t"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("sitewarden-update"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(Rfc2136Provider::new(options("c2l0ZXdhcmRlbg==")).is_ok());
    }

    #[test]
    fn the_key_debug_hides_the_secret() {
        let o = options("c2l0ZXdhcmRlbg==");
        let shown = format!("{o:?}");
        assert!(!shown.contains("c2l0ZXdhcmRlbg"), "{shown}");
        assert!(shown.contains("sitewarden-update"), "{shown}");
    }

    #[test]
    fn algorithms_parse_by_their_server_names() {
        assert_eq!(
            TsigAlgorithm::parse("HMAC-SHA256."),
            Some(TsigAlgorithm::HmacSha256)
        );
        assert_eq!(
            TsigAlgorithm::parse("hmac-sha512"),
            Some(TsigAlgorithm::HmacSha512)
        );
        assert_eq!(TsigAlgorithm::parse("hmac-md5"), None);
        for a in [
            TsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512,
        ] {
            assert_eq!(TsigAlgorithm::parse(a.name()), Some(a));
        }
    }
}
