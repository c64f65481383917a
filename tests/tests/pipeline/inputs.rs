//! What the test reads before it starts anything: the dashboards, the span_metrics
//! connector's settings in the collector config, and the strings of the traffic plan.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labctl::plan::{Body, Plan};
use serde_json::Value;

pub fn dashboard_files(root: &Path) -> Vec<PathBuf> {
    let dir = std::env::var_os("LAB_DASHBOARDS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("dashboards"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard JSON in {}", dir.display());
    files
}

/// What the test needs from the span_metrics connector's config: its flush interval and
/// histogram buckets, read from `stack/collector/config.yaml` so they have one source.
pub struct SpanMetricsConfig {
    pub flush_interval: Duration,
    /// The `le` label values the buckets become in Prometheus, `+Inf` included.
    pub bucket_labels: BTreeSet<String>,
}

impl SpanMetricsConfig {
    pub fn read(config_yaml: &str) -> Self {
        let config: serde_norway::Value =
            serde_norway::from_str(config_yaml).expect("config.yaml is YAML");
        let connector = &config["connectors"]["span_metrics"];
        assert_eq!(
            connector["histogram"]["unit"].as_str(),
            Some("ms"),
            "the test expects the histogram in ms"
        );
        let interval = connector["metrics_flush_interval"]
            .as_str()
            .expect("metrics_flush_interval is set");
        let buckets = connector["histogram"]["explicit"]["buckets"]
            .as_sequence()
            .expect("explicit buckets are set");
        let mut bucket_labels: BTreeSet<String> = buckets
            .iter()
            .map(|b| go_duration_ms(b.as_str().expect("a bucket is a duration")).to_string())
            .collect();
        bucket_labels.insert("+Inf".into());
        Self {
            flush_interval: Duration::from_secs_f64(go_duration_ms(interval) / 1000.0),
            bucket_labels,
        }
    }
}

/// `250ms`, `2.5s`, `1m` (the forms config.yaml uses) in milliseconds.
fn go_duration_ms(text: &str) -> f64 {
    let (number, factor) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1_000.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60_000.0)
    } else {
        panic!("`{text}` is not a duration this test reads (ms, s, m)")
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("`{text}` is not a duration"))
        * factor
}

/// Every string in the JSON bodies of the plan labctl sends for `seed` (titles,
/// descriptions), at least three characters long.
pub fn sent_strings(seed: u64, requests: u64) -> BTreeSet<String> {
    fn collect(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::String(text) if text.chars().count() >= 3 => {
                out.insert(text.clone());
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            Value::Object(fields) => fields.values().for_each(|field| collect(field, out)),
            _ => {}
        }
    }
    let mut strings = BTreeSet::new();
    for request in Plan::new(seed).bounded(Some(requests)).flatten() {
        if let Some(Body::Json(body)) = &request.body {
            collect(body, &mut strings);
        }
    }
    strings
}
