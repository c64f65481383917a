//! The native telemetry stack of `stack/native/`: Prometheus, the sink collector (standing
//! in for LGTM's OTLP intake, writing traces and logs to a JSON-lines file) and the lab
//! collector running `stack/collector/config.yaml` itself.
//!
//! Every component is started through `stack/native/run.sh`, which holds the only copy of
//! their command lines; the kit passes free loopback ports in the environment variables
//! `run.sh` documents, so stacks of parallel tests never collide with each other or with
//! a stack a developer runs on the default ports.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{postgres::free_port, process::Server};

/// How long each component may take to answer its readiness probe once started.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running native stack; stopped (and its files deleted) on drop.
pub struct NativeStack {
    /// `http://127.0.0.1:PORT`, Prometheus' HTTP API (and its OTLP receiver under
    /// `/api/v1/otlp`).
    pub prometheus_url: String,
    /// `http://127.0.0.1:PORT`, the lab collector's OTLP/gRPC receiver.
    pub collector_grpc_url: String,
    /// `http://127.0.0.1:PORT`, the lab collector's OTLP/HTTP receiver.
    pub collector_http_url: String,
    /// `http://127.0.0.1:PORT/`, the lab collector's health_check extension.
    pub collector_health_url: String,
    /// What the sink received: one OTLP/JSON object per line.
    pub sink_file: PathBuf,
    /// The run directory (Prometheus' TSDB, the sink file); kept when the test fails.
    pub dir: PathBuf,
    /// In start order: prometheus, sink, collector.
    servers: Vec<(&'static str, Server)>,
}

impl NativeStack {
    /// Starts Prometheus and the sink, then the lab collector (last, so that its first
    /// export finds both destinations listening), each waited on until ready.
    /// `collector_args` go to the lab collector after its `--config`, e.g. a
    /// `--config=yaml:...` overlay.
    pub async fn start(collector_args: &[String]) -> anyhow::Result<NativeStack> {
        let (otelcol_bin, prometheus_bin) = binaries()?;
        let dir =
            std::env::temp_dir().join(format!("otel-lab-native-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let loopback = |port: u16| format!("127.0.0.1:{port}");
        let prometheus_listen = loopback(free_port()?);
        let sink_listen = loopback(free_port()?);
        let grpc_listen = loopback(free_port()?);
        let http_listen = loopback(free_port()?);
        let health_listen = loopback(free_port()?);
        let sink_file = dir.join("sink.jsonl");

        let mut stack = NativeStack {
            prometheus_url: format!("http://{prometheus_listen}"),
            collector_grpc_url: format!("http://{grpc_listen}"),
            collector_http_url: format!("http://{http_listen}"),
            collector_health_url: format!("http://{health_listen}/"),
            sink_file: sink_file.clone(),
            dir: dir.clone(),
            servers: Vec::new(),
        };
        let environment: Vec<(&str, String)> = vec![
            ("OTELCOL_BIN", otelcol_bin.clone()),
            ("PROMETHEUS_BIN", prometheus_bin.clone()),
            ("PROMETHEUS_LISTEN", prometheus_listen),
            (
                "PROMETHEUS_DATA_DIR",
                dir.join("prometheus-data").display().to_string(),
            ),
            ("SINK_OTLP_HTTP_ENDPOINT", sink_listen.clone()),
            ("SINK_FILE_PATH", sink_file.display().to_string()),
            ("COLLECTOR_OTLP_GRPC_ENDPOINT", grpc_listen),
            ("COLLECTOR_OTLP_HTTP_ENDPOINT", http_listen),
            ("COLLECTOR_HEALTH_CHECK_ENDPOINT", health_listen),
        ];

        stack.launch("prometheus", &[], &environment)?;
        stack.launch("sink", &[], &environment)?;
        let ready_url = format!("{}/-/ready", stack.prometheus_url);
        stack.wait_ready("prometheus", &ready_url, true).await?;
        // The sink has no health endpoint: any HTTP answer means its receiver listens.
        stack
            .wait_ready("sink", &format!("http://{sink_listen}/"), false)
            .await?;
        stack.launch("collector", collector_args, &environment)?;
        let health_url = stack.collector_health_url.clone();
        stack.wait_ready("collector", &health_url, true).await?;
        Ok(stack)
    }

    fn launch(
        &mut self,
        component: &'static str,
        args: &[String],
        environment: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let server = start_component(component, args, environment)?;
        self.servers.push((component, server));
        Ok(())
    }

    async fn wait_ready(&self, component: &str, url: &str, success: bool) -> anyhow::Result<()> {
        crate::wait_for_http(url, success, READY_TIMEOUT)
            .await
            .map_err(|last| {
                anyhow::anyhow!(
                    "{component} did not become ready ({last}); its output:\n{}",
                    self.output_of(component)
                )
            })
    }

    /// Everything `component` ("prometheus", "sink", "collector") printed so far.
    pub fn output_of(&self, component: &str) -> String {
        self.servers
            .iter()
            .find(|(name, _)| *name == component)
            .map(|(_, server)| server.output())
            .unwrap_or_default()
    }

    /// The last lines each component printed, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (name, server) in &self.servers {
            let output = server.output();
            let all: Vec<&str> = output.lines().collect();
            out.push_str(&format!("== {name} (last {lines} lines)\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for NativeStack {
    fn drop(&mut self) {
        // Collector first, so it does not log export failures to stopped destinations.
        while let Some((_, server)) = self.servers.pop() {
            drop(server);
        }
        if std::thread::panicking() {
            eprintln!(
                "native stack files kept for inspection: {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts one component (`prometheus`, `sink`, `collector`) through `stack/native/run.sh`;
/// readiness is for the caller to ask over HTTP, as both programs log as soon as they start.
pub(crate) fn start_component(
    component: &str,
    args: &[String],
    environment: &[(&str, String)],
) -> anyhow::Result<Server> {
    let mut command = Command::new(crate::workspace_root().join("stack/native/run.sh"));
    command
        .arg(component)
        .args(args)
        .envs(environment.iter().map(|(k, v)| (k, v)));
    let (server, ()) = tokio::task::block_in_place(|| Server::start(&mut command, |_| Some(())))
        .with_context(|| format!("starting {component} through stack/native/run.sh"))?;
    Ok(server)
}

/// The collector and Prometheus binaries, from `stack/native/build.sh` (a no-op when its
/// cache is warm; a cold build takes minutes and shows its progress on stderr).
pub(crate) fn binaries() -> anyhow::Result<(String, String)> {
    static BINARIES: OnceLock<Result<(String, String), String>> = OnceLock::new();
    BINARIES
        .get_or_init(|| {
            build(&crate::workspace_root().join("stack/native/build.sh"))
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build(script: &Path) -> anyhow::Result<(String, String)> {
    let output = Command::new(script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}); its progress is on stderr above",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .with_context(|| format!("{} printed no {key}= line: {stdout}", script.display()))
    };
    Ok((value("OTELCOL_BIN")?, value("PROMETHEUS_BIN")?))
}
