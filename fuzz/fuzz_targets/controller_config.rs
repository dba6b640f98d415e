//! The controller's config loaders (decisions and runtime settings) from TOML text: never
//! panic. Device files named as secrets are skipped, as in `agent_config`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sitewarden_controller::config::ControllerConfig;
use sitewarden_controller::runtime::settings::RuntimeSettings;
use sitewarden_shared::config::Source;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let src = Source::inline("fuzz.toml", text);
    let _ = ControllerConfig::load(&src);
    let _ = RuntimeSettings::load(&src);
});
