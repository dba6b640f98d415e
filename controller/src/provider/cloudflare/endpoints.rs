//! The Cloudflare v4 calls sitewarden makes, as `cloudflare` crate endpoints.
//!
//! The crate's own DNS endpoints do not fit: its record types have no `comment` field, its update
//! is a PUT (which resets every field it omits, e.g. `proxied`), and its list filter by type also
//! filters by content. Its public `EndpointSpec` trait lets us define the calls we need (method,
//! path, query, body) and read their answers into its envelope types; they are sent by our own
//! reqwest client so that a 429's `retry-after` stays visible (see [`super`]):
//! - `GET zones?name=…` — a zone's id from its name;
//! - `GET zones/{zone}/dns_records?type=CNAME&name=…` — the record of one name;
//! - `PATCH zones/{zone}/dns_records/{id}` with `content`, `comment` and optionally `ttl` — only
//!   those fields change; `proxied` and the rest are kept;
//! - `GET zones/{zone}/dns_records?type=CNAME&per_page=…&page=…` — one page of the zone's CNAMEs,
//!   for reading many names at once (see [`super::batch`]);
//! - `POST zones/{zone}/dns_records/batch` with `{"patches": [{id, content, comment[, ttl]}, …]}`
//!   — many PATCHes in one all-or-nothing call (the crate has no batch endpoint).
//!
//! A `Vec` result is wrapped in a `#[serde(transparent)]` newtype so it can implement `ApiResult`.

use cloudflare::framework::endpoint::spec::EndpointSpec;
use cloudflare::framework::endpoint::{Method, RequestBody, serialize_query};
use cloudflare::framework::response::{ApiResult, ApiSuccess};
use serde::{Deserialize, Serialize};

/// An error answer's `errors`. Our own type: the crate's `ApiErrors` keeps each `code` in a
/// `u16`, and Cloudflare's DNS error codes (81044 "Record does not exist", 81053…) do not fit, so
/// the whole list would be lost.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorAnswer {
    /// The errors, first the one that ended the call.
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
}

/// One error of an [`ErrorAnswer`].
#[derive(Debug, Deserialize)]
pub struct ErrorItem {
    /// Cloudflare's error code.
    #[serde(default)]
    pub code: u64,
    /// What it says.
    #[serde(default)]
    pub message: String,
}

/// A zone as listed (only what we use).
#[derive(Debug, Clone, Deserialize)]
pub struct ZoneSummary {
    /// The zone id used in every DNS path.
    pub id: String,
    /// The zone's name, e.g. `example.com`.
    pub name: String,
}

/// `GET zones` result.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Zones(pub Vec<ZoneSummary>);
impl ApiResult for Zones {}

/// A DNS record as Cloudflare returns it (only what we use; other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct DnsRecord {
    /// Record id, used to address the PATCH.
    pub id: String,
    /// Fully qualified name.
    pub name: String,
    /// Record type (`CNAME`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The CNAME target.
    pub content: String,
    /// TTL in seconds; 1 = automatic.
    pub ttl: u32,
    /// Whether traffic is proxied through Cloudflare.
    #[serde(default)]
    pub proxied: Option<bool>,
    /// The free-text comment that carries our marker.
    #[serde(default)]
    pub comment: Option<String>,
}
impl ApiResult for DnsRecord {}

/// `GET dns_records` result.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct DnsRecords(pub Vec<DnsRecord>);
impl ApiResult for DnsRecords {}

/// `GET zones?name=…`.
#[derive(Debug)]
pub struct ListZones<'a> {
    /// The zone name to look up.
    pub name: &'a str,
}

impl EndpointSpec for ListZones<'_> {
    type JsonResponse = Zones;
    type ResponseType = ApiSuccess<Zones>;

    fn method(&self) -> Method {
        Method::GET
    }

    fn path(&self) -> String {
        "zones".into()
    }

    fn query(&self) -> Option<String> {
        serialize_query(&[("name", self.name)])
    }
}

/// `GET zones/{zone}/dns_records?type=CNAME&name=…`.
#[derive(Debug)]
pub struct ListCnames<'a> {
    /// Zone id.
    pub zone: &'a str,
    /// Fully qualified record name.
    pub name: &'a str,
}

impl EndpointSpec for ListCnames<'_> {
    type JsonResponse = DnsRecords;
    type ResponseType = ApiSuccess<DnsRecords>;

    fn method(&self) -> Method {
        Method::GET
    }

    fn path(&self) -> String {
        format!("zones/{}/dns_records", self.zone)
    }

    fn query(&self) -> Option<String> {
        serialize_query(&[("type", "CNAME"), ("name", self.name)])
    }
}

/// The PATCH body: only these fields change.
#[derive(Debug, Serialize)]
pub struct PatchBody<'a> {
    /// New CNAME target.
    pub content: &'a str,
    /// New comment with our marker.
    pub comment: &'a str,
    /// New TTL, only when the namespace sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

/// `PATCH zones/{zone}/dns_records/{id}`.
#[derive(Debug)]
pub struct PatchRecord<'a> {
    /// Zone id.
    pub zone: &'a str,
    /// Record id.
    pub id: &'a str,
    /// The serialized [`PatchBody`].
    pub body: String,
}

impl EndpointSpec for PatchRecord<'_> {
    type JsonResponse = DnsRecord;
    type ResponseType = ApiSuccess<DnsRecord>;

    fn method(&self) -> Method {
        Method::PATCH
    }

    fn path(&self) -> String {
        format!("zones/{}/dns_records/{}", self.zone, self.id)
    }

    fn body(&self) -> Option<RequestBody<'_>> {
        Some(RequestBody::Json(self.body.clone()))
    }
}

/// The query of [`ListCnamePage`], in this order: `type=CNAME&per_page=…&page=…`.
#[derive(Debug, Serialize)]
struct PageQuery {
    #[serde(rename = "type")]
    kind: &'static str,
    per_page: u32,
    page: u32,
}

/// `GET zones/{zone}/dns_records?type=CNAME&per_page=…&page=…`: one page of the zone's CNAMEs.
#[derive(Debug)]
pub struct ListCnamePage<'a> {
    /// Zone id.
    pub zone: &'a str,
    /// The page, from 1.
    pub page: u32,
    /// Records per page.
    pub per_page: u32,
}

impl EndpointSpec for ListCnamePage<'_> {
    type JsonResponse = DnsRecords;
    type ResponseType = ApiSuccess<DnsRecords>;

    fn method(&self) -> Method {
        Method::GET
    }

    fn path(&self) -> String {
        format!("zones/{}/dns_records", self.zone)
    }

    fn query(&self) -> Option<String> {
        serialize_query(&PageQuery {
            kind: "CNAME",
            per_page: self.per_page,
            page: self.page,
        })
    }
}

/// A listing's `result_info` (only what paging needs).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PageInfo {
    /// How many pages the listing has (`0` when it is empty).
    pub total_pages: u32,
}

/// One item of a batch's `patches`: the record's id and only the fields that change.
#[derive(Debug, Serialize)]
pub struct BatchPatch<'a> {
    /// The record's id.
    pub id: &'a str,
    /// The fields, as in a one-record PATCH.
    #[serde(flatten)]
    pub fields: PatchBody<'a>,
}

/// The body of a batch: only `patches` (no deletes, puts or posts).
#[derive(Debug, Serialize)]
pub struct BatchBody<'a> {
    /// The records to change, in order.
    pub patches: Vec<BatchPatch<'a>>,
}

/// `POST dns_records/batch` result: the records each list changed.
#[derive(Debug, Deserialize)]
pub struct BatchResult {
    /// The records patched, in the order sent (only counted).
    #[serde(default)]
    pub patches: Vec<serde::de::IgnoredAny>,
}
impl ApiResult for BatchResult {}

/// `POST zones/{zone}/dns_records/batch`.
#[derive(Debug)]
pub struct BatchRecords<'a> {
    /// Zone id.
    pub zone: &'a str,
    /// The serialized [`BatchBody`].
    pub body: String,
}

impl EndpointSpec for BatchRecords<'_> {
    type JsonResponse = BatchResult;
    type ResponseType = ApiSuccess<BatchResult>;

    fn method(&self) -> Method {
        Method::POST
    }

    fn path(&self) -> String {
        format!("zones/{}/dns_records/batch", self.zone)
    }

    fn body(&self) -> Option<RequestBody<'_>> {
        Some(RequestBody::Json(self.body.clone()))
    }
}
