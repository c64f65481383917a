//! The test's questions to Prometheus: counts by (method, route, status), single values,
//! label values and latency quantiles, and the wait until the counts settle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use labctl::clock::now;
use labctl::prom::{Prometheus, QueryData};
use regex::Regex;

use crate::{SERVER, SERVICE, SETTLE_TIMEOUT};

/// (method, route, status)
pub type Key = (String, String, u16);

pub async fn instant(prometheus: &Prometheus, expr: &str, at: f64) -> Result<QueryData, String> {
    prometheus
        .instant(expr, at)
        .await
        .map_err(|e| format!("`{expr}`: {e}"))
}

/// The single value of an expression that returns one series (or a scalar).
pub async fn scalar(prometheus: &Prometheus, expr: &str, at: f64) -> Result<f64, String> {
    let data = instant(prometheus, expr, at).await?;
    match data.values().as_slice() {
        [value] => Ok(*value),
        other => Err(format!(
            "`{expr}` returned {} values: {other:?}",
            other.len()
        )),
    }
}

pub async fn counts(prometheus: &Prometheus, expr: &str) -> Result<BTreeMap<Key, u64>, String> {
    let QueryData::Vector(samples) = instant(prometheus, expr, now()).await? else {
        return Err(format!("`{expr}` did not return a vector"));
    };
    let mut counts = BTreeMap::new();
    for sample in samples {
        let label = |name: &str| sample.metric.get(name).cloned().unwrap_or_default();
        let status = label("http_response_status_code").parse().unwrap_or(0);
        let value = sample.value.as_ref().map_or(f64::NAN, |v| v.value());
        counts.insert(
            (label("http_request_method"), label("http_route"), status),
            value.round() as u64,
        );
    }
    Ok(counts)
}

pub struct Settled {
    pub span: BTreeMap<Key, u64>,
    pub app: BTreeMap<Key, u64>,
    pub outcome: Result<(), String>,
}

/// Polls the span metrics and the app's metric until both equal what was sent, then
/// waits one more connector flush and asks again: the counts must have stopped moving.
/// (The connector reports a new series as 0 first and its count one flush later.)
pub async fn settle(
    prometheus: &Prometheus,
    span_expr: &str,
    app_expr: &str,
    sent: &BTreeMap<Key, u64>,
    flush_interval: Duration,
) -> Settled {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let span = counts(prometheus, span_expr).await.unwrap_or_default();
        let app = counts(prometheus, app_expr).await.unwrap_or_default();
        if span == *sent && app == *sent {
            tokio::time::sleep(flush_interval + Duration::from_secs(1)).await;
            let span_again = counts(prometheus, span_expr).await.unwrap_or_default();
            let app_again = counts(prometheus, app_expr).await.unwrap_or_default();
            let outcome = if span_again == span && app_again == app {
                Ok(())
            } else {
                Err(format!(
                    "the counts kept moving after matching what was sent:\n  span metrics {span_again:?}\n  app metric {app_again:?}"
                ))
            };
            return Settled {
                span: span_again,
                app: app_again,
                outcome,
            };
        }
        if Instant::now() >= deadline {
            let outcome = Err(format!(
                "after {}s the requests counted in Prometheus differ from what labctl sent (exact match expected):\n  \
                 {span_expr}\n  {app_expr}\n{}",
                SETTLE_TIMEOUT.as_secs(),
                differences(&[
                    ("sent", sent),
                    ("span metrics", &span),
                    ("app metric", &app)
                ])
            ));
            return Settled { span, app, outcome };
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The rows where the columns disagree, e.g. `[("sent", ..), ("span metrics", ..)]`.
pub fn differences(columns: &[(&str, &BTreeMap<Key, u64>)]) -> String {
    let keys: BTreeSet<&Key> = columns.iter().flat_map(|(_, map)| map.keys()).collect();
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let mut out = format!("  METHOD ROUTE STATUS: {}\n", names.join(" | "));
    for key in keys {
        let cells: Vec<Option<u64>> = columns
            .iter()
            .map(|(_, map)| map.get(key).copied())
            .collect();
        if cells.iter().any(|cell| *cell != cells[0]) {
            let shown: Vec<String> = cells
                .iter()
                .map(|cell| cell.map_or("-".into(), |n| n.to_string()))
                .collect();
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                key.0,
                key.1,
                key.2,
                shown.join(" | ")
            );
        }
    }
    out
}

pub async fn label_values_of(
    prometheus: &Prometheus,
    label: &str,
    selector: &str,
    at: f64,
) -> BTreeSet<String> {
    prometheus
        .label_values(label, Some(selector), at - 3_600.0, at)
        .await
        .map(|values| values.into_iter().collect())
        .unwrap_or_default()
}

/// `sum by (label) (...)` as a map from the label's value to the count.
pub async fn counts_by(
    prometheus: &Prometheus,
    expr: &str,
    label: &str,
    at: f64,
) -> BTreeMap<String, u64> {
    let Ok(QueryData::Vector(samples)) = instant(prometheus, expr, at).await else {
        return BTreeMap::new();
    };
    samples
        .into_iter()
        .map(|sample| {
            let value = sample.value.as_ref().map_or(f64::NAN, |v| v.value());
            (
                sample.metric.get(label).cloned().unwrap_or_default(),
                value.round() as u64,
            )
        })
        .collect()
}

/// `rate(x[1m])` -> `rate(x[<window>])`: the dashboard's expression over the whole run.
pub fn widen_windows(expr: &str, window: &str) -> String {
    Regex::new(r"\[\d+[smhdw]\]")
        .unwrap()
        .replace_all(expr, format!("[{window}]"))
        .into_owned()
}

#[derive(Debug)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    /// The app's own `http.server.request.duration` (seconds), in ms.
    pub app_p50: f64,
}

/// Quantiles over the whole run per route. The collector and the service started with
/// the test, so their cumulative histograms hold exactly this run's requests: the
/// quantiles are taken from the buckets as they are, not from `increase()`, which cannot
/// see a histogram series' first flush (unlike `calls`, the connector does not start
/// histogram series at 0).
pub async fn latency_by_route(prometheus: &Prometheus, at: f64) -> BTreeMap<String, Latency> {
    let spans = |q: f64| {
        format!(
            r#"histogram_quantile({q}, sum by (le, http_route) (traces_span_metrics_duration_milliseconds_bucket{{service_name="{SERVICE}", {SERVER}}}))"#
        )
    };
    let app = format!(
        r#"1000 * histogram_quantile(0.5, sum by (le, http_route) (http_server_request_duration_seconds_bucket{{service_name="{SERVICE}"}}))"#
    );
    let by_route = |data: Result<QueryData, String>| -> BTreeMap<String, f64> {
        let Ok(QueryData::Vector(samples)) = data else {
            return BTreeMap::new();
        };
        samples
            .into_iter()
            .map(|s| {
                (
                    s.metric.get("http_route").cloned().unwrap_or_default(),
                    s.value.map_or(f64::NAN, |v| v.value()),
                )
            })
            .collect()
    };
    let p50 = by_route(instant(prometheus, &spans(0.5), at).await);
    let p95 = by_route(instant(prometheus, &spans(0.95), at).await);
    let app_p50 = by_route(instant(prometheus, &app, at).await);
    p50.iter()
        .map(|(route, p50)| {
            let row = Latency {
                p50: *p50,
                p95: p95.get(route).copied().unwrap_or(f64::NAN),
                app_p50: app_p50.get(route).copied().unwrap_or(f64::NAN),
            };
            (route.clone(), row)
        })
        .collect()
}
