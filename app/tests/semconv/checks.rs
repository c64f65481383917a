//! The conformance checks: each returns what is wrong with one exported item, empty when
//! nothing is, so that the tests can feed it both what the service sent and a broken copy.

use lab_tests::otlp::{Attributes, Origin, ReceivedLog, ReceivedMetric, ReceivedSpan};
use opentelemetry_semantic_conventions::{SCHEMA_URL, attribute as semconv};
use serde_json::Value;

use super::{SCOPE, Sent, points};

/// Methods the HTTP conventions know; any other is exported as `_OTHER`.
pub const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// The HTTP server span of `request`: name, required, conditionally required and
/// recommended attributes (https://opentelemetry.io/docs/specs/semconv/http/http-spans/).
pub fn http_server_span_problems(request: &Sent, span: &ReceivedSpan) -> Vec<String> {
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
pub fn db_span_problems(span: &ReceivedSpan, database: &str) -> Vec<String> {
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
pub fn histogram_problems(
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
pub fn http_duration_problems(metric: &ReceivedMetric) -> Vec<String> {
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
pub fn db_duration_problems(metric: &ReceivedMetric) -> Vec<String> {
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
pub const LOG_SEMCONV_KEYS: [&str; 3] = [
    semconv::EXCEPTION_MESSAGE,
    semconv::HTTP_RESPONSE_STATUS_CODE,
    semconv::URL_FULL,
];
pub const OWN_NAMESPACE: &str = "todo.";

/// The scope of the service's own log records: the bridge names it after the `tracing`
/// target, the crate's module path.
pub const OWN_LOG_SCOPE: &str = "todo_api";

/// A plain log line: no event name (the conventions keep that for named events), and, for
/// the service's own lines, only namespaced attribute names
/// (https://opentelemetry.io/docs/specs/semconv/general/naming/).
pub fn log_problems(log: &ReceivedLog) -> Vec<String> {
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
pub fn schema_problems(what: &str, origin: &Origin) -> Vec<String> {
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
