//! What a sitewarden process proves to the bus, and the files it reads to do so.
//!
//! [`Auth`] holds the one authentication method a `[nats]` section chose, with its secret in a
//! [`SecretString`]. It can describe itself for an error or a log line ("user \"site1-agent1\"
//! (user/password)", "nkey UABC… (nkey)") without ever showing the secret. The file checks read
//! the TLS PEM files and the creds file the way the client will, so a missing, unreadable or
//! malformed file is reported by path at load and at connect, instead of as the client's bare
//! "TLS error" or an endless reconnect loop. [`NatsError`] is what `connect` returns: it names the
//! servers, the credential and the fix, and never contains a secret.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};

/// The authentication method of a connection, with its secret.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// No credentials: the server must allow anonymous clients.
    None,
    /// User name and password (the server may hold a bcrypt hash of it).
    UserPassword(String, SecretString),
    /// A shared token.
    Token(SecretString),
    /// An NKey user seed (`SU…`); `public` is its public key (`U…`), safe to show.
    NKey {
        /// The seed.
        seed: SecretString,
        /// The public key derived from it.
        public: String,
    },
    /// A `.creds` file: a user JWT and its NKey seed (decentralised JWT auth).
    CredsFile(PathBuf),
}

impl Auth {
    /// The credential in words, for errors and logs; never the secret.
    pub(crate) fn describe(&self) -> String {
        match self {
            Auth::None => "an anonymous connection (no credentials configured)".into(),
            Auth::UserPassword(user, _) => format!("user {user:?} (user/password)"),
            Auth::Token(_) => "the configured token (token auth)".into(),
            Auth::NKey { public, .. } => format!("nkey {public} (nkey auth)"),
            Auth::CredsFile(p) => format!("the creds file {} (JWT auth)", p.display()),
        }
    }

    /// What the operator should check when the server refuses this credential.
    pub(crate) fn refusal_hint(&self) -> &'static str {
        match self {
            Auth::None => {
                "the server requires credentials; set one of user+password, token, nkey_seed or \
                 creds_file in [nats]"
            }
            Auth::UserPassword(..) => {
                "check that the user exists in the server's accounts and that [nats] password is \
                 the one whose bcrypt hash the server holds"
            }
            Auth::Token(_) => "check that [nats] token matches the server's authorization token",
            Auth::NKey { .. } => {
                "check that this public key is listed as a user (`nkey: U…`) in the server's \
                 accounts; the seed in [nats] nkey_seed must be its pair"
            }
            Auth::CredsFile(_) => {
                "check that the user JWT in the creds file is signed by an account the server \
                 trusts, has not expired and has not been revoked"
            }
        }
    }
}

/// Checks an NKey user seed and returns its public key. The error never quotes the seed.
pub(crate) fn nkey_public_key(seed: &SecretString) -> Result<String, String> {
    let seed = seed.expose_secret().trim();
    if !seed.starts_with("SU") {
        return Err(
            "is not an NKey user seed: a user seed starts with `SU` (generate one with \
             `nk -gen user -pubout`; `SA…`/`SO…` seeds belong to accounts and operators)"
                .into(),
        );
    }
    let pair = nkeys::KeyPair::from_seed(seed).map_err(|_| {
        "is not a valid NKey seed (bad length or checksum); copy the whole `SU…` line that \
         `nk -gen user` printed"
            .to_owned()
    })?;
    Ok(pair.public_key())
}

/// Which TLS file a check is about, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TlsFile {
    /// `[nats.tls] ca_file`.
    Ca,
    /// `[nats.tls] cert_file`.
    Cert,
    /// `[nats.tls] key_file`.
    Key,
}

impl TlsFile {
    /// The config key.
    pub(crate) fn key(self) -> &'static str {
        match self {
            TlsFile::Ca => "ca_file",
            TlsFile::Cert => "cert_file",
            TlsFile::Key => "key_file",
        }
    }
}

/// Reads a TLS PEM file as the client will and checks it holds what it should. The error names
/// the file and the problem; for a key file it never quotes the content.
pub(crate) fn check_tls_file(kind: TlsFile, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match kind {
        TlsFile::Ca | TlsFile::Cert => {
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                cert.map_err(|e| {
                    format!(
                        "{} is not a valid PEM certificate file: {e}",
                        path.display()
                    )
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                    path.display()
                ));
            }
        }
        TlsFile::Key => {
            PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
                format!(
                    "{} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted)",
                    path.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Reads a `.creds` file and checks it holds a user JWT and a valid seed. The error names the
/// file, never its content.
pub(crate) fn read_creds_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read creds file {}: {e}", path.display()))?;
    async_nats::ConnectOptions::with_credentials(&text).map_err(|_| {
        format!(
            "{} is not a NATS creds file: it needs a `-----BEGIN NATS USER JWT-----` block and a \
             `-----BEGIN USER NKEY SEED-----` block with a valid seed, as `nsc generate creds` \
             writes",
            path.display()
        )
    })?;
    Ok(text)
}

/// Why `connect` failed. Names servers, credentials and files; never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A TLS or creds file could not be read or does not hold what it should.
    #[error("NATS [nats{section}] {key}: {problem}")]
    File {
        /// `""` or `".tls"`.
        section: &'static str,
        /// The config key naming the file.
        key: &'static str,
        /// What is wrong, with the path.
        problem: String,
    },
    /// The server refused the credential (authorization violation).
    #[error("NATS at {servers} refused {credential}: authorization violation; {hint}")]
    Refused {
        /// The servers tried.
        servers: String,
        /// The credential in words (user name, public key or path; never the secret).
        credential: String,
        /// What to check.
        hint: &'static str,
    },
    /// The client could not sign the server's nonce with its NKey or creds seed.
    #[error(
        "NATS at {servers}: cannot sign the server's challenge with {credential}; the seed is unusable, replace it"
    )]
    Signing {
        /// The servers tried.
        servers: String,
        /// The credential in words.
        credential: String,
    },
    /// The TLS handshake failed (unknown CA, wrong name, expired, client certificate refused…).
    #[error(
        "TLS with NATS at {servers} failed: {detail}; check [nats.tls] ca_file is the CA that \
         signed the servers' certificates, that the server name in the URL is on their \
         certificate, and that a client certificate is given if the servers verify clients"
    )]
    Tls {
        /// The servers tried.
        servers: String,
        /// The client's TLS error.
        detail: String,
    },
    /// The server refused another connection for the credential's account: it already holds
    /// as many as the account allows (`limits { max_connections }`).
    #[error(
        "NATS at {servers} refused {credential}: its account already has the most connections it \
         allows (maximum account active connections exceeded); another process holds them: a \
         second copy of this process, or someone with this credential. List them on a NATS \
         node (curl -s 'http://127.0.0.1:8222/connz?acc=<account>&auth=true'), stop the extra copy \
         or rotate the credential (docs/security.md)"
    )]
    ConnectionLimit {
        /// The servers tried.
        servers: String,
        /// The credential in words.
        credential: String,
    },
    /// Anything else the client reported (bad URL, DNS).
    #[error("cannot connect to NATS {servers}: {detail}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// The client's error.
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_secrets() {
        let pw = Auth::UserPassword("site1-agent1".into(), SecretString::from("hunter2"));
        assert_eq!(pw.describe(), "user \"site1-agent1\" (user/password)");
        let token = Auth::Token(SecretString::from("s3cr3t-token"));
        assert!(!token.describe().contains("s3cr3t"));
        assert!(!format!("{token:?}").contains("s3cr3t"));
        assert!(!format!("{pw:?}").contains("hunter2"));
    }

    #[test]
    fn nkey_seed_is_checked_without_quoting_it() {
        let pair = nkeys::KeyPair::new_user();
        let seed = SecretString::from(pair.seed().unwrap());
        assert_eq!(nkey_public_key(&seed).unwrap(), pair.public_key());
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        let e = nkey_public_key(&SecretString::from(account.clone())).unwrap_err();
        assert!(
            e.contains("starts with `SU`") && !e.contains(&account),
            "{e}"
        );
        // One character in the middle changed: the checksum no longer matches.
        let mut broken: Vec<char> = pair.seed().unwrap().chars().collect();
        broken[10] = if broken[10] == 'A' { 'B' } else { 'A' };
        let broken: String = broken.into_iter().collect();
        let e = nkey_public_key(&SecretString::from(broken.clone())).unwrap_err();
        assert!(e.contains("checksum") && !e.contains(&broken), "{e}");
    }

    #[test]
    fn tls_files_are_read_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = check_tls_file(TlsFile::Ca, &missing).unwrap_err();
        assert!(e.contains("nope.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "SECRETSTUFF not a pem\n").unwrap();
        let e = check_tls_file(TlsFile::Cert, &junk).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = check_tls_file(TlsFile::Key, &junk).unwrap_err();
        assert!(e.contains("no usable PEM private key") && !e.contains("SECRETSTUFF"));
    }

    #[test]
    fn creds_file_errors_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.creds");
        std::fs::write(&p, "SUAAAA-not-a-creds-file\n").unwrap();
        let e = read_creds_file(&p).unwrap_err();
        assert!(e.contains("agent.creds") && !e.contains("SUAAAA"), "{e}");
    }
}
