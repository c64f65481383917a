//! Database client spans (one per SQL statement, child of the request's server span),
//! the `db.client.operation.duration` histogram and the connection pool's usage.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Instant,
};

use opentelemetry::{
    Context, KeyValue, StringValue,
    metrics::{Histogram, Meter},
    trace::{FutureExt, SpanKind, Status, TraceContextExt, Tracer},
};
use opentelemetry_semantic_conventions::{attribute as semconv, metric as semconv_metric};
use sqlx::PgPool;

/// The database the pool talks to (`db.namespace`, `server.address`, `server.port`),
/// recorded on every client span and operation duration.
static CONNECTION: OnceLock<Vec<KeyValue>> = OnceLock::new();

static OPERATION_DURATION: OnceLock<Histogram<f64>> = OnceLock::new();

/// Bucket boundaries the semantic conventions recommend for `db.client.operation.duration`.
const DURATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

pub(super) fn register_metrics(meter: &Meter) {
    let histogram = meter
        .f64_histogram(semconv_metric::DB_CLIENT_OPERATION_DURATION)
        .with_unit("s")
        .with_description("Duration of database client operations.")
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build();
    let _ = OPERATION_DURATION.set(histogram);
}

/// The database's node in the service graph. Tempo's metrics generator (the one in
/// grafana/otel-lgtm) makes a CLIENT span with `db.namespace` a database edge and names
/// its server after `peer.service`, else `server.address` - which would be `127.0.0.1`
/// or `postgres` depending on where the lab runs. Spans only: it is no attribute of the
/// `db.client.operation.duration` metric.
const PEER_SERVICE: &str = "postgresql";

/// The span name and attributes of one SQL statement, worked out once per call site
/// (see [`crate::traced`]) rather than on every query.
pub struct Statement {
    name: String,
    /// Those of the metric: everything but the query text, which is opt-in there.
    attributes: Vec<KeyValue>,
    text: &'static str,
}

impl Statement {
    pub fn new(text: &'static str) -> Self {
        let (operation, collection) = summarize(text);
        let mut attributes = vec![
            KeyValue::new(semconv::DB_SYSTEM_NAME, "postgresql"),
            KeyValue::new(semconv::DB_OPERATION_NAME, operation),
        ];
        let name = match collection {
            Some(collection) => {
                attributes.push(KeyValue::new(semconv::DB_COLLECTION_NAME, collection));
                format!("{operation} {collection}")
            }
            None => operation.to_owned(),
        };
        Self {
            name,
            attributes,
            text,
        }
    }

    /// The statement's attributes plus those of the connection.
    fn attributes(&self, extra: usize) -> Vec<KeyValue> {
        let connection = CONNECTION.get().map_or(&[][..], Vec::as_slice);
        let mut attributes = Vec::with_capacity(self.attributes.len() + connection.len() + extra);
        attributes.extend_from_slice(&self.attributes);
        attributes.extend_from_slice(connection);
        attributes
    }
}

/// Runs a sqlx query inside a CLIENT span and records its duration. Use it through
/// [`crate::traced`], which passes the statement text that sqlx's macros checked at
/// compile time: it is parameterised (`$1`), so no literal value can reach `db.query.text`.
pub async fn in_client_span<T>(
    statement: &'static Statement,
    query: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let histogram = OPERATION_DURATION.get();
    let tracer = super::tracer();
    if histogram.is_none() && tracer.is_none() {
        return query.await;
    }
    let started = Instant::now();
    let context = tracer.map(|tracer| {
        let parent = Context::current();
        let mut attributes = statement.attributes(3);
        attributes.push(KeyValue::new(semconv::DB_QUERY_TEXT, statement.text));
        // `peer.service` is deprecated for `service.peer.name` in the newest conventions,
        // but it is the name Tempo v3.0.3's generator reads (semconv 1.25's PeerServiceKey).
        attributes.push(KeyValue::new("peer.service", PEER_SERVICE));
        attributes.extend(super::baggage::span_attributes(&parent));
        let span = tracer
            .span_builder(statement.name.as_str())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        parent.with_span(span)
    });
    let result = match &context {
        Some(context) => query.with_context(context.clone()).await,
        None => query.await,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let failure = result.as_ref().err().map(|error| {
        let mut attributes = vec![KeyValue::new(semconv::ERROR_TYPE, error_type(error))];
        if let Some(code) = sqlstate(error) {
            attributes.push(KeyValue::new(semconv::DB_RESPONSE_STATUS_CODE, code));
        }
        attributes
    });
    if let Some(context) = context {
        let span = context.span();
        if let Some(failure) = &failure {
            span.set_attributes(failure.iter().cloned());
            span.set_status(Status::error(""));
        }
        span.end();
    }
    if let Some(histogram) = histogram {
        let mut attributes = statement.attributes(2);
        attributes.extend(failure.into_iter().flatten());
        histogram.record(elapsed, &attributes);
    }
    result
}

/// Runs a compile-time checked sqlx query in a database client span:
/// `traced!(fetch_optional(&pool), query_as!(Todo, "SELECT ... WHERE id = $1", id))`.
#[macro_export]
macro_rules! traced {
    ($fetch:ident($executor:expr), query_as!($out:path, $sql:literal $(, $arg:expr)* $(,)?)) => {{
        static STATEMENT: ::std::sync::LazyLock<$crate::telemetry::db::Statement> =
            ::std::sync::LazyLock::new(|| $crate::telemetry::db::Statement::new($sql));
        $crate::telemetry::db::in_client_span(
            &STATEMENT,
            ::sqlx::query_as!($out, $sql $(, $arg)*).$fetch($executor),
        )
    }};
    ($fetch:ident($executor:expr), query!($sql:literal $(, $arg:expr)* $(,)?)) => {{
        static STATEMENT: ::std::sync::LazyLock<$crate::telemetry::db::Statement> =
            ::std::sync::LazyLock::new(|| $crate::telemetry::db::Statement::new($sql));
        $crate::telemetry::db::in_client_span(
            &STATEMENT,
            ::sqlx::query!($sql $(, $arg)*).$fetch($executor),
        )
    }};
}

/// The operation and table of a statement: `SELECT ... FROM todos` -> (`SELECT`, `todos`).
fn summarize(statement: &'static str) -> (&'static str, Option<&'static str>) {
    let mut words = statement.split_whitespace();
    let operation = words.next().unwrap_or("QUERY");
    let keyword = match operation.to_ascii_uppercase().as_str() {
        "SELECT" | "DELETE" => "FROM",
        "INSERT" => "INTO",
        "UPDATE" => return (operation, words.next()),
        _ => return (operation, None),
    };
    let collection = words
        .skip_while(|word| !word.eq_ignore_ascii_case(keyword))
        .nth(1)
        .map(|table| table.trim_end_matches([';', ')', '(', ',']));
    (operation, collection)
}

/// Postgres' SQLSTATE of a failed statement (`23505`), the conventions'
/// `db.response.status_code`.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

fn error_type(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Database(_) => "database_error",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::Io(_) => "io_error",
        sqlx::Error::RowNotFound => "row_not_found",
        _ => "sqlx_error",
    }
}

/// Records the database and its server for client spans and operation durations, and
/// reports the pool's connections (`db.client.connection.count`, by state) at each
/// metric export.
pub fn observe_pool(pool: &PgPool) {
    let options = pool.connect_options();
    let address = StringValue::from(Arc::<str>::from(options.get_host()));
    let mut connection = Vec::with_capacity(3);
    // Postgres' namespace is the database, qualified by the schema only when that is known
    // without asking the server: it is not (search_path), so the database alone.
    // Postgres connects to the database named like the user when the URL names none.
    let database = options.get_database().unwrap_or(options.get_username());
    let database = StringValue::from(Arc::<str>::from(database));
    connection.push(KeyValue::new(semconv::DB_NAMESPACE, database));
    connection.push(KeyValue::new(semconv::SERVER_ADDRESS, address));
    connection.push(KeyValue::new(
        semconv::SERVER_PORT,
        i64::from(options.get_port()),
    ));
    let _ = CONNECTION.set(connection);

    let pool = pool.clone();
    super::meter()
        .i64_observable_up_down_counter(semconv_metric::DB_CLIENT_CONNECTION_COUNT)
        .with_unit("{connection}")
        .with_description("Connections of the service's Postgres pool, by state.")
        .with_callback(move |observer| {
            let idle = pool.num_idle() as i64;
            let used = i64::from(pool.size()) - idle;
            for (state, count) in [("idle", idle), ("used", used)] {
                observer.observe(
                    count,
                    &[
                        KeyValue::new(semconv::DB_CLIENT_CONNECTION_POOL_NAME, "todo-api"),
                        KeyValue::new(semconv::DB_CLIENT_CONNECTION_STATE, state),
                    ],
                );
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn names_operation_and_table() {
        assert_eq!(
            summarize("SELECT id FROM todos WHERE id = $1"),
            ("SELECT", Some("todos"))
        );
        assert_eq!(
            summarize("INSERT INTO todos (id) VALUES ($1)"),
            ("INSERT", Some("todos"))
        );
        assert_eq!(
            summarize("UPDATE todos SET title = $2"),
            ("UPDATE", Some("todos"))
        );
        assert_eq!(
            summarize("DELETE FROM todos WHERE id = $1"),
            ("DELETE", Some("todos"))
        );
        assert_eq!(summarize("SELECT 1"), ("SELECT", None));
    }
}
