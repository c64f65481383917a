//! The service's own endpoints and routing: health, readiness, the root document, the
//! OpenAPI document and Swagger UI, 404 and 405 answers.

use reqwest::{StatusCode, header};
use serde_json::json;

use lab_tests::problem::problem;

use crate::{spawn, spawn_with};

#[tokio::test(flavor = "multi_thread")]
async fn health_root_and_ready() {
    let app = spawn().await;
    let health = app.get_json("/health").await;
    assert_eq!(
        health,
        json!({ "status": "healthy", "service": "todo-api" })
    );

    let root = app.get_json("/").await;
    assert_eq!(root["name"], "todo-api");
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root["docs"], "/docs");
    assert_eq!(root["health"], "/health");

    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn service_name_follows_otel_service_name() {
    let app = spawn_with(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_SERVICE_NAME", "todo-lab"),
    ])
    .await;
    let health = app.get_json("/health").await;
    assert_eq!(health["service"], "todo-lab");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = spawn().await;
    problem(app.get("/api/v1/nothing").await, StatusCode::NOT_FOUND).await;
    problem(app.get("/api/v1/todos/a/b").await, StatusCode::NOT_FOUND).await;

    let response = app
        .client
        .patch(app.url("/api/v1/todos"))
        .send()
        .await
        .unwrap();
    let allow = response.headers()[header::ALLOW]
        .to_str()
        .unwrap()
        .to_owned();
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(allow, "GET, POST");
    let response = app.client.post(app.url("/health")).send().await.unwrap();
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_lists_every_route_and_its_problem_responses() {
    let app = spawn().await;
    let spec = app.get_json("/openapi.json").await;
    let paths = spec["paths"].as_object().unwrap();
    let mut routes: Vec<String> = paths
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            "DELETE /api/v1/todos/{todo_id}",
            "GET /",
            "GET /api/v1/todos",
            "GET /api/v1/todos/{todo_id}",
            "GET /health",
            "GET /ready",
            "POST /api/v1/todos",
            "PUT /api/v1/todos/{todo_id}",
        ]
    );
    let create = &paths["/api/v1/todos"]["post"]["responses"];
    for status in ["201", "400", "413", "500", "503"] {
        assert!(
            create.get(status).is_some(),
            "POST /api/v1/todos declares {status}"
        );
    }
    assert!(create["400"]["content"]["application/problem+json"]["schema"].is_object());
    assert!(spec["components"]["schemas"]["Problem"].is_object());

    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "Swagger UI is served at /docs"
    );
}
