//! `labctl check N` against recorded answers served over real HTTP:
//! - `grafana/health.json`: Grafana HTTP API docs, "Other HTTP API" -> "Health API"
//!   (`GET /api/health`); `grafana/dashboard_by_uid.json`: "Dashboard HTTP API" ->
//!   "Get dashboard by uid" (`{"dashboard": ..., "meta": ...}`).
//! - `collector/health.json`: the collector's health_check extension README (`GET /` on
//!   13133 answers `{"status":"Server available","upSince":...,"uptime":...}`).
//! - `app/health.json`: the service's own `/health` contract.
//! - `prometheus/*.json`: see verify_backends.rs.

mod fixture_server;

use std::time::Duration;

use fixture_server::{FixtureServer, checkpoint_config, on};
use labctl::checks::{self, CheckpointConfig};
use labctl::probe::Outcome;

fn config(url: &str, timeout: Duration) -> CheckpointConfig {
    checkpoint_config(url, timeout, false)
}

#[tokio::test]
async fn checkpoint_4_passes_when_app_lgtm_collector_and_dashboard_are_up() {
    let server = FixtureServer::start(vec![
        on("/health", "app/health.json"),
        on("/ready", "app/health.json"),
        on("/api/health", "grafana/health.json"),
        on("/collector/", "collector/health.json"),
        on(
            "/api/dashboards/uid/todo-api-overview",
            "grafana/dashboard_by_uid.json",
        ),
        on("/api/v1/query", "prometheus/span_metrics_by_route.json")
            .when("query", "traces_span_metrics_calls_total"),
        on("/api/v1/query", "prometheus/app_metrics_by_route.json")
            .when("query", "http_server_request_duration_seconds_count"),
    ])
    .await;
    let report = checks::run(4, &config(&server.url, Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(report.passed(), "{}", report.render());
    let table = report.render();
    assert!(table.contains("Grafana 13.1.3 (database ok)"), "{table}");
    assert!(table.contains("Server available"), "{table}");
    assert!(
        table.contains("\"Todo API Overview\" is provisioned"),
        "{table}"
    );
    assert_eq!(report.rows.len(), 7);
    let seen = server.seen().await;
    assert!(
        seen.iter()
            .any(|s| s.path == "/api/dashboards/uid/todo-api-overview")
    );
    assert!(
        seen.iter().any(|s| s
            .param("query")
            .is_some_and(|q| q.contains(r#"span_kind="SPAN_KIND_SERVER""#))),
        "span metrics are looked up for server spans only"
    );
}

#[tokio::test]
async fn a_database_outage_fails_checkpoint_1_with_the_fix() {
    let server = FixtureServer::start(vec![
        on("/health", "app/health.json"),
        on("/ready", "app/health.json").status(503),
    ])
    .await;
    let report = checks::run(1, &config(&server.url, Duration::ZERO))
        .await
        .unwrap();
    assert!(!report.passed());
    match &report.rows[1].outcome {
        Outcome::Waiting { reason, fix } => {
            assert!(reason.contains("503"), "{reason}");
            assert!(fix.contains("cannot reach Postgres"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn there_are_seven_checkpoints() {
    assert!(
        checks::run(8, &config("http://127.0.0.1:9", Duration::ZERO))
            .await
            .is_err()
    );
}
