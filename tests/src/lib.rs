//! The test kit: real servers on loopback for the workspace's tests.
//!
//! - [`postgres`]: a throwaway Postgres cluster (or `DATABASE_URL`), one fresh database
//!   per test;
//! - [`app`]: the real `todo-api` binary as a child process on a random port;
//! - [`binaries`]: the workspace's built binaries, refused when stale;
//! - [`otlp`]: an OTLP receiver (gRPC and HTTP/protobuf) that records what it gets;
//! - [`native`]: the native Prometheus, sink and lab collector, started through
//!   `stack/native/run.sh` on free loopback ports;
//! - [`process`]: child processes that die with the test process;
//! - [`proxy`]: a TCP proxy a test can cut, to take a dependency away;
//! - [`restartable_postgres`]: a cluster of one test's own, to stop and start again;
//! - [`lab_collector`]: the lab collector alone, to kill and start again;
//! - [`gateway`]: the lab 6 agent and two gateways, with Prometheus and a sink each;
//! - [`load`]: bounded concurrent load, latency percentiles, a process's resident memory;
//! - [`binaries`]: the workspace's binaries in cargo's target directory;
//! - [`problem`]: the assertions on the service's problem+json answers;
//! - [`tls`]: a throwaway PKI and a TLS front (optionally mTLS) for a plain receiver;
//! - [`sink_spans`]: the spans in the native sink's file;
//! - [`tempo_service_graph`]: Tempo's service-graph series, computed from spans and
//!   remote-written into Prometheus (Tempo itself is container-only).

pub mod app;
pub mod binaries;
pub mod gateway;
pub mod lab_collector;
pub mod load;
pub mod native;
pub mod otlp;
pub mod postgres;
pub mod problem;
pub mod process;
pub mod proxy;
pub mod restartable_postgres;
pub mod sink_spans;
pub mod tempo_service_graph;
pub mod tls;

use std::{path::PathBuf, time::Duration};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Runs `just` with `args` in the workspace root and returns what it printed; a missing
/// `just` or a failed run fails the test, saying why.
pub fn just(args: &[&str]) -> String {
    let output = std::process::Command::new("just")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `just` (is it installed? `.ci/run` installs it): {e}")
        });
    assert!(
        output.status.success(),
        "just {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("just prints UTF-8")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `url` until it answers - with a 2xx when `success` is set - or `timeout` has
/// passed; the error says what came back last. Every readiness wait of the kit and the
/// tests goes through here.
pub async fn wait_for_http(url: &str, success: bool, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|error| error.to_string())?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match client.get(url).send().await {
            Ok(response) if !success || response.status().is_success() => return Ok(()),
            Ok(response) => last = format!("HTTP {}", response.status()),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{url}: {last} after {timeout:?}"))
}
