//! `[provider] kind = "builtin"`: the keys of the `[provider]` table that configure the built-in
//! server, validated into a [`DnsConfig`] (called from [`crate::provider::config`]).

use sitewarden_shared::config::{ConfigError, KeyPath, Source};

use super::{DEFAULT_NEGATIVE_TTL, DEFAULT_ZONE_TTL, DnsConfig};
use crate::provider::RawProvider;

/// Where the built-in server listens unless `listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:53";

impl RawProvider {
    /// Rejects the `builtin`-only keys under any other kind.
    pub(crate) fn no_builtin_keys_unless_builtin(
        &self,
        src: &Source,
        at: &KeyPath,
    ) -> Result<(), ConfigError> {
        if self.kind.as_deref() == Some("builtin") {
            return Ok(());
        }
        for (key, set) in [
            // `rfc2136` names its zone with `zone` too.
            (
                "zone",
                self.zone.is_some() && self.kind.as_deref() != Some("rfc2136"),
            ),
            ("listen", self.listen.is_some()),
            ("nameservers", self.nameservers.is_some()),
            ("soa_email", self.soa_email.is_some()),
            ("addresses", self.addresses.is_some()),
            ("allow_transfer", self.allow_transfer.is_some()),
        ] {
            if set {
                return Err(src.error(
                    &at.key(key),
                    "only used with kind = \"builtin\" (for Cloudflare the zone is `zone_id` or `zone_name`)",
                ));
            }
        }
        Ok(())
    }

    /// Validates the `kind = "builtin"` keys of `[provider]`:
    ///
    /// ```toml
    /// [provider]
    /// kind = "builtin"
    /// zone = "failover.example.com"
    /// listen = "0.0.0.0:53"                      # UDP and TCP; the default
    /// nameservers = ["ns1.failover.example.com", "ns2.failover.example.com"]
    /// soa_email = "hostmaster@example.com"
    /// addresses = { "ns1.failover.example.com" = ["192.0.2.10"], "ns2.failover.example.com" = ["198.51.100.10"] }
    /// ```
    pub(crate) fn builtin(&self, src: &Source, at: &KeyPath) -> Result<DnsConfig, ConfigError> {
        for (key, set) in [
            ("zone_id", self.zone_id.is_some()),
            ("zone_name", self.zone_name.is_some()),
            ("api_token", self.api_token.is_some()),
            ("api_url", self.api_url.is_some()),
            ("budget", self.budget.is_some()),
            ("request_timeout", self.request_timeout.is_some()),
        ] {
            if set {
                return Err(src.error(
                    &at.key(key),
                    "only used with kind = \"cloudflare\"; remove it for kind = \"builtin\"",
                ));
            }
        }
        let Some(zone) = self.zone.clone() else {
            return Err(src.error(at, "missing `zone`, e.g. zone = \"failover.example.com\""));
        };
        let Some(nameservers) = self.nameservers.clone() else {
            return Err(src.error(
                at,
                "missing `nameservers`, e.g. nameservers = [\"ns1.failover.example.com\"] (one per controller)",
            ));
        };
        let Some(soa_email) = self.soa_email.clone() else {
            return Err(src.error(
                at,
                "missing `soa_email`, e.g. soa_email = \"hostmaster@example.com\"",
            ));
        };
        let listen = match self.listen {
            Some(l) => l,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| src.error(&at.key("listen"), "set a listen address"))?,
        };
        let config = DnsConfig {
            zone,
            listen,
            nameservers,
            soa_email,
            addresses: self.addresses.clone().unwrap_or_default(),
            zone_ttl: DEFAULT_ZONE_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            allow_transfer: self.allow_transfer.clone().unwrap_or_default(),
            tcp: super::TcpLimits::default(),
        };
        if let Err(e) = config.compile() {
            return Err(src.error(at, e.to_string()));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::config::ProviderKind;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Doc {
        provider: RawProvider,
    }

    fn load(text: &str) -> Result<crate::provider::ProviderConfig, ConfigError> {
        let src = Source::inline("controller.toml", text);
        let doc: Doc = src.parse()?;
        doc.provider
            .validate(&src, &KeyPath::root().key("provider"))
    }

    #[test]
    fn a_builtin_dns_table_is_read() {
        let c = load(
            "[provider]\nkind = \"builtin\"\nzone = \"failover.example.com\"\nlisten = \"127.0.0.1:5353\"\n\
             nameservers = [\"ns1.failover.example.com\"]\nsoa_email = \"hostmaster@example.com\"\n\
             addresses = { \"ns1.failover.example.com\" = [\"192.0.2.10\"] }\n",
        )
        .unwrap();
        let ProviderKind::Builtin(d) = &c.kind else {
            panic!()
        };
        assert_eq!(d.listen.port(), 5353);
        assert_eq!(d.nameservers, vec!["ns1.failover.example.com".to_owned()]);
        assert!(c.build().is_err(), "built by the runtime from the bucket");
        let err = load("[provider]\nkind = \"builtin\"\nzone = \"failover.example.com\"\nnameservers = [\"ns1.failover.example.com\"]\nsoa_email = \"nobody\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("soa_email"), "{err}");
        let err = load("[provider]\nkind = \"builtin\"\nzone_id = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("zone_id"), "{err}");
        let err = load("[provider]\nkind = \"memory\"\nzone = \"failover.example.com\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("provider.zone"), "{err}");
    }
}
