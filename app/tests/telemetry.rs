//! What the service exports, received by a real OTLP endpoint (gRPC and HTTP/protobuf).

use std::time::Duration;

use lab_tests::{
    app::TestApp,
    otlp::{OtlpReceiver, ReceivedSpan},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
/// A title no exported attribute, log record or query text may contain.
const SECRET_TITLE: &str = "secret-title-7f3a";

async fn spawn_exporting_to(
    receiver: &OtlpReceiver,
    protocol: &str,
    extra: &[(&str, &str)],
) -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let endpoint = if protocol == "grpc" {
        &receiver.grpc_endpoint
    } else {
        &receiver.http_endpoint
    };
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        ),
    ];
    env.extend_from_slice(extra);
    TestApp::spawn_with(&env).await
}

fn server_span<'a>(spans: &'a [ReceivedSpan], name: &str) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.span.name == name && s.span.kind == 2)
}

/// Drives one CRUD round and checks the spans and logs it produced.
async fn traces_and_logs_over(protocol: &str) {
    let receiver = OtlpReceiver::start().await;
    let app = spawn_exporting_to(&receiver, protocol, &[]).await;
    let created = app
        .client
        .post(app.url("/api/v1/todos"))
        .header("user-agent", "otel-lab-test")
        .json(&json!({ "title": SECRET_TITLE }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fetched = app
        .client
        .get(app.url(&format!("/api/v1/todos/{id}/")))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);

    let spans = receiver
        .wait_for("the GET server span", WAIT, |r| {
            let spans = r.spans();
            server_span(&spans, "GET /api/v1/todos/{todo_id}")
                .is_some()
                .then_some(spans)
        })
        .await;

    let post = server_span(&spans, "POST /api/v1/todos").expect("POST server span");
    let attributes = &post.attributes;
    assert_eq!(attributes["http.request.method"], "POST");
    assert_eq!(attributes["http.route"], "/api/v1/todos");
    assert_eq!(attributes["http.response.status_code"], 201);
    assert_eq!(attributes["url.path"], "/api/v1/todos");
    assert_eq!(attributes["url.scheme"], "http");
    assert_eq!(attributes["server.address"], "127.0.0.1");
    assert!(
        attributes["server.port"]
            .as_i64()
            .is_some_and(|port| port > 0)
    );
    assert_eq!(attributes["user_agent.original"], "otel-lab-test");
    assert!(!attributes.contains_key("error.type"));
    assert_eq!(
        post.span.status.as_ref().map_or(0, |s| s.code),
        0,
        "2xx leaves the status Unset"
    );
    assert_eq!(post.resource["service.name"], "todo-api");
    assert_eq!(post.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(post.resource["deployment.environment.name"], "test");

    let get = server_span(&spans, "GET /api/v1/todos/{todo_id}").unwrap();
    assert_eq!(get.attributes["http.route"], "/api/v1/todos/{todo_id}");
    assert_eq!(get.attributes["url.path"], format!("/api/v1/todos/{id}/"));

    for (server, operation) in [(post, "INSERT"), (get, "SELECT")] {
        let children: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|s| s.parent_span_id() == server.span_id())
            .collect();
        assert_eq!(children.len(), 1, "one DB span under {}", server.span.name);
        let db = children[0];
        assert_eq!(db.span.kind, 3, "CLIENT");
        assert_eq!(db.trace_id(), server.trace_id());
        assert_eq!(db.span.name, format!("{operation} todos"));
        assert_eq!(db.attributes["db.system.name"], "postgresql");
        assert_eq!(db.attributes["db.operation.name"], operation);
        assert_eq!(db.attributes["db.collection.name"], "todos");
        let query = db.attributes["db.query.text"].as_str().unwrap();
        assert!(query.contains("$1"), "parameterised: {query}");
        assert_eq!(db.attributes["server.address"], "127.0.0.1");
        assert!(db.attributes["server.port"].as_i64().is_some());
    }

    let logs = receiver
        .wait_for("the `todo created` log record", WAIT, |r| {
            let logs = r.logs();
            logs.iter()
                .any(|l| l.body() == "todo created")
                .then_some(logs)
        })
        .await;
    let created_log = logs.iter().find(|l| l.body() == "todo created").unwrap();
    assert_eq!(
        created_log.trace_id(),
        post.trace_id(),
        "the log carries its request's trace id"
    );
    assert_eq!(hex(&created_log.record.span_id), post.span_id());
    assert!(
        created_log.record.time_unix_nano > 0,
        "the record has its own timestamp"
    );
    assert_eq!(created_log.record.severity_number, 9, "INFO");
    assert_eq!(created_log.record.severity_text, "INFO");
    assert_eq!(created_log.resource["service.name"], "todo-api");

    // Nothing a client sent in a body reaches telemetry.
    let exported = format!("{:?}{:?}", receiver.spans(), receiver.logs());
    assert!(
        !exported.contains(SECRET_TITLE),
        "a request body value was exported"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_and_logs_over_grpc() {
    traces_and_logs_over("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_and_logs_over_http_protobuf() {
    traces_and_logs_over("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incoming_traceparent_is_continued() {
    let receiver = OtlpReceiver::start().await;
    let app = spawn_exporting_to(&receiver, "grpc", &[]).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let response = app
        .client
        .get(app.url("/health"))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let span = receiver
        .wait_for("the /health span", WAIT, |r| {
            r.spans().into_iter().find(|s| s.span.name == "GET /health")
        })
        .await;
    assert_eq!(span.trace_id(), trace_id);
    assert_eq!(span.parent_span_id(), parent);
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundreds_are_errors_four_hundreds_are_not() {
    let receiver = OtlpReceiver::start().await;
    let app = spawn_exporting_to(
        &receiver,
        "grpc",
        &[
            ("LAB_FAULT_ERROR_RATE", "1.0"),
            ("LAB_FAULT_ROUTES", "/api/v1/todos/{todo_id}"),
        ],
    )
    .await;
    let failed = app
        .client
        .get(app.url(&format!("/api/v1/todos/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let problem: Value = failed.json().await.unwrap();
    let invalid = app
        .client
        .post(app.url("/api/v1/todos"))
        .json(&json!({ "title": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let invalid: Value = invalid.json().await.unwrap();
    let unknown = app
        .client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let spans = receiver
        .wait_for("three server spans", WAIT, |r| {
            let spans: Vec<ReceivedSpan> =
                r.spans().into_iter().filter(|s| s.span.kind == 2).collect();
            (spans.len() >= 3).then_some(spans)
        })
        .await;
    let error = spans
        .iter()
        .find(|s| s.span.name == "GET /api/v1/todos/{todo_id}")
        .unwrap();
    assert_eq!(
        error.span.status.as_ref().unwrap().code,
        2,
        "5xx sets status Error"
    );
    assert_eq!(error.attributes["error.type"], "500");
    assert_eq!(
        problem["trace_id"],
        error.trace_id(),
        "the problem names the trace"
    );

    let client_error = spans
        .iter()
        .find(|s| s.span.name == "POST /api/v1/todos")
        .unwrap();
    assert_eq!(
        client_error.span.status.as_ref().map_or(0, |s| s.code),
        0,
        "4xx stays Unset"
    );
    assert!(!client_error.attributes.contains_key("error.type"));
    assert_eq!(invalid["trace_id"], client_error.trace_id());

    let unmatched = spans
        .iter()
        .find(|s| s.attributes["url.path"] == "/no/such/path")
        .unwrap();
    assert_eq!(
        unmatched.span.name, "GET",
        "no route: the name is the method alone"
    );
    assert!(!unmatched.attributes.contains_key("http.route"));
}

#[tokio::test(flavor = "multi_thread")]
async fn request_duration_histogram_has_unit_and_attributes() {
    use lab_tests::otlp::attributes;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    let receiver = OtlpReceiver::start().await;
    let app = spawn_exporting_to(&receiver, "http/protobuf", &[]).await;
    for _ in 0..3 {
        app.client
            .get(app.url("/api/v1/todos"))
            .send()
            .await
            .unwrap();
    }
    app.client
        .get(app.url("/api/v1/todos?limit=0"))
        .send()
        .await
        .unwrap();

    let metric = receiver
        .wait_for("http.server.request.duration with 4 requests", WAIT, |r| {
            r.metrics().into_iter().rev().find(|m| {
                m.metric.name == "http.server.request.duration"
                    && matches!(&m.metric.data, Some(Data::Histogram(h)) if h.data_points.iter().map(|p| p.count).sum::<u64>() >= 4)
            })
        })
        .await;
    assert_eq!(metric.metric.unit, "s");
    assert_eq!(metric.resource["service.name"], "todo-api");
    let Some(Data::Histogram(histogram)) = &metric.metric.data else {
        unreachable!()
    };
    let ok = histogram
        .data_points
        .iter()
        .find(|p| attributes(&p.attributes)["http.response.status_code"] == 200)
        .expect("a 200 series");
    let labels = attributes(&ok.attributes);
    assert_eq!(labels["http.request.method"], "GET");
    assert_eq!(labels["http.route"], "/api/v1/todos");
    assert_eq!(ok.count, 3);
    assert_eq!(
        ok.explicit_bounds,
        [
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
        ],
        "the semantic conventions' buckets, in seconds"
    );
    assert!(
        ok.sum.unwrap() < 5.0,
        "recorded in seconds, not milliseconds"
    );
    let bad = histogram
        .data_points
        .iter()
        .find(|p| attributes(&p.attributes)["http.response.status_code"] == 400);
    assert_eq!(bad.expect("a 400 series").count, 1);

    let pool = receiver
        .wait_for("db.client.connection.count", WAIT, |r| {
            r.metrics()
                .into_iter()
                .find(|m| m.metric.name == "db.client.connection.count")
        })
        .await;
    assert_eq!(pool.metric.unit, "{connection}");
}

/// Every way of turning telemetry off really exports nothing.
#[tokio::test(flavor = "multi_thread")]
async fn disabled_telemetry_exports_nothing() {
    for env in [
        vec![("OTEL_SDK_DISABLED", "true")],
        vec![
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ],
    ] {
        let receiver = OtlpReceiver::start().await;
        let app = spawn_exporting_to(&receiver, "grpc", &env).await;
        for _ in 0..5 {
            app.client
                .post(app.url("/api/v1/todos"))
                .json(&json!({ "title": "quiet" }))
                .send()
                .await
                .unwrap();
        }
        let status = app.shutdown();
        assert!(status.success());
        assert_eq!(receiver.request_count(), 0, "{env:?} exported something");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn console_exporters_print_spans_and_logs() {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let app = TestApp::spawn_with(&[
        ("OTEL_TRACES_EXPORTER", "console"),
        ("OTEL_LOGS_EXPORTER", "console"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ])
    .await;
    app.client
        .post(app.url("/api/v1/todos"))
        .json(&json!({ "title": "print me" }))
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !(app.output().contains("POST /api/v1/todos") && app.output().contains("todo created")) {
        assert!(
            std::time::Instant::now() < deadline,
            "console output:\n{}",
            app.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the collector gone the service answers as usual and says so once, not per batch.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_collector_is_reported_once_and_does_not_slow_requests() {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let port = lab_tests::postgres::free_port().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
    ])
    .await;
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let response = app.client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests are not held by the exporter"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let output = app.output();
    assert_eq!(
        output.matches("traces export failing").count(),
        1,
        "{output}"
    );
    assert_eq!(
        output.matches("metrics export failing").count(),
        1,
        "{output}"
    );
}

/// The SDK's standard sampler variables apply: `always_off` records no span, while the
/// request metric still counts every request.
#[tokio::test(flavor = "multi_thread")]
async fn otel_traces_sampler_is_honoured() {
    let receiver = OtlpReceiver::start().await;
    let app = spawn_exporting_to(&receiver, "grpc", &[("OTEL_TRACES_SAMPLER", "always_off")]).await;
    for _ in 0..3 {
        app.client.get(app.url("/health")).send().await.unwrap();
    }
    receiver
        .wait_for("the request metric", WAIT, |r| {
            r.metrics()
                .into_iter()
                .find(|m| m.metric.name == "http.server.request.duration")
        })
        .await;
    let status = app.shutdown();
    assert!(status.success());
    assert!(receiver.spans().is_empty(), "always_off exported spans");
}
