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
//!
//! One module a fault; the load, its client and the span counting are shared here.

mod collector_killed;
mod hung_collector;
mod postgres_restart;
mod sigterm;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use lab_tests::{
    app::TestApp,
    load::Sample,
    otlp::{OtlpReceiver, ReceivedSpan},
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
        let todo = app.create_ok(&format!("seed {n}")).await;
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
