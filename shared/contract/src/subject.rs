//! NATS subjects of the v1 contract, built from validated ids and parsed back.
//!
//! Every subject starts with `sitewarden.v1.`; the tokens after the event type carry the
//! publisher's site and agent so the bus can enforce per-agent publish permissions and the
//! controller can check that a payload's `site`/`agent` match the subject it came on.

use crate::ids::{AgentId, CheckName, ServerId, SiteId};

/// Prefix of every sitewarden subject.
pub const PREFIX: &str = "sitewarden.v1";

/// Wildcard matching every observation.
pub const ALL_OBSERVATIONS: &str = "sitewarden.v1.obs.>";
/// Wildcard matching every database-copy snapshot.
pub const ALL_DBCOPY: &str = "sitewarden.v1.dbcopy.>";
/// Wildcard matching every heartbeat.
pub const ALL_HEARTBEATS: &str = "sitewarden.v1.heartbeat.>";

/// `sitewarden.v1.obs.<site>.<agent>.<server>.<check>`
pub fn observation(site: &SiteId, agent: &AgentId, server: &ServerId, check: &CheckName) -> String {
    format!("{PREFIX}.obs.{site}.{agent}.{server}.{check}")
}

/// `sitewarden.v1.dbcopy.<site>.<agent>.<source>`
pub fn dbcopy(site: &SiteId, agent: &AgentId, source: &CheckName) -> String {
    format!("{PREFIX}.dbcopy.{site}.{agent}.{source}")
}

/// `sitewarden.v1.heartbeat.<site>.<agent>`
pub fn heartbeat(site: &SiteId, agent: &AgentId) -> String {
    format!("{PREFIX}.heartbeat.{site}.{agent}")
}

/// What a subject says about its event, parsed back from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedSubject {
    /// An observation subject.
    Observation {
        /// Publisher's site.
        site: SiteId,
        /// Publisher.
        agent: AgentId,
        /// Probed server.
        server: ServerId,
        /// Check name.
        check: CheckName,
    },
    /// A database-copy subject.
    DbCopy {
        /// Publisher's site.
        site: SiteId,
        /// Publisher.
        agent: AgentId,
        /// Collector name.
        source: CheckName,
    },
    /// A heartbeat subject.
    Heartbeat {
        /// Publisher's site.
        site: SiteId,
        /// Publisher.
        agent: AgentId,
    },
}

/// Why a subject is not a v1 agent-event subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject {subject:?} is not a sitewarden v1 agent event subject: {why}")]
pub struct SubjectError {
    /// The subject as received (truncated to 200 characters).
    pub subject: String,
    /// What is wrong with it.
    pub why: String,
}

/// Parses an agent-event subject.
pub fn parse(subject: &str) -> Result<ParsedSubject, SubjectError> {
    let err = |why: String| SubjectError {
        subject: subject.chars().take(200).collect(),
        why,
    };
    let rest = subject
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| err(format!("it does not start with {PREFIX}.")))?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let id = |i: usize, what: &str| -> Result<&str, SubjectError> {
        tokens
            .get(i)
            .copied()
            .ok_or_else(|| err(format!("the {what} token is missing")))
    };
    let expect_len = |n: usize| {
        if tokens.len() == n {
            Ok(())
        } else {
            Err(err(format!(
                "expected {n} tokens after {PREFIX}, found {}",
                tokens.len()
            )))
        }
    };
    let site = || SiteId::new(id(1, "site")?).map_err(|e| err(format!("site {e}")));
    let agent = || AgentId::new(id(2, "agent")?).map_err(|e| err(format!("agent {e}")));
    match tokens.first().copied() {
        Some("obs") => {
            expect_len(5)?;
            Ok(ParsedSubject::Observation {
                site: site()?,
                agent: agent()?,
                server: ServerId::new(id(3, "server")?).map_err(|e| err(format!("server {e}")))?,
                check: CheckName::new(id(4, "check")?).map_err(|e| err(format!("check {e}")))?,
            })
        }
        Some("dbcopy") => {
            expect_len(4)?;
            Ok(ParsedSubject::DbCopy {
                site: site()?,
                agent: agent()?,
                source: CheckName::new(id(3, "source")?).map_err(|e| err(format!("source {e}")))?,
            })
        }
        Some("heartbeat") => {
            expect_len(3)?;
            Ok(ParsedSubject::Heartbeat {
                site: site()?,
                agent: agent()?,
            })
        }
        other => Err(err(format!("unknown event type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (SiteId, AgentId, ServerId, CheckName) {
        (
            SiteId::new("site1").unwrap(),
            AgentId::new("a1").unwrap(),
            ServerId::new("cas1").unwrap(),
            CheckName::new("eas").unwrap(),
        )
    }

    #[test]
    fn subjects_round_trip() {
        let (s, a, srv, c) = ids();
        let subj = observation(&s, &a, &srv, &c);
        assert_eq!(subj, "sitewarden.v1.obs.site1.a1.cas1.eas");
        assert_eq!(
            parse(&subj).unwrap(),
            ParsedSubject::Observation {
                site: s.clone(),
                agent: a.clone(),
                server: srv,
                check: c.clone()
            }
        );
        assert_eq!(
            parse(&dbcopy(&s, &a, &c)).unwrap(),
            ParsedSubject::DbCopy {
                site: s.clone(),
                agent: a.clone(),
                source: c
            }
        );
        assert_eq!(
            parse(&heartbeat(&s, &a)).unwrap(),
            ParsedSubject::Heartbeat { site: s, agent: a }
        );
    }

    #[test]
    fn rejects_foreign_and_short_subjects() {
        assert!(parse("other.v1.obs.a.b.c.d").is_err());
        assert!(parse("sitewarden.v1.obs.site1.a1").is_err());
        assert!(parse("sitewarden.v1.heartbeat.site1.a1.extra").is_err());
        assert!(parse("sitewarden.v1.bogus.site1.a1").is_err());
    }
}
