//! A real BIND (`named`) primary for tests: one zone on a random loopback port, updatable with a
//! TSIG key.
//!
//! [`Bind::start`] writes `named.conf`, the zone file and the key into a temporary directory and
//! runs `named -g` (foreground, logging to stderr, which goes to `named.log` in that directory)
//! with one worker thread. Everything `named` writes — the journal (`<zone>.db.jnl`), the pid
//! and session-key files, managed keys — stays in the temp dir, which is removed on drop after
//! the process is killed. The zone allows dynamic UPDATE signed with [`Bind::key_name`]
//! (`allow-update { key … }`); recursion and notifies are off, so nothing leaves loopback.
//!
//! Helpers query it with `dig` ([`Bind::cname`], [`Bind::txt`]) and change it behind the
//! provider's back with `nsupdate` ([`Bind::nsupdate`]), as an administrator would. As root,
//! `named -g` stays root (no `-u`), which is what a test wants.
//!
//! The binary is `$NAMED_BIN`, else `named` on `PATH`, else `/usr/sbin/named` (Debian `bind9`).

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::nats_server::free_port;

/// How long `named` may take to load its zone and answer.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// The TSIG key name the test zone accepts updates from.
pub const KEY_NAME: &str = "sitewarden-test";

/// The test key's secret (base64 of 32 bytes). A test fixture, not a credential.
pub const KEY_SECRET: &str = "c2l0ZXdhcmRlbi10ZXN0LWtleS0zMi1ieXRlcy1sb25n";

/// A different, well-formed secret for the same key name: UPDATEs signed with it are refused.
pub const WRONG_SECRET: &str = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3I=";

/// One running `named`, primary for one zone.
#[derive(Debug)]
pub struct Bind {
    /// Config, zone, journal, pid and log; removed on drop.
    dir: TempDir,
    /// UDP and TCP port on 127.0.0.1.
    port: u16,
    /// The zone apex, without the trailing dot.
    zone: String,
    /// The process.
    child: Mutex<Option<Child>>,
}

impl Bind {
    /// Starts `named` as primary of `zone` holding `records` (zone-file lines relative to the
    /// apex, e.g. `"mail 300 IN CNAME mail-rr"`), plus SOA, NS and the nameserver's A record.
    /// Returns once the zone answers.
    pub async fn start(zone: &str, records: &[&str]) -> anyhow::Result<Self> {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let dir = tempfile::Builder::new()
            .prefix("sitewarden-bind-")
            .tempdir()
            .context("creating a temp dir for named")?;
        let bind = Bind {
            dir,
            port: free_port(),
            zone,
            child: Mutex::new(None),
        };
        std::fs::write(bind.zone_path(), bind.zone_file(records))
            .context("writing the zone file")?;
        std::fs::write(bind.config_path(), bind.config()).context("writing named.conf")?;
        bind.spawn()?;
        bind.wait_answering().await?;
        Ok(bind)
    }

    fn zone_file(&self, records: &[&str]) -> String {
        let mut z = format!(
            "$ORIGIN {zone}.\n$TTL 300\n\
             @ IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 1209600 60\n\
             @ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n",
            zone = self.zone
        );
        for r in records {
            z.push_str(r);
            z.push('\n');
        }
        z
    }

    fn config(&self) -> String {
        let dir = self.dir.path().display();
        format!(
            r#"options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    dump-file "{dir}/named_dump.db";
    statistics-file "{dir}/named.stats";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-transfer {{ none; }};
    minimal-responses yes;
}};
controls {{ }};
key "{key}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};
zone "{zone}" {{
    type primary;
    file "{zone_file}";
    journal "{zone_file}.jnl";
    allow-update {{ key "{key}"; }};
}};
"#,
            port = self.port,
            key = KEY_NAME,
            secret = KEY_SECRET,
            zone = self.zone,
            zone_file = self.zone_path().display(),
        )
    }

    fn spawn(&self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the named log")?;
        let log2 = log.try_clone().context("duplicating the log handle")?;
        let bin = binary();
        let child = Command::new(&bin)
            .arg("-g")
            .arg("-n")
            .arg("1")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}; install it with `apt-get install bind9` or set NAMED_BIN",
                    bin.display()
                )
            })?;
        *self.lock() = Some(child);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn wait_answering(&self) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if self.has_exited() {
                return Err(self.failure("exited during start-up"));
            }
            if let Ok(soa) = self.dig(&self.zone, "SOA").await
                && !soa.is_empty()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(self.failure(&format!("did not answer within {START_DEADLINE:?}")));
            }
            tokio::time::sleep(crate::POLL_INTERVAL).await;
        }
    }

    fn has_exited(&self) -> bool {
        match self.lock().as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "named (port {}) {what}; log {}:\n{}",
            self.port,
            self.log_path().display(),
            self.log_tail(30)
        )
    }

    /// The server's address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The zone apex, without the trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The TSIG key name the zone accepts updates from.
    pub fn key_name(&self) -> &'static str {
        KEY_NAME
    }

    /// The generated `named.conf`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("named.conf")
    }

    /// The zone file (its journal is this path plus `.jnl`).
    pub fn zone_path(&self) -> PathBuf {
        self.dir.path().join(format!("{}.db", self.zone))
    }

    /// `named`'s stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("named.log")
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The temp dir holding everything `named` writes.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `dig +short` for `name`/`rtype` over TCP: the answer lines (empty for none).
    pub async fn dig(&self, name: &str, rtype: &str) -> anyhow::Result<Vec<String>> {
        let out = Command::new("dig")
            .args([
                "+short",
                "+tcp",
                "+norecurse",
                "+time=2",
                "+tries=1",
                "-p",
                &self.port.to_string(),
                "@127.0.0.1",
                name,
                rtype,
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running dig (apt-get install bind9-dnsutils)")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.starts_with(";;") {
            bail!(
                "dig {name} {rtype} @127.0.0.1:{} failed: {text}{}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text.lines().map(str::to_owned).collect())
    }

    /// The CNAME target of `name` (no trailing dot), or `None`.
    pub async fn cname(&self, name: &str) -> anyhow::Result<Option<String>> {
        let lines = self.dig(name, "CNAME").await?;
        Ok(lines
            .first()
            .map(|l| l.trim_end_matches('.').to_ascii_lowercase()))
    }

    /// The texts of the TXT records at `name` (quotes removed, strings joined).
    pub async fn txt(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let lines = self.dig(name, "TXT").await?;
        Ok(lines
            .iter()
            .map(|l| {
                l.split('"')
                    .enumerate()
                    .filter(|(i, _)| i % 2 == 1)
                    .map(|(_, s)| s)
                    .collect::<String>()
            })
            .collect())
    }

    /// Runs `nsupdate` signed with the zone's key (`secret` = [`KEY_SECRET`] for an accepted
    /// update) on `commands` (e.g. `"update delete mail.example.com CNAME\nupdate add …"`);
    /// `server`, `zone` and `send` are added. Fails with nsupdate's output when it fails.
    pub async fn nsupdate(&self, secret: &str, commands: &str) -> anyhow::Result<()> {
        let script = format!(
            "server 127.0.0.1 {port}\nzone {zone}\nkey hmac-sha256:{key} {secret}\n{commands}\nsend\n",
            port = self.port,
            zone = self.zone,
            key = KEY_NAME,
        );
        let mut child = Command::new("nsupdate")
            .arg("-v")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running nsupdate (apt-get install bind9-dnsutils)")?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("nsupdate has no stdin"))?;
        stdin.write_all(script.as_bytes()).await?;
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
            .await
            .context("nsupdate did not finish within 15s")??;
        if !out.status.success() {
            bail!(
                "nsupdate failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The zone's SOA serial (it grows with every applied UPDATE).
    pub async fn serial(&self) -> anyhow::Result<u32> {
        let soa = self.dig(&self.zone, "SOA").await?;
        soa.first()
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no SOA serial in {soa:?}"))
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        if let Some(child) = self.lock().as_mut() {
            child.start_kill().ok();
        }
    }
}

/// The `named` binary the harness runs.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NAMED_BIN") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("named");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/sbin/named")
}
