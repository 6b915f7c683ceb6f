//! The metrics exposition pitd produces (OpenMetrics text, what `Reply::Metrics` carries)
//! and its conversion to the older Prometheus text format for the scrapers that need it.

/// The same exposition in the Prometheus text format (0.0.4), which promtool and older
/// scrapers read: counters are announced under their `_total` sample name, and there is no
/// `# EOF` marker.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_by_their_sample_and_drops_eof() {
        let om = "# HELP pit_calls Calls.\n# TYPE pit_calls counter\npit_calls_total{pool=\"a\"} 3\n\
                  # HELP pit_workers Workers.\n# TYPE pit_workers gauge\npit_workers 2\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP pit_calls_total Calls.\n# TYPE pit_calls_total counter\npit_calls_total{pool=\"a\"} 3\n\
             # HELP pit_workers Workers.\n# TYPE pit_workers gauge\npit_workers 2\n"
        );
    }
}
