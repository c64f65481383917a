//! Variable values as Grafana sends them, and their substitution into query text.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Variable, VariableKind};
use crate::duration;

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
}
