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
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // The TYPE line follows its HELP line in what prometheus-client writes.
            let kind = lines
                .peek()
                .and_then(|next| next.strip_prefix("# TYPE "))
                .and_then(|t| t.split_once(' '))
                .filter(|(n, _)| *n == name)
                .map(|(_, k)| k);
            let name = classic_name(name, kind);
            // OpenMetrics escapes `"` in help text; the classic format must not.
            let help = help.replace("\\\"", "\"");
            out.push_str(&format!("# HELP {name} {help}\n"));
            continue;
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
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
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
