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
//! The test runs the stack and the traffic once ([`run::Run`]) and then a list of named
//! checks, each in the module of what it looks at: the Prometheus series
//! ([`metrics`]), the dashboards ([`dashboards`]), the exported traces and logs
//! ([`traces_and_logs`]) and `labctl verify` ([`labctl_verify`]). A failed check does not
//! stop the others: every finding is reported at the end, with the table of compared
//! numbers ([`report`]).
//!
//! Needs the `todo-api` and `labctl` binaries built (`cargo test --workspace` builds them;
//! with `-p lab-tests`, run `cargo build -p todo-api -p labctl` first). Run with
//! `-- --nocapture` to see the table of compared numbers.

mod dashboards;
mod findings;
mod inputs;
mod labctl_verify;
mod metrics;
mod prometheus;
mod report;
mod run;
mod sink;
mod traces_and_logs;

use std::time::Duration;

use labctl::plan::ROUTE_TODO;

use crate::findings::Findings;
use crate::report::Record;
use crate::run::Run;

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
    let run = Run::start().await;
    let mut findings = Findings::default();

    metrics::prometheus_counts_every_request_sent(&run, &mut findings);
    let kinds = metrics::only_server_spans_are_counted(&run, &mut findings).await;
    metrics::resource_attributes_become_labels(&run, &mut findings).await;
    metrics::the_app_metric_has_every_route_sent(&run, &mut findings).await;
    metrics::span_histogram_buckets_are_the_configured_ms(&run, &mut findings).await;

    let panels = dashboards::every_panel_query_has_data(&run, &mut findings).await;
    let shares =
        dashboards::error_share_panels_show_the_shares_sent(&run, &panels, &mut findings).await;
    dashboards::client_errors_are_not_counted_as_errors(&run, &shares, &mut findings);

    let by_status = metrics::only_5xx_server_spans_have_error_status(&run, &mut findings).await;
    let latency = metrics::the_injected_delay_shows_on_its_route_only(&run, &mut findings).await;

    let sink = sink::wait_for_sink(&run.stack.sink_file, &run.summary).await;
    let server_spans =
        traces_and_logs::server_spans_match_what_was_sent(&run, &sink, &mut findings);
    traces_and_logs::database_calls_have_a_client_span(&sink, &mut findings);
    traces_and_logs::log_records_name_exported_spans(&sink, &mut findings);
    traces_and_logs::fault_and_create_logs_sit_in_their_request(&run, &sink, &mut findings);
    traces_and_logs::every_resource_names_the_service(&sink, &mut findings);
    traces_and_logs::sql_text_holds_no_literal_values(&sink, &mut findings);
    let checks_done = run.started.elapsed();

    let verify_outputs =
        labctl_verify::native_mode_passes_and_skips_tempo_and_loki(&run, &mut findings).await;

    report::print(&Record {
        run: &run,
        kinds,
        shares,
        by_status,
        latency,
        panel_rows: panels.rows,
        verify_outputs,
        server_spans,
        checks_done,
    });
    findings.assert_none(&run.stack);
}
