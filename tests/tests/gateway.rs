//! Lab 6 natively: the app exports to the agent (`stack/collector/agent.yaml`), which
//! computes the span metrics and load-balances by trace id over two gateways
//! (`stack/collector/gateway.yaml`: TLS, bearer token, tail sampling). A seeded
//! `labctl traffic` run with the fault switch on, then the numbers:
//!
//! - every kept trace is whole and on exactly one gateway;
//! - every trace with an error is kept, every trace slower than the threshold is kept;
//! - the other traces are kept at the configured share, within 4 binomial sigmas;
//! - the span-metrics request counts equal what labctl sent, per method, route, status;
//! - pipeline health: 2 load-balancer backends, nothing refused or failed, and the
//!   tail-sampling counters agree with the traces in the sinks.
//!
//! ```text
//! labctl traffic --> todo-api --OTLP/HTTP--> agent --span metrics--> gateway (by series) --> Prometheus
//!                                                  --traces by trace id, TLS + token--> gateway 1 --> sink 1
//!                                                                                   --> gateway 2 --> sink 2
//! ```
//!
//! Needs `cargo build -p todo-api -p labctl` (or `cargo test --workspace`). Run with
//! `-- --nocapture` for the figures.

mod gateway_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gateway_support::{Key, Sampling, eventually, value};
use lab_tests::app::TestApp;
use lab_tests::gateway::{GatewayStack, Options, SERVER_KIND, STATUS_ERROR, SinkSpan};
use labctl::lab;
use labctl::plan::ROUTE_TODO;
use labctl::prom::Prometheus;

const SEED: u64 = 6;
const REQUESTS: u64 = 400;
const RATE: u32 = 40;
/// The fault switch on one route: 20 % errors, and every request there slower than the
/// gateways' latency threshold (100 ms), so that route is kept whole.
const FAULT_ERROR_RATE: &str = "0.2";
const FAULT_LATENCY_MS: &str = "150";
/// How far the kept share of the remaining traces may stray: 4 binomial standard
/// deviations (a false alarm about once in 16 000 runs).
const SIGMAS: f64 = 4.0;
const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn gateways_sample_whole_traces_and_red_stays_exact() {
    let started = Instant::now();
    let sampling = Sampling::read();
    lab_tests::app::use_binary(gateway_support::binary("todo-api").to_str().unwrap());
    let stack = GatewayStack::start(Options::default())
        .await
        .unwrap_or_else(|e| panic!("gateway stack: {e:#}"));
    let mut env = vec![
        ("OTEL_SERVICE_NAME", "todo-api"),
        (
            lab::RESOURCE_ATTRIBUTES,
            lab::value(lab::RESOURCE_ATTRIBUTES),
        ),
    ];
    env.extend(lab_tests::app::otlp_env(lab::value(lab::OTLP_PROTOCOL), &stack.agent_http_url));
    env.extend([
        ("LAB_FAULT_ERROR_RATE", FAULT_ERROR_RATE),
        ("LAB_FAULT_LATENCY_MS", FAULT_LATENCY_MS),
        ("LAB_FAULT_ROUTES", ROUTE_TODO),
    ]);
    let app = TestApp::spawn_with(&env).await;
    let up = started.elapsed();

    let summary = gateway_support::traffic(&app.address, &stack.dir, SEED, REQUESTS, RATE).await;
    let totals = summary.totals();
    assert_eq!(totals.transport_errors, 0, "{:?}", summary.transport_errors);
    assert!(
        totals.status_5xx > 0,
        "the fault switch produced no 5xx: {totals:?}"
    );
    let exit = app.shutdown();
    assert!(exit.success(), "todo-api exited with {exit}");
    let sent = summary.count_by_key();
    let traffic_done = started.elapsed();

    let prometheus = Prometheus::new(labctl::http::client(), &stack.prometheus_url);

    // ---- RED: the span metrics count every request, sampled or not ---------------------
    let span_counts = eventually(SETTLE, || async {
        let counts = gateway_support::counts(&prometheus, gateway_support::SPAN_COUNTS).await;
        if counts == sent {
            Ok(counts)
        } else {
            Err(format!("span metrics {counts:?}\n sent {sent:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "span-metrics counts differ from what labctl sent: {e}\n{}",
            stack.log_tails(15)
        )
    });

    // ---- the gateways decided on every trace -------------------------------------------
    let decided = r#"sum(otelcol_processor_tail_sampling_global_count_traces_sampled_total{job=~"lab-gateway-.*"})"#;
    let kept_expr = r#"sum(otelcol_processor_tail_sampling_global_count_traces_sampled_total{job=~"lab-gateway-.*", sampled="true"})"#;
    let (per_gateway, traces) = eventually(SETTLE, || async {
        let decisions = value(&prometheus, decided).await;
        let kept = value(&prometheus, kept_expr).await;
        let per_gateway: Vec<Vec<SinkSpan>> = stack.gateways.iter().map(|g| g.spans()).collect();
        let traces = traces_of(&per_gateway);
        let requests_seen = traces.values().filter(|t| t.server.is_some()).count() as u64;
        // Every request's trace decided on, and the sinks hold exactly what was kept.
        if decisions >= totals.responses as f64 && kept as usize == traces.len() {
            Ok((per_gateway, traces))
        } else {
            Err(format!(
                "{decisions} decisions for {} requests; {kept} kept, {} traces ({requests_seen} requests) in the sinks",
                totals.responses,
                traces.len()
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the gateways did not settle: {e}\n{}", stack.log_tails(15)));
    let settled = started.elapsed();

    // ---- every trace whole, on exactly one gateway -------------------------------------
    let ids: Vec<BTreeSet<&str>> = per_gateway
        .iter()
        .map(|spans| spans.iter().map(|s| s.trace_id.as_str()).collect())
        .collect();
    let split: Vec<&&str> = ids[0].intersection(&ids[1]).collect();
    assert!(
        split.is_empty(),
        "traces split across both gateways: {split:?}"
    );
    assert!(
        !ids[0].is_empty() && !ids[1].is_empty(),
        "both gateways kept traces: {} and {}",
        ids[0].len(),
        ids[1].len()
    );
    for (id, trace) in &traces {
        let spans: BTreeSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
        let orphans: Vec<&SinkSpan> = trace
            .spans
            .iter()
            .filter(|s| !s.parent_span_id.is_empty() && !spans.contains(s.parent_span_id.as_str()))
            .collect();
        assert!(
            orphans.is_empty(),
            "trace {id} is not whole: parents missing for {orphans:?}"
        );
    }

    // ---- what was kept, against what was sent ------------------------------------------
    let requests: Vec<&Trace> = traces.values().filter(|t| t.server.is_some()).collect();
    let kept_by_key = |filter: &dyn Fn(&Key) -> bool| -> u64 {
        requests.iter().filter(|t| filter(&t.key())).count() as u64
    };
    let sent_where = |filter: &dyn Fn(&Key) -> bool| -> u64 {
        sent.iter().filter(|(k, _)| filter(k)).map(|(_, n)| n).sum()
    };
    let is_error = |k: &Key| k.2 >= 500;
    let on_fault_route = |k: &Key| k.1 == ROUTE_TODO;
    let errors_sent = sent_where(&is_error);
    let errors_kept = kept_by_key(&is_error);
    let error_traces_marked = requests.iter().filter(|t| t.has_error()).count() as u64;
    let slow_sent = sent_where(&on_fault_route);
    let slow_kept = kept_by_key(&on_fault_route);
    // The rest: every OK request off the fault route. Those slower than the threshold
    // are kept by rule, so the ones the share applies to are the rest minus those.
    let rest = |k: &Key| !is_error(k) && !on_fault_route(k);
    let rest_sent = sent_where(&rest);
    let rest_kept: Vec<&&Trace> = requests.iter().filter(|t| rest(&t.key())).collect();
    let rest_slow = rest_kept
        .iter()
        .filter(|t| t.duration_ms() > sampling.slow_threshold_ms)
        .count() as u64;
    let fast_sent = rest_sent - rest_slow;
    let fast_kept = rest_kept.len() as u64 - rest_slow;
    let expected = fast_sent as f64 * sampling.share;
    let sigma = (fast_sent as f64 * sampling.share * (1.0 - sampling.share)).sqrt();
    let bound = SIGMAS * sigma;

    // ---- pipeline health ---------------------------------------------------------------
    let health = Health::read(&prometheus).await;
    let empty_panels = dashboard_queries_without_data(&prometheus).await;

    eprintln!(
        "lab 6, seed {SEED}: {} requests, {} traces kept ({} on gateway 1, {} on gateway 2), split 0\n\
         errors: {errors_sent} sent, {errors_kept} kept ({error_traces_marked} traces with an ERROR span)\n\
         slow route {ROUTE_TODO}: {slow_sent} sent, {slow_kept} kept\n\
         the rest: {rest_sent} sent, {} kept; {rest_slow} over {} ms; share applied to {fast_sent}: \
         {fast_kept} kept = {:.3} (configured {:.2}; expected {expected:.1} +- {bound:.1})\n\
         span metrics = labctl on all {} keys\n{health}\n\
         time: stack + app up {:.1}s, traffic {:.1}s, settled {:.1}s",
        totals.responses,
        traces.len(),
        ids[0].len(),
        ids[1].len(),
        rest_kept.len(),
        sampling.slow_threshold_ms,
        fast_kept as f64 / fast_sent as f64,
        sampling.share,
        span_counts.len(),
        up.as_secs_f64(),
        (traffic_done - up).as_secs_f64(),
        (settled - traffic_done).as_secs_f64(),
    );

    assert!(
        empty_panels.is_empty(),
        "Collector pipeline panels without data:\n{}",
        empty_panels.join("\n")
    );
    assert_eq!(
        errors_kept, errors_sent,
        "every trace with an error is kept"
    );
    assert_eq!(
        slow_kept, slow_sent,
        "every request on the slow route is kept"
    );
    assert!(
        (fast_kept as f64 - expected).abs() <= bound,
        "{fast_kept} of {fast_sent} fast OK traces kept; {:.0} % would be {expected:.1} +- {bound:.1}",
        sampling.share * 100.0
    );
    assert_eq!(health.backends, 2.0, "the agent balances over 2 gateways");
    assert_eq!(health.refused, 0.0, "no gateway refused anything");
    assert_eq!(health.send_failed, 0.0, "no exporter failed to send");
    assert_eq!(
        health.errors_policy_sampled, errors_sent as f64,
        "the errors policy matched exactly the error traces"
    );
    assert_eq!(
        health.accepted_at_gateways, health.sent_by_agent,
        "the gateways accepted every span the agent's load balancer sent"
    );
}

/// Every query of dashboards/lab-6/collector-pipeline.json, run now (`$__rate_interval`
/// as 1m): the ones that return no series (failure-only series left out).
async fn dashboard_queries_without_data(prometheus: &Prometheus) -> Vec<String> {
    let path = lab_tests::workspace_root().join("dashboards/lab-6/collector-pipeline.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut empty = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m");
            // An exporter's send_failed counter appears with its first failure: in a
            // healthy run it has no series (gateway_faults.rs sees it).
            if expr.contains("send_failed") && !expr.contains("or vector(0)") {
                continue;
            }
            if gateway_support::series(prometheus, &expr).await.is_empty() {
                empty.push(format!("{} [{}]: {expr}", panel["title"], target["refId"]));
            }
        }
    }
    empty
}

/// The pipeline-health figures the "Collector pipeline" dashboard shows.
struct Health {
    backends: f64,
    refused: f64,
    send_failed: f64,
    errors_policy_sampled: f64,
    sent_by_agent: f64,
    accepted_at_gateways: f64,
}

impl Health {
    async fn read(prometheus: &Prometheus) -> Self {
        // Counters are pushed every second; wait until the agent's sent count and the
        // gateways' accepted count agree, or give up and report them as they are.
        let sent_expr =
            r#"sum(otelcol_exporter_sent_spans_total{job="lab-agent", exporter="load_balancing"})"#;
        let accepted_expr = r#"sum(otelcol_receiver_accepted_spans_total{job=~"lab-gateway-.*"})"#;
        let _ = eventually(Duration::from_secs(15), || async {
            let sent = value(prometheus, sent_expr).await;
            let accepted = value(prometheus, accepted_expr).await;
            if sent > 0.0 && sent == accepted {
                Ok(())
            } else {
                Err(())
            }
        })
        .await;
        Self {
            backends: value(
                prometheus,
                r#"max(otelcol_loadbalancer_num_backends{job="lab-agent"})"#,
            )
            .await,
            refused: value(
                prometheus,
                r#"sum({__name__=~"otelcol_receiver_refused_.*", job=~"lab-.*"})"#,
            )
            .await,
            send_failed: value(
                prometheus,
                r#"sum({__name__=~"otelcol_exporter_send_failed_.*", job=~"lab-.*"})"#,
            )
            .await,
            errors_policy_sampled: value(
                prometheus,
                r#"sum(otelcol_processor_tail_sampling_count_traces_sampled_total{policy="errors", sampled="true"})"#,
            )
            .await,
            sent_by_agent: value(prometheus, sent_expr).await,
            accepted_at_gateways: value(prometheus, accepted_expr).await,
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pipeline health: {} lb backends, refused {}, send failed {}, errors policy sampled {}, \
             spans sent by the agent's load_balancing {} = accepted by the gateways {}",
            self.backends,
            self.refused,
            self.send_failed,
            self.errors_policy_sampled,
            self.sent_by_agent,
            self.accepted_at_gateways
        )
    }
}

/// The spans of one trace, and its server span when it is a request.
struct Trace {
    spans: Vec<SinkSpan>,
    server: Option<SinkSpan>,
}

impl Trace {
    fn key(&self) -> Key {
        let server = self.server.as_ref().expect("a request trace");
        (
            server.text("http.request.method"),
            server.text("http.route"),
            server.status(),
        )
    }

    fn has_error(&self) -> bool {
        self.spans.iter().any(|s| s.status_code == STATUS_ERROR)
    }

    /// First start to last end, in whole milliseconds, as the latency policy measures.
    fn duration_ms(&self) -> u64 {
        let start = self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let end = self.spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
        end.saturating_sub(start) / 1_000_000
    }
}

fn traces_of(per_gateway: &[Vec<SinkSpan>]) -> BTreeMap<String, Trace> {
    let mut traces: BTreeMap<String, Trace> = BTreeMap::new();
    for span in per_gateway.iter().flatten() {
        let trace = traces.entry(span.trace_id.clone()).or_insert(Trace {
            spans: Vec::new(),
            server: None,
        });
        if span.kind == SERVER_KIND && span.service_name == "todo-api" {
            trace.server = Some(span.clone());
        }
        trace.spans.push(span.clone());
    }
    traces
}
