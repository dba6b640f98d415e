//! `sitewarden-agent` command line: `run`, `validate`, `probe-once`.
//!
//! Exit codes: 0 success; 1 a probe failed (`probe-once`) or the agent stopped on an error;
//! 2 the configuration is invalid (nothing was probed).

// Documentation is part of the API; product code never unwraps.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sitewarden_agent::AgentConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "sitewarden-agent",
    version,
    about = "Probe Exchange client access and database copies; publish to NATS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGINT or SIGTERM.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/sitewarden/agent.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and exit (0 valid, 2 invalid).
    Validate {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/sitewarden/agent.toml")]
        config: PathBuf,
    },
    /// Run every check once, print a table, exit 1 if any failed.
    ProbeOnce {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/sitewarden/agent.toml")]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<AgentConfig, ExitCode> {
    AgentConfig::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    if let Some(code) =
        sitewarden_contract::manual::generate_if_asked(<Cli as clap::CommandFactory>::command)
    {
        return code;
    }
    let cli = Cli::parse();
    // Escaped, never coloured; JSON with SITEWARDEN_LOG_FORMAT=json.
    sitewarden_shared::service::init_logging(sitewarden_shared::service::LogFormat::from_env());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Validate { config } => match load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} probes, {} database-copy collectors)",
                    config.display(),
                    c.probes.len(),
                    c.dbcopy.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::ProbeOnce { config } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime.block_on(sitewarden_agent::probe_once::run(&c)) {
                Ok((table, ok)) => {
                    print!("{}", sitewarden_shared::terminal::block(&table));
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            runtime.block_on(async move {
                let shutdown = CancellationToken::new();
                let s = shutdown.clone();
                tokio::spawn(async move {
                    sitewarden_shared::shutdown::signal().await;
                    tracing::info!("shutting down");
                    s.cancel();
                });
                match sitewarden_agent::run::run(c, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ExitCode::from(1)
                    }
                }
            })
        }
    }
}
