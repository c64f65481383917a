//! Checks of the dashboards as a learner sees them: every panel query returns data once
//! its variables are resolved as Grafana resolves them, and the error-share panels show
//! the shares labctl sent.

use std::path::Path;

use labctl::clock::now;
use labctl::dashboard::{self, Backend, DEFAULT_SCRAPE_INTERVAL, Dashboard, VariableKind};
use labctl::prom::Prometheus;
use labctl::text::shorten;

use crate::findings::Findings;
use crate::prometheus::{scalar, widen_windows};
use crate::run::Run;
use crate::{CLIENT_ERROR_PANEL, ERROR_RATE_PANEL, SHARE_TOLERANCE};

/// Every Prometheus target of every dashboard returns data over the dashboard's default
/// time range, with its variables resolved.
pub async fn every_panel_query_has_data(run: &Run, findings: &mut Findings) -> CheckedDashboard {
    let mut all = CheckedDashboard {
        rows: Vec::new(),
        expressions: Vec::new(),
    };
    for path in &run.dashboards {
        let checked = check_dashboard(&run.prometheus, path, findings).await;
        all.rows.extend(checked.rows);
        all.expressions.extend(checked.expressions);
    }
    all
}

/// A share panel's value next to the share sent, for the record.
pub struct Share {
    pub label: String,
    pub sent: f64,
    /// Its expression with the windows widened to the whole run.
    pub shown: f64,
    /// Its expression as saved (`[1m]`), at the same time.
    pub as_saved: Option<f64>,
}

/// The 5xx and 4xx share panels, computed by the dashboard's own expressions over the
/// whole run, equal the shares sent.
pub async fn error_share_panels_show_the_shares_sent(
    run: &Run,
    panels: &CheckedDashboard,
    findings: &mut Findings,
) -> Vec<Share> {
    let mut shares = Vec::new();
    for (panel, expected, what) in [
        (ERROR_RATE_PANEL, run.totals.error_rate, "5xx share sent"),
        (
            CLIENT_ERROR_PANEL,
            run.totals.client_error_rate,
            "4xx share sent",
        ),
    ] {
        let Some(expression) = panels
            .expressions
            .iter()
            .find(|e| e.label.starts_with(&format!("{panel} [")))
        else {
            findings.fail(format!(
                "no dashboard has a panel titled \"{panel}\" (the test compares its value with the \
                 {what}; if the panel was renamed, update the title in tests/tests/pipeline/main.rs)"
            ));
            continue;
        };
        let widened = widen_windows(&expression.expr, &run.window);
        let value = scalar(&run.prometheus, &widened, run.at).await;
        let as_saved = scalar(&run.prometheus, &expression.expr, run.at).await.ok();
        let matches = value
            .as_ref()
            .is_ok_and(|v| (v - expected).abs() <= SHARE_TOLERANCE);
        findings.check(
            matches,
            format!(
                "panel {} shows {}, the {what} is {expected:.6} (tolerance {SHARE_TOLERANCE}); \
                 query (windows widened to the whole run, at the last flush {}): {widened}",
                expression.label,
                value
                    .as_ref()
                    .map_or_else(|error| format!("nothing ({error})"), |v| format!("{v:.6}")),
                run.at
            ),
        );
        shares.push(Share {
            label: expression.label.clone(),
            sent: expected,
            shown: value.unwrap_or(f64::NAN),
            as_saved,
        });
    }
    shares
}

/// What the error-rate panel would show if it counted 4xx as errors.
pub fn errors_if_4xx_counted(run: &Run) -> f64 {
    run.totals.error_rate + run.totals.client_error_rate
}

/// 4xx are not errors: with both classes in the mix, counting 4xx would be visible.
pub fn client_errors_are_not_counted_as_errors(
    run: &Run,
    shares: &[Share],
    findings: &mut Findings,
) {
    let errors_if_4xx_counted = errors_if_4xx_counted(run);
    if let Some(share) = shares
        .iter()
        .find(|share| share.label.starts_with(ERROR_RATE_PANEL))
    {
        let shown = share.shown;
        findings.check(
            (shown - errors_if_4xx_counted).abs() > 0.01,
            format!("the error rate {shown} equals the 5xx+4xx share {errors_if_4xx_counted}: 4xx are counted as errors"),
        );
    }
}

/// One dashboard's (or all dashboards') rows for the record and substituted expressions.
pub struct CheckedDashboard {
    pub rows: Vec<String>,
    /// Its Prometheus expressions, substituted (none when its variables did not resolve).
    pub expressions: Vec<dashboard::Expression>,
}

/// Resolves the dashboard's variables as Grafana does (query variables asked of
/// Prometheus, in rounds, since `$route`'s query uses `$service`), then runs every
/// Prometheus target over the dashboard's default time range and requires data.
async fn check_dashboard(
    prometheus: &Prometheus,
    path: &Path,
    findings: &mut Findings,
) -> CheckedDashboard {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let parsed: Dashboard = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| dashboard::parse(&text))
    {
        Ok(parsed) => parsed,
        Err(error) => {
            findings.fail(format!("{name}: cannot read the dashboard: {error}"));
            return CheckedDashboard {
                rows: Vec::new(),
                expressions: Vec::new(),
            };
        }
    };
    let end = now();
    let start = end - parsed.range.as_secs_f64();

    let mut values: Vec<(&str, Vec<String>)> = Vec::new();
    let query_variables: Vec<(&str, &str)> = parsed
        .variables
        .iter()
        .filter_map(|v| match &v.kind {
            VariableKind::Query {
                backend: Backend::Prometheus,
                query,
            } => Some((v.name.as_str(), query.as_str())),
            _ => None,
        })
        .collect();
    for _round in 0..query_variables.len() {
        let bindings = parsed.saved_bindings(DEFAULT_SCRAPE_INTERVAL, &values);
        for (variable, query) in &query_variables {
            if values.iter().any(|(done, _)| done == variable) {
                continue;
            }
            let Ok(query) = dashboard::substitute(query, &bindings) else {
                continue;
            };
            let Some((selector, label)) = dashboard::label_values_call(&query) else {
                findings.fail(format!("{name}: variable ${variable}: cannot read `{query}` (label_values(selector, label) expected)"));
                values.push((variable, Vec::new()));
                continue;
            };
            let found = prometheus
                .label_values(label, selector, start, end)
                .await
                .unwrap_or_default();
            findings.check(
                !found.is_empty(),
                format!("{name}: variable ${variable} has no values: `{query}` returned none (every panel using it shows No data)"),
            );
            values.push((variable, found));
        }
    }
    let bindings = parsed.saved_bindings(DEFAULT_SCRAPE_INTERVAL, &values);
    let expressions = match parsed.prometheus_expressions(&bindings) {
        Ok(expressions) => expressions,
        Err(error) => {
            findings.fail(format!("{name}: {error}"));
            return CheckedDashboard {
                rows: Vec::new(),
                expressions: Vec::new(),
            };
        }
    };
    let time = dashboard::TimeSettings::for_range(parsed.range, DEFAULT_SCRAPE_INTERVAL);
    let mut rows = Vec::new();
    for expression in &expressions {
        let answer = if expression.instant {
            prometheus.instant(&expression.expr, end).await
        } else {
            prometheus
                .range(&expression.expr, start, end, time.interval.as_secs_f64())
                .await
        };
        let (series, last, problem) = match &answer {
            Err(error) => (
                0,
                f64::NAN,
                Some(format!("Prometheus refused or failed: {error}")),
            ),
            Ok(data) => {
                let finite: Vec<f64> = data
                    .values()
                    .into_iter()
                    .filter(|v| v.is_finite())
                    .collect();
                let last = finite.last().copied().unwrap_or(f64::NAN);
                let problem = if data.series_count() == 0 {
                    Some("no series (Grafana: No data)".to_owned())
                } else if finite.is_empty() {
                    Some(format!(
                        "{} series, but only NaN/Inf values: {:?}",
                        data.series_count(),
                        data.label_sets()
                    ))
                } else {
                    None
                };
                (data.series_count(), last, problem)
            }
        };
        if let Some(problem) = problem {
            findings.fail(format!(
                "{name}: panel {}: {problem}\n  query ({}): {}",
                expression.label,
                if expression.instant {
                    "instant"
                } else {
                    "range over the dashboard's time range"
                },
                expression.expr
            ));
        }
        rows.push(format!(
            "{:<60} {series:>7}  {last:.4}",
            shorten(&format!("{name}: {}", expression.label), 60)
        ));
    }
    for query in parsed
        .queries
        .iter()
        .filter(|q| q.backend != Backend::Prometheus)
    {
        rows.push(format!(
            "{:<60} {:>7}  not run: {:?} is container-only",
            shorten(&format!("{name}: {}", query.label()), 60),
            "-",
            query.backend
        ));
    }
    CheckedDashboard { rows, expressions }
}
