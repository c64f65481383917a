//! The HTTP contract, tested against the real binary and a real Postgres: one module a
//! concern.

mod bad_input;
mod database;
mod faults_and_shutdown;
mod limits;
mod service;
mod todos;

use lab_tests::app::TestApp;

/// The service with a fresh database and telemetry off.
async fn spawn() -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    TestApp::spawn().await
}

/// The service with a fresh database and `env` on top.
async fn spawn_with(env: &[(&str, &str)]) -> TestApp {
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    TestApp::spawn_with(env).await
}
