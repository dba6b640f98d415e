//! The JSON Schema of the audit record ([`AuditRecord`]), generated from the Rust types like the
//! event contract's (`shared/contract/src/schema.rs`).
//!
//! `controller/api/schemas/audit.v1.schema.json` is committed so a reader of the audit stream
//! `SITEWARDEN_AUDIT`, of `GET /api/v1/history` or of `sitewarden history --json` can validate
//! records without Rust; the test `schemas_are_fresh` fails when it differs from what the types
//! generate. Regenerate with
//! `SITEWARDEN_UPDATE_SCHEMAS=1 cargo test -p sitewarden-api schemas_are_fresh`.
//!
//! What the schema says, and why:
//! - It describes what this version writes: every `kind` of [`crate::AuditEvent`]'s engine and
//!   runtime arms, each with its own required fields (an untagged `anyOf` of the engine's
//!   events, flattened beside `engine_at`, and the runtime's). The reader's open-ended
//!   `Unknown` arm is left out, so an unknown `kind`, a missing or misspelled required field or
//!   a value of the wrong type is refused; the reader keeps such an event as `Unknown`.
//! - Like the event contract it does not set `additionalProperties: false`: a later version may
//!   add optional fields, and the reader ignores fields it does not know, so an extra (or
//!   misspelled optional) field is accepted by both.
//! - It is the schema of what a reader accepts (schemars' deserialize contract): fields with a
//!   serde default or skipped when empty (`epoch`, `seq`, `force`, `outcome`, …) are optional.

use schemars::{JsonSchema, schema_for};

use crate::audit::AuditRecord;

/// File name of the audit record's schema, in `controller/api/schemas/`.
pub const AUDIT_SCHEMA_FILE: &str = "audit.v1.schema.json";

/// `(file name, pretty JSON)` for every schema of this crate.
pub fn all() -> Vec<(&'static str, String)> {
    fn one<T: JsonSchema>(name: &'static str) -> (&'static str, String) {
        let schema = schema_for!(T);
        let text = serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n";
        (name, text)
    }
    vec![one::<AuditRecord>(AUDIT_SCHEMA_FILE)]
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
