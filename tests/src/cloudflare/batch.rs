//! `POST /zones/{zone}/dns_records/batch`, as Cloudflare documents it.
//!
//! The body is an object with up to four arrays, `deletes`, `patches`, `puts` and `posts`, each
//! of objects: a delete needs only `id` (other record fields are accepted and ignored), a patch
//! is `id` plus the fields to change (the rest is kept), a put is `id` plus a whole record
//! (`type`, `name`, `content`; what it omits is reset), a post is a whole new record without an
//! `id`. Unknown keys, at the top or in an item, are refused like any record body (400, 9207).
//!
//! The batch counts every item of the four lists against the zone plan's limit
//! ([`DEFAULT_BATCH_LIMIT`], the Free plan's 200; 3,500 on paid plans): a larger batch is refused
//! whole, before anything runs. Then, in one all-or-nothing transaction, the deletes run, then
//! the patches, then the puts, then the posts, each list in the order given. The first item that
//! fails (an unknown id, content that is not a host name, a second record on a CNAME's name…)
//! ends the batch with its error and nothing is changed. On success the answer's `result` holds
//! the four lists: the deleted records as they were, the others as they are now.
//!
//! Cloudflare does not publish the error code of an over-limit batch; the emulator answers 400
//! with code 81058 and a message naming the limit (clients must not rely on the code).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::validate::{ApiError, RecordFields, in_zone};
use super::{Record, State, record_json, zone_name};

/// Records one batch may carry by default: the Free plan's limit.
pub const DEFAULT_BATCH_LIMIT: usize = 200;

/// The error code the emulator gives an over-limit batch (Cloudflare does not document one).
pub const OVER_LIMIT_CODE: u32 = 81058;

type Checked<T> = Result<T, (StatusCode, ApiError)>;

fn bad(code: u32, message: &str) -> (StatusCode, ApiError) {
    (StatusCode::BAD_REQUEST, ApiError::new(code, message))
}

fn invalid(message: &str) -> (StatusCode, ApiError) {
    bad(9207, &format!("Request body is invalid: {message}"))
}

fn no_record() -> (StatusCode, ApiError) {
    (
        StatusCode::NOT_FOUND,
        ApiError::new(81044, "Record does not exist."),
    )
}

/// One batch, checked item by item, not yet run.
#[derive(Debug, Default)]
struct Batch {
    deletes: Vec<String>,
    patches: Vec<(String, RecordFields)>,
    puts: Vec<(String, RecordFields)>,
    posts: Vec<RecordFields>,
}

impl Batch {
    fn len(&self) -> usize {
        self.deletes.len() + self.patches.len() + self.puts.len() + self.posts.len()
    }
}

/// The items of list `list` in `body`, each an object.
fn items<'a>(body: &'a Map<String, Value>, list: &str) -> Checked<Vec<&'a Map<String, Value>>> {
    match body.get(list) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_object()
                    .ok_or_else(|| invalid(&format!("every item of {list:?} must be an object")))
            })
            .collect(),
        Some(_) => Err(invalid(&format!("{list:?} must be an array"))),
    }
}

/// An item's `id`, required; the rest of the item without it.
fn split_id(item: &Map<String, Value>, list: &str) -> Checked<(String, Map<String, Value>)> {
    let Some(Value::String(id)) = item.get("id") else {
        return Err(invalid(&format!(
            "every item of {list:?} needs a string \"id\""
        )));
    };
    let mut rest = item.clone();
    rest.remove("id");
    Ok((id.clone(), rest))
}

fn parse(body: &[u8]) -> Checked<Batch> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad(9207, "Request body is invalid."));
    };
    if let Some(k) = body
        .keys()
        .find(|k| !["deletes", "patches", "puts", "posts"].contains(&k.as_str()))
    {
        return Err(invalid(&format!("unknown field {k:?}")));
    }
    let mut batch = Batch::default();
    for item in items(&body, "deletes")? {
        let (id, rest) = split_id(item, "deletes")?;
        // Fields other than `id` are ignored, but they must still be record fields.
        RecordFields::from_map(&rest)?;
        batch.deletes.push(id);
    }
    for item in items(&body, "patches")? {
        let (id, rest) = split_id(item, "patches")?;
        batch.patches.push((id, RecordFields::from_map(&rest)?));
    }
    for item in items(&body, "puts")? {
        let (id, rest) = split_id(item, "puts")?;
        let f = RecordFields::from_map(&rest)?;
        f.require_full()?;
        batch.puts.push((id, f));
    }
    for item in items(&body, "posts")? {
        let f = RecordFields::from_map(item)?;
        f.require_full()?;
        batch.posts.push(f);
    }
    Ok(batch)
}

/// A second record on a CNAME's name is refused: a CNAME stands alone.
pub fn name_free(
    records: &BTreeMap<String, Record>,
    zone: &str,
    name: &str,
    kind: &str,
    except_id: Option<&str>,
) -> Checked<()> {
    let clash = records.values().any(|r| {
        r.zone_id == zone
            && Some(r.id.as_str()) != except_id
            && r.name.eq_ignore_ascii_case(name)
            && (kind.eq_ignore_ascii_case("CNAME") || r.kind.eq_ignore_ascii_case("CNAME"))
    });
    if clash {
        Err(bad(
            81053,
            "An A, AAAA, or CNAME record with that host already exists.",
        ))
    } else {
        Ok(())
    }
}

/// Runs a batch on `zone` of `s`; the whole answer's `result`, or the first error and nothing
/// changed.
pub fn run(s: &mut State, zone: &str, body: &[u8]) -> Checked<Value> {
    let batch = parse(body)?;
    if batch.len() > s.batch_limit {
        return Err(bad(
            OVER_LIMIT_CODE,
            &format!(
                "Batch of {} records exceeds the limit of {} records per batch for this zone's plan",
                batch.len(),
                s.batch_limit
            ),
        ));
    }
    let zone_name = zone_name(s, zone);
    // The transaction: every change goes to a copy, which replaces the records only at the end.
    let mut records = s.records.clone();
    let in_this_zone = |records: &BTreeMap<String, Record>, id: &str| {
        records
            .get(id)
            .filter(|r| r.zone_id == zone)
            .cloned()
            .ok_or_else(no_record)
    };
    let mut result = json!({"deletes": [], "patches": [], "puts": [], "posts": []});
    let mut answered = |list: &str, v: Value| {
        if let Some(Value::Array(a)) = result.get_mut(list) {
            a.push(v);
        }
    };
    for id in &batch.deletes {
        let r = in_this_zone(&records, id)?;
        answered("deletes", record_json(&r, s));
        records.remove(id);
    }
    for (id, f) in &batch.patches {
        let mut r = in_this_zone(&records, id)?;
        f.apply_to(&mut r);
        // Only a patch that renames the record can put it beside another.
        if f.name.is_some() {
            in_zone(&r.name, &zone_name)?;
            name_free(&records, zone, &r.name, &r.kind, Some(&r.id))?;
        }
        answered("patches", record_json(&r, s));
        records.insert(r.id.clone(), r);
    }
    for (id, f) in &batch.puts {
        let old = in_this_zone(&records, id)?;
        let r = f.to_record(old.id, old.zone_id);
        in_zone(&r.name, &zone_name)?;
        name_free(&records, zone, &r.name, &r.kind, Some(&r.id))?;
        answered("puts", record_json(&r, s));
        records.insert(r.id.clone(), r);
    }
    let mut next_id = s.next_id;
    for f in &batch.posts {
        next_id += 1;
        let r = f.to_record(super::id_for(next_id), zone.to_owned());
        in_zone(&r.name, &zone_name)?;
        name_free(&records, zone, &r.name, &r.kind, None)?;
        answered("posts", record_json(&r, s));
        records.insert(r.id.clone(), r);
    }
    s.records = records;
    s.next_id = next_id;
    Ok(result)
}
