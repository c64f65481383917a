//! Postgres restarts mid-load: requests fail fast while it is down, the service heals by
//! itself, and no acknowledged todo is lost.

use std::time::{Duration, Instant};

use lab_tests::{
    app::TestApp,
    load::{Limits, Load},
    restartable_postgres::RestartablePostgres,
};
use serde_json::{Value, json};

use crate::{Answer, MAX_REQUESTS, ONE_AT_A_TIME, WORKERS, client, ms, send};

/// No request may take longer while the database is down: the pool gives up acquiring a
/// connection after 3 s (app/src/startup.rs), plus slack for a debug build on 2 cores.
const DB_DOWN_REQUEST_BOUND: Duration = Duration::from_secs(5);
/// How long Postgres stays down: long enough for every worker to meet the outage.
const DB_DOWNTIME: Duration = Duration::from_secs(3);
const DB_RECOVERY_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_load_fails_fast_and_loses_no_acknowledged_todo() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut postgres =
        tokio::task::block_in_place(RestartablePostgres::start).expect("a Postgres of our own");
    let app = TestApp::spawn_on(&postgres.url, &[("OTEL_SDK_DISABLED", "true")]).await;
    let client = client("postgres-restart");
    let base = app.address.clone();
    let creates = Load::start(
        Limits {
            workers: WORKERS,
            duration: Duration::from_secs(40),
            max_requests: MAX_REQUESTS,
        },
        move |n| {
            let request = client
                .post(format!("{base}/api/v1/todos"))
                .json(&json!({ "title": format!("restart {n}") }));
            send(request)
        },
    );
    let load_started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stop_took = tokio::task::block_in_place(|| postgres.stop()).expect("pg_ctl stop");
    let stopped_at = load_started.elapsed();
    // While it is down, readiness says so - with a problem body.
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503, "/ready while Postgres is down");
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["type"], "/problems/database-unavailable", "{ready}");
    tokio::time::sleep(DB_DOWNTIME.saturating_sub(load_started.elapsed() - stopped_at)).await;

    tokio::task::block_in_place(|| postgres.start_again()).expect("Postgres starts again");
    let restarted_at = load_started.elapsed();
    // The service recovers by itself: no restart, no signal.
    lab_tests::wait_for_http(&app.url("/ready"), true, DB_RECOVERY_TIMEOUT)
        .await
        .unwrap_or_else(|last| panic!("/ready not back after the restart: {last}"));
    let recovered_at = load_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = creates.finish().await;

    let slowest = samples.iter().map(|s| s.latency).max().unwrap();
    let unavailable = samples
        .iter()
        .filter(|s| s.outcome.status() == Some(503))
        .count();
    let created_after = samples
        .iter()
        .filter(|s| s.started > restarted_at && s.outcome.status() == Some(201))
        .count();
    println!(
        "postgres restart: {} creates, {unavailable} answered 503, slowest {:.0} ms (bound \
         {DB_DOWN_REQUEST_BOUND:?}); stop took {:.0} ms; down at {:.1} s, up at {:.1} s, \
         /ready 200 at {:.1} s; {created_after} created after the restart",
        samples.len(),
        ms(slowest),
        ms(stop_took),
        stopped_at.as_secs_f64(),
        restarted_at.as_secs_f64(),
        recovered_at.as_secs_f64()
    );
    for sample in &samples {
        match &sample.outcome {
            Answer::Status(201, _) => {}
            Answer::Status(503, body) => {
                assert_eq!(body["type"], "/problems/database-unavailable", "{body}");
                assert_eq!(body["status"], 503, "{body}");
            }
            other => panic!(
                "only 201 or a 503 problem, got {other:?} at {:?}",
                sample.started
            ),
        }
    }
    assert!(
        slowest < DB_DOWN_REQUEST_BOUND,
        "a request took {slowest:?}"
    );
    assert!(
        unavailable > 0,
        "the load never met the outage: the test proved nothing"
    );
    assert!(created_after > 0, "no todo was created after the restart");

    // Every todo acknowledged with 201 is still there.
    let acknowledged: Vec<(String, String)> = samples
        .iter()
        .filter_map(|sample| match &sample.outcome {
            Answer::Status(201, todo) => Some((
                todo["id"].as_str().unwrap().to_owned(),
                todo["title"].as_str().unwrap().to_owned(),
            )),
            _ => None,
        })
        .collect();
    let mut stored = std::collections::HashMap::new();
    for skip in (0..).step_by(1000) {
        let page = app.list(&format!("?limit=1000&skip={skip}")).await;
        for todo in &page {
            stored.insert(
                todo["id"].as_str().unwrap().to_owned(),
                todo["title"].as_str().unwrap().to_owned(),
            );
        }
        if page.len() < 1000 {
            break;
        }
    }
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|(id, title)| stored.get(id) != Some(title))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged todos are missing after the restart: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
}
