//! Propagation watch: after a provider change, ask every authoritative nameserver of the zone
//! until all of them answer the new CNAME target, or a deadline passes; and, at start-up, check
//! that candidate targets resolve at all.
//!
//! A provider's "applied" means its primary or API has the change; clients see it only once every
//! authoritative server answers it (secondaries after NOTIFY and IXFR, Route 53's fleet after
//! INSYNC, Cloudflare's edge…), and then after resolvers' caches expire (bounded by the TTL).
//! [`watch`] measures the first part, per server, and says which servers lag and what they last
//! answered. Pure async functions: no global state, no clock other than `tokio::time` (so tests
//! can pause it), each server polled concurrently over UDP with TCP fallback on truncation
//! ([`transport`]). The runtime decides what to do with a report (audit, metrics, alert).
//!
//! [`transport`]: super::rfc2136::transport

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use super::rfc2136::message::{fqdn, host};
use super::rfc2136::transport::{self, Transport};

/// How a watch polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Give up on servers that have not converged after this long.
    pub deadline: Duration,
    /// Wait between two queries to the same server.
    pub poll_interval: Duration,
    /// Timeout of one query (UDP, and TCP when truncated).
    pub query_timeout: Duration,
}

impl Default for WatchOptions {
    /// 120 s deadline, a query per server every 1 s, 2 s per query.
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            query_timeout: Duration::from_secs(2),
        }
    }
}

/// What one server answered for the name's CNAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A CNAME pointing here (no trailing dot, lower case).
    Cname(String),
    /// NOERROR without a CNAME for the name (NODATA).
    NoCname,
    /// NXDOMAIN: the server does not know the name.
    NxDomain,
    /// Another response code (REFUSED, SERVFAIL…), as text.
    Rcode(String),
}

/// One nameserver's part of a [`PropagationReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// The server asked.
    pub server: SocketAddr,
    /// Time from the start of the watch to the first answer with the expected target.
    pub converged_after: Option<Duration>,
    /// The last answer received, if any.
    pub last_answer: Option<Answer>,
    /// The last query failure (timeout, refused connection, garbled answer), if the last
    /// query failed.
    pub last_error: Option<String>,
    /// Queries sent to this server.
    pub queries: u32,
}

impl ServerReport {
    /// Whether this server answers the expected target.
    pub fn converged(&self) -> bool {
        self.converged_after.is_some()
    }
}

/// The outcome of a [`watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationReport {
    /// The managed name watched (no trailing dot).
    pub name: String,
    /// The target every server should answer (no trailing dot).
    pub target: String,
    /// One entry per server, in the order given.
    pub servers: Vec<ServerReport>,
    /// How long the watch ran.
    pub elapsed: Duration,
}

impl PropagationReport {
    /// Whether every server answered the target before the deadline.
    pub fn converged(&self) -> bool {
        self.servers.iter().all(ServerReport::converged)
    }

    /// The servers that did not converge.
    pub fn laggards(&self) -> impl Iterator<Item = &ServerReport> {
        self.servers.iter().filter(|s| !s.converged())
    }

    /// When the last server converged (the name's full propagation time), if all did.
    pub fn converged_after(&self) -> Option<Duration> {
        self.servers
            .iter()
            .map(|s| s.converged_after)
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().max())
    }
}

/// Why a watch or a check could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropagationError {
    /// The name or target is not a DNS name.
    #[error("{what} {value:?} is not a DNS name: {reason}")]
    BadName {
        /// `name` or `target`.
        what: &'static str,
        /// The text given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

fn parse(what: &'static str, value: &str) -> Result<Name, PropagationError> {
    fqdn(value).map_err(|reason| PropagationError::BadName {
        what,
        value: value.to_owned(),
        reason,
    })
}

/// The CNAME answer for `name` in `response`.
fn cname_answer(response: &Message, name: &Name) -> Answer {
    match response.metadata.response_code {
        ResponseCode::NoError => response
            .answers
            .iter()
            .find_map(|r| match &r.data {
                RData::CNAME(CNAME(t)) if r.name == *name => {
                    Some(Answer::Cname(host(&t.to_lowercase())))
                }
                _ => None,
            })
            .unwrap_or(Answer::NoCname),
        ResponseCode::NXDomain => Answer::NxDomain,
        other => Answer::Rcode(other.to_string()),
    }
}

/// Asks each of `servers` for the CNAME of `name` until all answer `target` or
/// `options.deadline` passes. Servers are polled concurrently; each stops once it converged.
pub async fn watch(
    name: &str,
    target: &str,
    servers: &[SocketAddr],
    options: WatchOptions,
) -> Result<PropagationReport, PropagationError> {
    let qname = parse("name", name)?;
    let expected = host(&parse("target", target)?);
    let started = Instant::now();
    let deadline = started + options.deadline;
    let polls = servers
        .iter()
        .map(|server| poll_server(*server, &qname, &expected, started, deadline, options));
    let reports = futures::future::join_all(polls).await;
    Ok(PropagationReport {
        name: host(&qname),
        target: expected,
        servers: reports,
        elapsed: started.elapsed(),
    })
}

async fn poll_server(
    server: SocketAddr,
    name: &Name,
    expected: &str,
    started: Instant,
    deadline: Instant,
    options: WatchOptions,
) -> ServerReport {
    let mut report = ServerReport {
        server,
        converged_after: None,
        last_answer: None,
        last_error: None,
        queries: 0,
    };
    loop {
        let query = transport::query_message(name, RecordType::CNAME, false);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = options
            .query_timeout
            .min(remaining)
            .max(Duration::from_millis(1));
        report.queries += 1;
        match transport::query(server, &query, Transport::UdpThenTcp, timeout).await {
            Ok(response) => {
                let answer = cname_answer(&response, name);
                report.last_error = None;
                let done = answer == Answer::Cname(expected.to_owned());
                report.last_answer = Some(answer);
                if done {
                    report.converged_after = Some(started.elapsed());
                    return report;
                }
            }
            Err(e) => report.last_error = Some(e.to_string()),
        }
        if Instant::now() + options.poll_interval >= deadline {
            return report;
        }
        tokio::time::sleep(options.poll_interval).await;
    }
}

/// Whether one candidate target resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCheck {
    /// The target asked about (as given).
    pub target: String,
    /// Its IPv4 and IPv6 addresses (empty when it does not resolve).
    pub addresses: Vec<IpAddr>,
    /// Why it does not resolve, when it does not.
    pub problem: Option<String>,
}

impl TargetCheck {
    /// Whether the target has at least one address.
    pub fn resolves(&self) -> bool {
        !self.addresses.is_empty()
    }
}

/// Asks `resolver` (recursion desired) for the A and AAAA records of each target, for the
/// start-up check that every candidate a namespace may point at actually resolves.
pub async fn check_targets(
    resolver: SocketAddr,
    targets: &[String],
    timeout: Duration,
) -> Vec<TargetCheck> {
    let checks = targets.iter().map(|t| check_target(resolver, t, timeout));
    futures::future::join_all(checks).await
}

async fn check_target(resolver: SocketAddr, target: &str, timeout: Duration) -> TargetCheck {
    let mut check = TargetCheck {
        target: target.to_owned(),
        addresses: Vec::new(),
        problem: None,
    };
    let name = match parse("target", target) {
        Ok(n) => n,
        Err(e) => {
            check.problem = Some(e.to_string());
            return check;
        }
    };
    let mut problems = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        let query = transport::query_message(&name, rtype, true);
        match transport::query(resolver, &query, Transport::UdpThenTcp, timeout).await {
            Ok(r) if r.metadata.response_code == ResponseCode::NoError => {
                check
                    .addresses
                    .extend(r.answers.iter().filter_map(|rec| match &rec.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    }));
            }
            Ok(r) => problems.push(format!("{rtype}: {}", r.metadata.response_code)),
            Err(e) => problems.push(format!("{rtype}: {e}")),
        }
    }
    if check.addresses.is_empty() {
        check.problem = Some(if problems.is_empty() {
            format!("{target} has no A or AAAA record")
        } else {
            format!(
                "{target} does not resolve via {resolver} ({})",
                problems.join("; ")
            )
        });
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, Query};
    use hickory_proto::rr::Record;

    #[test]
    fn answers_are_read_by_response_code() {
        let name = fqdn("mail.example.com").unwrap();
        let mut m = Message::query();
        m.metadata.message_type = MessageType::Response;
        m.add_query(Query::query(name.clone(), RecordType::CNAME));
        assert_eq!(cname_answer(&m, &name), Answer::NoCname);
        m.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::CNAME(CNAME(fqdn("Mail-Site2.example.com.").unwrap())),
        ));
        assert_eq!(
            cname_answer(&m, &name),
            Answer::Cname("mail-site2.example.com".into())
        );
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(cname_answer(&m, &name), Answer::NxDomain);
        m.metadata.response_code = ResponseCode::Refused;
        assert!(matches!(cname_answer(&m, &name), Answer::Rcode(_)));
    }

    #[test]
    fn a_report_converges_when_every_server_did() {
        let s = |after: Option<u64>| ServerReport {
            server: "127.0.0.1:53".parse().unwrap(),
            converged_after: after.map(Duration::from_millis),
            last_answer: None,
            last_error: None,
            queries: 1,
        };
        let mut r = PropagationReport {
            name: "mail.example.com".into(),
            target: "mail-site2.example.com".into(),
            servers: vec![s(Some(10)), s(Some(30))],
            elapsed: Duration::from_millis(30),
        };
        assert!(r.converged());
        assert_eq!(r.converged_after(), Some(Duration::from_millis(30)));
        r.servers.push(s(None));
        assert!(!r.converged());
        assert_eq!(r.laggards().count(), 1);
        assert_eq!(r.converged_after(), None);
    }

    #[tokio::test]
    async fn a_bad_name_is_an_error_not_a_panic() {
        let err = watch("", "x.example.com", &[], WatchOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            PropagationError::BadName { what: "name", .. }
        ));
    }
}
