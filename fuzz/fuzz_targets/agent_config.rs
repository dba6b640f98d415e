//! The agent's config loader from TOML text: a config never panics the loader, whatever it
//! says. Secrets named by `{ file = … }` are trusted administrator input: device files
//! (`/dev/…`, `/proc/…`) would block or never end, so such inputs are skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sitewarden_agent::AgentConfig;
use sitewarden_shared::config::Source;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let _ = AgentConfig::from_source(&Source::inline("fuzz.toml", text));
});
