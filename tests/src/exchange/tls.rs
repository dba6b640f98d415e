//! Test certificates for the Exchange emulator: a throw-away CA ([`TestCa`]) and server
//! identities it signs ([`TlsIdentity`]) with chosen SAN names and a chosen validity, including
//! certificates about to expire or already expired.
//!
//! Clients trust the CA through [`TlsIdentity::ca_pem`] or [`TlsIdentity::write_ca`]; the
//! emulator serves the leaf through a rustls config built with the ring provider explicitly, so
//! the process-wide default provider does not matter.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority that exists only for one test run.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate and signing key.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// Generates a CA valid from yesterday for ten years.
    pub fn new() -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "sitewarden test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let key = KeyPair::generate().context("generating the test CA key")?;
        let issuer =
            CertifiedIssuer::self_signed(params, key).context("self-signing the test CA")?;
        Ok(TestCa { issuer })
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a server certificate for `names` (SAN DNS names; the first is also the CN) that
    /// expires `days_valid` days from now. Zero or negative gives an already expired one.
    pub fn issue(&self, names: &[&str], days_valid: i64) -> anyhow::Result<TlsIdentity> {
        let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(owned.clone())
            .with_context(|| format!("certificate names {names:?}"))?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = time::OffsetDateTime::now_utc();
        let not_after = now + time::Duration::days(days_valid);
        params.not_after = not_after;
        params.not_before = not_after.min(now) - time::Duration::days(30);
        let key = KeyPair::generate().context("generating a server key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing the server certificate")?;
        let not_after = DateTime::<Utc>::from_timestamp(not_after.unix_timestamp(), 0)
            .context("certificate expiry out of range")?;
        Ok(TlsIdentity {
            ca_pem: self.issuer.pem(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            names: owned,
            not_after,
        })
    }
}

/// A server certificate and key, plus the PEM of the CA that signed it.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// The signing CA, for clients to trust.
    ca_pem: String,
    /// The leaf certificate in PEM.
    cert_pem: String,
    /// The leaf certificate in DER, as served.
    cert_der: CertificateDer<'static>,
    /// The leaf's PKCS#8 private key.
    key_der: Vec<u8>,
    /// SAN DNS names.
    names: Vec<String>,
    /// When the leaf expires (second precision).
    not_after: DateTime<Utc>,
}

impl TlsIdentity {
    /// A new CA and a leaf for `names` expiring in `days_valid` days (negative: already expired).
    pub fn new(names: &[&str], days_valid: i64) -> anyhow::Result<Self> {
        TestCa::new()?.issue(names, days_valid)
    }

    /// An identity from PEM text made elsewhere (e.g. by `openssl`): the leaf certificate, its
    /// PKCS#8 private key (`openssl genpkey` writes one) and the CA that signed it. The SAN DNS
    /// names and the expiry are read from the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .context("the certificate file holds no PEM certificate")?;
        let key_der = match PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .context("the key file holds no PEM private key")?
        {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => anyhow::bail!(
                "the key is not PKCS#8 (BEGIN PRIVATE KEY); convert it with openssl pkcs8 -topk8 -nocrypt"
            ),
        };
        let (_, parsed) = x509_parser::parse_x509_certificate(cert_der.as_ref())
            .map_err(|e| anyhow::anyhow!("cannot parse the certificate: {e}"))?;
        let names = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let not_after = DateTime::<Utc>::from_timestamp(parsed.validity().not_after.timestamp(), 0)
            .context("certificate expiry out of range")?;
        Ok(TlsIdentity {
            ca_pem: ca_pem.to_owned(),
            cert_pem: cert_pem.to_owned(),
            cert_der: cert_der.into_owned(),
            key_der,
            names,
            not_after,
        })
    }

    /// The CA certificate (PEM) a client must trust.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The server certificate (PEM).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// Writes the CA certificate to `dir/test-ca.pem` and returns the path.
    pub fn write_ca(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.ca_pem)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The SAN DNS names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// When the server certificate expires.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// A rustls server config serving this certificate (ring provider, HTTP/1.1 ALPN).
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("rustls protocol versions")?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .context("rustls server certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
