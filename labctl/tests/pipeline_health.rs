//! Checkpoint 6's pipeline-health checks against recorded Prometheus answers (the
//! `/api/v1/query` vector format of the Prometheus HTTP API docs, "Instant queries").

// Shared with checkpoints.rs and verify_backends.rs; this file uses part of it.
#[allow(dead_code)]
mod fixture_server;

use fixture_server::{FixtureServer, on};
use labctl::pipeline_health::{self, Check};
use labctl::probe::Outcome;
use labctl::prom::Prometheus;

async fn probe(check: Check, fixture: &str) -> (Outcome, Vec<String>) {
    let server = FixtureServer::start(vec![on("/api/v1/query", fixture)]).await;
    let prometheus = Prometheus::new(labctl::http::client(), &server.url);
    let outcome = check.probe(&prometheus).await;
    let queries = server
        .seen()
        .await
        .iter()
        .filter_map(|s| s.param("query").map(str::to_owned))
        .collect();
    (outcome, queries)
}

#[tokio::test]
async fn two_backends_pass_and_one_waits() {
    let (outcome, queries) = probe(Check::Backends, "prometheus/scalar_vector_2.json").await;
    assert_eq!(outcome, Outcome::Pass("2 backends".into()));
    assert_eq!(queries, [pipeline_health::BACKENDS]);
    let (outcome, _) = probe(Check::Backends, "prometheus/empty_vector.json").await;
    assert!(matches!(outcome, Outcome::Waiting { .. }), "{outcome:?}");
}

#[tokio::test]
async fn refused_data_fails_as_data_being_dropped() {
    let (outcome, _) = probe(Check::NothingRefused, "prometheus/scalar_vector_17.json").await;
    match outcome {
        Outcome::Fail { reason, fix } => {
            assert!(
                reason.contains("17 items refused: data is being dropped"),
                "{reason}"
            );
            assert!(fix.contains("Collector pipeline"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
    // No refused series at all: nothing was ever refused.
    let (outcome, _) = probe(Check::NothingRefused, "prometheus/empty_vector.json").await;
    assert_eq!(outcome, Outcome::Pass("0".into()));
}

#[tokio::test]
async fn a_missing_gateway_waits() {
    let (outcome, _) = probe(Check::GatewaysReporting, "prometheus/empty_vector.json").await;
    assert!(
        matches!(outcome, Outcome::Waiting { ref reason, .. } if reason.contains("0 of 2")),
        "{outcome:?}"
    );
    let (outcome, _) = probe(Check::GatewaysReporting, "prometheus/scalar_vector_2.json").await;
    assert_eq!(outcome, Outcome::Pass("2 of 2".into()));
}
