//! The brief's two-site layout with a witness, as typed configs: site1 (cas1, cas2), site2
//! (cas3, cas4) and a witness site, one agent in each, and `mail.example.com` on the
//! round-robin / site1 / site2 candidates; optionally DAG1 (mailbox servers EX01, EX02 in site1
//! and EX03, EX04 in site2) and a name that follows its mailboxes. The HA lab, the in-process
//! controller tests, the benchmarks and the demo all start from it.

use std::net::SocketAddr;
use std::time::Duration;

use std::collections::BTreeMap;

use crate::config_toml::{
    AgentSite, AgentTable, AgentToml, Candidate, Check, Dag, DbCopy, Decisions, Defaults,
    Namespace, NatsTable, Policy, ServerAddress, Site, SiteAgent,
};
use crate::dag::DagEmulator;

/// The agents of the layout: (id, site).
pub const AGENTS: [(&str, &str); 3] = [
    ("site1-agent1", "site1"),
    ("site2-agent1", "site2"),
    ("witness-agent1", "witness"),
];

/// The fast policy of the controller tests: 500 ms probes, fall 3, rise 3, short windows.
pub const TEST_POLICY: Policy = Policy {
    interval: Some(Duration::from_millis(500)),
    fall: Some(3),
    rise: Some(3),
    min_observers: Some(2),
    hold_down: Some(Duration::from_secs(5)),
    failback_after: Some(Duration::from_secs(30)),
};

/// The decisions of the layout under `policy` (`None`: every default) with one namespace
/// `name` on the round-robin / site1 / site2 candidates, TTL 60 s.
pub fn decisions(policy: Option<Policy>, name: &str) -> Decisions {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Decisions {
        policy,
        sites: vec![
            Site {
                name: "site1".into(),
                servers: strings(&["cas1", "cas2"]),
            },
            Site {
                name: "site2".into(),
                servers: strings(&["cas3", "cas4"]),
            },
            Site {
                name: "witness".into(),
                servers: Vec::new(),
            },
        ],
        agents: AGENTS
            .iter()
            .map(|(name, site)| SiteAgent {
                name: (*name).into(),
                site: (*site).into(),
            })
            .collect(),
        dags: Vec::new(),
        namespaces: vec![Namespace {
            name: name.into(),
            ttl: Some(Duration::from_secs(60)),
            candidates: vec![
                Candidate {
                    target: "mail-rr.example.com".into(),
                    requires: strings(&["site1", "site2"]),
                },
                Candidate {
                    target: "mail-site1.example.com".into(),
                    requires: strings(&["site1"]),
                },
                Candidate {
                    target: "mail-site2.example.com".into(),
                    requires: strings(&["site2"]),
                },
            ],
            ..Namespace::default()
        }],
    }
}

/// The DAG of the layout.
pub const DAG1: &str = "DAG1";

/// DAG1's mailbox servers in site1 and in site2.
pub const DAG1_SERVERS: [[&str; 2]; 2] = [["EX01", "EX02"], ["EX03", "EX04"]];

/// DAG1's databases.
pub const DAG1_DATABASES: [&str; 2] = ["DB01", "DB02"];

/// DAG1 as the controller declares it: each mailbox server and its site.
pub fn dag1() -> Dag {
    let [site1, site2] = DAG1_SERVERS;
    let servers = site1
        .iter()
        .map(|s| ((*s).to_owned(), "site1".to_owned()))
        .chain(site2.iter().map(|s| ((*s).to_owned(), "site2".to_owned())))
        .collect();
    Dag {
        name: DAG1.into(),
        servers,
    }
}

/// DAG1 as its collector sees it: every database with a copy on every server, all mounted on
/// EX01 (site1), the other copies healthy passives.
pub fn dag1_emulator() -> DagEmulator {
    let [site1, site2] = DAG1_SERVERS;
    DagEmulator::two_sites(&DAG1_DATABASES, &site1, &site2)
}

/// The collector of DAG1's copy status (`dag1`) running `command` every `interval`, with a 5 s
/// timeout: what the site1 agent runs.
pub fn dag1_collector(command: Vec<String>, interval: Duration) -> DbCopy {
    DbCopy {
        name: "dag1".into(),
        dag: DAG1.into(),
        command,
        interval: Some(interval),
        timeout: Some(Duration::from_secs(5)),
        push_token: None,
    }
}

/// The name `name` with `follow = "mailbox"` on DAG1: `owa-site1.example.com` while DAG1's
/// mailboxes are active in site1, `owa-site2.example.com` while they are in site2; TTL 60 s.
pub fn follows_dag1(name: &str) -> Namespace {
    Namespace {
        name: name.into(),
        ttl: Some(Duration::from_secs(60)),
        follow: Some("mailbox".into()),
        dag: Some(DAG1.into()),
        targets: BTreeMap::from([
            ("site1".into(), "owa-site1.example.com".into()),
            ("site2".into(), "owa-site2.example.com".into()),
        ]),
        ..Namespace::default()
    }
}

/// The decisions with `name` (see [`decisions`]), DAG1 and `follow_name` following its
/// mailboxes ([`follows_dag1`]) as TOML text with `[policy]` given as text (`policy`: the
/// table's body): what the demo (`sitewarden-demo`) appends to its controllers' configuration.
pub fn two_site_decisions_with_dag1(policy: &str, name: &str, follow_name: &str) -> String {
    let mut decisions = decisions(None, name);
    decisions.dags.push(dag1());
    decisions.namespaces.push(follows_dag1(follow_name));
    format!("[policy]\n{policy}\n\n{}", decisions.render())
}

/// An agent of the layout (`id` in `site`) on the bus `nats` that probes site1's cas1/cas2 and
/// site2's cas3/cas4 (`cas`, in that order) over plain-HTTP ActiveSync every `interval` with
/// `timeout`. Set further keys on the result (e.g. `agent.heartbeat_interval`).
pub fn agent(
    id: &str,
    site: &str,
    nats: NatsTable,
    cas: &[SocketAddr; 4],
    interval: Duration,
    timeout: Duration,
) -> AgentToml {
    let servers = |names: [&str; 2], addrs: &[SocketAddr]| {
        names
            .iter()
            .zip(addrs)
            .map(|(name, addr)| ServerAddress {
                name: (*name).into(),
                address: addr.to_string(),
            })
            .collect()
    };
    let eas = |name: &str, site: &str| Check {
        name: name.into(),
        kind: "activesync".into(),
        site: site.into(),
        scheme: Some("http".into()),
        ..Check::default()
    };
    AgentToml {
        agent: AgentTable {
            id: id.into(),
            site: site.into(),
            ..AgentTable::default()
        },
        nats,
        defaults: Some(Defaults { interval, timeout }),
        sites: vec![
            AgentSite {
                name: "site1".into(),
                activesync_url: Some(
                    "http://mail-site1.example.com/Microsoft-Server-ActiveSync".into(),
                ),
                servers: servers(["cas1", "cas2"], &cas[..2]),
            },
            AgentSite {
                name: "site2".into(),
                activesync_url: Some(
                    "http://mail-site2.example.com/Microsoft-Server-ActiveSync".into(),
                ),
                servers: servers(["cas3", "cas4"], &cas[2..]),
            },
        ],
        checks: vec![eas("eas", "site1"), eas("eas-x", "site2")],
        ..AgentToml::default()
    }
}

/// The addresses of four servers, in order, for [`agent`].
pub fn four(addrs: impl IntoIterator<Item = SocketAddr>) -> [SocketAddr; 4] {
    let v: Vec<SocketAddr> = addrs.into_iter().collect();
    assert!(
        v.len() >= 4,
        "the two-site layout has four client-access servers"
    );
    [v[0], v[1], v[2], v[3]]
}

/// The sites a target of the layout requires: the candidates of [`decisions`] and the follow
/// targets of the HA lab's DAG (`ha_lab::LabOptions::dag`).
pub fn target_sites(target: &str) -> Option<Vec<&'static str>> {
    match target {
        "mail-rr.example.com" => Some(vec!["site1", "site2"]),
        "mail-site1.example.com" => Some(vec!["site1"]),
        "mail-site2.example.com" => Some(vec!["site2"]),
        "owa-site1.example.com" => Some(vec!["site1"]),
        "owa-site2.example.com" => Some(vec!["site2"]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_loads_as_a_controller_reads_it() {
        let text = decisions(Some(TEST_POLICY), "mail.example.com").render();
        let config = sitewarden_controller::config::ControllerConfig::load(
            &sitewarden_shared::config::Source::inline("decisions.toml", &text),
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.namespaces.len(), 1, "{text}");
    }

    #[test]
    fn the_layout_with_dag1_loads_as_a_controller_reads_it() {
        let text = two_site_decisions_with_dag1("fall = 3", "mail.example.com", "owa.example.com");
        // sitewarden-demo removes `ttl = "60s"` to get the built-in DNS's default TTL.
        assert_eq!(text.matches("ttl = \"60s\"\n").count(), 2, "{text}");
        let text = text.replace("ttl = \"60s\"\n", "");
        let config = sitewarden_controller::config::ControllerConfig::load(
            &sitewarden_shared::config::Source::inline("decisions.toml", &text),
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.namespaces.len(), 2, "{text}");
        assert_eq!(config.dags.len(), 1, "{text}");
        // Every server of the emulated DAG is declared, so its active site is always known.
        let declared = dag1().servers;
        for copy in dag1_emulator().copies() {
            assert!(declared.contains_key(&copy.server), "{}", copy.server);
        }
    }

    #[test]
    fn an_agent_of_the_layout_loads_as_the_agent_reads_it() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let text = agent(
            "site1-agent1",
            "site1",
            NatsTable::servers(["nats://127.0.0.1:4222"]),
            &[addr; 4],
            Duration::from_millis(500),
            Duration::from_millis(400),
        )
        .render();
        sitewarden_agent::AgentConfig::from_source(&sitewarden_shared::config::Source::inline(
            "agent.toml",
            &text,
        ))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}
