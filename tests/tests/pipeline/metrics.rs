//! Checks of the series in Prometheus: the span metrics and the app's own
//! `http.server.request.duration`, against what labctl sent.

use std::collections::{BTreeMap, BTreeSet};

use labctl::lab;

use crate::findings::Findings;
use crate::prometheus::{Latency, counts_by, label_values_of, latency_by_route, scalar};
use crate::run::Run;
use crate::{FAULT_LATENCY_MS, FAULT_ROUTE, SERVER, SERVICE};

/// Both counts - span metrics and the app metric - equal what was sent, exactly, and
/// stopped moving (see [`crate::prometheus::settle`]).
pub fn prometheus_counts_every_request_sent(run: &Run, findings: &mut Findings) {
    if let Err(message) = &run.settled.outcome {
        findings.fail(message.clone());
    }
}

/// The span counts of every kind, and of SERVER spans only, for the record.
pub struct Kinds {
    pub all: f64,
    pub server: u64,
}

/// Without `span_kind="SPAN_KIND_SERVER"` the DB (CLIENT) spans would be counted as
/// requests too: the selector the dashboards use must make a difference.
pub async fn only_server_spans_are_counted(run: &Run, findings: &mut Findings) -> Kinds {
    let all_kinds = scalar(
        &run.prometheus,
        &format!(r#"sum(traces_span_metrics_calls_total{{service_name="{SERVICE}"}})"#),
        run.at,
    )
    .await
    .unwrap_or(f64::NAN);
    let server_total: u64 = run.settled.span.values().sum();
    findings.check(
        all_kinds > server_total as f64,
        format!(
            "without span_kind=\"SPAN_KIND_SERVER\" the count should also hold the DB (CLIENT) spans, \
             i.e. exceed the {server_total} server spans; it is {all_kinds}"
        ),
    );
    Kinds {
        all: all_kinds,
        server: server_total,
    }
}

/// The lab's resource attributes (stack/lab.env) are Prometheus labels on both metrics:
/// dots become underscores.
pub async fn resource_attributes_become_labels(run: &Run, findings: &mut Findings) {
    for metric in [
        "traces_span_metrics_calls_total",
        "http_server_request_duration_seconds_count",
    ] {
        let labels: String = lab::value(lab::RESOURCE_ATTRIBUTES)
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| format!(r#", {}="{value}""#, key.replace('.', "_")))
            .collect();
        let expr = format!(r#"count({metric}{{service_name="{SERVICE}"{labels}}})"#);
        let found = scalar(&run.prometheus, &expr, run.at).await.unwrap_or(0.0);
        findings.check(found > 0.0, format!("no `{metric}` series with service_name and deployment_environment_name: `{expr}` returned {found}"));
    }
}

/// The app's histogram carries `http_route` for every route labctl sent to.
pub async fn the_app_metric_has_every_route_sent(run: &Run, findings: &mut Findings) {
    let app_routes = label_values_of(
        &run.prometheus,
        "http_route",
        &format!(r#"http_server_request_duration_seconds_count{{service_name="{SERVICE}"}}"#),
        run.at,
    )
    .await;
    let sent_routes: BTreeSet<String> = run
        .summary
        .responses
        .iter()
        .map(|row| row.route.clone())
        .collect();
    findings.check(
        sent_routes.is_subset(&app_routes),
        format!("the app's http_server_request_duration_seconds has http_route values {app_routes:?}, expected all of {sent_routes:?}"),
    );
}

/// Unit: the span histogram's buckets are config.yaml's, in milliseconds.
pub async fn span_histogram_buckets_are_the_configured_ms(run: &Run, findings: &mut Findings) {
    let le = label_values_of(
        &run.prometheus,
        "le",
        &format!(r#"traces_span_metrics_duration_milliseconds_bucket{{service_name="{SERVICE}", {SERVER}}}"#),
        run.at,
    )
    .await;
    findings.check(
        le == run.connector.bucket_labels,
        format!(
            "traces_span_metrics_duration_milliseconds_bucket has le {le:?}; config.yaml's buckets in ms are {:?}",
            run.connector.bucket_labels
        ),
    );
}

/// The spans agree with the shares: 5xx carry status Error, 4xx leave it Unset (so a
/// panel built on status_code="STATUS_CODE_ERROR" would also show the 5xx share).
pub async fn only_5xx_server_spans_have_error_status(
    run: &Run,
    findings: &mut Findings,
) -> BTreeMap<String, u64> {
    let by_status = counts_by(
        &run.prometheus,
        &format!(
            r#"sum by (status_code) (traces_span_metrics_calls_total{{service_name="{SERVICE}", {SERVER}, http_response_status_code=~"4..|5.."}})"#
        ),
        "status_code",
        run.at,
    )
    .await;
    let expected_status: BTreeMap<String, u64> = [
        ("STATUS_CODE_ERROR".to_owned(), run.totals.status_5xx),
        ("STATUS_CODE_UNSET".to_owned(), run.totals.status_4xx),
    ]
    .into();
    findings.check(
        by_status == expected_status,
        format!(
            "span status of the 4xx and 5xx server spans: {by_status:?}; expected {expected_status:?} \
             (5xx are errors, 4xx are not)"
        ),
    );
    by_status
}

/// Latency: the injected delay at the right magnitude, in milliseconds, on the fault
/// route; the other routes well below it.
pub async fn the_injected_delay_shows_on_its_route_only(
    run: &Run,
    findings: &mut Findings,
) -> BTreeMap<String, Latency> {
    let latency = latency_by_route(&run.prometheus, run.at).await;
    for (route, row) in &latency {
        if route == FAULT_ROUTE {
            for (what, value) in [
                ("span metrics p50", row.p50),
                ("span metrics p95", row.p95),
                ("app metric p50", row.app_p50),
            ] {
                findings.check(
                    (FAULT_LATENCY_MS..FAULT_LATENCY_MS * 5.0).contains(&value),
                    format!("{route}: {what} is {value} ms; with {FAULT_LATENCY_MS} ms injected it must be in [{FAULT_LATENCY_MS}, {}) ms", FAULT_LATENCY_MS * 5.0),
                );
            }
        } else {
            findings.check(
                row.p50 < FAULT_LATENCY_MS / 4.0 && row.p95 < FAULT_LATENCY_MS,
                format!(
                    "{route} (no fault) has p50 {} ms and p95 {} ms; expected well below the injected {FAULT_LATENCY_MS} ms \
                     (p50 < {} ms, p95 < {FAULT_LATENCY_MS} ms)",
                    row.p50,
                    row.p95,
                    FAULT_LATENCY_MS / 4.0
                ),
            );
        }
    }
    findings.check(
        latency.contains_key(FAULT_ROUTE),
        format!("no latency for {FAULT_ROUTE}: {latency:?}"),
    );
    latency
}
