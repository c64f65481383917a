//! The database away: an outage mid-run is a 503 without database text and heals by
//! itself; an unreachable database at start-up is one line and a non-zero exit.

use std::time::{Duration, Instant};

use lab_tests::{app::TestApp, postgres::Cluster, problem::problem, proxy::TcpProxy};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_is_a_503_problem_without_database_text_and_recovers() {
    let cluster = Cluster::shared();
    let database_url = cluster.fresh_database();
    let proxy = TcpProxy::start(cluster.address().to_owned()).await;
    let via_proxy = database_url.replace(cluster.address(), &proxy.address);
    lab_tests::app::use_binary(env!("CARGO_BIN_EXE_todo-api"));
    let app = TestApp::spawn_on(&via_proxy, &[("OTEL_SDK_DISABLED", "true")]).await;
    app.create_ok("before the outage").await;

    proxy.cut().await;
    let started = Instant::now();
    let ready = problem(app.get("/ready").await, StatusCode::SERVICE_UNAVAILABLE).await;
    let create = problem(
        app.create(json!({ "title": "during" })).await,
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
    let titles: Vec<String> = app
        .list("")
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
