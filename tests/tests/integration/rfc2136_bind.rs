//! The RFC 2136 provider (`[provider] kind = "rfc2136"`) against a real BIND primary: TSIG-signed
//! dynamic UPDATEs with prerequisites as a compare-and-set, checked with `dig`; administrators'
//! changes made with `nsupdate`, as they would be.
//!
//! Stories: a change moves the CNAME and stamps the epoch in the `_sitewarden` TXT marker in one
//! UPDATE (three exchanges: read, UPDATE, read back); the same change again writes nothing; a
//! wrong secret or an unknown key is an Auth error naming the key, never the secret, and changes
//! nothing; an administrator's change made before our read is drift, and one made between our
//! read and our UPDATE makes the prerequisite fail — drift, nothing overwritten; a newer leader's
//! marker fences us off, even when it lands between our read and our UPDATE; records without a
//! marker are not ours unless adopted; a lapsed lease writes nothing; a dead server is a soft
//! error after retries; and the provider builds from a `[provider]` table.
//!
//! Batches (`apply_many`): 500 names move in four UPDATEs between two pipelined reads; a name an
//! administrator changes between our read and our UPDATE fails its prerequisite, which refuses
//! the whole message, and the halves isolate it — drift, kept — while every other name moves; a
//! wrong TSIG secret refuses the first UPDATE and nothing changes; a name outside the zone ends
//! with its error while the rest move; `batch_size = 1` moves names one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sitewarden_controller::provider::config::RawProvider;
use sitewarden_controller::provider::rfc2136::{
    Rfc2136Options, Rfc2136Provider, TsigAlgorithm, TsigKey,
};
use sitewarden_controller::provider::{
    ApplyOutcome, Change, DnsProvider, FENCE, Fence, Marker, ProviderError, Refusal, RetryPolicy,
    SecretString,
};
use sitewarden_shared::config::{KeyPath, Source};
use sitewarden_tests::bind::{self, Bind};

const ZONE: &str = "example.com";
const NAME: &str = "mail.example.com";
const MARKER_NAME: &str = "_sitewarden.mail.example.com";
const RR: &str = "mail-rr.example.com";
const SITE1: &str = "mail-site1.example.com";
const SITE2: &str = "mail-site2.example.com";

/// `example.com` with `mail → mail-rr` (TTL 300) and, when given, a marker TXT.
async fn zone(marker: Option<(u64, u64)>) -> Bind {
    let mut records = vec![
        "mail 300 IN CNAME mail-rr".to_owned(),
        "mail-rr IN A 192.0.2.1".to_owned(),
        "mail-rr IN A 198.51.100.1".to_owned(),
        "mail-site1 IN A 192.0.2.1".to_owned(),
        "mail-site2 IN A 198.51.100.1".to_owned(),
    ];
    if let Some((epoch, generation)) = marker {
        records.push(format!(
            "_sitewarden.mail 300 IN TXT \"{}\"",
            Marker { epoch, generation }
        ));
    }
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    Bind::start(ZONE, &refs).await.expect("named starts")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        deadline: Duration::from_secs(10),
    }
}

fn provider_with(bind: &Bind, key_name: &str, secret: &str) -> Rfc2136Provider {
    Rfc2136Provider::new(Rfc2136Options {
        server: bind.addr(),
        zone: ZONE.into(),
        key: TsigKey {
            name: key_name.into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: SecretString::from(secret.to_owned()),
        },
        retry: fast_retry(),
        request_timeout: Duration::from_secs(5),
        batch_size: 100,
    })
    .expect("provider")
}

fn provider(bind: &Bind) -> Rfc2136Provider {
    provider_with(bind, bind.key_name(), bind::KEY_SECRET)
}

fn batched(bind: &Bind, secret: &str, batch_size: usize) -> Rfc2136Provider {
    Rfc2136Provider::new(Rfc2136Options {
        server: bind.addr(),
        zone: ZONE.into(),
        key: TsigKey {
            name: bind.key_name().into(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: SecretString::from(secret.to_owned()),
        },
        retry: fast_retry(),
        request_timeout: Duration::from_secs(5),
        batch_size,
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

fn marker(epoch: u64, generation: u64) -> String {
    Marker { epoch, generation }.to_string()
}

/// Runs `apply` with a fence that, right before the UPDATE would go out, lets `meanwhile` run
/// once (synchronously: an administrator or another leader acting at that very moment).
async fn apply_with_interloper(
    p: &Rfc2136Provider,
    c: &Change,
    meanwhile: impl Fn() + Send + Sync + 'static,
) -> Result<ApplyOutcome, ProviderError> {
    let done = Arc::new(AtomicBool::new(false));
    let fence = Fence::new(move || {
        if !done.swap(true, Ordering::SeqCst) {
            meanwhile();
        }
        true
    });
    FENCE.scope(fence, p.apply(c)).await
}

/// An `nsupdate` run from a plain thread, so it can be called inside the fence closure.
fn nsupdate_blocking(bind: &Bind, commands: &str) {
    let script = format!(
        "server 127.0.0.1 {port}\nzone {ZONE}\nkey hmac-sha256:{key} {secret}\n{commands}\nsend\n",
        port = bind.addr().port(),
        key = bind::KEY_NAME,
        secret = bind::KEY_SECRET,
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("nsupdate -v")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("nsupdate runs");
    assert!(
        out.status.success(),
        "nsupdate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn reads_the_cname_its_ttl_and_the_marker_from_the_primary() {
    let bind = zone(Some((3, 7))).await;
    let state = provider(&bind).read(NAME).await.unwrap();
    assert_eq!(state.content.as_deref(), Some(RR));
    assert_eq!(state.ttl, Some(300));
    assert_eq!(
        state.marker,
        Some(Marker {
            epoch: 3,
            generation: 7
        })
    );
    let none = provider(&bind).read("owa.example.com").await.unwrap();
    assert_eq!(none.content, None);
    assert_eq!(none.marker, None);
}

#[tokio::test]
async fn a_change_moves_the_cname_and_stamps_the_epoch_in_one_update() {
    let bind = zone(Some((1, 1))).await;
    let serial = bind.serial().await.unwrap();
    let p = provider(&bind);
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

    // What any resolver asking the primary now sees.
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(SITE2));
    assert_eq!(bind.txt(MARKER_NAME).await.unwrap(), [marker(2, 2)]);
    assert_eq!(
        bind.serial().await.unwrap(),
        serial + 1,
        "one UPDATE, one new zone version"
    );
    let s = p.stats();
    assert_eq!(
        (s.calls, s.writes),
        (3, 1),
        "read, UPDATE, read back: {s:?}"
    );
    // The TTL is kept when the namespace sets none.
    assert_eq!(p.read(NAME).await.unwrap().ttl, Some(300));
}

#[tokio::test]
async fn the_namespace_ttl_is_written_with_the_target() {
    let bind = zone(Some((1, 1))).await;
    let mut c = change(SITE2, RR, 1, 2);
    c.ttl = Some(60);
    let out = provider(&bind).apply(&c).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    let state = provider(&bind).read(NAME).await.unwrap();
    assert_eq!(state.ttl, Some(60));
    assert_eq!(state.content.as_deref(), Some(SITE2));
}

#[tokio::test]
async fn the_same_change_again_is_already_in_place_and_writes_nothing() {
    let bind = zone(Some((1, 1))).await;
    let p = provider(&bind);
    let c = change(SITE2, RR, 2, 2);
    assert!(matches!(
        p.apply(&c).await.unwrap(),
        ApplyOutcome::Applied { .. }
    ));
    let serial = bind.serial().await.unwrap();
    let again = p.apply(&c).await.unwrap();
    assert!(
        matches!(&again, ApplyOutcome::AlreadyInPlace { state } if state.points_at(SITE2)),
        "{again:?}"
    );
    assert_eq!(bind.serial().await.unwrap(), serial, "nothing was written");
    assert_eq!(p.stats().writes, 1);
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_is_an_auth_error_naming_the_key_and_changes_nothing() {
    let bind = zone(Some((1, 1))).await;
    let serial = bind.serial().await.unwrap();

    let wrong = provider_with(&bind, bind.key_name(), bind::WRONG_SECRET);
    let err = wrong.apply(&change(SITE2, RR, 2, 2)).await.unwrap_err();
    let ProviderError::Auth(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("BADSIG"), "{msg}");
    assert!(msg.contains(bind::KEY_NAME), "{msg}");
    assert!(
        !msg.contains(bind::WRONG_SECRET) && !msg.contains(bind::KEY_SECRET),
        "{msg}"
    );
    assert_eq!(wrong.stats().writes, 1, "an auth failure is not retried");

    let unknown = provider_with(&bind, "no-such-key", bind::KEY_SECRET);
    let err = unknown.apply(&change(SITE2, RR, 2, 2)).await.unwrap_err();
    let ProviderError::Auth(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("BADKEY") && msg.contains("no-such-key"),
        "{msg}"
    );
    assert!(!msg.contains(bind::KEY_SECRET), "{msg}");

    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(RR));
    assert_eq!(bind.serial().await.unwrap(), serial, "nothing was written");
}

#[tokio::test]
async fn an_administrators_change_before_our_read_is_drift() {
    let bind = zone(Some((1, 1))).await;
    bind.nsupdate(
        bind::KEY_SECRET,
        &format!("update delete {NAME} CNAME\nupdate add {NAME} 300 CNAME {SITE1}"),
    )
    .await
    .unwrap();
    let out = provider(&bind)
        .apply(&change(SITE2, RR, 2, 2))
        .await
        .unwrap();
    assert!(
        matches!(&out, ApplyOutcome::Refused(Refusal::Drift { found }) if found.points_at(SITE1)),
        "{out:?}"
    );
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(SITE1));
}

#[tokio::test]
async fn a_change_landing_between_our_read_and_our_update_fails_the_prerequisite_and_is_kept() {
    let bind = Arc::new(zone(Some((1, 1))).await);
    let p = provider(&bind);
    let admin = bind.clone();
    let out = apply_with_interloper(&p, &change(SITE2, RR, 2, 2), move || {
        nsupdate_blocking(
            &admin,
            &format!("update delete {NAME} CNAME\nupdate add {NAME} 300 CNAME {SITE1}"),
        );
    })
    .await
    .unwrap();
    assert!(
        matches!(&out, ApplyOutcome::Refused(Refusal::Drift { found }) if found.points_at(SITE1)),
        "{out:?}"
    );
    assert_eq!(
        p.stats().writes,
        1,
        "the UPDATE was sent once and refused by its prerequisite"
    );
    assert_eq!(
        bind.cname(NAME).await.unwrap().as_deref(),
        Some(SITE1),
        "the administrator's change stands"
    );
    assert_eq!(bind.txt(MARKER_NAME).await.unwrap(), [marker(1, 1)]);
}

#[tokio::test]
async fn a_newer_leaders_marker_fences_us_off_even_between_read_and_update() {
    // Already there at our read.
    let bind = zone(Some((9, 1))).await;
    let out = provider(&bind)
        .apply(&change(SITE2, RR, 2, 2))
        .await
        .unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::NewerEpoch { found }) if found.epoch == 9),
        "{out:?}"
    );
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(RR));
    drop(bind);

    // Landing after our read: only the marker changes, the target is the same; the marker
    // prerequisite catches it.
    let bind = Arc::new(zone(Some((1, 1))).await);
    let p = provider(&bind);
    let newer = bind.clone();
    let out = apply_with_interloper(&p, &change(SITE2, RR, 2, 2), move || {
        nsupdate_blocking(
            &newer,
            &format!(
                "update delete {MARKER_NAME} TXT\nupdate add {MARKER_NAME} 300 TXT \"{}\"",
                marker(3, 5)
            ),
        );
    })
    .await
    .unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::NewerEpoch { found }) if found.epoch == 3),
        "{out:?}"
    );
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(RR));
    assert_eq!(bind.txt(MARKER_NAME).await.unwrap(), [marker(3, 5)]);
}

#[tokio::test]
async fn an_older_generation_is_refused() {
    let bind = zone(Some((2, 10))).await;
    let out = provider(&bind)
        .apply(&change(SITE2, RR, 2, 9))
        .await
        .unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::OlderGeneration { .. })),
        "{out:?}"
    );
}

#[tokio::test]
async fn an_unmarked_record_is_not_ours_unless_adopted_and_a_missing_one_is_refused() {
    let bind = zone(None).await;
    let p = provider(&bind);
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(
        matches!(out, ApplyOutcome::Refused(Refusal::NotOurs { .. })),
        "{out:?}"
    );
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(RR));

    let adopt = Change {
        adopt_unmarked: true,
        ..change(SITE2, RR, 2, 2)
    };
    let out = p.apply(&adopt).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(SITE2));
    assert_eq!(bind.txt(MARKER_NAME).await.unwrap(), [marker(2, 2)]);

    let missing = Change {
        name: "owa.example.com".into(),
        ..change(SITE2, RR, 2, 2)
    };
    assert_eq!(
        p.apply(&missing).await.unwrap(),
        ApplyOutcome::Refused(Refusal::Missing)
    );
    let outside = Change {
        name: "mail.example.org".into(),
        ..change(SITE2, RR, 2, 2)
    };
    assert!(matches!(
        p.apply(&outside).await,
        Err(ProviderError::Rejected(_))
    ));
}

#[tokio::test]
async fn a_lapsed_lease_writes_nothing() {
    let bind = zone(Some((1, 1))).await;
    let p = provider(&bind);
    let out = FENCE
        .scope(Fence::new(|| false), p.apply(&change(SITE2, RR, 2, 2)))
        .await
        .unwrap();
    assert_eq!(out, ApplyOutcome::Refused(Refusal::LeaseLost));
    assert_eq!(p.stats().writes, 0);
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(RR));
}

#[tokio::test]
async fn a_dead_server_is_a_soft_error_after_retries() {
    let bind = zone(Some((1, 1))).await;
    let p = provider(&bind);
    drop(bind);
    let err = p.read(NAME).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    let s = p.stats();
    assert_eq!((s.calls, s.retries), (3, 2), "{s:?}");
}

#[tokio::test]
async fn the_provider_builds_from_its_provider_table() {
    let bind = zone(Some((1, 1))).await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{}\n", bind::KEY_SECRET)).unwrap();
    let text = format!(
        "[provider]\nkind = \"rfc2136\"\nserver = \"{}\"\nzone = \"{ZONE}\"\n\
         tsig_key_name = \"{}\"\ntsig_secret = {{ file = \"{}\" }}\nrequest_timeout = \"3s\"\n",
        bind.addr(),
        bind.key_name(),
        secret.path().display()
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
    let p = config.build().unwrap();
    assert_eq!(p.kind(), "rfc2136");
    let out = p.apply(&change(SITE2, RR, 2, 2)).await.unwrap();
    assert!(matches!(out, ApplyOutcome::Applied { .. }), "{out:?}");
    assert_eq!(bind.cname(NAME).await.unwrap().as_deref(), Some(SITE2));
}

/// `example.com` with `n` names `svc{i} → site1` (TTL 300), each with the marker of epoch 1.
async fn many(n: usize) -> Bind {
    let mut records = vec![
        "site1 IN A 192.0.2.1".to_owned(),
        "site2 IN A 198.51.100.1".to_owned(),
    ];
    for i in 0..n {
        records.push(format!("svc{i} 300 IN CNAME site1"));
        records.push(format!(
            "_sitewarden.svc{i} 300 IN TXT \"{}\"",
            marker(1, 1)
        ));
    }
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    Bind::start(ZONE, &refs).await.expect("named starts")
}

fn svc(i: usize) -> String {
    format!("svc{i}.example.com")
}

fn all_to(n: usize, target: &str) -> Vec<Change> {
    (0..n)
        .map(|i| Change {
            name: svc(i),
            ..change(target, "site1.example.com", 2, 2)
        })
        .collect()
}

fn applied(outcomes: &[Result<ApplyOutcome, ProviderError>]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ApplyOutcome::Applied { .. })))
        .count()
}

/// Reads `0..n` back with a fresh provider (pipelined) and checks every name but `skip` points
/// at `target` under the marker of epoch 2; spot-checks a few with `dig`.
async fn all_moved(bind: &Bind, n: usize, target: &str, skip: &[usize]) {
    let names: Vec<String> = (0..n).map(svc).collect();
    let states = batched(bind, bind::KEY_SECRET, 100).read_many(&names).await;
    for (i, state) in states.iter().enumerate().filter(|(i, _)| !skip.contains(i)) {
        let state = state.as_ref().expect("read");
        assert!(state.points_at(target), "{}: {state:?}", svc(i));
        assert_eq!(
            state.marker,
            Some(Marker {
                epoch: 2,
                generation: 2
            }),
            "{}",
            svc(i)
        );
        assert_eq!(state.ttl, Some(300), "the TTL is kept");
    }
    for i in [0, n / 2, n - 1].into_iter().filter(|i| !skip.contains(i)) {
        assert_eq!(bind.cname(&svc(i)).await.unwrap().as_deref(), Some(target));
        let txt = bind.txt(&format!("_sitewarden.{}", svc(i))).await.unwrap();
        assert_eq!(txt, [marker(2, 2)]);
    }
}

#[tokio::test]
async fn five_hundred_names_move_in_four_updates_between_two_pipelined_reads() {
    let bind = many(500).await;
    let serial = bind.serial().await.unwrap();
    let p = batched(&bind, bind::KEY_SECRET, 125);
    assert_eq!(p.batch_limit(), 125);
    let outcomes = p.apply_many(&all_to(500, "site2.example.com")).await;
    assert_eq!(
        applied(&outcomes),
        500,
        "{:?}",
        outcomes
            .iter()
            .find(|o| !matches!(o, Ok(ApplyOutcome::Applied { .. })))
    );
    let s = p.stats();
    // Reading 500 names: two pipelined connections of up to 256 names, before and after.
    assert_eq!((s.writes, s.calls), (4, 4 + 2 + 2), "{s:?}");
    assert_eq!(bind.serial().await.unwrap(), serial + 4, "four UPDATEs");
    all_moved(&bind, 500, "site2.example.com", &[]).await;

    let again = p.apply_many(&all_to(500, "site2.example.com")).await;
    assert!(
        again
            .iter()
            .all(|o| matches!(o, Ok(ApplyOutcome::AlreadyInPlace { .. }))),
        "{:?}",
        again.first()
    );
    assert_eq!(bind.serial().await.unwrap(), serial + 4, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_changed_after_our_read_is_isolated_by_halves_and_every_other_name_moves() {
    let bind = Arc::new(many(64).await);
    let p = batched(&bind, bind::KEY_SECRET, 64);
    let admin = bind.clone();
    let done = Arc::new(AtomicBool::new(false));
    // Right before the first UPDATE goes out, an administrator points svc37 elsewhere.
    let fence = Fence::new(move || {
        if !done.swap(true, Ordering::SeqCst) {
            nsupdate_blocking(
                &admin,
                "update delete svc37.example.com CNAME\n\
                 update add svc37.example.com 300 CNAME mail-site1.example.com",
            );
        }
        true
    });
    let outcomes = FENCE
        .scope(fence, p.apply_many(&all_to(64, "site2.example.com")))
        .await;
    assert_eq!(applied(&outcomes), 63);
    assert!(
        matches!(&outcomes[37], Ok(ApplyOutcome::Refused(Refusal::Drift { found }))
            if found.points_at(SITE1)),
        "{:?}",
        outcomes[37]
    );
    // 64 → 32 → 16 → 8 → 4 → 2 → 1: seven refused UPDATEs, six applied.
    assert_eq!(p.stats().writes, 13);
    all_moved(&bind, 64, "site2.example.com", &[37]).await;
    assert_eq!(
        bind.cname("svc37.example.com").await.unwrap().as_deref(),
        Some(SITE1),
        "the administrator's change stands"
    );
    assert_eq!(
        bind.txt("_sitewarden.svc37.example.com").await.unwrap(),
        [marker(1, 1)]
    );
}

#[tokio::test]
async fn a_batch_signed_with_a_wrong_secret_changes_nothing() {
    let bind = many(20).await;
    let serial = bind.serial().await.unwrap();
    let p = batched(&bind, bind::WRONG_SECRET, 100);
    let outcomes = p.apply_many(&all_to(20, "site2.example.com")).await;
    for o in &outcomes {
        let Err(ProviderError::Auth(msg)) = o else {
            panic!("{o:?}")
        };
        assert!(
            msg.contains("BADSIG") && msg.contains(bind::KEY_NAME),
            "{msg}"
        );
        assert!(!msg.contains(bind::WRONG_SECRET) && !msg.contains(bind::KEY_SECRET));
    }
    assert_eq!(
        p.stats().writes,
        1,
        "an auth failure is neither retried nor halved"
    );
    assert_eq!(bind.serial().await.unwrap(), serial, "nothing was written");
    assert_eq!(
        bind.cname("svc5.example.com").await.unwrap().as_deref(),
        Some("site1.example.com")
    );
}

#[tokio::test]
async fn a_name_outside_the_zone_ends_with_its_error_and_the_rest_move() {
    let bind = many(5).await;
    let p = batched(&bind, bind::KEY_SECRET, 100);
    let mut changes = all_to(5, "site2.example.com");
    changes[2].name = "svc2.example.org".into();
    let outcomes = p.apply_many(&changes).await;
    assert_eq!(applied(&outcomes), 4);
    assert!(
        matches!(&outcomes[2], Err(ProviderError::Rejected(m)) if m.contains("not inside the zone")),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(p.stats().writes, 1);
    all_moved(&bind, 5, "site2.example.com", &[2]).await;
}

#[tokio::test]
async fn with_a_batch_size_of_one_names_move_one_at_a_time() {
    let bind = many(3).await;
    let serial = bind.serial().await.unwrap();
    let p = batched(&bind, bind::KEY_SECRET, 1);
    let outcomes = p.apply_many(&all_to(3, "site2.example.com")).await;
    assert_eq!(applied(&outcomes), 3);
    let s = p.stats();
    assert_eq!(
        (s.writes, s.calls),
        (3, 9),
        "read, UPDATE, read back a name"
    );
    assert_eq!(bind.serial().await.unwrap(), serial + 3);
    all_moved(&bind, 3, "site2.example.com", &[]).await;
}
