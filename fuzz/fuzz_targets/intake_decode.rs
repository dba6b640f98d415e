//! What the controller's intake does with one message from the bus: the subject (up to the
//! first newline of the input) and the payload (the rest). Never panics; subject parsing alone
//! never panics either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sitewarden_controller::runtime::intake;
use sitewarden_shared::subject;

fuzz_target!(|data: &[u8]| {
    let (subject, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let subject = String::from_utf8_lossy(subject);
    let _ = subject::parse(&subject);
    let _ = intake::decode(&subject, payload);
});
