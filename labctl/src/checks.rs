//! `labctl check N`: the checkpoint at the end of lab step N. Each step's checks include
//! the earlier steps' (a learner on step 3 still needs the app of step 1), step 5 is
//! the full `verify`, step 6 adds the collectors' pipeline health on top, and step 7
//! adds propagation (see [`crate::propagation`]) to the services of step 4.

use anyhow::ensure;
use reqwest::Client;
use tokio::time::Instant;

use crate::http::{self, ApiError};
use crate::lab;
use crate::pipeline_health;
use crate::probe::{self, Outcome, Report};
use crate::verify::{self, Backends, Signal, VerifyConfig};

#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    pub app_url: String,
    pub grafana_url: String,
    pub collector_health_url: String,
    pub dashboard_uid: String,
    /// Prometheus/Tempo/Loki endpoints, the service, the dashboard and the timeout.
    pub verify: VerifyConfig,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Checkpoint {
    AppHealth,
    AppReady,
    Grafana,
    Collector,
    Dashboard,
    Signal(Signal),
    Pipeline(pipeline_health::Check),
}

impl Checkpoint {
    fn name(self) -> String {
        match self {
            Self::AppHealth => "app: GET /health".into(),
            Self::AppReady => "app: GET /ready (database)".into(),
            Self::Grafana => "grafana: GET /api/health".into(),
            Self::Collector => "collector: health_check extension".into(),
            Self::Dashboard => "grafana: dashboard provisioned".into(),
            Self::Signal(signal) => signal.name().into(),
            Self::Pipeline(check) => check.name().into(),
        }
    }
}

/// The checks of step `step` (1 to 4; 5 adds `verify` on top of 4's services, 6 the
/// pipeline health, 7 propagation).
fn checkpoints(step: u8) -> Vec<Checkpoint> {
    let mut list = vec![Checkpoint::AppHealth, Checkpoint::AppReady];
    if step >= 2 {
        list.push(Checkpoint::Grafana);
        if step < 5 {
            list.push(Checkpoint::Signal(Signal::AppMetrics));
        }
    }
    if step >= 3 {
        list.push(Checkpoint::Collector);
        if step < 5 {
            list.push(Checkpoint::Signal(Signal::SpanMetrics));
        }
    }
    if step >= 4 {
        list.push(Checkpoint::Dashboard);
    }
    // Lab 7 runs on lab 5's stack, without the gateways.
    if step == 6 {
        list.extend(pipeline_health::ALL.map(Checkpoint::Pipeline));
    }
    list
}

pub async fn run(step: u8, config: &CheckpointConfig) -> anyhow::Result<Report> {
    ensure!((1..=7).contains(&step), "the lab has checkpoints 1 to 7");
    let deadline = Instant::now() + config.verify.timeout;
    let client = http::client();
    let backends = Backends::new(&config.verify);
    let list = checkpoints(if step == 7 { 3 } else { step });
    let names = list.iter().map(|c| c.name()).collect();
    let mut report = probe::settle(names, deadline, config.verify.progress, |i| {
        attempt(list[i], config, &client, &backends)
    })
    .await;
    if step == 5 || step == 6 {
        report.extend(verify::run(&config.verify).await);
    }
    if step == 7 {
        report.extend(crate::propagation::run(&config.verify, &backends, deadline).await);
    }
    Ok(report)
}

async fn attempt(
    checkpoint: Checkpoint,
    config: &CheckpointConfig,
    client: &Client,
    backends: &Backends,
) -> Outcome {
    match checkpoint {
        Checkpoint::AppHealth => {
            let fix = format!(
                "start Postgres and the service: `just lab-1` (or `cargo run -p todo-api` with Postgres on 127.0.0.1:{})",
                lab::port(lab::POSTGRES_PORT)
            );
            match fetch(client, &config.app_url, "/health").await {
                Ok(json) if json["status"] == "healthy" => Outcome::Pass(format!(
                    "healthy ({})",
                    json["service"].as_str().unwrap_or("?")
                )),
                Ok(json) => Outcome::waiting(format!("unexpected answer {json}"), fix),
                Err(error) => Outcome::waiting(format!("{}: {error}", config.app_url), fix),
            }
        }
        Checkpoint::AppReady => match ready(client, &config.app_url).await {
            Ok(_) => Outcome::Pass("the database answers".into()),
            Err(error) => Outcome::waiting(
                format!("{}: {error}", config.app_url),
                "a 503 means the service cannot reach Postgres: is it up (`just status`)? does DATABASE_URL point at it?",
            ),
        },
        Checkpoint::Grafana => match fetch(client, &config.grafana_url, "/api/health").await {
            Ok(json) => Outcome::Pass(format!(
                "Grafana {} (database {})",
                json["version"].as_str().unwrap_or("?"),
                json["database"].as_str().unwrap_or("?")
            )),
            Err(error) => Outcome::waiting(
                format!("{}: {error}", config.grafana_url),
                format!(
                    "start LGTM: `just lab-2`; Grafana answers on 127.0.0.1:{} once the lgtm container is healthy (`just status`)",
                    lab::port(lab::GRAFANA_PORT)
                ),
            ),
        },
        Checkpoint::Collector => match fetch(client, &config.collector_health_url, "/").await {
            Ok(json) => Outcome::Pass(json["status"].as_str().unwrap_or("healthy").to_owned()),
            Err(error) => Outcome::waiting(
                format!("{}: {error}", config.collector_health_url),
                format!(
                    "start the lab collector: `just lab-3`; its health_check extension listens on 127.0.0.1:{}",
                    lab::port(lab::COLLECTOR_HEALTH_PORT)
                ),
            ),
        },
        Checkpoint::Dashboard => {
            let path = format!("/api/dashboards/uid/{}", config.dashboard_uid);
            match fetch(client, &config.grafana_url, &path).await {
                Ok(json) => Outcome::Pass(format!(
                    "\"{}\" is provisioned",
                    json["dashboard"]["title"]
                        .as_str()
                        .unwrap_or(&config.dashboard_uid)
                )),
                Err(error) => Outcome::waiting(
                    format!("uid {}: {error}", config.dashboard_uid),
                    "provision dashboards/ into otel-lgtm (/otel-lgtm/grafana/conf/provisioning/dashboards): `just lab-4`",
                ),
            }
        }
        Checkpoint::Signal(signal) => {
            signal
                .probe(backends, &config.verify.service, verify::DEFAULT_WINDOW)
                .await
        }
        Checkpoint::Pipeline(check) => check.probe(&backends.prometheus).await,
    }
}

/// `/ready` is judged by its status alone: 200 ready, 503 database down.
async fn ready(client: &Client, base: &str) -> Result<String, ApiError> {
    http::get(client, http::endpoint(base, "/ready")?, &[]).await
}

async fn fetch(client: &Client, base: &str, path: &str) -> Result<serde_json::Value, ApiError> {
    let body = http::get(client, http::endpoint(base, path)?, &[]).await?;
    http::parse(path, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_includes_the_earlier_ones() {
        assert_eq!(
            checkpoints(1),
            [Checkpoint::AppHealth, Checkpoint::AppReady]
        );
        assert!(checkpoints(3).contains(&Checkpoint::Grafana));
        assert!(checkpoints(3).contains(&Checkpoint::Signal(Signal::SpanMetrics)));
        assert!(checkpoints(4).contains(&Checkpoint::Dashboard));
        // Step 5's signal checks come from verify itself, not twice.
        assert!(
            !checkpoints(5)
                .iter()
                .any(|c| matches!(c, Checkpoint::Signal(_)))
        );
    }
}
