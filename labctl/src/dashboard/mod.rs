//! Reads a Grafana dashboard JSON the way Grafana does, to run its queries outside Grafana:
//! every panel target (rows' nested panels included) with the backend it goes to, the
//! template variables, and the substitution of `$var`, `${var}`, `${var:format}`,
//! `[[var]]` and the built-in `$__interval`, `$__rate_interval`, `$__range` family.
//!
//! Values are formatted as Grafana's Prometheus datasource formats them (see
//! `prometheusRegularEscape` / `prometheusSpecialRegexEscape` in Grafana's
//! `public/app/plugins/datasource/prometheus`): a multi-value or "All" variable becomes
//! an escaped regex alternation, so an expression that only works for a single value
//! (`http_route="$route"`) fails here as it would in Grafana.
//!
//! [`grafana`] reads the JSON into the model below; [`substitution`] binds the
//! variables and substitutes them.

mod grafana;
mod substitution;

use std::time::Duration;

pub use grafana::parse;
pub use substitution::{
    Binding, Bindings, DEFAULT_SCRAPE_INTERVAL, TimeSettings, binding_for, label_values_call,
    substitute,
};

/// Where a query goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Prometheus,
    Loki,
    Tempo,
    /// Any other datasource type (expressions, test data...): nothing of ours runs it.
    Other(String),
}

impl Backend {
    fn from_type(kind: &str) -> Self {
        match kind.to_ascii_lowercase().as_str() {
            "prometheus" => Self::Prometheus,
            "loki" => Self::Loki,
            "tempo" => Self::Tempo,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One target of one panel.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    pub backend: Backend,
    /// The query text (`expr` for Prometheus and Loki, `query` for Tempo), with variables
    /// not yet substituted. `None` if the target has none (e.g. a Tempo search built
    /// from UI filters), which a test should treat as a finding.
    pub query: Option<String>,
    /// Grafana runs an instant query for this target (tables, stats set to instant).
    pub instant: bool,
}

impl PanelQuery {
    /// `Panel title [A]`, the name tables and test failures use.
    pub fn label(&self) -> String {
        format!("{} [{}]", self.panel, self.ref_id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum VariableKind {
    /// Values come from a backend query, e.g. `label_values(metric{...}, label)`.
    Query {
        backend: Backend,
        query: String,
    },
    Custom(Vec<String>),
    Constant(String),
    Textbox(String),
    Interval(Vec<String>),
    Datasource,
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub kind: VariableKind,
    /// The selected value(s) saved in the JSON; empty when the JSON saves none.
    pub current: Vec<String>,
    pub multi: bool,
    pub include_all: bool,
    /// The custom "All" value, used verbatim instead of the alternation of all values.
    pub all_value: Option<String>,
}

impl Variable {
    /// Whether the saved selection is "All".
    pub fn all_selected(&self) -> bool {
        self.include_all && (self.current.is_empty() || self.current.iter().any(|v| v == "$__all"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    /// Length of the default time range (`time.from` = `now-15m` -> 15 minutes).
    pub range: Duration,
    pub variables: Vec<Variable>,
    pub queries: Vec<PanelQuery>,
}

/// A Prometheus target ready to run: variables substituted.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    /// `Panel title [A]`.
    pub label: String,
    pub expr: String,
    pub instant: bool,
}

impl Dashboard {
    /// Every Prometheus target with `bindings` substituted, in panel order: what a test
    /// evaluates against Prometheus. A target without text, or using a variable that
    /// `bindings` lacks, is an error naming the panel.
    pub fn prometheus_expressions(&self, bindings: &Bindings) -> Result<Vec<Expression>, String> {
        self.queries
            .iter()
            .filter(|query| query.backend == Backend::Prometheus)
            .map(|query| {
                let text = query
                    .query
                    .as_deref()
                    .ok_or_else(|| format!("{}: no expression", query.label()))?;
                let expr = substitute(text, bindings).map_err(|unknown| {
                    format!("{}: no value for ${}", query.label(), unknown.join(", $"))
                })?;
                Ok(Expression {
                    label: query.label(),
                    expr,
                    instant: query.instant,
                })
            })
            .collect()
    }

    /// Bindings from the JSON alone: the built-ins for the dashboard's time range and
    /// each variable's saved selection, `values` giving the options of the named
    /// variables (what their queries return). A variable left without a value stays
    /// unbound, and expressions using it fail to substitute.
    pub fn saved_bindings(
        &self,
        scrape_interval: Duration,
        values: &[(&str, Vec<String>)],
    ) -> Bindings {
        let mut bindings = Bindings::new(TimeSettings::for_range(self.range, scrape_interval));
        for variable in &self.variables {
            let options = values
                .iter()
                .find(|(name, _)| *name == variable.name)
                .map(|(_, options)| options.as_slice())
                .unwrap_or_default();
            if let Some(binding) = binding_for(variable, options) {
                bindings.bind(&variable.name, binding);
            }
        }
        bindings
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn sample_dashboard() -> Value {
        json!({
            "uid": "todo-api-overview",
            "title": "Todo API Overview",
            "time": { "from": "now-15m", "to": "now" },
            "templating": { "list": [
                { "name": "datasource", "type": "datasource", "query": "prometheus",
                  "current": { "text": "Prometheus", "value": "prometheus" } },
                { "name": "service", "type": "constant", "query": "todo-api" },
                { "name": "route", "type": "query", "multi": true, "includeAll": true,
                  "datasource": { "type": "prometheus", "uid": "prometheus" },
                  "query": { "query": "label_values(traces_span_metrics_calls_total{service_name=\"$service\"}, http_route)", "refId": "PrometheusVariableQueryEditor-VariableQuery" },
                  "current": { "text": "All", "value": "$__all" } },
                { "name": "window", "type": "custom", "query": "1m,5m", "current": { "value": "5m" } }
            ]},
            "panels": [
                { "type": "stat", "title": "Request rate",
                  "datasource": { "type": "prometheus", "uid": "prometheus" },
                  "targets": [ { "refId": "A", "expr": "sum(rate(traces_span_metrics_calls_total{service_name=\"$service\"}[$__rate_interval]))" } ] },
                { "type": "row", "title": "Details", "collapsed": true, "panels": [
                    { "type": "timeseries", "title": "Latency by route",
                      "datasource": { "uid": "${datasource}" },
                      "targets": [
                        { "refId": "A", "expr": "histogram_quantile(0.95, x{http_route=~\"$route\"})" },
                        { "refId": "B", "expr": "hidden", "hide": true }
                      ] }
                ]},
                { "type": "logs", "title": "Errors",
                  "datasource": { "type": "loki", "uid": "loki" },
                  "targets": [ { "refId": "A", "expr": "{service_name=\"$service\"} |= \"error\"" } ] },
                { "type": "table", "title": "Recent traces",
                  "datasource": { "type": "tempo", "uid": "tempo" },
                  "targets": [ { "refId": "A", "queryType": "traceql", "query": "{resource.service.name=\"$service\"}" } ] },
                { "type": "table", "title": "Mixed",
                  "datasource": { "type": "datasource", "uid": "-- Mixed --" },
                  "targets": [
                    { "refId": "A", "datasource": { "type": "prometheus", "uid": "prometheus" }, "expr": "up", "instant": true },
                    { "refId": "B", "datasource": { "type": "tempo", "uid": "tempo" }, "queryType": "traceqlSearch", "filters": [] }
                  ] },
                { "type": "text", "title": "Notes" }
            ]
        })
    }

    #[test]
    fn extracts_every_visible_target_with_its_backend() {
        let dashboard = parse(&sample_dashboard().to_string()).unwrap();
        assert_eq!(dashboard.uid, "todo-api-overview");
        assert_eq!(dashboard.range, Duration::from_secs(900));
        let found: Vec<(String, Backend, bool, bool)> = dashboard
            .queries
            .iter()
            .map(|q| (q.label(), q.backend.clone(), q.query.is_some(), q.instant))
            .collect();
        assert_eq!(
            found,
            vec![
                ("Request rate [A]".into(), Backend::Prometheus, true, false),
                (
                    "Latency by route [A]".into(),
                    Backend::Prometheus,
                    true,
                    false
                ),
                ("Errors [A]".into(), Backend::Loki, true, false),
                ("Recent traces [A]".into(), Backend::Tempo, true, false),
                ("Mixed [A]".into(), Backend::Prometheus, true, true),
                ("Mixed [B]".into(), Backend::Tempo, false, false),
            ]
        );
    }

    #[test]
    fn reads_variables_of_every_kind() {
        let dashboard = parse(&sample_dashboard().to_string()).unwrap();
        let route = &dashboard.variables[2];
        assert_eq!(route.name, "route");
        assert!(route.all_selected());
        assert_eq!(
            route.kind,
            VariableKind::Query {
                backend: Backend::Prometheus,
                query: "label_values(traces_span_metrics_calls_total{service_name=\"$service\"}, http_route)".into()
            }
        );
        assert_eq!(
            dashboard.variables[1].kind,
            VariableKind::Constant("todo-api".into())
        );
        assert_eq!(
            dashboard.variables[3].kind,
            VariableKind::Custom(vec!["1m".into(), "5m".into()])
        );
    }

    #[test]
    fn bindings_follow_the_saved_selection() {
        let dashboard = parse(&sample_dashboard().to_string()).unwrap();
        let routes = vec!["/health".to_owned(), "/api/v1/todos".to_owned()];
        assert_eq!(
            binding_for(&dashboard.variables[2], &routes),
            Some(Binding::Values(routes.clone()))
        );
        assert_eq!(
            binding_for(&dashboard.variables[2], &[]),
            None,
            "an empty route list leaves nothing to show"
        );
        assert_eq!(
            binding_for(&dashboard.variables[1], &[]),
            Some(Binding::Plain("todo-api".into()))
        );
        assert_eq!(
            binding_for(&dashboard.variables[3], &[]),
            Some(Binding::Plain("5m".into()))
        );
        let mut no_selection = dashboard.variables[3].clone();
        no_selection.current.clear();
        assert_eq!(
            binding_for(&no_selection, &[]),
            Some(Binding::Plain("1m".into()))
        );
        let mut custom_all = dashboard.variables[2].clone();
        custom_all.all_value = Some(".+".into());
        assert_eq!(
            binding_for(&custom_all, &routes),
            Some(Binding::Raw(".+".into()))
        );
    }

    #[test]
    fn prometheus_expressions_come_substituted_in_panel_order() {
        let dashboard = parse(&sample_dashboard().to_string()).unwrap();
        let routes = vec!["/health".to_owned(), "/api/v1/todos/{todo_id}".to_owned()];
        let bindings = dashboard.saved_bindings(DEFAULT_SCRAPE_INTERVAL, &[("route", routes)]);
        let expressions = dashboard.prometheus_expressions(&bindings).unwrap();
        let labels: Vec<&str> = expressions.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            labels,
            ["Request rate [A]", "Latency by route [A]", "Mixed [A]"]
        );
        assert_eq!(
            expressions[0].expr,
            r#"sum(rate(traces_span_metrics_calls_total{service_name="todo-api"}[1m]))"#
        );
        assert_eq!(
            expressions[1].expr,
            r#"histogram_quantile(0.95, x{http_route=~"(/health|/api/v1/todos/\\{todo_id\\})"})"#
        );
        assert!(expressions[2].instant);

        let unresolved = dashboard.saved_bindings(DEFAULT_SCRAPE_INTERVAL, &[]);
        assert_eq!(
            dashboard.prometheus_expressions(&unresolved),
            Err("Latency by route [A]: no value for $route".to_owned())
        );
    }

    #[test]
    fn accepts_the_api_wrapper_and_refuses_non_dashboards() {
        let wrapped = json!({ "dashboard": sample_dashboard(), "meta": {} });
        assert_eq!(parse(&wrapped.to_string()).unwrap().queries.len(), 6);
        assert!(parse("[]").is_err());
        assert!(parse("{").is_err());
    }

    #[test]
    fn fields_of_unexpected_shapes_are_passed_over() {
        let odd = json!({
            "panels": [ { "title": "Odd", "datasource": 7, "extra": [1, 2],
                          "targets": [ { "refId": "A", "expr": "up", "datasource": null } ] } ],
            "templating": { "list": [
                { "name": "n", "type": "custom", "query": { "unexpected": true },
                  "options": [ { "value": 5 }, { "value": "kept" } ],
                  "current": { "value": 3 } }
            ]}
        });
        let dashboard = parse(&odd.to_string()).unwrap();
        assert_eq!(dashboard.queries[0].backend, Backend::Other(String::new()));
        assert_eq!(
            dashboard.variables[0].kind,
            VariableKind::Custom(vec!["kept".into()])
        );
        assert!(dashboard.variables[0].current.is_empty());
        assert!(
            parse(r#"{"panels": "not a list"}"#)
                .unwrap_err()
                .starts_with("not a dashboard")
        );
        assert!(parse("{").unwrap_err().starts_with("not JSON"));
    }
}
