//! `Get-MailboxDatabaseCopyStatus` JSON as the collector or the push endpoint hands it over:
//! parsing never panics, and every copy it accepts survives a trip through the event contract.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sitewarden_shared::dbcopy::{DbCopy, parse_date, parse_powershell_json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_date(text);
    if let Ok(copies) = parse_powershell_json(text) {
        for copy in copies {
            let json = serde_json::to_vec(&copy).expect("a parsed copy serializes");
            let again: DbCopy = serde_json::from_slice(&json).expect("a serialized copy decodes");
            assert_eq!(copy, again, "round trip changed the copy");
        }
    }
});
