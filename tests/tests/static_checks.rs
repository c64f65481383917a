//! Static checks of the lab's configuration: the compose stages, the collector config
//! against the components the tests build, the dashboard JSON, and the READMEs' links and
//! `just` commands. Nothing here starts a container; these checks catch, before a learner
//! does, the mistakes that otherwise only show up as an empty panel or a dead link.
//!
//! Each check is a function returning the problems it finds, one sentence each. The
//! `*_in_the_repository` tests run them on the real files; the tests below those feed
//! them small broken inputs, so every check is shown to fail when it should.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

// ---------------------------------------------------------------------------------------
// Shared helpers

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_yaml(name: &str, text: &str) -> Yaml {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

/// Asserts that some problem mentions every one of `needles`.
fn assert_reported(problems: &[String], needles: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| needles.iter().all(|n| p.contains(n))),
        "expected a problem mentioning {needles:?}, got:\n  - {}",
        problems.join("\n  - ")
    );
}

fn str_of(value: Option<&Yaml>) -> Option<&str> {
    value.and_then(Yaml::as_str)
}

// ---------------------------------------------------------------------------------------
// Compose: stack/compose.yaml and the stage overrides stack/compose.*.yaml

/// Every compose file of the stack, as (file name, parsed document).
fn compose_files() -> Vec<(String, Yaml)> {
    let dir = root().join("stack");
    let mut files: Vec<(String, Yaml)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            (name.starts_with("compose.") && name.ends_with(".yaml")).then_some((name, path))
        })
        .map(|(name, path)| {
            let doc = parse_yaml(&name, &read(&path));
            (name, doc)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        files.iter().any(|(name, _)| name == "compose.yaml"),
        "stack/compose.yaml (the base of every lab stage) is missing"
    );
    files
}

fn compose_problems(files: &[(String, Yaml)], stack_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut has_healthcheck: BTreeMap<String, bool> = BTreeMap::new();
    let mut runnable = BTreeSet::new();
    let mut declared_volumes = BTreeSet::new();
    let mut used_volumes = Vec::new();

    for (file, doc) in files {
        if let Some(volumes) = doc.get("volumes").and_then(Yaml::as_mapping) {
            declared_volumes.extend(volumes.keys().filter_map(Yaml::as_str).map(str::to_owned));
        }
        let Some(services) = doc.get("services").and_then(Yaml::as_mapping) else {
            problems.push(format!("{file}: no `services` mapping"));
            continue;
        };
        for (name, service) in services {
            let name = name.as_str().unwrap_or("?").to_owned();
            let at = format!("{file}: service {name}");
            has_healthcheck.entry(name.clone()).or_insert(false);
            let built = service.get("build").is_some();
            if built {
                runnable.insert(name.clone());
            }
            if let Some(image) = service.get("image") {
                runnable.insert(name.clone());
                match image.as_str() {
                    Some(image) => {
                        problems.extend(image_problem(image, built).map(|p| format!("{at}: {p}")))
                    }
                    None => problems.push(format!("{at}: `image` is not a string")),
                }
            }
            if let Some(healthcheck) = service.get("healthcheck") {
                match healthcheck_problem(healthcheck) {
                    None => {
                        has_healthcheck.insert(name.clone(), true);
                    }
                    Some(problem) => problems.push(format!("{at}: {problem}")),
                }
            }
            for port in service
                .get("ports")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                problems.extend(port_problem(port).map(|p| format!("{at}: {p}")));
            }
            for volume in service
                .get("volumes")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                match mount(volume) {
                    Mount::Bind(source) if source.starts_with('/') || source.starts_with('~') => problems.push(
                        format!("{at}: bind mount of the absolute path {source} exists on this machine only; use a path relative to stack/"),
                    ),
                    Mount::Bind(source) if !stack_dir.join(&source).exists() => problems.push(format!(
                        "{at}: bind mount source {source} does not exist (relative to stack/); Docker would mount an empty directory instead"
                    )),
                    Mount::Named(volume) => used_volumes.push((at.clone(), volume)),
                    Mount::Unreadable => problems.push(format!("{at}: unreadable volume entry {volume:?}")),
                    Mount::Bind(_) | Mount::Other => {}
                }
            }
        }
    }
    for (service, ok) in has_healthcheck {
        if !ok {
            problems.push(format!(
                "service {service}: no healthcheck in any compose file, so `docker compose up --wait` cannot tell when it is ready"
            ));
        }
        if !runnable.contains(&service) {
            problems.push(format!(
                "service {service}: neither `image` nor `build` in any compose file"
            ));
        }
    }
    for (at, volume) in used_volumes {
        if !declared_volumes.contains(&volume) {
            problems.push(format!(
                "{at}: named volume {volume} is not declared under the top-level `volumes`"
            ));
        }
    }
    problems
}

static VERSION_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+\.\d+").expect("valid regex"));

/// An image must name an exact release. Images the stack builds itself (`build:`) only
/// need an explicit tag other than `latest`.
fn image_problem(image: &str, built_here: bool) -> Option<String> {
    if image.contains('$') {
        return Some(format!(
            "image {image:?} is chosen by a variable; pin it in the file"
        ));
    }
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last_segment.split_once(':') {
        None => Some(format!(
            "image {image:?} has no tag, which means :latest; pin an exact version"
        )),
        Some((_, "latest")) => Some(format!("image {image:?} is :latest; pin an exact version")),
        Some((_, tag)) if !built_here && !VERSION_TAG.is_match(tag) => Some(format!(
            "image {image:?} has the floating tag {tag:?}; pin an exact release (major.minor at least)"
        )),
        Some(_) => None,
    }
}

fn healthcheck_problem(healthcheck: &Yaml) -> Option<String> {
    if healthcheck.get("disable").and_then(Yaml::as_bool) == Some(true) {
        return Some("its healthcheck is disabled".into());
    }
    match healthcheck.get("test") {
        Some(Yaml::Sequence(words)) => {
            let words: Vec<&str> = words.iter().filter_map(Yaml::as_str).collect();
            match words.as_slice() {
                ["CMD" | "CMD-SHELL", command, ..] if !command.trim().is_empty() => None,
                _ => Some(format!(
                    "healthcheck test {words:?} must be [\"CMD\", command, ...] or [\"CMD-SHELL\", script]"
                )),
            }
        }
        Some(Yaml::String(script)) if !script.trim().is_empty() => None,
        _ => Some("its healthcheck has no test".into()),
    }
}

/// Published ports must bind the loopback address only.
fn port_problem(port: &Yaml) -> Option<String> {
    match port {
        Yaml::String(spec) if spec.starts_with("127.0.0.1:") && spec.matches(':').count() == 2 => {
            None
        }
        Yaml::String(spec) => Some(format!(
            "port {spec:?} is reachable from other machines; write \"127.0.0.1:HOST_PORT:CONTAINER_PORT\""
        )),
        Yaml::Number(number) => Some(format!(
            "port {number} is published on every interface; write \"127.0.0.1:{number}:{number}\""
        )),
        Yaml::Mapping(_) => match str_of(port.get("host_ip")) {
            Some("127.0.0.1") => None,
            other => Some(format!(
                "port with target {:?} has host_ip {other:?}; set host_ip: 127.0.0.1",
                port.get("target")
            )),
        },
        other => Some(format!("unreadable port entry {other:?}")),
    }
}

enum Mount {
    Bind(String),
    Named(String),
    Other,
    Unreadable,
}

fn mount(volume: &Yaml) -> Mount {
    match volume {
        Yaml::String(spec) => match spec.split_once(':') {
            None => Mount::Other, // an anonymous volume: only a container path
            Some((source, _)) if source.starts_with(['.', '/', '~']) => {
                Mount::Bind(source.to_owned())
            }
            Some((source, _)) => Mount::Named(source.to_owned()),
        },
        Yaml::Mapping(_) => match (str_of(volume.get("type")), str_of(volume.get("source"))) {
            (Some("bind"), Some(source)) => Mount::Bind(source.to_owned()),
            (Some("volume"), Some(source)) => Mount::Named(source.to_owned()),
            (Some(_), _) => Mount::Other,
            (None, _) => Mount::Unreadable,
        },
        _ => Mount::Unreadable,
    }
}

#[test]
fn compose_stages_in_the_repository() {
    let files = compose_files();
    assert_no_problems(
        "stack/compose*.yaml",
        &compose_problems(&files, &root().join("stack")),
    );
}

#[test]
fn compose_check_rejects_what_it_should() {
    let base = r#"
services:
  db:
    image: postgres:latest
    ports: ["5432:5432", 8000, {target: 9000, published: "9000"}]
    volumes: [data:/var/lib/x, ./no-such-file.yaml:/etc/x.yaml, /etc/hosts:/etc/hosts]
  cache:
    image: redis
    healthcheck: {test: ["NONE"]}
  web:
    image: nginx:stable-alpine
    healthcheck: {disable: true}
  ghost:
    environment: {A: "1"}
    healthcheck: {test: ["CMD", "true"]}
"#;
    let files = vec![("compose.yaml".to_owned(), parse_yaml("fixture", base))];
    let problems = compose_problems(&files, &root().join("stack"));
    assert_reported(&problems, &["service db", "is :latest"]);
    assert_reported(&problems, &["service cache", "no tag"]);
    assert_reported(&problems, &["service web", "floating tag"]);
    assert_reported(
        &problems,
        &["\"5432:5432\"", "reachable from other machines"],
    );
    assert_reported(&problems, &["port 8000", "every interface"]);
    assert_reported(&problems, &["host_ip None"]);
    assert_reported(&problems, &["named volume data is not declared"]);
    assert_reported(&problems, &["./no-such-file.yaml does not exist"]);
    assert_reported(&problems, &["absolute path /etc/hosts"]);
    assert_reported(&problems, &["service db: no healthcheck"]);
    assert_reported(&problems, &["service cache", "[\"NONE\"]"]);
    assert_reported(&problems, &["service web", "disabled"]);
    assert_reported(&problems, &["service ghost: neither `image` nor `build`"]);

    // A healthcheck in an override file counts for the service; a pinned image passes.
    let fixed_base = "services:\n  db:\n    image: postgres:16.11-alpine\n    ports: [\"127.0.0.1:5432:5432\"]\n";
    let overlay = "services:\n  db:\n    healthcheck:\n      test: [\"CMD\", \"pg_isready\"]\n";
    let files = vec![
        ("compose.yaml".to_owned(), parse_yaml("fixture", fixed_base)),
        (
            "compose.extra.yaml".to_owned(),
            parse_yaml("fixture", overlay),
        ),
    ];
    assert_no_problems(
        "fixed fixture",
        &compose_problems(&files, &root().join("stack")),
    );
}

// ---------------------------------------------------------------------------------------
// Collector: stack/collector/config.yaml against stack/native/builder-config.yaml

const COMPONENT_KINDS: [&str; 5] = [
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "extensions",
];

/// Builder modules whose component type is not the module name minus its kind suffix,
/// with the deprecated aliases the collector still accepts for them.
const MODULE_TYPES: &[(&str, &[&str])] = &[
    ("memorylimiterprocessor", &["memory_limiter"]),
    ("healthcheckextension", &["health_check"]),
    ("otlpexporter", &["otlp_grpc", "otlp"]),
    ("otlphttpexporter", &["otlp_http", "otlphttp"]),
    ("spanmetricsconnector", &["span_metrics", "spanmetrics"]),
];

fn module_types(module: &str, kind: &str) -> Vec<String> {
    let name = module.rsplit('/').next().unwrap_or(module);
    if let Some((_, types)) = MODULE_TYPES.iter().find(|(m, _)| *m == name) {
        return types.iter().map(|t| (*t).to_owned()).collect();
    }
    let suffix = kind.trim_end_matches('s'); // "receivers" -> "receiver"
    vec![name.strip_suffix(suffix).unwrap_or(name).to_owned()]
}

/// `collector_image` is the collector image of the compose stack, if any.
fn collector_problems(config: &Yaml, builder: &Yaml, collector_image: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(version) = builder.get("dist").and_then(|d| str_of(d.get("version"))) else {
        return vec!["builder-config.yaml: no dist.version".into()];
    };
    let mut provided: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for kind in COMPONENT_KINDS {
        for entry in builder
            .get(kind)
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let Some((module, module_version)) =
                str_of(entry.get("gomod")).and_then(|g| g.split_once(' '))
            else {
                problems.push(format!(
                    "builder-config.yaml {kind}: entry without `gomod: <module> <version>`"
                ));
                continue;
            };
            if module_version.trim() != format!("v{version}") {
                problems.push(format!(
                    "builder-config.yaml: {module} is at {module_version}, not v{version} like the rest of the build"
                ));
            }
            provided
                .entry(kind)
                .or_default()
                .extend(module_types(module, kind));
        }
    }

    let mut defined: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for kind in COMPONENT_KINDS {
        for id in config
            .get(kind)
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.as_str())
        {
            defined.entry(kind).or_default().insert(id.to_owned());
            let component_type = id.split('/').next().unwrap_or(id);
            if !provided
                .get(kind)
                .is_some_and(|types| types.contains(component_type))
            {
                problems.push(format!(
                    "config.yaml {kind}.{id}: type {component_type} is not built by builder-config.yaml (collector {version}); \
                     add its module or use a component that is"
                ));
            }
        }
    }

    // Pipelines may only name components defined above; connectors are both ends.
    let names = |kinds: &[&str]| -> BTreeSet<String> {
        kinds
            .iter()
            .flat_map(|k| defined.get(k).cloned().unwrap_or_default())
            .collect()
    };
    let service = config.get("service");
    for extension in service
        .and_then(|s| s.get("extensions"))
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let extension = extension.as_str().unwrap_or("?");
        if !names(&["extensions"]).contains(extension) {
            problems.push(format!(
                "config.yaml service.extensions: {extension} is not defined under extensions"
            ));
        }
    }
    let pipelines = service
        .and_then(|s| s.get("pipelines"))
        .and_then(Yaml::as_mapping);
    if pipelines.is_none_or(|p| p.is_empty()) {
        problems.push("config.yaml: no service.pipelines".into());
    }
    for (pipeline, body) in pipelines.into_iter().flatten() {
        let pipeline = pipeline.as_str().unwrap_or("?");
        for (role, kinds) in [
            ("receivers", &["receivers", "connectors"][..]),
            ("processors", &["processors"][..]),
            ("exporters", &["exporters", "connectors"][..]),
        ] {
            let known = names(kinds);
            for id in body
                .get(role)
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                let id = id.as_str().unwrap_or("?");
                if !known.contains(id) {
                    problems.push(format!(
                        "config.yaml pipeline {pipeline}: {role} names {id}, which is not defined"
                    ));
                }
            }
        }
    }

    match collector_image.and_then(|image| image.rsplit_once(':')) {
        Some((_, tag)) if tag == version => {}
        Some((_, tag)) => problems.push(format!(
            "the compose collector image is {tag} but the native build is {version}: the tests would check another collector than the lab runs"
        )),
        None => problems.push("no otel/opentelemetry-collector-contrib image in the compose stack".into()),
    }
    problems
}

fn compose_collector_image(files: &[(String, Yaml)]) -> Option<String> {
    files
        .iter()
        .filter_map(|(_, doc)| doc.get("services").and_then(Yaml::as_mapping))
        .flat_map(|services| services.values())
        .filter_map(|service| str_of(service.get("image")))
        .find(|image| image.starts_with("otel/opentelemetry-collector-contrib:"))
        .map(str::to_owned)
}

#[test]
fn collector_config_in_the_repository() {
    let stack = root().join("stack");
    let config = parse_yaml(
        "stack/collector/config.yaml",
        &read(&stack.join("collector/config.yaml")),
    );
    let builder = parse_yaml(
        "stack/native/builder-config.yaml",
        &read(&stack.join("native/builder-config.yaml")),
    );
    let image = compose_collector_image(&compose_files());
    assert_no_problems(
        "stack/collector/config.yaml vs stack/native/builder-config.yaml",
        &collector_problems(&config, &builder, image.as_deref()),
    );
}

#[test]
fn collector_check_rejects_what_it_should() {
    let builder = parse_yaml(
        "fixture",
        r#"
dist: {version: 0.159.0}
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v0.159.0
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v0.158.0
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter v0.159.0
connectors:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector v0.159.0
"#,
    );
    let config = parse_yaml(
        "fixture",
        r#"
receivers: {otlp: {}, zipkin: {}}
processors: {batch: {}}
exporters: {otlphttp/lgtm: {}}
connectors: {spanmetrics: {}}
extensions: {health_check: {}}
service:
  extensions: [health_check, pprof]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [otlphttp/lgtm, spanmetrics, debug]}
    metrics: {receivers: [spanmetrics], exporters: [otlphttp/lgtm]}
"#,
    );
    let problems = collector_problems(
        &config,
        &builder,
        Some("otel/opentelemetry-collector-contrib:0.139.0"),
    );
    assert_reported(&problems, &["receivers.zipkin", "not built"]);
    assert_reported(&problems, &["extensions.health_check", "not built"]);
    assert_reported(&problems, &["batchprocessor is at v0.158.0"]);
    assert_reported(&problems, &["service.extensions: pprof"]);
    assert_reported(&problems, &["pipeline traces: exporters names debug"]);
    assert_reported(&problems, &["image is 0.139.0", "native build is 0.159.0"]);
    // The deprecated aliases (otlphttp, spanmetrics) are still accepted names.
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("otlphttp/lgtm: type") || p.contains("connectors.spanmetrics"))
    );
}

// ---------------------------------------------------------------------------------------
// Dashboard: dashboards/todo-api-overview.json

const DATASOURCE_UIDS: [&str; 3] = ["prometheus", "tempo", "loki"];

/// Panel types the lab's dashboards use; `graph` and `singlestat` are the deprecated
/// Angular panels Grafana no longer renders.
const PANEL_TYPES: [&str; 9] = [
    "row",
    "nodeGraph",
    "timeseries",
    "stat",
    "gauge",
    "table",
    "bargauge",
    "logs",
    "traces",
];

/// Grafana unit ids (from Grafana's valueFormats categories) this project may use. Add
/// one only after finding its id there: an unknown id is shown verbatim as a suffix.
const UNITS: [&str; 12] = [
    "none",
    "short",
    "percent",
    "percentunit",
    "reqps",
    "ops",
    "cps",
    "ms",
    "s",
    "bytes",
    "decbytes",
    "dtdurationms",
];

/// Time units; the dashboard shows latency in one of them only, ms (the span metrics
/// histogram unit).
const TIME_UNITS: [&str; 11] = [
    "ns",
    "µs",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "dtdurationms",
    "dtdurations",
    "clockms",
    "clocks",
];

/// The series the lab produces (collector span metrics, the app's own histogram).
const KNOWN_SERIES: [&str; 7] = [
    "traces_span_metrics_calls_total",
    "traces_span_metrics_duration_milliseconds_bucket",
    "traces_span_metrics_duration_milliseconds_sum",
    "traces_span_metrics_duration_milliseconds_count",
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_sum",
    "http_server_request_duration_seconds_count",
];

static SELECTOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}").expect("valid regex"));

fn panels(dashboard: &Json) -> Vec<&Json> {
    let top = dashboard["panels"].as_array().into_iter().flatten();
    top.flat_map(|panel| {
        std::iter::once(panel).chain(panel["panels"].as_array().into_iter().flatten())
    })
    .collect()
}

fn datasource_problem(at: &str, datasource: &Json) -> Option<String> {
    let uid = datasource["uid"].as_str()?;
    if uid.starts_with('$') {
        return None; // a datasource variable
    }
    if !DATASOURCE_UIDS.contains(&uid) {
        return Some(format!(
            "{at}: datasource uid {uid:?} is not one of otel-lgtm's {DATASOURCE_UIDS:?}"
        ));
    }
    match datasource["type"].as_str() {
        Some(kind) if kind != uid => Some(format!("{at}: datasource uid {uid} has type {kind}")),
        _ => None,
    }
}

fn panel_units(panel: &Json) -> Vec<&str> {
    let defaults = panel["fieldConfig"]["defaults"]["unit"].as_str();
    let overrides = panel["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|o| o["properties"].as_array().into_iter().flatten())
        .filter(|p| p["id"] == "unit")
        .filter_map(|p| p["value"].as_str());
    defaults.into_iter().chain(overrides).collect()
}

fn dashboard_problems(dashboard: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    if dashboard["uid"] != "todo-api-overview" || dashboard["title"] != "Todo API Overview" {
        problems.push("the dashboard must be uid todo-api-overview, title \"Todo API Overview\" (the labs link to it)".into());
    }
    for panel in panels(dashboard) {
        let kind = panel["type"].as_str().unwrap_or("?");
        let at = format!("panel {:?}", panel["title"].as_str().unwrap_or("?"));
        if !PANEL_TYPES.contains(&kind) {
            problems.push(format!(
                "{at}: panel type {kind} is not one of {PANEL_TYPES:?}"
            ));
        }
        if kind == "row" {
            continue;
        }
        problems.extend(datasource_problem(&at, &panel["datasource"]));
        for unit in panel_units(panel) {
            if !UNITS.contains(&unit) {
                problems.push(format!(
                    "{at}: {unit:?} is not a Grafana unit id this project knows ({UNITS:?})"
                ));
            }
            if TIME_UNITS.contains(&unit) && unit != "ms" {
                problems.push(format!(
                    "{at}: unit {unit}; latency is in ms throughout (the span metrics unit)"
                ));
            }
        }
        let targets: Vec<&Json> = panel["targets"].as_array().into_iter().flatten().collect();
        let queries: Vec<&str> = targets
            .iter()
            .filter_map(|t| t["expr"].as_str().or(t["query"].as_str()))
            .filter(|q| !q.trim().is_empty())
            .collect();
        // A Tempo service map is Grafana's own query of the generator's series.
        let service_map = targets.iter().any(|t| t["queryType"] == "serviceMap");
        if queries.is_empty() && !service_map {
            problems.push(format!("{at}: no target with a query (`expr` or `query`)"));
        }
        let mut quantiles = false;
        for target in &targets {
            let datasource = if target["datasource"].is_object() {
                &target["datasource"]
            } else {
                &panel["datasource"]
            };
            problems.extend(datasource_problem(&at, datasource));
            let Some(expr) = target["expr"]
                .as_str()
                .or(target["query"].as_str())
                .filter(|q| !q.trim().is_empty())
            else {
                continue;
            };
            match datasource["type"].as_str().or(datasource["uid"].as_str()) {
                Some("prometheus") => {
                    quantiles |= expr.contains("histogram_quantile");
                    problems.extend(
                        promql_problems(expr)
                            .into_iter()
                            .map(|p| format!("{at}: {p}")),
                    );
                }
                Some("loki") if !expr.contains("service_name") => {
                    problems.push(format!(
                        "{at}: LogQL {expr:?} does not select the service by its service_name label"
                    ));
                }
                _ => {}
            }
        }
        if quantiles {
            if !panel_units(panel).contains(&"ms") {
                problems.push(format!(
                    "{at}: shows latency percentiles, so its unit must be ms"
                ));
            }
            if kind == "timeseries" && !targets.iter().any(|t| t["exemplar"] == true) {
                problems.push(format!(
                    "{at}: latency over time without exemplars; set \"exemplar\": true on a target"
                ));
            }
        }
    }
    problems.extend(variable_problems(dashboard));
    problems
}

/// Span metrics count every span (server, client, internal): a RED panel must select the
/// service's SERVER spans, and read the series under the names they really have.
fn promql_problems(expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if expr.contains("traces_spanmetrics_") {
        problems.push(format!(
            "{expr:?} reads traces_spanmetrics_*, Tempo's own generator series (no http_* labels); use traces_span_metrics_*"
        ));
    }
    let mut selected = 0;
    for selector in SELECTOR.captures_iter(expr) {
        let (metric, matchers) = (&selector[1], &selector[2]);
        selected += 1;
        if !KNOWN_SERIES.contains(&metric) {
            problems.push(format!(
                "series {metric} is not one the lab produces ({KNOWN_SERIES:?})"
            ));
        }
        // The one exception: labctl traffic's own CLIENT spans, for client-observed latency.
        let client =
            matchers.contains(r#"service_name="todo-client", span_kind="SPAN_KIND_CLIENT""#);
        if metric.starts_with("traces_span_metrics_")
            && !client
            && !(matchers.contains(r#"span_kind="SPAN_KIND_SERVER""#)
                && matchers.contains(r#"service_name=~"$service""#))
        {
            problems.push(format!(
                "{metric}{{{matchers}}} must select span_kind=\"SPAN_KIND_SERVER\" and service_name=~\"$service\""
            ));
        }
        if metric.ends_with("_seconds_bucket") && !expr.trim_start().starts_with("1000 *") {
            problems.push(format!(
                "{metric} is in seconds; multiply by 1000 to keep the dashboard in ms"
            ));
        }
    }
    if selected == 0 {
        problems.push(format!("{expr:?} has no series selector with labels"));
    }
    problems
}

fn variable_problems(dashboard: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let variables: BTreeMap<&str, &Json> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    for variable in variables.values() {
        let at = format!("variable {}", variable["name"]);
        problems.extend(datasource_problem(&at, &variable["datasource"]));
    }
    let definition = |name: &str| {
        variables
            .get(name)
            .and_then(|v| v["definition"].as_str())
            .unwrap_or("")
    };
    match variables.get("service") {
        None => problems.push("no `service` variable".into()),
        // Loki refuses a stream selector that can match the empty string (`.*`).
        Some(v) if v["includeAll"] == true && v["allValue"] != ".+" => problems.push(
            "variable service: set allValue \".+\" (Loki rejects `service_name=~\".*\"`)".into(),
        ),
        Some(_) if !definition("service").contains("service_name") => {
            problems.push("variable service: must list the service_name label".into())
        }
        Some(_) => {}
    }
    match variables.get("route") {
        None => problems.push("no `route` variable".into()),
        // Requests that matched no route carry no http_route: only `.*` keeps them in "All".
        Some(v) if v["includeAll"] == true && v["allValue"] != ".*" => problems.push(
            "variable route: set allValue \".*\" so \"All\" also counts requests without a route"
                .into(),
        ),
        Some(_)
            if !(definition("route").contains("http_route")
                && definition("route").contains(r#"span_kind="SPAN_KIND_SERVER""#)) =>
        {
            problems.push("variable route: must list http_route of SERVER spans".into())
        }
        Some(_) => {}
    }
    problems
}

#[test]
fn dashboard_in_the_repository() {
    let path = root().join("dashboards/todo-api-overview.json");
    let dashboard: Json = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    assert_no_problems(
        "dashboards/todo-api-overview.json",
        &dashboard_problems(&dashboard),
    );
}

#[test]
fn dashboard_check_rejects_what_it_should() {
    let dashboard = serde_json::json!({
        "uid": "todo-api-overview",
        "title": "Todo API Overview",
        "panels": [
            {"type": "graph", "title": "Old", "datasource": {"type": "prometheus", "uid": "prometheus"},
             "targets": [{"expr": "sum(rate(traces_spanmetrics_calls_total{service=\"todo-api\"}[1m]))"}]},
            {"type": "row", "title": "Row", "panels": [
                {"type": "timeseries", "title": "Latency", "datasource": {"type": "prometheus", "uid": "mimir"},
                 "fieldConfig": {"defaults": {"unit": "s"}, "overrides": [
                     {"matcher": {"id": "byName", "options": "x"}, "properties": [{"id": "unit", "value": "milliseconds"}]}]},
                 "targets": [{"expr": "histogram_quantile(0.95, sum by (le) (rate(traces_span_metrics_duration_milliseconds_bucket{service_name=\"todo-api\"}[1m])))"},
                             {"expr": "histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket{service_name=~\"$service\"}[1m])))"}]}]},
            {"type": "stat", "title": "Empty", "datasource": {"type": "prometheus", "uid": "prometheus"}, "targets": [{"expr": ""}]},
            {"type": "logs", "title": "Logs", "datasource": {"type": "loki", "uid": "loki"}, "targets": [{"expr": "{job=\"x\"}"}]}
        ],
        "templating": {"list": [
            {"name": "service", "includeAll": true, "allValue": ".*", "definition": "label_values(service_name)",
             "datasource": {"type": "prometheus", "uid": "prometheus"}},
            {"name": "route", "includeAll": true, "allValue": ".*", "definition": "label_values(http_route)",
             "datasource": {"type": "prometheus", "uid": "prometheus"}}
        ]}
    });
    let problems = dashboard_problems(&dashboard);
    assert_reported(&problems, &["\"Old\"", "panel type graph"]);
    assert_reported(&problems, &["\"Old\"", "Tempo's own generator"]);
    assert_reported(&problems, &["\"Latency\"", "uid \"mimir\""]);
    assert_reported(
        &problems,
        &["\"Latency\"", "\"milliseconds\" is not a Grafana unit id"],
    );
    assert_reported(&problems, &["\"Latency\"", "unit s;"]);
    assert_reported(&problems, &["\"Latency\"", "must select span_kind"]);
    assert_reported(&problems, &["\"Latency\"", "multiply by 1000"]);
    assert_reported(&problems, &["\"Latency\"", "unit must be ms"]);
    assert_reported(&problems, &["\"Latency\"", "without exemplars"]);
    assert_reported(&problems, &["\"Empty\"", "no target with a query"]);
    assert_reported(&problems, &["\"Logs\"", "service_name label"]);
    assert_reported(&problems, &["variable service", "allValue \".+\""]);
    assert_reported(&problems, &["variable route", "SERVER spans"]);
}

// ---------------------------------------------------------------------------------------
// READMEs: relative links, and the `just` commands they tell a learner to type

/// Every README.md of the repository (build output and hidden folders aside).
fn readmes() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !(name.starts_with('.')
                    || name == "target"
                    || name == "node_modules"
                    || name.starts_with("result"))
                {
                    walk(&path, found);
                }
            } else if name == "README.md" {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root(), &mut found);
    found.sort();
    found
}

/// A Markdown file split into prose (for links) and code (fenced blocks and inline code
/// spans, where commands are).
struct Markdown {
    prose: String,
    code: Vec<String>,
}

static INLINE_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"`([^`]+)`").expect("valid regex"));

fn split_markdown(text: &str) -> Markdown {
    let mut prose = String::new();
    let mut code = Vec::new();
    let mut fence: Option<&str> = None;
    let mut block = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) if trimmed.starts_with(marker) => {
                code.push(std::mem::take(&mut block));
                fence = None;
            }
            Some(_) => {
                block.push_str(line);
                block.push('\n');
            }
            None if trimmed.starts_with("```") || trimmed.starts_with("~~~") => {
                fence = Some(&trimmed[..3])
            }
            None => {
                code.extend(INLINE_CODE.captures_iter(line).map(|c| c[1].to_owned()));
                prose.push_str(&INLINE_CODE.replace_all(line, ""));
                prose.push('\n');
            }
        }
    }
    Markdown { prose, code }
}

static INLINE_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).expect("valid regex")
});
static REFERENCE_LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)").expect("valid regex")
});

fn link_problems(readme: &Path, repository: &Path, prose: &str) -> Vec<String> {
    let dir = readme.parent().expect("a README sits in a folder");
    let shown = readme
        .strip_prefix(repository)
        .unwrap_or(readme)
        .display()
        .to_string();
    let targets = INLINE_LINK
        .captures_iter(prose)
        .chain(REFERENCE_LINK.captures_iter(prose))
        .map(|c| c[1].to_owned());
    let mut problems = Vec::new();
    for target in targets {
        if target.contains("://") || target.starts_with("mailto:") || target.starts_with('#') {
            continue;
        }
        let path = target
            .split(['#', '?'])
            .next()
            .unwrap_or_default()
            .replace("%20", " ");
        let joined = match path.strip_prefix('/') {
            Some(from_root) => repository.join(from_root),
            None => dir.join(&path),
        };
        // Resolved by hand: canonicalize would fail on exactly the missing files we look for.
        let mut resolved = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::CurDir => {}
                other => resolved.push(other),
            }
        }
        if !resolved.starts_with(repository) {
            problems.push(format!(
                "{shown}: link {target} points outside the repository"
            ));
        } else if !resolved.exists() {
            problems.push(format!(
                "{shown}: link {target} points to a file that does not exist"
            ));
        }
    }
    problems
}

/// How many positional arguments a recipe takes; `None` as maximum for variadic ones.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Arity {
    min: usize,
    max: Option<usize>,
    /// Recipes with `--option` parameters take values that look like positional words.
    options: bool,
}

/// The recipes of the repository's justfile, from `just --dump --dump-format json`.
fn recipes() -> BTreeMap<String, Arity> {
    let output = Command::new("just")
        .args(["--dump", "--dump-format", "json"])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `just` (is it installed? `.ci/run` installs it): {e}")
        });
    assert!(
        output.status.success(),
        "`just --dump` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump: Json = serde_json::from_slice(&output.stdout)
        .expect("`just --dump --dump-format json` prints JSON");
    let mut recipes = BTreeMap::new();
    for (name, recipe) in dump["recipes"].as_object().into_iter().flatten() {
        let mut arity = Arity {
            min: 0,
            max: Some(0),
            options: false,
        };
        for parameter in recipe["parameters"].as_array().into_iter().flatten() {
            if parameter["long"].is_string()
                || parameter["short"].is_string()
                || parameter["flag"] == true
            {
                arity.options = true;
                continue;
            }
            let required = parameter["default"].is_null();
            match parameter["kind"].as_str() {
                Some("singular") => {
                    arity.min += usize::from(required);
                    arity.max = arity.max.map(|m| m + 1);
                }
                Some("plus") => {
                    arity.min += 1;
                    arity.max = None;
                }
                _ => arity.max = None,
            }
        }
        recipes.insert(name.clone(), arity);
    }
    for (alias, definition) in dump["aliases"].as_object().into_iter().flatten() {
        if let Some(arity) = definition["target"]
            .as_str()
            .and_then(|target| recipes.get(target))
            .copied()
        {
            recipes.insert(alias.clone(), arity);
        }
    }
    recipes
}

/// `just` invocations in a piece of code: (recipe, the words after it). Words that look
/// like `--options` count too: a recipe without parameters refuses them.
fn just_calls(code: &str) -> Vec<(String, Vec<String>)> {
    const SEPARATORS: [&str; 6] = ["&&", "||", ";", "|", ">", "2>&1"];
    let mut calls = Vec::new();
    for line in code.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            if *word != "just" {
                continue;
            }
            let Some(recipe) = words.get(i + 1).filter(|w| !w.starts_with('-')) else {
                continue;
            };
            let args = words[i + 2..]
                .iter()
                .take_while(|w| !SEPARATORS.contains(w) && !w.starts_with('#'))
                .filter(|w| **w != "\\")
                .map(|w| w.trim_end_matches(';').to_owned())
                .collect();
            calls.push((recipe.trim_end_matches(';').to_owned(), args));
        }
    }
    calls
}

fn just_problems(shown: &str, code: &[String], recipes: &BTreeMap<String, Arity>) -> Vec<String> {
    let mut problems = Vec::new();
    for (recipe, args) in code.iter().flat_map(|c| just_calls(c)) {
        let command = format!("just {recipe} {}", args.join(" "))
            .trim_end()
            .to_owned();
        match recipes.get(&recipe) {
            None => problems.push(format!(
                "{shown}: `{command}`: the justfile has no recipe {recipe}"
            )),
            Some(arity) if arity.options => {}
            Some(arity)
                if args.len() < arity.min || arity.max.is_some_and(|max| args.len() > max) =>
            {
                let takes = match arity.max {
                    Some(max) if max == arity.min => format!("{max}"),
                    Some(max) => format!("{} to {max}", arity.min),
                    None => format!("at least {}", arity.min),
                };
                problems.push(format!(
                    "{shown}: `{command}`: {recipe} takes {takes} arguments, not {}",
                    args.len()
                ))
            }
            Some(_) => {}
        }
    }
    problems
}

#[test]
fn readme_links_in_the_repository() {
    let repository = root();
    let problems: Vec<String> = readmes()
        .iter()
        .flat_map(|readme| link_problems(readme, &repository, &split_markdown(&read(readme)).prose))
        .collect();
    assert_no_problems("README links", &problems);
}

#[test]
fn readme_just_commands_exist() {
    let recipes = recipes();
    let repository = root();
    let problems: Vec<String> = readmes()
        .iter()
        .flat_map(|readme| {
            let shown = readme
                .strip_prefix(&repository)
                .unwrap_or(readme)
                .display()
                .to_string();
            just_problems(&shown, &split_markdown(&read(readme)).code, &recipes)
        })
        .collect();
    assert_no_problems("`just` commands in READMEs", &problems);
}

#[test]
fn every_lab_has_a_readme() {
    let labs = root().join("labs");
    let expected = [
        "lab-1-app",
        "lab-2-lgtm",
        "lab-3-collector",
        "lab-4-dashboard",
        "lab-5-verify",
    ];
    let missing: Vec<String> = expected
        .iter()
        .filter(|lab| !labs.join(lab).join("README.md").is_file())
        .map(|lab| format!("labs/{lab}/README.md is missing"))
        .collect();
    assert_no_problems("lab folders", &missing);
}

#[test]
fn readme_checks_reject_what_they_should() {
    let repository = root();
    let readme = repository.join("labs/lab-1-app/README.md");
    let text = "\
See [the stack](../../stack/README.md), [gone](missing.md), [out](../../../elsewhere.md),
[web](https://grafana.com), [anchor](#goal) and `[in code](nowhere.md)`.

[ref]: ./also-missing.md

Run `just lab-9`, then:

```sh
just check 1 && just lab-2 container extra
just --list
just status --all   # a recipe without parameters refuses options too
```
";
    let markdown = split_markdown(text);
    let links = link_problems(&readme, &repository, &markdown.prose);
    assert_reported(&links, &["link missing.md", "does not exist"]);
    assert_reported(&links, &["link ./also-missing.md", "does not exist"]);
    assert_reported(&links, &["../../../elsewhere.md", "outside the repository"]);
    assert!(
        !links.iter().any(|p| p.contains("stack/README.md")),
        "{links:?}"
    );
    assert!(
        !links
            .iter()
            .any(|p| p.contains("nowhere.md") || p.contains("grafana.com") || p.contains("#goal"))
    );

    let recipes = BTreeMap::from([
        (
            "check".to_owned(),
            Arity {
                min: 1,
                max: Some(1),
                options: false,
            },
        ),
        (
            "lab-2".to_owned(),
            Arity {
                min: 0,
                max: Some(1),
                options: false,
            },
        ),
        (
            "status".to_owned(),
            Arity {
                min: 0,
                max: Some(0),
                options: false,
            },
        ),
    ]);
    let problems = just_problems("README.md", &markdown.code, &recipes);
    assert_reported(&problems, &["`just lab-9`", "no recipe lab-9"]);
    assert_reported(
        &problems,
        &[
            "`just lab-2 container extra`",
            "takes 0 to 1 arguments, not 2",
        ],
    );
    assert_reported(
        &problems,
        &["`just status --all`", "takes 0 arguments, not 1"],
    );
    assert!(
        !problems.iter().any(|p| p.contains("just check")),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
}

// ---------------------------------------------------------------------------------------
// flake.nix: Nix cannot fetch nixpkgs here, so its syntax is what can be checked.

/// `nix-instantiate --parse` (Debian's nix-bin) reads the flake without evaluating it. CI
/// installs it; on a machine without it the check says so instead of passing silently.
fn nix_parse_problems(file: &Path) -> Option<Vec<String>> {
    let output = Command::new("nix-instantiate")
        .arg("--parse")
        .arg(file)
        .output()
        .ok()?;
    Some(if output.status.success() {
        Vec::new()
    } else {
        vec![format!(
            "{} does not parse: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )]
    })
}

#[test]
fn flake_parses() {
    match nix_parse_problems(&root().join("flake.nix")) {
        Some(problems) => assert_no_problems("flake.nix", &problems),
        None if std::env::var_os("CI").is_some() => {
            panic!("nix-instantiate is missing (apt-get install nix-bin)")
        }
        None => eprintln!(
            "SKIP flake.nix syntax: nix-instantiate not installed (apt-get install nix-bin)"
        ),
    }
}

#[test]
fn flake_check_rejects_what_it_should() {
    let broken =
        std::env::temp_dir().join(format!("otel-lab-broken-flake-{}.nix", std::process::id()));
    fs::write(&broken, "{ outputs = { self }: { ; }").unwrap();
    let problems = nix_parse_problems(&broken);
    fs::remove_file(&broken).unwrap();
    if let Some(problems) = problems {
        assert_reported(&problems, &["does not parse"]);
    }
}
