//! The service's span exporter against answers the OTLP specification tells apart: a
//! retryable one (HTTP 503, gRPC UNAVAILABLE) is retried and the batch arrives; a final
//! one (HTTP 400, gRPC INVALID_ARGUMENT) is not retried.

use std::time::Duration;

use lab_tests::{app::TestApp, otlp::OtlpReceiver};

const WAIT: Duration = Duration::from_secs(20);

async fn spawn_exporting_traces_to(receiver: &OtlpReceiver, protocol: &str) -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let endpoint = if protocol == "grpc" {
        &receiver.grpc_endpoint
    } else {
        &receiver.http_endpoint
    };
    TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ])
    .await
}

async fn one_request(app: &TestApp) {
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert!(response.status().is_success());
}

async fn a_retryable_answer_is_retried(protocol: &str) {
    let receiver = OtlpReceiver::start_failing_traces(2, true).await;
    let app = spawn_exporting_traces_to(&receiver, protocol).await;
    one_request(&app).await;
    receiver
        .wait_for("the /health span after two refusals", WAIT, |r| {
            r.spans().into_iter().find(|s| s.span.name == "GET /health")
        })
        .await;
    assert_eq!(receiver.trace_attempts(), 3, "{protocol}: two refused, the third accepted");
    assert!(!app.output().contains("traces export failing"), "{}", app.output());
}

async fn a_final_answer_is_not_retried(protocol: &str) {
    let receiver = OtlpReceiver::start_failing_traces(1, false).await;
    let app = spawn_exporting_traces_to(&receiver, protocol).await;
    one_request(&app).await;
    receiver
        .wait_for("the first export", WAIT, |r| (r.trace_attempts() > 0).then_some(()))
        .await;
    // Longer than the first two backoffs (100 + 200 ms): a retry would have come.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.trace_attempts(), 1, "{protocol}: a final answer was retried");
    assert!(receiver.spans().is_empty(), "{protocol}: the refused batch arrived anyway");
    assert!(app.output().contains("traces export failing"), "{}", app.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retryable_answer_is_retried_and_the_batch_arrives_over_grpc() {
    a_retryable_answer_is_retried("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retryable_answer_is_retried_and_the_batch_arrives_over_http() {
    a_retryable_answer_is_retried("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_final_answer_is_not_retried_over_grpc() {
    a_final_answer_is_not_retried("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_final_answer_is_not_retried_over_http() {
    a_final_answer_is_not_retried("http/protobuf").await;
}
