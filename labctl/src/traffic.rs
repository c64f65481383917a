//! Sends a plan's requests to the service: paced to a rate, spread over workers, always
//! bounded in count and in time, and only to this machine.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method, Url};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::plan::{Body, Bounded, Plan, ROUTE_TODOS, Request, Target};
use crate::summary::{Summary, TraceSample};
use crate::telemetry::ClientTelemetry;

/// Ceilings that keep a typo from turning the lab into a load test.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
pub const MAX_REQUESTS: u64 = 100_000;
pub const MAX_RATE: f64 = 1_000.0;
pub const MAX_CONCURRENCY: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct TrafficConfig {
    pub base_url: Url,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// Requests per second across all workers.
    pub rate: f64,
    pub concurrency: usize,
    pub seed: u64,
    /// Print a progress line to stderr every few seconds.
    pub progress: bool,
}

impl TrafficConfig {
    /// Refuses a run without a bound, over the ceilings, or aimed off this machine.
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.duration.is_some() || self.requests.is_some(),
            "give --duration or --requests (or both): traffic runs are always bounded"
        );
        if let Some(duration) = self.duration {
            ensure!(!duration.is_zero(), "--duration must be more than zero");
            ensure!(
                duration <= MAX_DURATION,
                "--duration is capped at {}s",
                MAX_DURATION.as_secs()
            );
        }
        if let Some(requests) = self.requests {
            ensure!(
                (1..=MAX_REQUESTS).contains(&requests),
                "--requests must be between 1 and {MAX_REQUESTS}"
            );
        }
        ensure!(
            self.rate > 0.0 && self.rate <= MAX_RATE,
            "--rate must be more than 0 and at most {MAX_RATE} requests per second"
        );
        ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.concurrency),
            "--concurrency must be between 1 and {MAX_CONCURRENCY}"
        );
        ensure!(
            matches!(self.base_url.scheme(), "http" | "https"),
            "--base-url must be an http:// URL"
        );
        let loopback = match self.base_url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        };
        ensure!(
            loopback,
            "--base-url must point at this machine (localhost, 127.0.0.0/8 or [::1]); \
             the lab publishes the service on 127.0.0.1:{}",
            crate::lab::port(crate::lab::APP_PORT)
        );
        Ok(())
    }

    /// The run stops at this point even if requests remain.
    fn time_limit(&self) -> Duration {
        self.duration.unwrap_or(MAX_DURATION)
    }
}

struct Shared {
    plan: Mutex<Bounded>,
    pacer: tokio::sync::Mutex<Interval>,
    summary: Mutex<Summary>,
    client: Client,
    base_url: Url,
    deadline: Instant,
    telemetry: Option<Arc<ClientTelemetry>>,
}

/// Runs the plan for `config.seed` and returns what was sent and answered.
pub async fn run(config: &TrafficConfig) -> anyhow::Result<Summary> {
    run_traced(config, None).await
}

/// [`run`], each request in a CLIENT span of `telemetry` (when given) whose context the
/// request carries; the summary then names the traces to look at.
pub async fn run_traced(
    config: &TrafficConfig,
    telemetry: Option<Arc<ClientTelemetry>>,
) -> anyhow::Result<Summary> {
    config.check()?;
    ensure_listening(&config.base_url).await?;

    let client = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("labctl/", env!("CARGO_PKG_VERSION"), " (traffic)"))
        .build()
        .context("building the HTTP client")?;
    let mut pacer = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rate));
    // A slow answer must not be followed by a burst that "catches up" on the rate.
    pacer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut summary = Summary::new(config.seed);
    summary.run_id = telemetry.as_ref().map(|t| t.run_id.clone());
    let shared = Arc::new(Shared {
        plan: Mutex::new(Plan::new(config.seed).bounded(config.requests)),
        pacer: tokio::sync::Mutex::new(pacer),
        summary: Mutex::new(summary),
        client,
        base_url: config.base_url.clone(),
        deadline: started + config.time_limit(),
        telemetry,
    });

    let progress = config
        .progress
        .then(|| tokio::spawn(report_progress(shared.clone(), started)));
    let workers: Vec<_> = (0..config.concurrency)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    for worker in workers {
        worker.await.context("a traffic worker panicked")?;
    }
    if let Some(progress) = progress {
        progress.abort();
    }

    let mut summary = std::mem::take(&mut *shared.summary.lock().expect("summary lock"));
    summary.finish(started.elapsed());
    Ok(summary)
}

/// Fails early, with the fix, when nothing listens at the base URL, instead of spending
/// the whole run collecting "connection refused".
async fn ensure_listening(base_url: &Url) -> anyhow::Result<()> {
    let host = base_url.host_str().context("--base-url has no host")?;
    let port = base_url
        .port_or_known_default()
        .context("--base-url has no port")?;
    let address = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    if let Err(error) = tokio::net::TcpStream::connect(&address).await {
        bail!(
            "nothing answers at {base_url} ({error}); start the service first \
             (`just lab-1`, or `cargo run -p todo-api`)"
        );
    }
    Ok(())
}

async fn worker(shared: Arc<Shared>) {
    loop {
        let unit = shared.plan.lock().expect("plan lock").next();
        let Some(unit) = unit else { return };
        let mut created_id: Option<String> = None;
        for (index, request) in unit.iter().enumerate() {
            let path = match (&request.target, &created_id) {
                (Target::Path(path), _) => path.clone(),
                (Target::Created, Some(id)) => format!("{ROUTE_TODOS}/{id}"),
                (Target::Created, None) => {
                    skip(&shared, unit.len() - index);
                    break;
                }
            };
            let paced = tokio::time::timeout_at(shared.deadline, async {
                shared.pacer.lock().await.tick().await;
            })
            .await;
            if paced.is_err() {
                return;
            }
            let answer = send(&shared, request, &path).await;
            if let Some(Answer {
                created: Some(id), ..
            }) = &answer
            {
                created_id = Some(id.clone());
            }
            // A create or delete that did not do what was planned (a fault-switch 500, a
            // lost connection) changes what the rest of the unit would get: a todo that
            // still exists answers 200 where 404 was planned. Those requests are skipped
            // and counted as such rather than reported as surprises.
            let changes_state = matches!(request.method, "POST" | "DELETE");
            if changes_state && answer.as_ref().map(|a| a.status) != Some(request.expect) {
                skip(&shared, unit.len() - index - 1);
                break;
            }
        }
    }
}

fn skip(shared: &Shared, requests: usize) {
    shared.summary.lock().expect("summary lock").skipped += requests as u64;
}

/// What came back for one request.
struct Answer {
    status: u16,
    /// The new todo's id, for a successful create.
    created: Option<String>,
}

/// Sends one request and records its outcome; `None` when no HTTP answer came.
async fn send(shared: &Shared, request: &Request, path: &str) -> Option<Answer> {
    let url = match shared.base_url.join(path) {
        Ok(url) => url,
        Err(error) => {
            record_error(shared, request, &format!("bad URL {path}: {error}"));
            return None;
        }
    };
    let method = Method::from_bytes(request.method.as_bytes()).expect("plan methods are valid");
    let mut headers = reqwest::header::HeaderMap::new();
    let span = shared.telemetry.as_ref().map(|telemetry| {
        telemetry.start_request(request.method, &url, request.route, &mut headers)
    });
    let mut builder = shared.client.request(method, url).headers(headers);
    builder = match &request.body {
        Some(Body::Json(body)) => builder.json(body),
        Some(Body::Malformed(text)) => builder.header(CONTENT_TYPE, "application/json").body(*text),
        None => builder,
    };
    let response = match builder.send().await {
        Ok(response) => response,
        Err(error) => {
            if let Some(span) = span {
                span.failed(&error);
            }
            record_error(shared, request, &describe(&error));
            return None;
        }
    };
    let status = response.status().as_u16();
    shared
        .summary
        .lock()
        .expect("summary lock")
        .record_response(request.method, request.route, request.expect, status);
    // Reading the body to its end lets the connection be reused; its content only matters
    // for a create, which carries the id later requests of the unit address.
    let body = response.bytes().await.unwrap_or_default();
    if let Some(span) = span {
        let sample = TraceSample {
            trace_id: span.trace_id(),
            method: request.method.to_owned(),
            route: request.route.to_owned(),
            status,
            milliseconds: span.elapsed().as_secs_f64() * 1000.0,
        };
        span.answered(status);
        shared
            .summary
            .lock()
            .expect("summary lock")
            .record_trace(sample);
    }
    let created = (request.method == "POST" && status == 201)
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten()
        .and_then(|todo| todo["id"].as_str().map(str::to_owned));
    Some(Answer { status, created })
}

fn record_error(shared: &Shared, request: &Request, error: &str) {
    shared
        .summary
        .lock()
        .expect("summary lock")
        .record_transport_error(request.method, request.route, error);
}

/// The innermost cause ("Connection refused (os error 111)") rather than reqwest's
/// outer "error sending request for url".
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {}s", REQUEST_TIMEOUT.as_secs());
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

async fn report_progress(shared: Arc<Shared>, started: Instant) {
    let mut ticks = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        ticks.tick().await;
        let totals = shared.summary.lock().expect("summary lock").totals();
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "traffic: {} sent in {elapsed:.0}s ({:.1} req/s) | 4xx {} | 5xx {} | no answer {}",
            totals.requests,
            totals.requests as f64 / elapsed,
            totals.status_4xx,
            totals.status_5xx,
            totals.transport_errors
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_url: &str) -> TrafficConfig {
        TrafficConfig {
            base_url: base_url.parse().unwrap(),
            duration: Some(Duration::from_secs(10)),
            requests: None,
            rate: 10.0,
            concurrency: 2,
            seed: 1,
            progress: false,
        }
    }

    #[test]
    fn loopback_targets_are_accepted() {
        for url in [
            "http://127.0.0.1:8000",
            "http://localhost:8000",
            "http://[::1]:8000",
            "http://127.0.0.2/",
        ] {
            config(url).check().unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "http://10.0.0.1:8000",
            "http://example.com",
            "http://0.0.0.0:8000",
        ] {
            assert!(config(url).check().is_err(), "{url} accepted");
        }
    }

    #[test]
    fn unbounded_and_oversized_runs_are_refused() {
        let mut unbounded = config("http://127.0.0.1:8000");
        unbounded.duration = None;
        assert!(
            unbounded
                .check()
                .unwrap_err()
                .to_string()
                .contains("always bounded")
        );

        let mut count_only = unbounded.clone();
        count_only.requests = Some(50);
        count_only.check().unwrap();
        assert_eq!(
            count_only.time_limit(),
            MAX_DURATION,
            "a count-only run still has a time cap"
        );

        let mut too_long = config("http://127.0.0.1:8000");
        too_long.duration = Some(MAX_DURATION + Duration::from_secs(1));
        assert!(too_long.check().is_err());

        let mut too_many = count_only.clone();
        too_many.requests = Some(MAX_REQUESTS + 1);
        assert!(too_many.check().is_err());

        for rate in [0.0, -1.0, MAX_RATE + 1.0, f64::NAN] {
            let mut bad_rate = config("http://127.0.0.1:8000");
            bad_rate.rate = rate;
            assert!(bad_rate.check().is_err(), "rate {rate} accepted");
        }
        let mut no_workers = config("http://127.0.0.1:8000");
        no_workers.concurrency = 0;
        assert!(no_workers.check().is_err());
    }

    #[tokio::test]
    async fn a_closed_port_fails_fast_with_the_fix() {
        // Bind and drop to get a port nothing listens on.
        let port = lab_tests::free_port().unwrap();
        let error = run(&config(&format!("http://127.0.0.1:{port}")))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("start the service"), "{error}");
    }
}
