//! What every sitewarden `/metrics` page exposes besides the program's own families: which build
//! is running (`<prefix>_build_info{version}`) and how the process is doing (the standard
//! `process_*` families of [`process`], unprefixed as Prometheus' conventions expect, so the
//! usual dashboards and alerts for any exporter work unchanged).
//!
//! A program builds its registry with [`program_registry`]: the root holds the process families
//! and the returned sub-registry, prefixed `sitewarden_agent` or `sitewarden_controller`, holds
//! `build_info` and everything the program registers itself. Encoding the root gives the whole
//! page.

pub mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The process families every page exposes (on Linux), as they appear on it.
pub const PROCESS_FAMILIES: [&str; 7] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
];

/// Labels of `<prefix>_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// The program's crate version (`CARGO_PKG_VERSION` of the binary).
    version: String,
}

/// Registers the process families on `root` and `<prefix>_build_info{version}` on a
/// sub-registry prefixed with `prefix`, and returns that sub-registry: the program registers
/// its own metrics there. `root` must have no prefix of its own (`Registry::default()`), or the
/// process families would carry it; `version` is the binary's `env!("CARGO_PKG_VERSION")`.
pub fn program_registry<'r>(
    root: &'r mut Registry,
    prefix: &str,
    version: &str,
) -> &'r mut Registry {
    process::register(root);
    let registry = root.sub_registry_with_prefix(prefix);
    registry.register(
        "build",
        "Which build of the program is running (always 1)",
        Info::new(BuildLabels {
            version: version.to_owned(),
        }),
    );
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(root: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, root).unwrap();
        out
    }

    #[test]
    fn the_program_registry_prefixes_its_own_metrics_and_build_info_but_not_the_process_families() {
        let mut root = Registry::default();
        let registry = program_registry(&mut root, "sitewarden_test", "1.2.3");
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("things", "Things", counter.clone());
        counter.inc();
        let text = page(&root);
        assert!(
            text.contains("\nsitewarden_test_build_info{version=\"1.2.3\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsitewarden_test_things_total 1\n"),
            "{text}"
        );
        if cfg!(target_os = "linux") {
            assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
            assert!(!text.contains("sitewarden_test_process_"), "{text}");
        }
    }
}
