//! Where the Route 53 provider's AWS credentials come from, and keeping them fresh.
//!
//! In order: the `[provider]` table (`aws_access_key_id` and `aws_secret_access_key`, optionally
//! `aws_session_token`, each `{ env = "…" }` or `{ file = "…" }`); else the standard environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); else the shared
//! credentials file (`$AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`), profile
//! `$AWS_PROFILE` or `default`. Instance roles (IMDS), SSO and `credential_process` are not
//! read: they need the SDK this provider deliberately avoids (see [`super`]). Errors name the
//! variable, file or profile — never a value.
//!
//! Temporary credentials expire, and a controller that read them once at start would meet its
//! next failover with an auth error. So the provider holds them in [`LiveCredentials`], which
//! reads its [`CredentialSource`] again (a) when Route 53 refuses the credentials — the caller
//! then retries once with the fresh ones, if they differ — and (b) before each call when the
//! credentials carry an expiry less than [`REFRESH_BEFORE_EXPIRY`] away. The expiry comes from
//! `AWS_CREDENTIAL_EXPIRATION` beside the environment credentials, or from an
//! `aws_expiration` / `x_security_token_expires` key in the profile (RFC 3339); configured
//! sources carry none and are re-read on an auth error only. A failed re-read keeps the
//! credentials in hand and is logged, never a panic.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sitewarden_shared::config::secret::SecretRef;
use tokio::time::Instant;

/// Credentials expiring sooner than this are read again before a call.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// While the source still yields credentials about to expire (its refresher has not run yet),
/// it is read again at most this often.
pub const REREAD_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// One set of AWS credentials. No `Debug`: it holds the secret key.
pub struct AwsCredentials {
    /// The access key id (`AKIA…` or `ASIA…`).
    pub access_key_id: SecretString,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    pub session_token: Option<SecretString>,
    /// When temporary credentials expire, when the source says.
    pub expires_at: Option<SystemTime>,
}

impl AwsCredentials {
    /// Long-term credentials (no session token, no expiry).
    pub fn new(access_key_id: SecretString, secret_access_key: SecretString) -> Self {
        Self {
            access_key_id,
            secret_access_key,
            session_token: None,
            expires_at: None,
        }
    }

    /// Whether these are the same credentials as `other` (compared, never shown).
    pub fn same_as(&self, other: &AwsCredentials) -> bool {
        let token = |c: &AwsCredentials| {
            c.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
        };
        self.access_key_id.expose_secret() == other.access_key_id.expose_secret()
            && self.secret_access_key.expose_secret() == other.secret_access_key.expose_secret()
            && token(self) == token(other)
    }

    /// Whether they expire within `margin` of `now` (or have expired).
    pub fn expire_within(&self, now: SystemTime, margin: Duration) -> bool {
        self.expires_at.is_some_and(|at| at <= now + margin)
    }
}

/// The provider's credentials, read again from their source when they are refused or about to
/// expire. No `Debug`: it holds the secret key.
pub struct LiveCredentials {
    /// `None` for credentials handed over as values, which cannot be read again.
    source: Option<CredentialSource>,
    /// The credentials in use.
    current: RwLock<Arc<AwsCredentials>>,
    /// When the source was last read again, to pace re-reads of credentials that stay near
    /// expiry; `None` before the first.
    last_read: Mutex<Option<Instant>>,
}

impl LiveCredentials {
    /// Reads `source` now; the error says where it looked and what to do.
    pub fn from_source(source: CredentialSource) -> Result<Self, String> {
        let first = source.resolve()?;
        Ok(Self {
            source: Some(source),
            current: RwLock::new(Arc::new(first)),
            last_read: Mutex::new(None),
        })
    }

    /// Credentials given as values (tests, embedders): used as they are, never re-read.
    pub fn fixed(credentials: AwsCredentials) -> Self {
        Self {
            source: None,
            current: RwLock::new(Arc::new(credentials)),
            last_read: Mutex::new(None),
        }
    }

    /// The credentials to sign with now, read again first when they expire within
    /// [`REFRESH_BEFORE_EXPIRY`].
    pub fn current(&self) -> Arc<AwsCredentials> {
        self.current_at(SystemTime::now())
    }

    /// [`current`](Self::current) as of the wall-clock time `now` (expiries are wall-clock).
    pub fn current_at(&self, now: SystemTime) -> Arc<AwsCredentials> {
        let held = self.held();
        if self.source.is_some() && held.expire_within(now, REFRESH_BEFORE_EXPIRY) {
            let due = {
                let mut last = self
                    .last_read
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let due = last.is_none_or(|at| at.elapsed() >= REREAD_AT_MOST_EVERY);
                if due {
                    *last = Some(Instant::now());
                }
                due
            };
            if due {
                match self.refresh() {
                    Ok(true) => tracing::info!(
                        "AWS credentials were about to expire; read fresh ones from their source"
                    ),
                    Ok(false) => tracing::warn!(
                        "AWS credentials expire within {REFRESH_BEFORE_EXPIRY:?} and their \
                         source still holds the same ones; renew them (the temporary \
                         credentials' refresher may have stopped)"
                    ),
                    Err(e) => tracing::warn!("cannot read the AWS credentials again: {e}"),
                }
                return self.held();
            }
        }
        held
    }

    /// Reads the source again. `Ok(true)` when it now holds other credentials (they are in use
    /// from now on), `Ok(false)` when the same ones or when there is no source to read.
    pub fn refresh(&self) -> Result<bool, String> {
        let Some(source) = &self.source else {
            return Ok(false);
        };
        let fresh = source.resolve()?;
        *self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let changed = !fresh.same_as(current.as_ref());
        // Even the same keys may come with a newer expiry.
        *current = Arc::new(fresh);
        Ok(changed)
    }

    fn held(&self) -> Arc<AwsCredentials> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
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
    /// One profile of an AWS shared credentials file (INI), e.g. one a credential helper
    /// rewrites as it renews temporary credentials.
    SharedFile {
        /// The file.
        path: PathBuf,
        /// The profile, e.g. `default`.
        profile: String,
    },
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
                expires_at: None,
            }),
            Self::Default => from_environment().map_or_else(from_shared_file, Ok),
            Self::SharedFile { path, profile } => from_shared_file_at(path, profile),
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
        expires_at: env("AWS_CREDENTIAL_EXPIRATION").and_then(|t| expiry(&t)),
    })
}

/// An RFC 3339 expiry (`2026-12-06T05:00:00Z`); `None` when it cannot be read, so the
/// credentials are then refreshed on an auth error only.
fn expiry(text: &str) -> Option<SystemTime> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text.trim());
    if parsed.is_err() {
        tracing::warn!(
            "AWS credential expiry {text:?} is not an RFC 3339 time; the credentials will be read \
             again only when Route 53 refuses them"
        );
    }
    parsed.ok().map(SystemTime::from)
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
    from_shared_file_at(&path, &profile)
}

/// The credentials of `[profile]` in the shared credentials file at `path`.
fn from_shared_file_at(path: &std::path::Path, profile: &str) -> Result<AwsCredentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "no AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and {} \
             cannot be read ({e}); set them, or configure aws_access_key_id and \
             aws_secret_access_key",
            path.display()
        )
    })?;
    parse_profile(&text, profile).ok_or_else(|| {
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
    let (mut id, mut secret, mut token, mut expires) = (None, None, None, None);
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
            "aws_expiration" | "x_security_token_expires" => expires = expiry(&value),
            _ => {}
        }
    }
    Some(AwsCredentials {
        access_key_id: SecretString::from(id.filter(|v| !v.is_empty())?),
        secret_access_key: SecretString::from(secret.filter(|v| !v.is_empty())?),
        session_token: token.filter(|v| !v.is_empty()).map(SecretString::from),
        expires_at: expires,
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

    /// A configured source whose key id and secret are files in `dir`, holding `id`/`secret`.
    fn file_source(dir: &std::path::Path, id: &str, secret: &str) -> CredentialSource {
        write_keys(dir, id, secret);
        CredentialSource::Configured {
            access_key_id: SecretRef {
                env: None,
                file: Some(dir.join("key-id")),
            },
            secret_access_key: SecretRef {
                env: None,
                file: Some(dir.join("secret")),
            },
            session_token: None,
        }
    }

    fn write_keys(dir: &std::path::Path, id: &str, secret: &str) {
        std::fs::write(dir.join("key-id"), format!("{id}\n")).unwrap();
        std::fs::write(dir.join("secret"), format!("{secret}\n")).unwrap();
    }

    fn key_id(c: &AwsCredentials) -> String {
        c.access_key_id.expose_secret().to_owned()
    }

    /// A shared credentials file with one `[default]` profile expiring at `expires`.
    fn write_profile(path: &std::path::Path, id: &str, expires: SystemTime) {
        let expires = chrono::DateTime::<chrono::Utc>::from(expires).to_rfc3339();
        std::fs::write(
            path,
            format!(
                "[default]\naws_access_key_id = {id}\naws_secret_access_key = s3cr3t-{id}\n\
                 aws_session_token = t0k-{id}\nx_security_token_expires = {expires}\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn refused_credentials_are_read_again_from_their_changed_source() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveCredentials::from_source(file_source(dir.path(), "AKIAOLD", "old")).unwrap();
        assert_eq!(key_id(&live.current()), "AKIAOLD");
        assert_eq!(live.refresh(), Ok(false), "the same credentials");
        write_keys(dir.path(), "AKIANEW", "new");
        assert_eq!(live.refresh(), Ok(true));
        let now = live.current();
        assert_eq!(key_id(&now), "AKIANEW");
        assert_eq!(now.secret_access_key.expose_secret(), "new");

        // A source that cannot be read any more keeps the credentials in hand.
        std::fs::remove_file(dir.path().join("secret")).unwrap();
        let err = live.refresh().unwrap_err();
        assert!(err.starts_with("aws_secret_access_key:"), "{err}");
        assert!(!err.contains("new"), "never the value: {err}");
        assert_eq!(key_id(&live.current()), "AKIANEW");

        let fixed = LiveCredentials::fixed(AwsCredentials::new(
            SecretString::from("AKIAFIXED".to_owned()),
            SecretString::from("f".to_owned()),
        ));
        assert_eq!(fixed.refresh(), Ok(false), "nothing to read again");
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_are_read_again_within_five_minutes_of_their_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let start = SystemTime::now();
        let hour = Duration::from_secs(3600);
        write_profile(&path, "ASIAFIRST", start + hour);
        let live = LiveCredentials::from_source(CredentialSource::SharedFile {
            path: path.clone(),
            profile: "default".into(),
        })
        .unwrap();
        let first = live.current_at(start);
        assert_eq!(key_id(&first), "ASIAFIRST");
        assert!(first.expires_at.is_some());
        assert_eq!(
            first
                .session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("t0k-ASIAFIRST".into())
        );

        // The helper renews the file; far from expiry nothing is read.
        write_profile(&path, "ASIASECOND", start + 2 * hour);
        assert_eq!(
            key_id(&live.current_at(start + Duration::from_secs(50 * 60))),
            "ASIAFIRST"
        );
        // Within five minutes of the expiry, the file is read again before the call.
        let at = start + hour - Duration::from_secs(4 * 60);
        assert_eq!(key_id(&live.current_at(at)), "ASIASECOND");

        // Credentials still near expiry after a re-read are read again at most every 30 s.
        let near = start + 2 * hour - Duration::from_secs(60);
        write_profile(&path, "ASIATHIRD", start + 2 * hour);
        assert_eq!(key_id(&live.current_at(near)), "ASIASECOND", "just read");
        tokio::time::advance(REREAD_AT_MOST_EVERY).await;
        assert_eq!(key_id(&live.current_at(near)), "ASIATHIRD");
        write_profile(&path, "ASIAFOURTH", start + 3 * hour);
        assert_eq!(key_id(&live.current_at(near)), "ASIATHIRD", "paced");
        tokio::time::advance(REREAD_AT_MOST_EVERY).await;
        assert_eq!(key_id(&live.current_at(near)), "ASIAFOURTH");
    }

    #[test]
    fn expiries_are_read_from_rfc3339_or_ignored() {
        assert!(expiry("2026-12-06T05:00:00Z").is_some());
        assert!(expiry(" 2026-12-06T05:00:00+01:00 ").is_some());
        assert_eq!(expiry("tomorrow"), None);
        let c = parse_profile(
            "[p]\naws_access_key_id = A\naws_secret_access_key = B\naws_expiration = 2026-01-01T00:00:00Z\n",
            "p",
        )
        .unwrap();
        assert!(c.expire_within(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            Duration::ZERO
        ));
        assert!(!c.expire_within(SystemTime::UNIX_EPOCH, Duration::from_secs(60)));
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
