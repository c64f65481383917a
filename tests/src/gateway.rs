//! The lab 6 topology on loopback: Prometheus, two gateway collectors running
//! `stack/collector/gateway.yaml` (each exporting to a sink of its own, so a test can
//! tell which gateway kept which trace) and the agent running
//! `stack/collector/agent.yaml` in front of them. Every component is started through
//! `stack/native/run.sh`, on free ports; the certificates and token come from
//! `stack/collector/make-certs.sh`, run into the stack's directory.
//!
//! Every collector pushes its own `otelcol_*` metrics to the Prometheus, under the job
//! `lab-agent`, `lab-gateway-1` or `lab-gateway-2`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use crate::sink_spans::{attributes, complete_lines, resource_spans, service_name};
use anyhow::{Context, ensure};
use serde_json::Value;

use crate::{
    native::{READY_TIMEOUT, binaries, start_component},
    postgres::free_port,
    process::Server,
};

/// One gateway: its addresses, its sink and (while it runs) its process.
pub struct Gateway {
    /// 1 or 2, as in `run.sh gateway N` and the job `lab-gateway-N`.
    pub number: u8,
    /// `127.0.0.1:PORT` of its OTLP/gRPC receiver (TLS + token), the agent's target.
    pub grpc_address: String,
    /// `https://127.0.0.1:PORT` of its OTLP/HTTP receiver (TLS + token).
    pub https_url: String,
    pub health_url: String,
    /// What it exported: one OTLP/JSON object per line.
    pub sink_file: PathBuf,
    environment: Vec<(&'static str, String)>,
    args: Vec<String>,
    server: Option<Server>,
    _sink: Server,
}

impl Gateway {
    /// SIGKILL, as a crash or an evicted pod: no flush, no goodbye.
    pub fn kill(&mut self) {
        self.server = None;
    }

    /// Starts it again on the same ports; waits for its health check.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        ensure!(self.server.is_none(), "gateway {} is running", self.number);
        let mut args = vec![self.number.to_string()];
        args.extend(self.args.iter().cloned());
        self.server = Some(start_component("gateway", &args, &self.environment)?);
        crate::wait_for_http(&self.health_url, true, READY_TIMEOUT)
            .await
            .map_err(|last| {
                anyhow::anyhow!(
                    "gateway {} did not become healthy ({last}); its output:\n{}",
                    self.number,
                    self.output()
                )
            })
    }

    pub fn output(&self) -> String {
        self.server.as_ref().map(Server::output).unwrap_or_default()
    }

    /// The spans this gateway exported so far.
    pub fn spans(&self) -> Vec<SinkSpan> {
        read_spans(&self.sink_file)
    }
}

/// Options of a gateway stack.
pub struct Options {
    /// tail_sampling's `decision_wait` (gateway.yaml's default is 10 s).
    pub decision_wait: &'static str,
    /// How often every collector pushes its own metrics, in ms.
    pub self_metrics_interval_ms: u32,
    /// More arguments for both gateways, e.g. a `--config=yaml:...` overlay.
    pub gateway_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            decision_wait: "2s",
            self_metrics_interval_ms: 1000,
            gateway_args: Vec::new(),
        }
    }
}

/// The whole lab 6 topology; stopped (its files deleted unless the test failed) on drop.
pub struct GatewayStack {
    pub prometheus_url: String,
    /// `http://127.0.0.1:PORT` of the agent's OTLP/HTTP receiver (plain text on
    /// loopback, as the lab collector's: the app's hop).
    pub agent_http_url: String,
    pub agent_health_url: String,
    pub gateways: [Gateway; 2],
    /// make-certs.sh's output: ca.crt, gateway.crt, gateway.key, token.
    pub certs: PathBuf,
    pub dir: PathBuf,
    agent: Option<Server>,
    _prometheus: Server,
}

impl GatewayStack {
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let (otelcol_bin, prometheus_bin) = binaries()?;
        let dir = std::env::temp_dir().join(format!(
            "otel-lab-gateways-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let certs = dir.join("certs");
        make_certs(&certs)?;
        let loopback = || free_port().map(|port| format!("127.0.0.1:{port}"));
        let prometheus_listen = loopback()?;
        let prometheus_url = format!("http://{prometheus_listen}");
        let metrics_endpoint = format!("{prometheus_url}/api/v1/otlp/v1/metrics");
        let common: Vec<(&'static str, String)> = vec![
            ("OTELCOL_BIN", otelcol_bin),
            ("PROMETHEUS_BIN", prometheus_bin),
            ("PROMETHEUS_LISTEN", prometheus_listen),
            ("LAB_GATEWAY_CERTS", certs.display().to_string()),
            (
                "COLLECTOR_EXPORT_METRICS_ENDPOINT",
                metrics_endpoint.clone(),
            ),
            ("COLLECTOR_SELF_METRICS_ENDPOINT", metrics_endpoint),
            (
                "COLLECTOR_SELF_METRICS_INTERVAL",
                options.self_metrics_interval_ms.to_string(),
            ),
            ("GATEWAY_DECISION_WAIT", options.decision_wait.to_owned()),
        ];

        let mut prometheus_env = common.clone();
        prometheus_env.push((
            "PROMETHEUS_DATA_DIR",
            dir.join("prometheus-data").display().to_string(),
        ));
        let prometheus = start_component("prometheus", &[], &prometheus_env)?;
        crate::wait_for_http(&format!("{prometheus_url}/-/ready"), true, READY_TIMEOUT)
            .await
            .map_err(|last| {
                anyhow::anyhow!("prometheus: {last}; its output:\n{}", prometheus.output())
            })?;

        let mut gateways = Vec::new();
        for number in 1..=2u8 {
            let sink_listen = loopback()?;
            let sink_file = dir.join(format!("gateway-{number}.jsonl"));
            let mut sink_env = common.clone();
            sink_env.push(("SINK_OTLP_HTTP_ENDPOINT", sink_listen.clone()));
            sink_env.push(("SINK_FILE_PATH", sink_file.display().to_string()));
            let sink = start_component("sink", &[], &sink_env)?;
            crate::wait_for_http(&format!("http://{sink_listen}/"), false, READY_TIMEOUT)
                .await
                .map_err(|last| anyhow::anyhow!("sink {number}: {last}"))?;
            let (grpc, http, health) = (loopback()?, loopback()?, loopback()?);
            let mut environment = common.clone();
            environment.extend([
                ("GATEWAY_OTLP_GRPC_ENDPOINT", grpc.clone()),
                ("GATEWAY_OTLP_HTTP_ENDPOINT", http.clone()),
                ("GATEWAY_HEALTH_CHECK_ENDPOINT", health.clone()),
                ("COLLECTOR_EXPORT_ENDPOINT", format!("http://{sink_listen}")),
            ]);
            let mut gateway = Gateway {
                number,
                grpc_address: grpc,
                https_url: format!("https://{http}"),
                health_url: format!("http://{health}/"),
                sink_file,
                environment,
                args: options.gateway_args.clone(),
                server: None,
                _sink: sink,
            };
            gateway.start_again().await?;
            gateways.push(gateway);
        }
        let gateways: [Gateway; 2] = gateways.try_into().ok().expect("two gateways");

        let (grpc, http, health) = (loopback()?, loopback()?, loopback()?);
        let mut agent_env = common;
        agent_env.extend([
            ("COLLECTOR_OTLP_GRPC_ENDPOINT", grpc),
            ("COLLECTOR_OTLP_HTTP_ENDPOINT", http.clone()),
            ("COLLECTOR_HEALTH_CHECK_ENDPOINT", health.clone()),
            ("GATEWAY_1_ENDPOINT", gateways[0].grpc_address.clone()),
            ("GATEWAY_2_ENDPOINT", gateways[1].grpc_address.clone()),
        ]);
        let agent = start_component("agent", &[], &agent_env)?;
        let agent_health_url = format!("http://{health}/");
        crate::wait_for_http(&agent_health_url, true, READY_TIMEOUT)
            .await
            .map_err(|last| {
                anyhow::anyhow!("the agent: {last}; its output:\n{}", agent.output())
            })?;
        Ok(Self {
            prometheus_url,
            agent_http_url: format!("http://{http}"),
            agent_health_url,
            gateways,
            certs,
            dir,
            agent: Some(agent),
            _prometheus: prometheus,
        })
    }

    pub fn agent_output(&self) -> String {
        self.agent.as_ref().map(Server::output).unwrap_or_default()
    }

    /// The bearer token the gateways accept.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.certs.join("token"))
            .expect("make-certs.sh wrote a token")
            .trim()
            .to_owned()
    }

    /// The last lines of every collector's output, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let tail = |name: String, output: String| {
            let all: Vec<&str> = output.lines().collect();
            format!(
                "== {name}\n{}\n",
                all[all.len().saturating_sub(lines)..].join("\n")
            )
        };
        let mut out = tail("agent".into(), self.agent_output());
        for gateway in &self.gateways {
            out.push_str(&tail(
                format!("gateway {}", gateway.number),
                gateway.output(),
            ));
        }
        out
    }
}

impl Drop for GatewayStack {
    fn drop(&mut self) {
        self.agent = None;
        for gateway in &mut self.gateways {
            gateway.kill();
        }
        if std::thread::panicking() {
            eprintln!("gateway stack files kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `stack/collector/make-certs.sh DIR`: the lab's own way to make the credentials.
pub fn make_certs(dir: &Path) -> anyhow::Result<()> {
    let script = crate::workspace_root().join("stack/collector/make-certs.sh");
    let output = Command::new(&script)
        .arg(dir)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A span as a gateway exported it.
#[derive(Debug, Clone)]
pub struct SinkSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// OTLP SpanKind: 2 SERVER, 3 CLIENT.
    pub kind: i64,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub service_name: String,
    pub attributes: BTreeMap<String, Value>,
}

pub const SERVER_KIND: i64 = 2;
pub const STATUS_ERROR: i64 = 2;

impl SinkSpan {
    pub fn text(&self, name: &str) -> String {
        self.attributes
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    pub fn status(&self) -> u16 {
        self.attributes
            .get("http.response.status_code")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u16
    }
}

/// Every span in a sink file (complete lines only: the file exporter may be writing).
pub fn read_spans(path: &Path) -> Vec<SinkSpan> {
    let mut spans = Vec::new();
    for line in complete_lines(path) {
        let Ok(batch) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        for (resource, span) in resource_spans(&batch) {
            let text = |field: &str| span[field].as_str().unwrap_or_default().to_owned();
            let nanos = |field: &str| {
                span[field]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0)
            };
            spans.push(SinkSpan {
                trace_id: text("traceId"),
                span_id: text("spanId"),
                parent_span_id: text("parentSpanId"),
                kind: span["kind"].as_i64().unwrap_or(0),
                status_code: span["status"]["code"].as_i64().unwrap_or(0),
                start_ns: nanos("startTimeUnixNano"),
                end_ns: nanos("endTimeUnixNano"),
                service_name: service_name(resource).unwrap_or_default(),
                attributes: attributes(&span["attributes"]),
            });
        }
    }
    spans
}

/// `otelcol-lab print-config` of `configs` merged in order (the collector's own
/// resolution, ${env:...} included; validation on): what a collector started with
/// those `--config` flags would run.
pub fn print_config(configs: &[&Path], environment: &[(&str, &str)]) -> anyhow::Result<String> {
    let (otelcol_bin, _) = binaries()?;
    let mut command = Command::new(otelcol_bin);
    command.arg("print-config");
    for config in configs {
        command.arg(format!("--config={}", config.display()));
    }
    let output = command.envs(environment.iter().copied()).output()?;
    ensure!(
        output.status.success(),
        "print-config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
