//! Wiring: database, routes, middleware, server, shutdown.

use std::time::Duration;

use anyhow::Context as _;
use poem::{
    EndpointExt, Route, Server,
    listener::{Acceptor, Listener, TcpListener},
    middleware::{NormalizePath, TrailingSlash},
};
use poem_openapi::OpenApiService;
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::{
    api::{ServiceApi, TodosApi},
    body_limit::BodyLimit,
    config::Settings,
    faults::Faults,
    head_timeout::{HEADER_READ_TIMEOUT, HeadTimeout},
    problem::Problems,
    routes::{ResolveRoute, RouteTable},
    telemetry::{self, Telemetry, http::HttpTelemetry},
    todos::TodoStore,
};

/// Routes served outside the OpenAPI document.
const DOCS_ROUTES: [&str; 2] = ["/docs", "/openapi.json"];

/// Runs the service until SIGINT/SIGTERM, then drains requests and telemetry.
pub async fn run(settings: Settings, telemetry: Telemetry) -> anyhow::Result<()> {
    let pool = connect(&settings).await?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .context("applying database migrations")?;
    telemetry::db::observe_pool(&pool);
    if settings.faults.is_active() {
        tracing::warn!(todo.fault_switch = ?settings.faults, "lab fault switch is ON");
    }

    let app = build_app(pool.clone(), &settings)?;
    let acceptor = TcpListener::bind((settings.host.as_str(), settings.port))
        .into_acceptor()
        .await
        .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
    let acceptor = HeadTimeout::new(acceptor, HEADER_READ_TIMEOUT);
    let address = acceptor.local_addr().remove(0);
    let address = address.as_socket_addr().context("a TCP address")?;
    // Printed (not logged) so that scripts and tests can wait for it whatever RUST_LOG says.
    println!("listening on http://{address}");
    tracing::info!(url.full = %format!("http://{address}/docs"), "todo-api started");

    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown_signal(), Some(settings.shutdown_grace))
        .await
        .context("serving HTTP")?;
    tracing::info!("shutting down: flushing telemetry");
    pool.close().await;
    telemetry.shutdown(Duration::from_secs(5));
    Ok(())
}

/// The whole HTTP application. Middleware order, outside in: route resolution (which
/// every other middleware reads); telemetry sees the final status of everything;
/// problems turns every error into a problem document; the body limit and the fault
/// switch run before routing.
pub fn build_app(pool: PgPool, settings: &Settings) -> anyhow::Result<impl poem::Endpoint + use<>> {
    compose(pool, settings, true)
}

/// The application without its telemetry middleware: the fault switch, the problem
/// documents and their `Allow` headers work without it (the tests hold this).
pub fn build_app_without_telemetry(
    pool: PgPool,
    settings: &Settings,
) -> anyhow::Result<impl poem::Endpoint + use<>> {
    compose(pool, settings, false)
}

fn compose(
    pool: PgPool,
    settings: &Settings,
    with_telemetry: bool,
) -> anyhow::Result<impl poem::Endpoint + use<>> {
    let store = TodoStore::new(pool);
    let api = OpenApiService::new(
        (
            ServiceApi {
                store: store.clone(),
            },
            TodosApi { store },
        ),
        "Todo API",
        env!("CARGO_PKG_VERSION"),
    )
    .description("The otel-lab Todo service. Every error is an RFC 9457 problem document.");
    let spec = api.spec();
    let routes = RouteTable::new(&spec, &DOCS_ROUTES)?;
    settings.faults.check_routes(&routes)?;
    let docs = api.swagger_ui();

    let app = Route::new()
        .nest("/docs", docs)
        .at(
            "/openapi.json",
            poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json")
                    .body(spec.clone())
            }),
        )
        .nest("/", api)
        .with(NormalizePath::new(TrailingSlash::Trim))
        .with(Faults(settings.faults.clone()))
        .with(BodyLimit)
        .with(Problems)
        .with_if(with_telemetry, HttpTelemetry)
        .with(ResolveRoute::new(routes));
    Ok(app)
}

/// Connects to Postgres, retrying for a bounded time so that `docker compose up` order
/// does not matter, then fails with one clear line instead of a panic.
async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let options = PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        // Fail a request fast with 503 when the database is gone, rather than hang.
        .acquire_timeout(Duration::from_secs(3))
        // sqlx pings every connection it hands out by default: one extra round trip per
        // query, which doubled Postgres' work per request (bench/README.md). A broken
        // connection fails its query instead (503) and is then dropped from the pool.
        .test_before_acquire(false);
    let deadline = tokio::time::Instant::now() + settings.database_connect_timeout;
    let mut delay = Duration::from_millis(200);
    loop {
        match options.clone().connect(&settings.database_url).await {
            Ok(pool) => return Ok(pool),
            Err(error) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(exception.message = %error, todo.database.retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot reach the database at {} after {:?} (is Postgres running? check DATABASE_URL)",
                        redact(&settings.database_url),
                        settings.database_connect_timeout
                    )
                });
            }
        }
    }
}

/// The database URL without its password, for error messages. One that does not parse
/// is not shown at all: it may hold the password where no parser would find it.
fn redact(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Fails only for URLs that cannot have credentials, which have none.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(DATABASE_URL, which is not a valid URL)".to_owned(),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn hides_the_password() {
        assert_eq!(
            redact("postgres://todouser:secret@127.0.0.1:5432/tododb"),
            "postgres://todouser:***@127.0.0.1:5432/tododb"
        );
        assert_eq!(redact("postgres://localhost/db"), "postgres://localhost/db");
        assert_eq!(
            redact("postgres://todouser:p%40ss:word@db:5432/tododb?sslmode=disable"),
            "postgres://todouser:***@db:5432/tododb?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://todouser:secret@[::1"),
            "(DATABASE_URL, which is not a valid URL)"
        );
    }
}
