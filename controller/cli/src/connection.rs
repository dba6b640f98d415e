//! Where the CLI finds its controllers and its token.
//!
//! Precedence, highest first: the `--url` / `--token` flags, the `SITEWARDEN_URL` /
//! `SITEWARDEN_TOKEN` environment variables (clap fills both into the same fields), then the
//! config file (`--config`, `SITEWARDEN_CLI_CONFIG`, or `~/.config/sitewarden/cli.toml`), then the
//! controller's default listen address for the URL. The token is held as a [`SecretString`] and
//! never appears in an error, a log line or `Debug` output.

use std::path::{Path, PathBuf};

use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use sitewarden_contract::config::secret::SecretRef;

use super::{Exit, Failure};

/// Used when no URL is given anywhere: the controller's default `[controller] listen`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9465";

/// `cli.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliFile {
    /// One controller URL or both of the pair, tried in order.
    #[serde(default)]
    pub url: Option<Urls>,
    /// Where the token comes from: `{ env = "…" }` or `{ file = "…" }`.
    #[serde(default)]
    pub token: Option<SecretRef>,
}

/// `url = "…"` or `url = ["…", "…"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Urls {
    /// One controller.
    One(String),
    /// Several, tried in order.
    Many(Vec<String>),
}

impl Urls {
    fn into_vec(self) -> Vec<String> {
        match self {
            Urls::One(u) => vec![u],
            Urls::Many(v) => v,
        }
    }
}

/// The resolved controllers and token.
pub struct Connection {
    /// Controller base URLs, tried in order.
    pub urls: Vec<Url>,
    /// The bearer token, if any.
    pub token: Option<SecretString>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("urls", &self.urls)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The default config file: `$XDG_CONFIG_HOME/sitewarden/cli.toml` or
/// `~/.config/sitewarden/cli.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("sitewarden").join("cli.toml"))
}

fn usage(message: String) -> Failure {
    Failure::new(Exit::Usage, message)
}

/// Reads a config file; a missing file is an error only when it was named explicitly.
pub fn read_file(path: &Path, explicit: bool) -> Result<CliFile, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(CliFile::default());
        }
        Err(e) => {
            return Err(usage(format!(
                "cannot read the CLI config {}: {e}",
                path.display()
            )));
        }
    };
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .map(|l| format!(" line {l}"))
            .unwrap_or_default();
        usage(format!(
            "CLI config {}{line}: {}; expected `url = \"http://controller:9465\"` and `token = {{ file = \"/path/to/token\" }}` or `token = {{ env = \"VAR\" }}` (a token written into the file itself is not accepted: it would be one `cat` away from anyone who can read the file)",
            path.display(),
            redact_quoted(e.message())
        ))
    })
}

/// `message` with every quoted string replaced: a parse error quotes the value it could not
/// read, which may be a token.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let mut inside = true;
    for part in parts {
        out.push('"');
        out.push_str(if inside { "[value not shown]" } else { part });
        inside = !inside;
    }
    out
}

/// Parses one controller URL; `host:port` gets `http://`. Credentials in the URL are refused
/// (they would show up in messages).
pub fn parse_url(raw: &str) -> Result<Url, Failure> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        usage(format!(
            "controller URL {raw:?} is not a URL ({e}); write it like http://127.0.0.1:9465"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage(format!(
            "controller URL {raw:?}: use http:// or https://"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(usage(
            "a controller URL must not carry credentials; give the token with --token or SITEWARDEN_TOKEN"
                .to_owned(),
        ));
    }
    Ok(url)
}

/// Resolves the connection from the flags (or environment, already merged by clap) and the
/// config file.
pub fn resolve(
    flag_urls: &[String],
    flag_token: Option<&str>,
    file: CliFile,
) -> Result<Connection, Failure> {
    let raw_urls: Vec<String> = if !flag_urls.is_empty() {
        flag_urls.to_vec()
    } else if let Some(u) = file.url {
        u.into_vec()
    } else {
        vec![DEFAULT_URL.to_owned()]
    };
    let urls = raw_urls
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(usage(
            "no controller URL: give --url, set SITEWARDEN_URL or write `url` in cli.toml".into(),
        ));
    }
    let token = match flag_token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => Some(SecretString::from(t.to_owned())),
        None => match file.token {
            Some(r) => Some(
                r.resolve()
                    .map_err(|e| usage(format!("cli.toml `token`: {e}")))?,
            ),
            None => None,
        },
    };
    Ok(Connection { urls, token })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_token_written_into_the_file_is_refused_without_being_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cli.toml");
        std::fs::write(
            &path,
            "url = \"http://ctl-a:9465\"\ntoken = \"demo-secret-4b1d8e0c\"\n",
        )
        .unwrap();
        let e = read_file(&path, true).unwrap_err().to_string();
        assert!(!e.contains("demo-secret"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("token = { file = "), "says what to write: {e}");
    }

    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "from-file-token-123\n").unwrap();
        let text = format!(
            "url = [\"ctl-a:9465\", \"https://ctl-b:9465/\"]\ntoken = {{ file = {:?} }}\n",
            tok.display()
        );
        let path = dir.path().join("cli.toml");
        std::fs::write(&path, text).unwrap();

        let c = resolve(&[], None, read_file(&path, true).unwrap()).unwrap();
        assert_eq!(c.urls[0].as_str(), "http://ctl-a:9465/");
        assert_eq!(c.urls[1].as_str(), "https://ctl-b:9465/");
        assert_eq!(
            c.token.as_ref().unwrap().expose_secret(),
            "from-file-token-123"
        );
        assert!(!format!("{c:?}").contains("from-file"));

        let c = resolve(
            &["http://10.0.0.1:1".into()],
            Some("flag-token"),
            read_file(&path, true).unwrap(),
        )
        .unwrap();
        assert_eq!(c.urls.len(), 1);
        assert_eq!(c.token.unwrap().expose_secret(), "flag-token");

        let c = resolve(&[], None, CliFile::default()).unwrap();
        assert_eq!(c.urls[0].as_str(), "http://127.0.0.1:9465/");
        assert!(c.token.is_none());
    }

    #[test]
    fn bad_files_and_urls_are_usage_errors_that_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cli.toml");
        std::fs::write(&path, "colour = \"red\"\n").unwrap();
        let e = read_file(&path, true).unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("colour"), "{}", e.message);
        assert!(read_file(&dir.path().join("absent.toml"), false).is_ok());
        assert_eq!(
            read_file(&dir.path().join("absent.toml"), true)
                .unwrap_err()
                .exit,
            Exit::Usage
        );
        let e = parse_url("http://user:secret-pass@ctl:9465").unwrap_err();
        assert!(!e.message.contains("secret-pass"));
        assert_eq!(parse_url("ftp://x").unwrap_err().exit, Exit::Usage);
    }
}
