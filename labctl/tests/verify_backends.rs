//! verify's Prometheus, Tempo and Loki clients, and `verify` as a whole, against recorded
//! answers served over real HTTP. The fixtures follow the formats the upstream API docs
//! specify, with our series and labels in them:
//! - `prometheus/*.json`: Prometheus `docs/querying/api.md`: "Format overview" (the
//!   envelope; errors as `status: error`, `errorType: bad_data` with HTTP 400), "Instant
//!   queries" (vector), "Range queries" (matrix), "Querying label values", and
//!   "Expression query result formats" (sample values as strings, `NaN` included).
//! - `tempo/search_*.json`: Tempo `docs/sources/tempo/api_docs/_index.md`, "Search":
//!   "Example of TraceQL search" (its printed example lacks one closing brace, restored
//!   here) and the tags-based example (a trace without `spanSets`).
//! - `loki/query_range_streams.json`: Loki `docs/sources/reference/loki-http-api.md`,
//!   "Query logs within a range of time" (streams result, with a `stats.summary` part).

mod fixture_server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fixture_server::{FixtureServer, on};
use labctl::http::{self, ApiError};
use labctl::loki::{Loki, LokiData};
use labctl::probe::{Outcome, Report};
use labctl::prom::{Prometheus, QueryData};
use labctl::tempo::Tempo;
use labctl::verify::{self, SKIP_REASON, VerifyConfig};

const SPAN_SELECTOR: &str =
    r#"traces_span_metrics_calls_total{service_name="todo-api", span_kind="SPAN_KIND_SERVER"}"#;
const APP_SELECTOR: &str = r#"http_server_request_duration_seconds_count{service_name="todo-api"}"#;

fn config(
    prometheus: &str,
    others: Option<&str>,
    dashboard: PathBuf,
    timeout: Duration,
) -> VerifyConfig {
    VerifyConfig {
        prometheus_url: prometheus.into(),
        tempo_url: others.map(str::to_owned),
        loki_url: others.map(str::to_owned),
        service: "todo-api".into(),
        dashboard,
        timeout,
        scrape_interval: Duration::from_secs(15),
        variables: Vec::new(),
        progress: false,
    }
}

fn fixture_dashboard() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dashboard.json")
}

/// A stack where everything arrived.
async fn healthy_stack() -> FixtureServer {
    healthy_stack_with_routes("prometheus/label_values_route.json").await
}

/// A stack where everything arrived, whose route label values are `routes`.
async fn healthy_stack_with_routes(routes: &str) -> FixtureServer {
    FixtureServer::start(vec![
        on("/api/v1/query", "prometheus/span_metrics_by_route.json").when("query", SPAN_SELECTOR),
        on("/api/v1/query", "prometheus/app_metrics_by_route.json").when("query", APP_SELECTOR),
        on("/api/v1/query", "prometheus/instant_vector.json"),
        on("/api/v1/query_range", "prometheus/range_matrix.json"),
        on("/api/v1/label/http_route/values", routes),
        on("/api/search", "tempo/search_traceql.json"),
        on("/loki/api/v1/query_range", "loki/query_range_streams.json"),
    ])
    .await
}

#[tokio::test]
async fn prometheus_client_reads_the_documented_formats() {
    let server = FixtureServer::start(vec![
        on("/api/v1/query", "prometheus/bad_data.json")
            .when("query", "sum(")
            .status(400),
        on("/api/v1/query", "prometheus/instant_vector.json"),
        on("/api/v1/query_range", "prometheus/nan_matrix.json").when("query", "0/0"),
        on("/api/v1/query_range", "prometheus/range_matrix.json"),
        on(
            "/api/v1/label/http_route/values",
            "prometheus/label_values_route.json",
        ),
    ])
    .await;
    let prometheus = Prometheus::new(http::client(), &server.url);

    let instant = prometheus.instant("up", 1_764_032_451.5).await.unwrap();
    assert_eq!(instant.series_count(), 2);
    assert_eq!(instant.values(), vec![61.0, 40.0]);
    assert_eq!(instant.label_sets()[1]["http_route"], "/health");

    let range = prometheus
        .range("rate(x[1m])", 1_764_032_400.0, 1_764_032_460.0, 15.0)
        .await
        .unwrap();
    assert!(matches!(range, QueryData::Matrix(ref series) if series.len() == 2));
    assert_eq!(range.values().len(), 6);

    let nan = prometheus
        .range("0/0", 1_764_032_400.0, 1_764_032_460.0, 15.0)
        .await
        .unwrap();
    assert!(nan.values().iter().all(|v| v.is_nan()));

    let routes = prometheus
        .label_values("http_route", Some(SPAN_SELECTOR), 1.0, 2.0)
        .await
        .unwrap();
    assert_eq!(
        routes,
        ["/api/v1/todos", "/api/v1/todos/{todo_id}", "/health"]
    );

    let refused = prometheus.instant("sum(", 1.0).await.unwrap_err();
    match refused {
        ApiError::Rejected {
            status: 400,
            message,
        } => assert!(message.contains("parse error"), "{message}"),
        other => panic!("expected a rejection, got {other:?}"),
    }

    let seen = server.seen().await;
    assert_eq!(seen[0].param("time"), Some("1764032451.500"));
    assert_eq!(seen[1].param("step"), Some("15"));
    assert_eq!(seen[3].path, "/api/v1/label/http_route/values");
    assert_eq!(seen[3].param("match[]"), Some(SPAN_SELECTOR));
}

#[tokio::test]
async fn tempo_client_reads_the_documented_search_answer() {
    let server = FixtureServer::start(vec![on("/api/search", "tempo/search_traceql.json")]).await;
    let tempo = Tempo::new(http::client(), &server.url);
    let traces = tempo
        .search(r#"{resource.service.name="todo-api"}"#, 100, 200, 20)
        .await
        .unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[0].trace_id, "2f3e0cee77ae5dc9c17ade3689eb2e54");
    assert_eq!(traces[1].root_trace_name.as_deref(), Some("GET /health"));
    let seen = &server.seen().await[0];
    assert_eq!(
        seen.param("q"),
        Some(r#"{resource.service.name="todo-api"}"#)
    );
    assert_eq!(
        (seen.param("start"), seen.param("end"), seen.param("limit")),
        (Some("100"), Some("200"), Some("20"))
    );
}

#[tokio::test]
async fn loki_client_reads_the_documented_streams_answer() {
    let server = FixtureServer::start(vec![on(
        "/loki/api/v1/query_range",
        "loki/query_range_streams.json",
    )])
    .await;
    let loki = Loki::new(http::client(), &server.url);
    let data = loki
        .query_range(r#"{service_name="todo-api"}"#, 100, 200, 20)
        .await
        .unwrap();
    assert!(matches!(data, LokiData::Streams(_)));
    assert_eq!(data.entry_count(), 2);
    assert_eq!(data.lines(), ["todo not found", "request body rejected"]);
    let seen = &server.seen().await[0];
    assert_eq!(
        seen.param("start"),
        Some("100000000000"),
        "Loki takes nanoseconds"
    );
    assert_eq!(seen.param("query"), Some(r#"{service_name="todo-api"}"#));
}

#[tokio::test]
async fn verify_passes_when_every_signal_and_panel_has_data() {
    let server = healthy_stack().await;
    let report = verify::run(&config(
        &server.url,
        Some(&server.url),
        fixture_dashboard(),
        Duration::from_secs(5),
    ))
    .await;
    assert!(report.passed(), "{}", report.render());
    let table = report.render();
    assert!(
        table.contains("3 routes: /api/v1/todos, /api/v1/todos/{todo_id}, /health"),
        "{table}"
    );
    assert!(
        table.contains(r#"2 traces, e.g. "POST /api/v1/todos""#),
        "{table}"
    );
    assert!(table.contains("= todo-api (from --service)"), "{table}");

    // What Prometheus was really asked: Grafana's substitutions, Grafana's query types.
    let seen = server.seen().await;
    let asked = |path: &str, needle: &str| {
        seen.iter()
            .find(|s| s.path == path && s.param("query").is_some_and(|q| q.contains(needle)))
            .unwrap_or_else(|| panic!("no {path} query containing {needle}"))
            .clone()
    };
    let p95 = asked("/api/v1/query_range", "histogram_quantile");
    assert!(
        p95.param("query")
            .unwrap()
            .contains(r#"http_route=~"(/api/v1/todos|/api/v1/todos/\\{todo_id\\}|/health)"}[1m]"#),
        "{p95:?}"
    );
    assert_eq!(p95.param("step"), Some("15"));
    let top = asked("/api/v1/query", "topk");
    assert!(
        top.param("query").unwrap().contains("[15m]"),
        "$__range is the dashboard's 15m: {top:?}"
    );
    let route_values = seen
        .iter()
        .find(|s| s.path == "/api/v1/label/http_route/values")
        .unwrap();
    assert_eq!(
        route_values.param("match[]"),
        Some(
            r#"traces_span_metrics_calls_total{service_name="todo-api", span_kind="SPAN_KIND_SERVER"}"#
        )
    );
}

#[tokio::test]
async fn native_mode_shows_skip_rows_and_never_calls_tempo_or_loki() {
    let server = healthy_stack().await;
    let report = verify::run(&config(
        &server.url,
        None,
        fixture_dashboard(),
        Duration::from_secs(5),
    ))
    .await;
    assert!(report.passed(), "{}", report.render());
    let skipped: Vec<&str> = report
        .rows
        .iter()
        .filter(|row| row.outcome == Outcome::Skip(SKIP_REASON.into()))
        .map(|row| row.check.as_str())
        .collect();
    assert_eq!(
        skipped,
        [
            "tempo: traces of the service",
            "loki: log lines of the service",
            "panel Warnings and errors [A]",
            "panel Recent traces [A]"
        ]
    );
    assert!(
        report
            .render()
            .contains("SKIP    not available here (Tempo/Loki are container-only)")
    );
    assert!(
        server
            .seen()
            .await
            .iter()
            .all(|s| s.path.starts_with("/api/v1/"))
    );
}

#[tokio::test]
async fn missing_span_metrics_are_explained_by_what_prometheus_does_have() {
    let server = FixtureServer::start(vec![
        on("/api/v1/query", "prometheus/tempo_generated_count.json")
            .when("query", "traces_spanmetrics_calls_total"),
        on("/api/v1/query", "prometheus/empty_vector.json"),
        on("/api/v1/query_range", "prometheus/range_matrix.json"),
        on(
            "/api/v1/label/http_route/values",
            "prometheus/label_values_route.json",
        ),
    ])
    .await;
    let report = verify::run(&config(
        &server.url,
        None,
        fixture_dashboard(),
        Duration::ZERO,
    ))
    .await;
    let row = report
        .rows
        .iter()
        .find(|r| r.check.contains("traces_span_metrics_calls_total"))
        .unwrap();
    match &row.outcome {
        Outcome::Waiting { reason, fix } => {
            assert!(
                reason.contains("only Tempo's own traces_spanmetrics_*"),
                "{reason}"
            );
            // The lab exports over its own protocol (stack/lab.env): the hint names the
            // collector endpoint of that protocol, not the other one.
            let endpoint = labctl::lab::collector_endpoint();
            assert!(fix.contains(&endpoint), "{fix}");
            let settings = labctl::lab::settings();
            let other = match settings.get(labctl::lab::OTLP_PROTOCOL) {
                Some("grpc") => labctl::lab::COLLECTOR_OTLP_HTTP_PORT,
                _ => labctl::lab::COLLECTOR_OTLP_GRPC_PORT,
            };
            let other = format!(":{}", settings.get(other).unwrap());
            assert!(
                !fix.contains(&other),
                "{fix} names the port of the other protocol"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!report.passed());
    assert!(
        report
            .render()
            .contains("fix: the app exports straight to LGTM")
    );
}

#[tokio::test]
async fn broken_panels_fail_at_once_with_the_backends_own_words() {
    let dashboard = serde_json::json!({
        "uid": "broken", "title": "Broken", "time": { "from": "now-15m" },
        "panels": [
            { "title": "Typo", "datasource": { "type": "prometheus", "uid": "prometheus" },
              "targets": [ { "refId": "A", "expr": "sum(rate(x[5m])))" } ] },
            { "title": "Undefined", "datasource": { "type": "prometheus", "uid": "prometheus" },
              "targets": [ { "refId": "A", "expr": "up{job=\"$job\"}" } ] },
            { "title": "Ratio", "datasource": { "type": "prometheus", "uid": "prometheus" },
              "targets": [ { "refId": "A", "expr": "0/0" } ] },
            { "title": "Search", "datasource": { "type": "tempo", "uid": "tempo" },
              "targets": [ { "refId": "A", "queryType": "traceqlSearch", "filters": [] } ] }
        ]
    });
    let path = std::env::temp_dir().join(format!("labctl-broken-{}.json", std::process::id()));
    std::fs::write(&path, dashboard.to_string()).unwrap();
    let server = FixtureServer::start(vec![
        on("/api/v1/query", "prometheus/span_metrics_by_route.json").when("query", SPAN_SELECTOR),
        on("/api/v1/query", "prometheus/app_metrics_by_route.json").when("query", APP_SELECTOR),
        on("/api/v1/query_range", "prometheus/bad_data.json")
            .when("query", ")))")
            .status(400),
        on("/api/v1/query_range", "prometheus/nan_matrix.json").when("query", "0/0"),
    ])
    .await;

    // A long timeout: the refused and undefined ones must not wait for it; only NaN waits.
    let started = Instant::now();
    let report = verify::run(&config(
        &server.url,
        None,
        path.clone(),
        Duration::from_secs(3),
    ))
    .await;
    std::fs::remove_file(&path).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );

    let outcome = |check: &str| outcome_of(&report, check);
    assert!(
        matches!(outcome("panel Typo [A]"), Outcome::Fail { reason, .. } if reason.contains("Prometheus refused it") && reason.contains("parse error"))
    );
    assert!(
        matches!(outcome("panel Undefined [A]"), Outcome::Fail { reason, .. } if reason == "uses undefined $job")
    );
    assert!(
        matches!(outcome("panel Ratio [A]"), Outcome::Waiting { reason, .. } if reason.contains("only NaN"))
    );
    assert!(
        matches!(outcome("panel Search [A]"), Outcome::Fail { reason, .. } if reason.contains("no query text"))
    );
    assert!(!report.passed());
}

#[tokio::test]
async fn an_empty_route_variable_fails_even_with_an_all_value() {
    // The baseline's failure: a route variable built on metric names that do not exist
    // lists nothing, and a custom "All" value (`.*`) hides it in every panel.
    let dashboard = serde_json::json!({
        "uid": "empty", "title": "Empty", "time": { "from": "now-15m" },
        "templating": { "list": [
            { "name": "route", "type": "query", "multi": true, "includeAll": true, "allValue": ".*",
              "datasource": { "type": "prometheus", "uid": "prometheus" },
              "query": "label_values(traces_spanmetrics_latency_bucket, http_route)",
              "current": { "text": ["All"], "value": ["$__all"] } }
        ]},
        "panels": [
            { "title": "By route", "datasource": { "type": "prometheus", "uid": "prometheus" },
              "targets": [ { "refId": "A", "expr": "sum by (http_route) (rate(x{http_route=~\"$route\"}[1m]))" } ] }
        ]
    });
    let path = std::env::temp_dir().join(format!("labctl-empty-{}.json", std::process::id()));
    std::fs::write(&path, dashboard.to_string()).unwrap();
    let server = healthy_stack_with_routes("prometheus/label_values_empty.json").await;
    let report = verify::run(&config(&server.url, None, path.clone(), Duration::ZERO)).await;
    std::fs::remove_file(&path).unwrap();

    let outcome = |check: &str| outcome_of(&report, check);
    assert!(
        matches!(outcome("variable $route"), Outcome::Waiting { reason, fix }
        if reason.contains("no values") && fix.contains("not Tempo's traces_spanmetrics_*"))
    );
    assert!(
        matches!(outcome("panel By route [A]"), Outcome::Fail { reason, .. }
        if reason == "cannot run: $route has no value")
    );
}

#[tokio::test]
async fn an_unreachable_backend_names_the_url_and_the_fix() {
    let port = lab_tests::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let report = verify::run(&config(&url, None, fixture_dashboard(), Duration::ZERO)).await;
    let first = &report.rows[0];
    match &first.outcome {
        Outcome::Waiting { reason, fix } => {
            assert!(
                reason.contains(&url) && reason.contains("unreachable"),
                "{reason}"
            );
            assert!(fix.contains("just status"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreadable_dashboard_is_a_failure_row_not_a_crash() {
    let server = healthy_stack().await;
    let report = verify::run(&config(
        &server.url,
        None,
        PathBuf::from("/nonexistent/dash.json"),
        Duration::ZERO,
    ))
    .await;
    let last = report.rows.last().unwrap();
    assert_eq!(last.check, "dashboard /nonexistent/dash.json");
    assert!(
        matches!(&last.outcome, Outcome::Fail { reason, .. } if reason.starts_with("cannot read it"))
    );
}

#[tokio::test]
async fn the_cli_exits_zero_only_when_everything_passed() {
    let healthy = healthy_stack().await;
    let empty =
        FixtureServer::start(vec![on("/api/v1/query", "prometheus/empty_vector.json")]).await;
    let run = |prometheus: String, timeout: &'static str| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
                .args([
                    "verify",
                    "--native",
                    "--quiet",
                    "--timeout",
                    timeout,
                    "--prometheus-url",
                    &prometheus,
                ])
                .arg("--dashboard")
                .arg(fixture_dashboard())
                .output()
                .unwrap()
        })
    };
    let passed = run(healthy.url.clone(), "5s").await.unwrap();
    let stdout = String::from_utf8_lossy(&passed.stdout);
    assert_eq!(passed.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("SKIP    not available here (Tempo/Loki are container-only)"),
        "{stdout}"
    );

    let failed = run(empty.url.clone(), "0s").await.unwrap();
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("fix: is the collector in the path"),
        "{stdout}"
    );
}

/// The outcome of the report's row named `check`.
fn outcome_of(report: &Report, check: &str) -> Outcome {
    report
        .rows
        .iter()
        .find(|r| r.check == check)
        .unwrap_or_else(|| panic!("no row {check}"))
        .outcome
        .clone()
}
