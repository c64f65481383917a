//! Semantic-conventions conformance: the spans, metrics and log records the service
//! exports for a round of real requests carry the attributes the conventions require and
//! recommend for each signal, named by the `opentelemetry-semantic-conventions` crate's
//! constants (the release its `SCHEMA_URL` names). Every check is also fed a broken copy
//! of what was exported, so a check that cannot fail fails here.

use std::time::Duration;

use lab_tests::{
    app::TestApp,
    otlp::{Attributes, OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedSpan, attributes},
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_semantic_conventions::{SCHEMA_URL, attribute as semconv, metric as metrics};
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

// ---- the checks: each returns what is wrong, empty when nothing is -----------------------

/// Methods the HTTP conventions know; any other is exported as `_OTHER`.
const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// The HTTP server span of `request`: name, required, conditionally required and
/// recommended attributes (https://opentelemetry.io/docs/specs/semconv/http/http-spans/).
fn http_server_span_problems(request: &Sent, span: &ReceivedSpan) -> Vec<String> {
    let a = &span.attributes;
    let mut problems = Vec::new();
    let what = format!("{} {}", request.method, request.path);
    let mut need = |key: &str, level: &str| {
        if !a.contains_key(key) {
            problems.push(format!("{what}: no `{key}` ({level})"));
        }
    };
    for key in [
        semconv::HTTP_REQUEST_METHOD,
        semconv::URL_PATH,
        semconv::URL_SCHEME,
    ] {
        need(key, "required");
    }
    need(semconv::HTTP_RESPONSE_STATUS_CODE, "a response was sent");
    for key in [
        semconv::CLIENT_ADDRESS,
        semconv::NETWORK_PEER_ADDRESS,
        semconv::NETWORK_PEER_PORT,
        semconv::NETWORK_PROTOCOL_VERSION,
        semconv::SERVER_ADDRESS,
        semconv::SERVER_PORT,
        semconv::USER_AGENT_ORIGINAL,
    ] {
        need(key, "recommended");
    }
    let known = KNOWN_METHODS.contains(&request.method);
    let (method, name_method) = if known {
        (request.method, request.method)
    } else {
        ("_OTHER", "HTTP")
    };
    let mut expect = |key: &str, expected: Option<Value>| {
        if a.get(key) != expected.as_ref() {
            problems.push(format!(
                "{what}: `{key}` is {:?}, expected {expected:?}",
                a.get(key)
            ));
        }
    };
    expect(semconv::HTTP_REQUEST_METHOD, Some(method.into()));
    expect(
        semconv::HTTP_REQUEST_METHOD_ORIGINAL,
        (!known).then(|| request.method.into()),
    );
    expect(semconv::HTTP_ROUTE, request.route.map(Value::from));
    expect(semconv::URL_QUERY, request.exported_query.map(Value::from));
    expect(
        semconv::HTTP_RESPONSE_STATUS_CODE,
        Some(request.status.into()),
    );
    expect(
        semconv::ERROR_TYPE,
        (request.status >= 500).then(|| request.status.to_string().into()),
    );
    let name = match request.route {
        Some(route) => format!("{name_method} {route}"),
        None => name_method.to_owned(),
    };
    if span.span.name != name {
        problems.push(format!(
            "{what}: span name {:?}, expected {name:?}",
            span.span.name
        ));
    }
    problems
}

/// A database client span (https://opentelemetry.io/docs/specs/semconv/database/postgresql/).
fn db_span_problems(span: &ReceivedSpan, database: &str) -> Vec<String> {
    let a = &span.attributes;
    let mut problems = Vec::new();
    let what = span.span.name.clone();
    // Every statement of the round acts on the todos table: the collection is known.
    for key in [
        semconv::DB_SYSTEM_NAME,
        semconv::DB_NAMESPACE,
        semconv::DB_OPERATION_NAME,
        semconv::DB_COLLECTION_NAME,
        semconv::DB_QUERY_TEXT,
        semconv::SERVER_ADDRESS,
        semconv::SERVER_PORT,
    ] {
        if !a.contains_key(key) {
            problems.push(format!("{what}: no `{key}`"));
        }
    }
    if a.get(semconv::DB_SYSTEM_NAME) != Some(&"postgresql".into()) {
        problems.push(format!("{what}: `db.system.name` is not postgresql"));
    }
    if a.get(semconv::DB_NAMESPACE) != Some(&database.into()) {
        problems.push(format!(
            "{what}: `db.namespace` is not the database {database}"
        ));
    }
    let expected = format!(
        "{} {}",
        a.get(semconv::DB_OPERATION_NAME)
            .and_then(Value::as_str)
            .unwrap_or("?"),
        a.get(semconv::DB_COLLECTION_NAME)
            .and_then(Value::as_str)
            .unwrap_or("?"),
    );
    if span.span.name != expected {
        problems.push(format!("span name {what:?}, expected {expected:?}"));
    }
    problems
}

/// A duration histogram: unit, the attributes every point must carry, and nothing outside
/// the metric's attribute set (which keeps per-request values such as `url.path` out).
fn histogram_problems(
    metric: &ReceivedMetric,
    required: &[&str],
    allowed: &[&str],
    failed: impl Fn(&Attributes) -> bool,
) -> Vec<String> {
    let name = &metric.metric.name;
    let mut problems = Vec::new();
    if metric.metric.unit != "s" {
        problems.push(format!("{name}: unit {:?}, expected s", metric.metric.unit));
    }
    let points = points(metric);
    if points.is_empty() {
        problems.push(format!("{name}: not a histogram with points"));
    }
    for (labels, _) in &points {
        for key in required {
            if !labels.contains_key(*key) {
                problems.push(format!("{name}: a point without `{key}`: {labels:?}"));
            }
        }
        for key in labels.keys() {
            if !allowed.contains(&key.as_str()) {
                problems.push(format!(
                    "{name}: `{key}` is not an attribute of this metric"
                ));
            }
        }
        if failed(labels) != labels.contains_key(semconv::ERROR_TYPE) {
            problems.push(format!("{name}: `error.type` wrong on {labels:?}"));
        }
    }
    problems
}

/// https://opentelemetry.io/docs/specs/semconv/http/http-metrics/#metric-httpserverrequestduration
fn http_duration_problems(metric: &ReceivedMetric) -> Vec<String> {
    histogram_problems(
        metric,
        &[
            semconv::HTTP_REQUEST_METHOD,
            semconv::URL_SCHEME,
            semconv::HTTP_RESPONSE_STATUS_CODE,
            semconv::NETWORK_PROTOCOL_VERSION,
        ],
        &[
            semconv::ERROR_TYPE,
            semconv::HTTP_REQUEST_METHOD,
            semconv::HTTP_RESPONSE_STATUS_CODE,
            semconv::HTTP_ROUTE,
            semconv::NETWORK_PROTOCOL_NAME,
            semconv::NETWORK_PROTOCOL_VERSION,
            semconv::SERVER_ADDRESS,
            semconv::SERVER_PORT,
            semconv::URL_SCHEME,
        ],
        |labels| {
            labels
                .get(semconv::HTTP_RESPONSE_STATUS_CODE)
                .and_then(Value::as_i64)
                .is_some_and(|status| status >= 500)
        },
    )
}

/// https://opentelemetry.io/docs/specs/semconv/database/database-metrics/#metric-dbclientoperationduration
fn db_duration_problems(metric: &ReceivedMetric) -> Vec<String> {
    histogram_problems(
        metric,
        &[
            semconv::DB_SYSTEM_NAME,
            semconv::DB_NAMESPACE,
            semconv::DB_OPERATION_NAME,
            semconv::DB_COLLECTION_NAME,
            semconv::SERVER_ADDRESS,
            semconv::SERVER_PORT,
        ],
        &[
            semconv::DB_COLLECTION_NAME,
            semconv::DB_NAMESPACE,
            semconv::DB_OPERATION_NAME,
            semconv::DB_QUERY_SUMMARY,
            semconv::DB_RESPONSE_STATUS_CODE,
            semconv::DB_STORED_PROCEDURE_NAME,
            semconv::DB_SYSTEM_NAME,
            semconv::ERROR_TYPE,
            semconv::NETWORK_PEER_ADDRESS,
            semconv::NETWORK_PEER_PORT,
            semconv::SERVER_ADDRESS,
            semconv::SERVER_PORT,
        ],
        |labels| labels.contains_key(semconv::DB_RESPONSE_STATUS_CODE),
    )
}

/// Conventions' attributes the service's log lines use; its own live under `todo.`.
const LOG_SEMCONV_KEYS: [&str; 3] = [
    semconv::EXCEPTION_MESSAGE,
    semconv::HTTP_RESPONSE_STATUS_CODE,
    semconv::URL_FULL,
];
const OWN_NAMESPACE: &str = "todo.";

/// The scope of the service's own log records: the bridge names it after the `tracing`
/// target, the crate's module path.
const OWN_LOG_SCOPE: &str = "todo_api";

/// A plain log line: no event name (the conventions keep that for named events), and, for
/// the service's own lines, only namespaced attribute names
/// (https://opentelemetry.io/docs/specs/semconv/general/naming/).
fn log_problems(log: &ReceivedLog) -> Vec<String> {
    let mut problems = Vec::new();
    let body = log.body();
    if !log.record.event_name.is_empty() {
        problems.push(format!("{body:?}: event name {:?}", log.record.event_name));
    }
    if !log.origin.scope_name.starts_with(OWN_LOG_SCOPE) {
        return problems;
    }
    for key in log.attributes.keys() {
        let own = key
            .strip_prefix(OWN_NAMESPACE)
            .is_some_and(|name| !name.is_empty());
        if !own && !LOG_SEMCONV_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "{body:?}: attribute `{key}` is neither a convention's nor under `{OWN_NAMESPACE}`"
            ));
        }
    }
    problems
}

/// The resource (every signal) and the service's own scope declare the conventions'
/// version the names follow.
fn schema_problems(what: &str, origin: &lab_tests::otlp::Origin) -> Vec<String> {
    let mut problems = Vec::new();
    if origin.resource_schema_url != SCHEMA_URL {
        problems.push(format!(
            "{what}: resource schema_url {:?}, expected {SCHEMA_URL}",
            origin.resource_schema_url
        ));
    }
    if origin.scope_name == SCOPE && origin.scope_schema_url != SCHEMA_URL {
        problems.push(format!(
            "{what}: scope schema_url {:?}, expected {SCHEMA_URL}",
            origin.scope_schema_url
        ));
    }
    problems
}

// ---- the tests ---------------------------------------------------------------------------

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
