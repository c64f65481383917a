//! Fault tests: the real service under a bounded concurrent load while what it depends on
//! fails - the lab collector killed and started again, Postgres restarted, the service
//! itself sent SIGTERM - and a collector that accepts connections but never answers.
//!
//! Every load is bounded in time and in requests and goes to loopback only. The figures
//! (p99, RSS, shutdown times) are printed: run with `-- --nocapture` to see them.
//!
//! Needs the `todo-api` binary built (`cargo test --workspace` builds it; with
//! `-p lab-tests`, run `cargo build -p todo-api` first) and the native collector
//! (`stack/native/build.sh`, which `run.sh` calls when its cache is cold).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use lab_tests::{
    app::TestApp,
    lab_collector::LabCollector,
    load::{Limits, Load, Sample, percentile, rss_kib},
    otlp::{OtlpReceiver, ReceivedSpan},
    restartable_postgres::RestartablePostgres,
};
use serde_json::{Value, json};

/// Concurrency of every load: more than the service's 2 cores, fewer than its 10
/// database connections.
const WORKERS: usize = 8;
/// A request budget no phase reaches on this machine: the time bound is the real one.
const MAX_REQUESTS: usize = 100_000;
/// Every wait for telemetry to arrive.
const TELEMETRY_WAIT: Duration = Duration::from_secs(30);

/// The tests of this file measure latencies under load: they run one at a time, so that
/// none is measured while another loads the same two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The outcome of one request as the fault tests judge it.
#[derive(Debug, Clone)]
enum Answer {
    Status(u16, Value),
    /// No HTTP answer: refused, reset, or the client's own timeout.
    Failed(#[allow(dead_code, reason = "read through Debug, in failure messages")] String),
}

impl Answer {
    fn status(&self) -> Option<u16> {
        match self {
            Answer::Status(status, _) => Some(*status),
            Answer::Failed(_) => None,
        }
    }
}

/// A client whose timeout turns a hung request into a failed sample rather than a hung
/// test; `agent` marks the requests so that their spans can be told apart.
fn client(agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(agent)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            Answer::Status(status, body)
        }
        Err(error) => Answer::Failed(format!("{error:?}")),
    }
}

async fn seed(app: &TestApp, count: usize) -> Arc<Vec<String>> {
    let mut ids = Vec::new();
    for n in 0..count {
        let response = app
            .client
            .post(app.url("/api/v1/todos"))
            .json(&json!({ "title": format!("seed {n}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let todo: Value = response.json().await.unwrap();
        ids.push(todo["id"].as_str().unwrap().to_owned());
    }
    Arc::new(ids)
}

/// Three reads of a seeded todo for one create: every request has a server span and a
/// database span, and each create also a log record - all three signals flow.
fn crud_mix(
    app: &TestApp,
    client: reqwest::Client,
    ids: Arc<Vec<String>>,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync + 'static
{
    let base = app.address.clone();
    move |n| {
        let request = if n % 4 == 0 {
            client
                .post(format!("{base}/api/v1/todos"))
                .json(&json!({ "title": format!("load {n}") }))
        } else {
            client.get(format!("{base}/api/v1/todos/{}", ids[n % ids.len()]))
        };
        Box::pin(send(request))
    }
}

/// The samples `ok` rejects: how many, and the first five.
fn not_ok<T: std::fmt::Debug>(
    samples: &[Sample<T>],
    ok: impl Fn(&T) -> bool,
) -> (usize, Vec<&Sample<T>>) {
    let failed: Vec<_> = samples.iter().filter(|s| !ok(&s.outcome)).collect();
    (failed.len(), failed.into_iter().take(5).collect())
}

/// The lines of `output` that contain any of `needles`, the first 20 of them.
fn lines_with(output: &str, needles: &[&str]) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| needles.iter().any(|needle| line.contains(needle)))
        .collect();
    let shown = lines
        .iter()
        .take(20)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    if lines.len() > 20 {
        format!("{shown}\n... ({} lines in all)", lines.len())
    } else {
        shown
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn server_spans_from(receiver: &OtlpReceiver, agent: &str) -> Vec<ReceivedSpan> {
    receiver
        .spans()
        .into_iter()
        .filter(|span| {
            span.span.kind == 2 && span.attributes.get("user_agent.original") == Some(&json!(agent))
        })
        .collect()
}

/// How many server spans of requests sent by `agent` have arrived once `expected` have
/// (or the wait is over), plus a second more for any extra one.
async fn spans_arriving(receiver: &OtlpReceiver, agent: &str, expected: usize) -> usize {
    let deadline = Instant::now() + TELEMETRY_WAIT;
    while server_spans_from(receiver, agent).len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    server_spans_from(receiver, agent).len()
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

// ---- 1. the collector dies mid-load, then comes back ------------------------------------

/// The p99 under a dead collector may exceed the healthy p99 by this factor, or by
/// [`P99_SLACK`] when that is larger: a debug build on 2 shared cores has a p99 of a
/// few milliseconds, where 2x is within scheduling noise.
const P99_FACTOR: u32 = 2;
const P99_SLACK: Duration = Duration::from_millis(5);
/// "Flat": the batch queues are bounded (2048 spans, 2048 log records), so memory must
/// not grow with the number of requests the collector misses.
const RSS_GROWTH_LIMIT_KIB: u64 = 10 * 1024;
const PHASE: Duration = Duration::from_secs(4);
/// When in the second phase the collector is killed.
const KILL_AFTER: Duration = Duration::from_secs(1);

async fn collector_down_mid_load(protocol: &str) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let receiver = OtlpReceiver::start().await;
    let mut collector = LabCollector::start(&receiver.http_endpoint)
        .await
        .unwrap_or_else(|e| panic!("lab collector: {e:#}"));
    let endpoint = if protocol == "grpc" {
        collector.grpc_endpoint.clone()
    } else {
        collector.http_endpoint.clone()
    };
    let app = TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        // Short intervals, so that all three signals export (and fail) within a phase.
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "200"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ])
    .await;
    let ids = seed(&app, 50).await;
    let limits = Limits {
        workers: WORKERS,
        duration: PHASE,
        max_requests: MAX_REQUESTS,
    };
    let load = || crud_mix(&app, client("collector-fault"), ids.clone());

    // Warm-up (connections, pool, allocator), then the healthy reference.
    Load::run(
        Limits {
            duration: Duration::from_secs(1),
            ..limits
        },
        load(),
    )
    .await;
    let healthy = Load::run(limits, load()).await;
    let rss_before = rss_kib(app.pid());

    let running = Load::start(limits, load());
    tokio::time::sleep(KILL_AFTER).await;
    collector.kill();
    let killed_at = Instant::now();
    let mut rss_peak = rss_before;
    let phase_end = Instant::now() + PHASE - KILL_AFTER;
    while Instant::now() < phase_end {
        rss_peak = rss_peak.max(rss_kib(app.pid()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = running.join().await;
    let rss_after = rss_kib(app.pid());
    rss_peak = rss_peak.max(rss_after);

    let ok = |answer: &Answer| matches!(answer.status(), Some(200 | 201));
    // The p99 of the requests sent after the kill: the ones that could meet a dead collector.
    let down: Vec<_> = down
        .into_iter()
        .filter(|s| s.started >= KILL_AFTER)
        .collect();
    let (p99_healthy, p99_down) = (percentile(&healthy, 99.0), percentile(&down, 99.0));
    let bound = (p99_healthy * P99_FACTOR).max(p99_healthy + P99_SLACK);
    println!(
        "collector down ({protocol}): healthy {} requests p99 {:.1} ms | collector killed \
         {} requests p99 {:.1} ms (bound {:.1} ms) | RSS {} KiB before, {} KiB after, \
         {} KiB peak",
        healthy.len(),
        ms(p99_healthy),
        down.len(),
        ms(p99_down),
        ms(bound),
        rss_before,
        rss_after,
        rss_peak
    );
    let (failed, first) = not_ok(&healthy, ok);
    assert_eq!(
        failed, 0,
        "requests failed with the collector up: {first:?}"
    );
    let (failed, first) = not_ok(&down, ok);
    assert_eq!(
        failed, 0,
        "requests failed while the collector was down: {first:?}"
    );
    assert!(
        p99_down <= bound,
        "p99 with the collector down {p99_down:?} > max({P99_FACTOR} x {p99_healthy:?}, +{P99_SLACK:?})"
    );
    assert!(
        rss_peak <= rss_before + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB with the collector down"
    );

    // Each signal's failure is reported (an export may still be retrying when the load
    // ends)...
    for signal in ["traces", "metrics", "logs"] {
        let line = format!("{signal} export failing");
        let deadline = Instant::now() + TELEMETRY_WAIT;
        while !app.output().contains(&line) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "collector down ({protocol}): `{line}` printed by {:.1} s after the kill",
            killed_at.elapsed().as_secs_f64()
        );
    }
    // ...once per signal, not once per failed batch (the SDK's own per-batch error
    // events must not reach the console either).
    let output = app.output();
    let export_lines = lines_with(&output, &["export"]);
    for signal in ["traces", "metrics", "logs"] {
        assert_eq!(
            output.matches(&format!("{signal} export failing")).count(),
            1,
            "one failure line for {signal}:\n{export_lines}"
        );
    }
    let per_batch = lines_with(&output, &["ExportError", "Export.Failed"]);
    assert!(
        per_batch.is_empty(),
        "per-batch export errors on the console:\n{per_batch}"
    );

    // Back on the same ports: new spans arrive without restarting the service.
    let restarted = Instant::now();
    collector
        .start_again()
        .await
        .unwrap_or_else(|e| panic!("restarting the lab collector: {e:#}"));
    // The batch queue is still full of spans from the outage when the collector comes
    // back (new spans are dropped until it drains), so requests keep coming until the
    // first of their spans gets through.
    let after = client("after-restart");
    let mut sent_after = 0;
    while server_spans_from(&receiver, "after-restart").is_empty()
        && restarted.elapsed() < TELEMETRY_WAIT
    {
        let response = after.get(app.url("/health")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        sent_after += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = app.output();
    assert!(
        !server_spans_from(&receiver, "after-restart").is_empty(),
        "no span of the {sent_after} requests sent in the {TELEMETRY_WAIT:?} after the \
         restart arrived; the service printed:\n{}\nthe collector printed:\n{}",
        lines_with(&output, &["export", "Dropp"]),
        collector.output()
    );
    println!(
        "collector down ({protocol}): first new span through {:.1} s after the restart \
         ({sent_after} requests sent)",
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!(
        output.matches("traces export recovered").count(),
        1,
        "{}",
        lines_with(&output, &["export"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_killed_mid_load_over_grpc() {
    collector_down_mid_load("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_killed_mid_load_over_http() {
    collector_down_mid_load("http/protobuf").await;
}

// ---- 2. Postgres restarts mid-load ------------------------------------------------------

/// No request may take longer while the database is down: the pool gives up acquiring a
/// connection after 3 s (app/src/startup.rs), plus slack for a debug build on 2 cores.
const DB_DOWN_REQUEST_BOUND: Duration = Duration::from_secs(5);
/// How long Postgres stays down: long enough for every worker to meet the outage.
const DB_DOWNTIME: Duration = Duration::from_secs(3);
const DB_RECOVERY_TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_load_fails_fast_and_loses_no_acknowledged_todo() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut postgres =
        tokio::task::block_in_place(RestartablePostgres::start).expect("a Postgres of our own");
    let app = TestApp::spawn_on(&postgres.url, &[("OTEL_SDK_DISABLED", "true")]).await;
    let client = client("postgres-restart");
    let base = app.address.clone();
    let creates = Load::start(
        Limits {
            workers: WORKERS,
            duration: Duration::from_secs(40),
            max_requests: MAX_REQUESTS,
        },
        move |n| {
            let request = client
                .post(format!("{base}/api/v1/todos"))
                .json(&json!({ "title": format!("restart {n}") }));
            send(request)
        },
    );
    let load_started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stop_took = tokio::task::block_in_place(|| postgres.stop()).expect("pg_ctl stop");
    let stopped_at = load_started.elapsed();
    // While it is down, readiness says so - with a problem body.
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/ready while Postgres is down");
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["type"], "/problems/database-unavailable", "{ready}");
    tokio::time::sleep(DB_DOWNTIME.saturating_sub(load_started.elapsed() - stopped_at)).await;

    tokio::task::block_in_place(|| postgres.start_again()).expect("Postgres starts again");
    let restarted_at = load_started.elapsed();
    // The service recovers by itself: no restart, no signal.
    lab_tests::wait_for_http(&app.url("/ready"), true, DB_RECOVERY_TIMEOUT)
        .await
        .unwrap_or_else(|last| panic!("/ready not back after the restart: {last}"));
    let recovered_at = load_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = creates.finish().await;

    let slowest = samples.iter().map(|s| s.latency).max().unwrap();
    let unavailable = samples
        .iter()
        .filter(|s| s.outcome.status() == Some(503))
        .count();
    let created_after = samples
        .iter()
        .filter(|s| s.started > restarted_at && s.outcome.status() == Some(201))
        .count();
    println!(
        "postgres restart: {} creates, {unavailable} answered 503, slowest {:.0} ms (bound \
         {DB_DOWN_REQUEST_BOUND:?}); stop took {:.0} ms; down at {:.1} s, up at {:.1} s, \
         /ready 200 at {:.1} s; {created_after} created after the restart",
        samples.len(),
        ms(slowest),
        ms(stop_took),
        stopped_at.as_secs_f64(),
        restarted_at.as_secs_f64(),
        recovered_at.as_secs_f64()
    );
    for sample in &samples {
        match &sample.outcome {
            Answer::Status(201, _) => {}
            Answer::Status(503, body) => {
                assert_eq!(body["type"], "/problems/database-unavailable", "{body}");
                assert_eq!(body["status"], 503, "{body}");
            }
            other => panic!(
                "only 201 or a 503 problem, got {other:?} at {:?}",
                sample.started
            ),
        }
    }
    assert!(
        slowest < DB_DOWN_REQUEST_BOUND,
        "a request took {slowest:?}"
    );
    assert!(
        unavailable > 0,
        "the load never met the outage: the test proved nothing"
    );
    assert!(created_after > 0, "no todo was created after the restart");

    // Every todo acknowledged with 201 is still there.
    let acknowledged: Vec<(String, String)> = samples
        .iter()
        .filter_map(|sample| match &sample.outcome {
            Answer::Status(201, todo) => Some((
                todo["id"].as_str().unwrap().to_owned(),
                todo["title"].as_str().unwrap().to_owned(),
            )),
            _ => None,
        })
        .collect();
    let mut stored = std::collections::HashMap::new();
    for skip in (0..).step_by(1000) {
        let page: Vec<Value> = app
            .client
            .get(app.url(&format!("/api/v1/todos?limit=1000&skip={skip}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for todo in &page {
            stored.insert(
                todo["id"].as_str().unwrap().to_owned(),
                todo["title"].as_str().unwrap().to_owned(),
            );
        }
        if page.len() < 1000 {
            break;
        }
    }
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|(id, title)| stored.get(id) != Some(title))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged todos are missing after the restart: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
}

// ---- 3. SIGTERM during load -------------------------------------------------------------

/// Added to every list request, so that some are surely in flight at SIGTERM.
const IN_FLIGHT_LATENCY_MS: u64 = 1500;
const IN_FLIGHT: usize = 6;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_load_drains_refuses_and_exports_every_span() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let receiver = OtlpReceiver::start().await;
    let collector = LabCollector::start(&receiver.http_endpoint)
        .await
        .unwrap_or_else(|e| panic!("lab collector: {e:#}"));
    let latency = IN_FLIGHT_LATENCY_MS.to_string();
    let app = TestApp::spawn_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        // The lab's default batch delay (5 s): spans still queued at SIGTERM must be
        // flushed by the shutdown, not by a timer.
        ("LAB_FAULT_LATENCY_MS", &latency),
        ("LAB_FAULT_ROUTES", "/api/v1/todos"),
    ])
    .await;
    let ids = seed(&app, 20).await;
    let agent = "sigterm-load";
    let address = app.address.trim_start_matches("http://").to_owned();

    // Fast reads of one todo keep going through the signal...
    let fast = Load::start(
        Limits {
            workers: 4,
            duration: Duration::from_secs(10),
            max_requests: MAX_REQUESTS,
        },
        {
            let (client, base, ids) = (client(agent), app.address.clone(), ids.clone());
            move |n| send(client.get(format!("{base}/api/v1/todos/{}", ids[n % ids.len()])))
        },
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // ...and slow list requests are in flight when it arrives.
    let slow: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, url) = (client(agent), app.url("/api/v1/todos"));
            tokio::spawn(async move {
                let answer = send(client.get(url)).await;
                (answer, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = app.pid();
    let signalled = Instant::now();
    signal(pid, "TERM");

    // New connections are refused once shutdown has started.
    let refused_at = loop {
        match tokio::net::TcpStream::connect(&address).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                break Instant::now();
            }
            _ => {}
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "new connections were still accepted 2 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut first_slow_done = None::<Instant>;
    for task in slow {
        let (answer, done) = task.await.unwrap();
        assert_eq!(
            answer.status(),
            Some(200),
            "an in-flight request did not complete: {answer:?}"
        );
        first_slow_done = Some(first_slow_done.map_or(done, |first| first.min(done)));
    }
    assert!(
        refused_at < first_slow_done.unwrap(),
        "connections were refused only after the in-flight requests had finished"
    );
    let samples = fast.finish().await;
    let status = app.shutdown();
    let exited_after = signalled.elapsed();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    // Every request that got an answer was answered 200, and has its server span.
    let answered: Vec<_> = samples
        .iter()
        .filter(|s| s.outcome.status().is_some())
        .collect();
    let (failed, first) = not_ok(&samples, |answer| {
        matches!(answer.status(), None | Some(200))
    });
    assert_eq!(failed, 0, "answers other than 200: {first:?}");
    let completed = answered.len() + IN_FLIGHT;
    // The seed requests went out with the kit's own client (no user agent of ours).
    let arrived = spans_arriving(&receiver, agent, completed).await;
    println!(
        "sigterm: {completed} requests completed ({IN_FLIGHT} in flight at SIGTERM), {} \
         refused after it; new connections refused {:.0} ms after SIGTERM; exit after \
         {:.0} ms; {arrived} server spans arrived",
        samples.len() - answered.len(),
        ms(refused_at - signalled),
        ms(exited_after)
    );
    assert_eq!(
        arrived, completed,
        "one server span per completed request, no more"
    );
}

// ---- 4. a collector that never answers --------------------------------------------------

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
        let response = app
            .client
            .get(app.url(&format!("/api/v1/todos/{id}")))
            .send()
            .await
            .unwrap();
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
