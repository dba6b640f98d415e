//! `sitewarden-lab-exchange`: emulated Exchange client-access servers as a process of their own,
//! for labs that run the packaged agents and controllers (`tests/deploy/run`).
//!
//! Serves each `--server NAME=ADDR:PORT=BACKEND_FQDN` over HTTPS with the given certificate and
//! key (PEM, e.g. issued by an `openssl` throw-away CA), answering like a healthy Exchange 2019
//! server (healthcheck.htm, anonymous ActiveSync OPTIONS → 401). Prints one `listening` line per
//! server, then runs until SIGTERM or SIGINT. A lab makes a site's servers die by killing this
//! process: connections are then refused, as from a dead server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sitewarden_tests::exchange::{ExchangeOptions, ExchangeServer, TlsIdentity};

/// Emulated Exchange client-access servers (HTTPS) until SIGTERM.
#[derive(Parser)]
#[command(name = "sitewarden-lab-exchange")]
struct Args {
    /// Server certificate (PEM); its SAN names are what the servers present.
    #[arg(long)]
    cert: PathBuf,
    /// The certificate's private key (PEM, PKCS#8).
    #[arg(long)]
    key: PathBuf,
    /// The CA that signed the certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// `NAME=ADDR:PORT=BACKEND_FQDN`, e.g. `cas1=10.1.0.11:443=EXCH-SITE1-1.CONTOSO.LOCAL`.
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
}

/// One `--server` value.
struct ServerSpec {
    /// Name printed in the log line.
    name: String,
    /// Listen address.
    addr: SocketAddr,
    /// Backend FQDN reported in healthcheck bodies.
    fqdn: String,
}

fn parse_spec(text: &str) -> anyhow::Result<ServerSpec> {
    let mut parts = text.splitn(3, '=');
    let (Some(name), Some(addr), Some(fqdn)) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("--server {text:?}: expected NAME=ADDR:PORT=BACKEND_FQDN");
    };
    let addr = addr
        .parse()
        .with_context(|| format!("--server {text:?}: {addr:?} is not ADDR:PORT"))?;
    Ok(ServerSpec {
        name: name.to_owned(),
        addr,
        fqdn: fqdn.to_owned(),
    })
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let identity = TlsIdentity::from_pem(&read(&args.cert)?, &read(&args.key)?, &read(&args.ca)?)?;
    let specs = args
        .servers
        .iter()
        .map(|s| parse_spec(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut running = Vec::new();
    for spec in specs {
        let server = ExchangeServer::start(
            ExchangeOptions::new(&spec.fqdn)
                .with_bind(spec.addr)
                .with_tls(identity.clone()),
        )
        .await?;
        println!(
            "listening {} https://{} ({}; names {})",
            spec.name,
            server.addr(),
            spec.fqdn,
            identity.names().join(",")
        );
        running.push(server);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("stopping {} servers", running.len());
    Ok(())
}
