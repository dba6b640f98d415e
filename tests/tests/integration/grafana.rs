//! The Grafana dashboard `deploy/grafana/sitewarden.json` as an operator imports it: it asks for
//! a Prometheus data source as the `DS_PROMETHEUS` input and every panel uses it; every PromQL
//! expression parses (promtool checks them as recording rules) and names only metrics that
//! `docs/metrics.md` documents — which `metrics_promtool.rs` proves are exactly what a running
//! agent and controller expose; and the panels cover what the operator surface promises.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dashboard() -> Value {
    let path = repo().join("deploy/grafana/sitewarden.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Metric names in the first column of `docs/metrics.md`'s tables, with their types.
fn documented() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let mut cells = l.split('|');
            let name = cells.next()?.trim().trim_end_matches('`');
            let kind = cells.next()?.trim();
            name.starts_with("sitewarden_")
                .then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every PromQL expression: panel targets and template variable queries.
fn expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in all_panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            out.push((
                p["title"].as_str().unwrap_or("?").to_owned(),
                expr.to_owned(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["query"]["query"].as_str().or(v["query"].as_str()) {
            out.push((format!("variable {}", v["name"]), q.to_owned()));
        }
    }
    out
}

/// `sitewarden_*` identifiers in an expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("sitewarden_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dashboard_imports_with_a_prometheus_input_and_every_panel_uses_it() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion {}",
        d["schemaVersion"]
    );
    assert_eq!(d["uid"], "sitewarden-overview");
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for p in all_panels(&d) {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} ({title}) is used twice");
        let pos = &p["gridPos"];
        assert!(
            pos["w"].as_u64().unwrap_or(0) > 0
                && pos["x"].as_u64().unwrap_or(99) + pos["w"].as_u64().unwrap_or(0) <= 24,
            "{title}: gridPos {pos}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            assert!(
                !t["expr"].as_str().unwrap_or("").trim().is_empty(),
                "{title}: empty expression"
            );
            queried += 1;
        }
    }
    assert!(queried >= 20, "only {queried} queries");
}

#[test]
fn every_expression_parses_and_names_only_documented_metrics() {
    let d = dashboard();
    let docs = documented();
    assert!(
        docs.len() >= 40,
        "docs/metrics.md lists {} metrics",
        docs.len()
    );
    let known = |name: &str| {
        docs.iter().any(|(n, kind)| {
            n == name
                || (kind.starts_with("histogram")
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(n.as_str())))
        })
    };
    let mut used = BTreeSet::new();
    let mut rules = String::from("groups:\n  - name: sitewarden-dashboard\n    rules:\n");
    for (i, (title, expr)) in expressions(&d).iter().enumerate() {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{title}: {expr} names no sitewarden metric"
        );
        for n in &names {
            assert!(known(n), "{title}: {n} is not in docs/metrics.md ({expr})");
        }
        used.extend(names);
        // Grafana's own variables, as Grafana would fill them in.
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "15s")
            .replace("$__range", "1h");
        rules.push_str(&format!(
            "      - record: sitewarden:dashboard:{i}\n        expr: {}\n",
            serde_json::to_string(&promql).unwrap()
        ));
    }

    let file = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    std::fs::write(file.path(), &rules).unwrap();
    let out = match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(file.path())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed; install it with `sudo apt-get install prometheus` \
             (or run scripts/install-deps)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "the dashboard's PromQL does not parse:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What the operator surface promises a panel for.
    for wanted in [
        "sitewarden_controller_site_verdict_code",
        "sitewarden_controller_namespace_target",
        "sitewarden_controller_acting",
        "sitewarden_controller_epoch",
        "sitewarden_controller_events_accepted_total",
        "sitewarden_controller_events_rejected_total",
        "sitewarden_controller_dns_api_calls_total",
        "sitewarden_controller_dns_api_errors_total",
        "sitewarden_controller_dns_api_budget_left",
        "sitewarden_controller_dns_operation_duration_seconds_bucket",
        "sitewarden_controller_alert_messages_total",
        "sitewarden_controller_observer_fresh",
        "sitewarden_agent_probes_total",
        "sitewarden_agent_probe_latency_seconds_bucket",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}
