//! The peers' configurations for `peers`: gdnsd 3.8 and PowerDNS Authoritative 4.7 (Debian 12's
//! packages), at their defaults and tuned to a 2 s interval and 3 failures as far as their knobs
//! go. Both run as this process's children on loopback, unprivileged, in a temporary directory.
//!
//! Knobs in the packaged versions (read from their man pages and sources):
//! - **gdnsd 3.8.1** `http_status` service type: `interval` (default 10 s; the binary accepts
//!   2–3600), `timeout` (interval/2), `down_thresh` (10 failures, not necessarily in a row
//!   unless `ok_thresh` successes reset the count), `ok_thresh` (10), `up_thresh` (20 successes
//!   in a row to come back). `metafo` over two datacenters is the active/passive plugin; each
//!   datacenter is a `multifo` group, which stays up while half its addresses are (one of two).
//!   A DYNA record's TTL is a maximum and minimum (`60/60` pins it). gdnsd checks every address
//!   once before it answers and batches state changes into one update a second.
//! - **PowerDNS 4.7.3** LUA records: `lua-health-checks-interval` (default 5 s, global),
//!   `lua-health-checks-expire-delay` (3600 s); per call `timeout` (2 s), `selector`,
//!   `backupSelector`. No failure threshold: one failed check marks an address down and one
//!   good check up again (`minimumFailures` and a per-call `interval` arrive in 5.0). Checks
//!   start at the first query for the name; LUA answers are never packet-cached.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// Debian's unbound.
pub const UNBOUND: &str = "/usr/sbin/unbound";
/// The short TTL of the resolver measurements, seconds.
pub const SHORT_TTL: u32 = 5;

/// Writes gdnsd's config directory into `dir` for `dns` (where it answers), site1's and
/// site2's servers (one port for all), a DYNA record TTL of `ttl`; returns its probe interval.
pub fn gdnsd(
    dir: &Path,
    dns: SocketAddr,
    site1: [SocketAddr; 2],
    site2: [SocketAddr; 2],
    ttl: u32,
    tuned: bool,
) -> anyhow::Result<Duration> {
    let port = site1[0].port();
    let (knobs, interval) = if tuned {
        (
            "    interval => 2\n    timeout => 1\n    down_thresh => 3\n    ok_thresh => 1\n    up_thresh => 3\n",
            2,
        )
    } else {
        ("", 10)
    };
    let d = dir.display();
    std::fs::create_dir_all(dir.join("zones"))?;
    std::fs::create_dir_all(dir.join("state"))?;
    let config = format!(
        r#"options => {{
  listen => [ {dns} ]
  run_dir => {d}/run
  state_dir => {d}/state
  udp_threads => 1
  tcp_threads => 1
}}
service_types => {{
  cas_http => {{
    plugin => http_status
    port => {port}
    url_path => /owa/healthcheck.htm
    ok_codes => [ 200 ]
{knobs}  }}
}}
plugins => {{
  metafo => {{
    resources => {{
      mail => {{
        datacenters => [ site1, site2 ]
        service_types => [ cas_http ]
        dcmap => {{
          site1 => {{ s1a => {a}, s1b => {b} }}
          site2 => {{ s2a => {c}, s2b => {e} }}
        }}
      }}
    }}
  }}
}}
"#,
        a = site1[0].ip(),
        b = site1[1].ip(),
        c = site2[0].ip(),
        e = site2[1].ip(),
    );
    std::fs::write(dir.join("config"), config)?;
    std::fs::write(
        dir.join("zones/example.com"),
        format!(
            "$TTL 300\n@ 30 SOA ns1 hostmaster 1 7200 1800 259200 30\n@ NS ns1\nns1 A 127.0.0.1\nmail {ttl}/{ttl} DYNA metafo!mail\n"
        ),
    )?;
    Ok(Duration::from_secs(interval))
}

/// Runs gdnsd in the foreground on the directory [`gdnsd`] wrote.
pub fn gdnsd_command(dir: &Path) -> Command {
    let mut c = Command::new("/usr/sbin/gdnsd");
    c.arg("-c").arg(dir).arg("start");
    c
}

/// Writes PowerDNS's config directory into `dir` (bind backend, one LUA `ifurlup` record with
/// site1's and site2's addresses as two groups); returns its health-check interval.
pub fn pdns(
    dir: &Path,
    dns: SocketAddr,
    site1: [SocketAddr; 2],
    site2: [SocketAddr; 2],
    ttl: u32,
    tuned: bool,
) -> anyhow::Result<Duration> {
    let port = site1[0].port();
    let d = dir.display();
    let interval = if tuned { 2 } else { 5 };
    let (global, call) = if tuned {
        ("lua-health-checks-interval=2\n", ", timeout='1'")
    } else {
        ("", "")
    };
    std::fs::write(
        dir.join("pdns.conf"),
        format!(
            "launch=bind\nbind-config={d}/named.conf\nenable-lua-records=yes\n\
             local-address={ip}\nlocal-port={p}\nsocket-dir={d}\ndaemon=no\nguardian=no\n\
             write-pid=no\ndisable-syslog=yes\nloglevel=4\nsecurity-poll-suffix=\n{global}",
            ip = dns.ip(),
            p = dns.port(),
        ),
    )?;
    std::fs::write(
        dir.join("named.conf"),
        format!(
            "options {{ directory \"{d}\"; }};\nzone \"example.com\" {{ type master; file \"{d}/example.com.zone\"; }};\n"
        ),
    )?;
    std::fs::write(
        dir.join("example.com.zone"),
        format!(
            "$TTL 300\n@ 30 IN SOA ns1 hostmaster 1 7200 1800 259200 30\n@ IN NS ns1\nns1 IN A 127.0.0.1\n\
             mail {ttl} IN LUA A ( \"ifurlup('http://mail.example.com:{port}/owa/healthcheck.htm', \"\n  \
             \"{{{{'{a}','{b}'}},{{'{c}','{e}'}}}}, {{selector='all', backupSelector='all'{call}}})\" )\n",
            a = site1[0].ip(),
            b = site1[1].ip(),
            c = site2[0].ip(),
            e = site2[1].ip(),
        ),
    )?;
    Ok(Duration::from_secs(interval))
}

/// Runs PowerDNS in the foreground on the directory [`pdns`] wrote.
pub fn pdns_command(dir: &Path) -> Command {
    let mut c = Command::new("/usr/sbin/pdns_server");
    c.arg(format!("--config-dir={}", dir.display()));
    c
}

/// The packaged versions, as dpkg knows them.
pub fn versions() -> String {
    std::process::Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Package} ${Version}; ",
            "gdnsd",
            "pdns-server",
            "unbound",
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_end_matches(';')
                .to_owned()
        })
        .unwrap_or_default()
}
