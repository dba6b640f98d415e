//! The secrets file beside the configuration (`/etc/sitewarden/controller.env`), for the
//! commands an operator runs by hand (`validate`, `plan`). Under systemd the unit loads it
//! (`EnvironmentFile=`); by hand nothing would, and every `{ env = "…" }` in the config would
//! be missing. So these commands read it themselves — the file beside `--config`, or
//! `--env-file` — in systemd's format (`KEY=value` lines, `#` comments, optional quotes), and
//! run again with those variables set. Values are never printed; an error names the file, the
//! line and what to fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Set in the environment of the second run, so it does not read the file again.
const LOADED: &str = "SITEWARDEN_ENV_FILE_LOADED";

/// The file to read: `explicit`, else `controller.env` beside `config` when it exists.
pub fn path_for(config: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    let beside = config.with_file_name("controller.env");
    beside.is_file().then_some(beside)
}

/// Parses systemd `EnvironmentFile=` text; an error names the line and never shows a value.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: not KEY=value (the value is not shown)",
                n + 1
            ));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "line {}: {:?} is not a variable name (letters, digits, _)",
                n + 1,
                sitewarden_shared::terminal::line(key)
            ));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.to_owned(), unquoted.to_owned());
    }
    Ok(vars)
}

/// When `file` should be read and has not been yet: runs this program again with its
/// variables set and returns that run's exit code. `None`: go on in this process.
pub fn rerun_with(file: Option<PathBuf>) -> Option<ExitCode> {
    let file = file?;
    if std::env::var_os(LOADED).is_some() {
        return None;
    }
    let fail = |why: String| {
        eprintln!("error: env file {}: {why}", file.display());
        Some(ExitCode::from(2))
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return fail(
                "permission denied; run as root or as the service user \
                 (sudo -u sitewarden sitewarden-controller …)"
                    .into(),
            );
        }
        Err(e) => return fail(e.to_string()),
    };
    let vars = match parse(&text) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(format!("cannot find this program to run it again: {e}")),
    };
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(vars)
        .env(LOADED, "1")
        .status();
    Some(match status.map(|s| s.code()) {
        Ok(Some(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Ok(None) | Err(_) => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_env_files_are_read_and_errors_never_show_a_value() {
        let vars = parse(
            "# secrets\n\nSITEWARDEN_NATS_PASSWORD=s3cret\nexport A_TOKEN=\"quoted value\"\nB='x=y'\n",
        )
        .unwrap();
        assert_eq!(vars["SITEWARDEN_NATS_PASSWORD"], "s3cret");
        assert_eq!(vars["A_TOKEN"], "quoted value");
        assert_eq!(vars["B"], "x=y");
        let e = parse("OK=1\nthis-is-the-secret-value\n").unwrap_err();
        assert!(
            e.starts_with("line 2") && !e.contains("secret-value"),
            "{e}"
        );
        let e = parse("BAD KEY=1\n").unwrap_err();
        assert!(e.contains("not a variable name"), "{e}");
    }

    #[test]
    fn the_file_beside_the_config_is_used_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("controller.toml");
        assert_eq!(path_for(&config, None), None);
        std::fs::write(dir.path().join("controller.env"), "A=1\n").unwrap();
        assert_eq!(
            path_for(&config, None),
            Some(dir.path().join("controller.env"))
        );
        let other = Path::new("/elsewhere/x.env");
        assert_eq!(path_for(&config, Some(other)), Some(other.to_owned()));
    }
}
