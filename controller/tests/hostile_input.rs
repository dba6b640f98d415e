//! The controller's parsers of outside input never panic: its config loaders, the intake's
//! subject + payload check, values other writers can put on the bus (the lease key, a record's
//! ownership marker, built-in DNS keys and values) and the built-in DNS responder fed any
//! packet. A marker stamped into any comment is found again, and every DNS response parses and
//! fits its transport. `scripts/fuzz` runs the same checks under libFuzzer for longer.

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::dns::answer::{query, respond};
use sitewarden_controller::dns::records::Answer;
use sitewarden_controller::dns::{Records, StoredRecord, Transport, Zone, record_key};
use sitewarden_controller::ha::record::LeaseValue;
use sitewarden_controller::provider::marker::Marker;
use sitewarden_controller::runtime::intake;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_shared::config::Source;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The shipped example without lines that read secrets from the environment, and without its
/// `[[alerts]]` table (a sink is nothing without its URL, which is such a secret).
fn base() -> Vec<String> {
    let mut in_alerts = false;
    include_str!("../../examples/controller.toml")
        .lines()
        .filter(|l| {
            if l.starts_with('[') {
                in_alerts = l.trim() == "[[alerts]]";
            }
            !in_alerts && !l.contains("{ env =")
        })
        .map(str::to_owned)
        .collect()
}

fn load(text: &str) {
    let src = Source::inline("controller.toml", text);
    let _ = ControllerConfig::load(&src);
    let _ = RuntimeSettings::load(&src);
}

fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"\"",
            "0",
            "-1",
            "18446744073709551616",
            "1e400",
            "nan",
            "true",
            "[]",
            "{}",
            "\"0s\"",
            "\"1000000000h\"",
            "\"a.b\"",
            "\">\"",
            "\"manual\"",
            "\"site9\"",
            "[{}]",
            "[{ target = \"\", requires = [] }]",
            "{ env = \"SITEWARDEN_SURELY_UNSET\" }",
            "{ file = \"/nonexistent/secret\" }",
            "\"http://[::1\"",
            "\"0.0.0.0:99999\"",
        ])
        .prop_map(str::to_owned),
        "\"[^\"\\\\]{0,24}\"",
        "-?[0-9]{1,25}",
    ]
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn zone() -> Zone {
    Zone {
        apex: name("failover.example.com."),
        nameservers: vec![
            name("ns1.failover.example.com."),
            name("ns2.elsewhere.net."),
        ],
        rname: name("hostmaster.example.com."),
        ttl: 3600,
        negative_ttl: 60,
        addresses: [(
            name("ns1.failover.example.com."),
            vec!["192.0.2.1".parse().unwrap()],
        )]
        .into_iter()
        .collect(),
        allow_transfer: vec!["127.0.0.1".parse().unwrap()],
    }
}

fn records() -> Records {
    let mut r = Records {
        ready: true,
        revision: 7,
        ..Records::default()
    };
    r.names.insert(
        name("mail.failover.example.com."),
        Answer {
            target: name("mail-site2.example.com."),
            ttl: 30,
        },
    );
    r
}

/// Checks one packet's handling: no panic; any response parses and fits.
fn answer(packet: &[u8]) {
    let (zone, records) = (zone(), records());
    for (transport, limit) in [(Transport::Udp, 1232), (Transport::Tcp, 65535)] {
        if let Some(out) = respond(&zone, &records, packet, transport) {
            assert!(out.len() <= limit, "{} bytes over {transport:?}", out.len());
            assert!(
                Message::from_vec(&out).is_ok(),
                "unparsable response to {packet:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_config_text_never_panics(text in ".{0,300}") {
        load(&text);
    }

    #[test]
    fn the_example_with_hostile_values_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), hostile_value()), 1..5)
    ) {
        let mut lines = base();
        for (at, value) in edits {
            let i = at.index(lines.len());
            lines[i] = match lines[i].split_once('=') {
                Some((key, _)) if !lines[i].trim_start().starts_with('#') => format!("{key}= {value}"),
                _ => value,
            };
        }
        load(&lines.join("\n"));
    }

    #[test]
    fn intake_never_panics(
        subject in prop_oneof![
            ".{0,80}",
            "sitewarden\\.v1\\.(obs|dbcopy|heartbeat|edge|audit)(\\.[a-z0-9*>-]{0,8}){0,6}",
        ],
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = intake::decode(&subject, &payload);
    }

    #[test]
    fn bus_values_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), text in ".{0,120}") {
        let _ = LeaseValue::decode(&bytes).holder();
        let _ = serde_json::from_slice::<StoredRecord>(&bytes);
        let _ = record_key(&text);
        let _ = Marker::parse(&text);
    }

    #[test]
    fn a_stamped_marker_is_found_again(
        comment in prop_oneof![
            ".{0,120}",
            "(sitewarden|epoch=|gen=| |[0-9]{1,22}|x){0,12}",
        ],
        epoch in any::<u64>(),
        generation in any::<u64>(),
    ) {
        let ours = Marker { epoch, generation };
        let stamped = ours.stamp(Some(&comment));
        prop_assert_eq!(Marker::parse(&stamped), Some(ours), "stamped {:?}", stamped);
    }

    #[test]
    fn dns_packets_never_panic(packet in prop::collection::vec(any::<u8>(), 0..600)) {
        answer(&packet);
    }

    #[test]
    fn mangled_queries_never_panic(
        qname in "[a-z0-9.-]{0,40}",
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        // A real query with one byte changed and a random tail cut off reaches the parser's
        // deeper paths more often than random bytes do.
        let Ok(qname) = Name::from_ascii(format!("{qname}.failover.example.com.")) else {
            return Ok(());
        };
        let Ok(mut packet) = query(&qname, RecordType::CNAME).to_vec() else {
            return Ok(());
        };
        let i = at.index(packet.len());
        packet[i] = byte;
        packet.truncate(cut.index(packet.len() + 1).max(1));
        answer(&packet);
    }
}

#[test]
fn the_unmutated_base_loads() {
    let text = base().join("\n");
    if let Err(e) = ControllerConfig::load(&Source::inline("controller.toml", text.as_str())) {
        panic!("{e}");
    }
}
