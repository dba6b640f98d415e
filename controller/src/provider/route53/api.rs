//! The three Route 53 API calls the provider makes — ListResourceRecordSets,
//! ChangeResourceRecordSets, GetChange — as SigV4-signed requests over reqwest, with XML built
//! and read by hand (the API is small and stable; `roxmltree` reads the answers).
//!
//! Every call waits for its slot in a pacer (at most one call per `min_interval`, so a burst of
//! changes never exceeds Route 53's 5 requests per second per account) and spends a token of the
//! provider's [`Budget`](crate::provider::budget::Budget) (done by the caller). Errors map to
//! [`ProviderError`]: 401/403 and credential codes → `Auth`; `Throttling` and
//! `PriorRequestNotComplete` (HTTP 400) and 429 → `RateLimited` (with `Retry-After` when sent);
//! 5xx, timeouts and unreadable answers → `Transient`; other 4xx → `Rejected` (the caller turns a
//! refused batch into a re-read). Messages never contain the secret key or session token.
//!
//! An auth failure (`ExpiredToken`, `InvalidClientTokenId`, `SignatureDoesNotMatch`, any 403…)
//! reads the credentials' source again ([`LiveCredentials::refresh`]); when that yields other
//! credentials the request is signed with them and sent once more — safe for a change batch too,
//! since Route 53 applies nothing from a request it did not authenticate. The second request is
//! paced like any other.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::credentials::LiveCredentials;
use crate::provider::ProviderError;

/// The XML namespace of the 2013-04-01 API.
pub const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// The service name in SigV4 credential scopes.
const SERVICE: &str = "route53";

/// One resource record set as the API shows it (simple routing only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    /// The name exactly as returned (fully qualified, with the trailing dot).
    pub name: String,
    /// `CNAME`, `TXT`, …
    pub kind: String,
    /// The TTL.
    pub ttl: u32,
    /// The values exactly as returned (a TXT value keeps its quotes).
    pub values: Vec<String>,
}

/// A page of ListResourceRecordSets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The record sets, in Route 53's order.
    pub sets: Vec<RecordSet>,
    /// Whether more record sets follow.
    pub truncated: bool,
    /// Where the next page starts, when `truncated`.
    pub next: Option<Start>,
}

/// Where a ListResourceRecordSets page starts: Route 53's `NextRecordName`, `NextRecordType`
/// and (between record sets of one name and type with set identifiers) `NextRecordIdentifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// `name`: the first record set's name.
    pub name: String,
    /// `type`: its type.
    pub kind: String,
    /// `identifier`: its set identifier, for weighted, latency… record sets.
    pub identifier: Option<String>,
}

/// One change in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Must match the current record set exactly, or the whole batch fails.
    Delete,
    /// Fails if the record set exists.
    Create,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "DELETE",
            Self::Create => "CREATE",
        }
    }
}

/// The status of a submitted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeInfo {
    /// The change id (`/change/C…` or `C…`).
    pub id: String,
    /// `PENDING` or `INSYNC`.
    pub insync: bool,
}

/// Why a call failed: a [`ProviderError`], plus the API's error code when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The classified error.
    pub error: ProviderError,
    /// Route 53's error code (`InvalidChangeBatch`, `Throttling`, …).
    pub code: Option<String>,
}

impl From<Failure> for ProviderError {
    fn from(f: Failure) -> Self {
        f.error
    }
}

/// The API client: endpoint, signing, pacing. No `Debug`: it holds the credentials.
pub struct Api {
    http: reqwest::Client,
    endpoint: Url,
    region: String,
    credentials: LiveCredentials,
    min_interval: Duration,
    next_slot: Mutex<Option<Instant>>,
}

impl Api {
    /// A client for `endpoint` (e.g. `https://route53.amazonaws.com`), signing for `region`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: LiveCredentials,
        request_timeout: Duration,
        min_interval: Duration,
    ) -> Result<Self, ProviderError> {
        let mut base = endpoint.trim().to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let endpoint = match Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => {
                return Err(ProviderError::Rejected(format!(
                    "endpoint_url {endpoint:?} is not an http(s) URL"
                )));
            }
        };
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .map_err(|e| ProviderError::Rejected(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            region: region.to_owned(),
            credentials,
            min_interval,
            next_slot: Mutex::new(None),
        })
    }

    /// ListResourceRecordSets from `name`/`kind` on, at most `max_items`.
    pub async fn list(
        &self,
        zone: &str,
        name: &str,
        kind: &str,
        max_items: u32,
    ) -> Result<Page, Failure> {
        let start = Start {
            name: name.to_owned(),
            kind: kind.to_owned(),
            identifier: None,
        };
        self.list_from(zone, Some(&start), max_items).await
    }

    /// ListResourceRecordSets from `start` on (from the zone's first record set when `None`),
    /// at most `max_items` (Route 53 returns up to 300).
    pub async fn list_from(
        &self,
        zone: &str,
        start: Option<&Start>,
        max_items: u32,
    ) -> Result<Page, Failure> {
        let mut url = self.url(&format!("2013-04-01/hostedzone/{zone}/rrset"))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(start) = start {
                query
                    .append_pair("name", &start.name)
                    .append_pair("type", &start.kind);
                if let Some(id) = &start.identifier {
                    query.append_pair("identifier", id);
                }
            }
            query.append_pair("maxitems", &max_items.to_string());
        }
        let body = self.call(Method::GET, url, None).await?;
        parse_page(&body).map_err(garbled)
    }

    /// ChangeResourceRecordSets with `changes`, all or nothing.
    pub async fn change(
        &self,
        zone: &str,
        comment: &str,
        changes: &[(Action, RecordSet)],
    ) -> Result<ChangeInfo, Failure> {
        let url = self.url(&format!("2013-04-01/hostedzone/{zone}/rrset"))?;
        let body = self
            .call(Method::POST, url, Some(batch_xml(comment, changes)))
            .await?;
        parse_change_info(&body).map_err(garbled)
    }

    /// GetChange.
    pub async fn get_change(&self, id: &str) -> Result<ChangeInfo, Failure> {
        let id = id.trim_start_matches("/change/");
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(garbled(format!("change id {id:?} is not usable")));
        }
        let url = self.url(&format!("2013-04-01/change/{id}"))?;
        let body = self.call(Method::GET, url, None).await?;
        parse_change_info(&body).map_err(garbled)
    }

    fn url(&self, path: &str) -> Result<Url, Failure> {
        self.endpoint.join(path).map_err(|e| Failure {
            error: ProviderError::Rejected(format!("cannot build the request URL: {e}")),
            code: None,
        })
    }

    /// Waits for this call's slot: calls are spaced at least `min_interval` apart.
    async fn pace(&self) {
        let wait_until = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.min_interval);
            slot
        };
        tokio::time::sleep_until(wait_until).await;
    }

    /// Signs and sends one request; returns the body of a 2xx answer. When the credentials are
    /// refused and their source now holds others, sends it once more signed with those.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<String>,
    ) -> Result<String, Failure> {
        let body = body.unwrap_or_default();
        match self.call_once(method.clone(), url.clone(), &body).await {
            Err(Failure {
                error: ProviderError::Auth(why),
                code,
            }) => match self.credentials.refresh() {
                Ok(true) => {
                    tracing::info!(
                        code = code.as_deref().unwrap_or(""),
                        "Route 53 refused the AWS credentials; retrying once with the fresh ones \
                         their source now holds"
                    );
                    self.call_once(method, url, &body).await
                }
                Ok(false) => Err(Failure {
                    error: ProviderError::Auth(why),
                    code,
                }),
                Err(e) => Err(Failure {
                    error: ProviderError::Auth(format!(
                        "{why}; reading the credentials again failed too: {e}"
                    )),
                    code,
                }),
            },
            other => other,
        }
    }

    /// Paces, signs with the current credentials and sends one request.
    async fn call_once(&self, method: Method, url: Url, body: &str) -> Result<String, Failure> {
        self.pace().await;
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if method == Method::POST {
            headers.push(("content-type", "text/xml"));
        }
        let signed = self.sign(&method, &url, &headers, body.as_bytes())?;
        let mut request = self.http.request(method, url);
        for (name, value) in headers
            .iter()
            .copied()
            .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            request = request.header(name, value);
        }
        if !body.is_empty() {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.map_err(|e| Failure {
            error: ProviderError::Transient(format!(
                "Route 53 request failed: {}",
                e.without_url()
            )),
            code: None,
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| Failure {
            error: ProviderError::Transient(format!("Route 53 answer cut short: {e}")),
            code: None,
        })?;
        if status.is_success() {
            return Ok(text);
        }
        Err(classify(status, &text, retry_after))
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for a request.
    fn sign(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, Failure> {
        let signing = |e: String| Failure {
            error: ProviderError::Rejected(format!("cannot sign the Route 53 request: {e}")),
            code: None,
        };
        let c = self.credentials.current();
        let identity = Credentials::new(
            c.access_key_id.expose_secret(),
            c.secret_access_key.expose_secret(),
            c.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            None,
            "sitewarden",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| signing(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method.as_str(),
            url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| signing(e.to_string()))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| signing(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect())
    }
}

fn garbled(detail: impl std::fmt::Display) -> Failure {
    Failure {
        error: ProviderError::Transient(format!(
            "Route 53 sent an answer that cannot be read: {detail}"
        )),
        code: None,
    }
}

/// Maps a non-2xx answer to an error class.
pub fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Failure {
    let (code, message) = error_of(body);
    let what = format!(
        "Route 53 answered HTTP {}{}{}",
        status.as_u16(),
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    );
    let auth_code = matches!(
        code.as_deref(),
        Some(
            "AccessDenied"
                | "AccessDeniedException"
                | "SignatureDoesNotMatch"
                | "InvalidClientTokenId"
                | "IncompleteSignature"
                | "MissingAuthenticationToken"
                | "ExpiredToken"
                | "UnrecognizedClientException"
        )
    );
    let throttled = matches!(
        code.as_deref(),
        Some("Throttling" | "ThrottlingException" | "PriorRequestNotComplete")
    );
    let error =
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN || auth_code {
            ProviderError::Auth(format!(
                "{what}; check the AWS credentials and that their IAM policy allows \
             route53:ListResourceRecordSets, route53:ChangeResourceRecordSets and \
             route53:GetChange on this hosted zone"
            ))
        } else if status == StatusCode::TOO_MANY_REQUESTS || throttled {
            ProviderError::RateLimited { retry_after }
        } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            ProviderError::Transient(what)
        } else if code.as_deref() == Some("NoSuchHostedZone") {
            ProviderError::Rejected(format!("{what}; check `hosted_zone_id`"))
        } else {
            ProviderError::Rejected(what)
        };
    Failure { error, code }
}

/// The `Code` and `Message` of an error answer (`<ErrorResponse><Error>…` or `<Error>…`).
fn error_of(body: &str) -> (Option<String>, Option<String>) {
    let Ok(doc) = roxmltree::Document::parse(body) else {
        return (None, None);
    };
    let text_of = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(|t| t.trim().chars().take(300).collect::<String>())
    };
    (text_of("Code"), text_of("Message"))
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.tag_name().name() == name)
}

fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_owned())
}

/// Reads a ListResourceRecordSets answer.
pub fn parse_page(body: &str) -> Result<Page, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    if root.tag_name().name() != "ListResourceRecordSetsResponse" {
        return Err(format!("unexpected <{}>", root.tag_name().name()));
    }
    let mut sets = Vec::new();
    if let Some(list) = child(root, "ResourceRecordSets") {
        for set in list
            .children()
            .filter(|c| c.tag_name().name() == "ResourceRecordSet")
        {
            let name = child_text(set, "Name").ok_or("a record set without a Name")?;
            let kind = child_text(set, "Type").ok_or("a record set without a Type")?;
            if child(set, "SetIdentifier").is_some() || child(set, "AliasTarget").is_some() {
                // Weighted, latency, failover or alias record sets: never ours to change.
                sets.push(RecordSet {
                    name,
                    kind: format!("{kind}+routing"),
                    ttl: 0,
                    values: Vec::new(),
                });
                continue;
            }
            let ttl = child_text(set, "TTL")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| format!("record set {name} has no TTL"))?;
            let values = child(set, "ResourceRecords")
                .map(|rr| {
                    rr.children()
                        .filter(|c| c.tag_name().name() == "ResourceRecord")
                        .filter_map(|r| child(r, "Value").and_then(|v| v.text()))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            sets.push(RecordSet {
                name,
                kind,
                ttl,
                values,
            });
        }
    }
    let truncated = child_text(root, "IsTruncated").as_deref() == Some("true");
    let next = match (
        child_text(root, "NextRecordName"),
        child_text(root, "NextRecordType"),
    ) {
        (Some(name), Some(kind)) if truncated => Some(Start {
            name,
            kind,
            identifier: child_text(root, "NextRecordIdentifier"),
        }),
        _ => None,
    };
    Ok(Page {
        sets,
        truncated,
        next,
    })
}

/// Reads the ChangeInfo of a ChangeResourceRecordSets or GetChange answer.
pub fn parse_change_info(body: &str) -> Result<ChangeInfo, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| e.to_string())?;
    let info = doc
        .descendants()
        .find(|n| n.tag_name().name() == "ChangeInfo")
        .ok_or("no ChangeInfo")?;
    let id = child_text(info, "Id").ok_or("ChangeInfo without an Id")?;
    let status = child_text(info, "Status").ok_or("ChangeInfo without a Status")?;
    Ok(ChangeInfo {
        id,
        insync: status == "INSYNC",
    })
}

/// Escapes text for an XML element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The ChangeResourceRecordSets request body.
pub fn batch_xml(comment: &str, changes: &[(Action, RecordSet)]) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\">\
         <ChangeBatch><Comment>{}</Comment><Changes>",
        escape(comment)
    );
    for (action, set) in changes {
        x.push_str(&format!(
            "<Change><Action>{}</Action><ResourceRecordSet><Name>{}</Name><Type>{}</Type>\
             <TTL>{}</TTL><ResourceRecords>",
            action.as_str(),
            escape(&set.name),
            escape(&set.kind),
            set.ttl
        ));
        for v in &set.values {
            x.push_str(&format!(
                "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                escape(v)
            ));
        }
        x.push_str("</ResourceRecords></ResourceRecordSet></Change>");
    }
    x.push_str("</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_read_with_values_verbatim() {
        let body = r#"<?xml version="1.0"?><ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ResourceRecordSets><ResourceRecordSet><Name>mail.example.com.</Name><Type>CNAME</Type><TTL>300</TTL><ResourceRecords><ResourceRecord><Value>mail-rr.example.com</Value></ResourceRecord></ResourceRecords></ResourceRecordSet><ResourceRecordSet><Name>_sitewarden.mail.example.com.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>"sitewarden epoch=1 gen=2"</Value></ResourceRecord></ResourceRecords></ResourceRecordSet><ResourceRecordSet><Name>x.example.com.</Name><Type>A</Type><SetIdentifier>w1</SetIdentifier><Weight>1</Weight><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>192.0.2.1</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></ResourceRecordSets><IsTruncated>true</IsTruncated><MaxItems>3</MaxItems></ListResourceRecordSetsResponse>"#;
        let page = parse_page(body).unwrap();
        assert!(page.truncated);
        assert_eq!(page.sets.len(), 3);
        assert_eq!(page.sets[0].values, ["mail-rr.example.com"]);
        assert_eq!(page.sets[1].values, ["\"sitewarden epoch=1 gen=2\""]);
        assert_eq!(page.sets[1].ttl, 60);
        assert_eq!(page.sets[2].kind, "A+routing");
        assert_eq!(page.next, None, "no NextRecordName given");
        let next = body.replace(
            "<IsTruncated>",
            "<NextRecordName>z.example.com.</NextRecordName><NextRecordType>A</NextRecordType>\
             <NextRecordIdentifier>w2</NextRecordIdentifier><IsTruncated>",
        );
        assert_eq!(
            parse_page(&next).unwrap().next,
            Some(Start {
                name: "z.example.com.".into(),
                kind: "A".into(),
                identifier: Some("w2".into()),
            })
        );
        assert!(parse_page("<Other/>").is_err());
        assert!(parse_page("not xml").is_err());
    }

    #[test]
    fn the_batch_escapes_values() {
        let x = batch_xml(
            "sitewarden epoch=1 gen=2",
            &[(
                Action::Create,
                RecordSet {
                    name: "_sitewarden.mail.example.com.".into(),
                    kind: "TXT".into(),
                    ttl: 60,
                    values: vec!["\"a<b&c\"".into()],
                },
            )],
        );
        assert!(x.contains("<Value>&quot;a&lt;b&amp;c&quot;</Value>"), "{x}");
        assert!(roxmltree::Document::parse(&x).is_ok());
    }

    #[test]
    fn errors_are_classified() {
        let body = |code: &str| {
            format!(
                "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
                 <Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>"
            )
        };
        let c = |status: u16, code: &str| {
            classify(StatusCode::from_u16(status).unwrap(), &body(code), None)
        };
        assert!(matches!(
            c(403, "SignatureDoesNotMatch").error,
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            c(400, "ExpiredToken").error,
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            c(400, "Throttling").error,
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            c(400, "PriorRequestNotComplete").error,
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            c(503, "ServiceUnavailable").error,
            ProviderError::Transient(_)
        ));
        let refused = c(400, "InvalidChangeBatch");
        assert!(matches!(refused.error, ProviderError::Rejected(_)));
        assert_eq!(refused.code.as_deref(), Some("InvalidChangeBatch"));
        let hz = c(404, "NoSuchHostedZone");
        assert!(hz.error.to_string().contains("hosted_zone_id"));
        let r = classify(
            StatusCode::TOO_MANY_REQUESTS,
            "",
            Some(Duration::from_secs(2)),
        );
        assert_eq!(
            r.error,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }

    /// A Route 53 stand-in that accepts only requests signed with the key id `AKIANEW` and
    /// answers others `403 ExpiredToken`; records the key id of every request.
    async fn strict_endpoint() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::{HeaderMap, StatusCode as Status};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let log = log.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let key = auth
                    .split("Credential=")
                    .nth(1)
                    .and_then(|c| c.split('/').next())
                    .unwrap_or("")
                    .to_owned();
                log.lock().unwrap().push(key.clone());
                if key == "AKIANEW" {
                    (
                        Status::OK,
                        format!(
                            "<ListResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ResourceRecordSets/>\
                             <IsTruncated>false</IsTruncated><MaxItems>1</MaxItems>\
                             </ListResourceRecordSetsResponse>"
                        ),
                    )
                } else {
                    (
                        Status::FORBIDDEN,
                        format!(
                            "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type>\
                             <Code>ExpiredToken</Code><Message>The security token included in \
                             the request is expired</Message></Error></ErrorResponse>"
                        ),
                    )
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    fn api_over_files(endpoint: &str, dir: &std::path::Path) -> Api {
        use super::super::credentials::CredentialSource;
        use sitewarden_shared::config::secret::SecretRef;
        let file = |name: &str| SecretRef {
            env: None,
            file: Some(dir.join(name)),
        };
        let live = LiveCredentials::from_source(CredentialSource::Configured {
            access_key_id: file("key-id"),
            secret_access_key: file("secret"),
            session_token: Some(file("token")),
        })
        .unwrap();
        Api::new(
            endpoint,
            "us-east-1",
            live,
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .unwrap()
    }

    fn write_keys(dir: &std::path::Path, id: &str) {
        std::fs::write(dir.join("key-id"), format!("{id}\n")).unwrap();
        std::fs::write(dir.join("secret"), format!("s3cr3t-{id}\n")).unwrap();
        std::fs::write(dir.join("token"), format!("t0k-{id}\n")).unwrap();
    }

    #[tokio::test]
    async fn expired_credentials_are_read_again_and_the_call_retried_once() {
        let (endpoint, seen) = strict_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path(), "AKIAOLD");
        let api = api_over_files(&endpoint, dir.path());

        // The credentials' helper renewed the files after the controller read them.
        write_keys(dir.path(), "AKIANEW");
        let page = api
            .list("Z1", "mail.example.com.", "CNAME", 1)
            .await
            .unwrap();
        assert!(page.sets.is_empty());
        assert_eq!(*seen.lock().unwrap(), ["AKIAOLD", "AKIANEW"]);
        // From now on the fresh credentials sign every call at once.
        api.list("Z1", "mail.example.com.", "CNAME", 1)
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn refused_credentials_whose_source_did_not_change_fail_after_one_request() {
        let (endpoint, seen) = strict_endpoint().await;
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path(), "AKIAOLD");
        let api = api_over_files(&endpoint, dir.path());
        let err = api
            .list("Z1", "mail.example.com.", "CNAME", 1)
            .await
            .unwrap_err();
        assert!(matches!(err.error, ProviderError::Auth(_)), "{err:?}");
        assert_eq!(err.code.as_deref(), Some("ExpiredToken"));
        assert_eq!(*seen.lock().unwrap(), ["AKIAOLD"], "no second request");
        let shown = err.error.to_string();
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k"),
            "{shown}"
        );
    }

    #[test]
    fn change_info_is_read() {
        let i = parse_change_info("<GetChangeResponse><ChangeInfo><Id>/change/C1</Id><Status>PENDING</Status></ChangeInfo></GetChangeResponse>").unwrap();
        assert_eq!(
            i,
            ChangeInfo {
                id: "/change/C1".into(),
                insync: false
            }
        );
    }
}
