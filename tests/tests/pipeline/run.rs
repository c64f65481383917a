//! The one run every check reads: the native stack, the service exporting to it with the
//! fault switch on, `labctl traffic` against it, and Prometheus waited on until every
//! request is counted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab_tests::{app::TestApp, binaries, native::NativeStack};
use labctl::clock::now;
use labctl::lab;
use labctl::prom::Prometheus;
use labctl::summary::{Summary, Totals};

use crate::inputs::{SpanMetricsConfig, dashboard_files};
use crate::prometheus::{Key, Settled, scalar, settle};
use crate::{
    CONCURRENCY, FAULT_ERROR_RATE, FAULT_LATENCY_MS, FAULT_ROUTE, RATE, REQUESTS, SEED, SERVER,
    SERVICE, SETTLE_TIMEOUT,
};

pub struct Run {
    pub started: Instant,
    pub labctl: PathBuf,
    pub connector: SpanMetricsConfig,
    pub dashboards: Vec<PathBuf>,
    pub stack: NativeStack,
    pub summary: Summary,
    pub totals: Totals,
    pub prometheus: Prometheus,
    /// What labctl sent, by (method, route, status).
    pub sent: BTreeMap<Key, u64>,
    /// The span metrics' and the app metric's counts once they stopped moving.
    pub settled: Settled,
    /// The evaluation point of the numeric checks: the connector's last flush.
    pub at: f64,
    /// A range long enough to hold every sample since the stack started (`123s`).
    pub window: String,
    /// Since `started`: stack and app up, traffic done, counts settled.
    pub up: Duration,
    pub traffic_done: Duration,
    pub settled_after: Duration,
}

impl Run {
    pub async fn start() -> Run {
        let started = Instant::now();
        let root = lab_tests::workspace_root();
        let labctl = binaries::fresh_binary("labctl", &["labctl/src"]);
        lab_tests::app::use_binary(
            binaries::fresh_binary("todo-api", &["app/src", "app/migrations"])
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
        let mut env = vec![
            ("OTEL_SERVICE_NAME", SERVICE),
            (
                lab::RESOURCE_ATTRIBUTES,
                lab::value(lab::RESOURCE_ATTRIBUTES),
            ),
        ];
        env.extend(lab_tests::app::otlp_env(lab::value(lab::OTLP_PROTOCOL), &stack.collector_http_url));
        env.extend([
            ("LAB_FAULT_ERROR_RATE", FAULT_ERROR_RATE),
            ("LAB_FAULT_LATENCY_MS", &fault_latency),
            ("LAB_FAULT_ROUTES", FAULT_ROUTE),
        ]);
        let app = TestApp::spawn_with(&env).await;
        let up = started.elapsed();

        // ---- traffic ----------------------------------------------------------------------
        let summary = send_traffic(&labctl, &app, &stack).await;
        let totals = summary.totals();
        // SIGTERM: the service flushes its last spans, logs and metric points before it exits.
        let exit = app.shutdown();
        assert!(exit.success(), "todo-api exited with {exit}");
        let traffic_done = started.elapsed();

        // ---- Prometheus: wait until every request is counted --------------------------------
        let prometheus = Prometheus::new(labctl::http::client(), &stack.prometheus_url);
        let sent = summary.count_by_key();
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

        let at = scalar(
            &prometheus,
            &format!(
                r#"max(timestamp(traces_span_metrics_calls_total{{service_name="{SERVICE}"}}))"#
            ),
            now(),
        )
        .await
        .unwrap_or_else(|_| now());
        let window = format!("{}s", (at - stack_started).ceil() as u64 + 60);
        Run {
            started,
            labctl,
            connector,
            dashboards,
            stack,
            summary,
            totals,
            prometheus,
            sent,
            settled,
            at,
            window,
            up,
            traffic_done,
            settled_after,
        }
    }
}

/// `labctl traffic` with the test's seed and rate; its `--json` summary, with the
/// preconditions of every check asserted: each request answered, 4xx and 5xx in the mix,
/// no planned status changed except by the fault switch.
async fn send_traffic(labctl: &PathBuf, app: &TestApp, stack: &NativeStack) -> Summary {
    let summary_path = stack.dir.join("traffic.json");
    let traffic = tokio::time::timeout(
        SETTLE_TIMEOUT,
        tokio::process::Command::new(labctl)
            .args(binaries::labctl_traffic_args(
                &app.address,
                SEED,
                REQUESTS,
                RATE,
            ))
            .args(["--concurrency", CONCURRENCY])
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
    summary
}
