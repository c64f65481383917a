//! JSON request bodies through the real parser: a body that is not JSON is a
//! `malformed-json` problem, well-formed JSON that breaks the schema a
//! `validation-error` naming each invalid field, whatever the parser's messages say.

use lab_tests::app::TestApp;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

async fn spawn() -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    TestApp::spawn().await
}

/// Sends `body` with `method` to `path` as JSON and returns the 400 problem document.
async fn bad_request(app: &TestApp, method: reqwest::Method, path: &str, body: Vec<u8>) -> Value {
    let response = app
        .client
        .request(method, app.url(path))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    response.json().await.unwrap()
}

fn fields(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap().to_owned(),
                        e["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pair(field: &str, message: &str) -> (String, String) {
    (field.to_owned(), message.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_are_not_json_are_malformed_json() {
    let app = spawn().await;
    for body in [
        br#"{"title": "a""#.to_vec(),
        br#"{"title": "a",}"#.to_vec(),
        b"{\"title\": \"\xff\"}".to_vec(),
        b"title=a".to_vec(),
        Vec::new(),
    ] {
        let problem = bad_request(&app, reqwest::Method::POST, "/api/v1/todos", body.clone()).await;
        assert_eq!(
            problem["type"], "/problems/malformed-json",
            "{:?}: {problem}",
            String::from_utf8_lossy(&body)
        );
        assert!(fields(&problem).is_empty(), "{problem}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_violations_name_every_invalid_field() {
    let app = spawn().await;
    let cases = [
        (
            json!({ "title": 5, "completed": "yes" }),
            vec![
                pair("title", "must be a string"),
                pair("completed", "must be true or false"),
            ],
        ),
        (
            json!({ "title": "", "description": "x".repeat(2001) }),
            vec![
                pair("title", "must not be empty"),
                pair("description", "must be at most 2000 characters"),
            ],
        ),
        (json!({ "description": "d" }), vec![pair("title", "is required")]),
        (
            json!({ "title": "x".repeat(201) }),
            vec![pair("title", "must be at most 200 characters")],
        ),
        (
            json!({ "title": "a\u{0}b" }),
            vec![pair("title", "must not contain NUL characters (U+0000)")],
        ),
        (json!({ "title": "a", "completed": null }), vec![pair("completed", "must not be null")]),
    ];
    for (body, expected) in cases {
        let problem =
            bad_request(&app, reqwest::Method::POST, "/api/v1/todos", body.to_string().into_bytes())
                .await;
        assert_eq!(problem["type"], "/problems/validation-error", "{body}: {problem}");
        assert_eq!(fields(&problem), expected, "{body}: {problem}");
    }
    let problem = bad_request(&app, reqwest::Method::POST, "/api/v1/todos", b"[]".to_vec()).await;
    assert_eq!(problem["type"], "/problems/validation-error", "{problem}");
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_are_checked_by_the_same_schema_rules() {
    let app = spawn().await;
    let created = app.create_ok("t").await;
    let path = format!("/api/v1/todos/{}", created["id"].as_str().unwrap());
    let problem = bad_request(
        &app,
        reqwest::Method::PUT,
        &path,
        json!({ "title": null, "completed": 1 }).to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        fields(&problem),
        [pair("title", "must not be null"), pair("completed", "must be true or false")]
    );
    let problem = bad_request(&app, reqwest::Method::PUT, &path, b"{\"title\":".to_vec()).await;
    assert_eq!(problem["type"], "/problems/malformed-json");
}
