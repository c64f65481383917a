//! The todo resource's happy paths: create, read, list with paging and filter, update,
//! delete.

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use lab_tests::{app::TestApp, problem::problem};

use todo_api::api::LIMIT_MAX;

use crate::spawn;

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_201_with_location_and_the_todo() {
    let app = spawn().await;
    let response = app
        .create(json!({ "title": "Write the lab", "description": "five steps" }))
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

    let fetched = app.get_json(&location).await;
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
    let listed = app.get_json("/api/v1/todos/").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_is_newest_first_with_paging_and_filter() {
    let app = spawn().await;
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        ids.push(app.create_ok(title).await["id"].clone());
    }
    let done = format!("/api/v1/todos/{}", ids[1].as_str().unwrap());
    let response = app.update(&done, json!({ "completed": true })).await;
    assert_eq!(response.status(), StatusCode::OK);

    let titles = |todos: Vec<Value>| {
        todos
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(titles(app.list("").await), ["three", "two", "one"]);
    assert_eq!(titles(app.list("?skip=1&limit=1").await), ["two"]);
    assert_eq!(titles(app.list("?completed=true").await), ["two"]);
    assert_eq!(titles(app.list("?completed=false").await), ["three", "one"]);
    assert_eq!(
        titles(app.list(&format!("?limit={LIMIT_MAX}")).await).len(),
        3
    );
    assert!(app.list("?skip=10").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn update_changes_only_present_fields_and_moves_updated_at() {
    let app = spawn().await;
    let todo = app
        .create(json!({ "title": "old", "description": "keep me" }))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let path = TestApp::todo_path(&todo);

    let updated: Value = app
        .update(&path, json!({ "title": "new" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(updated["title"], "new");
    assert_eq!(updated["description"], "keep me");
    assert_eq!(updated["completed"], false);
    assert_eq!(updated["created_at"], todo["created_at"]);
    assert!(updated["updated_at"].as_str().unwrap() > todo["updated_at"].as_str().unwrap());

    let cleared: Value = app
        .update(&path, json!({ "description": null, "completed": true }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["completed"], true);
    assert_eq!(cleared["title"], "new");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_then_gone() {
    let app = spawn().await;
    let todo = app.create_ok("short-lived").await;
    let path = TestApp::todo_path(&todo);
    let delete = || app.client.delete(app.url(&path)).send();
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT);
    problem(app.get(&path).await, StatusCode::NOT_FOUND).await;
    problem(delete().await.unwrap(), StatusCode::NOT_FOUND).await;
    problem(
        app.update(&path, json!({"title": "x"})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
