//! Conditions humans must hear about that do not change routing: database copies in trouble and
//! client-access certificates that expire soon or do not cover a name.
//!
//! Each condition is remembered in the state with the text last alerted, so an alert is raised
//! when a problem appears or changes, never again for the same facts, and a resolved message
//! follows when it clears.

use std::collections::BTreeSet;

use sitewarden_contract::dbcopy::{CopyStatus, GOOD_COPY_QUEUE};
use sitewarden_contract::{DbCopySnapshot, Observation};

use super::command::{Alert, AlertKind, Command, Severity};
use super::dag::DagState;
use super::state::State;

/// The copy problems in a snapshot, one line each.
pub fn copy_problems(snap: &DbCopySnapshot) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in &snap.copies {
        let copy = format!("{} on {}", c.database, c.server);
        if c.status == CopyStatus::FailedAndSuspended {
            out.insert(format!("{copy} is FailedAndSuspended"));
        } else if c.status == CopyStatus::Failed {
            out.insert(format!("{copy} is Failed"));
        }
        if c.activation_suspended && !c.is_active() {
            out.insert(format!(
                "{copy} has activation suspended: it cannot take over"
            ));
        }
        if !c.is_active() && c.copy_queue_length >= GOOD_COPY_QUEUE {
            out.insert(format!(
                "{copy} copy queue is {} logs (Active Manager wants < {GOOD_COPY_QUEUE})",
                c.copy_queue_length
            ));
        }
    }
    out
}

/// Compares a DAG's current problems with those last alerted and emits alerts for the change.
pub fn copies(dag_name: &str, dag: &mut DagState, snap: &DbCopySnapshot, out: &mut Vec<Command>) {
    let now = copy_problems(snap);
    if now == dag.trouble {
        return;
    }
    let new: Vec<&String> = now.difference(&dag.trouble).collect();
    if !new.is_empty() {
        out.push(Command::Alert(Alert {
            severity: Severity::Warning,
            kind: AlertKind::CopyTrouble,
            subject: dag_name.to_owned(),
            text: format!(
                "DAG {dag_name}: {}",
                new.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            evidence: None,
        }));
    } else if now.is_empty() {
        out.push(Command::Alert(Alert {
            severity: Severity::Info,
            kind: AlertKind::Resolved,
            subject: dag_name.to_owned(),
            text: format!("DAG {dag_name}: every database copy is healthy again"),
            evidence: None,
        }));
    }
    dag.trouble = now;
}

/// The certificate problem an observation shows, if any.
fn cert_problem(o: &Observation) -> Option<String> {
    let tls = o.details.tls.as_ref()?;
    let mut parts = Vec::new();
    if tls.days_left < 0 {
        parts.push(format!("expired on {}", tls.not_after.format("%Y-%m-%d")));
    } else if tls.expiring_soon {
        parts.push(format!(
            "expires in {} days ({})",
            tls.days_left,
            tls.not_after.format("%Y-%m-%d")
        ));
    }
    if !tls.missing_names.is_empty() {
        parts.push(format!("does not cover {}", tls.missing_names.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Alerts when a server's certificate problem appears, changes or clears. Cheap when the
/// observation carries no certificate facts.
pub fn certificate(state: &mut State, o: &Observation, out: &mut Vec<Command>) {
    let Some(tls) = o.details.tls.as_ref() else {
        return;
    };
    let problem = cert_problem(o);
    let last = state.cert_trouble.get(&o.server);
    if problem.as_ref() == last {
        return;
    }
    match problem {
        Some(p) => {
            out.push(Command::Alert(Alert {
                severity: if tls.days_left < 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                kind: AlertKind::Certificate,
                subject: o.server.to_string(),
                text: format!(
                    "the certificate of {} (site {}) {p}, seen by {}",
                    o.server, o.target_site, o.agent
                ),
                evidence: None,
            }));
            state.cert_trouble.insert(o.server.clone(), p);
        }
        None => {
            out.push(Command::Alert(Alert {
                severity: Severity::Info,
                kind: AlertKind::Resolved,
                subject: o.server.to_string(),
                text: format!("the certificate of {} is fine again", o.server),
                evidence: None,
            }));
            state.cert_trouble.remove(&o.server);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(second_copy: &str) -> DbCopySnapshot {
        serde_json::from_str(&format!(
            r#"{{"schema_version":1,"agent":"site1-agent1","site":"site1","seq":1,
            "observed_at":"2026-03-02T09:15:04Z","source":"dag1","dag":"DAG1","via":"command",
            "outcome":"ok","copies":[
              {{"name":"DB01\\EX01","database":"DB01","server":"EX01","status":"Mounted",
                "activation_suspended":false,"copy_queue_length":0,"replay_queue_length":0}},
              {second_copy}]}}"#
        ))
        .unwrap()
    }

    fn passive(status: &str, suspended: bool, queue: u64) -> String {
        format!(
            r#"{{"name":"DB01\\EX03","database":"DB01","server":"EX03","status":"{status}",
            "activation_suspended":{suspended},"copy_queue_length":{queue},"replay_queue_length":0}}"#
        )
    }

    fn alerts(out: &[Command]) -> Vec<(AlertKind, String)> {
        out.iter()
            .filter_map(|c| match c {
                Command::Alert(a) => Some((a.kind, a.text.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn copy_trouble_alerts_once_per_new_problem_and_resolves() {
        let mut dag = DagState::default();
        let mut out = Vec::new();
        copies(
            "DAG1",
            &mut dag,
            &snapshot(&passive("Healthy", false, 1)),
            &mut out,
        );
        assert!(out.is_empty(), "healthy: nothing to say");

        let bad = snapshot(&passive("FailedAndSuspended", false, 1));
        copies("DAG1", &mut dag, &bad, &mut out);
        copies("DAG1", &mut dag, &bad, &mut out);
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].0, AlertKind::CopyTrouble);
        assert!(
            a[0].1.contains("DB01 on EX03 is FailedAndSuspended"),
            "{}",
            a[0].1
        );

        out.clear();
        copies(
            "DAG1",
            &mut dag,
            &snapshot(&passive("Healthy", true, 40)),
            &mut out,
        );
        let a = alerts(&out);
        assert_eq!(a.len(), 1);
        assert!(
            a[0].1.contains("activation suspended") && a[0].1.contains("copy queue is 40"),
            "{}",
            a[0].1
        );

        out.clear();
        copies(
            "DAG1",
            &mut dag,
            &snapshot(&passive("Healthy", false, 0)),
            &mut out,
        );
        assert_eq!(alerts(&out)[0].0, AlertKind::Resolved);
        assert!(dag.trouble.is_empty());
    }

    fn observation(tls: &str) -> Observation {
        serde_json::from_str(&format!(
            r#"{{"schema_version":1,"agent":"site2-agent1","site":"site2","seq":5,
            "observed_at":"2026-11-24T03:00:00Z","target_site":"site1","server":"cas1",
            "check":"eas","kind":"activesync","protocol":"activesync","outcome":"pass",
            "latency_ms":3,"details":{{{tls}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn certificate_problems_alert_once_per_server_and_resolve() {
        let mut state = State::default();
        let mut out = Vec::new();
        certificate(&mut state, &observation(""), &mut out);
        assert!(out.is_empty(), "no TLS facts: nothing to judge");
        let expiring = observation(
            r#""tls":{"not_after":"2026-12-01T00:00:00Z","days_left":6,"expiring_soon":true,"sans":["mail.example.com"],"missing_names":["autodiscover.example.com"]}"#,
        );
        certificate(&mut state, &expiring, &mut out);
        certificate(&mut state, &expiring, &mut out);
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].0, AlertKind::Certificate);
        assert!(
            a[0].1.contains("expires in 6 days")
                && a[0].1.contains("does not cover autodiscover.example.com"),
            "{}",
            a[0].1
        );
        out.clear();
        let fine = observation(
            r#""tls":{"not_after":"2027-12-01T00:00:00Z","days_left":371,"expiring_soon":false,"sans":["mail.example.com","autodiscover.example.com"]}"#,
        );
        certificate(&mut state, &fine, &mut out);
        assert_eq!(alerts(&out)[0].0, AlertKind::Resolved);
        assert!(state.cert_trouble.is_empty());
    }
}
