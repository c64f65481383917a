//! Lab 7 natively: `labctl traffic` as the traced client `todo-client`, through the real
//! lab collector (`stack/collector/config.yaml`) into the sink and Prometheus.
//!
//! labctl traffic --traceparent, baggage--> todo-api --SQL--> Postgres
//!       \                                    \
//!        `--OTLP--> lab collector <--OTLP----'   --> sink file (spans), Prometheus (span metrics)
//!
//! The checks, each against the numbers labctl printed:
//! - every todo-api SERVER span has a todo-client CLIENT span as parent, in the same trace;
//! - the client spans follow the HTTP client conventions;
//! - `lab.run.id` from baggage is on every todo-api span, and the extra baggage entry the
//!   API does not trust is on none;
//! - the service graph Tempo's generator would draw (computed from these spans by
//!   `lab_tests::tempo_service_graph`, remote-written like Tempo does) answers
//!   `labctl check 7`'s queries with labctl's counts per edge;
//! - the dashboard's client-observed vs server latency panel reads both sides;
//! - the trace ids the summary prints are traces with both services;
//! - with propagation off on the client (`OTEL_PROPAGATORS=none`) the same checks fail:
//!   two roots per request, no client -> API edge;
//! - `labctl verify` and `labctl check` send no telemetry, where `traffic` does.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lab_tests::{
    app::TestApp,
    binaries,
    native::NativeStack,
    otlp::OtlpReceiver,
    sink_spans::{self, KIND_CLIENT, KIND_SERVER, STATUS_ERROR, SinkSpan},
    tempo_service_graph::{self, EdgeKey},
};
use labctl::dashboard::{self, DEFAULT_SCRAPE_INTERVAL};
use labctl::prom::Prometheus;
use labctl::propagation::{self as checkpoint, DATABASE};
use labctl::summary::Summary;
use labctl::telemetry::{RUN_ID_KEY, SERVICE_NAME as CLIENT};

const API: &str = "todo-api";
const SEED: u64 = 7;
/// Long enough for several span-metrics flushes (5 s) during the run.
const REQUESTS: u64 = 150;
const RATE: &str = "12";
const BROKEN_REQUESTS: u64 = 30;
const FAULT_ROUTE: &str = "/api/v1/todos/{todo_id}";
/// Baggage the client sends but the API's allow-list (`lab.run.id`) does not name.
const UNTRUSTED: (&str, &str) = ("lab.untrusted", "must-not-reach-a-span");
const LATENCY_PANEL: &str = "Client-observed vs server latency (mean)";
const SETTLE: Duration = Duration::from_secs(90);

fn labctl() -> std::path::PathBuf {
    binaries::fresh_binary("labctl", &["labctl/src", "stack/lab.env"])
}

/// `labctl` with `args` and `env`, run to its end.
async fn run_labctl(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(labctl())
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("labctl runs")
}

fn use_fresh_api() {
    let api = binaries::fresh_binary("todo-api", &["app/src", "app/migrations"]);
    lab_tests::app::use_binary(api.to_str().expect("a UTF-8 path"));
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs `labctl traffic` against `app`, tracing to `endpoint` with `env`; returns its
/// summary and stdout.
async fn traffic(
    app: &TestApp,
    endpoint: &str,
    requests: u64,
    env: &[(&str, &str)],
    dir: &Path,
) -> (Summary, String) {
    let json = dir.join(format!("traffic-{}.json", uuid::Uuid::new_v4().simple()));
    let output = tokio::time::timeout(
        SETTLE,
        tokio::process::Command::new(labctl())
            .args(binaries::labctl_traffic_args(
                &app.address,
                SEED,
                requests,
                RATE,
            ))
            .args(["--concurrency", "4"])
            .args(["--baggage", &format!("{}={}", UNTRUSTED.0, UNTRUSTED.1)])
            .arg("--json")
            .arg(&json)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("labctl traffic finishes")
    .expect("labctl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "labctl traffic failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("--json parses");
    (summary, stdout)
}

async fn start_api(stack: &NativeStack) -> TestApp {
    TestApp::spawn_with(&[
        ("OTEL_SERVICE_NAME", API),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &stack.collector_http_url),
        ("LAB_FAULT_ERROR_RATE", "0.2"),
        ("LAB_FAULT_ROUTES", FAULT_ROUTE),
    ])
    .await
}

/// The spans that started at or after `since` (unix seconds), once the sink holds
/// `clients` todo-client spans and `servers` todo-api SERVER spans among them.
async fn spans_since(stack: &NativeStack, since: f64, clients: u64, servers: u64) -> Vec<SinkSpan> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let spans: Vec<SinkSpan> = sink_spans::read(&stack.sink_file)
            .into_iter()
            .filter(|s| s.start_unix_nano as f64 / 1e9 >= since)
            .collect();
        let count = |service: &str, kind: i64| {
            spans
                .iter()
                .filter(|s| s.service == service && s.kind == kind)
                .count() as u64
        };
        if (count(CLIENT, KIND_CLIENT) >= clients && count(API, KIND_SERVER) >= servers)
            || tokio::time::Instant::now() >= deadline
        {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The API SERVER spans whose parent is not a todo-client CLIENT span of the same trace:
/// what `labctl check 7`'s TraceQL `{client} > {server}` would not find.
fn orphans(spans: &[SinkSpan]) -> Vec<&SinkSpan> {
    let clients: BTreeSet<(&str, &str)> = spans
        .iter()
        .filter(|s| s.service == CLIENT && s.kind == KIND_CLIENT)
        .map(|s| (s.trace_id.as_str(), s.span_id.as_str()))
        .collect();
    spans
        .iter()
        .filter(|s| s.service == API && s.kind == KIND_SERVER)
        .filter(|s| !clients.contains(&(s.trace_id.as_str(), s.parent_span_id.as_str())))
        .collect()
}

fn key(client: &str, server: &str, connection_type: &str) -> EdgeKey {
    EdgeKey {
        client: client.into(),
        server: server.into(),
        connection_type: connection_type.into(),
    }
}

async fn scalar(prometheus: &Prometheus, expr: &str, at: f64) -> f64 {
    match prometheus.instant(expr, at).await {
        Ok(data) => data.values().first().copied().unwrap_or(f64::NAN),
        Err(error) => panic!("{expr}: {error}"),
    }
}

fn close(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= relative * expected.abs().max(1e-12)
}

#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, passed: bool, message: String) {
        if !passed {
            self.0.push(message);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_crosses_client_api_and_database() {
    use_fresh_api();
    let stack = NativeStack::start(&[])
        .await
        .unwrap_or_else(|e| panic!("native stack: {e:#}"));
    let mut findings = Findings::default();

    // ---- the traced run ----------------------------------------------------------------
    let started = now();
    let app = start_api(&stack).await;
    let (summary, stdout) =
        traffic(&app, &stack.collector_http_url, REQUESTS, &[], &stack.dir).await;
    assert!(app.shutdown().success(), "todo-api exits cleanly");
    let totals = summary.totals();
    let run_id = summary.run_id.clone().expect("a traced run has a run id");
    assert_eq!(totals.transport_errors, 0, "{:?}", summary.transport_errors);
    assert!(totals.status_4xx > 0 && totals.status_5xx > 0, "{totals:?}");
    let spans = spans_since(&stack, started, totals.requests, totals.responses).await;
    let broken_from = now();

    let clients: Vec<&SinkSpan> = spans
        .iter()
        .filter(|s| s.service == CLIENT && s.kind == KIND_CLIENT)
        .collect();
    let servers: Vec<&SinkSpan> = spans
        .iter()
        .filter(|s| s.service == API && s.kind == KIND_SERVER)
        .collect();
    let api_spans: Vec<&SinkSpan> = spans.iter().filter(|s| s.service == API).collect();
    let db_spans: Vec<&SinkSpan> = api_spans
        .iter()
        .copied()
        .filter(|s| s.kind == KIND_CLIENT)
        .collect();
    findings.check(
        clients.len() as u64 == totals.requests && servers.len() as u64 == totals.responses,
        format!(
            "labctl sent {} requests, {} answered; the sink has {} todo-client CLIENT and {} todo-api SERVER spans",
            totals.requests,
            totals.responses,
            clients.len(),
            servers.len()
        ),
    );

    // ---- every API server span is the child of a client span -----------------------------
    let orphaned = orphans(&spans);
    findings.check(
        orphaned.is_empty(),
        format!(
            "{} of {} todo-api SERVER spans have no todo-client CLIENT parent, e.g. {:?}",
            orphaned.len(),
            servers.len(),
            orphaned.first().map(|s| (&s.trace_id, &s.name))
        ),
    );
    let roots: Vec<&SinkSpan> = spans.iter().filter(|s| s.is_root()).collect();
    findings.check(
        roots.len() == clients.len() && roots.iter().all(|s| s.service == CLIENT),
        format!(
            "one root per request, the client's: {} roots ({} of todo-client) for {} requests",
            roots.len(),
            roots.iter().filter(|s| s.service == CLIENT).count(),
            clients.len()
        ),
    );

    // ---- the client spans follow the HTTP client conventions ------------------------------
    for span in &clients {
        let method = span.text("http.request.method").unwrap_or_default();
        let status = span
            .attribute("http.response.status_code")
            .and_then(|v| v.as_i64());
        let full = span.text("url.full").unwrap_or_default();
        let mut wrong = Vec::new();
        if span.name != method || method.is_empty() {
            wrong.push(format!("name {:?} vs method {method:?}", span.name));
        }
        if span.text("server.address") != Some("127.0.0.1")
            || span.attribute("server.port").is_none()
        {
            wrong.push("server.address/server.port".to_owned());
        }
        if !full.starts_with("http://127.0.0.1:") || full.contains('@') {
            wrong.push(format!("url.full {full:?}"));
        }
        if span.text("url.template").is_none() {
            wrong.push("no url.template".to_owned());
        }
        match status {
            Some(code) if code >= 400 => {
                if span.text("error.type") != Some(code.to_string().as_str())
                    || span.status_code != STATUS_ERROR
                {
                    wrong.push(format!("{code}: error.type and status Error expected"));
                }
            }
            Some(_) => {
                if span.attribute("error.type").is_some() || span.status_code == STATUS_ERROR {
                    wrong.push("a success marked as an error".to_owned());
                }
            }
            None => wrong.push("no http.response.status_code".to_owned()),
        }
        if !wrong.is_empty() {
            findings.0.push(format!(
                "client span {}: {}",
                span.span_id,
                wrong.join(", ")
            ));
            break;
        }
    }

    // ---- baggage: the allow-listed entry only ----------------------------------------------
    let with_run_id = api_spans
        .iter()
        .filter(|s| s.text(RUN_ID_KEY) == Some(run_id.as_str()))
        .count();
    findings.check(
        with_run_id == api_spans.len(),
        format!(
            "{with_run_id} of {} todo-api spans (server and database) carry {RUN_ID_KEY}={run_id}",
            api_spans.len()
        ),
    );
    let leaked: Vec<&SinkSpan> = spans
        .iter()
        .filter(|s| {
            s.attribute(UNTRUSTED.0).is_some()
                || s.attributes
                    .values()
                    .any(|v| v.as_str() == Some(UNTRUSTED.1))
        })
        .collect();
    findings.check(
        leaked.is_empty(),
        format!(
            "baggage outside the allow-list reached {} spans, e.g. {:?}",
            leaked.len(),
            leaked.first().map(|s| (&s.service, &s.name))
        ),
    );

    // ---- the trace ids the summary prints --------------------------------------------------
    let traces_with_api: BTreeSet<&str> = servers.iter().map(|s| s.trace_id.as_str()).collect();
    let printed: Vec<&str> = summary
        .server_error_traces
        .iter()
        .chain(&summary.slowest_traces)
        .map(|t| t.trace_id.as_str())
        .collect();
    findings.check(
        !summary.server_error_traces.is_empty()
            && printed.iter().all(|id| traces_with_api.contains(id) && stdout.contains(id))
            && stdout.contains("Open one in Tempo"),
        format!("the summary's trace ids {printed:?} must be printed and be traces with a todo-api span:\n{stdout}"),
    );

    // ---- the service graph, as Tempo's generator would count it ----------------------------
    let graph = tempo_service_graph::edges(&spans);
    let client_edge = key(CLIENT, API, "");
    let db_edge = key(API, DATABASE, "database");
    let edge_keys: Vec<&EdgeKey> = graph.keys().collect();
    findings.check(
        edge_keys == [&db_edge, &client_edge],
        format!("the graph must be todo-client -> todo-api -> postgresql, it is {edge_keys:?}"),
    );
    let failed_sent = totals.status_4xx + totals.status_5xx;
    let db_failed = db_spans
        .iter()
        .filter(|s| s.status_code == STATUS_ERROR)
        .count() as u64;
    let end_ms = (now() as i64) * 1000;
    let start_ms = end_ms - 120_000;
    tempo_service_graph::remote_write(&stack.prometheus_url, &graph, start_ms, end_ms)
        .await
        .expect("remote write into Prometheus");
    let prometheus = Prometheus::new(labctl::http::client(), &stack.prometheus_url);
    let at = end_ms as f64 / 1000.0;
    let window = "5m";
    let [first, second] = checkpoint::edges(API);
    let mut edge_rows = Vec::new();
    for (edge, requests, failed, server_spans) in [
        (first, totals.responses, failed_sent, &servers),
        (second, db_spans.len() as u64, db_failed, &db_spans),
    ] {
        let counted = scalar(&prometheus, &edge.requests(window), at).await;
        let failures = scalar(&prometheus, &edge.failed(window), at).await;
        let mean = scalar(&prometheus, &edge.mean_server_seconds(window), at).await;
        let expected_mean =
            server_spans.iter().map(|s| s.seconds()).sum::<f64>() / server_spans.len() as f64;
        edge_rows.push(format!(
            "{} -> {}: requests {counted} (expected {requests}), failed {failures} (expected {failed}), mean {:.3} ms (spans {:.3} ms)",
            edge.client,
            edge.server,
            mean * 1000.0,
            expected_mean * 1000.0
        ));
        findings.check(
            counted == requests as f64
                && failures == failed as f64
                && close(mean, expected_mean, 1e-9),
            edge_rows.last().unwrap().clone(),
        );
    }

    // ---- the dashboard's client-observed vs server latency ---------------------------------
    let text = std::fs::read_to_string(
        lab_tests::workspace_root().join("dashboards/todo-api-overview.json"),
    )
    .unwrap();
    let parsed = dashboard::parse(&text).expect("the dashboard parses");
    let bindings = parsed.saved_bindings(
        DEFAULT_SCRAPE_INTERVAL,
        &[("service", vec![API.to_owned()]), ("route", Vec::new())],
    );
    let expressions = parsed
        .prometheus_expressions(&bindings)
        .expect("substituted");
    let panel = expressions
        .iter()
        .find(|e| e.label.starts_with(&format!("{LATENCY_PANEL} [")))
        .unwrap_or_else(|| panic!("no panel titled {LATENCY_PANEL:?}"));
    let client_count = format!(
        r#"sum(traces_span_metrics_duration_milliseconds_count{{service_name="{CLIENT}", span_kind="SPAN_KIND_CLIENT"}})"#
    );
    // Wait until the connector has counted every client span.
    let deadline = tokio::time::Instant::now() + SETTLE;
    while short_of(
        scalar(&prometheus, &client_count, now()).await,
        clients.len() as f64,
    ) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let flushed = scalar(
        &prometheus,
        &format!(r#"max(timestamp(traces_span_metrics_duration_milliseconds_count{{service_name="{CLIENT}"}}))"#),
        now(),
    )
    .await;
    let run_window = format!("{}s", (flushed - started).ceil() as u64 + 30);
    let mean_ms = |side: &[&SinkSpan]| {
        side.iter().map(|s| s.seconds() * 1000.0).sum::<f64>() / side.len() as f64
    };
    let (client_mean, server_mean) = (mean_ms(&clients), mean_ms(&servers));
    let by_side = |data: labctl::prom::QueryData| -> BTreeMap<String, f64> {
        let labels: Vec<String> = data
            .label_sets()
            .into_iter()
            .map(|l| l.get("side").cloned().unwrap_or_default())
            .collect();
        labels.into_iter().zip(data.values()).collect()
    };
    // Totals: the panel's selectors, every span counted once.
    let totals_expr = panel
        .expr
        .replace("rate(", "last_over_time(")
        .replace("[1m]", &format!("[{run_window}]"));
    let exact = by_side(
        prometheus
            .instant(&totals_expr, flushed)
            .await
            .expect("totals query"),
    );
    // As the panel computes it: rates over the run.
    let rated = by_side(
        prometheus
            .instant(
                &panel.expr.replace("[1m]", &format!("[{run_window}]")),
                flushed,
            )
            .await
            .expect("panel query"),
    );
    let client_side = "client-observed (todo-client)";
    let latency_row = format!(
        "client-observed mean {client_mean:.3} ms, server {server_mean:.3} ms (spans); panel totals {exact:?}, panel over the run {rated:?}"
    );
    findings.check(
        exact
            .get(client_side)
            .is_some_and(|v| close(*v, client_mean, 1e-6))
            && exact
                .get("server")
                .is_some_and(|v| close(*v, server_mean, 1e-6))
            && client_mean > server_mean
            && rated
                .get(client_side)
                .is_some_and(|v| close(*v, client_mean, 0.25))
            && rated
                .get("server")
                .is_some_and(|v| close(*v, server_mean, 0.25)),
        latency_row.clone(),
    );

    // ---- broken propagation: the same checks fail ------------------------------------------
    let app = start_api(&stack).await;
    let (broken, _) = traffic(
        &app,
        &stack.collector_http_url,
        BROKEN_REQUESTS,
        &[("OTEL_PROPAGATORS", "none")],
        &stack.dir,
    )
    .await;
    assert!(app.shutdown().success());
    let broken_totals = broken.totals();
    let broken_spans = spans_since(
        &stack,
        broken_from,
        broken_totals.requests,
        broken_totals.responses,
    )
    .await;
    let broken_servers = broken_spans
        .iter()
        .filter(|s| s.service == API && s.kind == KIND_SERVER)
        .count();
    let broken_clients = broken_spans
        .iter()
        .filter(|s| s.service == CLIENT && s.kind == KIND_CLIENT)
        .count();
    let broken_roots = broken_spans.iter().filter(|s| s.is_root()).count();
    let client_traces: BTreeSet<&str> = broken_spans
        .iter()
        .filter(|s| s.service == CLIENT)
        .map(|s| s.trace_id.as_str())
        .collect();
    let shared_traces = broken_spans
        .iter()
        .filter(|s| s.service == API && client_traces.contains(s.trace_id.as_str()))
        .count();
    let broken_graph = tempo_service_graph::edges(&broken_spans);
    let broken_row = format!(
        "OTEL_PROPAGATORS=none: {} requests, {broken_clients} client spans, {broken_servers} API server spans, \
         {broken_roots} roots, {} orphaned API spans, {shared_traces} API spans in a client's trace, graph {:?}",
        broken_totals.requests,
        orphans(&broken_spans).len(),
        broken_graph
            .iter()
            .map(|(k, v)| (
                format!("{} -> {} ({})", k.client, k.server, k.connection_type),
                v.requests
            ))
            .collect::<Vec<_>>()
    );
    findings.check(
        broken_servers as u64 == broken_totals.responses
            && orphans(&broken_spans).len() == broken_servers
            && broken_roots == broken_clients + broken_servers
            && shared_traces == 0
            && !broken_graph.contains_key(&client_edge)
            && broken_graph
                .get(&key("user", API, "virtual_node"))
                .map(|e| e.requests)
                == Some(broken_totals.responses)
            && broken_spans
                .iter()
                .all(|s| s.attribute(RUN_ID_KEY).is_none() || s.service == CLIENT),
        broken_row.clone(),
    );

    eprintln!(
        "propagation: run {run_id}: {} requests ({} 4xx, {} 5xx), {} client spans, {} API server spans, {} DB spans, {} roots\n  {}\n  {}\n  {latency_row}\n  {broken_row}",
        totals.requests,
        totals.status_4xx,
        totals.status_5xx,
        clients.len(),
        servers.len(),
        db_spans.len(),
        roots.len(),
        edge_rows[0],
        edge_rows[1],
    );
    assert!(
        findings.0.is_empty(),
        "{}\n{}",
        findings.0.join("\n"),
        stack.log_tails(20)
    );
}

/// Not there yet: no answer (NaN) or fewer than `limit`.
fn short_of(value: f64, limit: f64) -> bool {
    value.is_nan() || value < limit
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_and_check_send_no_telemetry() {
    use_fresh_api();
    let receiver = OtlpReceiver::start().await;
    let app = TestApp::spawn().await;
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            receiver.http_endpoint.as_str(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ];
    // A Prometheus that is not there: the checks fail fast, which is not the point here.
    let nowhere = format!(
        "http://127.0.0.1:{}",
        lab_tests::postgres::free_port().unwrap()
    );
    for args in [
        vec![
            "verify",
            "--native",
            "--quiet",
            "--timeout",
            "2s",
            "--prometheus-url",
            &nowhere,
        ],
        vec![
            "check",
            "1",
            "--quiet",
            "--timeout",
            "2s",
            "--base-url",
            &app.address,
        ],
        vec![
            "check",
            "7",
            "--quiet",
            "--timeout",
            "2s",
            "--native",
            "--base-url",
            &app.address,
            "--prometheus-url",
            &nowhere,
        ],
    ] {
        let output = run_labctl(&args, &env).await;
        assert!(
            output.status.code().is_some(),
            "labctl {args:?} ended by a signal"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.request_count(),
        0,
        "labctl verify/check exported telemetry: {:?}",
        receiver
            .spans()
            .iter()
            .map(|s| s.span.name.clone())
            .collect::<Vec<_>>()
    );
    // The control: with the same environment, traffic does export.
    let output = run_labctl(
        &[
            "traffic",
            "--quiet",
            "--requests",
            "3",
            "--rate",
            "50",
            "--base-url",
            &app.address,
        ],
        &env,
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let spans = receiver
        .wait_for(
            "labctl traffic's client spans",
            Duration::from_secs(10),
            |r| {
                let spans = r.spans();
                (spans.len() >= 3).then_some(spans)
            },
        )
        .await;
    assert!(
        spans
            .iter()
            .all(|s| s.resource.get("service.name") == Some(&CLIENT.into())),
        "the client spans are todo-client's"
    );
}
