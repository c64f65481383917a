//! The real `todo-api` binary, started per test on a random port against its own
//! database.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{postgres::Cluster, process::Server};

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub database_url: String,
    pub client: reqwest::Client,
    server: Server,
}

/// Every signal exported over OTLP with `protocol` (the lab's, from stack/lab.env: the
/// caller reads it) to `endpoint`, with a metric interval of 1 s (shorter than the
/// lab's 5 s, to keep the end-to-end tests short).
pub fn otlp_env<'a>(protocol: &'a str, endpoint: &'a str) -> [(&'static str, &'a str); 6] {
    [
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
    ]
}

impl TestApp {
    /// Starts the service with a fresh database and telemetry off.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[("OTEL_SDK_DISABLED", "true")]).await
    }

    /// Starts the service with a fresh database and extra environment variables.
    pub async fn spawn_with(env: &[(&str, &str)]) -> TestApp {
        let database_url = Cluster::shared().fresh_database();
        Self::spawn_on(&database_url, env).await
    }

    /// Starts the service against `database_url`.
    pub async fn spawn_on(database_url: &str, env: &[(&str, &str)]) -> TestApp {
        let mut command = Command::new(binary());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("APP_HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("RUST_LOG", "info")
            .env("DATABASE_CONNECT_TIMEOUT_SECS", "5")
            .envs(env.iter().copied());
        let (server, address) = tokio::task::block_in_place(|| {
            Server::start(&mut command, |line| {
                line.strip_prefix("listening on ").map(str::to_owned)
            })
        })
        .unwrap_or_else(|error| panic!("todo-api did not start: {error:#}"));
        TestApp {
            address,
            database_url: database_url.to_owned(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("reqwest client"),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The path of one todo, `/api/v1/todos/{id}`, its id read from the todo's JSON.
    pub fn todo_path(todo: &Value) -> String {
        format!(
            "/api/v1/todos/{}",
            todo["id"].as_str().expect("a todo has an id")
        )
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// `GET path`, its body as JSON (status unchecked: the caller asserts what it
    /// expects).
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.expect("a JSON body")
    }

    /// `POST /api/v1/todos` with `body`.
    pub async fn create(&self, body: Value) -> Response {
        self.client
            .post(self.url("/api/v1/todos"))
            .json(&body)
            .send()
            .await
            .expect("POST /api/v1/todos")
    }

    /// `POST path` with `body` as it is, declared as `content_type`.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Creates a todo titled `title`, asserting the 201, and returns it.
    pub async fn create_ok(&self, title: &str) -> Value {
        let response = self.create(json!({ "title": title })).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("todo JSON")
    }

    /// `PUT path` with `body`.
    pub async fn update(&self, path: &str, body: Value) -> Response {
        self.client
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("PUT")
    }

    /// `GET /api/v1/todos{query}`, asserting the 200.
    pub async fn list(&self, query: &str) -> Vec<Value> {
        let response = self.get(&format!("/api/v1/todos{query}")).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "GET /api/v1/todos{query}"
        );
        response.json().await.expect("a JSON list")
    }

    /// What the service printed so far (console logs and exporter messages).
    pub fn output(&self) -> String {
        self.server.output()
    }

    /// The service's process id (for signals and `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.server.pid().expect("todo-api is running")
    }

    /// SIGTERM, then wait: a graceful shutdown flushes telemetry before exit.
    pub fn shutdown(mut self) -> std::process::ExitStatus {
        tokio::task::block_in_place(|| self.server.terminate()).expect("todo-api exits")
    }
}

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Tells the kit which `todo-api` binary to run; the service's own tests pass
/// `env!("CARGO_BIN_EXE_todo-api")`, which cargo keeps fresh.
pub fn use_binary(path: &str) {
    let _ = BINARY.set(PathBuf::from(path));
}

/// The `todo-api` binary: the one given to [`use_binary`], else the workspace's debug
/// build (`cargo test --workspace` builds it before running any test).
pub fn binary() -> &'static Path {
    BINARY.get_or_init(|| crate::binaries::debug_binary("todo-api"))
}
