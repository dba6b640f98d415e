//! Generic JSON webhook body: the alert as the engine raised it, plus the rendered words, so a
//! receiver can route on `kind`/`severity` and show `title`/`command` without its own templates.
//! `schema` names the version; later versions only add optional fields.

use serde_json::{Value, json};

use super::render::{Message, Rendered};

/// The schema identifier carried in every body.
pub const SCHEMA: &str = "sitewarden.alert.v1";

/// The JSON body for one message.
pub fn body(m: &Message, r: &Rendered) -> Value {
    json!({
        "schema": SCHEMA,
        "at": m.at,
        "severity": r.severity,
        "kind": m.alert.kind,
        "subject": m.alert.subject,
        "resolved": r.resolved,
        "title": r.title,
        "text": m.alert.text,
        "why": r.why,
        "did": r.did,
        "command": r.command,
        "burst": m.burst,
        "evidence": m.alert.evidence,
    })
}
