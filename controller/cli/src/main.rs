//! `sitewarden`: the operator CLI. Parses arguments, runs [`sitewarden_cli::run`]
//! on a small runtime, prints the result and exits with the CLI's exit code (0 ok, 1 refused,
//! 2 usage, 3 unreachable, 4 auth; see `docs/cli.md`).

// Functions stay short enough to read and test on their own (threshold in clippy.toml);
// documentation is part of the API; product code never unwraps.
#![warn(clippy::too_many_lines, missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use sitewarden_cli::{self as cli, Cli, Exit};

fn main() -> ExitCode {
    if let Some(code) =
        sitewarden_contract::manual::generate_if_asked(<Cli as clap::CommandFactory>::command)
    {
        return code;
    }
    // clap prints usage errors itself and exits 2 (0 for --help and --version).
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sitewarden: cannot start: {e}");
            return ExitCode::from(Exit::Refused.code());
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`sitewarden history | head`) is not an error worth reporting.
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("sitewarden: {f}");
            ExitCode::from(f.exit.code())
        }
    }
}
