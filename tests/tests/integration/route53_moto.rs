//! The Route 53 provider (`[provider] kind = "route53"`) against a real moto server, behind the
//! harness front that adds the Route 53 rules moto lacks (DELETE must match the current values;
//! a fresh change is PENDING until GetChange says INSYNC).
//!
//! Stories: a change is one batch (DELETE the CNAME as read, CREATE the new one, replace the
//! `_sitewarden` TXT marker) in three signed calls — read, change, GetChange — paced at least
//! 250 ms apart; the same change again costs one read and writes nothing; an administrator's
//! change before our read is drift; one landing between our read and our batch makes Route 53
//! refuse the batch — drift, nothing overwritten; a newer leader's marker fences us off; a
//! throttled batch is retried after a read; records without a marker are not ours unless
//! adopted; a lapsed lease writes nothing; the provider builds from a `[provider]` table.
//!
//! Batches (`apply_many`): 300 names move in two change batches between two listings of the zone,
//! markers stamped and read back; a record an administrator changes between our listing and our
//! batch makes Route 53 refuse it, the halves isolate that name — drift, kept — and every other
//! name moves; values too long for one request are split before Route 53 sees them; a throttled
//! batch is read again and sent again; `batch_size = 1` moves names one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sitewarden_controller::provider::config::RawProvider;
use sitewarden_controller::provider::route53::credentials::{AwsCredentials, LiveCredentials};
use sitewarden_controller::provider::route53::{MIN_INTERVAL, Route53Options, Route53Provider};
use sitewarden_controller::provider::{
    ApplyOutcome, Change, DnsProvider, FENCE, Fence, Marker, ProviderError, RateBudget, Refusal,
    RetryPolicy, SecretString,
};
use sitewarden_shared::config::{KeyPath, Source};
use sitewarden_tests::moto::Moto;

const NAME: &str = "mail.example.com";
const MARKER_NAME: &str = "_sitewarden.mail.example.com";
const RR: &str = "mail-rr.example.com";
const SITE1: &str = "mail-site1.example.com";
const SITE2: &str = "mail-site2.example.com";

struct Lab {
    moto: Moto,
    zone: String,
}

/// `example.com` with `mail → mail-rr` (TTL 300), the site names (which sort between `mail` and
/// `_sitewarden.mail` in Route 53's order) and, when given, a marker.
async fn lab(marker: Option<(u64, u64)>) -> Lab {
    let moto = Moto::start().await.expect("moto starts");
    let zone = moto.create_zone("example.com").await.unwrap();
    let text = marker.map(|(epoch, generation)| format!("\"{}\"", Marker { epoch, generation }));
    let mut changes = vec![
        ("CREATE", NAME, "CNAME", 300, RR),
        ("CREATE", RR, "A", 300, "192.0.2.1"),
        ("CREATE", SITE1, "A", 300, "192.0.2.1"),
        ("CREATE", SITE2, "A", 300, "198.51.100.1"),
    ];
    if let Some(t) = &text {
        changes.push(("CREATE", MARKER_NAME, "TXT", 300, t));
    }
    moto.change(&zone, &changes).await.unwrap();
    Lab { moto, zone }
}

fn credentials() -> LiveCredentials {
    LiveCredentials::fixed(AwsCredentials::new(
        SecretString::from("AKIASITEWARDENTEST".to_owned()),
        SecretString::from("s3cr3t-access-key-for-tests".to_owned()),
    ))
}

fn provider(lab: &Lab) -> Route53Provider {
    Route53Provider::new(Route53Options {
        endpoint_url: lab.moto.endpoint_url(),
        region: "us-east-1".into(),
        hosted_zone_id: lab.zone.clone(),
        credentials: credentials(),
        budget: RateBudget {
            requests: 120,
            per: Duration::from_secs(60),
        },
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
            deadline: Duration::from_secs(10),
        },
        request_timeout: Duration::from_secs(10),
        min_interval: MIN_INTERVAL,
        insync_timeout: Duration::from_secs(10),
        insync_poll: Duration::from_millis(20),
        batch_size: 100,
    })
    .expect("provider")
}

fn change(target: &str, expected: &str, epoch: u64, generation: u64) -> Change {
    Change {
        name: NAME.into(),
        target: target.into(),
        ttl: None,
        expected: Some(expected.into()),
        epoch,
        generation,
        adopt_unmarked: false,
    }
}

fn quoted(epoch: u64, generation: u64) -> Vec<String> {
    vec![format!("\"{}\"", Marker { epoch, generation })]
}

async fn cname(lab: &Lab) -> Option<String> {
    lab.moto
        .record(&lab.zone, NAME, "CNAME")
        .await
        .unwrap()
        .and_then(|(_, v)| v.into_iter().next())
        .map(|v| v.trim_end_matches('.').to_owned())
}

#[tokio::test]
async fn reads_the_cname_and_its_marker_in_one_signed_call() {
    let lab = lab(Some((3, 7))).await;
    let state = provider(&lab).read(NAME).await.unwrap();
    assert_eq!(state.content.as_deref(), Some(RR));
    assert_eq!(state.ttl, Some(300));
    assert_eq!(
        state.marker,
        Some(Marker {
            epoch: 3,
            generation: 7
        })
    );
    let calls = lab.moto.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].method, "GET");
    assert!(calls[0].signed, "SigV4: {calls:?}");
    assert_eq!(
        calls[0].path,
        format!("/2013-04-01/hostedzone/{}/rrset", lab.zone)
    );
    let none = provider(&lab).read("owa.example.com").await.unwrap();
    assert_eq!(none.content, None);
}

#[tokio::test]
async fn a_change_is_one_batch_in_three_paced_signed_calls() {
    let lab = lab(Some((1, 1))).await;
    let p = provider(&lab);
    let started = tokio::time::Instant::now();
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    let ApplyOutcome::Applied { before, after } = out else {
        panic!("{out:?}")
    };
    assert_eq!(before.content.as_deref(), Some(RR));
    assert_eq!(after.content.as_deref(), Some(SITE2));
    assert_eq!(
        after.marker,
        Some(Marker {
            epoch: 2,
            generation: 2
        })
    );

    let calls = lab.moto.calls();
    let shape: Vec<(&str, bool)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.contains("/change/")))
        .collect();
    assert_eq!(
        shape,
        [("GET", false), ("POST", false), ("GET", true)],
        "read, change, GetChange: {calls:?}"
    );
    assert!(
        calls.iter().all(|c| c.signed && c.status == 200),
        "{calls:?}"
    );
    assert!(
        started.elapsed() >= MIN_INTERVAL * 2,
        "calls are paced: {:?}",
        started.elapsed()
    );
    let s = p.stats();
    assert_eq!((s.calls, s.writes), (3, 1), "{s:?}");

    assert_eq!(cname(&lab).await.as_deref(), Some(SITE2));
    let marker = lab
        .moto
        .record(&lab.zone, MARKER_NAME, "TXT")
        .await
        .unwrap();
    assert_eq!(
        marker,
        Some((300, quoted(2, 2))),
        "TTL kept, marker replaced"
    );
}

#[tokio::test]
async fn the_same_change_again_is_already_in_place_and_costs_one_read() {
    let lab = lab(Some((1, 1))).await;
    let p = provider(&lab);
    let mut c = change(SITE2, RR, 2, 2);
    c.ttl = Some(60);
    assert!(matches!(
        p.apply(&c).await.unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    lab.moto.clear_calls();
    let again = p.apply(&c).await.unwrap();
    assert!(
        matches!(&again, ApplyOutcome::AlreadyInPlace { state } if state.ttl == Some(60)),
        "{again:?}"
    );
    assert_eq!(lab.moto.calls().len(), 1);
    assert_eq!(p.stats().writes, 1);
}

#[tokio::test]
async fn an_administrators_change_before_our_read_is_drift() {
    let lab = lab(Some((1, 1))).await;
    lab.moto
        .change(
            &lab.zone,
            &[
                ("DELETE", NAME, "CNAME", 300, RR),
                ("CREATE", NAME, "CNAME", 300, SITE1),
            ],
        )
        .await
        .unwrap();
    let out = provider(&lab)
        .apply(&change(SITE2, RR, 2, 2))
        .await
        .unwrap();
    assert!(
        matches!(&out, ApplyOutcome::Refused(Refusal::Drift { found }) if found.points_at(SITE1)),
        "{out:?}"
    );
    assert_eq!(cname(&lab).await.as_deref(), Some(SITE1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_landing_between_our_read_and_our_batch_makes_route53_refuse_it() {
    let lab = Arc::new(lab(Some((1, 1))).await);
    let p = provider(&lab);
    let admin = lab.clone();
    let once = Arc::new(AtomicBool::new(false));
    let fence = Fence::new(move || {
        if !once.swap(true, Ordering::SeqCst) {
            let admin = admin.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    admin
                        .moto
                        .change(&admin.zone, &[("UPSERT", NAME, "CNAME", 300, SITE1)])
                        .await
                        .unwrap();
                })
            });
        }
        true
    });
    let out = FENCE
        .scope(fence, p.apply(&change(SITE2, RR, 2, 2)))
        .await
        .unwrap();
    assert!(
        matches!(&out, ApplyOutcome::Refused(Refusal::Drift { found }) if found.points_at(SITE1)),
        "{out:?}"
    );
    assert_eq!(p.stats().writes, 1, "one batch, refused");
    let refused: Vec<_> = lab
        .moto
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST")
        .map(|c| c.status)
        .collect();
    assert_eq!(refused, [400]);
    assert_eq!(
        cname(&lab).await.as_deref(),
        Some(SITE1),
        "the admin's change stands"
    );
}

#[tokio::test]
async fn a_newer_leaders_marker_fences_us_off() {
    let lab = lab(Some((9, 1))).await;
    let out = provider(&lab)
        .apply(&change(SITE2, RR, 2, 2))
        .await
        .unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::NewerEpoch { found }) if found.epoch == 9),
        "{out:?}"
    );
    assert_eq!(cname(&lab).await.as_deref(), Some(RR));
}

#[tokio::test]
async fn a_throttled_batch_is_retried_after_a_read() {
    let lab = lab(Some((1, 1))).await;
    lab.moto.throttle_next(1);
    let p = provider(&lab);
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    let s = p.stats();
    assert_eq!((s.writes, s.rate_limited, s.retries), (2, 1, 1), "{s:?}");
    let methods: Vec<String> = lab.moto.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(methods, ["GET", "POST", "GET", "POST", "GET"]);
    assert_eq!(cname(&lab).await.as_deref(), Some(SITE2));
}

#[tokio::test]
async fn an_unmarked_record_is_not_ours_unless_adopted() {
    let lab = lab(None).await;
    let p = provider(&lab);
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::NotOurs { .. })),
        "{out:?}"
    );
    let adopt = Change {
        adopt_unmarked: true,
        ..change(SITE2, RR, 2, 2)
    };
    let out = p.apply(&adopt).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    assert_eq!(cname(&lab).await.as_deref(), Some(SITE2));
    assert_eq!(
        lab.moto
            .record(&lab.zone, MARKER_NAME, "TXT")
            .await
            .unwrap(),
        Some((300, quoted(2, 2)))
    );
    let missing = Change {
        name: "owa.example.com".into(),
        ..change(SITE2, RR, 2, 2)
    };
    assert_eq!(
        p.apply(&missing).await.unwrap(),
        ApplyOutcome::Refused(Refusal::Missing)
    );
}

#[tokio::test]
async fn a_lapsed_lease_writes_nothing() {
    let lab = lab(Some((1, 1))).await;
    let p = provider(&lab);
    let out = FENCE
        .scope(Fence::new(|| false), p.apply(&change(SITE2, RR, 2, 2)))
        .await
        .unwrap();
    assert_eq!(out, ApplyOutcome::Refused(Refusal::LeaseLost));
    assert_eq!(p.stats().writes, 0);
    assert_eq!(cname(&lab).await.as_deref(), Some(RR));
}

#[tokio::test]
async fn a_wrong_hosted_zone_is_a_clear_error() {
    let lab = lab(Some((1, 1))).await;
    let p = Route53Provider::new(Route53Options {
        hosted_zone_id: "ZNOSUCHZONE".into(),
        ..options_for(&lab)
    })
    .unwrap();
    let err = p.read(NAME).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("hosted_zone_id"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

fn options_for(lab: &Lab) -> Route53Options {
    Route53Options {
        endpoint_url: lab.moto.endpoint_url(),
        region: "us-east-1".into(),
        hosted_zone_id: lab.zone.clone(),
        credentials: credentials(),
        budget: RateBudget {
            requests: 120,
            per: Duration::from_secs(60),
        },
        retry: RetryPolicy::default(),
        request_timeout: Duration::from_secs(10),
        min_interval: Duration::from_millis(10),
        insync_timeout: Duration::from_secs(10),
        insync_poll: Duration::from_millis(20),
        batch_size: 100,
    }
}

#[tokio::test]
async fn the_provider_builds_from_its_provider_table() {
    let lab = lab(Some((1, 1))).await;
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("key-id");
    let secret = dir.path().join("secret");
    std::fs::write(&id, "AKIASITEWARDENTEST\n").unwrap();
    std::fs::write(&secret, "s3cr3t-access-key-for-tests\n").unwrap();
    let text = format!(
        "[provider]\nkind = \"route53\"\nhosted_zone_id = \"/hostedzone/{}\"\n\
         endpoint_url = \"{}\"\naws_access_key_id = {{ file = \"{}\" }}\n\
         aws_secret_access_key = {{ file = \"{}\" }}\ninsync_timeout = \"30s\"\n",
        lab.zone,
        lab.moto.endpoint_url(),
        id.display(),
        secret.display()
    );
    #[derive(serde::Deserialize)]
    struct Doc {
        provider: RawProvider,
    }
    let src = Source::inline("controller.toml", text);
    let doc: Doc = src.parse().unwrap();
    let config = doc
        .provider
        .validate(&src, &KeyPath::root().key("provider"))
        .unwrap();
    assert_eq!(config.kind.name(), "route53");
    let p = config.build().unwrap();
    assert_eq!(p.kind(), "route53");
    // The default GetChange poll is 2 s: the change is PENDING at first, as on Route 53.
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    assert_eq!(cname(&lab).await.as_deref(), Some(SITE2));
}

/// `n` names `svc{i}.example.com → site1.example.com` (TTL 300), each with the marker of epoch 1.
async fn many(n: usize) -> Lab {
    let moto = Moto::start().await.expect("moto starts");
    let zone = moto.create_zone("example.com").await.unwrap();
    let marker = format!(
        "\"{}\"",
        Marker {
            epoch: 1,
            generation: 1
        }
    );
    let names: Vec<(String, String)> = (0..n)
        .map(|i| (svc(i), format!("_sitewarden.{}", svc(i))))
        .collect();
    let mut changes = Vec::new();
    for (name, marker_name) in &names {
        changes.push(("CREATE", name.as_str(), "CNAME", 300, "site1.example.com"));
        changes.push(("CREATE", marker_name.as_str(), "TXT", 300, marker.as_str()));
    }
    moto.change(&zone, &changes).await.unwrap();
    Lab { moto, zone }
}

fn svc(i: usize) -> String {
    format!("svc{i}.example.com")
}

fn batched(lab: &Lab, batch_size: usize) -> Route53Provider {
    Route53Provider::new(Route53Options {
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
            deadline: Duration::from_secs(10),
        },
        batch_size,
        ..options_for(lab)
    })
    .expect("provider")
}

fn all_to(n: usize, target: &str) -> Vec<Change> {
    (0..n)
        .map(|i| Change {
            name: svc(i),
            target: target.into(),
            ttl: None,
            expected: Some("site1.example.com".into()),
            epoch: 2,
            generation: 2,
            adopt_unmarked: false,
        })
        .collect()
}

fn applied(outcomes: &[Result<ApplyOutcome, ProviderError>]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ApplyOutcome::Applied { .. })))
        .count()
}

/// The change batches the front saw: (HTTP status, ResourceRecord changes) in order.
fn change_batches(lab: &Lab) -> Vec<u16> {
    lab.moto
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/rrset"))
        .map(|c| c.status)
        .collect()
}

/// Checks every name of `0..n` except `skip` points at `target` under the marker of epoch 2.
async fn all_moved(lab: &Lab, n: usize, target: &str, skip: &[usize]) {
    let sets = lab.moto.record_sets(&lab.zone).await.unwrap();
    let marker = vec![format!(
        "\"{}\"",
        Marker {
            epoch: 2,
            generation: 2
        }
    )];
    for i in (0..n).filter(|i| !skip.contains(i)) {
        let cname = &sets[&(svc(i), "CNAME".to_owned())];
        assert_eq!(cname.1, [target], "{}", svc(i));
        assert_eq!(cname.0, 300, "the TTL is kept");
        let txt = &sets[&(format!("_sitewarden.{}", svc(i)), "TXT".to_owned())];
        assert_eq!(txt.1, marker, "{}", svc(i));
    }
}

#[tokio::test]
async fn three_hundred_names_move_in_two_change_batches_between_two_listings() {
    let lab = many(300).await;
    let p = batched(&lab, 150);
    assert_eq!(p.batch_limit(), 150);
    let outcomes = p.apply_many(&all_to(300, "site2.example.com")).await;
    assert_eq!(
        applied(&outcomes),
        300,
        "{:?}",
        outcomes
            .iter()
            .find(|o| !matches!(o, Ok(ApplyOutcome::Applied { .. })))
    );
    if let Ok(ApplyOutcome::Applied { before, after }) = &outcomes[299] {
        assert!(before.points_at("site1.example.com"));
        assert!(after.points_at("site2.example.com"));
        assert_eq!(
            after.marker,
            Some(Marker {
                epoch: 2,
                generation: 2
            })
        );
    }

    // 602 record sets (300 CNAMEs, 300 markers, SOA, NS): 3 pages of 300 a listing.
    let calls = lab.moto.calls();
    let pages = |from: usize, to: usize| {
        calls[from..to]
            .iter()
            .filter(|c| c.method == "GET" && c.path.ends_with("/rrset"))
            .count()
    };
    assert_eq!(change_batches(&lab), [200, 200], "two change batches");
    let first_post = calls.iter().position(|c| c.method == "POST").unwrap();
    assert_eq!(pages(0, first_post), 3, "one listing before: {calls:?}");
    let get_changes = calls.iter().filter(|c| c.path.contains("/change/")).count();
    assert_eq!(get_changes, 2, "each batch followed to INSYNC");
    assert_eq!(
        calls.len(),
        3 + 2 + 2 + 3,
        "listing, 2 × (batch, GetChange), listing"
    );
    assert!(
        calls.iter().all(|c| c.signed && c.status == 200),
        "{calls:?}"
    );
    let s = p.stats();
    assert_eq!((s.calls, s.writes), (10, 2), "{s:?}");
    all_moved(&lab, 300, "site2.example.com", &[]).await;

    // The same changes again: one listing, nothing written.
    lab.moto.clear_calls();
    let again = p.apply_many(&all_to(300, "site2.example.com")).await;
    assert!(
        again
            .iter()
            .all(|o| matches!(o, Ok(ApplyOutcome::AlreadyInPlace { .. }))),
        "{:?}",
        again.first()
    );
    assert_eq!(change_batches(&lab), Vec::<u16>::new());
    assert_eq!(lab.moto.calls().len(), 3, "one listing");
    let read = p.read_many(&[svc(7), svc(8)]).await;
    assert!(
        read.iter()
            .all(|r| r.as_ref().is_ok_and(|s| s.points_at("site2.example.com")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_after_our_listing_is_isolated_by_halves_and_every_other_name_moves() {
    let lab = Arc::new(many(64).await);
    let p = batched(&lab, 64);
    let admin = lab.clone();
    let once = Arc::new(AtomicBool::new(false));
    // Right before the first batch goes out, an administrator points svc37 elsewhere.
    let fence = Fence::new(move || {
        if !once.swap(true, Ordering::SeqCst) {
            let admin = admin.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    admin
                        .moto
                        .change(
                            &admin.zone,
                            &[(
                                "UPSERT",
                                "svc37.example.com",
                                "CNAME",
                                300,
                                "elsewhere.example.com",
                            )],
                        )
                        .await
                        .unwrap();
                })
            });
        }
        true
    });
    let outcomes = FENCE
        .scope(fence, p.apply_many(&all_to(64, "site2.example.com")))
        .await;
    assert_eq!(applied(&outcomes), 63);
    assert!(
        matches!(&outcomes[37], Ok(ApplyOutcome::Refused(Refusal::Drift { found }))
            if found.points_at("elsewhere.example.com")),
        "{:?}",
        outcomes[37]
    );
    // 64 → 32 → 16 → 8 → 4 → 2 → 1: one refused batch per level, the good half of each written.
    let batches = change_batches(&lab);
    assert_eq!(
        batches.iter().filter(|s| **s == 400).count(),
        7,
        "{batches:?}"
    );
    assert_eq!(
        batches.iter().filter(|s| **s == 200).count(),
        6,
        "{batches:?}"
    );
    assert_eq!(p.stats().writes, 13);
    all_moved(&lab, 64, "site2.example.com", &[37]).await;
    let sets = lab.moto.record_sets(&lab.zone).await.unwrap();
    assert_eq!(
        sets[&(svc(37), "CNAME".to_owned())].1,
        ["elsewhere.example.com"],
        "the administrator's change stands"
    );
}

#[tokio::test]
async fn values_too_long_for_one_request_are_split_before_route53_sees_them() {
    let lab = many(150).await;
    let p = batched(&lab, 150);
    // 150 names × (the old and the new target, 17 and 194 characters, and two markers of 26):
    // 39,450 characters, over the 32,000 of one request; each half holds 19,725.
    let long = format!(
        "{}.{}.{}.example.com",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60)
    );
    let outcomes = p.apply_many(&all_to(150, &long)).await;
    assert_eq!(applied(&outcomes), 150);
    assert_eq!(
        change_batches(&lab),
        [200, 200],
        "halves, never a refused request"
    );
    all_moved(&lab, 150, &long, &[]).await;
}

#[tokio::test]
async fn a_throttled_batch_is_read_again_and_sent_again() {
    let lab = many(20).await;
    let p = batched(&lab, 100);
    lab.moto.throttle_next(1);
    let outcomes = p.apply_many(&all_to(20, "site2.example.com")).await;
    assert_eq!(applied(&outcomes), 20);
    assert_eq!(change_batches(&lab), [400, 200]);
    let s = p.stats();
    assert_eq!((s.writes, s.rate_limited), (2, 1), "{s:?}");
    all_moved(&lab, 20, "site2.example.com", &[]).await;
}

#[tokio::test]
async fn with_a_batch_size_of_one_names_move_one_at_a_time() {
    let lab = many(3).await;
    let p = batched(&lab, 1);
    assert_eq!(p.batch_limit(), 1);
    let outcomes = p.apply_many(&all_to(3, "site2.example.com")).await;
    assert_eq!(applied(&outcomes), 3);
    assert_eq!(change_batches(&lab), [200, 200, 200]);
    all_moved(&lab, 3, "site2.example.com", &[]).await;
}
