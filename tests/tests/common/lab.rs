//! The fault suite's lab on top of [`HaLab`]: the invariants every fault scenario must keep,
//! checked on the recorded history (the audit stream and the Cloudflare emulator's call log),
//! and the drivers of the faults that need more than a switch — a flapping site paced by the
//! agents' own probes, and hostile events published raw on the bus.
//!
//! The invariants ([`check_invariants`]):
//! - epochs strictly increase across leadership terms, and no two controllers lead one epoch;
//! - every committed decision (`intent`) is applied once, refused, failed (and re-planned), or
//!   explicitly settled
//!   (`intent_superseded` / `intent_applied`) by a later epoch;
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

#![allow(dead_code)] // each test file uses a different subset

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use sitewarden_tests::cloudflare::Call;
use sitewarden_tests::exchange::Behaviour;

use crate::common::DEADLINE;
use crate::controllers::HaLab;

/// `hold_down` of `sitewarden_tests::lab::TEST_POLICY`.
pub const HOLD_DOWN: Duration = Duration::from_secs(5);
/// `min_observers` of `sitewarden_tests::lab::TEST_POLICY`.
pub const MIN_OBSERVERS: usize = 2;

/// Checks every invariant on `history` (audit records, stream order) and `calls` (the
/// emulator's call log); panics naming the broken one.
pub fn check_invariants(history: &[Value], calls: &[Call]) {
    assert!(
        sitewarden_tests::lab::TEST_POLICY.contains("hold_down = \"5s\"")
            && sitewarden_tests::lab::TEST_POLICY.contains("min_observers = 2"),
        "HOLD_DOWN and MIN_OBSERVERS follow TEST_POLICY"
    );
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

/// One line per audit record (kind and the fields that matter), for failure messages.
pub fn summary(history: &[Value]) -> String {
    history
        .iter()
        .map(|r| {
            let e = &r["event"];
            format!(
                "{} {} epoch={} {} {}",
                r["controller"].as_str().unwrap_or("?"),
                r["role"].as_str().unwrap_or("?"),
                r["epoch"],
                e["kind"].as_str().unwrap_or("?"),
                compact(e)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn compact(e: &Value) -> String {
    let mut parts = Vec::new();
    for key in [
        "is_leader",
        "epoch",
        "site",
        "from",
        "to",
        "target",
        "generation",
        "intent_epoch",
        "reason",
        "cause",
    ] {
        if !e[key].is_null() {
            parts.push(format!("{key}={}", e[key]));
        }
    }
    if let Some(rule) = e["evidence"]["rule"].as_str() {
        parts.push(format!("rule={rule}"));
    }
    if let Some(a) = e["alert"].as_object() {
        parts.push(format!("alert={} {}", a["kind"], a["subject"]));
    }
    parts.join(" ")
}

/// Records whose `event.kind` is `kind`.
pub fn of_kind<'a>(history: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    history.iter().filter(move |r| r["event"]["kind"] == kind)
}

/// Audited alerts of `kind` (the alert's own kind, e.g. `drift`).
pub fn alerts<'a>(history: &'a [Value], kind: &'a str) -> Vec<&'a Value> {
    of_kind(history, "alert")
        .map(|r| &r["event"]["alert"])
        .filter(|a| a["kind"] == kind)
        .collect()
}

/// The sites a target of the lab requires: the candidates of
/// `sitewarden_tests::lab::two_site_decisions` and the follow targets of `LabOptions::dag`.
pub fn target_sites(target: &str) -> Option<Vec<&'static str>> {
    match target {
        "mail-rr.example.com" => Some(vec!["site1", "site2"]),
        "mail-site1.example.com" => Some(vec!["site1"]),
        "mail-site2.example.com" => Some(vec!["site2"]),
        // The name that follows DAG1 (`LabOptions::dag`).
        "owa-site1.example.com" => Some(vec!["site1"]),
        "owa-site2.example.com" => Some(vec!["site2"]),
        _ => None,
    }
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

/// Counts probes of site1's servers (cas1, cas2) seen on the bus: the lab's clock, paced by
/// the agents themselves (three agents × two servers every 500 ms: 12 a second).
pub struct Site1Probes {
    sub: async_nats::Subscriber,
    _client: async_nats::Client,
}

impl Site1Probes {
    /// Subscribes through `url`.
    pub async fn watch(url: &str) -> Self {
        let client = async_nats::connect(url).await.unwrap();
        let sub = client.subscribe("sitewarden.v1.obs.*.*.*.*").await.unwrap();
        client.flush().await.unwrap();
        Self {
            sub,
            _client: client,
        }
    }

    /// Waits for `n` more probes of cas1 or cas2.
    pub async fn wait(&mut self, n: usize) {
        let until = tokio::time::Instant::now() + DEADLINE * 2;
        let mut seen = 0;
        while seen < n {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.sub.next()).await {
                Ok(Some(m)) => {
                    let server = m.subject.split('.').nth(5).unwrap_or("");
                    if server == "cas1" || server == "cas2" {
                        seen += 1;
                    }
                }
                _ => panic!("only {seen} of {n} site1 probes seen"),
            }
        }
    }

    /// The next observation on `subject` (exactly), as JSON.
    pub async fn next_on(&mut self, subject: &str) -> Value {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.sub.next()).await {
                Ok(Some(m)) if m.subject.as_str() == subject => {
                    return serde_json::from_slice(&m.payload).unwrap();
                }
                Ok(Some(_)) => {}
                _ => panic!("no observation on {subject}"),
            }
        }
    }
}

/// A real observation padded (valid JSON) past `MAX_EVENT_BYTES`, NATS's default
/// `max_payload`: the bus itself refuses it, the controller's own size check is the backstop.
pub fn oversized_event(real: &Value) -> Vec<u8> {
    let mut big = serde_json::to_vec(real).unwrap();
    big.pop();
    big.extend(std::iter::repeat_n(
        b' ',
        sitewarden_shared::event::MAX_EVENT_BYTES,
    ));
    big.push(b'}');
    big
}

/// Flaps site1: each `(behaviour, probes)` step holds for that many site1 probes.
pub async fn flap_site1(lab: &HaLab, probes: &mut Site1Probes, schedule: &[(Behaviour, usize)]) {
    for (behaviour, n) in schedule {
        for cas in &lab.cas[..2] {
            cas.set(behaviour.clone()).await.unwrap();
        }
        probes.wait(*n).await;
    }
}

/// Hostile events for the intake and the engine, built from one real observation `real`
/// (published by `site2-agent1` about `cas1` on `subject`): (subject, payload, what it is).
pub fn hostile_events(subject: &str, real: &Value) -> Vec<(String, Vec<u8>, &'static str)> {
    let mut failing = real.clone();
    failing["outcome"] = "fail".into();
    let seq = real["seq"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    // Cut off mid-object.
    out.push((
        subject.to_owned(),
        br#"{"schema_version":1,"agent":"site2-agent1","site":"#.to_vec(),
        "malformed JSON",
    ));
    // The payload claims another site than the subject.
    let mut other_site = failing.clone();
    other_site["site"] = "site1".into();
    other_site["seq"] = (seq + 1_000).into();
    out.push((
        subject.to_owned(),
        serde_json::to_vec(&other_site).unwrap(),
        "wrong site in payload vs subject",
    ));
    // Payload and subject agree, but the agent lives in site2.
    out.push((
        subject.replacen(".site2.", ".site1.", 1),
        serde_json::to_vec(&other_site).unwrap(),
        "agent claims the wrong site",
    ));
    // A sequence number the agent has already used.
    out.push((
        subject.to_owned(),
        serde_json::to_vec(&failing).unwrap(),
        "replayed sequence",
    ));
    // A day ahead, with a sequence number that would otherwise pass.
    let mut future = failing;
    future["observed_at"] = (Utc::now() + chrono::TimeDelta::days(1))
        .to_rfc3339()
        .into();
    future["seq"] = (seq + 2_000).into();
    out.push((
        subject.to_owned(),
        serde_json::to_vec(&future).unwrap(),
        "future timestamp",
    ));
    out
}

/// The alerts the lab's webhook sink received (`sitewarden.alert.v1` bodies), in order.
pub fn webhook_alerts(lab: &HaLab) -> Vec<Value> {
    lab.alerts.requests().iter().map(|r| r.json()).collect()
}

/// The edge notices the lab's edge endpoint received, in order; panics if one does not carry a
/// valid signature by [`crate::controllers::EDGE_SECRET`] or is not a v1 notice.
pub fn edge_notices(lab: &HaLab) -> Vec<sitewarden_shared::edge::EdgeNotification> {
    use sitewarden_controller::edge::signature;
    lab.edge
        .requests()
        .iter()
        .map(|r| {
            let header = |name: &str| r.header(&name.to_ascii_lowercase()).to_owned();
            signature::verify(
                crate::controllers::EDGE_SECRET.as_bytes(),
                &header(signature::TIMESTAMP_HEADER),
                &r.body,
                &header(signature::SIGNATURE_HEADER),
                Utc::now(),
                signature::DEFAULT_REPLAY_WINDOW,
            )
            .unwrap_or_else(|e| panic!("an edge notice that does not verify ({e}): {r:?}"));
            sitewarden_shared::edge::EdgeNotification::decode(&r.body)
                .unwrap_or_else(|e| panic!("an edge body that is not a notice ({e}): {r:?}"))
        })
        .collect()
}

/// Waits until the edge endpoint has received a verified notice naming `site` as `dag`'s
/// active site and returns it.
pub async fn edge_says(
    lab: &HaLab,
    dag: &str,
    site: &str,
) -> sitewarden_shared::edge::EdgeNotification {
    sitewarden_tests::wait_for(
        &format!("an edge notice: {dag} active in {site}"),
        DEADLINE,
        || async {
            edge_notices(lab)
                .into_iter()
                .rev()
                .find(|n| n.active_site(dag).is_some_and(|s| s.as_str() == site))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nreceived: {:#?}\n{}", lab.edge.requests(), lab.logs()))
}
