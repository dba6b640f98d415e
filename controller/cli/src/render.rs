//! Human views of the API's JSON: the status page, history lines, overrides and the plan.
//!
//! The status page, the overrides and the history ([`history`], its own module) read the typed
//! answers ([`Status`], [`HistoryAnswer`](sitewarden_api::wire::HistoryAnswer), shared with the
//! server, whose fields default when a controller of another version leaves them out). The plan
//! still reads `serde_json::Value`s, so a missing field shows as `-`, never as
//! a crash. Every string read from an answer goes through [`terminal::line`] (or [`text`]), which
//! escapes it for the terminal ([`sitewarden_contract::terminal::line`]); table cells are escaped
//! again on the way in (a no-op for escaped text), so nothing from the bus or the API reaches
//! the terminal raw.

use serde_json::Value;
use sitewarden_api::wire::Status;
use sitewarden_contract::terminal;
use sitewarden_engine::overrides::{Hold, Overrides};

use super::table::{Cell, Table, Tone};

mod history;

pub use history::{action_words, event_summary, history};

/// A JSON value as one line of terminal-safe text (`-` for null).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => terminal::line(s),
        Value::Null => "-".to_owned(),
        other => terminal::line(&other.to_string()),
    }
}

/// One line about a site's evidence: what is not Up and who says so.
pub fn site_summary(evidence: &Value) -> String {
    let components = evidence["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if components.is_empty() {
        return "no servers probed".to_owned();
    }
    let up = components.iter().filter(|c| c["result"] == "up").count();
    let mut parts = vec![format!("{up}/{} components up", components.len())];
    for c in components.iter().filter(|c| c["result"] != "up") {
        let failing: Vec<String> = c["observers"]
            .as_array()
            .map(|obs| {
                obs.iter()
                    .filter(|o| o["status"] == "failing")
                    .map(|o| {
                        let mut s = format!("{}/{}", text(&o["agent"]), text(&o["check"]));
                        if let Some(e) = o["error"].as_str() {
                            s.push_str(&format!(" {}", terminal::line(e)));
                        }
                        s
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut part = format!(
            "{} {} {}",
            text(&c["server"]),
            text(&c["protocol"]),
            text(&c["result"])
        );
        if !failing.is_empty() {
            part.push_str(&format!(" (failing: {})", failing.join(", ")));
        }
        parts.push(part);
    }
    if evidence["falling"] == true {
        parts.push("falling".to_owned());
    }
    parts.join("; ")
}

/// An enum or id as the API writes it (`down`, `move_away_from_down`), escaped for the terminal.
fn word<T: serde::Serialize>(v: &T) -> String {
    text(&serde_json::to_value(v).unwrap_or(Value::Null))
}

/// An optional string, escaped, or `-`.
fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_owned(), terminal::line)
}

/// A time as `2026-11-24 03:00:12Z`.
fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `controllers: ctl-a leader (epoch 12, 0.1.0, seen 1s ago), ctl-b standby (0.1.0, seen
/// 0s ago)`, with a silent one called out; empty when the answer has no such list.
fn controllers_line(list: &[sitewarden_api::wire::ControllerPresence]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let each: Vec<String> = list
        .iter()
        .map(|c| {
            let mut facts = Vec::new();
            if let Some(e) = c.epoch {
                facts.push(format!("epoch {e}"));
            }
            facts.push(terminal::line(&c.version));
            let seen = c.age_ms / 1000;
            facts.push(if c.fresh {
                format!("seen {seen}s ago")
            } else {
                format!("SILENT for {seen}s, last seen {}", at(c.last_seen))
            });
            format!(
                "{} {} ({})",
                terminal::line(&c.controller),
                terminal::line(&c.role),
                facts.join(", ")
            )
        })
        .collect();
    format!("controllers: {}\n", each.join("; "))
}

/// The `sitewarden status` page.
pub fn status(s: &Status, colour: bool) -> String {
    let mut out = String::new();
    let l = &s.leader;
    out.push_str(&format!(
        "leader {} (epoch {}); answered by {} ({}) at {}\n",
        opt(l.leader.as_deref()),
        l.leader_epoch
            .or(l.epoch)
            .map_or_else(|| "-".to_owned(), |e| e.to_string()),
        terminal::line(&l.controller),
        terminal::line(&l.role),
        at(s.at),
    ));
    out.push_str(&controllers_line(&s.controllers));
    out.push('\n');
    let mut sites = Table::new(&["SITE", "VERDICT", "SINCE", "EVIDENCE"]);
    for site in &s.sites {
        let e = &site.evidence;
        let mut verdict = word(&e.verdict);
        let mut tone = Tone::of_verdict(&verdict);
        if e.drained {
            verdict.push_str(" (drained)");
            tone = Tone::Warn;
        }
        sites.row(vec![
            word(&site.site).into(),
            Cell::toned(verdict, tone),
            e.since.map_or_else(|| "-".to_owned(), at).into(),
            site_summary(&serde_json::to_value(e).unwrap_or(Value::Null)).into(),
        ]);
    }
    out.push_str(&sites.render(colour));
    out.push('\n');
    let mut names = Table::new(&["NAMESPACE", "CURRENT", "PREFERRED", "RULE", "NOTE"]);
    for ns in &s.namespaces {
        let decision = ns.explanation.decision.as_ref();
        let tone = if ns.current == ns.preferred {
            Tone::Good
        } else {
            Tone::Warn
        };
        let mut current_cell = opt(ns.current.as_deref());
        if let Some(desired) = ns
            .desired
            .as_deref()
            .filter(|d| Some(*d) != ns.current.as_deref())
        {
            current_cell.push_str(&format!(" -> {}", terminal::line(desired)));
        }
        names.row(vec![
            terminal::line(&ns.name).into(),
            Cell::toned(current_cell, tone),
            opt(ns.preferred.as_deref()).into(),
            decision
                .map_or_else(|| "-".to_owned(), |d| word(&d.evidence.rule))
                .into(),
            decision
                .map_or_else(|| "-".to_owned(), |d| terminal::line(&d.evidence.note))
                .into(),
        ]);
    }
    out.push_str(&names.render(colour));
    out.push_str(&names_footer(s));
    out.push_str(&pending(s, colour));
    if !s.dags.is_empty() {
        let mut t = Table::new(&["DAG", "ACTIVE SITE", "SPLIT"]);
        for d in &s.dags {
            // A DAG mounted in more than one site: "site1: DB01; site2: DB02".
            let split: Vec<String> = d
                .split
                .iter()
                .map(|(site, dbs)| {
                    let dbs: Vec<String> = dbs.iter().map(|db| terminal::line(db)).collect();
                    format!("{}: {}", word(site), dbs.join(", "))
                })
                .collect();
            let split = if split.is_empty() {
                "-".to_owned()
            } else {
                split.join("; ")
            };
            t.row(vec![
                terminal::line(&d.dag).into(),
                d.active_site
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), word)
                    .into(),
                split.into(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render(colour));
    }
    let o = overrides(&s.overrides, colour);
    out.push('\n');
    out.push_str(&o);
    out
}

/// What the namespace table leaves out, when it lists fewer names than there are.
fn names_footer(s: &Status) -> String {
    let shown = s.namespaces.len();
    if s.namespaces_total <= shown {
        return String::new();
    }
    format!(
        "… and {} more of {} names ({} off their preferred target in all, listed first); \
         `sitewarden status --names all` lists every one\n",
        s.namespaces_total - shown,
        s.namespaces_total,
        s.off_preferred_total,
    )
}

/// The names whose change is not applied and verified yet, and what each waits for.
fn pending(s: &Status, colour: bool) -> String {
    if s.pending_total == 0 {
        return String::new();
    }
    let waiting = s.pending.iter().filter(|p| p.state == "waiting").count();
    let mut out = format!(
        "\n{} name{} not yet applied and verified ({} listed: {} in flight at the provider, {waiting} waiting for a retry)\n",
        s.pending_total,
        if s.pending_total == 1 { "" } else { "s" },
        s.pending.len(),
        s.pending.len() - waiting,
    );
    let mut t = Table::new(&["PENDING", "TARGET", "SINCE", "STATE"]);
    for p in &s.pending {
        let state = match (&p.retry_at, &p.class) {
            (Some(retry), class) => format!(
                "waiting: {} after {} attempt{}, retried at {}: {}",
                class.as_deref().map_or("failed".to_owned(), terminal::line),
                p.attempts,
                if p.attempts == 1 { "" } else { "s" },
                at(*retry),
                terminal::line(p.error.as_deref().unwrap_or("")),
            ),
            (None, _) => "in flight".to_owned(),
        };
        let tone = if p.retry_at.is_some() {
            Tone::Warn
        } else {
            Tone::Plain
        };
        t.row(vec![
            terminal::line(&p.name).into(),
            terminal::line(&p.target).into(),
            at(p.since).into(),
            Cell::toned(state, tone),
        ]);
    }
    out.push_str(&t.render(colour));
    if s.pending_total > s.pending.len() {
        out.push_str(&format!(
            "… and {} more pending (oldest listed first)\n",
            s.pending_total - s.pending.len()
        ));
    }
    out
}

/// The active overrides as a table, or a line saying there are none.
pub fn overrides(o: &Overrides, colour: bool) -> String {
    let mut t = Table::new(&["OVERRIDE", "SUBJECT", "WHO", "UNTIL", "WHY"]);
    let hold_row = |kind: &str, subject: String, hold: &Hold| -> Vec<Cell> {
        vec![
            Cell::toned(kind, Tone::Warn),
            subject.into(),
            terminal::line(&hold.who).into(),
            hold.expires
                .map_or_else(|| "released by hand".to_owned(), at)
                .into(),
            terminal::line(&hold.why).into(),
        ]
    };
    for (name, pin) in &o.pins {
        t.row(hold_row(
            "pin",
            format!(
                "{} -> {}",
                terminal::line(name),
                terminal::line(&pin.target)
            ),
            &pin.hold,
        ));
    }
    for (site, hold) in &o.drains {
        t.row(hold_row("drain", word(site), hold));
    }
    for (scope, hold) in &o.freezes {
        let subject = if scope == "*" {
            "every namespace".to_owned()
        } else {
            terminal::line(scope)
        };
        t.row(hold_row("freeze", subject, hold));
    }
    if t.is_empty() {
        "no overrides: every name follows the rules\n".to_owned()
    } else {
        t.render(colour)
    }
}

/// `sitewarden plan`: for each namespace, where it points, where the engine wants it and why.
pub fn plan_json(s: &Value) -> Value {
    let names: Vec<Value> = s["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ns| {
            let ev = &ns["explanation"]["decision"]["evidence"];
            serde_json::json!({
                "namespace": ns["name"],
                "current": ns["current"],
                "desired": ns["desired"],
                "preferred": ns["preferred"],
                "change": ns["current"] != ns["desired"],
                "rule": ev["rule"],
                "note": ev["note"],
            })
        })
        .collect();
    serde_json::json!({"at": s["at"], "leader": s["leader"], "namespaces": names})
}

/// The plan as text.
pub fn plan(p: &Value, colour: bool) -> String {
    let mut t = Table::new(&["NAMESPACE", "CURRENT", "DESIRED", "CHANGE", "RULE", "NOTE"]);
    for n in p["namespaces"].as_array().into_iter().flatten() {
        let change = n["change"] == true;
        t.row(vec![
            text(&n["namespace"]).into(),
            text(&n["current"]).into(),
            text(&n["desired"]).into(),
            if change {
                Cell::toned("yes", Tone::Warn)
            } else {
                Cell::toned("no", Tone::Good)
            },
            text(&n["rule"]).into(),
            text(&n["note"]).into(),
        ]);
    }
    format!(
        "the engine's view on {} (leader {}); for a full replay from the bus run\n`sitewarden-controller plan --config controller.toml` on a controller host\n\n{}",
        text(&p["leader"]["controller"]),
        text(&p["leader"]["leader"]),
        t.render(colour)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_down_site_names_its_failing_observers() {
        let e = json!({"verdict": "down", "components": [
            {"server": "cas1", "protocol": "activesync", "result": "down", "observers": [
                {"agent": "site2-agent1", "check": "eas-x", "status": "failing", "error": "connect_refused"},
                {"agent": "witness-agent1", "check": "eas-x", "status": "passing"}
            ]},
            {"server": "cas2", "protocol": "activesync", "result": "up", "observers": []}
        ]});
        let s = site_summary(&e);
        assert_eq!(
            s,
            "1/2 components up; cas1 activesync down (failing: site2-agent1/eas-x connect_refused)"
        );
    }

    #[test]
    fn a_mass_move_in_progress_lists_the_pending_names_and_what_each_waits_for() {
        let s: Status = serde_json::from_value(json!({
            "at": "2026-12-06T03:00:00Z",
            "leader": {"controller": "ctl-a", "role": "leader", "acting": true},
            "namespaces_total": 10000,
            "off_preferred_total": 10000,
            "pending_total": 9000,
            "pending": [
                {"name": "m0.example.com", "target": "b0.example.com",
                 "since": "2026-12-06T02:59:58Z", "state": "in_flight"},
                {"name": "m1.example.com", "target": "b0.example.com",
                 "since": "2026-12-06T02:59:58Z", "state": "waiting",
                 "retry_at": "2026-12-06T03:01:00Z", "attempts": 1, "class": "rate_limited",
                 "error": "DNS provider rate limit hit\u{1b}[31m"}
            ]
        }))
        .unwrap();
        let text = status(&s, false);
        assert!(
            text.contains("… and 10000 more of 10000 names (10000 off their preferred target in all, listed first)"),
            "{text}"
        );
        assert!(
            text.contains("9000 names not yet applied and verified (2 listed: 1 in flight at the provider, 1 waiting for a retry)"),
            "{text}"
        );
        assert!(
            text.contains("waiting: rate_limited after 1 attempt, retried at"),
            "{text}"
        );
        assert!(text.contains("… and 8998 more pending"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "escapes are shown, not sent: {text}"
        );
    }

    #[test]
    fn overrides_read_as_a_table() {
        let o: Overrides = serde_json::from_value(json!({"pins": {"mail.example.com": {"target": "mail-site2.example.com",
            "hold": {"who": "alice", "why": "CHG-1", "since": "2026-01-01T00:00:00Z", "expires": null}}},
            "drains": {}, "freezes": {"*": {"who": "bob", "why": "storm", "since": "2026-01-01T00:00:00Z",
            "expires": "2026-01-01T01:00:00Z"}}}))
        .unwrap();
        let text = overrides(&o, false);
        assert!(
            text.contains("mail.example.com -> mail-site2.example.com  alice"),
            "{text}"
        );
        assert!(text.contains("every namespace"), "{text}");
        assert!(text.contains("2026-01-01 01:00:00Z"), "{text}");
    }
}
