//! The lab collector alone (`stack/collector/config.yaml`, started through
//! `stack/native/run.sh collector` like [`crate::native`] does), forwarding everything to
//! an OTLP/HTTP endpoint of the test's choice - usually an [`crate::otlp::OtlpReceiver`],
//! so the test sees exactly what got through. Unlike the full native stack, a test can
//! kill it and start it again on the same ports.

use crate::{
    native::{READY_TIMEOUT, start_component},
    postgres::free_port,
    process::Server,
};

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
        // config.yaml exports without compression, as the kit's receiver expects.
        self.server = Some(start_component("collector", &[], &self.environment)?);
        crate::wait_for_http(&self.health_url, true, READY_TIMEOUT)
            .await
            .map_err(|last| {
                anyhow::anyhow!(
                    "the lab collector did not become healthy ({last}); its output:\n{}",
                    self.output()
                )
            })
    }

    /// What the running collector printed so far.
    pub fn output(&self) -> String {
        self.server.as_ref().map(Server::output).unwrap_or_default()
    }
}
