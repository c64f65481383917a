use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use labctl::checks::{self, CheckpointConfig};
use labctl::dashboard::DEFAULT_SCRAPE_INTERVAL;
use labctl::duration;
use labctl::lab;
use labctl::telemetry::{self, ClientTelemetry, Destination};
use labctl::tempo::QUERY_END_CUTOFF;
use labctl::traffic::{self, TrafficConfig};
use labctl::verify::{self, VerifyConfig};
use reqwest::Url;

/// Traffic, verification and checkpoints for the todo-api OpenTelemetry lab.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a bounded, seeded mix of successes and failures to the service and print
    /// what was sent by route and status: the numbers the dashboard should show.
    Traffic(TrafficArgs),
    /// Check that traces, logs and metrics of the service arrived, and that every
    /// dashboard query returns data; prints a pass/fail table with fixes.
    Verify(VerifyArgs),
    /// Run the checkpoint of lab step N (1 app, 2 LGTM, 3 collector, 4 dashboard, 5 verify,
    /// 6 gateways, 7 propagation).
    Check(CheckArgs),
}

#[derive(Args)]
struct TrafficArgs {
    /// The service's base URL; only this machine's addresses are accepted.
    #[arg(long, default_value_t = Url::parse(&lab::local_url(lab::APP_PORT)).expect("a URL"))]
    base_url: Url,
    /// Stop after this long (at most 10m) [default: 60s when --requests is not given].
    #[arg(long, value_parser = duration::parse)]
    duration: Option<Duration>,
    /// Stop after this many requests (at most 100000; the run is still capped at 10m).
    #[arg(long)]
    requests: Option<u64>,
    /// Requests per second, across all workers.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seed of the request mix: the same seed sends the same plan.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Send no spans and no trace context. Otherwise requests are traced as todo-client
    /// when OTEL_EXPORTER_OTLP_ENDPOINT is set or, for the lab's API, when the lab
    /// collector (or else otel-lgtm) answers.
    #[arg(long)]
    no_telemetry: bool,
    /// Another W3C baggage entry for every request, next to lab.run.id (repeatable).
    #[arg(long = "baggage", value_name = "KEY=VALUE", value_parser = name_value)]
    baggage: Vec<(String, String)>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Prometheus HTTP API (PromQL).
    #[arg(long, default_value_t = lab::local_url(lab::PROMETHEUS_PORT))]
    prometheus_url: String,
    /// Tempo HTTP API (TraceQL search).
    #[arg(long, default_value_t = lab::local_url(lab::TEMPO_PORT))]
    tempo_url: String,
    /// Loki HTTP API (LogQL).
    #[arg(long, default_value_t = lab::local_url(lab::LOKI_PORT))]
    loki_url: String,
    /// service.name of the app (also bound to a dashboard variable named `service`).
    #[arg(long, default_value_t = lab::value(lab::SERVICE_NAME).to_owned())]
    service: String,
    /// The dashboard whose every query must return data.
    #[arg(long, default_value = "dashboards/todo-api-overview.json")]
    dashboard: PathBuf,
    /// How long to wait for data to appear (keep it above Tempo's 30 s search cutoff).
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    timeout: Duration,
    /// Do not query Tempo (a SKIP row says so).
    #[arg(long)]
    skip_tempo: bool,
    /// Do not query Loki (a SKIP row says so).
    #[arg(long)]
    skip_loki: bool,
    /// The Docker-free stack: Prometheus only (same as --skip-tempo --skip-loki).
    #[arg(long)]
    native: bool,
    /// Grafana's Prometheus scrape-interval setting, from which $__interval and
    /// $__rate_interval are derived [default: Grafana's own, 15s].
    #[arg(long, value_parser = duration::parse)]
    scrape_interval: Option<Duration>,
    /// Value for a dashboard variable, instead of its saved selection (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = name_value)]
    variables: Vec<(String, String)>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Lab step, 1 to 7.
    #[arg(value_parser = clap::value_parser!(u8).range(1..=7))]
    step: u8,
    /// The service's base URL.
    #[arg(long, default_value_t = lab::local_url(lab::APP_PORT))]
    base_url: String,
    /// Grafana (health and the provisioned dashboard).
    #[arg(long, default_value_t = lab::local_url(lab::GRAFANA_PORT))]
    grafana_url: String,
    /// The lab collector's health_check extension.
    #[arg(long, default_value_t = lab::local_url(lab::COLLECTOR_HEALTH_PORT))]
    collector_health_url: String,
    /// uid of the dashboard Grafana must have provisioned.
    #[arg(long, default_value = "todo-api-overview")]
    dashboard_uid: String,
    #[command(flatten)]
    verify: VerifyArgs,
}

impl VerifyArgs {
    fn config(self) -> VerifyConfig {
        let tempo = !(self.skip_tempo || self.native);
        if tempo && self.timeout < QUERY_END_CUTOFF && !self.quiet {
            // Tempo ends every search QUERY_END_CUTOFF before now: a shorter wait cannot
            // see traces sent just before the run, however healthy the pipeline.
            eprintln!(
                "labctl: note: --timeout {} is shorter than Tempo's search cutoff ({}): traces sent in the \
                 last {} are not found before it runs out",
                duration::format(self.timeout),
                duration::format(QUERY_END_CUTOFF),
                duration::format(QUERY_END_CUTOFF)
            );
        }
        VerifyConfig {
            prometheus_url: self.prometheus_url,
            tempo_url: tempo.then_some(self.tempo_url),
            loki_url: (!(self.skip_loki || self.native)).then_some(self.loki_url),
            service: self.service,
            dashboard: self.dashboard,
            timeout: self.timeout,
            scrape_interval: self.scrape_interval.unwrap_or(DEFAULT_SCRAPE_INTERVAL),
            variables: self.variables,
            progress: !self.quiet,
        }
    }
}

/// The run's tracer, or `None` (and why, on stderr) when the run is not traced.
fn client_telemetry(args: &TrafficArgs) -> anyhow::Result<Option<Arc<ClientTelemetry>>> {
    let env = telemetry::process_env;
    let destination = telemetry::destination(
        args.no_telemetry,
        &args.base_url,
        &env,
        &telemetry::port_answers,
    )?;
    let shown = match &destination {
        Destination::Off(reason) => {
            if !args.quiet {
                eprintln!("traffic: not traced ({reason})");
            }
            return Ok(None);
        }
        Destination::Environment(setting) => setting.clone(),
        Destination::Lab { endpoint, name } => format!("{name} at {endpoint}"),
    };
    let api_name = lab::value(lab::SERVICE_NAME);
    if env("OTEL_SERVICE_NAME").as_deref() == Some(api_name) {
        eprintln!(
            "labctl: warning: OTEL_SERVICE_NAME={api_name} is the API's name; the client's spans would pass \
             for the API's own (unset it: labctl traffic is {})",
            telemetry::SERVICE_NAME
        );
    }
    let tracing = ClientTelemetry::start(destination, &env, &args.baggage)?;
    if !args.quiet {
        eprintln!(
            "traffic: traced as {} to {shown}; baggage {}={}",
            telemetry::SERVICE_NAME,
            telemetry::RUN_ID_KEY,
            tracing.run_id
        );
    }
    Ok(Some(Arc::new(tracing)))
}

fn name_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // One provider for every rustls user in the process, before any client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse().command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("labctl: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Traffic(args) => {
            let duration = match (args.duration, args.requests) {
                (None, None) => Some(Duration::from_secs(60)),
                (duration, _) => duration,
            };
            let tracing = client_telemetry(&args)?;
            let config = TrafficConfig {
                base_url: args.base_url,
                duration,
                requests: args.requests,
                rate: args.rate,
                concurrency: args.concurrency,
                seed: args.seed,
                progress: !args.quiet,
            };
            let summary = traffic::run_traced(&config, tracing.clone()).await?;
            if let Some(tracing) = tracing {
                tracing.shutdown().await;
            }
            print!("{}", summary.render());
            if let Some(path) = args.json {
                std::fs::write(&path, summary.to_json())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            let report = verify::run(&args.config()).await;
            print!("{}", report.render());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Check(args) => {
            let config = CheckpointConfig {
                app_url: args.base_url,
                grafana_url: args.grafana_url,
                collector_health_url: args.collector_health_url,
                dashboard_uid: args.dashboard_uid,
                verify: args.verify.config(),
            };
            let report = checks::run(args.step, &config).await?;
            print!("{}", report.render());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn native_mode_skips_tempo_and_loki() {
        let Cli {
            command: Command::Verify(args),
        } = Cli::parse_from(["labctl", "verify", "--native"])
        else {
            panic!("not verify")
        };
        let config = args.config();
        assert_eq!((config.tempo_url, config.loki_url), (None, None));
        assert_eq!(config.scrape_interval, DEFAULT_SCRAPE_INTERVAL);
    }

    #[test]
    fn variables_are_name_value_pairs() {
        assert_eq!(
            name_value("route=/health"),
            Ok(("route".into(), "/health".into()))
        );
        assert_eq!(name_value("q=a=b"), Ok(("q".into(), "a=b".into())));
        assert!(name_value("=x").is_err());
        assert!(name_value("novalue").is_err());
    }
}
