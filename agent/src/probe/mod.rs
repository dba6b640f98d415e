//! Probes: run one configured check against one server and describe what happened.
//!
//! A [`Prober`] is built once per probe (check × server) and reused every interval. It never
//! judges a site: it turns what it saw on the wire into an [`Observation`] with an outcome, an
//! error class and details, and the controller decides what that means. Each kind lives in its
//! own file: `healthcheck` (Exchange 2013+ healthcheck.htm), `activesync` (OPTIONS and 451
//! redirects), `generic` (plain HTTP) and `tcp`; `http` holds the shared HTTP client and error
//! classification, `tls` the certificate findings.

mod activesync;
mod generic;
mod healthcheck;
pub mod http;
mod tcp;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sitewarden_shared::{
    AgentId, ErrorClass, Observation, ObservationDetails, Outcome, SCHEMA_VERSION, SiteId,
};

use crate::config::{Probe, ProbeSpec, Site};

/// What a kind-specific probe found, before it is wrapped into an [`Observation`].
#[derive(Debug, Default)]
pub struct Finding {
    /// Pass or fail.
    pub pass: bool,
    /// HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// Why it failed.
    pub error_class: Option<ErrorClass>,
    /// Failure text.
    pub error: Option<String>,
    /// Extra facts.
    pub details: ObservationDetails,
}

impl Finding {
    /// A failure with a class and text.
    pub fn fail(class: ErrorClass, text: impl Into<String>) -> Self {
        Self {
            pass: false,
            error_class: Some(class),
            error: Some(text.into()),
            ..Default::default()
        }
    }
}

/// Everything a probe needs besides its own settings.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// The observing agent.
    pub agent: AgentId,
    /// The observing agent's site.
    pub site: SiteId,
    /// Every configured site (for 451 redirects and SAN coverage).
    pub sites: Arc<BTreeMap<SiteId, Site>>,
    /// Certificates expiring within this many days are flagged.
    pub cert_expiry_warn_days: u32,
}

/// A probe ready to run.
#[derive(Debug)]
pub struct Prober {
    /// The probe's settings.
    pub probe: Probe,
    /// TLS settings for HTTPS probes (shared roots, cheap to clone).
    tls: Option<rustls::ClientConfig>,
    /// The HTTP client, built on first use and rebuilt after a failure to resolve the server's
    /// name, so a DNS blip at start-up never keeps the agent from running.
    client: std::sync::Mutex<Option<reqwest::Client>>,
    ctx: ProbeContext,
}

impl Prober {
    /// Builds the probe's HTTP client (for HTTP kinds), sharing TLS roots through `roots`.
    pub fn new(
        probe: Probe,
        ctx: ProbeContext,
        roots: &mut tls::RootCache,
    ) -> Result<Self, String> {
        let tls = match (&probe.spec, probe.tls) {
            (ProbeSpec::Tcp, _) | (_, false) => None,
            _ => Some(roots.client_config(probe.ca_file.as_deref())?),
        };
        let client = match probe.spec {
            ProbeSpec::Tcp => None,
            _ => http::client_for(&probe, tls.as_ref()).ok(),
        };
        Ok(Self {
            probe,
            tls,
            client: std::sync::Mutex::new(client),
            ctx,
        })
    }

    fn http_client(&self) -> Result<reqwest::Client, String> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = http::client_for(&self.probe, self.tls.as_ref())?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs the probe once. Never panics and never takes much longer than the probe's timeout.
    pub async fn run_once(&self) -> Observation {
        let observed_at = Utc::now();
        let started = tokio::time::Instant::now();
        let timeout = self.probe.timeout;
        let finding =
            match tokio::time::timeout(timeout + Duration::from_millis(100), self.run_kind()).await
            {
                Ok(f) => f,
                Err(_) => Finding::fail(
                    ErrorClass::Timeout,
                    format!("no answer within {}ms", timeout.as_millis()),
                ),
            };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Observation {
            schema_version: SCHEMA_VERSION,
            agent: self.ctx.agent.clone(),
            site: self.ctx.site.clone(),
            seq: 0,
            observed_at,
            target_site: self.probe.target_site.clone(),
            server: self.probe.server.clone(),
            check: self.probe.check.clone(),
            kind: self.probe.kind,
            protocol: self.probe.protocol.clone(),
            outcome: if finding.pass {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            http_status: finding.http_status,
            latency_ms,
            error_class: if finding.pass {
                None
            } else {
                finding.error_class
            },
            error: if finding.pass { None } else { finding.error },
            details: finding.details,
        }
    }

    async fn run_kind(&self) -> Finding {
        if let ProbeSpec::Tcp = self.probe.spec {
            return tcp::probe(&self.probe).await;
        }
        let c = match self.http_client() {
            Ok(c) => c,
            Err(e) => return Finding::fail(ErrorClass::Connect, e),
        };
        match &self.probe.spec {
            ProbeSpec::Healthcheck { vdir } => {
                healthcheck::probe(&c, &self.probe, &self.ctx, vdir).await
            }
            ProbeSpec::ActiveSync { account } => {
                activesync::probe(&c, &self.probe, &self.ctx, account.as_ref()).await
            }
            ProbeSpec::Http { .. } => generic::probe(&c, &self.probe, &self.ctx).await,
            ProbeSpec::Tcp => tcp::probe(&self.probe).await,
        }
    }
}
