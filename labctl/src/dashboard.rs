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

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::duration;

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

/// Grafana's default range when the JSON has none, or one we cannot read.
const DEFAULT_RANGE: Duration = Duration::from_secs(3_600);

/// Reads a dashboard, either bare or wrapped as Grafana's API returns it (`{"dashboard": ...}`).
pub fn parse(json: &str) -> Result<Dashboard, String> {
    let mut root: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    if root.get("panels").is_none() && root.get("dashboard").is_some() {
        root = root["dashboard"].take();
    }
    let panels = root["panels"]
        .as_array()
        .ok_or("the dashboard has no `panels` list")?;
    let variables: Vec<Variable> = root["templating"]["list"]
        .as_array()
        .map(|list| list.iter().map(variable).collect())
        .unwrap_or_default();
    let mut queries = Vec::new();
    collect_queries(panels, &variables, &mut queries);
    let range = root["time"]["from"]
        .as_str()
        .and_then(|from| from.strip_prefix("now-"))
        .and_then(|span| duration::parse(span).ok())
        .unwrap_or(DEFAULT_RANGE);
    Ok(Dashboard {
        uid: root["uid"].as_str().unwrap_or_default().to_owned(),
        title: root["title"].as_str().unwrap_or_default().to_owned(),
        range,
        variables,
        queries,
    })
}

/// Walks panels depth-first: collapsed rows keep their panels in `panels`.
fn collect_queries(panels: &[Value], variables: &[Variable], out: &mut Vec<PanelQuery>) {
    for panel in panels {
        if let Some(nested) = panel["panels"].as_array() {
            collect_queries(nested, variables, out);
        }
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        let title = panel["title"].as_str().unwrap_or("(untitled panel)");
        for (index, target) in targets.iter().enumerate() {
            if target["hide"].as_bool() == Some(true) {
                continue;
            }
            let datasource = match &target["datasource"] {
                Value::Null => &panel["datasource"],
                own if is_mixed(own) => &panel["datasource"],
                own => own,
            };
            let backend = resolve_backend(datasource, variables);
            // A Tempo service map has no TraceQL: Grafana draws it from the series Tempo's
            // metrics generator writes to Prometheus (`labctl check 7` reads them).
            let service_map = backend == Backend::Tempo && target["queryType"] == "serviceMap";
            let (backend, text) = match backend {
                _ if service_map => (
                    Backend::Other("tempo service map (see labctl check 7)".into()),
                    Some("serviceMap"),
                ),
                Backend::Tempo => (Backend::Tempo, target["query"].as_str()),
                other => (
                    other,
                    target["expr"].as_str().or_else(|| target["query"].as_str()),
                ),
            };
            out.push(PanelQuery {
                panel: title.to_owned(),
                ref_id: target["refId"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| char::from(b'A' + (index % 26) as u8).to_string()),
                backend,
                query: text.filter(|q| !q.trim().is_empty()).map(str::to_owned),
                instant: target["instant"].as_bool() == Some(true)
                    && target["range"].as_bool() != Some(true),
            });
        }
    }
}

fn is_mixed(datasource: &Value) -> bool {
    datasource["uid"].as_str() == Some("-- Mixed --") || datasource.as_str() == Some("-- Mixed --")
}

/// A datasource reference is `{"type": "prometheus", "uid": "prometheus"}`, a bare name
/// or uid (older JSON), or a `${datasource}` variable. With none, Grafana uses the
/// default datasource, which in otel-lgtm is Prometheus.
fn resolve_backend(datasource: &Value, variables: &[Variable]) -> Backend {
    let reference = match datasource {
        Value::Null => return Backend::Prometheus,
        Value::String(name) => name.as_str(),
        object => {
            if let Some(kind) = object["type"].as_str() {
                return Backend::from_type(kind);
            }
            object["uid"].as_str().unwrap_or_default()
        }
    };
    if let Some(name) = variable_name(reference) {
        return variables
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| match &v.kind {
                VariableKind::Datasource => v.current.first().cloned(),
                _ => None,
            })
            .map(|plugin| Backend::from_type(&plugin))
            .unwrap_or(Backend::Other(reference.to_owned()));
    }
    Backend::from_type(reference)
}

/// `$ds` / `${ds}` -> `ds`.
fn variable_name(reference: &str) -> Option<&str> {
    let name = reference.strip_prefix('$')?;
    Some(
        name.strip_prefix('{')
            .and_then(|n| n.strip_suffix('}'))
            .unwrap_or(name),
    )
}

fn variable(json: &Value) -> Variable {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let query_text = match &json["query"] {
        Value::String(query) => query.clone(),
        // Newer Grafana saves Prometheus variable queries as objects.
        object => object["query"].as_str().unwrap_or_default().to_owned(),
    };
    let options: Vec<String> = json["options"]
        .as_array()
        .map(|options| {
            options
                .iter()
                .filter_map(|o| text(&o["value"]))
                .filter(|v| v != "$__all")
                .collect()
        })
        .unwrap_or_default();
    // A datasource variable's "value" is an instance uid; its plugin type is the query.
    let datasource_plugin = query_text.clone();
    let kind = match json["type"].as_str().unwrap_or("query") {
        "query" => VariableKind::Query {
            backend: resolve_backend(&json["datasource"], &[]),
            query: query_text,
        },
        "custom" => VariableKind::Custom(if options.is_empty() {
            custom_values(&query_text)
        } else {
            options
        }),
        "constant" => VariableKind::Constant(query_text),
        "textbox" => VariableKind::Textbox(query_text),
        "interval" => VariableKind::Interval(if options.is_empty() {
            custom_values(&query_text)
        } else {
            options
        }),
        "datasource" => VariableKind::Datasource,
        other => VariableKind::Other(other.to_owned()),
    };
    let mut current = match &json["current"]["value"] {
        Value::String(value) => vec![value.clone()],
        Value::Array(values) => values.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    if kind == VariableKind::Datasource {
        current = vec![datasource_plugin];
    }
    Variable {
        name: json["name"].as_str().unwrap_or_default().to_owned(),
        kind,
        current: current.into_iter().filter(|v| !v.is_empty()).collect(),
        multi: json["multi"].as_bool() == Some(true),
        include_all: json["includeAll"].as_bool() == Some(true),
        all_value: text(&json["allValue"]).filter(|v| !v.is_empty()),
    }
}

/// Custom variable values: `a,b,c`, or `label : value` pairs whose value counts.
fn custom_values(query: &str) -> Vec<String> {
    query
        .split(',')
        .map(|item| item.rsplit(" : ").next().unwrap_or(item).trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// A variable's value as Grafana would send it.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// A variable without multi-value or "All": sent as is (quote-escaped).
    Plain(String),
    /// A multi-value or "All"-capable variable's selection: regex-escaped, and joined as
    /// `(a|b)` when there are several.
    Values(Vec<String>),
    /// A custom "All" value, sent verbatim.
    Raw(String),
}

/// Values for the built-in variables, derived as Grafana derives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeSettings {
    pub range: Duration,
    pub interval: Duration,
    pub rate_interval: Duration,
}

/// The datasource's scrape interval Grafana assumes when none is configured.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);
/// Grafana aims at about this many points per series when it picks `$__interval`.
const MAX_DATA_POINTS: u32 = 1_000;

impl TimeSettings {
    /// `$__interval` = range / data points, at least the scrape interval (Grafana also
    /// rounds it to a "nice" step; for the lab's short ranges both give the scrape
    /// interval); `$__rate_interval` = max(`$__interval` + scrape, 4 x scrape), Grafana's
    /// formula for a rate window that always holds at least two samples.
    pub fn for_range(range: Duration, scrape_interval: Duration) -> Self {
        let by_points = Duration::from_secs((range / MAX_DATA_POINTS).as_secs().max(1));
        let interval = by_points.max(scrape_interval);
        let rate_interval = (interval + scrape_interval).max(scrape_interval * 4);
        Self {
            range,
            interval,
            rate_interval,
        }
    }
}

/// Substitution values: the dashboard's variables plus the built-ins.
#[derive(Debug, Clone, PartialEq)]
pub struct Bindings {
    values: BTreeMap<String, Binding>,
}

impl Bindings {
    pub fn new(time: TimeSettings) -> Self {
        let ms = |d: Duration| d.as_millis().to_string();
        let builtins = [
            ("__interval", duration::format(time.interval)),
            ("__interval_ms", ms(time.interval)),
            ("__rate_interval", duration::format(time.rate_interval)),
            ("__rate_interval_ms", ms(time.rate_interval)),
            ("__range", duration::format(time.range)),
            ("__range_s", time.range.as_secs().to_string()),
            ("__range_ms", ms(time.range)),
            ("__auto", duration::format(time.interval)),
        ];
        Self {
            values: builtins
                .into_iter()
                .map(|(name, value)| (name.to_owned(), Binding::Plain(value)))
                .collect(),
        }
    }

    pub fn bind(&mut self, name: &str, binding: Binding) {
        self.values.insert(name.to_owned(), binding);
    }

    pub fn get(&self, name: &str) -> Option<&Binding> {
        self.values.get(name)
    }
}

/// How a variable's selection is bound, given the values it can take (for a query
/// variable: what its query returned). `None` when it has no value at all, which leaves
/// every expression using it broken.
pub fn binding_for(variable: &Variable, available: &[String]) -> Option<Binding> {
    let options: Vec<String> = match &variable.kind {
        VariableKind::Constant(value) | VariableKind::Textbox(value) => {
            return Some(Binding::Plain(
                variable
                    .current
                    .first()
                    .cloned()
                    .unwrap_or_else(|| value.clone()),
            ));
        }
        VariableKind::Custom(values) | VariableKind::Interval(values) => values.clone(),
        VariableKind::Query { .. } => available.to_vec(),
        VariableKind::Datasource | VariableKind::Other(_) => variable.current.clone(),
    };
    let regex_like = variable.multi || variable.include_all;
    if variable.all_selected() {
        if let Some(all) = &variable.all_value {
            return Some(Binding::Raw(all.clone()));
        }
        return (!options.is_empty()).then_some(Binding::Values(options));
    }
    let chosen: Vec<String> = if variable.current.is_empty() {
        options.into_iter().take(1).collect()
    } else {
        variable.current.clone()
    };
    match (chosen.is_empty(), regex_like) {
        (true, _) => None,
        (false, true) => Some(Binding::Values(chosen)),
        (false, false) => Some(Binding::Plain(chosen[0].clone())),
    }
}

/// Replaces every variable reference in `text`. Unknown names are returned as errors
/// (a dashboard referring to a variable it does not define shows "No data" in Grafana),
/// except all-digit names, which are `label_replace` capture groups like `$1`.
pub fn substitute(text: &str, bindings: &Bindings) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut unknown = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['$', '[']) {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let Some((name, format, consumed)) = reference(candidate) else {
            out.push_str(&candidate[..1]);
            rest = &candidate[1..];
            continue;
        };
        match bindings.get(name) {
            Some(binding) => out.push_str(&render(binding, format)),
            None => {
                if !name.chars().all(|c| c.is_ascii_digit()) && !unknown.iter().any(|u| u == name) {
                    unknown.push(name.to_owned());
                }
                out.push_str(&candidate[..consumed]);
            }
        }
        rest = &candidate[consumed..];
    }
    out.push_str(rest);
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(unknown)
    }
}

/// Parses a reference at the start of `text`: `$name`, `${name}`, `${name:format}`,
/// `[[name]]` or `[[name:format]]`. Returns the name, the format and the length used.
fn reference(text: &str) -> Option<(&str, Option<&str>, usize)> {
    let word_end = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    // `${...}` and `[[...]]` differ only in their brackets.
    for (open, close) in [("${", "}"), ("[[", "]]")] {
        if let Some(inner) = text.strip_prefix(open) {
            let end = inner.find(close)?;
            let (name, format) = match inner[..end].split_once(':') {
                Some((name, format)) => (name, Some(format)),
                None => (&inner[..end], None),
            };
            let used = open.len() + end + close.len();
            return (word_end(name) == name.len() && !name.is_empty())
                .then_some((name, format, used));
        }
    }
    let inner = text.strip_prefix('$')?;
    let end = word_end(inner);
    (end > 0).then_some((&inner[..end], None, end + 1))
}

fn render(binding: &Binding, format: Option<&str>) -> String {
    match (binding, format) {
        (Binding::Raw(value), _) => value.clone(),
        (Binding::Plain(value), None) => regular_escape(value),
        (Binding::Plain(value), Some("regex")) => regex_escape(value),
        (Binding::Plain(value), Some(_)) => value.clone(),
        (Binding::Values(values), None | Some("regex")) => alternation(values),
        (Binding::Values(values), Some("pipe")) => values.join("|"),
        (Binding::Values(values), Some("csv")) => values.join(","),
        (Binding::Values(values), Some(_)) => values.join(","),
    }
}

fn alternation(values: &[String]) -> String {
    match values {
        [single] => regex_escape(single),
        many => format!(
            "({})",
            many.iter()
                .map(|v| regex_escape(v))
                .collect::<Vec<_>>()
                .join("|")
        ),
    }
}

/// Grafana's `prometheusRegularEscape`: backslashes doubled, single quotes escaped.
fn regular_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\\\'")
}

/// Grafana's `prometheusSpecialRegexEscape`: regex metacharacters get `\\` in front, which
/// a PromQL string literal turns into the single `\` the regex needs.
fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\\\\\"),
            '$' | '^' | '*' | '{' | '}' | '[' | ']' | '+' | '?' | '.' | '(' | ')' | '|' => {
                out.push_str("\\\\");
                out.push(c);
            }
            other => out.push(other),
        }
    }
    out
}

/// `label_values(metric{...}, label)` -> (Some(selector), label); `label_values(label)`
/// -> (None, label).
pub fn label_values_call(query: &str) -> Option<(Option<&str>, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    Some(match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim()), label.trim()),
        None => (None, inner.trim()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn time() -> TimeSettings {
        TimeSettings::for_range(Duration::from_secs(900), DEFAULT_SCRAPE_INTERVAL)
    }

    #[test]
    fn builtins_follow_grafanas_formulas() {
        let time = time();
        assert_eq!(time.interval, Duration::from_secs(15));
        assert_eq!(time.rate_interval, Duration::from_secs(60));
        let wide = TimeSettings::for_range(Duration::from_secs(86_400), DEFAULT_SCRAPE_INTERVAL);
        assert_eq!(wide.interval, Duration::from_secs(86));
        assert_eq!(wide.rate_interval, Duration::from_secs(101));
        let bindings = Bindings::new(time);
        assert_eq!(
            substitute(
                "rate(x[$__rate_interval]) [$__interval] $__range $__range_s ${__interval_ms}",
                &bindings
            ),
            Ok("rate(x[1m]) [15s] 15m 900 15000".to_owned())
        );
    }

    #[test]
    fn all_reference_syntaxes_are_replaced() {
        let mut bindings = Bindings::new(time());
        bindings.bind("service", Binding::Plain("todo-api".into()));
        assert_eq!(
            substitute(
                r#"a{s="$service"} b{s="${service}"} c{s="[[service]]"} d{s="${service:raw}"}"#,
                &bindings
            ),
            Ok(r#"a{s="todo-api"} b{s="todo-api"} c{s="todo-api"} d{s="todo-api"}"#.to_owned())
        );
    }

    #[test]
    fn unknown_variables_are_reported_but_capture_groups_and_regex_anchors_are_not() {
        let bindings = Bindings::new(time());
        assert_eq!(
            substitute(
                r#"label_replace(x{a=~"^b$"}, "c", "$1", "d", "(.*)")"#,
                &bindings
            ),
            Ok(r#"label_replace(x{a=~"^b$"}, "c", "$1", "d", "(.*)")"#.to_owned())
        );
        assert_eq!(
            substitute(r#"x{a="$nope", b="${nope}", c="$other"} [5m]"#, &bindings),
            Err(vec!["nope".to_owned(), "other".to_owned()])
        );
    }

    #[test]
    fn multi_values_become_an_escaped_alternation_like_grafana_sends() {
        let mut bindings = Bindings::new(time());
        bindings.bind(
            "route",
            Binding::Values(vec![
                "/api/v1/todos".into(),
                "/api/v1/todos/{todo_id}".into(),
            ]),
        );
        assert_eq!(
            substitute(r#"x{http_route=~"$route"}"#, &bindings),
            Ok(r#"x{http_route=~"(/api/v1/todos|/api/v1/todos/\\{todo_id\\})"}"#.to_owned())
        );
        bindings.bind("one", Binding::Values(vec!["a.b".into()]));
        assert_eq!(substitute("$one", &bindings), Ok(r"a\\.b".to_owned()));
        bindings.bind("all", Binding::Raw(".*".into()));
        assert_eq!(
            substitute(r#"x{r=~"$all"}"#, &bindings),
            Ok(r#"x{r=~".*"}"#.to_owned())
        );
    }

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
}
