//! The lab collector alone (`stack/collector/config.yaml`, started through
//! `stack/native/run.sh collector` like [`crate::native`] does), forwarding everything to
//! an OTLP/HTTP endpoint of the test's choice - usually an [`crate::otlp::OtlpReceiver`],
//! so the test sees exactly what got through. Unlike the full native stack, a test can
//! kill it and start it again on the same ports.

use std::{process::Command, time::Duration};

use anyhow::{Context as _, bail};

use crate::{postgres::free_port, process::Server};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LabCollector {
    /// `http://127.0.0.1:PORT` of its OTLP/gRPC receiver.
    pub grpc_endpoint: String,
    /// `http://127.0.0.1:PORT` of its OTLP/HTTP receiver.
    pub http_endpoint: String,
    health_url: String,
    environment: Vec<(&'static str, String)>,
    server: Option<Server>,
}

impl LabCollector {
    /// Starts the collector on free loopback ports, exporting traces and logs to
    /// `export_endpoint` (+ `/v1/traces`, `/v1/logs`) and metrics to
    /// `export_endpoint/v1/metrics`, and waits for its health check.
    pub async fn start(export_endpoint: &str) -> anyhow::Result<Self> {
        let loopback = || free_port().map(|port| format!("127.0.0.1:{port}"));
        let (grpc, http, health) = (loopback()?, loopback()?, loopback()?);
        let mut collector = Self {
            grpc_endpoint: format!("http://{grpc}"),
            http_endpoint: format!("http://{http}"),
            health_url: format!("http://{health}/"),
            environment: vec![
                ("COLLECTOR_OTLP_GRPC_ENDPOINT", grpc),
                ("COLLECTOR_OTLP_HTTP_ENDPOINT", http),
                ("COLLECTOR_HEALTH_CHECK_ENDPOINT", health),
                ("COLLECTOR_EXPORT_ENDPOINT", export_endpoint.to_owned()),
                (
                    "COLLECTOR_EXPORT_METRICS_ENDPOINT",
                    format!("{export_endpoint}/v1/metrics"),
                ),
            ],
            server: None,
        };
        collector.start_again().await?;
        Ok(collector)
    }

    /// SIGKILL: the collector vanishes mid-export, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        // Dropping the server kills it and waits for it.
        self.server = None;
    }

    /// Starts the collector again on the same ports and waits until it is healthy.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.server.is_none(), "the collector is already running");
        let mut command = Command::new(crate::workspace_root().join("stack/native/run.sh"));
        // config.yaml exports without compression, as the kit's receiver expects.
        command
            .arg("collector")
            .envs(self.environment.iter().map(|(key, value)| (key, value)));
        let (server, ()) =
            tokio::task::block_in_place(|| Server::start(&mut command, |_| Some(())))
                .context("starting the lab collector through stack/native/run.sh")?;
        self.server = Some(server);
        self.wait_healthy().await
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(response) = client.get(&self.health_url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the lab collector did not become healthy within {READY_TIMEOUT:?}; its output:\n{}",
            self.output()
        )
    }

    /// What the running collector printed so far.
    pub fn output(&self) -> String {
        self.server.as_ref().map(Server::output).unwrap_or_default()
    }
}
