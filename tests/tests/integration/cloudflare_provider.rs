//! The Cloudflare provider against the strict Cloudflare v4 emulator: reads, verified
//! compare-and-set changes, fencing by epoch and generation, drift, unmarked records, soft
//! failures retried with backoff, lost responses resolved by reading back, auth failures and the
//! client-side budget, and rate-limit blocks honoured to the second of their `retry-after`.
//! Backoff steps are a few milliseconds so retries cost no real waiting; the rate-limit tests
//! wait out blocks of 1–2 s, polling with deadlines. [`batch`] tells the stories of many
//! names at once: listings and `dns_records/batch` writes.

mod batch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sitewarden_controller::provider::cloudflare::{
    CloudflareOptions, CloudflareProvider, DEFAULT_BATCH_SIZE, Zone,
};
use sitewarden_controller::provider::config::ProviderConfig;
use sitewarden_controller::provider::{
    ApplyOutcome, Change, DnsProvider, Marker, ProviderError, RateBudget, Refusal, RetryPolicy,
    SecretString,
};
use sitewarden_tests::cloudflare::{CloudflareEmulator, Fault, Match};
use sitewarden_tests::{DEADLINE, wait_for};
use tokio::time::Instant;

const TOKEN: &str = "cf-test-token-3f9a1c";
const NAME: &str = "mail.example.com";
const RR: &str = "mail-rr.example.com";
const SITE1: &str = "mail-site1.example.com";
const SITE2: &str = "mail-site2.example.com";

struct Lab {
    cf: CloudflareEmulator,
    zone: String,
}

/// A zone `example.com` with `mail → mail-rr` (TTL 300, proxied) carrying `comment`.
async fn lab(comment: Option<&str>) -> Lab {
    let cf = CloudflareEmulator::start(TOKEN).await.unwrap();
    let zone = cf.add_zone("example.com");
    cf.add_cname(&zone, NAME, RR, 300, true, comment);
    Lab { cf, zone }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        deadline: Duration::from_secs(10),
    }
}

/// A policy that may wait out a rate-limit block of a few seconds inside the call.
fn patient_retry() -> RetryPolicy {
    RetryPolicy {
        max_delay: Duration::from_secs(3),
        ..fast_retry()
    }
}

fn options(lab: &Lab, token: &str) -> CloudflareOptions {
    CloudflareOptions {
        api_url: lab.cf.api_url(),
        zone: Zone::Id(lab.zone.clone()),
        token: SecretString::from(token.to_owned()),
        budget: RateBudget::default(),
        retry: fast_retry(),
        request_timeout: Duration::from_secs(5),
        batch_size: DEFAULT_BATCH_SIZE,
    }
}

fn provider(lab: &Lab) -> CloudflareProvider {
    CloudflareProvider::new(options(lab, TOKEN)).unwrap()
}

fn marker(epoch: u64, generation: u64) -> String {
    Marker { epoch, generation }.to_string()
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

fn methods(cf: &CloudflareEmulator) -> Vec<String> {
    cf.calls().into_iter().map(|c| c.method).collect()
}

#[tokio::test]
async fn reads_the_cname_with_its_marker_ttl_and_proxied_flag() {
    let lab = lab(Some(&marker(3, 7))).await;
    let state = provider(&lab).read(NAME).await.unwrap();
    assert_eq!(state.content.as_deref(), Some(RR));
    assert_eq!(state.ttl, Some(300));
    assert_eq!(state.proxied, Some(true));
    assert_eq!(
        state.marker,
        Some(Marker {
            epoch: 3,
            generation: 7
        })
    );
    let calls = lab.cf.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "GET");
    assert_eq!(
        calls[0].path,
        format!("/client/v4/zones/{}/dns_records", lab.zone)
    );
    assert_eq!(
        calls[0].query.as_deref(),
        Some("type=CNAME&name=mail.example.com")
    );

    let none = provider(&lab).read("owa.example.com").await.unwrap();
    assert_eq!(none.content, None);
}

#[tokio::test]
async fn a_change_is_one_patch_of_content_and_comment_in_three_calls_keeping_proxied_and_ttl() {
    let lab = lab(Some(&marker(1, 1))).await;
    let p = provider(&lab);
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

    assert_eq!(
        methods(&lab.cf),
        ["GET", "PATCH", "GET"],
        "at most 3 calls per change"
    );
    let patch = &lab.cf.writes()[0];
    assert_eq!(
        patch.body,
        json!({"content": SITE2, "comment": marker(2, 2)})
    );
    let record = lab.cf.record(NAME).unwrap();
    assert_eq!(record.content, SITE2);
    assert!(record.proxied, "proxied is preserved");
    assert_eq!(
        record.ttl, 300,
        "the TTL is preserved when the namespace sets none"
    );
    assert_eq!(p.stats().calls, 3);
    assert_eq!(p.stats().writes, 1);
}

#[tokio::test]
async fn a_namespace_ttl_is_written_with_the_change() {
    let lab = lab(Some(&marker(1, 1))).await;
    let mut c = change(SITE2, RR, 2, 2);
    c.ttl = Some(60);
    assert!(matches!(
        provider(&lab).apply(&c).await.unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    assert_eq!(lab.cf.writes()[0].body["ttl"], json!(60));
    let record = lab.cf.record(NAME).unwrap();
    assert_eq!((record.ttl, record.proxied), (60, true));
}

#[tokio::test]
async fn the_same_change_again_is_already_in_place_and_writes_nothing() {
    let lab = lab(Some(&marker(1, 1))).await;
    let p = provider(&lab);
    let c = change(SITE2, RR, 2, 2);
    p.apply(&c).await.unwrap();
    lab.cf.clear_calls();
    let again = p.apply(&c).await.unwrap();
    assert!(
        matches!(again, ApplyOutcome::AlreadyInPlace { .. }),
        "{again:?}"
    );
    assert_eq!(methods(&lab.cf), ["GET"]);
}

#[tokio::test]
async fn a_record_showing_a_newer_epoch_fences_the_change_off() {
    let lab = lab(Some(&marker(9, 1))).await;
    let out = provider(&lab)
        .apply(&change(SITE2, RR, 8, 50))
        .await
        .unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::NewerEpoch { found }) if found.epoch == 9),
        "{out:?}"
    );
    assert!(lab.cf.writes().is_empty());
    assert_eq!(lab.cf.record(NAME).unwrap().content, RR);
}

#[tokio::test]
async fn an_older_generation_is_never_applied() {
    let lab = lab(Some(&marker(4, 12))).await;
    let out = provider(&lab)
        .apply(&change(SITE2, RR, 4, 11))
        .await
        .unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::OlderGeneration { .. })),
        "{out:?}"
    );
    assert!(lab.cf.writes().is_empty());
}

#[tokio::test]
async fn a_human_edit_in_the_dashboard_is_drift_and_is_not_overwritten() {
    let lab = lab(Some(&marker(1, 1))).await;
    let p = provider(&lab);
    p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    // An admin points the name at site1 by hand, leaving the comment as it was.
    assert!(lab.cf.set_record_content(NAME, SITE1, Some(&marker(2, 2))));
    let out = p.apply(&change(RR, SITE2, 2, 3)).await.unwrap();
    let ApplyOutcome::Refused(Refusal::Drift { found }) = out else {
        panic!("{out:?}")
    };
    assert_eq!(found.content.as_deref(), Some(SITE1));
    assert_eq!(lab.cf.writes().len(), 1, "only the first change wrote");
    assert_eq!(lab.cf.record(NAME).unwrap().content, SITE1);
}

#[tokio::test]
async fn an_unmarked_record_is_not_ours_unless_the_change_adopts_it() {
    let lab = lab(Some("managed by hand")).await;
    let p = provider(&lab);
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::NotOurs { .. })),
        "{out:?}"
    );
    assert!(lab.cf.writes().is_empty());

    let adopt = Change {
        adopt_unmarked: true,
        ..change(SITE2, RR, 2, 2)
    };
    assert!(matches!(
        p.apply(&adopt).await.unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    let record = lab.cf.record(NAME).unwrap();
    assert_eq!(
        record.comment.as_deref(),
        Some("managed by hand sitewarden epoch=2 gen=2")
    );
}

#[tokio::test]
async fn a_missing_record_is_refused_not_created() {
    let lab = lab(None).await;
    let mut c = change(SITE2, RR, 1, 1);
    c.name = "owa.example.com".into();
    let out = provider(&lab).apply(&c).await.unwrap();
    assert_eq!(out, ApplyOutcome::Refused(Refusal::Missing));
    assert!(lab.cf.writes().is_empty());
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_change_applied_once() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let lab = lab(Some(&marker(1, 1))).await;
    lab.cf
        .inject(Fault::RateLimited { retry_after_s: 1 }, Match::Writes, 1);
    let p = CloudflareProvider::new(CloudflareOptions {
        retry: patient_retry(),
        ..options(&lab, TOKEN)
    })
    .unwrap();
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    let statuses: Vec<u16> = lab.cf.writes().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200], "one refused write, one applied");
    // After the 429 the record is read again before the second write, once the block is over.
    assert_eq!(methods(&lab.cf), ["GET", "PATCH", "GET", "PATCH", "GET"]);
    let calls = lab.cf.calls();
    assert_eq!(calls[1].retry_after_s, Some(1));
    assert!(
        calls[2].at - calls[1].at >= Duration::from_secs(1),
        "the read-back waited for retry-after: {:?}",
        calls[2].at - calls[1].at
    );
    let s = p.stats();
    assert_eq!((s.rate_limited, s.retries), (1, 1));
}

#[tokio::test]
async fn after_a_429_no_request_reaches_the_api_before_retry_after() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    // Given a provider that will not wait inside a call (its longest wait is 40 ms)…
    let lab = lab(Some(&marker(1, 1))).await;
    lab.cf
        .inject(Fault::RateLimited { retry_after_s: 2 }, Match::Reads, 1);
    let p = provider(&lab);
    // …when Cloudflare answers 429 with retry-after: 2…
    let err = p.read(NAME).await.unwrap_err();
    // …then the error carries the 2 s, for the engine to schedule the next attempt…
    assert_eq!(
        err,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    let blocked_at = lab.cf.calls()[0].at;
    // …every call until then fails at once with the time left and reaches nothing…
    let refused = AtomicU32::new(0);
    let state = wait_for("the block to end", DEADLINE, || async {
        match p.read(NAME).await {
            Ok(state) => Some(state),
            Err(ProviderError::RateLimited {
                retry_after: Some(left),
            }) => {
                assert!(left <= Duration::from_secs(2), "{left:?}");
                refused.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => panic!("{e:?}"),
        }
    })
    .await
    .unwrap();
    assert_eq!(state.content.as_deref(), Some(RR));
    let refused = refused.into_inner();
    assert!(refused > 10, "polled during the block: {refused}");
    // …and the API saw exactly two requests: the 429, and one after the block.
    let calls = lab.cf.calls();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200]);
    assert!(
        calls[1].at - blocked_at >= Duration::from_secs(2),
        "{:?}",
        calls[1].at - blocked_at
    );
    let s = p.stats();
    assert_eq!((s.calls, s.rate_limited), (2, 1), "refusals are not calls");
}

#[tokio::test]
async fn a_block_longer_than_the_policy_waits_fails_the_change_at_once() {
    // Its bounds assume a fair share of the machine (sitewarden_tests::machine).
    let _machine = sitewarden_tests::machine::share().await;
    let lab = lab(Some(&marker(1, 1))).await;
    lab.cf
        .inject(Fault::RateLimited { retry_after_s: 120 }, Match::Writes, 1);
    let p = CloudflareProvider::new(CloudflareOptions {
        retry: patient_retry(),
        ..options(&lab, TOKEN)
    })
    .unwrap();
    let started = Instant::now();
    let err = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap_err();
    let ProviderError::RateLimited {
        retry_after: Some(left),
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(
        left > Duration::from_secs(115) && left <= Duration::from_secs(120),
        "{left:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "not waited out");
    // Nothing after the refused write: not even the read-back, which the block holds back too.
    assert_eq!(methods(&lab.cf), ["GET", "PATCH"]);
    assert_eq!(lab.cf.record(NAME).unwrap().content, RR);
    assert!(matches!(
        p.read(NAME).await,
        Err(ProviderError::RateLimited {
            retry_after: Some(_)
        })
    ));
    assert_eq!(lab.cf.calls().len(), 2);
}

/// Like the real API, the emulator refuses every call during a block, counting down.
#[tokio::test]
async fn the_emulator_refuses_every_call_during_a_block_with_the_seconds_left() {
    let lab = lab(Some(&marker(1, 1))).await;
    lab.cf
        .inject(Fault::RateLimited { retry_after_s: 2 }, Match::Writes, 1);
    let http = reqwest::Client::new();
    let list = format!("{}/zones/{}/dns_records", lab.cf.api_url(), lab.zone);
    let id = lab.cf.record(NAME).unwrap().id;
    let r = http
        .patch(format!("{list}/{id}"))
        .bearer_auth(TOKEN)
        .json(&json!({"content": SITE1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], json!(971));
    assert_eq!(body["success"], json!(false));
    // A read, which the injected fault does not match, is refused too while the block lasts.
    let r = http.get(&list).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let left: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&left), "{left}");
    wait_for("the block to end", DEADLINE, || async {
        let r = http.get(&list).bearer_auth(TOKEN).send().await.unwrap();
        (r.status().as_u16() == 200).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(lab.cf.record(NAME).unwrap().content, RR, "nothing applied");
}

#[tokio::test]
async fn a_500_is_retried_and_the_change_applied_once() {
    let lab = lab(Some(&marker(1, 1))).await;
    lab.cf.inject(Fault::ServerError, Match::Reads, 1);
    lab.cf.inject(Fault::ServerError, Match::Writes, 2);
    let p = provider(&lab);
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    let applied = lab.cf.writes().iter().filter(|c| c.status == 200).count();
    assert_eq!(applied, 1);
    assert_eq!(lab.cf.record(NAME).unwrap().content, SITE2);
    assert_eq!(p.stats().transient_errors, 3);
}

#[tokio::test]
async fn a_lost_response_is_resolved_by_reading_back_with_exactly_one_write() {
    let lab = lab(Some(&marker(1, 1))).await;
    lab.cf.inject(Fault::LoseResponse, Match::Writes, 1);
    let p = provider(&lab);
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    let ApplyOutcome::Applied { before, after } = out else {
        panic!("{out:?}")
    };
    assert_eq!(before.content.as_deref(), Some(RR));
    assert_eq!(after.content.as_deref(), Some(SITE2));
    let writes = lab.cf.writes();
    assert_eq!(writes.len(), 1, "never a blind second write");
    assert!(!writes[0].answered);
    assert_eq!(methods(&lab.cf), ["GET", "PATCH", "GET"]);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let lab = lab(Some(&marker(1, 1))).await;
    lab.cf
        .inject(Fault::Slow(Duration::from_secs(5)), Match::Reads, 1);
    let p = CloudflareProvider::new(CloudflareOptions {
        request_timeout: Duration::from_millis(300),
        ..options(&lab, TOKEN)
    })
    .unwrap();
    let state = p.read(NAME).await.unwrap();
    assert_eq!(state.content.as_deref(), Some(RR));
    assert_eq!(p.stats().transient_errors, 1);
}

#[tokio::test]
async fn a_wrong_token_is_an_auth_error_not_retried_and_never_shown() {
    let lab = lab(Some(&marker(1, 1))).await;
    let wrong = "wrong-token-7d1e55";
    let p = CloudflareProvider::new(options(&lab, wrong)).unwrap();
    let err = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("9109"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(TOKEN), "{shown}");
    assert_eq!(lab.cf.calls().len(), 1, "no retry");
    assert_eq!(lab.cf.calls()[0].status, 403);
    assert_eq!(p.stats().auth_errors, 1);
}

#[tokio::test]
async fn an_exhausted_budget_fails_without_calling_the_api() {
    let lab = lab(Some(&marker(1, 1))).await;
    let p = CloudflareProvider::new(CloudflareOptions {
        budget: RateBudget {
            requests: 4,
            per: Duration::from_secs(300),
        },
        ..options(&lab, TOKEN)
    })
    .unwrap();
    p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert_eq!(lab.cf.calls().len(), 3);
    let err = p.apply(&change(RR, SITE2, 2, 3)).await.unwrap_err();
    assert_eq!(err, ProviderError::Budget);
    assert_eq!(lab.cf.calls().len(), 3, "no call was made");
    assert_eq!(p.stats().budget_left, 1);
    assert_eq!(p.read(NAME).await.unwrap().content.as_deref(), Some(SITE2));
    assert_eq!(p.read(NAME).await.unwrap_err(), ProviderError::Budget);
    assert_eq!(lab.cf.calls().len(), 4);
}

#[tokio::test]
async fn a_zone_given_by_name_is_looked_up_once() {
    let lab = lab(Some(&marker(1, 1))).await;
    let p = CloudflareProvider::new(CloudflareOptions {
        zone: Zone::Name("example.com".into()),
        ..options(&lab, TOKEN)
    })
    .unwrap();
    p.read(NAME).await.unwrap();
    p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    let calls = lab.cf.calls();
    assert_eq!(calls[0].path, "/client/v4/zones");
    assert_eq!(calls[0].query.as_deref(), Some("name=example.com"));
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.path == "/client/v4/zones")
            .count(),
        1
    );
    assert_eq!(calls.len(), 5);
}

#[tokio::test]
async fn the_configured_provider_reads_its_token_from_a_file() {
    let lab = lab(Some(&marker(1, 1))).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("cloudflare.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cfg = ProviderConfig::cloudflare_with_token_file(
        &lab.cf.api_url(),
        Zone::Id(lab.zone.clone()),
        token_file,
    );
    let p: Arc<dyn DnsProvider> = cfg.build().unwrap();
    assert_eq!(p.kind(), "cloudflare");
    assert_eq!(p.read(NAME).await.unwrap().content.as_deref(), Some(RR));
}

/// A token rotated at its source (the file) is picked up on the first refusal, without a
/// restart: one refused call, then the same call with the new token.
#[tokio::test]
async fn a_rotated_token_is_read_again_when_the_api_refuses_the_old_one() {
    let lab = lab(Some(&marker(1, 1))).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("cloudflare.token");
    std::fs::write(&token_file, "cf-old-token-revoked\n").unwrap();
    let cfg = ProviderConfig::cloudflare_with_token_file(
        &lab.cf.api_url(),
        Zone::Id(lab.zone.clone()),
        token_file.clone(),
    );
    let p: Arc<dyn DnsProvider> = cfg.build().unwrap();
    // The old token is what the provider holds; the administrator rotates the file.
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    assert_eq!(p.read(NAME).await.unwrap().content.as_deref(), Some(RR));
    let statuses: Vec<u16> = lab.cf.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert!(statuses[0] == 401 || statuses[0] == 403, "{statuses:?}");
    assert_eq!(statuses[1], 200);
    // A token that is wrong at its source too stays an auth error after one more read.
    std::fs::write(&token_file, "cf-still-wrong\n").unwrap();
    let lab2 = lab_with_token_file_provider(&lab, &token_file);
    let err = lab2.read(NAME).await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth(_)), "{err:?}");
}

fn lab_with_token_file_provider(lab: &Lab, token_file: &std::path::Path) -> Arc<dyn DnsProvider> {
    ProviderConfig::cloudflare_with_token_file(
        &lab.cf.api_url(),
        Zone::Id(lab.zone.clone()),
        token_file.to_owned(),
    )
    .build()
    .unwrap()
}

/// The emulator itself refuses what the real API refuses, in the documented envelope.
#[tokio::test]
async fn the_emulator_is_strict_about_auth_headers_and_bodies() {
    let lab = lab(Some(&marker(1, 1))).await;
    let id = lab.cf.record(NAME).unwrap().id;
    let url = format!("{}/zones/{}/dns_records/{id}", lab.cf.api_url(), lab.zone);
    let http = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (status, body)
    };
    let code = |body: &Value| body["errors"][0]["code"].as_u64().unwrap_or(0);

    let (s, b) = send(http.get(&url)).await;
    assert_eq!(
        (s, code(&b), b["success"].clone()),
        (401, 10000, json!(false))
    );
    let (s, b) = send(http.get(&url).bearer_auth("nope")).await;
    assert_eq!((s, code(&b)), (403, 9109));
    let (s, b) = send(
        http.patch(&url)
            .bearer_auth(TOKEN)
            .body(r#"{"content":"x.example.com"}"#),
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (400, 6003),
        "a write needs a JSON content type"
    );
    for (body, want) in [
        (json!({"content": "x.example.com", "priority": 1}), 9207),
        (json!({"ttl": 30}), 9021),
        (json!({"comment": "c".repeat(101)}), 9100),
        (json!({"content": "not a host!"}), 9007),
    ] {
        let (s, b) = send(http.patch(&url).bearer_auth(TOKEN).json(&body)).await;
        assert_eq!((s, code(&b)), (400, want), "{body}");
    }
    // PUT replaces the whole record: what it omits is reset.
    let (s, b) = send(
        http.put(&url)
            .bearer_auth(TOKEN)
            .json(&json!({"type": "CNAME", "name": NAME, "content": SITE1})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let r = lab.cf.record(NAME).unwrap();
    assert_eq!(
        (r.content.as_str(), r.proxied, r.ttl, r.comment),
        (SITE1, false, 1, None)
    );
    // POST creates; GET lists with the documented envelope.
    let list_url = format!("{}/zones/{}/dns_records", lab.cf.api_url(), lab.zone);
    let (s, _) = send(http.post(&list_url).bearer_auth(TOKEN).json(
        &json!({"type": "CNAME", "name": "owa.example.com", "content": RR, "ttl": 60, "proxied": false}),
    ))
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(
        http.get(format!("{list_url}?type=CNAME"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["result"].as_array().map(Vec::len), Some(2));
    assert_eq!(b["result_info"]["total_count"], json!(2));
    let (s, b) = send(http.get(format!("{list_url}?bogus=1")).bearer_auth(TOKEN)).await;
    assert_eq!((s, code(&b)), (400, 1000));
}
