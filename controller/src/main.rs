//! `sitewarden-controller` command line: `run`, `validate`, `plan`, `zone`.
//!
//! Exit codes: 0 success; 1 a runtime failure (bus or provider unreachable for `plan`, a crash
//! of `run`); 2 the configuration is invalid (nothing was started).

// Functions stay short enough to read and test on their own (threshold in clippy.toml);
// documentation is part of the API; product code never unwraps.
#![warn(clippy::too_many_lines, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::env_file;
use sitewarden_controller::provider::config::ProviderKind;
use sitewarden_controller::runtime::metrics::Metrics;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_controller::runtime::{self, Runtime};
use sitewarden_controller::settings_file::ConfigFile;
use sitewarden_shared::terminal;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "sitewarden-controller",
    version,
    about = "Decide site state and move DNS names; run as an HA pair"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller until SIGINT or SIGTERM.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/sitewarden/controller.toml")]
        config: PathBuf,
        /// Decide and audit "would apply", never write to the DNS provider.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a configuration file and exit (0 valid, 2 invalid).
    Validate {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/sitewarden/controller.toml")]
        config: PathBuf,
        /// The secrets the config names as `{ env = "…" }` (systemd's EnvironmentFile format;
        /// default: controller.env beside the config, when there is one).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Print what the leader would change now and why; changes nothing.
    Plan {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/sitewarden/controller.toml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The secrets the config names as `{ env = "…" }` (systemd's EnvironmentFile format;
        /// default: controller.env beside the config, when there is one).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Create, list and check the built-in DNS zone's records (`[provider] kind = "builtin"`),
    /// with this controller's config and NATS credentials; works before the controllers start.
    Zone {
        /// What to do.
        #[command(subcommand)]
        action: ZoneAction,
        /// Configuration file (TOML).
        #[arg(
            long,
            short,
            global = true,
            default_value = "/etc/sitewarden/controller.toml"
        )]
        config: PathBuf,
        /// The secrets the config names as `{ env = "…" }` (systemd's EnvironmentFile format;
        /// default: controller.env beside the config, when there is one).
        #[arg(long, global = true)]
        env_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ZoneAction {
    /// Print the zone as a zone file (SOA, NS and addresses from the config, CNAMEs from the
    /// bucket), then what is missing.
    List,
    /// Report every managed name without a record the server answers, each with its fix
    /// (exit 0 ready, 1 not).
    Check,
    /// Create each missing managed name at its first target (or the zone file's CNAME), making
    /// the bucket if needed; a record that exists is left as it is.
    Create {
        /// Take the names' first targets from the CNAMEs of this zone file (RFC 1035 syntax).
        #[arg(long)]
        zone_file: Option<PathBuf>,
        /// Print what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a record that no namespace manages any more.
    Remove {
        /// The name, e.g. old.failover.example.com.
        name: String,
    },
}

fn load(path: &Path) -> Result<(ControllerConfig, RuntimeSettings), ExitCode> {
    let fail = |e: sitewarden_shared::config::ConfigError| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    let file = ConfigFile::load_file(path).map_err(fail)?;
    Ok((file.decision, file.runtime))
}

fn main() -> ExitCode {
    if let Some(code) =
        sitewarden_contract::manual::generate_if_asked(<Cli as clap::CommandFactory>::command)
    {
        return code;
    }
    let cli = Cli::parse();
    // Escaped, never coloured; JSON with SITEWARDEN_LOG_FORMAT=json. The daemon logs `info`;
    // one-shot commands only warnings, so their answer stands out.
    let level = if matches!(cli.command, Command::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    sitewarden_shared::service::init_logging_at(
        sitewarden_shared::service::LogFormat::from_env(),
        level,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // By hand, nothing loads the unit's env file: validate and plan read it themselves.
    if let Command::Validate { config, env_file }
    | Command::Plan {
        config, env_file, ..
    }
    | Command::Zone {
        config, env_file, ..
    } = &cli.command
        && let Some(code) = env_file::rerun_with(env_file::path_for(config, env_file.as_deref()))
    {
        return code;
    }
    match cli.command {
        Command::Validate { config, .. } => match load(&config) {
            Ok((c, s)) => {
                println!(
                    "{}: valid ({} sites, {} agents, {} namespaces; provider {}, lease {}s)",
                    config.display(),
                    c.sites.len(),
                    c.agents.len(),
                    c.namespaces.len(),
                    s.provider.kind.name(),
                    s.lease.lease().as_secs_f32()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plan { config, json, .. } => {
            let (c, s) = match load(&config) {
                Ok(v) => v,
                Err(code) => return code,
            };
            runtime.block_on(async move {
                let provider = match runtime::plan_provider(&s).await {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::from(2);
                    }
                };
                let plan = runtime::plan::plan(c, &s, provider.as_ref()).await;
                print_plan(plan, json)
            })
        }
        Command::Zone { action, config, .. } => {
            let (c, s) = match load(&config) {
                Ok(v) => v,
                Err(code) => return code,
            };
            runtime.block_on(zone(action, &c, &s))
        }
        Command::Run { config, dry_run } => {
            let (c, mut s) = match load(&config) {
                Ok(v) => v,
                Err(code) => return code,
            };
            s.dry_run |= dry_run;
            runtime.block_on(async move {
                let provider = match &s.provider.kind {
                    // Built inside `run`: it lives in a NATS KV bucket and serves DNS itself.
                    ProviderKind::Builtin(_) => None,
                    _ => match s.provider.build() {
                        Ok(p) => Some(p),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                    },
                };
                let shutdown = CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    sitewarden_shared::shutdown::signal().await;
                    tracing::info!("shutting down");
                    stop.cancel();
                });
                let metrics = s.metrics;
                let rt = Runtime {
                    config: c,
                    settings: s,
                    provider,
                    metrics: Arc::new(Metrics::with_settings(metrics)),
                };
                match runtime::run(rt, shutdown).await {
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

/// Runs one `zone` action and prints its report; 2 for bad input, 1 for a bus failure or
/// (`check`, `list`) a zone that is not ready.
async fn zone(action: ZoneAction, c: &ControllerConfig, s: &RuntimeSettings) -> ExitCode {
    use sitewarden_controller::dns::zone_tool::{ZoneError, ZoneTool};
    let outcome = async {
        let tool = ZoneTool::connect(c, s).await?;
        match action {
            ZoneAction::List => tool.list().await,
            ZoneAction::Check => tool.check().await,
            ZoneAction::Create { zone_file, dry_run } => {
                tool.create(zone_file.as_deref(), dry_run).await
            }
            ZoneAction::Remove { name } => tool.remove(&name).await,
        }
    };
    match outcome.await {
        Ok(report) => {
            print!("{}", report.text);
            if report.problems {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                ZoneError::Input(_) => ExitCode::from(2),
                ZoneError::Bus(_) => ExitCode::from(1),
            }
        }
    }
}

/// Prints what `plan` found (text, or JSON with `--json`); the exit code says whether it could.
fn print_plan(plan: anyhow::Result<runtime::plan::Plan>, json: bool) -> ExitCode {
    match plan {
        Ok(plan) if json => {
            println!(
                "{}",
                terminal::json(&serde_json::to_string_pretty(&plan).unwrap_or_default())
            );
            ExitCode::SUCCESS
        }
        Ok(plan) => {
            println!("replayed {} events", plan.events);
            if plan.changes.is_empty() {
                println!("no changes: every managed name points where it should");
            }
            for ch in &plan.changes {
                println!(
                    "would set {} -> {} (now {}) by rule {}",
                    terminal::line(&ch.namespace.to_string()),
                    terminal::line(&ch.target.to_string()),
                    terminal::line(ch.current.as_deref().unwrap_or("no record")),
                    terminal::line(&ch.rule.to_string())
                );
            }
            for e in &plan.explanations {
                println!("\n{}", terminal::block(&e.to_string()));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
