//! The dashboard's checks: each variable resolved as Grafana resolves it, then each panel
//! target run against its backend over the dashboard's time range.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::time::Instant;

use super::{Backends, SEARCH_LIMIT, SKIP_REASON, VerifyConfig, api_failure, round, shorten};
use crate::clock::now;
use crate::dashboard::{
    self, Backend, Binding, Bindings, Dashboard, PanelQuery, TimeSettings, VariableKind,
};
use crate::duration;
use crate::http::ApiError;
use crate::probe::{self, Outcome, Report, Row};
use crate::prom::Prometheus;
use crate::tempo;

/// Resolves the dashboard's variables, then runs every panel target.
pub(super) async fn dashboard_checks(
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
