//! Mailbox-database copies: the contract type and the parser for Exchange's PowerShell JSON.
//!
//! `deploy/exchange/Get-SitewardenDbCopyStatus.ps1` projects `Get-MailboxDatabaseCopyStatus`
//! (plus `ActivationPreference` from `Get-MailboxDatabase`) to explicit strings, numbers and
//! ISO-8601 dates. Windows PowerShell 5.1 is less tidy when a script is changed or run through
//! remoting, so [`parse_powershell_json`] also accepts its enum objects
//! (`{"value":1,"Value":"Healthy"}`) and `/Date(1700000000000)/` dates, and a lone object where an
//! array was expected (`ConvertTo-Json` unwraps one-element arrays). A bare integer where an enum
//! name belongs is refused: the number's meaning differs between Exchange builds, so guessing
//! would be worse than failing loudly. Status strings Exchange may add later are kept verbatim
//! and treated as not healthy.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A copy's `Status`, as Exchange names it. Unknown strings are kept in [`CopyStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(from = "String", into = "String")]
#[schemars(with = "String")]
pub enum CopyStatus {
    /// The active copy: its database is mounted on this server.
    Mounted,
    /// An active copy whose database is dismounted.
    Dismounted,
    /// The database is being mounted.
    Mounting,
    /// The database is being dismounted.
    Dismounting,
    /// A passive copy that is current and replicating.
    Healthy,
    /// A passive copy that failed.
    Failed,
    /// A passive copy that failed and was suspended.
    FailedAndSuspended,
    /// Replication to this copy is suspended.
    Suspended,
    /// The copy is being seeded.
    Seeding,
    /// This copy is the source of a seed.
    SeedingSource,
    /// The copy is starting up.
    Initializing,
    /// The copy is catching up with the active copy.
    Resynchronizing,
    /// The Replication service on the server is down.
    ServiceDown,
    /// Healthy, but the server lost contact with the active copy.
    DisconnectedAndHealthy,
    /// Resynchronizing, and the server lost contact with the active copy.
    DisconnectedAndResynchronizing,
    /// A single page is being restored.
    SinglePageRestore,
    /// Exchange itself reports the status as unknown.
    Unknown,
    /// A status this build does not know; never counted as healthy.
    Other(String),
}

const KNOWN_STATUSES: [(&str, CopyStatus); 17] = [
    ("Mounted", CopyStatus::Mounted),
    ("Dismounted", CopyStatus::Dismounted),
    ("Mounting", CopyStatus::Mounting),
    ("Dismounting", CopyStatus::Dismounting),
    ("Healthy", CopyStatus::Healthy),
    ("Failed", CopyStatus::Failed),
    ("FailedAndSuspended", CopyStatus::FailedAndSuspended),
    ("Suspended", CopyStatus::Suspended),
    ("Seeding", CopyStatus::Seeding),
    ("SeedingSource", CopyStatus::SeedingSource),
    ("Initializing", CopyStatus::Initializing),
    ("Resynchronizing", CopyStatus::Resynchronizing),
    ("ServiceDown", CopyStatus::ServiceDown),
    ("DisconnectedAndHealthy", CopyStatus::DisconnectedAndHealthy),
    (
        "DisconnectedAndResynchronizing",
        CopyStatus::DisconnectedAndResynchronizing,
    ),
    ("SinglePageRestore", CopyStatus::SinglePageRestore),
    ("Unknown", CopyStatus::Unknown),
];

impl From<String> for CopyStatus {
    fn from(s: String) -> Self {
        KNOWN_STATUSES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s))
            .map(|(_, st)| st.clone())
            .unwrap_or(CopyStatus::Other(s))
    }
}

impl CopyStatus {
    /// The name Exchange uses (or the original text of an unknown status).
    pub fn as_str(&self) -> &str {
        match self {
            CopyStatus::Other(s) => s,
            known => KNOWN_STATUSES
                .iter()
                .find(|(_, st)| st == known)
                .map(|(name, _)| *name)
                .unwrap_or("Unknown"),
        }
    }

    /// The states of an active copy (Mounted, Dismounted, Mounting, Dismounting).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            CopyStatus::Mounted
                | CopyStatus::Dismounted
                | CopyStatus::Mounting
                | CopyStatus::Dismounting
        )
    }

    /// Statuses from which Active Manager may activate a passive copy.
    pub fn is_activatable(&self) -> bool {
        matches!(
            self,
            CopyStatus::Healthy
                | CopyStatus::DisconnectedAndHealthy
                | CopyStatus::DisconnectedAndResynchronizing
                | CopyStatus::SeedingSource
        )
    }
}

impl From<CopyStatus> for String {
    fn from(s: CopyStatus) -> String {
        s.as_str().to_owned()
    }
}

impl fmt::Display for CopyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Copy queue length below which a copy is "good" (Active Manager's criterion).
pub const GOOD_COPY_QUEUE: u64 = 10;
/// Replay queue length below which a copy is "good".
pub const GOOD_REPLAY_QUEUE: u64 = 50;

/// One database copy, as reported by `Get-MailboxDatabaseCopyStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DbCopy {
    /// `Name`, e.g. `DB01\EX01`.
    pub name: String,
    /// `DatabaseName`, e.g. `DB01`.
    pub database: String,
    /// `MailboxServer`, the server holding this copy, e.g. `EX01`.
    pub server: String,
    /// `Status`.
    pub status: CopyStatus,
    /// `ActiveDatabaseCopy`: the server currently holding the database's active copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_database_copy: Option<String>,
    /// `ActivationSuspended`.
    #[serde(default)]
    pub activation_suspended: bool,
    /// `CopyQueueLength`: logs not yet copied to this copy.
    #[serde(default)]
    pub copy_queue_length: u64,
    /// `ReplayQueueLength`: logs copied but not yet replayed.
    #[serde(default)]
    pub replay_queue_length: u64,
    /// `ContentIndexState`, e.g. `Healthy`, `NotApplicable` (2019+), `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_index_state: Option<String>,
    /// `LastInspectedLogTime`, in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inspected_log_time: Option<DateTime<Utc>>,
    /// `ActivationPreference` of this copy (1 = most preferred), from `Get-MailboxDatabase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_preference: Option<u32>,
    /// `ErrorMessage`, when Exchange reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl DbCopy {
    /// This copy is the database's active copy.
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// Active Manager could activate this passive copy.
    pub fn is_activatable(&self) -> bool {
        self.status.is_activatable() && !self.activation_suspended
    }

    /// Activatable, content index healthy (or not applicable) and queues short.
    pub fn is_good(&self) -> bool {
        let ci_ok = matches!(
            self.content_index_state.as_deref(),
            None | Some("Healthy") | Some("NotApplicable")
        );
        self.is_activatable()
            && ci_ok
            && self.copy_queue_length < GOOD_COPY_QUEUE
            && self.replay_queue_length < GOOD_REPLAY_QUEUE
    }
}

/// Why collector output could not be read. Names the element and field, and what to emit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbCopyParseError {
    /// The text is not JSON (the parser's message).
    #[error("collector output is not JSON: {0}")]
    NotJson(String),
    /// Valid JSON of the wrong shape (what was found).
    #[error("collector output is {0}; expected an array of copy objects (or one object)")]
    NotArray(&'static str),
    /// An element of the array that is no object.
    #[error("copies[{index}] is {found}; expected an object")]
    NotObject {
        /// Its position in the array.
        index: usize,
        /// What it is instead.
        found: &'static str,
    },
    /// A field of a copy that is missing or cannot be read.
    #[error("copies[{index}].{field}: {why}")]
    Field {
        /// The copy's position in the array.
        index: usize,
        /// The field, as the collector names it.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses collector output (one JSON document) into copies.
pub fn parse_powershell_json(text: &str) -> Result<Vec<DbCopy>, DbCopyParseError> {
    let doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| DbCopyParseError::NotJson(e.to_string()))?;
    let items = match doc {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        other => return Err(DbCopyParseError::NotArray(kind(&other))),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(map) => parse_copy(index, map),
            other => Err(DbCopyParseError::NotObject {
                index,
                found: kind(other),
            }),
        })
        .collect()
}

struct Fields<'a> {
    index: usize,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn get(&self, field: &'static str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn err(&self, field: &'static str, why: impl Into<String>) -> DbCopyParseError {
        DbCopyParseError::Field {
            index: self.index,
            field,
            why: why.into(),
        }
    }

    /// A string, or the `Value` of a 5.1 enum object. Bare integers are refused.
    fn enum_text(&self, field: &'static str) -> Result<Option<String>, DbCopyParseError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Object(o)) => match o.get("Value") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                _ => Err(self.err(field, "enum object without a string \"Value\"; emit the name with .ToString()")),
            },
            Some(Value::Number(n)) => Err(self.err(
                field,
                format!("bare integer {n} where an enum name is required; its meaning differs between Exchange builds, so emit {field}.ToString() (see deploy/exchange/Get-SitewardenDbCopyStatus.ps1)"),
            )),
            Some(other) => Err(self.err(field, format!("is {}; expected a string", kind(other)))),
        }
    }

    fn required_text(&self, field: &'static str) -> Result<String, DbCopyParseError> {
        self.enum_text(field)?
            .ok_or_else(|| self.err(field, "is missing; every copy needs it"))
    }

    fn count(&self, field: &'static str) -> Result<u64, DbCopyParseError> {
        match self.get(field) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| self.err(field, format!("{n} is not a non-negative integer"))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| self.err(field, format!("{s:?} is not a non-negative integer"))),
            Some(other) => Err(self.err(field, format!("is {}; expected an integer", kind(other)))),
        }
    }

    fn flag(&self, field: &'static str) -> Result<bool, DbCopyParseError> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(other) => {
                Err(self.err(field, format!("is {}; expected true or false", kind(other))))
            }
        }
    }

    fn date(&self, field: &'static str) -> Result<Option<DateTime<Utc>>, DbCopyParseError> {
        let s =
            match self.get(field) {
                None => return Ok(None),
                Some(Value::String(s)) => s,
                Some(Value::Object(o)) => match o.get("DateTime").or_else(|| o.get("value")) {
                    Some(Value::String(s)) => s,
                    _ => return Err(self.err(
                        field,
                        "date object without a string value; emit .ToUniversalTime().ToString('o')",
                    )),
                },
                Some(other) => {
                    return Err(self.err(
                        field,
                        format!("is {}; expected an ISO-8601 string", kind(other)),
                    ));
                }
            };
        parse_date(s)
            .map(Some)
            .ok_or_else(|| self.err(field, format!("{s:?} is neither ISO-8601 nor /Date(ms)/")))
    }
}

/// Parses ISO-8601 / RFC 3339 or PowerShell 5.1's `/Date(1700000000000)/` (optionally with an
/// offset suffix such as `+0100`, which does not change the instant).
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        let digits_end = inner
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '+' || *c == '-')
            .map(|(i, _)| i)
            .unwrap_or(inner.len());
        let ms: i64 = inner[..digits_end].parse().ok()?;
        return Utc.timestamp_millis_opt(ms).single();
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    // PowerShell's round-trip format without an offset ("2024-01-02T03:04:05.1234567") is local
    // time on the server; the collector script always emits UTC, so read it as UTC.
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

fn parse_copy(index: usize, map: &Map<String, Value>) -> Result<DbCopy, DbCopyParseError> {
    let f = Fields { index, map };
    let name = f.required_text("Name")?;
    let (db_from_name, server_from_name) = match name.split_once('\\') {
        Some((d, s)) => (Some(d.to_owned()), Some(s.to_owned())),
        None => (None, None),
    };
    let database = f
        .enum_text("DatabaseName")?
        .or(db_from_name)
        .ok_or_else(|| f.err("DatabaseName", "is missing and Name is not DB\\SERVER"))?;
    let server = f
        .enum_text("MailboxServer")?
        .or(server_from_name)
        .ok_or_else(|| f.err("MailboxServer", "is missing and Name is not DB\\SERVER"))?;
    let activation_preference = match f.get("ActivationPreference") {
        None => None,
        Some(Value::Number(n)) => Some(n.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(
            || {
                f.err(
                    "ActivationPreference",
                    format!("{n} is not a small positive integer"),
                )
            },
        )?),
        Some(other) => {
            return Err(f.err(
                "ActivationPreference",
                format!("is {}; expected an integer", kind(other)),
            ));
        }
    };
    Ok(DbCopy {
        name,
        database,
        server,
        status: CopyStatus::from(f.required_text("Status")?),
        active_database_copy: f.enum_text("ActiveDatabaseCopy")?,
        activation_suspended: f.flag("ActivationSuspended")?,
        copy_queue_length: f.count("CopyQueueLength")?,
        replay_queue_length: f.count("ReplayQueueLength")?,
        content_index_state: f.enum_text("ContentIndexState")?,
        last_inspected_log_time: f.date("LastInspectedLogTime")?,
        activation_preference,
        error_message: f.enum_text("ErrorMessage")?.filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_collector_scripts_explicit_form() {
        let json = r#"[{"Name":"DB01\\EX01","DatabaseName":"DB01","MailboxServer":"EX01",
            "Status":"Mounted","ActiveDatabaseCopy":"ex01","ActivationSuspended":false,
            "CopyQueueLength":0,"ReplayQueueLength":0,"ContentIndexState":"Healthy",
            "LastInspectedLogTime":"2026-11-24T03:00:00.0000000Z","ActivationPreference":1,
            "ErrorMessage":""}]"#;
        let copies = parse_powershell_json(json).unwrap();
        assert_eq!(copies.len(), 1);
        let c = &copies[0];
        assert!(c.is_active());
        assert_eq!(c.activation_preference, Some(1));
        assert_eq!(c.error_message, None);
        assert_eq!(
            c.last_inspected_log_time.unwrap().to_rfc3339(),
            "2026-11-24T03:00:00+00:00"
        );
    }

    #[test]
    fn accepts_powershell_51_enum_objects_and_dates_and_a_lone_object() {
        let json = r#"{"Name":"DB01\\EX02","Status":{"value":1,"Value":"Healthy"},
            "ContentIndexState":{"value":2,"Value":"Healthy"},
            "LastInspectedLogTime":"/Date(1700000000000)/","CopyQueueLength":"3"}"#;
        let c = &parse_powershell_json(json).unwrap()[0];
        assert_eq!(c.status, CopyStatus::Healthy);
        assert_eq!(c.database, "DB01");
        assert_eq!(c.server, "EX02");
        assert_eq!(c.copy_queue_length, 3);
        assert_eq!(
            c.last_inspected_log_time.unwrap().timestamp_millis(),
            1_700_000_000_000
        );
        assert!(c.is_good());
    }

    #[test]
    fn refuses_bare_integer_enums_naming_index_and_field() {
        let json = r#"[{"Name":"DB01\\EX01","Status":"Mounted"},{"Name":"DB01\\EX02","Status":1}]"#;
        let err = parse_powershell_json(json).unwrap_err().to_string();
        assert!(err.starts_with("copies[1].Status: bare integer 1"), "{err}");
        assert!(err.contains("ToString()"), "{err}");
    }

    #[test]
    fn keeps_unknown_statuses_as_not_healthy() {
        let c =
            &parse_powershell_json(r#"{"Name":"D\\S","Status":"QuantumEntangled"}"#).unwrap()[0];
        assert_eq!(c.status, CopyStatus::Other("QuantumEntangled".into()));
        assert_eq!(c.status.as_str(), "QuantumEntangled");
        assert!(!c.is_activatable() && !c.is_active());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(
            parse_powershell_json("WARNING: oops"),
            Err(DbCopyParseError::NotJson(_))
        ));
        assert_eq!(
            parse_powershell_json("42"),
            Err(DbCopyParseError::NotArray("a number"))
        );
        assert!(
            parse_powershell_json("[1]")
                .unwrap_err()
                .to_string()
                .contains("copies[0]")
        );
    }

    #[test]
    fn good_copy_follows_active_manager_criteria() {
        let base = parse_powershell_json(r#"{"Name":"D\\S","Status":"Healthy"}"#)
            .unwrap()
            .remove(0);
        assert!(base.is_good());
        let long_queue = DbCopy {
            copy_queue_length: 10,
            ..base.clone()
        };
        assert!(!long_queue.is_good());
        let replay = DbCopy {
            replay_queue_length: 50,
            ..base.clone()
        };
        assert!(!replay.is_good());
        let suspended = DbCopy {
            activation_suspended: true,
            ..base.clone()
        };
        assert!(!suspended.is_activatable());
        let ci = DbCopy {
            content_index_state: Some("Failed".into()),
            ..base
        };
        assert!(ci.is_activatable() && !ci.is_good());
    }

    #[test]
    fn status_round_trips_through_serde() {
        for (name, st) in KNOWN_STATUSES.iter() {
            let json = serde_json::to_string(st).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(&serde_json::from_str::<CopyStatus>(&json).unwrap(), st);
        }
    }
}
