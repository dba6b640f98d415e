//! What the docs show, read from the docs themselves so they stay the only copy: the example
//! audit records of docs/api.md ("`GET /api/v1/history`") and the alert kinds of
//! docs/alerts.md ("Alert kinds"). For the tests of the audit record and its schema.

use serde_json::Value;

/// The example records between the `audit-examples` markers of docs/api.md, one a line.
pub(crate) fn audit_records() -> Vec<Value> {
    let doc = include_str!("../../../docs/api.md");
    let start = doc
        .find("<!-- audit-examples:begin -->")
        .expect("docs/api.md has the audit examples");
    let end = doc
        .find("<!-- audit-examples:end -->")
        .expect("docs/api.md closes the audit examples");
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The rows of the table of docs/alerts.md, "Alert kinds": `(kind, whole row)`, the kind being
/// the first cell's first word in backticks.
pub(crate) fn alert_kind_rows() -> Vec<(String, String)> {
    let doc = include_str!("../../../docs/alerts.md");
    let start = doc
        .find("\n## Alert kinds")
        .expect("docs/alerts.md has a section \"Alert kinds\"");
    let section = &doc[start + 1..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let kind = row
                .split('`')
                .nth(1)
                .expect("a row starts with a kind in backticks");
            (kind.to_owned(), row.to_owned())
        })
        .collect()
}
