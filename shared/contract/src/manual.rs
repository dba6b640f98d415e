//! Man pages and shell completions, generated from each binary's own clap definition, so they
//! never drift from `--help`. Every binary answers `BINARY generate-docs --out DIR` (a packaging
//! hook, not shown in `--help`); `scripts/package` runs it and ships the result
//! (`DIR/man/*.1.gz`, `DIR/completions/`).

use std::io::Write;
use std::path::Path;

use clap_complete::Shell;

/// When the process was started as `BINARY generate-docs --out DIR`, writes the pages and
/// completions of `command()` to `DIR` and returns the exit code (0, or 1 with the error on
/// stderr); otherwise `None`, and the binary parses its arguments as usual.
pub fn generate_if_asked(
    command: impl FnOnce() -> clap::Command,
) -> Option<std::process::ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [sub, flag, dir] = args.as_slice() else {
        return None;
    };
    if sub != "generate-docs" || flag != "--out" {
        return None;
    }
    Some(match generate(command(), Path::new(dir)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: cannot write the manual to {}: {e}",
                Path::new(dir).display()
            );
            std::process::ExitCode::from(1)
        }
    })
}

/// Writes `DIR/man/NAME.1.gz` and `NAME-SUB.1.gz` for every visible subcommand, and bash, zsh
/// and fish completions under `DIR/completions/`.
pub fn generate(mut command: clap::Command, dir: &Path) -> std::io::Result<()> {
    command.build();
    let name = command.get_name().to_owned();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    write_man(&command, &man.join(format!("{name}.1.gz")))?;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let page = sub.clone().name(format!("{name}-{}", sub.get_name()));
        write_man(&page, &man.join(format!("{name}-{}.1.gz", sub.get_name())))?;
    }
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, &name, &completions)?;
    }
    Ok(())
}

fn write_man(command: &clap::Command, path: &Path) -> std::io::Result<()> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut roff)?;
    let file = std::fs::File::create(path)?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    gz.write_all(&roff)?;
    gz.finish()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_are_written_for_the_command_and_its_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = clap::Command::new("demo")
            .about("a demo")
            .subcommand(clap::Command::new("run").about("runs"))
            .subcommand(clap::Command::new("secret").hide(true));
        generate(cmd, dir.path()).unwrap();
        for f in [
            "man/demo.1.gz",
            "man/demo-run.1.gz",
            "completions/demo.bash",
            "completions/_demo",
            "completions/demo.fish",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        assert!(!dir.path().join("man/demo-secret.1.gz").exists());
    }
}
