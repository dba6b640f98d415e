//! The wire types of the operator API: request bodies and the small answers, with one
//! definition for the controller that parses them and the CLI that builds them.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/overrides`: pin, drain, freeze or fail back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOverride {
    /// `pin`, `drain`, `freeze` or `failback`.
    pub action: String,
    /// The managed name (pin, failback, freeze of one name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The target (pin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The site (drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// How long it holds (`30m`, `4h`); none = until released.
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    /// Why (required, audited).
    pub reason: String,
}

/// `POST /api/v1/overrides/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseOverride {
    /// `pin`, `drain` or `freeze`.
    pub kind: String,
    /// The namespace (pin, freeze of one name), the site (drain); absent for a freeze of all.
    #[serde(default)]
    pub subject: Option<String>,
    /// Why (required, audited).
    pub reason: String,
}

/// `GET /api/v1/whoami`: the holder and role of the token used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The token's holder (`[[api.tokens]] name`); none for an anonymous read.
    pub name: Option<String>,
    /// `read` or `admin`; none for an anonymous read.
    pub role: Option<String>,
}

/// Every 4xx/5xx answer: what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong and what to do.
    pub error: String,
}
