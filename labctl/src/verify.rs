//! `labctl verify`: did each signal of the service arrive, and does every dashboard query
//! return data? Asks Prometheus (PromQL), Tempo (TraceQL search) and Loki (LogQL) over
//! their HTTP APIs, waiting for late data up to a deadline, and explains each failure.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::dashboard::{
    self, Backend, Binding, Bindings, Dashboard, PanelQuery, TimeSettings, VariableKind,
};
use crate::duration;
use crate::http::{self, ApiError};
use crate::lab;
use crate::loki::Loki;
use crate::probe::{self, Outcome, Report, Row};
use crate::prom::Prometheus;
use crate::tempo::{self, Tempo};

pub const SKIP_REASON: &str = "not available here (Tempo/Loki are container-only)";

/// How far back signals are looked for when the dashboard (whose time range sets the
/// window) cannot be read.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3_600);
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

/// Resolves the dashboard's variables, then runs every panel target.
async fn dashboard_checks(
    config: &VerifyConfig,
    backends: &Backends,
    dashboard: &Dashboard,
    deadline: Instant,
) -> Report {
    let time = TimeSettings::for_range(dashboard.range, config.scrape_interval);
    let bindings = Mutex::new(Bindings::new(time));
    let mut report = Report::default();

    // Variables with a value of their own are bound first; query variables are asked for
    // their values, in rounds, so one may use another (`$route` filtered by `$service`).
    let mut pending = Vec::new();
    for variable in &dashboard.variables {
        let chosen = config
            .variables
            .iter()
            .find(|(name, _)| *name == variable.name)
            .map(|(_, value)| (value.clone(), "--var"))
            .or_else(|| {
                (variable.name == "service").then(|| (config.service.clone(), "--service"))
            });
        if let Some((value, source)) = chosen {
            let binding = if variable.multi || variable.include_all {
                Binding::Values(vec![value.clone()])
            } else {
                Binding::Plain(value.clone())
            };
            bindings
                .lock()
                .expect("bindings lock")
                .bind(&variable.name, binding);
            report.rows.push(Row {
                check: format!("variable ${}", variable.name),
                outcome: Outcome::Pass(format!("= {value} (from {source})")),
            });
        } else if let VariableKind::Query { .. } = variable.kind {
            pending.push(variable);
        } else if let Some(binding) = dashboard::binding_for(variable, &[]) {
            bindings
                .lock()
                .expect("bindings lock")
                .bind(&variable.name, binding);
        } else {
            report.rows.push(Row {
                check: format!("variable ${}", variable.name),
                outcome: Outcome::fail("has no value", "give it a default (`current`, or options)"),
            });
        }
    }
    let pending_names: BTreeSet<&str> = pending.iter().map(|v| v.name.as_str()).collect();
    let names = pending
        .iter()
        .map(|v| format!("variable ${}", v.name))
        .collect();
    report.extend(
        probe::settle(names, deadline, config.progress, |i| {
            resolve_variable(
                pending[i],
                &pending_names,
                &bindings,
                &backends.prometheus,
                time,
            )
        })
        .await,
    );

    let bindings = bindings.into_inner().expect("bindings lock");
    let declared: BTreeSet<&str> = dashboard
        .variables
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let names = dashboard
        .queries
        .iter()
        .map(|q| format!("panel {}", q.label()))
        .collect();
    report.extend(
        probe::settle(names, deadline, config.progress, |i| {
            panel(&dashboard.queries[i], &bindings, &declared, backends, time)
        })
        .await,
    );
    report
}

async fn resolve_variable(
    variable: &dashboard::Variable,
    query_variables: &BTreeSet<&str>,
    bindings: &Mutex<Bindings>,
    prometheus: &Prometheus,
    time: TimeSettings,
) -> Outcome {
    let VariableKind::Query { backend, query } = &variable.kind else {
        unreachable!("only query variables are resolved")
    };
    if *backend != Backend::Prometheus {
        return Outcome::Skip(format!(
            "its values come from {backend:?}; labctl resolves Prometheus variables"
        ));
    }
    let substituted = dashboard::substitute(query, &bindings.lock().expect("bindings lock"));
    let query = match substituted {
        Ok(query) => query,
        Err(unknown)
            if unknown
                .iter()
                .all(|name| query_variables.contains(name.as_str())) =>
        {
            return Outcome::waiting(
                format!("waits for ${}", unknown.join(", $")),
                "those variables must resolve first",
            );
        }
        Err(unknown) => {
            return Outcome::fail(
                format!("its query uses undefined ${}", unknown.join(", $")),
                "define the variable in templating.list or correct the name",
            );
        }
    };
    let Some((selector, label)) = dashboard::label_values_call(&query) else {
        return Outcome::fail(
            format!("unsupported variable query `{query}`"),
            "labctl reads `label_values(selector, label)` and `label_values(label)` queries",
        );
    };
    let end = now();
    let values = match prometheus
        .label_values(label, selector, end - time.range.as_secs_f64(), end)
        .await
    {
        Ok(values) => values,
        Err(error) => {
            return api_failure(
                &error,
                "Prometheus",
                prometheus.base_url(),
                "--prometheus-url",
            );
        }
    };
    // An empty list fails even when an "All" value would paper over it: an empty
    // variable is what a dashboard built on the wrong metric names shows.
    match dashboard::binding_for(variable, &values).filter(|_| !values.is_empty()) {
        Some(binding) => {
            bindings
                .lock()
                .expect("bindings lock")
                .bind(&variable.name, binding);
            Outcome::Pass(format!(
                "{} values: {}",
                values.len(),
                shorten(&values.join(", "))
            ))
        }
        None => Outcome::waiting(
            format!("no values: `{query}` finds nothing"),
            "send traffic first (labctl traffic); check the metric and label names in the query against \
             what Prometheus has (the collector's traces_span_metrics_*, not Tempo's traces_spanmetrics_*)",
        ),
    }
}

async fn panel(
    query: &PanelQuery,
    bindings: &Bindings,
    declared: &BTreeSet<&str>,
    backends: &Backends,
    time: TimeSettings,
) -> Outcome {
    let Some(text) = &query.query else {
        return Outcome::fail(
            "the target has no query text",
            "write the query into the target (`expr` for Prometheus and Loki, `query` for Tempo)",
        );
    };
    let text = match dashboard::substitute(text, bindings) {
        Ok(text) => text,
        Err(unknown) if unknown.iter().all(|name| declared.contains(name.as_str())) => {
            return Outcome::fail(
                format!("cannot run: ${} has no value", unknown.join(", $")),
                "see the variable's own row above",
            );
        }
        Err(unknown) => {
            return Outcome::fail(
                format!("uses undefined ${}", unknown.join(", $")),
                "define the variable in templating.list or correct the name",
            );
        }
    };
    let end = now();
    let start = end - time.range.as_secs_f64();
    let window = duration::format(time.range);
    match &query.backend {
        Backend::Prometheus => {
            let prometheus = &backends.prometheus;
            let answer = if query.instant {
                prometheus.instant(&text, end).await
            } else {
                prometheus
                    .range(&text, start, end, time.interval.as_secs_f64())
                    .await
            };
            match answer {
                Ok(data) if data.series_count() == 0 => Outcome::waiting(
                    format!("no data in the last {window}: {}", shorten(&text)),
                    "send traffic first (labctl traffic); compare metric and label names with what \
                     Prometheus has; a 5xx-only query has data only when the fault switch \
                     (LAB_FAULT_ERROR_RATE) produced 5xx, so write ratios as `(... or vector(0))`",
                ),
                Ok(data) if data.values().iter().all(|v| v.is_nan()) => Outcome::waiting(
                    format!("only NaN in the last {window} (0/0: the denominator has no traffic)"),
                    "send traffic first; guard ratios against an empty denominator",
                ),
                Ok(data) => {
                    let last = data.values().last().copied().unwrap_or(f64::NAN);
                    Outcome::Pass(format!(
                        "{} series, last value {}",
                        data.series_count(),
                        round(last)
                    ))
                }
                Err(ApiError::Rejected { message, .. }) => Outcome::fail(
                    format!("Prometheus refused it: {message}"),
                    format!("correct the expression; as sent: {}", shorten(&text)),
                ),
                Err(error) => api_failure(
                    &error,
                    "Prometheus",
                    prometheus.base_url(),
                    "--prometheus-url",
                ),
            }
        }
        Backend::Loki => {
            let Some(loki) = &backends.loki else {
                return Outcome::Skip(SKIP_REASON.into());
            };
            match loki
                .query_range(&text, start as u64, end as u64, SEARCH_LIMIT)
                .await
            {
                Ok(data) if data.entry_count() == 0 => Outcome::waiting(
                    format!("no log lines in the last {window}: {}", shorten(&text)),
                    "send traffic that logs (4xx/5xx and the fault switch log warnings and errors); \
                     check the stream labels (service_name) and line filters",
                ),
                Ok(data) => Outcome::Pass(format!("{} entries", data.entry_count())),
                Err(ApiError::Rejected { message, .. }) => Outcome::fail(
                    format!("Loki refused it: {message}"),
                    format!("correct the LogQL; as sent: {}", shorten(&text)),
                ),
                Err(error) => api_failure(&error, "Loki", loki.base_url(), "--loki-url"),
            }
        }
        Backend::Tempo => {
            let Some(tempo) = &backends.tempo else {
                return Outcome::Skip(SKIP_REASON.into());
            };
            match tempo
                .search(&text, start as u64, end as u64, SEARCH_LIMIT)
                .await
            {
                Ok(traces) if traces.is_empty() => Outcome::waiting(
                    format!(
                        "no traces in the last {window} (Tempo searches end {} before now): {}",
                        duration::format(tempo::QUERY_END_CUTOFF),
                        shorten(&text)
                    ),
                    "send traffic first, then allow Tempo's query_end_cutoff to pass; check the TraceQL \
                     attribute names (resource.service.name)",
                ),
                Ok(traces) => Outcome::Pass(format!("{} traces", traces.len())),
                Err(ApiError::Rejected { message, .. }) => Outcome::fail(
                    format!("Tempo refused it: {message}"),
                    format!("correct the TraceQL; as sent: {}", shorten(&text)),
                ),
                Err(error) => api_failure(&error, "Tempo", tempo.base_url(), "--tempo-url"),
            }
        }
        Backend::Other(kind) => {
            Outcome::Skip(format!("datasource type `{kind}` is not queried by labctl"))
        }
    }
}

async fn span_metrics(prometheus: &Prometheus, service: &str, window: Duration) -> Outcome {
    let selector = format!(
        r#"traces_span_metrics_calls_total{{service_name="{service}", span_kind="SPAN_KIND_SERVER"}}"#
    );
    match routes(prometheus, &selector, window).await {
        Err(error) => api_failure(
            &error,
            "Prometheus",
            prometheus.base_url(),
            "--prometheus-url",
        ),
        Ok(None) => explain_missing_span_metrics(prometheus, service, window).await,
        Ok(Some(routes)) if routes.is_empty() => Outcome::fail(
            "server spans are counted but no series has an http_route label",
            "add http.route to the spanmetrics connector's dimensions (stack/collector/config.yaml)",
        ),
        Ok(Some(routes)) => Outcome::Pass(format!(
            "{} routes: {}",
            routes.len(),
            shorten(&routes.join(", "))
        )),
    }
}

/// The usual reasons, told apart by what Prometheus does have.
async fn explain_missing_span_metrics(
    prometheus: &Prometheus,
    service: &str,
    window: Duration,
) -> Outcome {
    let window_text = duration::format(window);
    let tempo_generated = format!(
        r#"count(last_over_time(traces_spanmetrics_calls_total{{service="{service}"}}[{window_text}]))"#
    );
    if series_exist(prometheus, &tempo_generated).await {
        return Outcome::waiting(
            format!(
                "only Tempo's own traces_spanmetrics_* series exist for {service}, not the collector's"
            ),
            format!(
                "the app exports straight to LGTM, bypassing the collector: point OTEL_EXPORTER_OTLP_ENDPOINT \
                 at the lab collector ({}, lab 3: `just run collector`)",
                lab::collector_endpoint()
            ),
        );
    }
    let other_services = format!(
        "count by (service_name) (last_over_time(traces_span_metrics_calls_total[{window_text}]))"
    );
    if let Ok(data) = prometheus.instant(&other_services, now()).await {
        let names: Vec<&str> = data
            .label_sets()
            .into_iter()
            .filter_map(|labels| labels.get("service_name").map(String::as_str))
            .collect();
        if !names.is_empty() {
            return Outcome::waiting(
                format!(
                    "span metrics exist only for service_name {}",
                    names.join(", ")
                ),
                format!(
                    "the app reports another service.name: set OTEL_SERVICE_NAME={service}, or pass --service"
                ),
            );
        }
    }
    Outcome::waiting(
        format!(
            "no traces_span_metrics_calls_total series for service_name=\"{service}\" in the last {window_text}"
        ),
        format!(
            "is the collector in the path (app OTEL_EXPORTER_OTLP_ENDPOINT={})? was traffic \
             sent (labctl traffic)? has the spanmetrics connector flushed (metrics_flush_interval, 5s in the lab)? \
             does the collector's metrics pipeline export to Prometheus?",
            lab::collector_endpoint()
        ),
    )
}

async fn app_metrics(prometheus: &Prometheus, service: &str, window: Duration) -> Outcome {
    let selector =
        format!(r#"http_server_request_duration_seconds_count{{service_name="{service}"}}"#);
    match routes(prometheus, &selector, window).await {
        Err(error) => api_failure(
            &error,
            "Prometheus",
            prometheus.base_url(),
            "--prometheus-url",
        ),
        Ok(None) => {
            let unlabelled = format!(
                "count(last_over_time(http_server_request_duration_seconds_count[{}]))",
                duration::format(window)
            );
            if series_exist(prometheus, &unlabelled).await {
                Outcome::waiting(
                    format!("the metric exists, but not with service_name=\"{service}\""),
                    "Prometheus must promote service.name to a label (otlp.promote_resource_attributes, as \
                     otel-lgtm does), or the app reports another service.name (OTEL_SERVICE_NAME)",
                )
            } else {
                Outcome::waiting(
                    format!("no http_server_request_duration_seconds series for {service}"),
                    "is OTEL_METRICS_EXPORTER=otlp? OTEL_METRIC_EXPORT_INTERVAL (SDK default 60s, the lab \
                     sets 5000 ms)? was traffic sent? does the collector's metrics pipeline forward the \
                     app's own metrics?",
                )
            }
        }
        Ok(Some(routes)) if routes.is_empty() => Outcome::fail(
            "the app's request metric has no http_route label",
            "record http.route on http.server.request.duration in the app's middleware",
        ),
        Ok(Some(routes)) => Outcome::Pass(format!(
            "{} routes: {}",
            routes.len(),
            shorten(&routes.join(", "))
        )),
    }
}

/// `None` when no series matches in the window; otherwise the non-empty `http_route`
/// values among them. `last_over_time` keeps series that went quiet within the window
/// (a pushed series is otherwise stale after five minutes).
async fn routes(
    prometheus: &Prometheus,
    selector: &str,
    window: Duration,
) -> Result<Option<Vec<String>>, ApiError> {
    let expr = format!(
        "count by (http_route) (last_over_time({selector}[{}]))",
        duration::format(window)
    );
    let data = prometheus.instant(&expr, now()).await?;
    if data.series_count() == 0 {
        return Ok(None);
    }
    let routes: BTreeSet<String> = data
        .label_sets()
        .into_iter()
        .filter_map(|labels| {
            labels
                .get("http_route")
                .filter(|route| !route.is_empty())
                .cloned()
        })
        .collect();
    Ok(Some(routes.into_iter().collect()))
}

async fn series_exist(prometheus: &Prometheus, expr: &str) -> bool {
    prometheus
        .instant(expr, now())
        .await
        .is_ok_and(|data| data.series_count() > 0)
}

async fn traces(tempo: Option<&Tempo>, service: &str, window: Duration) -> Outcome {
    let Some(tempo) = tempo else {
        return Outcome::Skip(SKIP_REASON.into());
    };
    let end = now() as u64;
    let query = format!(r#"{{resource.service.name="{service}"}}"#);
    match tempo
        .search(&query, end - window.as_secs(), end, SEARCH_LIMIT)
        .await
    {
        Ok(traces) if traces.is_empty() => Outcome::waiting(
            format!(
                "no trace with resource.service.name=\"{service}\" in the last {} (Tempo searches end {} \
                 before now, so the newest traces show up that much later)",
                duration::format(window),
                duration::format(tempo::QUERY_END_CUTOFF)
            ),
            "is OTEL_TRACES_EXPORTER=otlp (not none/console)? does the collector's traces pipeline export to \
             LGTM? is the sampler off (OTEL_TRACES_SAMPLER)? was traffic sent?",
        ),
        Ok(traces) => {
            let example = traces
                .iter()
                .find_map(|t| t.root_trace_name.as_deref())
                .map(|name| format!(", e.g. \"{name}\""))
                .unwrap_or_default();
            Outcome::Pass(format!("{} traces{example}", traces.len()))
        }
        Err(error) => api_failure(&error, "Tempo", tempo.base_url(), "--tempo-url"),
    }
}

async fn logs(loki: Option<&Loki>, service: &str, window: Duration) -> Outcome {
    let Some(loki) = loki else {
        return Outcome::Skip(SKIP_REASON.into());
    };
    let end = now() as u64;
    let query = format!(r#"{{service_name="{service}"}}"#);
    match loki
        .query_range(&query, end - window.as_secs(), end, SEARCH_LIMIT)
        .await
    {
        Ok(data) if data.entry_count() == 0 => Outcome::waiting(
            format!(
                "no log line for {query} in the last {}",
                duration::format(window)
            ),
            "is OTEL_LOGS_EXPORTER=otlp? does the collector's logs pipeline export to LGTM? Loki names \
             the stream service_name after the service.name resource attribute",
        ),
        Ok(data) => Outcome::Pass(format!(
            "{} lines, newest: {}",
            data.entry_count(),
            shorten(data.lines()[0])
        )),
        Err(error) => api_failure(&error, "Loki", loki.base_url(), "--loki-url"),
    }
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

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

fn shorten(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
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
    fn long_text_is_shortened_on_a_char_boundary() {
        let long = "é".repeat(200);
        assert_eq!(shorten(&long).chars().count(), 123);
        assert_eq!(shorten("short"), "short");
    }

    #[test]
    fn values_are_rounded_for_the_table() {
        assert_eq!(round(0.096_385_5), "0.0964");
        assert_eq!(round(12.0), "12");
        assert_eq!(round(f64::NAN), "NaN");
    }
}
