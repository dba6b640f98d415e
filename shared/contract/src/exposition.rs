//! `/metrics` content negotiation: OpenMetrics for scrapers that ask for it, the classic
//! Prometheus text format (0.0.4) for everything else.
//!
//! `prometheus-client` writes OpenMetrics, where a counter family `foo` has the sample
//! `foo_total`. The classic format names the family after its samples (`foo_total`), and tools
//! that only read the classic format (`promtool check metrics`, `curl | grep`) take an OpenMetrics
//! counter for an untyped metric without help. Prometheus itself asks for OpenMetrics in its
//! `Accept` header and gets it; anyone else gets [`to_classic`]'s translation, which keeps every
//! sample line as it is and rewrites only the metadata: counter `# HELP`/`# TYPE` lines take the
//! `_total` name, `info` families become gauges named `*_info`, `# UNIT` and `# EOF` go away.

use std::fmt;

/// Content type of an OpenMetrics 1.0 exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the classic Prometheus text exposition.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (as Prometheus's scraper does).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut params = part.split(';');
            let media = params.next().unwrap_or("").trim();
            let refused = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// The body and content type to answer a scrape with, given the OpenMetrics text and the
/// request's `Accept` header.
pub fn negotiate(openmetrics: String, accept: Option<&str>) -> (&'static str, String) {
    if wants_openmetrics(accept) {
        (OPENMETRICS, openmetrics)
    } else {
        (CLASSIC, to_classic(&openmetrics))
    }
}

/// Translates an OpenMetrics text exposition into the classic Prometheus text format.
pub fn to_classic(openmetrics: &str) -> String {
    // The result is the input with a few metadata lines a little longer (`_total`, `_info`),
    // so this never grows: a growing buffer doubles, and with ten thousand series behind a
    // scrape (20 MB of text) that doubling was 40 MB held for every classic-format scrape.
    let mut out = String::with_capacity(openmetrics.len() + openmetrics.len() / 64 + 1024);
    let mut writer = ClassicWriter::new(&mut out);
    let _ = fmt::Write::write_str(&mut writer, openmetrics);
    writer.finish();
    out
}

/// Takes OpenMetrics text as it is written (in any fragments) and appends its classic
/// translation to a `String`, a line at a time: an encoder can write the classic format
/// straight into the response body, without an OpenMetrics copy of the whole exposition.
/// Call [`ClassicWriter::finish`] after the last write.
pub struct ClassicWriter<'a> {
    out: &'a mut String,
    /// The current line, until its newline arrives.
    line: String,
    /// A `# HELP` line (without the prefix) waiting for the `# TYPE` line that names its kind.
    help: Option<String>,
}

impl<'a> ClassicWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut String) -> Self {
        Self {
            out,
            line: String::new(),
            help: None,
        }
    }

    /// Translates what is left: a last line without a newline, a `# HELP` without `# TYPE`.
    pub fn finish(mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take(&line);
        }
        self.flush_help(None);
    }

    /// Writes the pending `# HELP` line, named for `kind` (the following `# TYPE` line's).
    fn flush_help(&mut self, kind: Option<&str>) {
        let Some(rest) = self.help.take() else {
            return;
        };
        let (name, help) = rest.split_once(' ').unwrap_or((&rest, ""));
        let name = classic_name(name, kind);
        // OpenMetrics escapes `"` in help text; the classic format must not.
        let help = help.replace("\\\"", "\"");
        self.out.push_str(&format!("# HELP {name} {help}\n"));
    }

    /// Translates one complete line (without its newline).
    fn take(&mut self, line: &str) {
        if let Some(help) = &self.help {
            // The TYPE line follows its HELP line in what prometheus-client writes.
            let name = help.split_once(' ').map_or(help.as_str(), |(n, _)| n);
            let kind = line
                .strip_prefix("# TYPE ")
                .and_then(|t| t.split_once(' '))
                .filter(|(n, _)| *n == name)
                .map(|(_, k)| k.to_owned());
            self.flush_help(kind.as_deref());
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            return;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            self.help = Some(rest.to_owned());
            return;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = (
                classic_name(name, Some(kind)),
                match kind {
                    "counter" | "gauge" | "histogram" | "summary" => kind,
                    "info" | "stateset" => "gauge",
                    _ => "untyped",
                },
            );
            self.out.push_str(&format!("# TYPE {name} {kind}\n"));
            return;
        }
        self.out.push_str(line);
        self.out.push('\n');
    }
}

impl fmt::Write for ClassicWriter<'_> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while let Some(end) = s.find('\n') {
            if self.line.is_empty() {
                self.take(&s[..end]);
            } else {
                // Encoders write a line in several pieces; its buffer is kept for the next.
                self.line.push_str(&s[..end]);
                let line = std::mem::take(&mut self.line);
                self.take(&line);
                self.line = line;
                self.line.clear();
            }
            s = &s[end + 1..];
        }
        self.line.push_str(s);
        Ok(())
    }
}

/// The classic family name of OpenMetrics family `name` of type `kind`.
fn classic_name(name: &str, kind: Option<&str>) -> String {
    match kind {
        Some("counter") => format!("{name}_total"),
        Some("info") => format!("{name}_info"),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = "# HELP app_events Events seen, by \\\"kind\\\".\n\
# TYPE app_events counter\n\
app_events_total{kind=\"a\"} 3\n\
# HELP app_up 1 while up.\n\
# TYPE app_up gauge\n\
app_up 1\n\
# HELP app_latency_seconds Latency.\n\
# TYPE app_latency_seconds histogram\n\
# UNIT app_latency_seconds seconds\n\
app_latency_seconds_sum 0.5\n\
app_latency_seconds_count 1\n\
app_latency_seconds_bucket{le=\"+Inf\"} 1\n\
# HELP app_build Build.\n\
# TYPE app_build info\n\
app_build_info{version=\"1\"} 1\n\
# EOF\n";

    #[test]
    fn counters_take_their_total_name_and_openmetrics_only_lines_go() {
        let text = to_classic(OM);
        assert_eq!(
            text,
            "# HELP app_events_total Events seen, by \"kind\".\n\
# TYPE app_events_total counter\n\
app_events_total{kind=\"a\"} 3\n\
# HELP app_up 1 while up.\n\
# TYPE app_up gauge\n\
app_up 1\n\
# HELP app_latency_seconds Latency.\n\
# TYPE app_latency_seconds histogram\n\
app_latency_seconds_sum 0.5\n\
app_latency_seconds_count 1\n\
app_latency_seconds_bucket{le=\"+Inf\"} 1\n\
# HELP app_build_info Build.\n\
# TYPE app_build_info gauge\n\
app_build_info{version=\"1\"} 1\n"
        );
    }

    #[test]
    fn the_writer_translates_text_written_in_any_fragments() {
        for size in [1, 2, 3, 7, 64] {
            let mut out = String::new();
            let mut writer = ClassicWriter::new(&mut out);
            let bytes: Vec<char> = OM.chars().collect();
            for piece in bytes.chunks(size) {
                let piece: String = piece.iter().collect();
                fmt::Write::write_str(&mut writer, &piece).unwrap_or_else(|e| panic!("{e}"));
            }
            writer.finish();
            assert_eq!(out, to_classic(OM), "pieces of {size}");
        }
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_classic_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert_eq!(negotiate(OM.to_owned(), Some(prometheus)).0, OPENMETRICS);
        for other in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("application/openmetrics-text;q=0"),
        ] {
            let (kind, body) = negotiate(OM.to_owned(), other);
            assert_eq!(kind, CLASSIC, "{other:?}");
            assert!(!body.contains("# EOF"), "{other:?}");
        }
    }
}
