//! A collector that accepts connections but never answers does not hold the exit.

use std::time::{Duration, Instant};

use lab_tests::app::TestApp;

use crate::{ONE_AT_A_TIME, lines_with, seed};

/// The service gives telemetry 5 s to flush at exit (app/src/startup.rs), after the HTTP
/// drain; with nothing in flight, the whole exit must fit in this.
const HUNG_COLLECTOR_EXIT_BOUND: Duration = Duration::from_secs(12);

/// Accepts connections and then neither reads nor writes: an export hangs until the
/// exporter's own timeout.
struct BlackHole {
    endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { endpoint, task }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hung_collector_does_not_hold_the_exit(protocol: &str) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let hole = BlackHole::start().await;
    let app = TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &hole.endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
    ])
    .await;
    // Requests do not wait for the hung exports...
    let started = Instant::now();
    let ids = seed(&app, 30).await;
    for id in ids.iter() {
        let response = app.get(&format!("/api/v1/todos/{id}")).await;
        assert_eq!(response.status(), 200);
    }
    let requests_took = started.elapsed();
    assert!(
        requests_took < Duration::from_secs(5),
        "60 requests took {requests_took:?}"
    );
    // ...and there is data queued behind them when the signal comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let output_before = app.output();
    let signalled = Instant::now();
    let status = app.shutdown();
    let took = signalled.elapsed();
    println!(
        "hung collector ({protocol}): 60 requests took {requests_took:?}; exit {took:?} after SIGTERM ({status:?})"
    );
    assert!(
        took < HUNG_COLLECTOR_EXIT_BOUND,
        "exit took {took:?} with a hung collector"
    );
    assert!(
        status.success(),
        "{status:?}\n{}",
        lines_with(&output_before, &["telemetry"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_collector_does_not_hold_the_exit_over_grpc() {
    hung_collector_does_not_hold_the_exit("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_collector_does_not_hold_the_exit_over_http() {
    hung_collector_does_not_hold_the_exit("http/protobuf").await;
}
