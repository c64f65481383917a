//! What the lab 6 tests share: the binaries, a seeded `labctl traffic` run, Prometheus
//! queries and the figures read from `stack/collector/gateway.yaml`.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lab_tests::binaries::labctl_traffic_args;
use labctl::prom::{Prometheus, QueryData};
use labctl::summary::Summary;

/// (method, route, status)
pub type Key = (String, String, u16);

/// `target/debug/NAME`, built by `cargo test --workspace` (or `cargo build -p NAME`).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| lab_tests::workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p {name}` first",
        path.display()
    );
    path
}

/// A seeded `labctl traffic` run against `base_url`; its `--json` summary.
pub async fn traffic(base_url: &str, dir: &Path, seed: u64, requests: u64, rate: u32) -> Summary {
    let summary_path = dir.join(format!("traffic-{seed}.json"));
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(binary("labctl"))
            .args(labctl_traffic_args(
                base_url,
                seed,
                requests,
                &rate.to_string(),
            ))
            .args(["--concurrency", "4", "--json"])
            .arg(&summary_path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("labctl traffic finishes")
    .expect("labctl runs");
    assert!(
        output.status.success(),
        "labctl traffic failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap())
        .expect("labctl's summary parses")
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every series of `expr` now: labels -> value.
pub async fn series(prometheus: &Prometheus, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    match prometheus.instant(expr, now()).await {
        Ok(QueryData::Vector(samples)) => samples
            .into_iter()
            .map(|s| {
                let value = s.value.as_ref().map_or(f64::NAN, |v| v.value());
                (s.metric, value)
            })
            .collect(),
        Ok(_) => panic!("`{expr}` is not a vector"),
        Err(error) => panic!("`{expr}`: {error}"),
    }
}

/// The one value of `expr`, 0 when it has no series (a counter never incremented).
pub async fn value(prometheus: &Prometheus, expr: &str) -> f64 {
    let all = series(prometheus, expr).await;
    assert!(all.len() <= 1, "`{expr}` has {} series: {all:?}", all.len());
    all.first().map_or(0.0, |(_, v)| *v)
}

/// Request counts by (method, route, status) from an expression summed by those labels.
pub async fn counts(prometheus: &Prometheus, expr: &str) -> BTreeMap<Key, u64> {
    let mut counts = BTreeMap::new();
    for (labels, value) in series(prometheus, expr).await {
        let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
        counts.insert(
            (
                label("http_request_method"),
                label("http_route"),
                label("http_response_status_code").parse().unwrap_or(0),
            ),
            value.round() as u64,
        );
    }
    counts
}

/// The span-metrics request counts of the app's server spans.
pub const SPAN_COUNTS: &str = r#"sum by (http_request_method, http_route, http_response_status_code) (traces_span_metrics_calls_total{service_name="todo-api", span_kind="SPAN_KIND_SERVER"})"#;

/// Polls until `check` returns Ok or `timeout` passes; returns the last error otherwise.
pub async fn eventually<T, E, F, Fut>(timeout: Duration, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// What the tests read from gateway.yaml's tail_sampling policies, so the figures have
/// one source.
pub struct Sampling {
    pub slow_threshold_ms: u64,
    pub share: f64,
}

impl Sampling {
    pub fn read() -> Self {
        let text = std::fs::read_to_string(
            lab_tests::workspace_root().join("stack/collector/gateway.yaml"),
        )
        .unwrap();
        let config: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let policies = config["processors"]["tail_sampling"]["policies"]
            .as_sequence()
            .expect("tail_sampling has policies");
        let policy = |kind: &str| {
            policies
                .iter()
                .find(|p| p["type"].as_str() == Some(kind))
                .unwrap_or_else(|| panic!("no {kind} policy in gateway.yaml"))
        };
        Self {
            slow_threshold_ms: policy("latency")["latency"]["threshold_ms"]
                .as_u64()
                .expect("threshold_ms"),
            share: policy("probabilistic")["probabilistic"]["sampling_percentage"]
                .as_f64()
                .expect("sampling_percentage")
                / 100.0,
        }
    }
}
