//! Mass failover through Cloudflare: many names moved by the batched compare-and-set against
//! the strict emulator. Every story counts the requests the emulator saw: a listing (in pages of
//! 5,000), one `dns_records/batch` per 200 names, a listing to verify. A batch refused as a
//! whole (a lowered limit, a 413, one record gone) is split in halves until the bad name stands
//! alone; a 429 is waited out and the names are read again before anything is written again; a
//! record edited by hand is refused as drift; `batch_size = 1` keeps the one-name path.

use std::collections::{BTreeSet, HashMap};

use sitewarden_tests::cloudflare::{Endpoint, OVER_LIMIT_CODE, PER_PAGE_MAX, Record};

use super::*;

fn svc(i: usize) -> String {
    format!("svc{i}.example.com")
}

fn site(i: usize, n: u8) -> String {
    format!("svc{i}-site{n}.example.com")
}

/// Whether the seeded record `i` is proxied (every third is).
fn proxied(i: usize) -> bool {
    i.is_multiple_of(3)
}

/// The comment seeded on record `i`: epoch 1's marker, after an administrator's note on every
/// tenth.
fn seeded_comment(i: usize) -> String {
    if i.is_multiple_of(10) {
        format!("team-payments {}", marker(1, 1))
    } else {
        marker(1, 1)
    }
}

/// A zone `example.com` with `n` names `svc{i} → svc{i}-site1` (TTL 300), each carrying epoch 1's
/// marker, and A records between them that a CNAME listing must not show.
async fn zone_of(n: usize) -> Lab {
    let cf = CloudflareEmulator::start(TOKEN).await.unwrap();
    let zone = cf.add_zone("example.com");
    for i in 0..n {
        if i.is_multiple_of(100) {
            cf.add_record(&zone, "A", &format!("www{i}.example.com"), "192.0.2.10");
        }
        cf.add_cname(
            &zone,
            &svc(i),
            &site(i, 1),
            300,
            proxied(i),
            Some(&seeded_comment(i)),
        );
    }
    Lab { cf, zone }
}

/// Moves names `0..n` from site1 to site2 under epoch 2, generation 2.
fn to_site2(n: usize) -> Vec<Change> {
    (0..n)
        .map(|i| Change {
            name: svc(i),
            target: site(i, 2),
            ttl: None,
            expected: Some(site(i, 1)),
            epoch: 2,
            generation: 2,
            adopt_unmarked: false,
        })
        .collect()
}

fn applied(outcomes: &[Result<ApplyOutcome, ProviderError>]) -> BTreeSet<usize> {
    outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Ok(ApplyOutcome::Applied { .. })))
        .map(|(i, _)| i)
        .collect()
}

/// Every name of `0..n` but those in `skip` points at site2 with epoch 2's marker after
/// whatever comment it had, its TTL and proxied flag untouched.
fn assert_moved(lab: &Lab, n: usize, skip: &[usize]) {
    let records: HashMap<String, Record> = lab
        .cf
        .records(&lab.zone)
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    for i in (0..n).filter(|i| !skip.contains(i)) {
        let r = records
            .get(&svc(i))
            .unwrap_or_else(|| panic!("{} is gone", svc(i)));
        assert_eq!(r.content, site(i, 2), "{}", svc(i));
        let note = seeded_comment(i).replace(&marker(1, 1), "");
        assert_eq!(
            r.comment.as_deref(),
            Some(format!("{note}{}", marker(2, 2)).as_str()),
            "{}: the marker is set, an administrator's note kept",
            svc(i)
        );
        assert_eq!((r.ttl, r.proxied), (300, proxied(i)), "{}", svc(i));
    }
}

/// Requests by endpoint: (listing pages, batches, anything else).
fn counts(cf: &CloudflareEmulator) -> (usize, usize, usize) {
    let lists = cf.count(Endpoint::ListRecords);
    let batches = cf.count(Endpoint::Batch);
    (lists, batches, cf.calls().len() - lists - batches)
}

/// How many batches were answered `status`.
fn batches_answered(cf: &CloudflareEmulator, status: u16) -> usize {
    cf.calls()
        .iter()
        .filter(|c| c.endpoint() == Endpoint::Batch && c.status == status)
        .count()
}

#[tokio::test]
async fn a_thousand_names_move_in_one_listing_five_batches_and_one_listing() {
    let lab = zone_of(1000).await;
    let p = provider(&lab);
    let outcomes = p.apply_many(&to_site2(1000)).await;
    assert_eq!(applied(&outcomes).len(), 1000, "{:?}", outcomes.first());
    assert_eq!(counts(&lab.cf), (2, 5, 0), "list, 5 batches of 200, list");
    assert_eq!(p.stats().calls, 7);
    let calls = lab.cf.calls();
    assert_eq!(
        calls[0].query.as_deref(),
        Some("type=CNAME&per_page=5000&page=1")
    );
    // Each batch carries 200 patches of only the fields that change.
    for batch in lab.cf.writes() {
        assert_eq!(
            batch.path,
            format!("/client/v4/zones/{}/dns_records/batch", lab.zone)
        );
        let Value::Object(body) = &batch.body else {
            panic!("{}", batch.body)
        };
        assert_eq!(body.keys().collect::<Vec<_>>(), ["patches"]);
        let patches = body["patches"].as_array().unwrap();
        assert_eq!(patches.len(), 200);
        for patch in patches {
            let keys: BTreeSet<&str> = patch
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["id", "content", "comment"]),
                "{patch}"
            );
        }
    }
    assert_moved(&lab, 1000, &[]);
    // The A records beside them were neither read as CNAMEs nor touched.
    let a = lab.cf.record("www500.example.com").unwrap();
    assert_eq!((a.kind.as_str(), a.content.as_str()), ("A", "192.0.2.10"));
}

#[tokio::test]
async fn ten_thousand_names_cost_two_pages_fifty_batches_and_two_pages() {
    let lab = zone_of(10_000).await;
    let p = provider(&lab);
    let outcomes = p.apply_many(&to_site2(10_000)).await;
    assert_eq!(applied(&outcomes).len(), 10_000, "{:?}", outcomes.first());
    // 10,000 CNAMEs are two pages of 5,000; each write carries 200.
    assert_eq!(counts(&lab.cf), (4, 50, 0));
    let pages: Vec<Option<String>> = lab
        .cf
        .calls()
        .into_iter()
        .filter(|c| c.endpoint() == Endpoint::ListRecords)
        .map(|c| c.query)
        .collect();
    assert_eq!(pages[1].as_deref(), Some("type=CNAME&per_page=5000&page=2"));
    assert_eq!(p.stats().calls, 54, "instead of 30,000 one name at a time");
    assert_moved(&lab, 10_000, &[]);
}

#[tokio::test]
async fn a_run_the_budget_cannot_finish_is_not_started() {
    let lab = zone_of(10_000).await;
    // Two pages, fifty batches, two pages: 54 requests. One fewer in the bucket, and the run
    // would write every name and then fail to verify them.
    let p = CloudflareProvider::new(CloudflareOptions {
        budget: RateBudget {
            requests: 53,
            per: Duration::from_secs(300),
        },
        ..options(&lab, TOKEN)
    })
    .unwrap();
    let outcomes = p.apply_many(&to_site2(10_000)).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(ProviderError::Budget))),
        "{:?}",
        outcomes.first()
    );
    assert!(lab.cf.calls().is_empty(), "nothing was sent");
    for i in [0, 9_999] {
        assert_eq!(lab.cf.record(&svc(i)).unwrap().content, site(i, 1));
    }
}

#[tokio::test]
async fn a_listing_paged_smaller_than_asked_is_followed_to_its_last_page() {
    let lab = zone_of(1000).await;
    lab.cf.page_at_most(Some(300));
    let p = provider(&lab);
    let mut changes = to_site2(1000);
    changes.push(Change {
        name: "gone.example.com".into(),
        ..changes[0].clone()
    });
    let outcomes = p.apply_many(&changes).await;
    assert_eq!(applied(&outcomes).len(), 1000);
    assert_eq!(outcomes[1000], Ok(ApplyOutcome::Refused(Refusal::Missing)));
    // 1,000 CNAMEs at 300 a page: 4 pages before, 4 after; the name no page showed was read
    // on its own (a record deleted between two pages could have shifted it out of sight).
    assert_eq!(counts(&lab.cf), (4 + 1 + 4, 5, 0));
    let calls = lab.cf.calls();
    assert_eq!(
        calls[3].query.as_deref(),
        Some("type=CNAME&per_page=5000&page=4")
    );
    assert_eq!(
        calls[4].query.as_deref(),
        Some("type=CNAME&name=gone.example.com")
    );
    assert_moved(&lab, 1000, &[]);
}

#[tokio::test]
async fn many_names_are_read_in_one_listing_and_a_few_one_by_one() {
    let lab = zone_of(50).await;
    let p = provider(&lab);
    let mut names: Vec<String> = (0..50).map(svc).collect();
    names.push("missing.example.com".into());
    names.push("WWW0.example.com.".into());
    names.push("SVC7.Example.com.".into());
    let states = p.read_many(&names).await;
    assert_eq!(counts(&lab.cf), (1, 0, 0), "one listing");
    let content = |i: usize| states[i].as_ref().unwrap().content.clone();
    assert_eq!(content(7).as_deref(), Some(site(7, 1).as_str()));
    assert_eq!(content(50), None, "no record");
    assert_eq!(content(51), None, "an A record is no CNAME");
    assert_eq!(
        content(52).as_deref(),
        Some(site(7, 1).as_str()),
        "case and dot ignored"
    );
    let s = states[3].as_ref().unwrap();
    assert_eq!((s.ttl, s.proxied), (Some(300), Some(proxied(3))));
    assert_eq!(
        s.marker,
        Some(Marker {
            epoch: 1,
            generation: 1
        })
    );

    lab.cf.clear_calls();
    let few = p.read_many(&names[..3]).await;
    assert!(few.iter().all(Result::is_ok));
    assert_eq!(
        counts(&lab.cf),
        (3, 0, 0),
        "three one-name reads, no listing"
    );
    assert_eq!(
        lab.cf.calls()[0].query.as_deref(),
        Some("type=CNAME&name=svc0.example.com")
    );
}

#[tokio::test]
async fn a_lowered_batch_limit_is_met_by_halving_and_every_name_is_applied() {
    let lab = zone_of(1000).await;
    // The zone's plan changed under us: 150 records a batch, not 200.
    lab.cf.set_batch_limit(150);
    let p = provider(&lab);
    let outcomes = p.apply_many(&to_site2(1000)).await;
    assert_eq!(applied(&outcomes).len(), 1000);
    // Each 200 is refused whole, then sent as two halves of 100.
    assert_eq!(counts(&lab.cf), (2, 15, 0));
    assert_eq!(batches_answered(&lab.cf, 400), 5);
    assert_eq!(batches_answered(&lab.cf, 200), 10);
    let refused = lab
        .cf
        .calls()
        .into_iter()
        .find(|c| c.status == 400)
        .unwrap();
    assert_eq!(refused.body["patches"].as_array().map(Vec::len), Some(200));
    assert_moved(&lab, 1000, &[]);
    let s = p.stats();
    assert_eq!((s.rejected, s.writes), (5, 15));
}

#[tokio::test]
async fn a_413_is_met_by_halving_and_every_name_is_applied() {
    let lab = zone_of(1000).await;
    // An edge limit between the sizes of 100 patches (~12 kB) and 200 (~24 kB).
    lab.cf.reject_bodies_over(Some(18_000));
    let p = provider(&lab);
    let outcomes = p.apply_many(&to_site2(1000)).await;
    assert_eq!(applied(&outcomes).len(), 1000);
    assert_eq!(batches_answered(&lab.cf, 413), 5);
    assert_eq!(batches_answered(&lab.cf, 200), 10);
    assert_eq!(counts(&lab.cf), (2, 15, 0));
    assert_moved(&lab, 1000, &[]);
}

#[tokio::test]
async fn a_record_deleted_between_listing_and_batch_fails_alone_and_the_rest_move() {
    let lab = zone_of(1000).await;
    // A human deletes svc537 just as the first batch arrives: the third batch carries its id.
    lab.cf
        .inject(Fault::DeleteRecord(svc(537)), Match::Batches, 1);
    let p = provider(&lab);
    let outcomes = p.apply_many(&to_site2(1000)).await;
    let moved = applied(&outcomes);
    assert_eq!(moved.len(), 999);
    assert!(!moved.contains(&537));
    match &outcomes[537] {
        Err(ProviderError::Rejected(why)) => {
            assert!(why.contains("81044"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(lab.cf.record(&svc(537)).is_none());
    // The batch of 400..600 was halved 8 times down to svc537 alone: 8 refused, 7 halves
    // applied, beside the 4 other batches.
    assert_eq!(batches_answered(&lab.cf, 404), 8);
    assert_eq!(batches_answered(&lab.cf, 200), 4 + 7);
    assert_eq!(counts(&lab.cf), (2, 19, 0));
    assert_moved(&lab, 1000, &[537]);
}

#[tokio::test]
async fn a_429_on_a_batch_is_waited_out_then_the_names_are_read_again_and_applied() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let lab = zone_of(1000).await;
    lab.cf
        .inject(Fault::RateLimited { retry_after_s: 1 }, Match::Batches, 1);
    let p = CloudflareProvider::new(CloudflareOptions {
        retry: patient_retry(),
        ..options(&lab, TOKEN)
    })
    .unwrap();
    let outcomes = p.apply_many(&to_site2(1000)).await;
    assert_eq!(applied(&outcomes).len(), 1000);
    // list, batch (429), list again (the 200 names of that batch), 5 batches, list.
    let calls = lab.cf.calls();
    let trail: Vec<(Endpoint, u16)> = calls.iter().map(|c| (c.endpoint(), c.status)).collect();
    assert_eq!(
        trail[..4],
        [
            (Endpoint::ListRecords, 200),
            (Endpoint::Batch, 429),
            (Endpoint::ListRecords, 200),
            (Endpoint::Batch, 200),
        ]
    );
    assert_eq!(counts(&lab.cf), (3, 6, 0));
    assert!(
        calls[2].at - calls[1].at >= Duration::from_secs(1),
        "the retry-after was honoured: {:?}",
        calls[2].at - calls[1].at
    );
    let s = p.stats();
    assert_eq!((s.rate_limited, s.retries, s.calls), (1, 1, 9));
    assert_moved(&lab, 1000, &[]);
}

#[tokio::test]
async fn names_edited_by_hand_are_refused_as_drift_and_the_rest_move() {
    let lab = zone_of(300).await;
    for i in [4, 150, 299] {
        assert!(
            lab.cf
                .set_record_content(&svc(i), "elsewhere.example.com", Some(&marker(1, 1)))
        );
    }
    let p = provider(&lab);
    let outcomes = p.apply_many(&to_site2(300)).await;
    assert_eq!(applied(&outcomes).len(), 297);
    for i in [4, 150, 299] {
        assert!(
            matches!(
                &outcomes[i],
                Ok(ApplyOutcome::Refused(Refusal::Drift { .. }))
            ),
            "{:?}",
            outcomes[i]
        );
        assert_eq!(
            lab.cf.record(&svc(i)).unwrap().content,
            "elsewhere.example.com"
        );
    }
    // 297 writes: a batch of 200 and one of 97; no batch carried a drifted name.
    assert_eq!(counts(&lab.cf), (2, 2, 0));
    let sent: usize = lab
        .cf
        .writes()
        .iter()
        .map(|c| c.body["patches"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(sent, 297);
    assert_moved(&lab, 300, &[4, 150, 299]);
}

#[tokio::test]
async fn with_batch_size_1_many_changes_take_the_one_name_path() {
    let lab = zone_of(10).await;
    let p = CloudflareProvider::new(CloudflareOptions {
        batch_size: 1,
        ..options(&lab, TOKEN)
    })
    .unwrap();
    assert_eq!(p.batch_limit(), 1);
    let outcomes = p.apply_many(&to_site2(10)).await;
    assert_eq!(applied(&outcomes).len(), 10);
    assert_eq!(lab.cf.count(Endpoint::Batch), 0);
    assert_eq!(lab.cf.count(Endpoint::OneRecord), 10, "one PATCH a name");
    assert_eq!(
        lab.cf.count(Endpoint::ListRecords),
        20,
        "a read and a read-back a name"
    );
    assert_moved(&lab, 10, &[]);
}

#[tokio::test]
async fn a_batch_size_out_of_range_is_refused_naming_the_field() {
    let lab = zone_of(0).await;
    for batch_size in [0, 3501] {
        let err = CloudflareProvider::new(CloudflareOptions {
            batch_size,
            ..options(&lab, TOKEN)
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("batch_size") && err.contains("3500"), "{err}");
    }
}

/// The emulator's batch endpoint refuses what Cloudflare documents it refuses, changes nothing
/// when it does, and runs deletes, patches, puts and posts in that order.
#[tokio::test]
async fn the_emulator_runs_a_batch_as_documented_all_or_nothing() {
    let lab = zone_of(3).await;
    let http = reqwest::Client::new();
    let url = format!("{}/zones/{}/dns_records/batch", lab.cf.api_url(), lab.zone);
    let send = |body: Value| {
        let req = http.post(&url).bearer_auth(TOKEN).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }
    };
    let code = |body: &Value| body["errors"][0]["code"].as_u64().unwrap_or(0);
    let id = |i: usize| lab.cf.record(&svc(i)).unwrap().id;
    let before = lab.cf.records(&lab.zone);

    // Unknown keys, at the top or in an item, and an item that is no object.
    for body in [
        json!({"patches": [], "upserts": []}),
        json!({"patches": [{"id": id(0), "content": SITE2, "priority": 1}]}),
        json!({"posts": [{"id": "x", "type": "CNAME", "name": "new.example.com", "content": SITE2}]}),
        json!({"deletes": ["abc"]}),
        json!({"patches": {"id": id(0)}}),
    ] {
        let (s, b) = send(body.clone()).await;
        assert_eq!((s, code(&b)), (400, 9207), "{body}");
    }
    // A bad item anywhere refuses the whole batch: the patch before it is not applied.
    let (s, b) = send(json!({"patches": [
        {"id": id(0), "content": SITE2},
        {"id": id(1), "content": "not a host!"},
    ]}))
    .await;
    assert_eq!((s, code(&b)), (400, 9007));
    let (s, b) = send(json!({"patches": [
        {"id": id(0), "content": SITE2},
        {"id": "0123456789abcdef0123456789abcdef", "content": SITE2},
    ]}))
    .await;
    assert_eq!(
        (s, code(&b), b["success"].clone()),
        (404, 81044, json!(false))
    );
    // Over the limit: refused before anything runs.
    lab.cf.set_batch_limit(2);
    let (s, b) = send(json!({
        "deletes": [{"id": id(2)}],
        "patches": [{"id": id(0), "content": SITE2}, {"id": id(1), "content": SITE2}],
    }))
    .await;
    assert_eq!((s, code(&b)), (400, u64::from(OVER_LIMIT_CODE)), "{b}");
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2")
    );
    assert_eq!(lab.cf.records(&lab.zone), before, "nothing changed");
    lab.cf.set_batch_limit(200);

    // Order: the delete of svc2 runs first, so a post may take its name; the patch of svc0
    // runs before the put that replaces it; the posts come last.
    let (s, b) = send(json!({
        "posts": [{"type": "CNAME", "name": svc(2), "content": SITE1, "ttl": 60}],
        "puts": [{"id": id(0), "type": "CNAME", "name": svc(0), "content": RR}],
        "patches": [{"id": id(0), "content": SITE2, "comment": "patched"}, {"id": id(1), "proxied": true}],
        "deletes": [{"id": id(2), "name": "ignored.example.com"}],
    }))
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["success"], json!(true));
    let result = &b["result"];
    assert_eq!(result["deletes"][0]["name"], json!(svc(2)));
    assert_eq!(result["patches"][0]["content"], json!(SITE2));
    assert_eq!(result["puts"][0]["content"], json!(RR));
    assert_eq!(result["posts"][0]["name"], json!(svc(2)));
    let r0 = lab.cf.record(&svc(0)).unwrap();
    assert_eq!(
        (r0.content.as_str(), r0.comment, r0.ttl, r0.proxied),
        (RR, None, 1, false),
        "the put came after the patch and reset what it omitted"
    );
    let r1 = lab.cf.record(&svc(1)).unwrap();
    assert_eq!((r1.content, r1.proxied, r1.ttl), (site(1, 1), true, 300));
    let r2 = lab.cf.record(&svc(2)).unwrap();
    assert_eq!((r2.content.as_str(), r2.ttl), (SITE1, 60));

    // The same post without the delete: a CNAME stands alone on its name.
    let (s, b) = send(json!({"posts": [{"type": "CNAME", "name": svc(2), "content": RR}]})).await;
    assert_eq!((s, code(&b)), (400, 81053));
    // Without a JSON content type, like every write.
    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body(r#"{"patches":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn the_emulator_pages_listings_within_the_documented_bounds() {
    let lab = zone_of(250).await;
    let http = reqwest::Client::new();
    let list = format!("{}/zones/{}/dns_records", lab.cf.api_url(), lab.zone);
    let get = |query: String| {
        let req = http.get(format!("{list}?{query}")).bearer_auth(TOKEN);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }
    };
    // Default: 100 a page; 250 CNAMEs (and 3 A records, filtered out) are 3 pages.
    let (s, b) = get("type=CNAME".into()).await;
    assert_eq!(s, 200);
    assert_eq!(
        b["result_info"],
        json!({"page": 1, "per_page": 100, "count": 100, "total_count": 250, "total_pages": 3})
    );
    let (_, b) = get("type=CNAME&per_page=100&page=3".into()).await;
    assert_eq!(b["result_info"]["count"], json!(50));
    assert!(
        b["result"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["type"] == json!("CNAME"))
    );
    let (_, b) = get("type=CNAME&per_page=100&page=4".into()).await;
    assert_eq!(b["result"], json!([]));
    let (_, b) = get("per_page=5000".into()).await;
    assert_eq!(
        b["result_info"]["total_count"],
        json!(253),
        "A records too without a type"
    );
    for bad in [
        "per_page=0".to_owned(),
        format!("per_page={}", PER_PAGE_MAX + 1),
        "page=0".into(),
        "page=x".into(),
    ] {
        let (s, b) = get(bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
}
