//! `labctl traffic` against the real service and a real Postgres (the workspace's test
//! kit starts both on loopback). Every planned status must be the one the service really
//! answers, so the plan's expectations, and therefore the "numbers the dashboard should
//! show", are checked against the service itself.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use lab_tests::app::TestApp;
use labctl::plan::{Plan, ROUTE_TODO};
use labctl::summary::Summary;
use labctl::traffic::{self, TrafficConfig};

const REQUESTS: u64 = 400;
const SEED: u64 = 42;

fn config(app: &TestApp) -> TrafficConfig {
    TrafficConfig {
        base_url: app.address.parse().unwrap(),
        duration: Some(Duration::from_secs(120)),
        requests: Some(REQUESTS),
        rate: 400.0,
        concurrency: 4,
        seed: SEED,
        progress: false,
    }
}

/// (method, route, planned status) -> count, as the plan for `SEED` says.
fn planned() -> BTreeMap<(String, String, u16), u64> {
    let mut counts = BTreeMap::new();
    for request in Plan::new(SEED).bounded(Some(REQUESTS)).flatten() {
        *counts
            .entry((
                request.method.to_owned(),
                request.route.to_owned(),
                request.expect,
            ))
            .or_default() += 1;
    }
    counts
}

fn answered(summary: &Summary) -> BTreeMap<(String, String, u16), u64> {
    summary
        .responses
        .iter()
        .map(|r| ((r.method.clone(), r.route.clone(), r.status), r.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_answers_exactly_the_planned_statuses() {
    let app = TestApp::spawn().await;
    let summary = traffic::run(&config(&app)).await.unwrap();
    assert!(
        summary.unexpected.is_empty(),
        "{}\n{}",
        summary.render(),
        app.output()
    );
    let totals = summary.totals();
    assert_eq!(
        (totals.requests, totals.transport_errors, summary.skipped),
        (REQUESTS, 0, 0)
    );
    assert_eq!(answered(&summary), planned());
    assert_eq!(totals.status_5xx, 0);
    assert!(
        totals.status_4xx > 0 && totals.status_2xx > totals.status_4xx,
        "{}",
        summary.render()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_switch_5xx_are_counted_as_they_come() {
    let app = TestApp::spawn_with(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("LAB_FAULT_ERROR_RATE", "1.0"),
        ("LAB_FAULT_ROUTES", ROUTE_TODO),
    ])
    .await;
    let summary = traffic::run(&config(&app)).await.unwrap();

    // Every request on the by-id route is answered 500, the rest as planned; after a
    // delete that failed, the rest of that todo's requests are skipped.
    let mut expected = BTreeMap::new();
    let mut skipped = 0;
    for unit in Plan::new(SEED).bounded(Some(REQUESTS)) {
        for (index, request) in unit.iter().enumerate() {
            let status = if request.route == ROUTE_TODO {
                500
            } else {
                request.expect
            };
            *expected
                .entry((request.method.to_owned(), request.route.to_owned(), status))
                .or_insert(0) += 1;
            if matches!(request.method, "POST" | "DELETE") && status != request.expect {
                skipped += (unit.len() - index - 1) as u64;
                break;
            }
        }
    }
    assert_eq!(answered(&summary), expected, "{}", summary.render());
    assert_eq!(summary.skipped, skipped);
    let totals = summary.totals();
    assert_eq!(
        (totals.requests, totals.transport_errors),
        (REQUESTS - skipped, 0)
    );
    let by_id: u64 = expected
        .iter()
        .filter(|((_, route, _), _)| route == ROUTE_TODO)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(totals.status_5xx, by_id);
    assert!((totals.error_rate - by_id as f64 / totals.responses as f64).abs() < 1e-12);
    assert!(
        summary
            .unexpected
            .iter()
            .all(|u| u.route == ROUTE_TODO && u.actual == 500)
    );
    assert!(
        summary
            .render()
            .contains("Error rate (5xx share of responses")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_prints_the_table_and_writes_the_json() {
    let app = TestApp::spawn().await;
    let json = std::env::temp_dir().join(format!("labctl-traffic-{}.json", std::process::id()));
    let output = tokio::task::spawn_blocking({
        let (address, json) = (app.address.clone(), json.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_labctl"))
                .args([
                    "traffic",
                    "--quiet",
                    "--requests",
                    "60",
                    "--rate",
                    "200",
                    "--seed",
                    "7",
                    "--base-url",
                    &address,
                ])
                .arg("--json")
                .arg(&json)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("labctl traffic: 60 requests"), "{stdout}");
    assert!(stdout.contains("METHOD  ROUTE"), "{stdout}");
    let written: Summary = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    assert_eq!(written.seed, 7);
    assert_eq!(written.totals().requests, 60);
}
