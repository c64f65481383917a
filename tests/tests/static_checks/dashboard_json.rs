//! The dashboard JSON (dashboards/todo-api-overview.json): datasources, panel types,
//! units, PromQL and variables.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use lab_tests::workspace_root;
use regex::Regex;
use serde_json::Value as Json;

use crate::{assert_no_problems, assert_reported, read};

const DATASOURCE_UIDS: [&str; 3] = ["prometheus", "tempo", "loki"];

/// Panel types the lab's dashboards use; `graph` and `singlestat` are the deprecated
/// Angular panels Grafana no longer renders.
const PANEL_TYPES: [&str; 9] = [
    "row",
    "nodeGraph",
    "timeseries",
    "stat",
    "gauge",
    "table",
    "bargauge",
    "logs",
    "traces",
];

/// Grafana unit ids (from Grafana's valueFormats categories) this project may use. Add
/// one only after finding its id there: an unknown id is shown verbatim as a suffix.
const UNITS: [&str; 12] = [
    "none",
    "short",
    "percent",
    "percentunit",
    "reqps",
    "ops",
    "cps",
    "ms",
    "s",
    "bytes",
    "decbytes",
    "dtdurationms",
];

/// Time units; the dashboard shows latency in one of them only, ms (the span metrics
/// histogram unit).
const TIME_UNITS: [&str; 11] = [
    "ns",
    "µs",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "dtdurationms",
    "dtdurations",
    "clockms",
    "clocks",
];

/// The series the lab produces (collector span metrics, the app's own histogram).
const KNOWN_SERIES: [&str; 7] = [
    "traces_span_metrics_calls_total",
    "traces_span_metrics_duration_milliseconds_bucket",
    "traces_span_metrics_duration_milliseconds_sum",
    "traces_span_metrics_duration_milliseconds_count",
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_sum",
    "http_server_request_duration_seconds_count",
];

static SELECTOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}").expect("valid regex"));

fn panels(dashboard: &Json) -> Vec<&Json> {
    let top = dashboard["panels"].as_array().into_iter().flatten();
    top.flat_map(|panel| {
        std::iter::once(panel).chain(panel["panels"].as_array().into_iter().flatten())
    })
    .collect()
}

fn datasource_problem(at: &str, datasource: &Json) -> Option<String> {
    let uid = datasource["uid"].as_str()?;
    if uid.starts_with('$') {
        return None; // a datasource variable
    }
    if !DATASOURCE_UIDS.contains(&uid) {
        return Some(format!(
            "{at}: datasource uid {uid:?} is not one of otel-lgtm's {DATASOURCE_UIDS:?}"
        ));
    }
    match datasource["type"].as_str() {
        Some(kind) if kind != uid => Some(format!("{at}: datasource uid {uid} has type {kind}")),
        _ => None,
    }
}

fn panel_units(panel: &Json) -> Vec<&str> {
    let defaults = panel["fieldConfig"]["defaults"]["unit"].as_str();
    let overrides = panel["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|o| o["properties"].as_array().into_iter().flatten())
        .filter(|p| p["id"] == "unit")
        .filter_map(|p| p["value"].as_str());
    defaults.into_iter().chain(overrides).collect()
}

fn dashboard_problems(dashboard: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    if dashboard["uid"] != "todo-api-overview" || dashboard["title"] != "Todo API Overview" {
        problems.push("the dashboard must be uid todo-api-overview, title \"Todo API Overview\" (the labs link to it)".into());
    }
    for panel in panels(dashboard) {
        let kind = panel["type"].as_str().unwrap_or("?");
        let at = format!("panel {:?}", panel["title"].as_str().unwrap_or("?"));
        if !PANEL_TYPES.contains(&kind) {
            problems.push(format!(
                "{at}: panel type {kind} is not one of {PANEL_TYPES:?}"
            ));
        }
        if kind == "row" {
            continue;
        }
        problems.extend(datasource_problem(&at, &panel["datasource"]));
        for unit in panel_units(panel) {
            if !UNITS.contains(&unit) {
                problems.push(format!(
                    "{at}: {unit:?} is not a Grafana unit id this project knows ({UNITS:?})"
                ));
            }
            if TIME_UNITS.contains(&unit) && unit != "ms" {
                problems.push(format!(
                    "{at}: unit {unit}; latency is in ms throughout (the span metrics unit)"
                ));
            }
        }
        let targets: Vec<&Json> = panel["targets"].as_array().into_iter().flatten().collect();
        let queries: Vec<&str> = targets
            .iter()
            .filter_map(|t| t["expr"].as_str().or(t["query"].as_str()))
            .filter(|q| !q.trim().is_empty())
            .collect();
        // A Tempo service map is Grafana's own query of the generator's series.
        let service_map = targets.iter().any(|t| t["queryType"] == "serviceMap");
        if queries.is_empty() && !service_map {
            problems.push(format!("{at}: no target with a query (`expr` or `query`)"));
        }
        let mut quantiles = false;
        for target in &targets {
            let datasource = if target["datasource"].is_object() {
                &target["datasource"]
            } else {
                &panel["datasource"]
            };
            problems.extend(datasource_problem(&at, datasource));
            let Some(expr) = target["expr"]
                .as_str()
                .or(target["query"].as_str())
                .filter(|q| !q.trim().is_empty())
            else {
                continue;
            };
            match datasource["type"].as_str().or(datasource["uid"].as_str()) {
                Some("prometheus") => {
                    quantiles |= expr.contains("histogram_quantile");
                    problems.extend(
                        promql_problems(expr)
                            .into_iter()
                            .map(|p| format!("{at}: {p}")),
                    );
                }
                Some("loki") if !expr.contains("service_name") => {
                    problems.push(format!(
                        "{at}: LogQL {expr:?} does not select the service by its service_name label"
                    ));
                }
                _ => {}
            }
        }
        if quantiles {
            if !panel_units(panel).contains(&"ms") {
                problems.push(format!(
                    "{at}: shows latency percentiles, so its unit must be ms"
                ));
            }
            if kind == "timeseries" && !targets.iter().any(|t| t["exemplar"] == true) {
                problems.push(format!(
                    "{at}: latency over time without exemplars; set \"exemplar\": true on a target"
                ));
            }
        }
    }
    problems.extend(variable_problems(dashboard));
    problems
}

/// Span metrics count every span (server, client, internal): a RED panel must select the
/// service's SERVER spans, and read the series under the names they really have.
fn promql_problems(expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if expr.contains("traces_spanmetrics_") {
        problems.push(format!(
            "{expr:?} reads traces_spanmetrics_*, Tempo's own generator series (no http_* labels); use traces_span_metrics_*"
        ));
    }
    let mut selected = 0;
    for selector in SELECTOR.captures_iter(expr) {
        let (metric, matchers) = (&selector[1], &selector[2]);
        selected += 1;
        if !KNOWN_SERIES.contains(&metric) {
            problems.push(format!(
                "series {metric} is not one the lab produces ({KNOWN_SERIES:?})"
            ));
        }
        // The one exception: labctl traffic's own CLIENT spans, for client-observed latency.
        let client =
            matchers.contains(r#"service_name="todo-client", span_kind="SPAN_KIND_CLIENT""#);
        if metric.starts_with("traces_span_metrics_")
            && !client
            && !(matchers.contains(r#"span_kind="SPAN_KIND_SERVER""#)
                && matchers.contains(r#"service_name=~"$service""#))
        {
            problems.push(format!(
                "{metric}{{{matchers}}} must select span_kind=\"SPAN_KIND_SERVER\" and service_name=~\"$service\""
            ));
        }
        if metric.ends_with("_seconds_bucket") && !expr.trim_start().starts_with("1000 *") {
            problems.push(format!(
                "{metric} is in seconds; multiply by 1000 to keep the dashboard in ms"
            ));
        }
    }
    if selected == 0 {
        problems.push(format!("{expr:?} has no series selector with labels"));
    }
    problems
}

fn variable_problems(dashboard: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let variables: BTreeMap<&str, &Json> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    for variable in variables.values() {
        let at = format!("variable {}", variable["name"]);
        problems.extend(datasource_problem(&at, &variable["datasource"]));
    }
    let definition = |name: &str| {
        variables
            .get(name)
            .and_then(|v| v["definition"].as_str())
            .unwrap_or("")
    };
    match variables.get("service") {
        None => problems.push("no `service` variable".into()),
        // Loki refuses a stream selector that can match the empty string (`.*`).
        Some(v) if v["includeAll"] == true && v["allValue"] != ".+" => problems.push(
            "variable service: set allValue \".+\" (Loki rejects `service_name=~\".*\"`)".into(),
        ),
        Some(_) if !definition("service").contains("service_name") => {
            problems.push("variable service: must list the service_name label".into())
        }
        Some(_) => {}
    }
    match variables.get("route") {
        None => problems.push("no `route` variable".into()),
        // Requests that matched no route carry no http_route: only `.*` keeps them in "All".
        Some(v) if v["includeAll"] == true && v["allValue"] != ".*" => problems.push(
            "variable route: set allValue \".*\" so \"All\" also counts requests without a route"
                .into(),
        ),
        Some(_)
            if !(definition("route").contains("http_route")
                && definition("route").contains(r#"span_kind="SPAN_KIND_SERVER""#)) =>
        {
            problems.push("variable route: must list http_route of SERVER spans".into())
        }
        Some(_) => {}
    }
    problems
}

#[test]
fn dashboard_in_the_repository() {
    let path = workspace_root().join("dashboards/todo-api-overview.json");
    let dashboard: Json = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    assert_no_problems(
        "dashboards/todo-api-overview.json",
        &dashboard_problems(&dashboard),
    );
}

#[test]
fn dashboard_check_rejects_what_it_should() {
    let dashboard = serde_json::json!({
        "uid": "todo-api-overview",
        "title": "Todo API Overview",
        "panels": [
            {"type": "graph", "title": "Old", "datasource": {"type": "prometheus", "uid": "prometheus"},
             "targets": [{"expr": "sum(rate(traces_spanmetrics_calls_total{service=\"todo-api\"}[1m]))"}]},
            {"type": "row", "title": "Row", "panels": [
                {"type": "timeseries", "title": "Latency", "datasource": {"type": "prometheus", "uid": "mimir"},
                 "fieldConfig": {"defaults": {"unit": "s"}, "overrides": [
                     {"matcher": {"id": "byName", "options": "x"}, "properties": [{"id": "unit", "value": "milliseconds"}]}]},
                 "targets": [{"expr": "histogram_quantile(0.95, sum by (le) (rate(traces_span_metrics_duration_milliseconds_bucket{service_name=\"todo-api\"}[1m])))"},
                             {"expr": "histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket{service_name=~\"$service\"}[1m])))"}]}]},
            {"type": "stat", "title": "Empty", "datasource": {"type": "prometheus", "uid": "prometheus"}, "targets": [{"expr": ""}]},
            {"type": "logs", "title": "Logs", "datasource": {"type": "loki", "uid": "loki"}, "targets": [{"expr": "{job=\"x\"}"}]}
        ],
        "templating": {"list": [
            {"name": "service", "includeAll": true, "allValue": ".*", "definition": "label_values(service_name)",
             "datasource": {"type": "prometheus", "uid": "prometheus"}},
            {"name": "route", "includeAll": true, "allValue": ".*", "definition": "label_values(http_route)",
             "datasource": {"type": "prometheus", "uid": "prometheus"}}
        ]}
    });
    let problems = dashboard_problems(&dashboard);
    assert_reported(&problems, &["\"Old\"", "panel type graph"]);
    assert_reported(&problems, &["\"Old\"", "Tempo's own generator"]);
    assert_reported(&problems, &["\"Latency\"", "uid \"mimir\""]);
    assert_reported(
        &problems,
        &["\"Latency\"", "\"milliseconds\" is not a Grafana unit id"],
    );
    assert_reported(&problems, &["\"Latency\"", "unit s;"]);
    assert_reported(&problems, &["\"Latency\"", "must select span_kind"]);
    assert_reported(&problems, &["\"Latency\"", "multiply by 1000"]);
    assert_reported(&problems, &["\"Latency\"", "unit must be ms"]);
    assert_reported(&problems, &["\"Latency\"", "without exemplars"]);
    assert_reported(&problems, &["\"Empty\"", "no target with a query"]);
    assert_reported(&problems, &["\"Logs\"", "service_name label"]);
    assert_reported(&problems, &["variable service", "allValue \".+\""]);
    assert_reported(&problems, &["variable route", "SERVER spans"]);
}
