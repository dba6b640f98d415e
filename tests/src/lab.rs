//! Configuration shared by the lab, the demo and the controller tests: the brief's two-site
//! layout with a witness, as the decision part of a controller's TOML.

/// `[policy]` (with `policy` as its body), the sites, the three agents and one namespace `name`
/// with the round-robin / site1 / site2 candidates.
pub fn two_site_decisions(policy: &str, name: &str) -> String {
    format!(
        r#"
[policy]
{policy}

[[sites]]
name = "site1"
servers = ["cas1", "cas2"]

[[sites]]
name = "site2"
servers = ["cas3", "cas4"]

[[sites]]
name = "witness"

[[agents]]
name = "site1-agent1"
site = "site1"

[[agents]]
name = "site2-agent1"
site = "site2"

[[agents]]
name = "witness-agent1"
site = "witness"

[[namespaces]]
name = "{name}"
ttl = "60s"
candidates = [
  {{ target = "mail-rr.example.com", requires = ["site1", "site2"] }},
  {{ target = "mail-site1.example.com", requires = ["site1"] }},
  {{ target = "mail-site2.example.com", requires = ["site2"] }},
]
"#
    )
}

/// The fast policy of the controller tests: 500 ms probes, fall 3, rise 3, short windows.
pub const TEST_POLICY: &str = "fall = 3\nrise = 3\ninterval = \"500ms\"\nmin_observers = 2\nhold_down = \"5s\"\nfailback_after = \"30s\"";
