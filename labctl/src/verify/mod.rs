//! `labctl verify`: did each signal of the service arrive, and does every dashboard query
//! return data? Asks Prometheus (PromQL), Tempo (TraceQL search) and Loki (LogQL) over
//! their HTTP APIs, waiting for late data up to a deadline, and explains each failure.

//!
//! [`signals`] holds the checks of the four signals, [`dashboard_queries`] those of the
//! dashboard's variables and panels.

mod dashboard_queries;
mod signals;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::dashboard::{self, Dashboard};
use crate::http::{self, ApiError};
use crate::loki::Loki;
use crate::probe::{self, Outcome, Report, Row};
use crate::prom::Prometheus;
use crate::tempo::Tempo;
use dashboard_queries::dashboard_checks;
use signals::{app_metrics, logs, span_metrics, traces};

pub const SKIP_REASON: &str = "not available here (Tempo/Loki are container-only)";

/// How far back signals are looked for when the dashboard (whose time range sets the
/// window) cannot be read.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3_600);
/// How many traces or log lines a search asks for: enough to tell "some" from "none".
const SEARCH_LIMIT: u32 = 20;

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub prometheus_url: String,
    /// `None` skips Tempo, with a SKIP row.
    pub tempo_url: Option<String>,
    /// `None` skips Loki, with a SKIP row.
    pub loki_url: Option<String>,
    pub service: String,
    pub dashboard: PathBuf,
    /// Overall wait for data to appear.
    pub timeout: Duration,
    /// Grafana's Prometheus "scrape interval" setting, from which it derives
    /// `$__interval` and `$__rate_interval`.
    pub scrape_interval: Duration,
    /// `name=value` overrides for dashboard variables.
    pub variables: Vec<(String, String)>,
    pub progress: bool,
}

/// The three backends; Tempo and Loki are absent where they cannot run.
pub struct Backends {
    pub prometheus: Prometheus,
    pub tempo: Option<Tempo>,
    pub loki: Option<Loki>,
}

impl Backends {
    pub fn new(config: &VerifyConfig) -> Self {
        let client = http::client();
        Self {
            prometheus: Prometheus::new(client.clone(), &config.prometheus_url),
            tempo: config
                .tempo_url
                .as_deref()
                .map(|url| Tempo::new(client.clone(), url)),
            loki: config.loki_url.as_deref().map(|url| Loki::new(client, url)),
        }
    }
}

/// One signal of the service arriving where the lab sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The collector's spanmetrics, the dashboard's source.
    SpanMetrics,
    /// The app's own `http.server.request.duration` histogram.
    AppMetrics,
    Traces,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 4] = [
        Signal::SpanMetrics,
        Signal::AppMetrics,
        Signal::Traces,
        Signal::Logs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SpanMetrics => "prometheus: traces_span_metrics_calls_total (server spans)",
            Self::AppMetrics => "prometheus: http_server_request_duration_seconds (app)",
            Self::Traces => "tempo: traces of the service",
            Self::Logs => "loki: log lines of the service",
        }
    }

    /// Looks for the signal of `service` in the last `window`.
    pub async fn probe(self, backends: &Backends, service: &str, window: Duration) -> Outcome {
        match self {
            Self::SpanMetrics => span_metrics(&backends.prometheus, service, window).await,
            Self::AppMetrics => app_metrics(&backends.prometheus, service, window).await,
            Self::Traces => traces(backends.tempo.as_ref(), service, window).await,
            Self::Logs => logs(backends.loki.as_ref(), service, window).await,
        }
    }
}

/// Runs every check and returns the table; `report.passed()` says whether all passed.
pub async fn run(config: &VerifyConfig) -> Report {
    let deadline = Instant::now() + config.timeout;
    let backends = Backends::new(config);
    let dashboard = load_dashboard(config);
    let window = dashboard
        .as_ref()
        .map(|d| d.range)
        .unwrap_or(DEFAULT_WINDOW);

    let names = Signal::ALL.iter().map(|s| s.name().to_owned()).collect();
    let mut report = probe::settle(names, deadline, config.progress, |i| {
        Signal::ALL[i].probe(&backends, &config.service, window)
    })
    .await;
    match dashboard {
        Ok(dashboard) => {
            report.extend(dashboard_checks(config, &backends, &dashboard, deadline).await)
        }
        Err(row) => report.rows.push(row),
    }
    report
}

fn load_dashboard(config: &VerifyConfig) -> Result<Dashboard, Row> {
    let shown = config.dashboard.display();
    let failed = |reason: String| Row {
        check: format!("dashboard {shown}"),
        outcome: Outcome::fail(
            reason,
            "pass --dashboard with the provisioned JSON (dashboards/todo-api-overview.json from the repository root)",
        ),
    };
    let text = std::fs::read_to_string(&config.dashboard)
        .map_err(|e| failed(format!("cannot read it: {e}")))?;
    dashboard::parse(&text).map_err(|e| failed(format!("not a dashboard: {e}")))
}

/// A failed call: a refusal is final, anything else may pass on a later try.
fn api_failure(error: &ApiError, backend: &str, url: &str, flag: &str) -> Outcome {
    let reason = format!("{backend} at {url}: {error}");
    match error {
        ApiError::Rejected { .. } => Outcome::fail(reason, format!("check {flag} and the query")),
        ApiError::Unreachable(_) => Outcome::waiting(
            reason,
            format!(
                "is the stack up (`just status`)? {backend} must be published on 127.0.0.1; point {flag} \
                 elsewhere if needed{}",
                if backend == "Prometheus" {
                    ""
                } else {
                    "; without Docker use --native"
                }
            ),
        ),
        ApiError::Failed(_) => Outcome::waiting(
            reason,
            format!("{backend} may still be starting; see its logs (`just logs`)"),
        ),
    }
}

/// Expressions and reasons in the report's rows: 120 characters and `...`.
fn shorten(text: &str) -> String {
    crate::text::shorten(text, 123)
}

fn round(value: f64) -> String {
    if value.is_finite() && value.fract() != 0.0 {
        format!("{value:.4}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_calls_are_read_with_or_without_a_selector() {
        assert_eq!(
            dashboard::label_values_call(r#"label_values(x{a="1", b="2"}, http_route)"#),
            Some((Some(r#"x{a="1", b="2"}"#), "http_route"))
        );
        assert_eq!(
            dashboard::label_values_call("label_values(service_name)"),
            Some((None, "service_name"))
        );
        assert_eq!(dashboard::label_values_call("query_result(up)"), None);
    }

    #[test]
    fn values_are_rounded_for_the_table() {
        assert_eq!(round(0.096_385_5), "0.0964");
        assert_eq!(round(12.0), "12");
        assert_eq!(round(f64::NAN), "NaN");
    }
}
