//! The emulator's checks: credentials, headers, query parameters and record bodies, each
//! failing with the status and Cloudflare error code the real API documents.

use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode, Uri};
use serde_json::{Map, Value, json};

use super::Record;

/// The longest record comment on the Free plan (Pro and above allow 500).
pub const COMMENT_MAX_FREE: usize = 100;

/// Body fields a DNS record write may carry.
const RECORD_FIELDS: &[&str] = &[
    "type", "name", "content", "ttl", "proxied", "comment", "tags",
];

/// A Cloudflare error: `{code, message}` and an optional `error_chain`.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: u32,
    message: String,
    chain: Vec<ApiError>,
}

impl ApiError {
    /// An error with no chain.
    pub fn new(code: u32, message: &str) -> Self {
        Self {
            code,
            message: message.to_owned(),
            chain: Vec::new(),
        }
    }

    fn chained(mut self, inner: ApiError) -> Self {
        self.chain.push(inner);
        self
    }

    /// The JSON form used in `errors`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if !self.chain.is_empty()
            && let Some(o) = v.as_object_mut()
        {
            let chain: Vec<Value> = self.chain.iter().map(ApiError::to_json).collect();
            o.insert("error_chain".into(), Value::Array(chain));
        }
        v
    }
}

type Checked<T> = Result<T, (StatusCode, ApiError)>;

fn bad(code: u32, message: &str) -> (StatusCode, ApiError) {
    (StatusCode::BAD_REQUEST, ApiError::new(code, message))
}

fn invalid_headers(inner: ApiError) -> (StatusCode, ApiError) {
    (
        StatusCode::BAD_REQUEST,
        ApiError::new(6003, "Invalid request headers").chained(inner),
    )
}

/// `Authorization: Bearer <token>`.
pub fn authorization(value: Option<&HeaderValue>, token: &str) -> Checked<()> {
    let Some(value) = value else {
        return Err((
            StatusCode::UNAUTHORIZED,
            ApiError::new(10000, "Authentication error"),
        ));
    };
    let Some(given) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err(invalid_headers(ApiError::new(
            6111,
            "Invalid format for Authorization header",
        )));
    };
    if given == token {
        Ok(())
    } else {
        Err((
            StatusCode::FORBIDDEN,
            ApiError::new(9109, "Invalid access token"),
        ))
    }
}

/// `Content-Type: application/json` on writes.
pub fn json_content_type(value: Option<&HeaderValue>) -> Checked<()> {
    let ok = value.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim() == "application/json")
    });
    if ok {
        Ok(())
    } else {
        Err(invalid_headers(ApiError::new(
            6105,
            "Invalid Content-Type header, valid values are application/json,multipart/form-data",
        )))
    }
}

/// The query parameters, decoded.
pub fn query(uri: &Uri) -> Checked<Vec<(String, String)>> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|_| bad(1000, "Invalid query string"))
}

/// Cloudflare's documented bounds of `per_page` for DNS records (default 100).
pub const PER_PAGE_MAX: u64 = 5_000_000;

/// `page` (from 1, default 1) and `per_page` (1 to [`PER_PAGE_MAX`], default 100).
pub fn paging(query: &[(String, String)]) -> Checked<(u64, u64)> {
    let number = |name: &str, default: u64, max: u64| match param(query, name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad(
                1000,
                &format!("Invalid query parameter {name}={v:?}: use 1 to {max}"),
            )),
        },
    };
    Ok((
        number("page", 1, u64::MAX)?,
        number("per_page", 100, PER_PAGE_MAX)?,
    ))
}

/// Rejects parameters outside `allowed`.
pub fn only_params(query: &[(String, String)], allowed: &[&str]) -> Checked<()> {
    match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(bad(1000, &format!("Unknown query parameter: {k}"))),
        None => Ok(()),
    }
}

/// The value of parameter `name`.
pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A host name: dot-separated labels of letters, digits, `-` and `_`, each 1–63 long, ≤ 253 total.
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The record name must be the zone or inside it.
pub fn in_zone(name: &str, zone: &str) -> Checked<()> {
    let n = name.to_ascii_lowercase();
    let z = zone.to_ascii_lowercase();
    if n == z || n.ends_with(&format!(".{z}")) {
        Ok(())
    } else {
        Err(bad(
            1004,
            &format!("DNS Validation Error: {name} is not in zone {zone}"),
        ))
    }
}

/// The fields of a record write, each checked; `None` = not sent.
#[derive(Debug, Default)]
pub struct RecordFields {
    pub name: Option<String>,
    pub content: Option<String>,
    pub ttl: Option<u32>,
    pub proxied: Option<bool>,
    /// `Some(None)` = sent as `null` (removes the comment).
    pub comment: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub kind_sent: bool,
}

impl RecordFields {
    /// Parses and checks a JSON body.
    pub fn parse(body: &[u8]) -> Checked<Self> {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return Err(bad(9207, "Request body is invalid."));
        };
        Self::from_map(&map)
    }

    /// Checks the fields of one record object (a body, or one item of a batch).
    pub fn from_map(map: &Map<String, Value>) -> Checked<Self> {
        if let Some(k) = map.keys().find(|k| !RECORD_FIELDS.contains(&k.as_str())) {
            return Err(bad(
                9207,
                &format!("Request body is invalid: unknown field {k:?}"),
            ));
        }
        let mut f = Self::default();
        if let Some(t) = map.get("type") {
            match t.as_str() {
                Some(t) if t.eq_ignore_ascii_case("CNAME") => f.kind_sent = true,
                _ => {
                    return Err(bad(
                        1004,
                        "DNS Validation Error: the emulator only holds CNAME records",
                    ));
                }
            }
        }
        if let Some(n) = map.get("name") {
            match n.as_str() {
                Some(n) if is_hostname(n) => f.name = Some(n.to_owned()),
                _ => return Err(bad(1004, "DNS Validation Error: invalid record name")),
            }
        }
        if let Some(c) = map.get("content") {
            match c.as_str() {
                Some(c) if is_hostname(c) => f.content = Some(c.trim_end_matches('.').to_owned()),
                _ => return Err(bad(9007, "Content for CNAME record is invalid.")),
            }
        }
        if let Some(t) = map.get("ttl") {
            match t.as_u64() {
                Some(t @ (1 | 60..=86400)) => f.ttl = u32::try_from(t).ok(),
                _ => {
                    return Err(bad(
                        9021,
                        "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
                    ));
                }
            }
        }
        if let Some(p) = map.get("proxied") {
            match p.as_bool() {
                Some(p) => f.proxied = Some(p),
                None => return Err(bad(9003, "Invalid 'proxied' value, must be a boolean")),
            }
        }
        if let Some(c) = map.get("comment") {
            match c {
                Value::Null => f.comment = Some(None),
                Value::String(s) if s.chars().count() <= COMMENT_MAX_FREE => {
                    f.comment = Some(Some(s.clone()));
                }
                Value::String(_) => {
                    return Err(bad(
                        9100,
                        &format!(
                            "DNS record comment is too long (at most {COMMENT_MAX_FREE} characters on this plan)"
                        ),
                    ));
                }
                _ => {
                    return Err(bad(
                        9207,
                        "Request body is invalid: comment must be a string",
                    ));
                }
            }
        }
        if let Some(t) = map.get("tags") {
            let tags: Option<Vec<String>> = t
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
            match tags {
                Some(tags) => f.tags = Some(tags),
                None => return Err(bad(9207, "Request body is invalid: tags must be strings")),
            }
        }
        Ok(f)
    }

    /// POST and PUT need `type`, `name` and `content`.
    pub fn require_full(&self) -> Checked<()> {
        if !self.kind_sent || self.name.is_none() || self.content.is_none() {
            return Err(bad(
                9207,
                "Request body is invalid: type, name and content are required",
            ));
        }
        Ok(())
    }

    /// The record a POST or PUT makes (what it omits is reset: `ttl` 1, not proxied, no
    /// comment, no tags); call [`Self::require_full`] first.
    pub fn to_record(&self, id: String, zone_id: String) -> Record {
        Record {
            id,
            zone_id,
            name: self.name.clone().unwrap_or_default(),
            kind: "CNAME".into(),
            content: self.content.clone().unwrap_or_default(),
            ttl: self.ttl.unwrap_or(1),
            proxied: self.proxied.unwrap_or(false),
            comment: self.comment.clone().flatten(),
            tags: self.tags.clone().unwrap_or_default(),
        }
    }

    /// PATCH: changes only the fields sent.
    pub fn apply_to(&self, r: &mut Record) {
        if let Some(n) = &self.name {
            r.name.clone_from(n);
        }
        if let Some(c) = &self.content {
            r.content.clone_from(c);
        }
        if let Some(t) = self.ttl {
            r.ttl = t;
        }
        if let Some(p) = self.proxied {
            r.proxied = p;
        }
        if let Some(c) = &self.comment {
            r.comment.clone_from(c);
        }
        if let Some(t) = &self.tags {
            r.tags.clone_from(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_bodies_are_checked_field_by_field() {
        let ok =
            RecordFields::parse(br#"{"content":"mail-site2.example.com","comment":"x","ttl":60}"#)
                .unwrap();
        assert_eq!(ok.content.as_deref(), Some("mail-site2.example.com"));
        for (body, code) in [
            (&br#"{"content":"not a host"}"#[..], 9007),
            (br#"{"ttl":30}"#, 9021),
            (br#"{"ttl":86401}"#, 9021),
            (br#"{"proxied":"yes"}"#, 9003),
            (br#"{"contnet":"x.example.com"}"#, 9207),
            (br#"{"type":"A"}"#, 1004),
            (br#"[1]"#, 9207),
        ] {
            let (status, e) = RecordFields::parse(body).unwrap_err();
            assert_eq!(
                (status, e.code),
                (StatusCode::BAD_REQUEST, code),
                "{body:?}"
            );
        }
        let long = format!(r#"{{"comment":"{}"}}"#, "x".repeat(COMMENT_MAX_FREE + 1));
        assert_eq!(
            RecordFields::parse(long.as_bytes()).unwrap_err().1.code,
            9100
        );
    }

    #[test]
    fn credentials_are_checked() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(authorization(Some(&h("Bearer t")), "t").is_ok());
        assert_eq!(
            authorization(None, "t").unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authorization(Some(&h("Bearer u")), "t").unwrap_err().1.code,
            9109
        );
        assert_eq!(authorization(Some(&h("t")), "t").unwrap_err().1.code, 6003);
    }
}
