//! The committed schema `schemas/audit.v1.schema.json` is what the types generate, and it holds
//! for real records: every example of docs/api.md and a record built in Rust for every kind
//! validate, while an unknown kind, a misspelled or missing required field or a value of the
//! wrong type is refused, exactly where the reader would keep the event as `Unknown` (or refuse
//! the record). The docs give an example of every kind the schema lists, and docs/alerts.md
//! describes every alert kind.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::audit::AuditEvent;
use crate::documented;

#[path = "schema_built.rs"]
mod built;

#[test]
fn schemas_are_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let update = std::env::var_os("SITEWARDEN_UPDATE_SCHEMAS").is_some();
    for (name, text) in all() {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale; run SITEWARDEN_UPDATE_SCHEMAS=1 cargo test -p sitewarden-api schemas_are_fresh",
            path.display()
        );
    }
}

/// The committed schema, as a third party reads it.
fn committed() -> Value {
    serde_json::from_str(include_str!("../schemas/audit.v1.schema.json")).unwrap()
}

/// A draft 2020-12 validator of the committed schema that checks `format` too (`date-time`).
fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&committed())
        .unwrap()
}

/// Why `record` does not validate, one line per error (empty: it does).
fn errors(v: &jsonschema::Validator, record: &Value) -> Vec<String> {
    v.iter_errors(record)
        .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
        .collect()
}

/// Whether the reader types `record` as a known kind (not `Unknown`, not refused whole).
fn reads_as_known_kind(record: &Value) -> bool {
    serde_json::from_value::<AuditRecord>(record.clone())
        .is_ok_and(|r| !matches!(r.event, AuditEvent::Unknown(_)))
}

/// The constant values a schema node allows (`const`, `enum`), through `$ref`, `anyOf` and
/// `oneOf`.
fn consts(schema: &Value, node: &Value, out: &mut BTreeSet<String>) {
    if let Some(c) = node.get("const").and_then(Value::as_str) {
        out.insert(c.to_owned());
    }
    for e in node
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(e.as_str().map(str::to_owned));
    }
    each_branch(schema, node, |n| consts(schema, n, out));
}

/// The values of the tag property `tag` over every branch of a schema node (through `$ref`,
/// `anyOf`, `oneOf` and `allOf`, not into other properties).
fn tags(schema: &Value, node: &Value, tag: &str, out: &mut BTreeSet<String>) {
    if let Some(t) = node.pointer(&format!("/properties/{tag}")) {
        consts(schema, t, out);
    }
    each_branch(schema, node, |n| tags(schema, n, tag, out));
}

/// Calls `f` on the schemas a node refers to or combines.
fn each_branch(schema: &Value, node: &Value, mut f: impl FnMut(&Value)) {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let def = r.strip_prefix('#').unwrap_or(r);
        f(schema.pointer(def).unwrap_or_else(|| panic!("no {r}")));
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for n in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            f(n);
        }
    }
}

/// The values the committed schema allows for `tag` in the definition `def`.
fn schema_tags(def: &str, tag: &str) -> BTreeSet<String> {
    let schema = committed();
    let mut out = BTreeSet::new();
    tags(&schema, &schema["$defs"][def], tag, &mut out);
    out
}

#[test]
fn every_documented_example_validates() {
    let v = validator();
    let examples = documented::audit_records();
    assert!(examples.len() > 20, "{} examples", examples.len());
    for record in examples {
        assert_eq!(errors(&v, &record), Vec::<String>::new(), "{record}");
    }
}

#[test]
fn a_record_of_every_kind_built_in_rust_validates_and_reads_back() {
    let v = validator();
    for record in built::records() {
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(errors(&v, &json), Vec::<String>::new(), "{json}");
        assert_eq!(
            serde_json::from_value::<AuditRecord>(json.clone()).unwrap(),
            record,
            "{json}"
        );
    }
}

#[test]
fn the_built_records_cover_every_kind_report_command_action_and_failure_class() {
    let records: Vec<Value> = built::records()
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    let seen = |pointer: &str| -> BTreeSet<String> {
        records
            .iter()
            .filter_map(|r| r.pointer(pointer).and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(seen("/event/kind"), schema_tags("AuditEvent", "kind"));
    assert_eq!(
        seen("/event/report"),
        schema_tags("ProviderReport", "report")
    );
    assert_eq!(
        seen("/event/class/class"),
        schema_tags("FailureClass", "class")
    );
    assert_eq!(
        seen("/event/action/action"),
        schema_tags("OverrideAction", "action")
    );
    assert_eq!(
        seen("/event/action/what/kind"),
        schema_tags("ReleaseTarget", "kind")
    );
    assert_eq!(
        seen("/event/command/command"),
        schema_tags("Command", "command")
    );
}

/// A documented example of `kind`, changed by `f`.
fn example_with(kind: &str, f: impl FnOnce(&mut Value)) -> Value {
    let mut v = documented::audit_records()
        .into_iter()
        .find(|v| v["event"]["kind"] == kind)
        .unwrap_or_else(|| panic!("docs/api.md has an example of {kind}"));
    f(&mut v);
    v
}

/// Renames the field `from` of the object at `pointer` to `to`.
fn rename(v: &mut Value, pointer: &str, from: &str, to: &str) {
    let obj = v.pointer_mut(pointer).unwrap().as_object_mut().unwrap();
    let value = obj.remove(from).unwrap();
    obj.insert(to.to_owned(), value);
}

#[test]
fn the_schema_refuses_what_the_reader_would_not_type_as_a_known_kind() {
    let v = validator();
    let refused = [
        (
            "an unknown kind",
            example_with("decision", |r| r["event"]["kind"] = json!("quorum_vote")),
        ),
        (
            "a kind from a newer controller",
            example_with("decision", |r| {
                r["event"] = json!({"kind": "quorum_vote", "votes": 3});
            }),
        ),
        (
            "a misspelled required field",
            example_with("decision", |r| rename(r, "/event", "namespace", "namespce")),
        ),
        (
            "a missing required field",
            example_with("intent", |r| {
                r["event"].as_object_mut().unwrap().remove("evidence");
            }),
        ),
        (
            "an engine event without its engine time",
            example_with("verdict", |r| {
                r["event"].as_object_mut().unwrap().remove("engine_at");
            }),
        ),
        (
            "a verdict that does not exist",
            example_with("verdict", |r| r["event"]["to"] = json!("sideways")),
        ),
        (
            "a rule that does not exist",
            example_with("decision", |r| {
                r["event"]["evidence"]["rule"] = json!("panic")
            }),
        ),
        (
            "an alert kind that does not exist",
            example_with("alert", |r| r["event"]["alert"]["kind"] = json!("meteor")),
        ),
        (
            "a site id that no subject can carry",
            example_with("verdict", |r| r["event"]["site"] = json!("site.1")),
        ),
        (
            "a generation written as a string",
            example_with("apply_applied", |r| r["event"]["generation"] = json!("42")),
        ),
        (
            "an event that is not an object",
            example_with("decision", |r| r["event"] = json!("decision")),
        ),
        (
            "a misspelled record field",
            example_with("decision", |r| rename(r, "", "controller", "controler")),
        ),
        (
            "a role that does not exist",
            example_with("decision", |r| r["role"] = json!("observer")),
        ),
        (
            "a time that is not RFC 3339",
            example_with("decision", |r| r["at"] = json!("yesterday")),
        ),
    ];
    for (what, record) in refused {
        assert!(!v.is_valid(&record), "{what} is accepted: {record}");
        assert!(
            !reads_as_known_kind(&record),
            "{what} is refused by the schema but typed by the reader: {record}"
        );
    }
}

#[test]
fn the_schema_accepts_fields_a_later_version_may_add_as_the_reader_does() {
    let v = validator();
    let accepted = [
        (
            "a new field in an event",
            example_with("decision", |r| r["event"]["zone"] = json!("example.com")),
        ),
        (
            "a new field in the record",
            example_with("alert", |r| r["region"] = json!("eu-west")),
        ),
        (
            "a new field in nested evidence",
            example_with("intent", |r| r["event"]["evidence"]["score"] = json!(0.5)),
        ),
        (
            // An optional field misspelled is an unknown field: not refused, and read as absent.
            "a misspelled optional field",
            example_with("apply_refused", |r| rename(r, "", "epoch", "epoc")),
        ),
    ];
    for (what, record) in accepted {
        assert_eq!(
            errors(&v, &record),
            Vec::<String>::new(),
            "{what}: {record}"
        );
        assert!(reads_as_known_kind(&record), "{what}: {record}");
    }
}

#[test]
fn the_docs_give_an_example_of_every_kind_the_schema_lists() {
    let documented: BTreeSet<String> = documented::audit_records()
        .iter()
        .map(|v| v["event"]["kind"].as_str().unwrap_or("?").to_owned())
        .collect();
    let kinds = schema_tags("AuditEvent", "kind");
    assert!(kinds.len() > 20, "{kinds:?}");
    assert_eq!(documented, kinds);
}

#[test]
fn docs_alerts_describe_every_alert_kind_the_engine_raises_and_no_other() {
    let schema = committed();
    let mut kinds = BTreeSet::new();
    consts(&schema, &schema["$defs"]["AlertKind"], &mut kinds);
    assert!(kinds.len() > 20, "{kinds:?}");
    let rows = documented::alert_kind_rows();
    let described: BTreeSet<String> = rows.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(described, kinds, "docs/alerts.md, \"Alert kinds\"");
    // Every kind is raised by the engine: none may be described as waiting for it.
    for (kind, row) in &rows {
        let row = row.to_ascii_lowercase();
        for words in [
            "not raised",
            "not yet",
            "reserved",
            "unused",
            "never raised",
        ] {
            assert!(
                !row.contains(words),
                "{kind} is described as {words:?}: {row}"
            );
        }
    }
}
