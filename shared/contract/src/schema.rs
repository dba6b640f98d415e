//! JSON Schemas of the v1 events and the edge notification, generated from the Rust types.
//!
//! `shared/contract/schemas/*.json` are committed so third parties can validate events without Rust; the
//! test `schemas_are_fresh` fails when they differ from what the types generate. Regenerate with
//! `SITEWARDEN_UPDATE_SCHEMAS=1 cargo test -p sitewarden-contract schemas_are_fresh`.

use schemars::{JsonSchema, schema_for};

use crate::edge::EdgeNotification;
use crate::event::{DbCopySnapshot, Heartbeat, Observation};

/// `(file name, pretty JSON)` for every event schema.
pub fn all() -> Vec<(&'static str, String)> {
    fn one<T: JsonSchema>(name: &'static str) -> (&'static str, String) {
        let schema = schema_for!(T);
        let text = serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n";
        (name, text)
    }
    vec![
        one::<Observation>("observation.v1.schema.json"),
        one::<DbCopySnapshot>("dbcopy.v1.schema.json"),
        one::<Heartbeat>("heartbeat.v1.schema.json"),
        one::<EdgeNotification>("edge.v1.schema.json"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_fresh() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let update = std::env::var_os("SITEWARDEN_UPDATE_SCHEMAS").is_some();
        for (name, text) in all() {
            let path = dir.join(name);
            if update {
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "{} is stale; run SITEWARDEN_UPDATE_SCHEMAS=1 cargo test -p sitewarden-contract schemas_are_fresh",
                path.display()
            );
        }
    }
}
