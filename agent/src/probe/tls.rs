//! TLS trust for probes and the certificate findings they report.
//!
//! [`RootCache`] builds one rustls client configuration per distinct extra CA file and shares
//! it across probes (the public roots are large; a copy per probe would cost megabytes).
//! [`details`] reads the peer's leaf certificate: `notAfter`, days left, the SAN DNS names, and
//! which of the target site's configured names no SAN covers (a `*.example.com` SAN covers
//! exactly one extra label, as browsers and phones apply it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sitewarden_shared::{SiteId, TlsDetails};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::ProbeContext;

/// Shared rustls client configurations, keyed by extra CA file.
#[derive(Debug, Default)]
pub struct RootCache {
    configs: BTreeMap<Option<PathBuf>, rustls::ClientConfig>,
}

impl RootCache {
    /// The client configuration trusting the public roots plus `ca_file`'s certificates.
    pub fn client_config(
        &mut self,
        ca_file: Option<&Path>,
    ) -> Result<rustls::ClientConfig, String> {
        let key = ca_file.map(Path::to_path_buf);
        if let Some(c) = self.configs.get(&key) {
            return Ok(c.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let mut n = 0;
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| {
                    format!("CA file {} holds a bad certificate: {e}", path.display())
                })?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!(
                    "CA file {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        self.configs.insert(key, config.clone());
        Ok(config)
    }
}

/// Certificate findings for a probe of `target_site`.
pub fn details(
    der: &[u8],
    target_site: &SiteId,
    ctx: &ProbeContext,
    now: DateTime<Utc>,
) -> Option<TlsDetails> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let not_after = DateTime::<Utc>::from_timestamp(cert.validity().not_after.timestamp(), 0)?;
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let days_left = (not_after - now).num_days();
    let missing_names = ctx
        .sites
        .get(target_site)
        .map(|s| {
            s.tls_names
                .iter()
                .filter(|n| !covered(n, &sans))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Some(TlsDetails {
        not_after,
        days_left,
        expiring_soon: days_left < i64::from(ctx.cert_expiry_warn_days),
        sans,
        missing_names,
    })
}

/// Whether any SAN covers `name` (exact, or a one-label wildcard).
pub fn covered(name: &str, sans: &[String]) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    sans.iter().any(|san| {
        let san = san.trim_end_matches('.');
        if let Some(suffix) = san.strip_prefix("*.") {
            name.split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix)
        } else {
            san == name
        }
    })
}

#[cfg(test)]
mod tests {
    use super::covered;

    #[test]
    fn wildcards_cover_one_label() {
        let sans = vec!["*.example.com".to_owned(), "mail.example.org".to_owned()];
        assert!(covered("mail-site1.example.com", &sans));
        assert!(covered("MAIL.example.org", &sans));
        assert!(!covered("example.com", &sans));
        assert!(!covered("a.b.example.com", &sans));
        assert!(!covered("autodiscover.example.org", &sans));
    }
}
