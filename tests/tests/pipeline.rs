//! The end-to-end pipeline test: the real service, the real OpenTelemetry Collector running
//! `stack/collector/config.yaml` itself, the real Prometheus with otel-lgtm's settings (both
//! built natively by `stack/native/build.sh`), real traffic from `labctl traffic`, and then
//! every number a learner will read off the dashboard, checked against what was sent.
//!
//! ```text
//! labctl traffic --> todo-api --OTLP/HTTP--> lab collector --metrics--> Prometheus <-- dashboard queries
//!                                                          --traces, logs--> sink collector --> sink.jsonl
//! ```
//!
//! Two environment variables point the test at modified copies, to show that it fails when
//! the dashboard or the collector config is broken:
//! - `LAB_DASHBOARDS_DIR`: the directory whose `*.json` dashboards are checked
//!   (default: `dashboards/`);
//! - `LAB_COLLECTOR_CONFIG_OVERLAY`: one more `--config` for the lab collector, merged over
//!   `stack/collector/config.yaml`, e.g.
//!   `yaml:connectors::span_metrics::dimensions: [{name: http.route}]`.
//!
//! Needs the `todo-api` and `labctl` binaries built (`cargo test --workspace` builds them;
//! with `-p lab-tests`, run `cargo build -p todo-api -p labctl` first). Run with
//! `-- --nocapture` to see the table of compared numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lab_tests::{app::TestApp, native::NativeStack};
use labctl::dashboard::{self, Backend, DEFAULT_SCRAPE_INTERVAL, Dashboard, VariableKind};
use labctl::lab;
use labctl::plan::{Body, Plan, ROUTE_TODO, ROUTE_TODOS};
use labctl::prom::{Prometheus, QueryData};
use labctl::summary::Summary;
use regex::Regex;
use serde_json::Value;

const SERVICE: &str = "todo-api";
/// A fixed seed and count: the same plan of requests on every run.
const SEED: u64 = 42;
const REQUESTS: u64 = 300;
/// 15 s of traffic: several connector flushes (5 s), as a learner's run has. A burst
/// inside one flush would leave the latency panels empty: `rate()` over a histogram
/// series cannot see the observations of the flush that created the series.
const RATE: &str = "20";
const CONCURRENCY: &str = "4";

/// The fault switch, on one route only, so that the other routes stay fast references.
const FAULT_ROUTE: &str = ROUTE_TODO;
const FAULT_ERROR_RATE: &str = "0.3";
/// A bucket boundary of both histograms (span metrics: 100 ms; the app's: 0.1 s): every
/// delayed request lands above it, so any quantile of the route is at least the delay,
/// exactly and not only after interpolation.
const FAULT_LATENCY_MS: f64 = 100.0;

/// Every bounded wait of the test after the stack is up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Tolerance of the 5xx and 4xx shares computed by the dashboard's own expressions. The
/// connector starts each series with a 0 sample and the expressions are evaluated at the
/// last flush, so `rate()` neither extrapolates to the start nor to the end, and the
/// expected error is float rounding only.
const SHARE_TOLERANCE: f64 = 1e-6;

/// The dashboard panels whose numbers are compared (matched by title).
const ERROR_RATE_PANEL: &str = "Server errors (5xx share)";
const CLIENT_ERROR_PANEL: &str = "Client errors (4xx share)";

const SERVER: &str = r#"span_kind="SPAN_KIND_SERVER""#;

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_pipeline_shows_what_was_sent() {
    let started = Instant::now();
    let root = lab_tests::workspace_root();
    let labctl = fresh_binary(&root, "labctl", &["labctl/src"]);
    lab_tests::app::use_binary(
        fresh_binary(&root, "todo-api", &["app/src", "app/migrations"])
            .to_str()
            .unwrap(),
    );
    let collector_config =
        std::fs::read_to_string(root.join("stack/collector/config.yaml")).unwrap();
    let connector = SpanMetricsConfig::read(&collector_config);
    let dashboards = dashboard_files(&root);

    // ---- the stack --------------------------------------------------------------------
    let overlay: Vec<String> = std::env::var("LAB_COLLECTOR_CONFIG_OVERLAY")
        .ok()
        .filter(|overlay| !overlay.is_empty())
        .map(|overlay| vec![format!("--config={overlay}")])
        .unwrap_or_default();
    let stack = NativeStack::start(&overlay)
        .await
        .unwrap_or_else(|e| panic!("native stack: {e:#}"));
    let stack_started = now();
    // As in lab 3 (stack/compose.collector.yaml over compose.lgtm.yaml): OTLP/HTTP to the
    // collector; a shorter metric interval than the lab's 5 s keeps the test short.
    let fault_latency = FAULT_LATENCY_MS.to_string();
    let app = TestApp::spawn_with(&[
        ("OTEL_SERVICE_NAME", SERVICE),
        (
            lab::RESOURCE_ATTRIBUTES,
            lab::value(lab::RESOURCE_ATTRIBUTES),
        ),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &stack.collector_http_url),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("LAB_FAULT_ERROR_RATE", FAULT_ERROR_RATE),
        ("LAB_FAULT_LATENCY_MS", &fault_latency),
        ("LAB_FAULT_ROUTES", FAULT_ROUTE),
    ])
    .await;
    let up = started.elapsed();

    // ---- traffic ----------------------------------------------------------------------
    let summary_path = stack.dir.join("traffic.json");
    let traffic = tokio::time::timeout(
        SETTLE_TIMEOUT,
        tokio::process::Command::new(&labctl)
            .args([
                "traffic",
                "--base-url",
                &app.address,
                "--seed",
                &SEED.to_string(),
            ])
            .args([
                "--requests",
                &REQUESTS.to_string(),
                "--rate",
                RATE,
                "--concurrency",
                CONCURRENCY,
            ])
            .arg("--json")
            .arg(&summary_path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("labctl traffic finishes within the timeout")
    .expect("labctl runs");
    let traffic_stdout = String::from_utf8_lossy(&traffic.stdout);
    assert!(
        traffic.status.success(),
        "labctl traffic failed ({}):\n{traffic_stdout}{}",
        traffic.status,
        String::from_utf8_lossy(&traffic.stderr)
    );
    eprintln!("{traffic_stdout}");
    let summary: Summary = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap())
        .expect("labctl's --json summary parses");
    let totals = summary.totals();
    assert_eq!(
        totals.transport_errors, 0,
        "every request got an answer: {:?}",
        summary.transport_errors
    );
    assert!(
        totals.status_4xx > 0 && totals.status_5xx > 0,
        "the mix must hold 4xx and fault-switch 5xx for the checks below to mean anything: {totals:?}"
    );
    for row in &summary.unexpected {
        assert!(
            row.actual == 500 && row.route == FAULT_ROUTE,
            "only the fault switch may change a planned status, got {row:?}"
        );
    }
    // SIGTERM: the service flushes its last spans, logs and metric points before it exits.
    let exit = app.shutdown();
    assert!(exit.success(), "todo-api exited with {exit}");
    let traffic_done = started.elapsed();

    // ---- Prometheus: wait until every request is counted --------------------------------
    let prometheus = Prometheus::new(labctl::http::client(), &stack.prometheus_url);
    let sent = sent_by_key(&summary);
    let span_counts_expr = format!(
        r#"sum by (http_request_method, http_route, http_response_status_code) (traces_span_metrics_calls_total{{service_name="{SERVICE}", {SERVER}}})"#
    );
    let app_counts_expr = format!(
        r#"sum by (http_request_method, http_route, http_response_status_code) (http_server_request_duration_seconds_count{{service_name="{SERVICE}"}})"#
    );
    let settled = settle(
        &prometheus,
        &span_counts_expr,
        &app_counts_expr,
        &sent,
        connector.flush_interval,
    )
    .await;
    let settled_after = started.elapsed();

    let mut findings = Findings::default();
    if let Err(message) = &settled.outcome {
        findings.fail(message.clone());
    }

    // The evaluation point of the numeric checks: the connector's last flush.
    let at = scalar(
        &prometheus,
        &format!(r#"max(timestamp(traces_span_metrics_calls_total{{service_name="{SERVICE}"}}))"#),
        now(),
    )
    .await
    .unwrap_or_else(|_| now());
    // Long enough to hold every sample since the stack started.
    let window = format!("{}s", (at - stack_started).ceil() as u64 + 60);

    // ---- only SERVER spans are counted ---------------------------------------------------
    let all_kinds = scalar(
        &prometheus,
        &format!(r#"sum(traces_span_metrics_calls_total{{service_name="{SERVICE}"}})"#),
        at,
    )
    .await
    .unwrap_or(f64::NAN);
    let server_total: u64 = settled.span.values().sum();
    findings.check(
        all_kinds > server_total as f64,
        format!(
            "without span_kind=\"SPAN_KIND_SERVER\" the count should also hold the DB (CLIENT) spans, \
             i.e. exceed the {server_total} server spans; it is {all_kinds}"
        ),
    );

    // ---- resource attributes promoted to labels -----------------------------------------
    for metric in [
        "traces_span_metrics_calls_total",
        "http_server_request_duration_seconds_count",
    ] {
        // The lab's resource attributes (stack/lab.env) as Prometheus labels: dots become
        // underscores.
        let labels: String = lab::value(lab::RESOURCE_ATTRIBUTES)
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| format!(r#", {}="{value}""#, key.replace('.', "_")))
            .collect();
        let expr = format!(r#"count({metric}{{service_name="{SERVICE}"{labels}}})"#);
        let found = scalar(&prometheus, &expr, at).await.unwrap_or(0.0);
        findings.check(found > 0.0, format!("no `{metric}` series with service_name and deployment_environment_name: `{expr}` returned {found}"));
    }
    let app_routes = label_values_of(
        &prometheus,
        "http_route",
        &format!(r#"http_server_request_duration_seconds_count{{service_name="{SERVICE}"}}"#),
        at,
    )
    .await;
    let sent_routes: BTreeSet<String> = summary
        .responses
        .iter()
        .map(|row| row.route.clone())
        .collect();
    findings.check(
        sent_routes.is_subset(&app_routes),
        format!("the app's http_server_request_duration_seconds has http_route values {app_routes:?}, expected all of {sent_routes:?}"),
    );

    // ---- unit: the histogram's buckets are the configured ones, in milliseconds ----------
    let le = label_values_of(
        &prometheus,
        "le",
        &format!(r#"traces_span_metrics_duration_milliseconds_bucket{{service_name="{SERVICE}", {SERVER}}}"#),
        at,
    )
    .await;
    findings.check(
        le == connector.bucket_labels,
        format!("traces_span_metrics_duration_milliseconds_bucket has le {le:?}; config.yaml's buckets in ms are {:?}", connector.bucket_labels),
    );

    // ---- the dashboards -------------------------------------------------------------------
    let mut panel_rows = Vec::new();
    let mut expressions = Vec::new();
    for path in &dashboards {
        let checked = check_dashboard(&prometheus, path, &mut findings).await;
        panel_rows.extend(checked.rows);
        expressions.extend(checked.expressions);
    }
    let mut shares = Vec::new();
    for (panel, expected, what) in [
        (ERROR_RATE_PANEL, totals.error_rate, "5xx share sent"),
        (
            CLIENT_ERROR_PANEL,
            totals.client_error_rate,
            "4xx share sent",
        ),
    ] {
        let Some(expression) = expressions
            .iter()
            .find(|e| e.label.starts_with(&format!("{panel} [")))
        else {
            findings.fail(format!(
                "no dashboard has a panel titled \"{panel}\" (the test compares its value with the \
                 {what}; if the panel was renamed, update the title in tests/tests/pipeline.rs)"
            ));
            continue;
        };
        let widened = widen_windows(&expression.expr, &window);
        let value = scalar(&prometheus, &widened, at).await;
        let as_saved = scalar(&prometheus, &expression.expr, at).await.ok();
        let matches = value
            .as_ref()
            .is_ok_and(|v| (v - expected).abs() <= SHARE_TOLERANCE);
        findings.check(
            matches,
            format!(
                "panel {} shows {}, the {what} is {expected:.6} (tolerance {SHARE_TOLERANCE}); \
                 query (windows widened to the whole run, at the last flush {at}): {widened}",
                expression.label,
                value
                    .as_ref()
                    .map_or_else(|error| format!("nothing ({error})"), |v| format!("{v:.6}"))
            ),
        );
        shares.push((
            expression.label.clone(),
            expected,
            value.unwrap_or(f64::NAN),
            as_saved,
        ));
    }
    // 4xx are not errors: with both classes in the mix, counting 4xx would be visible.
    let errors_if_4xx_counted = totals.error_rate + totals.client_error_rate;
    if let Some((_, _, shown, _)) = shares
        .iter()
        .find(|(label, ..)| label.starts_with(ERROR_RATE_PANEL))
    {
        findings.check(
            (shown - errors_if_4xx_counted).abs() > 0.01,
            format!("the error rate {shown} equals the 5xx+4xx share {errors_if_4xx_counted}: 4xx are counted as errors"),
        );
    }

    // The spans agree: 5xx carry status Error, 4xx leave it Unset (so a panel built on
    // status_code="STATUS_CODE_ERROR" would also show the 5xx share).
    let by_status = counts_by(
        &prometheus,
        &format!(
            r#"sum by (status_code) (traces_span_metrics_calls_total{{service_name="{SERVICE}", {SERVER}, http_response_status_code=~"4..|5.."}})"#
        ),
        "status_code",
        at,
    )
    .await;
    let expected_status: BTreeMap<String, u64> = [
        ("STATUS_CODE_ERROR".to_owned(), totals.status_5xx),
        ("STATUS_CODE_UNSET".to_owned(), totals.status_4xx),
    ]
    .into();
    findings.check(
        by_status == expected_status,
        format!(
            "span status of the 4xx and 5xx server spans: {by_status:?}; expected {expected_status:?} \
             (5xx are errors, 4xx are not)"
        ),
    );

    // ---- latency: the injected delay at the right magnitude, in milliseconds ----------------
    let latency = latency_by_route(&prometheus, at).await;
    for (route, row) in &latency {
        if route == FAULT_ROUTE {
            for (what, value) in [
                ("span metrics p50", row.p50),
                ("span metrics p95", row.p95),
                ("app metric p50", row.app_p50),
            ] {
                findings.check(
                    (FAULT_LATENCY_MS..FAULT_LATENCY_MS * 5.0).contains(&value),
                    format!("{route}: {what} is {value} ms; with {FAULT_LATENCY_MS} ms injected it must be in [{FAULT_LATENCY_MS}, {}) ms", FAULT_LATENCY_MS * 5.0),
                );
            }
        } else {
            findings.check(
                row.p50 < FAULT_LATENCY_MS / 4.0 && row.p95 < FAULT_LATENCY_MS,
                format!(
                    "{route} (no fault) has p50 {} ms and p95 {} ms; expected well below the injected {FAULT_LATENCY_MS} ms \
                     (p50 < {} ms, p95 < {FAULT_LATENCY_MS} ms)",
                    row.p50,
                    row.p95,
                    FAULT_LATENCY_MS / 4.0
                ),
            );
        }
    }
    findings.check(
        latency.contains_key(FAULT_ROUTE),
        format!("no latency for {FAULT_ROUTE}: {latency:?}"),
    );

    // ---- traces and logs, as they left the lab collector ---------------------------------
    let sink = wait_for_sink(&stack.sink_file, &summary).await;
    let server_spans = check_sink(&sink, &summary, &mut findings);
    let checks_done = started.elapsed();

    // ---- labctl verify, native mode --------------------------------------------------------
    let mut verify_outputs = Vec::new();
    for path in &dashboards {
        let verify = tokio::time::timeout(
            SETTLE_TIMEOUT,
            tokio::process::Command::new(&labctl)
                .args([
                    "verify",
                    "--native",
                    "--quiet",
                    "--timeout",
                    "30s",
                    "--prometheus-url",
                    &stack.prometheus_url,
                ])
                .arg("--dashboard")
                .arg(path)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("labctl verify finishes within the timeout")
        .expect("labctl runs");
        let output = String::from_utf8_lossy(&verify.stdout).into_owned();
        findings.check(
            verify.status.success(),
            format!(
                "labctl verify --native --dashboard {} exited with {}:\n{output}{}",
                path.display(),
                verify.status,
                String::from_utf8_lossy(&verify.stderr)
            ),
        );
        for backend in ["tempo:", "loki:"] {
            let skipped = output.lines().any(|line| {
                line.starts_with(backend)
                    && line.contains("SKIP")
                    && line.contains(labctl::verify::SKIP_REASON)
            });
            findings.check(
                skipped,
                format!(
                    "labctl verify --native has no `{backend} ... SKIP {}` line:\n{output}",
                    labctl::verify::SKIP_REASON
                ),
            );
        }
        verify_outputs.push(output);
    }

    // ---- the record ----------------------------------------------------------------------
    let mut report = String::new();
    let _ = writeln!(
        report,
        "\n== pipeline test: seed {SEED}, {REQUESTS} requests, fault on {FAULT_ROUTE} (error rate {FAULT_ERROR_RATE}, +{FAULT_LATENCY_MS} ms)"
    );
    let _ = writeln!(
        report,
        "{:<7} {:<26} {:>6} {:>6} {:>13} {:>11} {:>13}",
        "METHOD", "ROUTE", "STATUS", "SENT", "SPAN METRICS", "APP METRIC", "SERVER SPANS"
    );
    let keys: BTreeSet<&Key> = sent
        .keys()
        .chain(settled.span.keys())
        .chain(settled.app.keys())
        .chain(server_spans.keys())
        .collect();
    let cell = |map: &BTreeMap<Key, u64>, key: &Key| map.get(key).copied().unwrap_or(0);
    for key in keys {
        let _ = writeln!(
            report,
            "{:<7} {:<26} {:>6} {:>6} {:>13} {:>11} {:>13}",
            key.0,
            key.1,
            key.2,
            cell(&sent, key),
            cell(&settled.span, key),
            cell(&settled.app, key),
            cell(&server_spans, key)
        );
    }
    let sum = |map: &BTreeMap<Key, u64>| map.values().sum::<u64>();
    let _ = writeln!(
        report,
        "{:<7} {:<26} {:>6} {:>6} {:>13} {:>11} {:>13}   (tolerance: exact)",
        "TOTAL",
        "",
        "",
        sum(&sent),
        sum(&settled.span),
        sum(&settled.app),
        sum(&server_spans)
    );
    let _ = writeln!(
        report,
        "span metrics of every kind (SERVER + CLIENT): {all_kinds}; SERVER only: {server_total}"
    );
    let _ = writeln!(
        report,
        "span status of the 4xx/5xx server spans: {by_status:?} (sent: {} 5xx, {} 4xx)",
        totals.status_5xx, totals.status_4xx
    );
    let _ = writeln!(
        report,
        "\n{:<48} {:>10} {:>10} {:>16}",
        "SHARE", "SENT", "PANEL", "PANEL AS SAVED"
    );
    for (label, expected, shown, as_saved) in &shares {
        let saved = as_saved
            .map(|v| format!("{v:.6}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            report,
            "{label:<48} {expected:>10.6} {shown:>10.6} {saved:>16}"
        );
    }
    let _ = writeln!(
        report,
        "(panel: its expression with [1m] widened to [{window}], at the last flush; as saved: [1m] at the same time; \
         tolerance {SHARE_TOLERANCE}; 5xx+4xx share would be {errors_if_4xx_counted:.6})"
    );
    let _ = writeln!(
        report,
        "\n{:<26} {:>10} {:>10} {:>14}   (ms; whole run, from the cumulative buckets)",
        "LATENCY", "p50", "p95", "app p50"
    );
    for (route, row) in &latency {
        let _ = writeln!(
            report,
            "{route:<26} {:>10.1} {:>10.1} {:>14.1}",
            row.p50, row.p95, row.app_p50
        );
    }
    let _ = writeln!(
        report,
        "\n{:<60} {:>7}  LAST VALUE",
        "DASHBOARD QUERY", "SERIES"
    );
    for row in &panel_rows {
        let _ = writeln!(report, "{row}");
    }
    for output in &verify_outputs {
        let _ = writeln!(report, "\nlabctl verify --native:\n{output}");
    }
    let _ = writeln!(
        report,
        "timings: stack + app up {:.1}s | traffic done {:.1}s | counts settled {:.1}s | traces and logs checked {:.1}s | total {:.1}s",
        up.as_secs_f64(),
        traffic_done.as_secs_f64(),
        settled_after.as_secs_f64(),
        checks_done.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{report}");

    assert!(
        findings.0.is_empty(),
        "{} pipeline check(s) failed:\n\n- {}\n\nthe stack's last log lines:\n{}",
        findings.0.len(),
        findings.0.join("\n\n- "),
        stack.log_tails(15)
    );
}

// ---------------------------------------------------------------------------------------
// Test inputs

/// A built binary of the workspace, refused when older than its sources: a stale binary
/// would test yesterday's code. `cargo test --workspace` builds every binary first.
fn fresh_binary(root: &Path, name: &str, sources: &[&str]) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join(name);
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build -p {name}` first",
                binary.display()
            )
        });
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending: Vec<PathBuf> = sources.iter().map(|dir| root.join(dir)).collect();
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
        } else if let Ok(modified) = metadata.modified()
            && newest.as_ref().is_none_or(|(time, _)| modified > *time)
        {
            newest = Some((modified, path));
        }
    }
    if let Some((modified, path)) = newest {
        assert!(
            modified <= built,
            "{} is older than {}: run `cargo build -p {name}` (or `cargo test --workspace`)",
            binary.display(),
            path.display()
        );
    }
    binary
}

fn dashboard_files(root: &Path) -> Vec<PathBuf> {
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
struct SpanMetricsConfig {
    flush_interval: Duration,
    /// The `le` label values the buckets become in Prometheus, `+Inf` included.
    bucket_labels: BTreeSet<String>,
}

impl SpanMetricsConfig {
    fn read(config_yaml: &str) -> Self {
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

// ---------------------------------------------------------------------------------------
// Prometheus

/// (method, route, status)
type Key = (String, String, u16);

fn sent_by_key(summary: &Summary) -> BTreeMap<Key, u64> {
    let mut sent = BTreeMap::new();
    for row in &summary.responses {
        *sent
            .entry((row.method.clone(), row.route.clone(), row.status))
            .or_insert(0) += row.count;
    }
    sent
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn instant(prometheus: &Prometheus, expr: &str, at: f64) -> Result<QueryData, String> {
    prometheus
        .instant(expr, at)
        .await
        .map_err(|e| format!("`{expr}`: {e}"))
}

/// The single value of an expression that returns one series (or a scalar).
async fn scalar(prometheus: &Prometheus, expr: &str, at: f64) -> Result<f64, String> {
    let data = instant(prometheus, expr, at).await?;
    match data.values().as_slice() {
        [value] => Ok(*value),
        other => Err(format!(
            "`{expr}` returned {} values: {other:?}",
            other.len()
        )),
    }
}

async fn counts(prometheus: &Prometheus, expr: &str) -> Result<BTreeMap<Key, u64>, String> {
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

struct Settled {
    span: BTreeMap<Key, u64>,
    app: BTreeMap<Key, u64>,
    outcome: Result<(), String>,
}

/// Polls the span metrics and the app's metric until both equal what was sent, then
/// waits one more connector flush and asks again: the counts must have stopped moving.
/// (The connector reports a new series as 0 first and its count one flush later.)
async fn settle(
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
fn differences(columns: &[(&str, &BTreeMap<Key, u64>)]) -> String {
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

async fn label_values_of(
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
async fn counts_by(
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
fn widen_windows(expr: &str, window: &str) -> String {
    Regex::new(r"\[\d+[smhdw]\]")
        .unwrap()
        .replace_all(expr, format!("[{window}]"))
        .into_owned()
}

#[derive(Debug)]
struct Latency {
    p50: f64,
    p95: f64,
    /// The app's own `http.server.request.duration` (seconds), in ms.
    app_p50: f64,
}

/// Quantiles over the whole run per route. The collector and the service started with
/// the test, so their cumulative histograms hold exactly this run's requests: the
/// quantiles are taken from the buckets as they are, not from `increase()`, which cannot
/// see a histogram series' first flush (unlike `calls`, the connector does not start
/// histogram series at 0).
async fn latency_by_route(prometheus: &Prometheus, at: f64) -> BTreeMap<String, Latency> {
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

// ---------------------------------------------------------------------------------------
// Dashboards

struct CheckedDashboard {
    rows: Vec<String>,
    /// Its Prometheus expressions, substituted (none when its variables did not resolve).
    expressions: Vec<dashboard::Expression>,
}

/// Resolves the dashboard's variables as Grafana does (query variables asked of
/// Prometheus, in rounds, since `$route`'s query uses `$service`), then runs every
/// Prometheus target over the dashboard's default time range and requires data.
async fn check_dashboard(
    prometheus: &Prometheus,
    path: &Path,
    findings: &mut Findings,
) -> CheckedDashboard {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let parsed: Dashboard = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| dashboard::parse(&text))
    {
        Ok(parsed) => parsed,
        Err(error) => {
            findings.fail(format!("{name}: cannot read the dashboard: {error}"));
            return CheckedDashboard {
                rows: Vec::new(),
                expressions: Vec::new(),
            };
        }
    };
    let end = now();
    let start = end - parsed.range.as_secs_f64();

    let mut values: Vec<(&str, Vec<String>)> = Vec::new();
    let query_variables: Vec<(&str, &str)> = parsed
        .variables
        .iter()
        .filter_map(|v| match &v.kind {
            VariableKind::Query {
                backend: Backend::Prometheus,
                query,
            } => Some((v.name.as_str(), query.as_str())),
            _ => None,
        })
        .collect();
    for _round in 0..query_variables.len() {
        let bindings = parsed.saved_bindings(DEFAULT_SCRAPE_INTERVAL, &values);
        for (variable, query) in &query_variables {
            if values.iter().any(|(done, _)| done == variable) {
                continue;
            }
            let Ok(query) = dashboard::substitute(query, &bindings) else {
                continue;
            };
            let Some((selector, label)) = dashboard::label_values_call(&query) else {
                findings.fail(format!("{name}: variable ${variable}: cannot read `{query}` (label_values(selector, label) expected)"));
                values.push((variable, Vec::new()));
                continue;
            };
            let found = prometheus
                .label_values(label, selector, start, end)
                .await
                .unwrap_or_default();
            findings.check(
                !found.is_empty(),
                format!("{name}: variable ${variable} has no values: `{query}` returned none (every panel using it shows No data)"),
            );
            values.push((variable, found));
        }
    }
    let bindings = parsed.saved_bindings(DEFAULT_SCRAPE_INTERVAL, &values);
    let expressions = match parsed.prometheus_expressions(&bindings) {
        Ok(expressions) => expressions,
        Err(error) => {
            findings.fail(format!("{name}: {error}"));
            return CheckedDashboard {
                rows: Vec::new(),
                expressions: Vec::new(),
            };
        }
    };
    let time = dashboard::TimeSettings::for_range(parsed.range, DEFAULT_SCRAPE_INTERVAL);
    let mut rows = Vec::new();
    for expression in &expressions {
        let answer = if expression.instant {
            prometheus.instant(&expression.expr, end).await
        } else {
            prometheus
                .range(&expression.expr, start, end, time.interval.as_secs_f64())
                .await
        };
        let (series, last, problem) = match &answer {
            Err(error) => (
                0,
                f64::NAN,
                Some(format!("Prometheus refused or failed: {error}")),
            ),
            Ok(data) => {
                let finite: Vec<f64> = data
                    .values()
                    .into_iter()
                    .filter(|v| v.is_finite())
                    .collect();
                let last = finite.last().copied().unwrap_or(f64::NAN);
                let problem = if data.series_count() == 0 {
                    Some("no series (Grafana: No data)".to_owned())
                } else if finite.is_empty() {
                    Some(format!(
                        "{} series, but only NaN/Inf values: {:?}",
                        data.series_count(),
                        data.label_sets()
                    ))
                } else {
                    None
                };
                (data.series_count(), last, problem)
            }
        };
        if let Some(problem) = problem {
            findings.fail(format!(
                "{name}: panel {}: {problem}\n  query ({}): {}",
                expression.label,
                if expression.instant {
                    "instant"
                } else {
                    "range over the dashboard's time range"
                },
                expression.expr
            ));
        }
        rows.push(format!(
            "{:<60} {series:>7}  {last:.4}",
            shorten(&format!("{name}: {}", expression.label), 60)
        ));
    }
    for query in parsed
        .queries
        .iter()
        .filter(|q| q.backend != Backend::Prometheus)
    {
        rows.push(format!(
            "{:<60} {:>7}  not run: {:?} is container-only",
            shorten(&format!("{name}: {}", query.label()), 60),
            "-",
            query.backend
        ));
    }
    CheckedDashboard { rows, expressions }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max - 3).collect::<String>())
    }
}

// ---------------------------------------------------------------------------------------
// The sink: traces and logs as the lab collector exported them (OTLP/JSON lines)

#[derive(Debug, Default)]
struct Sink {
    spans: Vec<SinkSpan>,
    logs: Vec<SinkLog>,
    /// service.name of every resource seen (spans and logs), with what carried it.
    resources: Vec<(&'static str, Option<String>)>,
}

#[derive(Debug)]
struct SinkSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    /// OTLP SpanKind: 2 SERVER, 3 CLIENT.
    kind: i64,
    attributes: BTreeMap<String, Value>,
}

impl SinkSpan {
    fn key(&self) -> Key {
        let text = |name: &str| {
            self.attributes
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        (
            text("http.request.method"),
            text("http.route"),
            self.status(),
        )
    }
    fn status(&self) -> u16 {
        self.attributes
            .get("http.response.status_code")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u16
    }
}

#[derive(Debug)]
struct SinkLog {
    trace_id: String,
    span_id: String,
    body: String,
}

const SERVER_KIND: i64 = 2;
const CLIENT_KIND: i64 = 3;

fn read_sink(path: &Path) -> Sink {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut sink = Sink::default();
    // Only complete lines: the file exporter may be half-way through the last one.
    for line in text
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
    {
        let batch: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a sink line is not JSON ({e}): {line}"));
        for resource_spans in batch["resourceSpans"].as_array().into_iter().flatten() {
            sink.resources
                .push(("spans", service_name(&resource_spans["resource"])));
            for scope in resource_spans["scopeSpans"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let text = |field: &str| span[field].as_str().unwrap_or_default().to_owned();
                    sink.spans.push(SinkSpan {
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent_span_id: text("parentSpanId"),
                        name: text("name"),
                        kind: span["kind"].as_i64().unwrap_or(0),
                        attributes: attributes(&span["attributes"]),
                    });
                }
            }
        }
        for resource_logs in batch["resourceLogs"].as_array().into_iter().flatten() {
            sink.resources
                .push(("logs", service_name(&resource_logs["resource"])));
            for scope in resource_logs["scopeLogs"].as_array().into_iter().flatten() {
                for record in scope["logRecords"].as_array().into_iter().flatten() {
                    let text = |field: &str| record[field].as_str().unwrap_or_default().to_owned();
                    sink.logs.push(SinkLog {
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        body: record["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
            }
        }
    }
    sink
}

/// OTLP/JSON attributes (`[{"key", "value": {"stringValue" | "intValue" (a string) | ...}}]`)
/// as plain JSON values.
fn attributes(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|attribute| {
            let value = &attribute["value"];
            let plain = if let Some(text) = value["stringValue"].as_str() {
                Value::from(text)
            } else if let Some(int) = value["intValue"]
                .as_str()
                .and_then(|i| i.parse::<i64>().ok())
            {
                Value::from(int)
            } else if let Some(boolean) = value["boolValue"].as_bool() {
                Value::from(boolean)
            } else {
                value["doubleValue"].clone()
            };
            Some((attribute["key"].as_str()?.to_owned(), plain))
        })
        .collect()
}

fn service_name(resource: &Value) -> Option<String> {
    attributes(&resource["attributes"])
        .get("service.name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

const INJECTED_FAULT_LOG: &str = "injected fault (LAB_FAULT_ERROR_RATE)";
const CREATED_LOG: &str = "todo created";

/// Waits until the sink holds a server span for every request sent and the log records
/// every injected fault and every create writes (the service flushed all at shutdown).
async fn wait_for_sink(path: &Path, summary: &Summary) -> Sink {
    let totals = summary.totals();
    let created = summary.count("POST", ROUTE_TODOS, 201);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let sink = read_sink(path);
        let servers = sink.spans.iter().filter(|s| s.kind == SERVER_KIND).count() as u64;
        let faults = sink
            .logs
            .iter()
            .filter(|l| l.body == INJECTED_FAULT_LOG)
            .count() as u64;
        let creates = sink.logs.iter().filter(|l| l.body == CREATED_LOG).count() as u64;
        if (servers >= totals.responses && faults >= totals.status_5xx && creates >= created)
            || Instant::now() >= deadline
        {
            return sink;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The trace and log checks; returns the server spans counted by (method, route, status).
fn check_sink(sink: &Sink, summary: &Summary, findings: &mut Findings) -> BTreeMap<Key, u64> {
    let totals = summary.totals();
    let servers: Vec<&SinkSpan> = sink
        .spans
        .iter()
        .filter(|s| s.kind == SERVER_KIND)
        .collect();
    let mut by_key = BTreeMap::new();
    for span in &servers {
        *by_key.entry(span.key()).or_insert(0) += 1;
    }
    findings.check(
        by_key == sent_by_key(summary),
        format!(
            "server spans in the sink differ from what was sent (exact match expected):\n{}",
            differences(&[("sent", &sent_by_key(summary)), ("server spans", &by_key)])
        ),
    );

    // Every request that reaches the database has a DB (CLIENT) span under its server span.
    // 4xx from validation, 405 and injected 500s are answered before any query; a 404 of
    // an unknown id is the answer of a query.
    let crud = [ROUTE_TODOS, ROUTE_TODO];
    let children: BTreeSet<(&str, &str)> = sink
        .spans
        .iter()
        .filter(|s| s.kind == CLIENT_KIND)
        .map(|s| (s.trace_id.as_str(), s.parent_span_id.as_str()))
        .collect();
    let touching_db: Vec<&&SinkSpan> = servers
        .iter()
        .filter(|s| {
            crud.contains(&s.key().1.as_str()) && matches!(s.status(), 200 | 201 | 204 | 404)
        })
        .collect();
    let orphans: Vec<String> = touching_db
        .iter()
        .filter(|s| !children.contains(&(s.trace_id.as_str(), s.span_id.as_str())))
        .map(|s| format!("{} -> {} (trace {})", s.name, s.status(), s.trace_id))
        .collect();
    findings.check(
        !touching_db.is_empty() && orphans.is_empty(),
        format!(
            "{} of {} server spans that query the database have no CLIENT child span, e.g. {:?}",
            orphans.len(),
            touching_db.len(),
            &orphans[..orphans.len().min(5)]
        ),
    );

    // Log records written in a request carry that request's trace and span.
    let server_by_trace: BTreeMap<&str, &SinkSpan> =
        servers.iter().map(|s| (s.trace_id.as_str(), *s)).collect();
    let span_ids: BTreeSet<(&str, &str)> = sink
        .spans
        .iter()
        .map(|s| (s.trace_id.as_str(), s.span_id.as_str()))
        .collect();
    let mut stray = Vec::new();
    for log in sink.logs.iter().filter(|l| !l.trace_id.is_empty()) {
        let known_span = log.span_id.is_empty()
            || span_ids.contains(&(log.trace_id.as_str(), log.span_id.as_str()));
        if !server_by_trace.contains_key(log.trace_id.as_str()) || !known_span {
            stray.push(format!(
                "\"{}\" (trace {}, span {})",
                log.body, log.trace_id, log.span_id
            ));
        }
    }
    findings.check(
        stray.is_empty(),
        format!(
            "{} log records name a trace or span that was not exported, e.g. {:?}",
            stray.len(),
            &stray[..stray.len().min(5)]
        ),
    );
    for (body, expected, status, what) in [
        (INJECTED_FAULT_LOG, totals.status_5xx, 500, "5xx answers"),
        (
            CREATED_LOG,
            summary.count("POST", ROUTE_TODOS, 201),
            201,
            "creates",
        ),
    ] {
        let records: Vec<&SinkLog> = sink.logs.iter().filter(|l| l.body == body).collect();
        let in_their_request = records
            .iter()
            .filter(|l| {
                server_by_trace
                    .get(l.trace_id.as_str())
                    .is_some_and(|s| s.status() == status)
            })
            .count() as u64;
        findings.check(
            records.len() as u64 == expected && in_their_request == expected,
            format!(
                "\"{body}\" log records: {} exported, {in_their_request} in the trace of a {status} request; {expected} {what} were sent",
                records.len()
            ),
        );
    }

    // service.name on every resource, spans and logs alike.
    for signal in ["spans", "logs"] {
        let names: Vec<&Option<String>> = sink
            .resources
            .iter()
            .filter(|(s, _)| *s == signal)
            .map(|(_, name)| name)
            .collect();
        findings.check(
            !names.is_empty() && names.iter().all(|name| name.as_deref() == Some(SERVICE)),
            format!("service.name of the exported {signal}' resources: {names:?}; expected {SERVICE} on every one"),
        );
    }

    // No literal values in SQL: no string that labctl sent, no quoted string, no number
    // outside a $N placeholder, no id.
    let sent_literals = sent_strings(SEED, REQUESTS);
    let quoted = Regex::new(r"'[^']*'").unwrap();
    let number = Regex::new(r"(^|[^$\w])\d+").unwrap();
    let uuid =
        Regex::new(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
            .unwrap();
    let queries: BTreeSet<&str> = sink
        .spans
        .iter()
        .filter_map(|s| s.attributes.get("db.query.text")?.as_str())
        .collect();
    findings.check(
        !queries.is_empty(),
        "no db.query.text on any exported span".to_owned(),
    );
    for query in queries {
        let leaked: Vec<&String> = sent_literals
            .iter()
            .filter(|literal| query.contains(literal.as_str()))
            .collect();
        findings.check(
            leaked.is_empty()
                && !quoted.is_match(query)
                && !number.is_match(query)
                && !uuid.is_match(query),
            format!(
                "db.query.text holds a literal value (sent strings found: {leaked:?}): {query}"
            ),
        );
    }
    by_key
}

/// Every string in the JSON bodies of the plan labctl sends for `seed` (titles,
/// descriptions), at least three characters long.
fn sent_strings(seed: u64, requests: u64) -> BTreeSet<String> {
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

// ---------------------------------------------------------------------------------------

/// Failed checks, collected so that one run reports all of them.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, passed: bool, message: String) {
        if !passed {
            self.0.push(message);
        }
    }

    fn fail(&mut self, message: String) {
        self.0.push(message);
    }
}
