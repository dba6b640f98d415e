//! Reads values from a running agent's or controller's Prometheus `/metrics` page.

/// One metric's value from `http://{addr}/metrics`, summed over the label sets whose text
/// contains `label_filter` (`""` for all); `None` while the page does not answer or has no
/// such series.
pub async fn metric(addr: std::net::SocketAddr, name: &str, label_filter: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric_name = key.split('{').next().unwrap_or(key);
        if metric_name == name && key.contains(label_filter) {
            *total.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    total
}

/// Whether the controller's metrics page `text` has the verdict Up (code 1) for every site of
/// `sites`.
pub fn sites_up(text: &str, sites: &[&str]) -> bool {
    sites.iter().all(|site| {
        let prefix = format!("sitewarden_controller_site_verdict_code{{site=\"{site}\"}} ");
        text.lines()
            .any(|l| l.strip_prefix(&prefix).is_some_and(|v| v.trim() == "1"))
    })
}
