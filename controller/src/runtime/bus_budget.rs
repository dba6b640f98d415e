//! The storage budget of sitewarden's streams: caps that keep any one stream, above all the
//! agent-fed events stream, from filling the JetStream store the lease needs.
//!
//! Every sitewarden stream carries a `max_bytes`. nats-server (2.9.10 and newer) counts the
//! `max_bytes` of every stream against the store (`max_file_store`, and the account's `max_file`
//! when set) when the stream is created and refuses a stream that would not fit ("insufficient
//! storage resources"). So once all of them are created, their sum is within the store and no
//! stream can grow into storage another was given: an agent flooding the events stream only
//! makes that stream drop its oldest events (discard old), while the lease, state, DNS, edge,
//! audit and overrides streams keep their room. `deploy/nats` sets `max_bytes_required` on the
//! account, so a stream without a cap cannot be created at all.
//!
//! The events stream's caps come from the configuration ([`EventsCaps::for_deployment`]):
//!
//! ```text
//! subjects     = Σ over agents (servers × checks + DAGs + 1 heartbeat)
//! max_msgs     = subjects × EVENTS_HISTORY × 2          (2: headroom for renames and extra checks)
//! max_bytes    = max(64 MiB, max_msgs × 2 KiB)          ([controller] events_max_bytes overrides)
//! max_msg_size = MAX_EVENT_BYTES (1 MiB, the event contract)
//! per subject  = EVENTS_HISTORY
//! ```
//!
//! where an agent's checks are its `checks` list, or, when it has none,
//! [`UNLISTED_CHECKS_PER_SERVER`] (the controller does not know which checks such an agent runs;
//! an Exchange 2013+ server has eight health-check pages plus ActiveSync OPTIONS and an
//! authenticated ActiveSync check), or the number of distinct protocols across sites if larger. [`ensure_capped`] creates a stream with its caps or brings an existing
//! one's caps up to date (a deployment from before the caps gets them on the next start).

use std::collections::BTreeSet;

use async_nats::jetstream::{self, stream};
use sitewarden_shared::event::MAX_EVENT_BYTES;

use crate::config::ControllerConfig;

/// One mebibyte.
pub const MIB: i64 = 1024 * 1024;
/// The smallest events stream: room for bursts and large collector snapshots in a small lab.
pub const EVENTS_MIN_BYTES: i64 = 64 * MIB;
/// The average room an event is given: an observation is under 1 KiB, and a collector's snapshot
/// of a large DAG (tens of KiB) is one subject among many; the 64 MiB floor covers a small lab's
/// snapshots. At 16 KiB a deployment of 80 servers asked for 787 MB and did not fit a 1 GB store
/// beside the audit stream.
pub const EVENTS_BYTES_PER_EVENT: i64 = 2 * 1024;
/// Factor over the expected subjects × history, for renamed servers and unlisted checks.
pub const EVENTS_HEADROOM: i64 = 2;
/// Checks per server assumed for an agent without a `checks` list.
pub const UNLISTED_CHECKS_PER_SERVER: i64 = 10;
/// Default `[controller] audit_max_bytes`: about 250,000 records of ~1 KiB.
pub const AUDIT_DEFAULT_MAX_BYTES: i64 = 256 * MIB;
/// The overrides stream's cap (it keeps at most `OVERRIDES_KEPT` = 10,000 small messages).
pub const OVERRIDES_MAX_BYTES: i64 = 32 * MIB;

/// The events stream's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsCaps {
    /// Subjects the configuration expects (observer × server × check, collectors, heartbeats).
    pub expected_subjects: i64,
    /// `max_bytes`.
    pub max_bytes: i64,
    /// `max_msgs`.
    pub max_messages: i64,
    /// `max_msgs_per_subject`.
    pub per_subject: i64,
    /// `max_msg_size`.
    pub max_message_size: i32,
}

impl EventsCaps {
    /// The caps for `config` (see the module documentation for the formula); `max_bytes`
    /// replaces the computed byte cap when set.
    pub fn for_deployment(config: &ControllerConfig, history: i64, max_bytes: Option<u64>) -> Self {
        let servers: i64 = config.sites.values().map(|s| s.servers.len() as i64).sum();
        let protocols: BTreeSet<&String> =
            config.sites.values().flat_map(|s| &s.protocols).collect();
        let dags = config.dags.len() as i64;
        let expected_subjects: i64 = config
            .agents
            .values()
            .map(|a| {
                let checks = match &a.checks {
                    Some(c) => c.len() as i64,
                    None => (protocols.len() as i64).max(UNLISTED_CHECKS_PER_SERVER),
                }
                .max(1);
                servers * checks + dags + 1
            })
            .sum::<i64>()
            .max(1);
        let max_messages = expected_subjects * history * EVENTS_HEADROOM;
        let computed = (max_messages * EVENTS_BYTES_PER_EVENT).max(EVENTS_MIN_BYTES);
        Self {
            expected_subjects,
            max_bytes: max_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
                .unwrap_or(computed),
            max_messages,
            per_subject: history,
            max_message_size: i32::try_from(MAX_EVENT_BYTES).unwrap_or(i32::MAX),
        }
    }
}

/// The caps of a stream that [`ensure_capped`] keeps up to date; zero and negative both mean
/// "no cap" (the client sends 0, the server answers -1).
fn caps(c: &stream::Config) -> (i64, i64, i64, i32, stream::DiscardPolicy) {
    let none = |v: i64| if v <= 0 { -1 } else { v };
    (
        none(c.max_bytes),
        none(c.max_messages),
        none(c.max_messages_per_subject),
        if c.max_message_size <= 0 {
            -1
        } else {
            c.max_message_size
        },
        c.discard,
    )
}

/// Creates the stream `want` describes, or, when it exists with other caps (`max_bytes`,
/// `max_msgs`, `max_msgs_per_subject`, `max_msg_size`, discard policy), updates those caps and
/// nothing else (a refused update is logged, not returned: the stream still works). Only
/// failing to create or read the stream is an error. (`max_consumers` is not among the caps:
/// nats-server before 2.12 refuses to change it on an existing stream.)
pub async fn ensure_capped(js: &jetstream::Context, want: stream::Config) -> Result<(), String> {
    let name = want.name.clone();
    let mut stream = js
        .get_or_create_stream(want.clone())
        .await
        .map_err(|e| format!("cannot create or open stream {name}: {e}"))?;
    let found = stream
        .info()
        .await
        .map_err(|e| format!("cannot read stream {name}: {e}"))?
        .config
        .clone();
    if caps(&found) == caps(&want) {
        return Ok(());
    }
    let mut update = found.clone();
    update.max_bytes = want.max_bytes;
    update.max_messages = want.max_messages;
    update.max_messages_per_subject = want.max_messages_per_subject;
    update.max_message_size = want.max_message_size;
    update.discard = want.discard;
    // Not fatal when refused: the stream works without its caps, and a controller upgraded
    // before its NATS permissions must still start. The warning names the fix.
    match js.update_stream(update).await {
        Ok(_) => tracing::info!(
            stream = %name,
            max_bytes = want.max_bytes,
            max_msgs = want.max_messages,
            "updated the stream's caps"
        ),
        Err(e) => tracing::warn!(
            stream = %name,
            "stream {name} has caps {:?}, sitewarden needs {:?} (max_bytes, max_msgs, \
             max_msgs_per_subject, max_msg_size, discard) and cannot update it ({e}); until \
             then one publisher can fill the JetStream store: allow the controller user \
             `$JS.API.STREAM.UPDATE.{name}` (deploy/nats/sitewarden-auth.conf) and restart, or \
             run `nats stream edit {name}`",
            caps(&found),
            caps(&want)
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ControllerConfig;
    use sitewarden_shared::config::Source;

    fn config(agents: &str) -> ControllerConfig {
        let text = format!(
            r#"
[[sites]]
name = "site1"
servers = ["cas1", "cas2"]
[[sites]]
name = "site2"
servers = ["cas3", "cas4"]
[[sites]]
name = "witness"
{agents}
[[namespaces]]
name = "mail.example.com"
candidates = [
  {{ target = "mail-rr.example.com", requires = ["site1", "site2"] }},
  {{ target = "mail-site1.example.com", requires = ["site1"] }},
  {{ target = "mail-site2.example.com", requires = ["site2"] }},
]
"#
        );
        ControllerConfig::load(&Source::inline("c.toml", text)).expect("valid config")
    }

    #[test]
    fn a_two_site_lab_gets_the_floor_and_a_big_deployment_grows_with_agents_times_checks() {
        let three = r#"
[[agents]]
name = "a1"
site = "site1"
[[agents]]
name = "a2"
site = "site2"
[[agents]]
name = "w1"
site = "witness"
checks = ["eas", "eas-x", "owa"]
"#;
        let caps = EventsCaps::for_deployment(&config(three), 10, None);
        // a1, a2 (no checks listed): 4 servers × 10 + 1 heartbeat; w1: 4 × 3 checks + 1.
        assert_eq!(caps.expected_subjects, 41 + 41 + 13);
        assert_eq!(caps.max_messages, 95 * 10 * 2);
        assert_eq!(caps.max_bytes, EVENTS_MIN_BYTES);
        assert_eq!(caps.per_subject, 10);
        assert_eq!(caps.max_message_size, 1024 * 1024);

        let many: String = (0..40)
            .map(|i| {
                format!(
                    "[[agents]]\nname = \"a{i}\"\nsite = \"site1\"\nchecks = [{}]\n",
                    (0..30)
                        .map(|c| format!("\"c{c}\""))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect();
        let caps = EventsCaps::for_deployment(&config(&many), 10, None);
        assert_eq!(caps.expected_subjects, 40 * (4 * 30 + 1));
        assert_eq!(caps.max_bytes, 40 * 121 * 10 * 2 * EVENTS_BYTES_PER_EVENT);

        let fixed = EventsCaps::for_deployment(&config(three), 10, Some(100 * 1024 * 1024));
        assert_eq!(fixed.max_bytes, 100 * MIB);
    }
}
