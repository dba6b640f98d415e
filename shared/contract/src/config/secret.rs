//! Where a secret comes from: an environment variable or a file, never the config text itself.
//!
//! A config file names the *source* of a secret (`{ env = "SITEWARDEN_NATS_PASSWORD" }` or
//! `{ file = "/etc/sitewarden/nats.pass" }`), so configs can be committed and shared. The value
//! is read once at load into a [`SecretString`], whose `Debug` prints `[REDACTED]`; errors name
//! the variable or path, never the value.

use std::path::PathBuf;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;

/// A secret's source, as written in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Read the secret from this environment variable.
    #[serde(default)]
    pub env: Option<String>,
    /// Read the secret from this file (trailing newline removed).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Reads the secret. The error says which variable or file, and what to do.
    pub fn resolve(&self) -> Result<SecretString, String> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                Ok(_) => Err(format!(
                    "environment variable {var} is empty; set it to the secret"
                )),
                Err(_) => Err(format!(
                    "environment variable {var} is not set; export it or use `file = ...`"
                )),
            },
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
                let trimmed = text.trim_end_matches(['\r', '\n']);
                if trimmed.is_empty() {
                    return Err(format!("secret file {} is empty", path.display()));
                }
                Ok(SecretString::from(trimmed.to_owned()))
            }
            (Some(_), Some(_)) => Err("give either `env` or `file`, not both".into()),
            (None, None) => Err("give `env = \"VAR\"` or `file = \"/path\"`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_a_file_and_never_shows_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "hunter2\n").unwrap();
        let r = SecretRef {
            env: None,
            file: Some(p),
        };
        let s = r.resolve().unwrap();
        assert_eq!(s.expose_secret(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn missing_sources_say_what_to_do() {
        let r = SecretRef {
            env: Some("SITEWARDEN_TEST_SURELY_UNSET".into()),
            file: None,
        };
        assert!(
            r.resolve()
                .unwrap_err()
                .contains("SITEWARDEN_TEST_SURELY_UNSET is not set")
        );
        let none = SecretRef {
            env: None,
            file: None,
        };
        assert!(none.resolve().is_err());
    }
}
