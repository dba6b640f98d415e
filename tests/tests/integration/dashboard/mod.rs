//! The dashboard in a real browser through an incident at 03:00: a controller pair with `[api]`
//! tokens, fed by real agents probing emulated Exchange sites, and the Debian `chromium` running
//! headless ([`browser`]). The page walks through four states, each checked in the DOM against
//! what the API says:
//!
//! 1. **normal**: both sites up, mail.example.com on mail-rr, no incident banner; every agent
//!    with its version and heartbeat age, every server × check × observer with its HTTP status
//!    code and latency, the controllers, a timeline newest first;
//! 2. **failing**: cas1 answers 500, site1 is Degraded, the name stays (no banner), cas1's rows
//!    show 500 and failing;
//! 3. **failed over**: cas2 answers 500 too, site1 is Down, the name is on mail-site2 and the
//!    banner says so, since when and why, in the engine's words; the timeline shows the move
//!    above the verdict that caused it;
//! 4. **recovering**: both answer again, site1 is Up, the name waits for failback and the banner
//!    says when it is eligible; then it fails back and the banner goes.
//!
//! With `SITEWARDEN_SCREENSHOT_DIR=docs` the test writes `dashboard-normal.png`,
//! `dashboard-failing.png`, `dashboard-failed-over.png` and `dashboard-recovering.png` there
//! (`scripts/screenshot` does that).

mod browser;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sitewarden_api::wire::Status;
use sitewarden_controller::provider::DnsProvider;
use sitewarden_controller::provider::budget::RetryPolicy;
use sitewarden_controller::provider::memory::MemoryProvider;
use sitewarden_tests::config_toml::{
    Api, ApiToken, ControllerTable, ControllerToml, Ha, NatsTable, Policy, Provider, SecretFile,
};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::in_process::{RunningAgent, RunningController};
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::two_site::{self, TEST_POLICY};
use sitewarden_tests::{DEADLINE, wait_for};

use browser::{Browser, Page};

const NAME: &str = "mail.example.com";
const RR: &str = "mail-rr.example.com";
const SITE2: &str = "mail-site2.example.com";
const ADMIN: &str = "admin-token-4b1d8e0c9a7f2e11";

/// How long site1 must be Up before mail fails back: long enough to see the recovering page
/// on a loaded machine, short enough to see the failback too.
const FAILBACK_AFTER: Duration = Duration::from_secs(40);

/// The lab's fast policy with that failback window.
const POLICY: Policy = Policy {
    failback_after: Some(FAILBACK_AFTER),
    ..TEST_POLICY
};

/// What the test reads from the page.
const VIEW: &str = r#"JSON.stringify({
  sites: Object.fromEntries([...document.querySelectorAll('[data-site]')]
    .map(c => [c.dataset.site, c.dataset.verdict])),
  current: Object.fromEntries([...document.querySelectorAll('[data-namespace]')]
    .map(c => [c.dataset.namespace, c.querySelector('.current') && c.querySelector('.current').dataset.target])),
  leader: document.getElementById('leader').textContent,
  admin: !document.getElementById('global-actions').hidden,
  incidentsShown: !document.getElementById('incidents').hidden,
  incidents: [...document.querySelectorAll('#incidents [data-incident]')].map(b => ({
    name: b.dataset.incident, rule: b.dataset.rule,
    headline: b.querySelector('.headline').textContent,
    detail: b.querySelector('.detail') ? b.querySelector('.detail').textContent : ''})),
  agents: [...document.querySelectorAll('#agents tr[data-agent]')].map(r => ({
    agent: r.dataset.agent, version: r.dataset.version, age: r.dataset.age, silent: r.dataset.silent,
    cells: [...r.cells].map(c => c.textContent)})),
  servers: [...document.querySelectorAll('#servers tr[data-check]')].map(r => ({
    site: r.closest('[data-servers-of]').dataset.serversOf, server: r.dataset.server,
    check: r.dataset.check, agent: r.dataset.agent, status: r.dataset.status,
    http: r.dataset.http, latency: r.dataset.latency})),
  controllers: [...document.querySelectorAll('#controllers tr[data-controller]')].map(r => ({
    controller: r.dataset.controller, role: r.dataset.role, fresh: r.dataset.fresh})),
  controllersText: document.getElementById('controllers').textContent,
  timeline: [...document.querySelectorAll('#timeline li')].map(li => ({
    kind: li.dataset.kind || '', seq: li.dataset.seq ? Number(li.dataset.seq) : null,
    text: li.querySelector('.text') ? li.querySelector('.text').textContent : li.textContent})),
  hash: location.hash,
  stored: sessionStorage.getItem('sitewarden.token') !== null,
  overflow: document.documentElement.scrollWidth > window.innerWidth,
})"#;

async fn view(page: &Page) -> Result<Value, String> {
    let v = page.eval(VIEW).await?;
    let text = v.as_str().ok_or_else(|| format!("not a string: {v}"))?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

// ---- the lab ----------------------------------------------------------------------------------

struct Lab {
    _nats: NatsServer,
    cas: Vec<ExchangeServer>,
    _agents: Vec<RunningAgent>,
    provider: Arc<MemoryProvider>,
    http: Vec<std::net::SocketAddr>,
    _controllers: Vec<RunningController>,
    _dir: tempfile::TempDir,
    // Chromium beside a controller pair with a 3 s lease (sitewarden_tests::machine).
    _machine: tokio::sync::RwLockReadGuard<'static, ()>,
}

/// Four emulated CAS servers, three agents, and a controller pair with an admin token.
async fn lab() -> Lab {
    let machine = sitewarden_tests::machine::share().await;
    let nats = NatsServer::start().await.unwrap();
    let mut cas = Vec::new();
    for i in 0..4 {
        cas.push(
            ExchangeServer::start(ExchangeOptions::new(&format!("EXCH-{i}.CONTOSO.LOCAL")))
                .await
                .unwrap(),
        );
    }
    let agents = two_site::AGENTS
        .iter()
        .map(|(id, site)| {
            let mut toml = two_site::agent(
                id,
                site,
                NatsTable::servers([nats.url()]),
                &two_site::four(cas.iter().map(ExchangeServer::addr)),
                Duration::from_millis(500),
                Duration::from_millis(400),
            );
            toml.agent.heartbeat_interval = Some(Duration::from_millis(500));
            RunningAgent::start(&toml.render())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), ADMIN).unwrap();
    let provider = Arc::new(MemoryProvider::new(RetryPolicy::default()));
    provider.insert(
        NAME,
        "mail-rr.example.com",
        Some("sitewarden epoch=0 gen=0"),
    );
    let mut http = Vec::new();
    let mut controllers = Vec::new();
    for id in ["ctl-a", "ctl-b"] {
        let addr = sitewarden_tests::free_addr();
        let toml = ControllerToml {
            controller: ControllerTable {
                id: id.into(),
                listen: addr.to_string(),
                tick: Some(Duration::from_millis(100)),
                ..ControllerTable::default()
            },
            nats: NatsTable::servers([nats.url()]),
            provider: Provider::Memory,
            ha: Some(Ha {
                lease: Duration::from_secs(3),
            }),
            api: Some(Api {
                tokens: vec![ApiToken {
                    name: "alice".into(),
                    role: "admin".into(),
                    token: SecretFile::at(dir.path().join("admin.token")),
                }],
            }),
            decisions: two_site::decisions(Some(POLICY), NAME),
            ..ControllerToml::default()
        };
        controllers.push(RunningController::start(
            &toml.render(),
            Some(provider.clone() as Arc<dyn DnsProvider>),
        ));
        http.push(addr);
    }
    Lab {
        _nats: nats,
        cas,
        _agents: agents,
        provider,
        http,
        _controllers: controllers,
        _dir: dir,
        _machine: machine,
    }
}

/// Where `SITEWARDEN_SCREENSHOT_DIR` asks for the PNGs (relative to the workspace root).
fn screenshot_dir() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("SITEWARDEN_SCREENSHOT_DIR")?);
    Some(if p.is_absolute() {
        p
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
    })
}

/// Writes `dashboard-<state>.png` of the whole page at laptop width, when asked to.
async fn screenshot(tab: &Page, state: &str) {
    let Some(dir) = screenshot_dir() else { return };
    let png = tab.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = dir.join(format!("dashboard-{state}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("wrote {}", path.display());
}

/// On a phone-sized screen nothing scrolls sideways (wide tables scroll in their own box);
/// then back to the laptop size.
async fn fits_a_phone(tab: &Page, state: &str) {
    tab.viewport(390, 844, true).await;
    let narrow = wait_for("a phone layout", DEADLINE, || async {
        let v = view(tab).await.ok()?;
        (v["overflow"] == false).then_some(v)
    })
    .await;
    assert!(narrow.is_ok(), "{state}: {:?}", view(tab).await);
    tab.viewport(1280, 1100, false).await;
}

/// The value waited for, or a panic that shows what the page showed instead.
async fn reached<T>(tab: &Page, waited: anyhow::Result<T>) -> T {
    match waited {
        Ok(v) => v,
        Err(e) => panic!("{e}; the page shows {:?}", view(tab).await),
    }
}

/// What the API says now (the same controller the page asks).
async fn api_status(base: &str) -> Option<Status> {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// A time as the banner writes it: to the second, `Z`, the date only on another day than `at`.
fn banner_time(t: DateTime<Utc>, at: DateTime<Utc>) -> String {
    if t.date_naive() == at.date_naive() {
        t.format("%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%SZ").to_string()
    }
}

/// The page's banner for mail.example.com and the API's off_preferred for it, when the banner
/// is the API's, word for word: `{NAME} → {target} since {since} — {why}`.
async fn banner_as_the_api_says(tab: &Page, base: &str, rule: &str) -> Option<(Value, Status)> {
    let v = view(tab).await.ok()?;
    let shown = v["incidents"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == NAME)?
        .clone();
    if shown["rule"] != rule {
        return None;
    }
    let s = api_status(base).await?;
    let ns = s.namespaces.iter().find(|n| n.name == NAME)?;
    let off = ns.explanation.off_preferred.as_ref()?;
    let d = ns.explanation.decision.as_ref()?;
    let mut why: Vec<String> = off
        .unroutable
        .iter()
        .map(|u| format!("{} {}", u.site, u.verdict))
        .collect();
    if let Some(t) = off.failback_eligible_at {
        why.push(format!("failback eligible at {}", banner_time(t, s.at)));
    }
    let expected = format!(
        "{NAME} → {} since {} — {}",
        off.target,
        banner_time(off.since?, s.at),
        why.join("; ")
    );
    let detail = format!("rule {}: {}", d.evidence.rule.word(), d.evidence.note);
    (shown["headline"] == expected.as_str() && shown["detail"] == detail.as_str()).then_some((v, s))
}

/// The page's rows of the per-server table for `server`.
fn rows<'a>(v: &'a Value, server: &str) -> Vec<&'a Value> {
    v["servers"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["server"] == server).collect())
        .unwrap_or_default()
}

/// Every observer of `server` shows `status` with HTTP `http` and a latency in milliseconds.
fn server_shows(v: &Value, server: &str, status: &str, http: &str) -> bool {
    let r = rows(v, server);
    r.len() == two_site::AGENTS.len()
        && r.iter().all(|r| {
            r["status"] == status
                && r["http"] == http
                && r["latency"]
                    .as_str()
                    .is_some_and(|l| l.parse::<u64>().is_ok())
        })
}

/// The index of the first timeline line containing every one of `words`.
fn line_of(v: &Value, words: &[&str]) -> Option<usize> {
    v["timeline"].as_array()?.iter().position(|l| {
        words
            .iter()
            .all(|w| l["text"].as_str().is_some_and(|t| t.contains(w)))
    })
}

/// Newest first: the history's sequence numbers fall down the page.
fn assert_newest_first(v: &Value, state: &str) {
    let seqs: Vec<u64> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["seq"].as_u64())
        .collect();
    assert!(
        !seqs.is_empty(),
        "{state}: a timeline from the history: {v}"
    );
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "{state}: newest first: {seqs:?}"
    );
    // The default view: no standby, edge or webhook records.
    for l in v["timeline"].as_array().unwrap() {
        let kind = l["kind"].as_str().unwrap_or_default();
        assert!(
            !["standby", "edge_notice", "edge_webhook"].contains(&kind),
            "{state}: {l}"
        );
    }
}

/// Every agent with this build's version and a recent heartbeat, none silent.
fn assert_agents(v: &Value, state: &str) {
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), two_site::AGENTS.len(), "{state}: {agents:?}");
    for a in agents {
        assert_eq!(a["version"], env!("CARGO_PKG_VERSION"), "{state}: {a}");
        let age: u64 = a["age"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        assert!(age < 10_000, "{state}: a heartbeat within 10 s: {a}");
        assert_eq!(a["silent"], "false", "{state}: {a}");
        let cells = a["cells"].as_array().unwrap();
        assert!(
            cells
                .iter()
                .any(|c| c.as_str().is_some_and(|c| c.ends_with(" ago"))),
            "{state}: the heartbeat's age in words: {a}"
        );
    }
}

/// Both controllers when the API lists them (`status.controllers`); the answering one otherwise.
fn assert_controllers(v: &Value, state: &str) {
    let rows = v["controllers"].as_array().unwrap();
    if rows.is_empty() {
        let text = v["controllersText"].as_str().unwrap_or_default();
        assert!(text.contains("answered by ctl-"), "{state}: {text}");
        return;
    }
    let names: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["controller"].as_str())
        .collect();
    assert!(
        names.contains(&"ctl-a") && names.contains(&"ctl-b"),
        "{state}: {rows:?}"
    );
    assert_eq!(
        rows.iter().filter(|r| r["role"] == "leader").count(),
        1,
        "{state}: one leader: {rows:?}"
    );
    assert!(
        rows.iter().all(|r| r["fresh"] == "true"),
        "{state}: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_tells_the_story_of_site1_failing_over_and_back() {
    let lab = lab().await;
    let base = format!("http://{}", lab.http[0]);

    // The page needs no token; the API it calls does.
    let page = wait_for("the dashboard served", DEADLINE, || async {
        let r = reqwest::get(format!("{base}/dashboard")).await.ok()?;
        (r.status() == 200).then_some(r)
    })
    .await
    .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let api = reqwest::get(format!("{base}/api/v1/status")).await.unwrap();
    assert_eq!(api.status(), 401);

    let browser = Browser::launch().await;
    let tab = browser
        .open(&format!("{base}/dashboard#token={ADMIN}"))
        .await;

    // 1. Normal: both sites up, every observer passing, no banner.
    let normal = wait_for("the normal page", Duration::from_secs(45), || async {
        let v = view(&tab).await.ok()?;
        let passing = ["cas1", "cas2", "cas3", "cas4"].iter().all(|s| {
            rows(&v, s).len() == 3 && rows(&v, s).iter().all(|r| r["status"] == "passing")
        });
        (v["sites"]["site1"] == "up"
            && v["sites"]["site2"] == "up"
            && v["current"][NAME] == RR
            && passing
            && v["agents"]
                .as_array()
                .is_some_and(|a| a.len() == 3 && a.iter().all(|a| a["version"] != ""))
            && line_of(&v, &["became leader"]).is_some())
        .then_some(v)
    })
    .await;
    let normal = match normal {
        Ok(v) => v,
        Err(e) => panic!(
            "{e}; the page shows {:?} at {:?}",
            view(&tab).await,
            tab.eval("location.href + ' ' + document.title + ' ' + document.body.innerText")
                .await
        ),
    };
    assert_eq!(
        normal["hash"], "",
        "the token is dropped from the address bar"
    );
    assert_eq!(normal["stored"], true, "{normal}");
    assert_eq!(
        normal["admin"], true,
        "an admin token shows the override actions"
    );
    assert!(
        normal["leader"].as_str().unwrap().contains("leader ctl-"),
        "{normal}"
    );
    assert_eq!(normal["incidentsShown"], false, "no banner: {normal}");
    assert_agents(&normal, "normal");
    assert_controllers(&normal, "normal");
    assert_newest_first(&normal, "normal");
    // An anonymous ActiveSync OPTIONS: the healthy emulator answers the same code everywhere.
    let healthy_code = rows(&normal, "cas1")[0]["http"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(["200", "401"].contains(&healthy_code.as_str()), "{normal}");
    for s in ["cas1", "cas2", "cas3", "cas4"] {
        assert!(
            server_shows(&normal, s, "passing", &healthy_code),
            "{s}: {normal}"
        );
    }
    screenshot(&tab, "normal").await;
    fits_a_phone(&tab, "normal").await;

    // 2. Failing: cas1 answers 500; site1 is Degraded, clients are still served, mail stays.
    lab.cas[0].set(Behaviour::Error500).await.unwrap();
    let failing = wait_for(
        "site1 degraded, cas1 failing with 500",
        DEADLINE,
        || async {
            let v = view(&tab).await.ok()?;
            (v["sites"]["site1"] == "degraded"
                && server_shows(&v, "cas1", "failing", "500")
                && line_of(&v, &["site site1: up → degraded"]).is_some())
            .then_some(v)
        },
    )
    .await;
    let failing = reached(&tab, failing).await;
    assert_eq!(failing["current"][NAME], RR, "{failing}");
    assert_eq!(
        failing["incidentsShown"], false,
        "still on its preferred target: {failing}"
    );
    assert!(
        server_shows(&failing, "cas2", "passing", &healthy_code),
        "{failing}"
    );
    assert_agents(&failing, "failing");
    assert_controllers(&failing, "failing");
    assert_newest_first(&failing, "failing");
    screenshot(&tab, "failing").await;
    fits_a_phone(&tab, "failing").await;

    // 3. Failed over: cas2 answers 500 too; site1 is Down and mail is on mail-site2.
    lab.cas[1].set(Behaviour::Error500).await.unwrap();
    let failed = wait_for(
        "site1 down and the banner as the API says",
        DEADLINE,
        || async {
            let (v, s) = banner_as_the_api_says(&tab, &base, "failed_over").await?;
            (v["sites"]["site1"] == "down"
                && v["current"][NAME] == SITE2
                && server_shows(&v, "cas2", "failing", "500"))
            .then_some((v, s))
        },
    )
    .await;
    let (failed, api) = reached(&tab, failed).await;
    assert_eq!(
        lab.provider.record(NAME).and_then(|r| r.content).as_deref(),
        Some(SITE2)
    );
    let banner = &failed["incidents"][0];
    let since = api.namespaces[0]
        .explanation
        .off_preferred
        .as_ref()
        .and_then(|o| o.since)
        .unwrap();
    assert_eq!(
        banner["headline"],
        format!(
            "{NAME} → {SITE2} since {} — site1 Down",
            banner_time(since, api.at)
        ),
        "{failed}"
    );
    assert!(
        banner["detail"].as_str().unwrap().starts_with(&format!(
            "rule failed_over: on {SITE2} instead of {RR}: site1 Down since "
        )),
        "{failed}"
    );
    assert!(server_shows(&failed, "cas1", "failing", "500"), "{failed}");
    assert!(
        server_shows(&failed, "cas3", "passing", &healthy_code),
        "{failed}"
    );
    // Causal order, newest first: the move above the verdict that caused it.
    let moved = line_of(
        &failed,
        &[&format!("{NAME}: {RR} → {SITE2} (rule move_away_from_down")],
    );
    let down = line_of(&failed, &["site site1:", "→ down"]);
    assert!(
        matches!((moved, down), (Some(m), Some(d)) if m < d),
        "the move ({moved:?}) above site1 going down ({down:?}): {failed}"
    );
    assert_agents(&failed, "failed over");
    assert_controllers(&failed, "failed over");
    assert_newest_first(&failed, "failed over");
    screenshot(&tab, "failed-over").await;
    fits_a_phone(&tab, "failed-over").await;

    // 4. Recovering: both answer again; site1 is Up, mail waits failback_after, and says until
    //    when.
    for cas in &lab.cas[..2] {
        cas.set(Behaviour::Healthy).await.unwrap();
    }
    let recovering = wait_for("site1 up and failback pending", DEADLINE, || async {
        let (v, s) = banner_as_the_api_says(&tab, &base, "failback_pending").await?;
        (v["sites"]["site1"] == "up"
            && v["current"][NAME] == SITE2
            && server_shows(&v, "cas1", "passing", &healthy_code))
        .then_some((v, s))
    })
    .await;
    let (recovering, api) = reached(&tab, recovering).await;
    let off = api.namespaces[0].explanation.off_preferred.clone().unwrap();
    assert_eq!(off.since, Some(since), "the same move as before");
    let eligible = off.failback_eligible_at.unwrap();
    assert_eq!(
        recovering["incidents"][0]["headline"],
        format!(
            "{NAME} → {SITE2} since {} — failback eligible at {}",
            banner_time(since, api.at),
            banner_time(eligible, api.at)
        ),
        "{recovering}"
    );
    assert!(
        recovering["incidents"][0]["detail"]
            .as_str()
            .unwrap()
            .ends_with(&format!(
                "failback eligible at {}",
                eligible.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
        "{recovering}"
    );
    assert_agents(&recovering, "recovering");
    assert_controllers(&recovering, "recovering");
    assert_newest_first(&recovering, "recovering");
    screenshot(&tab, "recovering").await;
    fits_a_phone(&tab, "recovering").await;

    // Then back on the preferred target, and the banner is gone.
    let back = wait_for(
        "mail back on mail-rr",
        FAILBACK_AFTER + DEADLINE,
        || async {
            let v = view(&tab).await.ok()?;
            (v["current"][NAME] == RR && v["incidentsShown"] == false).then_some(v)
        },
    )
    .await;
    let back = reached(&tab, back).await;
    assert!(
        line_of(&back, &[&format!("{NAME}: {SITE2} → {RR} (rule failback")]).is_some(),
        "{back}"
    );
    assert_newest_first(&back, "back");
}
