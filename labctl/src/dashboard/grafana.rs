//! The Grafana dashboard JSON, as typed serde structs of the fields labctl reads, and
//! its reading into the model of [`super`].
//!
//! Grafana is lenient about its own JSON - fields come and go between versions, a
//! datasource is an object, a name or a `${var}`, a variable's query a string or an
//! object - so every field is optional and the shapes that vary are untagged enums with a
//! catch-all: a dashboard Grafana shows is never refused for a field labctl does not use.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Backend, Dashboard, PanelQuery, Variable, VariableKind};
use crate::duration;

/// Grafana's default range when the JSON has none, or one we cannot read.
const DEFAULT_RANGE: std::time::Duration = std::time::Duration::from_secs(3_600);

/// A dashboard, or the `{"dashboard": ...}` wrapper Grafana's API returns.
#[derive(Deserialize)]
struct Root {
    panels: Option<Vec<Panel>>,
    dashboard: Option<Box<Root>>,
    uid: Option<String>,
    title: Option<String>,
    time: Option<TimeRange>,
    templating: Option<Templating>,
}

#[derive(Deserialize)]
struct TimeRange {
    from: Option<String>,
}

#[derive(Deserialize)]
struct Templating {
    #[serde(default)]
    list: Vec<RawVariable>,
}

#[derive(Deserialize)]
struct Panel {
    title: Option<String>,
    datasource: Option<DatasourceRef>,
    /// A collapsed row keeps its panels here.
    panels: Option<Vec<Panel>>,
    targets: Option<Vec<Target>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    ref_id: Option<String>,
    datasource: Option<DatasourceRef>,
    expr: Option<String>,
    query: Option<String>,
    query_type: Option<String>,
    hide: Option<bool>,
    instant: Option<bool>,
    range: Option<bool>,
}

/// `{"type": "prometheus", "uid": "prometheus"}`, a bare name or uid (older JSON), or a
/// `${datasource}` variable.
#[derive(Deserialize)]
#[serde(untagged)]
enum DatasourceRef {
    Name(String),
    Object {
        #[serde(rename = "type")]
        kind: Option<String>,
        uid: Option<String>,
    },
    Other(IgnoredAny),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVariable {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    datasource: Option<DatasourceRef>,
    query: Option<VariableQuery>,
    #[serde(default)]
    options: Vec<VariableOption>,
    current: Option<Current>,
    multi: Option<bool>,
    include_all: Option<bool>,
    all_value: Option<String>,
}

/// A string, or (newer Grafana, Prometheus variables) `{"query": "..."}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum VariableQuery {
    Text(String),
    Object { query: Option<String> },
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct VariableOption {
    value: Option<OneOrMany>,
}

#[derive(Deserialize)]
struct Current {
    value: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<OneOrMany>),
    Other(IgnoredAny),
}

impl OneOrMany {
    /// The strings of a value: one, those of a list, none of anything else.
    fn strings(&self) -> Vec<String> {
        match self {
            Self::One(value) => vec![value.clone()],
            Self::Many(values) => values
                .iter()
                .filter_map(|value| match value {
                    Self::One(value) => Some(value.clone()),
                    _ => None,
                })
                .collect(),
            Self::Other(_) => Vec::new(),
        }
    }
}

/// Reads a dashboard, either bare or wrapped as Grafana's API returns it (`{"dashboard": ...}`).
pub fn parse(json: &str) -> Result<Dashboard, String> {
    let root: Root = serde_json::from_str(json).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("not a dashboard: {e}"),
        _ => format!("not JSON: {e}"),
    })?;
    let root = match root {
        Root {
            panels: None,
            dashboard: Some(inner),
            ..
        } => *inner,
        bare => bare,
    };
    let panels = root.panels.ok_or("the dashboard has no `panels` list")?;
    let variables: Vec<Variable> = root
        .templating
        .map(|templating| templating.list.iter().map(variable).collect())
        .unwrap_or_default();
    let mut queries = Vec::new();
    collect_queries(&panels, &variables, &mut queries);
    let range = root
        .time
        .and_then(|time| time.from)
        .as_deref()
        .and_then(|from| from.strip_prefix("now-"))
        .and_then(|span| duration::parse(span).ok())
        .unwrap_or(DEFAULT_RANGE);
    Ok(Dashboard {
        uid: root.uid.unwrap_or_default(),
        title: root.title.unwrap_or_default(),
        range,
        variables,
        queries,
    })
}

/// Walks panels depth-first: collapsed rows keep their panels in `panels`.
fn collect_queries(panels: &[Panel], variables: &[Variable], out: &mut Vec<PanelQuery>) {
    for panel in panels {
        if let Some(nested) = &panel.panels {
            collect_queries(nested, variables, out);
        }
        let Some(targets) = &panel.targets else {
            continue;
        };
        let title = panel.title.as_deref().unwrap_or("(untitled panel)");
        for (index, target) in targets.iter().enumerate() {
            if target.hide == Some(true) {
                continue;
            }
            let datasource = match &target.datasource {
                None => panel.datasource.as_ref(),
                Some(own) if own.is_mixed() => panel.datasource.as_ref(),
                own => own.as_ref(),
            };
            let backend = resolve_backend(datasource, variables);
            // A Tempo service map has no TraceQL: Grafana draws it from the series Tempo's
            // metrics generator writes to Prometheus (`labctl check 7` reads them).
            let service_map =
                backend == Backend::Tempo && target.query_type.as_deref() == Some("serviceMap");
            let (backend, text) = match backend {
                _ if service_map => (
                    Backend::Other("tempo service map (see labctl check 7)".into()),
                    Some("serviceMap"),
                ),
                Backend::Tempo => (Backend::Tempo, target.query.as_deref()),
                other => (other, target.expr.as_deref().or(target.query.as_deref())),
            };
            out.push(PanelQuery {
                panel: title.to_owned(),
                ref_id: target
                    .ref_id
                    .clone()
                    .unwrap_or_else(|| char::from(b'A' + (index % 26) as u8).to_string()),
                backend,
                query: text.filter(|q| !q.trim().is_empty()).map(str::to_owned),
                instant: target.instant == Some(true) && target.range != Some(true),
            });
        }
    }
}

impl DatasourceRef {
    fn is_mixed(&self) -> bool {
        match self {
            Self::Name(name) => name == "-- Mixed --",
            Self::Object { uid, .. } => uid.as_deref() == Some("-- Mixed --"),
            Self::Other(_) => false,
        }
    }
}

/// The backend of a datasource reference. With none, Grafana uses the default
/// datasource, which in otel-lgtm is Prometheus.
fn resolve_backend(datasource: Option<&DatasourceRef>, variables: &[Variable]) -> Backend {
    let reference = match datasource {
        None => return Backend::Prometheus,
        Some(DatasourceRef::Name(name)) => name.as_str(),
        Some(DatasourceRef::Object {
            kind: Some(kind), ..
        }) => return Backend::from_type(kind),
        Some(DatasourceRef::Object { uid, .. }) => uid.as_deref().unwrap_or_default(),
        Some(DatasourceRef::Other(_)) => "",
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

fn variable(raw: &RawVariable) -> Variable {
    let query_text = match &raw.query {
        Some(VariableQuery::Text(query)) => query.clone(),
        Some(VariableQuery::Object { query }) => query.clone().unwrap_or_default(),
        Some(VariableQuery::Other(_)) | None => String::new(),
    };
    let options: Vec<String> = raw
        .options
        .iter()
        .filter_map(|option| match &option.value {
            Some(OneOrMany::One(value)) => Some(value.clone()),
            _ => None,
        })
        .filter(|v| v != "$__all")
        .collect();
    // A datasource variable's "value" is an instance uid; its plugin type is the query.
    let datasource_plugin = query_text.clone();
    let kind = match raw.kind.as_deref().unwrap_or("query") {
        "query" => VariableKind::Query {
            backend: resolve_backend(raw.datasource.as_ref(), &[]),
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
    let mut current = raw
        .current
        .as_ref()
        .and_then(|current| current.value.as_ref())
        .map(OneOrMany::strings)
        .unwrap_or_default();
    if kind == VariableKind::Datasource {
        current = vec![datasource_plugin];
    }
    Variable {
        name: raw.name.clone().unwrap_or_default(),
        kind,
        current: current.into_iter().filter(|v| !v.is_empty()).collect(),
        multi: raw.multi == Some(true),
        include_all: raw.include_all == Some(true),
        all_value: raw.all_value.clone().filter(|v| !v.is_empty()),
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
