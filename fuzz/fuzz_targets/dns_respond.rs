//! The built-in authoritative DNS server's responder, fed any packet over UDP and TCP: it never
//! panics, and whatever it sends back is a DNS message that parses and fits the transport.

#![no_main]

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use libfuzzer_sys::fuzz_target;
use sitewarden_controller::dns::records::Answer;
use sitewarden_controller::dns::{Records, Transport, Zone, answer::respond};

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("a valid test name")
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
            vec!["192.0.2.1".parse().expect("an address")],
        )]
        .into_iter()
        .collect(),
        allow_transfer: Vec::new(),
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

fuzz_target!(|data: &[u8]| {
    let (zone, records) = (zone(), records());
    for (transport, limit) in [(Transport::Udp, 1232), (Transport::Tcp, 65535)] {
        if let Some(out) = respond(&zone, &records, data, transport) {
            assert!(out.len() <= limit, "{} bytes over {transport:?}", out.len());
            Message::from_vec(&out).expect("our response parses");
        }
    }
});
