//! Where the Route 53 provider's AWS credentials come from, read once when it is built.
//!
//! In order: the `[provider]` table (`aws_access_key_id` and `aws_secret_access_key`, optionally
//! `aws_session_token`, each `{ env = "…" }` or `{ file = "…" }`); else the standard environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); else the shared
//! credentials file (`$AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`), profile
//! `$AWS_PROFILE` or `default`. Instance roles (IMDS), SSO and `credential_process` are not
//! read: they need the SDK this provider deliberately avoids (see [`super`]). Errors name the
//! variable, file or profile — never a value.

use std::path::PathBuf;

use secrecy::SecretString;
use sitewarden_shared::config::secret::SecretRef;

/// One set of AWS credentials. No `Debug`: it holds the secret key.
pub struct AwsCredentials {
    /// The access key id (`AKIA…` or `ASIA…`).
    pub access_key_id: SecretString,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    pub session_token: Option<SecretString>,
}

/// Where to read credentials from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Configured sources for each part.
    Configured {
        /// `aws_access_key_id`.
        access_key_id: SecretRef,
        /// `aws_secret_access_key`.
        secret_access_key: SecretRef,
        /// `aws_session_token`, when the credentials are temporary.
        session_token: Option<SecretRef>,
    },
    /// The AWS environment variables, else the shared credentials file.
    Default,
}

impl CredentialSource {
    /// Reads the credentials. The error says where it looked and what to do.
    pub fn resolve(&self) -> Result<AwsCredentials, String> {
        match self {
            Self::Configured {
                access_key_id,
                secret_access_key,
                session_token,
            } => Ok(AwsCredentials {
                access_key_id: access_key_id
                    .resolve()
                    .map_err(|e| format!("aws_access_key_id: {e}"))?,
                secret_access_key: secret_access_key
                    .resolve()
                    .map_err(|e| format!("aws_secret_access_key: {e}"))?,
                session_token: session_token
                    .as_ref()
                    .map(|t| t.resolve().map_err(|e| format!("aws_session_token: {e}")))
                    .transpose()?,
            }),
            Self::Default => from_environment().map_or_else(from_shared_file, Ok),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn from_environment() -> Option<AwsCredentials> {
    let id = env("AWS_ACCESS_KEY_ID")?;
    let secret = env("AWS_SECRET_ACCESS_KEY")?;
    Some(AwsCredentials {
        access_key_id: SecretString::from(id),
        secret_access_key: SecretString::from(secret),
        session_token: env("AWS_SESSION_TOKEN").map(SecretString::from),
    })
}

fn shared_file() -> Option<PathBuf> {
    if let Some(p) = env("AWS_SHARED_CREDENTIALS_FILE") {
        return Some(PathBuf::from(p));
    }
    env("HOME").map(|h| PathBuf::from(h).join(".aws").join("credentials"))
}

fn from_shared_file() -> Result<AwsCredentials, String> {
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    let Some(path) = shared_file() else {
        return Err(
            "no AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and there is \
             no HOME for ~/.aws/credentials; set them, or configure aws_access_key_id and \
             aws_secret_access_key"
                .into(),
        );
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and {} \
             cannot be read ({e}); set them, or configure aws_access_key_id and \
             aws_secret_access_key",
            path.display()
        )
    })?;
    parse_profile(&text, &profile).ok_or_else(|| {
        format!(
            "{} has no profile [{profile}] with aws_access_key_id and aws_secret_access_key \
             (profile from AWS_PROFILE, default \"default\")",
            path.display()
        )
    })
}

/// The credentials of `[profile]` in an AWS shared credentials (INI) file.
pub fn parse_profile(text: &str, profile: &str) -> Option<AwsCredentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    Some(AwsCredentials {
        access_key_id: SecretString::from(id.filter(|v| !v.is_empty())?),
        secret_access_key: SecretString::from(secret.filter(|v| !v.is_empty())?),
        session_token: token.filter(|v| !v.is_empty()).map(SecretString::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_named_profile_is_read() {
        let text = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d3f\n\n\
                    # ops\n[ops]\naws_access_key_id=AKIAOPS\naws_secret_access_key=0p5\n\
                    aws_session_token = t0k\n";
        let d = parse_profile(text, "default").unwrap();
        assert_eq!(d.access_key_id.expose_secret(), "AKIADEFAULT");
        assert!(d.session_token.is_none());
        let o = parse_profile(text, "ops").unwrap();
        assert_eq!(o.secret_access_key.expose_secret(), "0p5");
        assert_eq!(
            o.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("t0k".into())
        );
        assert!(parse_profile(text, "missing").is_none());
        assert!(parse_profile("[default]\naws_access_key_id = A\n", "default").is_none());
    }

    #[test]
    fn configured_sources_name_the_key_on_failure() {
        let s = CredentialSource::Configured {
            access_key_id: SecretRef {
                env: Some("SITEWARDEN_TEST_SURELY_UNSET_VAR".into()),
                file: None,
            },
            secret_access_key: SecretRef {
                env: None,
                file: Some("/nonexistent".into()),
            },
            session_token: None,
        };
        let err = s.resolve().err().unwrap_or_default();
        assert!(err.starts_with("aws_access_key_id:"), "{err}");
        assert!(err.contains("SITEWARDEN_TEST_SURELY_UNSET_VAR"), "{err}");
    }
}
