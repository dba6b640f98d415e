//! The dashboard in a real browser: a controller pair with `[api]` tokens, fed by real agents
//! probing emulated Exchange sites, and the Debian `chromium` running headless, driven over the
//! DevTools protocol. The page loads with `#token=…`, shows both sites up; when site1's CAS
//! servers stop answering, it shows site1 down and mail.example.com on mail-site2.
//!
//! With `SITEWARDEN_SCREENSHOT=docs/dashboard.png` the test also writes a PNG of the page
//! (`scripts/screenshot` does that).
//!
//! The DevTools client is the few lines below over `tokio-websockets` (already in the tree
//! through async-nats): the test needs four protocol methods, not a whole browser-automation
//! crate with its generated protocol bindings.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sitewarden_controller::provider::DnsProvider;
use sitewarden_controller::provider::budget::RetryPolicy;
use sitewarden_controller::provider::memory::MemoryProvider;
use sitewarden_tests::config_toml::{
    Api, ApiToken, ControllerTable, ControllerToml, Ha, NatsTable, Provider, SecretFile,
};
use sitewarden_tests::exchange::{Behaviour, ExchangeOptions, ExchangeServer};
use sitewarden_tests::in_process::{RunningAgent, RunningController};
use sitewarden_tests::nats_server::NatsServer;
use sitewarden_tests::two_site::{self, TEST_POLICY};
use sitewarden_tests::{DEADLINE, wait_for};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

const NAME: &str = "mail.example.com";
const ADMIN: &str = "admin-token-4b1d8e0c9a7f2e11";
const CHROMIUM: &str = "/usr/bin/chromium";

// ---- the browser ------------------------------------------------------------------------------

/// Headless Chromium in its own process group with a throw-away profile; killed on drop.
struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    async fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-domain-reliability",
                "--disable-client-side-phishing-detection",
                "--disable-breakpad",
                "--no-pings",
                "--no-proxy-server",
                "--metrics-recording-only",
                // Nothing but loopback resolves, so nothing can leave the machine by name.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                "--window-size=1280,1100",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts (apt install chromium)");
        // Chromium writes the port it picked into the profile.
        let active = profile.path().join("DevToolsActivePort");
        let port = wait_for("chromium's DevTools port", DEADLINE, || async {
            let text = std::fs::read_to_string(&active).ok()?;
            text.lines().next()?.trim().parse::<u16>().ok()
        })
        .await
        .unwrap();
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// Opens a tab on `url` and connects to it.
    async fn open(&self, url: &str) -> Page {
        let mut browser = Cdp::connect(&self.browser_ws_url().await).await;
        let target = browser
            .call("Target.createTarget", serde_json::json!({"url": url}))
            .await
            .unwrap();
        let id = target["targetId"].as_str().unwrap().to_owned();
        let page = Cdp::connect(&format!("ws://127.0.0.1:{}/devtools/page/{id}", self.port)).await;
        Page {
            cdp: tokio::sync::Mutex::new(page),
        }
    }

    async fn browser_ws_url(&self) -> String {
        let version: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{}/json/version", self.port))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        version["webSocketDebuggerUrl"].as_str().unwrap().to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and its renderer, GPU and zygote helpers.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools protocol connection: numbered calls, events skipped.
struct Cdp {
    ws: Ws,
    next: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (ws, _) = ClientBuilder::new()
            .uri(url)
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("DevTools websocket {url}: {e}"));
        Cdp { ws, next: 0 }
    }

    async fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        self.next += 1;
        let id = self.next;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(DEADLINE, async {
            while let Some(m) = self.ws.next().await {
                let m = m.map_err(|e| e.to_string())?;
                let Some(text) = m.as_text() else { continue };
                let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
                if v["id"] == id {
                    return Ok(v);
                }
            }
            Err("DevTools connection closed".to_owned())
        })
        .await
        .map_err(|_| format!("{method}: no answer within {DEADLINE:?}"))??;
        if !answer["error"].is_null() {
            return Err(format!("{method}: {}", answer["error"]));
        }
        Ok(answer["result"].clone())
    }
}

/// A tab (shared by the polling closures, hence the lock).
struct Page {
    cdp: tokio::sync::Mutex<Cdp>,
}

impl Page {
    /// Evaluates `expression` in the page and returns its value, or the exception.
    async fn eval(&self, expression: &str) -> Result<serde_json::Value, String> {
        let r = self
            .cdp
            .lock()
            .await
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "returnByValue": true}),
            )
            .await?;
        if let Some(x) = r.get("exceptionDetails") {
            return Err(format!("exception: {x}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Sets the viewport (CSS pixels).
    async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.cdp
            .lock()
            .await
            .call(
                "Emulation.setDeviceMetricsOverride",
                serde_json::json!({"width": width, "height": height,
                    "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await
            .unwrap();
    }

    /// A PNG of the whole page.
    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let r = self
            .cdp
            .lock()
            .await
            .call(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}

/// What the test reads from the page.
const VIEW: &str = r#"JSON.stringify({
  sites: Object.fromEntries([...document.querySelectorAll('[data-site]')]
    .map(c => [c.dataset.site, c.dataset.verdict])),
  current: Object.fromEntries([...document.querySelectorAll('[data-namespace]')]
    .map(c => [c.dataset.namespace, c.querySelector('.current') && c.querySelector('.current').dataset.target])),
  leader: document.getElementById('leader').textContent,
  admin: !document.getElementById('global-actions').hidden,
  timeline: [...document.querySelectorAll('#timeline li')].map(li => li.textContent),
  hash: location.hash,
  stored: sessionStorage.getItem('sitewarden.token') !== null,
  overflow: document.documentElement.scrollWidth > window.innerWidth,
})"#;

async fn view(page: &Page) -> Result<serde_json::Value, String> {
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
            decisions: two_site::decisions(Some(TEST_POLICY), NAME),
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

/// Where `SITEWARDEN_SCREENSHOT` asks for the PNG (relative to the workspace root).
fn screenshot_path() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("SITEWARDEN_SCREENSHOT")?);
    Some(if p.is_absolute() {
        p
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_site1_go_down_and_mail_move_to_site2() {
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

    let healthy = wait_for(
        "both sites up on the page",
        Duration::from_secs(30),
        || async {
            let v = view(&tab).await.ok()?;
            (v["sites"]["site1"] == "up" && v["sites"]["site2"] == "up").then_some(v)
        },
    )
    .await;
    let healthy = match healthy {
        Ok(v) => v,
        Err(e) => panic!(
            "{e}; the page shows {:?} at {:?}",
            view(&tab).await,
            tab.eval("location.href + ' ' + document.title + ' ' + document.body.innerText")
                .await
        ),
    };
    assert_eq!(healthy["current"][NAME], "mail-rr.example.com", "{healthy}");
    assert_eq!(
        healthy["hash"], "",
        "the token is dropped from the address bar"
    );
    assert_eq!(healthy["stored"], true, "{healthy}");
    assert_eq!(
        healthy["admin"], true,
        "an admin token shows the override actions"
    );
    assert!(
        healthy["leader"].as_str().unwrap().contains("leader ctl-"),
        "{healthy}"
    );

    for cas in &lab.cas[..2] {
        cas.set(Behaviour::Down).await.unwrap();
    }
    let moved = wait_for("site1 down and mail on site2", DEADLINE, || async {
        let v = view(&tab).await.ok()?;
        (v["sites"]["site1"] == "down"
            && v["sites"]["site2"] == "up"
            && v["current"][NAME] == "mail-site2.example.com")
            .then_some(v)
    })
    .await;
    let moved = match moved {
        Ok(v) => v,
        Err(e) => panic!("{e}; the page shows {:?}", view(&tab).await),
    };
    assert_eq!(
        lab.provider.record(NAME).and_then(|r| r.content).as_deref(),
        Some("mail-site2.example.com")
    );
    let timeline = moved["timeline"].as_array().unwrap();
    assert!(
        timeline
            .iter()
            .any(|l| l.as_str().unwrap().contains("site site1:")
                && l.as_str().unwrap().ends_with("→ down")),
        "the timeline tells the story: {timeline:?}"
    );

    // A phone-sized screen: the grid folds to one column, nothing scrolls sideways.
    tab.viewport(390, 844, true).await;
    let narrow = wait_for("a phone layout", DEADLINE, || async {
        let v = view(&tab).await.ok()?;
        (v["overflow"] == false).then_some(v)
    })
    .await;
    assert!(narrow.is_ok(), "{:?}", view(&tab).await);

    if let Some(path) = screenshot_path() {
        tab.viewport(1280, 1100, false).await;
        let png = tab.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(&path, png).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
