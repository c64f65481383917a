//! Database client spans (one per SQL statement, child of the request's server span) and
//! the connection pool's usage.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
};

use opentelemetry::{
    Context, KeyValue, StringValue, global,
    trace::{FutureExt, SpanKind, Status, TraceContextExt, Tracer},
};
use opentelemetry_semantic_conventions::{attribute as semconv, metric as semconv_metric};
use sqlx::PgPool;

/// Where the database lives (`server.address`, `server.port`, `db.namespace`) and the
/// name of the peer (`peer.service`), recorded on every client span.
static SERVER: OnceLock<Vec<KeyValue>> = OnceLock::new();

/// The database's node in the service graph. Tempo's metrics generator (the one in
/// grafana/otel-lgtm) makes a CLIENT span with `db.namespace` a database edge and names
/// its server after `peer.service`, else `server.address` - which would be `127.0.0.1`
/// or `postgres` depending on where the lab runs.
const PEER_SERVICE: &str = "postgresql";

/// The span name and attributes of one SQL statement, worked out once per call site
/// (see [`crate::traced`]) rather than on every query.
pub struct Statement {
    name: String,
    attributes: Vec<KeyValue>,
}

impl Statement {
    pub fn new(text: &'static str) -> Self {
        let (operation, collection) = summarize(text);
        let mut attributes = vec![
            KeyValue::new(semconv::DB_SYSTEM_NAME, "postgresql"),
            KeyValue::new(semconv::DB_OPERATION_NAME, operation),
            KeyValue::new(semconv::DB_QUERY_TEXT, text),
        ];
        let name = match collection {
            Some(collection) => {
                attributes.push(KeyValue::new(semconv::DB_COLLECTION_NAME, collection));
                format!("{operation} {collection}")
            }
            None => operation.to_owned(),
        };
        Self { name, attributes }
    }
}

/// Runs a sqlx query inside a CLIENT span. Use it through [`crate::traced`], which passes
/// the statement text that sqlx's macros checked at compile time: it is parameterised
/// (`$1`), so no literal value can reach `db.query.text`.
pub async fn in_client_span<T>(
    statement: &'static Statement,
    query: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let Some(tracer) = super::tracer() else {
        return query.await;
    };
    let parent = Context::current();
    let mut attributes = Vec::with_capacity(statement.attributes.len() + 5);
    attributes.extend_from_slice(&statement.attributes);
    attributes.extend(SERVER.get().into_iter().flatten().cloned());
    attributes.extend(super::baggage::span_attributes(&parent));
    let span = tracer
        .span_builder(statement.name.as_str())
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    let context = parent.with_span(span);
    let result = query.with_context(context.clone()).await;
    let span = context.span();
    if let Err(error) = &result {
        span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type(error)));
        span.set_status(Status::error(""));
    }
    span.end();
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

fn error_type(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Database(_) => "database_error",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::Io(_) => "io_error",
        sqlx::Error::RowNotFound => "row_not_found",
        _ => "sqlx_error",
    }
}

/// Records the server address for client spans and reports the pool's connections
/// (`db.client.connection.count`, by state) at each metric export.
pub fn observe_pool(pool: &PgPool) {
    let options = pool.connect_options();
    let address = StringValue::from(Arc::<str>::from(options.get_host()));
    let mut server = vec![
        KeyValue::new(semconv::SERVER_ADDRESS, address),
        KeyValue::new(semconv::SERVER_PORT, i64::from(options.get_port())),
        // `peer.service` is deprecated for `service.peer.name` in the newest conventions,
        // but it is the name Tempo v3.0.3's generator reads (semconv 1.25's PeerServiceKey).
        KeyValue::new("peer.service", PEER_SERVICE),
    ];
    // Postgres connects to the database named like the user when the URL names none.
    let database = options.get_database().unwrap_or(options.get_username());
    server.push(KeyValue::new(semconv::DB_NAMESPACE, database.to_owned()));
    let _ = SERVER.set(server);

    let pool = pool.clone();
    global::meter(super::SCOPE)
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
