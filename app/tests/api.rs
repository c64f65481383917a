//! The HTTP contract, tested against the real binary and a real Postgres.

use std::time::{Duration, Instant};

use lab_tests::{app::TestApp, postgres::Cluster, proxy::TcpProxy};
use reqwest::{Response, StatusCode, header};
use serde_json::{Value, json};

async fn spawn() -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    TestApp::spawn().await
}

async fn spawn_with(env: &[(&str, &str)]) -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    TestApp::spawn_with(env).await
}

async fn create(app: &TestApp, body: Value) -> Response {
    app.client
        .post(app.url("/api/v1/todos"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn create_ok(app: &TestApp, title: &str) -> Value {
    let response = create(app, json!({ "title": title })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("todo JSON")
}

async fn list(app: &TestApp, query: &str) -> Vec<Value> {
    let response = get(app, &format!("/api/v1/todos{query}")).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "GET /api/v1/todos{query}"
    );
    response.json().await.unwrap()
}

/// `GET path`.
async fn get(app: &TestApp, path: &str) -> Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

/// `GET path`, its body as JSON (status unchecked: the caller asserts what it expects).
async fn get_json(app: &TestApp, path: &str) -> Value {
    get(app, path).await.json().await.unwrap()
}

/// Asserts an RFC 9457 problem document with `status` and returns it.
async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json",
        "problem responses use the problem+json media type"
    );
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    for member in ["type", "title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "`{member}` missing in {body}"
        );
    }
    body
}

fn field_errors(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_root_and_ready() {
    let app = spawn().await;
    let health = get_json(&app, "/health").await;
    assert_eq!(
        health,
        json!({ "status": "healthy", "service": "todo-api" })
    );

    let root = get_json(&app, "/").await;
    assert_eq!(root["name"], "todo-api");
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root["docs"], "/docs");
    assert_eq!(root["health"], "/health");

    let ready = get(&app, "/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn service_name_follows_otel_service_name() {
    let app = spawn_with(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_SERVICE_NAME", "todo-lab"),
    ])
    .await;
    let health = get_json(&app, "/health").await;
    assert_eq!(health["service"], "todo-lab");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_201_with_location_and_the_todo() {
    let app = spawn().await;
    let response = create(
        &app,
        json!({ "title": "Write the lab", "description": "five steps" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let todo: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/todos/{}", todo["id"].as_str().unwrap())
    );
    assert_eq!(todo["title"], "Write the lab");
    assert_eq!(todo["description"], "five steps");
    assert_eq!(todo["completed"], false);
    assert_eq!(todo["created_at"], todo["updated_at"]);
    let created_at = todo["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with("+00:00") || created_at.ends_with('Z'),
        "UTC timestamp: {created_at}"
    );

    let fetched = get_json(&app, &location).await;
    assert_eq!(fetched, todo);
}

#[tokio::test(flavor = "multi_thread")]
async fn trailing_slash_works_for_the_collection() {
    let app = spawn().await;
    let response = app
        .client
        .post(app.url("/api/v1/todos/"))
        .json(&json!({ "title": "slash" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let listed = get_json(&app, "/api/v1/todos/").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_is_newest_first_with_paging_and_filter() {
    let app = spawn().await;
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        ids.push(create_ok(&app, title).await["id"].clone());
    }
    let done = &ids[1];
    let response = app
        .client
        .put(app.url(&format!("/api/v1/todos/{}", done.as_str().unwrap())))
        .json(&json!({ "completed": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let titles = |todos: Vec<Value>| {
        todos
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(titles(list(&app, "").await), ["three", "two", "one"]);
    assert_eq!(titles(list(&app, "?skip=1&limit=1").await), ["two"]);
    assert_eq!(titles(list(&app, "?completed=true").await), ["two"]);
    assert_eq!(
        titles(list(&app, "?completed=false").await),
        ["three", "one"]
    );
    assert_eq!(titles(list(&app, "?limit=1000").await).len(), 3);
    assert!(list(&app, "?skip=10").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_range_paging_is_a_400_naming_the_parameter() {
    let app = spawn().await;
    for (query, field) in [
        ("limit=1001", "limit"),
        ("limit=0", "limit"),
        ("skip=-1", "skip"),
        ("limit=abc", "limit"),
        ("completed=maybe", "completed"),
    ] {
        let response = get(&app, &format!("/api/v1/todos?{query}")).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(field_errors(&body), [field], "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn update_changes_only_present_fields_and_moves_updated_at() {
    let app = spawn().await;
    let todo = create(&app, json!({ "title": "old", "description": "keep me" }))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let url = app.url(&format!("/api/v1/todos/{}", todo["id"].as_str().unwrap()));

    let updated: Value = app
        .client
        .put(&url)
        .json(&json!({ "title": "new" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["title"], "new");
    assert_eq!(updated["description"], "keep me");
    assert_eq!(updated["completed"], false);
    assert_eq!(updated["created_at"], todo["created_at"]);
    assert!(updated["updated_at"].as_str().unwrap() > todo["updated_at"].as_str().unwrap());

    let cleared: Value = app
        .client
        .put(&url)
        .json(&json!({ "description": null, "completed": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["completed"], true);
    assert_eq!(cleared["title"], "new");
}

#[tokio::test(flavor = "multi_thread")]
async fn null_title_on_update_is_a_400_and_changes_nothing() {
    let app = spawn().await;
    let todo = create_ok(&app, "stays").await;
    let url = app.url(&format!("/api/v1/todos/{}", todo["id"].as_str().unwrap()));
    for body in [
        json!({ "title": null }),
        json!({ "completed": null }),
        json!({ "title": "" }),
        json!({ "title": "x".repeat(201) }),
    ] {
        let response = app.client.put(&url).json(&body).send().await.unwrap();
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(field_errors(&problem).len(), 1, "{body} -> {problem}");
    }
    let after: Value = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after, todo, "a failed update wrote nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_then_gone() {
    let app = spawn().await;
    let todo = create_ok(&app, "short-lived").await;
    let url = app.url(&format!("/api/v1/todos/{}", todo["id"].as_str().unwrap()));
    let response = app.client.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(
        app.client.get(&url).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.client.delete(&url).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.client
            .put(&url)
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uuid_is_a_400_naming_todo_id() {
    let app = spawn().await;
    let response = get(&app, "/api/v1/todos/not-a-uuid").await;
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(field_errors(&body), ["todo_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bodies_are_400s_and_write_nothing() {
    let app = spawn().await;
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "NUL in the title",
            json!({ "title": "a\u{0}b" }).to_string(),
            Some("title"),
        ),
        (
            "null completed",
            json!({ "title": "a", "completed": null }).to_string(),
            Some("completed"),
        ),
        (
            "empty title",
            json!({ "title": "" }).to_string(),
            Some("title"),
        ),
        (
            "title too long",
            json!({ "title": "x".repeat(201) }).to_string(),
            Some("title"),
        ),
        (
            "missing title",
            json!({ "description": "no title" }).to_string(),
            None,
        ),
        (
            "title of the wrong type",
            json!({ "title": 5 }).to_string(),
            None,
        ),
        (
            "completed of the wrong type",
            json!({ "title": "a", "completed": "yes" }).to_string(),
            None,
        ),
        ("malformed JSON", r#"{"title": "a""#.to_owned(), None),
        ("not an object", "[]".to_owned(), None),
        ("empty body", String::new(), None),
    ];
    for (case, body, field) in cases {
        let response = app
            .client
            .post(app.url("/api/v1/todos"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        if let Some(field) = field {
            assert_eq!(field_errors(&problem), [field], "{case}: {problem}");
        }
    }
    // 200 characters is allowed, and counted in characters, not bytes.
    create_ok(&app, &"é".repeat(200)).await;
    assert_eq!(
        list(&app, "").await.len(),
        1,
        "only the valid todo was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn().await;
    let response = app
        .client
        .post(app.url("/api/v1/todos"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("title=x")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(list(&app, "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_413_with_or_without_a_length() {
    let app = spawn().await;
    let huge = json!({ "title": "a", "description": "x".repeat(100 * 1024) }).to_string();
    let response = app
        .client
        .post(app.url("/api/v1/todos"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Chunked: no Content-Length to check up front.
    let status_line = chunked_post(&app, "/api/v1/todos", huge.as_bytes()).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(list(&app, "").await.is_empty());
}

/// Sends a body with `Transfer-Encoding: chunked` and returns the status line.
async fn chunked_post(app: &TestApp, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(8192) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(chunk);
        frame.extend_from_slice(b"\r\n");
        if stream.write_all(&frame).await.is_err() {
            break; // the server may answer and close before the whole body is sent
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = spawn().await;
    problem(get(&app, "/api/v1/nothing").await, StatusCode::NOT_FOUND).await;
    problem(get(&app, "/api/v1/todos/a/b").await, StatusCode::NOT_FOUND).await;

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
    let spec = get_json(&app, "/openapi.json").await;
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

    let docs = get(&app, "/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "Swagger UI is served at /docs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_is_a_503_problem_without_database_text_and_recovers() {
    let cluster = Cluster::shared();
    let database_url = cluster.fresh_database();
    let proxy = TcpProxy::start(cluster.address().to_owned()).await;
    let via_proxy = database_url.replace(cluster.address(), &proxy.address);
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let app = TestApp::spawn_on(&via_proxy, &[("OTEL_SDK_DISABLED", "true")]).await;
    create_ok(&app, "before the outage").await;

    proxy.cut().await;
    let started = Instant::now();
    let ready = problem(get(&app, "/ready").await, StatusCode::SERVICE_UNAVAILABLE).await;
    let create = problem(
        create(&app, json!({ "title": "during" })).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "requests fail fast while the database is down"
    );
    for body in [&ready, &create] {
        let text = body.to_string().to_lowercase();
        for leak in ["sqlx", "postgres", "connection refused", "pool", "io error"] {
            assert!(
                !text.contains(leak),
                "database text `{leak}` leaked: {body}"
            );
        }
    }

    proxy.restore();
    lab_tests::wait_for_http(&app.url("/ready"), true, Duration::from_secs(20))
        .await
        .unwrap_or_else(|last| panic!("the service did not recover by itself: {last}"));
    let titles: Vec<String> = list(&app, "")
        .await
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["before the outage"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_database_at_start_up_is_one_line_and_a_non_zero_exit() {
    let port = lab_tests::postgres::free_port().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://todouser:secret@127.0.0.1:{port}/tododb"),
        )
        .env("DATABASE_CONNECT_TIMEOUT_SECS", "1")
        .env("PORT", "0")
        .env("OTEL_SDK_DISABLED", "true")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not a panic trace: {stderr}");
    assert!(lines[0].contains("cannot reach the database"), "{stderr}");
    assert!(
        !lines[0].contains("secret"),
        "the password is not printed: {stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_switch_fails_and_slows_only_the_chosen_routes() {
    let app = spawn_with(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("LAB_FAULT_ERROR_RATE", "1.0"),
        ("LAB_FAULT_LATENCY_MS", "150"),
        ("LAB_FAULT_ROUTES", "/api/v1/todos/{todo_id}"),
    ])
    .await;
    let todo = create_ok(&app, "unaffected route").await;
    let started = Instant::now();
    let response = app
        .client
        .get(app.url(&format!("/api/v1/todos/{}", todo["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    let body = problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_eq!(body["type"], "/problems/injected-fault");
    assert_eq!(get(&app, "/health").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_switch_is_off_by_default_and_rejects_bad_values() {
    let app = spawn().await;
    let todo = create_ok(&app, "healthy").await;
    for _ in 0..20 {
        let status = app
            .client
            .get(app.url(&format!("/api/v1/todos/{}", todo["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"))
        .env_clear()
        .env("LAB_FAULT_ERROR_RATE", "2")
        .env("OTEL_SDK_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("LAB_FAULT_ERROR_RATE=2 is out of range")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    let app = spawn_with(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("LAB_FAULT_LATENCY_MS", "700"),
        ("LAB_FAULT_ROUTES", "/api/v1/todos"),
    ])
    .await;
    let slow = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/todos"));
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let status = app.shutdown();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        slow.await
            .unwrap()
            .expect("the in-flight request completed"),
        StatusCode::OK
    );
}
