//! The published OpenAPI document, checked by a validator that is not the code that
//! wrote it: `openapi-spec-validator` (PyPI, pinned in `tests/contract/requirements.txt`:
//! `python3 -m pip install -r tests/contract/requirements.txt`).

use std::{collections::BTreeMap, process::Command};

use lab_tests::app::TestApp;
use serde_json::Value;

async fn published_document() -> Value {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert!(response.status().is_success());
    response.json().await.unwrap()
}

/// The validator's verdict on `document`: `Ok` or its report.
fn validate(document: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !report.contains("No module named openapi_spec_validator"),
        "openapi-spec-validator is not installed: \
         python3 -m pip install -r tests/contract/requirements.txt"
    );
    if output.status.success() {
        Ok(())
    } else {
        Err(report)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_published_document_is_valid_openapi_3() {
    let document = published_document().await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.0"));
    if let Err(report) = validate(&document) {
        panic!("/openapi.json is not valid:\n{report}");
    }
}

/// The defect this check was written for: a non-nullable string with `"default": null`
/// (`Problem.trace_id` had it). The validator must refuse it, or the check above proves
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_validator_rejects_a_null_default_on_a_non_nullable_string() {
    let mut document = published_document().await;
    let trace_id = &mut document["components"]["schemas"]["Problem"]["properties"]["trace_id"];
    assert_eq!(trace_id["type"], "string", "{trace_id}");
    trace_id["default"] = Value::Null;
    let report = validate(&document).expect_err("the broken document was accepted");
    assert!(report.contains("not nullable"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_has_a_stable_readable_id() {
    let document = published_document().await;
    let mut ids = BTreeMap::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ids.insert(format!("{} {path}", method.to_uppercase()), id.to_owned());
        }
    }
    let expected: BTreeMap<String, String> = [
        ("GET /", "getServiceInfo"),
        ("GET /health", "getHealth"),
        ("GET /ready", "getReadiness"),
        ("GET /api/v1/todos", "listTodos"),
        ("POST /api/v1/todos", "createTodo"),
        ("GET /api/v1/todos/{todo_id}", "getTodo"),
        ("PUT /api/v1/todos/{todo_id}", "updateTodo"),
        ("DELETE /api/v1/todos/{todo_id}", "deleteTodo"),
    ]
    .into_iter()
    .map(|(operation, id)| (operation.to_owned(), id.to_owned()))
    .collect();
    assert_eq!(ids, expected);
}
