//! Bus events from arbitrary bytes: decoding never panics, and an event that decodes
//! serializes and decodes back to itself (what the controller stores is what it read).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sitewarden_shared::{DbCopySnapshot, Heartbeat, Observation};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&event).expect("an accepted event serializes");
        let again: T = serde_json::from_slice(&json).expect("a serialized event decodes");
        assert_eq!(event, again, "round trip changed the event");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Observation>(data);
    round_trip::<DbCopySnapshot>(data);
    round_trip::<Heartbeat>(data);
});
