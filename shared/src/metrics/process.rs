//! The standard process families, with the names, types and meanings Prometheus' client libraries
//! give them (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), read from
//! `/proc/self` through the `procfs` crate on every scrape: a scrape costs three small reads
//! (`stat`, `limits`, the `fd` directory) and nothing is sampled in between.
//!
//! `prometheus-client` has no process collector of its own, and the companion crates that do
//! (e.g. `kubert-prometheus-process`) are built against an older `prometheus-client`, so this is
//! a small [`Collector`]. A family whose file cannot be read is left out of that scrape (and
//! logged once) rather than failing the whole page; on systems without `/proc` (not Linux) all
//! of them are absent.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Registers the process families on `registry`, which must have no prefix (the names are
/// `process_*` exactly).
pub fn register(registry: &mut Registry) {
    registry.register_collector(Box::<ProcessCollector>::default());
}

/// One reading of the process's state; `None` where it could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    /// User and system CPU time since the process started, in seconds.
    cpu_seconds: Option<f64>,
    /// Open file descriptors.
    open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`RLIMIT_NOFILE`).
    max_fds: Option<u64>,
    /// Virtual memory size, in bytes.
    virtual_memory_bytes: Option<u64>,
    /// Resident set size, in bytes.
    resident_memory_bytes: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    start_time_seconds: Option<f64>,
    /// OS threads in the process.
    threads: Option<u64>,
}

impl Sample {
    /// Reads `/proc/self` now. The second value names what could not be read, if anything.
    #[cfg(target_os = "linux")]
    fn read() -> (Self, Option<String>) {
        use procfs::process::{LimitValue, Process};

        let me = match Process::myself() {
            Ok(me) => me,
            Err(e) => return (Self::default(), Some(format!("/proc/self: {e}"))),
        };
        let mut sample = Self::default();
        let mut failed = Vec::new();
        match me.stat() {
            Ok(stat) => {
                let ticks = procfs::ticks_per_second() as f64;
                sample.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
                sample.virtual_memory_bytes = Some(stat.vsize);
                sample.resident_memory_bytes = Some(stat.rss.saturating_mul(procfs::page_size()));
                sample.threads = u64::try_from(stat.num_threads).ok();
                match procfs::boot_time_secs() {
                    Ok(boot) => {
                        sample.start_time_seconds =
                            Some(boot as f64 + stat.starttime as f64 / ticks);
                    }
                    Err(e) => failed.push(format!("boot time (/proc/stat): {e}")),
                }
            }
            Err(e) => failed.push(format!("/proc/self/stat: {e}")),
        }
        match me.fd_count() {
            Ok(n) => sample.open_fds = u64::try_from(n).ok(),
            Err(e) => failed.push(format!("/proc/self/fd: {e}")),
        }
        match me.limits() {
            // Linux refuses an unlimited RLIMIT_NOFILE (it would exceed fs.nr_open), so
            // `Unlimited` does not happen; were it to, the family is left out.
            Ok(limits) => match limits.max_open_files.soft_limit {
                LimitValue::Value(v) => sample.max_fds = Some(v),
                LimitValue::Unlimited => {}
            },
            Err(e) => failed.push(format!("/proc/self/limits: {e}")),
        }
        let failed = (!failed.is_empty()).then(|| failed.join("; "));
        (sample, failed)
    }

    /// Without `/proc` there is nothing to read: every family is absent.
    #[cfg(not(target_os = "linux"))]
    fn read() -> (Self, Option<String>) {
        (Self::default(), None)
    }

    /// Writes the families that have a value.
    fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        if let Some(v) = self.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?)?;
        }
        let gauges: [(&str, &str, Option<u64>); 5] = [
            (
                "process_open_fds",
                "Number of open file descriptors",
                self.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit)",
                self.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                self.virtual_memory_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                self.resident_memory_bytes,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                self.threads,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                ConstGauge::new(v).encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    MetricType::Gauge,
                )?)?;
            }
        }
        if let Some(v) = self.start_time_seconds {
            ConstGauge::new(v).encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// Reads a [`Sample`] on every scrape.
#[derive(Debug, Default)]
struct ProcessCollector {
    /// Whether a failed read has been logged: the first is, later ones are not (a scrape every
    /// 15 s would otherwise log the same failure forever).
    warned: AtomicBool,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let (sample, failed) = Sample::read();
        if let Some(what) = failed
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "process metrics: cannot read {what}; those process_* families are left out \
                 (logged once)"
            );
        }
        sample.encode(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    /// The value of the sample line named exactly `name`.
    fn value(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_family_is_written_with_its_conventional_name_and_type() {
        let sample = Sample {
            cpu_seconds: Some(1.5),
            open_fds: Some(12),
            max_fds: Some(1024),
            virtual_memory_bytes: Some(1 << 30),
            resident_memory_bytes: Some(20 << 20),
            start_time_seconds: Some(1_700_000_000.25),
            threads: Some(5),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(sample)));
        let text = page(&registry);
        for line in [
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total 1.5",
            "# TYPE process_open_fds gauge",
            "process_open_fds 12",
            "process_max_fds 1024",
            "process_virtual_memory_bytes 1073741824",
            "process_resident_memory_bytes 20971520",
            "# TYPE process_start_time_seconds gauge",
            "process_start_time_seconds 1700000000.25",
            "process_threads 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_family_that_could_not_be_read_is_left_out() {
        let sample = Sample {
            resident_memory_bytes: Some(4096),
            ..Sample::default()
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(sample)));
        let text = page(&registry);
        assert!(
            text.contains("process_resident_memory_bytes 4096"),
            "{text}"
        );
        assert!(!text.contains("process_open_fds"), "{text}");
        assert!(!text.contains("process_cpu_seconds"), "{text}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_a_live_process() {
        let mut registry = Registry::default();
        register(&mut registry);
        let text = page(&registry);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value(&text, "process_start_time_seconds").unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(value(&text, "process_resident_memory_bytes").unwrap() > 0.0);
        let virt = value(&text, "process_virtual_memory_bytes").unwrap();
        assert!(virt >= value(&text, "process_resident_memory_bytes").unwrap());
        assert!(value(&text, "process_cpu_seconds_total").unwrap() >= 0.0);
        assert!(value(&text, "process_threads").unwrap() >= 1.0);
        let open = value(&text, "process_open_fds").unwrap();
        assert!(open >= 1.0, "{open}"); // at least the /proc/self directory being read
        assert!(value(&text, "process_max_fds").unwrap() >= open);
    }

    /// A collector that always writes the same sample.
    #[derive(Debug)]
    struct Fixed(Sample);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            self.0.encode(&mut encoder)
        }
    }
}
