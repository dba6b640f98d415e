//! Headless Chromium for the dashboard's stories: the Debian `chromium` in its own process group
//! with a throw-away profile, driven over the DevTools protocol.
//!
//! The DevTools client is the few lines below over `tokio-websockets` (already in the tree
//! through async-nats): the stories need four protocol methods, not a whole browser-automation
//! crate with its generated protocol bindings.

use std::process::Stdio;

use futures::{SinkExt, StreamExt};
use sitewarden_tests::{DEADLINE, wait_for};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium in its own process group with a throw-away profile; killed on drop.
pub struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    pub async fn launch() -> Browser {
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
    pub async fn open(&self, url: &str) -> Page {
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
pub struct Page {
    cdp: tokio::sync::Mutex<Cdp>,
}

impl Page {
    /// Evaluates `expression` in the page and returns its value, or the exception.
    pub async fn eval(&self, expression: &str) -> Result<serde_json::Value, String> {
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
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
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
    pub async fn screenshot(&self) -> Vec<u8> {
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
