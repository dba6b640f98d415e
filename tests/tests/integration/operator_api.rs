//! The operator API of a real controller pair on a real nats-server: tokens and roles, status,
//! explain, history, and overrides written through either controller and applied by the leader.

use std::net::SocketAddr;

use reqwest::StatusCode;
use sitewarden_api::wire::HistoryAnswer;
use sitewarden_tests::DEADLINE;
use sitewarden_tests::wait_for;

use sitewarden_tests::api_pair::{ADMIN, ApiPair, NAME, READER, SLACK_OPERATOR, SLACK_SECRET};

async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Option<(StatusCode, serde_json::Value, String)> {
    let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.ok()?;
    let status = r.status();
    let text = r.text().await.ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or_default(),
        text,
    ))
}

async fn post(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_default(),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_are_enforced_and_no_token_is_ever_echoed() {
    let pair = ApiPair::start().await;
    let a = pair.http[0];
    let (status, body, _) = get(a, "/api/v1/status", None).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Bearer"));
    let (status, _, _) = get(a, "/api/v1/status", Some("not-a-configured-token"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, who, _) = get(a, "/api/v1/whoami", Some(READER)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(who["name"], "grafana");
    assert_eq!(who["role"], "read");

    let pin = r#"{"action":"pin","namespace":"mail.example.com","target":"mail-site2.example.com","reason":"test"}"#;
    let (status, body, _) = post(a, "/api/v1/overrides", Some(READER), pin).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = post(a, "/api/v1/overrides", None, pin).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(pair.content().as_deref(), Some("mail-rr.example.com"));

    // Nothing the API answers contains a token.
    for path in [
        "/api/v1/status",
        "/api/v1/overrides",
        "/api/v1/history?since=1h",
        "/api/v1/whoami",
    ] {
        let (_, _, text) = get(a, path, Some(ADMIN)).await.unwrap();
        assert!(
            !text.contains(ADMIN) && !text.contains(READER),
            "{path}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_explain_show_sites_namespaces_and_the_leader() {
    let pair = ApiPair::start().await;
    let (status, s, _) = get(pair.http[1], "/api/v1/status", Some(READER))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let sites: Vec<&str> = s["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["site"].as_str().unwrap())
        .collect();
    assert_eq!(sites, vec!["site1", "site2", "witness"]);
    let ns = &s["namespaces"][0];
    assert_eq!(ns["name"], NAME);
    assert_eq!(ns["preferred"], "mail-rr.example.com");
    assert_eq!(ns["targets"].as_array().unwrap().len(), 3);
    assert!(
        s["leader"]["leader"]
            .as_str()
            .is_some_and(|l| l.starts_with("ctl-"))
    );

    let (status, x, _) = get(
        pair.http[0],
        "/api/v1/namespaces/mail.example.com/explain",
        Some(READER),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(x["explanation"]["namespace"], NAME);
    assert!(x["text"].as_str().unwrap().contains(NAME));
    let (status, e, _) = get(
        pair.http[0],
        "/api/v1/namespaces/owa.example.com/explain",
        Some(READER),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(e["error"].as_str().unwrap().contains(NAME), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_made_through_either_controller_moves_the_name_and_a_release_lets_go() {
    let pair = ApiPair::start().await;
    // Through the standby: the write goes via the bus, so the leader acts on it.
    let mut standby = None;
    for addr in &pair.http {
        let (_, s, _) = get(*addr, "/api/v1/status", Some(READER)).await.unwrap();
        if s["leader"]["acting"] == false {
            standby = Some(*addr);
        }
    }
    let standby = standby.unwrap();
    let pin = r#"{"action":"pin","namespace":"mail.example.com","target":"mail-site2.example.com","for":"30m","reason":"site1 maintenance CHG-1042"}"#;
    let (status, body, _) = post(standby, "/api/v1/overrides", Some(ADMIN), pin).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["applied"], true);
    let pinned = &body["overrides"]["pins"][NAME];
    assert_eq!(pinned["target"], "mail-site2.example.com");
    assert_eq!(pinned["hold"]["who"], "alice");
    assert_eq!(pinned["hold"]["why"], "site1 maintenance CHG-1042");
    wait_for("the pinned target in DNS", DEADLINE, || async {
        (pair.content().as_deref() == Some("mail-site2.example.com")).then_some(())
    })
    .await
    .unwrap();
    // Both controllers know the pin.
    for addr in &pair.http {
        let (_, o, _) = get(*addr, "/api/v1/overrides", Some(READER)).await.unwrap();
        wait_for("the pin on both controllers", DEADLINE, || async {
            let (_, o, _) = get(*addr, "/api/v1/overrides", Some(READER)).await?;
            o["overrides"]["pins"].get(NAME).map(|_| ())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {o}"));
    }
    // The history has the override.
    let (_, h, _) = get(pair.http[0], "/api/v1/history?since=10m", Some(READER))
        .await
        .unwrap();
    let h: HistoryAnswer = serde_json::from_value(h).expect("a typed history");
    let kinds: Vec<String> = h.records.iter().map(|r| r.event.kind()).collect();
    assert!(kinds.iter().any(|k| k == "override"), "{kinds:?}");

    let release = r#"{"kind":"pin","subject":"mail.example.com","reason":"maintenance done"}"#;
    let (status, body, _) = post(
        pair.http[0],
        "/api/v1/overrides/release",
        Some(ADMIN),
        release,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["overrides"]["pins"].get(NAME).is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let pair = ApiPair::start().await;
    let a = pair.http[0];
    let cases = [
        (
            r#"{"action":"pin","namespace":"owa.example.com","target":"x.example.com","reason":"r"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "owa.example.com",
        ),
        (
            r#"{"action":"pin","namespace":"mail.example.com","target":"elsewhere.example.com","reason":"r"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "elsewhere.example.com",
        ),
        (
            r#"{"action":"pin","namespace":"mail.example.com","target":"mail-site2.example.com","reason":"  "}"#,
            StatusCode::BAD_REQUEST,
            "reason",
        ),
        (
            r#"{"action":"pin","namespace":"mail.example.com","reason":"r"}"#,
            StatusCode::BAD_REQUEST,
            "target",
        ),
        (
            r#"{"action":"teleport","reason":"r"}"#,
            StatusCode::BAD_REQUEST,
            "teleport",
        ),
        (
            r#"{"action":"drain","site":"site 9","reason":"r"}"#,
            StatusCode::BAD_REQUEST,
            "site",
        ),
        (
            r#"{"action":"freeze","for":"soon","reason":"r"}"#,
            StatusCode::BAD_REQUEST,
            "for",
        ),
        (
            r#"{"action":"pin","colour":"red","reason":"r"}"#,
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (r#"{not json"#, StatusCode::BAD_REQUEST, "body"),
    ];
    for (body, want, mentions) in cases {
        let (status, answer, _) = post(a, "/api/v1/overrides", Some(ADMIN), body).await;
        assert_eq!(status, want, "{body} -> {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(mentions), "{body} -> {error}");
    }
    let huge = format!(
        r#"{{"action":"freeze","reason":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let (status, _, _) = post(a, "/api/v1/overrides", Some(ADMIN), &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, e, _) = get(a, "/api/v1/history?since=yesterday", Some(READER))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error"].as_str().unwrap().contains("since"));
    let (_, o, _) = get(a, "/api/v1/overrides", Some(READER)).await.unwrap();
    assert_eq!(
        o["overrides"],
        serde_json::json!({"pins": {}, "drains": {}, "freezes": {}}),
        "nothing was stored"
    );
    assert_eq!(pair.content().as_deref(), Some("mail-rr.example.com"));
}

/// A slash command as Slack sends it, signed with `secret` at `timestamp`.
async fn slack(
    addr: SocketAddr,
    user: &str,
    text: &str,
    secret: &str,
    timestamp: i64,
) -> (StatusCode, serde_json::Value) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", "legacy-ignored")
        .append_pair("team_id", "T0001")
        .append_pair("user_id", user)
        .append_pair("user_name", "jo")
        .append_pair("command", "/sitewarden")
        .append_pair("text", text)
        .finish();
    let sig =
        sitewarden_controller::runtime::slack::sign(secret.as_bytes(), timestamp, body.as_bytes());
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/slack/command"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::json!({"raw": text})),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_commands_are_signed_reads_are_open_and_writes_need_an_allowed_user() {
    let pair = ApiPair::start().await;
    let a = pair.http[0];
    let now = chrono::Utc::now().timestamp();

    let (status, body) = slack(a, "U0SOMEONE", "status", SLACK_SECRET, now).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response_type"], "ephemeral");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("site1") && text.contains(NAME), "{text}");

    // Forged, replayed: refused before anything is read.
    let (status, _) = slack(a, SLACK_OPERATOR, "status", "wrong-secret-000000", now).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = slack(a, SLACK_OPERATOR, "status", SLACK_SECRET, now - 600).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A user not on the allow-list may not write.
    let pin = "pin mail.example.com mail-site2.example.com --reason failing over for CHG-7";
    let (_, body) = slack(a, "U0SOMEONE", pin, SLACK_SECRET, now).await;
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("may read but not change"),
        "{body}"
    );
    // Without a reason nothing happens either.
    let (_, body) = slack(
        a,
        SLACK_OPERATOR,
        "pin mail.example.com mail-site2.example.com",
        SLACK_SECRET,
        now,
    )
    .await;
    assert!(body["text"].as_str().unwrap().contains("reason"), "{body}");
    assert_eq!(pair.content().as_deref(), Some("mail-rr.example.com"));

    let (_, body) = slack(a, SLACK_OPERATOR, pin, SLACK_SECRET, now).await;
    assert_eq!(body["response_type"], "in_channel", "{body}");
    assert!(body["text"].as_str().unwrap().contains("pinned"), "{body}");
    wait_for("the pinned target in DNS", DEADLINE, || async {
        (pair.content().as_deref() == Some("mail-site2.example.com")).then_some(())
    })
    .await
    .unwrap();
    let (_, o, _) = get(a, "/api/v1/overrides", Some(READER)).await.unwrap();
    assert_eq!(
        o["overrides"]["pins"][NAME]["hold"]["who"],
        format!("slack:jo({SLACK_OPERATOR})")
    );
    // The same signed request again inside the five minutes: refused as a replay.
    let (status, body) = slack(a, SLACK_OPERATOR, pin, SLACK_SECRET, now).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["raw"].as_str().unwrap_or_default().contains("replay"),
        "{body}"
    );
    // Refusals are counted by cause: one forged, one stale, one replayed.
    let page = reqwest::get(format!("http://{a}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for cause in ["mismatch", "stale", "replayed"] {
        let line = format!("sitewarden_controller_slack_refused_total{{cause=\"{cause}\"}} 1");
        assert!(page.contains(&line), "{line} not in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_out_of_range_are_a_422_and_the_controller_keeps_answering() {
    let pair = ApiPair::start().await;
    let a = pair.http[0];
    for f in ["0s", "1ns", "59s", "367d", "1000000y"] {
        for body in [
            format!(
                r#"{{"action":"pin","namespace":"mail.example.com","target":"mail-site2.example.com","for":"{f}","reason":"r"}}"#
            ),
            format!(r#"{{"action":"drain","site":"site1","for":"{f}","reason":"r"}}"#),
            format!(r#"{{"action":"freeze","for":"{f}","reason":"r"}}"#),
        ] {
            let (status, answer, text) = post(a, "/api/v1/overrides", Some(ADMIN), &body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {text}");
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("for") && error.contains(f) && error.contains("from 1m to 366d"),
                "{body} -> {error}"
            );
            assert_ne!(answer["applied"], true, "{body} -> {text}");
        }
    }
    for since in ["1000000y", "401d", "2999-01-01T00:00:00Z"] {
        let (status, e, text) = get(a, &format!("/api/v1/history?since={since}"), Some(READER))
            .await
            .unwrap_or_else(|| panic!("since={since}: the controller did not answer"));
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{since} -> {text}"
        );
        let error = e["error"].as_str().unwrap_or_default();
        assert!(error.contains("since") && error.contains(since), "{error}");
    }
    // Nothing panicked: both controllers still answer, nothing was stored, nothing moved.
    for addr in &pair.http {
        let (status, o, _) = get(*addr, "/api/v1/overrides", Some(READER))
            .await
            .expect("the controller still answers");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            o["overrides"],
            serde_json::json!({"pins": {}, "drains": {}, "freezes": {}})
        );
    }
    let (status, _, _) = get(a, "/api/v1/history?since=400d", Some(READER))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "the longest since is accepted");
    let pin = r#"{"action":"pin","namespace":"mail.example.com","target":"mail-site2.example.com","for":"1m","reason":"shortest hold"}"#;
    let (status, body, _) = post(a, "/api/v1/overrides", Some(ADMIN), pin).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["applied"], true, "{body}");
    wait_for("the pinned target in DNS", DEADLINE, || async {
        (pair.content().as_deref() == Some("mail-site2.example.com")).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_override_is_answered_with_the_engines_reason_and_never_applied() {
    let pair = ApiPair::start().await;
    let a = pair.http[0];
    let release = r#"{"kind":"pin","subject":"mail.example.com","reason":"nothing to release"}"#;
    let cases = [
        ("/api/v1/overrides/release", release, "not pinned"),
        (
            "/api/v1/overrides/release",
            r#"{"kind":"drain","subject":"site1","reason":"r"}"#,
            "not drained",
        ),
        (
            "/api/v1/overrides",
            r#"{"action":"pin","namespace":"mail.example.com","target":"elsewhere.example.com","reason":"r"}"#,
            "not a configured target",
        ),
        (
            "/api/v1/overrides",
            r#"{"action":"failback","namespace":"mail.example.com","reason":"r"}"#,
            "nothing to fail back to",
        ),
    ];
    for (path, body, reason) in cases {
        let (status, answer, text) = post(a, path, Some(ADMIN), body).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::CONFLICT,
            "{body} -> {status} {text}"
        );
        assert_ne!(answer["applied"], true, "{body} -> {text}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{body} -> {text}"
        );
    }

    // Four releases of one pin at once: the engine takes the first and refuses the others,
    // whether the API's own check saw the pin (409 after storing) or not (422 before).
    let pin = r#"{"action":"pin","namespace":"mail.example.com","target":"mail-site2.example.com","reason":"CHG-9"}"#;
    let (status, body, _) = post(a, "/api/v1/overrides", Some(ADMIN), pin).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let answers = futures::future::join_all((0..4).map(|i| {
        post(
            pair.http[i % 2],
            "/api/v1/overrides/release",
            Some(ADMIN),
            release,
        )
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _, _)| s.as_u16()).collect();
    eprintln!("four concurrent releases of one pin answered {statuses:?}");
    let applied: Vec<_> = answers
        .iter()
        .filter(|(_, b, _)| b["applied"] == true)
        .collect();
    assert_eq!(applied.len(), 1, "{answers:?}");
    assert_eq!(applied[0].0, StatusCode::CREATED, "{answers:?}");
    for (status, answer, text) in answers.iter().filter(|(_, b, _)| b["applied"] != true) {
        assert!(
            *status == StatusCode::UNPROCESSABLE_ENTITY || *status == StatusCode::CONFLICT,
            "{status} {text}"
        );
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains("not pinned"),
            "{text}"
        );
        if *status == StatusCode::CONFLICT {
            assert_eq!(
                answer["refused"], "mail.example.com is not pinned",
                "{text}"
            );
        }
    }

    // Slack answers the refusal, to the caller only.
    let now = chrono::Utc::now().timestamp();
    let (_, body) = slack(
        a,
        SLACK_OPERATOR,
        "release pin mail.example.com --reason nothing there",
        SLACK_SECRET,
        now,
    )
    .await;
    let text = body["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Not done") && text.contains("not pinned"),
        "{body}"
    );
    assert_eq!(body["response_type"], "ephemeral", "{body}");
    let (_, body) = slack(
        a,
        SLACK_OPERATOR,
        "drain site1 --for 0s --reason quick",
        SLACK_SECRET,
        now,
    )
    .await;
    let text = body["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Not done") && text.contains("from 1m to 366d"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_onto_a_down_site_is_refused_unless_forced_and_a_forced_one_is_marked() {
    let pair = ApiPair::start().await;
    let a = pair.http[0];
    for cas in &pair.exchange[..2] {
        cas.set(sitewarden_tests::exchange::Behaviour::Down)
            .await
            .unwrap();
    }
    wait_for("site1 Down on the controller", DEADLINE, || async {
        let (_, s, _) = get(a, "/api/v1/status", Some(READER)).await?;
        let down = s["sites"]
            .as_array()?
            .iter()
            .any(|x| x["site"] == "site1" && x["evidence"]["verdict"] == "down");
        down.then_some(())
    })
    .await
    .unwrap();
    let pin = r#"{"action":"pin","namespace":"mail.example.com","target":"mail-site1.example.com","reason":"CHG-9 test"}"#;
    let (status, e, text) = post(a, "/api/v1/overrides", Some(ADMIN), pin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    let error = e["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("site1 is Down") && error.contains("force"),
        "{error}"
    );
    assert_ne!(pair.content().as_deref(), Some("mail-site1.example.com"));

    let forced = pin.replace(r#""reason""#, r#""force":true,"reason""#);
    let (status, answer, text) = post(a, "/api/v1/overrides", Some(ADMIN), &forced).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(answer["request"]["force"], true, "{text}");
    wait_for("the forced pin in DNS", DEADLINE, || async {
        (pair.content().as_deref() == Some("mail-site1.example.com")).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_newest_first_in_pages_and_filtered() {
    let pair = ApiPair::start().await;
    let a = pair.http[0];
    for reason in ["first", "second"] {
        let body = format!(r#"{{"action":"freeze","for":"1h","reason":"{reason}"}}"#);
        let (status, _, text) = post(a, "/api/v1/overrides", Some(ADMIN), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
    }
    let page = |q: &'static str| async move {
        let (status, h, text) = get(a, &format!("/api/v1/history?{q}"), Some(READER))
            .await
            .expect("an answer");
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_value::<HistoryAnswer>(h).expect("a history answer")
    };
    let h = wait_for("both overrides in the history", DEADLINE, || async {
        let h = page("kind=override").await;
        (h.records.len() == 2).then_some(h)
    })
    .await
    .unwrap();
    let why = |h: &HistoryAnswer, i: usize| {
        serde_json::to_value(&h.records[i].event).unwrap()["why"].clone()
    };
    assert_eq!(why(&h, 0), "second", "newest first");
    assert_eq!(why(&h, 1), "first");
    assert!(h.records[0].seq > h.records[1].seq);
    assert!(!h.truncated);

    // One at a time: the answer says there is more and where the next page starts.
    let first = page("kind=override&limit=1").await;
    assert!(first.truncated);
    assert_eq!(why(&first, 0), "second");
    let next = first.next.clone().expect("a cursor");
    let (_, older, _) = get(
        a,
        &format!("/api/v1/history?kind=override&limit=1&{next}"),
        Some(READER),
    )
    .await
    .unwrap();
    let older: HistoryAnswer = serde_json::from_value(older).unwrap();
    assert_eq!(why(&older, 0), "first");

    // The default view is the leader's: the standby's own records only with all=true.
    let default = page("limit=1000").await;
    assert!(
        default
            .records
            .iter()
            .all(|r| r.role == sitewarden_api::Role::Leader || r.event.kind() == "leadership")
    );
    let (status, _, _) = get(a, "/api/v1/history?severity=loud", Some(READER))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
