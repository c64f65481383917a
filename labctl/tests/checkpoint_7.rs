//! `labctl check 7` (propagation) against recorded answers served over real HTTP, in the
//! formats of verify_backends.rs and checkpoints.rs: Prometheus instant vectors and
//! Tempo's search API.

// Shared with the other suites; this one needs no status overrides.
#[allow(dead_code)]
mod fixture_server;

use std::time::Duration;

use fixture_server::{FixtureServer, Rule, checkpoint_config as config, on};
use labctl::checks;
use labctl::probe::Outcome;

/// The services of lab 3, all up.
fn lab_3() -> Vec<Rule> {
    vec![
        on("/health", "app/health.json"),
        on("/ready", "app/health.json"),
        on("/api/health", "grafana/health.json"),
        on("/collector/", "collector/health.json"),
        on("/api/v1/query", "prometheus/instant_vector.json")
            .when("query", "traces_service_graph_request_total"),
        on("/api/v1/query", "prometheus/span_metrics_by_route.json")
            .when("query", "traces_span_metrics_calls_total"),
        on("/api/v1/query", "prometheus/app_metrics_by_route.json")
            .when("query", "http_server_request_duration_seconds_count"),
    ]
}

#[tokio::test]
async fn checkpoint_7_passes_when_one_trace_crosses_both_services() {
    let mut rules = lab_3();
    rules.push(on("/api/search", "tempo/search_traceql.json"));
    let server = FixtureServer::start(rules).await;
    let report = checks::run(7, &config(&server.url, Duration::from_secs(5), true))
        .await
        .unwrap();
    assert!(report.passed(), "{}", report.render());
    // Lab 3's six rows, then the client's spans, the joined trace, the baggage and two edges.
    assert_eq!(report.rows.len(), 11, "{}", report.render());
    let seen = server.seen().await;
    let asked = |needle: &str| {
        seen.iter().any(|s| {
            s.param("query")
                .or(s.param("q"))
                .is_some_and(|q| q.contains(needle))
        })
    };
    assert!(asked(
        r#"service_name="todo-client", span_kind="SPAN_KIND_CLIENT""#
    ));
    assert!(asked(
        r#"{resource.service.name="todo-client" && kind=client} > {resource.service.name="todo-api" && kind=server}"#
    ));
    assert!(asked(r#"client="todo-api", server="postgresql""#));
}

#[tokio::test]
async fn split_traces_fail_checkpoint_7_with_the_fix() {
    let mut rules = lab_3();
    // Tempo has the API's traces, but none where the API's span is the client's child.
    rules.push(on("/api/search", "tempo/search_empty.json").when("q", "kind=client"));
    rules.push(on("/api/search", "tempo/search_traceql.json"));
    let server = FixtureServer::start(rules).await;
    let report = checks::run(7, &config(&server.url, Duration::ZERO, true))
        .await
        .unwrap();
    assert!(!report.passed());
    let failed: Vec<_> = report.failures().collect();
    assert_eq!(failed.len(), 1, "{}", report.render());
    match &failed[0].outcome {
        Outcome::Waiting { fix, .. } => {
            assert!(fix.contains("Two traces instead of one"), "{fix}");
            assert!(fix.contains("traceparent"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn without_tempo_the_trace_and_graph_rows_are_skipped() {
    let server = FixtureServer::start(lab_3()).await;
    let report = checks::run(7, &config(&server.url, Duration::from_secs(5), false))
        .await
        .unwrap();
    assert!(report.passed(), "{}", report.render());
    let skipped = report
        .rows
        .iter()
        .filter(|row| matches!(row.outcome, Outcome::Skip(_)))
        .count();
    assert_eq!(skipped, 4, "{}", report.render());
}
