//! The invariants every fault story of the HA lab ([`crate::ha_lab`]) must keep, checked on
//! the recorded history: the audit stream ([`crate::audit`]) and the Cloudflare emulator's call
//! log. The fault suite and the HA stories call [`check_invariants`] after each story; the soak
//! also checks [`write_order_problems`] while its faults are on.
//!
//! The invariants ([`check_invariants`]):
//! - every record reads as a kind this tree knows (no [`AuditEvent::Unknown`]);
//! - epochs strictly increase across leadership terms, and no two controllers lead one epoch;
//! - every committed decision (`intent`) is applied once, refused, failed (and re-planned), or
//!   explicitly settled (`intent_superseded` / `intent_applied`) by a later epoch;
//! - no change without confirmed quorum evidence: a move away from a site shows it Down, by a
//!   quorum of fresh failing observers, one of them outside the site;
//! - no change to a target whose sites are not all serving, so none when every site is Down
//!   or Unknown;
//! - at most one automatic non-emergency change per namespace per hold-down;
//! - every successful write matches an intent (target, epoch, generation), once, and writes
//!   never go back to an older epoch;
//! - every successful write is in the audit trail: its `intent` and, after it, a settlement —
//!   `apply_applied` under its epoch, or `intent_applied` / `intent_superseded` from a later
//!   leader. An `apply_failed` counts only when the provider call itself failed (the write's
//!   answer or the read-back was lost, so the leader could not verify), never one saying the
//!   read-back showed another target after the write succeeded.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sitewarden_controller::engine::evidence::SiteEvidence;
use sitewarden_controller::engine::observer::CheckStatus;
use sitewarden_controller::engine::quorum::QuorumResult;
use sitewarden_controller::engine::{AuditEvent as EngineEvent, Rule, Verdict};

use crate::audit::{
    AuditEvent, AuditRecord, Intent, RuntimeEvent, Settlement, became_leader, intent, intents,
    summary,
};
use crate::cloudflare::Call;
use crate::two_site::{TEST_POLICY, target_sites};

/// `hold_down` of [`TEST_POLICY`], the policy of every lab whose history is checked here.
const HOLD_DOWN: Duration = match TEST_POLICY.hold_down {
    Some(d) => d,
    None => panic!("TEST_POLICY sets hold_down"),
};
/// `min_observers` of [`TEST_POLICY`].
const MIN_OBSERVERS: usize = match TEST_POLICY.min_observers {
    Some(n) => n as usize,
    None => panic!("TEST_POLICY sets min_observers"),
};

/// Checks every invariant on `history` (audit records, stream order) and `calls` (the
/// emulator's call log); panics naming the broken one.
pub fn check_invariants(history: &[AuditRecord], calls: &[Call]) {
    let mut broken = Vec::new();
    records_known(history, &mut broken);
    epochs_increase(history, &mut broken);
    intents_settled(history, &mut broken);
    intents_have_evidence(history, &mut broken);
    hold_down_kept(history, &mut broken);
    writes_match_intents(history, calls, &mut broken);
    writes_audited(history, calls, &mut broken);
    assert!(
        broken.is_empty(),
        "invariants broken:\n- {}\nhistory:\n{}\ncalls: {calls:#?}",
        broken.join("\n- "),
        summary(history)
    );
}

/// Never fight people: after a record was edited by hand (`edits`: when, and the record's id),
/// no controller writes it again unless an operator acted (an accepted override in `history`).
pub fn check_no_fight(
    history: &[AuditRecord],
    calls: &[Call],
    edits: &[(tokio::time::Instant, String)],
) {
    if history
        .iter()
        .any(|r| matches!(r.event.engine(), Some(EngineEvent::Override(_))))
    {
        return;
    }
    let fights: Vec<&Call> = edits
        .iter()
        .flat_map(|(at, id)| {
            calls.iter().filter(move |c| {
                c.is_write() && c.status < 300 && c.at > *at && c.path.ends_with(id.as_str())
            })
        })
        .collect();
    assert!(
        fights.is_empty(),
        "a record edited by hand was written again without an operator acting: {fights:#?}\nhistory:\n{}",
        summary(history)
    );
}

/// Every record the controllers wrote reads back as a kind this tree knows: a record of unknown
/// shape is a field renamed on one side only.
fn records_known(history: &[AuditRecord], broken: &mut Vec<String>) {
    for r in history {
        if let AuditEvent::Unknown(v) = &r.event {
            broken.push(format!("a record of no known kind or shape: {v}"));
        }
    }
}

fn epochs_increase(history: &[AuditRecord], broken: &mut Vec<String>) {
    let mut last: Option<(String, u64)> = None;
    let mut owner: HashMap<u64, String> = HashMap::new();
    for (who, epoch) in became_leader(history) {
        let who = who.to_owned();
        if let Some(other) = owner.insert(epoch, who.clone())
            && other != who
        {
            broken.push(format!("epoch {epoch} led by both {other} and {who}"));
        }
        if let Some((prev_who, prev)) = &last
            && (epoch < *prev || (epoch == *prev && *prev_who != who))
        {
            broken.push(format!(
                "leadership went from epoch {prev} ({prev_who}) to epoch {epoch} ({who})"
            ));
        }
        last = Some((who, epoch));
    }
}

/// How a record settles a write: the applier's own settlement, or a later leader's.
enum Settles<'a> {
    /// `apply_*`, by kind (`applied`, `refused`, `failed`, `superseded`, `skipped`).
    Apply(&'static str, &'a Settlement),
    /// `intent_applied` (`true`) or `intent_superseded` (`false`), with the intent's epoch.
    Later(bool, u64),
}

/// The settlement a record holds for `namespace`'s `generation`, if it is one.
fn settlement<'a>(r: &'a AuditRecord, namespace: &str, generation: u64) -> Option<Settles<'a>> {
    let (kind, s) = match r.event.runtime()? {
        RuntimeEvent::ApplyApplied(s) => ("applied", s),
        RuntimeEvent::ApplyRefused(s) => ("refused", s),
        RuntimeEvent::ApplyFailed(s) => ("failed", s),
        RuntimeEvent::ApplySuperseded(s) => ("superseded", s),
        RuntimeEvent::ApplySkipped(s) => ("skipped", s),
        RuntimeEvent::IntentApplied(i) | RuntimeEvent::IntentSuperseded(i) => {
            let landed = matches!(r.event.runtime(), Some(RuntimeEvent::IntentApplied(_)));
            return (i.namespace == namespace && i.generation.0 == generation)
                .then_some(Settles::Later(landed, i.intent_epoch.0));
        }
        _ => return None,
    };
    (s.namespace == namespace && s.generation.0 == generation).then_some(Settles::Apply(kind, s))
}

/// The epoch a record was written under (0 when none).
fn epoch_of(r: &AuditRecord) -> u64 {
    r.epoch.map_or(0, |e| e.0)
}

fn intents_settled(history: &[AuditRecord], broken: &mut Vec<String>) {
    for (i, r) in history.iter().enumerate() {
        let Some(it) = intent(r) else {
            continue;
        };
        let (epoch, generation) = (it.epoch(), it.generation);
        let by_apply = |kind: &str| {
            history[i + 1..]
                .iter()
                .filter(|x| epoch_of(x) == epoch)
                .filter(|x| {
                    matches!(settlement(x, it.namespace, generation), Some(Settles::Apply(k, _)) if k == kind)
                })
                .count()
        };
        // A later leader settles an intent it read from the state bucket; a deposed leader's own
        // record of that intent may reach the stream after it (stored once the bus is back), so
        // the whole history counts here.
        let by_later_epoch = |landed: bool| {
            history
                .iter()
                .filter(|x| epoch_of(x) > epoch)
                .filter(|x| {
                    matches!(settlement(x, it.namespace, generation), Some(Settles::Later(l, e)) if l == landed && e == epoch)
                })
                .count()
        };
        let applied = by_apply("applied") + by_later_epoch(true);
        // A failed apply settles its intent too: reported, and re-planned under a new generation
        // (that nothing landed twice is the call log's check).
        let settled = applied + by_apply("refused") + by_apply("failed") + by_later_epoch(false);
        if settled == 0 {
            broken.push(format!(
                "intent epoch {epoch} generation {generation} ({}) was never applied, refused, failed or superseded",
                it.target
            ));
        }
        if applied > 1 {
            broken.push(format!(
                "intent epoch {epoch} generation {generation} applied {applied} times"
            ));
        }
    }
}

fn serving(site: &SiteEvidence) -> bool {
    matches!(site.verdict, Verdict::Up | Verdict::Degraded) && !site.drained
}

/// A site Down by a quorum of fresh failing observers, one of them outside the site.
fn down_by_quorum(name: &str, site: &SiteEvidence) -> bool {
    if site.verdict != Verdict::Down {
        return false;
    }
    site.components.iter().any(|c| {
        let failing: Vec<_> = c
            .observers
            .iter()
            .filter(|o| o.status == CheckStatus::Failing && o.fresh)
            .collect();
        c.result == QuorumResult::Down
            && failing.len() >= MIN_OBSERVERS
            && failing.iter().any(|o| o.site.as_str() != name)
    })
}

fn intents_have_evidence(history: &[AuditRecord], broken: &mut Vec<String>) {
    for it in intents(history) {
        let sites = &it.evidence.sites;
        let what = format!(
            "intent epoch {} generation {} -> {}",
            it.epoch(),
            it.generation,
            it.target
        );
        match target_sites(it.target) {
            None => broken.push(format!("{what}: not a candidate")),
            Some(needed) => {
                for s in needed {
                    let evidence = sites
                        .iter()
                        .find(|(id, _)| id.as_str() == s)
                        .map(|(_, e)| &**e);
                    if !evidence.is_some_and(serving) {
                        broken.push(format!(
                            "{what}: needs {s}, whose evidence is {}",
                            evidence.map_or("missing".into(), |e| e.verdict.to_string())
                        ));
                    }
                }
            }
        }
        if !sites.values().any(|s| serving(s)) {
            broken.push(format!(
                "{what}: a change while every site is Down or Unknown"
            ));
        }
        if it.reason == Rule::MoveAwayFromDown
            && !sites
                .iter()
                .any(|(name, s)| down_by_quorum(name.as_str(), s))
        {
            broken.push(format!(
                "{what}: moved away without a site Down by a quorum seen from outside: {:?}",
                it.evidence
            ));
        }
    }
}

fn hold_down_kept(history: &[AuditRecord], broken: &mut Vec<String>) {
    let mut last: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for it in intents(history) {
        let at = it.evidence.at;
        if it.reason.is_non_emergency_change()
            && let Some(prev) = last.get(it.namespace)
            && (at - *prev).to_std().unwrap_or_default() < HOLD_DOWN
        {
            broken.push(format!(
                "{}: automatic {} change {} after the previous one (hold-down {HOLD_DOWN:?})",
                it.namespace,
                it.reason.word(),
                at - *prev
            ));
        }
        last.insert(it.namespace.to_owned(), at);
    }
}

/// `(epoch, gen)` of a `sitewarden epoch=N gen=G` comment.
pub fn marker(comment: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        comment
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    Some((field("epoch=")?, field("gen=")?))
}

fn writes_match_intents(history: &[AuditRecord], calls: &[Call], broken: &mut Vec<String>) {
    let intents: HashMap<(u64, u64), &str> = intents(history)
        .map(|it| ((it.epoch(), it.generation), it.target))
        .collect();
    for (c, key) in successful_writes(calls) {
        match intents.get(&key) {
            Some(target) if c.body["content"] == *target => {}
            _ => broken.push(format!("a write with no matching intent: {c:?}")),
        }
    }
    broken.extend(write_order_problems(calls));
}

/// Audit before effect, seen from the provider's side: every write has its `intent` and a
/// settlement after it in the audit stream.
fn writes_audited(history: &[AuditRecord], calls: &[Call], broken: &mut Vec<String>) {
    for (c, (epoch, generation)) in successful_writes(calls) {
        let content = &c.body["content"];
        let Some((at, it)) = history.iter().enumerate().find_map(|(at, r)| {
            intent(r)
                .filter(|it: &Intent<'_>| {
                    (it.epoch(), it.generation) == (epoch, generation) && *content == it.target
                })
                .map(|it| (at, it))
        }) else {
            broken.push(format!(
                "a write of epoch {epoch} generation {generation} ({content}) whose intent is not in the audit trail"
            ));
            continue;
        };
        let settles = |r: &AuditRecord| match settlement(r, it.namespace, generation) {
            Some(Settles::Apply("applied", _)) => epoch_of(r) == epoch,
            // The leader could not verify (the call failed), and said so; a read-back that
            // showed another target right after a successful write is a false failure.
            Some(Settles::Apply("failed", s)) => {
                epoch_of(r) == epoch
                    && !s
                        .outcome
                        .as_deref()
                        .unwrap_or("")
                        .contains("reading back shows")
            }
            Some(Settles::Later(_, intent_epoch)) => epoch_of(r) > epoch && intent_epoch == epoch,
            _ => false,
        };
        if !history[at + 1..].iter().any(settles) {
            broken.push(format!(
                "a write of epoch {epoch} generation {generation} ({content}) with its intent but no settlement (apply_applied, or intent_applied / intent_superseded by a later leader) in the audit trail"
            ));
        }
    }
}

/// Successful writes with the (epoch, generation) of their marker (none without one).
fn successful_writes(calls: &[Call]) -> impl Iterator<Item = (&Call, (u64, u64))> {
    calls
        .iter()
        .filter(|c| c.method != "GET" && c.status == 200)
        .filter_map(|c| Some((c, c.body["comment"].as_str().and_then(marker)?)))
}

/// What the call log alone shows wrong, so it can be checked while a fault is on: a write
/// without our marker, a write under an older epoch than one before it, or one
/// (epoch, generation) written twice.
pub fn write_order_problems(calls: &[Call]) -> Vec<String> {
    let mut broken = Vec::new();
    for c in calls
        .iter()
        .filter(|c| c.method != "GET" && c.status == 200)
        .filter(|c| c.body["comment"].as_str().and_then(marker).is_none())
    {
        broken.push(format!("a write without our marker: {c:?}"));
    }
    let mut written: HashMap<(u64, u64), usize> = HashMap::new();
    let mut newest = 0;
    for (c, key) in successful_writes(calls) {
        if c.answered {
            *written.entry(key).or_default() += 1;
        }
        if key.0 < newest {
            broken.push(format!(
                "a write under epoch {} after epoch {newest}",
                key.0
            ));
        }
        newest = newest.max(key.0);
    }
    for (key, n) in written {
        if n > 1 {
            broken.push(format!(
                "epoch {} generation {} written {n} times",
                key.0, key.1
            ));
        }
    }
    broken
}
