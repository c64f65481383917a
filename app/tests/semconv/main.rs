//! Semantic-conventions conformance: the spans, metrics and log records the service
//! exports for a round of real requests carry the attributes the conventions require and
//! recommend for each signal, named by the `opentelemetry-semantic-conventions` crate's
//! constants (the release its `SCHEMA_URL` names). Every check is also fed a broken copy
//! of what was exported, so a check that cannot fail fails here.

mod checks;

use std::time::Duration;

use checks::*;
use lab_tests::{
    app::TestApp,
    otlp::{Attributes, OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedSpan, attributes},
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_semantic_conventions::{attribute as semconv, metric as metrics};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const SCOPE: &str = "todo-api";
const USER_AGENT: &str = "otel-lab-semconv";
/// The route the fault switch fails, for a 5xx of each signal.
const FAILING_ROUTE: &str = "/ready";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// One request of the round, and what its server span must say about it.
struct Sent {
    method: &'static str,
    path: String,
    query: Option<&'static str>,
    /// `url.query` as exported: sensitive values redacted.
    exported_query: Option<&'static str>,
    route: Option<&'static str>,
    status: u16,
}

/// What the service exported for [`ROUND`](round).
struct Emitted {
    sent: Vec<Sent>,
    spans: Vec<ReceivedSpan>,
    metrics: Vec<ReceivedMetric>,
    logs: Vec<ReceivedLog>,
    database: String,
    todo_id: String,
}

/// Sends one request of every kind the conventions treat differently (known and unknown
/// method, route and none, query and none, 2xx/4xx/5xx) and waits for all three signals.
async fn round() -> Emitted {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let receiver = OtlpReceiver::start().await;
    let app = TestApp::spawn_with(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            receiver.grpc_endpoint.as_str(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        ("LAB_FAULT_ERROR_RATE", "1.0"),
        ("LAB_FAULT_ROUTES", FAILING_ROUTE),
    ])
    .await;
    let created: Value = app
        .client
        .post(app.url("/api/v1/todos"))
        .header("user-agent", USER_AGENT)
        .json(&json!({ "title": "conformance" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let todo_id = created["id"].as_str().unwrap().to_owned();
    let missing = uuid::Uuid::new_v4();
    let todos = Some("/api/v1/todos");
    let todo = Some("/api/v1/todos/{todo_id}");
    let mut sent = vec![
        sent("POST", "/api/v1/todos", None, None, todos, 201),
        sent(
            "GET",
            "/api/v1/todos",
            Some("limit=5&sig=s3cr3t-sig&X-Goog-Signature=g00g"),
            Some("limit=5&sig=REDACTED&X-Goog-Signature=REDACTED"),
            todos,
            200,
        ),
        sent(
            "GET",
            &format!("/api/v1/todos/{todo_id}"),
            None,
            None,
            todo,
            200,
        ),
        sent(
            "GET",
            &format!("/api/v1/todos/{missing}"),
            None,
            None,
            todo,
            404,
        ),
        sent("PURGE", "/api/v1/todos", None, None, todos, 405),
        sent("GET", "/no/such/path", None, None, None, 404),
        sent("GET", FAILING_ROUTE, None, None, Some(FAILING_ROUTE), 500),
    ];
    for request in sent.iter().skip(1) {
        let target = match request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path.clone(),
        };
        let method = Method::from_bytes(request.method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url(&target))
            .header("user-agent", USER_AGENT)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), request.status, "{target}");
    }
    let invalid = app
        .client
        .post(app.url("/api/v1/todos"))
        .header("user-agent", USER_AGENT)
        .json(&json!({ "title": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 400);
    sent.push(sent_request("POST", "/api/v1/todos", todos, 400));

    let requests = sent.len();
    let spans = receiver
        .wait_for("a server span per request", WAIT, |r| {
            let spans = r.spans();
            (spans.iter().filter(|s| s.span.kind == SERVER).count() >= requests).then_some(spans)
        })
        .await;
    let metrics = receiver
        .wait_for(
            "both duration histograms, every request counted",
            WAIT,
            |r| {
                let metrics = r.metrics();
                let counted = latest(&metrics, metrics::HTTP_SERVER_REQUEST_DURATION)
                    .map_or(0, |m| points(m).iter().map(|(_, count)| count).sum::<u64>());
                (counted >= requests as u64
                    && latest(&metrics, metrics::DB_CLIENT_OPERATION_DURATION).is_some())
                .then_some(metrics)
            },
        )
        .await;
    let logs = receiver
        .wait_for("the not-found and validation log records", WAIT, |r| {
            let logs = r.logs();
            ["todo not found", "validation failed"]
                .iter()
                .all(|body| logs.iter().any(|l| l.body() == *body))
                .then_some(logs)
        })
        .await;
    let database = app.database_url.rsplit('/').next().unwrap().to_owned();
    Emitted {
        sent,
        spans,
        metrics,
        logs,
        database,
        todo_id,
    }
}

fn sent(
    method: &'static str,
    path: &str,
    query: Option<&'static str>,
    exported_query: Option<&'static str>,
    route: Option<&'static str>,
    status: u16,
) -> Sent {
    Sent {
        method,
        path: path.to_owned(),
        query,
        exported_query,
        route,
        status,
    }
}

fn sent_request(
    method: &'static str,
    path: &str,
    route: Option<&'static str>,
    status: u16,
) -> Sent {
    sent(method, path, None, None, route, status)
}

/// The last export of a metric (cumulative: it holds every request so far).
fn latest<'a>(metrics: &'a [ReceivedMetric], name: &str) -> Option<&'a ReceivedMetric> {
    metrics.iter().rev().find(|m| m.metric.name == name)
}

/// A histogram's data points: attributes and count.
fn points(metric: &ReceivedMetric) -> Vec<(Attributes, u64)> {
    match &metric.metric.data {
        Some(Data::Histogram(histogram)) => histogram
            .data_points
            .iter()
            .map(|p| (attributes(&p.attributes), p.count))
            .collect(),
        _ => Vec::new(),
    }
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn assert_caught(problems: Vec<String>, wanted: &str) {
    assert!(
        problems.iter().any(|p| p.contains(wanted)),
        "the check missed the broken case ({wanted}): {problems:?}"
    );
}

fn server_span<'a>(emitted: &'a Emitted, request: &Sent) -> &'a ReceivedSpan {
    let original = (!KNOWN_METHODS.contains(&request.method)).then_some(request.method);
    emitted
        .spans
        .iter()
        .filter(|s| s.span.kind == SERVER)
        .find(|s| {
            let a = &s.attributes;
            a.get(semconv::URL_PATH) == Some(&request.path.as_str().into())
                && a.get(semconv::HTTP_RESPONSE_STATUS_CODE) == Some(&request.status.into())
                && match original {
                    Some(method) => {
                        a.get(semconv::HTTP_REQUEST_METHOD_ORIGINAL) == Some(&method.into())
                    }
                    None => a.get(semconv::HTTP_REQUEST_METHOD) == Some(&request.method.into()),
                }
        })
        .unwrap_or_else(|| panic!("no server span for {} {}", request.method, request.path))
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_follow_the_http_and_database_conventions() {
    let emitted = round().await;
    for request in &emitted.sent {
        assert_none(http_server_span_problems(
            request,
            server_span(&emitted, request),
        ));
    }
    let db_spans: Vec<&ReceivedSpan> = emitted
        .spans
        .iter()
        .filter(|s| s.span.kind == CLIENT)
        .collect();
    assert!(!db_spans.is_empty(), "no database span");
    for span in &db_spans {
        assert_none(db_span_problems(span, &emitted.database));
    }

    // The broken cases, each made from a span that passed.
    let listing = &emitted.sent[1];
    let good = server_span(&emitted, listing);
    let mut broken = good.clone();
    broken.attributes.remove(semconv::NETWORK_PROTOCOL_VERSION);
    assert_caught(
        http_server_span_problems(listing, &broken),
        "no `network.protocol.version`",
    );
    let mut broken = good.clone();
    broken.attributes.remove(semconv::CLIENT_ADDRESS);
    assert_caught(
        http_server_span_problems(listing, &broken),
        "no `client.address`",
    );
    let mut broken = good.clone();
    broken
        .attributes
        .insert(semconv::URL_QUERY.into(), listing.query.unwrap().into());
    assert_caught(http_server_span_problems(listing, &broken), "`url.query`");
    let mut broken = good.clone();
    broken.attributes.remove(semconv::URL_QUERY);
    assert_caught(http_server_span_problems(listing, &broken), "`url.query`");

    let purge = emitted.sent.iter().find(|r| r.method == "PURGE").unwrap();
    let mut broken = server_span(&emitted, purge).clone();
    broken.span.name = "_OTHER /api/v1/todos".into();
    assert_caught(http_server_span_problems(purge, &broken), "span name");

    let mut broken = db_spans[0].clone();
    broken.attributes.remove(semconv::DB_NAMESPACE);
    assert_caught(
        db_span_problems(&broken, &emitted.database),
        "no `db.namespace`",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duration_metrics_follow_the_http_and_database_conventions() {
    let emitted = round().await;
    let http = latest(&emitted.metrics, metrics::HTTP_SERVER_REQUEST_DURATION).unwrap();
    assert_none(http_duration_problems(http));
    let db = latest(&emitted.metrics, metrics::DB_CLIENT_OPERATION_DURATION).unwrap();
    assert_none(db_duration_problems(db));
    let failed_point = points(http)
        .into_iter()
        .any(|(labels, _)| labels.get(semconv::ERROR_TYPE) == Some(&"500".into()));
    assert!(failed_point, "the injected 500 is a point with error.type");

    // The broken cases: a recommended attribute missing, a per-request one added.
    let Some(Data::Histogram(histogram)) = &http.metric.data else {
        unreachable!()
    };
    let mut broken = http.clone();
    let mut without_version = histogram.clone();
    for point in &mut without_version.data_points {
        point
            .attributes
            .retain(|kv| kv.key != semconv::NETWORK_PROTOCOL_VERSION);
    }
    broken.metric.data = Some(Data::Histogram(without_version));
    assert_caught(
        http_duration_problems(&broken),
        "without `network.protocol.version`",
    );

    let mut broken = http.clone();
    let mut with_path = histogram.clone();
    with_path.data_points[0]
        .attributes
        .push(opentelemetry_proto::tonic::common::v1::KeyValue {
            key: semconv::URL_PATH.into(),
            ..Default::default()
        });
    broken.metric.data = Some(Data::Histogram(with_path));
    assert_caught(
        http_duration_problems(&broken),
        "`url.path` is not an attribute",
    );

    let mut broken = db.clone();
    broken.metric.unit = "ms".into();
    assert_caught(db_duration_problems(&broken), "unit");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_lines_carry_no_event_name_and_namespaced_attributes() {
    let emitted = round().await;
    for log in &emitted.logs {
        assert_none(log_problems(log));
    }
    assert!(
        emitted
            .logs
            .iter()
            .any(|l| l.origin.scope_name.starts_with("poem")),
        "a dependency's lines (poem's) were checked too"
    );
    let not_found = emitted
        .logs
        .iter()
        .find(|l| l.body() == "todo not found")
        .unwrap();
    assert!(not_found.attributes.contains_key("todo.id"));
    let created = emitted
        .logs
        .iter()
        .find(|l| l.body() == "todo created")
        .expect("the `todo created` record");
    assert_eq!(created.attributes["todo.id"], emitted.todo_id.as_str());

    // The broken cases: the bridge's file:line event name, an un-namespaced attribute.
    let mut broken = created.clone();
    broken.record.event_name = "event app/src/api.rs:150".into();
    assert_caught(log_problems(&broken), "event name");
    let mut broken = created.clone();
    let id = broken.attributes.remove("todo.id").unwrap();
    broken.attributes.insert("todo_id".into(), id);
    assert_caught(log_problems(&broken), "`todo_id`");
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_and_scope_declare_the_conventions_schema_url() {
    let emitted = round().await;
    let mut seen_own_scope = false;
    for span in &emitted.spans {
        seen_own_scope |= span.origin.scope_name == SCOPE;
        assert_none(schema_problems(&span.span.name, &span.origin));
    }
    for metric in &emitted.metrics {
        assert_none(schema_problems(&metric.metric.name, &metric.origin));
    }
    for log in &emitted.logs {
        assert_none(schema_problems(&log.body(), &log.origin));
    }
    assert!(seen_own_scope, "spans come from the {SCOPE} scope");

    let mut broken = emitted.spans[0].origin.clone();
    broken.scope_schema_url.clear();
    assert_caught(schema_problems("span", &broken), "scope schema_url");
    let mut broken = emitted.spans[0].origin.clone();
    broken.resource_schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
    assert_caught(schema_problems("span", &broken), "resource schema_url");
}
