//! The fault switch (`LAB_FAULT_*`) and the graceful shutdown on SIGTERM.

use std::time::{Duration, Instant};

use lab_tests::{app::TestApp, problem::problem};
use reqwest::StatusCode;

use crate::{spawn, spawn_with};

#[tokio::test(flavor = "multi_thread")]
async fn fault_switch_fails_and_slows_only_the_chosen_routes() {
    let app = spawn_with(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("LAB_FAULT_ERROR_RATE", "1.0"),
        ("LAB_FAULT_LATENCY_MS", "150"),
        ("LAB_FAULT_ROUTES", "/api/v1/todos/{todo_id}"),
    ])
    .await;
    let todo = app.create_ok("unaffected route").await;
    let started = Instant::now();
    let response = app.get(&TestApp::todo_path(&todo)).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    let body = problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(body["type"], "/problems/injected-fault");
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_switch_is_off_by_default_and_rejects_bad_values() {
    let app = spawn().await;
    let todo = app.create_ok("healthy").await;
    for _ in 0..20 {
        let status = app.get(&TestApp::todo_path(&todo)).await.status();
        assert_eq!(status, StatusCode::OK);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("LAB_FAULT_ERROR_RATE", "2")
        .env("OTEL_SDK_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("LAB_FAULT_ERROR_RATE=2 is out of range")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    let app = spawn_with(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("LAB_FAULT_LATENCY_MS", "700"),
        ("LAB_FAULT_ROUTES", "/api/v1/todos"),
    ])
    .await;
    let slow = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/todos"));
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let status = app.shutdown();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        slow.await
            .unwrap()
            .expect("the in-flight request completed"),
        StatusCode::OK
    );
}
