//! `GET /api/v1/history`: the audit trail newest first, in pages, filtered.
//!
//! The audit stream is read backwards in chunks of [`CHUNK`] sequence numbers. Each chunk is
//! read forward with an ordered consumer and then reversed. The read stops at the first record
//! older than `since`, once `limit` records match, or after [`MAX_SCAN`] records. An answer cut
//! short for any of the last two reasons says `truncated` and gives the query of the next, older
//! page (`before=SEQ`). `after=SEQ` asks only for records newer than `SEQ`, which is what
//! `sitewarden history --follow` polls with.
//!
//! The default view is what an operator reads during an incident: the acting leader's records
//! (decisions, verdicts, applies, overrides, alerts) and both controllers' leadership changes.
//! `all` adds the standby's records, the edge notices and webhooks, and the provider's routine
//! reports of what a record holds. [`Filter`] is pure and
//! unit-tested.

use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sitewarden_api::{AuditRecord, Role};

use super::audit::AUDIT_STREAM;

/// Sequence numbers read per chunk.
pub const CHUNK: u64 = 500;
/// Records looked at per request, at most; beyond, the answer is truncated with a cursor.
pub const MAX_SCAN: u64 = 20_000;
/// Kinds left out of the default view (`all` shows them).
pub const NOISE: [&str; 3] = ["standby", "edge_notice", "edge_webhook"];

/// Which records a history request wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these kinds (empty: every kind of the view).
    pub kinds: Vec<String>,
    /// Only records that name this (a managed name, a target).
    pub name: Option<String>,
    /// Only records that name this site.
    pub site: Option<String>,
    /// Only alerts of this severity.
    pub severity: Option<String>,
    /// Only records of this controller.
    pub controller: Option<String>,
    /// Everything, standby and edge records included.
    pub all: bool,
}

impl Filter {
    /// Whether `r` belongs in the answer.
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let kind = r.event.kind();
        if !self.all
            && (NOISE.contains(&kind.as_str())
                || (r.role == Role::Standby && kind != "leadership")
                || routine_read(r))
        {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return false;
        }
        if self.controller.as_ref().is_some_and(|c| *c != r.controller) {
            return false;
        }
        if self.name.is_none() && self.site.is_none() && self.severity.is_none() {
            return true;
        }
        let event = serde_json::to_value(&r.event).unwrap_or_default();
        self.name.as_deref().is_none_or(|n| mentions(&event, n))
            && self.site.as_deref().is_none_or(|s| mentions(&event, s))
            && self
                .severity
                .as_deref()
                .is_none_or(|s| has_field(&event, "severity", s))
    }
}

/// A provider report of what a record holds: the applier's routine re-read (every refresh
/// interval, per name). Drift it reveals is audited and alerted by the engine on its own.
fn routine_read(r: &AuditRecord) -> bool {
    matches!(
        r.event.engine(),
        Some(sitewarden_engine::AuditEvent::Provider(
            sitewarden_engine::ProviderReport::Current { .. }
        ))
    )
}

/// Whether any string in `v` is `needle` (ignoring case and a trailing dot).
fn mentions(v: &serde_json::Value, needle: &str) -> bool {
    let needle = needle.trim_end_matches('.');
    match v {
        serde_json::Value::String(s) => s.trim_end_matches('.').eq_ignore_ascii_case(needle),
        serde_json::Value::Array(a) => a.iter().any(|x| mentions(x, needle)),
        serde_json::Value::Object(m) => m
            .iter()
            .any(|(k, x)| k.eq_ignore_ascii_case(needle) || mentions(x, needle)),
        _ => false,
    }
}

/// Whether some object in `v` has `key` equal to `value`.
fn has_field(v: &serde_json::Value, key: &str, value: &str) -> bool {
    match v {
        serde_json::Value::Array(a) => a.iter().any(|x| has_field(x, key, value)),
        serde_json::Value::Object(m) => {
            m.get(key)
                .and_then(|x| x.as_str())
                .is_some_and(|x| x.eq_ignore_ascii_case(value))
                || m.values().any(|x| has_field(x, key, value))
        }
        _ => false,
    }
}

/// Where a page starts and ends.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// No record older than this.
    pub since: DateTime<Utc>,
    /// Only records with a sequence number below this.
    pub before: Option<u64>,
    /// Only records with a sequence number above this.
    pub after: Option<u64>,
    /// At most this many records.
    pub limit: usize,
}

/// One page: the records newest first, whether more match, and the `before` of the next page.
#[derive(Debug, Default)]
pub struct Read {
    /// Newest first, each with its `seq`.
    pub records: Vec<AuditRecord>,
    /// More records match than were returned.
    pub truncated: bool,
    /// The next, older page starts below this sequence number.
    pub next_before: Option<u64>,
}

/// Reads one page of the audit stream.
pub async fn read(js: &jetstream::Context, page: Page, filter: &Filter) -> Result<Read, String> {
    let mut stream = js
        .get_stream(AUDIT_STREAM)
        .await
        .map_err(|e| format!("the audit stream is not readable: {e}"))?;
    let state = stream
        .info()
        .await
        .map_err(|e| format!("the audit stream is not readable: {e}"))?
        .state
        .clone();
    let mut out = Read::default();
    if state.messages == 0 {
        return Ok(out);
    }
    let low = page
        .after
        .map_or(state.first_sequence, |a| a.saturating_add(1))
        .max(state.first_sequence);
    let mut high = page
        .before
        .map_or(state.last_sequence, |b| b.saturating_sub(1))
        .min(state.last_sequence);
    let mut scanned = 0;
    while high >= low && high > 0 {
        let from = high.saturating_sub(CHUNK - 1).max(low);
        let chunk = read_chunk(&stream, from, high).await?;
        scanned += high - from + 1;
        for (seq, payload) in chunk.into_iter().rev() {
            // A message that is not a record (not written by a sitewarden controller) is left out.
            let Ok(mut r) = serde_json::from_slice::<AuditRecord>(&payload) else {
                continue;
            };
            if r.at < page.since {
                return Ok(out);
            }
            if !filter.matches(&r) {
                continue;
            }
            if out.records.len() == page.limit {
                out.truncated = true;
                out.next_before = out.records.last().and_then(|r| r.seq);
                return Ok(out);
            }
            r.seq = Some(seq);
            out.records.push(r);
        }
        if from == low {
            break;
        }
        high = from - 1;
        if scanned >= MAX_SCAN {
            out.truncated = true;
            out.next_before = Some(from);
            break;
        }
    }
    Ok(out)
}

/// The messages with sequence numbers `from..=to`, oldest first.
async fn read_chunk(
    stream: &jetstream::stream::Stream,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            max_expires: super::replaying::ORDERED_PULL_EXPIRES,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read the audit stream: {e}"))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read the audit stream: {e}"))?;
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), messages.next()).await {
        let m = m.map_err(|e| e.to_string())?;
        let (seq, pending) = m
            .info()
            .map(|i| (i.stream_sequence, i.pending))
            .unwrap_or((u64::MAX, 0));
        if seq > to {
            break;
        }
        out.push((seq, m.payload.to_vec()));
        if seq >= to || pending == 0 {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(role: &str, event: serde_json::Value) -> AuditRecord {
        serde_json::from_value(serde_json::json!({
            "at": "2026-11-24T03:00:12Z", "controller": "ctl-a", "role": role, "epoch": 7,
            "event": event,
        }))
        .expect("a record")
    }

    fn verdict(site: &str) -> serde_json::Value {
        serde_json::json!({"kind": "verdict", "site": site, "from": "up", "to": "down",
            "evidence": {"rule": "steady", "at": "2026-11-24T03:00:11Z", "note": "", "sites": {}},
            "engine_at": "2026-11-24T03:00:11Z"})
    }

    #[test]
    fn the_default_view_is_the_leaders_records_and_every_leadership_change() {
        let f = Filter::default();
        assert!(f.matches(&record("leader", verdict("site1"))));
        assert!(!f.matches(&record("standby", verdict("site1"))));
        let leadership = serde_json::json!({"kind": "leadership", "is_leader": false, "epoch": 7,
            "engine_at": "2026-11-24T03:00:11Z"});
        assert!(f.matches(&record("standby", leadership)));
        let all = Filter {
            all: true,
            ..Filter::default()
        };
        assert!(all.matches(&record("standby", verdict("site1"))));
        // The applier's routine re-read of a record is left out; an applied change is not.
        let read = serde_json::json!({"kind": "provider", "report": "current",
            "namespace": "mail.example.com", "target": "mail-rr.example.com", "generation": 3,
            "engine_at": "2026-11-24T03:00:11Z"});
        assert!(!f.matches(&record("leader", read.clone())));
        assert!(all.matches(&record("leader", read)));
        let applied = serde_json::json!({"kind": "provider", "report": "applied",
            "namespace": "mail.example.com", "generation": 3,
            "engine_at": "2026-11-24T03:00:11Z"});
        assert!(f.matches(&record("leader", applied)));
    }

    #[test]
    fn filters_by_kind_site_and_controller() {
        let r = record("leader", verdict("site1"));
        let by = |f: Filter| f.matches(&r);
        assert!(by(Filter {
            kinds: vec!["verdict".into()],
            ..Filter::default()
        }));
        assert!(!by(Filter {
            kinds: vec!["override".into()],
            ..Filter::default()
        }));
        assert!(by(Filter {
            site: Some("SITE1".into()),
            ..Filter::default()
        }));
        assert!(!by(Filter {
            site: Some("site2".into()),
            ..Filter::default()
        }));
        assert!(!by(Filter {
            controller: Some("ctl-b".into()),
            ..Filter::default()
        }));
        assert!(!by(Filter {
            severity: Some("critical".into()),
            ..Filter::default()
        }));
    }
}
