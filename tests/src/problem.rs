//! The service's error answers: RFC 9457 problem documents.

use reqwest::{Response, StatusCode, header};
use serde_json::Value;

/// Asserts an RFC 9457 problem document with `status` and returns it.
pub async fn problem(response: Response, status: StatusCode) -> Value {
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

/// The `field` of every entry of the problem's `errors` (none when it has no `errors`).
pub fn field_errors(problem: &Value) -> Vec<String> {
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
