//! Renders database copies as the JSON that collectors really print: our collector script's
//! explicit form (PowerShell 7 or 5.1 running `deploy/exchange/Get-SitewardenDbCopyStatus.ps1`),
//! Windows PowerShell 5.1's remoting form, and an invalid form with bare integer enums.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::CopyState;

/// A JSON shape of `Get-MailboxDatabaseCopyStatus` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Our collector script: explicit strings, integers, ISO-8601 UTC dates (`ToString('o')`),
    /// always an array, compressed.
    Ps7,
    /// Like [`Shape::Ps7`] but a single copy prints as a lone object, as `$x | ConvertTo-Json`
    /// does without `-AsArray`.
    Ps7Unwrapped,
    /// Windows PowerShell 5.1 through remoting: enums as `{"value":N,"Value":"Name"}`, dates as
    /// `/Date(ms)/`, remoting's `PSComputerName`/`RunspaceId` properties, pretty-printed, and a
    /// single copy unwrapped to a lone object.
    Ps51,
    /// Invalid: like [`Shape::Ps51`] but `Status` and `ContentIndexState` are bare integers,
    /// which the parser must refuse.
    BareIntegerEnums,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 4] = [
        Shape::Ps7,
        Shape::Ps7Unwrapped,
        Shape::Ps51,
        Shape::BareIntegerEnums,
    ];

    /// The name used in `GET /copystatus?shape=NAME` and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Ps7 => "ps7",
            Shape::Ps7Unwrapped => "ps7-unwrapped",
            Shape::Ps51 => "ps51",
            Shape::BareIntegerEnums => "bare-integer",
        }
    }

    /// The shape with this [`Shape::name`].
    pub fn from_name(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// `CopyStatusEnum` numbers as Exchange 2013+ defines them, as far as known; the parser never
/// reads the numbers, they only make the 5.1 shape look real.
const STATUS_NUMBERS: [(&str, i64); 19] = [
    ("Unknown", 0),
    ("Initializing", 1),
    ("Resynchronizing", 2),
    ("DisconnectedAndResynchronizing", 3),
    ("DisconnectedAndHealthy", 4),
    ("Healthy", 5),
    ("Failed", 6),
    ("FailedAndSuspended", 7),
    ("Suspended", 8),
    ("Seeding", 9),
    ("Mounting", 10),
    ("Mounted", 11),
    ("Dismounting", 12),
    ("Dismounted", 13),
    ("NonExchangeReplication", 14),
    ("SeedingSource", 15),
    ("Misconfigured", 16),
    ("ServiceDown", 17),
    ("SinglePageRestore", 18),
];

/// `ContentIndexStatusType` numbers (illustrative, like [`STATUS_NUMBERS`]).
const CONTENT_INDEX_NUMBERS: [(&str, i64); 12] = [
    ("Unknown", 0),
    ("Healthy", 1),
    ("Crawling", 2),
    ("Failed", 3),
    ("Seeding", 4),
    ("FailedAndSuspended", 5),
    ("Suspended", 6),
    ("Disabled", 7),
    ("AutoSuspended", 8),
    ("HealthyAndUpgrading", 9),
    ("DiskUnavailable", 10),
    ("NotApplicable", 11),
];

fn number(table: &[(&str, i64)], name: &str) -> i64 {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or(99)
}

/// `DateTime.ToUniversalTime().ToString('o')`: seven fractional digits and `Z`.
pub fn iso_round_trip(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// A JSON value whose object keys keep their order (PowerShell prints properties in
/// declaration order; `serde_json::Map` would sort them).
#[derive(Debug, Clone)]
enum J {
    /// A string, number, boolean or null.
    Scalar(Value),
    /// An object, keys in order.
    Obj(Vec<(&'static str, J)>),
}

fn s(v: Value) -> J {
    J::Scalar(v)
}

/// A 5.1 enum object: `{"value":N,"Value":"Name"}`.
fn enum_obj(n: i64, name: &str) -> J {
    J::Obj(vec![("value", s(json!(n))), ("Value", s(json!(name)))])
}

/// Renders `copies` (with each database's active server) in `shape`.
pub fn render(copies: &[(CopyState, Option<String>)], shape: Shape) -> String {
    let items: Vec<J> = copies
        .iter()
        .map(|(c, active)| match shape {
            Shape::Ps7 | Shape::Ps7Unwrapped => explicit(c, active.as_deref()),
            Shape::Ps51 => remoting(c, active.as_deref(), false),
            Shape::BareIntegerEnums => remoting(c, active.as_deref(), true),
        })
        .collect();
    let unwrap = shape != Shape::Ps7 && items.len() == 1;
    let mut out = String::new();
    match shape {
        Shape::Ps7 | Shape::Ps7Unwrapped => {
            if unwrap {
                compact(&items[0], &mut out);
            } else {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    compact(item, &mut out);
                }
                out.push(']');
            }
        }
        Shape::Ps51 | Shape::BareIntegerEnums => {
            if unwrap {
                pretty(&items[0], 0, &mut out);
            } else {
                out.push_str("[\r\n");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\r\n");
                    }
                    out.push_str("    ");
                    pretty(item, 4, &mut out);
                }
                out.push_str("\r\n]");
            }
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    // Serialising a scalar Value cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

fn compact(j: &J, out: &mut String) {
    match j {
        J::Scalar(v) => out.push_str(&scalar(v)),
        J::Obj(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("\"{k}\":"));
                compact(v, out);
            }
            out.push('}');
        }
    }
}

/// Windows PowerShell 5.1's `ConvertTo-Json` layout: two spaces after the colon, nested
/// objects indented from the column of their opening brace, CRLF line ends.
fn pretty(j: &J, close_col: usize, out: &mut String) {
    match j {
        J::Scalar(v) => out.push_str(&scalar(v)),
        J::Obj(fields) => {
            out.push_str("{\r\n");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\r\n");
                }
                let prefix = format!("{}\"{k}\":  ", " ".repeat(close_col + 4));
                out.push_str(&prefix);
                pretty(v, prefix.len(), out);
            }
            out.push_str("\r\n");
            out.push_str(&" ".repeat(close_col));
            out.push('}');
        }
    }
}

fn last_inspected(c: &CopyState) -> Option<DateTime<Utc>> {
    // The active copy inspects no logs: Exchange leaves the field empty.
    if c.status.is_active() {
        None
    } else {
        c.last_inspected_log_time
    }
}

/// The collector script's `[ordered]@{...}` projection.
fn explicit(c: &CopyState, active: Option<&str>) -> J {
    J::Obj(vec![
        ("Name", s(json!(c.name()))),
        ("DatabaseName", s(json!(c.database))),
        ("MailboxServer", s(json!(c.server))),
        ("Status", s(json!(c.status.as_str()))),
        ("ActiveDatabaseCopy", s(json!(active))),
        ("ActivationSuspended", s(json!(c.activation_suspended))),
        ("CopyQueueLength", s(json!(c.copy_queue_length))),
        ("ReplayQueueLength", s(json!(c.replay_queue_length))),
        ("ContentIndexState", s(json!(c.content_index_state))),
        (
            "LastInspectedLogTime",
            s(json!(last_inspected(c).map(iso_round_trip))),
        ),
        ("ActivationPreference", s(json!(c.activation_preference))),
        ("ErrorMessage", s(json!(c.error_message))),
    ])
}

/// `Get-MailboxDatabaseCopyStatus | ConvertTo-Json` through a 5.1 remoting session (a subset
/// of the properties, in Exchange's order, plus `ActivationPreference` as if joined in).
fn remoting(c: &CopyState, active: Option<&str>, bare_integers: bool) -> J {
    let status = c.status.as_str();
    let status_n = number(&STATUS_NUMBERS, status);
    let ci_n = number(&CONTENT_INDEX_NUMBERS, &c.content_index_state);
    let (status_v, ci_v) = if bare_integers {
        (s(json!(status_n)), s(json!(ci_n)))
    } else {
        (
            enum_obj(status_n, status),
            enum_obj(ci_n, &c.content_index_state),
        )
    };
    J::Obj(vec![
        (
            "RunspaceId",
            s(json!("6f1c2a9e-3b7d-4e52-9a0c-2d8f4b1e7c35")),
        ),
        ("Identity", s(json!(c.name()))),
        ("Name", s(json!(c.name()))),
        ("DatabaseName", s(json!(c.database))),
        ("Status", status_v),
        ("MailboxServer", s(json!(c.server))),
        ("ActiveDatabaseCopy", s(json!(active))),
        ("ActivationSuspended", s(json!(c.activation_suspended))),
        ("ActionInitiator", enum_obj(0, "Unknown")),
        ("ErrorMessage", s(json!(c.error_message))),
        ("CopyQueueLength", s(json!(c.copy_queue_length))),
        ("ReplayQueueLength", s(json!(c.replay_queue_length))),
        (
            "LastInspectedLogTime",
            s(json!(
                last_inspected(c).map(|t| format!("/Date({})/", t.timestamp_millis()))
            )),
        ),
        ("ContentIndexState", ci_v),
        ("ActivationPreference", s(json!(c.activation_preference))),
        (
            "PSComputerName",
            s(json!(format!(
                "{}.contoso.local",
                c.server.to_ascii_lowercase()
            ))),
        ),
        ("PSShowComputerName", s(json!(false))),
        ("IsValid", s(json!(true))),
        ("ObjectState", enum_obj(0, "New")),
    ])
}
