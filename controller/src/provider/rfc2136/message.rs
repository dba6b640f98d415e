//! The RFC 2136 messages: what the primary holds for a managed name, and the one UPDATE that
//! changes it as a compare-and-set. Pure (no sockets), so every rule has a plain unit test.
//!
//! A managed name `mail.example.com` is a CNAME; a CNAME cannot share its name with other data,
//! so the ownership marker lives beside it in a TXT record at `_sitewarden.mail.example.com`,
//! holding the same text as a Cloudflare comment (`sitewarden epoch=7 gen=42`, see [`Marker`]).
//!
//! The UPDATE carries prerequisites (RFC 2136 §2.4.2, "RRset exists (value dependent)") on the
//! CNAME *and* on the marker TXT exactly as they were read (or §2.4.5 "RRset does not exist"
//! when there was no marker), then deletes both RRsets and adds the new CNAME and the new marker.
//! The server applies all of it or nothing: if anyone changed the target or the marker since our
//! read, the prerequisite fails with NXRRSET and nothing is written. One UPDATE can carry many
//! names ([`update_many`]): every name's prerequisites and changes, all applied or none.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::provider::decide::Patch;
use crate::provider::{Marker, ProviderError, RecordState};

/// The label in front of a managed name that holds its ownership marker.
pub const MARKER_LABEL: &str = "_sitewarden";

/// The longest character-string in a TXT record (RFC 1035 §3.3).
const TXT_STRING_MAX: usize = 255;

/// The DNS names one change touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The zone apex, e.g. `example.com.`.
    pub zone: Name,
    /// The managed name, e.g. `mail.example.com.`.
    pub record: Name,
    /// Where its marker lives, e.g. `_sitewarden.mail.example.com.`.
    pub marker: Name,
}

/// Parses a host name given in configuration or a change into a fully qualified [`Name`].
pub fn fqdn(text: &str) -> Result<Name, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Err("an empty name".into());
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| format!("{trimmed:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// The names for managed name `name` in `zone`; fails when `name` is not inside the zone.
pub fn names(zone: &Name, name: &str) -> Result<Names, ProviderError> {
    let record = fqdn(name).map_err(|e| {
        ProviderError::Rejected(format!("{e} is not a DNS name that can be managed"))
    })?;
    if !zone.zone_of(&record) || record == *zone {
        return Err(ProviderError::Rejected(format!(
            "{name} is not inside the zone {zone} this provider updates; \
             manage it with a provider for its own zone"
        )));
    }
    let marker = record.prepend_label(MARKER_LABEL).map_err(|e| {
        ProviderError::Rejected(format!("{name}: no room for the marker label ({e})"))
    })?;
    Ok(Names {
        zone: zone.clone(),
        record,
        marker,
    })
}

/// What the primary holds for one managed name: the RRsets the UPDATE's prerequisites repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Held {
    /// The CNAME target and TTL, when there is a CNAME.
    pub cname: Option<(Name, u32)>,
    /// The whole TXT RRset at the marker name (usually one record; empty when there is none).
    pub marker_txt: Vec<TXT>,
}

impl Held {
    /// Reads the answers to the CNAME query and the marker TXT query.
    pub fn from_answers(
        names: &Names,
        cname: &Message,
        txt: &Message,
    ) -> Result<Self, ProviderError> {
        answer_usable(cname, &names.record)?;
        answer_usable(txt, &names.marker)?;
        let mut targets = cname.answers.iter().filter_map(|r| match &r.data {
            RData::CNAME(CNAME(target)) if r.name == names.record => Some((target.clone(), r.ttl)),
            _ => None,
        });
        let first = targets.next();
        if targets.next().is_some() {
            return Err(ProviderError::Rejected(format!(
                "{} has more than one CNAME record; fix the zone by hand",
                names.record
            )));
        }
        let marker_txt = txt
            .answers
            .iter()
            .filter(|r| r.name == names.marker)
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        Ok(Self {
            cname: first.map(|(target, ttl)| (target.to_lowercase(), ttl)),
            marker_txt,
        })
    }

    /// The record as the shared decision rules see it.
    pub fn state(&self, name: &str) -> RecordState {
        let texts: Vec<String> = self.marker_txt.iter().map(txt_text).collect();
        // With several TXT records, the newest marker counts (the safe side for fencing).
        let carrying = texts
            .iter()
            .filter_map(|t| Marker::parse(t).map(|m| (m, t)))
            .max_by_key(|(m, _)| *m);
        let comment = carrying
            .map(|(_, t)| t.clone())
            .or_else(|| texts.first().cloned());
        RecordState {
            name: name.to_owned(),
            content: self.cname.as_ref().map(|(t, _)| host(t)),
            ttl: self.cname.as_ref().map(|(_, ttl)| *ttl),
            proxied: None,
            marker: carrying.map(|(m, _)| m),
            provider_id: None,
            comment,
        }
    }
}

/// A host name without its trailing dot, as the rest of the controller writes names.
pub fn host(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_owned()
}

/// The text of one TXT record: its character-strings concatenated.
fn txt_text(t: &TXT) -> String {
    t.txt_data
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Checks a query's answer can be read as the zone's content.
fn answer_usable(m: &Message, name: &Name) -> Result<(), ProviderError> {
    match m.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        ResponseCode::ServFail => {
            return Err(ProviderError::Transient(format!(
                "the DNS server answered SERVFAIL for {name}"
            )));
        }
        ResponseCode::Refused | ResponseCode::NotAuth => {
            return Err(ProviderError::Rejected(format!(
                "the DNS server refused to answer for {name} ({}); point `server` at the \
                 zone's primary and allow queries from the controllers",
                m.metadata.response_code
            )));
        }
        other => {
            return Err(ProviderError::Rejected(format!(
                "the DNS server answered {other} for {name}"
            )));
        }
    }
    if !m.metadata.authoritative {
        return Err(ProviderError::Rejected(format!(
            "the DNS server answered for {name} without authority (no AA bit); point `server` \
             at the zone's primary, not at a resolver"
        )));
    }
    Ok(())
}

/// One name's part of an UPDATE: its names, what was read, the patch and the TTL of both new
/// records.
#[derive(Debug, Clone)]
pub struct Item {
    /// The names the change touches.
    pub names: Names,
    /// The RRsets as read: the prerequisites.
    pub held: Held,
    /// What to write.
    pub patch: Patch,
    /// The TTL of the new CNAME and marker.
    pub ttl: u32,
}

/// The UPDATE that moves `names.record` from what `held` shows to `patch`, with `ttl` on both
/// new records. `held` must have a CNAME (the decision rules refuse a missing record first).
pub fn update(
    names: &Names,
    held: &Held,
    patch: &Patch,
    ttl: u32,
) -> Result<Message, ProviderError> {
    let item = Item {
        names: names.clone(),
        held: held.clone(),
        patch: patch.clone(),
        ttl,
    };
    update_many(&names.zone, std::slice::from_ref(&item))
}

/// One UPDATE to `zone` carrying every item's prerequisites and changes: the server applies all
/// of them or none, and one failed prerequisite (NXRRSET, YXRRSET) refuses the whole message.
pub fn update_many(zone: &Name, items: &[Item]) -> Result<Message, ProviderError> {
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.metadata.message_type = MessageType::Query;
    m.metadata.op_code = OpCode::Update;
    m.metadata.recursion_desired = false;
    let mut apex = Query::query(zone.clone(), RecordType::SOA);
    apex.set_query_class(DNSClass::IN);
    m.add_query(apex);
    for item in items {
        add_item(&mut m, item)?;
    }
    Ok(m)
}

/// Adds one name's prerequisites (the answer section) and changes (the authority section).
fn add_item(m: &mut Message, item: &Item) -> Result<(), ProviderError> {
    let Item {
        names,
        held,
        patch,
        ttl,
    } = item;
    let Some((old_target, _)) = &held.cname else {
        return Err(ProviderError::Rejected(format!(
            "{} has no CNAME to compare against",
            names.record
        )));
    };
    let target = fqdn(&patch.content).map_err(|e| {
        ProviderError::Rejected(format!("{e} is not a DNS name a CNAME can point at"))
    })?;

    // Prerequisites (the answer section): the CNAME and the marker exactly as read.
    m.add_answer(Record::from_rdata(
        names.record.clone(),
        0,
        RData::CNAME(CNAME(old_target.clone())),
    ));
    if held.marker_txt.is_empty() {
        let mut absent = Record::update0(names.marker.clone(), 0, RecordType::TXT);
        absent.dns_class = DNSClass::NONE;
        m.add_answer(absent);
    } else {
        for t in &held.marker_txt {
            m.add_answer(Record::from_rdata(
                names.marker.clone(),
                0,
                RData::TXT(t.clone()),
            ));
        }
    }

    // Updates (the authority section): replace both RRsets.
    for (name, rtype) in [
        (&names.record, RecordType::CNAME),
        (&names.marker, RecordType::TXT),
    ] {
        let mut delete = Record::update0(name.clone(), 0, rtype);
        delete.dns_class = DNSClass::ANY;
        m.add_authority(delete);
    }
    m.add_authority(Record::from_rdata(
        names.record.clone(),
        *ttl,
        RData::CNAME(CNAME(target)),
    ));
    m.add_authority(Record::from_rdata(
        names.marker.clone(),
        *ttl,
        RData::TXT(marker_txt(&patch.comment)),
    ));
    Ok(())
}

/// A TXT record holding `text`, split into character-strings of at most 255 bytes.
fn marker_txt(text: &str) -> TXT {
    let bytes = text.as_bytes();
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[]]
    } else {
        bytes.chunks(TXT_STRING_MAX).collect()
    };
    TXT::from_bytes(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        fqdn("example.com").unwrap()
    }

    fn answer(names: &Names, records: Vec<Record>, rcode: ResponseCode) -> Message {
        let mut m = Message::query();
        m.metadata.message_type = MessageType::Response;
        m.metadata.authoritative = true;
        m.metadata.response_code = rcode;
        m.add_query(Query::query(names.record.clone(), RecordType::CNAME));
        for r in records {
            m.add_answer(r);
        }
        m
    }

    fn cname(names: &Names, target: &str) -> Record {
        Record::from_rdata(
            names.record.clone(),
            300,
            RData::CNAME(CNAME(fqdn(target).unwrap())),
        )
    }

    fn txt(names: &Names, text: &str) -> Record {
        Record::from_rdata(
            names.marker.clone(),
            300,
            RData::TXT(TXT::new(vec![text.into()])),
        )
    }

    #[test]
    fn names_stay_inside_the_zone() {
        let n = names(&zone(), "Mail.Example.com.").unwrap();
        assert_eq!(n.record.to_ascii(), "mail.example.com.");
        assert_eq!(n.marker.to_ascii(), "_sitewarden.mail.example.com.");
        for outside in ["mail.example.org", "example.com", "notexample.com", ""] {
            assert!(
                matches!(names(&zone(), outside), Err(ProviderError::Rejected(_))),
                "{outside:?}"
            );
        }
    }

    #[test]
    fn the_record_state_carries_target_ttl_and_marker() {
        let n = names(&zone(), "mail.example.com").unwrap();
        let held = Held::from_answers(
            &n,
            &answer(
                &n,
                vec![cname(&n, "Mail-RR.example.com.")],
                ResponseCode::NoError,
            ),
            &answer(
                &n,
                vec![txt(&n, "sitewarden epoch=7 gen=42")],
                ResponseCode::NoError,
            ),
        )
        .unwrap();
        let s = held.state("mail.example.com");
        assert_eq!(s.content.as_deref(), Some("mail-rr.example.com"));
        assert_eq!(s.ttl, Some(300));
        assert_eq!(
            s.marker,
            Some(Marker {
                epoch: 7,
                generation: 42
            })
        );

        let empty = Held::from_answers(
            &n,
            &answer(&n, vec![], ResponseCode::NXDomain),
            &answer(&n, vec![], ResponseCode::NXDomain),
        )
        .unwrap();
        assert_eq!(empty.state("mail.example.com").content, None);
        assert_eq!(empty.state("mail.example.com").marker, None);
    }

    #[test]
    fn unusable_answers_are_errors_not_guesses() {
        let n = names(&zone(), "mail.example.com").unwrap();
        let ok = answer(&n, vec![], ResponseCode::NoError);
        let refused = answer(&n, vec![], ResponseCode::Refused);
        assert!(matches!(
            Held::from_answers(&n, &refused, &ok),
            Err(ProviderError::Rejected(_))
        ));
        let servfail = answer(&n, vec![], ResponseCode::ServFail);
        assert!(matches!(
            Held::from_answers(&n, &servfail, &ok),
            Err(ProviderError::Transient(_))
        ));
        let mut resolver = answer(&n, vec![cname(&n, "x.example.com")], ResponseCode::NoError);
        resolver.metadata.authoritative = false;
        let err = Held::from_answers(&n, &resolver, &ok).unwrap_err();
        assert!(err.to_string().contains("AA bit"), "{err}");
        let two = answer(
            &n,
            vec![cname(&n, "a.example.com"), cname(&n, "b.example.com")],
            ResponseCode::NoError,
        );
        assert!(Held::from_answers(&n, &two, &ok).is_err());
    }

    #[test]
    fn the_update_is_one_compare_and_set_of_cname_and_marker() {
        let n = names(&zone(), "mail.example.com").unwrap();
        let held = Held {
            cname: Some((fqdn("mail-rr.example.com").unwrap(), 300)),
            marker_txt: vec![TXT::new(vec!["sitewarden epoch=1 gen=1".into()])],
        };
        let patch = Patch {
            content: "mail-site2.example.com".into(),
            comment: "sitewarden epoch=2 gen=2".into(),
            ttl: Some(60),
        };
        let m = update(&n, &held, &patch, 60).unwrap();
        assert_eq!(m.metadata.op_code, OpCode::Update);
        assert_eq!(m.queries[0].query_type(), RecordType::SOA);
        assert_eq!(m.queries[0].name(), &zone());
        // Prerequisites: value-dependent on both RRsets, TTL 0, class IN.
        assert_eq!(m.answers.len(), 2);
        assert!(
            m.answers
                .iter()
                .all(|r| r.ttl == 0 && r.dns_class == DNSClass::IN)
        );
        assert_eq!(
            m.answers[0].data,
            RData::CNAME(CNAME(fqdn("mail-rr.example.com").unwrap()))
        );
        // Updates: delete both RRsets (class ANY), add the new CNAME and marker.
        let kinds: Vec<_> = m
            .authorities
            .iter()
            .map(|r| (r.name.to_ascii(), r.dns_class, r.record_type(), r.ttl))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "mail.example.com.".to_owned(),
                    DNSClass::ANY,
                    RecordType::CNAME,
                    0
                ),
                (
                    "_sitewarden.mail.example.com.".to_owned(),
                    DNSClass::ANY,
                    RecordType::TXT,
                    0
                ),
                (
                    "mail.example.com.".to_owned(),
                    DNSClass::IN,
                    RecordType::CNAME,
                    60
                ),
                (
                    "_sitewarden.mail.example.com.".to_owned(),
                    DNSClass::IN,
                    RecordType::TXT,
                    60
                ),
            ]
        );
        assert_eq!(
            m.authorities[3].data,
            RData::TXT(TXT::new(vec!["sitewarden epoch=2 gen=2".into()]))
        );
        // It encodes.
        assert!(m.to_vec().is_ok());
    }

    #[test]
    fn without_a_marker_the_prerequisite_is_that_none_exists() {
        let n = names(&zone(), "mail.example.com").unwrap();
        let held = Held {
            cname: Some((fqdn("mail-rr.example.com").unwrap(), 300)),
            marker_txt: vec![],
        };
        let patch = Patch {
            content: "mail-site2.example.com".into(),
            comment: "sitewarden epoch=2 gen=2".into(),
            ttl: None,
        };
        let m = update(&n, &held, &patch, 300).unwrap();
        let absent = &m.answers[1];
        assert_eq!(absent.dns_class, DNSClass::NONE);
        assert_eq!(absent.record_type(), RecordType::TXT);
        assert!(m.to_vec().is_ok());
        let long = marker_txt(&"x".repeat(600));
        assert_eq!(long.txt_data.len(), 3);
    }

    #[test]
    fn one_update_carries_every_names_prerequisites_and_changes() {
        let items: Vec<Item> = (0..3)
            .map(|i| Item {
                names: names(&zone(), &format!("svc{i}.example.com")).unwrap(),
                held: Held {
                    cname: Some((fqdn("site1.example.com").unwrap(), 300)),
                    marker_txt: if i == 1 {
                        vec![]
                    } else {
                        vec![TXT::new(vec!["sitewarden epoch=1 gen=1".into()])]
                    },
                },
                patch: Patch {
                    content: "site2.example.com".into(),
                    comment: "sitewarden epoch=2 gen=2".into(),
                    ttl: None,
                },
                ttl: 300,
            })
            .collect();
        let m = update_many(&zone(), &items).unwrap();
        assert_eq!(m.queries.len(), 1, "one zone section");
        assert_eq!(m.answers.len(), 6, "two prerequisites a name");
        assert_eq!(m.authorities.len(), 12, "four changes a name");
        let absent: Vec<_> = m
            .answers
            .iter()
            .filter(|r| r.dns_class == DNSClass::NONE)
            .map(|r| r.name.to_ascii())
            .collect();
        assert_eq!(absent, ["_sitewarden.svc1.example.com."]);
        let added: Vec<_> = m
            .authorities
            .iter()
            .filter(|r| r.dns_class == DNSClass::IN && r.record_type() == RecordType::CNAME)
            .map(|r| r.name.to_ascii())
            .collect();
        assert_eq!(
            added,
            [
                "svc0.example.com.",
                "svc1.example.com.",
                "svc2.example.com."
            ]
        );
        assert!(m.to_vec().is_ok());
    }
}
