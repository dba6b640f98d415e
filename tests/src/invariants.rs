//! The invariants every fault story of the HA lab ([`crate::ha_lab`]) must keep, checked on
//! the recorded history: the audit stream ([`crate::audit`]) and the Cloudflare emulator's call
//! log. The fault suite and the HA stories call [`check_invariants`] after each story; the soak
//! also checks [`write_order_problems`] while its faults are on.
//!
//! The invariants ([`check_invariants`]):
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
use serde_json::Value;

use crate::audit::{of_kind, summary};
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
pub fn check_invariants(history: &[Value], calls: &[Call]) {
    let mut broken = Vec::new();
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
pub fn check_no_fight(history: &[Value], calls: &[Call], edits: &[(tokio::time::Instant, String)]) {
    if history.iter().any(|r| r["event"]["kind"] == "override") {
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

fn epochs_increase(history: &[Value], broken: &mut Vec<String>) {
    let mut last: Option<(String, u64)> = None;
    let mut owner: HashMap<u64, String> = HashMap::new();
    for r in of_kind(history, "leadership").filter(|r| r["event"]["is_leader"] == true) {
        let who = r["controller"].as_str().unwrap_or("?").to_owned();
        let epoch = r["event"]["epoch"].as_u64().unwrap_or(0);
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

/// (epoch, generation) of an intent record.
fn intent_key(r: &Value) -> (u64, u64) {
    (
        r["epoch"].as_u64().unwrap_or(0),
        r["event"]["generation"].as_u64().unwrap_or(0),
    )
}

fn intents_settled(history: &[Value], broken: &mut Vec<String>) {
    for (i, r) in history.iter().enumerate() {
        if r["event"]["kind"] != "intent" {
            continue;
        }
        let (epoch, generation) = intent_key(r);
        let ns = &r["event"]["namespace"];
        let later = &history[i + 1..];
        let same =
            |x: &&Value| x["event"]["namespace"] == *ns && x["event"]["generation"] == generation;
        let by_apply = |kind: &str| {
            later
                .iter()
                .filter(same)
                .filter(|x| x["event"]["kind"] == kind && x["epoch"] == epoch)
                .count()
        };
        // A later leader settles an intent it read from the state bucket; a deposed leader's own
        // record of that intent may reach the stream after it (stored once the bus is back), so
        // the whole history counts here.
        let by_later_epoch = |kind: &str| {
            history
                .iter()
                .filter(same)
                .filter(|x| {
                    x["event"]["kind"] == kind
                        && x["event"]["intent_epoch"] == epoch
                        && x["epoch"].as_u64().unwrap_or(0) > epoch
                })
                .count()
        };
        let applied = by_apply("apply_applied") + by_later_epoch("intent_applied");
        // A failed apply settles its intent too: reported, and re-planned under a new generation
        // (that nothing landed twice is the call log's check).
        let settled = applied
            + by_apply("apply_refused")
            + by_apply("apply_failed")
            + by_later_epoch("intent_superseded");
        if settled == 0 {
            broken.push(format!(
                "intent epoch {epoch} generation {generation} ({}) was never applied, refused, failed or superseded",
                r["event"]["target"]
            ));
        }
        if applied > 1 {
            broken.push(format!(
                "intent epoch {epoch} generation {generation} applied {applied} times"
            ));
        }
    }
}

fn serving(site: &Value) -> bool {
    matches!(site["verdict"].as_str(), Some("up" | "degraded")) && site["drained"] != true
}

/// A site Down by a quorum of fresh failing observers, one of them outside the site.
fn down_by_quorum(name: &str, site: &Value) -> bool {
    if site["verdict"] != "down" {
        return false;
    }
    site["components"].as_array().is_some_and(|components| {
        components.iter().any(|c| {
            let failing: Vec<&Value> = c["observers"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter(|o| o["status"] == "failing" && o["fresh"] == true)
                        .collect()
                })
                .unwrap_or_default();
            c["result"] == "down"
                && failing.len() >= MIN_OBSERVERS
                && failing.iter().any(|o| o["site"] != name)
        })
    })
}

fn intents_have_evidence(history: &[Value], broken: &mut Vec<String>) {
    for r in of_kind(history, "intent") {
        let e = &r["event"];
        let (epoch, generation) = intent_key(r);
        let target = e["target"].as_str().unwrap_or("");
        let sites = e["evidence"]["sites"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let what = format!("intent epoch {epoch} generation {generation} -> {target}");
        match target_sites(target) {
            None => broken.push(format!("{what}: not a candidate")),
            Some(needed) => {
                for s in needed {
                    if !sites.get(s).is_some_and(serving) {
                        broken.push(format!(
                            "{what}: needs {s}, whose evidence is {}",
                            sites
                                .get(s)
                                .map_or("missing".into(), |v| v["verdict"].to_string())
                        ));
                    }
                }
            }
        }
        if !sites.values().any(serving) {
            broken.push(format!(
                "{what}: a change while every site is Down or Unknown"
            ));
        }
        if e["reason"] == "move_away_from_down"
            && !sites.iter().any(|(name, s)| down_by_quorum(name, s))
        {
            broken.push(format!(
                "{what}: moved away without a site Down by a quorum seen from outside: {}",
                e["evidence"]
            ));
        }
    }
}

fn hold_down_kept(history: &[Value], broken: &mut Vec<String>) {
    let mut last: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for r in of_kind(history, "intent") {
        let e = &r["event"];
        let ns = e["namespace"].as_str().unwrap_or("").to_owned();
        let Some(at) = e["evidence"]["at"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        else {
            broken.push(format!("intent without evidence time: {e}"));
            continue;
        };
        let non_emergency = matches!(e["reason"].as_str(), Some("failback" | "follow_mailbox"));
        if non_emergency
            && let Some(prev) = last.get(&ns)
            && (at - *prev).to_std().unwrap_or_default() < HOLD_DOWN
        {
            broken.push(format!(
                "{ns}: automatic {} change {} after the previous one (hold-down {HOLD_DOWN:?})",
                e["reason"],
                at - *prev
            ));
        }
        last.insert(ns, at);
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

fn writes_match_intents(history: &[Value], calls: &[Call], broken: &mut Vec<String>) {
    let intents: HashMap<(u64, u64), &str> = of_kind(history, "intent")
        .map(|r| (intent_key(r), r["event"]["target"].as_str().unwrap_or("")))
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
fn writes_audited(history: &[Value], calls: &[Call], broken: &mut Vec<String>) {
    for (c, (epoch, generation)) in successful_writes(calls) {
        let content = &c.body["content"];
        let Some(at) = history.iter().position(|r| {
            r["event"]["kind"] == "intent"
                && intent_key(r) == (epoch, generation)
                && r["event"]["target"] == *content
        }) else {
            broken.push(format!(
                "a write of epoch {epoch} generation {generation} ({content}) whose intent is not in the audit trail"
            ));
            continue;
        };
        let ns = &history[at]["event"]["namespace"];
        let settles = |r: &Value| {
            let e = &r["event"];
            if e["namespace"] != *ns || e["generation"] != generation {
                return false;
            }
            let own = r["epoch"] == epoch;
            let later = r["epoch"].as_u64().unwrap_or(0) > epoch && e["intent_epoch"] == epoch;
            match e["kind"].as_str().unwrap_or("") {
                "apply_applied" => own,
                // The leader could not verify (the call failed), and said so; a read-back that
                // showed another target right after a successful write is a false failure.
                "apply_failed" => {
                    own && !e["outcome"]
                        .as_str()
                        .unwrap_or("")
                        .contains("reading back shows")
                }
                "intent_applied" | "intent_superseded" => later,
                _ => false,
            }
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
