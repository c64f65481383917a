//! The checks of the service's four signals: span metrics and the app's own metric in
//! Prometheus, traces in Tempo, log lines in Loki. Each failure says which usual mistake
//! it looks like.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{SEARCH_LIMIT, SKIP_REASON, api_failure, shorten};
use crate::clock::now;
use crate::duration;
use crate::http::ApiError;
use crate::lab;
use crate::loki::Loki;
use crate::probe::Outcome;
use crate::prom::Prometheus;
use crate::tempo::{self, Tempo};

pub(super) async fn span_metrics(
    prometheus: &Prometheus,
    service: &str,
    window: Duration,
) -> Outcome {
    let selector = format!(
        r#"traces_span_metrics_calls_total{{service_name="{service}", span_kind="SPAN_KIND_SERVER"}}"#
    );
    match routes_outcome(
        prometheus,
        routes(prometheus, &selector, window).await,
        Outcome::fail(
            "server spans are counted but no series has an http_route label",
            "add http.route to the spanmetrics connector's dimensions (stack/collector/config.yaml)",
        ),
    ) {
        Some(outcome) => outcome,
        None => explain_missing_span_metrics(prometheus, service, window).await,
    }
}

/// What [`routes`] found: a pass naming the routes, `unlabelled` when no series has an
/// `http_route`, the API failure, or `None` when no series matched at all (which the
/// caller explains).
fn routes_outcome(
    prometheus: &Prometheus,
    found: Result<Option<Vec<String>>, ApiError>,
    unlabelled: Outcome,
) -> Option<Outcome> {
    Some(match found {
        Err(error) => api_failure(
            &error,
            "Prometheus",
            prometheus.base_url(),
            "--prometheus-url",
        ),
        Ok(None) => return None,
        Ok(Some(routes)) if routes.is_empty() => unlabelled,
        Ok(Some(routes)) => Outcome::Pass(format!(
            "{} routes: {}",
            routes.len(),
            shorten(&routes.join(", "))
        )),
    })
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

pub(super) async fn app_metrics(
    prometheus: &Prometheus,
    service: &str,
    window: Duration,
) -> Outcome {
    let selector =
        format!(r#"http_server_request_duration_seconds_count{{service_name="{service}"}}"#);
    match routes_outcome(
        prometheus,
        routes(prometheus, &selector, window).await,
        Outcome::fail(
            "the app's request metric has no http_route label",
            "record http.route on http.server.request.duration in the app's middleware",
        ),
    ) {
        Some(outcome) => outcome,
        None => explain_missing_app_metrics(prometheus, service, window).await,
    }
}

/// The metric under another service name, or not there at all.
async fn explain_missing_app_metrics(
    prometheus: &Prometheus,
    service: &str,
    window: Duration,
) -> Outcome {
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

pub(super) async fn traces(tempo: Option<&Tempo>, service: &str, window: Duration) -> Outcome {
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

pub(super) async fn logs(loki: Option<&Loki>, service: &str, window: Duration) -> Outcome {
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
