//! Unit tests of the zone tool's decisions: what is wanted, created, repaired and reported.

use super::*;
use sitewarden_shared::config::Source;

const ZONE: &str = "failover.example.com";

/// The shipped example, its names moved into the delegated zone.
fn config() -> ControllerConfig {
    let text = include_str!("../../../../examples/controller.toml")
        .replace("\"mail.example.com\"", "\"mail.failover.example.com\"")
        .replace("\"owa.example.com\"", "\"owa.failover.example.com\"");
    ControllerConfig::load(&Source::inline("controller.toml", &text)).expect("valid example")
}

fn record(content: &str) -> Present {
    Present::Record {
        record: StoredRecord {
            content: content.into(),
            ttl: 60,
            epoch: Some(3),
            generation: Some(9),
        },
        revision: 7,
    }
}

#[test]
fn every_managed_name_starts_at_its_first_target() {
    let w = wanted(&config(), ZONE, None).unwrap();
    let got: Vec<(&str, &str, Origin)> = w
        .iter()
        .map(|w| (w.key.as_str(), w.content.as_str(), w.origin))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "mail.failover.example.com",
                "mail-rr.example.com",
                Origin::Config
            ),
            (
                "owa.failover.example.com",
                "owa-site1.example.com",
                Origin::Config
            ),
        ]
    );
    assert_eq!(w[0].ttl, 60);
    assert_eq!(w[0].record().epoch, Some(0), "any leader may change it");
    assert_eq!(w[0].record().generation, Some(0));
}

#[test]
fn a_name_outside_the_zone_is_refused_by_name() {
    let err = wanted(&config(), "other.example.net", None).unwrap_err().0;
    assert!(err.contains("mail.failover.example.com"), "{err}");
    assert!(err.contains("outside the zone other.example.net"), "{err}");
}

#[test]
fn a_zone_file_sets_where_names_start_and_other_records_are_ignored() {
    let text = "$TTL 300\n\
        @    IN SOA ns1 hostmaster.example.com. (1 3600 600 86400 60)\n\
        @    IN NS  ns1\n\
        ns1  IN A   192.0.2.10\n\
        mail IN CNAME mail-site2.example.com.\n";
    let file = parse_zone_file(text, Path::new("failover.zone"), ZONE).unwrap();
    assert_eq!(file.ignored, 3);
    let w = wanted(&config(), ZONE, Some(&file)).unwrap();
    assert_eq!(w[0].content, "mail-site2.example.com");
    assert_eq!(w[0].origin, Origin::ZoneFile);
    assert_eq!(w[1].origin, Origin::Config, "owa is not in the file");
}

#[test]
fn a_zone_file_naming_unknown_targets_or_names_changes_nothing_and_says_why() {
    let unknown_target = parse_zone_file(
        "mail IN CNAME elsewhere.example.org.\n",
        Path::new("z"),
        ZONE,
    )
    .unwrap();
    let err = wanted(&config(), ZONE, Some(&unknown_target))
        .unwrap_err()
        .0;
    assert!(err.contains("elsewhere.example.org"), "{err}");
    assert!(
        err.contains("mail-site1.example.com"),
        "lists the targets: {err}"
    );

    let unmanaged =
        parse_zone_file("www IN CNAME web.example.com.\n", Path::new("z"), ZONE).unwrap();
    let err = wanted(&config(), ZONE, Some(&unmanaged)).unwrap_err().0;
    assert!(err.contains("www.failover.example.com"), "{err}");

    let err = parse_zone_file("this is not ( a zone", Path::new("bad.zone"), ZONE)
        .unwrap_err()
        .0;
    assert!(err.starts_with("bad.zone: not a zone file"), "{err}");

    let err = parse_zone_file(
        "mail.example.net. IN CNAME x.example.com.\n",
        Path::new("z"),
        ZONE,
    )
    .unwrap_err()
    .0;
    assert!(err.contains("outside the zone"), "{err}");
}

#[test]
fn create_makes_missing_names_repairs_unreadable_ones_and_never_touches_a_record() {
    let w = wanted(&config(), ZONE, None).unwrap();
    assert_eq!(plan_create(&w, &Bucket::new()).len(), 2, "an empty bucket");

    let mut bucket = Bucket::new();
    // The leader moved mail to site2: create must not put it back.
    bucket.insert(
        "mail.failover.example.com".into(),
        record("mail-site2.example.com"),
    );
    bucket.insert(
        "owa.failover.example.com".into(),
        Present::Unreadable {
            why: "not JSON".into(),
            revision: 4,
        },
    );
    let plan = plan_create(&w, &bucket);
    assert_eq!(
        plan,
        vec![Write::Repair {
            wanted: w[1].clone(),
            revision: 4,
            why: "not JSON".into()
        }]
    );
    bucket.insert(
        "owa.failover.example.com".into(),
        record("owa-site1.example.com"),
    );
    assert!(
        plan_create(&w, &bucket).is_empty(),
        "run twice: nothing to do"
    );
}

#[test]
fn check_names_each_problem_with_its_fix() {
    let c = config();
    assert_eq!(check(&c, None), vec![Finding::NoBucket]);
    assert!(Finding::NoBucket.to_string().contains(CREATE_COMMAND));

    let mut bucket = Bucket::new();
    bucket.insert(
        "mail.failover.example.com".into(),
        record("mail-hand.example.com"),
    );
    bucket.insert("old.failover.example.com".into(), record("x.example.com"));
    let found = check(&c, Some(&bucket));
    assert_eq!(
        found,
        vec![
            Finding::NotATarget {
                key: "mail.failover.example.com".into(),
                content: "mail-hand.example.com".into()
            },
            Finding::Missing {
                key: "owa.failover.example.com".into()
            },
            Finding::Unmanaged {
                key: "old.failover.example.com".into()
            },
        ]
    );
    assert!(found[1].to_string().contains(CREATE_COMMAND));
    assert!(found.iter().filter(|f| f.is_problem()).count() == 2);

    bucket.insert(
        "mail.failover.example.com".into(),
        record("MAIL-SITE2.example.com."),
    );
    bucket.insert(
        "owa.failover.example.com".into(),
        record("owa-site2.example.com"),
    );
    bucket.remove("old.failover.example.com");
    assert!(
        check(&c, Some(&bucket)).is_empty(),
        "case and the dot do not matter"
    );
}

#[test]
fn only_unmanaged_names_may_be_removed() {
    let c = config();
    assert!(may_remove(&c, "old.failover.example.com").is_ok());
    let err = may_remove(&c, "mail.failover.example.com").unwrap_err().0;
    assert!(err.contains("[[namespaces]]"), "{err}");
}
