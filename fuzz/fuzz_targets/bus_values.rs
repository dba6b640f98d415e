//! Values other writers can put where the controller reads: the lease key's value, a DNS
//! record's comment (the ownership marker), a built-in DNS record's key and JSON value.
//! Never panics; a marker stamped into any comment is found again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sitewarden_controller::dns::{StoredRecord, record_key};
use sitewarden_controller::ha::record::LeaseValue;
use sitewarden_controller::provider::marker::Marker;

fuzz_target!(|data: &[u8]| {
    let value = LeaseValue::decode(data);
    let _ = value.holder();
    let _ = serde_json::from_slice::<StoredRecord>(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = record_key(text);
    let _ = Marker::parse(text);
    let ours = Marker {
        epoch: data.len() as u64,
        generation: u64::from(data.first().copied().unwrap_or(0)),
    };
    let stamped = ours.stamp(Some(text));
    assert_eq!(Marker::parse(&stamped), Some(ours), "stamped {stamped:?}");
});
