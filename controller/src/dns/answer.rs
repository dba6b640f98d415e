//! The responder: one request's bytes in, one response's bytes out (or nothing). Pure, so every
//! rule has a plain unit test; the sockets live in [`super::server`].
//!
//! Nothing here panics on input: a packet that does not parse is answered FORMERR when its header
//! can be read and is a query, and dropped otherwise.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::records::Records;

/// The UDP payload without EDNS (RFC 1035).
pub const CLASSIC_UDP: usize = 512;
/// The largest UDP payload we send with EDNS (the DNS flag day 2020 value).
pub const EDNS_UDP: u16 = 1232;

/// SOA timers: refresh, retry, expire (seconds). No secondaries transfer the zone, so they only
/// matter to tools that read them.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 1_209_600;

/// The zone as the responder needs it, compiled from [`super::DnsConfig`].
#[derive(Debug, Clone)]
pub struct Zone {
    /// The apex, lower case, fully qualified.
    pub apex: Name,
    /// The nameservers (NS at the apex); the first is the SOA's MNAME.
    pub nameservers: Vec<Name>,
    /// The SOA's RNAME (`hostmaster.example.com.` for `hostmaster@example.com`).
    pub rname: Name,
    /// TTL of the SOA and NS records and of addresses of in-zone nameservers.
    pub ttl: u32,
    /// Negative-caching TTL: the SOA MINIMUM, and the TTL of the SOA in negative answers.
    pub negative_ttl: u32,
    /// Addresses of in-zone nameservers (answered as A/AAAA and added as glue).
    pub addresses: BTreeMap<Name, Vec<IpAddr>>,
    /// Clients allowed to transfer the zone (AXFR/IXFR over TCP); everyone else is REFUSED.
    pub allow_transfer: Vec<IpAddr>,
}

/// Which transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: responses are limited by the client's EDNS size (512 without EDNS) and truncated (TC).
    Udp,
    /// TCP: up to 65,535 bytes.
    Tcp,
}

/// Answers one request from an unknown client (zone transfers refused); `None` drops it (a
/// response, or bytes without a readable header).
pub fn respond(
    zone: &Zone,
    records: &Records,
    bytes: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    respond_to(zone, records, bytes, transport, None)
}

/// Answers one request from `client`; a zone transfer is served only over TCP to a client in
/// the zone's `allow_transfer`.
pub fn respond_to(
    zone: &Zone,
    records: &Records,
    bytes: &[u8],
    transport: Transport,
    client: Option<IpAddr>,
) -> Option<Vec<u8>> {
    let request = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => return formerr(bytes),
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let transfer_allowed = transport == Transport::Tcp
        && client.is_some_and(|c| zone.allow_transfer.iter().any(|a| a == &c));
    let response = build(zone, records, &request, transfer_allowed);
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => request.edns.as_ref().map_or(CLASSIC_UDP, |e| {
            usize::from(e.max_payload().clamp(CLASSIC_UDP as u16, EDNS_UDP))
        }),
    };
    match response.to_vec() {
        Ok(out) if out.len() <= limit => Some(out),
        Ok(_) => {
            // Too big for this UDP client: header, question and OPT only, with TC set; the client
            // retries over TCP.
            let mut t = response;
            t.metadata.truncation = true;
            t.answers.clear();
            t.authorities.clear();
            t.additionals.clear();
            t.to_vec().ok()
        }
        Err(e) => {
            tracing::warn!("cannot encode a DNS response: {e}");
            let mut fail = Message::error_msg(
                request.metadata.id,
                request.metadata.op_code,
                ResponseCode::ServFail,
            );
            fail.queries = request.queries.clone();
            fail.to_vec().ok()
        }
    }
}

/// A FORMERR for bytes that did not parse, when their header says they are a query.
fn formerr(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = bytes.get(..12)?;
    let (id_hi, id_lo, flags) = (header[0], header[1], header[2]);
    if flags & 0x80 != 0 {
        return None; // QR set: a response; never answer those.
    }
    let id = u16::from_be_bytes([id_hi, id_lo]);
    let op_code = OpCode::from_u8((flags >> 3) & 0x0f);
    Message::error_msg(id, op_code, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// The response to a parsed query.
fn build(zone: &Zone, records: &Records, request: &Message, transfer_allowed: bool) -> Message {
    let meta = &request.metadata;
    let mut response = Message::response(meta.id, meta.op_code);
    response.metadata.recursion_desired = meta.recursion_desired;
    response.metadata.checking_disabled = meta.checking_disabled;
    response.metadata.recursion_available = false;
    response.queries = request.queries.clone();
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(EDNS_UDP);
        ours.set_version(0);
        response.set_edns(ours);
        if edns.version() > 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return response;
        }
    }
    if meta.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let qname = query.name().to_lowercase();
    let qtype = query.query_type();
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) || !zone.apex.zone_of(&qname) {
        // Not ours, and we do not recurse.
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        if !transfer_allowed || qname != zone.apex || !records.ready {
            response.metadata.response_code = ResponseCode::Refused;
            return response;
        }
        transfer(zone, records, &mut response);
        return response;
    }
    if !records.ready {
        // Not loaded yet: a negative answer now would be cached by resolvers.
        response.metadata.response_code = ResponseCode::ServFail;
        return response;
    }
    response.metadata.authoritative = true;
    let owner = query.name().clone();
    if qname == zone.apex {
        let soa = matches!(qtype, RecordType::SOA | RecordType::ANY);
        let ns = matches!(qtype, RecordType::NS | RecordType::ANY);
        if soa {
            response.add_answer(zone.soa(records, owner.clone(), zone.ttl));
        }
        if ns {
            for n in &zone.nameservers {
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    zone.ttl,
                    RData::NS(NS(n.clone())),
                ));
                for r in zone.address_records(n, RecordType::ANY) {
                    response.add_additional(r);
                }
            }
        }
        if !soa && !ns {
            nodata(zone, records, &mut response);
        }
        return response;
    }
    if let Some(a) = records.names.get(&qname) {
        // A CNAME answers every type at its owner.
        response.add_answer(Record::from_rdata(
            owner,
            a.ttl,
            RData::CNAME(CNAME(a.target.clone())),
        ));
        return response;
    }
    if zone.addresses.contains_key(&qname) {
        let answers = zone.address_records(&qname, qtype);
        if answers.is_empty() {
            nodata(zone, records, &mut response);
        }
        for mut r in answers {
            r.name = owner.clone();
            response.add_answer(r);
        }
        return response;
    }
    let below = |n: &Name| n != &qname && qname.zone_of(n);
    if records.names.keys().any(below)
        || zone.addresses.keys().any(below)
        || zone.nameservers.iter().any(below)
    {
        // An empty non-terminal: the name exists, with no data.
        nodata(zone, records, &mut response);
        return response;
    }
    response.metadata.response_code = ResponseCode::NXDomain;
    response.add_authority(zone.soa(records, zone.apex.clone(), zone.negative_ttl));
    response
}

/// NOERROR with the SOA in the authority section (RFC 2308 NODATA).
fn nodata(zone: &Zone, records: &Records, response: &mut Message) {
    response.add_authority(zone.soa(records, zone.apex.clone(), zone.negative_ttl));
}

impl Zone {
    fn soa(&self, records: &Records, owner: Name, ttl: u32) -> Record {
        let mname = self
            .nameservers
            .first()
            .cloned()
            .unwrap_or_else(|| self.apex.clone());
        Record::from_rdata(
            owner,
            ttl,
            RData::SOA(SOA::new(
                mname,
                self.rname.clone(),
                records.serial(),
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                self.negative_ttl,
            )),
        )
    }

    fn address_records(&self, name: &Name, qtype: RecordType) -> Vec<Record> {
        let Some(ips) = self.addresses.get(&name.to_lowercase()) else {
            return Vec::new();
        };
        ips.iter()
            .filter_map(|ip| match (ip, qtype) {
                (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
                (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                    Some(RData::AAAA(AAAA(*v6)))
                }
                _ => None,
            })
            .map(|d| Record::from_rdata(name.clone(), self.ttl, d))
            .collect()
    }
}

/// A query message for `name`/`qtype` (tests and tools).
pub fn query(name: &Name, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(name.clone(), qtype));
    m
}

/// The whole zone in one message (RFC 5936; an IXFR is answered with the full zone,
/// RFC 1995 §4): SOA, NS, nameserver addresses, every CNAME, SOA again.
fn transfer(zone: &Zone, records: &Records, response: &mut Message) {
    response.metadata.authoritative = true;
    let all = zone_records(zone, records);
    let soa = all.first().cloned();
    for r in all {
        response.add_answer(r);
    }
    // A transfer ends with the SOA it began with (RFC 5936).
    if let Some(soa) = soa {
        response.add_answer(soa);
    }
}

/// Every record of the zone in transfer order: the SOA, the NS records, the nameservers'
/// addresses, then each managed CNAME by name. Zone transfers and `sitewarden-controller zone
/// list` both print this.
pub fn zone_records(zone: &Zone, records: &Records) -> Vec<Record> {
    let mut out = vec![zone.soa(records, zone.apex.clone(), zone.ttl)];
    for n in &zone.nameservers {
        out.push(Record::from_rdata(
            zone.apex.clone(),
            zone.ttl,
            RData::NS(NS(n.clone())),
        ));
    }
    for name in zone.addresses.keys() {
        out.extend(zone.address_records(name, RecordType::ANY));
    }
    let mut names: Vec<(&Name, &super::records::Answer)> = records.names.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, a) in names {
        out.push(Record::from_rdata(
            name.clone(),
            a.ttl,
            RData::CNAME(CNAME(a.target.clone())),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::Answer;

    fn zone() -> Zone {
        let n = |s: &str| Name::from_ascii(s).unwrap();
        Zone {
            apex: n("failover.example.com."),
            nameservers: vec![n("ns1.failover.example.com."), n("ns2.elsewhere.net.")],
            rname: n("hostmaster.example.com."),
            ttl: 3600,
            negative_ttl: 60,
            addresses: [(
                n("ns1.failover.example.com."),
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
            Name::from_ascii("mail.failover.example.com.").unwrap(),
            Answer {
                target: Name::from_ascii("mail-site2.example.com.").unwrap(),
                ttl: 30,
            },
        );
        r
    }

    fn ask(name: &str, qtype: RecordType, transport: Transport) -> Message {
        let mut q = query(&Name::from_ascii(name).unwrap(), qtype);
        q.metadata.recursion_desired = true;
        let out = respond(&zone(), &records(), &q.to_vec().unwrap(), transport).unwrap();
        Message::from_vec(&out).unwrap()
    }

    #[test]
    fn the_zone_is_transferred_only_over_tcp_to_allowed_clients() {
        let transfer = |transport, client: &str| {
            let q = query(
                &Name::from_ascii("failover.example.com.").unwrap(),
                RecordType::AXFR,
            );
            let out = respond_to(
                &zone(),
                &records(),
                &q.to_vec().unwrap(),
                transport,
                Some(client.parse().unwrap()),
            )
            .unwrap();
            Message::from_vec(&out).unwrap()
        };
        let m = transfer(Transport::Tcp, "127.0.0.1");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types.first(), Some(&RecordType::SOA));
        assert_eq!(types.last(), Some(&RecordType::SOA));
        assert!(types.contains(&RecordType::NS) && types.contains(&RecordType::A));
        assert!(m.answers.iter().any(|r| matches!(&r.data,
            RData::CNAME(c) if c.0 == Name::from_ascii("mail-site2.example.com.").unwrap())));
        for (transport, client) in [
            (Transport::Udp, "127.0.0.1"),
            (Transport::Tcp, "192.0.2.99"),
        ] {
            let m = transfer(transport, client);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::Refused,
                "{transport:?} {client}"
            );
            assert!(m.answers.is_empty());
        }
    }

    #[test]
    fn a_managed_name_answers_its_cname_for_any_type_authoritatively() {
        for t in [RecordType::CNAME, RecordType::A, RecordType::AAAA] {
            let m = ask("MAIL.failover.example.com.", t, Transport::Udp);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative && !m.metadata.recursion_available);
            assert!(m.metadata.recursion_desired);
            assert_eq!(m.answers.len(), 1);
            assert_eq!(m.answers[0].ttl, 30);
        }
    }

    #[test]
    fn nxdomain_nodata_and_refused() {
        let m = ask("nope.failover.example.com.", RecordType::A, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let m = ask("failover.example.com.", RecordType::MX, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let m = ask("example.org.", RecordType::A, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
        let m = ask("failover.example.com.", RecordType::AXFR, Transport::Tcp);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        // ns1 has an address but no TXT; `failover.example.com` above `mail` is not empty.
        let m = ask("ns1.failover.example.com.", RecordType::TXT, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let m = ask("ns1.failover.example.com.", RecordType::A, Transport::Udp);
        assert_eq!(m.answers.len(), 1);
    }

    #[test]
    fn the_apex_has_soa_and_ns_with_glue() {
        let m = ask("failover.example.com.", RecordType::SOA, Transport::Udp);
        let Some(RData::SOA(soa)) = m.answers.first().map(|r| r.data.clone()) else {
            panic!("{m:?}")
        };
        assert_eq!(soa.serial, 7);
        let m = ask("failover.example.com.", RecordType::NS, Transport::Udp);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.additionals.len(), 1);
    }

    #[test]
    fn garbage_never_panics() {
        let z = zone();
        let r = records();
        assert!(respond(&z, &r, &[], Transport::Udp).is_none());
        assert!(respond(&z, &r, &[1, 2, 3], Transport::Udp).is_none());
        let out = respond(
            &z,
            &r,
            &[0xab, 0xcd, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 7],
            Transport::Udp,
        )
        .unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0xabcd);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i: u8| i.wrapping_mul(37)).collect();
            let _ = respond(&z, &r, &bytes, Transport::Udp);
        }
    }

    #[test]
    fn an_answer_too_big_for_udp_is_truncated() {
        let mut z = zone();
        for i in 0..40 {
            z.nameservers.push(
                Name::from_ascii(format!("a-rather-long-nameserver-name-{i}.example.net."))
                    .unwrap(),
            );
        }
        let q = query(&z.apex, RecordType::NS).to_vec().unwrap();
        let m = Message::from_vec(&respond(&z, &records(), &q, Transport::Udp).unwrap()).unwrap();
        assert!(m.metadata.truncation && m.answers.is_empty());
        let m = Message::from_vec(&respond(&z, &records(), &q, Transport::Tcp).unwrap()).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 42);
    }

    #[test]
    fn not_ready_is_servfail_and_edns_is_echoed() {
        let mut q = query(
            &Name::from_ascii("mail.failover.example.com.").unwrap(),
            RecordType::A,
        );
        q.set_edns(Edns::new());
        let bytes = q.to_vec().unwrap();
        let out = respond(&zone(), &Records::default(), &bytes, Transport::Udp).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(m.edns.is_some());
        let mut v1 = Edns::new();
        v1.set_version(1);
        q.set_edns(v1);
        let out = respond(&zone(), &records(), &q.to_vec().unwrap(), Transport::Udp).unwrap();
        // RCODE 16 on the wire; hickory decodes 16 as BADSIG (the TSIG meaning of the same code).
        let code = Message::from_vec(&out).unwrap().metadata.response_code;
        assert!(
            matches!(code, ResponseCode::BADVERS | ResponseCode::BADSIG),
            "{code:?}"
        );
    }
}
