//! Bad input: every malformed request is a problem+json 4xx naming what is wrong, and
//! writes nothing.

use lab_tests::app::TestApp;
use lab_tests::problem::{field_errors, problem};
use reqwest::StatusCode;
use serde_json::json;

use todo_api::api::LIMIT_MAX;
use todo_api::body_limit::MAX_BODY_BYTES;
use todo_api::todos::TITLE_MAX;

use crate::spawn;

#[tokio::test(flavor = "multi_thread")]
async fn out_of_range_paging_is_a_400_naming_the_parameter() {
    let app = spawn().await;
    let past_the_limit = format!("limit={}", LIMIT_MAX + 1);
    for (query, field) in [
        (past_the_limit.as_str(), "limit"),
        ("limit=0", "limit"),
        ("skip=-1", "skip"),
        ("limit=abc", "limit"),
        ("completed=maybe", "completed"),
    ] {
        let response = app.get(&format!("/api/v1/todos?{query}")).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(field_errors(&body), [field], "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn null_title_on_update_is_a_400_and_changes_nothing() {
    let app = spawn().await;
    let todo = app.create_ok("stays").await;
    let path = TestApp::todo_path(&todo);
    for body in [
        json!({ "title": null }),
        json!({ "completed": null }),
        json!({ "title": "" }),
        json!({ "title": "x".repeat(TITLE_MAX + 1) }),
    ] {
        let response = app.update(&path, body.clone()).await;
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(field_errors(&problem).len(), 1, "{body} -> {problem}");
    }
    let after = app.get_json(&path).await;
    assert_eq!(after, todo, "a failed update wrote nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uuid_is_a_400_naming_todo_id() {
    let app = spawn().await;
    let response = app.get("/api/v1/todos/not-a-uuid").await;
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
            json!({ "title": "x".repeat(TITLE_MAX + 1) }).to_string(),
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
            .post_raw("/api/v1/todos", "application/json", body)
            .await;
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        if let Some(field) = field {
            assert_eq!(field_errors(&problem), [field], "{case}: {problem}");
        }
    }
    // TITLE_MAX characters is allowed, and counted in characters, not bytes.
    app.create_ok(&"é".repeat(TITLE_MAX)).await;
    assert_eq!(
        app.list("").await.len(),
        1,
        "only the valid todo was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn().await;
    let response = app.post_raw("/api/v1/todos", "text/plain", "title=x").await;
    problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(app.list("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_413_with_or_without_a_length() {
    let app = spawn().await;
    let huge = json!({ "title": "a", "description": "x".repeat(MAX_BODY_BYTES + 1) }).to_string();
    let response = app
        .post_raw("/api/v1/todos", "application/json", huge.clone())
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Chunked: no Content-Length to check up front.
    let status_line = chunked_post(&app, "/api/v1/todos", huge.as_bytes()).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(app.list("").await.is_empty());
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
