//! Each middleware owns one concern: route resolution is a middleware of its own, so the
//! fault switch and the problem documents' `Allow` header do not depend on the telemetry
//! middleware. These run the real application in-process, without telemetry and with a
//! database pool that never connects (no check here reaches a handler that queries).

use std::time::{Duration, Instant};

use poem::{
    Endpoint, Request, Response,
    http::{Method, StatusCode, header},
};
use sqlx::postgres::PgPoolOptions;
use todo_api::{config::Settings, faults::FaultSettings, startup};

const TODO_ROUTE: &str = "/api/v1/todos/{todo_id}";

fn settings(faults: FaultSettings) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: todo_api::config::DEFAULT_DATABASE_URL.into(),
        database_max_connections: 1,
        database_connect_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
        faults,
    }
}

fn app_without_telemetry(faults: FaultSettings) -> impl Endpoint {
    let pool = PgPoolOptions::new()
        .connect_lazy(todo_api::config::DEFAULT_DATABASE_URL)
        .expect("a lazy pool");
    startup::build_app_without_telemetry(pool, &settings(faults)).expect("the app builds")
}

async fn send(app: &impl Endpoint, method: Method, path: &str) -> Response {
    app.get_response(Request::builder().method(method).uri_str(path).finish())
        .await
}

async fn problem_type(response: Response) -> String {
    let body: serde_json::Value =
        serde_json::from_slice(&response.into_body().into_vec().await.unwrap()).unwrap();
    body["type"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn faults_hit_their_route_without_the_telemetry_middleware() {
    let app = app_without_telemetry(FaultSettings {
        error_rate: 1.0,
        latency: Duration::from_millis(200),
        routes: vec![TODO_ROUTE.into()],
    });
    let started = Instant::now();
    let response = send(
        &app,
        Method::GET,
        &format!("/api/v1/todos/{}", uuid::Uuid::new_v4()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the latency applies"
    );
    assert_eq!(problem_type(response).await, "/problems/injected-fault");

    // Other routes are untouched (and /health does not need the database).
    let health = send(&app, Method::GET, "/health").await;
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn allow_header_names_the_routes_methods_without_the_telemetry_middleware() {
    let app = app_without_telemetry(FaultSettings::default());
    let response = send(&app, Method::PATCH, "/api/v1/todos").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers().get(header::ALLOW).unwrap(),
        "GET, POST",
        "the Allow header of the resolved route"
    );
    let response = send(
        &app,
        Method::PATCH,
        &format!("/api/v1/todos/{}/", uuid::Uuid::new_v4()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers().get(header::ALLOW).unwrap(),
        "DELETE, GET, PUT"
    );
    assert_eq!(problem_type(response).await, "/problems/method-not-allowed");
}

#[tokio::test]
async fn a_path_with_no_route_gets_no_allow_header() {
    let app = app_without_telemetry(FaultSettings {
        error_rate: 1.0,
        ..Default::default()
    });
    let response = send(&app, Method::GET, "/no/such/path").await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "no fault off-route"
    );
    assert!(response.headers().get(header::ALLOW).is_none());
}

#[tokio::test]
async fn an_unknown_fault_route_refuses_to_start_naming_the_variable() {
    let pool = PgPoolOptions::new()
        .connect_lazy(todo_api::config::DEFAULT_DATABASE_URL)
        .unwrap();
    let faults = FaultSettings {
        error_rate: 1.0,
        routes: vec!["/api/v1/todos/:todo_id".into()],
        ..Default::default()
    };
    let Err(error) = startup::build_app(pool, &settings(faults)) else {
        panic!("an unknown LAB_FAULT_ROUTES entry was accepted");
    };
    let message = format!("{error:#}");
    assert!(message.starts_with("LAB_FAULT_ROUTES: "), "{message}");
    assert!(
        message.contains(TODO_ROUTE),
        "names the known routes: {message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}
